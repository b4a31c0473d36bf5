/**
 * Writes test/fixtures/moe/NAME.llama-cpp.json: llama.cpp's log-probabilities (its `nemotron_h_moe`
 * implementation, through node-llama-cpp 3.21.1 in bench/peer, CPU, F32 KV cache) at every position of a prompt, on
 * the F32 GGUF of a random tiny MoE model that makeTinyModel writes deterministically from the options
 * stored in the fixture. test/engine/moe.test.ts rebuilds the model from those options and compares.
 *
 *   npm --prefix bench/peer ci && node --import tsx bench/moe-llama-golden.ts
 */
import { writeFileSync } from 'node:fs';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { makeTinyModel, type TinyModelOptions } from '../lib/index.js';

export const MOE_GOLDEN: Array<{ name: string; options: TinyModelOptions; tokens: number[] }> = [
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
  const peer = path.resolve(import.meta.dirname, 'peer/node_modules/node-llama-cpp/dist/index.js');
  const { getLlama } = (await import(peer)) as { getLlama: (o: object) => Promise<any> };
  const llama = await getLlama({ gpu: false, build: 'never', logLevel: 'error' });
  for (const g of MOE_GOLDEN) {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'moe-golden-'));
    await makeTinyModel(dir, g.options);
    const model = await llama.loadModel({ modelPath: path.join(dir, 'model.gguf') });
    const ctx = await model.createContext({ contextSize: 256, threads: 2, batchSize: 256, sequences: 1, experimentalKvCacheKeyType: 'F32', experimentalKvCacheValueType: 'F32' });
    const seq = ctx.getSequence();
    const out = await seq.controlledEvaluate(g.tokens.map((t) => [t, { generateNext: { probabilities: true } }]));
    const V = 512;
    const positions = out.map((o: any) => {
      const lp = new Array<number>(V).fill(-Infinity);
      for (const [tok, p] of o.next.probabilities as Map<number, number>) lp[tok] = Math.log(p);
      return { logprobs: lp };
    });
    const file = path.resolve(import.meta.dirname, `../test/fixtures/moe/${g.name}.llama-cpp.json`);
    writeFileSync(file, JSON.stringify({ description: "llama.cpp (nemotron_h_moe, through node-llama-cpp 3.21.1, CPU, F32 KV cache) on the F32 GGUF makeTinyModel writes from `options`: per-position log-probabilities over the whole vocabulary", options: g.options, tokens: g.tokens, positions }) + '\n');
    console.log(`wrote ${file}`);
    await ctx.dispose();
    await model.dispose();
    rmSync(dir, { recursive: true, force: true });
  }
  process.exit(0);
}
