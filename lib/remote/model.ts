/**
 * connect(): the TextModel interface over OpenAI-compatible servers — `nemotron-node serve`, vLLM,
 * SGLang, NVIDIA NIM, or a router in front of them. Plain fetch and a small SSE reader (sse.ts), no SDK:
 * the client needs four request shapes and vLLM's extensions (reasoning_content, chat_template_kwargs,
 * return_token_ids), which an SDK would only let through as untyped extras.
 *
 *   generate/stream with `messages`   POST /v1/chat/completions (streamed), reasoning as Nano 2's /think
 *                                      and /no_think, tools, usage with cached and reasoning tokens
 *   ... with a `thinkingBudget`       POST /v1/completions on the prompt rendered here (the tokenizer
 *                                      option), in segments: see budget.ts
 *   generate/stream with `prompt`     POST /v1/completions (streamed)
 *   chat()                            a RemoteChat: the messages live here, each turn is one stateless
 *                                      request carrying the session id (x-session-id header and `user`)
 *
 * Several base URLs: each session (or stateless call) is routed by rendezvous hashing on its session id,
 * and a connection error or 5xx fails over to the next endpoint (endpoints.ts).
 */
import { randomUUID } from 'node:crypto';

import type { ChatOptions } from '../chat/session.js';
import { reasoningFromKeywords, validateMessages, type ChatMessage, type ToolCall, type ToolDefinition } from '../chat/template.js';
import { ReasoningSplitter } from '../chat/reasoning.js';
import { ToolCallParser, parseToolCallList } from '../chat/tool-calls.js';
import { InvalidArgumentError, ModelClosedError } from '../errors.js';
import type { GenerateOptions, GenerateResult, StreamEvent, Timings, Usage } from '../generation.js';
import { validateResponseFormat, validateToolChoice } from '../grammar.js';
import type { HubOptions } from '../hub/index.js';
import type { TextModel } from '../text-model.js';
import * as v from '../validate.js';
import { runThinkingBudget } from './budget.js';
import { RemoteChat, readRemoteChatFile, type RemoteChatOptions } from './chat.js';
import { EndpointPool, type Endpoint, type EndpointStats } from './endpoints.js';
import { RemoteError } from './errors.js';
import { readSse } from './sse.js';
import { wireMessages, wireSampling, withReasoningKeyword, type RemoteGenerateOptions, type RoutedRequest } from './wire.js';
import { loadClientTokenizer, type ClientTokenizer } from './tokenizer.js';

export interface ConnectOptions {
  /** Sent as `Authorization: Bearer <apiKey>`. */
  apiKey?: string;
  /** The served model id (`model` in each request). Default: the first id of GET /v1/models. */
  model?: string;
  /**
   * The model's tokenizer and chat template, for what must be rendered client side (the thinking
   * budget; tokenize(); applyChatTemplate()): a checkpoint folder, a .gguf file or `hf:owner/name[@rev]`
   * (only tokenizer.json and tokenizer_config.json are downloaded).
   */
  tokenizer?: string;
  /** For an `hf:` tokenizer: revision, cache folder, endpoint, token, offline. */
  hub?: HubOptions;
  /** Extra headers for every request. */
  headers?: Record<string, string>;
  /**
   * Who splits the reasoning from the answer: 'server' (default: vLLM/SGLang started with a reasoning
   * parser, and `nemotron-node serve`, return `reasoning_content`), or 'client' (the server returns the
   * raw text with `</think>`; it is split here as the local engine splits it).
   */
  reasoningParser?: 'server' | 'client';
  /** Milliseconds between health checks of the endpoints (with more than one). Default 5000; 0 = never. */
  healthCheckIntervalMs?: number;
  /** Called after every attempt on an endpoint (for metrics and logs): which endpoint, for which session, and how it went. */
  onAttempt?: (attempt: RemoteAttempt) => void;
}

