/**
 * Tiny-model maker: writes a complete Hugging Face style Nemotron-H checkpoint folder with random weights
 * (config.json, generation_config.json, model.safetensors or shards + index, tokenizer.json,
 * tokenizer_config.json with the chat template, special_tokens_map.json). Used by tests, benchmarks and the
 * `make-tiny-model` CLI command, since real weights cannot be downloaded everywhere. With `format: 'gguf'`
 * it also writes the same weights as `model.gguf`, the way llama.cpp's converter writes `nemotron_h`
 * (docs/architecture.md §7), in any of the GGUF tensor types the engine reads.
 */

import { mkdir, readdir, unlink, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';

import { InvalidArgumentError } from '../errors.js';
import { GgufValueType, type GgmlTypeName } from '../gguf/reader.js';
import { ggufTypeFits, kv, writeGguf, type GgufKv, type GgufTensorSource } from '../gguf/writer.js';
import { writeSafetensors, DTYPE_BYTES, e4m3ToNumber, fromF16Bits, toBf16Bits, toE4M3Bits, toF16Bits, type SafetensorsDtype, type TensorSource } from './safetensors-writer.js';
import { ADDED_TOKENS, buildTokenizer, CHAT_TEMPLATE, TOKEN_IDS } from './tokenizer.js';
import { generateTensor, mambaSizes, tensorSpecs, type ModelDims, type TensorSpec } from './weights.js';

export interface TinyModelOptions {
  /** PRNG seed (safe integer). Default 0. */
  seed?: number;
  /**
   * hybrid_override_pattern: one character per layer, M = Mamba-2, * = attention, - = MLP, E = mixture of
   * experts. Default 'M-M*-M*-'.
   */
  pattern?: string;
  /** storage dtype of every tensor. Default 'bf16'. */
  dtype?: 'bf16' | 'f16' | 'f32';
  hiddenSize?: number;
  mambaNumHeads?: number;
  mambaHeadDim?: number;
  nGroups?: number;
  ssmStateSize?: number;
  convKernel?: number;
  chunkSize?: number;
  numAttentionHeads?: number;
  numKeyValueHeads?: number;
  headDim?: number;
  intermediateSize?: number;
  /** MoE ('E') blocks: routed experts (n_routed_experts). Default 8. */
  nRoutedExperts?: number;
  /** experts per token (num_experts_per_tok). Default 2. */
  numExpertsPerTok?: number;
  /** each routed expert's width (moe_intermediate_size). Default 32. */
  moeIntermediateSize?: number;
  /** the shared expert's width (moe_shared_expert_intermediate_size); 0 writes n_shared_experts 0 and no shared expert. Default 64. */
  moeSharedExpertIntermediateSize?: number;
  /** expert groups (n_group) and groups kept per token (topk_group). Default 1 and 1. */
  nGroup?: number;
  topkGroup?: number;
  /** norm_topk_prob. Default true. */
  normTopkProb?: boolean;
  /** routed_scaling_factor. Default 2.5 (Nemotron 3 Nano's). */
  routedScalingFactor?: number;
  /** std of the random e_score_correction_bias. Default 0.1. */
  moeScoreBiasStd?: number;
  /**
   * ModelOpt FP8 checkpoint (safetensors, one file): the projection matrices (Mamba in/out, attention q/k/v/o,
   * MLP and expert up/down) stored as F8_E4M3 with a `weight_scale` (per tensor; per row for the routed
   * experts' up_proj) and an `input_scale`, config quantization_config {quant_method "modelopt", quant_algo
   * "FP8"}, and hf_quant_config.json {quantization: {quant_algo "FP8", ...}}. Default false.
   */
  fp8?: boolean;
  /** config form: 'pattern' writes hybrid_override_pattern, 'blocks' the newer layers_block_type list. Default 'pattern'. */
  configForm?: 'pattern' | 'blocks';
  /** rows of embeddings/lm_head; >= the tokenizer's size (extra ids are unused rows). Default: the tokenizer's size. */
  vocabSize?: number;
  maxPositionEmbeddings?: number;
  tieWordEmbeddings?: boolean;
  /** tensor name prefix of the backbone. Default 'backbone.' (as NVIDIA's checkpoints). */
  prefix?: 'backbone.' | 'model.';
  /** >1 writes model-0000k-of-0000n.safetensors + model.safetensors.index.json. Default 1. */
  shards?: number;
  /**
   * 'gguf' also writes model.gguf (llama.cpp's `nemotron_h` layout) next to the Hugging Face files, with the
   * same weights (the values as stored in the safetensors at `dtype`). Default 'safetensors'.
   */
  format?: 'safetensors' | 'gguf';
  /**
   * Tensor type of model.gguf's matrices (format 'gguf' only). The block-quantized types apply to the 2-D
   * matrices whose inner dimension is a multiple of the block (32, or 256 for the K-quants); other matrices
   * fall back to F16, as llama.cpp's converter does (or as llama-quantize does: see ggufFallback). Norms,
   * conv taps, A, D and dt bias stay F32.
   * Default: the `dtype` ('bf16' -> 'BF16', 'f16' -> 'F16', 'f32' -> 'F32').
   */
  ggufType?: GgmlTypeName;
  /**
   * What a matrix whose inner dimension does not fit ggufType's blocks is stored as (format 'gguf' only):
   * 'F16' (default; llama.cpp's converter), or 'quantize': llama-quantize's fallback, the 32-value type
   * of about the same size (Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0), else F16. NVIDIA-Nemotron-Nano-9B-v2
   * (hidden 4,480, MLP 15,680: not multiples of 256) quantized to Q4_K_M by llama-quantize is mostly Q5_0.
   */
  ggufFallback?: 'F16' | 'quantize';
  /**
   * false (format 'gguf' only): write model.gguf without the safetensors weight files (config and
   * tokenizer files are still written), e.g. several GGUF types of one large model without a
   * safetensors copy each. Default true.
   */
  safetensors?: boolean;
}

export interface TinyModelResult {
  /** absolute path of the folder written */
  dir: string;
  /** the config as written to config.json (time_step_limit is [0, Infinity]) */
  config: Record<string, unknown>;
  /** total number of parameters (elements over all tensors) */
  parameterCount: number;
  /** absolute path of model.gguf, when format is 'gguf' */
  gguf?: string;
}

export const TINY_MODEL_DEFAULTS = {
  seed: 0,
  pattern: 'M-M*-M*-',
  dtype: 'bf16',
  hiddenSize: 64,
  mambaNumHeads: 8,
  mambaHeadDim: 16,
  nGroups: 2,
  ssmStateSize: 16,
  convKernel: 4,
  chunkSize: 16,
  numAttentionHeads: 4,
  numKeyValueHeads: 2,
  headDim: 16,
  intermediateSize: 128,
  maxPositionEmbeddings: 4096,
  tieWordEmbeddings: false,
  prefix: 'backbone.',
  shards: 1,
} as const;

const DTYPES = {
  bf16: { st: 'BF16', torch: 'bfloat16' },
  f16: { st: 'F16', torch: 'float16' },
  f32: { st: 'F32', torch: 'float32' },
} as const satisfies Record<string, { st: SafetensorsDtype; torch: string }>;

const KNOWN_OPTIONS = new Set<string>([
  'seed', 'pattern', 'dtype', 'hiddenSize', 'mambaNumHeads', 'mambaHeadDim', 'nGroups', 'ssmStateSize',
  'convKernel', 'chunkSize', 'numAttentionHeads', 'numKeyValueHeads', 'headDim', 'intermediateSize', 'vocabSize',
  'maxPositionEmbeddings', 'tieWordEmbeddings', 'prefix', 'shards', 'format', 'ggufType', 'ggufFallback', 'safetensors',
  'nRoutedExperts', 'numExpertsPerTok', 'moeIntermediateSize', 'moeSharedExpertIntermediateSize', 'nGroup', 'topkGroup',
  'normTopkProb', 'routedScalingFactor', 'moeScoreBiasStd', 'configForm', 'fp8',
]);

const GGUF_TYPES: readonly GgmlTypeName[] = ['F32', 'F16', 'BF16', 'Q8_0', 'Q4_0', 'Q5_0', 'Q5_1', 'Q4_K', 'Q5_K', 'Q6_K'];
/** llama-quantize's fallback for a matrix whose inner dimension is not a multiple of 256 (ggufFallback 'quantize'). */
const QUANTIZE_FALLBACK: Partial<Record<GgmlTypeName, GgmlTypeName>> = { Q4_K: 'Q5_0', Q5_K: 'Q5_1', Q6_K: 'Q8_0' };
const GGUF_TYPE_OF_DTYPE = { bf16: 'BF16', f16: 'F16', f32: 'F32' } as const;

/** Largest single dimension accepted; keeps every tensor's byte size far inside safe-integer range. */
const MAX_DIM = 1 << 24;

function describe(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'number' || typeof v === 'boolean' || v === null || v === undefined) return String(v);
  try {
    return `${typeof v} ${JSON.stringify(v)}`;
  } catch {
    return typeof v;
  }
}

