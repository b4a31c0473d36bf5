// GGUF / ggml block quantization of f32 rows, and the exact inverse.
//
// Layouts (little-endian; one row is cols / blockElems blocks, back to back):
//   Q8_0  34 bytes / 32 values: f16 d, int8 qs[32].                    v[j] = qs[j]·d
//   Q4_0  18 bytes / 32 values: f16 d, u8 qs[16].                      v[j] = ((qs[j] & 15) − 8)·d,
//                                                                      v[j+16] = ((qs[j] >> 4) − 8)·d
//   Q5_0  22 bytes / 32 values: f16 d, u32 qh, u8 qs[16]. The 5-bit code of value j is (qs[j] & 15) |
//        (bit j of qh) << 4, that of value j+16 is (qs[j] >> 4) | (bit j+16 of qh) << 4.
//                                                                      v = (q − 16)·d
//   Q5_1  24 bytes / 32 values: f16 d, f16 m, then qh and qs as Q5_0.   v = q·d + m
//   Q4_K 144 bytes / 256 values: f16 d, f16 dmin, u8 scales[12], u8 qs[128]. Sub-block s (0..7) of 32
//        values has a 6-bit scale sc_s and min m_s: for s < 4, sc_s = scales[s] & 63 and
//        m_s = scales[s+4] & 63; for s >= 4, sc_s = (scales[s+4] & 15) | (scales[s−4] >> 6) << 4 and
//        m_s = (scales[s+4] >> 4) | (scales[s] >> 6) << 4. Sub-blocks 2g and 2g+1 share qs[32g..32g+31]:
//        the low nibbles are values 64g + l, the high nibbles values 64g + 32 + l.
//        v = d·sc_s·q − dmin·m_s
//   Q5_K 176 bytes / 256 values: f16 d, f16 dmin, u8 scales[12], u8 qh[32], u8 qs[128]: as Q4_K, with
//        bit s of qh[l] the fifth bit (16) of the value at index 32s + l.
//   Q6_K 210 bytes / 256 values: u8 ql[128], u8 qh[64], int8 scales[16], f16 d. In half h (values
//        128h..128h+127), for l < 32 and s < 4, value 128h + 32s + l has the 6-bit code
//        q = ((ql[64h + 32(s & 1) + l] >> 4·(s >> 1)) & 15) | ((qh[32h + l] >> 2s) & 3) << 4 and is
//        v = d·scales[8h + 2s + l/16]·(q − 32).
//
// Encoders:
//   Q8_0 and Q4_0 follow ggml's quantize_row_q8_0_ref / quantize_row_q4_0_ref step by step in float32
//   arithmetic (Math.fround after every operation), so they give the same bytes: Q8_0 d = amax/127,
//   q = round-half-away(x/d); Q4_0 d = −(the signed value of largest magnitude)/8, q = min(15,
//   trunc(x/d + 8.5)). Q5_0 and Q5_1 follow quantize_row_q5_0_ref / quantize_row_q5_1_ref the same way:
//   Q5_0 d = −(the signed value of largest magnitude)/16, q = min(31, trunc(x/d + 16.5)); Q5_1
//   d = (max − min)/31, m = min, q = trunc((x − min)/d + 0.5) (clamped to 31, which ggml never exceeds
//   in practice: the clamp only guards the bit layout).
//   The K-quants use the reference's method in float64 arithmetic (not bit-for-bit ggml's, whose float32
//   sums can round differently, but the same format and the same choices in all but near-ties):
//   Q4_K / Q5_K fit each 32-value sub-block with an affine grid (scale, min <= 0) by weighted least
//   squares over a small search of grid spacings (weights: rms of the sub-block + |x|; Q4_K 21
//   spacings from (nmax − 1)/range, Q5_K 16 from (nmax − 0.5)/range, 0.1 apart), quantize the 8
//   scales and 8 mins to 6 bits against the largest of each (d = max scale/63, dmin = max min/63, both
//   f16), then round every value to the nearest code of its quantized grid. Q6_K fits each 16-value
//   sub-block with a symmetric grid (weights x², 19 spacings around 32/max|x|), quantizes the 16 scales
//   to int8 against the largest (d = that scale/−128, f16), then rounds every value to its code.
//   Every rounding to an integer is to nearest (ties to even, like ggml's nearest_int).
//
// dequantizeRows is exact: each value is computed exactly in float64 and rounded once to float32,
// which gives the same float32 values as ggml's dequantize_row_* and the native convert_to_f32 (every
// product d·sc·q is exact in float32; only the subtraction of Q4_K/Q5_K's min and Q5_1's addition of m
// round).

