/**
 * The two engines the comparison benches drive, the same way: this library (loadModel + generate) and
 * llama.cpp through node-llama-cpp (CPU only, same thread count; installed apart from the library by
 * `npm --prefix bench/peer ci`). Each engine call runs `streams` sequences of a `prompt`-token prompt
 * and `decode` generated tokens each, and reports the first stream's prefill tokens/s and the summed
 * decode tokens/s. Prompts are fixed pseudo-random ids (random weights: speed does not depend on them).
 */
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';

import type { NemotronModel } from '../lib/index.js';
import { readGgufMetadata } from '../lib/gguf/reader.js';

/** `n` prompt ids; a different salt gives a prompt sharing no prefix (no cache reuse between measures). */
export const ids = (n: number, salt = 0): number[] => Array.from({ length: n }, (_, i) => 21 + ((i * 7919 + salt * 104729) % 30000));
/** Random weights: keep every stream going for the full count (no end-of-turn tokens). */
export const noEnd = { 12: -100, 2: -100 };

export interface Run { prefill: number; decode: number }
export type Engine = (prompt: number, decode: number, streams?: number, salt?: number) => Promise<Run>;

/** This library on an already loaded model (its contextLength and maxSequences must fit the calls). */
export function oursOn(model: NemotronModel): Engine {
  return async (prompt, decode, streams = 1, salt = 0) => {
    const results = await Promise.all(Array.from({ length: streams }, (_, s) => model.generate({ prompt: ids(prompt, salt + s), maxTokens: decode, temperature: 0, logitBias: noEnd })));
    return { prefill: results[0]!.timings.prefillTokensPerSecond, decode: results.reduce((a, r) => a + r.timings.decodeTokensPerSecond, 0) };
  };
}

// The few node-llama-cpp calls used here (it lives in bench/peer, outside the library's dependencies).
interface PeerSequence { evaluate(tokens: number[], o: { temperature: number }): AsyncIterable<number> }
interface PeerContext { getSequence(): PeerSequence; dispose(): Promise<void> }
export interface PeerModel { createContext(o: object): Promise<PeerContext>; dispose(): Promise<void> }
export interface PeerLlama { loadModel(o: { modelPath: string }): Promise<PeerModel> }

/** node-llama-cpp's getLlama, CPU only and never building (the prebuilt binary of bench/peer). */
export async function peerLlama(): Promise<PeerLlama> {
  const entry = path.resolve(import.meta.dirname, 'peer/node_modules/node-llama-cpp/dist/index.js');
  if (!existsSync(entry)) throw new Error('node-llama-cpp is not installed: run `npm --prefix bench/peer ci` first');
  const { getLlama } = (await import(entry)) as { getLlama: (o: object) => Promise<PeerLlama> };
  return getLlama({ gpu: false, build: 'never', logLevel: 'error' });
}

/** llama.cpp on a loaded model: a context of `contextPerStream` tokens per stream, made for each call. */
export function peerOn(peerModel: PeerModel, threads: number, contextPerStream: number): Engine {
  return async (prompt, decode, streams = 1, salt = 0) => {
    const ctx = await peerModel.createContext({ contextSize: contextPerStream * streams, threads, batchSize: 512, sequences: streams });
    const one = async (s: number): Promise<Run> => {
      const seq = ctx.getSequence();
      const t0 = performance.now();
      let t1 = 0;
      let n = 0;
      for await (const _ of seq.evaluate(ids(prompt, salt + s), { temperature: 0 })) {
        if (n === 0) t1 = performance.now();
        if (++n > decode) break;
      }
      return { prefill: (prompt * 1000) / (t1 - t0), decode: ((n - 1) * 1000) / (performance.now() - t1) };
    };
    try {
      const rs = await Promise.all(Array.from({ length: streams }, (_, s) => one(s)));
      return { prefill: rs[0]!.prefill, decode: rs.reduce((a, r) => a + r.decode, 0) };
    } finally {
      await ctx.dispose();
    }
  };
}

/** Bytes of weights a decoded token reads: every tensor of the GGUF but the token-embedding table (one row of it). */
export function weightBytesPerToken(gguf: string): number {
  const meta = readGgufMetadata(gguf);
  const end = statSync(gguf).size - meta.dataOffset;
  const sorted = [...meta.tensors].sort((a, b) => Number(a.offset) - Number(b.offset));
  let total = 0;
  sorted.forEach((t, i) => {
    const size = Number(i + 1 < sorted.length ? sorted[i + 1]!.offset : end) - Number(t.offset);
    if (t.name !== 'token_embd.weight') total += size;
  });
  return total;
}
