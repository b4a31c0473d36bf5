// The chunked SSD scan (csrc/kernels/ssd_scan.cc) on every kernel path against the float64
// token-by-token recurrence, over the shapes the dense-product tiling has edges in: T not a multiple
// of the chunk (short last chunk), chunks of 16 to 256, groups shared by 1 to 16 heads, head dim 64
// and state sizes 16 / 64 / 128.
//
// Tolerance (max |kernel - ref| / max |ref|) 5e-5: each output is an f32 sum over at most L + N
// <= 384 products (M·X over the chunk, C·S over the state), whose rounding is ~ sqrt(384) * 6e-8
// ~ 1.2e-6 for random data; the decays exp(a_i - a_j) come from f32 cumulative sums of L terms
// (relative error of the exponent ~ L * 6e-8 * |a|, with |a| of order 1 where the decay is not
// negligible) and a degree-6 polynomial exp (1.3e-7); the state carries these across chunks, damped
// by the decay. Measured errors are ~1e-6; a wrong index, group, mask or decay gives errors of
// order 1e-2 to 1.
import { describe, expect, it } from 'vitest';

import * as ref from '../reference/kernels.js';
import { randomSsmCase, type SsmCaseOptions } from '../reference/ssm-case.js';
import { maxRelErr, native } from '../helpers.js';

const k = native._kernels;
const f32 = (a: Float64Array) => Float32Array.from(a);
const f64 = (a: Float32Array) => Float64Array.from(a);

type ScanResult = { y: Float32Array; state: Float32Array };
// The debug binding takes an optional thread count (1, or the 2-thread test pool by default).
const scan = k.ssdChunkScan as (
  ...args: [...Parameters<typeof k.ssdChunkScan>, threads?: number]
) => ScanResult;

const paths = (['scalar', 'avx2', 'avx512'] as const).filter((p) => k.setKernelPath(p) === p);
k.setKernelPath('auto');

function withPath<T>(path: string, fn: () => T): T {
  expect(k.setKernelPath(path as 'scalar')).toBe(path);
  try {
    return fn();
  } finally {
    k.setKernelPath('auto');
  }
}

function ssdCase(seed: number, T: number, H: number, P: number, G: number, N: number, o: SsmCaseOptions = {}) {
  const { native: nat, ...rest } = randomSsmCase(seed, T, H, P, G, N, { dtScale: 0.5, ...o });
  const c = { T, ...rest, nat };
  let want: { y: Float64Array; state: Float64Array } | undefined;
  return {
    ...c,
    run: (chunk: number, threads?: number) =>
      scan(f32(c.x), f32(c.dt), f32(c.B), f32(c.C), c.nat, T, f32(c.s0), chunk, threads),
    // The float64 recurrence, computed once and shared by the paths.
    want: () => (want ??= ref.ssmRecurrent(c.x, c.dt, c.B, c.C, c.p, T, c.s0)),
  };
}

const TOL = 5e-5;

