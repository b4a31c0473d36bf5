// The generation pipeline (lib/generation.ts + lib/scheduler.ts) driven by a scripted engine: each
// request's "model" emits a fixed token script, so reasoning splits, the thinking budget, tool calls,
// stop strings and end tokens can be checked exactly. The scripted engine also records every token fed,
// which shows what went through the model (forced `</think>`, never the end token).
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';

import type { NativeEngine, NativeRequestSpec, NativeSampling, NativeStepEvents } from '../../lib/addon-types.js';
import { GenerationRequest, type RequestSpec, type StreamEvent } from '../../lib/generation.js';
import { Scheduler } from '../../lib/scheduler.js';
import { TextTokenizer } from '../../lib/tokenizer.js';
import { makeTinyModel } from '../../lib/tiny-model/index.js';
import { tempDir } from '../helpers.js';

const EOS = 12;

interface ScriptedRequest {
  script: number[];
  input: number[];
  wanting: boolean;
  admitted: boolean;
  cancelled: boolean;
  done: boolean;
  generated: number;
  maxTokens: number;
  eos: Set<number>;
}

/** The engine's request surface (csrc/engine/scheduler.h) where each request's "model" emits a token script. */
class ScriptedEngine {
  readonly fed = new Map<number, number[]>();
  private readonly requests = new Map<number, ScriptedRequest>();
  private next = 1;
  nextScript: number[] = [];
  steps = 0;

  submit(spec: NativeRequestSpec): number {
    const id = this.next++;
    this.fed.set(id, []);
    this.requests.set(id, { script: [...this.nextScript], input: Array.from(spec.prompt), wanting: true, admitted: false, cancelled: false, done: false, generated: 0, maxTokens: spec.maxTokens, eos: new Set(spec.eos ?? []) });
    return id;
  }
  resume(id: number, forced?: Int32Array): boolean {
    const r = this.requests.get(id);
    if (!r || r.done) return false;
    r.wanting = true;
    if (forced) {
      r.input.push(...forced);
      r.generated += forced.length;
    }
    return true;
  }
  cancel(id: number): boolean {
    const r = this.requests.get(id);
    if (!r || r.done) return false;
    r.cancelled = true;
    return true;
  }
  pin(): void {}
  hasWork(): boolean {
    for (const r of this.requests.values()) if (!r.done && (r.cancelled || !r.admitted || (r.wanting && r.input.length > 0))) return true;
    return false;
  }
  async runStep(): Promise<NativeStepEvents> {
    this.steps++;
    await new Promise((r) => setImmediate(r));
    const admitted: number[] = [];
    const tokens: number[] = [];
    const finished: NativeStepEvents['finished'] = [];
    for (const [id, r] of this.requests) {
      if (r.done) continue;
      if (r.cancelled) {
        r.done = true;
        finished.push({ request: id, reason: 'cancelled' });
        continue;
      }
      if (!r.admitted) {
        r.admitted = true;
        admitted.push(id, 0);
      }
      if (!r.wanting || r.input.length === 0) continue;
      this.fed.get(id)!.push(...r.input);
      r.input = [];
      const tok = r.script.shift() ?? EOS;
      if (r.eos.has(tok)) {
        r.done = true;
        finished.push({ request: id, reason: 'stop' });
        continue;
      }
      r.generated++;
      tokens.push(id, tok);
      r.input = [tok];
      r.wanting = false;
      if (r.generated >= r.maxTokens) {
        r.done = true;
        finished.push({ request: id, reason: 'length' });
      }
    }
    return { admitted: Float64Array.from(admitted), tokens: Float64Array.from(tokens), snapshots: new Float64Array(0), finished, tokensProcessed: 0, ranForward: true };
  }
}

const sampling: NativeSampling = { temperature: 0, topK: 0, topP: 1, minP: 0, repetitionPenalty: 1, presencePenalty: 0, frequencyPenalty: 0, logitBias: [], seed: 0 };

