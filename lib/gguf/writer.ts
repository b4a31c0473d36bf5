/**
 * GGUF writer (v3, little-endian): metadata of every value type, tensor infos and the data section,
 * each tensor's data starting at a multiple of the alignment (32 unless `general.alignment` says
 * otherwise), as llama.cpp's gguf-py writes it. Tensor values arrive as float32 chunks in row-major
 * order and are encoded row block by row block (F32, F16, BF16 directly; the block-quantized types via
 * lib/gguf/quantize.ts), so a file of any size is written in bounded memory. The file is written under a
 * temporary name and renamed into place when complete.
 *
 * Shapes are given in ggml order (innermost dimension first): a PyTorch [out, in] matrix is {in, out}.
 */
import { open, rename, unlink, type FileHandle } from 'node:fs/promises';

import { encodeChunk } from '../tiny-model/safetensors-writer.js';
import { quantizeRows, type QuantType } from './quantize.js';
import { GGML_BLOCK, GgmlType, GgufValueType, type GgmlTypeName, type GgufScalar, type GgufValue, type GgufValueTypeId } from './reader.js';

export interface GgufKv {
  key: string;
  type: GgufValueTypeId;
  /** Arrays: the element type (not ARRAY). */
  elemType?: GgufValueTypeId;
  value: GgufValue;
}

export interface GgufTensorSource {
  name: string;
  /** ggml order, innermost first; 1 to 4 dimensions. */
  shape: readonly number[];
  type: GgmlTypeName;
  /** The values in row-major order (shape[0] fastest), as float32 chunks of any length. */
  chunks: () => Iterable<Float32Array>;
}

export const GGUF_DEFAULT_ALIGNMENT = 32;

// Metadata helpers: one entry of each common type.
export const kv = {
  str: (key: string, value: string): GgufKv => ({ key, type: GgufValueType.STRING, value }),
  u32: (key: string, value: number): GgufKv => ({ key, type: GgufValueType.UINT32, value }),
  i32: (key: string, value: number): GgufKv => ({ key, type: GgufValueType.INT32, value }),
  f32: (key: string, value: number): GgufKv => ({ key, type: GgufValueType.FLOAT32, value }),
  bool: (key: string, value: boolean): GgufKv => ({ key, type: GgufValueType.BOOL, value }),
  arr: (key: string, elemType: GgufValueTypeId, value: GgufScalar[]): GgufKv => ({ key, type: GgufValueType.ARRAY, elemType, value }),
};

/** Bytes of a tensor of `type` and ggml `shape`; throws when shape[0] is not a multiple of the block. */
export function ggufTensorBytes(type: GgmlTypeName, shape: readonly number[]): number {
  const { elems, bytes } = GGML_BLOCK[type];
  const ne0 = shape[0] ?? 1;
  if (ne0 % elems !== 0) throw new Error(`a ${type} tensor needs an inner dimension that is a multiple of ${elems}, got ${ne0}`);
  const rows = shape.slice(1).reduce((a, b) => a * b, 1);
  return (ne0 / elems) * bytes * rows;
}

/** Whether a tensor with this inner dimension can be stored as `type`. */
export function ggufTypeFits(type: GgmlTypeName, ne0: number): boolean {
  return ne0 % GGML_BLOCK[type].elems === 0;
}

class ByteSink {
  private parts: Buffer[] = [];
  length = 0;
  push(b: Buffer): void {
    this.parts.push(b);
    this.length += b.length;
  }
  u32(v: number): void {
    const b = Buffer.allocUnsafe(4);
    b.writeUInt32LE(v >>> 0);
    this.push(b);
  }
  u64(v: number | bigint): void {
    const b = Buffer.allocUnsafe(8);
    b.writeBigUInt64LE(BigInt(v));
    this.push(b);
  }
  string(s: string): void {
    const bytes = Buffer.from(s, 'utf8');
    this.u64(bytes.length);
    this.push(bytes);
  }
  concat(): Buffer {
    return Buffer.concat(this.parts, this.length);
  }
}

