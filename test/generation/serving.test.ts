// Serving many requests in one Node process (issue #11, and #13's items 1-2): the engine owns each
// request, so nothing the JS thread calls waits for compute; close() and abandoned or paused streams
// never hold a sequence forever. Every figure the assertions bound is printed.
import path from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { loadModel, makeTinyModel, type GenerateResult, type NemotronModel } from '../../lib/index.js';
import { tempDir } from '../helpers.js';

const noEnd = { 12: -100, 2: -100 };

/** Longest gap between ticks of a 2 ms interval while `work` runs. */
async function maxLoopGap(work: () => Promise<unknown>): Promise<{ gap: number; elapsed: number }> {
  let last = performance.now();
  let gap = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    gap = Math.max(gap, now - last);
    last = now;
  }, 2);
  const t0 = performance.now();
  await work();
  clearInterval(timer);
  return { gap: Math.max(gap, performance.now() - last), elapsed: performance.now() - t0 };
}

/** Deterministic token ids in the tiny vocabulary's ordinary range. */
function ids(seed: number, n: number): number[] {
  let x = seed >>> 0;
  return Array.from({ length: n }, () => 20 + ((x = (Math.imul(x, 1103515245) + 12345) >>> 0) % 400));
}

function collectGarbage(): void {
  setFlagsFromString('--expose-gc');
  (runInNewContext('gc') as () => void)();
}

describe('the event loop while 16 requests run at once', () => {
  const tmp = tempDir('serving-loop');
  let model: NemotronModel;
  beforeAll(async () => {
    await makeTinyModel(tmp.dir, { seed: 8, pattern: 'M-M*-M-', hiddenSize: 128, vocabSize: 512, maxPositionEmbeddings: 16384 });
    // One compute thread: on this 2-core machine the other core is the event loop's, so the bound below
    // measures what the library makes the JS thread wait for, not the OS's timeslices.
    model = await loadModel(tmp.dir, { threads: 1, contextLength: 8192, maxSequences: 16, maxBatchTokens: 256, snapshotInterval: 0 });
  });
  afterAll(async () => {
    await model.close();
    tmp.cleanup();
  });

  it('prefills, prefix restores, aborts and session save/load never hold it for 50 ms', async () => {
    // Cached 4,096-token prefixes for the restoring requests (warm-up, outside the measurement).
    const prefixes = [0, 1, 2, 3].map((k) => ids(100 + k, 4096));
    for (const p of prefixes) await model.generate({ prompt: p, maxTokens: 1 }); // snapshots at 4,095
    const chatFiles = [0, 1, 2, 3].map((k) => path.join(tmp.dir, `chat-${k}.nemo`));
    const before = model.stats();
    const results: GenerateResult[] = [];
    const { gap, elapsed } = await maxLoopGap(async () => {
      const work: Promise<unknown>[] = [];
      // 4 prefill fresh 4,096-token prompts.
      for (let k = 0; k < 4; k++) work.push(model.generate({ prompt: ids(200 + k, 4096), maxTokens: 4, logitBias: noEnd }).then((r) => results.push(r)));
      // 4 restore a cached 4,096-token prefix and add a few tokens.
      for (let k = 0; k < 4; k++) work.push(model.generate({ prompt: [...prefixes[k]!.slice(0, 4095), ...ids(300 + k, 16)], maxTokens: 4, logitBias: noEnd }).then((r) => results.push(r)));
      // 4 are aborted part-way.
      for (let k = 0; k < 4; k++) {
        const ac = new AbortController();
        setTimeout(() => ac.abort(), 20 + 10 * k);
        work.push(model.generate({ prompt: ids(400 + k, 2048), maxTokens: 4000, signal: ac.signal, logitBias: noEnd }).then((r) => results.push(r)));
      }
      // 4 chat sessions: a turn, save, load into a new session, another turn.
      for (let k = 0; k < 4; k++) {
        work.push(
          (async () => {
            const chat = model.chat({ reasoning: false });
            await chat.send(`Session ${k}: remember this.`, { maxTokens: 4, seed: k });
            await chat.save(chatFiles[k]!);
            const restored = await model.loadChat(chatFiles[k]!);
            const r = await restored.send('And now?', { maxTokens: 4, seed: k });
            results.push(r);
            chat.dispose();
            restored.dispose();
          })(),
        );
      }
      await Promise.all(work);
    });
    await model.idle();
    const after = model.stats();
    console.log(`16 concurrent requests: ${elapsed.toFixed(0)} ms, longest event-loop gap ${gap.toFixed(1)} ms; ${after.prefixCacheHits - before.prefixCacheHits} prefix hits, ${after.tokensReused - before.tokensReused} tokens reused`);
    expect(results).toHaveLength(16);
    expect(results.filter((r) => r.finishReason === 'abort')).toHaveLength(4);
    // The restoring requests computed only their new tokens.
    expect(results.filter((r) => r.usage.cachedTokens === 4095)).toHaveLength(4);
    expect(elapsed).toBeGreaterThan(5 * 50); // long enough for the bound to mean something
    expect(gap).toBeLessThan(50);
    expect(after.liveSequences).toBe(0);
    expect(after.queuedRequests).toBe(0);
  });
});

