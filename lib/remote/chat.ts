/**
 * RemoteChat: a chat session whose messages live in this process and whose cache lives on the server.
 * Each turn is one stateless request with the whole conversation; the session's stable id goes with it
 * (`x-session-id` header and `user`), so a router in session mode, or connect([...])'s rendezvous hashing,
 * sends every turn to the replica that cached the previous one. If that replica goes away, the turn runs
 * on another one: the session loses that replica's cache (the turn's usage shows fewer cached tokens),
 * never its messages.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { readFile, rename, unlink, writeFile } from 'node:fs/promises';

import type { ChatOptions, TurnOptions } from '../chat/session.js';
import { TURN_OPTION_KEYS } from '../chat/session.js';
import { validateMessages, type ChatMessage } from '../chat/template.js';
import { InvalidArgumentError, SessionFileError } from '../errors.js';
import type { GenerateResult, StreamEvent } from '../generation.js';
import type { TextChat } from '../text-model.js';
import * as v from '../validate.js';
import type { RemoteGenerateOptions, RemoteTextGenerator } from './wire.js';

export interface RemoteChatOptions extends ChatOptions {
  /** The session id (header `x-session-id`, `user`, and the routing key). Default: a random UUID. */
  sessionId?: string;
}

const FILE_FORMAT = 'nemotron-node remote chat';

export class RemoteChat implements TextChat {
  /** Sent with every turn; the endpoint is chosen by it. */
  readonly sessionId: string;
  readonly options: Readonly<ChatOptions>;
  private history: ChatMessage[];
  private busy = false;

  /** @internal remote sessions come from RemoteModel.chat(), RemoteModel.loadChat() and fork() */
  constructor(
    private readonly model: RemoteTextGenerator,
    options: RemoteChatOptions = {},
    history: ChatMessage[] = [],
  ) {
    const { sessionId, ...chat } = options;
    if (sessionId !== undefined && (typeof sessionId !== 'string' || sessionId === '')) throw v.invalid('options.sessionId', 'a non-empty string', sessionId);
    if (chat.system !== undefined && typeof chat.system !== 'string') throw new InvalidArgumentError('ERR_INVALID_ARGUMENT', 'system must be a string');
    const overflow = chat.contextOverflow ?? 'error';
    if (overflow !== 'error') throw new InvalidArgumentError('ERR_INVALID_ARGUMENT', "a remote chat supports contextOverflow 'error' only: the server's context length is not known here");
    this.sessionId = sessionId ?? randomUUID();
    this.options = Object.freeze({ ...chat, contextOverflow: overflow });
    this.history = history.map((m) => ({ ...m }));
  }

  get messages(): ChatMessage[] {
    return this.all(this.history).map((m) => ({ ...m }));
  }

  /** Sends a user message and resolves with the reply. A failure of the endpoint at any point is retried on the next one. */
  async send(content: string, options: TurnOptions = {}): Promise<GenerateResult> {
    let result: GenerateResult | undefined;
    for await (const ev of this.turn(content, options, true)) if (ev.type === 'done') result = ev.result;
    return result!;
  }

  /** Streams the reply. An endpoint failing before the first event fails over; after it, the stream throws and the turn is not recorded. */
  stream(content: string, options: TurnOptions = {}): AsyncGenerator<StreamEvent, void, undefined> {
    return this.turn(content, options, false);
  }

  /**
   * An independent copy. It keeps the session id: both continue from a prefix cached on the same
   * replica, so routing them together is what keeps that cache useful.
   */
  fork(): RemoteChat {
    return new RemoteChat(this.model, { ...this.options, sessionId: this.sessionId }, this.history);
  }

