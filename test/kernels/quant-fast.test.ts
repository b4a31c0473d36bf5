// MatmulPrecision 'fast' for block-quantized weights (csrc/kernels/matmul_quant_fast.cc): x rows are
// quantized to 8-bit blocks (32 values for Q8_0 / Q4_0 / Q5_0 / Q5_1, 256 for the K-quants; d = amax / 127,
// q = round-half-even(x * (127 / amax)) in f32) and multiplied with integer dot products.
//
// (a) Every type, every integer dot path this CPU has (vnni512, avxvnni, avx2, scalar), against a
//     float64 reference that applies the same activation quantization (re-implemented here in f32
//     arithmetic, so the codes agree exactly) to the exact float64 weight values. Integer sums are
//     exact, so the only error is the f32 scaling and accumulation: at most ~(K/32 + 4) roundings of
//     2^-24 of S = sum |w·q·dx| in the worst case, ~1e-7 S in practice. Tolerance 2e-6 S: a wrong
//     code, scale, nibble or rounding of x gives errors of order 1e-3 S and more.
// (b) Bitwise batch invariance in 'fast': rows alone = batched, 1 thread = 2 threads.
// (c) input 'relu2' (relu(x)² fused into the x handling) for every type, both precisions.
// (d) Whole tiny models (Q8_0, Q4_K GGUF): 'fast' vs 'exact' log-probs, and greedy decoding alone vs
//     batched in 'fast'.
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

import { QUANT_TYPES, dequantizeRows, quantBlockBytes, quantBlockElems, type QuantType } from '../../lib/gguf/quantize.js';
import { loadModel, makeTinyModel } from '../../lib/index.js';
import { logSoftmaxRows, maxAbsDiff, native, tempDir } from '../helpers.js';
import { makeRng, type Rng } from '../reference/random.js';

type Precision = 'exact' | 'fast';
type Input = 'plain' | 'relu2';
const k = native._kernels;

// Integer dot paths available here: name -> [kernel path, allow VNNI].
const DOT: Record<string, [string, boolean]> = {};
for (const p of ['scalar', 'avx2', 'avx512']) {
  if (k.setKernelPath(p) !== p) continue;
  for (const v of [false, true]) DOT[k.quantDotPath(v)] ??= [p, v];
}
k.setKernelPath('auto');
k.quantDotPath(true);

function useDot(name: string): void {
  const [p, v] = DOT[name]!;
  k.setKernelPath(p);
  k.quantDotPath(v);
  expect(k.quantDotPath()).toBe(name);
}
function resetDot(): void {
  k.setKernelPath('auto');
  k.quantDotPath(true);
}

function f16(bits: number): number {
  const e = (bits >>> 10) & 0x1f;
  const m = bits & 0x3ff;
  const v = e === 0 ? m * 2 ** -24 : (1024 + m) * 2 ** (e - 25);
  return bits & 0x8000 ? -v : v;
}

/** Random blocks: random bytes (every code and scale value occurs), f16 scales of order 0.004-0.06. */
function randomBlocks(rng: Rng, type: QuantType, N: number, K: number): Uint8Array {
  const bb = quantBlockBytes(type);
  const nb = (N * K) / quantBlockElems(type);
  const w = new Uint8Array(nb * bb);
  for (let i = 0; i < w.length; i++) w[i] = Math.floor(rng.uniform() * 256);
  const put = (o: number) => {
    const bits = ((8 + Math.floor(rng.uniform() * 4)) << 10) | Math.floor(rng.uniform() * 1024) | (rng.uniform() < 0.5 ? 0x8000 : 0);
    w[o] = bits & 0xff;
    w[o + 1] = bits >> 8;
  };
  for (let b = 0; b < nb; b++) {
    const o = b * bb;
    if (type === 'Q6_K') put(o + 208);
    else put(o);
    if (type === 'Q4_K' || type === 'Q5_K' || type === 'Q5_1') put(o + 2);
  }
  return w;
}

