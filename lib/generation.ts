/**
 * One generation request from admission to its last event: feeds its prompt and sampled tokens through
 * the scheduler, turns tokens into text (whole UTF-8 only), splits reasoning from the answer, enforces
 * the thinking budget by forcing `</think>` through the model, applies stop strings and end tokens,
 * extracts tool calls, and hands events to the consumer one at a time (backpressure: no step runs for
 * this request while its consumer is not asking for more).
 */
import type { NativeSampling } from './addon-types.js';
import type { CacheEntry, PrefixCache } from './cache/prefix-cache.js';
import type { ToolCall } from './chat/template.js';
import { ReasoningSplitter } from './chat/reasoning.js';
import { StopMatcher } from './chat/stop.js';
import { ToolCallParser } from './chat/tool-calls.js';
import type { NemotronError } from './errors.js';
import type { Scheduler, StepClient, StepInput } from './scheduler.js';
import { IncrementalDecoder, type TextTokenizer } from './tokenizer.js';

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

export interface GenerateResult {
  text: string;
  reasoning: string;
  toolCalls: ToolCall[];
  /** Tool calls the model wrote but that could not be parsed: reported, never dropped. */
  toolCallErrors: Array<{ raw: string; error: string }>;
  tokens: number[];
  finishReason: FinishReason;
  error?: NemotronError;
  usage: Usage;
  timings: Timings;
}

export type StreamEvent =
  | { type: 'reasoning'; text: string }
  | { type: 'text'; text: string }
  | { type: 'toolCall'; call: ToolCall }
  | { type: 'toolCall'; error: string; raw: string }
  | { type: 'done'; result: GenerateResult };

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
  contextLength: number;
  /** The engine's prefill chunk (maxBatchTokens): the most input one step can take from a sequence. */
  chunkTokens: number;
  /** Where to restore prefixes from and store snapshots into (null: no reuse). */
  cache: PrefixCache | null;
  /** Prompt positions to snapshot at (e.g. chat message boundaries), plus every `snapshotEvery` tokens. */
  snapshotAt: number[];
  snapshotEvery: number;
  /** Called with each snapshot this request stored. */
  onSnapshot?: (position: number, entry: CacheEntry) => void;
}

/** NVIDIA's rule: after the budget, end reasoning at the next newline, or at budget + 500 at the latest. */
export const THINKING_GRACE_TOKENS = 500;

export class GenerationRequest implements StepClient {
  seq = -1;
  private readonly events: StreamEvent[] = [];
  private wake: (() => void) | null = null;
  private demand = false;
  private finished = false;
  private input: number[];
  private draw = 0;
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
  private snapshotAt: number[] = [];
  private forcedClose = false;
  private finishReason: FinishReason = 'length';
  private error: NemotronError | undefined;
  private readonly tSubmit = performance.now();
  private tAdmit = 0;
  private tFirst = 0;
  private tEnd = 0;
  private readonly onAbort = () => this.finish('abort');

  constructor(
    private readonly spec: RequestSpec,
    private readonly scheduler: Scheduler,
    tokenizer: TextTokenizer | null,
  ) {
    this.input = Array.from(spec.prompt);
    this.decoder = tokenizer ? new IncrementalDecoder(tokenizer) : null;
    this.stopper = new StopMatcher(spec.stop);
    this.splitter = new ReasoningSplitter({ startsInReasoning: spec.startsInReasoning });
    this.tools = spec.parseToolCalls ? new ToolCallParser() : null;
  }

  /** Waits for a sequence slot, then streams events until done. */
  async *run(): AsyncGenerator<StreamEvent, void, undefined> {
    const { signal } = this.spec;
    try {
      try {
        this.seq = await this.scheduler.acquire(signal);
      } catch {
        this.finish('abort'); // aborted while queued
      }
      this.tAdmit = performance.now();
      if (!this.finished) this.restorePrefix();
      if (!this.finished) {
        signal?.addEventListener('abort', this.onAbort, { once: true });
        if (signal?.aborted) this.finish('abort');
        else this.scheduler.attach(this);
      }
      for (;;) {
        const ev = this.events.shift();
        if (ev) {
          yield ev;
          if (ev.type === 'done') return;
          continue;
        }
        this.demand = true;
        this.scheduler.kick();
        await new Promise<void>((resolve) => (this.wake = resolve));
      }
    } finally {
      // The consumer stopped early (break, return, throw): end now, free the slot.
      if (!this.finished) this.finish('abort');
      signal?.removeEventListener('abort', this.onAbort);
    }
  }

  /** Restores the longest cached prefix of the prompt (leaving at least one token to compute logits). */
  private restorePrefix(): void {
    const { prompt, cache } = this.spec;
    if (!cache) return;
    const hit = cache.lookup(prompt, prompt.length - 1);
    if (hit) {
      try {
        this.scheduler.restore(this.seq, hit.id);
        this.cachedTokens = hit.tokens.length;
        this.input = Array.from(prompt.subarray(this.cachedTokens));
      } catch {
        // An unusable snapshot costs only speed: compute the whole prompt on a fresh sequence.
        this.cachedTokens = 0;
        this.input = Array.from(prompt);
      }
    }
    const at = new Set(this.spec.snapshotAt.filter((p) => p > this.cachedTokens && p <= prompt.length));
    const every = this.spec.snapshotEvery;
    if (every > 0) for (let p = every; p <= prompt.length; p += every) if (p > this.cachedTokens) at.add(p);
    this.snapshotAt = [...at].sort((a, b) => a - b);
  }

