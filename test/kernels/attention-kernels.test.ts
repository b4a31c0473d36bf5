// Paged attention (kv_store + attention_gqa) against the float64 reference in test/reference/kernels.ts,
// on every SIMD path the CPU has, for the shapes that matter: decode (T = 1) and prefill (T > 1), pasts
// on and off the 64-token block boundary, GQA ratios 1, 3 and 5, head dims 64 and 128 (plus odd ones),
// f32 and f16 caches, block sizes that are and are not multiples of the vector width.
//
// Tolerances. With the reference given the same f16-rounded K/V as the cache, the difference is the
// kernel's f32 arithmetic: scores are f32 dot products over Dh <= 128 terms (relative error ~ sqrt(Dh) *
// 6e-8 ~ 7e-7 of |q||k|, i.e. ~1e-5 absolute on scores of size ~sqrt(Dh)), exp() is a polynomial good
// to 2e-7, and the output sums p·V over up to ~1,100 keys in f32. That gives errors of a few 1e-6 of
// max|out| (the largest seen: 1.8e-6, a peaked softmax with 4x larger scores); we allow 2e-5. Against
// the unrounded K/V an f16 cache adds its storage error:
// each value is off by <= 2^-11 relative (4.9e-4), which averages down in the outputs; we allow 3e-3.
// A wrong index, block, causal mask or softmax rescale gives errors of order 0.1 to 1.
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { NativeDebugEngine } from '../../lib/addon-types.js';
import { makeTinyModel } from '../../lib/index.js';
import * as ref from '../reference/kernels.js';
import { makeRng } from '../reference/random.js';
import { maxRelErr, native, tempDir } from '../helpers.js';

const k = native._kernels;
const f32 = (a: Float64Array) => Float32Array.from(a);
const f64 = (a: Float32Array) => Float64Array.from(a);

/** x rounded to the nearest f16 (ties to even), for the normal and subnormal range the tests use. */
function f16Round(x: number): number {
  if (x === 0) return x;
  const e = Math.max(Math.floor(Math.log2(Math.abs(x))), -14);
  const quantum = 2 ** (e - 10);
  const r = x / quantum;
  const f = Math.floor(r);
  const frac = r - f;
  const n = frac > 0.5 || (frac === 0.5 && f % 2 !== 0) ? f + 1 : f;
  return n * quantum;
}

const paths = (['scalar', 'avx2', 'avx512'] as const).filter((p) => k.setKernelPath(p) === p);
k.setKernelPath('auto');

function withPath<R>(path: string, fn: () => R): R {
  expect(k.setKernelPath(path)).toBe(path);
  try {
    return fn();
  } finally {
    k.setKernelPath('auto');
  }
}

type Case = { past: number; T: number; Hq: number; Hkv: number; Dh: number; B?: number; qScale?: number };

function inputs(c: Case, dtype: 'F32' | 'F16', seed: number) {
  const rng = makeRng(seed);
  const q = f64(f32(rng.normalArray(c.T * c.Hq * c.Dh).map((x) => x * (c.qScale ?? 1))));
  const raw = (n: number) => f64(f32(rng.normalArray(n)));
  const kRaw = raw((c.past + c.T) * c.Hkv * c.Dh);
  const vRaw = raw((c.past + c.T) * c.Hkv * c.Dh);
  const round = (a: Float64Array) => (dtype === 'F16' ? a.map(f16Round) : a);
  return { q, kRaw, vRaw, kk: round(kRaw), vv: round(vRaw) };
}

function run(c: Case, dtype: 'F32' | 'F16', x: ReturnType<typeof inputs>, threads = 2) {
  return k.attentionGqa(f32(x.q), f32(x.kk), f32(x.vv), c.past, c.T, c.Hq, c.Hkv, c.Dh, {
    blockTokens: c.B ?? 64, dtype, shuffle: true, threads,
  });
}

const cases: Case[] = [
  // decode over pasts around the block boundary, GQA 1, 3, 5, head dims 64 and 128
  { past: 0, T: 1, Hq: 3, Hkv: 1, Dh: 128 },
  { past: 1, T: 1, Hq: 5, Hkv: 1, Dh: 64 },
  { past: 63, T: 1, Hq: 2, Hkv: 2, Dh: 128 },
  { past: 64, T: 1, Hq: 6, Hkv: 2, Dh: 128 },
  { past: 65, T: 1, Hq: 10, Hkv: 2, Dh: 64 },
  { past: 1000, T: 1, Hq: 6, Hkv: 2, Dh: 128 },
  { past: 1100, T: 1, Hq: 5, Hkv: 1, Dh: 128, qScale: 4 },
  { past: 1029, T: 1, Hq: 4, Hkv: 4, Dh: 64, qScale: 4 },
  // prefill: several queries per item, on and off block boundaries, with and without a past
  { past: 0, T: 70, Hq: 3, Hkv: 1, Dh: 64 },
  { past: 63, T: 5, Hq: 5, Hkv: 1, Dh: 128 },
  { past: 64, T: 33, Hq: 6, Hkv: 2, Dh: 128, qScale: 4 },
  { past: 1000, T: 20, Hq: 2, Hkv: 2, Dh: 64 },
  // odd shapes: head dims not a multiple of the vector width, blocks smaller or not a multiple of 16
  { past: 61, T: 3, Hq: 6, Hkv: 2, Dh: 8, B: 64 },
  { past: 130, T: 1, Hq: 8, Hkv: 2, Dh: 24, B: 4 },
  { past: 517, T: 2, Hq: 15, Hkv: 1, Dh: 72, B: 40 },
  { past: 300, T: 18, Hq: 4, Hkv: 1, Dh: 136, B: 100 },
];

