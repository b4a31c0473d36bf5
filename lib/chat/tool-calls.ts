/**
 * Streaming extraction of Nemotron tool calls from answer text (docs/architecture.md §6):
 *
 *   <TOOLCALL>[{"name": "get_weather", "arguments": {"city": "Paris"}}, ...]</TOOLCALL>
 *
 * - Text outside the tags passes through verbatim (whitespace around a block included), merged per push() call.
 * - Held back: a trailing possible prefix of `<TOOLCALL>` (e.g. `<TOOL`), and everything after `<TOOLCALL>` until
 *   `</TOOLCALL>` arrives. The tags themselves are never emitted as text.
 * - A complete block yields one `toolCall` event per call, in order. The block is parsed as a whole: it must be a
 *   JSON array (surrounding whitespace allowed) of one or more objects, each with a non-empty string `name` and
 *   `arguments` that is a JSON object, or a string holding the JSON text of an object, or absent (taken as {}).
 *   Other fields of a call object are ignored. If anything is wrong, the block yields a single `toolCallError` whose
 *   `raw` is the whole block, tags included, and no calls (a partly valid block is not half executed).
 * - flush(): held text is emitted; an unterminated block is a `toolCallError` with `raw` = `<TOOLCALL>` + its text.
 * - `</TOOLCALL>` outside a block, and `<TOOLCALL>` inside one, are ordinary characters.
 */
import { invalid } from '../validate.js';
import type { ToolCall } from './template.js';
import { partialTagLength, pushPiece } from './partial.js';

export type ToolCallEvent = { type: 'toolCall'; call: ToolCall } | { type: 'toolCallError'; raw: string; error: string };
export type ToolCallParserEvent = { type: 'text'; text: string } | ToolCallEvent;

export const TOOLCALL_OPEN = '<TOOLCALL>';
export const TOOLCALL_CLOSE = '</TOOLCALL>';

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function kind(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (value === undefined) return 'undefined';
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}

/**
 * Parses the JSON between the tags. Returns the calls, or an error message (never both).
 */
export function parseToolCallList(inner: string): { calls: ToolCall[] } | { error: string } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(inner);
  } catch (e) {
    return { error: `invalid JSON in the tool call block: ${e instanceof Error ? e.message : String(e)}` };
  }
  if (!Array.isArray(parsed)) return { error: `the tool call block must be a JSON array of calls, got ${kind(parsed)}` };
  if (parsed.length === 0) return { error: 'the tool call block is an empty list' };
  const calls: ToolCall[] = [];
  for (let i = 0; i < parsed.length; i++) {
    const c: unknown = parsed[i];
    if (!isPlainObject(c)) return { error: `tool call ${i} must be an object, got ${kind(c)}` };
    const name = c['name'];
    if (typeof name !== 'string' || name === '') {
      return { error: `tool call ${i} has no "name" (a non-empty string), got ${name === undefined ? 'none' : kind(name)}` };
    }
    let args: unknown = c['arguments'];
    if (args === undefined) {
      args = {};
    } else if (typeof args === 'string') {
      try {
        args = JSON.parse(args);
      } catch (e) {
        return { error: `tool call ${i} ("${name}") has "arguments" that is a string but not JSON: ${e instanceof Error ? e.message : String(e)}` };
      }
      if (!isPlainObject(args)) {
        return { error: `tool call ${i} ("${name}") has "arguments" that must be a JSON object, got a string holding ${kind(args)}` };
      }
    } else if (!isPlainObject(args)) {
      return { error: `tool call ${i} ("${name}") has "arguments" that must be an object, got ${kind(args)}` };
    }
    calls.push({ name, arguments: args as Record<string, unknown> });
  }
  return { calls };
}

export class ToolCallParser {
  private inBlock = false;
  private buf = '';
  private scanned = 0; // in a block: the close tag does not start before this offset of buf

  /** True while inside an unterminated `<TOOLCALL>` block. */
  get inToolCall(): boolean {
    return this.inBlock;
  }

  push(text: string): ToolCallParserEvent[] {
    if (typeof text !== 'string') throw invalid('text', 'a string', text);
    const out: ToolCallParserEvent[] = [];
    this.buf += text;
    for (;;) {
      if (!this.inBlock) {
        const at = this.buf.indexOf(TOOLCALL_OPEN);
        if (at >= 0) {
          pushPiece(out, 'text', this.buf.slice(0, at));
          this.buf = this.buf.slice(at + TOOLCALL_OPEN.length);
          this.inBlock = true;
          this.scanned = 0;
          continue;
        }
        const keep = this.buf.length - partialTagLength(this.buf, TOOLCALL_OPEN);
        pushPiece(out, 'text', this.buf.slice(0, keep));
        this.buf = this.buf.slice(keep);
        break;
      }
      const at = this.buf.indexOf(TOOLCALL_CLOSE, this.scanned);
      if (at < 0) {
        this.scanned = Math.max(0, this.buf.length - TOOLCALL_CLOSE.length + 1);
        break;
      }
      const inner = this.buf.slice(0, at);
      this.buf = this.buf.slice(at + TOOLCALL_CLOSE.length);
      this.inBlock = false;
      const result = parseToolCallList(inner);
      if ('error' in result) {
        out.push({ type: 'toolCallError', raw: TOOLCALL_OPEN + inner + TOOLCALL_CLOSE, error: result.error });
      } else {
        for (const call of result.calls) out.push({ type: 'toolCall', call });
      }
    }
    return out;
  }

  flush(): ToolCallParserEvent[] {
    const out: ToolCallParserEvent[] = [];
    const rest = this.buf;
    this.buf = '';
    if (this.inBlock) {
      this.inBlock = false;
      out.push({
        type: 'toolCallError',
        raw: TOOLCALL_OPEN + rest,
        error: 'unterminated tool call block: the output ended before </TOOLCALL>',
      });
    } else {
      pushPiece(out, 'text', rest);
    }
    return out;
  }
}
