// The OpenAI-compatible server, driven as users drive it: a real server on 127.0.0.1 and the official
// `openai` client (retries off, so each status is what the server answered). The tiny model has random
// weights: end tokens are banned with logit_bias where an output must be long.
import { spawn } from 'node:child_process';
import path from 'node:path';
import OpenAI, { APIError } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { GenerateOptions, GenerateResult, NemotronModel, StreamEvent } from '../../lib/model.js';
import { loadModel } from '../../lib/model.js';
import { createServer, type NemotronServer } from '../../lib/server/index.js';
import { toChatMessages } from '../../lib/server/protocol.js';
import { makeTinyModel } from '../../lib/tiny-model/index.js';
import { tempDir, waitFor } from '../helpers.js';

const BAN_END = { '12': -100, '2': -100 };
const root = path.resolve(import.meta.dirname, '../..');

type Chat = OpenAI.Chat.Completions.ChatCompletionCreateParamsNonStreaming;
/** Our extensions (reasoning, thinking_budget) and deliberately malformed bodies go through this cast. */
const body = <T>(b: Record<string, unknown>) => b as unknown as T;

async function expectApiError(p: Promise<unknown>, status: number, param?: string | null): Promise<APIError> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(APIError);
  const e = err as APIError;
  expect(e.status).toBe(status);
  expect(e.type).toBe(status === 429 ? 'rate_limit_error' : status === 401 ? 'authentication_error' : 'invalid_request_error');
  expect(typeof e.message).toBe('string');
  if (param !== undefined) expect(e.param).toBe(param);
  return e;
}

