/**
 * Memory planner: what a model needs, computed from its config before anything is allocated
 * (docs/architecture.md §1.2 sizes, §2 tensors, §4 decode-time state). Pure arithmetic, no I/O.
 *
 * The engine's memory, item by item:
 * - weights: the checkpoint's tensors as stored (memory-mapped; resident once used), or with
 *   weights: 'memory' a copy of them in anonymous huge-page memory (weightsCopy, counted instead: the
 *   mapped file pages it was read from are reclaimable page cache once the load is done);
 * - per sequence: for each Mamba layer a conv window (K-1)·conv_dim and an SSM state H·P·N, both f32;
 *   for each attention layer K and V rows of kv_dim each, paged in blocks of KV_BLOCK_TOKENS positions
 *   (f16 by default), so a sequence at context C holds ceil(C / 64) blocks per attention layer;
 * - activations: the forward-pass workspace (csrc/engine/forward.cc Workspace::init), f32, sized for
 *   R = maxBatchTokens + maxSequences rows;
 * - the prefix/snapshot cache budget.
 */
import { InvalidArgumentError, NemotronError } from './errors.js';
import { loadNative } from './native.js';
import * as v from './validate.js';

// The engine's own numbers (csrc: KvPool::kBlockTokens, Workspace::kLogitRows, EngineOptions), as the
// addon reports them: one definition, never a copy that can drift.
const engine = loadNative().engineConstants;
/** Positions per KV-cache block. */
export const KV_BLOCK_TOKENS = engine.kvBlockTokens;
/** Rows the lm_head runs on at a time. */
export const LOGIT_ROWS = engine.logitRows;
/** Default snapshot/prefix cache budget (1 GiB). */
export const DEFAULT_CACHE_BYTES = engine.defaultCacheBytes;
export const DEFAULT_MAX_BATCH_TOKENS = engine.defaultMaxBatchTokens;
export const DEFAULT_MAX_SEQUENCES = engine.defaultMaxSequences;

export type StateDtype = 'bf16' | 'f16' | 'f32';
export type KvDtype = 'f16' | 'f32';
export type WeightDtype = 'bf16' | 'f16' | 'f32';

const DTYPE_BYTES: Record<StateDtype, number> = { bf16: 2, f16: 2, f32: 4 };

/** The config.json fields the planner needs, camelCase. Fields of a block kind the pattern lacks may be 0 or absent. */
export interface PlanConfig {
  /** One character per layer: M = Mamba-2, * = attention, - = MLP, E = mixture of experts. */
  hybridOverridePattern: string;
  hiddenSize: number;
  vocabSize: number;
  intermediateSize?: number;
  numAttentionHeads?: number;
  /** Default: numAttentionHeads. */
  numKeyValueHeads?: number;
  /** Default: hiddenSize / numAttentionHeads. */
  headDim?: number;
  mambaNumHeads?: number;
  mambaHeadDim?: number;
  ssmStateSize?: number;
  nGroups?: number;
  convKernel?: number;
  /** Default false: lm_head is its own tensor. */
  tieWordEmbeddings?: boolean;
  /** Default true: each Mamba layer has conv1d.bias. */
  useConvBias?: boolean;
  /** MoE ('E') blocks: routed experts, experts per token, each expert's width. */
  nRoutedExperts?: number;
  numExpertsPerTok?: number;
  moeIntermediateSize?: number;
  /** The shared expert's width; 0 (or nSharedExperts 0) means none. */
  moeSharedExpertIntermediateSize?: number;
  nSharedExperts?: number;
}

export interface PlanOptions {
  /** Tokens per sequence the plan provides for. */
  contextLength: number;
  /** Sequences alive at once. */
  maxSequences: number;
  /** Prompt tokens per forward pass; default 256. */
  maxBatchTokens?: number;
  /** KV-cache element type; default 'f16'. */
  kvDtype?: KvDtype;
  /** Prefix/snapshot cache budget in bytes; default 1 GiB. */
  cacheBytes?: number;
  /** Bytes of the weights as stored, when known (from the checkpoint); wins over weightDtype. */
  weightBytes?: number;
  /** Storage type of every tensor when weightBytes is not given (FP8 projections of a ModelOpt FP8 config count 1 byte); default 'bf16'. */
  weightDtype?: WeightDtype;
  /** Where the CPU engine keeps the weights (LoadOptions.weights, resolved): 'mmap' (default) or 'memory'. */
  weights?: 'mmap' | 'memory';
}

