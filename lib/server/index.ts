/**
 * `serve`: an OpenAI-compatible HTTP API over one loaded model, on Fastify — as a booted server
 * (createServer), as a Fastify plugin to register in an existing app (openaiRoutes), or as a plain Node
 * `(req, res)` handler for Express, Koa or node:http (createRequestHandler).
 *
 *   GET  /v1/models, /v1/models/:id    the one model this server runs
 *   POST /v1/chat/completions          messages, tools, reasoning (+ thinking budget), logprobs, n; JSON or SSE stream
 *   POST /v1/completions               a raw prompt, logprobs, n; JSON or SSE stream
 *   GET  /metrics                      Prometheus metrics, vLLM's names (metrics.ts); no API key needed
 *   GET  /health                       liveness (createServer only; no API key needed)
 *
 * Requests are checked against JSON Schemas (schemas.ts) and mapped onto generate options (protocol.ts).
 * A request naming another model than the one served is 404 model_not_found. Limits: body size (413, also
 * answered before the body is sent to a client that asks `Expect: 100-continue`), max_tokens (400),
 * in-flight generations (429; a request with n choices counts n), and time: the headers must arrive within
 * headersTimeoutMs, the whole request within bodyTimeoutMs, and a kept-alive connection idle for
 * idleTimeoutMs is closed (a client that stalls is disconnected; the time a generation takes is not
 * limited). Each generation is tied to its connection: a client that goes away (streaming or not) aborts
 * its generation, which frees its sequence within one step. Errors are OpenAI's
 * `{ error: { message, type, param, code } }`.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import path from 'node:path';

import cors from '@fastify/cors';
import Fastify, { LogController, type FastifyInstance, type FastifyPluginAsync, type FastifyReply, type FastifyRequest, type FastifyServerOptions } from 'fastify';
import { Registry } from 'prom-client';

import type { GenerateResult, NemotronModel, StreamEvent, TokenLogprob } from '../model.js';
import { kTokenObserver } from '../generation.js';
import { InvalidArgumentError } from '../errors.js';
import {
  HttpError,
  fromFrameworkError,
  fromLibraryError,
  newId,
  parseChatRequest,
  parseCompletionRequest,
  resultError,
  unixSeconds,
  wireChatLogprobs,
  wireCompletionLogprobs,
  wireFinishReason,
  wireToolCall,
  wireUsage,
  type ChatCompletionBody,
  type CompletionBody,
  type ParsedRequest,
  type RequestLimits,
  type WireToolCallOut,
} from './protocol.js';
import { registerJsonParser } from './json-body.js';
import { DEFAULT_TIMEOUTS } from './limits.js';
import { createMetrics, type ServerMetrics } from './metrics.js';
import { chatCompletionBody, completionBody } from './schemas.js';

export { DEFAULT_TIMEOUTS } from './limits.js';
export { HttpError } from './protocol.js';
export type { ErrorType, Nullable, WireChatLogprob, ParsedRequest, RequestLimits, WireToolCallOut, WireUsage, WireFinishReason, ChatCompletionBody, CompletionBody, WireMessage, WireToolCall } from './protocol.js';
export type { ServerMetrics } from './metrics.js';

/** What the OpenAI routes need, wherever they are mounted. */
export interface OpenAIRoutesOptions {
  /** The model id clients see in /v1/models and must name in requests (else 404). Default: the checkpoint folder's name. */
  modelName?: string;
  /** Generations in flight (running or queued for a sequence; n choices count n) before further requests get 429. Default: 4 × the model's maxSequences. */
  maxConcurrent?: number;
  /** Largest request body in bytes (larger: 413). Default 8 MiB. */
  maxBodyBytes?: number;
  /** Largest max_tokens / max_completion_tokens accepted (larger: 400). Default: the model's context length. */
  maxTokensLimit?: number;
  /** Most choices per request (`n`). Default 16. */
  maxChoices?: number;
  /** When set, every /v1 request needs `Authorization: Bearer <apiKey>` (else 401). */
  apiKey?: string;
  /** Serve Prometheus metrics at /metrics (default true). */
  metrics?: boolean;
  /** The prom-client registry to register the metrics in (default: a registry of their own). */
  metricsRegistry?: Registry;
}

