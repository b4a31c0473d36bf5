/**
 * Issue #12 item 2, "weights at memory speed": LoadOptions.weights 'mmap' against 'memory' on the 330M
 * bench model (bench/bench-model.ts), interleaved (mmap, memory, mmap, memory, ...) so that a shared
 * host's load drifts over both alike. Per round and placement:
 *  - the read bandwidth of the weights where they are placed (addon _measureWeightsReadBandwidth:
 *    the checkpoint's matrices, as decode splits them over --threads threads, best of 5 passes), the
 *    placement's time and how many bytes ended in 2 MiB pages;
 *  - loadModel's wall time, then decode tokens/s (greedy, --decode tokens after a --prompt-token
 *    prompt, end tokens banned);
 *  - plain memory's read bandwidth (_measureReadBandwidth, 512 MiB) once per round, for reference.
 * Prints every round and the median [min-max] of each figure.
 *
 *   npm run bench:weights -- [--type BF16|Q8_0] [--format gguf|safetensors] [--rounds 5] [--threads N]
 *                            [--prompt 128] [--decode 128] [--precision exact|fast]
 */
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';

import { loadModel } from '../lib/index.js';
import { loadNative } from '../lib/native.js';
import { ensureTableModel, type BenchGgufType } from './bench-model.js';

const { values } = parseArgs({
  options: {
    type: { type: 'string', default: 'BF16' },
    format: { type: 'string', default: 'gguf' },
    rounds: { type: 'string', default: '5' },
    threads: { type: 'string', default: String(os.availableParallelism()) },
    prompt: { type: 'string', default: '128' },
    decode: { type: 'string', default: '128' },
    precision: { type: 'string', default: 'exact' },
  },
});
const threads = Number(values.threads);
const rounds = Number(values.rounds);
const precision = values.precision as 'exact' | 'fast';
const { dir, gguf } = await ensureTableModel(values.type as BenchGgufType);
const target = values.format === 'safetensors' ? dir : gguf;
const ids = (n: number) => Array.from({ length: n }, (_, i) => 21 + ((i * 7919) % 30000));
const noEnd = { 12: -100, 2: -100 };
const native = loadNative();

type Placement = 'mmap' | 'memory';
interface Row { readGBps: number; placeMs: number; hugeMiB: number; loadMs: number; decode: number; prefill: number }
const rows: Record<Placement, Row[]> = { mmap: [], memory: [] };
const plain: number[] = [];

console.log(`${target} (${values.type}, ${values.format}), ${threads} threads, ${precision}, prompt ${values.prompt}, decode ${values.decode}, ${rounds} rounds`);
for (let r = 1; r <= rounds; r++) {
  plain.push(native._measureReadBandwidth(512 * 1024 * 1024, threads));
  for (const weights of ['mmap', 'memory'] as const) {
    const probe = native._measureWeightsReadBandwidth(target, weights, threads);
    const t0 = performance.now();
    const model = await loadModel(target, { threads, weights, precision, contextLength: 4096, maxSequences: 1, snapshotInterval: 0 });
    const loadMs = performance.now() - t0;
    try {
      const res = await model.generate({ prompt: ids(Number(values.prompt)), maxTokens: Number(values.decode), temperature: 0, logitBias: noEnd });
      const row: Row = {
        readGBps: probe.gbps,
        placeMs: probe.placeMs,
        hugeMiB: (probe.anonHugeBytes + probe.filePmdBytes) / 2 ** 20,
        loadMs,
        decode: res.timings.decodeTokensPerSecond,
        prefill: res.timings.prefillTokensPerSecond,
      };
      rows[weights].push(row);
      console.log(
        `round ${r} ${weights.padEnd(6)} read ${row.readGBps.toFixed(1)} GB/s of ${(probe.bytes / 1e6).toFixed(0)} MB ` +
          `(place ${row.placeMs.toFixed(0)} ms, ${row.hugeMiB.toFixed(0)} MiB in 2 MiB pages), ` +
          `load ${row.loadMs.toFixed(0)} ms, prefill ${row.prefill.toFixed(1)} tok/s, decode ${row.decode.toFixed(1)} tok/s` +
          `; plain memory ${plain[plain.length - 1]!.toFixed(1)} GB/s`,
      );
    } finally {
      await model.close();
    }
  }
}

const med = (a: number[]) => {
  const s = [...a].sort((x, y) => x - y);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const fmt = (a: number[], d = 1) => `${med(a).toFixed(d)} [${Math.min(...a).toFixed(d)}-${Math.max(...a).toFixed(d)}]`;
console.log(`\nmedian [min-max] over ${rounds} interleaved rounds (${path.basename(path.dirname(target))}):`);
for (const k of ['readGBps', 'placeMs', 'hugeMiB', 'loadMs', 'prefill', 'decode'] as const) {
  const a = rows.mmap.map((x) => x[k]);
  const b = rows.memory.map((x) => x[k]);
  console.log(`  ${k.padEnd(9)} mmap ${fmt(a).padEnd(24)} memory ${fmt(b).padEnd(24)} memory/mmap ${(med(b) / med(a)).toFixed(3)}`);
}
console.log(`  plain memory read: ${fmt(plain)} GB/s`);