  /** Writes the options and messages (JSON; the server's cache is not part of it). */
  async save(path: string): Promise<void> {
    const { contextOverflow: _c, ...options } = this.options;
    void _c;
    const body = JSON.stringify({ format: FILE_FORMAT, version: 1, sessionId: this.sessionId, options, history: this.history, savedAt: new Date().toISOString() }, null, 1);
    const tmp = `${path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
    try {
      await writeFile(tmp, body);
      await rename(tmp, path);
    } catch (err) {
      await unlink(tmp).catch(() => undefined);
      throw err;
    }
  }

  ready(): Promise<void> {
    return Promise.resolve();
  }

  dispose(): void {}

  private all(history: ChatMessage[]): ChatMessage[] {
    return this.options.system !== undefined ? [{ role: 'system', content: this.options.system }, ...history] : history;
  }

  private turn(content: string, options: TurnOptions, buffered: boolean): AsyncGenerator<StreamEvent, void, undefined> {
    if (typeof content !== 'string' || content.length === 0) throw new InvalidArgumentError('ERR_INVALID_ARGUMENT', 'a chat message must be a non-empty string');
    if (this.busy) throw new InvalidArgumentError('ERR_INVALID_ARGUMENT', 'this chat session is already generating a reply; fork() it to run turns in parallel');
    v.assertObject('options', options as unknown);
    v.assertKnownKeys('options', options, TURN_OPTION_KEYS);
    const history = [...this.history, { role: 'user' as const, content }];
    const request = {
      ...options,
      messages: this.all(history),
      ...(this.options.tools ? { tools: this.options.tools } : {}),
      ...(this.options.reasoning !== undefined ? { reasoning: this.options.reasoning } : {}),
      sessionId: this.sessionId,
    };
    return this.run(request, history, buffered);
  }

  private async *run(request: RemoteGenerateOptions, history: ChatMessage[], buffered: boolean): AsyncGenerator<StreamEvent, void, undefined> {
    // Taken when the turn starts running (as the local session does): a stream never iterated holds nothing.
    if (this.busy) throw new InvalidArgumentError('ERR_INVALID_ARGUMENT', 'this chat session is already generating a reply; fork() it to run turns in parallel');
    this.busy = true;
    try {
      const events = buffered ? this.buffered(request) : this.model.stream(request);
      for await (const ev of events) {
        if (ev.type === 'done') {
          const r = ev.result;
          if (r.finishReason === 'stop' || r.finishReason === 'length') {
            this.history = [...history, { role: 'assistant', content: r.text, ...(r.reasoning ? { reasoning: r.reasoning } : {}), ...(r.toolCalls.length ? { toolCalls: r.toolCalls } : {}) }];
          }
          yield { type: 'done', result: { ...r, usage: { ...r.usage, droppedMessages: 0 } } };
        } else yield ev;
      }
    } finally {
      this.busy = false;
    }
  }

  private async *buffered(request: RemoteGenerateOptions): AsyncGenerator<StreamEvent, void, undefined> {
    const r = await this.model.generate(request);
    yield { type: 'done', result: r };
  }
}

/** Reads a file written by RemoteChat.save(). */
export async function readRemoteChatFile(file: string): Promise<{ sessionId: string; options: ChatOptions; history: ChatMessage[] }> {
  let data: unknown;
  try {
    data = JSON.parse(await readFile(file, 'utf8'));
  } catch (err) {
    throw new SessionFileError(`remote chat file ${file}: ${(err as Error).message}`, { cause: err });
  }
  const d = data as { format?: unknown; sessionId?: unknown; options?: unknown; history?: unknown };
  if (typeof d !== 'object' || d === null || d.format !== FILE_FORMAT || typeof d.sessionId !== 'string' || typeof d.options !== 'object' || d.options === null || !Array.isArray(d.history)) {
    throw new SessionFileError(`remote chat file ${file}: not a file written by a remote chat's save()`);
  }
  let history: ChatMessage[];
  try {
    history = d.history.length ? validateMessages(d.history) : [];
  } catch (err) {
    throw new SessionFileError(`remote chat file ${file}: its messages are invalid: ${(err as Error).message}`, { cause: err });
  }
  return { sessionId: d.sessionId, options: d.options as ChatOptions, history };
}
