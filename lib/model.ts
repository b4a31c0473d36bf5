/**
 * NemotronModel: a loaded checkpoint and everything a caller does with it. Validation, tokenization, chat
 * templates and streaming live here; every forward pass runs natively off the JS thread, and all live
 * requests share each forward pass (continuous batching, lib/scheduler.ts).
 */
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import type { NativeConfig, NativeEngine, NativeModelInfo, NativeSampling } from './addon-types.js';
import type { SnapshotRef } from './cache/snapshot-ref.js';
import { ChatSession, TURN_OPTION_KEYS, type ChatHost, type ChatOptions, type NewChatOptions, type TurnOptions } from './chat/session.js';
import { checkSessionTokens, fingerprintCheckpoint, readSessionFile, writeSessionFile } from './chat/session-file.js';
import { ChatTemplate, validateMessages, type ChatMessage, type ToolDefinition } from './chat/template.js';
import { ContextOverflowError, InvalidArgumentError, UnsupportedModelError, ModelClosedError, ModelLoadError, NemotronError, SessionFileError, errorFromCode } from './errors.js';
import { nextTurnText, turnBoundaries, turnMarkers, type TurnMarkers } from './chat/turns.js';
import { TokenizerPool } from './tokenizer-pool.js';
import { GenerationRequest, kTokenObserver, type AbortBehavior, type GenerateResult, type RequestSpec, type StreamEvent, type TokenObserver } from './generation.js';
import type { Message } from './chat/openai.js';
import { GrammarCompiler, grammarRequest, validateResponseFormat, validateToolChoice, type ResponseFormat, type ToolChoice } from './grammar.js';
import { ggufConfigForPlan, hasGgufTokenizer, readGgufMetadata, tokenizerFromGguf } from './gguf/reader.js';
import { DEFAULT_CACHE_BYTES, DEFAULT_MAX_BATCH_TOKENS, DEFAULT_MAX_SEQUENCES, checkPlanFits, chooseWeightsPlacement, planMemory, type MemoryPlan } from './memory.js';
import { chooseDevice } from './device.js';
import { Scheduler } from './scheduler.js';
import { TextTokenizer } from './tokenizer.js';
import * as v from './validate.js';
import type { HubOptions } from './hub/index.js';
import { progressCallback, resolveModelPath, type LoadProgressCallback } from './load-progress.js';
import type { TextModel } from './text-model.js';

export type { AbortBehavior, FinishReason, GenerateResult, StreamEvent, Timings, TokenLogprob, TopLogprob, Usage } from './generation.js';
export { AbortError } from './generation.js';

export interface LoadOptions {
  /** Worker threads for the CPU kernels; default: one per hardware thread. */
  threads?: number;
  /** Tokens per sequence; default: the config's max_position_embeddings. */
  contextLength?: number;
  /** Sequences alive at once (each running request holds one); further requests wait in FIFO order. Default 8. */
  maxSequences?: number;
  /** Prompt tokens per forward pass: longer prompts are prefilled in chunks of this size. Default 256. */
  maxBatchTokens?: number;
  /** KV cache storage: 'f16' (default, half the memory) or 'f32' (exact). */
  kvDtype?: 'f16' | 'f32';
  /** Bytes the prefix/snapshot cache may hold (Mamba state copies and the KV blocks only it keeps). Default 1 GiB. */
  cacheBytes?: number;
  /** Snapshot long prompts every this many tokens, so a later prompt sharing a long prefix resumes there. Default 2048; 0 = off. */
  snapshotInterval?: number;
  /**
   * Cancel a stream whose consumer has not asked for the next event for this many milliseconds, with
   * finishReason 'abort' and an IdleTimeoutError: a paused or forgotten stream holds a sequence slot that
   * queued requests wait for. Default 60000 (a minute: far beyond any network stall of a live client,
   * short enough that a leaked iterator frees its slot soon); 0 = never.
   */
  idleTimeoutMs?: number;
  /**
   * After a chat request ends, compute its reply as the next turn will render it (the template drops the
   * reasoning) and cache that state, so the conversation's next request, stateless or not, computes only
   * its new message. Costs one prefill of the reply per turn, off the caller's path. Default true.
   */
  prepareNextTurn?: boolean;
  /** Refuse to load when the memory plan (model.info.memory) exceeds this many bytes. Default: the machine's total memory. */
  memoryLimit?: number;
  /** 'cpu' (default), 'cuda' (a typed error without a usable GPU and CUDA build), or 'auto' (the GPU when there is one). */
  device?: 'cpu' | 'cuda' | 'auto';
  /**
   * The GPU self-check before a CUDA model serves (lib/selfcheck.ts: the built-in tiny model on the device
   * against the CPU backend, under 2 s): 'run' (default) every load, 'cached' trusts a pass cached for this
   * binary, device and driver in the cache folder, 'off' never. A failure is a SelfCheckError with
   * device: 'cuda' and a fallback to the CPU (one log line) with 'auto'. No effect on the CPU.
   */
  selfCheck?: 'run' | 'cached' | 'off';
  /**
   * Matrix-product precision. 'exact' (default): activations stay f32 on CPU (log-probs within ~1e-5 of
   * a float64 reference); on CUDA each activation is split into two bf16 terms. 'fast': activations are
   * rounded to the weights' dot-product type where the hardware has one, as llama.cpp does (bf16 for
   * BF16 weights on CPUs with AVX-512 BF16, 8-bit blocks for quantized weights; bf16 on CUDA): faster
   * prompts and batches, log-probs within ~1e-2. Both are batch invariant.
   */
  precision?: 'exact' | 'fast';
  /** Progress of the load, phase by phase ('download' for hf: references, 'plan', 'tokenizer', 'load'): see LoadProgress. */
  onProgress?: LoadProgressCallback;
  /** For `hf:owner/name` references: revision, file, cache folder, endpoint, token, offline (see HubOptions). */
  hub?: HubOptions;
  /**
   * Scan every weight for NaN and Inf before loading, on the thread pool; the first tensor holding one is
   * named in an ERR_INVALID_CHECKPOINT error. Reads every weight byte once (seconds for a 9B checkpoint),
   * so it is off by default. The CLI's `inspect --check` runs it.
   */
  checkTensors?: boolean;
  /**
   * Allow a contextLength above the config's max_position_embeddings (the context the model was trained
   * for). Without it such a contextLength is refused: quality past the trained context is not known.
   */
  allowContextBeyondTraining?: boolean;
  /**
   * Where the CPU engine keeps the weights. 'mmap' (default): in the memory-mapped files, as stored
   * (shared with the page cache, nothing copied; huge pages and read-ahead are asked for where the
   * kernel allows). 'memory': copied at load, in parallel, into anonymous memory backed by 2 MiB
   * transparent huge pages (the plan counts the copy: model.info.memory.weightsCopy): faster decode,
   * load costs one copy of the weights. 'auto': 'memory' when the load with the copy stays within 3/4
   * of memoryLimit (at most the machine's memory), else 'mmap' (memory.ts chooseWeightsPlacement).
   * Results are bitwise the same either way. Ignored by the CUDA backend.
   */
  weights?: 'mmap' | 'memory' | 'auto';
}

