// GGUF block quantization: the TypeScript encoder/decoder (lib/gguf/quantize.ts) and the native matmul
// that reads quantized blocks in place (csrc/kernels/matmul_quant.cc).
//
// 1. Layouts, checked bit by bit against blocks worked out by hand from ggml's definitions, and the
//    quantization error of each encoder against its bound.
// 2. Native matmul, for every quantized type and every kernel path this CPU has, against the float64
//    product of x with the weights dequantized in TypeScript (dequantizeRows is exact). Both sides use
//    the same dequantized values, so the only difference is the float32 accumulation of the native
//    kernels: each output is a sum of K <= 4608 products, accumulated in at most K/4 sequential f32
//    steps per partial sum (scalar: 4 partial sums; SIMD: 8 or 16 lanes) and then a fixed tree.
//    Rounding errors of such sums behave like a random walk: about u·sqrt(steps)·|partial sums| with
//    u = 2^-24, i.e. ~1e-6 of max|y| for these shapes (the worst case we measure is below 1e-6). The
//    bound 2e-5 leaves a 10x margin, while a wrong nibble, bit or scale anywhere gives errors of
//    order 1e-3 to 1. One-hot x rows also give back the dequantized weights exactly (x·e_k = w_k), which
//    checks every path's in-register dequantization against dequantizeRows value for value.
// 3. Batch invariance: every row computed alone equals, bit for bit, the same row inside batches of
//    any size and position (per path and type).
// (Native embedding of a quantized table is not reachable through `_kernels`; it is not tested here.)
import { describe, expect, it } from 'vitest';

import {
  QUANT_TYPES,
  dequantizeRows,
  quantBlockElems,
  quantRowBytes,
  quantizeRows,
  type QuantType,
} from '../../lib/gguf/quantize.js';
import { blockMaxErrors, native } from '../helpers.js';
import { makeRng, type Rng } from '../reference/random.js';

const k = native._kernels;

const paths = (['scalar', 'avx2', 'avx512'] as const).filter((p) => k.setKernelPath(p) === p);
k.setKernelPath('auto');

function gaussian(rng: Rng, n: number, scale: number): Float32Array {
  return Float32Array.from(rng.normalArray(n, scale));
}

/** The bytes at `offset` into a fresh buffer (to test unaligned block reads). */
function atOffset(bytes: Uint8Array, offset: number): Uint8Array {
  const out = new Uint8Array(new ArrayBuffer(bytes.length + offset), offset, bytes.length);
  out.set(bytes);
  return out;
}

/** y[t, n] = sum_k x[t, k] w[n, k] in float64. */
function matmulF64(x: Float32Array, w: Float32Array, T: number, K: number, N: number): Float64Array {
  const y = new Float64Array(T * N);
  for (let t = 0; t < T; t++) {
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let i = 0; i < K; i++) s += x[t * K + i]! * w[n * K + i]!;
      y[t * N + n] = s;
    }
  }
  return y;
}

function relErr(y: Float32Array, ref: Float64Array): number {
  let scale = 0;
  let err = 0;
  for (let i = 0; i < ref.length; i++) {
    scale = Math.max(scale, Math.abs(ref[i]!));
    err = Math.max(err, Math.abs(y[i]! - ref[i]!));
  }
  return err / (scale || 1);
}