/** The exact weight values (float64: no rounding), [N, K]. */
function exactWeights(type: QuantType, w: Uint8Array, N: number, K: number): Float64Array {
  const out = new Float64Array(N * K);
  const bb = quantBlockBytes(type);
  const be = quantBlockElems(type);
  const h = (o: number) => f16(w[o]! | (w[o + 1]! << 8));
  for (let b = 0; b < (N * K) / be; b++) {
    const o = b * bb;
    const y = b * be;
    if (type === 'Q8_0') {
      const d = h(o);
      for (let l = 0; l < 32; l++) out[y + l] = d * ((w[o + 2 + l]! << 24) >> 24);
    } else if (type === 'Q4_0') {
      const d = h(o);
      for (let l = 0; l < 16; l++) {
        out[y + l] = d * ((w[o + 2 + l]! & 15) - 8);
        out[y + l + 16] = d * ((w[o + 2 + l]! >> 4) - 8);
      }
    } else if (type === 'Q5_0' || type === 'Q5_1') {
      const d = h(o);
      const m = type === 'Q5_1' ? h(o + 2) : 0;
      const p = type === 'Q5_1' ? o + 4 : o + 2;
      const qh = (w[p]! | (w[p + 1]! << 8) | (w[p + 2]! << 16) | (w[p + 3]! << 24)) >>> 0;
      for (let l = 0; l < 16; l++) {
        const q0 = (w[p + 4 + l]! & 15) | (((qh >>> l) & 1) << 4);
        const q1 = (w[p + 4 + l]! >> 4) | (((qh >>> (l + 16)) & 1) << 4);
        out[y + l] = type === 'Q5_1' ? d * q0 + m : d * (q0 - 16);
        out[y + l + 16] = type === 'Q5_1' ? d * q1 + m : d * (q1 - 16);
      }
    } else if (type === 'Q4_K' || type === 'Q5_K') {
      const d = h(o);
      const dmin = h(o + 2);
      const s = (i: number) => w[o + 4 + i]!;
      const qs = type === 'Q5_K' ? o + 48 : o + 16;
      for (let j = 0; j < 8; j++) {
        const sc = j < 4 ? s(j) & 63 : (s(j + 4) & 15) | ((s(j - 4) >> 6) << 4);
        const m = j < 4 ? s(j + 4) & 63 : (s(j + 4) >> 4) | ((s(j) >> 6) << 4);
        for (let l = 0; l < 32; l++) {
          let q = j & 1 ? w[qs + 32 * (j >> 1) + l]! >> 4 : w[qs + 32 * (j >> 1) + l]! & 15;
          if (type === 'Q5_K') q |= ((w[o + 16 + l]! >> j) & 1) << 4;
          out[y + 32 * j + l] = d * sc * q - dmin * m;
        }
      }
    } else {
      const d = h(o + 208);
      for (let n = 0; n < 2; n++)
        for (let S = 0; S < 4; S++)
          for (let l = 0; l < 32; l++) {
            const ql = w[o + 64 * n + 32 * (S & 1) + l]!;
            const q = (S < 2 ? ql & 15 : ql >> 4) | (((w[o + 128 + 32 * n + l]! >> (2 * S)) & 3) << 4);
            const e = 128 * n + 32 * S + l;
            out[y + e] = d * ((w[o + 192 + (e >> 4)]! << 24) >> 24) * (q - 32);
          }
    }
  }
  return out;
}