export interface MemoryPlan {
  /** Bytes of the weights (given, or parameterCount × the weight dtype). */
  weights: number;
  /**
   * Anonymous memory holding the copy of the weights with weights: 'memory' (the weights rounded up to
   * 2 MiB huge pages), counted in total instead of the mapped weights; 0 with 'mmap'.
   */
  weightsCopy: number;
  /**
   * The most the load holds at once: total, plus with weights: 'memory' the file pages the copy is read
   * from (page cache: reclaimable, but resident while copying unless memory is short).
   */
  loadPeak: number;
  /** One sequence's state at the full context length. */
  perSequence: { conv: number; ssm: number; kvAtContext: number; total: number };
  /** perSequence.total × maxSequences. */
  sequences: number;
  /** The forward-pass workspace. */
  activations: number;
  snapshotBudget: number;
  /** weights (or weightsCopy) + sequences + activations + snapshotBudget. */
  total: number;
  /** KV bytes one more position costs a sequence (all attention layers; allocated in blocks of 64). */
  kvBytesPerToken: number;
  /** conv + SSM bytes of one sequence, independent of its length. */
  recurrentBytesPerSequence: number;
  parameterCount: number;
  /** A human-readable breakdown, one line per item. */
  lines(): string[];
}

/** The config after normalization: every size resolved, layer counts and derived widths computed. */
export interface ResolvedConfig {
  pattern: string;
  mambaLayers: number;
  attentionLayers: number;
  mlpLayers: number;
  /** MoE ('E') layers and their sizes (0 when there are none). */
  moeLayers: number;
  nRoutedExperts: number;
  numExpertsPerTok: number;
  moeIntermediateSize: number;
  moeSharedExpertIntermediateSize: number;
  hiddenSize: number;
  vocabSize: number;
  intermediateSize: number;
  numAttentionHeads: number;
  numKeyValueHeads: number;
  headDim: number;
  mambaNumHeads: number;
  mambaHeadDim: number;
  ssmStateSize: number;
  nGroups: number;
  convKernel: number;
  tieWordEmbeddings: boolean;
  useConvBias: boolean;
  dInner: number;
  convDim: number;
  inProjDim: number;
  qDim: number;
  kvDim: number;
}

// ---- config --------------------------------------------------------------------------------------------

/** Largest plausible size field (as the native config parser): beyond it products overflow. */
const MAX_SIZE = 2 ** 26;

/** Lookup keys per field: camelCase, HF snake_case, then legacy aliases. */
const KEYS = {
  hybridOverridePattern: ['hybridOverridePattern', 'hybrid_override_pattern'],
  layersBlockType: ['layersBlockType', 'layers_block_type'],
  hiddenSize: ['hiddenSize', 'hidden_size'],
  vocabSize: ['vocabSize', 'vocab_size'],
  intermediateSize: ['intermediateSize', 'intermediate_size'],
  numAttentionHeads: ['numAttentionHeads', 'num_attention_heads'],
  numKeyValueHeads: ['numKeyValueHeads', 'num_key_value_heads'],
  headDim: ['headDim', 'head_dim', 'attention_head_dim'],
  mambaNumHeads: ['mambaNumHeads', 'mamba_num_heads'],
  mambaHeadDim: ['mambaHeadDim', 'mamba_head_dim'],
  ssmStateSize: ['ssmStateSize', 'ssm_state_size'],
  nGroups: ['nGroups', 'n_groups', 'mamba_n_groups'],
  convKernel: ['convKernel', 'conv_kernel', 'mamba_d_conv'],
  tieWordEmbeddings: ['tieWordEmbeddings', 'tie_word_embeddings'],
  useConvBias: ['useConvBias', 'use_conv_bias'],
  nRoutedExperts: ['nRoutedExperts', 'n_routed_experts'],
  numExpertsPerTok: ['numExpertsPerTok', 'num_experts_per_tok'],
  moeIntermediateSize: ['moeIntermediateSize', 'moe_intermediate_size'],
  moeSharedExpertIntermediateSize: ['moeSharedExpertIntermediateSize', 'moe_shared_expert_intermediate_size'],
  nSharedExperts: ['nSharedExperts', 'n_shared_experts'],
} as const;

