/**
 * Streaming safetensors writer.
 *
 * File layout: u64 little-endian header length N, then N bytes of JSON header
 * (`{"name":{"dtype":..,"shape":[..],"data_offsets":[begin,end]},...,"__metadata__":{...}}`, right-padded with
 * spaces so the data section starts 8-byte aligned), then the raw little-endian tensor bytes back to back in the
 * order given. The header is computed from shapes alone, then each tensor's float32 values are pulled chunk by
 * chunk, converted and written, so a model of any size is written in bounded memory. The file is written under a
 * temporary name and renamed into place when complete.
 */

import { open, rename, unlink, type FileHandle } from 'node:fs/promises';

export type SafetensorsDtype = 'BF16' | 'F16' | 'F32' | 'F8_E4M3';

export const DTYPE_BYTES: Readonly<Record<SafetensorsDtype, number>> = { BF16: 2, F16: 2, F32: 4, F8_E4M3: 1 };

/** OCP FP8 E4M3 byte -> value (no infinities; 0x7f/0xff NaN; largest finite 448). */
export function e4m3ToNumber(b: number): number {
  const sign = b & 0x80 ? -1 : 1;
  const e = (b >> 3) & 0xf;
  const m = b & 7;
  if (e === 0xf && m === 7) return NaN;
  return sign * (e === 0 ? m * 2 ** -9 : (1 + m / 8) * 2 ** (e - 7));
}

/** The positive finite E4M3 values in increasing order (code i = value E4M3_VALUES[i], i < 127). */
const E4M3_VALUES: number[] = Array.from({ length: 127 }, (_, i) => e4m3ToNumber(i));

/** The E4M3 byte nearest to x (ties to the even code, as round-to-nearest-even), saturating at ±448. */
export function toE4M3Bits(x: number): number {
  if (Number.isNaN(x)) return 0x7f;
  const sign = x < 0 || Object.is(x, -0) ? 0x80 : 0;
  const a = Math.min(Math.abs(x), 448);
  let lo = 0;
  let hi = 126;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if ((E4M3_VALUES[mid] as number) <= a) lo = mid;
    else hi = mid;
  }
  const dl = a - (E4M3_VALUES[lo] as number);
  const dh = (E4M3_VALUES[hi] as number) - a;
  const code = dl < dh ? lo : dh < dl ? hi : lo % 2 === 0 ? lo : hi;
  return sign | code;
}

export interface TensorSource {
  name: string;
  dtype: SafetensorsDtype;
  shape: readonly number[];
  /** Yields the tensor's values (row-major, float32) in chunks; each chunk is consumed before the next is requested. */
  chunks: () => Iterable<Float32Array>;
}

export interface SafetensorsHeaderEntry {
  name: string;
  dtype: SafetensorsDtype;
  shape: readonly number[];
}

export interface WriteResult {
  /** total file size in bytes */
  fileBytes: number;
  /** bytes of tensor data (file size minus 8 minus header) */
  dataBytes: number;
}

function numelOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Builds the padded header bytes (without the 8-byte length prefix) for tensors laid out in the given order. */
export function buildSafetensorsHeader(
  entries: readonly SafetensorsHeaderEntry[],
  metadata: Record<string, string> = { format: 'pt' },
): { header: Buffer; dataBytes: number } {
  const parts: string[] = [];
  const seen = new Set<string>();
  let offset = 0;
  for (const e of entries) {
    if (e.name === '__metadata__' || seen.has(e.name)) {
      throw new Error(`duplicate or reserved tensor name ${JSON.stringify(e.name)}`);
    }
    seen.add(e.name);
    for (const d of e.shape) {
      if (!Number.isSafeInteger(d) || d < 0) throw new Error(`bad dimension ${d} in shape of ${e.name}`);
    }
    const bytes = numelOf(e.shape) * DTYPE_BYTES[e.dtype];
    parts.push(
      `${JSON.stringify(e.name)}:{"dtype":"${e.dtype}","shape":${JSON.stringify(e.shape)},` +
        `"data_offsets":[${offset},${offset + bytes}]}`,
    );
    offset += bytes;
  }
  parts.push(`"__metadata__":${JSON.stringify(metadata)}`);
  let json = `{${parts.join(',')}}`;
  const rawLen = Buffer.byteLength(json, 'utf8');
  const pad = (8 - ((8 + rawLen) % 8)) % 8;
  json += ' '.repeat(pad);
  return { header: Buffer.from(json, 'utf8'), dataBytes: offset };
}

// ---------------------------------------------------------------------------------------------------------
// float32 -> bf16 / f16 bit conversion

const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

/** bfloat16 bits of a float32 bit pattern, round-to-nearest-even; NaN stays a (quiet) NaN. */
export function f32BitsToBf16(bits: number): number {
  bits >>>= 0;
  if ((bits & 0x7f800000) === 0x7f800000 && (bits & 0x007fffff) !== 0) {
    return ((bits >>> 16) | 0x0040) & 0xffff; // keep sign and payload top bits, force quiet
  }
  const roundingBias = 0x7fff + ((bits >>> 16) & 1);
  return ((bits + roundingBias) >>> 16) & 0xffff;
}

