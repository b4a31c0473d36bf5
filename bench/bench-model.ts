/** The benchmark model: ~118M parameters, the 9B's layer mix and proportions scaled down, bf16. Made once. */
import { existsSync } from 'node:fs';
import path from 'node:path';

import { makeTinyModel } from '../lib/index.js';

export const BENCH_MODEL_DIR = path.resolve(import.meta.dirname, 'models/bench-100m');

export async function ensureBenchModel(): Promise<string> {
  if (existsSync(path.join(BENCH_MODEL_DIR, 'config.json'))) return BENCH_MODEL_DIR;
  console.log(`creating ${BENCH_MODEL_DIR} ...`);
  await makeTinyModel(BENCH_MODEL_DIR, {
    seed: 2026,
    pattern: 'M-M-M*-M-M-M*-M-', // 7 Mamba, 2 attention, 7 MLP: the 9B's mix
    hiddenSize: 768,
    mambaNumHeads: 24,
    mambaHeadDim: 64,
    nGroups: 8,
    ssmStateSize: 128,
    convKernel: 4,
    chunkSize: 128,
    numAttentionHeads: 6,
    numKeyValueHeads: 2,
    headDim: 128,
    intermediateSize: 2688,
    vocabSize: 32768,
    maxPositionEmbeddings: 16384,
    dtype: 'bf16',
  });
  return BENCH_MODEL_DIR;
}
