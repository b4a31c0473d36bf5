import { describe, expect, it } from 'vitest';

import { ToolCallParser, parseToolCallList, type ToolCallParserEvent } from '../../lib/chat/tool-calls.js';

/** All ways to cut `s` into chunks: one piece, every UTF-16 unit, every code point, all two- and (short) three-piece splits. */
function splits(s: string): string[][] {
  const out: string[][] = [[s], s.split(''), Array.from(s)];
  for (let i = 0; i <= s.length; i++) out.push([s.slice(0, i), s.slice(i)]);
  if (s.length <= 60) {
    for (let i = 0; i <= s.length; i++) for (let j = i; j <= s.length; j++) out.push([s.slice(0, i), s.slice(i, j), s.slice(j)]);
  }
  return out;
}

/** Merges adjacent text events; fails on empty text events. */
function normalise(events: ToolCallParserEvent[]): ToolCallParserEvent[] {
  const out: ToolCallParserEvent[] = [];
  for (const e of events) {
    if (e.type === 'text') {
      expect(e.text, 'no empty text events').not.toBe('');
      const last = out[out.length - 1];
      if (last !== undefined && last.type === 'text') {
        last.text += e.text;
        continue;
      }
    }
    out.push({ ...e });
  }
  return out;
}

function run(chunks: string[]): ToolCallParserEvent[] {
  const p = new ToolCallParser();
  const all: ToolCallParserEvent[] = [];
  for (const c of chunks) all.push(...p.push(c));
  all.push(...p.flush());
  return all;
}

const text = (t: string): ToolCallParserEvent => ({ type: 'text', text: t });
const call = (name: string, args: Record<string, unknown>): ToolCallParserEvent => ({ type: 'toolCall', call: { name, arguments: args } });
const error = (raw: string, message: RegExp): unknown => ({ type: 'toolCallError', raw, error: expect.stringMatching(message) });

const W = '<TOOLCALL>[{"name": "get_weather", "arguments": {"city": "Zürich 🇨🇭"}}]</TOOLCALL>';

const CASES: [string, string, unknown[]][] = [
  ['plain text', 'No tools needed. 🙂 <TOOL is not a tag', [text('No tools needed. 🙂 <TOOL is not a tag')]],
  ['text then a call', `Checking.\n${W}`, [text('Checking.\n'), call('get_weather', { city: 'Zürich 🇨🇭' })]],
  [
    'two calls, text around',
    'a <TOOLCALL>[{"name": "f", "arguments": {"x": [1, {"y": null}]}}, {"name": "g", "arguments": {}}]</TOOLCALL> b',
    [text('a '), call('f', { x: [1, { y: null }] }), call('g', {}), text(' b')],
  ],
  ['two blocks', `${W}and${W}`, [call('get_weather', { city: 'Zürich 🇨🇭' }), text('and'), call('get_weather', { city: 'Zürich 🇨🇭' })]],
  [
    'arguments as a JSON string',
    '<TOOLCALL>[{"name": "f", "arguments": "{\\"a\\": 1, \\"é\\": \\"😀\\"}"}]</TOOLCALL>',
    [call('f', { a: 1, é: '😀' })],
  ],
  ['arguments missing', '<TOOLCALL>[{"name": "now"}]</TOOLCALL>', [call('now', {})]],
  ['whitespace inside the block', '<TOOLCALL>\n  [ {"name": "f", "arguments": {}, "id": "x"} ]\n</TOOLCALL>', [call('f', {})]],
  ['bad JSON', 'x<TOOLCALL>[{"name": "f", </TOOLCALL>y', [text('x'), error('<TOOLCALL>[{"name": "f", </TOOLCALL>', /invalid JSON/), text('y')]],
  ['not an array', '<TOOLCALL>{"name": "f", "arguments": {}}</TOOLCALL>', [error('<TOOLCALL>{"name": "f", "arguments": {}}</TOOLCALL>', /must be a JSON array.*got an object/)]],
  ['empty list', '<TOOLCALL>[]</TOOLCALL>', [error('<TOOLCALL>[]</TOOLCALL>', /empty list/)]],
  ['element not an object', '<TOOLCALL>["f"]</TOOLCALL>', [error('<TOOLCALL>["f"]</TOOLCALL>', /tool call 0 must be an object, got a string/)]],
  ['missing name', '<TOOLCALL>[{"arguments": {}}]</TOOLCALL>', [error('<TOOLCALL>[{"arguments": {}}]</TOOLCALL>', /tool call 0 has no "name".*got none/)]],
  ['empty name', '<TOOLCALL>[{"name": "", "arguments": {}}]</TOOLCALL>', [error('<TOOLCALL>[{"name": "", "arguments": {}}]</TOOLCALL>', /tool call 0 has no "name"/)]],
  ['arguments an array', '<TOOLCALL>[{"name": "f", "arguments": [1]}]</TOOLCALL>', [error('<TOOLCALL>[{"name": "f", "arguments": [1]}]</TOOLCALL>', /"arguments" that must be an object, got an array/)]],
  ['arguments a number', '<TOOLCALL>[{"name": "f", "arguments": 5}]</TOOLCALL>', [error('<TOOLCALL>[{"name": "f", "arguments": 5}]</TOOLCALL>', /must be an object, got a number/)]],
  ['arguments null', '<TOOLCALL>[{"name": "f", "arguments": null}]</TOOLCALL>', [error('<TOOLCALL>[{"name": "f", "arguments": null}]</TOOLCALL>', /must be an object, got null/)]],
  ['arguments a string of an array', '<TOOLCALL>[{"name": "f", "arguments": "[1]"}]</TOOLCALL>', [error('<TOOLCALL>[{"name": "f", "arguments": "[1]"}]</TOOLCALL>', /a string holding an array/)]],
  ['arguments a non-JSON string', '<TOOLCALL>[{"name": "f", "arguments": "city=Paris"}]</TOOLCALL>', [error('<TOOLCALL>[{"name": "f", "arguments": "city=Paris"}]</TOOLCALL>', /string but not JSON/)]],
  [
    'one bad call fails the whole block',
    '<TOOLCALL>[{"name": "f", "arguments": {}}, {"arguments": {}}]</TOOLCALL>',
    [error('<TOOLCALL>[{"name": "f", "arguments": {}}, {"arguments": {}}]</TOOLCALL>', /tool call 1 has no "name"/)],
  ],
  ['unterminated block', 'ok <TOOLCALL>[{"name": "f"', [text('ok '), error('<TOOLCALL>[{"name": "f"', /unterminated/)]],
  ['unterminated with a partial close', '<TOOLCALL>[]</TOOL', [error('<TOOLCALL>[]</TOOL', /unterminated/)]],
  ['partial open tag at the end', 'see <TOOL', [text('see <TOOL')]],
  ['stray close tag', 'a </TOOLCALL> b', [text('a </TOOLCALL> b')]],
  ['open tag inside a block is content', '<TOOLCALL><TOOLCALL>[]</TOOLCALL>', [error('<TOOLCALL><TOOLCALL>[]</TOOLCALL>', /invalid JSON/)]],
  ['a look-alike prefix', '<TOOLCAL>x<<TOOLCALL>[{"name":"f","arguments":{}}]</TOOLCALL>', [text('<TOOLCAL>x<'), call('f', {})]],
  ['emoji and CJK around', '天気は？👍🏽<TOOLCALL>[{"name":"天気","arguments":{"都市":"東京"}}]</TOOLCALL>🙂', [text('天気は？👍🏽'), call('天気', { 都市: '東京' }), text('🙂')]],
  ['empty', '', []],
];

