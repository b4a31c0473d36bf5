/** A conversation in the library's shape: the message and tool types every chat file shares. */

export type Role = 'system' | 'user' | 'assistant' | 'tool';

export interface ToolCall {
  name: string;
  arguments: Record<string, unknown>;
}

export interface ChatMessage {
  role: Role;
  content: string;
  /** Assistant messages only: the tool calls the assistant made in this turn. */
  toolCalls?: ToolCall[];
  /** Assistant messages only: the reasoning trace (text between `<think>` and `</think>`, tags excluded). */
  reasoning?: string;
}

export interface ToolDefinition {
  type: 'function';
  function: { name: string; description?: string; parameters?: Record<string, unknown> };
}
