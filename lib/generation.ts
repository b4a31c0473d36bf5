/**
 * One generation request from registration to its last event. The engine owns the request's tokens
 * (csrc/engine/scheduler.h: admission, prefix restore, prompt chunks, sampling, end tokens, the token
 * budget, snapshots); this side turns tokens into text (whole UTF-8 only), splits reasoning from the
 * answer, enforces the thinking budget by forcing `</think>` through the model, applies stop strings,
 * extracts tool calls, and hands events to the consumer one at a time. Backpressure: after each token
 * the engine leaves the request alone until its consumer asks for more; a consumer that stops asking
 * for longer than `idleTimeoutMs` gets its request cancelled (ERR_IDLE_TIMEOUT), so a forgotten stream
 * cannot hold a sequence slot forever.
 */
import type { NativeGrammarSpec, NativeRequestEnd, NativeRequestSpec, NativeSampling } from './addon-types.js';
import type { Message } from './chat/openai.js';
import type { ToolCall, ToolDefinition } from './chat/template.js';
import { ReasoningSplitter } from './chat/reasoning.js';
import { StopMatcher } from './chat/stop.js';
import { ToolCallParser } from './chat/tool-calls.js';
import { IdleTimeoutError, NemotronError } from './errors.js';
import type { ResponseFormat, ToolChoice } from './grammar.js';
import type { NativeTokenLogprobs, RequestHandler, Scheduler } from './scheduler.js';
import { IncrementalDecoder, type TextTokenizer } from './tokenizer.js';
import * as v from './validate.js';

export interface SamplingOptions {
  /** 0 = greedy. Default: 0.6 for chat with reasoning on (NVIDIA's recommendation), else 0. */
  temperature?: number;
  /** Keep only the k most likely tokens; 0 = off. */
  topK?: number;
  /** Smallest set of most likely tokens holding this much probability, in (0, 1]. Default: 0.95 for chat with reasoning on, else 1 (off). */
  topP?: number;
  /** Drop tokens less likely than minP × the most likely one, in [0, 1); 0 = off. */
  minP?: number;
  /** > 0: divides positive logits (multiplies negative ones) of every token already in the sequence; 1 = off. */
  repetitionPenalty?: number;
  /** In [-2, 2]: subtracted from the logit of every token generated so far (OpenAI semantics). */
  presencePenalty?: number;
  /** In [-2, 2]: subtracted once per occurrence in the generated tokens. */
  frequencyPenalty?: number;
  /** Added to the logits of the given token ids; e.g. { 12: -100 } bans token 12. */
  logitBias?: Record<number, number>;
  /** Seed for the random draws: the same seed gives the same tokens, alone or batched. Default: random. */
  seed?: number;
}

export interface GenerateOptions extends SamplingOptions {
  /** Raw text (tokenized with the checkpoint's BOS policy) or token ids. Give this or `messages`. */
  prompt?: string | readonly number[];
  /**
   * A conversation, rendered with the checkpoint's chat template. Give this or `prompt`. Messages in the
   * library's shape (ChatMessage) or in OpenAI's (the `openai` package's ChatCompletionMessageParam[]:
   * `developer`, text content parts, `tool_calls`, `tool_call_id`), see OpenAIChatMessage.
   */
  messages?: readonly Message[];
  /** Function tools the model may call (rendered by the template; its calls come back parsed). */
  tools?: ToolDefinition[];
  /** Reasoning on (`/think`) or off (`/no_think`); default: the messages' keywords, else on. */
  reasoning?: boolean;
  /** Reasoning tokens after which the reasoning is closed at the next newline (or 500 tokens later). */
  thinkingBudget?: number;
  /** Most tokens to generate. Default 256, or 4096 for chat with reasoning on. */
  maxTokens?: number;
  /** Generation stops before any of these strings; they are not part of the text. */
  stop?: string | string[];
  /** Stops the request within one step and frees its sequence; what the caller sees is `abortBehavior`. */
  signal?: AbortSignal;
  /**
   * How an aborted request ends (its signal, model.close(), or the stream's idleTimeoutMs):
   * 'resolve' (default) — generate() resolves and stream() ends with `done`, finishReason 'abort' (the
   * text so far is in the result); 'reject' — generate() rejects and stream() throws an AbortError
   * (`name` 'AbortError', code ERR_ABORTED, `cause` the reason, `result` the partial result), as the OpenAI
   * SDK does. Breaking out of a stream is not an abort: it just ends the request.
   */
  abortBehavior?: AbortBehavior;
  /**
   * Report log-probabilities: 0..20 most likely alternatives per sampled token (0: the token's own only).
   * The result gets `logprobs` and stream pieces carry theirs. Values are from the raw model distribution
   * (log-softmax of the logits before penalties, bias, temperature and top-k/p, as vLLM's default), and
   * a request that asks for them samples on the host (CUDA builds otherwise sample on the device).
   */
  topLogprobs?: number;
  /**
   * Constrained output (grammar-constrained decoding in the native sampler): JSON (any object, or valid
   * against a JSON schema; parsed into result.parsed), an EBNF grammar or a regex. With reasoning on it
   * applies after `</think>`.
   */
  responseFormat?: ResponseFormat;
  /** With `tools`: 'auto' (default; a tool call the model opens is constrained to parse), 'none', 'required' or { name }. */
  toolChoice?: ToolChoice;
}