describe('quantize.ts: layouts', () => {
  it('row sizes', () => {
    expect(quantRowBytes('Q8_0', 4096)).toBe(4352);
    expect(quantRowBytes('Q4_0', 4096)).toBe(2304);
    expect(quantRowBytes('Q4_K', 4096)).toBe(2304);
    expect(quantRowBytes('Q5_K', 4096)).toBe(2816);
    expect(quantRowBytes('Q6_K', 4096)).toBe(3360);
    expect(() => quantRowBytes('Q4_K', 4480)).toThrow(RangeError);
    expect(() => quantizeRows('Q8_0', new Float32Array(40), 1, 40)).toThrow(RangeError);
  });

  it('Q8_0: d = amax/127 as f16, q = round(x/d)', () => {
    // x_j = (j - 16) / 4: amax = 4, d = 4/127 = 0.0314960... -> f16 0x2808 (1032 * 2^-15); x/d = (j-16) * 7.9375.
    const x = Float32Array.from({ length: 32 }, (_, j) => (j - 16) / 4);
    const b = quantizeRows('Q8_0', x, 1, 32);
    expect(b.length).toBe(34);
    expect([b[0], b[1]]).toEqual([0x08, 0x28]);
    const q = new Int8Array(b.buffer, 2, 32);
    expect(q[0]).toBe(-127); // -16 * 7.9375
    expect(q[1]).toBe(-119); // -119.0625
    expect(q[16]).toBe(0);
    expect(q[18]).toBe(16); // 15.875
    expect(q[31]).toBe(119); // 119.0625
    const y = dequantizeRows('Q8_0', b, 1, 32);
    expect(y[0]).toBe(-127 * (1032 / 32768));
    expect(y[18]).toBe(16 * (1032 / 32768));
  });

  it('Q4_0: d = max/-8 as f16, low nibbles are values 0-15, high nibbles 16-31', () => {
    // max = -8 (largest magnitude) -> d = 1 (f16 0x3c00); q = min(15, trunc(x + 8.5)).
    const x = new Float32Array(32);
    for (let j = 0; j < 16; j++) {
      x[j] = j - 8; // q = j
      x[16 + j] = j - 8 + 0.4; // q = trunc(j + 0.9) = j
    }
    const b = quantizeRows('Q4_0', x, 1, 32);
    expect(Array.from(b)).toEqual([0x00, 0x3c, ...Array.from({ length: 16 }, (_, j) => j * 0x11)]);
    // Decode a hand-made block: d = -0.5 (0xb800), qs[3] = 0xa2 -> value 3 = (2-8)·-0.5 = 3, value 19 = (10-8)·-0.5 = -1.
    const h = new Uint8Array(18);
    h[0] = 0x00;
    h[1] = 0xb8;
    h[2 + 3] = 0xa2;
    const y = dequantizeRows('Q4_0', h, 1, 32);
    expect(y[3]).toBe(3);
    expect(y[19]).toBe(-1);
    expect(y[0]).toBe(4); // nibble 0: (0 - 8)·-0.5
  });

  it('Q4_K: 6-bit scales and mins (k4 packing), sub-blocks 2g / 2g+1 in the low / high nibbles of qs[32g..]', () => {
    const b = new Uint8Array(144);
    b.set([0x00, 0x38], 0); // d = 0.5
    b.set([0x00, 0x34], 2); // dmin = 0.25
    // Sub-block 1: sc = 3, m = 7 (bytes 1 and 5, low 6 bits). Sub-block 5: sc = 37 = 0b10_0101, m = 50 = 0b11_0010:
    // low 4 bits in byte 9 (sc low nibble, m high nibble), top 2 bits in bits 6-7 of bytes 1 (sc) and 5 (m).
    const sp = 4;
    b[sp + 1] = 3 | (2 << 6);
    b[sp + 5] = 7 | (3 << 6);
    b[sp + 9] = 5 | (2 << 4);
    const qs = 16;
    for (let l = 0; l < 32; l++) b[qs + l] = 0x90; // group 0: low nibble 0 (sub-block 0), high 9 (sub-block 1)
    for (let l = 0; l < 32; l++) b[qs + 64 + l] = ((15 - (l & 15)) << 4) | 6; // group 2: high = sub-block 5
    const y = dequantizeRows('Q4_K', b, 1, 256);
    expect(y[0]).toBe(0); // sub-block 0: sc = m = 0
    expect(y[32]).toBe(0.5 * 3 * 9 - 0.25 * 7); // sub-block 1 = 11.75
    expect(y[63]).toBe(11.75);
    expect(y[128]).toBe(0); // sub-block 4: sc = (b[12] & 15) | (b[4] >> 6) << 4 = 0
    expect(y[160]).toBe(0.5 * 37 * 15 - 0.25 * 50); // sub-block 5, l = 0: q = 15 -> 265
    expect(y[160 + 5]).toBe(0.5 * 37 * 10 - 0.25 * 50); // q = 10 -> 172.5
    expect(y[192]).toBe(0); // sub-block 6
  });

  it('Q5_K: bit s of qh[l] is the fifth bit of value 32s + l', () => {
    const b = new Uint8Array(176);
    b.set([0x00, 0x38, 0x00, 0x34], 0); // d = 0.5, dmin = 0.25
    const sp = 4;
    b[sp + 1] = 3 | (2 << 6);
    b[sp + 5] = 7 | (3 << 6);
    b[sp + 9] = 5 | (2 << 4); // sub-block 5: sc = 37, m = 50 (as in the Q4_K case)
    const qh = 16;
    const qs = 48;
    b[qs + 64 + 3] = 0x70; // value 160 + 3: low 4 bits 7
    b[qh + 3] = 1 << 5; // fifth bit of value 32·5 + 3
    b[qs + 7] = 0x20; // value 32 + 7 (sub-block 1): low 4 bits 2
    b[qh + 7] = 1 << 1; // fifth bit of value 32·1 + 7
    const y = dequantizeRows('Q5_K', b, 1, 256);
    expect(y[163]).toBe(0.5 * 37 * (7 + 16) - 0.25 * 50);
    expect(y[162]).toBe(-0.25 * 50);
    expect(y[39]).toBe(0.5 * 3 * (2 + 16) - 0.25 * 7);
    expect(y[7]).toBe(0); // sub-block 0: sc = m = 0
  });

  it('Q6_K: ql / qh / int8 scales / f16 d at the end', () => {
    const b = new Uint8Array(210);
    b.set([0x00, 0x38], 208); // d = 0.5
    b[192 + 0] = 2; // scale of values 0-15
    b[192 + 15] = 0xfd; // -3: scale of half 1, S = 3, l >= 16 (values 240-255)
    b[0] = 0x05; // value 0: low nibble 5
    b[128] = 0x01; // value 0: top bits 01 -> q = 5 | 16 = 21 -> 21 - 32 = -11
    b[64 + 32 + 20] = 0xa0; // value 128 + 96 + 20: high nibble of ql[64 + 32 + l] = 10
    b[128 + 32 + 20] = 0x80; // top bits (qh[32 + l] >> 6) = 2 -> q = 42 -> 10
    const y = dequantizeRows('Q6_K', b, 1, 256);
    expect(y[0]).toBe(0.5 * 2 * -11);
    expect(y[1]).toBe(0.5 * 2 * -32); // q = 0
    expect(y[244]).toBe(0.5 * -3 * 10);
    expect(y[245]).toBe(0.5 * -3 * -32);
    expect(y[64] === 0).toBe(true); // scale 4 is 0 (0·(0 − 32) = −0)
  });
});

