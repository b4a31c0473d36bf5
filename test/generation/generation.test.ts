// Generation on a real (tiny, random) model through the native engine: chat rendering and reasoning
// controls, the thinking budget replayed against the model, sampling determinism, continuous batching
// that gives every request exactly the tokens it gets alone, FIFO admission, backpressure, cancellation
// and slot hygiene under many aborted requests.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { loadModel, makeTinyModel, type GenerateResult, type NemotronModel } from '../../lib/index.js';
import { argmaxRows, tempDir } from '../helpers.js';

const tmp = tempDir('generation');
let model: NemotronModel;
let V: number;
const EOS = 12;

beforeAll(async () => {
  await makeTinyModel(tmp.dir, { seed: 21, pattern: 'M-M*-M*-M-', hiddenSize: 96, vocabSize: 512 });
  model = await loadModel(tmp.dir, { threads: 2, maxSequences: 4, maxBatchTokens: 32 });
  V = model.info.config.vocabSize;
});
afterAll(async () => {
  await model.close();
  tmp.cleanup();
});

/** Token ids whose text contains a newline (for steering the random model with logit bias). */
function newlineTokens(): number[] {
  const ids: number[] = [];
  for (let id = 21; id < 512; id++) if (model.detokenize([id]).includes('\n')) ids.push(id);
  return ids;
}

const noEos = { [EOS]: -100, 2: -100 };

