/**
 * Issue #12 item 2, "weights at memory speed": LoadOptions.weights 'mmap' against 'memory' on the 330M
 * bench model (bench/bench-model.ts). A shared host's memory bandwidth drifts by 3x within minutes, so
 * the comparisons alternate the two placements closely, with both loaded at once:
 *  1. placement cost: the time to place (copy) the weights, loadModel's wall time and how many bytes
 *     ended in 2 MiB pages, per placement (addon _measureWeightsReadBandwidth);
 *  2. read bandwidth of the checkpoint's matrices where they are placed, each split over --threads
 *     threads as decode splits them: 10 x --rounds single passes, mmap and memory alternating;
 *     and the same with one T = 1 matmul per matrix per pass (decode's weight stream, no other work);
 *  3. decode and prefill tokens/s (greedy, --decode tokens after a --prompt-token prompt, end tokens
 *     banned): 2 x --rounds generate calls per placement, alternating, with plain memory's read
 *     bandwidth (_measureReadBandwidth) sampled in between.
 * Ratios are taken per adjacent pair; medians [min-max] are printed.
 *
 *   npm run bench:weights -- [--type BF16|Q8_0] [--format gguf|safetensors] [--rounds 5] [--threads N]
 *                            [--prompt 128] [--decode 128] [--precision exact|fast] [--gguf PATH]
 *
 * --gguf runs it on another GGUF instead (e.g. the 9B shape of bench:make-9b: both placements of its
 * 9.45 GB Q8_0 file loaded at once need ~19 GB of memory).
 */
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';

import { loadModel } from '../lib/index.js';
import { loadNative } from '../lib/native.js';
import { ensureTableModel, type BenchGgufType } from './bench-model.js';
import { ids, noEnd } from './engines.js';

const { values } = parseArgs({
  options: {
    type: { type: 'string', default: 'BF16' },
    format: { type: 'string', default: 'gguf' },
    rounds: { type: 'string', default: '5' },
    threads: { type: 'string', default: String(os.availableParallelism()) },
    prompt: { type: 'string', default: '128' },
    decode: { type: 'string', default: '128' },
    precision: { type: 'string', default: 'exact' },
    gguf: { type: 'string' },
  },
});
const threads = Number(values.threads);
const rounds = Number(values.rounds);
const precision = values.precision as 'exact' | 'fast';
const { dir, gguf } = values.gguf ? { dir: '', gguf: values.gguf } : await ensureTableModel(values.type as BenchGgufType);
const target = values.format === 'safetensors' ? dir : gguf;
const native = loadNative();