type Field = keyof typeof KEYS;

/** The value of a field under whichever of its keys is present (null counts as absent); aliases must agree. */
function lookup(config: Record<string, unknown>, field: Field): { key: string; value: unknown } | undefined {
  let found: { key: string; value: unknown } | undefined;
  for (const key of KEYS[field]) {
    const value = config[key];
    if (value === undefined || value === null) continue;
    if (!found) {
      found = { key, value };
    } else if (JSON.stringify(found.value) !== JSON.stringify(value)) {
      throw new InvalidArgumentError(
        'ERR_INVALID_ARGUMENT',
        `config.${found.key} (${JSON.stringify(found.value)}) and its alias config.${key} (${JSON.stringify(value)}) disagree`,
      );
    }
  }
  return found;
}

/** An integer size: required (>= 1) when a block kind in the pattern uses it, else optional (>= 0, default 0). */
function size(config: Record<string, unknown>, field: Field, required: boolean): number | undefined {
  const f = lookup(config, field);
  if (!f) {
    if (required) {
      throw new InvalidArgumentError('ERR_INVALID_ARGUMENT', `config.${KEYS[field][1]} is required: expected a positive integer (keys: ${KEYS[field].join(', ')})`);
    }
    return undefined;
  }
  const min = required ? 1 : 0;
  if (typeof f.value !== 'number' || !Number.isInteger(f.value) || f.value < min || f.value > MAX_SIZE) {
    throw v.invalid(`config.${f.key}`, `an integer in [${min}, ${MAX_SIZE}]`, f.value);
  }
  return f.value;
}

function flag(config: Record<string, unknown>, field: Field, fallback: boolean): boolean {
  const f = lookup(config, field);
  if (!f) return fallback;
  if (typeof f.value !== 'boolean') throw v.invalid(`config.${f.key}`, 'true or false', f.value);
  return f.value;
}

const BLOCK_TYPES: Record<string, string> = {
  mamba: 'M',
  linear_attention: 'M',
  attention: '*',
  full_attention: '*',
  mlp: '-',
  moe: 'E',
};

function readPattern(config: Record<string, unknown>): string {
  const p = lookup(config, 'hybridOverridePattern');
  const blocks = lookup(config, 'layersBlockType');
  let fromBlocks: string | undefined;
  if (blocks) {
    if (!Array.isArray(blocks.value)) throw v.invalid(`config.${blocks.key}`, 'an array of block type names', blocks.value);
    fromBlocks = blocks.value
      .map((name, i) => {
        const c = typeof name === 'string' ? BLOCK_TYPES[name] : undefined;
        if (!c) throw v.invalid(`config.${blocks.key}[${i}]`, "'mamba', 'attention', 'mlp' or 'moe'", name);
        return c;
      })
      .join('');
  }
  if (!p && fromBlocks === undefined) {
    throw new InvalidArgumentError('ERR_INVALID_ARGUMENT', 'config.hybrid_override_pattern is required: expected a string of M, * and - (one character per layer)');
  }
  if (p && typeof p.value !== 'string') throw v.invalid(`config.${p.key}`, 'a string of M, * and -', p.value);
  const pattern = p ? (p.value as string) : (fromBlocks as string);
  if (pattern.length === 0 || !/^[M*\-E]+$/.test(pattern)) {
    throw v.invalid(`config.${p ? p.key : 'layers_block_type'}`, "a non-empty string of 'M' (Mamba-2), '*' (attention), '-' (MLP) and 'E' (mixture of experts)", pattern);
  }
  if (p && fromBlocks !== undefined && fromBlocks !== pattern) {
    throw new InvalidArgumentError('ERR_INVALID_ARGUMENT', `config.${p.key} "${pattern}" and config.${blocks!.key} (as a pattern "${fromBlocks}") disagree`);
  }
  return pattern;
}

/**
 * Normalizes a PlanConfig, the engine's model info config, or a raw Hugging Face config.json object
 * (snake_case keys and the legacy aliases attention_head_dim, mamba_n_groups, mamba_d_conv).
 */