describe('chat and reasoning', () => {
  it('reasoning on/off renders /think and /no_think as the template does', () => {
    const messages = [{ role: 'user' as const, content: 'Hi' }];
    expect(model.applyChatTemplate(messages, { reasoning: true })).toMatch(/<SPECIAL_11>Assistant\n<think>\n$/);
    expect(model.applyChatTemplate(messages, { reasoning: false })).toMatch(/<SPECIAL_11>Assistant\n<think><\/think>$/);
    expect(model.applyChatTemplate(messages)).toMatch(/<think>\n$/); // the template's default: on
  });

  it('with reasoning on, output is reasoning until </think>; the thinking budget forces it through the model', async () => {
    const nl = newlineTokens();
    expect(nl.length).toBeGreaterThan(0);
    const logitBias: Record<number, number> = { ...noEos };
    for (const id of nl) logitBias[id] = 1.5; // newlines likelier, so the budget closes soon after it is hit
    const r = await model.generate({ messages: [{ role: 'user', content: 'Think briefly.' }], reasoning: true, thinkingBudget: 6, maxTokens: 60, temperature: 0, logitBias });
    expect(r.usage.reasoningTokens).toBeGreaterThanOrEqual(6);
    expect(r.usage.reasoningTokens).toBeLessThan(40);
    expect(r.reasoning.length).toBeGreaterThan(0);
    expect(r.text).not.toContain('</think>');
    // Replay: the prompt, the reasoning tokens, the forced `</think>\n\n`, then the answer. Each answer
    // token must be the biased argmax after everything before it, forced tokens included.
    const prompt = model.tokenize(model.applyChatTemplate([{ role: 'user', content: 'Think briefly.' }], { reasoning: true }));
    const close = model.tokenize('</think>\n\n', { addSpecialTokens: false });
    const at = r.usage.reasoningTokens;
    expect(r.tokens.slice(at, at + close.length)).toEqual(close);
    const logits = await model.evaluate([...prompt, ...r.tokens], { logits: 'all' });
    for (const [id, b] of Object.entries(logitBias)) for (let row = 0; row < logits.length / V; row++) logits[row * V + Number(id)] += b;
    const predicted = argmaxRows(logits, V).slice(prompt.length - 1, -1);
    for (let i = 0; i < r.tokens.length; i++) {
      if (i >= at && i < at + close.length) continue; // forced, not sampled
      expect(predicted[i], `token ${i}`).toBe(r.tokens[i]);
    }
  });

  it('reasoning off: everything is answer text', async () => {
    const r = await model.generate({ messages: [{ role: 'user', content: 'Hi' }], reasoning: false, maxTokens: 12, logitBias: noEos });
    expect(r.reasoning).toBe('');
    expect(r.usage.reasoningTokens).toBe(0);
    expect(r.text.length).toBeGreaterThan(0);
  });

  it('bad messages and template problems are typed errors', async () => {
    await expect(model.generate({ messages: [{ role: 'wizard', content: 'x' }] as never })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
    await expect(model.generate({ messages: [{ role: 'user', content: 42 }] as never })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
    await expect(model.generate({ messages: [] })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
    await expect(model.generate({ prompt: 'x', messages: [{ role: 'user', content: 'y' }] })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
    await expect(model.generate({ prompt: 'x', reasoning: true })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
  });
});

describe('sampling determinism', () => {
  it('temperature 0 is greedy: each token is the argmax after the ones before', async () => {
    const prompt = [1, 50, 60, 70];
    const r = await model.generate({ prompt, maxTokens: 10, temperature: 0, logitBias: noEos });
    const logits = await model.evaluate([...prompt, ...r.tokens], { logits: 'all' });
    for (const [id, b] of Object.entries(noEos)) for (let row = 0; row < logits.length / V; row++) logits[row * V + Number(id)] += b;
    expect(argmaxRows(logits, V).slice(prompt.length - 1, -1)).toEqual(r.tokens);
  });

  it('the same seed gives the same text; another seed, other text', async () => {
    const opts = { prompt: 'Once upon a time', maxTokens: 24, temperature: 1.0, topP: 0.95, logitBias: noEos };
    const a = await model.generate({ ...opts, seed: 7 });
    const b = await model.generate({ ...opts, seed: 7 });
    const c = await model.generate({ ...opts, seed: 8 });
    expect(b.tokens).toEqual(a.tokens);
    expect(c.tokens).not.toEqual(a.tokens);
  });
});

describe('concurrent requests', () => {
  const requests = [
    { prompt: 'The first request', maxTokens: 20, temperature: 0 },
    { prompt: 'A second, seeded one', maxTokens: 16, temperature: 0.9, seed: 3 },
    // longer than maxBatchTokens (32): prefilled in chunks interleaved with the others' decode steps
    { prompt: 'A long prompt that takes several prefill chunks to get through. '.repeat(4), maxTokens: 12, temperature: 0 },
    { prompt: [1, 99, 100, 101], maxTokens: 18, temperature: 0.7, topK: 20, seed: 11 },
  ];

  it("each request's tokens are identical to running it alone, and steps are shared", async () => {
    const alone: GenerateResult[] = [];
    for (const r of requests) alone.push(await model.generate({ ...r, logitBias: noEos }));
    const before = model.stats();
    const together = await Promise.all(requests.map((r) => model.generate({ ...r, logitBias: noEos })));
    const after = model.stats();
    for (let i = 0; i < requests.length; i++) expect(together[i]!.tokens, `request ${i}`).toEqual(alone[i]!.tokens);
    // Sequential runs need one step per token each; batched they share steps.
    const tokens = together.reduce((s, r) => s + r.tokens.length, 0);
    expect(after.steps - before.steps).toBeLessThan(tokens * 0.6);
    expect(after.liveSequences).toBe(0);
  });

  it('beyond maxSequences, requests wait in FIFO order and their wait shows in timings', async () => {
    // maxSequences is 4: the first four run at once, the last three wait for their slots.
    const runs = Array.from({ length: 7 }, (_, i) => model.generate({ prompt: [1, 30 + i], maxTokens: 6 + i, logitBias: noEos }));
    // All seven are registered with the engine at once; its first step admits four into the slots.
    expect(model.stats().queuedRequests).toBe(7);
    const t0 = performance.now();
    while (model.stats().queuedRequests === 7 && performance.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 1));
    expect(model.stats().queuedRequests).toBe(3);
    const results = await Promise.all(runs);
    const queue = results.map((r) => r.timings.queueMs);
    // FIFO: each waiting request was admitted when the next slot freed, in submission order, so the
    // three late ones waited longer than any early one, and in order of the slots (6, 7, 8 tokens).
    expect(Math.min(...queue.slice(4))).toBeGreaterThan(Math.max(...queue.slice(0, 4)));
    expect(results[4]!.timings.totalMs - results[4]!.timings.queueMs).toBeGreaterThan(0);
    for (const r of results) {
      expect(r.timings.timeToFirstTokenMs).toBeGreaterThan(0);
      expect(r.usage.promptTokens).toBe(2);
    }
    results.forEach((r, i) => expect(r.usage.completionTokens).toBe(6 + i));
    expect(model.stats().liveSequences).toBe(0);
  });
});

describe('streaming and cancellation', () => {
  it('no token is computed while the consumer is not asking (backpressure)', async () => {
    const stream = model.stream({ prompt: 'Backpressure', maxTokens: 200, logitBias: noEos });
    const first = await stream.next();
    expect(first.done).toBe(false);
    const snapshot = model.stats().tokensProcessed;
    await new Promise((r) => setTimeout(r, 100));
    expect(model.stats().tokensProcessed).toBe(snapshot);
    await stream.return(undefined);
    await model.idle(); // the engine frees the sequence at its next step
    expect(model.stats().liveSequences).toBe(0);
  });

  it('break frees the sequence within one step', async () => {
    let n = 0;
    for await (const ev of model.stream({ prompt: 'Break early', maxTokens: 500, logitBias: noEos })) {
      if (ev.type === 'text' && ++n === 3) break;
    }
    const steps = model.stats().steps;
    await model.idle();
    expect(model.stats().steps - steps).toBeLessThanOrEqual(1);
    expect(model.stats().liveSequences).toBe(0);
    expect(model.stats().sequenceBytes).toBe(0);
  });

  it('an AbortSignal stops generation within one step', async () => {
    const ac = new AbortController();
    let textEvents = 0;
    let result: GenerateResult | undefined;
    for await (const ev of model.stream({ prompt: 'Abort me', maxTokens: 500, signal: ac.signal, logitBias: noEos })) {
      if (ev.type === 'text' && ++textEvents === 5) ac.abort();
      if (ev.type === 'done') result = ev.result;
    }
    expect(result!.finishReason).toBe('abort');
    expect(result!.tokens.length).toBeLessThan(20);
    await model.idle();
    expect(model.stats().liveSequences).toBe(0);
  });

  it('1,000 requests aborted at random points, concurrently, leave no live sequence and no state memory', async () => {
    const baseline = model.stats();
    let seed = 12345;
    const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const runs: Promise<unknown>[] = [];
    const reasons = new Map<string, number>();
    for (let i = 0; i < 1000; i++) {
      const ac = new AbortController();
      const mode = rand();
      const stopAfter = Math.floor(rand() * 8);
      if (mode < 0.1) ac.abort(); // aborted before the call
      else if (mode < 0.5) setTimeout(() => ac.abort(), rand() * 30);
      runs.push(
        (async () => {
          let events = 0;
          for await (const ev of model.stream({ prompt: [1, 20 + (i % 300)], maxTokens: 10, signal: ac.signal, logitBias: noEos })) {
            if (ev.type === 'done') reasons.set(ev.result.finishReason, (reasons.get(ev.result.finishReason) ?? 0) + 1);
            if (mode >= 0.5 && mode < 0.8 && ++events > stopAfter) break; // consumer walks away
          }
        })(),
      );
    }
    await Promise.all(runs);
    await model.idle();
    console.log('finish reasons of 1,000 requests:', Object.fromEntries(reasons));
    expect(reasons.get('abort')).toBeGreaterThan(50);
    expect(reasons.get('length')).toBeGreaterThan(50);
    const after = model.stats();
    expect(after.liveSequences).toBe(0);
    expect(after.queuedRequests).toBe(0);
    expect(after.sequenceBytes).toBe(baseline.sequenceBytes);
    expect(after.sequenceBytes).toBe(0);
  });
});
