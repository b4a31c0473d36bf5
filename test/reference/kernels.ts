// Float64 reference kernels for Nemotron-H (docs/architecture.md §3 forward pass, §5 algorithms).
//
// Written to be read, not to be fast: every array is a row-major Float64Array, every loop is spelled out.
// Shapes are given in comments as [rows, cols]; "[T,C]" means element (t, c) lives at index t*C + c.

// ---------------------------------------------------------------------------------------------
// Scalar activations

/** SiLU(x) = x * sigmoid(x) (§3.2 conv activation and gate). */
export function silu(x: number): number {
  return x / (1 + Math.exp(-x));
}

/** softplus(x) = log(1 + e^x), with the kernels' cut-off: x > 20 ? x : log1p(exp(x)) (§3.2, §5.3). */
export function softplus(x: number): number {
  return x > 20 ? x : Math.log1p(Math.exp(x));
}

/** relu(x)^2, element-wise (§3.3 MLP activation "relu2"). */
export function relu2(x: Float64Array): Float64Array {
  const y = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const r = x[i]! > 0 ? x[i]! : 0;
    y[i] = r * r;
  }
  return y;
}

// ---------------------------------------------------------------------------------------------
// Linear layers and norms

/** y[T,N] = x[T,K] · w[N,K]^T  (PyTorch Linear weight layout [out, in], §2; no bias anywhere, §2). */
export function matmul(x: Float64Array, T: number, K: number, w: Float64Array, N: number): Float64Array {
  checkLength('matmul x', x, T * K);
  checkLength('matmul w', w, N * K);
  const y = new Float64Array(T * N);
  for (let t = 0; t < T; t++) {
    for (let n = 0; n < N; n++) {
      let sum = 0;
      for (let k = 0; k < K; k++) sum += x[t * K + k]! * w[n * K + k]!;
      y[t * N + n] = sum;
    }
  }
  return y;
}

/** RMSNorm per row (§3.1): y = w * x / sqrt(mean(x²) + eps). No "+1" weight offset. */
export function rmsnorm(x: Float64Array, T: number, C: number, w: Float64Array, eps: number): Float64Array {
  checkLength('rmsnorm x', x, T * C);
  checkLength('rmsnorm w', w, C);
  const y = new Float64Array(T * C);
  for (let t = 0; t < T; t++) {
    let sumSquares = 0;
    for (let c = 0; c < C; c++) sumSquares += x[t * C + c]! ** 2;
    const inverseRms = 1 / Math.sqrt(sumSquares / C + eps);
    for (let c = 0; c < C; c++) y[t * C + c] = w[c]! * (x[t * C + c]! * inverseRms);
  }
  return y;
}

/**
 * Gated grouped RMSNorm of the Mamba mixer output (§3.2, norm_before_gate=False):
 *   v = y * silu(z)                       gate FIRST
 *   v_g = v_g / sqrt(mean_g(v_g²) + eps)   RMS over each group of `groupSize` consecutive channels
 *   out = w * v
 */
