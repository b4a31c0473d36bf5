import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { ChatTemplate, validateMessages, type ChatMessage, type ToolDefinition } from '../../lib/chat/template.js';
import { InvalidArgumentError, NemotronError, TemplateError } from '../../lib/errors.js';
import { makeTinyModel } from '../../lib/tiny-model/index.js';
import { CHAT_TEMPLATE } from '../../lib/tiny-model/tokenizer.js';

const SYS = '<SPECIAL_10>System\n';
const USER = '<SPECIAL_11>User\n';
const ASSISTANT = '<SPECIAL_11>Assistant\n';
const END = '\n<SPECIAL_12>\n';
const ON = '<think>\n';
const OFF = '<think></think>';

const TOOL_INSTRUCTIONS =
  'To call tools, reply with one list in this format:\n' +
  '<TOOLCALL>[{"name": "first_tool", "arguments": {"arg": "value"}}, {"name": "second_tool", "arguments": {}}]</TOOLCALL>\n\n' +
  'Tool results come back in a user turn in this format:\n' +
  '<TOOL_RESPONSE>[first_result, second_result]</TOOL_RESPONSE>\n\n' +
  'After reading the results you may call more tools, fix a failed call, or answer the user.';

const weather: ToolDefinition = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Current weather',
    parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
  },
};
const clock: ToolDefinition = { type: 'function', function: { name: 'get_time' } };

const WEATHER_JSON =
  '{"name": "get_weather", "description": "Current weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}';

const tpl = new ChatTemplate(CHAT_TEMPLATE);

function catchError(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  throw new Error('expected an error');
}

function expectTemplateError(fn: () => unknown, message: RegExp): void {
  const e = catchError(fn);
  expect(e).toBeInstanceOf(TemplateError);
  expect(e).toBeInstanceOf(NemotronError);
  expect((e as TemplateError).code).toBe('ERR_TEMPLATE');
  expect((e as TemplateError).name).toBe('TemplateError');
  expect((e as Error).message).toMatch(message);
}

function expectInvalid(fn: () => unknown, message: RegExp): void {
  const e = catchError(fn);
  expect(e).toBeInstanceOf(InvalidArgumentError);
  expect((e as InvalidArgumentError).code).toBe('ERR_INVALID_ARGUMENT');
  expect((e as Error).message).toMatch(message);
}

