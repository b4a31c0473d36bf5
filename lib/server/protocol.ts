/**
 * The OpenAI wire format and its mapping onto this library: request bodies (already checked against
 * schemas.ts) become GenerateOptions, results and stream events become OpenAI's response objects and
 * chunks, and errors become OpenAI's `{ error: { message, type, param, code } }`.
 */
import { randomBytes } from 'node:crypto';

import type { ResponseFormat, ToolChoice } from '../grammar.js';
import { reasoningFromKeywords, validateMessages, type ChatMessage, type ToolCall, type ToolDefinition } from '../chat/template.js';
import { ContextOverflowError, InvalidArgumentError, ModelClosedError, NemotronError, TemplateError } from '../errors.js';
import type { FinishReason, GenerateOptions, GenerateResult, TokenLogprob, Usage } from '../model.js';

// ---- wire types --------------------------------------------------------------------------------------

/** A field a client may leave out or send as null. */
export type Nullable<T> = T | null | undefined;

export interface WireToolCall {
  id?: string;
  type?: 'function';
  function: { name: string; arguments: string };
}

export interface WireMessage {
  role: 'system' | 'developer' | 'user' | 'assistant' | 'tool';
  content?: Nullable<string | Array<{ type: string; text?: string }>>;
  name?: Nullable<string>;
  tool_calls?: Nullable<WireToolCall[]>;
  tool_call_id?: Nullable<string>;
  reasoning_content?: Nullable<string>;
}

interface SamplingBody {
  model?: string;
  temperature?: Nullable<number>;
  top_p?: Nullable<number>;
  top_k?: Nullable<number>;
  min_p?: Nullable<number>;
  repetition_penalty?: Nullable<number>;
  presence_penalty?: Nullable<number>;
  frequency_penalty?: Nullable<number>;
  logit_bias?: Nullable<Record<string, number>>;
  seed?: Nullable<number>;
  max_tokens?: Nullable<number>;
  stop?: Nullable<string | string[]>;
  n?: Nullable<number>;
  stream?: Nullable<boolean>;
  stream_options?: Nullable<{ include_usage?: Nullable<boolean> }>;
}

export interface ChatCompletionBody extends SamplingBody {
  messages: WireMessage[];
  max_completion_tokens?: Nullable<number>;
  tools?: Nullable<Array<{ type: 'function'; function: { name: string; description?: Nullable<string>; parameters?: Nullable<Record<string, unknown>>; strict?: Nullable<boolean> } }>>;
  tool_choice?: Nullable<'none' | 'auto' | 'required' | { type: string }>;
  parallel_tool_calls?: Nullable<boolean>;
  logprobs?: Nullable<boolean>;
  top_logprobs?: Nullable<number>;
  response_format?: Nullable<{ type?: string }>;
  reasoning?: Nullable<boolean>;
  chat_template_kwargs?: Nullable<{ enable_thinking?: Nullable<boolean> }>;
  thinking_budget?: Nullable<number>;
}

export interface CompletionBody extends SamplingBody {
  prompt: string | string[] | number[] | number[][];
  echo?: Nullable<boolean>;
  suffix?: Nullable<string>;
  best_of?: Nullable<number>;
  logprobs?: Nullable<number>;
  /** vLLM's extension: also answer the generated token ids (`choices[0].token_ids`; non-streamed answers). */
  return_token_ids?: Nullable<boolean>;
}

export interface WireUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  prompt_tokens_details: { cached_tokens: number };
  completion_tokens_details: { reasoning_tokens: number };
}

export type WireFinishReason = 'stop' | 'length' | 'tool_calls';

// ---- errors ------------------------------------------------------------------------------------------

export type ErrorType = 'invalid_request_error' | 'authentication_error' | 'not_found_error' | 'rate_limit_error' | 'server_error';

/** An error answered as `{ error: { message, type, param, code } }` with an HTTP status. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly param: string | null = null,
    readonly code: string | null = null,
    readonly type: ErrorType = status >= 500 ? 'server_error' : 'invalid_request_error',
  ) {
    super(message);
    this.name = 'HttpError';
  }

  body(): { error: { message: string; type: ErrorType; param: string | null; code: string | null } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

const badRequest = (message: string, param: string | null, code: string | null = 'invalid_value') => new HttpError(400, message, param, code);

/** Our field names in library messages, as the wire spells them. */
const WIRE_FIELDS: Record<string, string> = { toolCalls: 'tool_calls', reasoning: 'reasoning_content' };

