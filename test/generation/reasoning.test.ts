import { describe, expect, it } from 'vitest';

import { ReasoningSplitter, type ReasoningPiece } from '../../lib/chat/reasoning.js';
import { InvalidArgumentError } from '../../lib/errors.js';

// ---------------------------------------------------------------------------------------------------------
// split helpers: every way of cutting a string into chunks that these tests try

/** All ways to cut `s` into chunks: one piece, every UTF-16 unit, every code point, all two- and (short) three-piece splits. */
function splits(s: string): string[][] {
  const out: string[][] = [[s], s.split(''), Array.from(s)];
  for (let i = 0; i <= s.length; i++) out.push([s.slice(0, i), s.slice(i)]);
  if (s.length <= 60) {
    for (let i = 0; i <= s.length; i++) for (let j = i; j <= s.length; j++) out.push([s.slice(0, i), s.slice(i, j), s.slice(j)]);
  }
  return out;
}

/** Merges adjacent pieces of the same type; fails on empty pieces. */
function normalise(pieces: ReasoningPiece[]): ReasoningPiece[] {
  const out: ReasoningPiece[] = [];
  for (const p of pieces) {
    expect(p.text, 'no empty pieces').not.toBe('');
    const last = out[out.length - 1];
    if (last !== undefined && last.type === p.type) last.text += p.text;
    else out.push({ ...p });
  }
  return out;
}

function run(chunks: string[], startsInReasoning: boolean): ReasoningPiece[] {
  const s = new ReasoningSplitter({ startsInReasoning });
  const all: ReasoningPiece[] = [];
  for (const c of chunks) all.push(...s.push(c));
  all.push(...s.flush());
  return all;
}

/** Independent statement of what the splitter produces for a whole output. */
function oracle(s: string, startsInReasoning: boolean): ReasoningPiece[] {
  let body = s;
  if (!startsInReasoning) {
    const t = s.replace(/^\s+/, '');
    if (!t.startsWith('<think>')) return t === '' ? [] : [{ type: 'text', text: t }];
    body = t.slice('<think>'.length).replace(/^\s+/, '');
  }
  const out: ReasoningPiece[] = [];
  const at = body.indexOf('</think>');
  const reasoning = at < 0 ? body : body.slice(0, at).replace(/\s+$/, '');
  const text = at < 0 ? '' : body.slice(at + '</think>'.length).replace(/^\s+/, '');
  if (reasoning !== '') out.push({ type: 'reasoning', text: reasoning });
  if (text !== '') out.push({ type: 'text', text });
  return out;
}

const IN_REASONING = [
  'Let me think about 🙂 this.\n</think>\n\nThe answer is 42 — 答え。',
  'still thinking… 😀 <',
  'a </thin b </ c <</think>x',
  'r \t\n </think> \n\t answer\n\n',
  '</think>\n\nanswer',
  'r</think>\n\n',
  'r</think>a</think>b',
  'x <think> y</think>z',
  'family 👨‍👩‍👧 and 👍🏽 ✓\n</think>\n\nÜber 🇨🇭 ok',
  '\n\nleading newlines stay\n\n\n</think>',
  'ends with whitespace \n ',
  '</think',
  '',
];

const NOT_IN_REASONING = [
  '<think>\nself-opened 🧠\n</think>\n\nanswer ✓',
  '  \n<think>r</think>a',
  'answer with <think> inside </think> too',
  '<thinking>not a tag',
  '\n\nplain answer 👍🏽 ',
  '<thi',
  '<think>',
  '<think>\n  \n',
  '<think>partial </thi',
  '</think> is text here',
  '  <',
  '',
];

describe('ReasoningSplitter: exact results', () => {
  it('splits the Nemotron shape and strips the tags and surrounding newlines', () => {
    expect(run(['I am thinking.\n</think>\n\nHello!'], true)).toEqual([
      { type: 'reasoning', text: 'I am thinking.' },
      { type: 'text', text: 'Hello!' },
    ]);
  });

  it('reasoning off: the output is all answer (leading whitespace dropped)', () => {
    expect(run(['\nHello </think> world'], false)).toEqual([{ type: 'text', text: 'Hello </think> world' }]);
  });

  it('a self-opened <think> at the start is handled like a prompted one', () => {
    expect(run([' <think>\nhmm 🤔\n</think>\n\nDone.'], false)).toEqual([
      { type: 'reasoning', text: 'hmm 🤔' },
      { type: 'text', text: 'Done.' },
    ]);
  });

  it('keeps whitespace inside reasoning and answers, and answer trailing whitespace', () => {
    expect(run(['a\n\nb \n</think>\n\nc\n\nd\n'], true)).toEqual([
      { type: 'reasoning', text: 'a\n\nb' },
      { type: 'text', text: 'c\n\nd\n' },
    ]);
  });

  it('custom tags', () => {
    const s = new ReasoningSplitter({ startsInReasoning: false, open: '[R]', close: '[/R]' });
    const got = normalise([...s.push('[R]x'), ...s.push(' [/'), ...s.push('R] y <think>'), ...s.flush()]);
    expect(got).toEqual([
      { type: 'reasoning', text: 'x' },
      { type: 'text', text: 'y <think>' },
    ]);
  });

  it.each(IN_REASONING.map((s) => [JSON.stringify(s), s]))('starting in reasoning, one shot %s matches the specification', (_l, s) => {
    expect(normalise(run([s], true))).toEqual(oracle(s, true));
  });

  it.each(NOT_IN_REASONING.map((s) => [JSON.stringify(s), s]))('not starting in reasoning, one shot %s matches the specification', (_l, s) => {
    expect(normalise(run([s], false))).toEqual(oracle(s, false));
  });
});

