/**
 * Chat templates: turns a list of chat messages into the prompt text a Nemotron Nano 2 model expects, by running
 * the checkpoint's own Jinja chat template (tokenizer_config.json `chat_template`) with @huggingface/jinja, the
 * way Hugging Face `apply_chat_template` does (docs/architecture.md §6).
 *
 * Template variables, as HF passes them:
 *   messages               [{role, content, tool_calls?: [{type: 'function', function: {name, arguments}}],
 *                            reasoning_content?}]  (tool-call `arguments` stay objects; the template serialises them)
 *   tools                  the ToolDefinition list (OpenAI shape), or undefined when none / empty
 *   add_generation_prompt  RenderOptions.addGenerationPrompt (default: true, or false with continueFinalMessage)
 *   continue_final_message RenderOptions.continueFinalMessage (default false)
 *   bos_token, eos_token   RenderOptions.bosToken/eosToken, else the tokenizer config's (fromTokenizerConfig),
 *                          else undefined
 *   raise_exception(msg)   provided by @huggingface/jinja; throws, surfaced here as TemplateError
 */
import { Template } from '@huggingface/jinja';

import { InvalidArgumentError, TemplateError } from '../errors.js';
import { assertObject, invalid } from '../validate.js';
import type { ChatMessage, Role, ToolDefinition } from './messages.js';
import { fromOpenAIMessages } from './openai.js';

export type { ChatMessage, Role, ToolCall, ToolDefinition } from './messages.js';

export interface RenderOptions {
  /** true => '/think', false => '/no_think', undefined => the template's default (or keywords in the messages). */
  reasoning?: boolean;
  tools?: ToolDefinition[];
  /** Default true (false when continueFinalMessage is set; both true is an error). */
  addGenerationPrompt?: boolean;
  continueFinalMessage?: boolean;
  bosToken?: string;
  eosToken?: string;
}

export const THINK_KEYWORD = '/think';
export const NO_THINK_KEYWORD = '/no_think';

const ROLES: readonly Role[] = ['system', 'user', 'assistant', 'tool'];
const MESSAGE_FIELDS = ['role', 'content', 'toolCalls', 'reasoning'] as const;
const TOOL_CALL_FIELDS = ['name', 'arguments'] as const;
const RENDER_OPTIONS = ['reasoning', 'tools', 'addGenerationPrompt', 'continueFinalMessage', 'bosToken', 'eosToken'] as const;

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function unknownField(where: string, key: string, known: readonly string[]): InvalidArgumentError {
  return new InvalidArgumentError(
    'ERR_INVALID_ARGUMENT',
    `${where} has an unknown field ${JSON.stringify(key)} (known: ${known.join(', ')})`,
  );
}

function checkKnown(where: string, value: Record<string, unknown>, known: readonly string[]): void {
  for (const key of Object.keys(value)) if (!(known as readonly string[]).includes(key)) throw unknownField(where, key, known);
}

/**
 * Checks untrusted input and returns a fresh, normalised copy (fields set to undefined are dropped).
 * Throws InvalidArgumentError (ERR_INVALID_ARGUMENT) naming the message index and field for: a non-array or empty
 * array, a message that is not an object, an unknown field, an unknown role, non-string content, a system message
 * anywhere but first (the Nemotron template would drop it), `toolCalls` or `reasoning` on a non-assistant message,
 * `toolCalls` that is not an array of `{name: non-empty string, arguments: object}` (no other fields), and a
 * non-string `reasoning`.
 */
