/**
 * NemotronModel: a loaded checkpoint and everything a caller does with it. Validation, tokenization, chat
 * templates and streaming live here; every forward pass runs natively off the JS thread, and all live
 * requests share each forward pass (continuous batching, lib/scheduler.ts).
 */
import path from 'node:path';

import type { NativeConfig, NativeEngine } from './addon-types.js';
import type { SnapshotRef } from './cache/snapshot-ref.js';
import { ChatSession, type ChatHost, type NewChatOptions } from './chat/session.js';
import { fingerprintCheckpoint } from './chat/session-file.js';
import { ChatTemplate, validateMessages, type ChatMessage, type ToolDefinition } from './chat/template.js';
import { ContextOverflowError, InvalidArgumentError, ModelClosedError, rethrowTyped } from './errors.js';
import { nextTurnText, turnBoundaries, turnMarkers, type TurnMarkers } from './chat/turns.js';
import { TokenizerPool } from './tokenizer-pool.js';
import { GENERATE_KEYS, GenerationRequest, type GenerateOptions, type GenerateResult, type RequestSpec, type StreamEvent } from './generation.js';
import type { Message } from './chat/openai.js';
import { GrammarCompiler } from './grammar.js';
import { hasGgufTokenizer, tokenizerFromGguf } from './gguf/reader.js';
import type { MemoryPlan } from './memory.js';
import { Scheduler } from './scheduler.js';
import { TextTokenizer } from './tokenizer.js';
import * as v from './validate.js';
import { progressCallback, resolveModelPath } from './load-progress.js';
import type { TextModel } from './text-model.js';
import { chooseDevice } from './device.js';
import { readEosIds } from './model/end-tokens.js';
import { checkLoadOptions, type LoadOptions } from './model/load-options.js';
import { restoreChatSession, saveChatSession } from './model/session-files.js';
import { createChatHost } from './model/chat-host.js';
import { planFromEngine, planLoad } from './model/load-plan.js';
import { assertFits, buildRequestSpec, type RequestContext } from './model/request-spec.js';

export type { AbortBehavior, FinishReason, GenerateOptions, GenerateResult, SamplingOptions, StreamEvent, Timings, TokenLogprob, TopLogprob, Usage } from './generation.js';
export type { LoadOptions } from './model/load-options.js';
export { AbortError } from './generation.js';

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
  /** The matrix-product precision used (LoadOptions.precision, or the checkpoint's default by weight type). */
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

export interface EvaluateOptions {
  /** 'last' (default): logits of the last position; 'all': of every position. */
  logits?: 'last' | 'all';
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
  private readonly requestContext: RequestContext;
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
    this.requestContext = { tokenizer, grammars: this.grammars, eos: this.eos, vocabSize: ni.config.vocabSize, contextLength: this.info.contextLength, snapshotInterval: this.snapshotInterval, idleTimeoutMs: this.idleTimeoutMs };
  }

  /** Loads a Hugging Face checkpoint folder (config.json, safetensors, tokenizer files) or a llama.cpp `.gguf` file (architecture nemotron_h). */
  static async load(modelPath: string, options: LoadOptions = {}): Promise<NemotronModel> {
    const stack = new Error();
    if (typeof modelPath !== 'string' || modelPath.length === 0) throw v.invalid('path', 'a checkpoint folder path', modelPath);
    const o = checkLoadOptions(options);
    const progress = progressCallback(options.onProgress);
    const dir = path.resolve(modelPath);
    progress({ phase: 'plan', fraction: 0, path: dir });
    // Plan memory from the config before anything is allocated, and refuse a plan that does not fit.
    const plan = planLoad(dir, o);
    let weights = plan.weights;
    progress({ phase: 'plan', fraction: 1, path: dir, ...(plan.memory ? { weightBytes: plan.memory.weights } : {}) });
    progress({ phase: 'tokenizer', fraction: 0, path: dir });
    const gguf = plan.gguf;
    const tokenizer = gguf ? (hasGgufTokenizer(gguf) ? TextTokenizer.fromFiles(tokenizerFromGguf(gguf)) : null) : TextTokenizer.fromDir(dir);
    progress({ phase: 'tokenizer', fraction: 1, path: dir });
    progress({ phase: 'load', fraction: 0, path: dir });
    let engine: NativeEngine;
    try {
      // MoE blocks (cuda/moe.cu) and FP8 weights (E4M3 bytes on the device) run on both backends.
      const backend = await chooseDevice(o.device, { selfCheck: o.selfCheck });

      if (backend.device !== 'cpu') weights = 'mmap';
      engine = await backend.addon.loadEngine(dir, {
        threads: o.threads ?? 0,
        contextLength: plan.contextLength,
        maxSequences: plan.maxSequences,
        maxBatchTokens: plan.maxBatchTokens,
        kvDtype: o.kvDtype,
        cacheBytes: o.cacheBytes,
        device: backend.device,
        precision: plan.precision,
        checkTensors: o.checkTensors,
        weights,
      });
    } catch (err) {
      rethrowTyped(err, stack);
    }
    try {
      tokenizer?.checkVocabulary(engine.info().config.vocabSize);
    } catch (err) {
      engine.close();
      throw err;
    }
    let memory = plan.memory;
    if (!memory) {
      try {
        memory = planFromEngine(engine.info().config, engine.info().weightBytes, { ...plan, weights }, o);
      } catch (err) {
        await engine.close();
        throw err;
      }
    }
    const model = new NemotronModel(dir, engine, tokenizer, o, { kvDtype: o.kvDtype, precision: plan.precision, weights }, memory);
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
    }).catch((err: unknown) => rethrowTyped(err, stack));
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
    v.assertKnownKeys('options', options, ['system', 'reasoning', 'tools', 'contextOverflow', 'messages']);
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
    return restoreChatSession(file, { engine: this.engine, scheduler: this.scheduler, host: this.chatHost, vocabSize: this.info.config.vocabSize, fingerprint: await this.modelFingerprint() });
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

  private readonly chatHost: ChatHost = createChatHost({
    template: () => this.template,
    tokenize: (text) => this.tokenize(text),
    detokenize: (ids) => this.detokenize(ids),
    contextLength: () => this.info.contextLength,
    requestContext: () => this.requestContext,
    scheduler: () => this.scheduler,
    stream: (spec) => this.streamSpec(spec),
    prepareTurn: (tokens) => (this.prepareNextTurn ? this.prefill(tokens, true) : Promise.resolve(null)),
    saveTurnState: async (session, file) => {
      this.assertOpen();
      await saveChatSession(file, session, this.engine, await this.modelFingerprint());
    },
  });

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
    v.assertKnownKeys('options', options, GENERATE_KEYS);
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
      const spec = buildRequestSpec(this.requestContext, options, prompt, startsInReasoning, hasMessages);
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

  private assertOpen(): void {
    if (this.closed) throw new ModelClosedError();
  }

  private assertFits(n: number): void {
    assertFits(n, this.info.contextLength);
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
