/**
 * The one description of what the native addon (csrc/addon) exports. Nothing else in lib/ may assume
 * anything about the .node file. Native methods trust their arguments: lib/ validates first.
 */

export interface NativeEngineOptions {
  threads: number; // 0 = one per hardware thread
  contextLength: number; // 0 = config max_position_embeddings
  maxSequences: number;
  maxBatchTokens: number;
  kvDtype: 'f16' | 'f32';
  /** KV pool room for snapshots beyond the live sequences' needs. */
  cacheBytes: number;
  /** 'cpu' (default) or 'cuda' / 'cuda:N' (CUDA builds only). */
  device?: string;
  /** Matmul activation precision (csrc/kernels/kernels.h MatmulPrecision); default 'exact'. */
  precision?: 'exact' | 'fast';
  /** Scan every weight for NaN/Inf before loading (csrc/model/tensor_check.h); default false. */
  checkTensors?: boolean;
  /** CPU weight placement (csrc/model/weights.h WeightsPlacement); default 'mmap'. */
  weights?: 'mmap' | 'memory';
}

export interface NativeConfig {
  architecture: string;
  hybridOverridePattern: string;
  numLayers: number;
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numAttentionHeads: number;
  numKeyValueHeads: number;
  headDim: number;
  mambaNumHeads: number;
  mambaHeadDim: number;
  ssmStateSize: number;
  nGroups: number;
  convKernel: number;
  chunkSize: number;
  layerNormEpsilon: number;
  maxPositionEmbeddings: number;
  bosTokenId: number;
  eosTokenIds: number[];
  torchDtype: string;
  /** Mixture-of-experts ('E') blocks, present only for models that have them (HF NemotronHConfig names). */
  nRoutedExperts?: number;
  numExpertsPerTok?: number;
  moeIntermediateSize?: number;
  /** 0: no shared expert. */
  moeSharedExpertIntermediateSize?: number;
  nGroup?: number;
  topkGroup?: number;
  normTopkProb?: boolean;
  routedScalingFactor?: number;
}

export interface NativeModelInfo {
  config: NativeConfig;
  parameterCount: number;
  weightBytes: number;
  backend: string;
  threads: number;
  contextLength: number;
  maxSequences: number;
  maxBatchTokens: number;
}

/** Sampling parameters of one request (csrc/engine/sampler.h SamplingParams). */
export interface NativeSampling {
  temperature: number;
  topK: number;
  topP: number;
  minP: number;
  repetitionPenalty: number;
  presencePenalty: number;
  frequencyPenalty: number;
  /** [token id, bias] pairs added to the logits; a bias <= -100 bans the token. */
  logitBias: ReadonlyArray<readonly [number, number]>;
  seed: number;
}

export interface NativeBatchItem {
  id: number;
  tokens: Int32Array;
  allLogits: boolean;
}

export interface NativeStepItem {
  id: number;
  tokens: Int32Array;
  /** Sample a token once all of `tokens` are in. */
  sample: boolean;
  sampling: NativeSampling;
  /** Sequence tokens before this request's generated ones (penalties count only generated tokens). */
  nPrompt: number;
  /** The sampler's counter: index of the token being drawn in its request. */
  draw: number;
  /** Absolute positions at which to snapshot the sequence (ascending); pieces are cut there. */
  snapshotAt?: number[];
}

export interface NativeStepResult {
  consumed: Int32Array;
  token: Int32Array;
  /** A snapshot was taken at this position (-1: none) ... */
  snapshotPosition: Float64Array;
  /** ... with this id. */
  snapshotId: Int32Array;
}

/** One request as the engine registers it (csrc/engine/scheduler.h RequestSpec). */
export interface NativeRequestSpec {
  prompt: Int32Array;
  sampling?: NativeSampling;
  /** Sampled end tokens finish the request (never emitted). */
  eos?: Int32Array;
  /** Tokens to generate, forced ones included; 0 = prefill only. */
  maxTokens: number;
  /** Logits of the prompt: 0 none, 1 the last position, 2 every position (evaluate). */
  logits?: 0 | 1 | 2;
  /** Restore the longest cached prefix of the prompt. */
  reusePrefix: boolean;
  /** Prompt positions in (0, prompt.length] to snapshot into the prefix cache. */
  snapshotAt?: number[];
  /** Of those, the positions whose snapshot is pinned for the caller (released with pin(id, -1)). */
  pinAt?: number[];
  /** Also snapshot every this many prompt positions; 0 = off. */
  snapshotEvery?: number;
  /** 0..20: log-probs of each emitted token and its top alternatives (raw model distribution); -1 or absent = off. */
  topLogprobs?: number;
  /** Grammar-constrained decoding (csrc/engine/grammar.h); absent = unconstrained. */
  grammar?: NativeGrammarSpec;
}

