// config.json reader for the float64 reference (docs/architecture.md §1.1 fields, §1.2 derived sizes, §1.3 checks).

import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/** One residual block per pattern character (§1.1): M = Mamba-2, * = attention, - = MLP. */
export type RefLayerType = 'mamba' | 'attention' | 'mlp' | 'moe';

/** Mixture-of-experts settings (HF NemotronHConfig names in camelCase); present when the pattern has an 'E'. */
export interface RefMoeConfig {
  nRoutedExperts: number;
  numExpertsPerTok: number;
  moeIntermediateSize: number;
  /** 0: no shared expert (n_shared_experts 0). */
  moeSharedExpertIntermediateSize: number;
  nGroup: number;
  topkGroup: number;
  normTopkProb: boolean;
  routedScalingFactor: number;
}

export interface RefConfig {
  hiddenSize: number;
  vocabSize: number;
  numLayers: number;
  /** The `hybrid_override_pattern` string, one character per layer. */
  pattern: string;
  layerTypes: RefLayerType[];
  /** MLP (`-`) width. */
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
  /** [dtMin, dtMax] clamp of dt after softplus; default [0, Infinity] = no clamp (§3.5). */
  timeStepLimit: [number, number];
  layerNormEpsilon: number;
  tieWordEmbeddings: boolean;
  useConvBias: boolean;
  /** Derived (§1.2): mambaNumHeads * mambaHeadDim. */
  dInner: number;
  /** Derived (§1.2): dInner + 2 * nGroups * ssmStateSize. */
  convDim: number;
  /** Derived (§1.2): dInner + convDim + mambaNumHeads = rows of in_proj.weight. */
  inProjDim: number;
  moe?: RefMoeConfig;
  /** The parsed config.json, untouched. */
  raw: Record<string, unknown>;
}

// ---------------------------------------------------------------------------------------------
// Parsing JSON that Python wrote: it may contain bare Infinity, -Infinity and NaN (§1.1 time_step_limit).

const SENTINEL_PREFIX = '\u0000nonfinite:';

/**
 * Replace the bare tokens Infinity, -Infinity and NaN that appear outside string literals by sentinel
 * strings, so that JSON.parse accepts the text; a reviver turns the sentinels back into numbers.
 */