export interface ServerOptions extends OpenAIRoutesOptions {
  /** Milliseconds for a client to send the request headers (else the connection is closed, 408 if possible). Default 10 000. */
  headersTimeoutMs?: number;
  /** Milliseconds for a client to send the whole request, body included (else 408 and closed). Default 60 000. */
  bodyTimeoutMs?: number;
  /** Milliseconds a kept-alive connection may wait for its next request, and a new one for its first byte. Default 5 000. */
  idleTimeoutMs?: number;
  /**
   * CORS (@fastify/cors): `true` allows any origin, a string or list allows those origins (exact, or
   * a `/regex/`). Default: off (no CORS headers; browsers on other origins are refused by the browser).
   */
  cors?: boolean | string | readonly string[];
  /**
   * Request logs on Fastify's logger (pino, JSON lines on stdout): one line per request when it ends
   * (method, url, status, duration, and prompt/cached/completion tokens for generations). A level
   * ('info' logs each request; 'warn' only problems; 'silent'), `true` ('info'), or Fastify's logger
   * options. Default: off.
   */
  logger?: boolean | 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent' | FastifyServerOptions['logger'];
}

export interface NemotronServer {
  /** Starts listening (default 127.0.0.1:8080; port 0 picks a free one) and resolves to the base URL (the API is under `${url}/v1`). */
  listen(port?: number, host?: string): Promise<string>;
  /** Stops accepting requests, cancels the generations in flight (their clients get 503 or an error event) and closes. The model stays open: it is the caller's. */
  close(): Promise<void>;
  /** The Fastify app, not yet booted until listen() or `app.ready()`: register plugins (auth, rate limits) on it first. */
  app: FastifyInstance;
  /** The Prometheus registry /metrics serves (null with metrics: false). */
  metrics: Registry | null;
}

/** A Node `(req, res, next?)` handler serving the OpenAI routes (Express: `app.use(handler)`, or a path: `app.use('/llm', handler)`). */
export interface NemotronRequestHandler {
  (req: IncomingMessage, res: ServerResponse, next?: (err?: unknown) => void): void;
  /** Resolves once the routes are ready (requests before that wait). */
  ready(): Promise<void>;
  /** Cancels the generations in flight and stops answering (503). The model stays open. */
  close(): Promise<void>;
  /** The Fastify instance behind the handler. */
  app: FastifyInstance;
}

const DEFAULT_BODY_BYTES = 8 * 1024 * 1024;
const DEFAULT_MAX_CHOICES = 16;

function positiveInteger(name: string, value: unknown): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
    throw new InvalidArgumentError('ERR_INVALID_ARGUMENT', `options.${name} must be an integer >= 1, got ${String(value)}`);
  }
  return value;
}