export function validateMessages(input: unknown): ChatMessage[] {
  if (!Array.isArray(input)) throw invalid('messages', 'a non-empty array of messages', input);
  if (input.length === 0) throw invalid('messages', 'a non-empty array of messages', input);
  // OpenAI's shape (developer role, content parts, tool_calls, reasoning_content) is converted first (openai.ts).
  const messages = fromOpenAIMessages(input);
  const out: ChatMessage[] = [];
  messages.forEach((m: unknown, i: number) => {
    const where = `messages[${i}]`;
    assertObject(where, m);
    checkKnown(where, m, MESSAGE_FIELDS);
    const role = m['role'];
    if (typeof role !== 'string' || !(ROLES as readonly string[]).includes(role)) {
      throw invalid(`${where}.role`, `one of ${ROLES.map((r) => `"${r}"`).join(', ')}`, role);
    }
    if (role === 'system' && i !== 0) {
      throw new InvalidArgumentError('ERR_INVALID_ARGUMENT', `${where}.role "system" is only allowed for the first message`);
    }
    const content = m['content'];
    if (typeof content !== 'string') throw invalid(`${where}.content`, 'a string', content);
    const msg: ChatMessage = { role: role as Role, content };

    const toolCalls = m['toolCalls'];
    if (toolCalls !== undefined) {
      if (role !== 'assistant') {
        throw new InvalidArgumentError('ERR_INVALID_ARGUMENT', `${where}.toolCalls is only allowed on assistant messages, got role "${role}"`);
      }
      if (!Array.isArray(toolCalls)) throw invalid(`${where}.toolCalls`, 'an array of {name, arguments}', toolCalls);
      msg.toolCalls = toolCalls.map((c: unknown, j: number) => {
        const cw = `${where}.toolCalls[${j}]`;
        assertObject(cw, c);
        checkKnown(cw, c, TOOL_CALL_FIELDS);
        const name = c['name'];
        if (typeof name !== 'string' || name === '') throw invalid(`${cw}.name`, 'a non-empty string', name);
        const args = c['arguments'];
        if (!isPlainObject(args)) throw invalid(`${cw}.arguments`, 'an object', args);
        return { name, arguments: args };
      });
    }

    const reasoning = m['reasoning'];
    if (reasoning !== undefined) {
      if (role !== 'assistant') {
        throw new InvalidArgumentError('ERR_INVALID_ARGUMENT', `${where}.reasoning is only allowed on assistant messages, got role "${role}"`);
      }
      if (typeof reasoning !== 'string') throw invalid(`${where}.reasoning`, 'a string', reasoning);
      msg.reasoning = reasoning;
    }
    out.push(msg);
  });
  return out;
}

function validateRenderOptions(options: unknown): RenderOptions {
  if (options === undefined) return {};
  assertObject('options', options);
  checkKnown('options', options, RENDER_OPTIONS);
  const out: RenderOptions = {};
  for (const key of ['reasoning', 'addGenerationPrompt', 'continueFinalMessage'] as const) {
    const v = options[key];
    if (v === undefined) continue;
    if (typeof v !== 'boolean') throw invalid(`options.${key}`, 'a boolean', v);
    out[key] = v;
  }
  for (const key of ['bosToken', 'eosToken'] as const) {
    const v = options[key];
    if (v === undefined) continue;
    if (typeof v !== 'string') throw invalid(`options.${key}`, 'a string', v);
    out[key] = v;
  }
  const tools = options['tools'];
  if (tools !== undefined) {
    if (!Array.isArray(tools)) throw invalid('options.tools', 'an array of tool definitions', tools);
    tools.forEach((t: unknown, i: number) => {
      const where = `options.tools[${i}]`;
      assertObject(where, t);
      if (t['type'] !== 'function') throw invalid(`${where}.type`, '"function"', t['type']);
      const fn = t['function'];
      assertObject(`${where}.function`, fn);
      if (typeof fn['name'] !== 'string' || fn['name'] === '') throw invalid(`${where}.function.name`, 'a non-empty string', fn['name']);
      if (fn['description'] !== undefined && typeof fn['description'] !== 'string') {
        throw invalid(`${where}.function.description`, 'a string', fn['description']);
      }
      if (fn['parameters'] !== undefined && !isPlainObject(fn['parameters'])) {
        throw invalid(`${where}.function.parameters`, 'an object', fn['parameters']);
      }
    });
    out.tools = tools as ToolDefinition[];
  }
  return out;
}

/** Deletes the reasoning keywords exactly as the Nemotron template does (`.replace('/think', '').replace('/no_think', '')`). */
function deleteKeywords(text: string): string {
  return text.split(THINK_KEYWORD).join('').split(NO_THINK_KEYWORD).join('');
}

/**
 * Reasoning state the Nemotron template derives from the messages: system and user messages scanned in order, a
 * message whose text after its last '/no_think' contains '/think' turns it on, else one containing '/no_think' turns
 * it off; the last such message wins; default on.
 */
export function reasoningFromKeywords(messages: readonly ChatMessage[]): boolean {
  let on = true;
  for (const m of messages) {
    if (m.role !== 'system' && m.role !== 'user') continue;
    const tail = m.content.split(NO_THINK_KEYWORD).pop() ?? '';
    if (tail.includes(THINK_KEYWORD)) on = true;
    else if (m.content.includes(NO_THINK_KEYWORD)) on = false;
  }
  return on;
}