let tok: TextTokenizer;
const tmp = tempDir('pipeline');
beforeAll(async () => {
  await makeTinyModel(tmp.dir, { seed: 1 });
  tok = TextTokenizer.fromDir(tmp.dir)!;
  return () => tmp.cleanup();
});

function spec(over: Partial<RequestSpec> = {}): RequestSpec {
  return {
    prompt: Int32Array.from([1, 11, 40]),
    maxTokens: 1000,
    sampling,
    stop: [],
    eos: new Set([EOS]),
    startsInReasoning: true,
    thinkingBudget: undefined,
    closeReasoning: tok.encode('</think>\n\n', false),
    parseToolCalls: true,
    signal: undefined,
    reusePrefix: false,
    snapshotAt: [],
    pinAt: [],
    snapshotEvery: 0,
    idleTimeoutMs: 0,
    topLogprobs: -1,
    abortBehavior: 'resolve',
    ...over,
  };
}

async function run(output: string | number[], over: Partial<RequestSpec> = {}) {
  const engine = new ScriptedEngine();
  engine.nextScript = typeof output === 'string' ? [...tok.encode(output, false), EOS] : output;
  const scheduler = new Scheduler(engine as unknown as NativeEngine);
  const req = new GenerationRequest(spec(over), scheduler, tok);
  const events: StreamEvent[] = [];
  for await (const ev of req.run()) events.push(ev);
  const done = events.at(-1)!;
  if (done.type !== 'done') throw new Error('no done event');
  return { events, result: done.result, fed: engine.fed.get(1)!, engine };
}