describe('requests that outlive their consumers', () => {
  const tmp = tempDir('serving-life');
  beforeAll(async () => {
    await makeTinyModel(tmp.dir, { seed: 9, pattern: 'M*M-', hiddenSize: 64, vocabSize: 512 });
  });
  afterAll(() => tmp.cleanup());

  it('close() finishes within a step while a stream consumer is paused, and frees the engine', async () => {
    const model = await loadModel(tmp.dir, { threads: 2, maxSequences: 2 });
    const stream = model.stream({ prompt: [1, 40, 41], maxTokens: 1000, logitBias: noEnd });
    const first = await stream.next(); // one event, then the consumer stops reading
    expect(first.done).toBe(false);
    const queued = model.generate({ prompt: [1, 50], maxTokens: 1000, logitBias: noEnd });
    const t0 = performance.now();
    await model.close();
    const ms = performance.now() - t0;
    console.log(`close() with a paused consumer: ${ms.toFixed(1)} ms`);
    expect(ms).toBeLessThan(1000);
    expect(model.stats().liveSequences).toBe(0);
    // The paused consumer, when it reads again, gets the rest and an aborted end.
    let done: GenerateResult | undefined;
    for await (const ev of stream) if (ev.type === 'done') done = ev.result;
    expect(done?.finishReason).toBe('abort');
    expect((await queued).finishReason).toBe('abort');
  });

  it('dropped iterators release their sequences once collected; the queue moves on', async () => {
    const model = await loadModel(tmp.dir, { threads: 2, maxSequences: 4, idleTimeoutMs: 0 });
    const drop = async () => {
      for (let k = 0; k < 4; k++) {
        const it = model.stream({ prompt: [1, 60 + k], maxTokens: 1000, logitBias: noEnd });
        await it.next(); // read one event, then lose the iterator (a handler that threw)
      }
    };
    await drop();
    await model.idle();
    expect(model.stats().liveSequences).toBe(4);
    const waiting = model.generate({ prompt: [1, 70], maxTokens: 3 });
    for (let i = 0; i < 50 && model.stats().liveSequences > 0; i++) {
      collectGarbage();
      await new Promise((r) => setTimeout(r, 10));
      await model.idle();
    }
    const r = await waiting;
    expect(r.finishReason).not.toBe('abort');
    await model.idle();
    expect(model.stats().liveSequences).toBe(0);
    await model.close();
  });

  it('a paused stream is cancelled after idleTimeoutMs with a typed reason, freeing its slot', async () => {
    const model = await loadModel(tmp.dir, { threads: 2, maxSequences: 1, idleTimeoutMs: 150 });
    const paused = model.stream({ prompt: [1, 80], maxTokens: 1000, logitBias: noEnd });
    await paused.next();
    const t0 = performance.now();
    const next = await model.generate({ prompt: [1, 81], maxTokens: 3 }); // waits for the only slot
    const waited = performance.now() - t0;
    console.log(`a request behind a paused stream waited ${waited.toFixed(0)} ms (idleTimeoutMs 150)`);
    expect(next.finishReason).not.toBe('abort');
    expect(waited).toBeGreaterThanOrEqual(140);
    let done: GenerateResult | undefined;
    for await (const ev of paused) if (ev.type === 'done') done = ev.result;
    expect(done?.finishReason).toBe('abort');
    expect(done?.error?.code).toBe('ERR_IDLE_TIMEOUT');
    await model.close();
  });
});

describe('stateless reuse', () => {
  const tmp = tempDir('serving-reuse');
  let model: NemotronModel;
  beforeAll(async () => {
    await makeTinyModel(tmp.dir, { seed: 10, pattern: 'M-M*-', hiddenSize: 96, vocabSize: 512 });
    model = await loadModel(tmp.dir, { threads: 2, maxSequences: 4, snapshotInterval: 0 });
  });
  afterAll(async () => {
    await model.close();
    tmp.cleanup();
  });

  it('the same request twice: all but the last prompt token come from the cache', async () => {
    const messages = [{ role: 'system' as const, content: 'Be brief.' }, { role: 'user' as const, content: 'Name three colours, please.' }];
    const a = await model.generate({ messages, reasoning: false, maxTokens: 6, seed: 1 });
    const b = await model.generate({ messages, reasoning: false, maxTokens: 6, seed: 1 });
    expect(a.usage.cachedTokens).toBe(0);
    expect(b.usage.cachedTokens).toBe(b.usage.promptTokens - 1);
    expect(b.tokens).toEqual(a.tokens);
  });

  it('turn 2 of a stateless conversation restores at least turn 1 prompt, and gives the tokens of a cold run', async () => {
    const turn1 = [{ role: 'user' as const, content: 'Tell me a story about a fox.' }];
    const r1 = await model.generate({ messages: turn1, reasoning: false, maxTokens: 8, seed: 2, logitBias: noEnd });
    await model.idle(); // the next turn's start is prepared after the reply
    const turn2 = [...turn1, { role: 'assistant' as const, content: r1.text }, { role: 'user' as const, content: 'And then?' }];
    const r2 = await model.generate({ messages: turn2, reasoning: false, maxTokens: 8, seed: 3 });
    console.log(`stateless turn 2: ${r2.usage.cachedTokens} of ${r2.usage.promptTokens} prompt tokens cached (turn 1 prompt: ${r1.usage.promptTokens})`);
    expect(r2.usage.cachedTokens).toBeGreaterThanOrEqual(r1.usage.promptTokens);
    const cold = await loadModel(tmp.dir, { threads: 2, cacheBytes: 0, snapshotInterval: 0, prepareNextTurn: false });
    const c2 = await cold.generate({ messages: turn2, reasoning: false, maxTokens: 8, seed: 3 });
    expect(c2.usage.cachedTokens).toBe(0);
    expect(r2.tokens).toEqual(c2.tokens);
    await cold.close();
  });
});
