/**
 * Stop strings for streamed text.
 *
 * Semantics (the same whichever way the text is split into chunks): the text stops at the first point where some stop
 * string has been completely seen, i.e. the match that ENDS earliest; among matches ending at the same point the
 * longest (earliest-starting) one. Everything from the start of that match on is cut; the stop string itself is
 * never emitted. E.g. stops ['abcd', 'bc'] on 'abcd' stop at 'bc' and emit 'a'.
 *
 * Hold-back: push() emits all text except the longest suffix that is a proper prefix of some stop string. No
 * later chunk can turn emitted text into part of a match, so emitted text is never cut afterwards; and a suffix that
 * cannot start a stop string is emitted at once. flush() returns the held-back text when generation ended for
 * another reason ('' after a stop). After a stop, push() returns {emit: '', stopped: true}.
 */
import { InvalidArgumentError } from '../errors.js';
import { invalid } from '../validate.js';
import { partialTagLength } from './partial.js';

export class StopMatcher {
  private readonly stops: readonly string[];
  private buf = '';
  private done = false;

  /** `stops`: non-empty strings (an empty list never stops). Duplicates are harmless. */
  constructor(stops: string[]) {
    if (!Array.isArray(stops)) throw invalid('stops', 'an array of non-empty strings', stops);
    stops.forEach((s: unknown, i: number) => {
      if (typeof s !== 'string') throw invalid(`stops[${i}]`, 'a non-empty string', s);
      if (s === '') throw new InvalidArgumentError('ERR_INVALID_ARGUMENT', `stops[${i}] must be a non-empty string, got ""`);
    });
    this.stops = [...stops];
  }

  /** True once a stop string has matched. */
  get stopped(): boolean {
    return this.done;
  }

  push(text: string): { emit: string; stopped: boolean } {
    if (typeof text !== 'string') throw invalid('text', 'a string', text);
    if (this.done) return { emit: '', stopped: true };
    const buf = this.buf + text;
    let bestStart = -1;
    let bestEnd = Infinity;
    for (const stop of this.stops) {
      const at = buf.indexOf(stop);
      if (at < 0) continue;
      const end = at + stop.length;
      if (end < bestEnd || (end === bestEnd && at < bestStart)) {
        bestStart = at;
        bestEnd = end;
      }
    }
    if (bestStart >= 0) {
      this.done = true;
      this.buf = '';
      return { emit: buf.slice(0, bestStart), stopped: true };
    }
    let hold = 0;
    for (const stop of this.stops) hold = Math.max(hold, partialTagLength(buf, stop));
    this.buf = buf.slice(buf.length - hold);
    return { emit: buf.slice(0, buf.length - hold), stopped: false };
  }

  flush(): string {
    const rest = this.buf;
    this.buf = '';
    return rest;
  }
}