/** The model's configuration as the native loader read it (config.json or GGUF metadata). */
export type ModelConfig = NativeConfig;

export interface ModelInfo {
  /** The checkpoint folder. */
  path: string;
  config: ModelConfig;
  parameterCount: number;
  /** Bytes of the weights as stored (memory-mapped, not copied). */
  weightBytes: number;
  backend: string;
  threads: number;
  contextLength: number;
  maxSequences: number;
  maxBatchTokens: number;
  /** Token ids that end generation (config, generation_config.json and the tokenizer's eos token). */
  eosTokenIds: number[];
  kvDtype: 'f16' | 'f32';
  precision: 'exact' | 'fast';
  /** Where the weights live (LoadOptions.weights, 'auto' resolved). */
  weights: 'mmap' | 'memory';
  /** What this model needs at its context length and sequence count, planned before loading. */
  memory: MemoryPlan;
}

export interface ModelStats {
  /** Sequences holding state now (running requests and evaluate calls). */
  liveSequences: number;
  /** KV cache blocks (64 positions each, all attention layers) in use and free in the planned pool. */
  kvBlocksUsed: number;
  kvBlocksFree: number;
  /** Of kvBlocksUsed, the blocks only snapshots hold (no live sequence): with no request running, all of them. */
  kvBlocksCached: number;
  /** Snapshots in the prefix cache and the bytes they hold (Mamba state copies + KV blocks only they keep). */
  snapshots: number;
  snapshotBytes: number;
  /** Of snapshotBytes, Mamba states kept in host memory (CUDA moves them there when the device needs room; 0 on CPU). */
  snapshotHostBytes: number;
  /** Requests that restored a cached prefix, and the prompt tokens that saved. */
  prefixCacheHits: number;
  tokensReused: number;
  /** Requests waiting for a sequence slot (maxSequences). */
  queuedRequests: number;
  /** Bytes of Mamba state and KV cache held by live sequences. */
  sequenceBytes: number;
  /** Batched forward passes run by generation since load. */
  steps: number;
  /** Tokens fed through those passes (prompts, sampled and forced tokens). */
  tokensProcessed: number;
  /** Wall time inside engine steps since load, and between one step's end and the next step's start
   * while the engine had work (event routing, text work, consumers: the JavaScript share of serving). */
  stepMs: number;
  jsMsBetweenSteps: number;
}

export interface SamplingOptions {
  /** 0 = greedy. Default: 0.6 for chat with reasoning on (NVIDIA's recommendation), else 0. */
  temperature?: number;
  /** Keep only the k most likely tokens; 0 = off. */
  topK?: number;
  /** Smallest set of most likely tokens holding this much probability, in (0, 1]. Default: 0.95 for chat with reasoning on, else 1 (off). */
  topP?: number;
  /** Drop tokens less likely than minP × the most likely one, in [0, 1); 0 = off. */
  minP?: number;
  /** > 0: divides positive logits (multiplies negative ones) of every token already in the sequence; 1 = off. */
  repetitionPenalty?: number;
  /** In [-2, 2]: subtracted from the logit of every token generated so far (OpenAI semantics). */
  presencePenalty?: number;
  /** In [-2, 2]: subtracted once per occurrence in the generated tokens. */
  frequencyPenalty?: number;
  /** Added to the logits of the given token ids; e.g. { 12: -100 } bans token 12. */
  logitBias?: Record<number, number>;
  /** Seed for the random draws: the same seed gives the same tokens, alone or batched. Default: random. */
  seed?: number;
}

export interface GenerateOptions extends SamplingOptions {
  /** Raw text (tokenized with the checkpoint's BOS policy) or token ids. Give this or `messages`. */
  prompt?: string | readonly number[];
  /**
   * A conversation, rendered with the checkpoint's chat template. Give this or `prompt`. Messages in the
   * library's shape (ChatMessage) or in OpenAI's (the `openai` package's ChatCompletionMessageParam[]:
   * `developer`, text content parts, `tool_calls`, `tool_call_id`), see OpenAIChatMessage.
   */
  messages?: readonly Message[];
  /** Function tools the model may call (rendered by the template; its calls come back parsed). */
  tools?: ToolDefinition[];
  /** Reasoning on (`/think`) or off (`/no_think`); default: the messages' keywords, else on. */
  reasoning?: boolean;
  /** Reasoning tokens after which the reasoning is closed at the next newline (or 500 tokens later). */
  thinkingBudget?: number;
  /** Most tokens to generate. Default 256, or 4096 for chat with reasoning on. */
  maxTokens?: number;
  /** Generation stops before any of these strings; they are not part of the text. */
  stop?: string | string[];
  /** Stops the request within one step and frees its sequence; what the caller sees is `abortBehavior`. */
  signal?: AbortSignal;
  /**
   * How an aborted request ends (its signal, model.close(), or the stream's idleTimeoutMs):
   * 'resolve' (default) — generate() resolves and stream() ends with `done`, finishReason 'abort' (the
   * text so far is in the result); 'reject' — generate() rejects and stream() throws an AbortError
   * (`name` 'AbortError', code ERR_ABORTED, `cause` the reason, `result` the partial result), as the OpenAI
   * SDK does. Breaking out of a stream is not an abort: it just ends the request.
   */
  abortBehavior?: AbortBehavior;
  /**
   * Report log-probabilities: 0..20 most likely alternatives per sampled token (0: the token's own only).
   * The result gets `logprobs` and stream pieces carry theirs. Values are from the raw model distribution
   * (log-softmax of the logits before penalties, bias, temperature and top-k/p, as vLLM's default), and
   * a request that asks for them samples on the host (CUDA builds otherwise sample on the device).
   */
  topLogprobs?: number;
  /**
   * Constrained output (grammar-constrained decoding in the native sampler): JSON (any object, or valid
   * against a JSON schema; parsed into result.parsed), an EBNF grammar or a regex. With reasoning on it
   * applies after `</think>`.
   */
  responseFormat?: ResponseFormat;
  /** With `tools`: 'auto' (default; a tool call the model opens is constrained to parse), 'none', 'required' or { name }. */
  toolChoice?: ToolChoice;
}

export interface EvaluateOptions {
  /** 'last' (default): logits of the last position; 'all': of every position. */
  logits?: 'last' | 'all';
}

const LOAD_KEYS = ['threads', 'contextLength', 'maxSequences', 'maxBatchTokens', 'kvDtype', 'cacheBytes', 'snapshotInterval', 'idleTimeoutMs', 'prepareNextTurn', 'memoryLimit', 'device', 'selfCheck', 'precision', 'weights', 'onProgress', 'hub', 'checkTensors', 'allowContextBeyondTraining'] as const;

/** Default context when none is given: the model's own, up to this (a 128k plan is opt-in). */
const DEFAULT_CONTEXT_CAP = 8192;