export function resolveConfig(config: PlanConfig | Record<string, unknown>): ResolvedConfig {
  v.assertObject('config', config);
  const c = config as Record<string, unknown>;
  const pattern = readPattern(c);
  const count = (ch: string): number => pattern.split(ch).length - 1;
  const mambaLayers = count('M');
  const attentionLayers = count('*');
  const mlpLayers = count('-');
  const moeLayers = count('E');
  const hasMoe = moeLayers > 0;
  const hasMamba = mambaLayers > 0;
  const hasAttn = attentionLayers > 0;

  const hiddenSize = size(c, 'hiddenSize', true)!;
  const vocabSize = size(c, 'vocabSize', true)!;
  const intermediateSize = size(c, 'intermediateSize', mlpLayers > 0) ?? 0;
  const numAttentionHeads = size(c, 'numAttentionHeads', hasAttn) ?? 0;
  const numKeyValueHeads = size(c, 'numKeyValueHeads', false) || numAttentionHeads;
  let headDim = size(c, 'headDim', false) ?? 0;
  if (headDim === 0 && numAttentionHeads > 0) {
    if (hiddenSize % numAttentionHeads !== 0) {
      throw new InvalidArgumentError(
        'ERR_INVALID_ARGUMENT',
        `config has no head_dim (or attention_head_dim), and hidden_size ${hiddenSize} is not divisible by num_attention_heads ${numAttentionHeads}`,
      );
    }
    headDim = hiddenSize / numAttentionHeads;
  }
  const mambaNumHeads = size(c, 'mambaNumHeads', hasMamba) ?? 0;
  const mambaHeadDim = size(c, 'mambaHeadDim', hasMamba) ?? 0;
  const ssmStateSize = size(c, 'ssmStateSize', hasMamba) ?? 0;
  const nGroups = size(c, 'nGroups', hasMamba) ?? 0;
  const convKernel = size(c, 'convKernel', hasMamba) ?? 0;
  if (hasMamba && mambaNumHeads % nGroups !== 0) {
    throw new InvalidArgumentError('ERR_INVALID_ARGUMENT', `config.mamba_num_heads (${mambaNumHeads}) is not divisible by config.n_groups (${nGroups})`);
  }
  if (hasAttn && numAttentionHeads % numKeyValueHeads !== 0) {
    throw new InvalidArgumentError(
      'ERR_INVALID_ARGUMENT',
      `config.num_attention_heads (${numAttentionHeads}) is not divisible by config.num_key_value_heads (${numKeyValueHeads})`,
    );
  }
  const nRoutedExperts = size(c, 'nRoutedExperts', hasMoe) ?? 0;
  const numExpertsPerTok = size(c, 'numExpertsPerTok', hasMoe) ?? 0;
  const moeIntermediateSize = size(c, 'moeIntermediateSize', hasMoe) ?? 0;
  const nSharedExperts = size(c, 'nSharedExperts', false) ?? 1;
  const moeSharedExpertIntermediateSize = nSharedExperts > 0 ? (size(c, 'moeSharedExpertIntermediateSize', false) ?? 0) : 0;
  if (hasMoe && numExpertsPerTok > nRoutedExperts) {
    throw new InvalidArgumentError('ERR_INVALID_ARGUMENT', `config.num_experts_per_tok (${numExpertsPerTok}) is larger than config.n_routed_experts (${nRoutedExperts})`);
  }
  const dInner = mambaNumHeads * mambaHeadDim;
  const convDim = dInner + 2 * nGroups * ssmStateSize;
  return {
    pattern,
    mambaLayers,
    attentionLayers,
    mlpLayers,
    moeLayers,
    nRoutedExperts,
    numExpertsPerTok,
    moeIntermediateSize,
    moeSharedExpertIntermediateSize,
    hiddenSize,
    vocabSize,
    intermediateSize,
    numAttentionHeads,
    numKeyValueHeads,
    headDim,
    mambaNumHeads,
    mambaHeadDim,
    ssmStateSize,
    nGroups,
    convKernel,
    tieWordEmbeddings: flag(c, 'tieWordEmbeddings', false),
    useConvBias: flag(c, 'useConvBias', true),
    dInner,
    convDim,
    inProjDim: dInner + convDim + mambaNumHeads,
    qDim: numAttentionHeads * headDim,
    kvDim: numKeyValueHeads * headDim,
  };
}

