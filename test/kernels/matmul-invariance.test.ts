// Batch invariance of the CPU matmul: continuous batching packs a sequence's rows together with other
// sequences' rows, so the batch size T and a row's position in the batch change from step to step.
// A request must produce exactly the same tokens alone or batched, hence y[t, n] must be BITWISE the
// same whatever T is and wherever row t sits (on each kernel path; paths may differ from each other).
//
// For every available path and weight dtype, and K / N shapes that exercise the K slices, K tails,
// N tails, T tails and the decode / prefill switch: every row computed alone (T = 1) is the reference;
// the leading T rows (T = 1..13, 64, 130), a window of T rows at a random position and a few random
// sub-batches are computed as batches and compared bit for bit. The weights start at a misaligned
// address for half of the shapes (the SIMD paths realign their loads from it).
import { describe, expect, it } from 'vitest';

import { makeRng, type Rng } from '../reference/random.js';
import { native } from '../helpers.js';

const k = native._kernels;

type DType = 'F32' | 'BF16' | 'F16';

const paths = (['scalar', 'avx2', 'avx512'] as const).filter((p) => k.setKernelPath(p) === p);
k.setKernelPath('auto');

const Ks = [64, 100, 1000, 1024, 1500, 4480];
const Ns = [33, 257];
const Ts = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 64, 130];
const ROWS = 130;

/** N*K weights of `dtype` with values of order 1, starting `offsetBytes` into their ArrayBuffer. */
function makeWeights(rng: Rng, dtype: DType, count: number, offsetBytes: number): Float32Array | Uint16Array {
  if (dtype === 'F32') {
    const w = new Float32Array(new ArrayBuffer(offsetBytes + 4 * count), offsetBytes, count);
    for (let i = 0; i < count; i++) w[i] = rng.uniform() * 2 - 1;
    return w;
  }
  const w = new Uint16Array(new ArrayBuffer(offsetBytes + 2 * count), offsetBytes, count);
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  for (let i = 0; i < count; i++) {
    if (dtype === 'BF16') {
      f[0] = rng.uniform() * 2 - 1;
      w[i] = u[0]! >>> 16; // truncation is fine: any bf16 value will do
    } else {
      const sign = rng.uniform() < 0.5 ? 0x8000 : 0;
      const exp = 8 + Math.floor(rng.uniform() * 8); // 2^-7 .. 2^0
      const mant = Math.floor(rng.uniform() * 1024);
      w[i] = sign | (exp << 10) | mant;
    }
  }
  return w;
}

/** Rows [r0, r0 + T) of y (row length N) against the rows computed alone; returns the first mismatch. */
function firstMismatch(y: Float32Array, alone: Uint32Array[], r0: number, T: number, N: number): string | null {
  const bits = new Uint32Array(y.buffer, y.byteOffset, y.length);
  if (bits.length !== T * N) return `got ${bits.length} values, want ${T * N}`;
  for (let t = 0; t < T; t++) {
    const ref = alone[r0 + t]!;
    for (let n = 0; n < N; n++) {
      if (bits[t * N + n] !== ref[n]) {
        return `row ${r0 + t} (position ${t} of ${T}), column ${n}: ${y[t * N + n]} batched vs ${
          new Float32Array(ref.buffer, ref.byteOffset, ref.length)[n]
        } alone`;
      }
    }
  }
  return null;
}

describe('matmul batch invariance (bitwise)', () => {
  for (const path of paths) {
    for (const dtype of ['F32', 'BF16', 'F16'] as const) {
      it(`${path} ${dtype}: batched rows equal the rows computed alone`, () => {
        expect(k.setKernelPath(path)).toBe(path);
        try {
          const rng = makeRng(1234 + paths.indexOf(path) * 10 + dtype.length);
          let shape = 0;
          let compared = 0;
          for (const K of Ks) {
            for (const N of Ns) {
              const offset = shape++ % 2 === 0 ? 0 : dtype === 'F32' ? 12 : 6;
              const w = makeWeights(rng, dtype, N * K, offset);
              const x = new Float32Array(ROWS * K);
              for (let i = 0; i < x.length; i++) x[i] = rng.uniform() * 2 - 1;
              const rows = (r0: number, T: number) => x.subarray(r0 * K, (r0 + T) * K);
              const alone: Uint32Array[] = [];
              for (let r = 0; r < ROWS; r++) {
                const y = k.matmul(rows(r, 1), 1, K, w, dtype, N);
                alone.push(new Uint32Array(y.buffer, y.byteOffset, y.length));
              }
              const check = (r0: number, T: number) => {
                const y = k.matmul(rows(r0, T), T, K, w, dtype, N);
                const bad = firstMismatch(y, alone, r0, T, N);
                if (bad !== null) expect.fail(`${path} ${dtype} K=${K} N=${N} w+${offset}B, batch rows [${r0}, ${r0 + T}): ${bad}`);
                compared += T;
              };
              for (const T of Ts) {
                check(0, T); // the leading T rows
                if (T < ROWS) check(1 + Math.floor(rng.uniform() * (ROWS - T)), T); // elsewhere
              }
              for (let i = 0; i < 4; i++) {
                // random sub-batches, e.g. rows [3, 8) as a batch of 5
                const T = 2 + Math.floor(rng.uniform() * 20);
                check(Math.floor(rng.uniform() * (ROWS - T + 1)), T);
              }
            }
          }
          expect(compared).toBeGreaterThan(Ks.length * Ns.length * 440);
        } finally {
          k.setKernelPath('auto');
        }
      });
    }
  }

  it('tests the scalar path and the best path this CPU has', () => {
    expect(paths).toContain('scalar');
    console.log(`matmul invariance paths tested: ${paths.join(', ')}`);
  });
});
