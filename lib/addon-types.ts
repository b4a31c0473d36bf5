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

export interface NativeCacheStats {
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

export interface NativeEngine {
  info(): NativeModelInfo;
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
  /** A self-describing image of a snapshot (Mamba state + the KV rows it covers). */
  exportSnapshot(snapshotId: number): Promise<Uint8Array>;
  /** Rebuilds a snapshot from an image and the tokens it covers. */
  importSnapshot(bytes: Uint8Array, tokens: Int32Array): Promise<number>;
  cacheStats(): NativeCacheStats;
  /** Several sequences in one forward pass. */
  evaluateBatch(items: NativeBatchItem[]): Promise<Float32Array[]>;
  /**
   * One continuous-batching step over several sequences (csrc/engine/scheduler.h): each item's pending
   * tokens are fed (all or, for long inputs, a chunk-aligned piece) in ONE forward pass. consumed[i]
   * is how many of item i's tokens ran; token[i] the sampled token, or -1.
   */
  step(items: NativeStepItem[]): Promise<NativeStepResult>;
  /** Releases the engine; running calls finish first on their own reference. */
  close(): void;
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
  matmul(x: Float32Array, T: number, K: number, w: Float32Array | Uint16Array | Uint8Array, dtype: 'F32' | 'BF16' | 'F16' | 'Q8_0' | 'Q4_0' | 'Q4_K' | 'Q5_K' | 'Q6_K', N: number, options?: { precision?: 'exact' | 'fast'; input?: 'plain' | 'relu2'; threads?: number }): Float32Array;
  rmsnorm(x: Float32Array, T: number, C: number, w: Float32Array, eps: number): Float32Array;
  rmsnormGatedGrouped(y: Float32Array, z: Float32Array, T: number, C: number, groupSize: number, w: Float32Array, eps: number): Float32Array;
  conv1dCausal(x: Float32Array, T: number, C: number, w: Float32Array, K: number, b: Float32Array, state: Float32Array): { y: Float32Array; state: Float32Array };
  conv1dStep(x: Float32Array, C: number, w: Float32Array, K: number, b: Float32Array, state: Float32Array): { y: Float32Array; state: Float32Array };
  ssdChunkScan(x: Float32Array, dtRaw: Float32Array, B: Float32Array, C: Float32Array, p: SsmKernelParams, T: number, state: Float32Array, chunkSize: number, threads?: number): { y: Float32Array; state: Float32Array };
  ssmStateUpdate(x: Float32Array, dtRaw: Float32Array, B: Float32Array, C: Float32Array, p: SsmKernelParams, state: Float32Array): { y: Float32Array; state: Float32Array };
  attentionGqa(q: Float32Array, k: Float32Array, v: Float32Array, past: number, T: number, Hq: number, Hkv: number, Dh: number, paged?: { blockTokens?: number; dtype?: 'F32' | 'F16'; shuffle?: boolean; threads?: number }): Float32Array;
  relu2(x: Float32Array): Float32Array;
  sample(logits: Float32Array, sampling: NativeSamplerParams, step: number, history?: Int32Array, nPrompt?: number): number;
  /** 'scalar' | 'avx2' | 'avx512' | 'neon' | 'auto'; an unknown name leaves the path as it is. Returns the active path. */
  setKernelPath(name: string): string;
  kernelPath(): string;
  /** The integer dot-product path of the quantized kFast kernels ('vnni512' | 'avxvnni' | 'avx2' | 'scalar'); allowVnni false forbids VNNI (tests). */
  quantDotPath(allowVnni?: boolean): string;
  cpuFeatures(): { avx2Fma: boolean; avx512f: boolean; avx512bf16: boolean };
}

export interface NativeAddon {
  loadEngine(path: string, options: NativeEngineOptions): Promise<NativeEngine>;
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