// ---- sizes ---------------------------------------------------------------------------------------------

/** One MoE layer's parameters with `experts` routed experts counted: router + bias, experts, shared expert. */
function moeParameters(c: ResolvedConfig, experts: number): number {
  const d = c.hiddenSize;
  return (
    c.nRoutedExperts * d + c.nRoutedExperts + // gate.weight, e_score_correction_bias
    experts * 2 * c.moeIntermediateSize * d + // experts' up, down
    2 * c.moeSharedExpertIntermediateSize * d // shared expert's up, down
  );
}

/**
 * Parameters one token reads: everything but the routed experts a token does not use (only
 * num_experts_per_tok of n_routed_experts per MoE layer), and only the lm_head (not the embedding matrix,
 * of which one row is read). For a dense model it is parameterCount less the embedding matrix (when untied).
 */
export function activeParameterCount(config: PlanConfig | Record<string, unknown>): number {
  const c = resolveConfig(config);
  return (
    parametersOf(c) -
    c.moeLayers * (c.nRoutedExperts - c.numExpertsPerTok) * 2 * c.moeIntermediateSize * c.hiddenSize -
    (c.tieWordEmbeddings ? 0 : c.vocabSize * c.hiddenSize)
  );
}

/**
 * Parameters stored as E4M3 in a ModelOpt FP8 checkpoint (config quantization_config {quant_method
 * "modelopt", quant_algo "FP8"}): the projection matrices (Mamba in/out, attention q/k/v/o, MLP and expert
 * up/down), 1 byte each; 0 for any other config. Embeddings, lm_head, router and the small vectors stay
 * in the checkpoint's float type.
 */
export function fp8ParameterCount(config: PlanConfig | Record<string, unknown>): number {
  const q = (config as Record<string, unknown>).quantization_config as Record<string, unknown> | null | undefined;
  if (typeof q !== 'object' || q === null || q.quant_method !== 'modelopt' || q.quant_algo !== 'FP8') return 0;
  const c = resolveConfig(config);
  const d = c.hiddenSize;
  return (
    c.mambaLayers * (c.inProjDim * d + d * c.dInner) +
    c.attentionLayers * (2 * c.qDim * d + 2 * c.kvDim * d) +
    c.mlpLayers * 2 * c.intermediateSize * d +
    c.moeLayers * (moeParameters(c, c.nRoutedExperts) - c.nRoutedExperts * d - c.nRoutedExperts)
  );
}

/** Parameters (elements) of every tensor of docs/architecture.md §2. */
export function parameterCount(config: PlanConfig | Record<string, unknown>): number {
  return parametersOf(resolveConfig(config));
}

function parametersOf(c: ResolvedConfig): number {
  const d = c.hiddenSize;
  const mamba =
    c.inProjDim * d + // in_proj
    c.convDim * c.convKernel + // conv1d.weight [conv_dim, 1, K]
    (c.useConvBias ? c.convDim : 0) + // conv1d.bias
    3 * c.mambaNumHeads + // A_log, D, dt_bias
    c.dInner + // gated norm weight
    d * c.dInner; // out_proj
  const attention = c.qDim * d + 2 * c.kvDim * d + d * c.qDim; // q, k, v, o
  const mlp = 2 * c.intermediateSize * d; // up, down
  return (
    c.moeLayers * moeParameters(c, c.nRoutedExperts) +
    c.vocabSize * d + // embeddings
    (c.tieWordEmbeddings ? 0 : c.vocabSize * d) + // lm_head
    d + // norm_f
    c.pattern.length * d + // each layer's pre-norm
    c.mambaLayers * mamba +
    c.attentionLayers * attention +
    c.mlpLayers * mlp
  );
}

export interface StateBytesOptions {
  /** Positions the sequence holds. */
  contextLength: number;
  /** Conv window element type; the engine keeps f32 (docs/architecture.md §4), other engines bf16. Default 'f32'. */
  convDtype?: StateDtype;
  /** SSM state element type; default 'f32'. */
  ssmDtype?: StateDtype;
  /** KV element type; default 'f16'. */
  kvDtype?: StateDtype;
  /** KV allocation granule in positions: 64 = the engine's paging, 1 = exact (docs/architecture.md §4). Default 64. */
  kvBlockTokens?: number;
}