function invalid(option: string, expected: string, given: unknown): InvalidArgumentError {
  return new InvalidArgumentError(
    'ERR_INVALID_ARGUMENT',
    `makeTinyModel: option '${option}' must be ${expected}; got ${describe(given)}`,
  );
}

function positiveInt(options: TinyModelOptions, key: keyof TinyModelOptions, def: number, max = MAX_DIM): number {
  const v: unknown = options[key];
  if (v === undefined) return def;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > max) {
    throw invalid(key, `an integer between 1 and ${max}`, v);
  }
  return v;
}

interface MoeResolved {
  numExpertsPerTok: number;
  nGroup: number;
  topkGroup: number;
  normTopkProb: boolean;
  routedScalingFactor: number;
}

interface Resolved {
  fp8: boolean;
  moe: MoeResolved;
  configForm: 'pattern' | 'blocks';
  seed: number;
  dtype: keyof typeof DTYPES;
  prefix: 'backbone.' | 'model.';
  shards: number;
  chunkSize: number;
  maxPositionEmbeddings: number;
  dims: ModelDims;
  format: 'safetensors' | 'gguf';
  ggufType: GgmlTypeName;
  ggufFallback: 'F16' | 'quantize';
  safetensors: boolean;
}

function resolveOptions(options: TinyModelOptions, tokenizerVocab: number): Resolved {
  if (typeof options !== 'object' || options === null) throw invalid('options', 'an object', options);
  for (const k of Object.keys(options)) {
    if (!KNOWN_OPTIONS.has(k)) throw invalid(k, `not set (unknown option; known: ${[...KNOWN_OPTIONS].join(', ')})`, (options as Record<string, unknown>)[k]);
  }
  const D = TINY_MODEL_DEFAULTS;

  const seed = options.seed ?? D.seed;
  if (typeof seed !== 'number' || !Number.isSafeInteger(seed)) throw invalid('seed', 'a safe integer', seed);

  const pattern = options.pattern ?? D.pattern;
  if (typeof pattern !== 'string' || pattern.length === 0 || !/^[M*\-E]+$/.test(pattern)) {
    throw invalid('pattern', "a non-empty string of the characters 'M' (Mamba-2), '*' (attention), '-' (MLP) and 'E' (mixture of experts)", pattern);
  }
  if (pattern.length > 4096) throw invalid('pattern', 'at most 4096 layers long', `${pattern.length} characters`);

  const dtype = options.dtype ?? D.dtype;
  if (typeof dtype !== 'string' || !Object.hasOwn(DTYPES, dtype)) throw invalid('dtype', "one of 'bf16', 'f16', 'f32'", dtype);

  const prefix = options.prefix ?? D.prefix;
  if (prefix !== 'backbone.' && prefix !== 'model.') throw invalid('prefix', "'backbone.' or 'model.'", prefix);

  const tie = options.tieWordEmbeddings ?? D.tieWordEmbeddings;
  if (typeof tie !== 'boolean') throw invalid('tieWordEmbeddings', 'a boolean', tie);

  const hiddenSize = positiveInt(options, 'hiddenSize', D.hiddenSize);
  const mambaNumHeads = positiveInt(options, 'mambaNumHeads', D.mambaNumHeads);
  const mambaHeadDim = positiveInt(options, 'mambaHeadDim', D.mambaHeadDim);
  const nGroups = positiveInt(options, 'nGroups', D.nGroups);
  const ssmStateSize = positiveInt(options, 'ssmStateSize', D.ssmStateSize);
  const convKernel = positiveInt(options, 'convKernel', D.convKernel, 64);
  const chunkSize = positiveInt(options, 'chunkSize', D.chunkSize);
  const numAttentionHeads = positiveInt(options, 'numAttentionHeads', D.numAttentionHeads);
  const numKeyValueHeads = positiveInt(options, 'numKeyValueHeads', D.numKeyValueHeads);
  const headDim = positiveInt(options, 'headDim', D.headDim);
  const intermediateSize = positiveInt(options, 'intermediateSize', D.intermediateSize);
  const maxPositionEmbeddings = positiveInt(options, 'maxPositionEmbeddings', D.maxPositionEmbeddings, 2 ** 31 - 1);
  const vocabSize = positiveInt(options, 'vocabSize', tokenizerVocab);
  const shards = positiveInt(options, 'shards', D.shards, 99999);

  const nRoutedExperts = positiveInt(options, 'nRoutedExperts', 8, 4096);
  const numExpertsPerTok = positiveInt(options, 'numExpertsPerTok', 2, 4096);
  const moeIntermediateSize = positiveInt(options, 'moeIntermediateSize', 32);
  let moeShared = 64;
  if (options.moeSharedExpertIntermediateSize !== undefined) {
    const v: unknown = options.moeSharedExpertIntermediateSize;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > MAX_DIM) throw invalid('moeSharedExpertIntermediateSize', `an integer between 0 and ${MAX_DIM}`, v);
    moeShared = v;
  }
  const nGroup = positiveInt(options, 'nGroup', 1, 4096);
  const topkGroup = positiveInt(options, 'topkGroup', 1, 4096);
  const normTopkProb = options.normTopkProb ?? true;
  if (typeof normTopkProb !== 'boolean') throw invalid('normTopkProb', 'a boolean', normTopkProb);
  const routedScalingFactor = options.routedScalingFactor ?? 2.5;
  if (typeof routedScalingFactor !== 'number' || !(routedScalingFactor > 0) || !Number.isFinite(routedScalingFactor)) {
    throw invalid('routedScalingFactor', 'a positive finite number', routedScalingFactor);
  }
  const moeScoreBiasStd = options.moeScoreBiasStd ?? 0.1;
  if (typeof moeScoreBiasStd !== 'number' || !(moeScoreBiasStd >= 0) || !Number.isFinite(moeScoreBiasStd)) {
    throw invalid('moeScoreBiasStd', 'a non-negative finite number', moeScoreBiasStd);
  }
  const configForm = options.configForm ?? 'pattern';
  if (configForm !== 'pattern' && configForm !== 'blocks') throw invalid('configForm', "'pattern' or 'blocks'", configForm);
  if (pattern.includes('E')) {
    if (numExpertsPerTok > nRoutedExperts) throw invalid('numExpertsPerTok', `at most nRoutedExperts (${nRoutedExperts})`, numExpertsPerTok);
    if (nRoutedExperts % nGroup !== 0) throw invalid('nGroup', `a divisor of nRoutedExperts (${nRoutedExperts})`, nGroup);
    if (topkGroup > nGroup) throw invalid('topkGroup', `at most nGroup (${nGroup})`, topkGroup);
    if (nGroup > 1 && nRoutedExperts / nGroup < 2) throw invalid('nGroup', 'small enough to leave 2 experts per group', nGroup);
    if (numExpertsPerTok > topkGroup * (nRoutedExperts / nGroup)) {
      throw invalid('numExpertsPerTok', `at most the ${topkGroup * (nRoutedExperts / nGroup)} experts of topkGroup groups`, numExpertsPerTok);
    }
  }

  const format = options.format ?? 'safetensors';
  if (format !== 'safetensors' && format !== 'gguf') throw invalid('format', "'safetensors' or 'gguf'", format);
  const ggufType = options.ggufType ?? GGUF_TYPE_OF_DTYPE[dtype as keyof typeof GGUF_TYPE_OF_DTYPE];
  if (typeof ggufType !== 'string' || !GGUF_TYPES.includes(ggufType)) throw invalid('ggufType', `one of ${GGUF_TYPES.map((t) => `'${t}'`).join(', ')}`, ggufType);
  if (options.ggufType !== undefined && format !== 'gguf') throw invalid('ggufType', "set only with format 'gguf'", options.ggufType);
  const ggufFallback = options.ggufFallback ?? 'F16';
  if (ggufFallback !== 'F16' && ggufFallback !== 'quantize') throw invalid('ggufFallback', "'F16' or 'quantize'", ggufFallback);
  if (options.ggufFallback !== undefined && format !== 'gguf') throw invalid('ggufFallback', "set only with format 'gguf'", options.ggufFallback);
  const safetensors = options.safetensors ?? true;
  if (typeof safetensors !== 'boolean') throw invalid('safetensors', 'a boolean', safetensors);
  if (!safetensors && format !== 'gguf') throw invalid('safetensors', "true unless format is 'gguf' (the folder would hold no weights)", safetensors);

  if (mambaNumHeads % nGroups !== 0) {
    throw invalid('mambaNumHeads', `divisible by nGroups (${nGroups})`, mambaNumHeads);
  }
  if (numAttentionHeads % numKeyValueHeads !== 0) {
    throw invalid('numAttentionHeads', `divisible by numKeyValueHeads (${numKeyValueHeads})`, numAttentionHeads);
  }
  if (vocabSize < tokenizerVocab) {
    throw invalid('vocabSize', `at least the tokenizer's vocabulary size (${tokenizerVocab})`, vocabSize);
  }

  const dims: ModelDims = {
    pattern,
    hiddenSize,
    mambaNumHeads,
    mambaHeadDim,
    nGroups,
    ssmStateSize,
    convKernel,
    numAttentionHeads,
    numKeyValueHeads,
    headDim,
    intermediateSize,
    vocabSize,
    tieWordEmbeddings: tie,
    nRoutedExperts,
    moeIntermediateSize,
    moeSharedExpertIntermediateSize: moeShared,
    moeScoreBiasStd,
    timeStepMin: 0.001,
    timeStepMax: 0.1,
    timeStepFloor: 1e-4,
  };
  const tensorCount = tensorSpecs(dims, prefix).length;
  if (shards > tensorCount) {
    throw invalid('shards', `at most the number of tensors (${tensorCount})`, shards);
  }
  if (format === 'gguf' && pattern.includes('E') && pattern.includes('-')) {
    // llama.cpp types the FFN layers of nemotron_h_moe by feed_forward_length, all as MoE: a dense MLP
    // layer cannot be written beside them (the converter gives it length 0, i.e. attention).
    throw invalid('pattern', "free of '-' (MLP) layers when it has 'E' layers and format is 'gguf'", pattern);
  }
  const moe = { numExpertsPerTok, nGroup, topkGroup, normTopkProb, routedScalingFactor };
  const fp8 = options.fp8 ?? false;
  if (typeof fp8 !== 'boolean') throw invalid('fp8', 'a boolean', fp8);
  if (fp8 && (format !== 'safetensors' || shards !== 1)) throw invalid('fp8', "set only with format 'safetensors' and one shard", fp8);
  return { fp8, seed, dtype, prefix, shards, chunkSize, maxPositionEmbeddings, dims, format, ggufType, ggufFallback, moe, configForm, safetensors };
}