/** Every key GenerateOptions has (unknown keys are refused). */
export const GENERATE_KEYS = [
  'prompt', 'messages', 'tools', 'reasoning', 'thinkingBudget', 'maxTokens', 'stop', 'signal', 'abortBehavior', 'topLogprobs',
  'temperature', 'topK', 'topP', 'minP', 'repetitionPenalty', 'presencePenalty', 'frequencyPenalty', 'logitBias', 'seed',
  'responseFormat', 'toolChoice',
] as const;

/** Defaults of a request: NVIDIA's recommended sampling with reasoning on (model card), greedy otherwise. */
export const SAMPLING_DEFAULTS = {
  reasoning: { temperature: 0.6, topP: 0.95, maxTokens: 4096 },
  plain: { temperature: 0, topP: 1, maxTokens: 256 },
} as const;

/** options.stop as a list: a non-empty string or an array of them. */
export function stopList(stop: string | string[] | undefined): string[] {
  const list = stop === undefined ? [] : typeof stop === 'string' ? [stop] : stop;
  if (!Array.isArray(list) || list.some((s) => typeof s !== 'string' || s.length === 0)) throw v.invalid('options.stop', 'a non-empty string or an array of them', stop);
  return list;
}

export type FinishReason = 'stop' | 'length' | 'abort' | 'error';

export interface Usage {
  promptTokens: number;
  /** Prompt tokens restored from the prefix cache instead of computed. */
  cachedTokens: number;
  /** Tokens of the reply, reasoning included (and the `</think>` tokens a thinking budget forced). */
  completionTokens: number;
  reasoningTokens: number;
  /** Chat sessions with contextOverflow 'truncate-oldest': messages dropped to fit this turn. */
  droppedMessages?: number;
}

export interface Timings {
  /** Waiting for a free sequence slot (maxSequences). */
  queueMs: number;
  /** From admission to the first generated token (prefill). */
  timeToFirstTokenMs: number;
  prefillTokensPerSecond: number;
  decodeTokensPerSecond: number;
  totalMs: number;
}

/** One alternative at a sampled token's position. */
export interface TopLogprob {
  token: number;
  /** The token's own text (a token that is part of a multi-byte character shows U+FFFD here: see `bytes`). */
  text: string;
  /** The bytes the token stands for (UTF-8; part of a character for some tokens). */
  bytes: number[];
  /** Natural log of its probability under the model's raw distribution (before penalties, bias, temperature, top-k/p). */
  logprob: number;
}

/**
 * A sampled token's log-probability and the `topLogprobs` most likely tokens at its position (most likely
 * first), from the raw model distribution: the log-softmax of the logits before repetition/presence
 * penalties, logit bias, temperature and truncation (vLLM's default `raw_logprobs`).
 */
export interface TokenLogprob extends TopLogprob {
  top: TopLogprob[];
}

export interface GenerateResult {
  text: string;
  reasoning: string;
  toolCalls: ToolCall[];
  /** Tool calls the model wrote but that could not be parsed: reported, never dropped. */
  toolCallErrors: Array<{ raw: string; error: string }>;
  tokens: number[];
  /**
   * With a JSON responseFormat: the answer parsed (undefined when it could not be, e.g. cut by maxTokens:
   * finishReason 'length', and `parseError` says why).
   */
  parsed?: unknown;
  parseError?: string;
  finishReason: FinishReason;
  error?: NemotronError;
  usage: Usage;
  timings: Timings;
  /** With `topLogprobs`: one entry per sampled token, in order (tokens forced by a thinking budget have none). */
  logprobs?: TokenLogprob[];
}