/**
 * The HTTP answer for a library error: argument, context and template errors are the request's fault
 * (400), a closed model means the server is going away (503), anything else is ours (500).
 * `param` is read from the message when it names a message field (`messages[2].role ...`), else `fallbackParam`.
 */
export function fromLibraryError(err: unknown, fallbackParam: string | null): HttpError {
  if (err instanceof HttpError) return err;
  if (err instanceof ContextOverflowError) return new HttpError(400, err.message, fallbackParam, 'context_length_exceeded');
  if (err instanceof InvalidArgumentError || err instanceof TemplateError) {
    const named = /^(messages\[\d+\](?:\.\w+)*(?:\[\d+\])?(?:\.\w+)*)/.exec(err.message)?.[1];
    const param = named ? named.replace(/\.(\w+)/g, (m, f: string) => (WIRE_FIELDS[f] ? `.${WIRE_FIELDS[f]}` : m)) : fallbackParam;
    return new HttpError(400, err.message, param, err.code);
  }
  if (err instanceof ModelClosedError) return new HttpError(503, 'the model has been closed: the server is shutting down', null, 'model_closed');
  if (err instanceof NemotronError) return new HttpError(500, err.message, null, err.code);
  return new HttpError(500, 'internal server error', null, 'internal_error');
}

/** Fastify's own errors (validation, body parsing, limits) in OpenAI's shape. */
export function fromFrameworkError(err: {
  code?: string;
  statusCode?: number;
  message: string;
  validation?: Array<{ keyword: string; instancePath: string; message?: string; params: Record<string, unknown> }>;
}): HttpError {
  if (err.validation && err.validation.length > 0) {
    const errors = err.validation;
    // An anyOf failure reports each branch first and the anyOf itself last: the last one names the field.
    const last = errors[errors.length - 1]!;
    const e = last.keyword === 'anyOf' ? last : errors[0]!;
    let path = e.instancePath;
    if (e.keyword === 'required' && typeof e.params['missingProperty'] === 'string') path += `/${e.params['missingProperty']}`;
    const param = path.split('/').filter(Boolean).map((s, i) => (/^\d+$/.test(s) ? `[${s}]` : i === 0 ? s : `.${s}`)).join('') || null;
    let message = e.keyword === 'required' ? 'is required' : e.keyword === 'anyOf' ? 'has an invalid type or value' : (e.message ?? 'is invalid');
    if (e.keyword === 'type') message = `must be ${String(e.params['type']).split(',').map((t) => (t === 'null' ? 'null' : `${/^[aeiou]/.test(t) ? 'an' : 'a'} ${t}`)).join(' or ')}`;
    if (e.keyword === 'enum' && Array.isArray(e.params['allowedValues'])) message += ` (${(e.params['allowedValues'] as unknown[]).map((v) => JSON.stringify(v)).join(', ')})`;
    return badRequest(`${param ?? 'the request body'} ${message}`, param, e.keyword === 'required' ? 'missing_required_parameter' : 'invalid_value');
  }
  switch (err.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new HttpError(413, 'the request body is too large', null, 'request_too_large');
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return new HttpError(400, 'the request body is not valid JSON', null, 'invalid_json');
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new HttpError(400, 'the request body is empty: expected a JSON object', null, 'invalid_json');
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new HttpError(415, 'unsupported content type: send application/json', null, 'unsupported_media_type');
  }
  const status = err.statusCode ?? 500;
  if (status >= 400 && status < 500) return new HttpError(status, err.message, null, err.code ?? null);
  return new HttpError(500, 'internal server error', null, 'internal_error');
}

// ---- requests ----------------------------------------------------------------------------------------

export interface RequestLimits {
  /** Largest max_tokens accepted. */
  maxTokens: number;
  vocabSize: number;
}

export interface ParsedRequest {
  options: GenerateOptions;
  stream: boolean;
  includeUsage: boolean;
  /** Choices to generate (n). */
  n: number;
  /** Whether the response carries logprobs (chat `logprobs: true`, completions `logprobs: k`). */
  logprobs: boolean;
  /** /v1/completions with return_token_ids: the answer carries the generated token ids. */
  returnTokenIds?: boolean;
}

