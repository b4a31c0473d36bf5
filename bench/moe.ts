/**
 * Mixture-of-experts bench (issue #19): a scaled-down Nemotron 3 Nano (the 30B-A3B's block mix and
 * routing — 6 of the experts per token, one shared expert, sigmoid routing scaled by 2.5 — at hidden 1024),
 * written once as safetensors and as a `nemotron_h_moe` GGUF from the same values. Reports, for ours and
 * (when bench/peer is installed) llama.cpp on the same GGUF, prefill tokens/s on a 512-token prompt and
 * decode tokens/s; and the bytes of weights ours reads per decoded token against the active-parameter bytes
 * (every weight a token uses: the dense layers, the router, its 6 experts and the shared expert, lm_head).
 *
 *   npm --prefix bench/peer ci          # once, for the llama.cpp column
 *   node --import tsx bench/moe.ts [--threads 2 --prompt 512 --decode 64 --type BF16|Q8_0]
 */
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';

import { activeParameterCount, loadModel, makeTinyModel } from '../lib/index.js';
import { loadNative } from '../lib/native.js';

const { values } = parseArgs({
  options: {
    threads: { type: 'string', default: '2' },
    type: { type: 'string', default: 'BF16' },
    prompt: { type: 'string', default: '512' },
    decode: { type: 'string', default: '64' },
    runs: { type: 'string', default: '3' },
  },
});
const threads = Number(values.threads);
const type = values.type as 'BF16' | 'Q8_0';
const promptLen = Number(values.prompt);
const decodeLen = Number(values.decode);
const runs = Number(values.runs);

const dir = path.resolve(import.meta.dirname, `models/bench-moe-${type.toLowerCase()}`);
if (!existsSync(path.join(dir, 'model.gguf'))) {
  console.log(`creating ${dir} ...`);
  await makeTinyModel(dir, {
    seed: 2027, pattern: 'MEMEM*EMEMEM*EME', hiddenSize: 1024, mambaNumHeads: 16, mambaHeadDim: 64, nGroups: 8,
    ssmStateSize: 128, convKernel: 4, chunkSize: 128, numAttentionHeads: 8, numKeyValueHeads: 2, headDim: 128,
    nRoutedExperts: 32, numExpertsPerTok: 6, moeIntermediateSize: 512, moeSharedExpertIntermediateSize: 1024,
    routedScalingFactor: 2.5, vocabSize: 32768, maxPositionEmbeddings: 16384, dtype: 'bf16', format: 'gguf', ggufType: type,
  });
}
const prompt = Array.from({ length: promptLen }, (_, i) => 21 + ((i * 7919) % 30000));
const kernels = loadNative()._kernels;

// ---- ours -------------------------------------------------------------------------------------------
async function ours(modelPath: string): Promise<{ prefill: number; decode: number; bytesPerToken: number; active: number; tokens: number[] }> {
  const model = await loadModel(modelPath, { threads, maxBatchTokens: 512, contextLength: 4096, kvDtype: 'f16' });
  let prefill = 0;
  let decode = 0;
  let tokens: number[] = [];
  for (let run = 0; run < runs; run++) {
    // prefill: the wall time of evaluating the prompt (its last position's logits)
    const p = prompt.map((t) => t + run);
    const t0 = performance.now();
    await model.evaluate(p, { logits: 'last' });
    prefill = Math.max(prefill, (promptLen * 1000) / (performance.now() - t0));
    const r = await model.generate({ prompt: p.map((t) => t + 1), maxTokens: decodeLen, temperature: 0, logitBias: { 12: -100, 2: -100 } });
    decode = Math.max(decode, r.timings.decodeTokensPerSecond);
    if (run === 0) tokens = (await model.generate({ prompt, maxTokens: 16, temperature: 0, logitBias: { 12: -100, 2: -100 } })).tokens;
  }
  // Bytes per token: a one-token prompt and N tokens are N forward steps of one token each.
  const before = kernels.weightBytesRead();
  const r = await model.generate({ prompt: [77], maxTokens: decodeLen, temperature: 0, logitBias: { 12: -100, 2: -100 } });
  const bytesPerToken = (kernels.weightBytesRead() - before) / r.tokens.length;
  // model.info.config carries the planner's camelCase keys (lib/memory.ts resolveConfig reads them)
  const active = activeParameterCount(model.info.config as unknown as Record<string, unknown>) * (type === 'BF16' ? 2 : 34 / 32);
  await model.close();
  return { prefill, decode, bytesPerToken, active, tokens };
}

