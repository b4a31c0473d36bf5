import { describe, expect, it } from 'vitest';

import { StopMatcher } from '../../lib/chat/stop.js';
import { InvalidArgumentError } from '../../lib/errors.js';

/** All ways to cut `s` into chunks: one piece, every UTF-16 unit, every code point, all two- and (short) three-piece splits. */
function splits(s: string): string[][] {
  const out: string[][] = [[s], s.split(''), Array.from(s)];
  for (let i = 0; i <= s.length; i++) out.push([s.slice(0, i), s.slice(i)]);
  if (s.length <= 60) {
    for (let i = 0; i <= s.length; i++) for (let j = i; j <= s.length; j++) out.push([s.slice(0, i), s.slice(i, j), s.slice(j)]);
  }
  return out;
}

/** Independent statement of the semantics: stop where a stop string first completes (longest one on ties). */
function oracle(text: string, stops: string[]): { text: string; stopped: boolean } {
  for (let end = 1; end <= text.length; end++) {
    const seen = text.slice(0, end);
    let best = -1;
    for (const s of stops) if (seen.endsWith(s)) best = Math.max(best, s.length);
    if (best >= 0) return { text: text.slice(0, end - best), stopped: true };
  }
  return { text, stopped: false };
}

/** What may be emitted after seeing `seen` without a stop: all but the longest suffix that could start a stop string. */
function emittable(seen: string, stops: string[]): string {
  for (let k = seen.length; k > 0; k--) {
    const tail = seen.slice(seen.length - k);
    if (stops.some((s) => s.length > k && s.startsWith(tail))) return seen.slice(0, seen.length - k);
  }
  return seen;
}

function stream(chunks: string[], stops: string[]): { text: string; stopped: boolean } {
  const m = new StopMatcher(stops);
  const want = oracle(chunks.join(''), stops);
  let emitted = '';
  let seen = '';
  let stopped = false;
  for (const c of chunks) {
    const r = m.push(c);
    if (stopped) {
      expect(r).toEqual({ emit: '', stopped: true });
      continue;
    }
    seen += c;
    emitted += r.emit;
    stopped = r.stopped;
    expect(m.stopped).toBe(stopped);
    // never emit text that is later cut
    expect(want.text.startsWith(emitted), `emitted ${JSON.stringify(emitted)}`).toBe(true);
    // and hold back no more than needed
    if (!stopped) expect(emitted).toBe(emittable(seen, stops));
  }
  const rest = m.flush();
  if (stopped) expect(rest).toBe('');
  return { text: emitted + rest, stopped };
}

const STOPS = ['</s>', '\n\nUser:', '🛑', 'abcd', 'bc', 'aab', 'Ende.'];

const TEXTS = [
  'Hello world, nothing to stop here. 🙂',
  'The answer.</s>garbage',
  'Line one\n\nUser: next turn',
  'Line one\n\nUser without colon\n\nUse',
  'emoji 😀 then 🛑 stop',
  'abcd', // 'bc' completes first
  'xabcx',
  'aaab', // overlapping prefix: stop at index 1
  'aaaaaaa',
  '</</s',
  'Grüße, 日本語 — das Ende.',
  'das Ende',
  '<</s>>',
  '\n\n\n\nUser:',
  '',
];

describe('StopMatcher: exact results', () => {
  it('emits text before the stop and reports it', () => {
    const m = new StopMatcher(['</s>']);
    expect(m.push('Hello')).toEqual({ emit: 'Hello', stopped: false });
    expect(m.push(' <')).toEqual({ emit: ' ', stopped: false });
    expect(m.push('/s')).toEqual({ emit: '', stopped: false });
    expect(m.push('>tail')).toEqual({ emit: '', stopped: true });
    expect(m.push('more')).toEqual({ emit: '', stopped: true });
    expect(m.flush()).toBe('');
  });

  it('releases held text when it stops being a possible stop prefix', () => {
    const m = new StopMatcher(['</s>']);
    expect(m.push('a </')).toEqual({ emit: 'a ', stopped: false });
    expect(m.push('b>')).toEqual({ emit: '</b>', stopped: false });
    expect(m.push('</')).toEqual({ emit: '', stopped: false });
    expect(m.flush()).toBe('</');
    expect(m.flush()).toBe('');
  });

  it('the stop that completes first wins; on a tie the longest', () => {
    expect(new StopMatcher(['abcd', 'bc']).push('abcd')).toEqual({ emit: 'a', stopped: true });
    expect(new StopMatcher(['bc', 'abc']).push('xabc')).toEqual({ emit: 'x', stopped: true });
    expect(new StopMatcher(['b', 'xyzab']).push('xyzab')).toEqual({ emit: '', stopped: true }); // tie: the longer
    expect(new StopMatcher(['b', 'xyzabc']).push('xyzabc')).toEqual({ emit: 'xyza', stopped: true });
  });

  it('overlapping partial matches: holds the longest possible prefix', () => {
    const m = new StopMatcher(['aab']);
    expect(m.push('a')).toEqual({ emit: '', stopped: false });
    expect(m.push('a')).toEqual({ emit: '', stopped: false });
    expect(m.push('a')).toEqual({ emit: 'a', stopped: false });
    expect(m.push('b')).toEqual({ emit: '', stopped: true });
  });

  it('a stop at the very start emits nothing', () => {
    expect(new StopMatcher(['\n']).push('\nabc')).toEqual({ emit: '', stopped: true });
  });

  it('multi-byte stops and text', () => {
    const m = new StopMatcher(['。終わり', '🛑']);
    expect(m.push('日本語。')).toEqual({ emit: '日本語', stopped: false });
    expect(m.push('終')).toEqual({ emit: '', stopped: false });
    expect(m.push('了🛑')).toEqual({ emit: '。終了', stopped: true });
  });

  it('no stops: everything passes straight through', () => {
    const m = new StopMatcher([]);
    expect(m.push('a</s>')).toEqual({ emit: 'a</s>', stopped: false });
    expect(m.flush()).toBe('');
  });

  it('rejects empty or non-string stops', () => {
    expect(() => new StopMatcher([''])).toThrow(InvalidArgumentError);
    expect(() => new StopMatcher(['ok', ''])).toThrow(/stops\[1\] must be a non-empty string/);
    expect(() => new StopMatcher(['ok', 3 as never])).toThrow(/stops\[1\] must be a non-empty string, got 3/);
    expect(() => new StopMatcher('</s>' as never)).toThrow(/stops must be an array/);
    expect(() => new StopMatcher(['x']).push(null as never)).toThrow(/text must be a string/);
  });
});

describe('StopMatcher: streaming equals one shot at every split', () => {
  it.each(TEXTS.map((t) => [JSON.stringify(t), t]))('%s', (_l, text) => {
    const want = oracle(text, STOPS);
    for (const chunks of splits(text)) {
      expect(stream(chunks, STOPS), JSON.stringify(chunks)).toEqual(want);
    }
  });

  it('exhaustive small alphabet: every string over {a, b, c} up to length 7', () => {
    const stops = ['aab', 'abcab', 'cc', 'bca'];
    const texts = [''];
    for (let len = 1; len <= 7; len++) {
      const n = texts.length;
      for (let i = 0; i < n; i++) if ((texts[i] as string).length === len - 1) for (const ch of 'abc') texts.push(texts[i] + ch);
    }
    for (const t of texts) {
      const want = oracle(t, stops);
      expect(stream(t.split(''), stops), t).toEqual(want);
      for (let i = 0; i <= t.length; i++) expect(stream([t.slice(0, i), t.slice(i)], stops), `${t} @${i}`).toEqual(want);
    }
  });
});