export interface RemoteAttempt {
  endpoint: string;
  path: string;
  sessionId: string | undefined;
  /** true: answered; false: failed over (connection error, 5xx, a stream cut short) or failed. */
  ok: boolean;
  error?: string;
}

export interface RemoteModelInfo {
  /** The model id requests name. */
  model: string;
  endpoints: string[];
  /** Where the client-side tokenizer came from, when there is one. */
  tokenizer: string | null;
}

/** What routing did: per endpoint, requests served and failed over; and requests that moved. */
export interface RemoteStats {
  endpoints: EndpointStats[];
  /** Requests (or thinking-budget segments) retried on another endpoint after a connection error or 5xx. */
  failovers: number;
}

export type { RemoteGenerateOptions } from './wire.js';

const GENERATE_KEYS = [
  'prompt', 'messages', 'tools', 'reasoning', 'thinkingBudget', 'maxTokens', 'stop', 'signal',
  'temperature', 'topK', 'topP', 'minP', 'repetitionPenalty', 'presencePenalty', 'frequencyPenalty', 'logitBias', 'seed',
  'sessionId', 'responseFormat', 'toolChoice',
] as const;

/** responseFormat / toolChoice as OpenAI's response_format / tool_choice (json_object and json_schema; regex and grammar are local only). */
function wireConstraints(o: GenerateOptions): Record<string, unknown> {
  const rf = validateResponseFormat(o.responseFormat);
  const tc = validateToolChoice(o.toolChoice, o.tools);
  const out: Record<string, unknown> = {};
  if (rf?.type === 'json_object') out.response_format = { type: 'json_object' };
  else if (rf?.type === 'json_schema') out.response_format = { type: 'json_schema', json_schema: { name: rf.name ?? 'response', schema: rf.schema, strict: rf.strict !== false } };
  else if (rf && rf.type !== 'text') throw new InvalidArgumentError('ERR_INVALID_ARGUMENT', `options.responseFormat ${rf.type} is not sent to a remote server: use json_object or json_schema`);
  if (tc !== undefined && o.tools?.length) out.tool_choice = typeof tc === 'object' ? { type: 'function', function: { name: tc.name } } : tc;
  return out;
}

/** result.parsed / parseError of a JSON answer, as the local engine reports them (generation.ts). */
function parseJsonAnswer(text: string, finish: string): { parsed?: unknown; parseError?: string } {
  if (finish === 'length') return { parseError: 'the answer was cut at maxTokens before it was complete' };
  if (finish !== 'stop') return { parseError: `the request ended with finishReason '${finish}'` };
  try {
    return { parsed: JSON.parse(text) as unknown };
  } catch (err) {
    return { parseError: (err as Error).message };
  }
}

