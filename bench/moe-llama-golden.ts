/**
 * Writes test/fixtures/moe/NAME.llama-cpp.json: llama.cpp's log-probabilities (its `nemotron_h_moe`
 * implementation, through node-llama-cpp 3.21.1 in bench/peer, CPU, F32 KV cache) at every position of a prompt, on
 * the F32 GGUF of a random tiny MoE model that makeTinyModel writes deterministically from the options
 * stored in the fixture. test/engine/moe.test.ts rebuilds the model from those options and compares.
 *
 *   npm --prefix bench/peer ci && node --import tsx bench/moe-llama-golden.ts
 */
import path from 'node:path';

import { writeLlamaCppGolden, type GoldenCase } from './llama-golden.js';

export const MOE_GOLDEN: GoldenCase[] = [
  {
    name: 'tiny-moe-a',
    options: { seed: 21, dtype: 'f32', format: 'gguf', pattern: 'ME*EME', hiddenSize: 64, mambaNumHeads: 4, mambaHeadDim: 16, nGroups: 2, ssmStateSize: 16, chunkSize: 8, vocabSize: 512, nRoutedExperts: 8, numExpertsPerTok: 2 },
    tokens: [1, 17, 204, 33, 5, 99, 310, 42, 7, 150, 3, 64, 480, 11, 250, 91],
  },
  {
    name: 'tiny-moe-b',
    options: { seed: 22, dtype: 'f32', format: 'gguf', pattern: 'EM*E', hiddenSize: 64, mambaNumHeads: 4, mambaHeadDim: 16, nGroups: 2, ssmStateSize: 16, chunkSize: 8, vocabSize: 512, nRoutedExperts: 16, numExpertsPerTok: 6, moeIntermediateSize: 16, moeSharedExpertIntermediateSize: 32, normTopkProb: false, routedScalingFactor: 1.5 },
    tokens: [1, 400, 12, 77, 301, 8, 8, 190, 45, 3, 222, 19],
  },
];

if (import.meta.url === `file://${process.argv[1]}`) {
  await writeLlamaCppGolden(MOE_GOLDEN, path.resolve(import.meta.dirname, '../test/fixtures/moe'), () => "llama.cpp (nemotron_h_moe, through node-llama-cpp 3.21.1, CPU, F32 KV cache) on the F32 GGUF makeTinyModel writes from `options`: per-position log-probabilities over the whole vocabulary");
  process.exit(0);
}