describe('quantize.ts: quantization error', () => {
  const rng = makeRng(77);
  const rows = 6;
  const cols = 1024;
  const x = gaussian(rng, rows * cols, 0.05);
  // A few outliers, as real weights have.
  for (let i = 0; i < 40; i++) x[Math.floor(rng.uniform() * x.length)] = (rng.uniform() - 0.5) * 2;

  it('Q8_0: |x - v| <= d·(1/2 + 127·2^-11) per block (d = amax/127; f16 rounding of d)', () => {
    const y = dequantizeRows('Q8_0', quantizeRows('Q8_0', x, rows, cols), rows, cols);
    for (const { amax, err } of blockMaxErrors(x, y, 32)) {
      expect(err).toBeLessThanOrEqual((amax / 127) * (0.5 + 127 * 2 ** -11) * (1 + 1e-5));
    }
  });

  it('Q4_0: |x - v| <= |d|·(1 + 8·2^-11) per block (d = amax/8; the code 16 is clamped to 15)', () => {
    const y = dequantizeRows('Q4_0', quantizeRows('Q4_0', x, rows, cols), rows, cols);
    for (const { amax, err } of blockMaxErrors(x, y, 32)) {
      expect(err).toBeLessThanOrEqual((amax / 8) * (1 + 8 * 2 ** -11) * (1 + 1e-5));
    }
  });

  // K-quants: the grids are fitted by least squares (and their scales quantized to 6 or 8 bits), so
  // the bounds are about the grid step, ~ range/(2^bits - 1) per sub-block: the RMS error is about
  // step/sqrt(12) (measured 9.2%, 4.6%, 2.7% of RMS(x) for Q4_K, Q5_K, Q6_K on Gaussian data with
  // outliers), and the largest error stays below one step, 2·max|x|/(2^bits - 1) (measured about half
  // of that: 0.063, 0.031, 0.016 of max|x|).
  const kBounds: Array<[QuantType, number, number]> = [
    ['Q4_K', 0.12, 2 / 15],
    ['Q5_K', 0.06, 2 / 31],
    ['Q6_K', 0.035, 2 / 63],
  ];
  for (const [type, rmsBound, maxBound] of kBounds) {
    it(`${type}: RMS error <= ${rmsBound}·RMS(x); per super-block max error <= ${maxBound.toFixed(4)}·max|x|`, () => {
      const y = dequantizeRows(type, quantizeRows(type, x, rows, cols), rows, cols);
      let se = 0;
      let sx = 0;
      for (let i = 0; i < x.length; i++) {
        se += (x[i]! - y[i]!) ** 2;
        sx += x[i]! ** 2;
      }
      expect(Math.sqrt(se / sx)).toBeLessThan(rmsBound);
      let worst = 0;
      for (const { amax, err } of blockMaxErrors(x, y, 256)) {
        worst = Math.max(worst, err / amax);
        expect(err).toBeLessThanOrEqual(maxBound * amax);
      }
      console.log(`${type}: RMS error / RMS(x) = ${Math.sqrt(se / sx).toFixed(4)}, max error / max|x| = ${worst.toFixed(4)}`);
    });
  }

  it('constant and zero blocks round-trip exactly', () => {
    for (const type of QUANT_TYPES) {
      const n = quantBlockElems(type);
      const z = dequantizeRows(type, quantizeRows(type, new Float32Array(n), 1, n), 1, n);
      expect(z.every((v) => v === 0)).toBe(true); // +0 or -0 (Q4_0's d = 0/-8 is -0, as in ggml)
      const c = new Float32Array(n).fill(-0.75); // exact in every grid (a power-of-two step or the min)
      const y = dequantizeRows(type, quantizeRows(type, c, 1, n), 1, n);
      for (const v of y) expect(v).toBeCloseTo(-0.75, 3);
    }
  });
});