/** A failure another endpoint may not have: connection refused/reset, 5xx, a stream cut short. */
export class RetryableError extends Error {
  constructor(
    message: string,
    readonly status?: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

function wireTools(tools: ToolDefinition[]): unknown[] {
  return tools.map((t) => ({ type: 'function', function: { name: t.function.name, ...(t.function.description !== undefined ? { description: t.function.description } : {}), ...(t.function.parameters !== undefined ? { parameters: t.function.parameters } : {}) } }));
}

interface WireUsageIn {
  prompt_tokens?: number;
  completion_tokens?: number;
  prompt_tokens_details?: { cached_tokens?: number | null } | null;
  completion_tokens_details?: { reasoning_tokens?: number | null } | null;
}

export function usageFromWire(u: WireUsageIn | undefined | null): Usage {
  return {
    promptTokens: u?.prompt_tokens ?? 0,
    cachedTokens: u?.prompt_tokens_details?.cached_tokens ?? 0,
    completionTokens: u?.completion_tokens ?? 0,
    reasoningTokens: u?.completion_tokens_details?.reasoning_tokens ?? 0,
  };
}

/** Client-side timings of one request (the server's queue is not visible: queueMs is 0). */
export function clientTimings(t: { start: number; first: number; end: number }, usage: Usage): Timings {
  const ttft = t.first ? t.first - t.start : 0;
  const decodeMs = t.first ? t.end - t.first : 0;
  return {
    queueMs: 0,
    timeToFirstTokenMs: ttft,
    prefillTokensPerSecond: ttft > 0 ? ((usage.promptTokens - usage.cachedTokens) * 1000) / ttft : 0,
    decodeTokensPerSecond: decodeMs > 0 ? (Math.max(usage.completionTokens - 1, 0) * 1000) / decodeMs : 0,
    totalMs: t.end - t.start,
  };
}

/** The answer text of a raw-text server: reasoning split and <TOOLCALL> blocks parsed here, as the local engine does. */
class TextPipeline {
  private readonly splitter: ReasoningSplitter | null;
  private readonly tools: ToolCallParser | null;
  constructor(splitReasoning: boolean, startsInReasoning: boolean, parseTools: boolean) {
    this.splitter = splitReasoning ? new ReasoningSplitter({ startsInReasoning }) : null;
    this.tools = parseTools ? new ToolCallParser() : null;
  }
  push(text: string, final = false): StreamEvent[] {
    const out: StreamEvent[] = [];
    const parts = this.splitter ? [...(text ? this.splitter.push(text) : []), ...(final ? this.splitter.flush() : [])] : text ? [{ type: 'text' as const, text }] : [];
    for (const p of parts) {
      if (p.type === 'reasoning') {
        if (p.text) out.push({ type: 'reasoning', text: p.text });
      } else out.push(...this.answer(p.text));
    }
    if (final && this.tools) out.push(...this.events(this.tools.flush()));
    return out;
  }
  private answer(text: string): StreamEvent[] {
    if (!this.tools) return text ? [{ type: 'text', text }] : [];
    return this.events(this.tools.push(text));
  }
  private events(evs: ReturnType<ToolCallParser['push']>): StreamEvent[] {
    return evs.flatMap((e): StreamEvent[] => (e.type === 'text' ? (e.text ? [{ type: 'text', text: e.text }] : []) : e.type === 'toolCall' ? [{ type: 'toolCall', call: e.call }] : [{ type: 'toolCallError', error: e.error, raw: e.raw }]));
  }
}

/** Collects events into a GenerateResult. */
export class ResultBuilder {
  text = '';
  reasoning = '';
  toolCalls: ToolCall[] = [];
  toolCallErrors: Array<{ raw: string; error: string }> = [];
  add(ev: StreamEvent): void {
    if (ev.type === 'text') this.text += ev.text;
    else if (ev.type === 'reasoning') this.reasoning += ev.text;
    else if (ev.type === 'toolCall') this.toolCalls.push(ev.call);
    else if (ev.type === 'toolCallError') this.toolCallErrors.push({ raw: ev.raw, error: ev.error });
  }
}

function isAbort(err: unknown, signal: AbortSignal | undefined): boolean {
  return !!signal?.aborted || (err as { name?: string })?.name === 'AbortError';
}

export class RemoteModel implements TextModel {
  readonly info: RemoteModelInfo;
  private readonly pool: EndpointPool;
  private readonly apiKey: string | undefined;
  private readonly extraHeaders: Record<string, string>;
  private readonly reasoningParser: 'server' | 'client';
  private readonly tok: ClientTokenizer | null;
  private failovers = 0;
  private closed = false;
  private readonly onAttempt: ((a: RemoteAttempt) => void) | undefined;

  /** @internal use connect() */
  constructor(pool: EndpointPool, model: string, options: ConnectOptions, tok: ClientTokenizer | null) {
    this.pool = pool;
    this.apiKey = options.apiKey;
    this.extraHeaders = { ...(options.headers ?? {}) };
    this.reasoningParser = options.reasoningParser ?? 'server';
    this.tok = tok;
    this.onAttempt = options.onAttempt;
    this.info = Object.freeze({ model, endpoints: pool.endpoints.map((e) => e.url), tokenizer: tok?.source ?? null });
  }

  // ---- TextModel ------------------------------------------------------------------------------------

  async generate(options: RemoteGenerateOptions): Promise<GenerateResult> {
    let result: GenerateResult | undefined;
    // Buffered: a failure at any point before the end is retried whole on the next endpoint.
    for await (const ev of this.run(options, true)) if (ev.type === 'done') result = ev.result;
    return result!;
  }

  stream(options: RemoteGenerateOptions): AsyncGenerator<StreamEvent, void, undefined> {
    this.assertOpen();
    return this.run(options, false);
  }

  chat(options: RemoteChatOptions = {}): RemoteChat {
    this.assertOpen();
    v.assertObject('options', options as unknown);
    v.assertKnownKeys('options', options, ['system', 'reasoning', 'tools', 'contextOverflow', 'sessionId']);
    return new RemoteChat(this, options);
  }

  async loadChat(file: string): Promise<RemoteChat> {
    this.assertOpen();
    const saved = await readRemoteChatFile(file);
    return new RemoteChat(this, { ...saved.options, sessionId: saved.sessionId }, saved.history);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.pool.close();
  }

  // ---- the rest of the local model's surface that works remotely ----------------------------------

  /** Text to token ids with the client-side tokenizer (the `tokenizer` option). */
  tokenize(text: string, options: { addSpecialTokens?: boolean } = {}): number[] {
    return this.requireTokenizer().tokenizer.encode(text, options.addSpecialTokens ?? true);
  }

  detokenize(ids: readonly number[]): string {
    return this.requireTokenizer().tokenizer.decode(ids, false);
  }

  /** Renders a conversation with the client-side chat template (the `tokenizer` option). */
  applyChatTemplate(messages: ChatMessage[], options: { tools?: ToolDefinition[]; reasoning?: boolean } = {}): string {
    const tok = this.requireTokenizer();
    if (!tok.template) throw new InvalidArgumentError('ERR_INVALID_ARGUMENT', `the tokenizer at ${tok.source} has no chat template`);
    return tok.template.render(validateMessages(messages), { ...(options.tools ? { tools: options.tools } : {}), ...(options.reasoning === undefined ? {} : { reasoning: options.reasoning }) });
  }

  /** Routing so far: per endpoint, whether it is up, requests served, failures; failovers. */
  stats(): RemoteStats {
    return { endpoints: this.pool.stats(), failovers: this.failovers };
  }

  /** The endpoint a session id is routed to now. */
  endpointFor(sessionId: string): string {
    return this.pool.pick(sessionId).url;
  }

  /** Probes every endpoint now (GET /health, else /v1/models). */
  checkHealth(): Promise<void> {
    return this.pool.checkHealth();
  }

  // ---- internals -----------------------------------------------------------------------------------

  private assertOpen(): void {
    if (this.closed) throw new ModelClosedError();
  }

  private requireTokenizer(): ClientTokenizer {
    if (!this.tok) throw new InvalidArgumentError('ERR_INVALID_ARGUMENT', 'this needs the model\'s tokenizer on the client: connect(url, { tokenizer: <checkpoint folder | .gguf | hf:owner/name> })');
    return this.tok;
  }

  private note(ep: Endpoint, path: string, route: RoutedRequest, error?: unknown): void {
    if (!this.onAttempt) return;
    try {
      this.onAttempt({ endpoint: ep.url, path, sessionId: route.sessionId, ok: error === undefined, ...(error !== undefined ? { error: (error as Error).message ?? String(error) } : {}) });
    } catch {
      // a hook's failure is not the request's
    }
  }

  /** @internal */
  headers(sessionId: string | undefined): Record<string, string> {
    return {
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      ...(this.apiKey ? { authorization: `Bearer ${this.apiKey}` } : {}),
      ...(sessionId ? { 'x-session-id': sessionId } : {}),
      ...this.extraHeaders,
    };
  }

  /**
   * @internal
   * POSTs to one endpoint. Resolves to the response when it is 2xx; throws RetryableError for a
   * connection failure or a 5xx, RemoteError for any other status; rethrows an abort.
   */
  async post(ep: Endpoint, path: string, body: unknown, route: RoutedRequest): Promise<Response> {
    let res: Response;
    const payload = JSON.stringify(body);
    for (let tries = 0; ; tries++) {
      try {
        res = await fetch(`${ep.url}${path}`, { method: 'POST', headers: this.headers(route.sessionId), body: payload, ...(route.signal ? { signal: route.signal } : {}) });
        break;
      } catch (err) {
        if (isAbort(err, route.signal)) throw err;
        const code = (err as { cause?: { code?: string } }).cause?.code;
        // A kept-alive connection the server closed just as it was reused: once more on a fresh one,
        // before the endpoint is taken for down (its sessions would move and lose their cache).
        if (tries === 0 && (code === 'ECONNRESET' || code === 'EPIPE' || code === 'UND_ERR_SOCKET')) continue;
        throw new RetryableError(`${ep.url}: ${(err as Error).message}${code ? ` (${code})` : ''}`, undefined, { cause: err });
      }
    }
    if (res.ok) return res;
    const text = await res.text().catch(() => '');
    // OpenAI's `{ error: { message, code } }`, or vLLM's older flat `{ object: 'error', message, code }`.
    let e: { message?: string; code?: string | number | null } = {};
    try {
      const j = JSON.parse(text) as { error?: typeof e } & typeof e;
      e = j.error ?? j;
    } catch {
      // not JSON
    }
    const message = `${ep.url}${path}: HTTP ${res.status}${e.message ? `: ${e.message}` : text ? `: ${text.slice(0, 200)}` : ''}`;
    if (res.status >= 500) throw new RetryableError(message, res.status);
    throw new RemoteError('ERR_REMOTE', message, { status: res.status, ...(e.code !== undefined && e.code !== null ? { remoteCode: String(e.code) } : {}), endpoint: ep.url });
  }

  /**
   * @internal
   * One complete (non-streamed) request with failover: the endpoints in the key's order, until one
   * answers. For the thinking budget's segments, each of which is a whole request.
   */
  async postWithFailover<T>(path: string, body: unknown, route: RoutedRequest): Promise<T> {
    let last: unknown;
    for (const ep of this.pool.order(route.key)) {
      try {
        const res = await this.post(ep, path, body, route);
        const json = (await res.json()) as T;
        this.note(ep, path, route);
        ep.served++;
        if (!ep.healthy) this.pool.markUp(ep);
        return json;
      } catch (err) {
        if (!isAbort(err, route.signal)) this.note(ep, path, route, err);
        if (!(err instanceof RetryableError) || isAbort(err, route.signal)) throw err;
        last = err;
        this.pool.markDown(ep, err.message);
        this.failovers++;
      }
    }
    throw new RemoteError('ERR_REMOTE_UNAVAILABLE', `no endpoint could serve the request: ${(last as Error | undefined)?.message ?? 'no endpoints'}`, { cause: last });
  }

  private async *run(options: RemoteGenerateOptions, buffered: boolean): AsyncGenerator<StreamEvent, void, undefined> {
    this.assertOpen();
    v.assertObject('options', options as unknown);
    v.assertKnownKeys('options', options, GENERATE_KEYS);
    const hasPrompt = options.prompt !== undefined;
    const hasMessages = options.messages !== undefined;
    if (hasPrompt === hasMessages) throw new InvalidArgumentError('ERR_INVALID_ARGUMENT', 'options must have exactly one of `prompt` (text or token ids) and `messages` (a conversation)');
    if (options.reasoning !== undefined && typeof options.reasoning !== 'boolean') throw v.invalid('options.reasoning', 'true or false', options.reasoning);
    if (hasPrompt && (options.tools !== undefined || options.reasoning !== undefined || options.thinkingBudget !== undefined)) {
      throw new InvalidArgumentError('ERR_INVALID_ARGUMENT', '`tools`, `reasoning` and `thinkingBudget` apply to `messages`, not to a raw `prompt`');
    }
    if (options.sessionId !== undefined && (typeof options.sessionId !== 'string' || options.sessionId === '')) throw v.invalid('options.sessionId', 'a non-empty string', options.sessionId);
    const signal = v.optionalSignal('options.signal', options.signal);
    const route: RoutedRequest = { key: options.sessionId ?? randomUUID(), sessionId: options.sessionId, signal };
    const thinkingBudget = v.optionalInteger('options.thinkingBudget', options.thinkingBudget, 0);

    if (hasMessages && thinkingBudget !== undefined) {
      const tok = this.requireTokenizer();
      yield* runThinkingBudget(this, tok, { ...options, thinkingBudget }, route);
      return;
    }
    let path: string;
    let body: Record<string, unknown>;
    let pipeline: () => TextPipeline;
    if (hasMessages) {
      const messages = validateMessages(options.messages);
      const reasoningOn = options.reasoning ?? reasoningFromKeywords(messages);
      body = {
        model: this.info.model,
        messages: wireMessages(withReasoningKeyword(messages, options.reasoning)),
        ...wireSampling(options, reasoningOn),
        ...(options.reasoning !== undefined ? { chat_template_kwargs: { enable_thinking: options.reasoning } } : {}),
        ...(options.tools && options.tools.length > 0 ? { tools: wireTools(options.tools), tool_choice: 'auto' } : {}),
        ...wireConstraints(options),
      };
      path = '/v1/chat/completions';
      // A raw-text server (no reasoning parser): split here. <TOOLCALL> blocks left in the content are parsed here always.
      pipeline = () => new TextPipeline(this.reasoningParser === 'client', reasoningOn, true);
    } else {
      const prompt = options.prompt!;
      if (typeof prompt === 'string' && prompt.length === 0) throw new InvalidArgumentError('ERR_EMPTY_PROMPT', 'options.prompt is empty: give some text or token ids');
      if (typeof prompt !== 'string') v.tokenIds('options.prompt', prompt, Number.MAX_SAFE_INTEGER);
      body = { model: this.info.model, prompt: typeof prompt === 'string' ? prompt : Array.from(prompt), ...wireSampling(options, false) };
      path = '/v1/completions';
      pipeline = () => new TextPipeline(false, false, false);
    }
    body['stream'] = true;
    body['stream_options'] = { include_usage: true };
    if (route.sessionId) body['user'] = route.sessionId;

    const tStart = performance.now();
    let last: unknown;
    for (const ep of this.pool.order(route.key)) {
      let yielded = false;
      const held: StreamEvent[] = [];
      try {
        for await (const ev of this.attempt(ep, path, body, route, pipeline(), tStart)) {
          if (buffered) held.push(ev);
          else {
            yielded = true;
            yield ev;
          }
        }
        this.note(ep, path, route);
        ep.served++;
        if (!ep.healthy) this.pool.markUp(ep);
        yield* held;
        return;
      } catch (err) {
        if (!isAbort(err, route.signal)) this.note(ep, path, route, err);
        if (!(err instanceof RetryableError)) throw err;
        last = err;
        this.pool.markDown(ep, err.message);
        if (yielded) {
          // Part of this answer has reached the consumer: it cannot be taken back. The session keeps its
          // messages (this turn is not recorded); send it again to continue on another endpoint.
          throw new RemoteError('ERR_REMOTE', `the endpoint failed mid-stream (${err.message}); nothing was recorded: retry the request`, { cause: err, ...(err.status ? { status: err.status } : {}), endpoint: ep.url });
        }
        this.failovers++;
      }
    }
    throw new RemoteError('ERR_REMOTE_UNAVAILABLE', `no endpoint could serve the request: ${(last as Error | undefined)?.message ?? 'no endpoints'}`, { cause: last });
  }

  /** One streamed request to one endpoint, as events; the last is `done`. */
  private async *attempt(ep: Endpoint, path: string, body: Record<string, unknown>, route: RoutedRequest, pipe: TextPipeline, tStart: number): AsyncGenerator<StreamEvent, void, undefined> {
    const parseJson = body['response_format'] !== undefined;
    const signal = route.signal;
    const out = new ResultBuilder();
    const t = { start: tStart, first: 0, end: 0 };
    let usage: WireUsageIn | undefined;
    let finish: string | null = null;
    let aborted = false;
    const calls = new Map<number, { name: string; args: string }>();
    const emit = function* (evs: StreamEvent[]): Generator<StreamEvent> {
      for (const ev of evs) {
        out.add(ev);
        yield ev;
      }
    };
    let res: Response | undefined;
    try {
      res = await this.post(ep, path, body, route);
    } catch (err) {
      if (!isAbort(err, signal)) throw err;
      aborted = true;
    }
    if (res && !aborted) {
      try {
        for await (const data of readSse(res.body!)) {
          if (data === '[DONE]') break;
          let chunk: {
            error?: { message?: string; type?: string; code?: string };
            usage?: WireUsageIn | null;
            choices?: Array<{ text?: string | null; delta?: { content?: string | null; reasoning_content?: string | null; reasoning?: string | null; tool_calls?: Array<{ index?: number; function?: { name?: string; arguments?: string } }> | null }; reasoning_content?: string | null; finish_reason?: string | null }>;
          };
          try {
            chunk = JSON.parse(data) as typeof chunk;
          } catch {
            throw new RetryableError(`${ep.url}${path}: a stream event is not JSON: ${data.slice(0, 120)}`);
          }
          if (chunk.error) {
            const m = `${ep.url}${path}: ${chunk.error.message ?? 'error'}`;
            if (chunk.error.type === 'server_error' || chunk.error.type === undefined) throw new RetryableError(m);
            throw new RemoteError('ERR_REMOTE', m, { ...(chunk.error.code ? { remoteCode: chunk.error.code } : {}), endpoint: ep.url });
          }
          if (chunk.usage) usage = chunk.usage;
          const choice = chunk.choices?.[0];
          if (!choice) continue;
          const delta = choice.delta ?? {};
          const reasoning = delta.reasoning_content ?? delta.reasoning ?? choice.reasoning_content ?? '';
          const content = (choice.delta ? delta.content : choice.text) ?? '';
          if ((reasoning || content || delta.tool_calls?.length) && !t.first) t.first = performance.now();
          if (reasoning) yield* emit([{ type: 'reasoning', text: reasoning }]);
          if (content) yield* emit(pipe.push(content));
          for (const tc of delta.tool_calls ?? []) {
            const i = tc.index ?? calls.size;
            const c = calls.get(i) ?? { name: '', args: '' };
            if (tc.function?.name) c.name += tc.function.name;
            if (tc.function?.arguments) c.args += tc.function.arguments;
            calls.set(i, c);
          }
          if (choice.finish_reason) finish = choice.finish_reason;
        }
      } catch (err) {
        if (!isAbort(err, signal)) {
          if (err instanceof RetryableError || err instanceof RemoteError) throw err;
          throw new RetryableError(`${ep.url}${path}: the stream broke: ${(err as Error).message}`, undefined, { cause: err });
        }
        aborted = true;
      }
      if (!aborted && finish === null) throw new RetryableError(`${ep.url}${path}: the stream ended without a finish_reason`);
    }
    yield* emit(pipe.push('', true));
    for (const [, c] of [...calls].sort((a, b) => a[0] - b[0])) {
      const parsed = parseToolCallList(`[{"name": ${JSON.stringify(c.name)}, "arguments": ${c.args.trim() === '' ? '{}' : c.args}}]`);
      yield* emit('error' in parsed ? [{ type: 'toolCallError' as const, error: parsed.error, raw: c.args }] : parsed.calls.map((call) => ({ type: 'toolCall' as const, call })));
    }
    t.end = performance.now();
    const u = usageFromWire(usage);
    const result: GenerateResult = {
      text: out.text,
      reasoning: out.reasoning,
      toolCalls: out.toolCalls,
      toolCallErrors: out.toolCallErrors,
      tokens: [],
      ...(parseJson ? parseJsonAnswer(out.text, aborted ? 'abort' : finish === 'length' ? 'length' : 'stop') : {}),
      finishReason: aborted ? 'abort' : finish === 'length' ? 'length' : 'stop',
      usage: u,
      timings: clientTimings(t, u),
    };
    yield { type: 'done', result };
  }
}

/**
 * Connects to one OpenAI-compatible server, or several replicas of one model (sessions are spread over
 * them by rendezvous hashing on the session id and fail over on connection errors and 5xx). Resolves
 * once the model id is known (options.model, else asked from GET /v1/models) and the client-side
 * tokenizer, if asked for, is loaded.
 */
export async function connect(baseURL: string | string[], options: ConnectOptions = {}): Promise<RemoteModel> {
  const urls = typeof baseURL === 'string' ? [baseURL] : baseURL;
  if (!Array.isArray(urls) || urls.length === 0 || urls.some((u) => typeof u !== 'string')) throw v.invalid('baseURL', 'a URL or a non-empty array of URLs', baseURL);
  v.assertObject('options', options as unknown);
  v.assertKnownKeys('options', options, ['apiKey', 'model', 'tokenizer', 'hub', 'headers', 'reasoningParser', 'healthCheckIntervalMs', 'onAttempt']);
  if (options.reasoningParser !== undefined && options.reasoningParser !== 'server' && options.reasoningParser !== 'client') throw v.invalid('options.reasoningParser', "'server' or 'client'", options.reasoningParser);
  const interval = v.optionalInteger('options.healthCheckIntervalMs', options.healthCheckIntervalMs, 0) ?? 5000;
  const auth = (): Record<string, string> => ({ ...(options.apiKey ? { authorization: `Bearer ${options.apiKey}` } : {}), ...(options.headers ?? {}) });
  let pool: EndpointPool;
  try {
    pool = new EndpointPool(urls, auth, interval);
  } catch (err) {
    throw new InvalidArgumentError('ERR_INVALID_ARGUMENT', `baseURL: ${(err as Error).message}`, { cause: err });
  }
  try {
    const tok = options.tokenizer !== undefined ? await loadClientTokenizer(options.tokenizer, options.hub) : null;
    let model = options.model;
    if (model === undefined) {
      let last: unknown;
      for (const ep of pool.endpoints) {
        try {
          const res = await fetch(`${ep.url}/v1/models`, { headers: auth(), signal: AbortSignal.timeout(10_000) });
          if (!res.ok) throw new Error(`HTTP ${res.status}`);
          const list = (await res.json()) as { data?: Array<{ id?: string }> };
          model = list.data?.[0]?.id;
          if (model) break;
        } catch (err) {
          last = err;
          pool.markDown(ep, (err as Error).message);
        }
      }
      if (!model) throw new RemoteError('ERR_REMOTE_UNAVAILABLE', `could not learn the model id from GET /v1/models on any endpoint (${(last as Error | undefined)?.message ?? 'no model listed'}): pass options.model`, { cause: last });
    }
    return new RemoteModel(pool, model, options, tok);
  } catch (err) {
    pool.close();
    throw err;
  }
}
