/**
 * NemotronModel: a loaded checkpoint and everything a caller does with it. Validation, tokenization, chat
 * templates and streaming live here; every forward pass runs natively off the JS thread, and all live
 * requests share each forward pass (continuous batching, lib/scheduler.ts).
 */
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import type { NativeAddon, NativeEngine, NativeModelInfo, NativeSampling } from './addon-types.js';
import { PrefixCache, type CacheEntry } from './cache/prefix-cache.js';
import { ChatSession, TURN_OPTION_KEYS, type ChatHost, type ChatOptions, type TurnOptions } from './chat/session.js';
import { fingerprintCheckpoint, readSessionFile, writeSessionFile } from './chat/session-file.js';
import { ChatTemplate, validateMessages, type ChatMessage, type ToolDefinition } from './chat/template.js';
import { ContextOverflowError, DeviceUnavailableError, InvalidArgumentError, ModelClosedError, ModelLoadError, NemotronError, SessionFileError, errorFromCode } from './errors.js';
import { GenerationRequest, type GenerateResult, type RequestSpec, type StreamEvent } from './generation.js';
import { ggufConfigForPlan, hasGgufTokenizer, readGgufMetadata, tokenizerFromGguf } from './gguf/reader.js';
import { checkPlanFits, chooseWeightsPlacement, planMemory, type MemoryPlan } from './memory.js';
import { loadCudaAddon, noteCpuFallback } from './cuda.js';
import { loadNative } from './native.js';
import { Scheduler } from './scheduler.js';
import { TextTokenizer } from './tokenizer.js';
import * as v from './validate.js';

export type { FinishReason, GenerateResult, StreamEvent, Timings, Usage } from './generation.js';

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
  /** Refuse to load when the memory plan (model.info.memory) exceeds this many bytes. Default: the machine's total memory. */
  memoryLimit?: number;
  /** 'cpu' (default), 'cuda' (a typed error without a usable GPU and CUDA build), or 'auto' (the GPU when there is one). */
  device?: 'cpu' | 'cuda' | 'auto';
  /**
   * Matrix-product precision. 'exact' (default): activations stay f32 on CPU (log-probs within ~1e-5 of
   * a float64 reference); on CUDA each activation is split into two bf16 terms. 'fast': activations are
   * rounded to the weights' dot-product type where the hardware has one, as llama.cpp does (bf16 for
   * BF16 weights on CPUs with AVX-512 BF16, 8-bit blocks for quantized weights; bf16 on CUDA): faster
   * prompts and batches, log-probs within ~1e-2. Both are batch invariant.
   */
  precision?: 'exact' | 'fast';
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

export type ModelConfig = NativeModelInfo['config'];

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
  /** A conversation, rendered with the checkpoint's chat template. Give this or `prompt`. */
  messages?: ChatMessage[];
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
  signal?: AbortSignal;
}

export interface EvaluateOptions {
  /** 'last' (default): logits of the last position; 'all': of every position. */
  logits?: 'last' | 'all';
}

const LOAD_KEYS = ['threads', 'contextLength', 'maxSequences', 'maxBatchTokens', 'kvDtype', 'cacheBytes', 'snapshotInterval', 'memoryLimit', 'device', 'precision', 'weights'] as const;

/** The addon to load with: the CPU build, or the CUDA build after its child-process smoke test. */
function chooseBackend(device: 'cpu' | 'cuda' | 'auto'): { addon: Pick<NativeAddon, 'loadEngine'>; device: string } {
  if (device === 'cpu') return { addon: loadNative(), device: 'cpu' };
  const probe = loadCudaAddon();
  if ('addon' in probe && probe.deviceCount > 0) return { addon: probe.addon as unknown as Pick<NativeAddon, 'loadEngine'>, device: 'cuda' };
  const reason = 'addon' in probe ? 'no CUDA device is visible' : probe.reason;
  if (device === 'cuda') throw new DeviceUnavailableError(`device 'cuda' is not available: ${reason}`);
  // 'auto': one log line per process, whether the CUDA build is missing or failed its smoke test.
  noteCpuFallback(reason);
  return { addon: loadNative(), device: 'cpu' };
}
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
const DEFAULT_CACHE_BYTES = 1024 ** 3;
const GENERATE_KEYS = [
  'prompt', 'messages', 'tools', 'reasoning', 'thinkingBudget', 'maxTokens', 'stop', 'signal',
  'temperature', 'topK', 'topP', 'minP', 'repetitionPenalty', 'presencePenalty', 'frequencyPenalty', 'logitBias', 'seed',
] as const;

