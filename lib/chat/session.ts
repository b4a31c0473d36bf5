/**
 * ChatSession: a conversation that keeps its place. Each turn renders the whole conversation with the
 * checkpoint's template, but the engine restores the longest cached prefix and computes only what is
 * new. Nemotron Nano 2's template re-renders earlier answers without their reasoning, so the state
 * after a generated turn is never a prefix of the next prompt; the session therefore snapshots each
 * turn at the start of the assistant message (right after `<SPECIAL_11>Assistant\n`), which the next
 * prompt shares. After each turn the session also has the engine compute the reply as the next turn
 * will render it (prepareTurn), off the caller's path, so turn k+1 computes only its new message.
 */
import type { SnapshotRef } from '../cache/snapshot-ref.js';
import { ContextOverflowError, InvalidArgumentError } from '../errors.js';
import type { GenerateOptions, GenerateResult, StreamEvent } from '../generation.js';
import type { Message } from './openai.js';
import { validateMessages, type ChatMessage, type ToolDefinition } from './template.js';

export type ContextOverflowPolicy = 'error' | 'truncate-oldest';

export interface ChatOptions {
  system?: string;
  /** Reasoning on (`/think`, default) or off (`/no_think`) for every turn. */
  reasoning?: boolean;
  tools?: ToolDefinition[];
  /** 'error' (default): a turn that does not fit fails before any work. 'truncate-oldest': the oldest
   * non-system turns are dropped until it fits (the cost shows in usage: fewer cached tokens). */
  contextOverflow?: ContextOverflowPolicy;
}

/** model.chat()'s options: the session's options, and optionally a conversation to continue. */
export interface NewChatOptions extends ChatOptions {
  /** The conversation so far (library or OpenAI shape); a leading system message becomes `system`. */
  messages?: readonly Message[];
}

/** Per-turn options: the generation options that do not describe the conversation itself (the session holds those). */
export type TurnOptions = Omit<GenerateOptions, 'prompt' | 'messages' | 'tools' | 'reasoning'>;
export const TURN_OPTION_KEYS = [
  'maxTokens', 'thinkingBudget', 'temperature', 'topK', 'topP', 'minP', 'repetitionPenalty',
  'presencePenalty', 'frequencyPenalty', 'logitBias', 'seed', 'stop', 'signal', 'abortBehavior', 'topLogprobs', 'responseFormat', 'toolChoice',
] as const;

/** A tool's result for ChatSession.toolResults(): its text (JSON, typically), or with the call's id (not used by Nemotron's template). */
export type ToolResult = string | { content: string; toolCallId?: string };

/** What a turn sends: a user message's text, or messages (user or tool, library or OpenAI shape). */
export type TurnInput = string | Message | readonly Message[];

/** What a session needs from the model (implemented by NemotronModel). */
export interface ChatHost {
  renderChat(messages: ChatMessage[], options: { tools?: ToolDefinition[]; reasoning?: boolean; addGenerationPrompt?: boolean }): string;
  tokenizeChat(text: string): Int32Array;
  contextLength(): number;
  /** Streams one turn; `onAnchor` receives the pinned snapshot at `anchorAt` (the session owns its pin). */
  streamTurn(prompt: Int32Array, chat: { tools: boolean; toolDefs?: ToolDefinition[]; reasoning: boolean | undefined; anchorAt: number; onAnchor: (ref: SnapshotRef) => void }, options: TurnOptions): AsyncGenerator<StreamEvent, void, undefined>;
  /** Computes `tokens` (restoring what is cached) and resolves to the pinned state at their end, or null. */
  prepareTurn(tokens: Int32Array): Promise<SnapshotRef | null>;
  pin(entry: SnapshotRef): void;
  unpin(entry: SnapshotRef): void;
  exportTurnState(session: ChatSession, path: string): Promise<void>;
}

/** Marker text for locating where an assistant message's content starts in the rendered prompt. */
const CONTENT_MARK = '\u0000ASSISTANT_CONTENT\u0000';

export class ChatSession {
  private history: ChatMessage[] = [];
  /** The snapshot at the start of the last assistant message, pinned while the session holds it. */
  private anchor: SnapshotRef | null = null;
  private busy = false;
  private preparing: Promise<void> = Promise.resolve();
  readonly options: Readonly<ChatOptions>;

  /** @internal sessions come from model.chat(), model.loadChat() and fork() */
  constructor(
    private readonly host: ChatHost,
    options: ChatOptions = {},
    history: ChatMessage[] = [],
    anchor: SnapshotRef | null = null,
  ) {
    const overflow = options.contextOverflow ?? 'error';
    if (overflow !== 'error' && overflow !== 'truncate-oldest') {
      throw new InvalidArgumentError('ERR_INVALID_ARGUMENT', `contextOverflow must be 'error' or 'truncate-oldest', got ${JSON.stringify(overflow)}`);
    }
    if (options.system !== undefined && typeof options.system !== 'string') {
      throw new InvalidArgumentError('ERR_INVALID_ARGUMENT', 'system must be a string');
    }
    this.options = Object.freeze({ ...options, contextOverflow: overflow });
    this.history = history.map((m) => ({ ...m }));
    if (anchor) this.setAnchor(anchor);
  }