describe('ReasoningSplitter: hold-back', () => {
  it('holds back a possible </think> prefix and the whitespace before it, no more', () => {
    const s = new ReasoningSplitter({ startsInReasoning: true });
    expect(s.push('thinking <')).toEqual([{ type: 'reasoning', text: 'thinking' }]);
    expect(s.push('/thi')).toEqual([]);
    expect(s.inReasoning).toBe(true);
    expect(s.push('s is not it')).toEqual([{ type: 'reasoning', text: ' </this is not it' }]);
    expect(s.push('\n\n')).toEqual([]);
    expect(s.push('</think>')).toEqual([]);
    expect(s.inReasoning).toBe(false);
    expect(s.push('\n')).toEqual([]);
    expect(s.push('\nAns')).toEqual([{ type: 'text', text: 'Ans' }]);
    expect(s.push('wer <')).toEqual([{ type: 'text', text: 'wer <' }]); // answer text is never held
    expect(s.flush()).toEqual([]);
  });

  it('emits text that cannot start the close tag immediately', () => {
    const s = new ReasoningSplitter({ startsInReasoning: true });
    expect(s.push('a<b')).toEqual([{ type: 'reasoning', text: 'a<b' }]);
    expect(s.push('</thinker')).toEqual([{ type: 'reasoning', text: '</thinker' }]);
  });

  it('flush emits the held-back tail of a cut-off trace verbatim', () => {
    const s = new ReasoningSplitter({ startsInReasoning: true });
    expect(s.push('cut off \n</thi')).toEqual([{ type: 'reasoning', text: 'cut off' }]);
    expect(s.flush()).toEqual([{ type: 'reasoning', text: ' \n</thi' }]);
    expect(s.inReasoning).toBe(true);
  });

  it('at the start of an answer, holds a possible <think> prefix', () => {
    const s = new ReasoningSplitter({ startsInReasoning: false });
    expect(s.inReasoning).toBe(false);
    expect(s.push('\n <th')).toEqual([]);
    expect(s.push('ink>')).toEqual([]);
    expect(s.inReasoning).toBe(true);
    expect(s.push('\n')).toEqual([]);
    expect(s.push('r')).toEqual([{ type: 'reasoning', text: 'r' }]);
    const t = new ReasoningSplitter({ startsInReasoning: false });
    expect(t.push('<th')).toEqual([]);
    expect(t.push('e end')).toEqual([{ type: 'text', text: '<the end' }]);
    expect(t.push(' <think>')).toEqual([{ type: 'text', text: ' <think>' }]);
    expect(t.inReasoning).toBe(false);
  });

  it('rejects bad options and input', () => {
    expect(() => new ReasoningSplitter({} as never)).toThrow(InvalidArgumentError);
    expect(() => new ReasoningSplitter({ startsInReasoning: true, close: '' })).toThrow(/options\.close must be a non-empty string/);
    expect(() => new ReasoningSplitter({ startsInReasoning: true }).push(3 as never)).toThrow(/text must be a string/);
  });
});

describe('ReasoningSplitter: streaming equals one shot at every split', () => {
  const cases: [string, string, boolean][] = [
    ...IN_REASONING.map((s): [string, string, boolean] => [JSON.stringify(s), s, true]),
    ...NOT_IN_REASONING.map((s): [string, string, boolean] => [JSON.stringify(s), s, false]),
  ];
  it.each(cases)('%s (startsInReasoning=%s)', (_l, s, starts) => {
    const want = oracle(s, starts);
    for (const chunks of splits(s)) {
      const got = run(chunks, starts);
      // reasoning never follows answer text
      const firstText = got.findIndex((p) => p.type === 'text');
      if (firstText >= 0) expect(got.slice(firstText).every((p) => p.type === 'text')).toBe(true);
      expect(normalise(got), JSON.stringify(chunks)).toEqual(want);
    }
  });

  it('a long trace streamed token by token stays in reasoning until </think>', () => {
    const tokens = ['Okay', ',', ' the', ' user', ' wants', ' 🙂', '.\n', '</think>', '\n\n', 'Sure', '!'];
    const s = new ReasoningSplitter({ startsInReasoning: true });
    const states: boolean[] = [];
    const got: ReasoningPiece[] = [];
    for (const t of tokens) {
      got.push(...s.push(t));
      states.push(s.inReasoning);
    }
    got.push(...s.flush());
    expect(states).toEqual([true, true, true, true, true, true, true, false, false, false, false]);
    expect(normalise(got)).toEqual([
      { type: 'reasoning', text: 'Okay, the user wants 🙂.' },
      { type: 'text', text: 'Sure!' },
    ]);
  });
});
