// Random inputs for the Mamba-2 SSM kernels (chunked scan and one-step update), rounded through f32 so
// the float64 reference sees exactly what a kernel sees. One generator for every SSM test file.
import type { SsmParams } from './kernels.js';
import { makeRng } from './random.js';

export interface SsmCaseOptions {
  /** time_step_limit clamp after softplus (default none). */
  dtMin?: number;
  dtMax?: number;
  /** dt after softplus spans [dtLo, dtHi] log-uniformly before clamping (default 0.001..0.1, the checkpoints' init range). */
  dtLo?: number;
  dtHi?: number;
  /** standard deviation of the raw dt inputs (default 1) */
  dtScale?: number;
  /** start from a zero state instead of a random one */
  zeroState?: boolean;
}

const f32 = (a: Float64Array) => Float32Array.from(a);
const f64 = (a: Float32Array) => Float64Array.from(a);

/** T tokens of H heads x P channels, G groups of state size N; `native` is `p` as the addon takes it. */
export function randomSsmCase(seed: number, T: number, H: number, P: number, G: number, N: number, o: SsmCaseOptions = {}) {
  const rng = makeRng(seed);
  const r = (n: number, s = 1) => f64(f32(rng.normalArray(n, s)));
  const [lo, hi] = [o.dtLo ?? 0.001, o.dtHi ?? 0.1];
  const p: SsmParams = {
    H, P, G, N,
    A: f64(f32(Float64Array.from({ length: H }, () => -(1 + 15 * rng.uniform())))),
    D: r(H),
    dtBias: f64(f32(Float64Array.from({ length: H }, () => Math.log(Math.expm1(lo * (hi / lo) ** rng.uniform()))))),
    dtMin: o.dtMin ?? 0,
    dtMax: o.dtMax ?? Infinity,
  };
  const native = { ...p, A: f32(p.A), D: f32(p.D), dtBias: f32(p.dtBias) };
  const s0 = o.zeroState ? new Float64Array(H * P * N) : r(H * P * N, 0.5);
  return { x: r(T * H * P), dt: r(T * H, o.dtScale ?? 1), B: r(T * G * N), C: r(T * G * N), s0, p, native };
}
