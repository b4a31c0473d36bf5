/**
 * Chat sessions on disk (the file format is chat/session-file.ts): save writes the session's options,
 * history and the engine state at its anchor (a snapshot image, csrc/cache); restore checks all of it
 * before any state is imported, then imports the image into the prefix cache, pinned for the session.
 */
import type { NativeEngine } from '../addon-types.js';
import type { SnapshotRef } from '../cache/snapshot-ref.js';
import { ChatSession, type ChatHost, type ChatOptions } from '../chat/session.js';
import { checkSessionTokens, readSessionFile, writeSessionFile } from '../chat/session-file.js';
import { validateMessages, type ChatMessage } from '../chat/template.js';
import { SessionFileError } from '../errors.js';
import type { Scheduler } from '../scheduler.js';

/** Writes `session` to `file`: its anchor's engine state, options and history, under the model's fingerprint. */
export async function saveChatSession(file: string, session: ChatSession, engine: NativeEngine, fingerprint: string): Promise<void> {
  const anchor = session.anchorEntry;
  const state = anchor ? await engine.exportSnapshot(anchor.id) : new Uint8Array(0);
  const history = session.messages.filter((m, i) => !(i === 0 && m.role === 'system' && session.options.system !== undefined));
  await writeSessionFile(file, {
    modelFingerprint: fingerprint,
    tokens: anchor ? anchor.tokens : new Int32Array(0),
    state,
    meta: { format: 'nemotron-node chat', options: session.options, history, savedAt: new Date().toISOString() },
  });
}

/** What restoring needs of the model. */
export interface SessionRestoreTarget {
  engine: NativeEngine;
  scheduler: Scheduler;
  host: ChatHost;
  vocabSize: number;
  /** The model's checkpoint fingerprint: a file saved on another checkpoint is refused. */
  fingerprint: string;
}

/** Restores a session written by saveChatSession(); it continues exactly where the saved one was. */
export async function restoreChatSession(file: string, m: SessionRestoreTarget): Promise<ChatSession> {
  const content = await readSessionFile(file, m.fingerprint);
  checkSessionTokens(content.tokens, m.vocabSize, `session file ${file}`);
  const meta = content.meta as { options?: ChatOptions; history?: ChatMessage[] };
  if (typeof meta.options !== 'object' || meta.options === null || Array.isArray(meta.options) || !Array.isArray(meta.history)) {
    throw new SessionFileError(`session file ${file}: its metadata has no chat options and history`);
  }
  // Check the messages and options before any state is imported (found by scripts/fuzz-session.ts).
  let history: ChatMessage[];
  try {
    history = meta.history.length ? validateMessages(meta.history) : [];
    new ChatSession(m.host, meta.options, history, null);
  } catch (err) {
    throw new SessionFileError(`session file ${file}: its chat metadata is invalid: ${(err as Error).message}`, { cause: err });
  }
  let anchor: SnapshotRef | null = null;
  if (content.state.byteLength > 0) {
    let id: number;
    try {
      // Into the engine's prefix cache with one pin, which the session owns.
      id = await m.engine.importSnapshot(content.state, content.tokens);
    } catch (err) {
      const e = err as { message?: string };
      throw new SessionFileError(`session file ${file}: its engine state cannot be used: ${e.message ?? String(err)}`, { cause: err });
    }
    anchor = { id, tokens: content.tokens };
  }
  const session = new ChatSession(m.host, meta.options, history, anchor);
  if (anchor) m.scheduler.pin(anchor.id, -1); // the session took a pin of its own; drop the import's
  return session;
}
