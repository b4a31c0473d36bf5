/**
 * The benchmark models, random weights, made once under bench/models/ (speed does not depend on the
 * weights' values):
 *
 *  - `bench-100m`: ~118M parameters, bf16 safetensors, 16 layers with the 9B's block mix, hidden 768.
 *    Quick: the throughput, concurrency and chat-turn benches use it.
 *  - `bench-330m-<type>`: ~330M parameters, the 9B's layer pattern halved (28 layers: 14 Mamba, 2
 *    attention, 12 MLP) and its proportions scaled to hidden 1024 (Mamba 2x expansion, 64-wide heads,
 *    8 groups, state 128; MLP 3.5x; 8 query / 2 KV heads of 128), vocabulary 49,152. Written as bf16
 *    safetensors plus model.gguf of the given type (BF16, Q8_0, Q4_K or Q5_0) from the same values. Issue #5's
 *    table (bench/table.ts) runs on it, against llama.cpp on the same model.gguf.
 */
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

// Q5_0: the type most of a llama-quantize Q4_K_M file of the 9B is (its widths are not multiples of
// 256); the 330M model's widths are, so its Q5_0 file is Q5_0 throughout (made only on request).
export type BenchGgufType = 'BF16' | 'Q8_0' | 'Q4_K' | 'Q5_0';

/** The 330M model's folder (bf16 safetensors + model.gguf of `type`), made on first use. */
export async function ensureTableModel(type: BenchGgufType): Promise<{ dir: string; gguf: string }> {
  const dir = path.resolve(import.meta.dirname, `models/bench-330m-${type.toLowerCase()}`);
  const gguf = path.join(dir, 'model.gguf');
  if (!existsSync(gguf)) {
    console.log(`creating ${dir} ...`);
    await makeTinyModel(dir, {
      seed: 2027,
      pattern: 'M-M-M-MM-M*-M-M-M*-M-M-MM-M-', // the 9B's 56-layer pattern halved
      hiddenSize: 1024,
      mambaNumHeads: 32,
      mambaHeadDim: 64,
      nGroups: 8,
      ssmStateSize: 128,
      convKernel: 4,
      chunkSize: 128,
      numAttentionHeads: 8,
      numKeyValueHeads: 2,
      headDim: 128,
      intermediateSize: 3584,
      vocabSize: 49152,
      maxPositionEmbeddings: 16384,
      dtype: 'bf16',
      format: 'gguf',
      ggufType: type,
    });
  }
  return { dir, gguf };
}