const isSet = <T>(v: Nullable<T>): v is T => v !== undefined && v !== null;

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The library's default maxTokens: 4096 for chat with reasoning on, else 256 (model.ts). */
const DEFAULT_MAX_TOKENS = { reasoning: 4096, plain: 256 };

/** OpenAI seeds are any integer; ours are uint32: the value modulo 2^32. */
export function seedOf(seed: number): number {
  const m = 2 ** 32;
  return ((seed % m) + m) % m;
}

function samplingOptions(body: SamplingBody & { max_completion_tokens?: Nullable<number> }, limits: RequestLimits, defaultMaxTokens: number): GenerateOptions {
  if (isSet(body.n) && body.n < 1) throw badRequest(`n must be at least 1 (got ${body.n})`, 'n');
  const o: GenerateOptions = {};
  if (isSet(body.temperature)) o.temperature = body.temperature;
  if (isSet(body.top_p)) o.topP = body.top_p;
  if (isSet(body.top_k)) o.topK = body.top_k === -1 ? 0 : body.top_k; // vLLM: -1 = off
  if (isSet(body.min_p)) o.minP = body.min_p;
  if (isSet(body.repetition_penalty)) o.repetitionPenalty = body.repetition_penalty;
  if (isSet(body.presence_penalty)) o.presencePenalty = body.presence_penalty;
  if (isSet(body.frequency_penalty)) o.frequencyPenalty = body.frequency_penalty;
  if (isSet(body.seed)) o.seed = seedOf(body.seed);
  if (isSet(body.stop)) o.stop = typeof body.stop === 'string' ? [body.stop] : body.stop;
  if (isSet(body.logit_bias)) {
    const bias: Record<number, number> = {};
    for (const [key, value] of Object.entries(body.logit_bias)) {
      const id = Number(key);
      if (!/^\d+$/.test(key) || id >= limits.vocabSize) {
        throw badRequest(`logit_bias has token id ${JSON.stringify(key)}: ids must be integers in [0, ${limits.vocabSize})`, 'logit_bias');
      }
      bias[id] = value;
    }
    o.logitBias = bias;
  }
  const [param, requested] = isSet(body.max_completion_tokens) ? ['max_completion_tokens', body.max_completion_tokens] : ['max_tokens', body.max_tokens];
  if (isSet(requested)) {
    if (requested > limits.maxTokens) throw badRequest(`${param} is ${requested} but this server allows at most ${limits.maxTokens}`, param);
    o.maxTokens = requested;
  } else if (defaultMaxTokens > limits.maxTokens) {
    o.maxTokens = limits.maxTokens; // only when the library's default would exceed the limit
  }
  return o;
}

function streamFlags(body: SamplingBody): { stream: boolean; includeUsage: boolean } {
  const stream = body.stream === true;
  return { stream, includeUsage: stream && body.stream_options?.include_usage === true };
}

/**
 * OpenAI messages to ours, by the library's converter (lib/chat/openai.ts: `developer` is `system`, text
 * content parts are joined, an assistant's tool_calls get their JSON-string arguments parsed, reasoning_content
 * becomes `reasoning`, tool_call_id and name are dropped); its errors become 400s naming the wire field.
 */
export function toChatMessages(messages: WireMessage[]): ChatMessage[] {
  try {
    return validateMessages(messages);
  } catch (err) {
    throw fromLibraryError(err, 'messages');
  }
}

