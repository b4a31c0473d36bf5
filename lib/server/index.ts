/**
 * `serve`: an OpenAI-compatible HTTP server over one loaded model, on Fastify.
 *
 *   GET  /v1/models, /v1/models/:id    the one model this server runs
 *   POST /v1/chat/completions          messages, tools, reasoning (+ thinking budget); JSON or SSE stream
 *   POST /v1/completions               a raw prompt; JSON or SSE stream
 *   GET  /health                       liveness (no API key needed)
 *
 * Requests are checked against JSON Schemas (schemas.ts) and mapped onto generate options (protocol.ts).
 * Limits: body size (413, also answered before the body is sent to a client that asks `Expect: 100-continue`),
 * max_tokens (400), in-flight generations (429), and time: the headers must arrive within headersTimeoutMs,
 * the whole request within bodyTimeoutMs, and a kept-alive connection idle for idleTimeoutMs is closed
 * (a client that stalls is disconnected; the time a generation takes is not limited). Each generation is tied to its
 * connection: a client that goes away (streaming or not) aborts its generation, which frees its sequence
 * within one step. Errors are OpenAI's `{ error: { message, type, param, code } }`.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import path from 'node:path';

import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';

import type { GenerateResult, NemotronModel, StreamEvent } from '../model.js';
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
import { chatCompletionBody, completionBody } from './schemas.js';

export interface ServerOptions {
  /** The model id clients see in /v1/models and in responses. Default: the checkpoint folder's name. */
  modelName?: string;
  /** Generations in flight (running or queued for a sequence) before further requests get 429. Default: 4 × the model's maxSequences. */
  maxConcurrent?: number;
  /** Largest request body in bytes (larger: 413). Default 8 MiB. */
  maxBodyBytes?: number;
  /** Largest max_tokens / max_completion_tokens accepted (larger: 400). Default: the model's context length. */
  maxTokensLimit?: number;
  /** When set, every /v1 request needs `Authorization: Bearer <apiKey>` (else 401). */
  apiKey?: string;
  /** Milliseconds for a client to send the request headers (else the connection is closed, 408 if possible). Default 10 000. */
  headersTimeoutMs?: number;
  /** Milliseconds for a client to send the whole request, body included (else 408 and closed). Default 60 000. */
  bodyTimeoutMs?: number;
  /** Milliseconds a kept-alive connection may wait for its next request, and a new one for its first byte. Default 5 000. */
  idleTimeoutMs?: number;
}

export interface NemotronServer {
  /** Starts listening (default 127.0.0.1:8080; port 0 picks a free one) and resolves to the base URL (the API is under `${url}/v1`). */
  listen(port?: number, host?: string): Promise<string>;
  /** Stops accepting requests, cancels the generations in flight (their clients get 503 or an error event) and closes. The model stays open: it is the caller's. */
  close(): Promise<void>;
  app: FastifyInstance;
}

const DEFAULT_BODY_BYTES = 8 * 1024 * 1024;

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

export { DEFAULT_TIMEOUTS } from './limits.js';

