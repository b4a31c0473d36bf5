// Every CPU kernel against its float64 twin in test/reference/kernels.ts, on random inputs of several
// shapes. Inputs are rounded to f32 first, so the reference sees exactly what the kernel sees and the
// difference is the kernel's own f32 arithmetic.
//
// Tolerances (max |kernel - ref| / max |ref|): f32 accumulation over K terms has relative error
// ~ sqrt(K) * 6e-8 for random data; K <= 4480 gives ~4e-6. We allow 2e-5 for products and norms, and
// 5e-5 for the SSD scan and attention, which chain exp() and several accumulations. A wrong index,
// group or causal mask gives errors of order 1.
import { describe, expect, it } from 'vitest';

import * as ref from '../reference/kernels.js';
import { makeRng } from '../reference/random.js';
import { randomSsmCase } from '../reference/ssm-case.js';
import { bf16ToNumber, f16ToNumber } from '../reference/safetensors.js';
import { maxRelErr, native } from '../helpers.js';

const k = native._kernels;
const f32 = (a: Float64Array) => Float32Array.from(a);
const f64 = (a: Float32Array) => Float64Array.from(a);

function toBf16(x: number): number {
  const b = new DataView(new ArrayBuffer(4));
  b.setFloat32(0, x, true);
  const bits = b.getUint32(0, true);
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
}

function toF16(x: number): number {
  // Exact for the small normal values used here: via Math.fround at 11 significant bits.
  const sign = x < 0 ? 0x8000 : 0;
  const a = Math.abs(x);
  if (a === 0) return sign;
  let e = Math.floor(Math.log2(a));
  if (e < -14) e = -14; // subnormal range
  const mant = Math.round((a / 2 ** e - (e === -14 && a < 2 ** -14 ? 0 : 1)) * 1024);
  if (mant === 1024) return sign | ((e + 16) << 10);
  return sign | ((a < 2 ** -14 ? 0 : e + 15) << 10) | mant;
}

const paths = (['scalar', 'avx2', 'avx512'] as const).filter((p) => {
  const active = k.setKernelPath(p);
  return active === p;
});
k.setKernelPath('auto');

describe('matmul', () => {
  const shapes: Array<[number, number, number]> = [[1, 64, 96], [1, 448, 257], [3, 100, 33], [17, 512, 130], [64, 96, 40]];
  for (const path of paths) {
    for (const dtype of ['F32', 'BF16', 'F16'] as const) {
      it(`${path} ${dtype} matches float64 on ${shapes.length} shapes`, () => {
        expect(k.setKernelPath(path)).toBe(path);
        try {
          const rng = makeRng(7);
          for (const [T, K, N] of shapes) {
            const x = f64(f32(rng.normalArray(T * K)));
            const w = rng.normalArray(N * K, 1 / Math.sqrt(K));
            let wNative: Float32Array | Uint16Array;
            let wExact: Float64Array;
            if (dtype === 'F32') {
              wNative = f32(w);
              wExact = f64(wNative);
            } else {
              const bits = Uint16Array.from(w, dtype === 'BF16' ? toBf16 : toF16);
              wNative = bits;
              wExact = Float64Array.from(bits, dtype === 'BF16' ? bf16ToNumber : f16ToNumber);
            }
            const y = k.matmul(f32(x), T, K, wNative, dtype, N);
            expect(maxRelErr(y, ref.matmul(x, T, K, wExact, N))).toBeLessThan(2e-5);
          }
        } finally {
          k.setKernelPath('auto');
        }
      });
    }
  }
  it('runs the scalar path and the best path this CPU has', () => {
    expect(paths).toContain('scalar');
    console.log(`matmul paths tested: ${paths.join(', ')}`);
  });
});

describe('norms', () => {
  it('rmsnorm', () => {
    const rng = makeRng(1);
    for (const [T, C] of [[1, 64], [5, 130], [3, 4480]] as const) {
      const x = f64(f32(rng.normalArray(T * C, 3)));
      const w = f64(f32(rng.uniformArray(C, 0.5, 1.5)));
      expect(maxRelErr(k.rmsnorm(f32(x), T, C, f32(w), 1e-5), ref.rmsnorm(x, T, C, w, 1e-5))).toBeLessThan(2e-5);
    }
  });
  it('gated grouped rmsnorm (gate before norm, per-group statistics)', () => {
    const rng = makeRng(2);
    for (const [T, C, G] of [[1, 48, 1], [4, 96, 2], [3, 1280, 8]] as const) {
      const y = f64(f32(rng.normalArray(T * C)));
      const z = f64(f32(rng.normalArray(T * C, 2)));
      const w = f64(f32(rng.uniformArray(C, 0.5, 1.5)));
      const out = k.rmsnormGatedGrouped(f32(y), f32(z), T, C, C / G, f32(w), 1e-5);
      expect(maxRelErr(out, ref.rmsnormGatedGrouped(y, z, T, C, C / G, w, 1e-5))).toBeLessThan(2e-5);
    }
  });
});