export interface StateBytes {
  /** conv windows of all Mamba layers. */
  conv: number;
  /** SSM states of all Mamba layers. */
  ssm: number;
  /** K and V of all attention layers at contextLength (rounded up to whole blocks). */
  kv: number;
  total: number;
  /** KV bytes per position, all attention layers. */
  kvBytesPerToken: number;
}

function stateDtype(name: string, value: unknown, fallback: StateDtype, allowed: readonly StateDtype[]): StateDtype {
  if (value === undefined) return fallback;
  if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) {
    throw v.invalid(name, allowed.map((d) => `'${d}'`).join(', ').replace(/, ([^,]*)$/, ' or $1'), value);
  }
  return value as StateDtype;
}

/**
 * One sequence's decode-time state (docs/architecture.md §4) for any choice of element types: with
 * { convDtype: 'bf16', ssmDtype: 'bf16' | 'f32', kvDtype: 'bf16', kvBlockTokens: 1 } it gives §4's table.
 */
export function sequenceStateBytes(config: PlanConfig | Record<string, unknown> | ResolvedConfig, options: StateBytesOptions): StateBytes {
  v.assertObject('options', options);
  v.assertKnownKeys('options', options, ['contextLength', 'convDtype', 'ssmDtype', 'kvDtype', 'kvBlockTokens']);
  const c = isResolved(config) ? config : resolveConfig(config);
  const contextLength = v.optionalInteger('options.contextLength', options.contextLength, 1) ?? missing('options.contextLength', 'an integer >= 1');
  const all = ['bf16', 'f16', 'f32'] as const;
  const conv = DTYPE_BYTES[stateDtype('options.convDtype', options.convDtype, 'f32', all)];
  const ssm = DTYPE_BYTES[stateDtype('options.ssmDtype', options.ssmDtype, 'f32', all)];
  const kv = DTYPE_BYTES[stateDtype('options.kvDtype', options.kvDtype, 'f16', all)];
  const block = v.optionalInteger('options.kvBlockTokens', options.kvBlockTokens, 1, 1 << 20) ?? KV_BLOCK_TOKENS;
  const kvBytesPerToken = c.attentionLayers * 2 * c.kvDim * kv;
  const out = {
    conv: c.mambaLayers * (c.convKernel - 1) * c.convDim * conv,
    ssm: c.mambaLayers * c.mambaNumHeads * c.mambaHeadDim * c.ssmStateSize * ssm,
    kv: Math.ceil(contextLength / block) * block * kvBytesPerToken,
    total: 0,
    kvBytesPerToken,
  };
  out.total = out.conv + out.ssm + out.kv;
  return out;
}

function isResolved(c: unknown): c is ResolvedConfig {
  return typeof c === 'object' && c !== null && 'convDim' in c && 'mambaLayers' in c && 'pattern' in c;
}

function missing(name: string, expected: string): never {
  throw v.invalid(name, expected, undefined);
}

/** Bytes of the forward-pass workspace (csrc/engine/forward.cc Workspace::init), all f32. */
export function activationBytes(c: ResolvedConfig, rows: number): number {
  const projLd = Math.max(c.inProjDim, c.qDim + 2 * c.kvDim, c.intermediateSize, c.nRoutedExperts, c.moeIntermediateSize, c.moeSharedExpertIntermediateSize);
  const floats =
    (c.moeLayers > 0 ? rows * c.hiddenSize : 0) + // moe_acc
    3 * rows * c.hiddenSize + // h, u, out
    rows * projLd + // proj
    rows * c.convDim + // conv
    rows * Math.max(c.dInner, c.qDim) + // mix
    Math.min(rows, LOGIT_ROWS) * c.vocabSize; // logits
  return floats * 4;
}

// ---- the plan ------------------------------------------------------------------------------------------

const PLAN_KEYS = ['contextLength', 'maxSequences', 'maxBatchTokens', 'kvDtype', 'cacheBytes', 'weightBytes', 'weightDtype', 'weights'] as const;

/** The huge-page size the weights copy is aligned and rounded to. */
const HUGE_PAGE_BYTES = 2 * 1024 * 1024;