/**
 * What a stream yields; `type` alone narrows it. With `topLogprobs`, the pieces carry `logprobs`: the
 * sampled tokens whose text completed since the previous piece (a token holding back part of a character
 * or a possible stop string is reported with the piece its text ends up in).
 */
export type StreamEvent =
  | { type: 'reasoning'; text: string; logprobs?: TokenLogprob[] }
  | { type: 'text'; text: string; logprobs?: TokenLogprob[] }
  | { type: 'toolCall'; call: ToolCall; logprobs?: TokenLogprob[] }
  /** A tool call the model wrote that could not be parsed (its raw text and why); also in result.toolCallErrors. */
  | { type: 'toolCallError'; error: string; raw: string; logprobs?: TokenLogprob[] }
  | { type: 'done'; result: GenerateResult };

/** How a request ended by its AbortSignal (or model.close(), or an idle timeout) is reported (GenerateOptions.abortBehavior). */
export type AbortBehavior = 'resolve' | 'reject';

/**
 * The error generate() rejects with, and stream() throws, for an aborted request under abortBehavior
 * 'reject' (as the OpenAI SDK rejects an aborted call): `name` 'AbortError', `code` 'ERR_ABORTED',
 * `cause` the signal's reason (or the IdleTimeoutError / ModelClosedError), `result` the partial result.
 */
export class AbortError extends NemotronError {
  /** The partial result (text so far, usage, timings; finishReason 'abort'). */
  readonly result: GenerateResult;
  constructor(result: GenerateResult, reason: unknown) {
    super('ERR_ABORTED', reason instanceof Error ? `the request was aborted: ${reason.message}` : 'the request was aborted', { cause: reason });
    this.result = result;
  }
}

export interface RequestSpec {
  prompt: Int32Array;
  maxTokens: number;
  sampling: NativeSampling;
  stop: string[];
  eos: Set<number>;
  /** The prompt ends inside `<think>` (the generation prompt opened the reasoning). */
  startsInReasoning: boolean;
  /** Reasoning tokens before the budget closes the reasoning at the next newline (or +500). */
  thinkingBudget: number | undefined;
  /** Token ids fed to close the reasoning when the budget runs out (`</think>\n\n`). */
  closeReasoning: number[];
  parseToolCalls: boolean;
  signal: AbortSignal | undefined;
  /** Restore the longest cached prefix of the prompt. */
  reusePrefix: boolean;
  /** Prompt positions to snapshot into the prefix cache (message boundaries, the end of the prompt). */
  snapshotAt: number[];
  /** Of those, positions whose snapshot the caller keeps (pinned; onSnapshot receives the pin). */
  pinAt: number[];
  /** Also snapshot every this many prompt tokens (0: off). */
  snapshotEvery: number;
  /** Called with each snapshot this request cached; a pinned one must be unpinned by the receiver. */
  onSnapshot?: (position: number, id: number, pinned: boolean) => void;
  /** Cancel the request when its consumer has not asked for the next event for this long (0: never). */
  idleTimeoutMs: number;
  /** Called once with the final result, before the `done` event is delivered. */
  onDone?: (result: GenerateResult) => void;
  /** 0..20: report log-probs with this many alternatives per token; -1: off. */
  topLogprobs: number;
  /** 'resolve' (default): an abort ends with finishReason 'abort'; 'reject': the stream throws an AbortError. */
  abortBehavior: AbortBehavior;
  /** Told of each sampled token as it arrives (kTokenObserver). */
  onTokenTime?: TokenObserver;
  /** Grammar-constrained decoding: the compiled constraint (awaited before the request is registered). */
  grammar?: Promise<NativeGrammarSpec | undefined>;
  /** The answer is JSON: parse it into result.parsed. */
  parseJson?: boolean;
}

/**
 * @internal An option key (a symbol, so option validation never sees it) through which the server
 * watches each sampled token's arrival for its latency metrics: `(request, performance.now())`.
 */