import { fromF16Bits, toF16Bits } from '../tiny-model/safetensors-writer.js';
import { GGML_BLOCK } from './reader.js';

export type QuantType = 'Q8_0' | 'Q4_0' | 'Q5_0' | 'Q5_1' | 'Q4_K' | 'Q5_K' | 'Q6_K';

export const QUANT_TYPES: readonly QuantType[] = ['Q8_0', 'Q4_0', 'Q5_0', 'Q5_1', 'Q4_K', 'Q5_K', 'Q6_K'];

// Block sizes as the GGUF reader knows them (one table for reading and writing).
const BLOCK: Readonly<Record<QuantType, { elems: number; bytes: number }>> = GGML_BLOCK;

/** Values per block: 32 (Q8_0, Q4_0, Q5_0, Q5_1) or 256 (the K-quants). */
export function quantBlockElems(type: QuantType): number {
  return blockOf(type).elems;
}

/** Bytes per block. */
export function quantBlockBytes(type: QuantType): number {
  return blockOf(type).bytes;
}

/** Bytes of one row of `cols` values (cols must be a multiple of the block size). */
export function quantRowBytes(type: QuantType, cols: number): number {
  const b = blockOf(type);
  checkCols(type, cols);
  return (cols / b.elems) * b.bytes;
}

function blockOf(type: QuantType): { elems: number; bytes: number } {
  const b = BLOCK[type];
  if (!b) throw new TypeError(`unknown quantization type ${String(type)}`);
  return b;
}

function checkCols(type: QuantType, cols: number): void {
  const e = BLOCK[type].elems;
  if (!Number.isInteger(cols) || cols < 0 || cols % e !== 0) {
    throw new RangeError(`${type}: a row's length must be a multiple of ${e}, got ${cols}`);
  }
}

function checkShape(rows: number, cols: number): void {
  if (!Number.isInteger(rows) || rows < 0) throw new RangeError(`rows must be a non-negative integer, got ${rows}`);
  if (!Number.isInteger(cols) || cols < 0) throw new RangeError(`cols must be a non-negative integer, got ${cols}`);
}

// ---- helpers ------------------------------------------------------------------------------------------

const f32 = Math.fround;