describe('generation pipeline', () => {
  it('splits reasoning from the answer, in the result and in the events', async () => {
    const { events, result } = await run('Let me think.\nOK.\n</think>\n\nThe answer is 4.');
    expect(result.reasoning).toBe('Let me think.\nOK.');
    expect(result.text).toBe('The answer is 4.');
    expect(result.finishReason).toBe('stop');
    expect(events.filter((e) => e.type === 'reasoning').map((e) => (e as { text: string }).text).join('')).toBe(result.reasoning);
    expect(events.filter((e) => e.type === 'text').map((e) => (e as { text: string }).text).join('')).toBe(result.text);
    const firstText = events.findIndex((e) => e.type === 'text');
    expect(events.slice(firstText).some((e) => e.type === 'reasoning')).toBe(false);
    expect(result.usage.reasoningTokens).toBeGreaterThan(0);
    expect(result.usage.completionTokens).toBe(result.tokens.length);
  });

  it('the end token finishes with stop and is never fed back or returned', async () => {
    const { result, fed } = await run('</think>\n\nhi');
    expect(result.tokens).not.toContain(EOS);
    expect(fed).not.toContain(EOS);
    // Every returned token was fed back after the prompt (the last one to produce the end token).
    expect(fed.slice(3)).toEqual(result.tokens);
  });

  it('thinking budget: closes at the next newline after the budget by feeding </think> through the model', async () => {
    const reasoning = 'one two three four five six\nseven eight\nnine ten\n';
    const script = tok.encode(`${reasoning}</think>\n\nanswer`, false);
    const { result, fed } = await run([...script, EOS], { thinkingBudget: 4 });
    const close = tok.encode('</think>\n\n', false);
    // Reasoning ends at the first newline once 4 reasoning tokens are out.
    const budgetTokens = tok.encode(reasoning, false);
    let n = 0;
    let text = '';
    for (const t of budgetTokens) {
      n++;
      text += tok.decode([t]);
      if (n >= 4 && text.includes('\n')) break;
    }
    expect(result.usage.reasoningTokens).toBe(n);
    expect(result.reasoning).toBe(text.trimEnd());
    // The forced tokens ran through the model right after the token that ended the budget...
    const at = 3 + n;
    expect(fed.slice(at, at + close.length)).toEqual(close);
    // ...and the rest of the (scripted, so unchanged) output became the answer.
    expect(result.text).toBe(tok.decode(script.slice(n)));
    expect(result.tokens).toEqual([...script.slice(0, n), ...close, ...script.slice(n)]);
  });

  it('thinking budget: without a newline, closes at budget + 500 tokens', async () => {
    const word = tok.encode(' la', false);
    expect(word.length).toBe(1);
    const script = [...Array(600).fill(word[0]), ...tok.encode('</think>\n\nend', false), EOS];
    const { result } = await run(script, { thinkingBudget: 10 });
    expect(result.usage.reasoningTokens).toBe(510);
    expect(result.text).toContain('la');
  });

  it('tool calls come out parsed, and a malformed call is reported, never dropped', async () => {
    const { events, result } = await run('</think>\n\nSure. <TOOLCALL>[{"name": "get_weather", "arguments": {"city": "Paris"}}]</TOOLCALL>');
    expect(result.toolCalls).toEqual([{ name: 'get_weather', arguments: { city: 'Paris' } }]);
    expect(events.some((e) => e.type === 'toolCall' && e.call.name === 'get_weather')).toBe(true);
    expect(result.text).toBe('Sure. ');

    const bad = await run('</think>\n\n<TOOLCALL>[{"name": "f", "arguments": {oops}]</TOOLCALL>');
    expect(bad.result.toolCalls).toEqual([]);
    expect(bad.result.toolCallErrors).toHaveLength(1);
    expect(bad.events.some((e) => e.type === 'toolCallError' && e.raw.includes('oops'))).toBe(true);
  });

  it('stop strings cut the text, and streamed text is never later cut', async () => {
    const { events, result } = await run('</think>\n\nalpha beta STOP gamma', { stop: ['STOP'] });
    expect(result.text).toBe('alpha beta ');
    expect(result.finishReason).toBe('stop');
    const streamed = events.filter((e) => e.type === 'text').map((e) => (e as { text: string }).text).join('');
    expect(streamed).toBe(result.text);
  });

  it('multi-byte characters split across tokens stream as whole characters', async () => {
    const text = 'naïve café — 我们 🙂👍🏽 done';
    const ids = tok.encode(text, false);
    // Several characters must span more than one byte-level token for this test to mean anything.
    expect(ids.length).toBeGreaterThan([...text].length);
    const { events, result } = await run([...ids, EOS], { startsInReasoning: false });
    for (const e of events) if (e.type === 'text') expect(e.text).not.toContain('\uFFFD');
    expect(result.text).toBe(text);
  });

  it('maxTokens finishes with length', async () => {
    const { result } = await run('</think>\n\na b c d e f g h i j k l m n o p', { maxTokens: 5 });
    expect(result.finishReason).toBe('length');
    expect(result.tokens).toHaveLength(5);
  });

  it('requests in one scheduler share steps', async () => {
    const engine = new ScriptedEngine();
    const scheduler = new Scheduler(engine as unknown as NativeEngine);
    const script = [...tok.encode('</think>\n\nabcdefghij', false), EOS];
    const runs = [0, 1, 2, 3].map(() => {
      engine.nextScript = script;
      const req = new GenerationRequest(spec(), scheduler, tok);
      return (async () => {
        let last: StreamEvent | undefined;
        for await (const ev of req.run()) last = ev;
        return last;
      })();
    });
    const results = await Promise.all(runs);
    for (const r of results) expect(r?.type).toBe('done');
    // Four requests of script.length steps each, batched: about script.length steps in all, not 4x.
    expect(engine.steps).toBeLessThanOrEqual(script.length + 2);
  });
});

// The tokenizer file is real: byte-level pieces of multi-byte characters exist.
describe('tiny tokenizer', () => {
  it('has byte tokens', () => {
    const json = JSON.parse(readFileSync(path.join(tmp.dir, 'tokenizer.json'), 'utf8')) as { model: { vocab: Record<string, number> } };
    expect(Object.keys(json.model.vocab).length).toBeGreaterThan(256);
  });
});