export async function createServer(model: NemotronModel, options: ServerOptions = {}): Promise<NemotronServer> {
  if (typeof options !== 'object' || options === null) throw new InvalidArgumentError('ERR_INVALID_ARGUMENT', 'options must be an object');
  const modelName = options.modelName ?? path.basename(model.info.path);
  if (typeof modelName !== 'string' || modelName === '') throw new InvalidArgumentError('ERR_INVALID_ARGUMENT', 'options.modelName must be a non-empty string');
  const maxConcurrent = positiveInteger('maxConcurrent', options.maxConcurrent) ?? 4 * model.info.maxSequences;
  const maxBodyBytes = positiveInteger('maxBodyBytes', options.maxBodyBytes) ?? DEFAULT_BODY_BYTES;
  const limits: RequestLimits = {
    maxTokens: positiveInteger('maxTokensLimit', options.maxTokensLimit) ?? model.info.contextLength,
    vocabSize: model.info.config.vocabSize,
  };
  const apiKey = options.apiKey;
  if (apiKey !== undefined && (typeof apiKey !== 'string' || apiKey === '')) throw new InvalidArgumentError('ERR_INVALID_ARGUMENT', 'options.apiKey must be a non-empty string');
  const created = unixSeconds();
  const headersTimeout = positiveInteger('headersTimeoutMs', options.headersTimeoutMs) ?? DEFAULT_TIMEOUTS.headersTimeoutMs;
  const bodyTimeout = positiveInteger('bodyTimeoutMs', options.bodyTimeoutMs) ?? DEFAULT_TIMEOUTS.bodyTimeoutMs;
  const idleTimeout = positiveInteger('idleTimeoutMs', options.idleTimeoutMs) ?? DEFAULT_TIMEOUTS.idleTimeoutMs;
  if (headersTimeout > bodyTimeout) {
    throw new InvalidArgumentError('ERR_INVALID_ARGUMENT', `options.headersTimeoutMs (${headersTimeout}) must not exceed options.bodyTimeoutMs (${bodyTimeout}): the body timeout counts from the request's first byte`);
  }

  const app = Fastify({
    logger: false,
    bodyLimit: maxBodyBytes,
    // Node checks headersTimeout / requestTimeout on an interval (30 s by default): check often enough that
    // a stalled client goes within about a quarter of its timeout.
    http: { headersTimeout, connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(Math.min(headersTimeout, bodyTimeout) / 4))) },
    requestTimeout: bodyTimeout,
    keepAliveTimeout: idleTimeout,
    // Validate as OpenAI does: no type coercion ("1" is not a number), nothing added or removed.
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, useDefaults: false, allowUnionTypes: true } },
  });

  app.removeContentTypeParser('text/plain'); // JSON only: anything else is 415
  // Large bodies are parsed (and refused when their text cannot fit the context) off the event loop.
  const jsonBodies = registerJsonParser(app, { bodyLimit: maxBodyBytes, promptByteLimit: model.promptByteLimit(), contextLength: model.info.contextLength });

  // `Expect: 100-continue` (curl's default for bodies over 1 MB): Node would answer 100 before any route ran,
  // the client would send the whole body, and the 413 would come after it (or the connection would be cut).
  // Answer 413 at once when the announced length is over the limit; otherwise continue as usual.
  app.server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > maxBodyBytes) {
      const body = JSON.stringify(new HttpError(413, `the request body is too large (${declared} bytes announced; this server accepts ${maxBodyBytes})`, null, 'request_too_large').body());
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

  let closing = false;
  let active = 0;
  const controllers = new Set<AbortController>();
  const handlers = new Set<Promise<unknown>>();
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
    if (e.status === 429) void reply.header('retry-after', '1');
    void reply.code(e.status).send(e.body());
  });
  app.setNotFoundHandler((request, reply) => {
    void reply.code(404).send(new HttpError(404, `no route ${request.method} ${request.url}`, null, 'not_found', 'not_found_error').body());
  });

  if (apiKey !== undefined) {
    app.addHook('onRequest', async (request) => {
      if (!request.url.startsWith('/v1/') && request.url !== '/v1') return;
      const m = /^Bearer\s+(.+)$/i.exec(request.headers.authorization ?? '');
      if (!m || !sameSecret(m[1]!.trim(), apiKey)) {
        throw new HttpError(401, 'invalid or missing API key: send Authorization: Bearer <key>', null, 'invalid_api_key', 'authentication_error');
      }
    });
  }

  const modelObject = () => ({ id: modelName, object: 'model', created, owned_by: 'nemotron-node' });

  app.get('/health', async () => ({ status: 'ok' }));
  app.get('/v1/models', async () => ({ object: 'list', data: [modelObject()] }));
  app.get<{ Params: { id: string } }>('/v1/models/:id', async (request) => {
    if (request.params.id !== modelName) throw new HttpError(404, `the model ${JSON.stringify(request.params.id)} does not exist (this server runs ${JSON.stringify(modelName)})`, 'model', 'model_not_found', 'not_found_error');
    return modelObject();
  });

  /**
   * Runs one generation for a request: admission (429), the connection tie (client gone → abort), then
   * the JSON answer or the SSE stream. A library error raised while the request is checked is a 4xx
   * blamed on `messages` / `prompt` unless it names a message field.
   */
  async function generate(request: FastifyRequest, reply: FastifyReply, parsed: ParsedRequest, kind: 'chat' | 'completion'): Promise<unknown> {
    if (closing) throw new HttpError(503, 'the server is shutting down', null, 'shutting_down');
    if (active >= maxConcurrent) {
      throw new HttpError(429, `too many requests in flight (${active}; this server allows ${maxConcurrent}): retry later`, null, 'rate_limit_exceeded', 'rate_limit_error');
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
    let events: AsyncGenerator<StreamEvent, void, undefined>;
    try {
      // Checked and tokenized before anything is sent (a bad request is a 4xx, not a broken stream);
      // large prompts are measured before tokenizing and tokenized off the event loop.
      events = await model.startStream({ ...parsed.options, signal: controller.signal });
    } catch (err) {
      throw fromLibraryError(err, kind === 'chat' ? 'messages' : 'prompt');
    }
    if (res.destroyed) {
      void events.return(undefined); // the client left while its prompt was tokenized
      return undefined;
    }
    active++;
    controllers.add(controller);
    res.on('close', onClose);
    if (res.destroyed || request.raw.socket?.destroyed) onClose(); // gone before we listened
    const work = (async () => {
      try {
        return parsed.stream ? await sendStream(reply, events, parsed, kind) : await sendJson(events, kind, parsed);
      } finally {
        active--;
        controllers.delete(controller);
        res.off('close', onClose);
      }
    })();
    handlers.add(work);
    try {
      return await work;
    } finally {
      handlers.delete(work);
    }
  }

  /** Pieces of a chat answer in order; content includes the raw text of tool calls that did not parse. */
  type Piece = { reasoning: string } | { content: string } | { toolCall: WireToolCallOut } | { done: GenerateResult };

  function piece(ev: StreamEvent): Piece {
    switch (ev.type) {
      case 'reasoning':
        return { reasoning: ev.text };
      case 'text':
        return { content: ev.text };
      case 'toolCall':
        return 'call' in ev ? { toolCall: wireToolCall(ev.call) } : { content: ev.raw };
      case 'done':
        return { done: ev.result };
    }
  }

  async function sendJson(events: AsyncGenerator<StreamEvent, void, undefined>, kind: 'chat' | 'completion', parsed: ParsedRequest): Promise<unknown> {
    let content = '';
    let reasoning = '';
    const toolCalls: WireToolCallOut[] = [];
    let result: GenerateResult | undefined;
    for await (const ev of events) {
      const p = piece(ev);
      if ('content' in p) content += p.content;
      else if ('reasoning' in p) reasoning += p.reasoning;
      else if ('toolCall' in p) toolCalls.push(p.toolCall);
      else result = p.done;
    }
    const r = result!;
    const failed = resultError(r, closing);
    if (failed) throw failed;
    const finish_reason = wireFinishReason(r.finishReason, toolCalls.length);
    if (kind === 'completion') {
      return {
        id: newId('cmpl'),
        object: 'text_completion',
        created: unixSeconds(),
        model: modelName,
        choices: [{ index: 0, text: content, logprobs: null, finish_reason, ...(reasoning ? { reasoning_content: reasoning } : {}), ...(parsed.returnTokenIds ? { token_ids: r.tokens } : {}) }],
        usage: wireUsage(r.usage),
      };
    }
    return {
      id: newId('chatcmpl'),
      object: 'chat.completion',
      created: unixSeconds(),
      model: modelName,
      choices: [
        {
          index: 0,
          message: {
            role: 'assistant',
            content: content === '' && toolCalls.length > 0 ? null : content,
            reasoning_content: reasoning === '' ? null : reasoning,
            ...(toolCalls.length > 0 ? { tool_calls: toolCalls } : {}),
          },
          logprobs: null,
          finish_reason,
        },
      ],
      usage: wireUsage(r.usage),
    };
  }

  async function sendStream(reply: FastifyReply, events: AsyncGenerator<StreamEvent, void, undefined>, parsed: ParsedRequest, kind: 'chat' | 'completion'): Promise<void> {
    reply.hijack();
    const res = reply.raw;
    const id = newId(kind === 'chat' ? 'chatcmpl' : 'cmpl');
    const stamp = unixSeconds();
    const object = kind === 'chat' ? 'chat.completion.chunk' : 'text_completion';
    const usageField = parsed.includeUsage ? { usage: null } : {};
    const write = async (data: unknown) => {
      if (res.destroyed || res.writableEnded) return;
      if (!res.write(`data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`)) await drained(res);
    };
    const chunk = (choice: Record<string, unknown>) => ({ id, object, created: stamp, model: modelName, choices: [{ index: 0, ...choice }], ...usageField });
    const delta = (d: Record<string, unknown>) => (kind === 'chat' ? chunk({ delta: d, logprobs: null, finish_reason: null }) : chunk({ text: (d['content'] as string | undefined) ?? '', logprobs: null, finish_reason: null, ...(d['reasoning_content'] ? { reasoning_content: d['reasoning_content'] } : {}) }));

    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    try {
      if (kind === 'chat') await write(delta({ role: 'assistant', content: '' }));
      let toolIndex = 0;
      for await (const ev of events) {
        const p = piece(ev);
        if ('content' in p) await write(delta({ content: p.content }));
        else if ('reasoning' in p) await write(delta({ reasoning_content: p.reasoning }));
        else if ('toolCall' in p) await write(delta({ tool_calls: [{ index: toolIndex++, ...p.toolCall }] }));
        else {
          const r = p.done;
          if (res.destroyed) return; // the client is gone: the generation was aborted for it
          const failed = resultError(r, closing);
          if (failed) {
            await write(failed.body());
          } else {
            const finish_reason = wireFinishReason(r.finishReason, toolIndex);
            await write(kind === 'chat' ? chunk({ delta: {}, logprobs: null, finish_reason }) : chunk({ text: '', logprobs: null, finish_reason }));
            if (parsed.includeUsage) await write({ id, object, created: stamp, model: modelName, choices: [], usage: wireUsage(r.usage) });
          }
          await write('[DONE]');
        }
      }
    } finally {
      if (!res.writableEnded) res.end();
    }
  }

  app.post<{ Body: ChatCompletionBody }>('/v1/chat/completions', { schema: { body: chatCompletionBody } }, async (request, reply) =>
    generate(request, reply, parseChatRequest(request.body, limits), 'chat'),
  );
  app.post<{ Body: CompletionBody }>('/v1/completions', { schema: { body: completionBody } }, async (request, reply) =>
    generate(request, reply, parseCompletionRequest(request.body, limits), 'completion'),
  );

  await app.ready();

  return {
    app,
    async listen(port = 8080, host = '127.0.0.1') {
      return app.listen({ port, host });
    },
    async close() {
      if (closing) return;
      closing = true;
      for (const c of controllers) c.abort(new Error('the server is shutting down'));
      const closed = app.close();
      await Promise.allSettled([...handlers]);
      await Promise.all([...responses].map((res) => (res.writableFinished || res.destroyed ? undefined : new Promise((resolve) => res.once('close', resolve)))));
      app.server.closeAllConnections();
      await closed;
      await jsonBodies.close();
    },
  };
}