function sameSecret(given: string, expected: string): boolean {
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

/** Resolves when the response can take more data, or has gone away. */
function drained(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

/** Token counts of a request's generation, for its log line. */
const requestUsage = new WeakMap<IncomingMessage, { promptTokens: number; cachedTokens: number; completionTokens: number; choices: number }>();

/** The lifecycle shared by the routes and their host: cancel what runs, refuse what comes. */
interface RoutesState {
  closing: boolean;
  readonly controllers: Set<AbortController>;
  readonly handlers: Set<Promise<unknown>>;
}

function newState(): RoutesState {
  return { closing: false, controllers: new Set(), handlers: new Set() };
}

async function shutdown(state: RoutesState): Promise<void> {
  state.closing = true;
  for (const c of state.controllers) c.abort(new Error('the server is shutting down'));
  await Promise.allSettled([...state.handlers]);
}

const kState = Symbol('nemotron-node routes state');

/** openaiRoutes' options: the model to serve, and the routes' options. */
export interface OpenAIRoutesPluginOptions extends OpenAIRoutesOptions {
  model: NemotronModel;
}

interface ResolvedOptions {
  modelName: string;
  maxConcurrent: number;
  maxBodyBytes: number;
  maxChoices: number;
  limits: RequestLimits;
  apiKey: string | undefined;
}

function resolveOptions(model: NemotronModel, options: OpenAIRoutesOptions): ResolvedOptions {
  if (typeof options !== 'object' || options === null) throw new InvalidArgumentError('ERR_INVALID_ARGUMENT', 'options must be an object');
  const modelName = options.modelName ?? path.basename(model.info.path);
  if (typeof modelName !== 'string' || modelName === '') throw new InvalidArgumentError('ERR_INVALID_ARGUMENT', 'options.modelName must be a non-empty string');
  const apiKey = options.apiKey;
  if (apiKey !== undefined && (typeof apiKey !== 'string' || apiKey === '')) throw new InvalidArgumentError('ERR_INVALID_ARGUMENT', 'options.apiKey must be a non-empty string');
  return {
    modelName,
    maxConcurrent: positiveInteger('maxConcurrent', options.maxConcurrent) ?? 4 * model.info.maxSequences,
    maxBodyBytes: positiveInteger('maxBodyBytes', options.maxBodyBytes) ?? DEFAULT_BODY_BYTES,
    maxChoices: positiveInteger('maxChoices', options.maxChoices) ?? DEFAULT_MAX_CHOICES,
    limits: {
      maxTokens: positiveInteger('maxTokensLimit', options.maxTokensLimit) ?? model.info.contextLength,
      vocabSize: model.info.config.vocabSize,
    },
    apiKey,
  };
}

/**
 * The OpenAI routes as a Fastify plugin: `app.register(openaiRoutes, { model, modelName, apiKey })`, with a
 * `prefix` to mount them elsewhere (`{ prefix: '/llm' }` serves /llm/v1/chat/completions). The plugin is
 * encapsulated: its JSON-only body parsing, error handler (OpenAI's error shape) and API-key check apply to
 * its routes only. Register @fastify/cors, auth or rate limits on your app as usual. Closing the app
 * cancels the generations in flight; the model stays open.
 *
 * Validation follows your app's Ajv settings (Fastify's default coerces types: "1" passes as 1);
 * createServer and createRequestHandler turn coercion off, as OpenAI validates.
 */
export const openaiRoutes: FastifyPluginAsync<OpenAIRoutesPluginOptions> = async (app, options) => {
  const { model } = options;
  const o = resolveOptions(model, options);
  const state: RoutesState = (options as { [kState]?: RoutesState })[kState] ?? newState();
  const created = unixSeconds();
  const metrics: ServerMetrics | null = options.metrics === false ? null : createMetrics(model, o.modelName, options.metricsRegistry);
  let active = 0;

  app.removeContentTypeParser('text/plain'); // JSON only: anything else is 415
  // Large bodies are parsed (and refused when their text cannot fit the context) off the event loop.
  const jsonBodies = registerJsonParser(app, { bodyLimit: o.maxBodyBytes, promptByteLimit: model.promptByteLimit(), contextLength: model.info.contextLength });
  app.addHook('onClose', async () => {
    await shutdown(state);
    await jsonBodies.close();
  });

  app.setErrorHandler((err, _request, reply) => {
    const e = err instanceof HttpError ? err : fromFrameworkError(err as Parameters<typeof fromFrameworkError>[0]);
    if (e.status === 429) void reply.header('retry-after', '1');
    void reply.code(e.status).send(e.body());
  });

  if (o.apiKey !== undefined) {
    const apiKey = o.apiKey;
    app.addHook('onRequest', async (request) => {
      if (request.method === 'OPTIONS' || request.routeOptions.url?.endsWith('/metrics')) return;
      const m = /^Bearer\s+(.+)$/i.exec(request.headers.authorization ?? '');
      if (!m || !sameSecret(m[1]!.trim(), apiKey)) {
        throw new HttpError(401, 'invalid or missing API key: send Authorization: Bearer <key>', null, 'invalid_api_key', 'authentication_error');
      }
    });
  }

  const modelObject = () => ({ id: o.modelName, object: 'model', created, owned_by: 'nemotron-node' });
  const unknownModel = (id: string) =>
    new HttpError(404, `the model ${JSON.stringify(id)} does not exist (this server runs ${JSON.stringify(o.modelName)})`, 'model', 'model_not_found', 'invalid_request_error');

  app.get('/v1/models', async () => ({ object: 'list', data: [modelObject()] }));
  app.get<{ Params: { id: string } }>('/v1/models/:id', async (request) => {
    if (request.params.id !== o.modelName) throw unknownModel(request.params.id);
    return modelObject();
  });
  if (metrics) {
    app.get('/metrics', async (_request, reply) => {
      void reply.header('content-type', metrics.registry.contentType);
      return metrics.registry.metrics();
    });
  }

  /**
   * Runs a request's generations: the model check (404), admission (429), the connection tie (client
   * gone → abort), then the JSON answer or the SSE stream. A library error raised while the request is
   * checked is a 4xx blamed on `messages` / `prompt` unless it names a message field.
   */
  async function generate(request: FastifyRequest, reply: FastifyReply, body: { model?: string }, parse: () => ParsedRequest, kind: 'chat' | 'completion'): Promise<unknown> {
    if (state.closing) throw new HttpError(503, 'the server is shutting down', null, 'shutting_down');
    if (body.model !== undefined && body.model !== o.modelName) throw unknownModel(body.model);
    const parsed = parse();
    const most = Math.min(o.maxChoices, o.maxConcurrent);
    if (parsed.n > most) throw new HttpError(400, `n is ${parsed.n} but this server allows at most ${most}`, 'n', 'invalid_value');
    if (active + parsed.n > o.maxConcurrent) {
      throw new HttpError(429, `too many requests in flight (${active}; this server allows ${o.maxConcurrent}): retry later`, null, 'rate_limit_exceeded', 'rate_limit_error');
    }
    const controller = new AbortController();
    const res = reply.raw;
    // A session id (x-session-id header, else the body's `user`; connect() sends both) is echoed and logged.
    // Routing by it is the router's job; the prefix cache needs no key: it matches exact tokens.
    const sid = String(request.headers['x-session-id'] ?? (request.body as { user?: unknown } | undefined)?.user ?? '').slice(0, 256);
    if (sid && /^[\x21-\x7e]+$/.test(sid)) {
      res.setHeader('x-session-id', sid);
      request.log.info({ sessionId: sid, url: request.url }, 'session request');
    }
    const onClose = () => {
      if (!res.writableFinished) controller.abort(new Error('the client disconnected'));
    };
    let streams: Array<AsyncGenerator<StreamEvent, void, undefined>>;
    const arrival = performance.now() - reply.elapsedTime; // when the request arrived (its body read and checked since)
    active += parsed.n; // held while the prompt is tokenized, so a burst cannot overshoot maxConcurrent
    try {
      // Checked and tokenized before anything is sent (a bad request is a 4xx, not a broken stream);
      // large prompts are measured before tokenizing and tokenized off the event loop. n > 1: one prefill.
      const options = { ...parsed.options, signal: controller.signal, ...(metrics ? { [kTokenObserver]: metrics.tokenTimes(arrival) } : {}) };
      streams = parsed.n === 1 ? [await model.startStream(options)] : await model.startStreams(options, parsed.n);
    } catch (err) {
      active -= parsed.n;
      throw fromLibraryError(err, kind === 'chat' ? 'messages' : 'prompt');
    }
    if (res.destroyed) {
      active -= parsed.n;
      for (const s of streams) void s.return(undefined); // the client left while its prompt was tokenized
      return undefined;
    }
    state.controllers.add(controller);
    res.on('close', onClose);
    if (res.destroyed || request.raw.socket?.destroyed) onClose(); // gone before we listened
    const observe = (results: GenerateResult[], doneAt: number[]) => {
      results.forEach((r, i) => metrics?.observe(r, arrival, doneAt[i] ?? performance.now()));
      if (results.length > 0) {
        requestUsage.set(request.raw, {
          promptTokens: results[0]!.usage.promptTokens,
          cachedTokens: Math.min(...results.map((r) => r.usage.cachedTokens)),
          completionTokens: results.reduce((n, r) => n + r.usage.completionTokens, 0),
          choices: results.length,
        });
      }
    };
    const work = (async () => {
      try {
        return parsed.stream ? await sendStream(reply, streams, parsed, kind, observe) : await sendJson(streams, parsed, kind, observe);
      } finally {
        active -= parsed.n;
        state.controllers.delete(controller);
        res.off('close', onClose);
      }
    })();
    state.handlers.add(work);
    try {
      return await work;
    } finally {
      state.handlers.delete(work);
    }
  }

  /** Pieces of a chat answer in order; content includes the raw text of tool calls that did not parse. */
  type Piece = ({ reasoning: string } | { content: string } | { toolCall: WireToolCallOut } | { done: GenerateResult }) & { logprobs?: TokenLogprob[] };

  function piece(ev: StreamEvent): Piece {
    const lp = ev.type !== 'done' && ev.logprobs ? { logprobs: ev.logprobs } : {};
    switch (ev.type) {
      case 'reasoning':
        return { reasoning: ev.text, ...lp };
      case 'text':
        return { content: ev.text, ...lp };
      case 'toolCall':
        return { toolCall: wireToolCall(ev.call), ...lp };
      case 'toolCallError':
        return { content: ev.raw, ...lp };
      case 'done':
        return { done: ev.result };
    }
  }

  /** Usage of a request: the prompt once (its choices share it), completions summed. */
  function usageOf(results: GenerateResult[]) {
    const first = results[0]!.usage;
    return wireUsage({
      promptTokens: first.promptTokens,
      cachedTokens: Math.min(...results.map((r) => r.usage.cachedTokens)),
      completionTokens: results.reduce((n, r) => n + r.usage.completionTokens, 0),
      reasoningTokens: results.reduce((n, r) => n + r.usage.reasoningTokens, 0),
    });
  }

  async function collect(events: AsyncGenerator<StreamEvent, void, undefined>) {
    let content = '';
    let reasoning = '';
    const toolCalls: WireToolCallOut[] = [];
    let result: GenerateResult | undefined;
    let doneAt = 0;
    // The logprobs of the tokens behind the pieces (as a stream sends them: tokens cut by a stop string have none).
    const logprobs: TokenLogprob[] = [];
    for await (const ev of events) {
      const p = piece(ev);
      if (p.logprobs) logprobs.push(...p.logprobs);
      if ('content' in p) content += p.content;
      else if ('reasoning' in p) reasoning += p.reasoning;
      else if ('toolCall' in p) toolCalls.push(p.toolCall);
      else {
        result = p.done;
        doneAt = performance.now();
      }
    }
    return { content, reasoning, toolCalls, result: result!, doneAt, logprobs };
  }

  async function sendJson(streams: Array<AsyncGenerator<StreamEvent, void, undefined>>, parsed: ParsedRequest, kind: 'chat' | 'completion', observe: (r: GenerateResult[], doneAt: number[]) => void): Promise<unknown> {
    const outs = await Promise.all(streams.map(collect));
    const results = outs.map((x) => x.result);
    observe(results, outs.map((x) => x.doneAt));
    for (const r of results) {
      const failed = resultError(r, state.closing);
      if (failed) throw failed;
    }
    const usage = usageOf(results);
    if (kind === 'completion') {
      return {
        id: newId('cmpl'),
        object: 'text_completion',
        created: unixSeconds(),
        model: o.modelName,
        choices: outs.map((x, index) => ({
          index,
          text: x.content,
          logprobs: parsed.logprobs ? wireCompletionLogprobs(x.logprobs, 0) : null,
          finish_reason: wireFinishReason(x.result.finishReason, x.toolCalls.length),
          ...(x.reasoning ? { reasoning_content: x.reasoning } : {}),
          ...(parsed.returnTokenIds ? { token_ids: x.result.tokens } : {}),
        })),
        usage,
      };
    }
    return {
      id: newId('chatcmpl'),
      object: 'chat.completion',
      created: unixSeconds(),
      model: o.modelName,
      choices: outs.map((x, index) => ({
        index,
        message: {
          role: 'assistant',
          content: x.content === '' && x.toolCalls.length > 0 ? null : x.content,
          reasoning_content: x.reasoning === '' ? null : x.reasoning,
          ...(x.toolCalls.length > 0 ? { tool_calls: x.toolCalls } : {}),
        },
        logprobs: parsed.logprobs ? wireChatLogprobs(x.logprobs) : null,
        finish_reason: wireFinishReason(x.result.finishReason, x.toolCalls.length),
      })),
      usage,
    };
  }

  async function sendStream(
    reply: FastifyReply,
    streams: Array<AsyncGenerator<StreamEvent, void, undefined>>,
    parsed: ParsedRequest,
    kind: 'chat' | 'completion',
    observe: (r: GenerateResult[], doneAt: number[]) => void,
  ): Promise<void> {
    reply.hijack();
    const res = reply.raw;
    const id = newId(kind === 'chat' ? 'chatcmpl' : 'cmpl');
    const stamp = unixSeconds();
    const object = kind === 'chat' ? 'chat.completion.chunk' : 'text_completion';
    const usageField = parsed.includeUsage ? { usage: null } : {};
    // Choices stream concurrently; their writes go out one at a time, in the order they were made.
    let queue: Promise<void> = Promise.resolve();
    const write = (data: unknown): Promise<void> => {
      queue = queue.then(async () => {
        if (res.destroyed || res.writableEnded) return;
        if (!res.write(`data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`)) await drained(res);
      });
      return queue;
    };
    const chunk = (index: number, choice: Record<string, unknown>) => ({ id, object, created: stamp, model: o.modelName, choices: [{ index, ...choice }], ...usageField });
    const offsets = streams.map(() => 0);
    const logprobsOf = (index: number, lp: TokenLogprob[] | undefined) => {
      if (!parsed.logprobs) return null;
      const list = lp ?? [];
      if (kind === 'chat') return wireChatLogprobs(list);
      const wire = wireCompletionLogprobs(list, offsets[index]!);
      offsets[index]! += list.reduce((n, t) => n + t.text.length, 0);
      return wire;
    };
    const delta = (index: number, d: Record<string, unknown>, lp?: TokenLogprob[]) =>
      kind === 'chat'
        ? chunk(index, { delta: d, logprobs: logprobsOf(index, lp), finish_reason: null })
        : chunk(index, { text: (d['content'] as string | undefined) ?? '', logprobs: logprobsOf(index, lp), finish_reason: null, ...(d['reasoning_content'] ? { reasoning_content: d['reasoning_content'] } : {}) });

    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    const results: Array<GenerateResult | undefined> = streams.map(() => undefined);
    const doneAt = streams.map(() => 0);
    let failed: HttpError | null = null;
    try {
      await Promise.all(
        streams.map(async (events, index) => {
          if (kind === 'chat') await write(delta(index, { role: 'assistant', content: '' }));
          let toolIndex = 0;
          for await (const ev of events) {
            const p = piece(ev);
            if ('content' in p) await write(delta(index, { content: p.content }, p.logprobs));
            else if ('reasoning' in p) await write(delta(index, { reasoning_content: p.reasoning }, p.logprobs));
            else if ('toolCall' in p) await write(delta(index, { tool_calls: [{ index: toolIndex++, ...p.toolCall }] }, p.logprobs));
            else {
              const r = p.done;
              results[index] = r;
              doneAt[index] = performance.now();
              if (res.destroyed) return; // the client is gone: the generation was aborted for it
              const error = resultError(r, state.closing);
              if (error) {
                failed ??= error;
                for (const other of streams) if (other !== events) void other.return(undefined);
                return;
              }
              const finish_reason = wireFinishReason(r.finishReason, toolIndex);
              await write(kind === 'chat' ? chunk(index, { delta: {}, logprobs: null, finish_reason }) : chunk(index, { text: '', logprobs: null, finish_reason }));
            }
          }
        }),
      );
      const ended = results.map((r, i) => [r, doneAt[i]!] as const).filter((x): x is readonly [GenerateResult, number] => x[0] !== undefined);
      observe(ended.map((x) => x[0]), ended.map((x) => x[1]));
      if (!res.destroyed) {
        if (failed) await write((failed as HttpError).body());
        else if (parsed.includeUsage) await write({ id, object, created: stamp, model: o.modelName, choices: [], usage: usageOf(results as GenerateResult[]) });
        await write('[DONE]');
      }
    } finally {
      await queue.catch(() => {});
      if (!res.writableEnded) res.end();
    }
  }

  app.post<{ Body: ChatCompletionBody }>('/v1/chat/completions', { schema: { body: chatCompletionBody }, bodyLimit: o.maxBodyBytes }, async (request, reply) =>
    generate(request, reply, request.body, () => parseChatRequest(request.body, o.limits), 'chat'),
  );
  app.post<{ Body: CompletionBody }>('/v1/completions', { schema: { body: completionBody }, bodyLimit: o.maxBodyBytes }, async (request, reply) =>
    generate(request, reply, request.body, () => parseCompletionRequest(request.body, o.limits), 'completion'),
  );
};

/** Fastify's Ajv set as OpenAI validates: no type coercion ("1" is not a number), nothing added or removed. */
const AJV_OPTIONS = { customOptions: { coerceTypes: false, removeAdditional: false, useDefaults: false, allowUnionTypes: true } } as const;

function loggerOption(logger: ServerOptions['logger']): FastifyServerOptions['logger'] {
  if (logger === undefined || logger === false) return false;
  if (logger === true) return { level: 'info' };
  if (typeof logger === 'string') return { level: logger };
  return logger;
}

/** Fastify's two lines per request (incoming, completed) off: addRequestLog writes one, with tokens. */
const quietRequests = () => new LogController({ disableRequestLogging: true });

/** One log line per request when its response ends: method, url, status, duration, tokens. */
function addRequestLog(app: FastifyInstance): void {
  app.addHook('onRequest', async (request, reply) => {
    const t0 = performance.now();
    reply.raw.once('close', () => {
      const usage = requestUsage.get(request.raw);
      const line = {
        method: request.method,
        url: request.url,
        statusCode: reply.raw.statusCode,
        durationMs: Math.round((performance.now() - t0) * 10) / 10,
        ...(usage ?? {}),
        ...(reply.raw.writableFinished ? {} : { aborted: true }),
      };
      if (reply.raw.statusCode >= 500) request.log.error(line, 'request failed');
      else request.log.info(line, 'request completed');
    });
  });
}

/**
 * The OpenAI routes as a plain Node handler, for Express (`app.use(handler)`, `app.use('/llm', handler)`),
 * Koa (`ctx.respond = false; handler(ctx.req, ctx.res)`) or node:http. Requests for other paths go to
 * `next` when there is one (else 404). Mount it before any body parser: it reads the body itself.
 */
export function createRequestHandler(model: NemotronModel, options: Omit<ServerOptions, 'headersTimeoutMs' | 'bodyTimeoutMs' | 'idleTimeoutMs'> = {}): NemotronRequestHandler {
  resolveOptions(model, options); // option errors now, not at the first request
  const state = newState();
  const app = Fastify({ logger: loggerOption(options.logger), logController: quietRequests(), ajv: AJV_OPTIONS });
  if (options.logger) addRequestLog(app);
  if (options.cors !== undefined && options.cors !== false) void app.register(cors, { origin: corsOrigin(options.cors) });
  void app.register(openaiRoutes, { ...options, model, [kState]: state } as OpenAIRoutesPluginOptions);
  const ready: Promise<void> = Promise.resolve(app.ready()).then(() => undefined);
  const handler = ((req: IncomingMessage, res: ServerResponse, next?: (err?: unknown) => void) => {
    const url = req.url ?? '/';
    if (next && !/^\/(v1\/|v1$|metrics(\?|$))/.test(url)) {
      next();
      return;
    }
    if (state.closing) {
      const body = JSON.stringify(new HttpError(503, 'the server is shutting down', null, 'shutting_down').body());
      res.writeHead(503, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body) });
      res.end(body);
      return;
    }
    ready.then(
      () => app.routing(req, res),
      (err: unknown) => (next ? next(err) : res.destroy(err as Error)),
    );
  }) as NemotronRequestHandler;
  handler.ready = () => ready;
  handler.close = async () => {
    await shutdown(state);
    await app.close();
  };
  handler.app = app;
  return handler;
}