describe('OpenAI-compatible server on the tiny model', () => {
  const tmp = tempDir('server');
  let model: NemotronModel;
  let server: NemotronServer;
  let url: string;
  let client: OpenAI;

  beforeAll(async () => {
    const dir = path.join(tmp.dir, 'tiny');
    await makeTinyModel(dir, { seed: 3, maxPositionEmbeddings: 8192 });
    model = await loadModel(dir, { contextLength: 8192, maxSequences: 4 });
    server = await createServer(model, { modelName: 'tiny', maxBodyBytes: 256 * 1024, maxTokensLimit: 6000 });
    url = await server.listen(0, '127.0.0.1');
    client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', maxRetries: 0 });
  });
  afterAll(async () => {
    await server?.close();
    await model?.close();
    tmp.cleanup();
  });

  it('lists and retrieves its one model; an unknown model id is 404', async () => {
    const list = await client.models.list();
    expect(list.data.map((m) => m.id)).toEqual(['tiny']);
    expect(list.data[0]).toMatchObject({ object: 'model', owned_by: 'nemotron-node' });
    expect((await client.models.retrieve('tiny')).id).toBe('tiny');
    const err = await client.models.retrieve('gpt-4').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(APIError);
    expect((err as APIError).status).toBe(404);
    expect((err as APIError).code).toBe('model_not_found');
    expect(await (await fetch(`${url}/health`)).json()).toEqual({ status: 'ok' });
  });

  it('non-streaming chat: content, reasoning_content with reasoning on (none with it off), usage in OpenAI shape', async () => {
    const messages = [{ role: 'system' as const, content: 'Be brief.' }, { role: 'user' as const, content: 'Hello there' }];
    const on = await client.chat.completions.create(body<Chat>({ model: 'tiny', messages, max_tokens: 24, temperature: 0, logit_bias: BAN_END, reasoning: true }));
    expect(on.object).toBe('chat.completion');
    expect(on.model).toBe('tiny');
    expect(on.id).toMatch(/^chatcmpl-/);
    const choice = on.choices[0]!;
    expect(choice.message.role).toBe('assistant');
    expect(typeof choice.message.content).toBe('string');
    const reasoning = (choice.message as { reasoning_content?: string | null }).reasoning_content;
    expect(typeof reasoning).toBe('string');
    expect(reasoning!.length).toBeGreaterThan(0);
    expect(choice.finish_reason).toBe('length');
    const u = on.usage!;
    expect(u.completion_tokens).toBe(24);
    expect(u.prompt_tokens).toBeGreaterThan(5);
    expect(u.total_tokens).toBe(u.prompt_tokens + u.completion_tokens);
    expect(u.prompt_tokens_details?.cached_tokens).toBeGreaterThanOrEqual(0);
    expect(u.completion_tokens_details?.reasoning_tokens).toBeGreaterThan(0);
    expect(u.completion_tokens_details!.reasoning_tokens!).toBeLessThanOrEqual(24);

    // vLLM's switch works too; with reasoning off there is no reasoning.
    const off = await client.chat.completions.create(body<Chat>({ model: 'tiny', messages, max_tokens: 8, temperature: 0, chat_template_kwargs: { enable_thinking: false } }));
    expect((off.choices[0]!.message as { reasoning_content?: string | null }).reasoning_content).toBeNull();
    expect(off.usage!.completion_tokens_details?.reasoning_tokens).toBe(0);
  });

  it('streaming chat: role first, then deltas whose concatenation is the non-streamed answer; finish chunk, usage chunk', async () => {
    const params = { model: 'tiny', messages: [{ role: 'user', content: 'Count to ten' }], max_tokens: 40, temperature: 0, seed: 7, logit_bias: BAN_END, reasoning: true, thinking_budget: 16 };
    const whole = await client.chat.completions.create(body<Chat>(params));
    const stream = await client.chat.completions.create(body<OpenAI.Chat.Completions.ChatCompletionCreateParamsStreaming>({ ...params, stream: true, stream_options: { include_usage: true } }));
    let content = '';
    let reasoning = '';
    let finish: string | null = null;
    let usage: OpenAI.CompletionUsage | undefined;
    const chunks: OpenAI.Chat.Completions.ChatCompletionChunk[] = [];
    for await (const chunk of stream) {
      chunks.push(chunk);
      if (chunk.usage) usage = chunk.usage;
      const c = chunk.choices[0];
      if (!c) continue;
      const d = c.delta as { content?: string | null; reasoning_content?: string };
      content += d.content ?? '';
      reasoning += d.reasoning_content ?? '';
      if (c.finish_reason) finish = c.finish_reason;
    }
    expect(chunks[0]!.object).toBe('chat.completion.chunk');
    expect(chunks[0]!.choices[0]!.delta.role).toBe('assistant');
    expect(new Set(chunks.map((c) => c.id)).size).toBe(1);
    expect(content).toBe(whole.choices[0]!.message.content);
    expect(reasoning).toBe((whole.choices[0]!.message as { reasoning_content?: string }).reasoning_content);
    expect(reasoning.length).toBeGreaterThan(0);
    expect(finish).toBe(whole.choices[0]!.finish_reason);
    // the usage chunk is last and has no choices
    expect(chunks.at(-1)!.choices).toEqual([]);
    expect(usage!.completion_tokens).toBe(whole.usage!.completion_tokens);
    expect(usage!.prompt_tokens).toBe(whole.usage!.prompt_tokens);
    expect(usage!.completion_tokens_details?.reasoning_tokens).toBe(whole.usage!.completion_tokens_details?.reasoning_tokens);
  });

  it('completions: text prompt and token-id prompt, streamed text equals the whole; the wire format is SSE ending in [DONE]', async () => {
    const params = { model: 'tiny', prompt: 'Once upon a time', max_tokens: 20, temperature: 0, logit_bias: BAN_END };
    const whole = await client.completions.create(params);
    expect(whole.object).toBe('text_completion');
    expect(whole.choices[0]!.finish_reason).toBe('length');
    expect(whole.usage!.completion_tokens).toBe(20);
    let text = '';
    let finish: string | null = null;
    for await (const chunk of await client.completions.create({ ...params, stream: true })) {
      text += chunk.choices[0]?.text ?? '';
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    expect(text).toBe(whole.choices[0]!.text);
    expect(finish).toBe('length');
    const ids = await client.completions.create({ ...params, prompt: model.tokenize('Once upon a time') });
    expect(ids.choices[0]!.text).toBe(whole.choices[0]!.text);

    const raw = await fetch(`${url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ...params, max_tokens: 3, stream: true }) });
    expect(raw.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const sse = await raw.text();
    expect(sse).toMatch(/^data: \{/);
    expect(sse.endsWith('data: [DONE]\n\n')).toBe(true);
    for (const event of sse.trim().split('\n\n')) expect(event).toMatch(/^data: /);

    await expectApiError(client.completions.create({ ...params, prompt: ['a', 'b'] }), 400, 'prompt');
    await expectApiError(client.completions.create({ ...params, echo: true }), 400, 'echo');
  });

  it('maps OpenAI tool-call history (assistant tool_calls, tool results, tools) onto the chat template', async () => {
    const messages: OpenAI.Chat.Completions.ChatCompletionMessageParam[] = [
      { role: 'developer', content: 'You can check the weather.' },
      { role: 'user', content: [{ type: 'text', text: 'Weather in ' }, { type: 'text', text: 'Paris?' }] },
      { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'weather', arguments: '{"city":"Paris"}' } }] },
      { role: 'tool', tool_call_id: 'call_1', content: '{"celsius": 21}' },
    ];
    expect(toChatMessages(messages as never)).toEqual([
      { role: 'system', content: 'You can check the weather.' },
      { role: 'user', content: 'Weather in Paris?' },
      { role: 'assistant', content: '', toolCalls: [{ name: 'weather', arguments: { city: 'Paris' } }] },
      { role: 'tool', content: '{"celsius": 21}' },
    ]);
    const tools: OpenAI.Chat.Completions.ChatCompletionTool[] = [
      { type: 'function', function: { name: 'weather', description: 'Current weather', parameters: { type: 'object', properties: { city: { type: 'string' } } }, strict: true } },
    ];
    const r = await client.chat.completions.create({ model: 'tiny', messages, tools, tool_choice: 'auto', max_tokens: 4 });
    expect(r.usage!.prompt_tokens).toBeGreaterThan(model.tokenize('Weather in Paris?').length + 20);
    const bad = structuredClone(messages);
    (bad[2] as { tool_calls: Array<{ function: { arguments: string } }> }).tool_calls[0]!.function.arguments = '{city: Paris}';
    await expectApiError(client.chat.completions.create({ model: 'tiny', messages: bad, tools }), 400, 'messages[2].tool_calls[0].function.arguments');
    // tool_choice 'required' works (test/server/server-grammar.test.ts); a named tool that is not among the tools is a 400.
    await expectApiError(client.chat.completions.create({ model: 'tiny', messages, tools, tool_choice: { type: 'function', function: { name: 'nope' } } }), 400, 'tool_choice');
  });

  it('bad requests get 4xx OpenAI errors that the client surfaces as APIError', async () => {
    const ok = { model: 'tiny', messages: [{ role: 'user', content: 'hi' }] };
    await expectApiError(client.chat.completions.create(body<Chat>({ ...ok, n: 0 })), 400, 'n');
    await expectApiError(client.chat.completions.create(body<Chat>({ ...ok, n: 17 })), 400, 'n');
    await expectApiError(client.chat.completions.create(body<Chat>({ ...ok, messages: [{ role: 'wizard', content: 'hi' }] })), 400, 'messages[0].role');
    await expectApiError(client.chat.completions.create(body<Chat>({ ...ok, max_tokens: 6001 })), 400, 'max_tokens');
    await expectApiError(client.chat.completions.create(body<Chat>({ ...ok, max_completion_tokens: 100000 })), 400, 'max_completion_tokens');
    await expectApiError(client.chat.completions.create(body<Chat>({ ...ok, temperature: '0.5' })), 400, 'temperature');
    await expectApiError(client.chat.completions.create(body<Chat>({ ...ok, messages: [] })), 400, 'messages');
    await expectApiError(client.chat.completions.create(body<Chat>({ model: 'tiny' })), 400, 'messages');
    await expectApiError(client.chat.completions.create(body<Chat>({ ...ok, logit_bias: { '999999': 5 } })), 400, 'logit_bias');
    await expectApiError(client.chat.completions.create(body<Chat>({ ...ok, top_logprobs: 3 })), 400, 'top_logprobs');
    await expectApiError(client.chat.completions.create(body<Chat>({ ...ok, logprobs: true, top_logprobs: 21 })), 400, 'top_logprobs');
    // the library's own checks (a system message after the first) keep their field name
    await expectApiError(client.chat.completions.create(body<Chat>({ ...ok, messages: [{ role: 'user', content: 'a' }, { role: 'system', content: 'b' }] })), 400, 'messages[1].role');
    // too long for the context: OpenAI's code
    const overflow = await expectApiError(client.chat.completions.create(body<Chat>({ ...ok, messages: [{ role: 'user', content: 'x '.repeat(9000) }] })), 400, 'messages');
    expect(overflow.code).toBe('context_length_exceeded');
    // body over maxBodyBytes
    const big = await expectApiError(client.chat.completions.create(body<Chat>({ ...ok, messages: [{ role: 'user', content: 'x'.repeat(300 * 1024) }] })), 413);
    expect(big.code).toBe('request_too_large');
    // malformed JSON and a non-JSON body (the client cannot send these)
    const malformed = await fetch(`${url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"messages": [' });
    expect(malformed.status).toBe(400);
    expect(await malformed.json()).toEqual({ error: { message: expect.any(String), type: 'invalid_request_error', param: null, code: 'invalid_json' } });
    const text = await fetch(`${url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'hello' });
    expect(text.status).toBe(415);
    expect(((await text.json()) as { error: { type: string } }).error.type).toBe('invalid_request_error');
    const missing = await fetch(`${url}/v1/embeddings`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(missing.status).toBe(404);
    expect(model.stats().liveSequences).toBe(0);
  });

  it('a client aborting mid-stream cancels its generation: the sequence is freed within a second', async () => {
    const before = model.stats().tokensProcessed;
    const controller = new AbortController();
    const stream = await client.chat.completions.create(
      body<OpenAI.Chat.Completions.ChatCompletionCreateParamsStreaming>({ model: 'tiny', messages: [{ role: 'user', content: 'Go on forever' }], max_tokens: 6000, logit_bias: BAN_END, stream: true, reasoning: false }),
      { signal: controller.signal },
    );
    let chunks = 0;
    // the client ends its iteration quietly on abort (or throws, depending on timing): either is fine
    await (async () => {
      for await (const _ of stream) {
        if (++chunks === 5) {
          controller.abort();
          break;
        }
      }
    })().catch(() => undefined);
    expect(chunks).toBe(5);
    await waitFor(() => model.stats().liveSequences === 0, 1000);
    // it stopped: nowhere near the 6000 tokens asked for
    expect(model.stats().tokensProcessed - before).toBeLessThan(1500);
  });

  it('a non-streaming client that disconnects cancels its generation too', async () => {
    const before = model.stats().tokensProcessed;
    const controller = new AbortController();
    const pending = client.chat.completions
      .create(body<Chat>({ model: 'tiny', messages: [{ role: 'user', content: 'Go on forever' }], max_tokens: 6000, logit_bias: BAN_END, reasoning: false }), { signal: controller.signal })
      .catch((e: unknown) => e);
    await waitFor(() => model.stats().liveSequences === 1 && model.stats().tokensProcessed - before > 50, 5000);
    controller.abort();
    expect(await pending).toBeInstanceOf(Error);
    await waitFor(() => model.stats().liveSequences === 0, 1000);
    expect(model.stats().tokensProcessed - before).toBeLessThan(3000);
  });

  it('beyond maxConcurrent in-flight generations: 429 with an OpenAI error; server.close() cancels the rest', async () => {
    const busy = await createServer(model, { modelName: 'tiny', maxConcurrent: 1 });
    const busyUrl = await busy.listen(0);
    const c = new OpenAI({ baseURL: `${busyUrl}/v1`, apiKey: 'unused', maxRetries: 0 });
    const long = body<OpenAI.Chat.Completions.ChatCompletionCreateParamsStreaming>({ model: 'tiny', messages: [{ role: 'user', content: 'Go on' }], max_tokens: 6000, logit_bias: BAN_END, stream: true, reasoning: false });
    const first = await c.chat.completions.create(long);
    const it1 = first[Symbol.asyncIterator]();
    await it1.next(); // the role chunk: the generation is in flight
    const e = await expectApiError(c.chat.completions.create({ ...long, stream: false }), 429, null);
    expect(e.code).toBe('rate_limit_exceeded');
    expect(e.headers?.get('retry-after')).toBe('1');
    // shutting down cancels the stream in flight: the client gets an error event, the sequence is freed
    const rest = (async () => {
      for (;;) if ((await it1.next()).done) return 'ended';
    })().catch((err: unknown) => err);
    await busy.close();
    const outcome = await rest;
    expect(outcome).toBeInstanceOf(APIError);
    expect((outcome as APIError).message).toMatch(/shutting down/);
    await waitFor(() => model.stats().liveSequences === 0, 1000);
  });

  it('with an API key: 401 without it or with a wrong one, 200 with it; /health stays open', async () => {
    const locked = await createServer(model, { apiKey: 'sekret' });
    const lockedUrl = await locked.listen(0);
    try {
      const wrong = new OpenAI({ baseURL: `${lockedUrl}/v1`, apiKey: 'nope', maxRetries: 0 });
      await expectApiError(wrong.models.list(), 401);
      expect((await fetch(`${lockedUrl}/v1/models`)).status).toBe(401);
      expect((await fetch(`${lockedUrl}/health`)).status).toBe(200);
      const right = new OpenAI({ baseURL: `${lockedUrl}/v1`, apiKey: 'sekret', maxRetries: 0 });
      expect((await right.models.list()).data[0]!.id).toBe('tiny');
    } finally {
      await locked.close();
    }
  });

  it('`nemotron-node serve` listens, answers, and exits cleanly on SIGTERM', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(root, 'lib/cli.ts'), 'serve', '--model', model.info.path, '--port', '0', '--model-name', 'cli-tiny', '--threads', '1'], { cwd: root });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      await waitFor(() => /listening on (http:\/\/\S+) /.test(out), 20_000);
      const base = /listening on (http:\/\/\S+) /.exec(out)![1]!;
      const c = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'unused', maxRetries: 0 });
      expect((await c.models.list()).data[0]!.id).toBe('cli-tiny');
      const r = await c.chat.completions.create({ model: 'cli-tiny', messages: [{ role: 'user', content: 'hi' }], max_tokens: 3 });
      expect(r.choices[0]!.message.role).toBe('assistant');
    } finally {
      child.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
  });
});

/** A stand-in model that replays scripted events: tool calls and failures the tiny model never produces. */
function scriptedModel(script: (options: GenerateOptions) => StreamEvent[]): NemotronModel {
  const result = (over: Partial<GenerateResult>): GenerateResult => ({
    text: '', reasoning: '', toolCalls: [], toolCallErrors: [], tokens: [], finishReason: 'stop',
    usage: { promptTokens: 10, cachedTokens: 4, completionTokens: 7, reasoningTokens: 2 },
    timings: { queueMs: 0, timeToFirstTokenMs: 0, prefillTokensPerSecond: 0, decodeTokensPerSecond: 0, totalMs: 0 },
    ...over,
  });
  return {
    info: { path: '/models/scripted', contextLength: 1000, maxSequences: 2, config: { vocabSize: 100 } },
    stream(options: GenerateOptions) {
      const events = script(options).map((e) => (e.type === 'done' ? { type: 'done' as const, result: result(e.result) } : e));
      return (async function* () {
        yield* events;
      })();
    },
    async startStream(this: NemotronModel, options: GenerateOptions) {
      return this.stream(options);
    },
    promptByteLimit: () => 0,
  } as unknown as NemotronModel;
}

describe('response mapping (scripted model)', () => {
  const call = { name: 'weather', arguments: { city: 'Paris' } };
  const done = (over: Partial<GenerateResult>): StreamEvent => ({ type: 'done', result: over as GenerateResult });

  it('tool calls come back in OpenAI shape (JSON-string arguments, finish_reason tool_calls), streamed and not', async () => {
    const model = scriptedModel(() => [
      { type: 'reasoning', text: 'need weather' },
      { type: 'toolCall', call },
      { type: 'toolCallError', error: 'invalid JSON', raw: '<TOOLCALL>[oops</TOOLCALL>' },
      done({ finishReason: 'stop' }),
    ]);
    const server = await createServer(model);
    const client = new OpenAI({ baseURL: `${await server.listen(0)}/v1`, apiKey: 'x', maxRetries: 0 });
    try {
      const r = await client.chat.completions.create({ model: 'scripted', messages: [{ role: 'user', content: 'hi' }] });
      expect(r.model).toBe('scripted');
      const m = r.choices[0]!.message;
      expect(r.choices[0]!.finish_reason).toBe('tool_calls');
      expect(m.tool_calls).toHaveLength(1);
      const tc = m.tool_calls![0]! as OpenAI.Chat.Completions.ChatCompletionMessageFunctionToolCall;
      expect(tc).toMatchObject({ type: 'function', function: { name: 'weather' } });
      expect(tc.id).toMatch(/^call_/);
      expect(JSON.parse(tc.function.arguments)).toEqual({ city: 'Paris' });
      // a call that did not parse is not dropped: its raw text is content
      expect(m.content).toBe('<TOOLCALL>[oops</TOOLCALL>');
      expect((m as { reasoning_content?: string }).reasoning_content).toBe('need weather');
      expect(r.usage).toEqual({ prompt_tokens: 10, completion_tokens: 7, total_tokens: 17, prompt_tokens_details: { cached_tokens: 4 }, completion_tokens_details: { reasoning_tokens: 2 } });

      const deltas: OpenAI.Chat.Completions.ChatCompletionChunk.Choice.Delta[] = [];
      let finish: string | null = null;
      for await (const chunk of await client.chat.completions.create({ model: 'scripted', messages: [{ role: 'user', content: 'hi' }], stream: true })) {
        deltas.push(chunk.choices[0]!.delta);
        finish = chunk.choices[0]!.finish_reason ?? finish;
      }
      const toolDelta = deltas.find((d) => d.tool_calls)!.tool_calls![0]!;
      expect(toolDelta).toMatchObject({ index: 0, type: 'function', function: { name: 'weather', arguments: '{"city":"Paris"}' } });
      expect(finish).toBe('tool_calls');
    } finally {
      await server.close();
    }
  });

  it('a generation that fails is a 500 (or an error event mid-stream); a closed model is 503; tool_choice none drops the tools', async () => {
    let seen: GenerateOptions | undefined;
    const { InternalError } = await import('../../lib/errors.js');
    const model = scriptedModel((o) => {
      seen = o;
      const last = o.messages?.at(-1)?.content;
      return last === 'closed' ? [done({ finishReason: 'abort' })] : last === 'fail' ? [{ type: 'text', text: 'par' }, done({ finishReason: 'error', error: new InternalError('engine fault') })] : [done({})];
    });
    const server = await createServer(model);
    const client = new OpenAI({ baseURL: `${await server.listen(0)}/v1`, apiKey: 'x', maxRetries: 0 });
    try {
      const e = (await client.chat.completions.create({ model: 'scripted', messages: [{ role: 'user', content: 'fail' }] }).catch((x: unknown) => x)) as APIError;
      expect(e.status).toBe(500);
      expect(e.type).toBe('server_error');
      expect(e.code).toBe('ERR_INTERNAL');
      const streamed = (async () => {
        for await (const _ of await client.chat.completions.create({ model: 'scripted', messages: [{ role: 'user', content: 'fail' }], stream: true }));
      })();
      await expect(streamed).rejects.toThrow(/engine fault/);
      const closed = (await client.chat.completions.create({ model: 'scripted', messages: [{ role: 'user', content: 'closed' }] }).catch((x: unknown) => x)) as APIError;
      expect(closed.status).toBe(503);

      await client.chat.completions.create(body<Chat>({
        model: 'scripted', messages: [{ role: 'user', content: 'ok' }], tools: [{ type: 'function', function: { name: 'f' } }], tool_choice: 'none',
        temperature: 0.3, top_p: 0.9, top_k: -1, seed: -1, stop: 'END', presence_penalty: 0.5, frequency_penalty: 0.25, logit_bias: { '5': -100 }, max_completion_tokens: 9, thinking_budget: 3, reasoning: true,
      }));
      expect(seen).toMatchObject({ temperature: 0.3, topP: 0.9, topK: 0, seed: 2 ** 32 - 1, stop: ['END'], presencePenalty: 0.5, frequencyPenalty: 0.25, logitBias: { 5: -100 }, maxTokens: 9, thinkingBudget: 3, reasoning: true });
      expect(seen!.tools).toBeUndefined();
      expect(seen!.signal).toBeInstanceOf(AbortSignal);
      // no max_tokens: the library's default (4096 with reasoning on, else 256) unless it exceeds the limit (here the context, 1000)
      await client.chat.completions.create(body<Chat>({ model: 'scripted', messages: [{ role: 'user', content: 'ok' }], reasoning: true }));
      expect(seen!.maxTokens).toBe(1000);
      await client.chat.completions.create(body<Chat>({ model: 'scripted', messages: [{ role: 'user', content: 'ok /no_think' }] }));
      expect(seen!.maxTokens).toBeUndefined();
      expect(seen!.reasoning).toBeUndefined();
    } finally {
      await server.close();
    }
  });
});