interface Case {
  type: QuantType;
  K: number;
  N: number;
  bytes: Uint8Array; // quantized weights (at an odd offset for some shapes)
  w: Float32Array; // dequantized
}

function makeCase(rng: Rng, type: QuantType, K: number, N: number, offset: number): Case {
  const values = gaussian(rng, N * K, 0.1);
  const q = quantizeRows(type, values, N, K);
  return { type, K, N, bytes: atOffset(q, offset), w: dequantizeRows(type, q, N, K) };
}

describe('native matmul on quantized weights', () => {
  const shapes: Array<[number, number, number]> = [
    [1, 256, 33],
    [3, 512, 70],
    [17, 1024, 130],
    [64, 4608, 40],
  ];
  const small: Array<[number, number, number]> = [
    [5, 96, 19],
    [2, 32, 5],
  ];

  for (const type of QUANT_TYPES) {
    it(`${type}: every path equals the float64 product with the dequantized weights (rel. err < 2e-5)`, () => {
      const rng = makeRng(1000 + type.charCodeAt(1) * 7 + type.length);
      const list = quantBlockElems(type) === 32 ? [...shapes, ...small] : shapes;
      const worst: Record<string, number> = {};
      list.forEach(([T, K, N], s) => {
        const c = makeCase(rng, type, K, N, s % 2 === 1 ? 3 : 0);
        const x = gaussian(rng, T * K, 1);
        const ref = matmulF64(x, c.w, T, K, N);
        for (const path of paths) {
          expect(k.setKernelPath(path)).toBe(path);
          const y = k.matmul(x, T, K, c.bytes, type, N);
          const e = relErr(y, ref);
          worst[path] = Math.max(worst[path] ?? 0, e);
          expect(e, `${path} T=${T} K=${K} N=${N}`).toBeLessThan(2e-5);
        }
      });
      k.setKernelPath('auto');
      console.log(`${type} max |y - ref| / max |ref|: ${JSON.stringify(worst)}`);
    });

    it(`${type}: one-hot rows give back the dequantized weights exactly on every path`, () => {
      const rng = makeRng(2000 + type.charCodeAt(1));
      const K = quantBlockElems(type) === 32 ? 96 : 512;
      const N = 21;
      const c = makeCase(rng, type, K, N, 1);
      const x = new Float32Array(K * K);
      for (let i = 0; i < K; i++) x[i * K + i] = 1;
      for (const path of paths) {
        expect(k.setKernelPath(path)).toBe(path);
        const y = k.matmul(x, K, K, c.bytes, type, N);
        let bad = 0;
        for (let i = 0; i < K; i++) for (let n = 0; n < N; n++) if (y[i * N + n] !== c.w[n * K + i]) bad++;
        expect(bad, path).toBe(0);
      }
      k.setKernelPath('auto');
    });
  }

  it('rejects a K that is not a multiple of the block size and too few bytes', () => {
    expect(() => k.matmul(new Float32Array(48), 1, 48, new Uint8Array(34 * 4), 'Q8_0', 2)).toThrow(RangeError);
    expect(() => k.matmul(new Float32Array(256), 1, 256, new Uint8Array(143), 'Q4_K', 1)).toThrow(RangeError);
  });
});