function writeScalar(out: ByteSink, type: number, v: GgufScalar, key: string): void {
  const bad = (): Error => new Error(`metadata '${key}': value ${String(v)} does not fit type ${type}`);
  const b8 = Buffer.alloc(8);
  switch (type) {
    case GgufValueType.UINT8: b8.writeUInt8(Number(v)); out.push(b8.subarray(0, 1)); return;
    case GgufValueType.INT8: b8.writeInt8(Number(v)); out.push(b8.subarray(0, 1)); return;
    case GgufValueType.UINT16: b8.writeUInt16LE(Number(v)); out.push(b8.subarray(0, 2)); return;
    case GgufValueType.INT16: b8.writeInt16LE(Number(v)); out.push(b8.subarray(0, 2)); return;
    case GgufValueType.UINT32: b8.writeUInt32LE(Number(v)); out.push(b8.subarray(0, 4)); return;
    case GgufValueType.INT32: b8.writeInt32LE(Number(v)); out.push(b8.subarray(0, 4)); return;
    case GgufValueType.FLOAT32: b8.writeFloatLE(Number(v)); out.push(b8.subarray(0, 4)); return;
    case GgufValueType.FLOAT64: b8.writeDoubleLE(Number(v)); out.push(b8); return;
    case GgufValueType.UINT64: b8.writeBigUInt64LE(BigInt(v)); out.push(b8); return;
    case GgufValueType.INT64: b8.writeBigInt64LE(BigInt(v)); out.push(b8); return;
    case GgufValueType.BOOL:
      if (typeof v !== 'boolean') throw bad();
      b8.writeUInt8(v ? 1 : 0);
      out.push(b8.subarray(0, 1));
      return;
    case GgufValueType.STRING:
      if (typeof v !== 'string') throw bad();
      out.string(v);
      return;
    default:
      throw new Error(`metadata '${key}': value type ${type} is not a scalar type`);
  }
}

/**
 * The header (magic through the padding before the data section) and each tensor's offset in the data
 * section. Tensors are laid out in the order given, each at a multiple of the alignment.
 */
export function encodeGgufHeader(
  entries: readonly GgufKv[],
  tensors: ReadonlyArray<{ name: string; shape: readonly number[]; type: GgmlTypeName }>,
  alignment = GGUF_DEFAULT_ALIGNMENT,
): { header: Buffer; offsets: number[]; dataBytes: number } {
  const out = new ByteSink();
  out.push(Buffer.from('GGUF', 'latin1'));
  out.u32(3);
  out.u64(tensors.length);
  out.u64(entries.length);
  const keys = new Set<string>();
  for (const e of entries) {
    if (keys.has(e.key)) throw new Error(`metadata key '${e.key}' given twice`);
    keys.add(e.key);
    out.string(e.key);
    out.u32(e.type);
    if (e.type === GgufValueType.ARRAY) {
      if (e.elemType === undefined || e.elemType === GgufValueType.ARRAY || !Array.isArray(e.value)) {
        throw new Error(`metadata '${e.key}': an array needs a scalar elemType and an array value`);
      }
      out.u32(e.elemType);
      out.u64(e.value.length);
      for (const x of e.value) writeScalar(out, e.elemType, x, e.key);
    } else {
      if (Array.isArray(e.value)) throw new Error(`metadata '${e.key}': an array value needs type ARRAY`);
      writeScalar(out, e.type, e.value, e.key);
    }
  }
  const offsets: number[] = [];
  let offset = 0;
  const names = new Set<string>();
  for (const t of tensors) {
    if (names.has(t.name)) throw new Error(`tensor '${t.name}' given twice`);
    names.add(t.name);
    if (t.shape.length < 1 || t.shape.length > 4) throw new Error(`tensor '${t.name}': 1 to 4 dimensions, got ${t.shape.length}`);
    out.string(t.name);
    out.u32(t.shape.length);
    for (const d of t.shape) out.u64(d);
    out.u32(GgmlType[t.type]);
    out.u64(offset);
    offsets.push(offset);
    offset += Math.ceil(ggufTensorBytes(t.type, t.shape) / alignment) * alignment;
  }
  const pad = (alignment - (out.length % alignment)) % alignment;
  out.push(Buffer.alloc(pad));
  return { header: out.concat(), offsets, dataBytes: offset };
}

