// Issue #14 items 2 and 3, driven as clients drive them: the real `openai` client, browser-style CORS
// preflights through fetch, a Prometheus scrape, the routes mounted in another Fastify app and behind a
// plain Node (req, res, next) handler, and `serve` with its deployment flags.
import { spawn } from 'node:child_process';
import { createServer as createHttpServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { Writable } from 'node:stream';

import cors from '@fastify/cors';
import express from 'express';
import Fastify from 'fastify';
import OpenAI, { APIError } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { loadModel, type NemotronModel } from '../../lib/model.js';
import { createRequestHandler, createServer, openaiRoutes, type NemotronServer } from '../../lib/server/index.js';
import { makeTinyModel } from '../../lib/tiny-model/index.js';
import { logSoftmaxRows, tempDir } from '../helpers.js';

const root = path.resolve(import.meta.dirname, '../..');
type Chat = OpenAI.Chat.Completions.ChatCompletionCreateParamsNonStreaming;
const body = <T>(b: Record<string, unknown>) => b as unknown as T;

function preflight(url: string, origin: string, headers = 'content-type, authorization') {
  return fetch(url, { method: 'OPTIONS', headers: { Origin: origin, 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': headers } });
}

describe('serve for deployments: logprobs, n, model check, metrics, CORS, logs', () => {
  const tmp = tempDir('server-api');
  let model: NemotronModel;
  let server: NemotronServer;
  let url: string;
  let client: OpenAI;
  const logLines: Array<Record<string, unknown>> = [];

  beforeAll(async () => {
    const dir = path.join(tmp.dir, 'tiny');
    await makeTinyModel(dir, { seed: 5, maxPositionEmbeddings: 2048 });
    model = await loadModel(dir, { contextLength: 2048, maxSequences: 4 });
    const stream = new Writable({
      write(chunk: Buffer, _enc, cb) {
        for (const line of chunk.toString().split('\n')) if (line.trim()) logLines.push(JSON.parse(line) as Record<string, unknown>);
        cb();
      },
    });
    server = await createServer(model, { modelName: 'tiny', cors: ['http://app.example', '/^https:\\/\\/.*\\.example\\.org$/'], apiKey: 'k', logger: { level: 'info', stream } });
    url = await server.listen(0);
    client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'k', maxRetries: 0 });
  });
  afterAll(async () => {
    await server?.close();
    await model?.close();
    tmp.cleanup();
  });

  it('binds to 127.0.0.1 by default', () => {
    expect(new URL(url).hostname).toBe('127.0.0.1');
  });

  it('a request naming a model this server does not serve is 404 model_not_found', async () => {
    const e = (await client.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 }).catch((x: unknown) => x)) as APIError;
    expect(e).toBeInstanceOf(APIError);
    expect(e.status).toBe(404);
    expect(e.code).toBe('model_not_found');
    expect(e.param).toBe('model');
    const c = (await client.completions.create({ model: 'text-davinci-003', prompt: 'x', max_tokens: 2 }).catch((x: unknown) => x)) as APIError;
    expect(c.status).toBe(404);
  });

  it('chat logprobs: the raw distribution, the sampled token first under greedy, matching evaluate()', async () => {
    const messages = [{ role: 'user' as const, content: 'Hello' }];
    const r = await client.chat.completions.create(body<Chat>({ model: 'tiny', messages, max_tokens: 5, temperature: 0, logprobs: true, top_logprobs: 3, reasoning: false }));
    const content = r.choices[0]!.logprobs!.content!;
    expect(content.length).toBeGreaterThan(0);
    expect(content.length).toBeLessThanOrEqual(r.usage!.completion_tokens);
    for (const t of content) {
      expect(t.logprob).toBeLessThanOrEqual(0);
      expect(t.top_logprobs).toHaveLength(3);
      // greedy with no penalties: the sampled token is the most likely one
      expect(t.top_logprobs[0]!.logprob).toBeCloseTo(t.logprob, 9);
      expect(t.top_logprobs[0]!.logprob).toBeGreaterThanOrEqual(t.top_logprobs[1]!.logprob);
    }
    // the tokens' bytes make up the text (special tokens, which have no text, aside)
    const textual = content.filter((t) => !/^<SPECIAL_\d+>$/.test(t.token));
    expect(Buffer.from(textual.flatMap((t) => t.bytes ?? [])).toString('utf8')).toBe(r.choices[0]!.message.content);
    // the first token's log-prob is the log-softmax of the prompt's last logits
    const prompt = model.tokenize(model.applyChatTemplate(messages, { reasoning: false }));
    const lsm = logSoftmaxRows(await model.evaluate(prompt), model.info.config.vocabSize);
    const lib = await model.generate({ messages, reasoning: false, maxTokens: 1, temperature: 0, topLogprobs: 2 });
    expect(lib.logprobs).toHaveLength(1);
    expect(lib.logprobs![0]!.token).toBe(lib.tokens[0]);
    expect(Math.abs(lib.logprobs![0]!.logprob - lsm[lib.tokens[0]!]!)).toBeLessThan(1e-4);
    // sampled with a temperature the values stay those of the raw distribution
    const hot = await model.generate({ prompt, maxTokens: 1, temperature: 1.5, seed: 3, topLogprobs: 0 });
    expect(Math.abs(hot.logprobs![0]!.logprob - lsm[hot.tokens[0]!]!)).toBeLessThan(1e-4);
    expect(hot.logprobs![0]!.top).toEqual([]);

    // streamed: the chunks carry the logprobs of their tokens
    const streamed: number[] = [];
    for await (const chunk of await client.chat.completions.create(body<OpenAI.Chat.Completions.ChatCompletionCreateParamsStreaming>({ model: 'tiny', messages, max_tokens: 5, temperature: 0, logprobs: true, top_logprobs: 3, reasoning: false, stream: true }))) {
      for (const t of chunk.choices[0]?.logprobs?.content ?? []) streamed.push(t.logprob);
    }
    expect(streamed).toEqual(content.map((t) => t.logprob));
  });

  it('completions logprobs (legacy shape), streamed and not', async () => {
    const r = await client.completions.create({ model: 'tiny', prompt: 'Once upon a time', max_tokens: 4, temperature: 0, logprobs: 2 });
    const lp = r.choices[0]!.logprobs!;
    expect(lp.tokens!.length).toBe(lp.token_logprobs!.length);
    expect(lp.top_logprobs!.length).toBe(lp.tokens!.length);
    expect(Object.keys(lp.top_logprobs![0]!).length).toBeGreaterThanOrEqual(1);
    expect(lp.text_offset![0]).toBe(0);
    // tokens that are not whole UTF-8 are written as OpenAI does: bytes:\xNN...
    const bytes = lp.tokens!.flatMap((t) => (t.startsWith('bytes:') ? t.slice(6).split('\\x').filter(Boolean).map((h) => parseInt(h, 16)) : Array.from(Buffer.from(t))));
    expect(Buffer.from(bytes).toString('utf8')).toBe(r.choices[0]!.text);
    const tokens: string[] = [];
    for await (const chunk of await client.completions.create({ model: 'tiny', prompt: 'Once upon a time', max_tokens: 4, temperature: 0, logprobs: 2, stream: true })) {
      tokens.push(...(chunk.choices[0]?.logprobs?.tokens ?? []));
    }
    expect(tokens).toEqual(lp.tokens);
  });

  it('n > 1: one prefill, n choices; choice i is the request with seed + i', async () => {
    const messages = [{ role: 'user' as const, content: 'Tell me a story about the sea' }];
    const params = { model: 'tiny', messages, max_tokens: 6, temperature: 1.0, seed: 40, reasoning: false, logit_bias: { '12': -100, '2': -100 } };
    const r = await client.chat.completions.create(body<Chat>({ ...params, n: 3 }));
    expect(r.choices.map((c) => c.index)).toEqual([0, 1, 2]);
    expect(r.usage!.completion_tokens).toBe(18);
    // the prompt once; every choice restored the shared prefill and computed only the last prompt token
    expect(r.usage!.prompt_tokens).toBeGreaterThan(5);
    expect(r.usage!.prompt_tokens_details!.cached_tokens).toBe(r.usage!.prompt_tokens - 1);
    for (let i = 0; i < 3; i++) {
      const single = await client.chat.completions.create(body<Chat>({ ...params, seed: 40 + i }));
      expect(single.choices[0]!.message.content).toBe(r.choices[i]!.message.content);
    }
    // the library: the same through generateMany
    const many = await model.generateMany({ messages, reasoning: false, maxTokens: 6, temperature: 1, seed: 40, logitBias: { 12: -100, 2: -100 } }, 3);
    expect(many.map((m) => m.text)).toEqual(r.choices.map((c) => c.message.content));

    // streamed: chunks of both choices, each with its finish_reason, then usage
    const seen = new Map<number, string>();
    const finished = new Set<number>();
    let usage: OpenAI.CompletionUsage | undefined | null;
    for await (const chunk of await client.chat.completions.create(body<OpenAI.Chat.Completions.ChatCompletionCreateParamsStreaming>({ ...params, n: 2, stream: true, stream_options: { include_usage: true } }))) {
      for (const c of chunk.choices) {
        seen.set(c.index, (seen.get(c.index) ?? '') + (c.delta.content ?? ''));
        if (c.finish_reason) finished.add(c.index);
      }
      if (chunk.usage) usage = chunk.usage;
    }
    expect([...finished].sort()).toEqual([0, 1]);
    expect(seen.get(0)).toBe(r.choices[0]!.message.content);
    expect(seen.get(1)).toBe(r.choices[1]!.message.content);
    expect(usage!.completion_tokens).toBe(12);
  });

  it('/metrics: Prometheus text with vLLM names, no API key needed', async () => {
    await client.chat.completions.create(body<Chat>({ model: 'tiny', messages: [{ role: 'user', content: 'count' }], max_tokens: 4, reasoning: false }));
    const res = await fetch(`${url}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
    const text = await res.text();
    const value = (name: string) => {
      const m = new RegExp(`^${name.replace(/[{}]/g, '\\$&')}(?:\\{[^}]*\\})? ([0-9.e+-]+)$`, 'm').exec(text);
      return m ? Number(m[1]) : NaN;
    };
    for (const name of ['vllm:num_requests_running', 'vllm:num_requests_waiting', 'vllm:kv_cache_usage_perc', 'vllm:gpu_cache_usage_perc', 'vllm:prefix_cache_queries_total', 'vllm:prefix_cache_hits_total', 'nemotron_node:tokens_processed_total', 'nemotron_node:prefix_cache_tokens_reused_total', 'nemotron_node:kv_blocks_used']) {
      expect(Number.isFinite(value(name)), name).toBe(true);
    }
    expect(value('vllm:prompt_tokens_total')).toBeGreaterThan(0);
    expect(value('vllm:generation_tokens_total')).toBeGreaterThan(0);
    expect(value('vllm:prefix_cache_hits_total')).toBeGreaterThan(0); // the n > 1 requests restored their prefill
    expect(text).toMatch(/^vllm:time_to_first_token_seconds_bucket\{le="0\.1",model_name="tiny"\} \d+$/m);
    expect(value('vllm:time_to_first_token_seconds_count')).toBeGreaterThan(0);
    expect(value('vllm:inter_token_latency_seconds_count')).toBeGreaterThan(0);
    expect(value('nemotron_node:kv_blocks_total')).toBeGreaterThan(0);
    for (const h of ['vllm:request_queue_time_seconds', 'vllm:request_prefill_time_seconds', 'vllm:request_decode_time_seconds', 'vllm:request_prompt_tokens', 'vllm:request_generation_tokens']) {
      expect(value(`${h}_count`), h).toBeGreaterThan(0);
    }
    // time to first token is at most the whole request's latency
    expect(value('vllm:time_to_first_token_seconds_sum')).toBeLessThanOrEqual(value('vllm:e2e_request_latency_seconds_sum'));
    expect(text).toMatch(/^vllm:request_success_total\{model_name="tiny",finished_reason="length"\} \d+$/m);
    expect(text).toContain('model_name="tiny"');
  });

  it('CORS: a browser preflight from an allowed origin passes (API key or not), others get no CORS headers', async () => {
    const ok = await preflight(`${url}/v1/chat/completions`, 'http://app.example');
    expect(ok.status).toBe(204);
    expect(ok.headers.get('access-control-allow-origin')).toBe('http://app.example');
    expect(ok.headers.get('access-control-allow-methods')).toMatch(/POST/);
    expect(ok.headers.get('access-control-allow-headers')?.toLowerCase()).toMatch(/authorization/);
    const regex = await preflight(`${url}/v1/chat/completions`, 'https://ui.example.org');
    expect(regex.headers.get('access-control-allow-origin')).toBe('https://ui.example.org');
    const other = await preflight(`${url}/v1/chat/completions`, 'http://evil.example');
    expect(other.headers.get('access-control-allow-origin')).toBeNull();
    // the actual request carries the header too
    const r = await fetch(`${url}/v1/models`, { headers: { Origin: 'http://app.example', Authorization: 'Bearer k' } });
    expect(r.status).toBe(200);
    expect(r.headers.get('access-control-allow-origin')).toBe('http://app.example');
  });

  it('request logs: one JSON line per request with method, url, status, duration and tokens', async () => {
    await client.completions.create({ model: 'tiny', prompt: 'log me', max_tokens: 3 });
    await new Promise((r) => setTimeout(r, 50));
    const line = logLines.filter((l) => l['url'] === '/v1/completions').at(-1)!;
    expect(line).toMatchObject({ msg: 'request completed', method: 'POST', statusCode: 200, promptTokens: expect.any(Number), completionTokens: expect.any(Number), cachedTokens: expect.any(Number) });
    expect(line['durationMs']).toBeGreaterThan(0);
    expect(logLines.some((l) => l['statusCode'] === 404 && l['url'] === '/v1/chat/completions')).toBe(true);
  });
});

describe('mounted in an existing app', () => {
  const tmp = tempDir('server-mount');
  let model: NemotronModel;
  beforeAll(async () => {
    const dir = path.join(tmp.dir, 'tiny');
    await makeTinyModel(dir, { seed: 6 });
    model = await loadModel(dir, { contextLength: 512, maxSequences: 2 });
  });
  afterAll(async () => {
    await model?.close();
    tmp.cleanup();
  });

  it('as a Fastify plugin under a prefix, next to the app\'s own routes and @fastify/cors', async () => {
    const app = Fastify();
    await app.register(cors, { origin: 'http://ui.example' });
    app.get('/own', async () => ({ mine: true }));
    await app.register(openaiRoutes, { model, modelName: 'tiny', prefix: '/llm', apiKey: 'k2' });
    const base = await app.listen({ port: 0, host: '127.0.0.1' });
    try {
      const client = new OpenAI({ baseURL: `${base}/llm/v1`, apiKey: 'k2', maxRetries: 0 });
      expect((await client.models.list()).data[0]!.id).toBe('tiny');
      const r = await client.chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: 'hi' }], max_tokens: 3 });
      expect(r.choices[0]!.message.role).toBe('assistant');
      // the plugin's API key guards its routes only
      expect((await fetch(`${base}/own`)).status).toBe(200);
      expect((await fetch(`${base}/llm/v1/models`)).status).toBe(401);
      // its error shape and JSON-only parsing stay inside it
      const bad = await fetch(`${base}/llm/v1/chat/completions`, { method: 'POST', headers: { authorization: 'Bearer k2', 'content-type': 'application/json' }, body: '{}' });
      expect(bad.status).toBe(400);
      expect(((await bad.json()) as { error: { param: string } }).error.param).toBe('messages');
      const pre = await preflight(`${base}/llm/v1/chat/completions`, 'http://ui.example');
      expect(pre.status).toBe(204);
      expect(pre.headers.get('access-control-allow-origin')).toBe('http://ui.example');
      expect((await fetch(`${base}/llm/metrics`)).status).toBe(200);
    } finally {
      await app.close();
    }
  });

  it('createServer does not boot its app before listen(): plugins such as @fastify/cors can be registered on server.app', async () => {
    const server = await createServer(model, { modelName: 'tiny' });
    await server.app.register(cors, { origin: 'http://late.example' });
    const base = await server.listen(0);
    try {
      const pre = await preflight(`${base}/v1/chat/completions`, 'http://late.example');
      expect(pre.status).toBe(204);
      expect(pre.headers.get('access-control-allow-origin')).toBe('http://late.example');
    } finally {
      await server.close();
    }
  });

  it('latency histograms: one time to first token per choice, one inter-token interval per later token', async () => {
    const server = await createServer(model, { modelName: 'tiny' });
    const base = await server.listen(0);
    try {
      const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'x', maxRetries: 0 });
      await client.completions.create({ model: 'tiny', prompt: 'Once upon', max_tokens: 5, n: 2, temperature: 1, seed: 1, logit_bias: { '12': -100, '2': -100 } });
      const text = await (await fetch(`${base}/metrics`)).text();
      const count = (name: string) => Number(new RegExp(`^${name}_count\\{model_name="tiny"\\} (\\d+)$`, 'm').exec(text)?.[1]);
      expect(count('vllm:time_to_first_token_seconds')).toBe(2);
      expect(count('vllm:inter_token_latency_seconds')).toBe(8);
      expect(count('vllm:e2e_request_latency_seconds')).toBe(2);
    } finally {
      await server.close();
    }
  });

  it('as a plain Node (req, res, next) handler: unknown paths go to next, /v1 to the routes', async () => {
    const handler = createRequestHandler(model, { modelName: 'tiny', cors: true });
    // an Express-style chain: the handler first, the app's own routes after it
    const http: Server = createHttpServer((req, res) =>
      handler(req, res, () => {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end('app route');
      }),
    );
    await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
    const base = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
    try {
      const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'x', maxRetries: 0 });
      const r = await client.chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: 'hi' }], max_tokens: 3 });
      expect(r.object).toBe('chat.completion');
      let text = '';
      for await (const chunk of await client.completions.create({ model: 'tiny', prompt: 'a', max_tokens: 3, stream: true })) text += chunk.choices[0]?.text ?? '';
      expect(typeof text).toBe('string');
      expect(await (await fetch(`${base}/elsewhere`)).text()).toBe('app route');
      const pre = await preflight(`${base}/v1/completions`, 'http://any.example');
      expect(pre.headers.get('access-control-allow-origin')).toBe('*');
    } finally {
      await handler.close();
      await new Promise((resolve) => http.close(resolve));
    }
  });

  it('from Express: app.use(path, handler), next to the app\'s routes and body parser', async () => {
    const handler = createRequestHandler(model, { modelName: 'tiny', cors: ['http://ui.example'] });
    const app = express();
    app.use('/llm', handler); // before the body parser: the handler reads the body itself
    app.use(express.json());
    app.post('/echo', (req, res) => void res.json({ got: (req.body as { x: number }).x }));
    const http = await new Promise<Server>((resolve) => {
      const s = app.listen(0, '127.0.0.1', () => resolve(s));
    });
    const base = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
    try {
      const client = new OpenAI({ baseURL: `${base}/llm/v1`, apiKey: 'x', maxRetries: 0 });
      const r = await client.chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: 'hi' }], max_tokens: 3 });
      expect(r.choices).toHaveLength(1);
      const streamed: string[] = [];
      for await (const chunk of await client.chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: 'hi' }], max_tokens: 3, stream: true })) {
        streamed.push(chunk.object);
      }
      expect(streamed.every((o) => o === 'chat.completion.chunk')).toBe(true);
      const e = (await client.chat.completions.create({ model: 'other', messages: [{ role: 'user', content: 'hi' }] }).catch((x: unknown) => x)) as APIError;
      expect(e.status).toBe(404);
      expect(await (await fetch(`${base}/echo`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"x":5}' })).json()).toEqual({ got: 5 });
      const pre = await preflight(`${base}/llm/v1/chat/completions`, 'http://ui.example');
      expect(pre.status).toBe(204);
      expect(pre.headers.get('access-control-allow-origin')).toBe('http://ui.example');
    } finally {
      await handler.close();
      await new Promise((resolve) => http.close(resolve));
    }
  });

  it('`serve` takes the loadModel flags, --cors and --log-level, and serves /metrics', async () => {
    const child = spawn(
      process.execPath,
      [
        '--import', 'tsx', path.join(root, 'lib/cli.ts'), 'serve', '--model', model.info.path, '--port', '0', '--model-name', 'flags',
        '--context', '256', '--sequences', '3', '--batch-tokens', '32', '--kv-dtype', 'f32', '--device', 'cpu', '--precision', 'exact',
        '--threads', '1', '--cache-bytes', '1000000', '--cors', 'http://a.example', '--log-level', 'info',
      ],
      { cwd: root },
    );
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
    try {
      const t0 = Date.now();
      while (!/listening on (http:\/\/\S+) /.test(out)) {
        if (Date.now() - t0 > 20_000) throw new Error(`serve did not start: ${out}`);
        await new Promise((r) => setTimeout(r, 20));
      }
      const base = /listening on (http:\/\/\S+) /.exec(out)![1]!;
      expect(new URL(base).hostname).toBe('127.0.0.1');
      const c = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'unused', maxRetries: 0 });
      // --context 256: max_tokens is capped by the context
      const tooMany = (await c.completions.create({ model: 'flags', prompt: 'x', max_tokens: 300 }).catch((e: unknown) => e)) as APIError;
      expect(tooMany.status).toBe(400);
      expect(tooMany.message).toMatch(/at most 256/);
      const r = await c.completions.create({ model: 'flags', prompt: 'x'.repeat(10), max_tokens: 5 });
      expect(r.usage!.completion_tokens).toBeGreaterThan(0);
      const metrics = await (await fetch(`${base}/metrics`)).text();
      expect(metrics).toContain('vllm:num_requests_running{model_name="flags"}');
      const pre = await preflight(`${base}/v1/completions`, 'http://a.example');
      expect(pre.headers.get('access-control-allow-origin')).toBe('http://a.example');
      await new Promise((r) => setTimeout(r, 50));
      expect(out).toMatch(/"msg":"request completed"/);
      expect(out).toMatch(/"url":"\/v1\/completions"[^\n]*"completionTokens":\d+/);
    } finally {
      child.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
  });
});