/** Nearest integer, ties to even (ggml's nearest_int). */
function nearestInt(v: number): number {
  const r = Math.round(v); // ties toward +inf
  return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** C's roundf: nearest, ties away from zero. */
function roundAway(v: number): number {
  return v < 0 ? -Math.floor(-v + 0.5) : Math.floor(v + 0.5);
}

function clamp(v: number, lo: number, hi: number): number {
  return v < lo ? lo : v > hi ? hi : v;
}

// ---- quantization -------------------------------------------------------------------------------------

/**
 * Quantizes `rows` rows of `cols` values (row-major `values`) into ggml blocks: a row is
 * quantRowBytes(type, cols) bytes, rows back to back. cols must be a multiple of the block size.
 */
export function quantizeRows(type: QuantType, values: Float32Array, rows: number, cols: number): Uint8Array {
  checkShape(rows, cols);
  checkCols(type, cols);
  if (values.length < rows * cols) {
    throw new RangeError(`quantizeRows: ${values.length} values for ${rows} x ${cols}`);
  }
  const b = BLOCK[type];
  const nBlocks = (rows * cols) / b.elems; // rows are whole blocks, so blocks never straddle rows
  const out = new Uint8Array(nBlocks * b.bytes);
  const view = new DataView(out.buffer);
  const enc = ENCODERS[type];
  for (let i = 0; i < nBlocks; i++) {
    enc(values.subarray(i * b.elems, (i + 1) * b.elems), out, view, i * b.bytes);
  }
  return out;
}

type Encoder = (x: Float32Array, out: Uint8Array, view: DataView, o: number) => void;

function encodeQ8_0(x: Float32Array, out: Uint8Array, view: DataView, o: number): void {
  let amax = 0;
  for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[j]!));
  const d = f32(amax / 127);
  const id = d ? f32(1 / d) : 0;
  view.setUint16(o, toF16Bits(d), true);
  for (let j = 0; j < 32; j++) view.setInt8(o + 2 + j, roundAway(f32(x[j]! * id)));
}

/** The first of the 32 values with the largest magnitude, sign kept (ggml's Q4_0 / Q5_0 reference scale). */
function largestMagnitude(x: Float32Array): number {
  let amax = 0;
  let max = 0;
  for (let j = 0; j < 32; j++) {
    const v = x[j]!;
    if (amax < Math.abs(v)) {
      amax = Math.abs(v);
      max = v;
    }
  }
  return max;
}

function encodeQ4_0(x: Float32Array, out: Uint8Array, view: DataView, o: number): void {
  const max = largestMagnitude(x);
  const d = f32(max / -8);
  const id = d ? f32(1 / d) : 0;
  view.setUint16(o, toF16Bits(d), true);
  for (let j = 0; j < 16; j++) {
    const q0 = Math.min(15, Math.trunc(f32(f32(x[j]! * id) + 8.5)));
    const q1 = Math.min(15, Math.trunc(f32(f32(x[j + 16]! * id) + 8.5)));
    out[o + 2 + j] = q0 | (q1 << 4);
  }
}

/** Q5_0 / Q5_1: packs 32 five-bit codes (low nibbles in qs, fifth bits in the word qh) at `o`. */
function packQ5(codes: Uint8Array, out: Uint8Array, view: DataView, o: number): void {
  let qh = 0;
  for (let j = 0; j < 16; j++) {
    const q0 = codes[j]!;
    const q1 = codes[j + 16]!;
    out[o + 4 + j] = (q0 & 0xf) | ((q1 & 0xf) << 4);
    qh |= ((q0 >> 4) << j) | ((q1 >> 4) << (j + 16));
  }
  view.setUint32(o, qh >>> 0, true);
}

function encodeQ5_0(x: Float32Array, out: Uint8Array, view: DataView, o: number): void {
  const max = largestMagnitude(x);
  const d = f32(max / -16);
  const id = d ? f32(1 / d) : 0;
  view.setUint16(o, toF16Bits(d), true);
  const codes = new Uint8Array(32);
  for (let j = 0; j < 32; j++) codes[j] = Math.min(31, Math.trunc(f32(f32(x[j]! * id) + 16.5)));
  packQ5(codes, out, view, o + 2);
}

function encodeQ5_1(x: Float32Array, out: Uint8Array, view: DataView, o: number): void {
  let min = Infinity;
  let max = -Infinity;
  for (let j = 0; j < 32; j++) {
    min = Math.min(min, x[j]!);
    max = Math.max(max, x[j]!);
  }
  const d = f32(f32(max - min) / 31);
  const id = d ? f32(1 / d) : 0;
  view.setUint16(o, toF16Bits(d), true);
  view.setUint16(o + 2, toF16Bits(min), true);
  const codes = new Uint8Array(32);
  for (let j = 0; j < 32; j++) codes[j] = clamp(Math.trunc(f32(f32(f32(x[j]! - min) * id) + 0.5)), 0, 31);
  packQ5(codes, out, view, o + 4);
}