describe('quantized matmul batch invariance (bitwise)', () => {
  const ROWS = 40;
  const N = 37;
  const Ts = [1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 17, 40];

  for (const type of QUANT_TYPES) {
    for (const K of [1024, 4608]) {
      it(`${type} K=${K}: rows alone = rows in batches, on every path`, () => {
        const rng = makeRng(3000 + K + type.charCodeAt(1));
        const c = makeCase(rng, type, K, N, K === 1024 ? 0 : 5);
        const x = gaussian(rng, ROWS * K, 1);
        for (const path of paths) {
          expect(k.setKernelPath(path)).toBe(path);
          const alone: Uint32Array[] = [];
          for (let r = 0; r < ROWS; r++) {
            const y = k.matmul(x.subarray(r * K, (r + 1) * K), 1, K, c.bytes, type, N);
            alone.push(new Uint32Array(y.buffer, y.byteOffset, N));
          }
          const check = (rowIds: number[]) => {
            const xb = new Float32Array(rowIds.length * K);
            rowIds.forEach((r, i) => xb.set(x.subarray(r * K, (r + 1) * K), i * K));
            const y = k.matmul(xb, rowIds.length, K, c.bytes, type, N);
            const bits = new Uint32Array(y.buffer, y.byteOffset, y.length);
            rowIds.forEach((r, i) => {
              for (let n = 0; n < N; n++) {
                if (bits[i * N + n] !== alone[r]![n]) {
                  throw new Error(`${path} ${type} K=${K}: row ${r} at position ${i} of ${rowIds.length}, column ${n}`);
                }
              }
            });
          };
          for (const T of Ts) check(Array.from({ length: T }, (_, i) => i));
          const start = 1 + Math.floor(rng.uniform() * (ROWS - 12));
          check(Array.from({ length: 11 }, (_, i) => start + i));
          for (let s = 0; s < 3; s++) {
            const T = 1 + Math.floor(rng.uniform() * 20);
            check(Array.from({ length: T }, () => Math.floor(rng.uniform() * ROWS)));
          }
        }
        k.setKernelPath('auto');
      });
    }
  }
});