describe('ToolCallParser: exact results', () => {
  it.each(CASES)('%s', (_label, input, want) => {
    expect(normalise(run([input]))).toEqual(want);
  });

  it('holds back only a possible <TOOLCALL> prefix, and the block until it closes', () => {
    const p = new ToolCallParser();
    expect(p.push('Hi <')).toEqual([text('Hi ')]);
    expect(p.push('TOOL')).toEqual([]);
    expect(p.push('CALL>[{"name": "f",')).toEqual([]);
    expect(p.inToolCall).toBe(true);
    expect(p.push(' "arguments": {}}]</TOOLCALL')).toEqual([]);
    expect(p.push('>\nafter <')).toEqual([call('f', {}), text('\nafter ')]);
    expect(p.inToolCall).toBe(false);
    expect(p.push('b>')).toEqual([text('<b>')]);
    expect(p.flush()).toEqual([]);
  });

  it('malformed blocks are reported, never dropped: the error carries the whole raw block', () => {
    const p = new ToolCallParser();
    const events = [...p.push('<TOOLCALL>[{"name": 1}]</TOOLCALL>'), ...p.flush()];
    expect(events).toHaveLength(1);
    const e = events[0] as { type: string; raw: string; error: string };
    expect(e.type).toBe('toolCallError');
    expect(e.raw).toBe('<TOOLCALL>[{"name": 1}]</TOOLCALL>');
    expect(e.error).toMatch(/tool call 0 has no "name" \(a non-empty string\), got a number/);
  });

  it('parseToolCallList on its own', () => {
    expect(parseToolCallList(' [{"name": "a", "arguments": {"k": "v"}}] ')).toEqual({ calls: [{ name: 'a', arguments: { k: 'v' } }] });
    expect(parseToolCallList('nope')).toEqual({ error: expect.stringMatching(/invalid JSON/) });
  });

  it('rejects non-string input', () => {
    expect(() => new ToolCallParser().push(undefined as never)).toThrow(/text must be a string/);
  });
});

describe('ToolCallParser: streaming equals one shot at every split', () => {
  it.each(CASES)('%s', (_label, input) => {
    const want = normalise(run([input]));
    for (const chunks of splits(input)) {
      expect(normalise(run(chunks)), JSON.stringify(chunks)).toEqual(want);
    }
  });

  it('a long block delivered token by token', () => {
    const args: Record<string, unknown> = {};
    for (let i = 0; i < 200; i++) args[`k${i}`] = `value ${i} — ü 🙂`;
    const body = `Calling now. <TOOLCALL>[${JSON.stringify({ name: 'big', arguments: args })}]</TOOLCALL> Done.`;
    const pieces = body.match(/.{1,3}/gsu) ?? [];
    expect(normalise(run(pieces))).toEqual([text('Calling now. '), call('big', args), text(' Done.')]);
  });
});
