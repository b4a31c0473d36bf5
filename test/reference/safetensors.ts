// Minimal safetensors reader for the float64 reference (docs/architecture.md §2: tensor names and shapes).
//
// File layout (safetensors format):
//   bytes 0..7      : u64 little-endian N = length of the JSON header
//   bytes 8..8+N-1  : JSON header { name: { dtype, shape, data_offsets: [begin, end] }, "__metadata__"?: {...} }
//   bytes 8+N..     : raw little-endian tensor data; data_offsets are relative to this point
//
// Every value is converted exactly to float64 (bf16, f16 and f32 are all exactly representable in float64).
// A sharded checkpoint (model.safetensors.index.json with a `weight_map`) is read shard by shard.

import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export type RefDType = 'F32' | 'F16' | 'BF16' | 'F8_E4M3';

export interface RefTensor {
  dtype: RefDType;
  shape: number[];
  data: Float64Array;
}

interface HeaderEntry {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}

const BYTES_PER_ELEMENT: Record<RefDType, number> = { F32: 4, F16: 2, BF16: 2, F8_E4M3: 1 };

function isRefDType(s: string): s is RefDType {
  return s === 'F32' || s === 'F16' || s === 'BF16' || s === 'F8_E4M3';
}

const float32Scratch = new DataView(new ArrayBuffer(4));

/** bf16 is the upper 16 bits of an IEEE float32: shift into place and reinterpret. Exact. */
/** OCP FP8 E4M3 (ModelOpt FP8): sign, 4-bit exponent (bias 7), 3-bit mantissa; 0x7f/0xff NaN, no infinities. */
export function e4m3ToNumber(b: number): number {
  const sign = b & 0x80 ? -1 : 1;
  const e = (b >> 3) & 0xf;
  const m = b & 7;
  if (e === 0xf && m === 7) return NaN;
  return sign * (e === 0 ? m * 2 ** -9 : (1 + m / 8) * 2 ** (e - 7));
}

/**
 * ModelOpt FP8 checkpoints: every F8_E4M3 tensor `X.weight` is its values times `X.weight_scale` (one
 * scale, or one per row). Replaces each by that product, exactly in float64; the scales stay in the map.
 */
export function dequantizeFp8(tensors: Map<string, RefTensor>): void {
  for (const [name, t] of tensors) {
    if (t.dtype !== 'F8_E4M3') continue;
    const scale = tensors.get(name.replace(/\.weight$/, '.weight_scale'));
    if (!name.endsWith('.weight') || !scale) throw new Error(`FP8 tensor ${name} has no weight_scale`);
    const rows = t.shape[0] ?? 1;
    const perRow = t.data.length / rows;
    const data = t.data.map((v, i) => v * (scale.data.length === 1 ? scale.data[0]! : scale.data[Math.floor(i / perRow)]!));
    tensors.set(name, { ...t, dtype: 'F32', data });
  }
}

export function bf16ToNumber(bits: number): number {
  float32Scratch.setUint32(0, ((bits & 0xffff) << 16) >>> 0, true);
  return float32Scratch.getFloat32(0, true);
}

/** IEEE half precision: 1 sign bit, 5 exponent bits (bias 15), 10 mantissa bits. Exact. */
export function f16ToNumber(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24; // zero / subnormal: m * 2^-14 * 2^-10
  if (exponent === 0x1f) return mantissa === 0 ? sign * Infinity : NaN;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

function decodeTensor(bytes: DataView, dtype: RefDType, count: number): Float64Array {
  const out = new Float64Array(count);
  for (let i = 0; i < count; i++) {
    if (dtype === 'F32') out[i] = bytes.getFloat32(4 * i, true);
    else if (dtype === 'F8_E4M3') out[i] = e4m3ToNumber(bytes.getUint8(i));
    else if (dtype === 'F16') out[i] = f16ToNumber(bytes.getUint16(2 * i, true));
    else out[i] = bf16ToNumber(bytes.getUint16(2 * i, true));
  }
  return out;
}

/** Read every tensor of one .safetensors file. */
export function readSafetensorsFile(path: string): Map<string, RefTensor> {
  const file = readFileSync(path);
  const view = new DataView(file.buffer, file.byteOffset, file.byteLength);
  if (file.byteLength < 8) throw new Error(`${path}: too short for a safetensors file`);

  const headerLength = Number(view.getBigUint64(0, true));
  const dataStart = 8 + headerLength;
  if (dataStart > file.byteLength) throw new Error(`${path}: header length ${headerLength} exceeds file size`);
  const header = JSON.parse(file.subarray(8, dataStart).toString('utf8')) as Record<string, unknown>;

  const tensors = new Map<string, RefTensor>();
  for (const [name, value] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const entry = value as HeaderEntry;
    if (!isRefDType(entry.dtype)) throw new Error(`${path}: tensor ${name} has unsupported dtype ${entry.dtype}`);
    const count = entry.shape.reduce((a, b) => a * b, 1);
    const [begin, end] = entry.data_offsets;
    if (end - begin !== count * BYTES_PER_ELEMENT[entry.dtype]) {
      throw new Error(`${path}: tensor ${name}: byte range ${begin}..${end} does not match shape ${JSON.stringify(entry.shape)}`);
    }
    if (dataStart + end > file.byteLength) throw new Error(`${path}: tensor ${name} runs past the end of the file`);
    const bytes = new DataView(file.buffer, file.byteOffset + dataStart + begin, end - begin);
    tensors.set(name, { dtype: entry.dtype, shape: [...entry.shape], data: decodeTensor(bytes, entry.dtype, count) });
  }
  return tensors;
}

/**
 * Read a checkpoint directory: `model.safetensors.index.json` (sharded, via its `weight_map`) if present,
 * else `model.safetensors`. A file path to a single .safetensors file is accepted too.
 */
export function readSafetensors(dirOrFile: string): Map<string, RefTensor> {
  if (dirOrFile.endsWith('.safetensors')) return readSafetensorsFile(dirOrFile);

  const indexPath = join(dirOrFile, 'model.safetensors.index.json');
  if (!existsSync(indexPath)) return readSafetensorsFile(join(dirOrFile, 'model.safetensors'));

  const index = JSON.parse(readFileSync(indexPath, 'utf8')) as { weight_map?: Record<string, string> };
  if (!index.weight_map) throw new Error(`${indexPath}: no weight_map`);
  const shardNames = [...new Set(Object.values(index.weight_map))].sort();

  const tensors = new Map<string, RefTensor>();
  for (const shard of shardNames) {
    for (const [name, tensor] of readSafetensorsFile(join(dirOrFile, shard))) {
      if (tensors.has(name)) throw new Error(`tensor ${name} appears in more than one shard`);
      tensors.set(name, tensor);
    }
  }
  for (const [name, shard] of Object.entries(index.weight_map)) {
    if (!tensors.has(name)) throw new Error(`${indexPath}: ${name} mapped to ${shard} but not found there`);
  }
  return tensors;
}