/** NVIDIA's recommended sampling with reasoning on (model card); greedy otherwise. */
const REASONING_DEFAULTS = { temperature: 0.6, topP: 0.95, maxTokens: 4096 };

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

export class NemotronModel {
  readonly info: ModelInfo;
  private readonly engine: NativeEngine;
  private readonly tokenizer: TextTokenizer | null;
  private readonly template: ChatTemplate | null;
  private readonly eos: Set<number>;
  private readonly scheduler: Scheduler;
  private readonly cache: PrefixCache;
  private readonly snapshotInterval: number;
  private fingerprint: Promise<string> | undefined;
  private readonly inflight = new Set<Promise<unknown>>();
  private readonly closing = new AbortController();
  private closed = false;

  private constructor(dir: string, engine: NativeEngine, tokenizer: TextTokenizer | null, cacheBytes: number, snapshotInterval: number, numerics: { kvDtype: 'f16' | 'f32'; precision: 'exact' | 'fast'; weights: 'mmap' | 'memory' }, memory: MemoryPlan) {
    this.engine = engine;
    this.tokenizer = tokenizer;
    this.template = tokenizer ? ChatTemplate.fromTokenizerConfig(tokenizer.config) : null;
    const ni = engine.info();
    const eosTokenIds = readEosIds(dir, ni, tokenizer);
    this.eos = new Set(eosTokenIds);
    this.info = Object.freeze({ path: dir, ...ni, eosTokenIds, ...numerics, memory });
    this.cache = new PrefixCache(engine, cacheBytes);
    // A freed sequence can leave KV blocks held only by snapshots: re-check the cache budget then.
    this.scheduler = new Scheduler(engine, ni.maxSequences, () => this.cache.evict());
    this.snapshotInterval = snapshotInterval;
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
    const memoryLimit = v.optionalInteger('options.memoryLimit', options.memoryLimit, 1) ?? os.totalmem();
    const weightsOption: unknown = options.weights ?? 'mmap';
    if (weightsOption !== 'mmap' && weightsOption !== 'memory' && weightsOption !== 'auto') throw v.invalid('options.weights', "'mmap', 'memory' or 'auto'", weightsOption);
    const deviceOption: unknown = options.device ?? 'cpu';
    if (deviceOption !== 'cpu' && deviceOption !== 'cuda' && deviceOption !== 'auto') throw v.invalid('options.device', "'cpu', 'cuda' or 'auto'", deviceOption);
    const dir = path.resolve(modelPath);
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
    const planOptions = { contextLength: context, maxSequences: maxSequences ?? 8, maxBatchTokens: maxBatchTokens ?? 256, kvDtype, cacheBytes };
    let plan: MemoryPlan | undefined;
    // weights: 'auto' decides on the plan with the copy; the CUDA backend keeps no host copy ('mmap').
    let weights: 'mmap' | 'memory' = weightsOption === 'memory' && deviceOption !== 'cuda' ? 'memory' : 'mmap';
    if (rawConfig) {
      try {
        const weightBytes = gguf ? gguf.fileSize - gguf.dataOffset : weightFileBytes(dir);
        if (weightsOption === 'auto' && deviceOption === 'cpu') {
          weights = chooseWeightsPlacement(planMemory(rawConfig, { ...planOptions, weightBytes, weights: 'memory' }), Math.min(memoryLimit, os.totalmem()));
        }
        plan = planMemory(rawConfig, { ...planOptions, weightBytes, weights });
      } catch {
        plan = undefined; // a broken config: the native loader says precisely what is wrong
      }
    }
    if (plan) checkPlanFits(plan, memoryLimit);
    const tokenizer = gguf ? (hasGgufTokenizer(gguf) ? TextTokenizer.fromFiles(tokenizerFromGguf(gguf)) : null) : TextTokenizer.fromDir(dir);
    let engine: NativeEngine;
    try {
      const backend = chooseBackend(deviceOption);
      if (backend.device !== 'cpu') weights = 'mmap';
      engine = await backend.addon.loadEngine(dir, {
        threads: threads ?? 0,
        contextLength: context,
        maxSequences: maxSequences ?? 8,
        maxBatchTokens: maxBatchTokens ?? 256,
        kvDtype,
        cacheBytes,
        device: backend.device,
        precision,
        weights,
      });
    } catch (err) {
      rethrow(err, stack);
    }
    if (!plan) {
      try {
        plan = planMemory(engine.info().config as unknown as Record<string, unknown>, { ...planOptions, weightBytes: engine.info().weightBytes, weights });
        checkPlanFits(plan, memoryLimit);
      } catch (err) {
        engine.close();
        throw err;
      }
    }
    return new NemotronModel(dir, engine, tokenizer, cacheBytes, snapshotInterval, { kvDtype, precision, weights }, plan);
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
  applyChatTemplate(messages: ChatMessage[], options: { tools?: ToolDefinition[]; reasoning?: boolean } = {}): string {
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
    return this.track(async () => {
      let seq: number;
      try {
        seq = await this.scheduler.acquire(this.closing.signal);
      } catch {
        throw new ModelClosedError();
      }
      try {
        return await this.engine.evaluate(seq, tokens, options.logits === 'all');
      } catch (err) {
        rethrow(err, stack);
      } finally {
        this.scheduler.release(seq);
      }
    });
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

  private streamSpec(spec: RequestSpec): AsyncGenerator<StreamEvent, void, undefined> {
    this.assertOpen();
    const request = new GenerationRequest(spec, this.scheduler, this.tokenizer);
    const events = request.run();
    let done!: () => void;
    const tracked = new Promise<void>((resolve) => (done = resolve));
    this.inflight.add(tracked);
    const inflight = this.inflight;
    return (async function* () {
      try {
        yield* events;
      } finally {
        inflight.delete(tracked);
        done();
      }
    })();
  }

  /**
   * A chat session: send() / stream() a turn at a time; each turn computes only its new tokens (the
   * state at the previous turn's assistant message is restored from the snapshot cache). fork() and
   * save() make cheap copies and bit-exact files.
   */
  chat(options: ChatOptions = {}): ChatSession {
    this.assertOpen();
    v.assertObject('options', options);
    v.assertKnownKeys('options', options as Record<string, unknown>, ['system', 'reasoning', 'tools', 'contextOverflow']);
    if (!this.template) throw new InvalidArgumentError('ERR_INVALID_ARGUMENT', `the checkpoint at ${this.info.path} has no chat template`);
    return new ChatSession(this.chatHost, options);
  }

  /** Restores a session written by ChatSession.save(); it continues exactly where the saved one was. */
  async loadChat(file: string): Promise<ChatSession> {
    this.assertOpen();
    const content = await readSessionFile(file, await this.modelFingerprint());
    const meta = content.meta as { options?: ChatOptions; history?: ChatMessage[] };
    if (typeof meta.options !== 'object' || !Array.isArray(meta.history)) {
      throw new SessionFileError(`session file ${file}: its metadata has no chat options and history`);
    }
    const history = meta.history.length ? validateMessages(meta.history) : [];
    let anchor: CacheEntry | null = null;
    if (content.state.byteLength > 0) {
      let id: number;
      try {
        id = await this.engine.importSnapshot(content.state, content.tokens);
      } catch (err) {
        const e = err as { message?: string };
        throw new SessionFileError(`session file ${file}: its engine state cannot be used: ${e.message ?? String(err)}`, { cause: err });
      }
      anchor = this.cache.insert(id, content.tokens);
    }
    return new ChatSession(this.chatHost, meta.options, history, anchor);
  }

  /** Live sequences, queued requests, state memory and work done, for monitoring. */
  stats(): ModelStats {
    const cache = this.closed ? null : this.engine.cacheStats();
    return {
      liveSequences: this.scheduler.liveSequences,
      kvBlocksUsed: cache?.kvBlocksUsed ?? 0,
      kvBlocksFree: cache ? cache.kvBlocksTotal - cache.kvBlocksUsed : 0,
      snapshots: cache?.snapshots ?? 0,
      snapshotBytes: cache ? cache.snapshotStateBytes + cache.snapshotOnlyKvBlocks * cache.kvBlockBytes : 0,
      snapshotHostBytes: cache?.snapshotHostStateBytes ?? 0,
      prefixCacheHits: this.cache.hits,
      tokensReused: this.cache.tokensReused,
      queuedRequests: this.scheduler.queued,
      sequenceBytes: this.closed ? 0 : this.engine.sequenceBytes(),
      steps: this.scheduler.steps,
      tokensProcessed: this.scheduler.tokensProcessed,
    };
  }

  /** Frees the engine. Running generations end with finishReason 'abort'; further calls throw. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.closing.abort(new ModelClosedError());
    this.scheduler.rejectWaiting(new ModelClosedError());
    await Promise.allSettled([...this.inflight]);
    await this.scheduler.idle(); // a step may still be running for a request that already ended
    this.engine.close();
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
    pin: (entry) => this.cache.pin(entry),
    unpin: (entry) => this.cache.unpin(entry),
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

  private parseTurn(prompt: Int32Array, chat: { tools: boolean; reasoning: boolean | undefined; snapshotAt: number[]; onSnapshot: (p: number, e: CacheEntry) => void }, options: TurnOptions): RequestSpec {
    v.assertObject('options', options);
    v.assertKnownKeys('options', options as Record<string, unknown>, TURN_OPTION_KEYS);
    const spec = this.buildSpec(options as GenerateOptions, prompt, chat.reasoning !== false && /<think>\s*$/.test(this.detokenize(Array.from(prompt.subarray(-4)))), chat.tools);
    return { ...spec, snapshotAt: chat.snapshotAt, onSnapshot: chat.onSnapshot };
  }

  private parseGenerate(options: GenerateOptions): RequestSpec {
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
    // The prompt, and whether it opens the reasoning (the generation prompt ends with `<think>\n`).
    let prompt: Int32Array;
    let startsInReasoning = false;
    if (hasMessages) {
      const text = this.applyChatTemplate(options.messages as ChatMessage[], { ...(options.tools ? { tools: options.tools as ToolDefinition[] } : {}), ...(reasoningOpt === undefined ? {} : { reasoning: reasoningOpt }) });
      startsInReasoning = /<think>\s*$/.test(text);
      prompt = Int32Array.from(this.tokenize(text));
    } else if (typeof options.prompt === 'string') {
      if (options.prompt.length === 0) throw new InvalidArgumentError('ERR_EMPTY_PROMPT', 'options.prompt is empty: give some text or token ids');
      prompt = Int32Array.from(this.tokenize(options.prompt));
    } else {
      prompt = v.tokenIds('options.prompt', options.prompt, this.info.config.vocabSize);
    }
    return this.buildSpec(options, prompt, startsInReasoning, hasMessages);
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
    const closeReasoning = this.tokenizer && startsInReasoning ? this.tokenizer.encode('</think>\n\n', false) : [];
    return {
      prompt,
      maxTokens,
      sampling,
      stop,
      eos: this.eos,
      startsInReasoning,
      thinkingBudget,
      closeReasoning,
      parseToolCalls,
      signal: signal ? AbortSignal.any([signal, this.closing.signal]) : this.closing.signal,
      contextLength: this.info.contextLength,
      chunkTokens: this.info.maxBatchTokens,
      cache: this.cache,
      snapshotAt: [],
      snapshotEvery: this.snapshotInterval,
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
      if (typeof value !== 'number' || Number.isNaN(value)) throw v.invalid(`options.logitBias[${key}]`, 'a number', value);
      return [id, Math.max(value, -1e9)];
    });
  }

  private async track<T>(fn: () => Promise<T>): Promise<T> {
    const p = fn();
    this.inflight.add(p);
    try {
      return await p;
    } finally {
      this.inflight.delete(p);
    }
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

/** Loads a Hugging Face checkpoint folder. See LoadOptions. */
export function loadModel(modelPath: string, options?: LoadOptions): Promise<NemotronModel> {
  return NemotronModel.load(modelPath, options);
}