export function rmsnormGatedGrouped(
  y: Float64Array,
  z: Float64Array,
  T: number,
  C: number,
  groupSize: number,
  w: Float64Array,
  eps: number,
): Float64Array {
  checkLength('rmsnormGatedGrouped y', y, T * C);
  checkLength('rmsnormGatedGrouped z', z, T * C);
  checkLength('rmsnormGatedGrouped w', w, C);
  if (C % groupSize !== 0) throw new Error(`rmsnormGatedGrouped: C=${C} not divisible by groupSize=${groupSize}`);
  const out = new Float64Array(T * C);
  for (let t = 0; t < T; t++) {
    const gated = new Float64Array(C);
    for (let c = 0; c < C; c++) gated[c] = y[t * C + c]! * silu(z[t * C + c]!);
    for (let g0 = 0; g0 < C; g0 += groupSize) {
      let sumSquares = 0;
      for (let c = g0; c < g0 + groupSize; c++) sumSquares += gated[c]! ** 2;
      const inverseRms = 1 / Math.sqrt(sumSquares / groupSize + eps);
      for (let c = g0; c < g0 + groupSize; c++) out[t * C + c] = w[c]! * (gated[c]! * inverseRms);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Causal depthwise convolution (§3.2, §5.1)

/**
 * out[t,c] = silu( b[c] + Σ_{k=0}^{K-1} w[c,k] · in[t-(K-1)+k, c] )
 * where in[<0] comes from `state` ([K-1,C], oldest row first; null = zeros). Tap k=K-1 multiplies the current token.
 * The returned state is the last K-1 raw (pre-conv) inputs, oldest first, as needed to continue the sequence.
 */
export function conv1dCausal(
  x: Float64Array,
  T: number,
  C: number,
  w: Float64Array,
  K: number,
  b: Float64Array,
  state: Float64Array | null,
): { y: Float64Array; state: Float64Array } {
  checkLength('conv1dCausal x', x, T * C);
  checkLength('conv1dCausal w', w, C * K);
  checkLength('conv1dCausal b', b, C);
  if (state !== null) checkLength('conv1dCausal state', state, (K - 1) * C);

  // The input as the conv sees it: K-1 history rows followed by the T new rows, [K-1+T, C].
  const history = state ?? new Float64Array((K - 1) * C);
  const padded = new Float64Array((K - 1 + T) * C);
  padded.set(history, 0);
  padded.set(x, (K - 1) * C);

  const y = new Float64Array(T * C);
  for (let t = 0; t < T; t++) {
    for (let c = 0; c < C; c++) {
      let sum = b[c]!;
      // padded row t+k holds in[t-(K-1)+k]
      for (let k = 0; k < K; k++) sum += w[c * K + k]! * padded[(t + k) * C + c]!;
      y[t * C + c] = silu(sum);
    }
  }

  const newState = padded.slice(T * C, (T + K - 1) * C); // last K-1 rows
  return { y, state: newState };
}

// ---------------------------------------------------------------------------------------------
// Selective state space (Mamba-2 SSD), §3.2 and §5.2

export interface SsmParams {
  /** Number of heads. */
  H: number;
  /** Head dim (channels per head). */
  P: number;
  /** Number of B/C groups; head h uses group floor(h / (H/G)). */
  G: number;
  /** State size. */
  N: number;
  /** [H], negative, = -exp(A_log). */
  A: Float64Array;
  /** [H], skip connection. */
  D: Float64Array;
  /** [H], added to dt before softplus. */
  dtBias: Float64Array;
  /** time_step_limit clamp bounds (0, Infinity = no-op). */
  dtMin: number;
  dtMax: number;
}

/** B/C group of head h (§1.2: HF repeat_interleave, ggml g = h/(nh/ng)). */
function groupOfHead(h: number, p: SsmParams): number {
  return Math.floor(h / (p.H / p.G));
}

/** dt[t,h] = clamp(softplus(dtRaw[t,h] + dtBias[h]), dtMin, dtMax)  (§3.2). Returns [T,H]. */
function discretizeDt(dtRaw: Float64Array, p: SsmParams, T: number): Float64Array {
  const dt = new Float64Array(T * p.H);
  for (let t = 0; t < T; t++) {
    for (let h = 0; h < p.H; h++) {
      const value = softplus(dtRaw[t * p.H + h]! + p.dtBias[h]!);
      dt[t * p.H + h] = Math.min(Math.max(value, p.dtMin), p.dtMax);
    }
  }
  return dt;
}

function checkSsmInputs(
  name: string,
  x: Float64Array,
  dtRaw: Float64Array,
  B: Float64Array,
  C: Float64Array,
  p: SsmParams,
  T: number,
  state0: Float64Array | null,
): void {
  if (p.H % p.G !== 0) throw new Error(`${name}: H=${p.H} not divisible by G=${p.G}`);
  checkLength(`${name} x`, x, T * p.H * p.P);
  checkLength(`${name} dtRaw`, dtRaw, T * p.H);
  checkLength(`${name} B`, B, T * p.G * p.N);
  checkLength(`${name} C`, C, T * p.G * p.N);
  checkLength(`${name} A`, p.A, p.H);
  checkLength(`${name} D`, p.D, p.H);
  checkLength(`${name} dtBias`, p.dtBias, p.H);
  if (state0 !== null) checkLength(`${name} state0`, state0, p.H * p.P * p.N);
}

/**
 * The token-by-token recurrence of §3.2 (= §5.3 applied T times). For each token t and head h (group g):
 *   dt = clamp(softplus(dtRaw + dtBias));  dA = exp(dt · A[h])
 *   S[h,p,n] = dA · S[h,p,n] + dt · x[t,h,p] · B[t,g,n]
 *   y[t,h,p] = Σ_n C[t,g,n] · S[h,p,n] + D[h] · x[t,h,p]
 * x: [T,H*P] (channel h*P+p), B/C: [T,G*N] (g*N+n), state: [H,P,N].
 */
export function ssmRecurrent(
  x: Float64Array,
  dtRaw: Float64Array,
  B: Float64Array,
  C: Float64Array,
  p: SsmParams,
  T: number,
  state0: Float64Array | null,
): { y: Float64Array; state: Float64Array } {
  checkSsmInputs('ssmRecurrent', x, dtRaw, B, C, p, T, state0);
  const { H, P, G, N } = p;
  const dt = discretizeDt(dtRaw, p, T);
  const S = state0 ? Float64Array.from(state0) : new Float64Array(H * P * N);
  const y = new Float64Array(T * H * P);

  for (let t = 0; t < T; t++) {
    for (let h = 0; h < H; h++) {
      const g = groupOfHead(h, p);
      const dtH = dt[t * H + h]!;
      const dA = Math.exp(dtH * p.A[h]!);
      for (let pp = 0; pp < P; pp++) {
        const xv = x[t * H * P + h * P + pp]!;
        let out = 0;
        for (let n = 0; n < N; n++) {
          const s = (h * P + pp) * N + n;
          S[s] = dA * S[s]! + dtH * xv * B[t * G * N + g * N + n]!;
          out += C[t * G * N + g * N + n]! * S[s]!;
        }
        y[t * H * P + h * P + pp] = out + p.D[h]! * xv;
      }
    }
  }
  return { y, state: S };
}

// --- the chunked SSD algorithm, §5.2, one function per step of the kernel pipeline ---

interface Chunk {
  /** First token of the chunk. */
  t0: number;
  /** Number of tokens in the chunk (the last chunk may be short). */
  L: number;
}

/** Split T tokens into chunks of chunkSize; a partial last chunk is just shorter (§5.2). */
function splitIntoChunks(T: number, chunkSize: number): Chunk[] {
  const chunks: Chunk[] = [];
  for (let t0 = 0; t0 < T; t0 += chunkSize) chunks.push({ t0, L: Math.min(chunkSize, T - t0) });
  return chunks;
}

/** Step 1 (_chunk_cumsum_fwd): Acs[i] = Σ_{j<=i} dt[t0+j,h] · A[h], inclusive, for one chunk and head. */
function chunkCumsum(dt: Float64Array, p: SsmParams, chunk: Chunk, h: number): Float64Array {
  const Acs = new Float64Array(chunk.L);
  let running = 0;
  for (let i = 0; i < chunk.L; i++) {
    running += dt[(chunk.t0 + i) * p.H + h]! * p.A[h]!;
    Acs[i] = running;
  }
  return Acs;
}

/**
 * Step 2 (_chunk_state_fwd): the chunk's own contribution to its end state, for one head:
 *   st[p,n] = Σ_j exp(Acs[L-1] - Acs[j]) · dt[t0+j,h] · x[t0+j,h,p] · B[t0+j,g,n]      [P,N]
 */
function chunkStateContribution(
  x: Float64Array,
  B: Float64Array,
  dt: Float64Array,
  Acs: Float64Array,
  p: SsmParams,
  chunk: Chunk,
  h: number,
): Float64Array {
  const { H, P, G, N } = p;
  const g = groupOfHead(h, p);
  const st = new Float64Array(P * N);
  for (let j = 0; j < chunk.L; j++) {
    const t = chunk.t0 + j;
    const weight = Math.exp(Acs[chunk.L - 1]! - Acs[j]!) * dt[t * H + h]!;
    for (let pp = 0; pp < P; pp++) {
      const wx = weight * x[t * H * P + h * P + pp]!;
      for (let n = 0; n < N; n++) st[pp * N + n] = st[pp * N + n]! + wx * B[t * G * N + g * N + n]!;
    }
  }
  return st;
}

/**
 * Step 3 (_state_passing_fwd), sequential over chunks, for one head:
 *   S_in(0) = S0;   S_in(c+1) = exp(Acs_c[L-1]) · S_in(c) + st_c
 * Returns S_in(0..numChunks); the last one is the final state.
 */
function passStates(S0: Float64Array, chunkDecay: number[], chunkStates: Float64Array[]): Float64Array[] {
  const statesIn: Float64Array[] = [S0];
  for (let c = 0; c < chunkStates.length; c++) {
    const previous = statesIn[c]!;
    const next = new Float64Array(previous.length);
    for (let i = 0; i < next.length; i++) next[i] = chunkDecay[c]! * previous[i]! + chunkStates[c]![i]!;
    statesIn.push(next);
  }
  return statesIn;
}

/** Step 4 (_bmm_chunk_fwd): CB[i,j] = Σ_n C[t0+i,g,n] · B[t0+j,g,n], for one chunk and group.  [L,L] */
function chunkCB(B: Float64Array, C: Float64Array, p: SsmParams, chunk: Chunk, g: number): Float64Array {
  const { G, N } = p;
  const { t0, L } = chunk;
  const CB = new Float64Array(L * L);
  for (let i = 0; i < L; i++) {
    for (let j = 0; j < L; j++) {
      let sum = 0;
      for (let n = 0; n < N; n++) sum += C[(t0 + i) * G * N + g * N + n]! * B[(t0 + j) * G * N + g * N + n]!;
      CB[i * L + j] = sum;
    }
  }
  return CB;
}

/**
 * Step 5 (_chunk_scan_fwd), for one chunk and head, written into y:
 *   Y_diag[i,p] = Σ_{j<=i} CB[i,j] · exp(Acs[i] - Acs[j]) · dt[t0+j,h] · x[t0+j,h,p]    (causal, intra-chunk)
 *   Y_off[i,p]  = exp(Acs[i]) · Σ_n C[t0+i,g,n] · S_in[p,n]                            (from earlier chunks)
 *   y[t0+i,h,p] = Y_diag + Y_off + D[h] · x[t0+i,h,p]
 */
function chunkScan(
  y: Float64Array,
  x: Float64Array,
  C: Float64Array,
  dt: Float64Array,
  CB: Float64Array,
  Acs: Float64Array,
  stateIn: Float64Array,
  p: SsmParams,
  chunk: Chunk,
  h: number,
): void {
  const { H, P, G, N } = p;
  const { t0, L } = chunk;
  const g = groupOfHead(h, p);
  for (let i = 0; i < L; i++) {
    const t = t0 + i;
    for (let pp = 0; pp < P; pp++) {
      let yDiag = 0;
      for (let j = 0; j <= i; j++) {
        const decay = Math.exp(Acs[i]! - Acs[j]!); // only j <= i: the exponent is <= 0
        yDiag += CB[i * L + j]! * decay * dt[(t0 + j) * H + h]! * x[(t0 + j) * H * P + h * P + pp]!;
      }
      let cDotState = 0;
      for (let n = 0; n < N; n++) cDotState += C[t * G * N + g * N + n]! * stateIn[pp * N + n]!;
      const yOff = Math.exp(Acs[i]!) * cDotState;
      y[t * H * P + h * P + pp] = yDiag + yOff + p.D[h]! * x[t * H * P + h * P + pp]!;
    }
  }
}

/**
 * The chunked SSD algorithm of §5.2 (mamba_chunk_scan_combined), written as its steps:
 * cumsum -> chunk states -> state passing -> CB -> chunk scan. Mathematically equal to ssmRecurrent.
 */
export function ssdChunked(
  x: Float64Array,
  dtRaw: Float64Array,
  B: Float64Array,
  C: Float64Array,
  p: SsmParams,
  T: number,
  state0: Float64Array | null,
  chunkSize: number,
): { y: Float64Array; state: Float64Array } {
  checkSsmInputs('ssdChunked', x, dtRaw, B, C, p, T, state0);
  if (!(chunkSize >= 1)) throw new Error(`ssdChunked: chunkSize must be >= 1, got ${chunkSize}`);
  const { H, P, G, N } = p;
  const dt = discretizeDt(dtRaw, p, T);
  const chunks = splitIntoChunks(T, chunkSize);
  const y = new Float64Array(T * H * P);
  const finalState = new Float64Array(H * P * N);

  // CB depends only on the group, so it is shared by the H/G heads of a group (step 4, hoisted).
  const cbPerChunkAndGroup = chunks.map((chunk) => Array.from({ length: G }, (_, g) => chunkCB(B, C, p, chunk, g)));

  for (let h = 0; h < H; h++) {
    // step 1: per-chunk cumulative log-decay
    const AcsPerChunk = chunks.map((chunk) => chunkCumsum(dt, p, chunk, h));
    // step 2: each chunk's own end state
    const chunkStates = chunks.map((chunk, c) => chunkStateContribution(x, B, dt, AcsPerChunk[c]!, p, chunk, h));
    // step 3: pass states between chunks
    const S0 = state0 ? state0.slice(h * P * N, (h + 1) * P * N) : new Float64Array(P * N);
    const chunkDecay = AcsPerChunk.map((Acs) => Math.exp(Acs[Acs.length - 1]!));
    const statesIn = passStates(S0, chunkDecay, chunkStates);
    // step 5: outputs of every chunk
    chunks.forEach((chunk, c) => {
      const g = groupOfHead(h, p);
      chunkScan(y, x, C, dt, cbPerChunkAndGroup[c]![g]!, AcsPerChunk[c]!, statesIn[c]!, p, chunk, h);
    });
    finalState.set(statesIn[chunks.length]!, h * P * N);
  }
  return { y, state: finalState };
}

// ---------------------------------------------------------------------------------------------
// Attention (§3.4)

/**
 * Causal grouped-query attention, no positional encoding, scale 1/sqrt(Dh).
 * q: [T, Hq*Dh] for positions past..past+T-1; k, v: [past+T, Hkv*Dh] (cache followed by the new rows).
 * Query t (absolute position past+t) attends to keys 0..past+t. Query head j uses kv head floor(j / (Hq/Hkv)).
 * Returns [T, Hq*Dh].
 */
export function attentionGqa(
  q: Float64Array,
  k: Float64Array,
  v: Float64Array,
  past: number,
  T: number,
  Hq: number,
  Hkv: number,
  Dh: number,
): Float64Array {
  checkLength('attentionGqa q', q, T * Hq * Dh);
  checkLength('attentionGqa k', k, (past + T) * Hkv * Dh);
  checkLength('attentionGqa v', v, (past + T) * Hkv * Dh);
  if (Hq % Hkv !== 0) throw new Error(`attentionGqa: Hq=${Hq} not divisible by Hkv=${Hkv}`);
  const queriesPerKv = Hq / Hkv;
  const scale = 1 / Math.sqrt(Dh);
  const out = new Float64Array(T * Hq * Dh);

  for (let t = 0; t < T; t++) {
    const visible = past + t + 1; // keys 0..past+t
    for (let j = 0; j < Hq; j++) {
      const kvHead = Math.floor(j / queriesPerKv);
      // scores[s] = q · k_s / sqrt(Dh)
      const scores = new Float64Array(visible);
      for (let s = 0; s < visible; s++) {
        let dot = 0;
        for (let d = 0; d < Dh; d++) dot += q[t * Hq * Dh + j * Dh + d]! * k[s * Hkv * Dh + kvHead * Dh + d]!;
        scores[s] = dot * scale;
      }
      const probs = softmax(scores);
      // out = Σ_s probs[s] · v_s
      for (let d = 0; d < Dh; d++) {
        let sum = 0;
        for (let s = 0; s < visible; s++) sum += probs[s]! * v[s * Hkv * Dh + kvHead * Dh + d]!;
        out[t * Hq * Dh + j * Dh + d] = sum;
      }
    }
  }
  return out;
}

/** Numerically stable softmax of one vector. */
function softmax(x: Float64Array): Float64Array {
  let max = -Infinity;
  for (let i = 0; i < x.length; i++) max = Math.max(max, x[i]!);
  const e = new Float64Array(x.length);
  let sum = 0;
  for (let i = 0; i < x.length; i++) {
    e[i] = Math.exp(x[i]! - max);
    sum += e[i]!;
  }
  for (let i = 0; i < x.length; i++) e[i] = e[i]! / sum;
  return e;
}

/** Row-wise log-softmax of [T,V] logits (for comparing logits, which are defined up to a constant per row). */
export function logSoftmax(logits: Float64Array, T: number, V: number): Float64Array {
  checkLength('logSoftmax logits', logits, T * V);
  const out = new Float64Array(T * V);
  for (let t = 0; t < T; t++) {
    let max = -Infinity;
    for (let v = 0; v < V; v++) max = Math.max(max, logits[t * V + v]!);
    let sum = 0;
    for (let v = 0; v < V; v++) sum += Math.exp(logits[t * V + v]! - max);
    const logSum = max + Math.log(sum);
    for (let v = 0; v < V; v++) out[t * V + v] = logits[t * V + v]! - logSum;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------

function checkLength(name: string, a: Float64Array, expected: number): void {
  if (a.length !== expected) throw new Error(`${name}: length ${a.length}, expected ${expected}`);
}