/** One piece of a grammar (csrc/engine/grammar.h GrammarPart); a grammar is the concatenation of its pieces. */
export interface NativeGrammarPart {
  kind: 'ebnf' | 'json_schema' | 'json_object' | 'regex' | 'literal';
  source: string;
  /** json_schema: no properties/items beyond the schema's (default true). */
  strict?: boolean;
}

export interface NativeGrammarSpec {
  /** From compileGrammar(). */
  compiled: object;
  /** UTF-8 strings that must be generated, in order, before the grammar applies (none: from the first token). */
  triggers?: Uint8Array[];
}

export type NativeRequestEnd = 'stop' | 'length' | 'done' | 'cancelled' | 'error';

/** What one engine step did. Pairs and quads are flattened into Float64Arrays. */
export interface NativeStepEvents {
  /** [request, cached prompt tokens] pairs: requests given a sequence this step. */
  admitted: Float64Array;
  /** [request, token] pairs, in order. */
  tokens: Float64Array;
  /** [request, position, snapshot id, pinned (1/0)] quads. */
  snapshots: Float64Array;
  finished: Array<{ request: number; reason: NativeRequestEnd; error?: Error & { code?: string }; logits?: Float32Array }>;
  /** For requests with topLogprobs: per emitted token, [request, token, log-prob, k, then k (id, log-prob) pairs]. */
  logprobs?: Float64Array;
  tokensProcessed: number;
  ranForward: boolean;
}

export interface NativeSchedulerStats {
  liveSequences: number;
  queued: number;
  liveRequests: number;
  sequenceBytes: number;
  /** Grammar masks computed, ms computing them (beside the forward pass), ms of grammar work the steps waited for. */
  grammarMasks: number;
  grammarMaskMs: number;
  grammarExposedMs: number;
}

export interface NativeCacheStats {
  /** Prefix-cache entries, the bytes they hold (Mamba copies + snapshot-only KV blocks), hits and tokens reused. */
  cacheEntries: number;
  cacheBytes: number;
  cacheHits: number;
  cacheTokensReused: number;
  kvBlocksTotal: number;
  kvBlocksUsed: number;
  kvBlockBytes: number;
  snapshots: number;
  snapshotStateBytes: number;
  /** Of snapshotStateBytes, the Mamba states moved to host memory (CUDA, when the device needed room). */
  snapshotHostStateBytes: number;
  /** KV blocks referenced by snapshots and by no live sequence. */
  snapshotOnlyKvBlocks: number;
}

/**
 * The engine as the library drives it: requests registered once, steps run on a worker. The synchronous
 * methods are O(1) and never wait for a running step.
 */
export interface NativeEngine extends NativeEngineDebug {
  info(): NativeModelInfo;
  /** Registers a request (queued for a sequence slot); returns its id. */
  submit(spec: NativeRequestSpec): number;
  /** The consumer wants the next token; `forced` tokens are fed first. False: the request has ended. */
  resume(request: number, forced?: Int32Array): boolean;
  /** Ends a request at the next step. False: it has ended already. */
  cancel(request: number): boolean;
  /** Adds (+1) or removes (-1) a pin on a cached snapshot, applied at the next step. */
  pin(snapshotId: number, delta: number): void;
  /** Whether a step now would do anything. */
  hasWork(): boolean;
  /** One step on a worker thread. */
  runStep(): Promise<NativeStepEvents>;
  schedulerStats(): NativeSchedulerStats;
  /** Hands the grammar engine the vocabulary (each id's bytes, special tokens empty) and the end tokens, once. */
  setGrammarVocab(tokens: Uint8Array[], stop: Int32Array): Promise<void>;
  /** Compiles a grammar against that vocabulary on a worker; rejects with the grammar's error. */
  compileGrammar(parts: NativeGrammarPart[]): Promise<object>;
  /** O(1): figures published at the end of each step. */
  cacheStats(): NativeCacheStats;
  /** A self-describing image of a snapshot (Mamba state + the KV rows it covers). */
  exportSnapshot(snapshotId: number): Promise<Uint8Array>;
  /** Rebuilds a snapshot from an image and the tokens it covers, into the prefix cache with one pin. */
  importSnapshot(bytes: Uint8Array, tokens: Int32Array): Promise<number>;
  /** Ends every request and frees the engine on a worker (running steps finish first on their own reference). */
  close(): Promise<void>;
}

