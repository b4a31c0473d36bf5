// The whole Nemotron-H forward pass in float64 (docs/architecture.md §3), built from ./kernels.ts.
//
// Residual stream, activations, states and logits are all float64. Weights are read from safetensors
// (bf16/f16/f32) and converted exactly to float64.

import { readConfig, type RefConfig } from './config.js';
import {
  attentionGqa,
  conv1dCausal,
  matmul,
  relu2,
  rmsnorm,
  rmsnormGatedGrouped,
  ssdChunked,
  ssmRecurrent,
  type SsmParams,
} from './kernels.js';
import { route } from './moe.js';
import { dequantizeFp8, readSafetensors, type RefTensor } from './safetensors.js';

// ---------------------------------------------------------------------------------------------
// Weights (§2)

interface MambaWeights {
  kind: 'mamba';
  norm: Float64Array; // [hidden]          layers.i.norm.weight (the block's pre-norm)
  inProj: Float64Array; // [inProjDim, hidden]
  convWeight: Float64Array; // [convDim, K]    conv1d.weight [convDim, 1, K] squeezed
  convBias: Float64Array; // [convDim]
  A: Float64Array; // [H]                = -exp(A_log)
  D: Float64Array; // [H]
  dtBias: Float64Array; // [H]
  gatedNorm: Float64Array; // [dInner]        mixer.norm.weight
  outProj: Float64Array; // [hidden, dInner]
}

interface AttentionWeights {
  kind: 'attention';
  norm: Float64Array; // [hidden]
  qProj: Float64Array; // [Hq*Dh, hidden]
  kProj: Float64Array; // [Hkv*Dh, hidden]
  vProj: Float64Array; // [Hkv*Dh, hidden]
  oProj: Float64Array; // [hidden, Hq*Dh]
}

interface MlpWeights {
  kind: 'mlp';
  norm: Float64Array; // [hidden]
  upProj: Float64Array; // [intermediate, hidden]
  downProj: Float64Array; // [hidden, intermediate]
}

interface MoeWeights {
  kind: 'moe';
  norm: Float64Array; // [hidden]
  router: Float64Array; // [E, hidden]      mixer.gate.weight
  scoreBias: Float64Array; // [E]          mixer.gate.e_score_correction_bias
  up: Float64Array[]; // E x [I, hidden]   mixer.experts.{e}.up_proj.weight
  down: Float64Array[]; // E x [hidden, I] mixer.experts.{e}.down_proj.weight
  sharedUp?: Float64Array; // [S, hidden]  mixer.shared_experts.up_proj.weight
  sharedDown?: Float64Array; // [hidden, S]
}

type LayerWeights = MambaWeights | AttentionWeights | MlpWeights | MoeWeights;

// ---------------------------------------------------------------------------------------------
// Incremental state (§4)

export interface MambaLayerState {
  kind: 'mamba';
  /** Last K-1 pre-conv xBC inputs, [K-1, convDim], oldest first (§4, §5.1). */
  conv: Float64Array;
  /** SSM state S, [H, P, N] (§4). */
  ssm: Float64Array;
}

export interface AttentionLayerState {
  kind: 'attention';
  /** Number of cached positions. */
  length: number;
  /** Keys of all past positions, [length, Hkv*Dh]. */
  k: Float64Array;
  /** Values of all past positions, [length, Hkv*Dh]. */
  v: Float64Array;
}

export interface MlpLayerState {
  kind: 'mlp';
}

export interface MoeLayerState {
  kind: 'moe';
}

export type RefLayerState = MambaLayerState | AttentionLayerState | MlpLayerState | MoeLayerState;

export interface RefState {
  /** Number of tokens consumed so far. */
  position: number;
  /** One entry per layer. */
  layers: RefLayerState[];
}

export interface ReferenceModelOptions {
  /**
   * Which (mathematically equal) SSM algorithm the Mamba layers use: the token recurrence of §3.2
   * ('recurrent', default) or the chunked SSD of §5.2 with config.chunkSize ('chunked').
   */
  ssm?: 'recurrent' | 'chunked';
}

// ---------------------------------------------------------------------------------------------
// Tensor lookup

