// Issue #14 items 4 and 5 in the library, as a caller uses it: OpenAI-shaped messages (typed as the
// `openai` package types them, no casts), a ChatSession tool loop that keeps its cached state,
// `await using` on models and sessions, stream events that narrow on `type`, and the abort behaviours.
import path from 'node:path';

import type { ChatCompletionMessageParam, ChatCompletionTool } from 'openai/resources/chat/completions';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { AbortError, loadModel, type ChatMessage, type GenerateResult, type NemotronModel, type StreamEvent } from '../../lib/index.js';
import { makeTinyModel } from '../../lib/tiny-model/index.js';
import { tempDir } from '../helpers.js';

const noEnd = { 12: -100, 2: -100 };

describe('the library API (issue #14 items 4 and 5)', () => {
  const tmp = tempDir('library-api');
  let dir: string;
  let model: NemotronModel;

  beforeAll(async () => {
    dir = path.join(tmp.dir, 'tiny');
    await makeTinyModel(dir, { seed: 9 });
    model = await loadModel(dir, { contextLength: 1024, maxSequences: 4 });
  });
  afterAll(async () => {
    await model?.close();
    tmp.cleanup();
  });

  it('generate() and applyChatTemplate() take the openai package\'s ChatCompletionMessageParam[] as they are', async () => {
    const messages: ChatCompletionMessageParam[] = [
      { role: 'developer', content: 'You can check the weather.' },
      { role: 'user', content: [{ type: 'text', text: 'Weather in ' }, { type: 'text', text: 'Paris?' }] },
      { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'weather', arguments: '{"city":"Paris"}' } }] },
      { role: 'tool', tool_call_id: 'call_1', content: '{"celsius": 21}' },
    ];
    const tools: ChatCompletionTool[] = [{ type: 'function', function: { name: 'weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } }];
    const own: ChatMessage[] = [
      { role: 'system', content: 'You can check the weather.' },
      { role: 'user', content: 'Weather in Paris?' },
      { role: 'assistant', content: '', toolCalls: [{ name: 'weather', arguments: { city: 'Paris' } }] },
      { role: 'tool', content: '{"celsius": 21}' },
    ];
    const toolDefs = tools.map((t) => (t.type === 'function' ? { type: 'function' as const, function: { name: t.function.name, parameters: t.function.parameters! } } : null!));
    expect(model.applyChatTemplate(messages, { tools: toolDefs })).toBe(model.applyChatTemplate(own, { tools: toolDefs }));
    const r = await model.generate({ messages, tools: toolDefs, maxTokens: 3, reasoning: false });
    const same = await model.generate({ messages: own, tools: toolDefs, maxTokens: 3, reasoning: false });
    expect(r.tokens).toEqual(same.tokens);
    // mixed shapes are fine; what the template cannot render is refused with the wire's field name
    await expect(model.generate({ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x' } }] } as ChatCompletionMessageParam] })).rejects.toThrow(/messages\[0\]\.content\[0\] has type "image_url"/);
    await expect(model.generate({ messages: [{ role: 'assistant', content: null, tool_calls: [{ id: 'c', type: 'function', function: { name: 'f', arguments: '[1]' } }] }, { role: 'user', content: 'x' }] })).rejects.toThrow(/messages\[0\]\.tool_calls\[0\]\.function\.arguments must be a JSON object/);
  });

  it('a ChatSession takes tool results (send({role:"tool"}) or toolResults) and keeps its cached state across the tool loop', async () => {
    await using session = model.chat({ reasoning: false, tools: [{ type: 'function', function: { name: 'weather', parameters: { type: 'object' } } }] });
    const first = await session.send('Weather in Paris?', { maxTokens: 4, logitBias: noEnd });
    await session.ready();
    const second = await session.send({ role: 'tool', tool_call_id: 'call_1', content: '{"celsius": 21}' }, { maxTokens: 4, logitBias: noEnd });
    // the tool turn restored the state after the whole first reply (prepared while the caller ran the tool):
    // only the tool result's section was computed
    expect(second.usage.cachedTokens).toBeGreaterThanOrEqual(first.usage.promptTokens + first.usage.completionTokens);
    await session.ready();
    const third = await session.toolResults(['{"celsius": 22}', { content: '{"rain": false}', toolCallId: 'call_2' }], { maxTokens: 4, logitBias: noEnd });
    expect(third.usage.cachedTokens).toBeGreaterThanOrEqual(second.usage.promptTokens + second.usage.completionTokens);
    expect(session.messages.map((m) => m.role)).toEqual(['user', 'assistant', 'tool', 'assistant', 'tool', 'tool', 'assistant']);
    // OpenAI-shaped user messages too; replies and system messages are not a turn's to send
    await session.send([{ role: 'user', content: [{ type: 'text', text: 'Thanks' }] }], { maxTokens: 2 });
    expect(() => session.stream({ role: 'assistant', content: 'no' })).toThrow(/a turn sends user messages and tool results/);
  });

  it('model.chat({ messages }) continues a conversation given in OpenAI\'s shape', async () => {
    const history: ChatCompletionMessageParam[] = [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Hi' },
      { role: 'assistant', content: 'Hello!' },
    ];
    await using session = model.chat({ messages: history, reasoning: false });
    expect(session.options.system).toBe('Be brief.');
    const r = await session.send('And now?', { maxTokens: 2 });
    expect(r.finishReason).not.toBe('error');
    expect(session.messages.slice(0, 4)).toEqual([
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Hi' },
      { role: 'assistant', content: 'Hello!' },
      { role: 'user', content: 'And now?' },
    ]);
    expect(() => model.chat({ system: 'x', messages: history })).toThrow(/give one/);
  });

  it('await using closes a model; sessions dispose', async () => {
    let escaped: NemotronModel;
    {
      await using m = await loadModel(dir, { contextLength: 256, maxSequences: 1 });
      escaped = m;
      expect((await m.generate({ prompt: 'hi', maxTokens: 1 })).finishReason).not.toBe('error');
    }
    expect(() => escaped.tokenize('x')).toThrow(/closed/);
  });

  it('stream events narrow on `type` alone', async () => {
    // a type-level check as much as a run-time one: no `'call' in ev`
    const describeEvent = (ev: StreamEvent): string => {
      switch (ev.type) {
        case 'toolCall':
          return `call ${ev.call.name}`;
        case 'toolCallError':
          return `bad call ${ev.raw}: ${ev.error}`;
        case 'done':
          return ev.result.finishReason;
        default:
          return ev.text;
      }
    };
    const seen: string[] = [];
    for await (const ev of model.stream({ prompt: 'x', maxTokens: 2 })) seen.push(describeEvent(ev));
    expect(seen.length).toBeGreaterThan(0);
  });

  it("abortBehavior: 'resolve' (default) ends with finishReason abort; 'reject' rejects with an AbortError as the OpenAI SDK does", async () => {
    const long = { prompt: 'Once upon a time', maxTokens: 900, logitBias: noEnd };
    const a = new AbortController();
    const p = model.generate({ ...long, signal: a.signal });
    setTimeout(() => a.abort(new Error('user pressed stop')), 20);
    const resolved = await p;
    expect(resolved.finishReason).toBe('abort');

    const b = new AbortController();
    const q = model.generate({ ...long, signal: b.signal, abortBehavior: 'reject' });
    setTimeout(() => b.abort(new Error('user pressed stop')), 20);
    const err = (await q.catch((e: unknown) => e)) as AbortError;
    expect(err).toBeInstanceOf(AbortError);
    expect(err.name).toBe('AbortError');
    expect(err.code).toBe('ERR_ABORTED');
    expect((err.cause as Error).message).toBe('user pressed stop');
    expect(err.result.finishReason).toBe('abort');

    // a stream throws at the end instead of yielding `done`; an already-aborted signal rejects at once
    const c = new AbortController();
    const events: string[] = [];
    const streamed = (async () => {
      for await (const ev of model.stream({ ...long, signal: c.signal, abortBehavior: 'reject' })) {
        events.push(ev.type);
        if (events.length === 3) c.abort();
      }
    })();
    await expect(streamed).rejects.toMatchObject({ name: 'AbortError' });
    expect(events).not.toContain('done');
    await expect(model.generate({ prompt: 'x', signal: AbortSignal.abort(), abortBehavior: 'reject' })).rejects.toBeInstanceOf(AbortError);
    await expect(model.generate({ prompt: 'x', abortBehavior: 'sometimes' as never })).rejects.toThrow(/abortBehavior/);
  });

  it('topLogprobs in the library: one entry per sampled token, attached to the events that carry its text', async () => {
    const events: StreamEvent[] = [];
    let result: GenerateResult | undefined;
    for await (const ev of model.stream({ prompt: 'Once', maxTokens: 6, topLogprobs: 4, logitBias: noEnd })) {
      events.push(ev);
      if (ev.type === 'done') result = ev.result;
    }
    expect(result!.logprobs!.map((l) => l.token)).toEqual(result!.tokens);
    for (const l of result!.logprobs!) expect(l.top).toHaveLength(4);
    const attached = events.flatMap((e) => (e.type !== 'done' && e.logprobs ? e.logprobs : []));
    expect(attached.length).toBeLessThanOrEqual(result!.logprobs!.length);
    expect(attached).toEqual(result!.logprobs!.slice(0, attached.length));
    expect((await model.generate({ prompt: 'Once', maxTokens: 2 })).logprobs).toBeUndefined();
    await expect(model.generate({ prompt: 'Once', topLogprobs: 21 })).rejects.toThrow(/topLogprobs/);
  });
});