/**
 * Sequence-level calls for native tests and benchmarks only (test/gpu.test.ts, kernel tests): they take
 * the engine's compute lock and may wait for a running step. The library never calls them.
 */
export interface NativeEngineDebug {
  createSequence(): number;
  freeSequence(id: number): void;
  sequenceLength(id: number): number;
  liveSequences(): number;
  /** Bytes of conv/SSM state and KV held by live sequences. */
  sequenceBytes(): number;
  /** Appends tokens to a sequence; resolves to the last row of logits, or all rows ([n, vocab]). */
  evaluate(id: number, tokens: Int32Array, allLogits: boolean): Promise<Float32Array>;
  /** Freezes a sequence's state (Mamba state copied, KV blocks shared); returns the snapshot id. */
  snapshot(id: number): number;
  /** Replaces a sequence's state with a snapshot's. */
  restore(id: number, snapshotId: number): void;
  dropSnapshot(snapshotId: number): void;
  /** Several sequences in one forward pass. */
  evaluateBatch(items: NativeBatchItem[]): Promise<Float32Array[]>;
  /**
   * One continuous-batching step over several sequences (csrc/engine/step_plan.h): each item's pending
   * tokens are fed (all or, for long inputs, a chunk-aligned piece) in ONE forward pass. consumed[i]
   * is how many of item i's tokens ran; token[i] the sampled token, or -1.
   */
  step(items: NativeStepItem[]): Promise<NativeStepResult>;
}

export interface SsmKernelParams {
  H: number;
  P: number;
  G: number;
  N: number;
  A: Float32Array;
  D: Float32Array;
  dtBias: Float32Array;
  dtMin: number;
  dtMax: number;
}

/**
 * The debug sampler's parameters (csrc/engine/sampler.h): NativeSampling plus the penalties and bias.
 * Every field is optional there; a missing one takes the native default.
 */
export interface NativeSamplerParams extends Partial<Omit<NativeSampling, 'logitBias'>> {
  /** HF/CTRL: each distinct token of `history` (prompt and generated): logit > 0 ? logit / p : logit * p. */
  repetitionPenalty?: number;
  /** OpenAI: logit -= presence for each token generated at least once (history[nPrompt..]). */
  presencePenalty?: number;
  /** OpenAI: logit -= frequency * (times generated). */
  frequencyPenalty?: number;
  /** Added to the logit before temperature; a bias <= -100 bans the token. [id, bias] pairs or { id: bias }. */
  logitBias?: ReadonlyArray<readonly [number, number]> | Readonly<Record<number, number>>;
}