describe('chunked SSD scan (dense products) against the float64 recurrence', () => {
  const P = 64;
  const shapes: Array<[number, number, number, number, number]> = [
    // T, G, heads per group, N, chunk
    [1, 1, 1, 16, 16],
    [7, 2, 3, 64, 16],
    [128, 8, 1, 128, 128],
    [129, 1, 16, 16, 64],
    [129, 2, 2, 128, 128],
    [300, 8, 2, 64, 256],
    [300, 2, 5, 128, 64],
    [300, 1, 16, 64, 16],
    [1000, 1, 2, 128, 128],
    [1000, 8, 1, 16, 256],
  ];
  const cases = shapes.map(([T, G, hpg, N, Q], i) => ({ T, G, H: G * hpg, N, Q, c: ssdCase(100 + i, T, G * hpg, P, G, N) }));
  for (const path of paths) {
    for (const { T, G, H, N, Q, c } of cases) {
      it(`${path}: T=${T} H=${H} G=${G} P=${P} N=${N} chunk=${Q}, non-zero incoming state`, () => {
        const got = withPath(path, () => c.run(Q));
        const want = c.want();
        expect(maxRelErr(got.y, want.y)).toBeLessThan(TOL);
        expect(maxRelErr(got.state, want.state)).toBeLessThan(TOL);
      });
    }
  }

  it('a fresh (zero) state and the 9B head shape (P=64, N=128, 16 heads per group)', () => {
    const c = ssdCase(7, 200, 32, 64, 2, 128, { zeroState: true });
    for (const path of paths) {
      const got = withPath(path, () => c.run(128));
      expect(maxRelErr(got.y, c.want().y)).toBeLessThan(TOL);
      expect(maxRelErr(got.state, c.want().state)).toBeLessThan(TOL);
    }
  });

  it('dt_limit clamps dt after softplus, on every path', () => {
    // softplus spans [1e-3, 1]; the clamp cuts both ends. Without the clamp the error is ~1e-1.
    const c = ssdCase(11, 300, 4, 64, 2, 64, { dtLo: 1e-3, dtHi: 1, dtMin: 0.01, dtMax: 0.05 });
    const unclamped = ref.ssmRecurrent(c.x, c.dt, c.B, c.C, { ...c.p, dtMin: 0, dtMax: Infinity }, c.T, c.s0);
    expect(maxRelErr(c.want().y, unclamped.y)).toBeGreaterThan(1e-2);
    for (const path of paths) {
      const got = withPath(path, () => c.run(128));
      expect(maxRelErr(got.y, c.want().y)).toBeLessThan(TOL);
      expect(maxRelErr(got.state, c.want().state)).toBeLessThan(TOL);
    }
  });

  it('strong decay: exp(a_i) underflows within a chunk without overflow or NaN', () => {
    // dt up to ~2 and A down to -16: the cumulative log-decay over a chunk of 256 reaches ~-5000.
    const c = ssdCase(13, 600, 4, 64, 1, 64, { dtLo: 0.05, dtHi: 2 });
    for (const path of paths) {
      const got = withPath(path, () => c.run(256));
      expect(got.y.every(Number.isFinite)).toBe(true);
      expect(maxRelErr(got.y, c.want().y)).toBeLessThan(TOL);
      expect(maxRelErr(got.state, c.want().state)).toBeLessThan(TOL);
    }
  });

  it('1 and 2 threads give identical bits on every path', () => {
    const c = ssdCase(17, 333, 12, 64, 4, 128);
    for (const path of paths) {
      withPath(path, () => {
        for (const Q of [16, 128]) {
          const one = c.run(Q, 1);
          const two = c.run(Q, 2);
          expect(Buffer.from(one.y.buffer).equals(Buffer.from(two.y.buffer))).toBe(true);
          expect(Buffer.from(one.state.buffer).equals(Buffer.from(two.state.buffer))).toBe(true);
        }
      });
    }
  });

  it('chunk sizes 16 / 64 / 128 / 256 agree within the tolerance (chunking sets only the rounding)', () => {
    const c = ssdCase(19, 700, 6, 64, 3, 128);
    for (const path of paths) {
      const runs = withPath(path, () => [16, 64, 128, 256].map((Q) => c.run(Q)));
      for (const r of runs.slice(1)) {
        expect(maxRelErr(r.y, runs[0]!.y)).toBeLessThan(TOL);
        expect(maxRelErr(r.state, runs[0]!.state)).toBeLessThan(TOL);
      }
      for (const r of runs) expect(maxRelErr(r.y, c.want().y)).toBeLessThan(TOL);
    }
  });

  it('two calls continue the state: [0, T1) then [T1, T) equals one call over [0, T)', () => {
    const c = ssdCase(23, 260, 4, 64, 2, 64);
    const H = 4, P2 = 64, G = 2, N = 64, T1 = 97;
    const x = f32(c.x), dt = f32(c.dt), B = f32(c.B), C = f32(c.C);
    for (const path of paths) {
      withPath(path, () => {
        const a = scan(x.subarray(0, T1 * H * P2), dt.subarray(0, T1 * H), B.subarray(0, T1 * G * N),
          C.subarray(0, T1 * G * N), c.nat, T1, f32(c.s0), 64);
        const b = scan(x.subarray(T1 * H * P2), dt.subarray(T1 * H), B.subarray(T1 * G * N),
          C.subarray(T1 * G * N), c.nat, c.T - T1, a.state, 64);
        const y = new Float32Array(c.T * H * P2);
        y.set(a.y);
        y.set(b.y, T1 * H * P2);
        expect(maxRelErr(y, c.want().y)).toBeLessThan(TOL);
        expect(maxRelErr(b.state, c.want().state)).toBeLessThan(TOL);
      });
    }
  });

  it('runs the scalar path and the best path this CPU has', () => {
    expect(paths).toContain('scalar');
    console.log(`SSD scan paths tested: ${paths.join(', ')}`);
  });
});