async function writeAll(fh: FileHandle, buf: Uint8Array): Promise<void> {
  let off = 0;
  while (off < buf.length) {
    const { bytesWritten } = await fh.write(buf, off, buf.length - off);
    if (bytesWritten <= 0) throw new Error('write returned no progress');
    off += bytesWritten;
  }
}

/** Encodes `rows` rows of `cols` float32 values as `type`. */
function encodeRows(type: GgmlTypeName, values: Float32Array, rows: number, cols: number): Uint8Array {
  if (type === 'F32' || type === 'F16' || type === 'BF16') {
    const out = Buffer.allocUnsafe(values.length * GGML_BLOCK[type].bytes);
    encodeChunk(values, type, out);
    return out;
  }
  return quantizeRows(type as QuantType, values, rows, cols);
}

/**
 * Writes a GGUF file: `entries` in order (add `general.alignment` to change the alignment), then the
 * tensors in order. Throws if a tensor's chunks do not add up to its element count.
 */
export async function writeGguf(path: string, entries: readonly GgufKv[], tensors: readonly GgufTensorSource[]): Promise<{ fileBytes: number }> {
  const al = entries.find((e) => e.key === 'general.alignment');
  const alignment = al ? Number(al.value) : GGUF_DEFAULT_ALIGNMENT;
  const { header, dataBytes } = encodeGgufHeader(entries, tensors, alignment);
  const tmp = `${path}.tmp-${process.pid}-${Math.floor(Math.random() * 1e9)}`;
  const fh = await open(tmp, 'w');
  let ok = false;
  try {
    await writeAll(fh, header);
    for (const t of tensors) {
      const cols = t.shape[0] ?? 1;
      const rows = t.shape.slice(1).reduce((a, b) => a * b, 1);
      // Whole rows at a time (a block never spans rows), about 1M values per flush.
      const rowsPerFlush = Math.max(1, Math.floor((1 << 20) / Math.max(cols, 1)));
      const buf = new Float32Array(Math.min(rows, rowsPerFlush) * cols);
      let filled = 0;
      let written = 0;
      let rowsDone = 0;
      const flush = async (): Promise<void> => {
        const n = filled / cols;
        const bytes = encodeRows(t.type, buf.subarray(0, filled), n, cols);
        await writeAll(fh, bytes);
        written += bytes.length;
        rowsDone += n;
        filled = 0;
      };
      for (const chunk of t.chunks()) {
        let i = 0;
        while (i < chunk.length) {
          if (rowsDone * cols + filled >= rows * cols) throw new Error(`tensor ${t.name}: more values than its shape {${t.shape.join(', ')}} holds`);
          const take = Math.min(chunk.length - i, buf.length - filled, rows * cols - rowsDone * cols - filled);
          buf.set(chunk.subarray(i, i + take), filled);
          filled += take;
          i += take;
          if (filled === buf.length) await flush();
        }
      }
      if (filled % cols !== 0 || rowsDone * cols + filled !== rows * cols) {
        throw new Error(`tensor ${t.name}: got ${rowsDone * cols + filled} values, shape {${t.shape.join(', ')}} needs ${rows * cols}`);
      }
      if (filled > 0) await flush();
      const pad = (alignment - (written % alignment)) % alignment;
      if (pad > 0) await writeAll(fh, Buffer.alloc(pad));
    }
    ok = true;
  } finally {
    await fh.close();
    if (!ok) await unlink(tmp).catch(() => undefined);
  }
  await rename(tmp, path);
  return { fileBytes: header.length + dataBytes };
}
