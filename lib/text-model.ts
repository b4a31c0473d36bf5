/**
 * TextModel: what a caller does with a model, whether it runs in this process (loadModel) or behind an
 * OpenAI-compatible server (connect). Code and tests written against it run on either.
 */
import type { ChatOptions, TurnOptions } from './chat/session.js';
import type { ChatMessage } from './chat/template.js';
import type { GenerateOptions, GenerateResult, StreamEvent } from './generation.js';

/** A conversation that keeps its place: one turn at a time, forkable, savable. */
export interface TextChat {
  /** The conversation so far (system message first, when there is one). */
  readonly messages: ChatMessage[];
  /** Sends a user message and resolves with the assistant's reply. */
  send(content: string, options?: TurnOptions): Promise<GenerateResult>;
  /** Sends a user message and streams the reply. */
  stream(content: string, options?: TurnOptions): AsyncGenerator<StreamEvent, void, undefined>;
  /** An independent copy: both continue from here without affecting each other. */
  fork(): TextChat;
  /** Writes the session to a file (a local model writes its engine state too; a remote one, the messages). */
  save(path: string): Promise<void>;
  /** Resolves once the session is ready for its next turn. */
  ready(): Promise<void>;
  /** Releases what the session holds. */
  dispose(): void;
}

export interface TextModel {
  /** Generates a completion and resolves with all of it. */
  generate(options: GenerateOptions): Promise<GenerateResult>;
  /** Generates a completion as a stream of `reasoning` / `text` / `toolCall` events, then `done`. */
  stream(options: GenerateOptions): AsyncGenerator<StreamEvent, void, undefined>;
  /** A chat session. */
  chat(options?: ChatOptions): TextChat;
  /** Restores a session written by TextChat.save() on a model of the same kind. */
  loadChat(file: string): Promise<TextChat>;
  /** Frees what the model holds; a remote model stops its health checks. */
  close(): Promise<void>;
}
