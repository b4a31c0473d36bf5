/**
 * A request from its options: every sampling, stopping and output option checked (an
 * InvalidArgumentError names the first bad one), the defaults of its kind filled in (reasoning on or
 * off), and the constraint compiled, around a prompt already tokenized.
 */
import type { NativeSampling } from '../addon-types.js';
import type { ToolDefinition } from '../chat/template.js';
import { ContextOverflowError, InvalidArgumentError } from '../errors.js';
import { SAMPLING_DEFAULTS, kTokenObserver, stopList, type GenerateOptions, type RequestSpec, type TokenObserver } from '../generation.js';
import { grammarRequest, validateResponseFormat, validateToolChoice, type GrammarCompiler } from '../grammar.js';
import type { TextTokenizer } from '../tokenizer.js';
import * as v from '../validate.js';

/** What a request is built against: the model's tokenizer, grammar compiler, end tokens and limits. */
export interface RequestContext {
  tokenizer: TextTokenizer | null;
  grammars: GrammarCompiler;
  eos: Set<number>;
  vocabSize: number;
  contextLength: number;
  snapshotInterval: number;
  idleTimeoutMs: number;
}

/** A prompt of `n` tokens fits the context, or a ContextOverflowError. */
export function assertFits(n: number, contextLength: number): void {
  if (n > contextLength) {
    throw new ContextOverflowError(`the prompt has ${n} tokens but the context length is ${contextLength}`);
  }
}

/** The server's per-token latency hook (kTokenObserver), when the options carry one. */
function tokenObserver(options: GenerateOptions): { onTokenTime?: TokenObserver } {
  const f = (options as { [kTokenObserver]?: unknown })[kTokenObserver];
  return typeof f === 'function' ? { onTokenTime: f as TokenObserver } : {};
}

/** Validates the sampling and stopping options and assembles a request around a tokenized prompt. */
export function buildRequestSpec(ctx: RequestContext, options: GenerateOptions, prompt: Int32Array, startsInReasoning: boolean, parseToolCalls: boolean): RequestSpec {
  if (prompt.length === 0) throw new InvalidArgumentError('ERR_EMPTY_PROMPT', 'the prompt has no tokens');
  assertFits(prompt.length, ctx.contextLength);
  const thinkingBudget = v.optionalInteger('options.thinkingBudget', options.thinkingBudget, 0);
  const stop = stopList(options.stop);
  const signal = v.optionalSignal('options.signal', options.signal);
  const d = startsInReasoning ? SAMPLING_DEFAULTS.reasoning : SAMPLING_DEFAULTS.plain;
  const sampling: NativeSampling = {
    temperature: v.optionalNumber('options.temperature', options.temperature, (x) => x >= 0, 'a number >= 0') ?? d.temperature,
    topK: v.optionalInteger('options.topK', options.topK, 0) ?? 0,
    topP: v.optionalNumber('options.topP', options.topP, (x) => x > 0 && x <= 1, 'a number in (0, 1]') ?? d.topP,
    minP: v.optionalNumber('options.minP', options.minP, (x) => x >= 0 && x < 1, 'a number in [0, 1)') ?? 0,
    repetitionPenalty: v.optionalNumber('options.repetitionPenalty', options.repetitionPenalty, (x) => x > 0, 'a number > 0') ?? 1,
    presencePenalty: v.optionalNumber('options.presencePenalty', options.presencePenalty, (x) => x >= -2 && x <= 2, 'a number in [-2, 2]') ?? 0,
    frequencyPenalty: v.optionalNumber('options.frequencyPenalty', options.frequencyPenalty, (x) => x >= -2 && x <= 2, 'a number in [-2, 2]') ?? 0,
    logitBias: parseLogitBias(options.logitBias, ctx.vocabSize),
    seed: v.optionalInteger('options.seed', options.seed, 0) ?? Math.floor(Math.random() * 2 ** 32),
  };
  const maxTokens = v.optionalInteger('options.maxTokens', options.maxTokens, 1) ?? d.maxTokens;
  const topLogprobs = v.optionalInteger('options.topLogprobs', options.topLogprobs, 0, 20) ?? -1;
  const abortBehavior: unknown = options.abortBehavior ?? 'resolve';
  if (abortBehavior !== 'resolve' && abortBehavior !== 'reject') throw v.invalid('options.abortBehavior', "'resolve' or 'reject'", abortBehavior);
  const closeReasoning = ctx.tokenizer && startsInReasoning ? ctx.tokenizer.encode('</think>\n\n', false) : [];
  const responseFormat = validateResponseFormat(options.responseFormat);
  const tools = options.tools as ToolDefinition[] | undefined;
  const toolChoice = validateToolChoice(options.toolChoice, tools);
  if (toolChoice === 'none' && ctx.tokenizer) {
    const open = ctx.tokenizer.tokenId('<TOOLCALL>');
    if (open !== undefined) sampling.logitBias = [...sampling.logitBias, [open, -1e9]];
  }
  const constraint = grammarRequest(responseFormat, toolChoice, tools, startsInReasoning);
  let grammar: RequestSpec['grammar'];
  if (constraint) {
    // A failure is reported by the request (or by startStream); toolChoice 'auto' is best effort (a build
    // without the grammar engine, or tool parameters it cannot compile, leave the request unconstrained).
    grammar = constraint.optional ? ctx.grammars.spec(constraint).catch(() => undefined) : ctx.grammars.spec(constraint);
    grammar.catch(() => {});
  }
  return {
    ...(grammar ? { grammar } : {}),
    ...(constraint?.json ? { parseJson: true } : {}),
    prompt,
    maxTokens,
    sampling,
    stop,
    eos: ctx.eos,
    startsInReasoning,
    thinkingBudget,
    closeReasoning,
    parseToolCalls,
    signal,
    reusePrefix: true,
    snapshotAt: [],
    pinAt: [],
    snapshotEvery: ctx.snapshotInterval,
    idleTimeoutMs: ctx.idleTimeoutMs,
    topLogprobs,
    abortBehavior,
    ...tokenObserver(options),
  };
}

function parseLogitBias(bias: unknown, vocab: number): Array<[number, number]> {
  if (bias === undefined) return [];
  v.assertObject('options.logitBias', bias);
  return Object.entries(bias).map(([key, value]) => {
    const id = Number(key);
    if (!Number.isInteger(id) || id < 0 || id >= vocab) {
      throw new InvalidArgumentError('ERR_TOKEN_OUT_OF_RANGE', `options.logitBias has token id ${JSON.stringify(key)}: ids must be integers in [0, ${vocab})`);
    }
    // +Infinity would make every other token impossible and NaN poisons the softmax: finite, or -Infinity (a ban).
    if (typeof value !== 'number' || Number.isNaN(value) || value === Infinity) throw v.invalid(`options.logitBias[${key}]`, 'a finite number, or -Infinity to ban the token', value);
    return [id, Math.max(value, -1e9)];
  });
}