// ---- llama.cpp ----------------------------------------------------------------------------------------
interface PeerSequence { evaluate(tokens: number[], o: { temperature: number }): AsyncIterable<number> }
interface PeerContext { getSequence(): PeerSequence; dispose(): Promise<void> }
interface PeerModel { createContext(o: object): Promise<PeerContext>; dispose(): Promise<void> }
interface PeerLlama { loadModel(o: { modelPath: string }): Promise<PeerModel> }

async function theirs(ggufPath: string): Promise<{ prefill: number; decode: number; tokens: number[] } | string> {
  const peer = path.resolve(import.meta.dirname, 'peer/node_modules/node-llama-cpp/dist/index.js');
  if (!existsSync(peer)) return 'not installed (npm --prefix bench/peer ci)';
  try {
    const { getLlama } = (await import(peer)) as { getLlama: (o: object) => Promise<PeerLlama> };
    const llama = await getLlama({ gpu: false, build: 'never', logLevel: 'error' as never });
    const model = await llama.loadModel({ modelPath: ggufPath });
    let prefill = 0;
    let decode = 0;
    const tokens: number[] = [];
    {
      // greedy continuation of the unshifted prompt, to compare with ours (a correctness check)
      const ctx = await model.createContext({ contextSize: 4096, threads, batchSize: 512, sequences: 1 });
      for await (const t of ctx.getSequence().evaluate(prompt, { temperature: 0 })) {
        tokens.push(t);
        if (tokens.length >= 16) break;
      }
      await ctx.dispose();
    }
    for (let run = 0; run < runs; run++) {
      const ctx = await model.createContext({ contextSize: 4096, threads, batchSize: 512, sequences: 1 });
      const seq = ctx.getSequence();
      const t0 = performance.now();
      let t1 = 0;
      let n = 0;
      for await (const _ of seq.evaluate(prompt.map((t) => t + run), { temperature: 0 })) {
        if (n === 0) t1 = performance.now();
        if (++n > decodeLen) break;
      }
      const t2 = performance.now();
      prefill = Math.max(prefill, (promptLen * 1000) / (t1 - t0));
      decode = Math.max(decode, ((n - 1) * 1000) / (t2 - t1));
      await ctx.dispose();
    }
    await model.dispose();
    return { prefill, decode, tokens };
  } catch (e) {
    return `failed: ${(e as Error).message}`;
  }
}

const st = await ours(dir);
const gg = await ours(path.join(dir, 'model.gguf'));
const lc = await theirs(path.join(dir, 'model.gguf'));
console.log(`MoE bench model, weights ${type}, ${threads} threads, prompt ${promptLen}, decode ${decodeLen} (${os.cpus()[0]?.model ?? ''})`);
const f = (x: number) => x.toFixed(1).padStart(12);
console.log(`${''.padEnd(28)}${'ours (st)'.padStart(12)}${'ours (gguf)'.padStart(12)}${'llama.cpp'.padStart(12)}${'ours/theirs'.padStart(12)}`);
for (const k of ['prefill', 'decode'] as const) {
  const t = typeof lc === 'string' ? NaN : lc[k];
  console.log(`${`${k} tokens/s`.padEnd(28)}${f(st[k])}${f(gg[k])}${f(t)}${(gg[k] / t).toFixed(2).padStart(12)}`);
}
if (typeof lc === 'string') {
  console.log(`llama.cpp: ${lc}`);
} else {
  // llama.cpp samples EOS freely; ours biases it away: compare up to the first EOS of theirs
  const end = lc.tokens.findIndex((t) => t === 2 || t === 12);
  const n = end < 0 ? lc.tokens.length : end;
  const same = lc.tokens.slice(0, n).every((t, i) => t === gg.tokens[i]);
  console.log(`greedy tokens, ours vs llama.cpp on the same GGUF: ${same ? 'identical' : 'DIFFERENT'} over ${n} tokens`);
  if (!same) console.log(`  ours   ${gg.tokens.slice(0, n).join(' ')}\n  theirs ${lc.tokens.slice(0, n).join(' ')}`);
}
const mb = (x: number) => `${(x / 2 ** 20).toFixed(1)} MiB`;
console.log(`weight bytes read per decoded token: ${mb(gg.bytesPerToken)} (gguf), ${mb(st.bytesPerToken)} (safetensors); active-parameter bytes ${mb(gg.active)}; ratio ${(gg.bytesPerToken / gg.active).toFixed(3)}`);