export function parseChatRequest(body: ChatCompletionBody, limits: RequestLimits): ParsedRequest {
  if (isSet(body.top_logprobs) && body.logprobs !== true) throw badRequest('top_logprobs needs logprobs: true', 'top_logprobs');
  // ---- constrained decoding (issue #15): response_format and tool_choice ----
  const { responseFormat, toolChoice } = parseConstraints(body);
  const choice = body.tool_choice;
  const messages = toChatMessages(body.messages);
  const flag = body.reasoning ?? undefined;
  const kwarg = body.chat_template_kwargs?.enable_thinking ?? undefined;
  if (flag !== undefined && kwarg !== undefined && flag !== kwarg) {
    throw badRequest('reasoning and chat_template_kwargs.enable_thinking disagree', 'reasoning');
  }
  const reasoning = flag ?? kwarg;
  const reasoningOn = reasoning ?? reasoningFromKeywords(messages);
  const options: GenerateOptions = {
    ...samplingOptions(body, limits, reasoningOn ? DEFAULT_MAX_TOKENS.reasoning : DEFAULT_MAX_TOKENS.plain),
    messages,
  };
  if (reasoning !== undefined) options.reasoning = reasoning;
  if (isSet(body.thinking_budget)) options.thinkingBudget = body.thinking_budget;
  if (body.logprobs === true) options.topLogprobs = body.top_logprobs ?? 0;
  if (isSet(body.tools) && body.tools.length > 0 && choice !== 'none') {
    options.tools = body.tools.map((t): ToolDefinition => ({
      type: 'function',
      function: {
        name: t.function.name,
        ...(isSet(t.function.description) ? { description: t.function.description } : {}),
        ...(isSet(t.function.parameters) ? { parameters: t.function.parameters } : {}),
      },
    }));
  }
  if (responseFormat) options.responseFormat = responseFormat;
  if (toolChoice) {
    if (!options.tools?.length) throw badRequest('tool_choice "required" or a named tool needs `tools`', 'tool_choice');
    if (typeof toolChoice === 'object' && !options.tools.some((t) => t.function.name === toolChoice.name)) {
      throw badRequest(`tool_choice names ${JSON.stringify(toolChoice.name)}, which is not one of the tools`, 'tool_choice');
    }
    options.toolChoice = toolChoice;
  }
  return { options, ...streamFlags(body), n: body.n ?? 1, logprobs: body.logprobs === true };
}

/** response_format (json_object, json_schema with strict) and tool_choice (required, named) as the library's options. */
function parseConstraints(body: ChatCompletionBody): { responseFormat?: ResponseFormat; toolChoice?: ToolChoice } {
  const out: { responseFormat?: ResponseFormat; toolChoice?: ToolChoice } = {};
  const rf = body.response_format as Nullable<{ type?: string; json_schema?: Nullable<{ name?: string; schema?: unknown; strict?: Nullable<boolean> }> }>;
  if (isSet(rf) && rf.type !== undefined && rf.type !== 'text') {
    if (rf.type === 'json_object') out.responseFormat = { type: 'json_object' };
    else if (rf.type === 'json_schema') {
      const js = rf.json_schema;
      if (!isSet(js) || typeof js.schema !== 'object' || js.schema === null || Array.isArray(js.schema)) {
        throw badRequest('response_format json_schema needs json_schema.schema, a JSON Schema object', 'response_format.json_schema.schema');
      }
      out.responseFormat = { type: 'json_schema', schema: js.schema as Record<string, unknown>, ...(isSet(js.strict) ? { strict: js.strict } : {}) };
    } else {
      throw badRequest(`response_format ${JSON.stringify(rf.type)} is not supported ("text", "json_object" or "json_schema")`, 'response_format', 'unsupported_value');
    }
  }
  const choice = body.tool_choice as unknown;
  if (choice === 'required') out.toolChoice = 'required';
  else if (isSet(choice) && typeof choice === 'object') {
    const name = (choice as { function?: { name?: unknown } }).function?.name;
    if ((choice as { type?: unknown }).type !== 'function' || typeof name !== 'string') {
      throw badRequest('tool_choice must be "none", "auto", "required" or {"type": "function", "function": {"name": ...}}', 'tool_choice');
    }
    out.toolChoice = { name };
  } else if (isSet(choice) && choice !== 'auto' && choice !== 'none') {
    throw badRequest('tool_choice must be "none", "auto", "required" or {"type": "function", "function": {"name": ...}}', 'tool_choice');
  }
  return out;
}

export function parseCompletionRequest(body: CompletionBody, limits: RequestLimits): ParsedRequest {
  if (body.echo === true) throw badRequest('echo is not supported by this server', 'echo', 'unsupported_parameter');
  if (isSet(body.suffix)) throw badRequest('suffix is not supported by this server', 'suffix', 'unsupported_parameter');
  if (isSet(body.best_of) && body.best_of !== 1) throw badRequest('best_of must be 1', 'best_of', 'unsupported_value');
  let prompt: string | number[];
  const p = body.prompt;
  if (typeof p === 'string') prompt = p;
  else if (p.length === 0) throw badRequest('prompt is empty', 'prompt', 'invalid_value');
  else if (typeof p[0] === 'number') prompt = p as number[];
  else if (p.length === 1) prompt = p[0] as string | number[];
  else throw badRequest(`prompt has ${p.length} prompts: this server takes one prompt per request`, 'prompt', 'unsupported_value');
  const options: GenerateOptions = { ...samplingOptions(body, limits, DEFAULT_MAX_TOKENS.plain), prompt };
  if (isSet(body.logprobs)) options.topLogprobs = body.logprobs;
  return { options, ...streamFlags(body), n: body.n ?? 1, logprobs: isSet(body.logprobs), ...(body.return_token_ids === true ? { returnTokenIds: true } : {}) };
}

