/**
 * FP8 (ModelOpt E4M3, read in place) against BF16 decode on the CPU: the bench-100m shapes written twice,
 * as bf16 safetensors (bench/models/bench-100m) and as an FP8 checkpoint (bench/models/bench-100m-fp8:
 * the projections E4M3 with per-tensor scales; embeddings and lm_head bf16, as ModelOpt leaves them).
 * Per model and precision: a 64-token prompt, then `--decode` tokens one at a time; runs alternate
 * between the models so both see the same load of a shared host. Prints decode tokens/s (best of
 * `--runs`) and the weight bytes each decoded token reads (weight_bytes_read).
 *
 *   node --import tsx bench/fp8.ts [--decode 64] [--runs 3] [--threads 2]
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';

import { makeTinyModel } from '../lib/index.js';
import { loadNative } from '../lib/native.js';
import { BENCH_MODEL_DIR, ensureBenchModel } from './bench-model.js';

const { values } = parseArgs({ options: { decode: { type: 'string', default: '64' }, runs: { type: 'string', default: '3' }, threads: { type: 'string', default: '2' } } });
const DECODE = Number(values.decode);
const RUNS = Number(values.runs);
const THREADS = Number(values.threads);

const FP8_DIR = path.resolve(import.meta.dirname, 'models/bench-100m-fp8');

async function ensureFp8Model(): Promise<string> {
  if (existsSync(path.join(FP8_DIR, 'config.json'))) return FP8_DIR;
  console.log(`creating ${FP8_DIR} ...`);
  await makeTinyModel(FP8_DIR, {
    seed: 2026, pattern: 'M-M-M*-M-M-M*-M-', hiddenSize: 768, mambaNumHeads: 24, mambaHeadDim: 64, nGroups: 8, ssmStateSize: 128,
    convKernel: 4, chunkSize: 128, numAttentionHeads: 6, numKeyValueHeads: 2, headDim: 128, intermediateSize: 2688, vocabSize: 32768,
    maxPositionEmbeddings: 16384, dtype: 'bf16', fp8: true,
  });
  return FP8_DIR;
}

const native = loadNative();
const k = native._kernels;
const models = { bf16: await ensureBenchModel(), fp8: await ensureFp8Model() };
const prompt = Int32Array.from({ length: 64 }, (_, i) => 100 + ((i * 7919) % 30000));

interface Result { tokPerS: number; bytesPerToken: number }
const best: Record<string, Result> = {};
for (let run = 0; run < RUNS; run++) {
  for (const precision of ['exact', 'fast'] as const) {
    for (const [name, dir] of Object.entries(models)) {
      const e = await native.loadEngine(dir, { threads: THREADS, contextLength: 1024, maxSequences: 1, maxBatchTokens: 128, kvDtype: 'f16', cacheBytes: 0, precision });
      try {
        const s = e.createSequence();
        let logits = await e.evaluate(s, prompt, false);
        let next = 0;
        const bytes0 = k.weightBytesRead();
        const t0 = performance.now();
        for (let i = 0; i < DECODE; i++) {
          let arg = 0;
          for (let v = 1; v < logits.length; v++) if (logits[v]! > logits[arg]!) arg = v;
          next = arg;
          logits = await e.evaluate(s, Int32Array.of(next), false);
        }
        const secs = (performance.now() - t0) / 1000;
        const r = { tokPerS: DECODE / secs, bytesPerToken: (k.weightBytesRead() - bytes0) / DECODE };
        const key = `${name} ${precision}`;
        if (!best[key] || r.tokPerS > best[key].tokPerS) best[key] = r;
        e.freeSequence(s);
      } finally {
        e.close();
      }
    }
  }
}
console.log(`decode after a 64-token prompt, ${DECODE} tokens, best of ${RUNS}, ${THREADS} threads (${path.basename(BENCH_MODEL_DIR)} shapes)`);
console.log('| weights, precision | decode tok/s | weight MB read per token |');
console.log('|---|---|---|');
for (const [key, r] of Object.entries(best)) console.log(`| ${key} | ${r.tokPerS.toFixed(1)} | ${(r.bytesPerToken / 1e6).toFixed(1)} |`);