// ---------------------------------------------------------------------------------------------------------
// Python-json-like serialisation (json.dumps(indent=2)): floats keep a decimal point or exponent (0.0, 1e-05),
// and non-finite floats are written as the bare words Infinity / NaN exactly as Python's json module does.

class PyFloat {
  constructor(readonly value: number) {}
}

function pyFloatRepr(x: number): string {
  if (Number.isNaN(x)) return 'NaN';
  if (x === Infinity) return 'Infinity';
  if (x === -Infinity) return '-Infinity';
  if (Object.is(x, -0)) return '-0.0';
  const [mant, expStr] = x.toExponential().split('e') as [string, string];
  const exp = Number(expStr);
  if (exp < -4 || exp >= 16) {
    return `${mant}e${exp < 0 ? '-' : '+'}${String(Math.abs(exp)).padStart(2, '0')}`;
  }
  const s = String(x);
  return /[.e]/.test(s) ? s : `${s}.0`;
}

function toPythonJson(v: unknown, indent = ''): string {
  const inner = indent + '  ';
  if (v instanceof PyFloat) return pyFloatRepr(v.value);
  if (Array.isArray(v)) {
    if (v.length === 0) return '[]';
    return `[\n${v.map((x) => inner + toPythonJson(x, inner)).join(',\n')}\n${indent}]`;
  }
  if (v !== null && typeof v === 'object') {
    const entries = Object.entries(v as Record<string, unknown>).filter(([, x]) => x !== undefined);
    if (entries.length === 0) return '{}';
    return `{\n${entries.map(([k, x]) => `${inner}${JSON.stringify(k)}: ${toPythonJson(x, inner)}`).join(',\n')}\n${indent}}`;
  }
  if (typeof v === 'number' && !Number.isFinite(v)) return pyFloatRepr(v);
  return JSON.stringify(v) ?? 'null';
}

