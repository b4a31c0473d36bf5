/**
 * OpenAI's chat message shape, accepted wherever the library takes messages (generate, stream,
 * applyChatTemplate, ChatSession.send) and by the server: `developer` is `system`; content may be an
 * array of text parts (joined; other part types are refused); an assistant's `tool_calls` (JSON-string
 * arguments) become `toolCalls` (arguments parsed, they must be a JSON object); `reasoning_content` (vLLM's
 * field) becomes `reasoning`. `tool_call_id` and `name` are accepted and not used: Nemotron's template
 * matches tool results to calls by their order. The types accept the `openai` package's
 * `ChatCompletionMessageParam[]` as they are.
 */
import { InvalidArgumentError } from '../errors.js';
import type { ChatMessage, ToolCall } from './messages.js';

/** A content part: `{ type: 'text', text }` is used; any other type is refused at run time. */
export interface OpenAIContentPart {
  type: string;
  text?: string;
}

/** An assistant's tool call as OpenAI sends it: `arguments` is a JSON string. */
export interface OpenAIToolCall {
  id?: string;
  type?: string;
  function?: { name: string; arguments: string };
}

/** A chat message in OpenAI's shape (ChatCompletionMessageParam; `function` messages are refused at run time). */
export interface OpenAIChatMessage {
  role: 'system' | 'developer' | 'user' | 'assistant' | 'tool' | 'function';
  content?: string | null | readonly OpenAIContentPart[];
  name?: string | null;
  tool_calls?: readonly OpenAIToolCall[] | null;
  tool_call_id?: string | null;
  /** vLLM's field for an assistant message's reasoning. */
  reasoning_content?: string | null;
  refusal?: string | null;
}

/** A message in the library's own shape or in OpenAI's. */
export type Message = ChatMessage | OpenAIChatMessage;

const OPENAI_ONLY = ['tool_calls', 'tool_call_id', 'name', 'reasoning_content', 'refusal', 'audio', 'function_call'] as const;

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const bad = (message: string) => new InvalidArgumentError('ERR_INVALID_ARGUMENT', message);

function contentText(c: unknown, role: unknown, where: string): unknown {
  if (Array.isArray(c)) {
    return c
      .map((part: unknown, j) => {
        if (!isPlainObject(part) || part['type'] !== 'text' || typeof part['text'] !== 'string') {
          const type = isPlainObject(part) ? JSON.stringify(part['type']) : typeof part;
          throw bad(`${where}.content[${j}] has type ${type}: only text parts ({type: "text", text}) are supported`);
        }
        return part['text'];
      })
      .join('');
  }
  // null / absent: allowed for an assistant message (typically one that only calls tools)
  if ((c === null || c === undefined) && role === 'assistant') return '';
  if (c === null || c === undefined) throw bad(`${where}.content is required for role "${String(role)}"`);
  return c;
}

/**
 * One message to the library's shape. A message already in it is returned as is (validateMessages checks
 * it); OpenAI fields are converted, and errors name them as the wire does (`messages[2].tool_calls[0]...`).
 */
export function fromOpenAIMessage(m: unknown, i: number): unknown {
  if (!isPlainObject(m)) return m;
  const where = `messages[${i}]`;
  const openai = m['role'] === 'developer' || m['role'] === 'function' || typeof m['content'] !== 'string' || OPENAI_ONLY.some((k) => k in m);
  if (!openai) return m;
  if (m['role'] === 'function') throw bad(`${where}.role "function" (deprecated by OpenAI) is not supported: use "tool"`);
  const out: Record<string, unknown> = { ...m, role: m['role'] === 'developer' ? 'system' : m['role'], content: contentText(m['content'], m['role'], where) };
  for (const k of OPENAI_ONLY) delete out[k];
  for (const k of ['refusal', 'audio', 'function_call'] as const) {
    if (m[k] !== undefined && m[k] !== null) throw bad(`${where}.${k} is not supported`);
  }
  const calls = m['tool_calls'];
  if (calls !== undefined && calls !== null) {
    if (!Array.isArray(calls)) throw bad(`${where}.tool_calls must be an array`);
    if (m['role'] !== 'assistant') throw bad(`${where}.tool_calls is only allowed on assistant messages`);
    if ('toolCalls' in m) throw bad(`${where} has both toolCalls and tool_calls: give one`);
    if (calls.length > 0) {
      out['toolCalls'] = calls.map((c: unknown, j): ToolCall => {
        const cw = `${where}.tool_calls[${j}]`;
        const fn = isPlainObject(c) ? c['function'] : undefined;
        if (!isPlainObject(fn) || typeof fn['name'] !== 'string' || typeof fn['arguments'] !== 'string') {
          throw bad(`${cw}.function must be {name, arguments} with a JSON-string arguments (only function tool calls are supported)`);
        }
        const text = fn['arguments'];
        let args: unknown;
        try {
          args = text.trim() === '' ? {} : JSON.parse(text);
        } catch (e) {
          throw bad(`${cw}.function.arguments is not valid JSON: ${(e as Error).message}`);
        }
        if (!isPlainObject(args)) throw bad(`${cw}.function.arguments must be a JSON object`);
        return { name: fn['name'], arguments: args };
      });
    }
  }
  const reasoning = m['reasoning_content'];
  if (reasoning !== undefined && reasoning !== null && reasoning !== '') {
    if (m['role'] !== 'assistant') throw bad(`${where}.reasoning_content is only allowed on assistant messages`);
    if ('reasoning' in m) throw bad(`${where} has both reasoning and reasoning_content: give one`);
    out['reasoning'] = reasoning;
  }
  for (const k of ['tool_call_id', 'name'] as const) {
    const v = m[k];
    if (v !== undefined && v !== null && typeof v !== 'string') throw bad(`${where}.${k} must be a string`);
  }
  return out;
}

/** Messages in either shape to the library's (not yet validated: validateMessages does both). */
export function fromOpenAIMessages(messages: readonly unknown[]): unknown[] {
  return messages.map((m, i) => fromOpenAIMessage(m, i));
}

export type { ChatMessage };