function corsOrigin(c: true | string | readonly string[]): '*' | Array<string | RegExp> {
  if (c === true) return '*';
  const list = typeof c === 'string' ? c.split(',').map((s) => s.trim()).filter(Boolean) : [...c];
  if (list.includes('*')) return '*';
  return list.map((s) => (/^\/.+\/$/.test(s) ? new RegExp(s.slice(1, -1)) : s));
}

/**
 * An OpenAI-compatible server over `model`, not yet listening. The Fastify app boots at listen() (or
 * `server.app.ready()`), so plugins can still be registered on `server.app`.
 */
export async function createServer(model: NemotronModel, options: ServerOptions = {}): Promise<NemotronServer> {
  const o = resolveOptions(model, options);
  const headersTimeout = positiveInteger('headersTimeoutMs', options.headersTimeoutMs) ?? DEFAULT_TIMEOUTS.headersTimeoutMs;
  const bodyTimeout = positiveInteger('bodyTimeoutMs', options.bodyTimeoutMs) ?? DEFAULT_TIMEOUTS.bodyTimeoutMs;
  const idleTimeout = positiveInteger('idleTimeoutMs', options.idleTimeoutMs) ?? DEFAULT_TIMEOUTS.idleTimeoutMs;
  if (headersTimeout > bodyTimeout) {
    throw new InvalidArgumentError('ERR_INVALID_ARGUMENT', `options.headersTimeoutMs (${headersTimeout}) must not exceed options.bodyTimeoutMs (${bodyTimeout}): the body timeout counts from the request's first byte`);
  }
  const metricsRegistry = options.metrics === false ? null : (options.metricsRegistry ?? new Registry());

  const app = Fastify({
    logger: loggerOption(options.logger),
    logController: quietRequests(),
    bodyLimit: o.maxBodyBytes,
    // Node checks headersTimeout / requestTimeout on an interval (30 s by default): check often enough that
    // a stalled client goes within about a quarter of its timeout.
    http: { headersTimeout, connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(Math.min(headersTimeout, bodyTimeout) / 4))) },
    requestTimeout: bodyTimeout,
    keepAliveTimeout: idleTimeout,
    ajv: AJV_OPTIONS,
  });
  if (options.logger) addRequestLog(app);

  // `Expect: 100-continue` (curl's default for bodies over 1 MB): Node would answer 100 before any route ran,
  // the client would send the whole body, and the 413 would come after it (or the connection would be cut).
  // Answer 413 at once when the announced length is over the limit; otherwise continue as usual.
  app.server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > o.maxBodyBytes) {
      const body = JSON.stringify(new HttpError(413, `the request body is too large (${declared} bytes announced; this server accepts ${o.maxBodyBytes})`, null, 'request_too_large').body());
      res.writeHead(413, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body), connection: 'close' });
      res.end(body);
      return;
    }
    res.writeContinue();
    app.server.emit('request', req, res);
  });
  // A connection that never sends a byte: Node's headers timeout starts at the first byte, so idle it out.
  app.server.on('connection', (socket: Socket) => {
    const timer = setTimeout(() => socket.destroy(), idleTimeout + headersTimeout);
    timer.unref();
    socket.once('data', () => clearTimeout(timer));
    socket.once('close', () => clearTimeout(timer));
  });

  const state = newState();
  // Responses not yet finished: close() lets them finish, then drops every connection (a client's spare
  // keep-alive connection that never sent a request would otherwise hold the server open).
  const responses = new Set<ServerResponse>();
  app.addHook('onRequest', async (_request, reply) => {
    const res = reply.raw;
    responses.add(res);
    res.once('close', () => responses.delete(res));
  });
  app.setErrorHandler((err, _request, reply) => {
    const e = err instanceof HttpError ? err : fromFrameworkError(err as Parameters<typeof fromFrameworkError>[0]);
    void reply.code(e.status).send(e.body());
  });
  app.setNotFoundHandler((request, reply) => {
    void reply.code(404).send(new HttpError(404, `no route ${request.method} ${request.url}`, null, 'not_found', 'not_found_error').body());
  });
  if (options.cors !== undefined && options.cors !== false) void app.register(cors, { origin: corsOrigin(options.cors) });
  app.get('/health', async () => ({ status: 'ok' }));
  void app.register(openaiRoutes, { ...options, ...(metricsRegistry ? { metricsRegistry } : {}), model, [kState]: state } as OpenAIRoutesPluginOptions);

  let closing = false;
  return {
    app,
    metrics: metricsRegistry,
    async listen(port = 8080, host = '127.0.0.1') {
      return app.listen({ port, host });
    },
    async close() {
      if (closing) return;
      closing = true;
      const stopped = shutdown(state);
      const closed = app.close();
      await stopped;
      await Promise.all([...responses].map((res) => (res.writableFinished || res.destroyed ? undefined : new Promise((resolve) => res.once('close', resolve)))));
      app.server.closeAllConnections();
      await closed; // the routes' onClose hook stops their JSON parser thread
    },
  };
}