// ---- responses ---------------------------------------------------------------------------------------

export const newId = (prefix: string) => `${prefix}-${randomBytes(12).toString('hex')}`;
export const toolCallId = () => `call_${randomBytes(12).toString('hex')}`;
export const unixSeconds = () => Math.floor(Date.now() / 1000);

export function wireUsage(u: Usage): WireUsage {
  return {
    prompt_tokens: u.promptTokens,
    completion_tokens: u.completionTokens,
    total_tokens: u.promptTokens + u.completionTokens,
    prompt_tokens_details: { cached_tokens: u.cachedTokens },
    completion_tokens_details: { reasoning_tokens: u.reasoningTokens },
  };
}

/**
 * stop → 'stop', or 'tool_calls' when the model called tools; length → 'length'. 'abort' and 'error'
 * never reach a client as a finish reason: an error is answered as an error (HTTP status, or an error
 * event mid-stream), and an abort either has no client left or is the server shutting down (503).
 */
export function wireFinishReason(reason: FinishReason, toolCalls: number): WireFinishReason {
  if (reason === 'length') return 'length';
  return toolCalls > 0 ? 'tool_calls' : 'stop';
}

/** The error a result that did not finish normally is answered with. */
export function resultError(result: GenerateResult, shuttingDown: boolean): HttpError | null {
  if (result.finishReason === 'error') return fromLibraryError(result.error, null);
  if (result.finishReason === 'abort') {
    return new HttpError(503, shuttingDown ? 'the server is shutting down' : 'the generation was cancelled (the model was closed)', null, 'cancelled');
  }
  return null;
}

export interface WireToolCallOut {
  id: string;
  type: 'function';
  function: { name: string; arguments: string };
}

export function wireToolCall(call: ToolCall): WireToolCallOut {
  return { id: toolCallId(), type: 'function', function: { name: call.name, arguments: JSON.stringify(call.arguments) } };
}

// ---- logprobs ----------------------------------------------------------------------------------------

/** A token's text for the legacy completions shape: its text, or `bytes:\\xNN…` when it is not whole UTF-8 (as OpenAI writes it). */
function legacyToken(t: { text: string; bytes: number[] }): string {
  const whole = Buffer.from(t.text, 'utf8');
  if (whole.length === t.bytes.length && whole.every((b, i) => b === t.bytes[i])) return t.text;
  return `bytes:${t.bytes.map((b) => `\\x${b.toString(16).padStart(2, '0')}`).join('')}`;
}

export interface WireChatLogprob {
  token: string;
  logprob: number;
  bytes: number[];
}

/** Chat logprobs: `{ content: [{ token, logprob, bytes, top_logprobs: [{ token, logprob, bytes }] }], refusal: null }`. */
export function wireChatLogprobs(list: readonly TokenLogprob[]): { content: Array<WireChatLogprob & { top_logprobs: WireChatLogprob[] }>; refusal: null } {
  return {
    content: list.map((t) => ({
      token: t.text,
      logprob: t.logprob,
      bytes: t.bytes,
      top_logprobs: t.top.map((a) => ({ token: a.text, logprob: a.logprob, bytes: a.bytes })),
    })),
    refusal: null,
  };
}

/** Completions logprobs (the legacy shape): parallel arrays, and text offsets counted from `offset`. */
export function wireCompletionLogprobs(list: readonly TokenLogprob[], offset: number): { tokens: string[]; token_logprobs: number[]; top_logprobs: Array<Record<string, number>>; text_offset: number[] } {
  const text_offset: number[] = [];
  let at = offset;
  for (const t of list) {
    text_offset.push(at);
    at += t.text.length;
  }
  return {
    tokens: list.map(legacyToken),
    token_logprobs: list.map((t) => t.logprob),
    top_logprobs: list.map((t) => Object.fromEntries(t.top.map((a) => [legacyToken(a), a.logprob]))),
    text_offset,
  };
}