export const kTokenObserver: unique symbol = Symbol('nemotron-node token observer');
export type TokenObserver = (request: number, atMs: number) => void;

/** NVIDIA's rule: after the budget, end reasoning at the next newline, or at budget + 500 at the latest. */
export const THINKING_GRACE_TOKENS = 500;

export class GenerationRequest implements RequestHandler {
  id = -1;
  private readonly events: StreamEvent[] = [];
  private wake: (() => void) | null = null;
  private finished = false;
  /** The engine has ended the request (its sequence is free). */
  private nativeDone = false;
  /** The engine paused the request after a token: resume it when the consumer asks for more. */
  private paused = false;
  /** Tokens to force in with the next resume (`</think>` when the thinking budget runs out). */
  private forced: number[] = [];
  private readonly decoder: IncrementalDecoder | null;
  private readonly stopper: StopMatcher;
  private readonly splitter: ReasoningSplitter;
  private readonly tools: ToolCallParser | null;
  private readonly generated: number[] = [];
  private text = '';
  private reasoning = '';
  private readonly toolCalls: ToolCall[] = [];
  private readonly toolCallErrors: Array<{ raw: string; error: string }> = [];
  private reasoningTokens = 0;
  private cachedTokens = 0;
  private draws = 0;
  private forcedClose = false;
  private finishReason: FinishReason = 'length';
  private error: NemotronError | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  private readonly tSubmit = performance.now();
  private tAdmit = 0;
  private tFirst = 0;
  private tEnd = 0;
  private readonly onAbort = () => this.finish('abort');
  /** With topLogprobs: every sampled token's entry, and those not yet attached to an event. */
  private readonly logprobs: TokenLogprob[] = [];
  private pendingLogprobs: TokenLogprob[] = [];

  constructor(
    private readonly spec: RequestSpec,
    private readonly scheduler: Pick<Scheduler, 'submit' | 'resume' | 'cancel' | 'pin'>,
    private readonly tokenizer: TextTokenizer | null,
  ) {
    this.decoder = tokenizer ? new IncrementalDecoder(tokenizer) : null;
    this.stopper = new StopMatcher(spec.stop);
    this.splitter = new ReasoningSplitter({ startsInReasoning: spec.startsInReasoning });
    this.tools = spec.parseToolCalls ? new ToolCallParser() : null;
  }

  /** Whether the request has ended on this side (its `done` event is queued or delivered). */
  get ended(): boolean {
    return this.finished;
  }

  /** Registers the request with the engine, then streams events until done. */
  async *run(): AsyncGenerator<StreamEvent, void, undefined> {
    const { signal } = this.spec;
    try {
      let grammar: NativeGrammarSpec | undefined;
      if (this.spec.grammar && !signal?.aborted) {
        try {
          grammar = await this.spec.grammar;
        } catch (err) {
          this.error = err as NemotronError;
          this.finish('error');
        }
      }
      if (this.finished) {
        // the grammar could not be compiled
      } else if (signal?.aborted) this.finish('abort');
      else {
        this.id = this.scheduler.submit(this.nativeSpec(grammar), this);
        signal?.addEventListener('abort', this.onAbort, { once: true });
      }
      for (;;) {
        const ev = this.events.shift();
        if (ev) {
          // The consumer has the event; how long it takes to ask for the next one is its idle time.
          if (ev.type !== 'done') this.armIdle();
          if (ev.type === 'done' && ev.result.finishReason === 'abort' && this.spec.abortBehavior === 'reject') {
            throw new AbortError(ev.result, ev.result.error ?? this.spec.signal?.reason);
          }
          yield ev;
          this.disarmIdle();
          if (ev.type === 'done') return;
          continue;
        }
        if (this.paused && !this.finished) {
          this.paused = false;
          this.scheduler.resume(this.id, this.forced.splice(0));
        }
        await new Promise<void>((resolve) => (this.wake = resolve));
      }
    } finally {
      // The consumer stopped early (break, return, throw): end now, free the slot.
      this.disarmIdle();
      if (!this.finished) this.finish('abort');
      signal?.removeEventListener('abort', this.onAbort);
    }
  }

  /** Ends the request as abandoned (its iterator was garbage-collected, or the model is closing). */
  abandon(): void {
    this.finish('abort');
  }