/** Replaces PyFloat wrappers by plain numbers (the config object returned to callers). */
function plain(v: unknown): unknown {
  if (v instanceof PyFloat) return v.value;
  if (Array.isArray(v)) return v.map(plain);
  if (v !== null && typeof v === 'object') {
    return Object.fromEntries(Object.entries(v as Record<string, unknown>).map(([k, x]) => [k, plain(x)]));
  }
  return v;
}

const BLOCK_TYPE_NAMES: Record<string, string> = { M: 'mamba', '*': 'attention', '-': 'mlp', E: 'moe' };

function buildConfig(r: Resolved): Record<string, unknown> {
  const d = r.dims;
  const f = (x: number): PyFloat => new PyFloat(x);
  const hasMoe = d.pattern.includes('E');
  const moe = hasMoe
    ? {
        moe_intermediate_size: d.moeIntermediateSize,
        moe_shared_expert_intermediate_size: d.moeSharedExpertIntermediateSize,
        n_group: r.moe.nGroup,
        n_routed_experts: d.nRoutedExperts,
        n_shared_experts: (d.moeSharedExpertIntermediateSize ?? 0) > 0 ? 1 : 0,
        norm_topk_prob: r.moe.normTopkProb,
        num_experts_per_tok: r.moe.numExpertsPerTok,
        routed_scaling_factor: f(r.moe.routedScalingFactor),
        topk_group: r.moe.topkGroup,
      }
    : {};
  const form =
    r.configForm === 'blocks'
      ? { layers_block_type: [...d.pattern].map((ch) => BLOCK_TYPE_NAMES[ch]) }
      : { hybrid_override_pattern: d.pattern };
  // Keys in the alphabetical order transformers writes them.
  const config: Record<string, unknown> = {
    architectures: ['NemotronHForCausalLM'],
    attention_bias: false,
    attention_dropout: f(0),
    bos_token_id: TOKEN_IDS.bos,
    chunk_size: r.chunkSize,
    conv_kernel: d.convKernel,
    eos_token_id: TOKEN_IDS.chatEos,
    expand: 2,
    head_dim: d.headDim,
    hidden_dropout: f(0),
    hidden_size: d.hiddenSize,
    ...form,
    initializer_range: f(0.02),
    intermediate_size: d.intermediateSize,
    layer_norm_epsilon: f(1e-5),
    mamba_head_dim: d.mambaHeadDim,
    mamba_hidden_act: 'silu',
    mamba_num_heads: d.mambaNumHeads,
    mamba_proj_bias: false,
    max_position_embeddings: r.maxPositionEmbeddings,
    mlp_bias: false,
    mlp_hidden_act: 'relu2',
    model_type: 'nemotron_h',
    n_groups: d.nGroups,
    num_attention_heads: d.numAttentionHeads,
    num_hidden_layers: d.pattern.length,
    num_key_value_heads: d.numKeyValueHeads,
    num_logits_to_keep: 1,
    pad_token_id: TOKEN_IDS.unk,
    rescale_prenorm_residual: true,
    residual_in_fp32: false,
    rms_norm_eps: f(1e-5),
    sliding_window: null,
    ssm_state_size: d.ssmStateSize,
    tie_word_embeddings: d.tieWordEmbeddings,
    time_step_floor: f(d.timeStepFloor),
    time_step_limit: [f(0), f(Infinity)],
    time_step_max: f(d.timeStepMax),
    time_step_min: f(d.timeStepMin),
    torch_dtype: DTYPES[r.dtype].torch,
    transformers_version: '4.56.0',
    use_bias: false,
    use_cache: true,
    use_conv_bias: true,
    use_mamba_kernels: true,
    vocab_size: d.vocabSize,
    ...moe,
    ...(r.fp8 ? { quantization_config: { quant_method: 'modelopt', quant_algo: 'FP8', kv_cache_quant_algo: null, producer: { name: 'modelopt' } } } : {}),
  };
  return Object.fromEntries(Object.entries(config).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

const FP8_MATRIX = /mixer\.(in_proj|out_proj|q_proj|k_proj|v_proj|o_proj|up_proj|down_proj)\.weight$|mixer\.(experts\.\d+|shared_experts)\.(up_proj|down_proj)\.weight$/;

/**
 * The tensors of a ModelOpt FP8 checkpoint: each projection matrix as E4M3 values q with a scale s (the
 * weight is q·s; s = max|w| / 448 so nothing saturates), plus its weight_scale and input_scale tensors.
 */
function fp8Sources(specs: TensorSpec[], r: Resolved, plainSource: (s: TensorSpec) => TensorSource): TensorSource[] {
  const out: TensorSource[] = [];
  for (const s of specs) {
    if (!FP8_MATRIX.test(s.key)) {
      out.push(plainSource(s));
      continue;
    }
    const w = new Float32Array(s.numel);
    let at = 0;
    for (const chunk of generateTensor(s, r.seed)) {
      w.set(chunk, at);
      at += chunk.length;
    }
    const rows = s.shape[0] as number;
    const cols = s.numel / rows;
    const perRow = /experts\.\d+\.up_proj/.test(s.key);
    const scales = new Float32Array(perRow ? rows : 1);
    for (let i = 0; i < s.numel; i++) {
      const k = perRow ? Math.floor(i / cols) : 0;
      scales[k] = Math.max(scales[k] as number, Math.abs(w[i] as number));
    }
    for (let k = 0; k < scales.length; k++) scales[k] = Math.fround((scales[k] as number) / 448 || 1);
    const q = new Float32Array(s.numel);
    for (let i = 0; i < s.numel; i++) q[i] = e4m3ToNumber(toE4M3Bits((w[i] as number) / (scales[perRow ? Math.floor(i / cols) : 0] as number)));
    const base = s.name.slice(0, -'.weight'.length);
    out.push({ name: s.name, dtype: 'F8_E4M3', shape: s.shape, chunks: () => [q] });
    out.push({ name: `${base}.weight_scale`, dtype: 'F32', shape: perRow ? [rows] : [], chunks: () => [scales] });
    out.push({ name: `${base}.input_scale`, dtype: 'F32', shape: [], chunks: () => [Float32Array.of(1)] });
  }
  return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** Splits tensors (model order) into `n` contiguous, non-empty groups of roughly equal byte size. */
function splitShards(specs: readonly TensorSpec[], n: number, elemBytes: number): TensorSpec[][] {
  const total = specs.reduce((a, s) => a + s.numel * elemBytes, 0);
  const groups: TensorSpec[][] = [[]];
  let before = 0;
  specs.forEach((s, k) => {
    const cur = groups.length - 1;
    const current = groups[cur] as TensorSpec[];
    if (current.length > 0 && cur < n - 1) {
      const mustAdvance = specs.length - k === n - 1 - cur; // exactly one tensor left per remaining shard
      const reachedShare = before >= ((cur + 1) * total) / n;
      if (mustAdvance || reachedShare) groups.push([]);
    }
    (groups[groups.length - 1] as TensorSpec[]).push(s);
    before += s.numel * elemBytes;
  });
  return groups;
}

const byName = (a: TensorSpec, b: TensorSpec): number => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

/**
 * Writes a complete random-weight Nemotron-H checkpoint folder. Deterministic: the same options give
 * byte-identical files. Existing files of the same names in `dir` are replaced (a stale single-file or
 * sharded weight set from an earlier call is removed so the folder holds exactly one weight layout).
 */
export async function makeTinyModel(dir: string, options: TinyModelOptions = {}): Promise<TinyModelResult> {
  if (typeof dir !== 'string' || dir.length === 0) throw invalid('dir', 'a non-empty path string', dir);
  const tok = buildTokenizer();
  const r = resolveOptions(options, tok.vocabSize);
  const out = resolve(dir);
  await mkdir(out, { recursive: true });

  const stDtype = DTYPES[r.dtype].st;
  const elemBytes = DTYPE_BYTES[stDtype];
  const specs = tensorSpecs(r.dims, r.prefix);
  const parameterCount = specs.reduce((a, s) => a + s.numel, 0);
  const source = (s: TensorSpec): TensorSource => ({
    name: s.name,
    dtype: s.f32 ? 'F32' : stDtype,
    shape: s.shape,
    chunks: () => generateTensor(s, r.seed),
  });

  // remove weight files of another layout left over from an earlier run
  const names = await readdir(out);
  const shardFile = (k: number, n: number): string =>
    `model-${String(k).padStart(5, '0')}-of-${String(n).padStart(5, '0')}.safetensors`;
  const keep = new Set<string>();
  if (!r.safetensors) {
    // no safetensors files: every weight file of an earlier run goes
  } else if (r.shards === 1) keep.add('model.safetensors');
  else for (let k = 1; k <= r.shards; k++) keep.add(shardFile(k, r.shards));
  for (const name of names) {
    const stale =
      (name === 'model.safetensors' || name === 'model.safetensors.index.json' || /^model-\d+-of-\d+\.safetensors$/.test(name)) &&
      !keep.has(name);
    if (stale) await unlink(join(out, name));
  }

  if (!r.safetensors) {
    // model.gguf only (written below)
  } else if (r.fp8) {
    await writeSafetensors(join(out, 'model.safetensors'), fp8Sources([...specs].sort(byName), r, source));
  } else if (r.shards === 1) {
    await writeSafetensors(join(out, 'model.safetensors'), [...specs].sort(byName).map(source));
  } else {
    const groups = splitShards(specs, r.shards, elemBytes);
    const weightMap: Record<string, string> = {};
    for (let k = 0; k < groups.length; k++) {
      const file = shardFile(k + 1, groups.length);
      const group = [...(groups[k] as TensorSpec[])].sort(byName);
      for (const s of group) weightMap[s.name] = file;
      await writeSafetensors(join(out, file), group.map(source));
    }
    const sortedMap = Object.fromEntries(Object.keys(weightMap).sort().map((k) => [k, weightMap[k]]));
    const index = { metadata: { total_size: parameterCount * elemBytes }, weight_map: sortedMap };
    await writeFile(join(out, 'model.safetensors.index.json'), JSON.stringify(index, null, 2) + '\n');
  }

  const config = buildConfig(r);
  await writeFile(join(out, 'config.json'), toPythonJson(config) + '\n');
  if (r.fp8) {
    // ModelOpt's own record of the quantization, written next to config.json as its export does.
    const quant = { producer: { name: 'modelopt' }, quantization: { quant_algo: 'FP8', kv_cache_quant_algo: null, exclude_modules: ['lm_head'] } };
    await writeFile(join(out, 'hf_quant_config.json'), JSON.stringify(quant, null, 2) + '\n');
  }
  const generationConfig = {
    _from_model_config: true,
    bos_token_id: TOKEN_IDS.bos,
    eos_token_id: [TOKEN_IDS.chatEos, TOKEN_IDS.eos],
    pad_token_id: TOKEN_IDS.unk,
    transformers_version: '4.56.0',
  };
  await writeFile(join(out, 'generation_config.json'), toPythonJson(generationConfig) + '\n');
  const tokenizerConfig = { ...tok.tokenizerConfig, model_max_length: r.maxPositionEmbeddings };
  await writeFile(join(out, 'tokenizer.json'), JSON.stringify(tok.tokenizerJson, null, 2) + '\n');
  await writeFile(join(out, 'tokenizer_config.json'), JSON.stringify(tokenizerConfig, null, 2) + '\n');
  await writeFile(join(out, 'special_tokens_map.json'), JSON.stringify(tok.specialTokensMap, null, 2) + '\n');

  const ggufPath = join(out, 'model.gguf');
  if (r.format === 'gguf') {
    await writeTinyGguf(ggufPath, r, specs, tok.tokenizerJson);
  } else if (names.includes('model.gguf')) {
    await unlink(ggufPath); // left from an earlier format 'gguf' run: it would hold other weights
  }

  return { dir: out, config: plain(config) as Record<string, unknown>, parameterCount, ...(r.format === 'gguf' ? { gguf: ggufPath } : {}) };
}

// ---------------------------------------------------------------------------------------------------------
// model.gguf, as llama.cpp's convert_hf_to_gguf.py writes a NemotronHForCausalLM checkpoint (docs/architecture.md §7)

/** llama_ftype of a file whose matrices are `t` (general.file_type). */
const FILE_TYPE: Record<GgmlTypeName, number> = { F32: 0, F16: 1, BF16: 32, Q8_0: 7, Q4_0: 2, Q5_0: 8, Q5_1: 9, Q4_K: 14, Q5_K: 16, Q6_K: 18 };

/** The values as the safetensors file stores them at `dtype` (bf16/f16 rounding), as float32. */
function storedValues(chunk: Float32Array, dtype: Resolved['dtype']): Float32Array {
  const out = new Float32Array(chunk);
  if (dtype === 'f32') return out;
  const bits = new Uint32Array(out.buffer);
  if (dtype === 'bf16') {
    for (let i = 0; i < bits.length; i++) bits[i] = toBf16Bits(out[i]!) << 16;
  } else {
    for (let i = 0; i < out.length; i++) out[i] = fromF16Bits(toF16Bits(out[i]!));
  }
  return out;
}

async function writeTinyGguf(path: string, r: Resolved, specs: readonly TensorSpec[], tokenizerJson: Record<string, unknown>): Promise<void> {
  const d = r.dims;
  const n = d.pattern.length;
  const { dInner } = mambaSizes(d);
  const bySpec = new Map(specs.map((s) => [s.key, s]));
  const tensors: GgufTensorSource[] = [];
  // A tensor from the HF one `key`, with ggml `shape`; `map` transforms each stored value.
  const add = (name: string, key: string, shape: number[], type: GgmlTypeName, map?: (x: number) => number): void => {
    const spec = bySpec.get(key);
    if (!spec) throw new Error(`internal: no tensor ${key}`);
    tensors.push({
      name,
      shape,
      type,
      chunks: function* () {
        for (const chunk of generateTensor(spec, r.seed)) {
          const v = storedValues(chunk, spec.f32 ? 'f32' : r.dtype);
          if (map) for (let i = 0; i < v.length; i++) v[i] = map(v[i]!);
          yield v;
        }
      },
    });
  };
  // Several HF tensors stacked into one (llama.cpp's merged experts: {ne0, ne1, E} = E [ne1, ne0] matrices).
  const addStack = (name: string, keys: string[], shape: number[], type: GgmlTypeName): void => {
    const list = keys.map((key) => {
      const spec = bySpec.get(key);
      if (!spec) throw new Error(`internal: no tensor ${key}`);
      return spec;
    });
    tensors.push({
      name,
      shape,
      type,
      chunks: function* () {
        for (const spec of list) for (const chunk of generateTensor(spec, r.seed)) yield storedValues(chunk, r.dtype);
      },
    });
  };
  const moeArch = d.pattern.includes('E');
  const E = d.nRoutedExperts ?? 0;
  const I = d.moeIntermediateSize ?? 0;
  const S = d.moeSharedExpertIntermediateSize ?? 0;
  // Matrices take the requested type where their inner dimension fits its blocks, else F16 (the converter's
  // fallback) or, with ggufFallback 'quantize', llama-quantize's 32-value type where that fits; vectors and
  // the SSM parameters stay F32.
  const mat = (ne0: number): GgmlTypeName => {
    if (ggufTypeFits(r.ggufType, ne0)) return r.ggufType;
    const alt = r.ggufFallback === 'quantize' ? QUANTIZE_FALLBACK[r.ggufType] : undefined;
    return alt !== undefined && ggufTypeFits(alt, ne0) ? alt : 'F16';
  };
  const H = d.hiddenSize;
  add('token_embd.weight', 'embeddings.weight', [H, d.vocabSize], mat(H));
  for (let i = 0; i < n; i++) {
    const p = `layers.${i}.`;
    const b = `blk.${i}.`;
    add(b + 'attn_norm.weight', p + 'norm.weight', [H], 'F32');
    const kind = d.pattern[i];
    if (kind === 'M') {
      const { convDim, inProj } = mambaSizes(d);
      add(b + 'ssm_in.weight', p + 'mixer.in_proj.weight', [H, inProj], mat(H));
      add(b + 'ssm_conv1d.weight', p + 'mixer.conv1d.weight', [d.convKernel, convDim], 'F32'); // [cd, 1, K] squeezed
      add(b + 'ssm_conv1d.bias', p + 'mixer.conv1d.bias', [convDim], 'F32');
      add(b + 'ssm_dt.bias', p + 'mixer.dt_bias', [d.mambaNumHeads], 'F32');
      add(b + 'ssm_a', p + 'mixer.A_log', [1, d.mambaNumHeads], 'F32', (x) => Math.fround(-Math.exp(x))); // A = -exp(A_log)
      add(b + 'ssm_d', p + 'mixer.D', [1, d.mambaNumHeads], 'F32');
      add(b + 'ssm_norm.weight', p + 'mixer.norm.weight', [dInner / d.nGroups, d.nGroups], 'F32'); // (n_group, d_inner / n_group)
      add(b + 'ssm_out.weight', p + 'mixer.out_proj.weight', [dInner, H], mat(dInner));
    } else if (kind === '*') {
      const q = d.numAttentionHeads * d.headDim;
      const kvDim = d.numKeyValueHeads * d.headDim;
      add(b + 'attn_q.weight', p + 'mixer.q_proj.weight', [H, q], mat(H));
      add(b + 'attn_k.weight', p + 'mixer.k_proj.weight', [H, kvDim], mat(H));
      add(b + 'attn_v.weight', p + 'mixer.v_proj.weight', [H, kvDim], mat(H));
      add(b + 'attn_output.weight', p + 'mixer.o_proj.weight', [q, H], mat(q));
    } else if (kind === 'E') {
      // convert_hf_to_gguf.py NemotronHModel (is_moe): router and bias F32, experts stacked into *_exps.
      add(b + 'ffn_gate_inp.weight', p + 'mixer.gate.weight', [H, E], 'F32');
      add(b + 'exp_probs_b.bias', p + 'mixer.gate.e_score_correction_bias', [E], 'F32');
      const ids = [...Array(E).keys()];
      addStack(b + 'ffn_up_exps.weight', ids.map((e) => `${p}mixer.experts.${e}.up_proj.weight`), [H, I, E], mat(H));
      addStack(b + 'ffn_down_exps.weight', ids.map((e) => `${p}mixer.experts.${e}.down_proj.weight`), [I, H, E], mat(I));
      if (S > 0) {
        add(b + 'ffn_up_shexp.weight', p + 'mixer.shared_experts.up_proj.weight', [H, S], mat(H));
        add(b + 'ffn_down_shexp.weight', p + 'mixer.shared_experts.down_proj.weight', [S, H], mat(S));
      }
    } else {
      add(b + 'ffn_up.weight', p + 'mixer.up_proj.weight', [H, d.intermediateSize], mat(H));
      add(b + 'ffn_down.weight', p + 'mixer.down_proj.weight', [d.intermediateSize, H], mat(d.intermediateSize));
    }
  }
  add('output_norm.weight', 'norm_f.weight', [H], 'F32');
  if (!d.tieWordEmbeddings) add('output.weight', 'lm_head.weight', [H, d.vocabSize], mat(H));

  // Tokenizer metadata: tokens in id order (padded with [PADi] up to the model's vocabulary, as the converter
  // does), CONTROL for special added tokens, USER_DEFINED for the other added tokens.
  const model = tokenizerJson.model as { vocab: Record<string, number>; merges: Array<[string, string]> };
  const tokens: string[] = new Array<string>(d.vocabSize);
  for (const [t, id] of Object.entries(model.vocab)) tokens[id] = t;
  const types: number[] = new Array<number>(d.vocabSize).fill(1);
  for (let i = 0; i < d.vocabSize; i++) {
    if (tokens[i] === undefined) {
      tokens[i] = `[PAD${i}]`;
      types[i] = 5; // UNUSED
    }
  }
  for (const t of ADDED_TOKENS) types[t.id] = t.special ? 3 : 4;
  const per = (f: (k: string) => number): number[] => [...d.pattern].map(f);
  const A = moeArch ? 'nemotron_h_moe' : 'nemotron_h';
  const I32 = GgufValueType.INT32;
  const entries: GgufKv[] = [
    kv.str('general.architecture', A),
    kv.str('general.type', 'model'),
    kv.str('general.name', 'Tiny Nemotron H'),
    kv.u32(`${A}.block_count`, n),
    kv.u32(`${A}.context_length`, 2 ** 20), // no RoPE: the converter writes 2^20
    kv.u32(`${A}.embedding_length`, H),
    kv.arr(`${A}.feed_forward_length`, I32, per((k) => (k === '-' ? d.intermediateSize : k === 'E' ? I : 0))),
    ...(moeArch
      ? [
          kv.u32(`${A}.expert_used_count`, r.moe.numExpertsPerTok),
          kv.u32(`${A}.expert_feed_forward_length`, I),
          kv.u32(`${A}.expert_shared_feed_forward_length`, S),
          kv.u32(`${A}.expert_count`, E),
          kv.u32(`${A}.expert_shared_count`, S > 0 ? 1 : 0),
          kv.bool(`${A}.expert_weights_norm`, r.moe.normTopkProb),
          kv.f32(`${A}.expert_weights_scale`, r.moe.routedScalingFactor),
          kv.u32(`${A}.expert_group_count`, r.moe.nGroup),
          ...(r.moe.nGroup > 1 ? [kv.u32(`${A}.expert_group_used_count`, r.moe.topkGroup)] : []),
        ]
      : []),
    kv.u32(`${A}.attention.head_count`, d.numAttentionHeads),
    kv.arr(`${A}.attention.head_count_kv`, I32, per((k) => (k === '*' ? d.numKeyValueHeads : 0))),
    kv.f32(`${A}.attention.layer_norm_rms_epsilon`, 1e-5),
    kv.f32(`${A}.attention.layer_norm_epsilon`, 1e-5),
    kv.u32(`${A}.attention.key_length`, d.headDim),
    kv.u32(`${A}.attention.value_length`, d.headDim),
    kv.u32('general.file_type', FILE_TYPE[r.ggufType]),
    kv.u32(`${A}.vocab_size`, d.vocabSize),
    kv.u32(`${A}.rope.dimension_count`, Math.floor(H / d.numAttentionHeads)),
    kv.u32(`${A}.ssm.conv_kernel`, d.convKernel),
    kv.u32(`${A}.ssm.state_size`, d.ssmStateSize),
    kv.u32(`${A}.ssm.group_count`, d.nGroups),
    kv.u32(`${A}.ssm.inner_size`, dInner),
    kv.u32(`${A}.ssm.time_step_rank`, d.mambaNumHeads),
    kv.bool(`${A}.rope.scaling.finetuned`, false),
    kv.u32('general.quantization_version', 2),
    kv.str('tokenizer.ggml.model', 'gpt2'),
    kv.str('tokenizer.ggml.pre', 'gpt-2'),
    kv.arr('tokenizer.ggml.tokens', GgufValueType.STRING, tokens),
    kv.arr('tokenizer.ggml.token_type', I32, types),
    kv.arr('tokenizer.ggml.merges', GgufValueType.STRING, model.merges.map(([a, b]) => `${a} ${b}`)),
    kv.u32('tokenizer.ggml.bos_token_id', TOKEN_IDS.bos),
    kv.u32('tokenizer.ggml.eos_token_id', TOKEN_IDS.chatEos),
    kv.u32('tokenizer.ggml.unknown_token_id', TOKEN_IDS.unk),
    kv.u32('tokenizer.ggml.padding_token_id', TOKEN_IDS.unk),
    ...(moeArch ? [] : [kv.bool('tokenizer.ggml.add_bos_token', true)]), // the converter sets it for nemotron_h only
    kv.bool('tokenizer.ggml.add_sep_token', false),
    kv.bool('tokenizer.ggml.add_eos_token', false),
    kv.str('tokenizer.chat_template', CHAT_TEMPLATE),
  ];
  await writeGguf(path, entries, tensors);
}

export { buildTokenizer, CHAT_TEMPLATE, TOKEN_IDS, ADDED_TOKENS } from './tokenizer.js';
export { writeSafetensors, buildSafetensorsHeader, toBf16Bits, toF16Bits } from './safetensors-writer.js';
export { writeGguf } from '../gguf/writer.js';
export type { SafetensorsDtype, TensorSource } from './safetensors-writer.js';
export { tensorSpecs, generateTensor, mambaSizes } from './weights.js';
export type { ModelDims, TensorSpec } from './weights.js';