/** IEEE binary16 bits of a float32 bit pattern, round-to-nearest-even, with subnormals, overflow to ±Inf, NaN kept. */
export function f32BitsToF16(bits: number): number {
  bits >>>= 0;
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  const mant = bits & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x0200 | (mant >>> 13) : 0);
  const e = exp - 127 + 15; // biased f16 exponent
  if (e >= 0x1f) return sign | 0x7c00; // overflow
  if (e <= 0) {
    // f16 subnormal (or zero): value = m * 2^(e-14) units of 2^-24, m the 24-bit significand
    if (e < -10) return sign; // below half the smallest subnormal: rounds to ±0
    const m = mant | 0x800000;
    const shift = 14 - e; // 14..24
    let half = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rem > halfway || (rem === halfway && (half & 1) === 1)) half++; // may carry into the smallest normal
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (half & 1) === 1)) half++; // carry may reach 0x7c00 = Inf, correct
  return sign | half;
}

/** bf16 bits of a JS number (first rounded to float32, as torch does for a float32 source tensor). */
export function toBf16Bits(x: number): number {
  scratchF32[0] = x;
  return f32BitsToBf16(scratchU32[0] as number);
}

/** f16 bits of a JS number (first rounded to float32). */
export function toF16Bits(x: number): number {
  scratchF32[0] = x;
  return f32BitsToF16(scratchU32[0] as number);
}

/** The value of f16 bits (exact; subnormals, infinities and NaN included). */
export function fromF16Bits(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return sign * m * 2 ** -24;
  if (e === 31) return m ? NaN : sign * Infinity;
  return sign * (1 + m / 1024) * 2 ** (e - 15);
}

const HOST_LE = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Converts float32 values into `out` (little-endian bytes of the target dtype); returns the bytes written. */
export function encodeChunk(values: Float32Array, dtype: SafetensorsDtype, out: Buffer): number {
  const n = values.length;
  const bytes = n * DTYPE_BYTES[dtype];
  if (out.length < bytes) throw new Error('encode buffer too small');
  if (dtype === 'F8_E4M3') {
    for (let i = 0; i < n; i++) out[i] = toE4M3Bits(values[i] as number);
    return bytes;
  }
  if (dtype === 'F32') {
    new Uint8Array(out.buffer, out.byteOffset, bytes).set(
      new Uint8Array(values.buffer, values.byteOffset, bytes),
    );
    if (!HOST_LE) out.subarray(0, bytes).swap32();
    return bytes;
  }
  const src = new Uint32Array(values.buffer, values.byteOffset, n);
  const dst = new Uint16Array(out.buffer, out.byteOffset, n);
  if (dtype === 'BF16') {
    for (let i = 0; i < n; i++) {
      const b = src[i] as number;
      if ((b & 0x7f800000) === 0x7f800000 && (b & 0x7fffff) !== 0) {
        dst[i] = f32BitsToBf16(b);
      } else {
        dst[i] = (b + 0x7fff + ((b >>> 16) & 1)) >>> 16;
      }
    }
  } else {
    for (let i = 0; i < n; i++) dst[i] = f32BitsToF16(src[i] as number);
  }
  if (!HOST_LE) out.subarray(0, bytes).swap16();
  return bytes;
}

// ---------------------------------------------------------------------------------------------------------

async function writeAll(fh: FileHandle, buf: Buffer, length: number): Promise<void> {
  let off = 0;
  while (off < length) {
    const { bytesWritten } = await fh.write(buf, off, length - off);
    if (bytesWritten <= 0) throw new Error('write returned no progress');
    off += bytesWritten;
  }
}

/**
 * Writes a safetensors file, streaming tensor by tensor. Tensors are stored in the order given.
 * Throws if a tensor's chunks do not add up to exactly its element count.
 */
export async function writeSafetensors(
  path: string,
  tensors: readonly TensorSource[],
  metadata: Record<string, string> = { format: 'pt' },
): Promise<WriteResult> {
  const { header, dataBytes } = buildSafetensorsHeader(tensors, metadata);
  const tmp = `${path}.tmp-${process.pid}-${Math.floor(Math.random() * 1e9)}`;
  const fh = await open(tmp, 'w');
  let ok = false;
  try {
    const prefix = Buffer.alloc(8);
    prefix.writeBigUInt64LE(BigInt(header.length), 0);
    await writeAll(fh, prefix, prefix.length);
    await writeAll(fh, header, header.length);
    // two encode buffers: one being written while the next chunk is generated and encoded
    const bufs: Buffer[] = [];
    let which = 0;
    let pending: Promise<void> | null = null;
    for (const t of tensors) {
      const want = numelOf(t.shape);
      let got = 0;
      const elemBytes = DTYPE_BYTES[t.dtype];
      for (const chunk of t.chunks()) {
        if (chunk.length === 0) continue;
        got += chunk.length;
        if (got > want) throw new Error(`tensor ${t.name}: more values than its shape ${JSON.stringify(t.shape)} holds`);
        const need = chunk.length * elemBytes;
        let buf = bufs[which];
        if (buf === undefined || buf.length < need) {
          if (pending !== null) await pending; // the old buffer may still be in flight
          pending = null;
          buf = Buffer.allocUnsafe(Math.max(need, 1 << 16));
          bufs[which] = buf;
        }
        const n = encodeChunk(chunk, t.dtype, buf);
        if (pending !== null) await pending;
        pending = writeAll(fh, buf, n);
        which ^= 1;
      }
      if (got !== want) {
        throw new Error(`tensor ${t.name}: got ${got} values, shape ${JSON.stringify(t.shape)} needs ${want}`);
      }
    }
    if (pending !== null) await pending;
    ok = true;
  } finally {
    await fh.close();
    if (!ok) await unlink(tmp).catch(() => undefined);
  }
  await rename(tmp, path);
  return { fileBytes: 8 + header.length + dataBytes, dataBytes };
}