function quoteNonFiniteTokens(text: string): string {
  let out = '';
  let i = 0;
  while (i < text.length) {
    const ch = text[i]!;
    if (ch === '"') {
      // copy a whole string literal, honouring backslash escapes
      let j = i + 1;
      while (j < text.length && text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      out += text.slice(i, j + 1);
      i = j + 1;
      continue;
    }
    const token = ['-Infinity', 'Infinity', 'NaN'].find((t) => text.startsWith(t, i));
    if (token !== undefined) {
      out += JSON.stringify(SENTINEL_PREFIX + token);
      i += token.length;
      continue;
    }
    out += ch;
    i++;
  }
  return out;
}

/** JSON.parse that also accepts Python's bare Infinity / -Infinity / NaN tokens. */
export function parsePythonJson(text: string): unknown {
  return JSON.parse(quoteNonFiniteTokens(text), (_key, value: unknown) => {
    if (typeof value === 'string' && value.startsWith(SENTINEL_PREFIX)) {
      const token = value.slice(SENTINEL_PREFIX.length);
      return token === 'NaN' ? NaN : token === 'Infinity' ? Infinity : -Infinity;
    }
    return value;
  });
}

// ---------------------------------------------------------------------------------------------
// Legacy key aliases (HF-CFG): old name -> current name.

const LEGACY_ALIASES: Record<string, string> = {
  attention_head_dim: 'head_dim',
  mamba_n_groups: 'n_groups',
  mamba_d_conv: 'conv_kernel',
  mamba_chunk_size: 'chunk_size',
  mamba_dt_limit: 'time_step_limit',
  rms_norm_eps: 'layer_norm_epsilon',
};

function applyAliases(raw: Record<string, unknown>): Record<string, unknown> {
  const cfg: Record<string, unknown> = { ...raw };
  for (const [legacy, current] of Object.entries(LEGACY_ALIASES)) {
    if (cfg[current] === undefined && cfg[legacy] !== undefined) cfg[current] = cfg[legacy];
  }
  return cfg;
}

function requireNumber(cfg: Record<string, unknown>, key: string): number {
  const v = cfg[key];
  if (typeof v !== 'number') throw new Error(`config.json: missing or non-numeric "${key}"`);
  return v;
}

function numberOr(cfg: Record<string, unknown>, key: string, fallback: number): number {
  const v = cfg[key];
  if (v === undefined || v === null) return fallback;
  if (typeof v !== 'number') throw new Error(`config.json: "${key}" is not a number`);
  return v;
}

function booleanOr(cfg: Record<string, unknown>, key: string, fallback: boolean): boolean {
  const v = cfg[key];
  return typeof v === 'boolean' ? v : fallback;
}

// ---------------------------------------------------------------------------------------------
// Layer pattern (§1.1 "Pattern characters").

const PATTERN_CHAR_TO_TYPE: Record<string, RefLayerType> = { M: 'mamba', '*': 'attention', '-': 'mlp', E: 'moe' };

/** Newer HF configs store `layers_block_type` names instead of the pattern string. */
const BLOCK_TYPE_NAME_TO_CHAR: Record<string, string> = {
  mamba: 'M',
  linear_attention: 'M',
  attention: '*',
  full_attention: '*',
  mlp: '-',
  moe: 'E',
};

function readPattern(cfg: Record<string, unknown>): string {
  if (typeof cfg['hybrid_override_pattern'] === 'string') return cfg['hybrid_override_pattern'];
  const blockTypes = cfg['layers_block_type'];
  if (Array.isArray(blockTypes)) {
    return blockTypes
      .map((name) => {
        const ch = BLOCK_TYPE_NAME_TO_CHAR[String(name)];
        if (ch === undefined) throw new Error(`config.json: unsupported layers_block_type entry "${String(name)}"`);
        return ch;
      })
      .join('');
  }
  throw new Error('config.json: neither hybrid_override_pattern nor layers_block_type');
}

function patternToLayerTypes(pattern: string): RefLayerType[] {
  return [...pattern].map((ch, i) => {
    const type = PATTERN_CHAR_TO_TYPE[ch];
    if (type === undefined) throw new Error(`config.json: layer ${i} has unsupported pattern character "${ch}"`);
    return type;
  });
}

// ---------------------------------------------------------------------------------------------

/** Build a RefConfig from an already parsed config.json object. */
export function configFromJson(raw: Record<string, unknown>): RefConfig {
  const cfg = applyAliases(raw);

  const pattern = readPattern(cfg);
  const layerTypes = patternToLayerTypes(pattern);
  const numLayers = numberOr(cfg, 'num_hidden_layers', pattern.length);
  if (numLayers !== pattern.length) {
    throw new Error(`config.json: num_hidden_layers ${numLayers} != pattern length ${pattern.length}`);
  }

  const hiddenSize = requireNumber(cfg, 'hidden_size');
  const numAttentionHeads = requireNumber(cfg, 'num_attention_heads');
  const mambaNumHeads = requireNumber(cfg, 'mamba_num_heads');
  const mambaHeadDim = requireNumber(cfg, 'mamba_head_dim');
  const ssmStateSize = requireNumber(cfg, 'ssm_state_size');
  let moe: RefMoeConfig | undefined;
  if (layerTypes.includes('moe')) {
    if (cfg['moe_latent_size'] !== undefined && cfg['moe_latent_size'] !== null) {
      throw new Error('config.json: moe_latent_size is not supported by the reference');
    }
    const nShared = numberOr(cfg, 'n_shared_experts', 1);
    moe = {
      nRoutedExperts: requireNumber(cfg, 'n_routed_experts'),
      numExpertsPerTok: requireNumber(cfg, 'num_experts_per_tok'),
      moeIntermediateSize: requireNumber(cfg, 'moe_intermediate_size'),
      moeSharedExpertIntermediateSize: nShared > 0 ? requireNumber(cfg, 'moe_shared_expert_intermediate_size') : 0,
      nGroup: numberOr(cfg, 'n_group', 1),
      topkGroup: numberOr(cfg, 'topk_group', 1),
      normTopkProb: booleanOr(cfg, 'norm_topk_prob', true),
      routedScalingFactor: numberOr(cfg, 'routed_scaling_factor', 1),
    };
  }
  const nGroups = numberOr(cfg, 'n_groups', 8);

  // Biases other than conv1d.bias are absent in every Nemotron-H checkpoint (§2); this reference does not implement them.
  for (const key of ['attention_bias', 'mlp_bias', 'use_bias', 'mamba_proj_bias']) {
    if (cfg[key] === true) throw new Error(`config.json: ${key}=true is not supported by the reference`);
  }

  const limit = cfg['time_step_limit'];
  let timeStepLimit: [number, number] = [0, Infinity]; // HF-CFG default (0.0, inf)
  if (Array.isArray(limit) && limit.length === 2 && typeof limit[0] === 'number' && typeof limit[1] === 'number') {
    timeStepLimit = [limit[0], limit[1]];
  } else if (limit !== undefined && limit !== null) {
    throw new Error(`config.json: time_step_limit must be a pair of numbers`);
  }

  const dInner = mambaNumHeads * mambaHeadDim; // §1.2: NOT hidden*expand
  const convDim = dInner + 2 * nGroups * ssmStateSize;
  if (mambaNumHeads % nGroups !== 0) throw new Error('config.json: mamba_num_heads must be divisible by n_groups');

  const numKeyValueHeads = numberOr(cfg, 'num_key_value_heads', numAttentionHeads);
  if (numAttentionHeads % numKeyValueHeads !== 0) {
    throw new Error('config.json: num_attention_heads must be divisible by num_key_value_heads');
  }

  return {
    hiddenSize,
    vocabSize: requireNumber(cfg, 'vocab_size'),
    numLayers,
    pattern,
    layerTypes,
    intermediateSize: layerTypes.includes('mlp') ? requireNumber(cfg, 'intermediate_size') : numberOr(cfg, 'intermediate_size', 0),
    numAttentionHeads,
    numKeyValueHeads,
    headDim: numberOr(cfg, 'head_dim', hiddenSize / numAttentionHeads),
    mambaNumHeads,
    mambaHeadDim,
    ssmStateSize,
    nGroups,
    convKernel: numberOr(cfg, 'conv_kernel', 4),
    chunkSize: numberOr(cfg, 'chunk_size', 128),
    timeStepLimit,
    layerNormEpsilon: numberOr(cfg, 'layer_norm_epsilon', 1e-5),
    tieWordEmbeddings: booleanOr(cfg, 'tie_word_embeddings', false),
    useConvBias: booleanOr(cfg, 'use_conv_bias', true),
    dInner,
    convDim,
    inProjDim: dInner + convDim + mambaNumHeads,
    ...(moe ? { moe } : {}),
    raw,
  };
}

/** Read `dir/config.json`. */
export function readConfig(dir: string): RefConfig {
  const text = readFileSync(join(dir, 'config.json'), 'utf8');
  const parsed = parsePythonJson(text);
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new Error(`${dir}/config.json: not a JSON object`);
  }
  return configFromJson(parsed as Record<string, unknown>);
}
