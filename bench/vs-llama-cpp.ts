/**
 * This library against llama.cpp (through node-llama-cpp, CPU only) on the same weights, same thread
 * count, same weight type, measured in one run: prefill tokens/s on a 512-token prompt, decode tokens/s
 * after it, and each as a ratio ours / theirs. The bench model (~118M parameters, the 9B's block mix) is
 * written once in both formats from the same values: safetensors for us, GGUF for llama.cpp (and GGUF
 * for us too, to show both loaders give the same speed).
 *
 *   npm --prefix bench/peer ci          # once: installs node-llama-cpp 3.21.1 apart from the library
 *   npm run bench:llama-cpp [-- --type BF16|Q8_0|Q5_0 --threads 2 --prompt 512 --decode 128]
 */
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';

import { loadModel, makeTinyModel } from '../lib/index.js';

const { values } = parseArgs({
  options: {
    threads: { type: 'string', default: String(os.availableParallelism()) },
    type: { type: 'string', default: 'BF16' },
    prompt: { type: 'string', default: '512' },
    decode: { type: 'string', default: '128' },
  },
});
const threads = Number(values.threads);
const type = values.type as 'BF16' | 'Q8_0' | 'Q5_0';
const promptLen = Number(values.prompt);
const decodeLen = Number(values.decode);

const dir = path.resolve(import.meta.dirname, `models/bench-100m-${type.toLowerCase()}`);
if (!existsSync(path.join(dir, 'model.gguf'))) {
  console.log(`creating ${dir} ...`);
  await makeTinyModel(dir, {
    seed: 2026, pattern: 'M-M-M*-M-M-M*-M-', hiddenSize: 768, mambaNumHeads: 24, mambaHeadDim: 64, nGroups: 8,
    ssmStateSize: 128, convKernel: 4, chunkSize: 128, numAttentionHeads: 6, numKeyValueHeads: 2, headDim: 128,
    intermediateSize: 2688, vocabSize: 32768, maxPositionEmbeddings: 16384, dtype: 'bf16', format: 'gguf', ggufType: type,
  });
}
const prompt = Array.from({ length: promptLen }, (_, i) => 21 + ((i * 7919) % 30000));

// ---- ours -------------------------------------------------------------------------------------------
async function ours(modelPath: string): Promise<{ prefill: number; decode: number }> {
  const model = await loadModel(modelPath, { threads, maxBatchTokens: 512, contextLength: 4096, kvDtype: 'f16' });
  let prefill = 0;
  let decode = 0;
  for (let run = 0; run < 3; run++) {
    const r = await model.generate({ prompt, maxTokens: decodeLen, temperature: 0, logitBias: { 12: -100, 2: -100 } });
    prefill = Math.max(prefill, r.timings.prefillTokensPerSecond);
    decode = Math.max(decode, r.timings.decodeTokensPerSecond);
  }
  await model.close();
  return { prefill, decode };
}

// ---- llama.cpp ----------------------------------------------------------------------------------------
// The few node-llama-cpp calls used here (it lives in bench/peer, outside the library's dependencies).
interface PeerSequence { evaluate(tokens: number[], o: { temperature: number }): AsyncIterable<number> }
interface PeerContext { getSequence(): PeerSequence; dispose(): Promise<void> }
interface PeerModel { createContext(o: object): Promise<PeerContext>; dispose(): Promise<void> }
interface PeerLlama { loadModel(o: { modelPath: string }): Promise<PeerModel> }

async function theirs(ggufPath: string): Promise<{ prefill: number; decode: number }> {
  const peer = path.resolve(import.meta.dirname, 'peer/node_modules/node-llama-cpp/dist/index.js');
  if (!existsSync(peer)) throw new Error('node-llama-cpp is not installed: run `npm --prefix bench/peer ci` first');
  const { getLlama } = (await import(peer)) as { getLlama: (o: object) => Promise<PeerLlama> };
  const llama = await getLlama({ gpu: false, build: 'never', logLevel: 'error' as never });
  const model = await llama.loadModel({ modelPath: ggufPath });
  let prefill = 0;
  let decode = 0;
  for (let run = 0; run < 3; run++) {
    const ctx = await model.createContext({ contextSize: 4096, threads, batchSize: 512, sequences: 1 });
    const seq = ctx.getSequence();
    const t0 = performance.now();
    let t1 = 0;
    let n = 0;
    for await (const _ of seq.evaluate(prompt, { temperature: 0 })) {
      if (n === 0) t1 = performance.now();
      if (++n > decodeLen) break;
    }
    const t2 = performance.now();
    prefill = Math.max(prefill, (promptLen * 1000) / (t1 - t0));
    decode = Math.max(decode, ((n - 1) * 1000) / (t2 - t1));
    await ctx.dispose();
  }
  await model.dispose();
  return { prefill, decode };
}

const a = await ours(dir);
const b = await theirs(path.join(dir, 'model.gguf'));
const c = await ours(path.join(dir, 'model.gguf'));
// The ratio compares the same file: ours loading model.gguf against llama.cpp loading it.
const row = (k: string, x: number, y: number, z: number) =>
  console.log(`${k.padEnd(26)}${x.toFixed(1).padStart(12)}${z.toFixed(1).padStart(14)}${y.toFixed(1).padStart(14)}${(z / y).toFixed(2).padStart(12)}`);
console.log(`weights ${type}, ${threads} threads, prompt ${promptLen}, decode ${decodeLen} (${os.cpus()[0]?.model ?? ''})`);
console.log(`${''.padEnd(26)}${'ours (bf16 st)'.padStart(12)}${'ours (gguf)'.padStart(14)}${'llama.cpp'.padStart(14)}${'ours/theirs'.padStart(12)}`);
row('prefill tokens/s', a.prefill, b.prefill, c.prefill);
row('decode tokens/s', a.decode, b.decode, c.decode);