const label = (c: Case) =>
  `past=${c.past} T=${c.T} Hq=${c.Hq} Hkv=${c.Hkv} Dh=${c.Dh} B=${c.B ?? 64}${c.qScale ? ` qScale=${c.qScale}` : ''}`;

describe('paged attention vs the float64 reference', () => {
  for (const path of paths) for (const dtype of ['F32', 'F16'] as const) {
    cases.forEach((c, i) => {
      it(`${path} ${dtype} ${label(c)}`, () => {
        const x = inputs(c, dtype, 1000 + i);
        const got = withPath(path, () => run(c, dtype, x));
        const err = maxRelErr(got, ref.attentionGqa(x.q, x.kk, x.vv, c.past, c.T, c.Hq, c.Hkv, c.Dh));
        expect(err).toBeLessThan(2e-5);
      });
    });
  }
});

describe('f16 cache storage error', () => {
  for (const path of paths) {
    it(`${path}: within f16 rounding of the unrounded K/V`, () => {
      const c: Case = { past: 1000, T: 3, Hq: 5, Hkv: 1, Dh: 128 };
      const x = inputs(c, 'F16', 7);
      const got = withPath(path, () => run(c, 'F16', x));
      const err = maxRelErr(got, ref.attentionGqa(x.q, x.kRaw, x.vRaw, c.past, c.T, c.Hq, c.Hkv, c.Dh));
      expect(err).toBeLessThan(3e-3);
      expect(err).toBeGreaterThan(0); // the cache really is f16
    });
  }
});

describe('split-KV decode', () => {
  // Long contexts are cut into key slices merged in a fixed order that does not depend on the thread
  // count: one and two threads give bit-identical outputs.
  for (const path of paths) for (const dtype of ['F32', 'F16'] as const) {
    for (const c of [
      { past: 3000, T: 1, Hq: 6, Hkv: 2, Dh: 128 },
      { past: 2500, T: 4, Hq: 5, Hkv: 1, Dh: 64 },
      { past: 200, T: 40, Hq: 3, Hkv: 1, Dh: 128 },
    ] as Case[]) {
      it(`${path} ${dtype} ${label(c)}: 1 thread == 2 threads, and correct`, () => {
        const x = inputs(c, dtype, c.past + c.T);
        const [one, two] = withPath(path, () => [run(c, dtype, x, 1), run(c, dtype, x, 2)]);
        expect(Array.from(two)).toEqual(Array.from(one));
        expect(maxRelErr(two, ref.attentionGqa(x.q, x.kk, x.vv, c.past, c.T, c.Hq, c.Hkv, c.Dh))).toBeLessThan(2e-5);
      });
    }
  }
});

describe('snapshot images hold token-major K/V rows whatever the pool layout', () => {
  // The CPU pool stores K channel-major; an exported image must still hold token-major rows, so a
  // longer snapshot's image starts (per layer, K then V) with the rows of a shorter one of the same
  // prefix. A raw copy of channel-major blocks would differ as soon as a block is partly filled.
  const tmp = tempDir('attn-snap');
  const dir = path.join(tmp.dir, 'model');
  let engine: NativeDebugEngine;
  beforeAll(async () => {
    await makeTinyModel(dir, { seed: 5, pattern: 'M*-*', hiddenSize: 64, vocabSize: 512, maxPositionEmbeddings: 1024 });
    engine = await native.loadEngine(dir, { threads: 2, contextLength: 512, maxSequences: 2, maxBatchTokens: 64, kvDtype: 'f16', cacheBytes: 1 << 22 });
  });
  afterAll(async () => {
    await engine.close();
    tmp.cleanup();
  });

  it('rows of a 65- and a 130-position snapshot agree on their common 65 positions', async () => {
    const tokens = Int32Array.from({ length: 130 }, (_, i) => (i * 37 + 11) % 512);
    const s = engine.createSequence();
    await engine.evaluate(s, tokens.subarray(0, 65), false);
    const short = await engine.exportSnapshot(engine.snapshot(s));
    await engine.evaluate(s, tokens.subarray(65), false);
    const long = await engine.exportSnapshot(engine.snapshot(s));
    engine.freeSequence(s);
    // Both end with n_attn_layers x {K, V} x n rows of kvDim f16 values.
    const kvSection = (img: Uint8Array, n: number) => img.subarray(img.length - 2 * 2 * n * kvDim * 2);
    const kvDim = (long.length - short.length) / (2 * 2 * 65 * 2); // 2 layers, K and V, 65 rows, f16
    expect(Number.isInteger(kvDim)).toBe(true);
    const a = kvSection(short, 65), b = kvSection(long, 130);
    const rowBytes = kvDim * 2;
    for (let part = 0; part < 4; part++) {
      const rowsA = a.subarray(part * 65 * rowBytes, (part + 1) * 65 * rowBytes);
      const rowsB = b.subarray(part * 130 * rowBytes, part * 130 * rowBytes + 65 * rowBytes);
      expect(Buffer.from(rowsA).equals(Buffer.from(rowsB))).toBe(true);
    }
  });
});