  /** The conversation so far (system message first, when there is one). */
  get messages(): ChatMessage[] {
    return this.allMessages(this.history).map((m) => ({ ...m }));
  }

  /** The pinned snapshot the next turn starts from (for save). */
  /** @internal */
  get anchorEntry(): SnapshotRef | null {
    return this.anchor;
  }

  /** Resolves once the state for the next turn is cached (after a turn, the reply is prepared in the background). */
  ready(): Promise<void> {
    return this.preparing;
  }

  /**
   * Sends a turn and resolves with the assistant's reply: a user message's text, or messages — user
   * messages and tool results (`{ role: 'tool', content, tool_call_id }`), in the library's shape or
   * OpenAI's. Tool results continue the conversation from the cached state of the reply that called the
   * tools: only the results are computed.
   */
  async send(input: TurnInput, options: TurnOptions = {}): Promise<GenerateResult> {
    let result: GenerateResult | undefined;
    for await (const ev of this.stream(input, options)) if (ev.type === 'done') result = ev.result;
    return result!;
  }

  /** Sends a turn (as send()) and streams the reply (events as in model.stream()). */
  stream(input: TurnInput, options: TurnOptions = {}): AsyncGenerator<StreamEvent, void, undefined> {
    const messages = this.turnMessages(input);
    if (this.busy) throw new InvalidArgumentError('ERR_INVALID_ARGUMENT', 'this chat session is already generating a reply; fork() it to run turns in parallel');
    const turn = this.prepare(messages, options);
    return this.run(turn, options);
  }

  /**
   * Answers the tool calls of the last reply, in their order, and resolves with the next reply:
   * `session.toolResults([JSON.stringify(weather)])`. The same as send() with `role: 'tool'` messages.
   */
  async toolResults(results: readonly ToolResult[], options: TurnOptions = {}): Promise<GenerateResult> {
    if (!Array.isArray(results) || results.length === 0) throw new InvalidArgumentError('ERR_INVALID_ARGUMENT', 'toolResults takes a non-empty array of results');
    return this.send(
      results.map((r, i): ChatMessage => {
        const content = typeof r === 'string' ? r : r?.content;
        if (typeof content !== 'string') throw new InvalidArgumentError('ERR_INVALID_ARGUMENT', `results[${i}] must be a string or { content: string }`);
        return { role: 'tool', content };
      }),
      options,
    );
  }

  /** `await using session = model.chat()`: disposes the session when the scope ends. */
  async [Symbol.asyncDispose](): Promise<void> {
    this.dispose();
  }

  /** An independent copy: both sessions continue from here without affecting each other. */
  fork(): ChatSession {
    return new ChatSession(this.host, this.options, this.history, this.anchor);
  }

  /** Writes the session (messages and the engine state of its last turn) to a file, atomically. */
  async save(path: string): Promise<void> {
    await this.preparing; // save the state the next turn would start from
    await this.host.exportTurnState(this, path);
  }

  /** Releases the session's pinned snapshot (it stays in the cache until evicted). */
  dispose(): void {
    this.disposed = true;
    this.setAnchor(null);
  }

  private disposed = false;

  // ---- internals -----------------------------------------------------------------------------------

  private allMessages(history: ChatMessage[]): ChatMessage[] {
    return this.options.system !== undefined ? [{ role: 'system', content: this.options.system }, ...history] : history;
  }

  private render(history: ChatMessage[]): { prompt: Int32Array; anchorAt: number } {
    const renderOpts = { ...(this.options.tools ? { tools: this.options.tools } : {}), ...(this.options.reasoning === undefined ? {} : { reasoning: this.options.reasoning }) };
    const messages = this.allMessages(history);
    const prompt = this.host.tokenizeChat(this.host.renderChat(messages, renderOpts));
    // Where this turn's assistant content will start in the NEXT prompt: render the conversation with
    // a placeholder assistant message as history (a user message after it, since templates treat a
    // trailing assistant message as a prefill) and cut at the placeholder.
    let anchorAt = -1;
    const withMark = this.host.renderChat([...messages, { role: 'assistant', content: CONTENT_MARK }, { role: 'user', content: 'next' }], renderOpts);
    const cut = withMark.indexOf(CONTENT_MARK);
    if (cut > 0) {
      const head = this.host.tokenizeChat(withMark.slice(0, cut));
      if (head.length <= prompt.length && head.every((t, i) => t === prompt[i])) anchorAt = head.length;
    }
    return { prompt, anchorAt };
  }

  /** A turn's messages, checked: user messages and tool results only (the session renders the rest). */
  private turnMessages(input: TurnInput): ChatMessage[] {
    if (typeof input === 'string') {
      if (input.length === 0) throw new InvalidArgumentError('ERR_INVALID_ARGUMENT', 'a chat message must be a non-empty string');
      return [{ role: 'user', content: input }];
    }
    const list = Array.isArray(input) ? (input as readonly Message[]) : [input as Message];
    const messages = validateMessages(list);
    messages.forEach((m, i) => {
      if (m.role !== 'user' && m.role !== 'tool') {
        throw new InvalidArgumentError('ERR_INVALID_ARGUMENT', `messages[${i}].role is "${m.role}": a turn sends user messages and tool results (the system message is a session option, replies are generated)`);
      }
    });
    return messages;
  }