function byteCount(name: string, value: unknown): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) throw v.invalid(name, 'a whole number of bytes >= 0', value);
  return value;
}

/** Everything the model needs at `options`, before anything is allocated. */
export function planMemory(config: PlanConfig | Record<string, unknown>, options: PlanOptions): MemoryPlan {
  v.assertObject('options', options);
  v.assertKnownKeys('options', options, PLAN_KEYS);
  const c = resolveConfig(config);
  const contextLength = v.optionalInteger('options.contextLength', options.contextLength, 1) ?? missing('options.contextLength', 'an integer >= 1');
  const maxSequences = v.optionalInteger('options.maxSequences', options.maxSequences, 1, 4096) ?? missing('options.maxSequences', 'an integer in [1, 4096]');
  const maxBatchTokens = v.optionalInteger('options.maxBatchTokens', options.maxBatchTokens, 1, 65536) ?? DEFAULT_MAX_BATCH_TOKENS;
  const kvDtype = stateDtype('options.kvDtype', options.kvDtype, 'f16', ['f16', 'f32']) as KvDtype;
  const weightDtype = stateDtype('options.weightDtype', options.weightDtype, 'bf16', ['bf16', 'f16', 'f32']);
  const cacheBytes = byteCount('options.cacheBytes', options.cacheBytes) ?? DEFAULT_CACHE_BYTES;
  const givenWeights = byteCount('options.weightBytes', options.weightBytes);
  const placement = options.weights ?? 'mmap';
  if (placement !== 'mmap' && placement !== 'memory') throw v.invalid('options.weights', "'mmap' or 'memory'", placement);

  const params = parameterCount(config);
  // Without the checkpoint's bytes: FP8 projections at 1 byte (fp8ParameterCount), the rest at weightDtype.
  const fp8 = fp8ParameterCount(config);
  const weights = givenWeights ?? (params - fp8) * DTYPE_BYTES[weightDtype] + fp8;
  const s = sequenceStateBytes(c, { contextLength, convDtype: 'f32', ssmDtype: 'f32', kvDtype, kvBlockTokens: KV_BLOCK_TOKENS });
  const perSequence = { conv: s.conv, ssm: s.ssm, kvAtContext: s.kv, total: s.total };
  const sequences = perSequence.total * maxSequences;
  const rows = maxBatchTokens + maxSequences;
  const activations = activationBytes(c, rows);
  const weightsCopy = placement === 'memory' ? Math.ceil(weights / HUGE_PAGE_BYTES) * HUGE_PAGE_BYTES : 0;
  const total = (placement === 'memory' ? weightsCopy : weights) + sequences + activations + cacheBytes;
  const loadPeak = total + (placement === 'memory' ? weights : 0);
  if (!Number.isSafeInteger(loadPeak)) {
    throw new InvalidArgumentError('ERR_INVALID_ARGUMENT', `the plan's total (${total} B) is beyond exact integer arithmetic: the config or options are implausibly large`);
  }

  const plan: MemoryPlan = {
    weights,
    weightsCopy,
    loadPeak,
    perSequence,
    sequences,
    activations,
    snapshotBudget: cacheBytes,
    total,
    kvBytesPerToken: s.kvBytesPerToken,
    recurrentBytesPerSequence: s.conv + s.ssm,
    parameterCount: params,
    lines: () => [
      `weights: ${formatBytes(weights)} (${group(params)} parameters, ${givenWeights === undefined ? (fp8 > 0 ? `${group(fp8)} of them fp8, the rest ${weightDtype}` : `${weightDtype}`) : 'as stored'})` +
        (placement === 'memory' ? `, copied into ${formatBytes(weightsCopy)} of huge-page memory (load peak ${formatBytes(loadPeak)} with the file's page cache)` : ''),
      `per sequence: ${formatBytes(perSequence.total)} (conv ${formatBytes(s.conv)} + SSM ${formatBytes(s.ssm)} f32 over ${c.mambaLayers} Mamba layers; KV ${formatBytes(s.kv)} ${kvDtype} at ${group(contextLength)} tokens over ${c.attentionLayers} attention layers)`,
      `sequences: ${formatBytes(sequences)} (${maxSequences} × ${formatBytes(perSequence.total)})`,
      `activations: ${formatBytes(activations)} (${rows} rows = ${maxBatchTokens} batch tokens + ${maxSequences} sequences)`,
      `snapshot cache: ${formatBytes(cacheBytes)}`,
      `KV growth: ${formatBytes(s.kvBytesPerToken)} per token (blocks of ${KV_BLOCK_TOKENS}); recurrent state ${formatBytes(s.conv + s.ssm)} per sequence`,
      `total: ${formatBytes(total)} (${group(total)} B)`,
    ],
  };
  return plan;
}

