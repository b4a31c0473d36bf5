/**
 * Issue #12's headline table: this library and llama.cpp (node-llama-cpp, CPU only, same thread count)
 * on the same GGUF with NVIDIA-Nemotron-Nano-9B-v2's exact configuration (random weights; made by
 * `npm run bench:make-9b`, ~9.5 GB Q8_0 and ~5.9 GB Q4_K_M-layout). Every engine runs in a process of
 * its own (bench/table-9b-engine.ts), one at a time, so load time and peak RSS are its own:
 *
 *   npm run bench:table-9b -- [--types Q8_0,Q4_K] [--engines ours,ours-exact,llama.cpp] [--runs 3]
 *        [--threads 2] [--decode 32] [--long ours,llama.cpp] [--dir bench/models/nano-9b-v2-random]
 *
 * Rows: load s (model file already in the page cache), prefill tok/s of a 512-token prompt, decode tok/s
 * at 128 tokens of context, aggregate decode tok/s of 4 concurrent streams, peak RSS; then decode tok/s
 * at 8,192 tokens of context, measured once per engine of --long (an 8,192-token prefill at this size
 * takes minutes per engine). Each short run starts with a different engine (rotation), and the table of
 * medians over the runs follows the per-run tables. 'ours' is the default configuration (no precision
 * given), compared with llama.cpp's default; the decode row adds the fraction of the read bandwidth
 * (weight bytes per token x tokens/s over the best 2-thread read probe taken between engines).
 */
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';

import { loadNative } from '../lib/native.js';
import { weightBytesPerToken } from './engines.js';

const { values } = parseArgs({
  options: {
    dir: { type: 'string', default: path.resolve(import.meta.dirname, 'models/nano-9b-v2-random') },
    types: { type: 'string', default: 'Q8_0,Q4_K' },
    engines: { type: 'string', default: 'ours,ours-exact,llama.cpp' },
    long: { type: 'string', default: 'ours,llama.cpp' },
    runs: { type: 'string', default: '3' },
    threads: { type: 'string', default: '2' },
    decode: { type: 'string', default: '32' },
  },
});
const threads = Number(values.threads);
const engines = values.engines.split(',');
const longEngines = values.long.split(',').filter(Boolean);
const runs = Number(values.runs);
const SHORT = ['load', 'prefill512', 'decode128', 'streams4'];
const ROWS: Array<[string, string]> = [
  ['load', 'load s (file in page cache)'],
  ['prefill512', 'prefill tok/s, 512-token prompt'],
  ['decode128', `decode tok/s at 128 tokens of context (${values.decode} tokens)`],
  ['streams4', '4 streams, aggregate decode tok/s'],
  ['peakRssGB', 'peak RSS GB'],
];
type Result = Record<string, number | string>;

const probes: number[] = [];
const probe = () => probes.push(loadNative()._measureReadBandwidth(512 * 1024 * 1024, threads) * 1e9);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

function runEngine(gguf: string, engine: string, measures: string[]): Result {
  probe();
  const stdout = execFileSync(process.execPath, ['--import', 'tsx', path.join(import.meta.dirname, 'table-9b-engine.ts'), '--gguf', gguf, '--engine', engine, '--threads', String(threads), '--measures', measures.join(','), '--decode', values.decode], { encoding: 'utf8', maxBuffer: 1 << 24, stdio: ['ignore', 'pipe', 'inherit'] });
  const line = stdout.trim().split('\n').pop()!;
  const r = JSON.parse(line) as Result;
  console.error(`  ${engine}: ${line}`);
  return r;
}

function printTable(title: string, byEngine: Result[], bytes: number): void {
  const peer = engines.indexOf('llama.cpp');
  const ours = engines.map((e, i) => [e, i] as const).filter(([e]) => e !== 'llama.cpp');
  const label = (e: string, r: Result) => (e === 'ours' ? `ours default (${r.precision})` : e);
  console.log(`\n### ${title}\n`);
  console.log(`| measure | ${engines.map((e, i) => label(e, byEngine[i]!)).join(' | ')} |${peer >= 0 ? ` ${ours.map(([e, i]) => `${label(e, byEngine[i]!)} / llama.cpp`).join(' | ')} |` : ''}`);
  console.log(`|---|${engines.map(() => '---:').join('|')}|${peer >= 0 ? ours.map(() => '---:').join('|') + '|' : ''}`);
  for (const [key, name] of ROWS) {
    const vals = byEngine.map((r) => Number(r[key]));
    if (vals.some((v) => !Number.isFinite(v))) continue;
    const digits = key === 'load' || key === 'peakRssGB' ? 2 : key === 'prefill512' ? 1 : 2;
    const cells = vals.map((v) => v.toFixed(digits));
    console.log(`| ${name} | ${cells.join(' | ')} |${peer >= 0 ? ` ${ours.map(([, i]) => (vals[i]! / vals[peer]!).toFixed(2)).join(' | ')} |` : ''}`);
  }
  const bw = Math.max(...probes);
  const fractions = byEngine.map((r, i) => `${engines[i]} ${((100 * Number(r.decode128) * bytes) / bw).toFixed(0)} %`);
  console.log(`\ndecode at 128 as a fraction of the read limit (${(bytes / 1e9).toFixed(2)} GB per token, best read probe ${(bw / 1e9).toFixed(1)} GB/s): ${fractions.join(', ')}`);
}

console.log(`${os.cpus()[0]?.model ?? ''}, ${threads} threads, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB`);
for (const type of values.types.split(',')) {
  const gguf = path.join(values.dir, type.toLowerCase(), 'model.gguf');
  const bytes = weightBytesPerToken(gguf);
  const perRun: Result[][] = [];
  for (let run = 0; run < runs; run++) {
    const byEngine: Result[] = new Array(engines.length);
    for (let k = 0; k < engines.length; k++) {
      const i = (run + k) % engines.length; // rotate the starting engine
      byEngine[i] = runEngine(gguf, engines[i]!, SHORT);
    }
    perRun.push(byEngine);
    printTable(`${type}, run ${run + 1} of ${runs} (${path.relative(process.cwd(), gguf)})`, byEngine, bytes);
  }
  if (runs > 1) {
    const med = engines.map((_, i) => {
      const r: Result = { precision: perRun[0]![i]!.precision ?? '' };
      for (const [key] of ROWS) r[key] = median(perRun.map((byEngine) => Number(byEngine[i]![key])));
      return r;
    });
    printTable(`${type}, median of ${runs} runs`, med, bytes);
  }
  if (longEngines.length) {
    const long = longEngines.map((e) => runEngine(gguf, e, ['decode8k']));
    const peer = longEngines.indexOf('llama.cpp');
    console.log(`\n${type}: decode tok/s at 8,192 tokens of context (${values.decode} tokens, one run): ${long.map((r, i) => `${longEngines[i]}${r.precision ? ` (${r.precision})` : ''} ${Number(r.decode8k).toFixed(2)}`).join(', ')}${peer >= 0 ? `; ${long.map((r, i) => (i === peer ? '' : `${longEngines[i]} / llama.cpp ${(Number(r.decode8k) / Number(long[peer]!.decode8k)).toFixed(2)}`)).filter(Boolean).join(', ')}` : ''}`);
  }
}
console.log(`\nread probes (GB/s, ${threads} threads, 5 passes over 512 MiB): ${probes.map((b) => (b / 1e9).toFixed(1)).join(', ')}`);