  private nativeSpec(grammar: NativeGrammarSpec | undefined): NativeRequestSpec {
    const s = this.spec;
    return {
      ...(grammar ? { grammar } : {}),
      prompt: s.prompt,
      sampling: s.sampling,
      eos: Int32Array.from(s.eos),
      maxTokens: s.maxTokens,
      reusePrefix: s.reusePrefix,
      snapshotAt: s.snapshotAt,
      pinAt: s.pinAt,
      snapshotEvery: s.snapshotEvery,
      ...(s.topLogprobs >= 0 ? { topLogprobs: s.topLogprobs } : {}),
    };
  }

  private armIdle(): void {
    if (this.spec.idleTimeoutMs <= 0 || this.finished || this.idleTimer) return;
    this.idleTimer = setTimeout(() => {
      this.idleTimer = undefined;
      if (this.finished) return;
      this.error = new IdleTimeoutError(`the stream's consumer did not ask for the next event for ${this.spec.idleTimeoutMs} ms (idleTimeoutMs): the request was cancelled to free its sequence`);
      this.finish('abort');
    }, this.spec.idleTimeoutMs);
    this.idleTimer.unref();
  }

  private disarmIdle(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
  }

  // ---- RequestHandler (events of the engine's steps) ---------------------------------------------------

  onAdmitted(cached: number, at: number): void {
    this.tAdmit = Math.max(at, this.tSubmit); // the step that admitted it began then: its prefill counts after
    this.cachedTokens = cached;
  }

  onSnapshot(position: number, id: number, pinned: boolean): void {
    // Kept even if this request has ended: the state at that position is valid and reusable.
    if (this.spec.onSnapshot) this.spec.onSnapshot(position, id, pinned);
    else if (pinned) this.scheduler.pin(id, -1);
  }

  onToken(token: number, logprobs?: NativeTokenLogprobs): void {
    if (this.finished) return; // ended on this side while the step ran: the token is dropped
    const now = performance.now();
    if (this.draws === 0) this.tFirst = now;
    this.draws++;
    this.paused = true;
    this.spec.onTokenTime?.(this.id, now);
    if (logprobs && this.spec.topLogprobs >= 0) {
      const entry: TokenLogprob = { ...this.tokenEntry(token, logprobs.logprob), top: logprobs.top.map(([t, lp]) => this.tokenEntry(t, lp)) };
      this.logprobs.push(entry);
      this.pendingLogprobs.push(entry);
    }
    this.accept(token);
    this.notify();
  }

  onFinished(reason: NativeRequestEnd, error: NemotronError | undefined): void {
    this.nativeDone = true;
    if (this.finished) return;
    if (reason === 'error') {
      this.error = error;
      this.finish('error');
    } else this.finish(reason === 'length' ? 'length' : reason === 'cancelled' ? 'abort' : 'stop');
  }

  // ---- token handling ----------------------------------------------------------------------------------

  private tokenEntry(token: number, logprob: number): TopLogprob {
    if (!this.tokenizer) return { token, text: '', bytes: [], logprob };
    const bytes = Array.from(this.tokenizer.tokenBytes(token));
    return { token, text: Buffer.from(bytes).toString('utf8'), bytes, logprob };
  }

  /** Queues an event, with the log-probs of the tokens completed since the last one. */
  private push(ev: Exclude<StreamEvent, { type: 'done' }>): void {
    if (this.pendingLogprobs.length > 0) {
      ev.logprobs = this.pendingLogprobs;
      this.pendingLogprobs = [];
    }
    this.events.push(ev);
  }

  private accept(token: number): void {
    this.generated.push(token);
    const inReasoning = this.splitter.inReasoning;
    if (inReasoning) this.reasoningTokens++;
    const piece = this.emitToken(token);
    if (this.finished) return;
    const budget = this.spec.thinkingBudget;
    if (inReasoning && this.splitter.inReasoning && budget !== undefined && !this.forcedClose) {
      const over = this.reasoningTokens - budget;
      if (over >= 0 && (piece.includes('\n') || over >= THINKING_GRACE_TOKENS)) this.forceCloseReasoning();
    }
  }

  private forceCloseReasoning(): void {
    this.forcedClose = true;
    for (const t of this.spec.closeReasoning) {
      this.generated.push(t);
      this.emitToken(t);
      if (this.finished) return;
    }
    this.forced.push(...this.spec.closeReasoning);
  }