/** Throws NemotronError('ERR_OUT_OF_MEMORY') when the plan needs more than `limitBytes`. */
export function checkPlanFits(plan: MemoryPlan, limitBytes: number): void {
  v.assertObject('plan', plan);
  if (typeof plan.total !== 'number' || !Number.isFinite(plan.total)) throw v.invalid('plan.total', 'a number of bytes (a plan from planMemory)', plan.total);
  if (typeof limitBytes !== 'number' || !(limitBytes >= 0) || !Number.isFinite(limitBytes)) {
    throw v.invalid('limitBytes', 'a finite number of bytes >= 0', limitBytes);
  }
  if (plan.total <= limitBytes) return;
  const items: Array<[string, number]> = [
    plan.weightsCopy > 0 ? ['weights (copied into memory)', plan.weightsCopy] : ['weights', plan.weights],
    [`sequences (${plan.perSequence.total > 0 ? Math.round(plan.sequences / plan.perSequence.total) : 0} × ${formatBytes(plan.perSequence.total)})`, plan.sequences],
    ['activations', plan.activations],
    ['snapshot cache', plan.snapshotBudget],
  ];
  const biggest = items
    .filter(([, n]) => n > 0)
    .sort((a, b) => b[1] - a[1])
    .slice(0, 3)
    .map(([name, n]) => `${name} ${formatBytes(n)}`)
    .join(', ');
  throw new NemotronError(
    'ERR_OUT_OF_MEMORY',
    `the model needs ${formatBytes(plan.total)} (${group(plan.total)} B) but the limit is ${formatBytes(limitBytes)} (${group(limitBytes)} B), ` +
      `${formatBytes(plan.total - limitBytes)} over; biggest items: ${biggest}. ` +
      `Lower maxSequences, contextLength or cacheBytes${plan.weightsCopy > 0 ? ", or load with weights: 'mmap'" : ''}.`,
  );
}

/**
 * LoadOptions.weights 'auto': 'memory' (a huge-page copy: faster decode, see BENCHMARKS.md) when the load
 * with the copy, page cache included (plan.loadPeak of a plan made with weights: 'memory'), stays within
 * 3/4 of `limitBytes` (the memory limit, at most the machine's memory), so the copy leaves room for the
 * rest of the machine; otherwise 'mmap' (pages shared with the page cache, nothing duplicated).
 */
export function chooseWeightsPlacement(memoryPlan: MemoryPlan, limitBytes: number): 'mmap' | 'memory' {
  return memoryPlan.weightsCopy > 0 && memoryPlan.loadPeak <= 0.75 * limitBytes ? 'memory' : 'mmap';
}

// ---- formatting ----------------------------------------------------------------------------------------

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'] as const;

/** Bytes for people: "512 B", "73.7 MiB", "2.13 GiB" (binary units, three significant digits). */
export function formatBytes(n: number): string {
  if (typeof n !== 'number' || !Number.isFinite(n)) throw v.invalid('n', 'a finite number of bytes', n);
  if (n < 0) return `-${formatBytes(-n)}`;
  if (n < 1024) return `${Math.round(n)} B`;
  let unit = 0;
  let x = n;
  while (x >= 1024 && unit < UNITS.length - 1) {
    x /= 1024;
    unit++;
  }
  let digits = x < 10 ? 2 : x < 100 ? 1 : 0;
  let text = x.toFixed(digits);
  if (Number(text) >= 1024 && unit < UNITS.length - 1) {
    // 1023.7 MiB rounds to "1024 MiB": say "1.00 GiB" instead
    x /= 1024;
    unit++;
    digits = 2;
    text = x.toFixed(digits);
  }
  return `${text} ${UNITS[unit]}`;
}

/** 8888227328 -> "8,888,227,328". */
function group(n: number): string {
  return Math.round(n).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}