describe('conv1d', () => {
  it('causal conv over prompts continues from and updates the state', () => {
    const rng = makeRng(3);
    for (const [T, C, K] of [[1, 8, 4], [2, 16, 4], [7, 24, 4], [33, 12, 3], [5, 10, 1]] as const) {
      const x = f64(f32(rng.normalArray(T * C)));
      const w = f64(f32(rng.normalArray(C * K, 0.5)));
      const b = f64(f32(rng.normalArray(C, 0.1)));
      const s0 = f64(f32(rng.normalArray((K - 1) * C)));
      const got = k.conv1dCausal(f32(x), T, C, f32(w), K, f32(b), f32(s0));
      const want = ref.conv1dCausal(x, T, C, w, K, b, s0);
      expect(maxRelErr(got.y, want.y)).toBeLessThan(2e-5);
      expect(maxRelErr(got.state, want.state)).toBe(0); // the state is a copy of raw inputs
    }
  });
  it('one decode step equals the causal conv with T = 1', () => {
    const rng = makeRng(4);
    const [C, K] = [20, 4];
    const x = f64(f32(rng.normalArray(C)));
    const w = f64(f32(rng.normalArray(C * K, 0.5)));
    const b = f64(f32(rng.normalArray(C, 0.1)));
    const s0 = f64(f32(rng.normalArray((K - 1) * C)));
    const got = k.conv1dStep(f32(x), C, f32(w), K, f32(b), f32(s0));
    const want = ref.conv1dCausal(x, 1, C, w, K, b, s0);
    expect(maxRelErr(got.y, want.y)).toBeLessThan(2e-5);
    expect(maxRelErr(got.state, want.state)).toBe(0);
  });
});

const ssmCase = randomSsmCase;

describe('Mamba-2 SSM', () => {
  const shapes: Array<[number, number, number, number, number, number]> = [
    // T, H, P, G, N, chunk
    [1, 4, 8, 1, 8, 16], [7, 4, 8, 2, 8, 4], [16, 8, 16, 2, 16, 16], [37, 8, 12, 4, 16, 16], [70, 6, 8, 3, 8, 32],
    [40, 4, 80, 2, 128, 16], // the 9B's head dim and state size (N a multiple of the 16 lanes, P not)
  ];
  for (const path of paths) for (const [T, H, P, G, N, Q] of shapes) {
    it(`${path}: chunked SSD scan T=${T} H=${H} P=${P} G=${G} N=${N} chunk=${Q} matches the token recurrence`, () => {
      expect(k.setKernelPath(path)).toBe(path);
      try {
        const c = ssmCase(T * 31 + H, T, H, P, G, N);
        const got = k.ssdChunkScan(f32(c.x), f32(c.dt), f32(c.B), f32(c.C), c.native, T, f32(c.s0), Q);
        const want = ref.ssmRecurrent(c.x, c.dt, c.B, c.C, c.p, T, c.s0);
        expect(maxRelErr(got.y, want.y)).toBeLessThan(5e-5);
        expect(maxRelErr(got.state, want.state)).toBeLessThan(5e-5);
      } finally {
        k.setKernelPath('auto');
      }
    });
  }
  it('dt clamp (time_step_limit) is applied after softplus', () => {
    const c = ssmCase(9, 5, 4, 8, 2, 8);
    const p = { ...c.p, dtMin: 0.01, dtMax: 0.05 };
    const got = k.ssdChunkScan(f32(c.x), f32(c.dt), f32(c.B), f32(c.C), { ...c.native, dtMin: 0.01, dtMax: 0.05 }, 5, f32(c.s0), 4);
    const want = ref.ssmRecurrent(c.x, c.dt, c.B, c.C, p, 5, c.s0);
    expect(maxRelErr(got.y, want.y)).toBeLessThan(5e-5);
  });
  it('single-step state update matches the recurrence', () => {
    for (const [H, P, G, N] of [[4, 8, 1, 8], [8, 16, 2, 16], [12, 10, 3, 32]] as const) {
      const c = ssmCase(H * P, 1, H, P, G, N);
      const got = k.ssmStateUpdate(f32(c.x), f32(c.dt), f32(c.B), f32(c.C), c.native, f32(c.s0));
      const want = ref.ssmRecurrent(c.x, c.dt, c.B, c.C, c.p, 1, c.s0);
      expect(maxRelErr(got.y, want.y)).toBeLessThan(2e-5);
      expect(maxRelErr(got.state, want.state)).toBeLessThan(2e-5);
    }
  });
});

