/**
 * llama.cpp's log-probabilities (node-llama-cpp 3.21.1 in bench/peer, CPU, F32 KV cache) at every position
 * of a prompt, on the GGUF makeTinyModel writes deterministically from each entry's options: the writer
 * behind the test/fixtures/<set>/NAME.llama-cpp.json fixtures (bench/moe-llama-golden.ts,
 * bench/q5-llama-golden.ts). The tests rebuild each model from the stored options and compare.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { makeTinyModel, type TinyModelOptions } from '../lib/index.js';

export interface GoldenCase {
  name: string;
  options: TinyModelOptions;
  tokens: number[];
}

/** Writes `<outDir>/<name>.llama-cpp.json` for every case; `description(g)` says what the fixture is. */
export async function writeLlamaCppGolden(cases: GoldenCase[], outDir: string, description: (g: GoldenCase) => string): Promise<void> {
  const peer = path.resolve(import.meta.dirname, 'peer/node_modules/node-llama-cpp/dist/index.js');
  const { getLlama } = (await import(peer)) as { getLlama: (o: object) => Promise<any> };
  const llama = await getLlama({ gpu: false, build: 'never', logLevel: 'error' });
  mkdirSync(outDir, { recursive: true });
  for (const g of cases) {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'llama-golden-'));
    await makeTinyModel(dir, g.options);
    const model = await llama.loadModel({ modelPath: path.join(dir, 'model.gguf') });
    const ctx = await model.createContext({ contextSize: 256, threads: 2, batchSize: 256, sequences: 1, experimentalKvCacheKeyType: 'F32', experimentalKvCacheValueType: 'F32' });
    const seq = ctx.getSequence();
    const out = await seq.controlledEvaluate(g.tokens.map((t) => [t, { generateNext: { probabilities: true } }]));
    const V = g.options.vocabSize ?? 512;
    const positions = out.map((o: any) => {
      const lp = new Array<number>(V).fill(-Infinity);
      for (const [tok, p] of o.next.probabilities as Map<number, number>) lp[tok] = Math.log(p);
      return { logprobs: lp };
    });
    const file = path.join(outDir, `${g.name}.llama-cpp.json`);
    writeFileSync(file, JSON.stringify({ description: description(g), options: g.options, tokens: g.tokens, positions }) + '\n');
    console.log(`wrote ${file}`);
    await ctx.dispose();
    await model.dispose();
    rmSync(dir, { recursive: true, force: true });
  }
}
