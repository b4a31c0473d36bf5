/**
 * Issue #5's table in one command: this library and llama.cpp (node-llama-cpp, CPU only, same thread
 * count) on the same model.gguf of the 330M bench model (bench/bench-model.ts; made on first use, in
 * BF16 and Q8_0), each measure as a ratio ours / theirs:
 *   prefill tokens/s at 512- and 4,096-token prompts; decode tokens/s at 128 and 8,192 tokens of
 *   context; aggregate decode tokens/s of 8 concurrent streams;
 * plus our decode as a fraction of the memory-bandwidth limit (weight bytes read per token over the
 * read bandwidth of the same threads, measured in the same run), decode at 8k over decode at 128, and
 * 8 streams over 1. Ours runs with precision 'exact' (f32 activations; the default for float weights) and 'fast'
 * (activations rounded to the weights' dot-product type, as llama.cpp does).
 *
 *   npm --prefix bench/peer ci            # once: node-llama-cpp 3.21.1, apart from the library
 *   npm run bench:table [-- --type BF16|Q8_0|Q4_K|Q5_0|all --precision exact|fast|both --threads 2]
 *                       [--measures prefill512,prefill4096,decode128,decode8k,streams8 --runs 1]
 *
 * --measures keeps only the named rows (all five by default: `all` = BF16 and Q8_0); --runs repeats the
 * chosen rows, every engine once per run in the same process, and prints one table per run, e.g. the
 * quantized prefill check: --type Q8_0 --precision fast --measures prefill4096 --runs 3.
 */
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';

import { loadModel, type LoadOptions } from '../lib/index.js';
import { loadNative } from '../lib/native.js';
import { ensureTableModel, type BenchGgufType } from './bench-model.js';
import { oursOn, peerLlama, peerOn, weightBytesPerToken, type Engine, type PeerModel } from './engines.js';

const { values } = parseArgs({
  options: {
    threads: { type: 'string', default: String(os.availableParallelism()) },
    type: { type: 'string', default: 'all' },
    precision: { type: 'string', default: 'both' },
    measures: { type: 'string', default: 'prefill512,prefill4096,decode128,decode8k,streams8' },
    runs: { type: 'string', default: '1' },
  },
});
const threads = Number(values.threads);
const types: BenchGgufType[] = values.type === 'all' ? ['BF16', 'Q8_0'] : (values.type.split(',') as BenchGgufType[]);
const precisions: Array<'exact' | 'fast'> = values.precision === 'both' ? ['exact', 'fast'] : [values.precision as 'exact' | 'fast'];

function ours(gguf: string, precision: 'exact' | 'fast'): Engine {
  return async (prompt, decode, streams = 1) => {
    const options: LoadOptions = { threads, contextLength: 8192 + 256, maxSequences: 8, maxBatchTokens: 512, snapshotInterval: 0, precision };
    const model = await loadModel(gguf, options);
    try {
      return await oursOn(model)(prompt, decode, streams);
    } finally {
      await model.close();
    }
  };
}

const llama = await peerLlama();
const theirs = (peerModel: PeerModel): Engine => peerOn(peerModel, threads, 8192 + 256);

const ALL_MEASURES: Array<[string, string, (e: Engine) => Promise<number>]> = [
  ['prefill512', 'prefill tok/s, 512-token prompt', async (e) => (await e(512, 4)).prefill],
  ['prefill4096', 'prefill tok/s, 4,096-token prompt', async (e) => (await e(4096, 4)).prefill],
  ['decode128', 'decode tok/s at 128 tokens of context', async (e) => (await e(128, 128)).decode],
  ['decode8k', 'decode tok/s at 8,192 tokens of context', async (e) => (await e(8192, 64)).decode],
  ['streams8', '8 streams, aggregate decode tok/s', async (e) => (await e(128, 64, 8)).decode],
];
const wantedMeasures = values.measures.split(',');
for (const m of wantedMeasures) if (!ALL_MEASURES.some(([k]) => k === m)) throw new Error(`unknown measure ${m}: one of ${ALL_MEASURES.map(([k]) => k).join(', ')}`);
const MEASURES: Array<[string, (e: Engine) => Promise<number>]> = ALL_MEASURES.filter(([k]) => wantedMeasures.includes(k)).map(([, n, f]) => [n, f]);
const runs = Number(values.runs);
const fullTable = MEASURES.length === ALL_MEASURES.length;

// The read bandwidth is probed before each model and at the end, and the best probe is the limit: on a
// shared host one probe can land in a busy second (a first version probed once and once read 28 GB/s,
// below what our own decode then streamed).
const probes: number[] = [];
const probe = () => probes.push(loadNative()._measureReadBandwidth(512 * 1024 * 1024, threads) * 1e9);
probe();
console.log(`${os.cpus()[0]?.model ?? ''}, ${threads} threads`);
const summaries: string[] = [];
for (const type of types) {
  probe();
  const { gguf } = await ensureTableModel(type);
  const bytes = weightBytesPerToken(gguf);
  const peerModel = await llama.loadModel({ modelPath: gguf });
  const engines: Array<[string, Engine]> = [...precisions.map((p): [string, Engine] => [`ours ${p}`, ours(gguf, p)]), ['llama.cpp', theirs(peerModel)]];
  for (let run = 1; run <= runs; run++) {
    const table: number[][] = [];
    for (const [, measure] of MEASURES) {
      const row: number[] = [];
      for (const [, engine] of engines) row.push(await measure(engine));
      table.push(row);
    }
    const peer = engines.length - 1;
    console.log(`\n### ${type} (${path.relative(process.cwd(), gguf)}, ${(bytes / 1e6).toFixed(0)} MB of weights read per token)${runs > 1 ? `, run ${run} of ${runs}` : ''}\n`);
    console.log(`| measure | ${engines.map(([n]) => n).join(' | ')} | ${precisions.map((p) => `ours ${p} / llama.cpp`).join(' | ')} |`);
    console.log(`|---|${engines.map(() => '---:').join('|')}|${precisions.map(() => '---:').join('|')}|`);
    MEASURES.forEach(([name], i) => {
      const r = table[i]!;
      console.log(`| ${name} | ${r.map((v) => v.toFixed(1)).join(' | ')} | ${precisions.map((_, j) => (r[j]! / r[peer]!).toFixed(2)).join(' | ')} |`);
    });
    if (!fullTable) continue; // the summary needs every row
    summaries.push(`\n${type}:`);
    engines.forEach(([name], j) => {
      const d128 = table[2]![j]!;
      const d8k = table[3]![j]!;
      const s8 = table[4]![j]!;
      summaries.push(`- ${name}: decode at 128 = ${d128.toFixed(1)} tok/s x ${(bytes / 1e6).toFixed(0)} MB = BANDWIDTH:${d128 * bytes}; decode 8k / 128 = ${(d8k / d128).toFixed(2)}; 8 streams / 1 = ${(s8 / d128).toFixed(2)}`);
    });
  }
  await peerModel.dispose();
}
probe();
const bandwidth = Math.max(...probes);
console.log(`\nread bandwidth: ${(bandwidth / 1e9).toFixed(1)} GB/s, the best of ${probes.length} probes (${probes.map((b) => (b / 1e9).toFixed(1)).join(', ')}; ${threads} threads, 5 passes over 512 MiB each)`);
for (const line of summaries) {
  console.log(line.replace(/BANDWIDTH:([0-9.e+]+)/, (_, bps: string) => `${(Number(bps) / 1e9).toFixed(1)} GB/s, ${((100 * Number(bps)) / bandwidth).toFixed(0)} % of the limit`));
}
