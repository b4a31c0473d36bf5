/**
 * Tensor inventory and deterministic random initialisation for tiny Nemotron-H checkpoints.
 *
 * Names and shapes follow docs/architecture.md §2 (HF layout, PyTorch [out, in]); the prefix is `backbone.` by
 * default (`model.` for the renamed HF-native layout). Values are drawn from a per-tensor stream keyed by
 * (seed, tensor name without prefix), so the prefix, dtype, shard count and the presence of other tensors do not
 * change a tensor's values (dtype only changes its rounding).
 *
 * Scales are chosen so a random model stays numerically tame through many layers: every linear map is
 * N(0, 1/fan_in), the residual-writing projections (out_proj, o_proj, down_proj) are further scaled by
 * 1/sqrt(2·n_layers) (GPT-2 / rescale_prenorm_residual style), so the residual stream's RMS stays O(1) however
 * deep the pattern; norm weights are 1 ± 0.1 (never exactly 1, so a missing multiply shows up in tests).
 */

import { Rng, hashString } from './random.js';

export interface ModelDims {
  pattern: string;
  hiddenSize: number;
  mambaNumHeads: number;
  mambaHeadDim: number;
  nGroups: number;
  ssmStateSize: number;
  convKernel: number;
  numAttentionHeads: number;
  numKeyValueHeads: number;
  headDim: number;
  intermediateSize: number;
  vocabSize: number;
  tieWordEmbeddings: boolean;
  /** Mixture-of-experts blocks ('E'): routed experts, their width, the shared expert's width (0: none). */
  nRoutedExperts?: number;
  moeIntermediateSize?: number;
  moeSharedExpertIntermediateSize?: number;
  /** std of the random e_score_correction_bias (0: all zero). Default 0.1. */
  moeScoreBiasStd?: number;
  /** dt init range (config time_step_min / time_step_max / time_step_floor). */
  timeStepMin: number;
  timeStepMax: number;
  timeStepFloor: number;
}

export type InitRule =
  /** N(mean, std²) */
  | { kind: 'normal'; std: number; mean?: number }
  /** 1 + U(-noise, noise) */
  | { kind: 'nearOne'; noise: number }
  /** log(U(lo, hi)) — Mamba-2 A_log (A = -exp(A_log) in [-hi, -lo]) */
  | { kind: 'logUniform'; lo: number; hi: number }
  /** inverse-softplus of dt, dt = exp(U(log dtMin, log dtMax)) clamped below at floor — Mamba-2 dt_bias */
  | { kind: 'dtBias'; dtMin: number; dtMax: number; floor: number };

export interface TensorSpec {
  /** full tensor name as written to the checkpoint */
  name: string;
  /** name without prefix; keys the random stream */
  key: string;
  shape: number[];
  numel: number;
  init: InitRule;
  /** stored as F32 whatever the checkpoint's dtype (HF keeps e_score_correction_bias in fp32). */
  f32?: boolean;
}

/** Mamba-2 derived sizes (docs/architecture.md §1.2). */
export function mambaSizes(d: ModelDims): { dInner: number; convDim: number; inProj: number } {
  const dInner = d.mambaNumHeads * d.mambaHeadDim;
  const convDim = dInner + 2 * d.nGroups * d.ssmStateSize;
  return { dInner, convDim, inProj: dInner + convDim + d.mambaNumHeads };
}

/**
 * All tensors of the model in model order (embeddings, layer 0 … n-1, final norm, lm_head).
 * `prefix` is 'backbone.' or 'model.'; lm_head.weight never carries it and is omitted when embeddings are tied.
 */