describe('attention', () => {
  for (const [past, T, Hq, Hkv, Dh] of [[0, 1, 2, 1, 8], [0, 9, 4, 2, 16], [5, 3, 6, 2, 8], [40, 1, 8, 8, 32], [3, 20, 5, 1, 24]] as const) {
    it(`causal GQA past=${past} T=${T} Hq=${Hq} Hkv=${Hkv} Dh=${Dh}`, () => {
      const rng = makeRng(past * 100 + T);
      const q = f64(f32(rng.normalArray(T * Hq * Dh)));
      const kk = f64(f32(rng.normalArray((past + T) * Hkv * Dh)));
      const vv = f64(f32(rng.normalArray((past + T) * Hkv * Dh)));
      const got = k.attentionGqa(f32(q), f32(kk), f32(vv), past, T, Hq, Hkv, Dh);
      expect(maxRelErr(got, ref.attentionGqa(q, kk, vv, past, T, Hq, Hkv, Dh))).toBeLessThan(5e-5);
    });
  }
});

describe('paged attention (KV cache blocks)', () => {
  // The cache stores K/V in blocks of positions; the blocks of a sequence need not be in order. With
  // an f16 cache the reference gets the same f16-rounded K/V, so the difference is f32 arithmetic.
  const cases: Array<[number, number, number, number, number, number]> = [
    // past, T, Hq, Hkv, Dh, blockTokens
    [0, 9, 4, 2, 16, 4], [61, 3, 6, 2, 8, 64], [130, 1, 8, 2, 16, 64], [5, 40, 5, 1, 24, 16],
    // decode over a long context: the keys are split into slices across threads and merged
    [300, 1, 4, 2, 16, 8], [300, 1, 4, 1, 16, 8], [517, 2, 2, 1, 128, 16],
  ];
  for (const path of paths) for (const dtype of ['F32', 'F16'] as const) {
    for (const [past, T, Hq, Hkv, Dh, B] of cases) {
      it(`${path} ${dtype} cache, blocks of ${B}, shuffled: past=${past} T=${T} Hq=${Hq} Hkv=${Hkv}`, () => {
        expect(k.setKernelPath(path)).toBe(path);
        try {
        const rng = makeRng(past + 7 * T + B);
        const q = f64(f32(rng.normalArray(T * Hq * Dh)));
        const round = (a: Float64Array) => (dtype === 'F16' ? Float64Array.from(a, (x) => f16ToNumber(toF16(x))) : f64(f32(a)));
        const kk = round(rng.normalArray((past + T) * Hkv * Dh));
        const vv = round(rng.normalArray((past + T) * Hkv * Dh));
        const got = k.attentionGqa(f32(q), f32(kk), f32(vv), past, T, Hq, Hkv, Dh, { blockTokens: B, dtype, shuffle: true });
        expect(maxRelErr(got, ref.attentionGqa(q, kk, vv, past, T, Hq, Hkv, Dh))).toBeLessThan(5e-5);
        } finally {
          k.setKernelPath('auto');
        }
      });
    }
  }
});

describe('elementwise', () => {
  it('relu2 is relu(x)²', () => {
    const x = f64(f32(makeRng(5).normalArray(1000, 2)));
    expect(maxRelErr(k.relu2(f32(x)), ref.relu2(x))).toBeLessThan(1e-7);
  });
});

describe('sampler', () => {
  const logits = Float32Array.from(makeRng(6).normalArray(300, 2));
  const base = { temperature: 0, topK: 0, topP: 1, minP: 0, seed: 0 };
  it('temperature 0 is argmax', () => {
    let best = 0;
    for (let i = 1; i < logits.length; i++) if (logits[i]! > logits[best]!) best = i;
    for (let step = 0; step < 5; step++) expect(k.sample(logits, base, step)).toBe(best);
  });
  it('the same seed and step give the same token; draws never leave the top-k set', () => {
    const s = { ...base, temperature: 1, topK: 5, seed: 42 };
    const top5 = Array.from(logits.keys()).sort((a, b) => logits[b]! - logits[a]!).slice(0, 5);
    const seen = new Set<number>();
    for (let step = 0; step < 200; step++) {
      const t = k.sample(logits, s, step);
      expect(k.sample(logits, s, step)).toBe(t);
      expect(top5).toContain(t);
      seen.add(t);
    }
    expect(seen.size).toBeGreaterThan(1);
  });
});
