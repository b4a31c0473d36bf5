/**
 * The model as a chat session sees it (ChatHost, chat/session.ts): rendering, tokenizing, and each turn
 * as a request that pins the snapshot at the start of the assistant message (the session's anchor) and
 * drops any other pin. NemotronModel makes one and hands it to its sessions.
 */
import type { SnapshotRef } from '../cache/snapshot-ref.js';
import { TURN_OPTION_KEYS, type ChatHost, type ChatSession, type TurnOptions } from '../chat/session.js';
import type { ChatTemplate, ToolDefinition } from '../chat/template.js';
import { InvalidArgumentError } from '../errors.js';
import type { GenerateOptions, RequestSpec, StreamEvent } from '../generation.js';
import type { Scheduler } from '../scheduler.js';
import * as v from '../validate.js';
import { buildRequestSpec, type RequestContext } from './request-spec.js';

/** What the host needs of the model (read when used: the model's parts exist only after its constructor). */
export interface ChatHostParts {
  template(): ChatTemplate | null;
  tokenize(text: string): number[];
  detokenize(ids: readonly number[]): string;
  contextLength(): number;
  requestContext(): RequestContext;
  scheduler(): Scheduler;
  stream(spec: RequestSpec): AsyncGenerator<StreamEvent, void, undefined>;
  /** Computes `tokens` and resolves to the pinned state at their end, or null (LoadOptions.prepareNextTurn). */
  prepareTurn(tokens: Int32Array): Promise<SnapshotRef | null>;
  saveTurnState(session: ChatSession, file: string): Promise<void>;
}

/** The turn as ChatHost.streamTurn describes it. */
type TurnChat = Parameters<ChatHost['streamTurn']>[1];

export function createChatHost(p: ChatHostParts): ChatHost {
  return {
    renderChat: (messages, options) => {
      const template = p.template();
      if (!template) throw new InvalidArgumentError('ERR_INVALID_ARGUMENT', 'no chat template');
      return template.render(messages, options);
    },
    tokenizeChat: (text) => Int32Array.from(p.tokenize(text)),
    contextLength: () => p.contextLength(),
    streamTurn: (prompt, chat, options) => p.stream(turnSpec(p, prompt, chat, options)),
    prepareTurn: (tokens) => p.prepareTurn(tokens),
    pin: (entry) => p.scheduler().pin(entry.id, 1),
    unpin: (entry) => p.scheduler().pin(entry.id, -1),
    exportTurnState: (session, file) => p.saveTurnState(session, file),
  };
}

/** One turn's request: the turn options checked, the session's tools for toolChoice, the anchor pinned. */
function turnSpec(p: ChatHostParts, prompt: Int32Array, chat: TurnChat, options: TurnOptions): RequestSpec {
  v.assertObject('options', options);
  v.assertKnownKeys('options', options, TURN_OPTION_KEYS);
  // The session's tools reach the request for toolChoice (they are rendered by the session already).
  const tools: { tools?: ToolDefinition[] } = chat.toolDefs ? { tools: chat.toolDefs } : {};
  const startsInReasoning = chat.reasoning !== false && /<think>\s*$/.test(p.detokenize(Array.from(prompt.subarray(-4))));
  const spec = buildRequestSpec(p.requestContext(), { ...(options as GenerateOptions), ...tools }, prompt, startsInReasoning, chat.tools);
  const pinAt = chat.anchorAt > 0 ? [chat.anchorAt] : [];
  return {
    ...spec,
    snapshotAt: [...spec.snapshotAt, ...pinAt],
    pinAt,
    onSnapshot: (position, id, pinned) => {
      if (pinned && position === chat.anchorAt) chat.onAnchor({ id, tokens: prompt.slice(0, position) });
      else if (pinned) p.scheduler().pin(id, -1);
    },
  };
}
