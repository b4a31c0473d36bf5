// The Mamba-2 state update, causal conv1d (prompt and decode step) and the two RMSNorms on every SIMD
// path this CPU has plus the scalar one, against their float64 twins in test/reference/kernels.ts.
// (The matmul, SSD scan and attention paths have their own files.) Inputs are rounded to f32 first, so
// the difference is the kernel's own f32 arithmetic.
//
// Tolerances (max |kernel - ref| / max |ref|): the state update sums N <= 130 products in f32 after one
// exp (relative error ~ sqrt(N) * 6e-8 ~ 1e-6); conv1d sums K <= 4 taps and takes a polynomial exp
// (relative error < 1.3e-7) inside SiLU; the norms sum squares in double and scale in f32. 2e-5 leaves
// room for all; a wrong lane, group or tap gives errors of order 1.
import { describe, expect, it } from 'vitest';

import * as ref from '../reference/kernels.js';
import { makeRng } from '../reference/random.js';
import { randomSsmCase } from '../reference/ssm-case.js';
import { maxRelErr, native } from '../helpers.js';

const k = native._kernels;
const f32 = (a: Float64Array) => Float32Array.from(a);
const f64 = (a: Float32Array) => Float64Array.from(a);
const paths = (['scalar', 'avx2', 'avx512'] as const).filter((p) => k.setKernelPath(p) === p);
k.setKernelPath('auto');

function onPath<T>(path: (typeof paths)[number], body: () => T): T {
  expect(k.setKernelPath(path)).toBe(path);
  try {
    return body();
  } finally {
    k.setKernelPath('auto');
  }
}

function stepCase(seed: number, H: number, P: number, G: number, N: number, dtLimit?: [number, number]) {
  return randomSsmCase(seed, 1, H, P, G, N, dtLimit ? { dtMin: dtLimit[0], dtMax: dtLimit[1] } : {});
}

describe('Mamba-2 state update (decode)', () => {
  // H, P, G, N: N below, at and above the 16 lanes, with a tail (130); the bench model's and the 9B's heads.
  const shapes = [[4, 8, 1, 8], [8, 16, 2, 16], [12, 10, 3, 32], [6, 64, 2, 130], [24, 64, 8, 128], [16, 64, 8, 128]] as const;
  for (const path of paths) for (const [H, P, G, N] of shapes) {
    it(`${path}: H=${H} P=${P} G=${G} N=${N} matches one step of the recurrence`, () => {
      const c = stepCase(H * 1000 + N, H, P, G, N);
      const got = onPath(path, () => k.ssmStateUpdate(f32(c.x), f32(c.dt), f32(c.B), f32(c.C), c.native, f32(c.s0)));
      const want = ref.ssmRecurrent(c.x, c.dt, c.B, c.C, c.p, 1, c.s0);
      expect(maxRelErr(got.y, want.y)).toBeLessThan(2e-5);
      expect(maxRelErr(got.state, want.state)).toBeLessThan(2e-5);
    });
  }
  for (const path of paths) {
    it(`${path}: the dt clamp (time_step_limit) applies after softplus`, () => {
      const c = stepCase(77, 8, 16, 2, 48, [0.01, 0.05]);
      const got = onPath(path, () => k.ssmStateUpdate(f32(c.x), f32(c.dt), f32(c.B), f32(c.C), { ...c.native, dtMin: 0.01, dtMax: 0.05 }, f32(c.s0)));
      const want = ref.ssmRecurrent(c.x, c.dt, c.B, c.C, c.p, 1, c.s0);
      expect(maxRelErr(got.y, want.y)).toBeLessThan(2e-5);
      const unclamped = ref.ssmRecurrent(c.x, c.dt, c.B, c.C, { ...c.p, dtMin: 0, dtMax: Infinity }, 1, c.s0);
      expect(maxRelErr(unclamped.y, want.y)).toBeGreaterThan(1e-3); // the clamp matters for this case
    });
  }
});

describe('causal conv1d step (decode)', () => {
  // C below, at and above the vector widths with tails; K = 1 (no state), 2, 3, 4.
  const shapes = [[5, 4], [16, 4], [37, 3], [3072, 4], [100, 2], [9, 1]] as const;
  for (const path of paths) for (const [C, K] of shapes) {
    it(`${path}: C=${C} K=${K} equals the causal conv with T = 1 and shifts the window`, () => {
      const rng = makeRng(C * 10 + K);
      const x = f64(f32(rng.normalArray(C, 3)));
      const w = f64(f32(rng.normalArray(C * K, 0.5)));
      const b = f64(f32(rng.normalArray(C, 0.1)));
      const s0 = f64(f32(rng.normalArray((K - 1) * C)));
      const got = onPath(path, () => k.conv1dStep(f32(x), C, f32(w), K, f32(b), f32(s0)));
      const want = ref.conv1dCausal(x, 1, C, w, K, b, s0);
      expect(maxRelErr(got.y, want.y)).toBeLessThan(2e-5);
      expect(maxRelErr(got.state, want.state)).toBe(0); // the window holds raw inputs
    });
  }
});

describe('causal conv1d (prompt)', () => {
  const shapes = [[1, 8, 4], [2, 16, 4], [7, 37, 4], [33, 12, 3], [5, 10, 1], [130, 3072, 4]] as const;
  for (const path of paths) for (const [T, C, K] of shapes) {
    it(`${path}: T=${T} C=${C} K=${K} continues the state and leaves the last K-1 inputs`, () => {
      const rng = makeRng(T * 100 + C + K);
      const x = f64(f32(rng.normalArray(T * C, 3)));
      const w = f64(f32(rng.normalArray(C * K, 0.5)));
      const b = f64(f32(rng.normalArray(C, 0.1)));
      const s0 = f64(f32(rng.normalArray((K - 1) * C)));
      const got = onPath(path, () => k.conv1dCausal(f32(x), T, C, f32(w), K, f32(b), f32(s0)));
      const want = ref.conv1dCausal(x, T, C, w, K, b, s0);
      expect(maxRelErr(got.y, want.y)).toBeLessThan(2e-5);
      expect(maxRelErr(got.state, want.state)).toBe(0);
    });
  }
});

describe('RMSNorm and the gated grouped RMSNorm', () => {
  // C below, at and above 8 / 16 lanes with tails; the 9B's hidden size; groups of 1 to all channels.
  const shapes = [[1, 5, 5], [3, 16, 8], [4, 77, 77], [2, 4480, 560], [5, 1024, 128]] as const;
  for (const path of paths) for (const [T, C, group] of shapes) {
    it(`${path}: T=${T} C=${C} (groups of ${group})`, () => {
      const rng = makeRng(T * 7 + C);
      const x = f64(f32(rng.normalArray(T * C, 2)));
      const z = f64(f32(rng.normalArray(T * C, 3)));
      const w = f64(f32(rng.normalArray(C, 1)));
      const y = onPath(path, () => k.rmsnorm(f32(x), T, C, f32(w), 1e-5));
      expect(maxRelErr(y, ref.rmsnorm(x, T, C, w, 1e-5))).toBeLessThan(2e-5);
      const g = onPath(path, () => k.rmsnormGatedGrouped(f32(x), f32(z), T, C, group, f32(w), 1e-5));
      expect(maxRelErr(g, ref.rmsnormGatedGrouped(x, z, T, C, group, w, 1e-5))).toBeLessThan(2e-5);
    });
  }
});