function roundHalfEven(r: number): number {
  const f = Math.floor(r);
  const diff = r - f;
  if (diff > 0.5) return f + 1;
  if (diff < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/** The activation quantization of the kernels, in the same f32 operations: x' = q * d per block. */
function quantizeActivations(x: Float32Array, T: number, K: number, be: number, relu2: boolean): Float64Array {
  const fr = Math.fround;
  const out = new Float64Array(T * K);
  const v = new Float32Array(be);
  for (let t = 0; t < T; t++)
    for (let b = 0; b < K / be; b++) {
      let amax = 0;
      for (let i = 0; i < be; i++) {
        let a = x[t * K + b * be + i]!;
        if (relu2) a = fr(Math.max(a, 0) * Math.max(a, 0));
        v[i] = a;
        amax = Math.max(amax, Math.abs(a));
      }
      const d = fr(amax / 127);
      const id = amax > 0 ? fr(127 / amax) : 0;
      for (let i = 0; i < be; i++) {
        const q = Math.min(127, Math.max(-127, roundHalfEven(fr(v[i]! * id))));
        out[t * K + b * be + i] = q * d;
      }
    }
  return out;
}

/** y = xa · w^T in float64, and S = sum |xa_k w_k| per output (the scale of the rounding error). */
function reference(xa: Float64Array, w: Float64Array, T: number, K: number, N: number): { y: Float64Array; s: Float64Array } {
  const y = new Float64Array(T * N);
  const s = new Float64Array(T * N);
  for (let t = 0; t < T; t++)
    for (let n = 0; n < N; n++) {
      let a = 0;
      let b = 0;
      for (let i = 0; i < K; i++) {
        const p = xa[t * K + i]! * w[n * K + i]!;
        a += p;
        b += Math.abs(p);
      }
      y[t * N + n] = a;
      s[t * N + n] = b;
    }
  return { y, s };
}

function gaussian(rng: Rng, n: number): Float32Array {
  return Float32Array.from(rng.normalArray(n, 1));
}

function bitwiseEqual(a: Float32Array, b: Float32Array): boolean {
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

// Shapes (T, K, N); K-quants take 4608 for 4480 (a multiple of 256); the 32-block types also K = 800
// (an odd number of blocks: the zmm kernels' half-vector tail).
const SHAPES: Array<[number, number, number]> = [
  [1, 256, 17], [3, 768, 768], [8, 4480, 17], [64, 256, 768], [300, 768, 17], [1, 4480, 768],
  [300, 4480, 1], [8, 768, 1], [64, 4480, 17], [3, 256, 1], [300, 256, 768], [5, 800, 17],
];
function shapesFor(type: QuantType): Array<[number, number, number]> {
  const be = quantBlockElems(type);
  return SHAPES.filter(([, K]) => K % 32 === 0 && (be === 32 || K !== 800)).map(([T, K, N]) => [T, be === 256 && K === 4480 ? 4608 : K, N]);
}

const TOL = 2e-6;

interface Case { T: number; K: number; N: number; x: Float32Array; w: Uint8Array; ref: Float64Array; s: Float64Array }
const cases = new Map<QuantType, Case[]>();
function casesFor(type: QuantType, relu2 = false): Case[] {
  const key = `${type}${relu2 ? '+relu2' : ''}` as QuantType;
  if (!cases.has(key)) {
    const rng = makeRng(type.charCodeAt(1) * 31 + type.charCodeAt(3) + (relu2 ? 7 : 0));
    const list: Case[] = [];
    for (const [T, K, N] of relu2 ? shapesFor(type).slice(0, 6) : shapesFor(type)) {
      const x = gaussian(rng, T * K);
      const w = randomBlocks(rng, type, N, K);
      const { y, s } = reference(quantizeActivations(x, T, K, quantBlockElems(type), relu2), exactWeights(type, w, N, K), T, K, N);
      list.push({ T, K, N, x, w, ref: y, s });
    }
    cases.set(key, list);
  }
  return cases.get(key)!;
}

function worstError(y: Float32Array, c: Case): number {
  let worst = 0;
  for (let i = 0; i < y.length; i++) worst = Math.max(worst, Math.abs(y[i]! - c.ref[i]!) / Math.max(c.s[i]!, 1e-30));
  return worst;
}

describe("matmul 'fast' (8-bit activations) vs the float64 reference with the same x quantization", () => {
  afterAll(resetDot);
  for (const dot of ['vnni512', 'avxvnni', 'avx2', 'scalar']) {
    for (const type of QUANT_TYPES) {
      it.skipIf(!(dot in DOT))(`${dot} ${type}: |y - ref| <= ${TOL} sum|w x|`, () => {
        useDot(dot);
        let worst = 0;
        for (const c of casesFor(type)) {
          const y = k.matmul(c.x, c.T, c.K, c.w, type, c.N, { precision: 'fast' });
          const e = worstError(y, c);
          if (!(e <= TOL)) expect.fail(`${dot} ${type} T=${c.T} K=${c.K} N=${c.N}: error ${e}`);
          worst = Math.max(worst, e);
        }
        console.log(`${dot} ${type}: max |y - ref| / sum|w x| = ${worst.toExponential(2)}`);
      });
    }
  }

  it("is not the exact product: 'fast' differs from 'exact' by the activation rounding", () => {
    const c = casesFor('Q8_0')[1]!;
    const fast = k.matmul(c.x, c.T, c.K, c.w, 'Q8_0', c.N, { precision: 'fast' });
    const exact = k.matmul(c.x, c.T, c.K, c.w, 'Q8_0', c.N, { precision: 'exact' });
    expect(bitwiseEqual(fast, exact)).toBe(false);
    expect(maxAbsDiff(fast, exact)).toBeLessThan(0.05 * Math.max(...c.s));
  });
});

describe("matmul 'fast' batch invariance (bitwise)", () => {
  afterAll(resetDot);
  for (const dot of ['vnni512', 'avxvnni', 'avx2', 'scalar']) {
    it.skipIf(!(dot in DOT))(`${dot}: rows alone = batched = 1 thread, every type`, () => {
      useDot(dot);
      const rng = makeRng(99);
      for (const type of QUANT_TYPES) {
        const K = quantBlockElems(type) === 32 ? 800 : 768;
        const N = 37;
        const T = 45;
        const x = gaussian(rng, T * K);
        const w = randomBlocks(rng, type, N, K);
        for (const input of ['plain', 'relu2'] as const) {
          const all = k.matmul(x, T, K, w, type, N, { precision: 'fast', input });
          const one = k.matmul(x, T, K, w, type, N, { precision: 'fast', input, threads: 1 });
          expect(bitwiseEqual(all, one), `${type} ${input}: 1 vs 2 threads`).toBe(true);
          const parts = new Float32Array(T * N);
          // On vnni512, Q8_0 packs W from T = 32 (Q5_0 / Q5_1 from 12): the whole batch (45) does, the
          // sub-batches (up to 31) and the rows alone do not (Q5: some do), and must give the same bits.
          for (const [t0, n] of [[0, 1], [1, 3], [4, 8], [12, 2], [14, 31]] as const) {
            parts.set(k.matmul(x.subarray(t0 * K, (t0 + n) * K), n, K, w, type, N, { precision: 'fast', input }), t0 * N);
          }
          expect(bitwiseEqual(all, parts), `${type} ${input}: sub-batches`).toBe(true);
          for (let t = 0; t < T; t += 11) {
            const alone = k.matmul(x.subarray(t * K, (t + 1) * K), 1, K, w, type, N, { precision: 'fast', input });
            expect(bitwiseEqual(alone, all.subarray(t * N, (t + 1) * N)), `${type} ${input}: row ${t}`).toBe(true);
          }
        }
      }
    });
  }
});

describe("input 'relu2' (relu(x)² fused)", () => {
  afterAll(resetDot);
  for (const type of QUANT_TYPES) {
    it(`${type} 'fast', every dot path: the reference of relu(x)²`, () => {
      for (const dot of Object.keys(DOT)) {
        useDot(dot);
        for (const c of casesFor(type, true)) {
          const e = worstError(k.matmul(c.x, c.T, c.K, c.w, type, c.N, { precision: 'fast', input: 'relu2' }), c);
          if (!(e <= TOL)) expect.fail(`${dot} ${type} T=${c.T} K=${c.K} N=${c.N}: error ${e}`);
        }
      }
    });

    it(`${type} 'exact': bitwise the plain product of relu(x)² (f32), and close to float64`, () => {
      for (const p of ['scalar', 'avx2', 'avx512']) {
        if (k.setKernelPath(p) !== p) continue;
        for (const c of casesFor(type, true).slice(0, 4)) {
          const r = Float32Array.from(c.x, (v) => Math.fround(Math.max(v, 0) * Math.max(v, 0)));
          const fused = k.matmul(c.x, c.T, c.K, c.w, type, c.N, { precision: 'exact', input: 'relu2' });
          expect(bitwiseEqual(fused, k.matmul(r, c.T, c.K, c.w, type, c.N, { precision: 'exact' })), `${p} T=${c.T}`).toBe(true);
          const wf = dequantizeRows(type, c.w, c.N, c.K);
          let err = 0;
          let scale = 0;
          for (let t = 0; t < c.T; t++)
            for (let n = 0; n < c.N; n++) {
              let s = 0;
              for (let i = 0; i < c.K; i++) s += r[t * c.K + i]! * wf[n * c.K + i]!;
              err = Math.max(err, Math.abs(fused[t * c.N + n]! - s));
              scale = Math.max(scale, Math.abs(s));
            }
          expect(err / scale, `${p} T=${c.T}`).toBeLessThan(2e-5);
        }
      }
    });
  }
});

describe("whole model, precision 'fast'", () => {
  const tmp = tempDir('quant-fast');
  afterAll(() => tmp.cleanup());
  const dims = { hiddenSize: 256, mambaNumHeads: 8, mambaHeadDim: 32, headDim: 64, intermediateSize: 512, chunkSize: 128, dtype: 'f32' as const, seed: 5 };
  const tokens = Array.from({ length: 60 }, (_, i) => (i * 37 + 5) % 300);
  // max |Δ log-prob| fast vs exact over 60 positions x 512 tokens, measured on this seeded model:
  // Q8_0 0.039, Q4_K 0.060 (x in 256-value blocks: a coarser step than Q8_0's 32). Rounding x to 8 bits
  // per block costs about as much as rounding the weights to Q8_0 (0.047 vs f32 in test/loading/gguf.test.ts)
  // and far less than Q4_K's weights (0.56). Bounds: 2x the measurement.
  const TOL_LOGPROB: Record<'Q8_0' | 'Q4_K', number> = { Q8_0: 0.08, Q4_K: 0.12 };

  for (const type of ['Q8_0', 'Q4_K'] as const) {
    it(`${type}: 'fast' log-probs close to 'exact'; greedy tokens alone = batched`, async () => {
      const r = await makeTinyModel(path.join(tmp.dir, type), { ...dims, format: 'gguf', ggufType: type });
      const lp: Record<Precision, Float64Array> = {} as never;
      for (const precision of ['exact', 'fast'] as const) {
        const m = await loadModel(r.gguf!, { threads: 2, kvDtype: 'f32', precision });
        try {
          const logits = await m.evaluate(tokens, { logits: 'all' });
          lp[precision] = logSoftmaxRows(logits, m.info.config.vocabSize);
          if (precision === 'fast') {
            const reqs = [[1, 50, 60, 70], [1, 99, 100, 101, 102, 103], [1, 7], [1, 200, 201, 202, 203, 204, 205, 206, 207, 208]];
            const alone = [];
            for (const prompt of reqs) alone.push((await m.generate({ prompt, maxTokens: 12, temperature: 0 })).tokens);
            const together = await Promise.all(reqs.map((prompt) => m.generate({ prompt, maxTokens: 12, temperature: 0 })));
            for (let i = 0; i < reqs.length; i++) expect(together[i]!.tokens, `request ${i}`).toEqual(alone[i]);
          }
        } finally {
          await m.close();
        }
      }
      const d = maxAbsDiff(lp.fast, lp.exact);
      console.log(`${type}: max |Δ log-prob| fast vs exact = ${d.toExponential(2)} (tolerance ${TOL_LOGPROB[type]})`);
      expect(d).toBeGreaterThan(0); // 'fast' really quantizes x
      expect(d).toBeLessThan(TOL_LOGPROB[type]);
    });
  }
});