  private prepare(turnMessages: ChatMessage[], options: TurnOptions): { history: ChatMessage[]; prompt: Int32Array; anchorAt: number; dropped: number } {
    let history = [...this.history, ...turnMessages];
    let { prompt, anchorAt } = this.render(history);
    const limit = this.host.contextLength() - 1; // room for at least one generated token
    let dropped = 0;
    while (prompt.length > limit) {
      if (this.options.contextOverflow !== 'truncate-oldest') {
        throw new ContextOverflowError(`this turn's prompt has ${prompt.length} tokens but the context length is ${this.host.contextLength()}; start a new session or use contextOverflow: 'truncate-oldest'`);
      }
      // Drop the oldest turn: a user message and everything up to the next user message.
      const next = history.findIndex((m, i) => i > 0 && m.role === 'user');
      if (next <= 0) {
        throw new ContextOverflowError(`the newest message alone has ${prompt.length} tokens, more than the context length ${this.host.contextLength()}`);
      }
      history = history.slice(next);
      dropped += next;
      ({ prompt, anchorAt } = this.render(history));
    }
    void options;
    return { history, prompt, anchorAt, dropped };
  }

  private async *run(turn: { history: ChatMessage[]; prompt: Int32Array; anchorAt: number; dropped: number }, options: TurnOptions): AsyncGenerator<StreamEvent, void, undefined> {
    this.busy = true;
    let anchor: SnapshotRef | null = null;
    try {
      // The previous reply's re-rendered state, when it is still being computed: this turn needs it.
      await this.preparing;
      const events = this.host.streamTurn(
        turn.prompt,
        {
          tools: !!this.options.tools,
          ...(this.options.tools ? { toolDefs: this.options.tools } : {}),
          reasoning: this.options.reasoning,
          anchorAt: turn.anchorAt,
          onAnchor: (ref) => {
            if (anchor) this.host.unpin(anchor);
            anchor = ref;
          },
        },
        options,
      );
      for await (const ev of events) {
        if (ev.type === 'done') {
          const r = ev.result;
          // The turn counts only when it produced an answer; an aborted or failed turn leaves the session as it was.
          if (r.finishReason === 'stop' || r.finishReason === 'length') {
            this.history = [...turn.history, { role: 'assistant', content: r.text, ...(r.reasoning ? { reasoning: r.reasoning } : {}), ...(r.toolCalls.length ? { toolCalls: r.toolCalls } : {}) }];
            if (anchor) this.adoptAnchor(anchor);
            anchor = null;
            this.prepareNext();
          }
          yield { type: 'done', result: { ...r, usage: { ...r.usage, droppedMessages: turn.dropped } } };
        } else yield ev;
      }
    } finally {
      if (anchor) this.host.unpin(anchor); // a failed or aborted turn keeps the session's old anchor
      this.busy = false;
    }
  }

  /**
   * The next turn's prompt starts with the conversation so far, the last reply rendered as history (its
   * reasoning dropped). Compute that now and anchor the session there: the next turn then computes only
   * its new message. The start of the next user message's header is the cut (special tokens split).
   */
  private prepareNext(): void {
    const mark = '\u0000NEXT_USER\u0000';
    const renderOpts = { ...(this.options.tools ? { tools: this.options.tools } : {}), ...(this.options.reasoning === undefined ? {} : { reasoning: this.options.reasoning }) };
    let head: Int32Array;
    try {
      const text = this.host.renderChat([...this.allMessages(this.history), { role: 'user', content: mark }], { ...renderOpts, addGenerationPrompt: false });
      const at = text.indexOf(mark);
      const cut = Math.max(text.lastIndexOf('<SPECIAL_11>', at), text.lastIndexOf('<SPECIAL_10>', at));
      if (at < 0 || cut <= 0) return;
      head = this.host.tokenizeChat(text.slice(0, cut));
    } catch {
      return; // only speed is lost
    }
    if (this.anchor && head.length <= this.anchor.tokens.length) return;
    const historyNow = this.history;
    this.preparing = this.host.prepareTurn(head).then((ref) => {
      if (!ref) return;
      // Still the same conversation (no turn ran meanwhile, not disposed): move the anchor forward.
      if (this.history === historyNow && !this.disposed && !this.busy) this.adoptAnchor(ref);
      else this.host.unpin(ref);
    });
  }

  /** Takes `entry` as the anchor, with a pin of its own. */
  private setAnchor(entry: SnapshotRef | null): void {
    if (entry) this.host.pin(entry);
    if (this.anchor) this.host.unpin(this.anchor);
    this.anchor = entry;
  }

  /** Takes `entry` as the anchor, keeping the pin the engine already gave it. */
  private adoptAnchor(entry: SnapshotRef): void {
    if (this.anchor) this.host.unpin(this.anchor);
    this.anchor = entry;
  }
}