/** config.json as JSON.parse can read it: HF writes bare Infinity/NaN, which only planning reads. */
function readConfigForPlan(dir: string): Record<string, unknown> | null {
  try {
    const text = readFileSync(path.join(dir, 'config.json'), 'utf8').replace(/(?<=[:,\[]\s*)-?(?:Infinity|NaN)\b/g, '0');
    const c = JSON.parse(text) as unknown;
    return typeof c === 'object' && c !== null && !Array.isArray(c) ? (c as Record<string, unknown>) : null;
  } catch {
    return null; // the native loader reports what is wrong with it
  }
}

/** Bytes of the weight files (what gets memory-mapped). */
function weightFileBytes(dir: string): number {
  let total = 0;
  for (const f of readdirSync(dir)) if (f.endsWith('.safetensors')) total += statSync(path.join(dir, f)).size;
  return total;
}
const GENERATE_KEYS = [
  'prompt', 'messages', 'tools', 'reasoning', 'thinkingBudget', 'maxTokens', 'stop', 'signal', 'abortBehavior', 'topLogprobs',
  'temperature', 'topK', 'topP', 'minP', 'repetitionPenalty', 'presencePenalty', 'frequencyPenalty', 'logitBias', 'seed',
  'responseFormat', 'toolChoice',
] as const;

/** NVIDIA's recommended sampling with reasoning on (model card); greedy otherwise. */
const REASONING_DEFAULTS = { temperature: 0.6, topP: 0.95, maxTokens: 4096 };

/** The server's per-token latency hook (kTokenObserver), when the options carry one. */
function tokenObserver(options: GenerateOptions): { onTokenTime?: TokenObserver } {
  const f = (options as { [kTokenObserver]?: unknown })[kTokenObserver];
  return typeof f === 'function' ? { onTokenTime: f as TokenObserver } : {};
}

/** Re-homes a native rejection as the typed error, keeping the caller's stack. */
function rethrow(err: unknown, stack: Error): never {
  if (err instanceof NemotronError) throw err;
  const e = err as { code?: string; message?: string };
  const typed = errorFromCode(e.code ?? 'ERR_INTERNAL', e.message ?? String(err), err);
  typed.stack = `${typed.name}: ${typed.message}\n${(stack.stack ?? '').split('\n').slice(1).join('\n')}`;
  throw typed;
}

function readEosIds(dir: string, info: NativeModelInfo, tokenizer: TextTokenizer | null): number[] {
  const ids = new Set<number>(info.config.eosTokenIds);
  const gen = path.join(dir, 'generation_config.json');
  if (existsSync(gen)) {
    try {
      const g = JSON.parse(readFileSync(gen, 'utf8')) as { eos_token_id?: number | number[] };
      for (const id of [g.eos_token_id ?? []].flat()) if (Number.isInteger(id)) ids.add(id);
    } catch {
      // generation_config.json is advisory; a broken one must not block loading
    }
  }
  // The chat end token (<SPECIAL_12> for Nano 2) and </s> end generation too.
  for (const name of [tokenizer?.config.eos_token, '</s>', '<SPECIAL_12>']) {
    const s = typeof name === 'string' ? name : (name as { content?: string } | undefined)?.content;
    const id = s && tokenizer ? tokenizer.tokenId(s) : undefined;
    if (id !== undefined && tokenizer!.isSpecial(id)) ids.add(id);
  }
  return [...ids].filter((id) => id >= 0 && id < info.config.vocabSize).sort((a, b) => a - b);
}

export class NemotronModel implements TextModel {
  readonly info: ModelInfo;
  private readonly engine: NativeEngine;
  private readonly tokenizer: TextTokenizer | null;
  private readonly template: ChatTemplate | null;
  private readonly eos: Set<number>;
  private readonly scheduler: Scheduler;
  private readonly snapshotInterval: number;
  private readonly idleTimeoutMs: number;
  private readonly prepareNextTurn: boolean;
  private readonly tokenizers: TokenizerPool | null;
  private readonly markers: TurnMarkers | null;
  /** Streams started and not yet finished by their consumers (close() ends them). */
  private readonly live = new Set<GenerationRequest>();
  private fingerprint: Promise<string> | undefined;
  private readonly closing = new AbortController();
  private closed = false;
  /** A stream whose iterator was dropped unfinished is cancelled when the iterator is collected. */
  private readonly grammars: GrammarCompiler;
  // The held value is a WeakRef: a strong reference would keep the iterator alive through the request
  // (its signal, its consumer's closures) and the registry would never fire; while the engine still
  // runs the request, the scheduler's handler table keeps it alive for deref().
  private readonly abandoned = new FinalizationRegistry<WeakRef<GenerationRequest>>((ref) => ref.deref()?.abandon());

  private constructor(dir: string, engine: NativeEngine, tokenizer: TextTokenizer | null, tuning: { snapshotInterval: number; idleTimeoutMs: number; prepareNextTurn: boolean }, numerics: { kvDtype: 'f16' | 'f32'; precision: 'exact' | 'fast'; weights: 'mmap' | 'memory' }, memory: MemoryPlan) {
    this.engine = engine;
    this.tokenizer = tokenizer;
    this.template = tokenizer ? ChatTemplate.fromTokenizerConfig(tokenizer.config) : null;
    const ni = engine.info();
    const eosTokenIds = readEosIds(dir, ni, tokenizer);
    this.eos = new Set(eosTokenIds);
    this.info = Object.freeze({ path: dir, ...ni, eosTokenIds, ...numerics, memory });
    this.scheduler = new Scheduler(engine);
    this.snapshotInterval = tuning.snapshotInterval;
    this.idleTimeoutMs = tuning.idleTimeoutMs;
    this.prepareNextTurn = tuning.prepareNextTurn;
    this.tokenizers = tokenizer ? new TokenizerPool(tokenizer) : null;
    this.markers = tokenizer ? turnMarkers(tokenizer) : null;
    this.grammars = new GrammarCompiler(engine, tokenizer, ni.config.vocabSize, this.eos);
  }

  /** Loads a Hugging Face checkpoint folder (config.json, safetensors, tokenizer files) or a llama.cpp `.gguf` file (architecture nemotron_h). */
  static async load(modelPath: string, options: LoadOptions = {}): Promise<NemotronModel> {
    const stack = new Error();
    if (typeof modelPath !== 'string' || modelPath.length === 0) throw v.invalid('path', 'a checkpoint folder path', modelPath);
    v.assertObject('options', options);
    v.assertKnownKeys('options', options, LOAD_KEYS);
    const threads = v.optionalInteger('options.threads', options.threads, 0, 1024);
    const contextLength = v.optionalInteger('options.contextLength', options.contextLength, 1);
    const maxSequences = v.optionalInteger('options.maxSequences', options.maxSequences, 1, 4096);
    const maxBatchTokens = v.optionalInteger('options.maxBatchTokens', options.maxBatchTokens, 1, 65536);
    const kvOption: unknown = options.kvDtype ?? 'f16';
    if (kvOption !== 'f16' && kvOption !== 'f32') throw v.invalid('options.kvDtype', "'f16' or 'f32'", kvOption);
    const kvDtype: 'f16' | 'f32' = kvOption;
    const precisionOption: unknown = options.precision ?? 'exact';
    if (precisionOption !== 'exact' && precisionOption !== 'fast') throw v.invalid('options.precision', "'exact' or 'fast'", precisionOption);
    const precision: 'exact' | 'fast' = precisionOption;
    const cacheBytes = v.optionalInteger('options.cacheBytes', options.cacheBytes, 0) ?? DEFAULT_CACHE_BYTES;
    const snapshotInterval = v.optionalInteger('options.snapshotInterval', options.snapshotInterval, 0) ?? 2048;
    const idleTimeoutMs = v.optionalInteger('options.idleTimeoutMs', options.idleTimeoutMs, 0) ?? 60_000;
    if (options.prepareNextTurn !== undefined && typeof options.prepareNextTurn !== 'boolean') throw v.invalid('options.prepareNextTurn', 'true or false', options.prepareNextTurn);
    const prepareNextTurn = options.prepareNextTurn ?? true;
    const memoryLimit = v.optionalInteger('options.memoryLimit', options.memoryLimit, 1) ?? os.totalmem();
    const weightsOption: unknown = options.weights ?? 'mmap';
    if (weightsOption !== 'mmap' && weightsOption !== 'memory' && weightsOption !== 'auto') throw v.invalid('options.weights', "'mmap', 'memory' or 'auto'", weightsOption);
    const deviceOption: unknown = options.device ?? 'cpu';
    if (deviceOption !== 'cpu' && deviceOption !== 'cuda' && deviceOption !== 'auto') throw v.invalid('options.device', "'cpu', 'cuda' or 'auto'", deviceOption);
    const selfCheck: unknown = options.selfCheck ?? 'run';
    if (selfCheck !== 'run' && selfCheck !== 'cached' && selfCheck !== 'off') throw v.invalid('options.selfCheck', "'run', 'cached' or 'off'", selfCheck);
    const progress = progressCallback(options.onProgress);
    for (const key of ['checkTensors', 'allowContextBeyondTraining'] as const) {
      if (options[key] !== undefined && typeof options[key] !== 'boolean') throw v.invalid(`options.${key}`, 'true or false', options[key]);
    }
    const dir = path.resolve(modelPath);
    progress({ phase: 'plan', fraction: 0, path: dir });
    if (!existsSync(dir)) throw new ModelLoadError('ERR_MODEL_NOT_FOUND', `no checkpoint at ${dir}: the path does not exist`);
    // A llama.cpp .gguf file (nemotron_h): config, tokenizer and memory plan come from its metadata.
    const gguf = dir.endsWith('.gguf') && statSync(dir).isFile() ? readGgufMetadata(dir) : undefined;
    if (!gguf && !statSync(dir).isDirectory()) {
      throw new ModelLoadError('ERR_MODEL_NOT_FOUND', `${dir} is not a folder: expected a Hugging Face checkpoint folder (config.json, *.safetensors, tokenizer.json) or a .gguf file`);
    }
    // Plan memory from config.json before anything is allocated, and refuse a plan that does not fit.
    const rawConfig = gguf ? ggufConfigForPlan(gguf) : readConfigForPlan(dir);
    const maxPos = typeof rawConfig?.max_position_embeddings === 'number' ? rawConfig.max_position_embeddings : DEFAULT_CONTEXT_CAP;
    const context = contextLength ?? Math.min(maxPos, DEFAULT_CONTEXT_CAP);
    if (contextLength !== undefined && typeof rawConfig?.max_position_embeddings === 'number' && contextLength > maxPos && options.allowContextBeyondTraining !== true) {
      throw new InvalidArgumentError(
        'ERR_INVALID_ARGUMENT',
        `options.contextLength is ${contextLength}, above the model's max_position_embeddings (${maxPos}), the context it was trained for; pass allowContextBeyondTraining: true to load it anyway`,
      );
    }
    const planOptions = { contextLength: context, maxSequences: maxSequences ?? DEFAULT_MAX_SEQUENCES, maxBatchTokens: maxBatchTokens ?? DEFAULT_MAX_BATCH_TOKENS, kvDtype, cacheBytes };
    let plan: MemoryPlan | undefined;
    // weights: 'auto' decides on the plan with the copy; the CUDA backend keeps no host copy ('mmap').
    let weights: 'mmap' | 'memory' = weightsOption === 'memory' && deviceOption !== 'cuda' ? 'memory' : 'mmap';
    if (rawConfig) {
      try {
        // FP8 weights are held as BF16 copies (csrc/model/weights.cc): plan them at 2 bytes per parameter.
        const fp8 = typeof rawConfig.quantization_config === 'object' && rawConfig.quantization_config !== null;
        const weightBytes = gguf ? gguf.fileSize - gguf.dataOffset : weightFileBytes(dir);
        const stored = fp8 ? { weightDtype: 'bf16' as const } : { weightBytes };
        if (weightsOption === 'auto' && deviceOption === 'cpu') {
          weights = chooseWeightsPlacement(planMemory(rawConfig, { ...planOptions, ...stored, weights: 'memory' }), Math.min(memoryLimit, os.totalmem()));
        }
        plan = planMemory(rawConfig, { ...planOptions, ...stored, weights });
      } catch {
        plan = undefined; // a broken config: the native loader says precisely what is wrong
      }
    }
    if (plan) checkPlanFits(plan, memoryLimit);
    progress({ phase: 'plan', fraction: 1, path: dir, ...(plan ? { weightBytes: plan.weights } : {}) });
    progress({ phase: 'tokenizer', fraction: 0, path: dir });
    const tokenizer = gguf ? (hasGgufTokenizer(gguf) ? TextTokenizer.fromFiles(tokenizerFromGguf(gguf)) : null) : TextTokenizer.fromDir(dir);
    progress({ phase: 'tokenizer', fraction: 1, path: dir });
    progress({ phase: 'load', fraction: 0, path: dir });
    let engine: NativeEngine;
    try {
      // FP8 weights have CPU kernels only: 'auto' keeps such a model on the CPU, 'cuda' is refused before
      // anything is loaded. MoE blocks ('E') run on both backends (cuda/moe.cu).
      const hasFp8 = typeof rawConfig?.quantization_config === 'object' && rawConfig.quantization_config !== null;
      if (hasFp8 && deviceOption === 'cuda') {
        throw new UnsupportedModelError("this model has FP8 weights, which run on the CPU only for now: load it with device 'cpu' or 'auto'");
      }
      const backend = await chooseDevice(hasFp8 ? 'cpu' : deviceOption, { selfCheck });
      if (backend.device !== 'cpu') weights = 'mmap';
      engine = await backend.addon.loadEngine(dir, {
        threads: threads ?? 0,
        contextLength: context,
        maxSequences: planOptions.maxSequences,
        maxBatchTokens: planOptions.maxBatchTokens,
        kvDtype,
        cacheBytes,
        device: backend.device,
        precision,
        checkTensors: options.checkTensors === true,
        weights,
      });
    } catch (err) {
      rethrow(err, stack);
    }
    try {
      tokenizer?.checkVocabulary(engine.info().config.vocabSize);
    } catch (err) {
      engine.close();
      throw err;
    }
    if (!plan) {
      try {
        plan = planMemory(engine.info().config as unknown as Record<string, unknown>, { ...planOptions, weightBytes: engine.info().weightBytes, weights });
        checkPlanFits(plan, memoryLimit);
      } catch (err) {
        await engine.close();
        throw err;
      }
    }
    const model = new NemotronModel(dir, engine, tokenizer, { snapshotInterval, idleTimeoutMs, prepareNextTurn }, { kvDtype, precision, weights }, plan);
    progress({ phase: 'load', fraction: 1, path: dir });
    return model;
  }

  /** Text to token ids. `addSpecialTokens` (default true) applies the checkpoint's BOS policy. */
  tokenize(text: string, options: { addSpecialTokens?: boolean } = {}): number[] {
    if (typeof text !== 'string') throw v.invalid('text', 'a string', text);
    return this.requireTokenizer().encode(text, options.addSpecialTokens ?? true);
  }

  /** Token ids to text. */
  detokenize(ids: readonly number[], options: { skipSpecialTokens?: boolean } = {}): string {
    const checked = v.tokenIds('ids', ids, this.info.config.vocabSize);
    return this.requireTokenizer().decode(Array.from(checked), options.skipSpecialTokens ?? false);
  }

  /** Renders a conversation with the checkpoint's chat template, generation prompt included. */
  applyChatTemplate(messages: readonly Message[], options: { tools?: ToolDefinition[]; reasoning?: boolean } = {}): string {
    this.assertOpen();
    if (!this.template) throw new InvalidArgumentError('ERR_INVALID_ARGUMENT', `the checkpoint at ${this.info.path} has no chat_template in tokenizer_config.json`);
    return this.template.render(validateMessages(messages), { ...(options.tools ? { tools: options.tools } : {}), ...(options.reasoning === undefined ? {} : { reasoning: options.reasoning }) });
  }

  /** Runs token ids through a fresh sequence and returns logits: [vocab] or [positions × vocab], row-major. */
  async evaluate(ids: readonly number[], options: EvaluateOptions = {}): Promise<Float32Array> {
    const stack = new Error();
    this.assertOpen();
    v.assertObject('options', options);
    v.assertKnownKeys('options', options, ['logits']);
    if (options.logits !== undefined && options.logits !== 'last' && options.logits !== 'all') {
      throw v.invalid('options.logits', "'last' or 'all'", options.logits);
    }
    const tokens = v.tokenIds('ids', ids, this.info.config.vocabSize);
    this.assertFits(tokens.length);
    // A request of its own (fresh sequence, no prefix reuse), batched with whatever else runs.
    const logits = await new Promise<Float32Array>((resolve, reject) => {
      const closing = this.closing.signal;
      let id = -1;
      const onClose = () => {
        this.scheduler.cancel(id);
        reject(new ModelClosedError());
      };
      id = this.scheduler.submit({ prompt: tokens, maxTokens: 0, logits: options.logits === 'all' ? 2 : 1, reusePrefix: false }, {
        onAdmitted: () => {},
        onToken: () => {},
        onSnapshot: () => {},
        onFinished: (reason, error, rows) => {
          closing.removeEventListener('abort', onClose);
          if (rows) resolve(rows);
          else reject(error ?? new ModelClosedError());
        },
      });
      closing.addEventListener('abort', onClose, { once: true });
    }).catch((err: unknown) => rethrow(err, stack));
    return logits;
  }

  /** Generates a completion and resolves with all of it (finishReason 'error' carries `error`). */
  async generate(options: GenerateOptions): Promise<GenerateResult> {
    let result: GenerateResult | undefined;
    for await (const ev of this.stream(options)) if (ev.type === 'done') result = ev.result;
    return result!;
  }

  /**
   * Generates a completion as an async iterable of events — `reasoning` and `text` pieces (always whole
   * characters), `toolCall`s, then `done` with the whole result. The next token is computed only when
   * the consumer asks for more (backpressure); `break` or the signal stops generation within one step
   * and frees the sequence.
   */
  stream(options: GenerateOptions): AsyncGenerator<StreamEvent, void, undefined> {
    this.assertOpen();
    return this.streamSpec(this.parseGenerate(options));
  }

  /**
   * Like stream(), but resolves only once the request is checked and tokenized, so a caller (the server)
   * can answer a bad request before it starts streaming. Large inputs are measured before any work (a
   * prompt whose bytes cannot fit the context is refused without tokenizing) and tokenized in a worker
   * thread, so one huge request never holds the event loop.
   */
  async startStream(options: GenerateOptions): Promise<AsyncGenerator<StreamEvent, void, undefined>> {
    this.assertOpen();
    const spec = await this.parseGenerateAsync(options);
    if (spec.grammar) await spec.grammar; // an invalid schema or grammar is refused here (ERR_INVALID_GRAMMAR)
    return this.streamSpec(spec);
  }

  private streamSpec(spec: RequestSpec): AsyncGenerator<StreamEvent, void, undefined> {
    this.assertOpen();
    const live = this.live;
    // The live set holds a request from its first next() until it ends (not until its consumer reads
    // the end: a dropped iterator never does), so close() can end it and nothing else keeps it.
    const onDone = spec.onDone;
    const request: GenerationRequest = new GenerationRequest(
      {
        ...spec,
        onDone: (result) => {
          live.delete(request);
          onDone?.(result);
        },
      },
      this.scheduler,
      this.tokenizer,
    );
    const events = request.run();
    const generator = (async function* () {
      if (!request.ended) live.add(request); // a stream never iterated holds nothing
      yield* events;
    })();
    // Dropped unfinished without break/return (a handler that threw between reads): the request is
    // cancelled once the iterator is collected, and idleTimeoutMs bounds the wait for that.
    this.abandoned.register(generator, new WeakRef(request));
    return generator;
  }

  /**
   * A chat session: send() / stream() a turn at a time; each turn computes only its new tokens (the
   * state at the previous turn's assistant message is restored from the snapshot cache). fork() and
   * save() make cheap copies and bit-exact files. `messages` continues a conversation (the library's
   * shape or OpenAI's, e.g. a stored ChatCompletionMessageParam[]); its first turn computes it once.
   */
  chat(options: NewChatOptions = {}): ChatSession {
    this.assertOpen();
    v.assertObject('options', options);
    v.assertKnownKeys('options', options as Record<string, unknown>, ['system', 'reasoning', 'tools', 'contextOverflow', 'messages']);
    if (!this.template) throw new InvalidArgumentError('ERR_INVALID_ARGUMENT', `the checkpoint at ${this.info.path} has no chat template`);
    const { messages, ...chatOptions } = options as NewChatOptions;
    if (messages === undefined) return new ChatSession(this.chatHost, chatOptions);
    // A conversation to continue (either shape): a leading system message becomes the session's `system`.
    const history = messages.length > 0 ? validateMessages(messages) : [];
    if (history[0]?.role === 'system') {
      if (chatOptions.system !== undefined) throw new InvalidArgumentError('ERR_INVALID_ARGUMENT', 'options.system and a system message in options.messages: give one');
      chatOptions.system = history.shift()!.content;
    }
    return new ChatSession(this.chatHost, chatOptions, history);
  }

  /** Restores a session written by ChatSession.save(); it continues exactly where the saved one was. */
  async loadChat(file: string): Promise<ChatSession> {
    this.assertOpen();
    const content = await readSessionFile(file, await this.modelFingerprint());
    checkSessionTokens(content.tokens, this.info.config.vocabSize, `session file ${file}`);
    const meta = content.meta as { options?: ChatOptions; history?: ChatMessage[] };
    if (typeof meta.options !== 'object' || meta.options === null || Array.isArray(meta.options) || !Array.isArray(meta.history)) {
      throw new SessionFileError(`session file ${file}: its metadata has no chat options and history`);
    }
    // Check the messages and options before any state is imported (found by scripts/fuzz-session.ts).
    let history: ChatMessage[];
    try {
      history = meta.history.length ? validateMessages(meta.history) : [];
      new ChatSession(this.chatHost, meta.options, history, null);
    } catch (err) {
      throw new SessionFileError(`session file ${file}: its chat metadata is invalid: ${(err as Error).message}`, { cause: err });
    }
    let anchor: SnapshotRef | null = null;
    if (content.state.byteLength > 0) {
      let id: number;
      try {
        // Into the engine's prefix cache with one pin, which the session owns.
        id = await this.engine.importSnapshot(content.state, content.tokens);
      } catch (err) {
        const e = err as { message?: string };
        throw new SessionFileError(`session file ${file}: its engine state cannot be used: ${e.message ?? String(err)}`, { cause: err });
      }
      anchor = { id, tokens: content.tokens };
    }
    const session = new ChatSession(this.chatHost, meta.options, history, anchor);
    if (anchor) this.scheduler.pin(anchor.id, -1); // the session took a pin of its own; drop the import's
    return session;
  }

  /**
   * Resolves once the engine has nothing left to do right now: every cancelled or finished request's
   * sequence is freed, every queued request that can run has run. Paused streams (consumers not
   * reading) keep their sequences. For tests and graceful shutdowns; generation never needs it.
   */
  async idle(): Promise<void> {
    while (!this.closed) {
      await this.scheduler.idle();
      if (!this.engine.hasWork()) return;
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }

  /** Live sequences, queued requests, state memory and work done, for monitoring. */
  stats(): ModelStats {
    const cache = this.closed ? null : this.engine.cacheStats();
    const sched = this.engine.schedulerStats();
    return {
      liveSequences: sched.liveSequences,
      kvBlocksUsed: cache?.kvBlocksUsed ?? 0,
      kvBlocksFree: cache ? cache.kvBlocksTotal - cache.kvBlocksUsed : 0,
      kvBlocksCached: cache?.snapshotOnlyKvBlocks ?? 0,
      snapshots: cache?.snapshots ?? 0,
      snapshotBytes: cache ? cache.snapshotStateBytes + cache.snapshotOnlyKvBlocks * cache.kvBlockBytes : 0,
      snapshotHostBytes: cache?.snapshotHostStateBytes ?? 0,
      prefixCacheHits: cache?.cacheHits ?? 0,
      tokensReused: cache?.cacheTokensReused ?? 0,
      queuedRequests: sched.queued,
      sequenceBytes: sched.sequenceBytes,
      steps: this.scheduler.steps,
      tokensProcessed: this.scheduler.tokensProcessed,
      stepMs: this.scheduler.nativeMs,
      jsMsBetweenSteps: this.scheduler.betweenMs,
    };
  }

  /** `await using model = await loadModel(…)`: closes the model when the scope ends. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  /**
   * `n` completions of one prompt, computed from one prefill: the prompt (minus its last token) is
   * computed once and cached, then `n` requests restore it and compute only the last prompt token each
   * (their usage.cachedTokens shows it). Choice i samples with seed `seed + i` (mod 2^32; a random `seed`
   * when none is given), so with temperature > 0 the choices differ and each is reproducible on its own:
   * choice i equals a single request with seed + i. Resolves once the prompt is checked and tokenized.
   */
  async startStreams(options: GenerateOptions, n: number): Promise<Array<AsyncGenerator<StreamEvent, void, undefined>>> {
    this.assertOpen();
    const count = v.optionalInteger('n', n, 1, 128) ?? 1;
    const spec = await this.parseGenerateAsync(options);
    this.assertOpen();
    if (count === 1) return [this.streamSpec(spec)];
    const base = spec.sampling.seed;
    // Submitted before the choices: a choice whose prompt extends it waits for it, then restores its state.
    if (spec.prompt.length > 1) void this.prefill(spec.prompt.slice(0, spec.prompt.length - 1), false);
    return Array.from({ length: count }, (_, i) =>
      this.streamSpec({ ...spec, sampling: { ...spec.sampling, seed: (base + i) % 2 ** 32 }, ...(i > 0 ? { onDone: undefined, onSnapshot: undefined } : {}) }),
    );
  }

  /** `n` completions of one prompt from one prefill (see startStreams); resolves to their results, in order. */
  async generateMany(options: GenerateOptions, n: number): Promise<GenerateResult[]> {
    const streams = await this.startStreams(options, n);
    return Promise.all(
      streams.map(async (events) => {
        let result: GenerateResult | undefined;
        for await (const ev of events) if (ev.type === 'done') result = ev.result;
        return result!;
      }),
    );
  }

  /**
   * Frees the engine. Running and queued generations end with finishReason 'abort' (their consumers
   * get the `done` event whenever they read again; nobody is waited for), evaluate() calls reject with
   * ERR_MODEL_CLOSED, further calls throw. Resolves after at most the running step, once native memory
   * is freed.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.closing.abort(new ModelClosedError());
    for (const request of this.live) request.abandon();
    this.live.clear();
    this.scheduler.close();
    await this.scheduler.idle(); // the running step, if any
    await this.engine.close(); // ends every request and frees the engine on a worker
    await this.tokenizers?.close();
  }

  // ---- internals -----------------------------------------------------------------------------------

  private modelFingerprint(): Promise<string> {
    this.fingerprint ??= fingerprintCheckpoint(this.info.path);
    return this.fingerprint;
  }

  private readonly chatHost: ChatHost = {
    renderChat: (messages, options) => {
      if (!this.template) throw new InvalidArgumentError('ERR_INVALID_ARGUMENT', 'no chat template');
      return this.template.render(messages, options);
    },
    tokenizeChat: (text) => Int32Array.from(this.tokenize(text)),
    contextLength: () => this.info.contextLength,
    streamTurn: (prompt, chat, options) => this.streamSpec(this.parseTurn(prompt, chat, options)),
    prepareTurn: (tokens) => (this.prepareNextTurn ? this.prefill(tokens, true) : Promise.resolve(null)),
    pin: (entry) => this.scheduler.pin(entry.id, 1),
    unpin: (entry) => this.scheduler.pin(entry.id, -1),
    exportTurnState: async (session, file) => {
      this.assertOpen();
      const anchor = session.anchorEntry;
      const state = anchor ? await this.engine.exportSnapshot(anchor.id) : new Uint8Array(0);
      const history = session.messages.filter((m, i) => !(i === 0 && m.role === 'system' && session.options.system !== undefined));
      await writeSessionFile(file, {
        modelFingerprint: await this.modelFingerprint(),
        tokens: anchor ? anchor.tokens : new Int32Array(0),
        state,
        meta: { format: 'nemotron-node chat', options: session.options, history, savedAt: new Date().toISOString() },
      });
    },
  };

  private parseTurn(prompt: Int32Array, chat: { tools: boolean; toolDefs?: ToolDefinition[]; reasoning: boolean | undefined; anchorAt: number; onAnchor: (ref: SnapshotRef) => void }, options: TurnOptions): RequestSpec {
    v.assertObject('options', options);
    v.assertKnownKeys('options', options as Record<string, unknown>, TURN_OPTION_KEYS);
    // The session's tools reach buildSpec for toolChoice (they are rendered by the session already).
    const spec = this.buildSpec({ ...(options as GenerateOptions), ...(chat.toolDefs ? { tools: chat.toolDefs } : {}) }, prompt, chat.reasoning !== false && /<think>\s*$/.test(this.detokenize(Array.from(prompt.subarray(-4)))), chat.tools);
    const pinAt = chat.anchorAt > 0 ? [chat.anchorAt] : [];
    return {
      ...spec,
      snapshotAt: [...spec.snapshotAt, ...pinAt],
      pinAt,
      onSnapshot: (position, id, pinned) => {
        if (pinned && position === chat.anchorAt) chat.onAnchor({ id, tokens: prompt.slice(0, position) });
        else if (pinned) this.scheduler.pin(id, -1);
      },
    };
  }

  /**
   * Feeds `tokens` through a sequence without generating (prefix reuse makes it cost only what is not
   * cached) and caches the state at the end; resolves to it (pinned for the caller when `pin`), or null
   * when the request failed or the model closed.
   */
  private prefill(tokens: Int32Array, pin: boolean): Promise<SnapshotRef | null> {
    if (this.closed || tokens.length === 0 || tokens.length > this.info.contextLength) return Promise.resolve(null);
    return new Promise((resolve) => {
      let ref: SnapshotRef | null = null;
      this.scheduler.submit(
        { prompt: tokens, maxTokens: 0, reusePrefix: true, snapshotAt: [tokens.length], pinAt: pin ? [tokens.length] : [] },
        {
          onAdmitted: () => {},
          onToken: () => {},
          onSnapshot: (position, id, pinned) => {
            if (pinned && position === tokens.length) ref = { id, tokens };
            else if (pinned) this.scheduler.pin(id, -1);
          },
          onFinished: () => resolve(ref),
        },
      );
    });
  }

  /** After a stateless chat request: cache its reply as the next request will render it (LoadOptions.prepareNextTurn). */
  private warmNextTurn(messages: ChatMessage[], options: { tools?: ToolDefinition[]; reasoning?: boolean }, result: GenerateResult): void {
    if (!this.prepareNextTurn || this.closed || !this.template || !this.markers) return;
    if (result.finishReason !== 'stop' && result.finishReason !== 'length') return;
    const reply: ChatMessage = { role: 'assistant', content: result.text, ...(result.reasoning ? { reasoning: result.reasoning } : {}), ...(result.toolCalls.length ? { toolCalls: result.toolCalls } : {}) };
    const text = nextTurnText(this.template, messages, reply, options, this.markers);
    if (text === null) return;
    void this.tokenizeAsync(text).then(
      (tokens) => this.prefill(Int32Array.from(tokens), false),
      () => null, // a failed warm-up costs only the next turn's speed
    );
  }

  /** Tokenizes with the checkpoint's BOS policy; inputs over TokenizerPool.THRESHOLD go to a worker thread. */
  private tokenizeAsync(text: string): Promise<number[]> {
    const pool = this.tokenizers;
    if (!pool) return Promise.resolve(this.tokenize(text));
    return pool.encode(text, true);
  }

  /**
   * The most UTF-8 bytes of prompt text that could still fit the context (contextLength x the longest
   * token's bytes); 0 when the tokenizer does not say. Anything longer is refused before tokenizing.
   */
  promptByteLimit(): number {
    const longest = this.tokenizer?.longestTokenBytes ?? 0;
    return longest > 0 ? this.info.contextLength * longest : 0;
  }

  /**
   * The least number of tokens `text` can become: no token is longer than the tokenizer's longest token,
   * so a text whose UTF-8 bytes exceed contextLength x that length cannot fit, whatever it tokenizes to.
   * Refusing it costs no tokenization.
   */
  private assertBytesCanFit(what: string, bytes: number): void {
    const limit = this.promptByteLimit();
    if (limit > 0 && bytes > limit) {
      const longest = this.tokenizer!.longestTokenBytes;
      throw new ContextOverflowError(`${what} has ${bytes} bytes: at least ${Math.ceil(bytes / longest)} tokens, more than the context length ${this.info.contextLength}`);
    }
  }


  /** parseGenerate, with the template rendered and large texts tokenized off the event loop. */
  private async parseGenerateAsync(options: GenerateOptions): Promise<RequestSpec> {
    v.assertObject('options', options);
    if (typeof options.prompt === 'string') this.assertBytesCanFit('options.prompt', Buffer.byteLength(options.prompt));
    if (Array.isArray(options.messages)) {
      let bytes = 0;
      for (const m of options.messages as Array<{ content?: unknown }>) if (typeof m?.content === 'string') bytes += Buffer.byteLength(m.content);
      this.assertBytesCanFit('options.messages', bytes);
    }
    return this.parseGenerate(options, (text) => this.tokenizeAsync(text));
  }

  private parseGenerate(options: GenerateOptions): RequestSpec;
  private parseGenerate(options: GenerateOptions, tokenize: (text: string) => Promise<number[]>): Promise<RequestSpec>;
  private parseGenerate(options: GenerateOptions, tokenize?: (text: string) => Promise<number[]>): RequestSpec | Promise<RequestSpec> {
    v.assertObject('options', options);
    v.assertKnownKeys('options', options as unknown as Record<string, unknown>, GENERATE_KEYS);
    const hasPrompt = options.prompt !== undefined;
    const hasMessages = options.messages !== undefined;
    if (hasPrompt === hasMessages) {
      throw new InvalidArgumentError('ERR_INVALID_ARGUMENT', 'options must have exactly one of `prompt` (text or token ids) and `messages` (a conversation)');
    }
    const reasoningOpt = options.reasoning;
    if (reasoningOpt !== undefined && typeof reasoningOpt !== 'boolean') throw v.invalid('options.reasoning', 'true or false', reasoningOpt);
    if (hasPrompt && (options.tools !== undefined || reasoningOpt !== undefined || options.thinkingBudget !== undefined)) {
      throw new InvalidArgumentError('ERR_INVALID_ARGUMENT', '`tools`, `reasoning` and `thinkingBudget` apply to `messages`, not to a raw `prompt`');
    }
    // The text to tokenize, and whether it opens the reasoning (the generation prompt ends with `<think>\n`).
    const renderOptions = { ...(options.tools ? { tools: options.tools as ToolDefinition[] } : {}), ...(reasoningOpt === undefined ? {} : { reasoning: reasoningOpt }) };
    let text: string | null = null;
    let startsInReasoning = false;
    if (hasMessages) {
      text = this.applyChatTemplate(options.messages as readonly Message[], renderOptions);
      startsInReasoning = /<think>\s*$/.test(text);
    } else if (typeof options.prompt === 'string') {
      if (options.prompt.length === 0) throw new InvalidArgumentError('ERR_EMPTY_PROMPT', 'options.prompt is empty: give some text or token ids');
      text = options.prompt;
    }
    const finish = (prompt: Int32Array): RequestSpec => {
      const spec = this.buildSpec(options, prompt, startsInReasoning, hasMessages);
      if (!hasMessages) return prompt.length > 1 ? { ...spec, snapshotAt: [prompt.length - 1] } : spec;
      // Stateless reuse: snapshot at every message boundary and one token before the end (the same
      // request again restores there and computes only the last token); after the reply, cache the next
      // turn's start (warmNextTurn).
      const messages = validateMessages(options.messages);
      const bounds = this.markers ? turnBoundaries(prompt, this.markers) : [];
      return { ...spec, snapshotAt: [...bounds, prompt.length - 1].filter((p) => p > 0), onDone: (r: GenerateResult) => this.warmNextTurn(messages, renderOptions, r) };
    };
    if (text === null) return finish(v.tokenIds('options.prompt', options.prompt as readonly number[], this.info.config.vocabSize));
    if (tokenize) return tokenize(text).then((ids) => finish(Int32Array.from(ids)));
    return finish(Int32Array.from(this.tokenize(text)));
  }

  /** Validates the sampling and stopping options and assembles a request around a tokenized prompt. */
  private buildSpec(options: GenerateOptions, prompt: Int32Array, startsInReasoning: boolean, parseToolCalls: boolean): RequestSpec {
    if (prompt.length === 0) throw new InvalidArgumentError('ERR_EMPTY_PROMPT', 'the prompt has no tokens');
    this.assertFits(prompt.length);
    const thinkingBudget = v.optionalInteger('options.thinkingBudget', options.thinkingBudget, 0);
    const stop = options.stop === undefined ? [] : typeof options.stop === 'string' ? [options.stop] : options.stop;
    if (!Array.isArray(stop) || stop.some((s) => typeof s !== 'string' || s.length === 0)) throw v.invalid('options.stop', 'a non-empty string or an array of them', options.stop);
    const signal = v.optionalSignal('options.signal', options.signal);
    const d = startsInReasoning ? REASONING_DEFAULTS : { temperature: 0, topP: 1, maxTokens: 256 };
    const sampling: NativeSampling = {
      temperature: v.optionalNumber('options.temperature', options.temperature, (x) => x >= 0, 'a number >= 0') ?? d.temperature,
      topK: v.optionalInteger('options.topK', options.topK, 0) ?? 0,
      topP: v.optionalNumber('options.topP', options.topP, (x) => x > 0 && x <= 1, 'a number in (0, 1]') ?? d.topP,
      minP: v.optionalNumber('options.minP', options.minP, (x) => x >= 0 && x < 1, 'a number in [0, 1)') ?? 0,
      repetitionPenalty: v.optionalNumber('options.repetitionPenalty', options.repetitionPenalty, (x) => x > 0, 'a number > 0') ?? 1,
      presencePenalty: v.optionalNumber('options.presencePenalty', options.presencePenalty, (x) => x >= -2 && x <= 2, 'a number in [-2, 2]') ?? 0,
      frequencyPenalty: v.optionalNumber('options.frequencyPenalty', options.frequencyPenalty, (x) => x >= -2 && x <= 2, 'a number in [-2, 2]') ?? 0,
      logitBias: this.parseLogitBias(options.logitBias),
      seed: v.optionalInteger('options.seed', options.seed, 0) ?? Math.floor(Math.random() * 2 ** 32),
    };
    const maxTokens = v.optionalInteger('options.maxTokens', options.maxTokens, 1) ?? d.maxTokens;
    const topLogprobs = v.optionalInteger('options.topLogprobs', options.topLogprobs, 0, 20) ?? -1;
    const abortBehavior: unknown = options.abortBehavior ?? 'resolve';
    if (abortBehavior !== 'resolve' && abortBehavior !== 'reject') throw v.invalid('options.abortBehavior', "'resolve' or 'reject'", abortBehavior);
    const closeReasoning = this.tokenizer && startsInReasoning ? this.tokenizer.encode('</think>\n\n', false) : [];
    const responseFormat = validateResponseFormat(options.responseFormat);
    const tools = options.tools as ToolDefinition[] | undefined;
    const toolChoice = validateToolChoice(options.toolChoice, tools);
    if (toolChoice === 'none' && this.tokenizer) {
      const open = this.tokenizer.tokenId('<TOOLCALL>');
      if (open !== undefined) sampling.logitBias = [...sampling.logitBias, [open, -1e9]];
    }
    const constraint = grammarRequest(responseFormat, toolChoice, tools, startsInReasoning);
    let grammar: RequestSpec['grammar'];
    if (constraint) {
      // A failure is reported by the request (or by startStream); toolChoice 'auto' is best effort (a build
      // without the grammar engine, or tool parameters it cannot compile, leave the request unconstrained).
      grammar = constraint.optional ? this.grammars.spec(constraint).catch(() => undefined) : this.grammars.spec(constraint);
      grammar.catch(() => {});
    }
    return {
      ...(grammar ? { grammar } : {}),
      ...(constraint?.json ? { parseJson: true } : {}),
      prompt,
      maxTokens,
      sampling,
      stop,
      eos: this.eos,
      startsInReasoning,
      thinkingBudget,
      closeReasoning,
      parseToolCalls,
      signal,
      reusePrefix: true,
      snapshotAt: [],
      pinAt: [],
      snapshotEvery: this.snapshotInterval,
      idleTimeoutMs: this.idleTimeoutMs,
      topLogprobs,
      abortBehavior,
      ...tokenObserver(options),
    };
  }

  private parseLogitBias(bias: unknown): Array<[number, number]> {
    if (bias === undefined) return [];
    v.assertObject('options.logitBias', bias);
    const vocab = this.info.config.vocabSize;
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

  private assertOpen(): void {
    if (this.closed) throw new ModelClosedError();
  }

  private assertFits(n: number): void {
    if (n > this.info.contextLength) {
      throw new ContextOverflowError(`the prompt has ${n} tokens but the context length is ${this.info.contextLength}`);
    }
  }

  private requireTokenizer(): TextTokenizer {
    this.assertOpen();
    if (!this.tokenizer) {
      throw new InvalidArgumentError('ERR_INVALID_ARGUMENT', `the checkpoint at ${this.info.path} has no tokenizer.json: pass token ids instead of text`);
    }
    return this.tokenizer;
  }
}

/** Loads a Hugging Face checkpoint folder, a .gguf file, or `hf:owner/name[@rev][/file.gguf]` (downloaded to the hub cache first). See LoadOptions. */
export async function loadModel(modelPath: string, options?: LoadOptions): Promise<NemotronModel> {
  return NemotronModel.load(await resolveModelPath(modelPath, options ?? {}), options);
}