/**
 * Affine fit of n values to scale·L + min with integer codes L in [0, nmax] and min <= 0, by weighted
 * least squares over grid spacings (nmax + rmin + rdelta·i)/range, i = 0..nstep (the method of ggml's
 * make_qkx2_quants). Returns [scale, −min] and leaves the codes in L.
 */
function fitAffine(
  x: Float32Array, w: Float64Array, n: number, nmax: number, rmin: number, rdelta: number, nstep: number,
  L: Uint8Array, aux: Uint8Array,
): [number, number] {
  let min = x[0]!;
  let max = x[0]!;
  let sumW = 0;
  let sumX = 0;
  for (let i = 0; i < n; i++) {
    min = Math.min(min, x[i]!);
    max = Math.max(max, x[i]!);
    sumW += w[i]!;
    sumX += w[i]! * x[i]!;
  }
  if (min > 0) min = 0;
  if (max === min) {
    L.fill(0, 0, n);
    return [0, -min];
  }
  let iscale = nmax / (max - min);
  let scale = 1 / iscale;
  let bestErr = 0;
  for (let i = 0; i < n; i++) {
    const l = clamp(nearestInt(iscale * (x[i]! - min)), 0, nmax);
    L[i] = l;
    const diff = scale * l + min - x[i]!;
    bestErr += w[i]! * diff * diff;
  }
  for (let step = 0; step <= nstep; step++) {
    iscale = (rmin + rdelta * step + nmax) / (max - min);
    let sumL = 0;
    let sumL2 = 0;
    let sumXL = 0;
    for (let i = 0; i < n; i++) {
      const l = clamp(nearestInt(iscale * (x[i]! - min)), 0, nmax);
      aux[i] = l;
      sumL += w[i]! * l;
      sumL2 += w[i]! * l * l;
      sumXL += w[i]! * l * x[i]!;
    }
    const D = sumW * sumL2 - sumL * sumL;
    if (D <= 0) continue;
    let s = (sumW * sumXL - sumX * sumL) / D;
    let m = (sumL2 * sumX - sumL * sumXL) / D;
    if (m > 0) {
      m = 0;
      s = sumXL / sumL2;
    }
    let err = 0;
    for (let i = 0; i < n; i++) {
      const diff = s * aux[i]! + m - x[i]!;
      err += w[i]! * diff * diff;
    }
    if (err < bestErr) {
      L.set(aux.subarray(0, n));
      bestErr = err;
      scale = s;
      min = m;
    }
  }
  return [scale, -min];
}