describe('ChatTemplate.render on the tiny model template', () => {
  it('plain user turn, reasoning on', () => {
    const out = tpl.render([{ role: 'user', content: 'Hello' }], { reasoning: true });
    expect(out).toBe(`${SYS}\n${USER}Hello\n${ASSISTANT}${ON}`);
    expect(out.endsWith('<think>\n')).toBe(true);
  });

  it('plain user turn, reasoning off', () => {
    const out = tpl.render([{ role: 'user', content: 'Hello' }], { reasoning: false });
    expect(out).toBe(`${SYS}\n${USER}Hello\n${ASSISTANT}${OFF}`);
    expect(out.endsWith('<think></think>')).toBe(true);
  });

  it('reasoning undefined follows the template default and the keywords in the messages', () => {
    expect(tpl.render([{ role: 'user', content: 'Hello' }])).toBe(`${SYS}\n${USER}Hello\n${ASSISTANT}${ON}`);
    expect(tpl.render([{ role: 'user', content: 'Hello /no_think' }])).toBe(`${SYS}\n${USER}Hello\n${ASSISTANT}${OFF}`);
    expect(
      tpl.render([
        { role: 'system', content: 'Short. /no_think' },
        { role: 'user', content: 'a' },
        { role: 'assistant', content: 'b' },
        { role: 'user', content: 'c /think' },
      ]),
    ).toBe(`${SYS}Short.\n${USER}a\n${ASSISTANT}b${END}${USER}c\n${ASSISTANT}${ON}`);
  });

  it('the reasoning option wins over keywords in the messages, and renders the same text', () => {
    const msgs: ChatMessage[] = [
      { role: 'system', content: 'Be brief. /think' },
      { role: 'user', content: 'Hi /no_think there' },
    ];
    const on = tpl.render(msgs, { reasoning: true });
    expect(on).toBe(`${SYS}Be brief.\n${USER}Hi  there\n${ASSISTANT}${ON}`);
    const off = tpl.render([{ role: 'user', content: 'x /think' }], { reasoning: false });
    expect(off).toBe(`${SYS}\n${USER}x\n${ASSISTANT}${OFF}`);
    // a system message of its own is used (the keyword goes at its end)
    expect(tpl.render([{ role: 'system', content: 'S' }, { role: 'user', content: 'u' }], { reasoning: false })).toBe(
      `${SYS}S\n${USER}u\n${ASSISTANT}${OFF}`,
    );
    expect(tpl.render([{ role: 'system', content: '' }, { role: 'user', content: 'u' }], { reasoning: false })).toBe(
      `${SYS}\n${USER}u\n${ASSISTANT}${OFF}`,
    );
  });

  it('does not modify the caller’s messages', () => {
    const msgs: ChatMessage[] = [
      { role: 'user', content: 'Hi /think' },
      { role: 'assistant', content: '', reasoning: 'r' },
    ];
    const copy = structuredClone(msgs);
    tpl.render(msgs, { reasoning: false, continueFinalMessage: true });
    expect(msgs).toEqual(copy);
  });

  it('system message with tools', () => {
    const out = tpl.render(
      [
        { role: 'system', content: 'You are helpful.' },
        { role: 'user', content: 'Weather in Paris?' },
      ],
      { tools: [weather, clock], reasoning: false },
    );
    expect(out).toBe(
      `${SYS}You are helpful.\n\nYou can use the following tools to assist the user if required:\n` +
        `<AVAILABLE_TOOLS>[${WEATHER_JSON}, {"name": "get_time"}]</AVAILABLE_TOOLS>\n\n` +
        TOOL_INSTRUCTIONS +
        `\n${USER}Weather in Paris?\n${ASSISTANT}${OFF}`,
    );
  });

  it('tools without a system message; an empty tools list renders no tools block', () => {
    expect(tpl.render([{ role: 'user', content: 'q' }], { tools: [clock] })).toBe(
      `${SYS}You can use the following tools to assist the user if required:\n` +
        `<AVAILABLE_TOOLS>[{"name": "get_time"}]</AVAILABLE_TOOLS>\n\n${TOOL_INSTRUCTIONS}\n${USER}q\n${ASSISTANT}${ON}`,
    );
    expect(tpl.render([{ role: 'user', content: 'q' }], { tools: [] })).toBe(`${SYS}\n${USER}q\n${ASSISTANT}${ON}`);
  });

  it('multi-turn: the assistant’s earlier reasoning is not rendered', () => {
    const out = tpl.render([
      { role: 'system', content: 'S' },
      { role: 'user', content: 'q1' },
      { role: 'assistant', content: 'A1', reasoning: 'secret thoughts 1' },
      { role: 'user', content: 'q2' },
      { role: 'assistant', content: '<think>\nsecret thoughts 2\n</think>\n\nA2 ' },
      { role: 'user', content: 'q3' },
    ]);
    expect(out).toBe(`${SYS}S\n${USER}q1\n${ASSISTANT}A1${END}${USER}q2\n${ASSISTANT}A2${END}${USER}q3\n${ASSISTANT}${ON}`);
    expect(out).not.toContain('secret');
  });

  it('tool calls and tool responses', () => {
    const out = tpl.render(
      [
        { role: 'user', content: 'Weather in Paris and the time?' },
        {
          role: 'assistant',
          content: '',
          reasoning: 'I should call two tools.',
          toolCalls: [
            { name: 'get_weather', arguments: { city: 'Paris' } },
            { name: 'get_time', arguments: {} },
          ],
        },
        { role: 'tool', content: '{"temp": 20, "sky": "☀️"}' },
        { role: 'tool', content: '12:00' },
        { role: 'assistant', content: 'Sunny, 20 °C; it is noon.' },
        { role: 'user', content: 'Thanks! 🙂' },
      ],
      { tools: [weather, clock] },
    );
    expect(out).toBe(
      `${SYS}You can use the following tools to assist the user if required:\n` +
        `<AVAILABLE_TOOLS>[${WEATHER_JSON}, {"name": "get_time"}]</AVAILABLE_TOOLS>\n\n${TOOL_INSTRUCTIONS}\n` +
        `${USER}Weather in Paris and the time?\n` +
        `${ASSISTANT}<TOOLCALL>[{"name": "get_weather", "arguments": {"city": "Paris"}}, {"name": "get_time", "arguments": {}}]</TOOLCALL>${END}` +
        `${USER}<TOOL_RESPONSE>[{"temp": 20, "sky": "☀️"}, 12:00]</TOOL_RESPONSE>\n` +
        `${ASSISTANT}Sunny, 20 °C; it is noon.${END}` +
        `${USER}Thanks! 🙂\n${ASSISTANT}${ON}`,
    );
  });

  it('assistant text before a tool call is kept on its own line', () => {
    const out = tpl.render([
      { role: 'user', content: 'u' },
      { role: 'assistant', content: 'Let me check.', toolCalls: [{ name: 'f', arguments: { 'ключ': 'значение 😀' } }] },
      { role: 'tool', content: 'r' },
    ]);
    expect(out).toBe(
      `${SYS}\n${USER}u\n${ASSISTANT}Let me check.\n<TOOLCALL>[{"name": "f", "arguments": {"ключ": "значение 😀"}}]</TOOLCALL>${END}` +
        `${USER}<TOOL_RESPONSE>[r]</TOOL_RESPONSE>\n${ASSISTANT}${ON}`,
    );
  });

  it('continueFinalMessage continues a partial answer', () => {
    const msgs: ChatMessage[] = [
      { role: 'user', content: 'hi' },
      { role: 'assistant', content: 'Hello! I am' },
    ];
    expect(tpl.render(msgs, { continueFinalMessage: true })).toBe(`${SYS}\n${USER}hi\n${ASSISTANT}${ON}Hello! I am`);
    expect(tpl.render(msgs, { continueFinalMessage: true, reasoning: false })).toBe(`${SYS}\n${USER}hi\n${ASSISTANT}${OFF}Hello! I am`);
    // without continuing, the same messages close the assistant turn
    expect(tpl.render(msgs, { addGenerationPrompt: false })).toBe(`${SYS}\n${USER}hi\n${ASSISTANT}${ON}Hello! I am${END}`);
  });

  it('continueFinalMessage with reasoning: continue the trace, or the answer after it', () => {
    const inTrace: ChatMessage[] = [
      { role: 'user', content: 'q' },
      { role: 'assistant', content: '', reasoning: 'Let me think. 🤔' },
    ];
    expect(tpl.render(inTrace, { continueFinalMessage: true })).toBe(`${SYS}\n${USER}q\n${ASSISTANT}${ON}Let me think. 🤔`);
    const afterTrace: ChatMessage[] = [
      { role: 'user', content: 'q' },
      { role: 'assistant', content: 'The answer', reasoning: 'Done thinking.' },
    ];
    expect(tpl.render(afterTrace, { continueFinalMessage: true })).toBe(
      `${SYS}\n${USER}q\n${ASSISTANT}${ON}Done thinking.\n</think>\n\nThe answer`,
    );
    // reasoning off: the trace is not rendered
    expect(tpl.render(afterTrace, { continueFinalMessage: true, reasoning: false })).toBe(
      `${SYS}\n${USER}q\n${ASSISTANT}${OFF}The answer`,
    );
    // the budget-control shape: the trace closed by the caller, the answer to be generated
    expect(
      tpl.render([{ role: 'user', content: 'q' }, { role: 'assistant', content: 'Enough.\n</think>\n\n' }], {
        continueFinalMessage: true,
      }),
    ).toBe(`${SYS}\n${USER}q\n${ASSISTANT}${ON}Enough.\n</think>\n\n`);
  });

  it('continueFinalMessage cuts what a template renders after the final message (as HF does)', () => {
    const closing = new ChatTemplate(
      "{% for m in messages %}[{{ m['role'] }}]{{ m['content'] }}{{ eos_token }}\n{% endfor %}",
    );
    const msgs: ChatMessage[] = [
      { role: 'user', content: 'a' },
      { role: 'assistant', content: 'partial ' },
    ];
    expect(closing.render(msgs, { eosToken: '</s>', addGenerationPrompt: false })).toBe('[user]a</s>\n[assistant]partial </s>\n');
    expect(closing.render(msgs, { eosToken: '</s>', continueFinalMessage: true })).toBe('[user]a</s>\n[assistant]partial ');
    const trimming = new ChatTemplate("{% for m in messages %}[{{ m['role'] }}]{{ m['content'] | trim }}<end>{% endfor %}");
    expect(trimming.render(msgs, { continueFinalMessage: true })).toBe('[user]a<end>[assistant]partial');
  });

  it('continueFinalMessage errors: not an assistant last, or together with addGenerationPrompt', () => {
    expectInvalid(() => tpl.render([{ role: 'user', content: 'x' }], { continueFinalMessage: true }), /assistant message last.*"user".*messages\[0\]/);
    expectInvalid(
      () =>
        tpl.render(
          [
            { role: 'user', content: 'x' },
            { role: 'assistant', content: 'y' },
          ],
          { continueFinalMessage: true, addGenerationPrompt: true },
        ),
      /continueFinalMessage and options\.addGenerationPrompt/,
    );
    const dropping = new ChatTemplate("{% for m in messages %}{% if m['role'] == 'user' %}{{ m['content'] }}{% endif %}{% endfor %}");
    expectTemplateError(
      () =>
        dropping.render(
          [
            { role: 'user', content: 'x' },
            { role: 'assistant', content: 'never rendered' },
          ],
          { continueFinalMessage: true },
        ),
      /final message/,
    );
  });

  it('passes add_generation_prompt, bos_token, eos_token, tools and messages as HF does', () => {
    const probe = new ChatTemplate(
      "{{ bos_token }}|{{ eos_token }}|{{ add_generation_prompt }}|{{ continue_final_message }}|{{ tools is defined }}|" +
        "{% for m in messages %}{{ m['role'] }}:{{ m['content'] }}" +
        "{% if m['tool_calls'] is defined %}{{ m['tool_calls'] | tojson }}{% endif %}" +
        "{% if m['reasoning_content'] is defined %}<r:{{ m['reasoning_content'] }}>{% endif %};{% endfor %}",
    );
    const msgs: ChatMessage[] = [
      { role: 'user', content: 'u' },
      { role: 'assistant', content: 'a', reasoning: 'why', toolCalls: [{ name: 'f', arguments: { x: 1 } }] },
      { role: 'tool', content: 't' },
    ];
    expect(probe.render(msgs, { bosToken: '<s>', eosToken: '</s>' })).toBe(
      '<s>|</s>|true|false|false|user:u;assistant:a[{"type": "function", "function": {"name": "f", "arguments": {"x": 1}}}]<r:why>;tool:t;',
    );
    expect(probe.render(msgs, { addGenerationPrompt: false, tools: [clock] })).toBe(
      '||false|false|true|user:u;assistant:a[{"type": "function", "function": {"name": "f", "arguments": {"x": 1}}}]<r:why>;tool:t;',
    );
  });
});