export function tensorSpecs(d: ModelDims, prefix: string): TensorSpec[] {
  const specs: TensorSpec[] = [];
  const nLayers = d.pattern.length;
  const residualScale = 1 / Math.sqrt(2 * nLayers);
  const add = (key: string, shape: number[], init: InitRule, withPrefix = true, f32 = false): void => {
    const numel = shape.reduce((a, b) => a * b, 1);
    specs.push({ name: withPrefix ? prefix + key : key, key, shape, numel, init, ...(f32 ? { f32 } : {}) });
  };
  const linear = (key: string, out: number, inp: number, scale = 1): void =>
    add(key, [out, inp], { kind: 'normal', std: scale / Math.sqrt(inp) });
  const H = d.hiddenSize;

  add('embeddings.weight', [d.vocabSize, H], { kind: 'normal', std: 1 });
  for (let i = 0; i < nLayers; i++) {
    const p = `layers.${i}.`;
    add(p + 'norm.weight', [H], { kind: 'nearOne', noise: 0.1 });
    const type = d.pattern[i];
    if (type === 'M') {
      const { dInner, convDim, inProj } = mambaSizes(d);
      const K = d.convKernel;
      linear(p + 'mixer.in_proj.weight', inProj, H);
      add(p + 'mixer.conv1d.weight', [convDim, 1, K], { kind: 'normal', std: 1 / Math.sqrt(K) });
      add(p + 'mixer.conv1d.bias', [convDim], { kind: 'normal', std: 0.05 });
      // dt and A span wider than Mamba's init (dt 0.001-0.1): with init-range dt the state adds only
      // ~5-10% of a layer's output and the D skip dominates, so a scan bug would hide under test
      // tolerances. Here the recurrent state carries a large share, as in trained models.
      add(p + 'mixer.A_log', [d.mambaNumHeads], { kind: 'logUniform', lo: 1, hi: 8 });
      add(p + 'mixer.D', [d.mambaNumHeads], { kind: 'nearOne', noise: 0.1 });
      add(p + 'mixer.dt_bias', [d.mambaNumHeads], {
        kind: 'dtBias',
        dtMin: 0.01,
        dtMax: 0.5,
        floor: d.timeStepFloor,
      });
      add(p + 'mixer.norm.weight', [dInner], { kind: 'nearOne', noise: 0.1 });
      linear(p + 'mixer.out_proj.weight', H, dInner, residualScale);
    } else if (type === '*') {
      const q = d.numAttentionHeads * d.headDim;
      const kv = d.numKeyValueHeads * d.headDim;
      linear(p + 'mixer.q_proj.weight', q, H);
      linear(p + 'mixer.k_proj.weight', kv, H);
      linear(p + 'mixer.v_proj.weight', kv, H);
      linear(p + 'mixer.o_proj.weight', H, q, residualScale);
    } else if (type === '-') {
      linear(p + 'mixer.up_proj.weight', d.intermediateSize, H);
      linear(p + 'mixer.down_proj.weight', H, d.intermediateSize, residualScale);
    } else if (type === 'E') {
      // HF NemotronHMoE: router (gate.weight, e_score_correction_bias in fp32), routed experts (relu² MLPs,
      // experts.{j}.up_proj/down_proj), one shared expert. The router's logits are N(0, 1), so sigmoid
      // scores spread over (0, 1) and the bias (std 0.1) changes many selections: a bias wrongly used in
      // the weights, or not used in the choice, shows up.
      const E = d.nRoutedExperts ?? 8;
      const I = d.moeIntermediateSize ?? 32;
      const S = d.moeSharedExpertIntermediateSize ?? 0;
      linear(p + 'mixer.gate.weight', E, H);
      add(p + 'mixer.gate.e_score_correction_bias', [E], { kind: 'normal', std: d.moeScoreBiasStd ?? 0.1 }, true, true);
      for (let e = 0; e < E; e++) {
        linear(p + `mixer.experts.${e}.up_proj.weight`, I, H);
        linear(p + `mixer.experts.${e}.down_proj.weight`, H, I, residualScale);
      }
      if (S > 0) {
        linear(p + 'mixer.shared_experts.up_proj.weight', S, H);
        linear(p + 'mixer.shared_experts.down_proj.weight', H, S, residualScale);
      }
    } else {
      throw new Error(`unknown layer type ${JSON.stringify(type)} at index ${i}`);
    }
  }
  add('norm_f.weight', [H], { kind: 'nearOne', noise: 0.1 });
  // lm_head sits outside the backbone: no prefix
  if (!d.tieWordEmbeddings) {
    add('lm_head.weight', [d.vocabSize, H], { kind: 'normal', std: 1 / Math.sqrt(H) }, false);
  }
  return specs;
}

/** Default number of float32 elements per generated chunk (4 MiB of f32). */
export const DEFAULT_CHUNK_ELEMENTS = 1 << 20;

/**
 * Generates the values of one tensor in row-major order, in chunks of at most `chunkElements` elements.
 * The yielded array is a view into a reused buffer: consume it before asking for the next chunk.
 * The values do not depend on `chunkElements`.
 */
export function* generateTensor(
  spec: TensorSpec,
  seed: number,
  chunkElements: number = DEFAULT_CHUNK_ELEMENTS,
): Generator<Float32Array, void, undefined> {
  const rng = new Rng(seed, hashString(spec.key));
  const buf = new Float32Array(Math.max(1, Math.min(chunkElements, spec.numel)));
  const init = spec.init;
  for (let done = 0; done < spec.numel; ) {
    const n = Math.min(buf.length, spec.numel - done);
    const out = n === buf.length ? buf : buf.subarray(0, n);
    switch (init.kind) {
      case 'normal':
        rng.fillNormal(out, init.std, init.mean ?? 0);
        break;
      case 'nearOne':
        for (let i = 0; i < n; i++) out[i] = 1 + init.noise * (2 * rng.uniform() - 1);
        break;
      case 'logUniform':
        for (let i = 0; i < n; i++) out[i] = Math.log(rng.uniformRange(init.lo, init.hi));
        break;
      case 'dtBias': {
        const a = Math.log(init.dtMin);
        const b = Math.log(init.dtMax);
        for (let i = 0; i < n; i++) {
          const dt = Math.max(init.floor, Math.exp(rng.uniformRange(a, b)));
          out[i] = inverseSoftplus(dt);
        }
        break;
      }
    }
    done += n;
    yield out;
  }
}

/** x such that softplus(x) = log(1 + e^x) = y, for y > 0. */
export function inverseSoftplus(y: number): number {
  // y + log(1 - e^-y), written with expm1 for accuracy at small y
  return y + Math.log(-Math.expm1(-y));
}