/** Q4_K (nmax 15) and Q5_K (nmax 31). */
function encodeQK(x: Float32Array, out: Uint8Array, view: DataView, o: number, five: boolean): void {
  const nmax = five ? 31 : 15;
  const L = new Uint8Array(256);
  const aux = new Uint8Array(32);
  const w = new Float64Array(32);
  const scales = new Float64Array(8);
  const mins = new Float64Array(8);
  let maxScale = 0;
  let maxMin = 0;
  for (let s = 0; s < 8; s++) {
    const xs = x.subarray(32 * s, 32 * s + 32);
    let sum2 = 0;
    for (let l = 0; l < 32; l++) sum2 += xs[l]! * xs[l]!;
    const av = Math.sqrt(sum2 / 32);
    for (let l = 0; l < 32; l++) w[l] = av + Math.abs(xs[l]!);
    const [sc, mn] = five
      ? fitAffine(xs, w, 32, nmax, -0.5, 0.1, 15, L.subarray(32 * s), aux)
      : fitAffine(xs, w, 32, nmax, -1, 0.1, 20, L.subarray(32 * s), aux);
    scales[s] = sc;
    mins[s] = mn;
    maxScale = Math.max(maxScale, sc);
    maxMin = Math.max(maxMin, mn);
  }
  const invScale = maxScale > 0 ? 63 / maxScale : 0;
  const invMin = maxMin > 0 ? 63 / maxMin : 0;
  const sc6 = new Uint8Array(8);
  const mn6 = new Uint8Array(8);
  for (let s = 0; s < 8; s++) {
    sc6[s] = clamp(nearestInt(invScale * scales[s]!), 0, 63);
    mn6[s] = clamp(nearestInt(invMin * mins[s]!), 0, 63);
  }
  const dBits = toF16Bits(maxScale / 63);
  const dminBits = toF16Bits(maxMin / 63);
  view.setUint16(o, dBits, true);
  view.setUint16(o + 2, dminBits, true);
  const sp = o + 4; // 12 bytes of packed scales and mins
  for (let s = 0; s < 4; s++) {
    out[sp + s] = sc6[s]! | ((sc6[s + 4]! >> 4) << 6);
    out[sp + s + 4] = mn6[s]! | ((mn6[s + 4]! >> 4) << 6);
    out[sp + s + 8] = (sc6[s + 4]! & 0xf) | ((mn6[s + 4]! & 0xf) << 4);
  }
  // Every value to the nearest code of its quantized grid.
  const d = fromF16Bits(dBits);
  const dmin = fromF16Bits(dminBits);
  for (let s = 0; s < 8; s++) {
    const ds = d * sc6[s]!;
    const dm = dmin * mn6[s]!;
    for (let l = 0; l < 32; l++) {
      L[32 * s + l] = ds ? clamp(nearestInt((x[32 * s + l]! + dm) / ds), 0, nmax) : 0;
    }
  }
  const qh = o + 16;
  const qs = o + (five ? 48 : 16);
  if (five) out.fill(0, qh, qh + 32);
  for (let g = 0; g < 4; g++) {
    for (let l = 0; l < 32; l++) {
      const lo = L[64 * g + l]!;
      const hi = L[64 * g + 32 + l]!;
      out[qs + 32 * g + l] = (lo & 0xf) | ((hi & 0xf) << 4);
      if (five) out[qh + l]! |= ((lo >> 4) << (2 * g)) | ((hi >> 4) << (2 * g + 1));
    }
  }
}

/**
 * Symmetric fit of n values to scale·l with l in [−nmax, nmax − 1], weights x², over grid spacings
 * (nmax + 0.1·i)/max|x|, i = −9..9 (the method of ggml's make_qx_quants with rmse_type 1). Returns the
 * scale (its sign is that of −(the value of largest magnitude)).
 */
function fitSymmetric(x: Float32Array, n: number, nmax: number): number {
  let amax = 0;
  let max = 0;
  for (let i = 0; i < n; i++) {
    if (Math.abs(x[i]!) > amax) {
      amax = Math.abs(x[i]!);
      max = x[i]!;
    }
  }
  if (amax < 1e-15) return 0;
  const sums = (iscale: number): [number, number] => {
    let sumLX = 0;
    let sumL2 = 0;
    for (let i = 0; i < n; i++) {
      const l = clamp(nearestInt(iscale * x[i]!), -nmax, nmax - 1);
      const w = x[i]! * x[i]!;
      sumLX += w * x[i]! * l;
      sumL2 += w * l * l;
    }
    return [sumLX, sumL2];
  };
  let [sumLX, sumL2] = sums(-nmax / max);
  let scale = sumL2 ? sumLX / sumL2 : 0;
  let best = scale * sumLX;
  for (let step = -9; step <= 9; step++) {
    if (step === 0) continue;
    [sumLX, sumL2] = sums(-(nmax + 0.1 * step) / max);
    if (sumL2 > 0 && sumLX * sumLX > best * sumL2) {
      scale = sumLX / sumL2;
      best = scale * sumLX;
    }
  }
  return scale;
}

