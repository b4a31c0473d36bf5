// The hybrid cache: snapshots (Mamba state copied, KV blocks shared), prefix reuse, chat sessions that
// compute only new tokens, fork, save/load, LRU eviction, overflow policies and the memory plan.
import { readFileSync, truncateSync, writeFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { NativeDebugEngine } from '../../lib/addon-types.js';
import { loadModel, makeTinyModel, type NemotronModel } from '../../lib/index.js';
import { makeRng } from '../reference/random.js';
import { logSoftmaxRows, maxAbsDiff, native, tempDir } from '../helpers.js';

const tmp = tempDir('cache');
const dir = path.join(tmp.dir, 'model');
const other = path.join(tmp.dir, 'other');
const noEnd = { 12: -100, 2: -100 };

beforeAll(async () => {
  await makeTinyModel(dir, { seed: 31, pattern: 'M-M*-M*-', hiddenSize: 96, vocabSize: 512, maxPositionEmbeddings: 8192 });
  await makeTinyModel(other, { seed: 32, pattern: 'M-M*-M*-', hiddenSize: 96, vocabSize: 512 });
});
afterAll(() => tmp.cleanup());

function tokens(seed: number, n: number): number[] {
  const rng = makeRng(seed);
  return Array.from({ length: n }, () => 21 + Math.floor(rng.uniform() * 480));
}

describe('snapshots in the engine', () => {
  let engine: NativeDebugEngine;
  beforeAll(async () => {
    engine = await native.loadEngine(dir, { threads: 2, contextLength: 4096, maxSequences: 4, maxBatchTokens: 64, kvDtype: 'f32', cacheBytes: 1 << 24 });
  });
  afterAll(() => engine.close());

  async function fresh(all: number[]): Promise<Float32Array> {
    const s = engine.createSequence();
    try {
      return await engine.evaluate(s, Int32Array.from(all), true);
    } finally {
      engine.freeSequence(s);
    }
  }

  it('restoring a snapshot at a chunk boundary gives bit-identical logits to a fresh computation', async () => {
    const all = tokens(1, 200);
    const want = await fresh(all);
    const a = engine.createSequence();
    await engine.evaluate(a, Int32Array.from(all.slice(0, 128)), false); // 128 = 2 pieces of 64
    const snap = engine.snapshot(a);
    engine.freeSequence(a);
    const b = engine.createSequence();
    engine.restore(b, snap);
    const got = await engine.evaluate(b, Int32Array.from(all.slice(128)), true);
    engine.freeSequence(b);
    engine.dropSnapshot(snap);
    expect(Buffer.from(got.buffer).equals(Buffer.from(want.subarray(128 * 512).buffer.slice(want.byteOffset + 128 * 512 * 4)))).toBe(true);
  });

  it('restoring mid-block (copy-on-write) gives the same logits as fresh, within f32 rounding', async () => {
    const all = tokens(2, 150);
    const want = logSoftmaxRows(await fresh(all), 512);
    const a = engine.createSequence();
    await engine.evaluate(a, Int32Array.from(all.slice(0, 100)), false); // block 1 half full
    const snap = engine.snapshot(a);
    // The original keeps writing into the shared block: it must copy it first...
    const cont = await engine.evaluate(a, Int32Array.from(all.slice(100)), true);
    // ...so the snapshot still holds the state at 100.
    const b = engine.createSequence();
    engine.restore(b, snap);
    const got = await engine.evaluate(b, Int32Array.from(all.slice(100)), true);
    for (const x of [cont, got]) expect(maxAbsDiff(logSoftmaxRows(x, 512), want.subarray(100 * 512))).toBeLessThan(1e-5);
    engine.freeSequence(a);
    engine.freeSequence(b);
    engine.dropSnapshot(snap);
  });

  it('a snapshot shares its KV blocks, and dropping everything frees every block', async () => {
    const before = engine.cacheStats();
    const a = engine.createSequence();
    await engine.evaluate(a, Int32Array.from(tokens(3, 256)), false);
    const used = engine.cacheStats().kvBlocksUsed - before.kvBlocksUsed;
    expect(used).toBe(4); // 256 positions / 64
    const snap = engine.snapshot(a);
    expect(engine.cacheStats().kvBlocksUsed - before.kvBlocksUsed).toBe(4); // shared, not copied
    engine.freeSequence(a);
    expect(engine.cacheStats().snapshotOnlyKvBlocks).toBe(4);
    engine.dropSnapshot(snap);
    expect(engine.cacheStats().kvBlocksUsed).toBe(before.kvBlocksUsed);
  });

  it('export and import reproduce a snapshot exactly; a wrong image is refused', async () => {
    const all = tokens(4, 170);
    const a = engine.createSequence();
    await engine.evaluate(a, Int32Array.from(all.slice(0, 130)), false);
    const snap = engine.snapshot(a);
    const image = await engine.exportSnapshot(snap);
    const copy = await engine.importSnapshot(image, Int32Array.from(all.slice(0, 130)));
    const b = engine.createSequence();
    engine.restore(b, copy);
    const viaImport = await engine.evaluate(b, Int32Array.from(all.slice(130)), true);
    const viaOriginal = await engine.evaluate(a, Int32Array.from(all.slice(130)), true);
    expect(Buffer.from(viaImport.buffer).equals(Buffer.from(viaOriginal.buffer))).toBe(true);
    await expect(engine.importSnapshot(image.subarray(0, image.length - 4), Int32Array.from(all.slice(0, 130)))).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
    await expect(engine.importSnapshot(image, Int32Array.from(all.slice(0, 129)))).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
    for (const id of [snap, copy]) engine.dropSnapshot(id);
    engine.freeSequence(a);
    engine.freeSequence(b);
  });
});

describe('prefix reuse in generate()', () => {
  let model: NemotronModel;
  beforeAll(async () => {
    model = await loadModel(dir, { threads: 2, maxBatchTokens: 64, snapshotInterval: 64, kvDtype: 'f32' });
  });
  afterAll(async () => model.close());

  it('a request sharing a long prefix restores it; its tokens equal an uncached run', async () => {
    const shared = tokens(5, 300);
    await model.generate({ prompt: [1, ...shared], maxTokens: 2, logitBias: noEnd });
    const second = [1, ...shared.slice(0, 250), ...tokens(6, 30)];
    const hitsBefore = model.stats().prefixCacheHits;
    const r = await model.generate({ prompt: second, maxTokens: 16, logitBias: noEnd });
    expect(model.stats().prefixCacheHits).toBe(hitsBefore + 1);
    expect(r.usage.cachedTokens).toBe(192); // the last snapshot (every 64) inside the shared 251 tokens
    // The same request on a model with no cache.
    const cold = await loadModel(dir, { threads: 2, maxBatchTokens: 64, snapshotInterval: 0, cacheBytes: 0, kvDtype: 'f32' });
    const ref = await cold.generate({ prompt: second, maxTokens: 16, logitBias: noEnd });
    await cold.close();
    expect(ref.usage.cachedTokens).toBe(0);
    expect(r.tokens).toEqual(ref.tokens);
  });

  it('LRU eviction keeps the cache under cacheBytes', async () => {
    const small = await loadModel(dir, { threads: 2, maxBatchTokens: 64, snapshotInterval: 64, cacheBytes: 400_000 });
    for (let i = 0; i < 6; i++) await small.generate({ prompt: [1, ...tokens(100 + i, 200)], maxTokens: 1 });
    const s = small.stats();
    expect(s.snapshotBytes).toBeLessThanOrEqual(400_000);
    expect(s.snapshots).toBeGreaterThan(0);
    expect(s.snapshotHostBytes).toBe(0); // the CPU backend keeps every state where it is
    // The newest prompt's prefix survived (its snapshot one token before its end: 200 of 201); the
    // oldest was evicted.
    const newest = await small.generate({ prompt: [1, ...tokens(105, 200), 7], maxTokens: 1 });
    expect(newest.usage.cachedTokens).toBe(200);
    const oldest = await small.generate({ prompt: [1, ...tokens(100, 200), 7], maxTokens: 1 });
    expect(oldest.usage.cachedTokens).toBe(0);
    await small.close();
  });
});

describe('chat sessions', () => {
  let model: NemotronModel;
  const system = 'You are a careful assistant. '.repeat(12);
  beforeAll(async () => {
    model = await loadModel(dir, { threads: 2, maxBatchTokens: 64, kvDtype: 'f32' });
  });
  afterAll(async () => model.close());

  it('turn k+1 processes only its new tokens', async () => {
    const chat = model.chat({ system, reasoning: false });
    const t1 = await chat.send('Hello there, how are you?', { maxTokens: 8, seed: 1 });
    expect(t1.usage.cachedTokens).toBe(0);
    await chat.ready(); // turn 1's reply, re-rendered as history, computed before turn 2 is sent
    const before = model.stats().tokensProcessed;
    const t2 = await chat.send('And tomorrow?', { maxTokens: 8, seed: 1 });
    await chat.ready();
    const processed = model.stats().tokensProcessed - before;
    const render = (extra: Array<{ role: 'assistant' | 'user'; content: string }>) =>
      model.applyChatTemplate([{ role: 'system', content: system }, { role: 'user', content: 'Hello there, how are you?' }, ...extra], { reasoning: false });
    // Reused: turn 1's conversation with its answer as the template re-renders it, up to turn 2's user
    // message: more than turn 1's whole prompt.
    const head = model.tokenize(render([{ role: 'assistant', content: t1.text }, { role: 'user', content: 'And tomorrow?' }]).split('<SPECIAL_11>User\nAnd tomorrow?')[0]!);
    expect(t2.usage.cachedTokens).toBe(head.length);
    expect(t2.usage.cachedTokens).toBeGreaterThanOrEqual(t1.usage.promptTokens);
    // Computed for turn 2: only the new message and the generation prompt, plus fed-back tokens...
    const newPromptTokens = t2.usage.promptTokens - t2.usage.cachedTokens;
    const newMessage = model.tokenize('<SPECIAL_11>User\nAnd tomorrow?\n<SPECIAL_11>Assistant\n<think></think>', { addSpecialTokens: false });
    expect(newPromptTokens).toBe(newMessage.length);
    // ...and, after it, turn 2's answer as turn 3 will render it, from turn 2's assistant start.
    const head3 = model.tokenize(render([{ role: 'assistant', content: t1.text }, { role: 'user', content: 'And tomorrow?' }, { role: 'assistant', content: t2.text }, { role: 'user', content: 'X' }]).split('<SPECIAL_11>User\nX')[0]!);
    const anchor2 = t2.usage.promptTokens - model.tokenize('<think></think>', { addSpecialTokens: false }).length;
    expect(processed).toBe(newPromptTokens + t2.usage.completionTokens - (t2.finishReason === 'length' ? 1 : 0) + head3.length - anchor2);
    chat.dispose();
  });

  it('fork() gives two sessions that evolve independently, each equal to a fresh session with its history', async () => {
    const a = model.chat({ system, reasoning: false });
    await a.send('Tell me about the sea.', { maxTokens: 6, seed: 2 });
    const b = a.fork();
    const ra = await a.send('Shorter, please.', { maxTokens: 10, seed: 3 });
    const rb = await b.send('Longer, please.', { maxTokens: 10, seed: 3 });
    expect(a.messages.at(-2)!.content).toBe('Shorter, please.');
    expect(b.messages.at(-2)!.content).toBe('Longer, please.');
    expect(a.messages.length).toBe(b.messages.length);
    // Same turn on a cold model: same tokens.
    const cold = await loadModel(dir, { threads: 2, maxBatchTokens: 64, kvDtype: 'f32', cacheBytes: 0, snapshotInterval: 0 });
    const r = await cold.generate({ messages: b.messages.slice(0, -1), reasoning: false, maxTokens: 10, seed: 3 });
    expect(r.tokens).toEqual(rb.tokens);
    expect(ra.tokens).not.toEqual(rb.tokens);
    await cold.close();
    a.dispose();
    b.dispose();
  });

  it('two sessions with the same system prompt store its KV blocks once', async () => {
    const longSystem = 'Shared instructions for every user of this service. '.repeat(12);
    const m = await loadModel(dir, { threads: 2, maxBatchTokens: 64, snapshotInterval: 64, kvDtype: 'f32' });
    const a = m.chat({ system: longSystem, reasoning: false });
    await a.send('First user here.', { maxTokens: 2 });
    const usedOne = m.stats().kvBlocksUsed;
    const b = m.chat({ system: longSystem, reasoning: false });
    const rb = await b.send('Second user here.', { maxTokens: 2 });
    const usedTwo = m.stats().kvBlocksUsed;
    expect(rb.usage.cachedTokens).toBeGreaterThanOrEqual(64 * Math.floor((model.tokenize(longSystem).length) / 64));
    // B added only the blocks past the shared prefix, not a second copy of it.
    const sharedBlocks = Math.floor(rb.usage.cachedTokens / 64);
    expect(sharedBlocks).toBeGreaterThanOrEqual(3);
    expect(usedTwo - usedOne).toBeLessThanOrEqual(usedOne - sharedBlocks + 1);
    a.dispose();
    b.dispose();
    await m.close();
  });

  it('save() and loadChat() continue bit-exactly; bad files are refused with typed errors', async () => {
    const file = path.join(tmp.dir, 'conv.nemo');
    const chat = model.chat({ system, reasoning: false });
    await chat.send('Remember the number 7.', { maxTokens: 6, seed: 4 });
    await chat.send('What number?', { maxTokens: 6, seed: 5 });
    await chat.save(file);
    const original = await chat.send('Say it twice.', { maxTokens: 12, seed: 6 });
    // A fresh model process state: load the file into a new model instance.
    const m2 = await loadModel(dir, { threads: 2, maxBatchTokens: 64, kvDtype: 'f32' });
    const restored = await m2.loadChat(file);
    expect(restored.messages).toEqual(chat.messages.slice(0, -2));
    const again = await restored.send('Say it twice.', { maxTokens: 12, seed: 6 });
    expect(again.tokens).toEqual(original.tokens);
    expect(again.usage.cachedTokens).toBe(original.usage.cachedTokens);

    // Another model's file, a truncated file and a corrupted one.
    const m3 = await loadModel(other, { threads: 2 });
    await expect(m3.loadChat(file)).rejects.toMatchObject({ code: 'ERR_INVALID_SESSION_FILE', message: expect.stringMatching(/different model/) });
    await m3.close();
    const truncated = path.join(tmp.dir, 'truncated.nemo');
    writeFileSync(truncated, readFileSync(file));
    truncateSync(truncated, statSync(truncated).size - 100);
    await expect(m2.loadChat(truncated)).rejects.toMatchObject({ code: 'ERR_INVALID_SESSION_FILE' });
    const corrupt = path.join(tmp.dir, 'corrupt.nemo');
    const bytes = readFileSync(file);
    bytes[Math.floor(bytes.length / 2)]! ^= 0x40;
    writeFileSync(corrupt, bytes);
    await expect(m2.loadChat(corrupt)).rejects.toMatchObject({ code: 'ERR_INVALID_SESSION_FILE', message: expect.stringMatching(/checksum mismatch/) });
    await m2.close();
    chat.dispose();
  });

  it('a session on a GGUF model saves and loads too', async () => {
    const g = path.join(tmp.dir, 'gguf-model');
    await makeTinyModel(g, { seed: 33, format: 'gguf', ggufType: 'F32', dtype: 'f32' });
    const m = await loadModel(path.join(g, 'model.gguf'), { threads: 2 });
    const chat = m.chat({ reasoning: false });
    await chat.send('Hello from GGUF.', { maxTokens: 4, seed: 1 });
    const file = path.join(tmp.dir, 'gguf.nemo');
    await chat.save(file);
    const next = await chat.send('Again.', { maxTokens: 6, seed: 2 });
    const restored = await m.loadChat(file);
    const again = await restored.send('Again.', { maxTokens: 6, seed: 2 });
    expect(again.tokens).toEqual(next.tokens);
    chat.dispose();
    restored.dispose();
    await m.close();
  });

  it("context overflow: 'error' fails before any work; 'truncate-oldest' drops old turns and reports it", async () => {
    const small = await loadModel(dir, { threads: 2, contextLength: 256, maxBatchTokens: 64 });
    const strict = small.chat({ reasoning: false });
    const long = 'word '.repeat(60);
    await strict.send(long, { maxTokens: 4 });
    const processed = small.stats().tokensProcessed;
    await expect(strict.send(long + long, { maxTokens: 4 })).rejects.toMatchObject({ code: 'ERR_CONTEXT_OVERFLOW' });
    expect(small.stats().tokensProcessed).toBe(processed);
    expect(strict.messages).toHaveLength(2); // unchanged

    const lenient = small.chat({ reasoning: false, contextOverflow: 'truncate-oldest' });
    await lenient.send(long, { maxTokens: 4 });
    await lenient.send(long, { maxTokens: 4 });
    const r = await lenient.send(long, { maxTokens: 4 });
    expect(r.usage.droppedMessages).toBeGreaterThan(0);
    expect(r.usage.promptTokens).toBeLessThan(256);
    // The oldest turns are gone; the newest user message and its answer remain.
    expect(lenient.messages.length).toBeLessThan(6);
    expect(lenient.messages.at(-2)).toMatchObject({ role: 'user', content: long });
    await small.close();
  });
});

describe('memory plan', () => {
  it('model.info.memory is the plan, and a plan over memoryLimit is refused with its numbers', async () => {
    const m = await loadModel(dir, { threads: 1, contextLength: 1024, maxSequences: 2 });
    expect(m.info.memory.perSequence.kvAtContext).toBe(2 * 1024 * 2 * 2 * 16 * 2); // 2 attn layers × 1024 × K,V × kv_dim 32 × f16
    expect(m.info.memory.total).toBeGreaterThan(m.info.memory.weights);
    await m.close();
    await expect(loadModel(dir, { threads: 1, memoryLimit: 1_000_000 })).rejects.toMatchObject({ code: 'ERR_OUT_OF_MEMORY', message: expect.stringMatching(/1,000,000|976/) });
  });
});
