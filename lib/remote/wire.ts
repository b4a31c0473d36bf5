/**
 * What a remote request puts on the wire (OpenAI's chat and completions shapes as vLLM reads them) and
 * what the parts of a RemoteModel need from it: shared by model.ts, chat.ts and budget.ts, so that
 * those import this file and not each other.
 */
import type { ChatMessage } from '../chat/template.js';
import { SAMPLING_DEFAULTS, stopList, type GenerateOptions, type GenerateResult, type StreamEvent } from '../generation.js';
import * as v from '../validate.js';

/** GenerateOptions plus the session id a stateless call is routed and logged by. */
export interface RemoteGenerateOptions extends GenerateOptions {
  /** Sent as `x-session-id` and `user`; the endpoint is chosen by it. Default: a fresh id per call. */
  sessionId?: string;
}

/** What a RemoteChat needs of its model (implemented by RemoteModel). */
export interface RemoteTextGenerator {
  generate(options: RemoteGenerateOptions): Promise<GenerateResult>;
  stream(options: RemoteGenerateOptions): AsyncGenerator<StreamEvent, void, undefined>;
}

/** What the thinking-budget loop needs of its model (implemented by RemoteModel): the model id and a POST that fails over. */
export interface RemoteCompletions {
  readonly info: { readonly model: string };
  postWithFailover<T>(path: string, body: unknown, route: RoutedRequest): Promise<T>;
}

export interface RoutedRequest {
  /** The rendezvous key. */
  key: string;
  /** The session id to send (header and `user`), if any. */
  sessionId: string | undefined;
  signal: AbortSignal | undefined;
}

type WireSampling = Record<string, unknown>;

/** The sampling fields of a request, with the local engine's defaults filled in. */
export function wireSampling(o: GenerateOptions, reasoningOn: boolean): WireSampling {
  const d = reasoningOn ? SAMPLING_DEFAULTS.reasoning : SAMPLING_DEFAULTS.plain;
  const w: WireSampling = {
    max_tokens: v.optionalInteger('options.maxTokens', o.maxTokens, 1) ?? d.maxTokens,
    temperature: v.optionalNumber('options.temperature', o.temperature, (x) => x >= 0, 'a number >= 0') ?? d.temperature,
    top_p: v.optionalNumber('options.topP', o.topP, (x) => x > 0 && x <= 1, 'a number in (0, 1]') ?? d.topP,
  };
  const topK = v.optionalInteger('options.topK', o.topK, 0);
  if (topK !== undefined && topK > 0) w['top_k'] = topK;
  const minP = v.optionalNumber('options.minP', o.minP, (x) => x >= 0 && x < 1, 'a number in [0, 1)');
  if (minP !== undefined && minP > 0) w['min_p'] = minP;
  const rep = v.optionalNumber('options.repetitionPenalty', o.repetitionPenalty, (x) => x > 0, 'a number > 0');
  if (rep !== undefined && rep !== 1) w['repetition_penalty'] = rep;
  const pres = v.optionalNumber('options.presencePenalty', o.presencePenalty, (x) => x >= -2 && x <= 2, 'a number in [-2, 2]');
  if (pres) w['presence_penalty'] = pres;
  const freq = v.optionalNumber('options.frequencyPenalty', o.frequencyPenalty, (x) => x >= -2 && x <= 2, 'a number in [-2, 2]');
  if (freq) w['frequency_penalty'] = freq;
  if (o.logitBias !== undefined) {
    v.assertObject('options.logitBias', o.logitBias);
    const bias: Record<string, number> = {};
    for (const [k, val] of Object.entries(o.logitBias)) bias[k] = Math.max(-100, Math.min(100, val));
    w['logit_bias'] = bias;
  }
  const seed = v.optionalInteger('options.seed', o.seed, 0);
  if (seed !== undefined) w['seed'] = seed;
  const stop = stopList(o.stop);
  if (stop.length > 0) w['stop'] = stop;
  return w;
}

/**
 * Nano 2's reasoning switch as the local template applies it (ChatTemplate.render): '/think' and
 * '/no_think' deleted from system and user messages, ' /think' or ' /no_think' appended to the system
 * message (created when missing). The server's template then renders exactly the local prompt, and an
 * engine that knows nothing of a `reasoning` flag (vLLM, SGLang, NIM) still gets the switch.
 */
export function withReasoningKeyword(messages: ChatMessage[], reasoning: boolean | undefined): ChatMessage[] {
  if (reasoning === undefined) return messages;
  const flag = reasoning ? '/think' : '/no_think';
  const strip = (s: string) => s.split('/think').join('').split('/no_think').join(''); // the order ChatTemplate.render uses
  const out = messages.map((m) => (m.role === 'system' || m.role === 'user' ? { ...m, content: strip(m.content) } : { ...m }));
  const first = out[0];
  if (first && first.role === 'system') out[0] = { ...first, content: first.content === '' ? flag : `${first.content} ${flag}` };
  else out.unshift({ role: 'system', content: flag });
  return out;
}

/** Our messages in OpenAI's shape: tool calls with JSON-string arguments and ids the tool results refer to. */
export function wireMessages(messages: ChatMessage[]): Array<Record<string, unknown>> {
  const pendingIds: string[] = [];
  return messages.map((m, i) => {
    const out: Record<string, unknown> = { role: m.role, content: m.content };
    if (m.role === 'assistant') {
      if (m.toolCalls && m.toolCalls.length > 0) {
        out['tool_calls'] = m.toolCalls.map((c, j) => {
          const id = `call_${i}_${j}`;
          pendingIds.push(id);
          return { id, type: 'function', function: { name: c.name, arguments: JSON.stringify(c.arguments) } };
        });
        if (m.content === '') out['content'] = null;
      }
      if (m.reasoning) out['reasoning_content'] = m.reasoning;
    } else if (m.role === 'tool') {
      out['tool_call_id'] = pendingIds.shift() ?? `call_${i}`;
    }
    return out;
  });
}