function tokenString(value: unknown, field: string): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'string') return value;
  if (isPlainObject(value) && typeof value['content'] === 'string') return value['content']; // serialised AddedToken
  throw invalid(`tokenizer config ${field}`, 'a string or {content: string}', value);
}

function describeError(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

export class ChatTemplate {
  readonly source: string;
  private readonly compiled: Template;
  private readonly defaults: { bosToken?: string; eosToken?: string };

  /**
   * Compiles the template once. A Jinja syntax error throws TemplateError (ERR_TEMPLATE) with the parser's message.
   * `defaults` supplies bos_token/eos_token when a render call does not (fromTokenizerConfig fills them in).
   */
  constructor(source: string, defaults: { bosToken?: string; eosToken?: string } = {}) {
    if (typeof source !== 'string') throw invalid('chat template source', 'a string', source);
    this.source = source;
    this.defaults = { ...defaults };
    try {
      this.compiled = new Template(source);
    } catch (e) {
      throw new TemplateError(`chat template does not compile: ${describeError(e)}`, { cause: e });
    }
  }

  /**
   * Renders the prompt text. Messages are checked with validateMessages and options likewise (InvalidArgumentError).
   *
   * Reasoning (`options.reasoning` set): the option decides, whatever the messages say. '/think' and '/no_think' are
   * deleted from system and user messages (the Nemotron template deletes them from the rendered text anyway, so the
   * text is unchanged) and ' /think' or ' /no_think' is appended to the system message (one with empty content is
   * created first when there is none; Nemotron renders it as the empty system block it renders without one).
   *
   * Trailing assistant message (a prefill the model continues): when it has `reasoning` and reasoning is on
   * (the option, else the messages' keywords), its content becomes `reasoning + '\n</think>\n\n' + content`, or just
   * `reasoning` when content is '' and continueFinalMessage is set (the model continues the reasoning); the template
   * has already emitted `<think>\n`. With reasoning off the reasoning is not rendered. Earlier assistant messages
   * pass `reasoning` as `reasoning_content`; the Nemotron template ignores it (history shows answers only).
   *
   * continueFinalMessage: the last message must be an assistant message; as HF does, the output is cut right after
   * that message's content so the model continues it (templates that close the turn anyway still work).
   *
   * Any error raised while rendering throws TemplateError (ERR_TEMPLATE) with the engine's message.
   */
  render(messages: ChatMessage[], options?: RenderOptions): string {
    const msgs = validateMessages(messages);
    const opts = validateRenderOptions(options);
    const continueFinal = opts.continueFinalMessage ?? false;
    const addGenerationPrompt = opts.addGenerationPrompt ?? !continueFinal;
    if (continueFinal && addGenerationPrompt) {
      throw new InvalidArgumentError(
        'ERR_INVALID_ARGUMENT',
        'options.continueFinalMessage and options.addGenerationPrompt cannot both be true',
      );
    }
    const last = msgs[msgs.length - 1] as ChatMessage;
    if (continueFinal && last.role !== 'assistant') {
      throw new InvalidArgumentError(
        'ERR_INVALID_ARGUMENT',
        `options.continueFinalMessage needs an assistant message last, got role "${last.role}" at messages[${msgs.length - 1}]`,
      );
    }

    let working: ChatMessage[] = msgs;
    if (opts.reasoning !== undefined) {
      const flag = opts.reasoning ? THINK_KEYWORD : NO_THINK_KEYWORD;
      working = msgs.map((m) => (m.role === 'system' || m.role === 'user' ? { ...m, content: deleteKeywords(m.content) } : m));
      const first = working[0] as ChatMessage;
      if (first.role === 'system') {
        working[0] = { ...first, content: first.content === '' ? flag : `${first.content} ${flag}` };
      } else {
        working.unshift({ role: 'system', content: flag });
      }
    }
    const thinking = opts.reasoning ?? reasoningFromKeywords(msgs);

    const lastIndex = working.length - 1;
    let finalContent = last.content;
    const templateMessages = working.map((m, i) => {
      const out: Record<string, unknown> = { role: m.role, content: m.content };
      if (m.toolCalls !== undefined && m.toolCalls.length > 0) {
        out['tool_calls'] = m.toolCalls.map((c) => ({ type: 'function', function: { name: c.name, arguments: c.arguments } }));
      }
      if (m.reasoning !== undefined) {
        out['reasoning_content'] = m.reasoning;
        if (i === lastIndex && thinking) {
          out['content'] = continueFinal && m.content === '' ? m.reasoning : `${m.reasoning}\n</think>\n\n${m.content}`;
        }
      }
      if (i === lastIndex) finalContent = out['content'] as string;
      return out;
    });

    const context: Record<string, unknown> = {
      messages: templateMessages,
      add_generation_prompt: addGenerationPrompt,
      continue_final_message: continueFinal,
    };
    if (opts.tools !== undefined && opts.tools.length > 0) context['tools'] = opts.tools;
    const bos = opts.bosToken ?? this.defaults.bosToken;
    const eos = opts.eosToken ?? this.defaults.eosToken;
    if (bos !== undefined) context['bos_token'] = bos;
    if (eos !== undefined) context['eos_token'] = eos;

    let rendered: string;
    try {
      rendered = this.compiled.render(context);
    } catch (e) {
      throw new TemplateError(`chat template failed to render: ${describeError(e)}`, { cause: e });
    }

    if (continueFinal) rendered = cutAfterFinalMessage(rendered, finalContent);
    return rendered;
  }

  /**
   * The template in a tokenizer_config.json object, or null when it has none. `chat_template` may be a string, a
   * list of `{name, template}` (the one named 'default' is used) or an object of name -> template. bos_token and
   * eos_token (strings or serialised AddedTokens) become the render defaults. A list/object without a 'default'
   * entry, or entries of the wrong type, throw InvalidArgumentError; a template that does not compile, TemplateError.
   */
  static fromTokenizerConfig(config: Record<string, unknown>): ChatTemplate | null {
    assertObject('tokenizer config', config);
    const raw = config['chat_template'];
    if (raw === undefined || raw === null) return null;
    let source: string;
    if (typeof raw === 'string') {
      source = raw;
    } else if (Array.isArray(raw)) {
      const names: string[] = [];
      let found: string | undefined;
      raw.forEach((entry: unknown, i: number) => {
        assertObject(`tokenizer config chat_template[${i}]`, entry);
        const name = entry['name'];
        const template = entry['template'];
        if (typeof name !== 'string') throw invalid(`tokenizer config chat_template[${i}].name`, 'a string', name);
        if (typeof template !== 'string') throw invalid(`tokenizer config chat_template[${i}].template`, 'a string', template);
        names.push(name);
        if (name === 'default' && found === undefined) found = template;
      });
      if (found === undefined) {
        throw new InvalidArgumentError(
          'ERR_INVALID_ARGUMENT',
          `tokenizer config chat_template has no template named "default" (has: ${names.join(', ') || 'none'})`,
        );
      }
      source = found;
    } else if (isPlainObject(raw)) {
      const template = raw['default'];
      if (typeof template !== 'string') {
        throw new InvalidArgumentError(
          'ERR_INVALID_ARGUMENT',
          `tokenizer config chat_template has no template named "default" (has: ${Object.keys(raw).join(', ') || 'none'})`,
        );
      }
      source = template;
    } else {
      throw invalid('tokenizer config chat_template', 'a string or a list of {name, template}', raw);
    }
    const defaults: { bosToken?: string; eosToken?: string } = {};
    const bos = tokenString(config['bos_token'], 'bos_token');
    const eos = tokenString(config['eos_token'], 'eos_token');
    if (bos !== undefined) defaults.bosToken = bos;
    if (eos !== undefined) defaults.eosToken = eos;
    return new ChatTemplate(source, defaults);
  }
}

/**
 * HF `continue_final_message`: cut the rendered text right after the last occurrence of the final message's content
 * (leading whitespace ignored; trailing whitespace kept only if the template kept it).
 */
function cutAfterFinalMessage(rendered: string, content: string): string {
  const stripped = content.trim();
  if (stripped === '') return rendered;
  const at = rendered.lastIndexOf(stripped);
  if (at < 0) {
    throw new TemplateError(
      'continueFinalMessage is set but the chat template did not render the final message content verbatim',
    );
  }
  const lstripped = content.trimStart();
  if (rendered.startsWith(lstripped, at)) return rendered.slice(0, at + lstripped.length);
  return rendered.slice(0, at + stripped.length);
}