function encodeQ6_K(x: Float32Array, out: Uint8Array, view: DataView, o: number): void {
  const scales = new Float64Array(16);
  let maxScale = 0;
  let maxAbs = 0;
  for (let s = 0; s < 16; s++) {
    const sc = fitSymmetric(x.subarray(16 * s, 16 * s + 16), 16, 32);
    scales[s] = sc;
    if (Math.abs(sc) > maxAbs) {
      maxAbs = Math.abs(sc);
      maxScale = sc;
    }
  }
  out.fill(0, o, o + 210);
  if (maxAbs < 1e-15) return; // all zero: d = 0, every code 0
  const iscale = -128 / maxScale;
  const dBits = toF16Bits(1 / iscale);
  const d = fromF16Bits(dBits);
  const sc8 = new Int8Array(16);
  for (let s = 0; s < 16; s++) sc8[s] = clamp(nearestInt(iscale * scales[s]!), -128, 127);
  const L = new Uint8Array(256);
  for (let s = 0; s < 16; s++) {
    const ds = d * sc8[s]!;
    for (let l = 0; l < 16; l++) {
      L[16 * s + l] = (ds ? clamp(nearestInt(x[16 * s + l]! / ds), -32, 31) : 0) + 32;
    }
  }
  for (let h = 0; h < 2; h++) {
    for (let l = 0; l < 32; l++) {
      const q = (s: number) => L[128 * h + 32 * s + l]!;
      out[o + 64 * h + l] = (q(0) & 0xf) | ((q(2) & 0xf) << 4);
      out[o + 64 * h + 32 + l] = (q(1) & 0xf) | ((q(3) & 0xf) << 4);
      out[o + 128 + 32 * h + l] = (q(0) >> 4) | ((q(1) >> 4) << 2) | ((q(2) >> 4) << 4) | ((q(3) >> 4) << 6);
    }
  }
  for (let s = 0; s < 16; s++) view.setInt8(o + 192 + s, sc8[s]!);
  view.setUint16(o + 208, dBits, true);
}

const ENCODERS: Record<QuantType, Encoder> = {
  Q8_0: encodeQ8_0,
  Q4_0: encodeQ4_0,
  Q5_0: encodeQ5_0,
  Q5_1: encodeQ5_1,
  Q4_K: (x, out, view, o) => encodeQK(x, out, view, o, false),
  Q5_K: (x, out, view, o) => encodeQK(x, out, view, o, true),
  Q6_K: encodeQ6_K,
};

// ---- dequantization -----------------------------------------------------------------------------------

/** The exact values of `rows` rows of `cols` quantized values (the inverse of the layouts above). */
export function dequantizeRows(type: QuantType, bytes: Uint8Array, rows: number, cols: number): Float32Array {
  checkShape(rows, cols);
  checkCols(type, cols);
  const b = BLOCK[type];
  const nBlocks = (rows * cols) / b.elems;
  if (bytes.length < nBlocks * b.bytes) {
    throw new RangeError(`dequantizeRows: ${bytes.length} bytes for ${rows} x ${cols} ${type}`);
  }
  const out = new Float32Array(rows * cols);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const dec = DECODERS[type];
  for (let i = 0; i < nBlocks; i++) dec(bytes, view, i * b.bytes, out, i * b.elems);
  return out;
}

type Decoder = (q: Uint8Array, view: DataView, o: number, y: Float32Array, yo: number) => void;

function decodeQ8_0(q: Uint8Array, view: DataView, o: number, y: Float32Array, yo: number): void {
  const d = fromF16Bits(view.getUint16(o, true));
  for (let j = 0; j < 32; j++) y[yo + j] = view.getInt8(o + 2 + j) * d;
}