/** Every CPU kernel on typed arrays, for the kernel tests (same shapes as csrc/kernels/kernels.h). */
export interface NativeKernels {
  /** options: precision and input as csrc/kernels/kernels.h MatmulPrecision / MatmulInput; threads 1 or 2 (default 2). */
  matmul(x: Float32Array, T: number, K: number, w: Float32Array | Uint16Array | Uint8Array, dtype: 'F32' | 'BF16' | 'F16' | 'Q8_0' | 'Q4_0' | 'Q5_0' | 'Q5_1' | 'Q4_K' | 'Q5_K' | 'Q6_K', N: number, options?: { precision?: 'exact' | 'fast'; input?: 'plain' | 'relu2'; threads?: number }): Float32Array;
  rmsnorm(x: Float32Array, T: number, C: number, w: Float32Array, eps: number): Float32Array;
  rmsnormGatedGrouped(y: Float32Array, z: Float32Array, T: number, C: number, groupSize: number, w: Float32Array, eps: number): Float32Array;
  conv1dCausal(x: Float32Array, T: number, C: number, w: Float32Array, K: number, b: Float32Array, state: Float32Array): { y: Float32Array; state: Float32Array };
  conv1dStep(x: Float32Array, C: number, w: Float32Array, K: number, b: Float32Array, state: Float32Array): { y: Float32Array; state: Float32Array };
  ssdChunkScan(x: Float32Array, dtRaw: Float32Array, B: Float32Array, C: Float32Array, p: SsmKernelParams, T: number, state: Float32Array, chunkSize: number, threads?: number): { y: Float32Array; state: Float32Array };
  ssmStateUpdate(x: Float32Array, dtRaw: Float32Array, B: Float32Array, C: Float32Array, p: SsmKernelParams, state: Float32Array): { y: Float32Array; state: Float32Array };
  attentionGqa(q: Float32Array, k: Float32Array, v: Float32Array, past: number, T: number, Hq: number, Hkv: number, Dh: number, paged?: { blockTokens?: number; dtype?: 'F32' | 'F16'; shuffle?: boolean; threads?: number }): Float32Array;
  relu2(x: Float32Array): Float32Array;
  /** MoE routing (csrc/kernels/kernels.h moe_route) of T rows of router logits [T, nExperts]. */
  moeRoute(
    logits: Float32Array,
    bias: Float32Array,
    T: number,
    p: { nExperts: number; topK: number; nGroup: number; topkGroup: number; normTopkProb: boolean; scaling: number },
  ): { ids: Int32Array; weights: Float32Array };
  /** Bytes of weight matrices read by every forward pass of the process so far (csrc/engine/forward.h). */
  weightBytesRead(): number;
  sample(logits: Float32Array, sampling: NativeSamplerParams, step: number, history?: Int32Array, nPrompt?: number): number;
  /** 'scalar' | 'avx2' | 'avx512' | 'neon' | 'auto'; an unknown name leaves the path as it is. Returns the active path. */
  setKernelPath(name: string): string;
  kernelPath(): string;
  /** The integer dot-product path of the quantized kFast kernels ('vnni512' | 'avxvnni' | 'avx2' | 'scalar'); allowVnni false forbids VNNI (tests). */
  quantDotPath(allowVnni?: boolean): string;
  cpuFeatures(): { avx2Fma: boolean; avx512f: boolean; avx512bf16: boolean };
}

/** Constants of the engine that the JavaScript side plans with, from their one C++ definition. */
export interface NativeEngineConstants {
  /** Positions per KV-cache block (KvPool::kBlockTokens). */
  kvBlockTokens: number;
  /** Rows the lm_head runs on at a time (Workspace::kLogitRows). */
  logitRows: number;
  defaultMaxSequences: number;
  defaultMaxBatchTokens: number;
  /** The prefix cache's default budget in bytes. */
  defaultCacheBytes: number;
}

export interface NativeAddon {
  loadEngine(path: string, options: NativeEngineOptions): Promise<NativeEngine>;
  engineConstants: NativeEngineConstants;
  _kernels: NativeKernels;
  /** GB/s of memory reads on `threads` threads (best of 5 passes over `bytes`); blocks ~1 s. For benchmarks. */
  _measureReadBandwidth(bytes: number, threads: number): number;
  /**
   * Loads a checkpoint's weights (no engine), places them as LoadOptions.weights would and measures the
   * read bandwidth of the weights where they are (GB/s, best of 5 passes on `threads` threads); also the
   * placement time and how many bytes ended in 2 MiB pages. Synchronous, seconds. For benchmarks.
   */
  _measureWeightsReadBandwidth(path: string, weights: 'mmap' | 'memory', threads: number): {
    gbps: number; bytes: number; placeMs: number; copiedBytes: number; anonHugeBytes: number; filePmdBytes: number;
  };
  /**
   * Both placements loaded at once, single passes alternated `passes` times (GB/s of weights per pass):
   * plain reads, or with kind 'matmul' one T = 1 product with every matrix (decode's weight stream).
   */
  _measureWeightsReadBandwidth(path: string, weights: 'both', threads: number, passes: number, kind?: 'read' | 'matmul'): { mmap: number[]; memory: number[]; bytes: number };
}