const BACKBONE_PREFIXES = ['backbone.', 'model.'];

function findTensor(tensors: Map<string, RefTensor>, names: string[], shape: number[]): Float64Array {
  for (const name of names) {
    const tensor = tensors.get(name);
    if (tensor === undefined) continue;
    if (!sameShape(tensor.shape, shape)) {
      throw new Error(`tensor ${name}: shape ${JSON.stringify(tensor.shape)}, expected ${JSON.stringify(shape)}`);
    }
    return tensor.data;
  }
  throw new Error(`missing tensor: ${names.join(' or ')}`);
}

/** A tensor under the backbone prefix (`backbone.` or `model.`), trying each alternative local name. */
function findBackboneTensor(tensors: Map<string, RefTensor>, localNames: string[], shape: number[]): Float64Array {
  const names = BACKBONE_PREFIXES.flatMap((prefix) => localNames.map((local) => prefix + local));
  return findTensor(tensors, names, shape);
}

function sameShape(a: number[], b: number[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

function loadLayerWeights(tensors: Map<string, RefTensor>, cfg: RefConfig, i: number): LayerWeights {
  const get = (local: string, shape: number[]): Float64Array => findBackboneTensor(tensors, [`layers.${i}.${local}`], shape);
  const hidden = cfg.hiddenSize;
  const norm = get('norm.weight', [hidden]);

  switch (cfg.layerTypes[i]!) {
    case 'mamba': {
      const H = cfg.mambaNumHeads;
      const K = cfg.convKernel;
      const convBias = cfg.useConvBias ? get('mixer.conv1d.bias', [cfg.convDim]) : new Float64Array(cfg.convDim);
      const Alog = get('mixer.A_log', [H]);
      return {
        kind: 'mamba',
        norm,
        inProj: get('mixer.in_proj.weight', [cfg.inProjDim, hidden]),
        convWeight: get('mixer.conv1d.weight', [cfg.convDim, 1, K]), // [C,1,K] has the memory layout of [C,K]
        convBias,
        A: Alog.map((a) => -Math.exp(a)), // §3.2: A = -exp(A_log)
        D: get('mixer.D', [H]),
        dtBias: get('mixer.dt_bias', [H]),
        gatedNorm: get('mixer.norm.weight', [cfg.dInner]),
        outProj: get('mixer.out_proj.weight', [hidden, cfg.dInner]),
      };
    }
    case 'attention': {
      const qWidth = cfg.numAttentionHeads * cfg.headDim; // §1.2: may differ from hidden
      const kvWidth = cfg.numKeyValueHeads * cfg.headDim;
      return {
        kind: 'attention',
        norm,
        qProj: get('mixer.q_proj.weight', [qWidth, hidden]),
        kProj: get('mixer.k_proj.weight', [kvWidth, hidden]),
        vProj: get('mixer.v_proj.weight', [kvWidth, hidden]),
        oProj: get('mixer.o_proj.weight', [hidden, qWidth]),
      };
    }
    case 'moe': {
      const m = cfg.moe!;
      const E = m.nRoutedExperts;
      const I = m.moeIntermediateSize;
      const S = m.moeSharedExpertIntermediateSize;
      const ids = [...Array(E).keys()];
      return {
        kind: 'moe',
        norm,
        router: get('mixer.gate.weight', [E, hidden]),
        scoreBias: get('mixer.gate.e_score_correction_bias', [E]),
        up: ids.map((e) => get(`mixer.experts.${e}.up_proj.weight`, [I, hidden])),
        down: ids.map((e) => get(`mixer.experts.${e}.down_proj.weight`, [hidden, I])),
        ...(S > 0
          ? { sharedUp: get('mixer.shared_experts.up_proj.weight', [S, hidden]), sharedDown: get('mixer.shared_experts.down_proj.weight', [hidden, S]) }
          : {}),
      };
    }
    case 'mlp':
      return {
        kind: 'mlp',
        norm,
        upProj: get('mixer.up_proj.weight', [cfg.intermediateSize, hidden]),
        downProj: get('mixer.down_proj.weight', [hidden, cfg.intermediateSize]),
      };
  }
}

// ---------------------------------------------------------------------------------------------

export class ReferenceModel {
  readonly config: RefConfig;
  private readonly embeddings: Float64Array; // [vocab, hidden]
  private readonly layers: LayerWeights[];
  private readonly finalNorm: Float64Array; // [hidden]
  private readonly lmHead: Float64Array; // [vocab, hidden]
  private readonly ssmAlgorithm: 'recurrent' | 'chunked';
  /**
   * Smallest routing margin (see ./moe.ts) over every MoE decision made so far; tests reset it and check
   * that their inputs stay clear of near-ties an f32 engine could resolve differently.
   */
  minRoutingMargin = Infinity;
  /** Every routing decision made so far (layer, token, experts), for tests that check expert use. */
  readonly routings: Array<{ layer: number; ids: number[] }> = [];

  private constructor(
    config: RefConfig,
    embeddings: Float64Array,
    layers: LayerWeights[],
    finalNorm: Float64Array,
    lmHead: Float64Array,
    options: ReferenceModelOptions,
  ) {
    this.config = config;
    this.embeddings = embeddings;
    this.layers = layers;
    this.finalNorm = finalNorm;
    this.lmHead = lmHead;
    this.ssmAlgorithm = options.ssm ?? 'recurrent';
  }

  /** Load config.json and model.safetensors (or a sharded checkpoint) from a Hugging Face style directory. */
  static load(dir: string, options: ReferenceModelOptions = {}): ReferenceModel {
    const cfg = readConfig(dir);
    const tensors = readSafetensors(dir);
    dequantizeFp8(tensors); // ModelOpt FP8: values x weight_scale, exactly in float64
    const embeddingShape = [cfg.vocabSize, cfg.hiddenSize];

    // §2: backbone.embeddings.weight (NV-MOD load_hook also accepts the legacy backbone.embedding.weight)
    const embeddings = findBackboneTensor(tensors, ['embeddings.weight', 'embedding.weight'], embeddingShape);
    const layers = cfg.layerTypes.map((_, i) => loadLayerWeights(tensors, cfg, i));
    const finalNorm = findBackboneTensor(tensors, ['norm_f.weight'], [cfg.hiddenSize]);
    // §1.1: untied lm_head.weight; tied checkpoints reuse the embedding matrix.
    const lmHead = cfg.tieWordEmbeddings ? embeddings : findTensor(tensors, ['lm_head.weight'], embeddingShape);
    return new ReferenceModel(cfg, embeddings, layers, finalNorm, lmHead, options);
  }

  /** Logits [T, vocab] of every position of `tokens`, starting from a fresh state. */
  forward(tokens: number[]): Float64Array {
    return this.step(this.newState(), tokens);
  }

  /** An empty state: zero conv and SSM states, empty KV caches (§4). */
  newState(): RefState {
    const cfg = this.config;
    const layers = cfg.layerTypes.map((type): RefLayerState => {
      if (type === 'mamba') {
        return {
          kind: 'mamba',
          conv: new Float64Array((cfg.convKernel - 1) * cfg.convDim),
          ssm: new Float64Array(cfg.mambaNumHeads * cfg.mambaHeadDim * cfg.ssmStateSize),
        };
      }
      if (type === 'attention') return { kind: 'attention', length: 0, k: new Float64Array(0), v: new Float64Array(0) };
      if (type === 'moe') return { kind: 'moe' };
      return { kind: 'mlp' };
    });
    return { position: 0, layers };
  }

  /** Feed `tokens` after everything already in `state`; returns their logits [T, vocab] and advances `state`. */
  step(state: RefState, tokens: number[]): Float64Array {
    const cfg = this.config;
    const T = tokens.length;
    if (state.layers.length !== cfg.numLayers) throw new Error('step: state does not belong to this model');

    // §3.1: h = Embedding[input_ids], no scaling
    let h = this.embed(tokens);

    // §3.1: for each layer, h = h + Mixer_i(RMSNorm_i(h))
    for (let i = 0; i < cfg.numLayers; i++) {
      const weights = this.layers[i]!;
      const u = rmsnorm(h, T, cfg.hiddenSize, weights.norm, cfg.layerNormEpsilon);
      const mixed = weights.kind === 'moe' ? this.moe(weights, u, T, i) : this.mixer(weights, state.layers[i]!, u, T);
      h = addResidual(h, mixed);
    }

    // §3.1: final RMSNorm (norm_f), then logits = h · lm_head^T
    const normed = rmsnorm(h, T, cfg.hiddenSize, this.finalNorm, cfg.layerNormEpsilon);
    state.position += T;
    return matmul(normed, T, cfg.hiddenSize, this.lmHead, cfg.vocabSize);
  }

  // --- pieces of the forward pass ---

  /** §3.1: rows of the embedding matrix. */
  private embed(tokens: number[]): Float64Array {
    const { hiddenSize, vocabSize } = this.config;
    const h = new Float64Array(tokens.length * hiddenSize);
    tokens.forEach((token, t) => {
      if (!Number.isInteger(token) || token < 0 || token >= vocabSize) throw new Error(`token ${token} out of range`);
      h.set(this.embeddings.subarray(token * hiddenSize, (token + 1) * hiddenSize), t * hiddenSize);
    });
    return h;
  }

  private mixer(weights: LayerWeights, layerState: RefLayerState, u: Float64Array, T: number): Float64Array {
    if (weights.kind === 'mamba' && layerState.kind === 'mamba') return this.mamba(weights, layerState, u, T);
    if (weights.kind === 'attention' && layerState.kind === 'attention') return this.attention(weights, layerState, u, T);
    if (weights.kind === 'mlp') return this.mlp(weights, u, T);
    throw new Error(`layer state kind ${layerState.kind} does not match layer kind ${weights.kind}`);
  }

  /** §3.2: Mamba-2 mixer. u: [T, hidden] (already pre-normed). */
  private mamba(w: MambaWeights, st: MambaLayerState, u: Float64Array, T: number): Float64Array {
    const cfg = this.config;
    const { dInner, convDim, inProjDim, hiddenSize } = cfg;
    const H = cfg.mambaNumHeads;
    const GN = cfg.nGroups * cfg.ssmStateSize;

    // zxbcdt = W_in · u, split as [ z (dInner) | xBC (convDim) | dt (H) ]   (§1.2 split order)
    const zxbcdt = matmul(u, T, hiddenSize, w.inProj, inProjDim);
    const z = sliceColumns(zxbcdt, T, inProjDim, 0, dInner);
    const xBCRaw = sliceColumns(zxbcdt, T, inProjDim, dInner, dInner + convDim);
    const dtRaw = sliceColumns(zxbcdt, T, inProjDim, dInner + convDim, inProjDim);

    // causal depthwise conv + bias + SiLU over x, B and C (§3.2, §5.1); the conv state continues the sequence
    const conv = conv1dCausal(xBCRaw, T, convDim, w.convWeight, cfg.convKernel, w.convBias, st.conv);
    st.conv = conv.state;

    // xBC = [ x (dInner) | B (G*N) | C (G*N) ]
    const x = sliceColumns(conv.y, T, convDim, 0, dInner);
    const B = sliceColumns(conv.y, T, convDim, dInner, dInner + GN);
    const C = sliceColumns(conv.y, T, convDim, dInner + GN, convDim);

    // selective scan with D skip (§3.2 recurrence, or §5.2 chunked; equal)
    const params: SsmParams = {
      H,
      P: cfg.mambaHeadDim,
      G: cfg.nGroups,
      N: cfg.ssmStateSize,
      A: w.A,
      D: w.D,
      dtBias: w.dtBias,
      dtMin: cfg.timeStepLimit[0],
      dtMax: cfg.timeStepLimit[1],
    };
    const scan =
      this.ssmAlgorithm === 'chunked'
        ? ssdChunked(x, dtRaw, B, C, params, T, st.ssm, cfg.chunkSize)
        : ssmRecurrent(x, dtRaw, B, C, params, T, st.ssm);
    st.ssm = scan.state;

    // gated RMSNorm: y * silu(z) first, then RMS per group of dInner/G channels, * norm weight (§3.2)
    const normed = rmsnormGatedGrouped(scan.y, z, T, dInner, dInner / cfg.nGroups, w.gatedNorm, cfg.layerNormEpsilon);

    // out = W_out · normed
    return matmul(normed, T, dInner, w.outProj, hiddenSize);
  }

  /** §3.4: causal GQA self-attention, no positional encoding. u: [T, hidden]. */
  private attention(w: AttentionWeights, st: AttentionLayerState, u: Float64Array, T: number): Float64Array {
    const cfg = this.config;
    const Hq = cfg.numAttentionHeads;
    const Hkv = cfg.numKeyValueHeads;
    const Dh = cfg.headDim;
    const hidden = cfg.hiddenSize;

    const q = matmul(u, T, hidden, w.qProj, Hq * Dh);
    const kNew = matmul(u, T, hidden, w.kProj, Hkv * Dh);
    const vNew = matmul(u, T, hidden, w.vProj, Hkv * Dh);

    // append the new keys/values to the cache, then attend over cache + new (§4)
    const past = st.length;
    st.k = concatRows(st.k, kNew);
    st.v = concatRows(st.v, vNew);
    st.length = past + T;

    const o = attentionGqa(q, st.k, st.v, past, T, Hq, Hkv, Dh);
    return matmul(o, T, Hq * Dh, w.oProj, hidden);
  }

  /**
   * MoE block (HF NemotronHMoE.forward): router logits in full precision, routing as ./moe.ts, every routed
   * expert a relu² MLP down(relu(up(u))²) weighted by its routing weight, plus the shared expert on every token.
   */
  private moe(w: MoeWeights, u: Float64Array, T: number, layer: number): Float64Array {
    const cfg = this.config;
    const m = cfg.moe!;
    const H = cfg.hiddenSize;
    const E = m.nRoutedExperts;
    const I = m.moeIntermediateSize;
    const logits = matmul(u, T, H, w.router, E);
    const out = new Float64Array(T * H);
    for (let t = 0; t < T; t++) {
      const r = route(logits.subarray(t * E, (t + 1) * E), w.scoreBias, m);
      this.minRoutingMargin = Math.min(this.minRoutingMargin, r.margin);
      this.routings.push({ layer, ids: r.ids });
      const x = u.subarray(t * H, (t + 1) * H);
      r.ids.forEach((e, k) => {
        const y = matmul(relu2(matmul(x, 1, H, w.up[e]!, I)), 1, I, w.down[e]!, H);
        for (let c = 0; c < H; c++) out[t * H + c]! += r.weights[k]! * y[c]!;
      });
    }
    if (w.sharedUp && w.sharedDown) {
      const S = m.moeSharedExpertIntermediateSize;
      const shared = matmul(relu2(matmul(u, T, H, w.sharedUp, S)), T, S, w.sharedDown, H);
      for (let i = 0; i < out.length; i++) out[i]! += shared[i]!;
    }
    return out;
  }

  /** §3.3: out = W_down · relu(W_up · u)², no gate, no bias. */
  private mlp(w: MlpWeights, u: Float64Array, T: number): Float64Array {
    const cfg = this.config;
    const up = matmul(u, T, cfg.hiddenSize, w.upProj, cfg.intermediateSize);
    return matmul(relu2(up), T, cfg.intermediateSize, w.downProj, cfg.hiddenSize);
  }
}

// ---------------------------------------------------------------------------------------------
// Small array helpers

/** Columns [from, to) of a row-major [rows, cols] matrix. */
function sliceColumns(a: Float64Array, rows: number, cols: number, from: number, to: number): Float64Array {
  const width = to - from;
  const out = new Float64Array(rows * width);
  for (let r = 0; r < rows; r++) out.set(a.subarray(r * cols + from, r * cols + to), r * width);
  return out;
}

function concatRows(a: Float64Array, b: Float64Array): Float64Array {
  const out = new Float64Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

function addResidual(h: Float64Array, delta: Float64Array): Float64Array {
  const out = new Float64Array(h.length);
  for (let i = 0; i < h.length; i++) out[i] = h[i]! + delta[i]!;
  return out;
}
