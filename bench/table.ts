/**
 * Issue #5's table in one run, on the same GGUF file for both engines (the 118M bench model, 2 threads):
 * prefill at 512 and 4,096-token prompts, decode at 128 and 8,192 tokens of context, aggregate decode of
 * 8 concurrent streams, each as ours / llama.cpp; plus our decode as a fraction of the bandwidth limit
 * (weight bytes per token over a copy bandwidth measured in the same run).
 *
 *   npm --prefix bench/peer ci && npm run bench:table [-- --type BF16 --threads 2]
 */
import { existsSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';

import { loadModel } from '../lib/index.js';

const { values } = parseArgs({ options: { threads: { type: 'string', default: String(os.availableParallelism()) }, type: { type: 'string', default: 'BF16' } } });
const threads = Number(values.threads);
const gguf = path.resolve(import.meta.dirname, `models/bench-100m-${values.type.toLowerCase()}/model.gguf`);
if (!existsSync(gguf)) throw new Error(`run npm run bench:llama-cpp -- --type ${values.type} once to create ${gguf}`);
const ids = (n: number, salt = 0) => Array.from({ length: n }, (_, i) => 21 + ((i * 7919 + salt * 104729) % 30000));
const noEnd = { 12: -100, 2: -100 };

interface PeerSequence { evaluate(tokens: number[], o: { temperature: number }): AsyncIterable<number> }
interface PeerContext { getSequence(): PeerSequence; dispose(): Promise<void> }
interface PeerModel { createContext(o: object): Promise<PeerContext>; dispose(): Promise<void> }
interface PeerLlama { loadModel(o: { modelPath: string }): Promise<PeerModel> }

async function oursRun(prompt: number, decode: number, streams = 1): Promise<{ prefill: number; decode: number }> {
  const model = await loadModel(gguf, { threads, contextLength: 8192 + 256, maxSequences: 8, maxBatchTokens: 512, snapshotInterval: 0 });
  const results = await Promise.all(Array.from({ length: streams }, (_, s) => model.generate({ prompt: ids(prompt, s), maxTokens: decode, temperature: 0, logitBias: noEnd })));
  await model.close();
  return { prefill: results[0]!.timings.prefillTokensPerSecond, decode: results.reduce((a, r) => a + r.timings.decodeTokensPerSecond, 0) };
}

const peer = path.resolve(import.meta.dirname, 'peer/node_modules/node-llama-cpp/dist/index.js');
const { getLlama } = (await import(peer)) as { getLlama: (o: object) => Promise<PeerLlama> };
const llama = await getLlama({ gpu: false, build: 'never', logLevel: 'error' });
const peerModel = await llama.loadModel({ modelPath: gguf });
async function theirsRun(prompt: number, decode: number, streams = 1): Promise<{ prefill: number; decode: number }> {
  const ctx = await peerModel.createContext({ contextSize: (8192 + 256) * streams, threads, batchSize: 512, sequences: streams });
  const one = async (s: number) => {
    const seq = ctx.getSequence();
    const t0 = performance.now();
    let t1 = 0;
    let n = 0;
    for await (const _ of seq.evaluate(ids(prompt, s), { temperature: 0 })) {
      if (n === 0) t1 = performance.now();
      if (++n > decode) break;
    }
    return { prefill: (prompt * 1000) / (t1 - t0), decode: ((n - 1) * 1000) / (performance.now() - t1) };
  };
  const rs = await Promise.all(Array.from({ length: streams }, (_, s) => one(s)));
  await ctx.dispose();
  return { prefill: rs[0]!.prefill, decode: rs.reduce((a, r) => a + r.decode, 0) };
}

function copyBandwidth(): number {
  const n = 256 * 1024 * 1024;
  const a = Buffer.alloc(n, 1);
  const b = Buffer.alloc(n);
  let best = 0;
  for (let i = 0; i < 5; i++) {
    const t0 = performance.now();
    a.copy(b);
    best = Math.max(best, (2 * n) / ((performance.now() - t0) / 1000));
  }
  return best;
}

const rows: Array<[string, number, number]> = [];
const p512 = [await oursRun(512, 4), await theirsRun(512, 4)];
rows.push(['prefill tok/s, 512-token prompt', p512[0]!.prefill, p512[1]!.prefill]);
const p4k = [await oursRun(4096, 4), await theirsRun(4096, 4)];
rows.push(['prefill tok/s, 4,096-token prompt', p4k[0]!.prefill, p4k[1]!.prefill]);
const d128 = [await oursRun(128, 128), await theirsRun(128, 128)];
rows.push(['decode tok/s at 128 context', d128[0]!.decode, d128[1]!.decode]);
const d8k = [await oursRun(8192, 64), await theirsRun(8192, 64)];
rows.push(['decode tok/s at 8,192 context', d8k[0]!.decode, d8k[1]!.decode]);
const s8 = [await oursRun(128, 64, 8), await theirsRun(128, 64, 8)];
rows.push(['8 streams, aggregate decode tok/s', s8[0]!.decode, s8[1]!.decode]);
await peerModel.dispose();

const bw = copyBandwidth();
const weightBytes = statSync(gguf).size - 32768 * 768 * (values.type === 'BF16' ? 2 : 34 / 32); // all but the embedding table
console.log(`${values.type} weights, ${threads} threads, ${os.cpus()[0]?.model ?? ''}`);
console.log(`${'measure'.padEnd(36)}${'ours'.padStart(10)}${'llama.cpp'.padStart(12)}${'ours/theirs'.padStart(13)}`);
for (const [k, a, b] of rows) console.log(`${k.padEnd(36)}${a.toFixed(1).padStart(10)}${b.toFixed(1).padStart(12)}${(a / b).toFixed(2).padStart(13)}`);
console.log(`decode at 8,192 / decode at 128 (ours): ${(d8k[0]!.decode / d128[0]!.decode).toFixed(2)}`);
console.log(`8 streams / 1 stream (ours): ${(s8[0]!.decode / d128[0]!.decode).toFixed(2)}`);
console.log(`copy bandwidth ${(bw / 1e9).toFixed(1)} GB/s (read+write); ${(weightBytes / 1e6).toFixed(0)} MB of weights per token; decode at 128 = ${((100 * d128[0]!.decode * weightBytes) / bw).toFixed(0)} % of that limit`);
