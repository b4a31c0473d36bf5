/**
 * Writes test/fixtures/q5/NAME.llama-cpp.json: llama.cpp's log-probabilities (through node-llama-cpp
 * 3.21.1 in bench/peer, CPU, F32 KV cache) at every position of a prompt, on a Q5_0 / Q5_1 GGUF (and a
 * Q4_K + Q5_0 mix, llama-quantize's layout for widths 256 does not divide) of a random tiny model that
 * makeTinyModel writes deterministically from the options stored in the fixture. test/kernels/quant-q5.test.ts
 * rebuilds the model from those options and compares.
 *
 *   npm --prefix bench/peer ci && node --import tsx bench/q5-llama-golden.ts
 */
import path from 'node:path';

import type { TinyModelOptions } from '../lib/index.js';
import { writeLlamaCppGolden, type GoldenCase } from './llama-golden.js';

const base: TinyModelOptions = { seed: 31, dtype: 'f32', format: 'gguf', pattern: 'M*M-M*', vocabSize: 512, chunkSize: 8 };
export const Q5_GOLDEN: GoldenCase[] = [
  { name: 'tiny-q5_0', options: { ...base, ggufType: 'Q5_0' }, tokens: [1, 17, 204, 33, 5, 99, 310, 42, 7, 150, 3, 64, 480, 11, 250, 91] },
  { name: 'tiny-q5_1', options: { ...base, seed: 32, ggufType: 'Q5_1' }, tokens: [1, 400, 12, 77, 301, 8, 8, 190, 45, 3, 222, 19] },
  {
    name: 'tiny-q4_k-mix',
    // hidden 96 and MLP 288 take Q5_0; d_inner 256 and q_dim 256 take Q4_K.
    options: { ...base, seed: 33, ggufType: 'Q4_K', ggufFallback: 'quantize', hiddenSize: 96, mambaNumHeads: 8, mambaHeadDim: 32, headDim: 64, intermediateSize: 288 },
    tokens: [1, 5, 6, 7, 300, 301, 302, 44, 45, 46, 100, 511],
  },
];

if (import.meta.url === `file://${process.argv[1]}`) {
  await writeLlamaCppGolden(Q5_GOLDEN, path.resolve(import.meta.dirname, '../test/fixtures/q5'), (g) => `llama.cpp (nemotron_h, through node-llama-cpp 3.21.1, CPU, F32 KV cache) on the ${g.options.ggufType} GGUF makeTinyModel writes from \`options\`: per-position log-probabilities over the whole vocabulary`);
  process.exit(0);
}