  // ---- StepClient ------------------------------------------------------------------------------------

  pendingInput(): StepInput | null {
    if (this.finished || !this.demand || this.input.length === 0) return null;
    // A step runs at most one prefill chunk of a sequence, so only that much input crosses to native
    // code; the sample comes once the window holds the end of the input.
    const window = this.input.length > this.spec.chunkTokens ? this.input.slice(0, this.spec.chunkTokens) : this.input;
    return {
      tokens: Int32Array.from(window),
      sample: window.length === this.input.length,
      sampling: this.spec.sampling,
      nPrompt: this.spec.prompt.length,
      draw: this.draw,
      ...(this.snapshotAt.length > 0 ? { snapshotAt: this.snapshotAt } : {}),
    };
  }

  onStep(consumed: number, token: number, snapshot: { position: number; id: number } | null): void {
    if (snapshot) {
      // Keep it even if this request has ended: the state at that position is valid and reusable.
      const entry = this.spec.cache!.insert(snapshot.id, this.spec.prompt.slice(0, snapshot.position));
      this.snapshotAt = this.snapshotAt.filter((p) => p > snapshot.position);
      this.spec.onSnapshot?.(snapshot.position, entry);
    }
    if (this.finished) return; // aborted while the step ran: its result is dropped
    this.input.splice(0, consumed);
    if (token >= 0) {
      if (this.draw === 0) this.tFirst = performance.now();
      this.draw++;
      this.accept(token);
    }
    if (this.events.length > 0 || this.finished) this.notify();
  }

  onError(err: NemotronError): void {
    if (this.finished) return;
    this.error = err;
    this.finish('error');
  }

  // ---- token handling ----------------------------------------------------------------------------------

  private accept(token: number): void {
    if (this.spec.eos.has(token)) return this.finish('stop');
    this.generated.push(token);
    const inReasoning = this.splitter.inReasoning;
    if (inReasoning) this.reasoningTokens++;
    const piece = this.emitToken(token);
    if (this.finished) return;
    if (this.generated.length >= this.spec.maxTokens) return this.finish('length');
    // The sampled token is fed next (plus `</think>` when the thinking budget runs out).
    this.input = [token];
    const budget = this.spec.thinkingBudget;
    if (inReasoning && this.splitter.inReasoning && budget !== undefined && !this.forcedClose) {
      const over = this.reasoningTokens - budget;
      if (over >= 0 && (piece.includes('\n') || over >= THINKING_GRACE_TOKENS)) this.forceCloseReasoning();
    }
    // Never feed past the context: the next step needs room for every pending token.
    const held = this.spec.prompt.length + this.generated.length - 1;
    if (held + this.input.length > this.spec.contextLength) this.finish('length');
  }

  private forceCloseReasoning(): void {
    this.forcedClose = true;
    for (const t of this.spec.closeReasoning) {
      this.generated.push(t);
      this.emitToken(t);
      if (this.finished) return;
    }
    this.input.push(...this.spec.closeReasoning);
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
        if (part.text) this.events.push({ type: 'reasoning', text: part.text });
      } else this.answer(part.text);
    }
    if (final && this.tools) this.answerEvents(this.tools.flush());
  }

  private answer(text: string): void {
    if (!this.tools) {
      this.text += text;
      if (text) this.events.push({ type: 'text', text });
      return;
    }
    this.answerEvents(this.tools.push(text));
  }

  private answerEvents(evs: ReturnType<ToolCallParser['push']>): void {
    for (const ev of evs) {
      if (ev.type === 'text') {
        this.text += ev.text;
        if (ev.text) this.events.push({ type: 'text', text: ev.text });
      } else if (ev.type === 'toolCall') {
        this.toolCalls.push(ev.call);
        this.events.push({ type: 'toolCall', call: ev.call });
      } else {
        this.toolCallErrors.push({ raw: ev.raw, error: ev.error });
        this.events.push({ type: 'toolCall', error: ev.error, raw: ev.raw });
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
    this.scheduler.detach(this);
    if (this.seq >= 0) this.scheduler.release(this.seq);
    this.events.push({ type: 'done', result: this.result() });
    this.notify();
  }

  private result(): GenerateResult {
    const prefillMs = (this.tFirst || this.tEnd) - this.tAdmit;
    const decodeMs = this.tFirst ? this.tEnd - this.tFirst : 0;
    const decoded = Math.max(this.draw - 1, 0);
    return {
      text: this.text,
      reasoning: this.reasoning,
      toolCalls: this.toolCalls,
      toolCallErrors: this.toolCallErrors,
      tokens: this.generated,
      finishReason: this.finishReason,
      ...(this.error ? { error: this.error } : {}),
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

  private notify(): void {
    this.demand = false;
    const w = this.wake;
    this.wake = null;
    w?.();
  }
}