describe('ChatTemplate.fromTokenizerConfig', () => {
  const tmpRoot = join(process.cwd(), 'test', '.tmp', `chat-template-${process.pid}`);
  let config: Record<string, unknown> = {};

  beforeAll(async () => {
    await mkdir(tmpRoot, { recursive: true });
    await makeTinyModel(tmpRoot);
    config = JSON.parse(await readFile(join(tmpRoot, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
  });
  afterAll(async () => {
    await rm(tmpRoot, { recursive: true, force: true });
  });

  it('reads the tiny model’s tokenizer_config.json, with its bos/eos tokens as defaults', () => {
    const t = ChatTemplate.fromTokenizerConfig(config);
    expect(t).not.toBeNull();
    const msgs: ChatMessage[] = [{ role: 'user', content: 'Hello' }];
    expect(t?.render(msgs, { reasoning: false })).toBe(tpl.render(msgs, { reasoning: false }));
    const withTokens = ChatTemplate.fromTokenizerConfig({ ...config, chat_template: '{{ bos_token }}{{ eos_token }}' });
    expect(withTokens?.render(msgs)).toBe('<s><SPECIAL_12>');
    expect(withTokens?.render(msgs, { bosToken: 'B' })).toBe('B<SPECIAL_12>');
  });

  it('accepts a list of named templates (picks "default"), a name map, and AddedToken objects', () => {
    const list = ChatTemplate.fromTokenizerConfig({
      chat_template: [
        { name: 'tool_use', template: 'tools' },
        { name: 'default', template: 'default:{{ bos_token }}' },
      ],
      bos_token: { __type: 'AddedToken', content: '<s>', special: true },
    });
    expect(list?.render([{ role: 'user', content: 'x' }])).toBe('default:<s>');
    const map = ChatTemplate.fromTokenizerConfig({ chat_template: { default: 'D', rag: 'R' } });
    expect(map?.render([{ role: 'user', content: 'x' }])).toBe('D');
  });

  it('returns null without a template, and rejects malformed ones', () => {
    expect(ChatTemplate.fromTokenizerConfig({ bos_token: '<s>' })).toBeNull();
    expect(ChatTemplate.fromTokenizerConfig({ chat_template: null })).toBeNull();
    expectInvalid(() => ChatTemplate.fromTokenizerConfig({ chat_template: [{ name: 'tool_use', template: 'x' }] }), /no template named "default".*tool_use/);
    expectInvalid(() => ChatTemplate.fromTokenizerConfig({ chat_template: [{ name: 'default' }] }), /chat_template\[0\]\.template must be a string/);
    expectInvalid(() => ChatTemplate.fromTokenizerConfig({ chat_template: 42 }), /chat_template must be a string or a list/);
    expectInvalid(() => ChatTemplate.fromTokenizerConfig({ chat_template: 'x', eos_token: 12 }), /eos_token/);
    expectTemplateError(() => ChatTemplate.fromTokenizerConfig({ chat_template: '{% if %}' }), /does not compile/);
  });
});

describe('TemplateError', () => {
  it('a Jinja syntax error throws at construction, naming the problem', () => {
    expectTemplateError(() => new ChatTemplate('{% for m in messages %}{{ m.content }}'), /does not compile: .+/);
    expectTemplateError(() => new ChatTemplate('{{ 1 + }}'), /does not compile: .*Unexpected token/);
    expectTemplateError(() => new ChatTemplate('{% if x %}unclosed'), /does not compile/);
  });

  it('a template that raises at render time', () => {
    const strict = new ChatTemplate(
      "{% for m in messages %}{% if m['role'] == 'tool' %}{{ raise_exception('tool messages are not supported') }}{% endif %}{{ m['content'] }}{% endfor %}",
    );
    expect(strict.render([{ role: 'user', content: 'ok' }])).toBe('ok');
    expectTemplateError(
      () => strict.render([{ role: 'user', content: 'a' }, { role: 'tool', content: 'b' }]),
      /failed to render: tool messages are not supported/,
    );
    const e = catchError(() => strict.render([{ role: 'tool', content: 'b' }])) as TemplateError;
    expect(e.cause).toBeInstanceOf(Error);
  });

  it('misuse of an undefined variable at render time', () => {
    const t = new ChatTemplate("{{ bos_token + messages[0]['content'] }}");
    expect(t.render([{ role: 'user', content: 'x' }], { bosToken: '<s>' })).toBe('<s>x');
    expectTemplateError(() => t.render([{ role: 'user', content: 'x' }]), /failed to render: .*undefined/);
  });

  it('a non-string source is an invalid argument', () => {
    expectInvalid(() => new ChatTemplate(42 as unknown as string), /chat template source must be a string/);
  });
});

describe('validateMessages', () => {
  it('returns a normalised copy of valid messages', () => {
    const input = [
      { role: 'system', content: 'S' },
      { role: 'user', content: 'U 🙂' },
      { role: 'assistant', content: '', toolCalls: [{ name: 'f', arguments: { a: [1] } }], reasoning: 'r' },
      { role: 'tool', content: 'T' },
      { role: 'assistant', content: 'A', toolCalls: undefined, reasoning: undefined },
    ];
    const out = validateMessages(input);
    expect(out).toEqual([
      { role: 'system', content: 'S' },
      { role: 'user', content: 'U 🙂' },
      { role: 'assistant', content: '', toolCalls: [{ name: 'f', arguments: { a: [1] } }], reasoning: 'r' },
      { role: 'tool', content: 'T' },
      { role: 'assistant', content: 'A' },
    ]);
    expect(Object.keys(out[4] as object)).toEqual(['role', 'content']);
    expect(out[2]).not.toBe(input[2]);
  });

  const bad: [string, unknown, RegExp][] = [
    ['not an array', { role: 'user', content: 'x' }, /^messages must be a non-empty array of messages, got a value of type object$/],
    ['empty array', [], /^messages must be a non-empty array of messages, got an array of length 0$/],
    ['a message that is not an object', [{ role: 'user', content: 'x' }, 'hi'], /^messages\[1\] must be an object, got "hi"$/],
    ['null message', [null], /^messages\[0\] must be an object, got null$/],
    ['unknown role', [{ role: 'bot', content: 'x' }], /^messages\[0\]\.role must be one of "system", "user", "assistant", "tool", got "bot"$/],
    ['missing role', [{ content: 'x' }], /^messages\[0\]\.role must be one of .*, got undefined$/],
    ['non-string content', [{ role: 'user', content: 'a' }, { role: 'user', content: 42 }], /^messages\[1\]\.content must be a string, got 42$/],
    // OpenAI's shape is accepted (lib/chat/openai.ts); what it cannot express here is refused naming the wire field
    ['null content on a user message', [{ role: 'user', content: null }], /^messages\[0\]\.content is required for role "user"$/],
    ['an image content part', [{ role: 'user', content: [{ type: 'text', text: 'x' }, { type: 'image_url', image_url: { url: 'u' } }] }], /^messages\[0\]\.content\[1\] has type "image_url": only text parts/],
    ['unknown field', [{ role: 'user', content: 'x', nickname: 'bob' }], /^messages\[0\] has an unknown field "nickname" \(known: role, content, toolCalls, reasoning\)$/],
    ['a function message', [{ role: 'function', name: 'f', content: 'x' }], /^messages\[0\]\.role "function" \(deprecated by OpenAI\) is not supported: use "tool"$/],
    ['tool_calls on a user message', [{ role: 'user', content: 'x', tool_calls: [] }], /^messages\[0\]\.tool_calls is only allowed on assistant messages$/],
    ['tool_calls arguments that are not JSON', [{ role: 'assistant', content: null, tool_calls: [{ id: 'c', type: 'function', function: { name: 'f', arguments: '{x' } }] }], /^messages\[0\]\.tool_calls\[0\]\.function\.arguments is not valid JSON/],
    ['both toolCalls and tool_calls', [{ role: 'assistant', content: '', toolCalls: [], tool_calls: [{ function: { name: 'f', arguments: '{}' } }] }], /^messages\[0\] has both toolCalls and tool_calls/],
    ['a custom (non-function) tool call', [{ role: 'assistant', content: '', tool_calls: [{ id: 'c', type: 'custom', custom: { name: 'f', input: 'x' } }] }], /^messages\[0\]\.tool_calls\[0\]\.function must be \{name, arguments\}/],
    ['system not first', [{ role: 'user', content: 'x' }, { role: 'system', content: 's' }], /^messages\[1\]\.role "system" is only allowed for the first message$/],
    ['toolCalls not an array', [{ role: 'assistant', content: '', toolCalls: { name: 'f', arguments: {} } }], /^messages\[0\]\.toolCalls must be an array of \{name, arguments\}, got a value of type object$/],
    ['toolCalls on a user message', [{ role: 'user', content: 'x', toolCalls: [] }], /^messages\[0\]\.toolCalls is only allowed on assistant messages, got role "user"$/],
    ['tool call not an object', [{ role: 'assistant', content: '', toolCalls: ['f'] }], /^messages\[0\]\.toolCalls\[0\] must be an object, got "f"$/],
    ['tool call without name', [{ role: 'assistant', content: '', toolCalls: [{ name: 'f', arguments: {} }, { arguments: {} }] }], /^messages\[0\]\.toolCalls\[1\]\.name must be a non-empty string, got undefined$/],
    ['tool call with empty name', [{ role: 'assistant', content: '', toolCalls: [{ name: '', arguments: {} }] }], /^messages\[0\]\.toolCalls\[0\]\.name must be a non-empty string, got ""$/],
    ['tool call arguments as a string', [{ role: 'assistant', content: '', toolCalls: [{ name: 'f', arguments: '{}' }] }], /^messages\[0\]\.toolCalls\[0\]\.arguments must be an object, got "\{\}"$/],
    ['tool call arguments array', [{ role: 'assistant', content: '', toolCalls: [{ name: 'f', arguments: [] }] }], /^messages\[0\]\.toolCalls\[0\]\.arguments must be an object, got an array of length 0$/],
    ['tool call arguments missing', [{ role: 'assistant', content: '', toolCalls: [{ name: 'f' }] }], /^messages\[0\]\.toolCalls\[0\]\.arguments must be an object, got undefined$/],
    ['tool call unknown field', [{ role: 'assistant', content: '', toolCalls: [{ name: 'f', arguments: {}, id: 'c1' }] }], /^messages\[0\]\.toolCalls\[0\] has an unknown field "id" \(known: name, arguments\)$/],
    ['OpenAI-shaped tool call', [{ role: 'assistant', content: '', toolCalls: [{ type: 'function', function: { name: 'f' } }] }], /^messages\[0\]\.toolCalls\[0\] has an unknown field "type"/],
    ['reasoning on a user message', [{ role: 'user', content: 'x', reasoning: 'r' }], /^messages\[0\]\.reasoning is only allowed on assistant messages, got role "user"$/],
    ['non-string reasoning', [{ role: 'assistant', content: 'x', reasoning: 1 }], /^messages\[0\]\.reasoning must be a string, got 1$/],
  ];

  it('accepts OpenAI\'s shape: developer, text parts, tool_calls, tool_call_id, name, reasoning_content', () => {
    const out = validateMessages([
      { role: 'developer', content: [{ type: 'text', text: 'S' }] },
      { role: 'user', content: 'U', name: 'bob' },
      { role: 'assistant', content: null, reasoning_content: 'r', tool_calls: [{ id: 'c1', type: 'function', function: { name: 'f', arguments: '{"a":[1]}' } }] },
      { role: 'tool', tool_call_id: 'c1', content: [{ type: 'text', text: 'T' }] },
      { role: 'assistant', content: 'A', tool_calls: [], refusal: null },
    ]);
    expect(out).toEqual([
      { role: 'system', content: 'S' },
      { role: 'user', content: 'U' },
      { role: 'assistant', content: '', toolCalls: [{ name: 'f', arguments: { a: [1] } }], reasoning: 'r' },
      { role: 'tool', content: 'T' },
      { role: 'assistant', content: 'A' },
    ]);
  });

  it.each(bad)('rejects %s', (_label, input, message) => {
    expectInvalid(() => validateMessages(input), message);
    // render applies the same checks
    expectInvalid(() => tpl.render(input as ChatMessage[]), message);
  });

  it('render rejects invalid options', () => {
    const msgs: ChatMessage[] = [{ role: 'user', content: 'x' }];
    expectInvalid(() => tpl.render(msgs, { thinking: true } as never), /options has an unknown field "thinking"/);
    expectInvalid(() => tpl.render(msgs, { reasoning: 'yes' } as never), /options\.reasoning must be a boolean, got "yes"/);
    expectInvalid(() => tpl.render(msgs, { bosToken: 1 } as never), /options\.bosToken must be a string/);
    expectInvalid(() => tpl.render(msgs, { tools: {} } as never), /options\.tools must be an array/);
    expectInvalid(() => tpl.render(msgs, { tools: [{ name: 'f' }] } as never), /options\.tools\[0\]\.type must be "function"/);
    expectInvalid(() => tpl.render(msgs, { tools: [{ type: 'function', function: {} }] } as never), /options\.tools\[0\]\.function\.name must be a non-empty string/);
    expectInvalid(
      () => tpl.render(msgs, { tools: [{ type: 'function', function: { name: 'f', parameters: 'x' } }] } as never),
      /options\.tools\[0\]\.function\.parameters must be an object/,
    );
  });
});