type Placement = 'mmap' | 'memory';
const med = (a: number[]) => {
  const s = [...a].sort((x, y) => x - y);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const fmt = (a: number[], d = 1) => `${med(a).toFixed(d)} [${Math.min(...a).toFixed(d)}-${Math.max(...a).toFixed(d)}]`;

console.log(`${target} (${values.gguf ? 'gguf' : `${values.type}, ${values.format}`}), ${threads} threads, ${precision}, prompt ${values.prompt}, decode ${values.decode}, ${rounds} rounds`);

// 1. What placement costs: the copy (place), loadModel's wall time, how much ends in 2 MiB pages.
const cost: Record<Placement, { placeMs: number[]; loadMs: number[]; hugeMiB: number[]; single: number[] }> = {
  mmap: { placeMs: [], loadMs: [], hugeMiB: [], single: [] },
  memory: { placeMs: [], loadMs: [], hugeMiB: [], single: [] },
};
for (let r = 0; r < Math.min(rounds, 3); r++) {
  for (const weights of ['mmap', 'memory'] as const) {
    const probe = native._measureWeightsReadBandwidth(target, weights, threads);
    cost[weights].placeMs.push(probe.placeMs);
    cost[weights].hugeMiB.push((probe.anonHugeBytes + probe.filePmdBytes) / 2 ** 20);
    cost[weights].single.push(probe.gbps);
    const t0 = performance.now();
    const model = await loadModel(target, { threads, weights, precision, contextLength: 4096, maxSequences: 1, snapshotInterval: 0 });
    cost[weights].loadMs.push(performance.now() - t0);
    await model.close();
  }
}
console.log('\nplacement cost (median [min-max]):');
for (const p of ['mmap', 'memory'] as const) {
  const c = cost[p];
  console.log(`  ${p.padEnd(6)} place ${fmt(c.placeMs)} ms, loadModel ${fmt(c.loadMs)} ms, in 2 MiB pages ${fmt(c.hugeMiB, 0)} MiB, read (own pass, best of 5) ${fmt(c.single)} GB/s`);
}

// 2. Read bandwidth of the weights as placed: both placements loaded at once, single passes alternated.
const both = native._measureWeightsReadBandwidth(target, 'both', threads, 10 * rounds);
const readRatio = both.memory.map((m, i) => m / both.mmap[i]!);
console.log(`\nread bandwidth of the ${(both.bytes / 1e6).toFixed(0)} MB of matrices, ${both.mmap.length} alternating pass pairs, ${threads} threads:`);
console.log(`  mmap ${fmt(both.mmap)} GB/s, memory ${fmt(both.memory)} GB/s, memory/mmap per pair ${fmt(readRatio, 3)}`);

// 2b. The decode product alone (T = 1 with every matrix, exact), the same alternation.
const mm = native._measureWeightsReadBandwidth(target, 'both', threads, 10 * rounds, 'matmul');
const mmRatio = mm.memory.map((m, i) => m / mm.mmap[i]!);
console.log(`decode product (T = 1, every matrix), ${mm.mmap.length} alternating pass pairs:`);
console.log(`  mmap ${fmt(mm.mmap)} GB/s, memory ${fmt(mm.memory)} GB/s, memory/mmap per pair ${fmt(mmRatio, 3)}`);

// 3. Decode: both models loaded at once, generate calls alternated (mmap, memory, mmap, ...).
const models = {
  mmap: await loadModel(target, { threads, weights: 'mmap', precision, contextLength: 4096, maxSequences: 1, snapshotInterval: 0 }),
  memory: await loadModel(target, { threads, weights: 'memory', precision, contextLength: 4096, maxSequences: 1, snapshotInterval: 0 }),
};
const dec: Record<Placement, number[]> = { mmap: [], memory: [] };
const pre: Record<Placement, number[]> = { mmap: [], memory: [] };
const plain: number[] = [];
try {
  for (let r = 0; r < 2 * rounds; r++) {
    if (r % 2 === 0) plain.push(native._measureReadBandwidth(256 * 1024 * 1024, threads));
    for (const p of (r % 2 ? ['memory', 'mmap'] : ['mmap', 'memory']) as Placement[]) {
      const res = await models[p].generate({ prompt: ids(Number(values.prompt)), maxTokens: Number(values.decode), temperature: 0, logitBias: noEnd });
      dec[p].push(res.timings.decodeTokensPerSecond);
      pre[p].push(res.timings.prefillTokensPerSecond);
    }
  }
} finally {
  await models.mmap.close();
  await models.memory.close();
}
const decRatio = dec.memory.map((m, i) => m / dec.mmap[i]!);
const preRatio = pre.memory.map((m, i) => m / pre.mmap[i]!);
console.log(`\ndecode and prefill, ${dec.mmap.length} alternating generate pairs (order flipped every other pair):`);
console.log(`  decode tok/s  mmap ${fmt(dec.mmap)}, memory ${fmt(dec.memory)}, memory/mmap per pair ${fmt(decRatio, 3)}`);
console.log(`  prefill tok/s mmap ${fmt(pre.mmap)}, memory ${fmt(pre.memory)}, memory/mmap per pair ${fmt(preRatio, 3)}`);
console.log(`  plain memory read (_measureReadBandwidth, 256 MiB) during the pairs: ${fmt(plain)} GB/s`);
