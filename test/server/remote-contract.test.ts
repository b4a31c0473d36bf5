/**
 * The contract with vLLM serving Nemotron Nano 2: what connect() sends (messages with Nano 2's /think and
 * /no_think, chat_template_kwargs, tools, stream_options, the session id, return_token_ids and the segments
 * of the thinking budget) and how it reads vLLM's answers (reasoning_content, streamed tool_calls
 * fragments, usage with prompt_tokens_details.cached_tokens, raw text without parsers, errors). The
 * answers are fixtures (test/fixtures/remote-vllm) replayed by a local HTTP server.
 */
import { readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';

import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';

import { connect, RemoteError } from '../../lib/remote/index.js';
import { makeTinyModel } from '../../lib/tiny-model/index.js';
import { TextTokenizer } from '../../lib/tokenizer.js';
import { repoFromDir, startHubServer } from '../hub-server.js';
import { tempDir } from '../helpers.js';

const FIXTURES = path.resolve(import.meta.dirname, '../fixtures/remote-vllm');
const MODEL = 'nvidia/NVIDIA-Nemotron-Nano-9B-v2';
const fixture = (name: string) => readFileSync(path.join(FIXTURES, name), 'utf8');

interface Seen {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: Record<string, unknown>;
}
type Answer = { status?: number; sse?: string; json?: unknown };

describe('connect() and vLLM\'s request/response shapes for Nemotron Nano 2', () => {
  const tmp = tempDir('remote-contract');
  let server: http.Server;
  let server2: http.Server;
  let url: string;
  let url2: string;
  const seen: Seen[] = [];
  let answers: Answer[] = [];

  beforeAll(async () => {
    const handler = (req: http.IncomingMessage, res: http.ServerResponse) => {
      let raw = '';
      req.on('data', (c: Buffer) => (raw += c.toString()));
      req.on('end', () => {
        seen.push({ method: req.method!, url: req.url!, headers: req.headers, body: raw ? (JSON.parse(raw) as Record<string, unknown>) : {} });
        const a = answers.shift() ?? { status: 500, json: { object: 'error', message: 'no fixture queued', type: 'InternalServerError', param: null, code: 500 } };
        if (a.sse !== undefined) {
          res.writeHead(a.status ?? 200, { 'content-type': 'text/event-stream' });
          res.end(a.sse);
        } else {
          res.writeHead(a.status ?? 200, { 'content-type': 'application/json' });
          res.end(JSON.stringify(a.json));
        }
      });
    };
    server = http.createServer(handler);
    server2 = http.createServer(handler);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    await new Promise<void>((r) => server2.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
    url2 = `http://127.0.0.1:${(server2.address() as AddressInfo).port}/v1`;
  });
  beforeEach(() => {
    seen.length = 0;
    answers = [];
  });
  afterAll(async () => {
    await new Promise((r) => server.close(r));
    await new Promise((r) => server2.close(r));
    tmp.cleanup();
  });

  it('chat with reasoning: /think in the system message, chat_template_kwargs, session id; reasoning_content and cached tokens read back', async () => {
    const remote = await connect(url, { apiKey: 'sk-test', model: MODEL });
    const chat = remote.chat({ system: 'Be brief.', reasoning: true, sessionId: 'conv-42' });
    answers.push({ sse: fixture('chat-reasoning.sse') });
    const r = await chat.send('What is 2+2?', { maxTokens: 64 });
    expect(r.reasoning).toBe('The user asks 2+2. That is 4.');
    expect(r.text).toBe('2 + 2 = 4.');
    expect(r.finishReason).toBe('stop');
    // vLLM reports cached tokens (--enable-prompt-tokens-details) but no reasoning token count: 0 here.
    expect(r.usage).toEqual({ promptTokens: 31, cachedTokens: 16, completionTokens: 14, reasoningTokens: 0, droppedMessages: 0 });
    expect(r.timings.totalMs).toBeGreaterThan(0);

    const req = seen[0]!;
    expect(req.method).toBe('POST');
    expect(req.url).toBe('/v1/chat/completions');
    expect(req.headers.authorization).toBe('Bearer sk-test');
    expect(req.headers['x-session-id']).toBe('conv-42');
    expect(req.body).toEqual({
      model: MODEL,
      messages: [{ role: 'system', content: 'Be brief. /think' }, { role: 'user', content: 'What is 2+2?' }],
      max_tokens: 64,
      temperature: 0.6, // NVIDIA's recommendation with reasoning on, as the local engine defaults
      top_p: 0.95,
      chat_template_kwargs: { enable_thinking: true },
      stream: true,
      stream_options: { include_usage: true },
      user: 'conv-42',
    });

    // The next turn sends the history back: the answer, its reasoning as reasoning_content.
    answers.push({ sse: fixture('chat-reasoning-field.sse') });
    const r2 = await chat.send('Thanks /no_think', { temperature: 0 });
    expect(r2.reasoning).toBe('The user asks 2+2. That is 4.'); // newer vLLM: the delta field is `reasoning`
    const body = seen[1]!.body;
    expect(body['messages']).toEqual([
      { role: 'system', content: 'Be brief. /think' },
      { role: 'user', content: 'What is 2+2?' },
      { role: 'assistant', content: '2 + 2 = 4.', reasoning_content: 'The user asks 2+2. That is 4.' },
      { role: 'user', content: 'Thanks ' }, // the session's switch wins, as in the local template
    ]);
    expect(body['temperature']).toBe(0);
    expect(body['max_tokens']).toBe(4096);
    expect(chat.messages).toHaveLength(5);
    await remote.close();
  });

  it('tools: OpenAI tool definitions out; streamed tool_calls fragments in, parsed; the call and its result go back with matching ids', async () => {
    const remote = await connect(url, { model: MODEL });
    const tools = [{ type: 'function' as const, function: { name: 'get_weather', description: 'Current weather', parameters: { type: 'object', properties: { city: { type: 'string' }, unit: { type: 'string' } }, required: ['city'] } } }];
    answers.push({ sse: fixture('chat-toolcalls.sse') });
    const events: unknown[] = [];
    for await (const ev of remote.stream({ messages: [{ role: 'user', content: 'Weather in Paris?' }], tools, reasoning: false, sessionId: 's-tools' })) events.push(ev);
    const done = events.at(-1) as { result: { toolCalls: unknown; text: string; finishReason: string; usage: { cachedTokens: number } } };
    expect(events.filter((e) => (e as { type: string }).type === 'toolCall')).toEqual([{ type: 'toolCall', call: { name: 'get_weather', arguments: { city: 'Paris', unit: 'celsius' } } }]);
    expect(done.result.toolCalls).toEqual([{ name: 'get_weather', arguments: { city: 'Paris', unit: 'celsius' } }]);
    expect(done.result.text).toBe('');
    expect(done.result.finishReason).toBe('stop');
    expect(done.result.usage.cachedTokens).toBe(96);
    expect(seen[0]!.body).toMatchObject({
      messages: [{ role: 'system', content: '/no_think' }, { role: 'user', content: 'Weather in Paris?' }],
      chat_template_kwargs: { enable_thinking: false },
      tools,
      tool_choice: 'auto',
      temperature: 0,
      max_tokens: 256,
      user: 's-tools',
    });

    answers.push({ sse: fixture('chat-reasoning.sse') });
    await remote.generate({
      messages: [
        { role: 'user', content: 'Weather in Paris?' },
        { role: 'assistant', content: '', toolCalls: [{ name: 'get_weather', arguments: { city: 'Paris', unit: 'celsius' } }] },
        { role: 'tool', content: '{"temperature": 21}' },
      ],
      tools,
    });
    const msgs = seen[1]!.body['messages'] as Array<Record<string, unknown>>;
    expect(msgs[1]).toEqual({ role: 'assistant', content: null, tool_calls: [{ id: 'call_1_0', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris","unit":"celsius"}' } }] });
    expect(msgs[2]).toEqual({ role: 'tool', content: '{"temperature": 21}', tool_call_id: 'call_1_0' });
    await remote.close();
  });

  it('a server without reasoning or tool parsers: the raw text is split and its <TOOLCALL> parsed on the client', async () => {
    const remote = await connect(url, { model: MODEL, reasoningParser: 'client' });
    answers.push({ sse: fixture('chat-raw.sse') });
    const r = await remote.generate({ messages: [{ role: 'user', content: 'Weather in Paris?' }], reasoning: true, tools: [{ type: 'function', function: { name: 'get_weather' } }] });
    expect(r.reasoning).toBe('I should check the weather.');
    expect(r.text).toBe('Let me look. ');
    expect(r.toolCalls).toEqual([{ name: 'get_weather', arguments: { city: 'Paris' } }]);
    expect(r.usage).toEqual({ promptTokens: 64, cachedTokens: 0, completionTokens: 37, reasoningTokens: 0 });
    await remote.close();
  });

  it('a refused request is a RemoteError with vLLM\'s message and status, not retried elsewhere', async () => {
    const remote = await connect(url, { model: MODEL });
    answers.push({ status: 400, json: JSON.parse(fixture('error-400.json')) });
    const err = (await remote.generate({ messages: [{ role: 'user', content: 'x' }], sessionId: 'pinned' }).catch((e: unknown) => e)) as RemoteError;
    expect(err).toBeInstanceOf(RemoteError);
    expect(err.code).toBe('ERR_REMOTE');
    expect(err.status).toBe(400);
    expect(err.remoteCode).toBe('400');
    expect(err.message).toMatch(/maximum context length is 131072/);
    expect(remote.stats().failovers).toBe(0);
    expect(seen).toHaveLength(1);
    await remote.close();
  });

  it('a 5xx or a refused connection fails over to the next endpoint', async () => {
    // The dead endpoint (port 1) and the fixture server: whichever ranks first for some key, the request lands on ours.
    const dead = url.replace(/:\d+\//, ':1/');
    const remote = await connect([dead, url], { model: MODEL, healthCheckIntervalMs: 0 });
    let key = 'k0';
    for (let i = 0; remote.endpointFor(key) !== dead.replace(/\/v1$/, ''); i++) key = `k${i}`;
    answers.push({ sse: fixture('chat-reasoning.sse') });
    const r = await remote.generate({ messages: [{ role: 'user', content: 'x' }], sessionId: key });
    expect(r.text).toBe('2 + 2 = 4.');
    expect(remote.stats().failovers).toBe(1);
    expect(remote.stats().endpoints.find((e) => e.url === dead.replace(/\/v1$/, ''))!.healthy).toBe(false);
    // A 503 from the only endpoint: nowhere left to go.
    const other = await connect([url], { model: MODEL });
    answers.push({ status: 503, json: { object: 'error', message: 'overloaded', type: 'ServiceUnavailableError', param: null, code: 503 } });
    await expect(other.generate({ messages: [{ role: 'user', content: 'x' }] })).rejects.toMatchObject({ code: 'ERR_REMOTE_UNAVAILABLE' });
    await remote.close();
    await other.close();
  });

  it('a stream cut short: generate() retries it whole on the next endpoint; stream() throws once text was delivered, and the chat records nothing', async () => {
    const cut = fixture('chat-reasoning.sse').split('\n\n').slice(0, 4).join('\n\n') + '\n\n';
    const remote = await connect([url, url2], { model: MODEL, healthCheckIntervalMs: 0 });
    answers.push({ sse: cut }, { sse: fixture('chat-reasoning.sse') });
    const r = await remote.generate({ messages: [{ role: 'user', content: 'x' }], sessionId: 's-cut' });
    expect(r.text).toBe('2 + 2 = 4.');
    expect(r.reasoning).toBe('The user asks 2+2. That is 4.');
    expect(seen).toHaveLength(2);
    expect(remote.stats().failovers).toBe(1);

    const one = await connect(url, { model: MODEL });
    const chat = one.chat({ sessionId: 's-cut-2' });
    answers.push({ sse: cut });
    const got: string[] = [];
    const err = await (async () => {
      for await (const ev of chat.stream('x')) if (ev.type === 'reasoning') got.push(ev.text);
    })().catch((e: unknown) => e);
    expect(got.join('')).toBe('The user asks 2+2. That is 4.');
    expect(err).toMatchObject({ code: 'ERR_REMOTE' });
    expect(chat.messages).toEqual([]);
    await remote.close();
    await one.close();
  });

  it('the client-side tokenizer from hf: downloads tokenizer.json and tokenizer_config.json only; a refused thinking-budget request throws', async () => {
    const dir = path.join(tmp.dir, 'tiny-hub');
    await makeTinyModel(dir, { seed: 1 });
    const hub = await startHubServer();
    try {
      hub.repos.set('test/tiny', repoFromDir(dir, {}, 'tiny-remote'));
      const remote = await connect(url, { model: MODEL, tokenizer: 'hf:test/tiny', hub: { endpoint: hub.url, cacheDir: path.join(tmp.dir, 'hub-cache'), token: false } });
      const local = TextTokenizer.fromDir(dir)!;
      expect(remote.tokenize('Hello world')).toEqual(local.encode('Hello world', true));
      expect(remote.applyChatTemplate([{ role: 'user', content: 'hi' }], { reasoning: true })).toMatch(/<think>\n$/);
      const fetched = new Set(hub.log.filter((l) => l.server === 'hub' && l.url.includes('/resolve/')).map((l) => l.url.split('/').pop()));
      expect([...fetched].sort()).toEqual(['tokenizer.json', 'tokenizer_config.json']);
      answers.push({ status: 400, json: JSON.parse(fixture('error-400.json')) });
      await expect(remote.generate({ messages: [{ role: 'user', content: 'x' }], thinkingBudget: 8 })).rejects.toMatchObject({ code: 'ERR_REMOTE', status: 400 });
      await remote.close();
    } finally {
      await hub.close();
    }
  });

  it('thinking budget, NVIDIA\'s way: /v1/completions on the client-rendered prompt, max_tokens = budget, then to the next newline, then </think> and the answer', async () => {
    const dir = path.join(tmp.dir, 'tiny');
    await makeTinyModel(dir, { seed: 1 });
    const tok = TextTokenizer.fromDir(dir)!;
    const remote = await connect(url, { model: MODEL, tokenizer: dir });
    const enc = (s: string) => tok.encode(s, false);
    const seg1 = enc('abc def');
    const seg2 = enc(' ghi\n');
    const close = enc('</think>\n\n');
    const seg3 = enc('Answer.');
    answers.push(
      { json: { id: 'cmpl-1', object: 'text_completion', model: MODEL, choices: [{ index: 0, text: 'abc def', token_ids: seg1, logprobs: null, finish_reason: 'length', stop_reason: null }], usage: { prompt_tokens: 40, completion_tokens: seg1.length, total_tokens: 40 + seg1.length, prompt_tokens_details: { cached_tokens: 32 } } } },
      { json: { id: 'cmpl-2', object: 'text_completion', model: MODEL, choices: [{ index: 0, text: ' ghi', token_ids: seg2, logprobs: null, finish_reason: 'stop', stop_reason: '\n' }], usage: { prompt_tokens: 40 + seg1.length, completion_tokens: seg2.length, total_tokens: 0 } } },
      { json: { id: 'cmpl-3', object: 'text_completion', model: MODEL, choices: [{ index: 0, text: 'Answer.', token_ids: seg3, logprobs: null, finish_reason: 'stop', stop_reason: null }], usage: { prompt_tokens: 0, completion_tokens: seg3.length, total_tokens: 0 } } },
    );
    const messages = [{ role: 'user' as const, content: 'Think briefly' }];
    const r = await remote.generate({ messages, reasoning: true, thinkingBudget: seg1.length, maxTokens: 100, temperature: 0, sessionId: 'budget-1' });
    const prompt = remote.tokenize(remote.applyChatTemplate(messages, { reasoning: true }));
    expect(seen.map((s) => s.url)).toEqual(['/v1/completions', '/v1/completions', '/v1/completions']);
    const [b1, b2, b3] = seen.map((s) => s.body);
    expect(b1).toMatchObject({ model: MODEL, prompt, max_tokens: seg1.length, temperature: 0, return_token_ids: true, skip_special_tokens: false, user: 'budget-1' });
    expect(b1!['stop']).toBeUndefined();
    expect(b2).toMatchObject({ prompt: [...prompt, ...seg1], max_tokens: 100 - seg1.length, stop: ['\n'] });
    expect(b3).toMatchObject({ prompt: [...prompt, ...seg1, ...seg2, ...close], max_tokens: 100 - seg1.length - seg2.length - close.length });
    expect(b3!['stop']).toBeUndefined();
    expect(seen[0]!.headers['x-session-id']).toBe('budget-1');
    expect(r.reasoning).toBe('abc def ghi');
    expect(r.text).toBe('Answer.');
    expect(r.tokens).toEqual([...seg1, ...seg2, ...close, ...seg3]);
    expect(r.usage).toMatchObject({ promptTokens: prompt.length, cachedTokens: 32, completionTokens: seg1.length + seg2.length + close.length + seg3.length, reasoningTokens: seg1.length + seg2.length });
    expect(r.finishReason).toBe('stop');
    await remote.close();
  });
});
