/**
 * Splits streamed model output into reasoning and answer text (docs/architecture.md §6).
 *
 * Nemotron Nano 2 with reasoning on is prompted up to `<think>\n` and writes `reasoning…\n</think>\n\nanswer`; with
 * reasoning off the prompt ends `<think></think>` and the output is the answer. A model prompted without a `<think>`
 * may open one itself (`<think>\nreasoning…</think>\n\nanswer`).
 *
 * Exactly what is removed from the stream (whitespace = the characters JS `\s` / `String.prototype.trim` match):
 *   - the close tag `</think>` and all whitespace right after it (up to the first non-whitespace character);
 *   - the whitespace right before `</think>` (the reasoning text never ends with the `\n` the model writes before it);
 *   - when not starting in reasoning: whitespace at the very start of the output, and an open tag `<think>` there
 *     (only whitespace before it) together with the whitespace right after it. `<think>` anywhere else, and a second
 *     `<think>` after `</think>`, is ordinary text; so is `</think>` when no reasoning is open.
 *   Nothing else: reasoning and answer text are otherwise passed on verbatim.
 *
 * Held back (emitted by a later push or by flush): in reasoning, a trailing run of whitespace followed by a possible
 * prefix of `</think>` (it is either stripped or emitted once the next non-matching character arrives); at the start
 * of the output, a possible prefix of `<think>`. Answer text after the start is never held back.
 *
 * flush() (generation ended) emits what is held: in reasoning, the held whitespace/partial tag as reasoning (the
 * trace was cut off, so it is kept verbatim); at the start, a partial `<think>` as text; whitespace still being
 * stripped is dropped. Events of one call are merged by type and never empty.
 */
import { invalid } from '../validate.js';
import { partialTagLength, pushPiece } from './partial.js';

export type ReasoningPiece = { type: 'reasoning' | 'text'; text: string };

type Mode =
  | 'start' // answer mode, nothing emitted yet: leading whitespace dropped, `<think>` may open reasoning
  | 'reasoning'
  | 'afterClose' // dropping whitespace after `</think>`
  | 'text';

const WS = /\s/;

function trailingWhitespaceStart(s: string, end: number): number {
  let j = end;
  while (j > 0 && WS.test(s[j - 1] as string)) j--;
  return j;
}

export class ReasoningSplitter {
  private readonly open: string;
  private readonly close: string;
  private mode: Mode;
  private stripLeading = false; // in reasoning, right after a self-opened `<think>`
  private buf = '';

  constructor(opts: { startsInReasoning: boolean; open?: string; close?: string }) {
    if (typeof opts !== 'object' || opts === null) throw invalid('ReasoningSplitter options', 'an object', opts);
    if (typeof opts.startsInReasoning !== 'boolean') {
      throw invalid('ReasoningSplitter options.startsInReasoning', 'a boolean', opts.startsInReasoning);
    }
    const open = opts.open ?? '<think>';
    const close = opts.close ?? '</think>';
    if (typeof open !== 'string' || open === '') throw invalid('ReasoningSplitter options.open', 'a non-empty string', open);
    if (typeof close !== 'string' || close === '') throw invalid('ReasoningSplitter options.close', 'a non-empty string', close);
    this.open = open;
    this.close = close;
    this.mode = opts.startsInReasoning ? 'reasoning' : 'start';
  }

  /** True while the output is inside a reasoning block (before its `</think>`). */
  get inReasoning(): boolean {
    return this.mode === 'reasoning';
  }

  push(text: string): ReasoningPiece[] {
    if (typeof text !== 'string') throw invalid('text', 'a string', text);
    const out: ReasoningPiece[] = [];
    this.buf += text;
    for (;;) {
      if (this.mode === 'start') {
        this.buf = this.buf.trimStart();
        if (this.buf === '') break;
        if (this.buf.startsWith(this.open)) {
          this.buf = this.buf.slice(this.open.length);
          this.mode = 'reasoning';
          this.stripLeading = true;
          continue;
        }
        if (this.open.startsWith(this.buf)) break; // possible partial open tag
        this.mode = 'text';
        continue;
      }
      if (this.mode === 'reasoning') {
        if (this.stripLeading) {
          this.buf = this.buf.trimStart();
          if (this.buf === '') break;
          this.stripLeading = false;
        }
        const at = this.buf.indexOf(this.close);
        if (at >= 0) {
          pushPiece(out, 'reasoning', this.buf.slice(0, at).trimEnd());
          this.buf = this.buf.slice(at + this.close.length);
          this.mode = 'afterClose';
          continue;
        }
        const keep = trailingWhitespaceStart(this.buf, this.buf.length - partialTagLength(this.buf, this.close));
        pushPiece(out, 'reasoning', this.buf.slice(0, keep));
        this.buf = this.buf.slice(keep);
        break;
      }
      if (this.mode === 'afterClose') {
        this.buf = this.buf.trimStart();
        if (this.buf === '') break;
        this.mode = 'text';
        continue;
      }
      pushPiece(out, 'text', this.buf);
      this.buf = '';
      break;
    }
    return out;
  }

  flush(): ReasoningPiece[] {
    const out: ReasoningPiece[] = [];
    const rest = this.buf;
    this.buf = '';
    if (this.mode === 'reasoning') pushPiece(out, 'reasoning', this.stripLeading ? rest.trimStart() : rest);
    else if (this.mode === 'start' || this.mode === 'text') pushPiece(out, 'text', rest);
    return out;
  }
}