function decodeQ4_0(q: Uint8Array, view: DataView, o: number, y: Float32Array, yo: number): void {
  const d = fromF16Bits(view.getUint16(o, true));
  for (let j = 0; j < 16; j++) {
    y[yo + j] = ((q[o + 2 + j]! & 0xf) - 8) * d;
    y[yo + j + 16] = ((q[o + 2 + j]! >> 4) - 8) * d;
  }
}

// Q5_0 (m undefined): (q − 16)·d, exact; Q5_1: q·d + m, exact in float64 (q·d has at most 16 significant
// bits; both terms lie between 2^-24 and 2^21), then rounded once.
function decodeQ5(q: Uint8Array, view: DataView, o: number, y: Float32Array, yo: number, withMin: boolean): void {
  const d = fromF16Bits(view.getUint16(o, true));
  const m = withMin ? fromF16Bits(view.getUint16(o + 2, true)) : 0;
  const p = o + (withMin ? 4 : 2);
  const qh = view.getUint32(p, true);
  for (let j = 0; j < 16; j++) {
    const q0 = (q[p + 4 + j]! & 0xf) | (((qh >>> j) & 1) << 4);
    const q1 = (q[p + 4 + j]! >> 4) | (((qh >>> (j + 16)) & 1) << 4);
    y[yo + j] = withMin ? q0 * d + m : (q0 - 16) * d;
    y[yo + j + 16] = withMin ? q1 * d + m : (q1 - 16) * d;
  }
}

function decodeQK(q: Uint8Array, view: DataView, o: number, y: Float32Array, yo: number, five: boolean): void {
  const d = fromF16Bits(view.getUint16(o, true));
  const dmin = fromF16Bits(view.getUint16(o + 2, true));
  const sp = o + 4;
  const qh = o + 16;
  const qs = o + (five ? 48 : 16);
  for (let s = 0; s < 8; s++) {
    const sc = s < 4 ? q[sp + s]! & 63 : (q[sp + s + 4]! & 0xf) | ((q[sp + s - 4]! >> 6) << 4);
    const m = s < 4 ? q[sp + s + 4]! & 63 : (q[sp + s + 4]! >> 4) | ((q[sp + s]! >> 6) << 4);
    const g = s >> 1;
    for (let l = 0; l < 32; l++) {
      const byte = q[qs + 32 * g + l]!;
      let v = s & 1 ? byte >> 4 : byte & 0xf;
      if (five) v |= ((q[qh + l]! >> s) & 1) << 4;
      // Exact in float64 (products of at most 11 + 6 + 5 bits), then rounded once.
      y[yo + 32 * s + l] = d * sc * v - dmin * m;
    }
  }
}

function decodeQ6_K(q: Uint8Array, view: DataView, o: number, y: Float32Array, yo: number): void {
  const d = fromF16Bits(view.getUint16(o + 208, true));
  for (let h = 0; h < 2; h++) {
    for (let s = 0; s < 4; s++) {
      for (let l = 0; l < 32; l++) {
        const lo = (q[o + 64 * h + 32 * (s & 1) + l]! >> (4 * (s >> 1))) & 0xf;
        const hi = (q[o + 128 + 32 * h + l]! >> (2 * s)) & 3;
        const sc = view.getInt8(o + 192 + 8 * h + 2 * s + (l >> 4));
        y[yo + 128 * h + 32 * s + l] = d * sc * ((lo | (hi << 4)) - 32);
      }
    }
  }
}

const DECODERS: Record<QuantType, Decoder> = {
  Q8_0: decodeQ8_0,
  Q4_0: decodeQ4_0,
  Q5_0: (q, view, o, y, yo) => decodeQ5(q, view, o, y, yo, false),
  Q5_1: (q, view, o, y, yo) => decodeQ5(q, view, o, y, yo, true),
  Q4_K: (q, view, o, y, yo) => decodeQK(q, view, o, y, yo, false),
  Q5_K: (q, view, o, y, yo) => decodeQK(q, view, o, y, yo, true),
  Q6_K: decodeQ6_K,
};