  /** Pushes one token's text through stop strings, the reasoning split and tool-call parsing. */
  private emitToken(token: number): string {
    const piece = this.decoder ? this.decoder.push(token) : '';
    const { emit, stopped } = this.stopper.push(piece);
    this.route(emit);
    if (stopped) this.finish('stop');
    return piece;
  }

  private route(text: string, final = false): void {
    const parts = text ? this.splitter.push(text) : [];
    if (final) parts.push(...this.splitter.flush());
    for (const part of parts) {
      if (part.type === 'reasoning') {
        this.reasoning += part.text;
        if (part.text) this.push({ type: 'reasoning', text: part.text });
      } else this.answer(part.text);
    }
    if (final && this.tools) this.answerEvents(this.tools.flush());
  }

  private answer(text: string): void {
    if (!this.tools) {
      this.text += text;
      if (text) this.push({ type: 'text', text });
      return;
    }
    this.answerEvents(this.tools.push(text));
  }

  private answerEvents(evs: ReturnType<ToolCallParser['push']>): void {
    for (const ev of evs) {
      if (ev.type === 'text') {
        this.text += ev.text;
        if (ev.text) this.push({ type: 'text', text: ev.text });
      } else if (ev.type === 'toolCall') {
        this.toolCalls.push(ev.call);
        this.push({ type: 'toolCall', call: ev.call });
      } else {
        this.toolCallErrors.push({ raw: ev.raw, error: ev.error });
        this.push({ type: 'toolCallError', error: ev.error, raw: ev.raw });
      }
    }
  }

  private finish(reason: FinishReason): void {
    if (this.finished) return;
    this.finished = true;
    this.finishReason = reason;
    this.tEnd = performance.now();
    if (this.tAdmit === 0) this.tAdmit = this.tEnd;
    // Whatever is still held back belongs to the output unless a stop string cut it.
    const tail = this.decoder ? this.decoder.flush() : '';
    const { emit, stopped } = this.stopper.push(tail);
    this.route(stopped ? emit : emit + this.stopper.flush(), true);
    this.disarmIdle();
    if (this.id >= 0 && !this.nativeDone) this.scheduler.cancel(this.id); // frees its sequence at the next step
    const result = this.result();
    this.events.push({ type: 'done', result });
    try {
      this.spec.onDone?.(result);
    } catch {
      // a follow-up's failure (e.g. preparing the next turn) never changes this request's result
    }
    this.notify();
  }

  private result(): GenerateResult {
    const prefillMs = (this.tFirst || this.tEnd) - this.tAdmit;
    const decodeMs = this.tFirst ? this.tEnd - this.tFirst : 0;
    const decoded = Math.max(this.draws - 1, 0);
    return {
      text: this.text,
      reasoning: this.reasoning,
      toolCalls: this.toolCalls,
      toolCallErrors: this.toolCallErrors,
      tokens: this.generated,
      ...(this.spec.parseJson ? this.parseAnswer() : {}),
      finishReason: this.finishReason,
      ...(this.error ? { error: this.error } : {}),
      ...(this.spec.topLogprobs >= 0 ? { logprobs: this.logprobs } : {}),
      usage: {
        promptTokens: this.spec.prompt.length,
        cachedTokens: this.cachedTokens,
        completionTokens: this.generated.length,
        reasoningTokens: this.reasoningTokens,
      },
      timings: {
        queueMs: this.tAdmit - this.tSubmit,
        timeToFirstTokenMs: this.tFirst ? this.tFirst - this.tAdmit : 0,
        prefillTokensPerSecond: this.tFirst && prefillMs > 0 ? ((this.spec.prompt.length - this.cachedTokens) * 1000) / prefillMs : 0,
        decodeTokensPerSecond: decodeMs > 0 ? (decoded * 1000) / decodeMs : 0,
        totalMs: this.tEnd - this.tSubmit,
      },
    };
  }

  private parseAnswer(): { parsed?: unknown; parseError?: string } {
    if (this.finishReason === 'length') return { parseError: 'the answer was cut at maxTokens before it was complete' };
    if (this.finishReason !== 'stop') return { parseError: `the request ended with finishReason '${this.finishReason}'` };
    try {
      return { parsed: JSON.parse(this.text) as unknown };
    } catch (err) {
      return { parseError: (err as Error).message };
    }
  }

  private notify(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }
}
