/**
 * GGUF metadata reader: the header, every metadata key/value and the tensor infos of a `.gguf` file,
 * read from the front of the file (the tensor data is not touched; the native loader maps it). Plus the
 * two things the TypeScript side needs from a `nemotron_h` GGUF: a Hugging Face tokenizer built from the
 * `tokenizer.ggml.*` metadata (tokenizerFromGguf), and an HF-style config for the memory planner
 * (ggufConfigForPlan).
 *
 * Format (v2/v3, little-endian): "GGUF", u32 version, u64 tensor count, u64 metadata count; metadata
 * entries (string key, u32 value type, value); tensor infos (string name, u32 n_dims, u64 ne[n_dims],
 * u32 ggml type, u64 offset); padding to `general.alignment` (default 32); the data section. A string is
 * a u64 byte length and UTF-8 bytes; an array is a u32 element type, a u64 count and the elements.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';

import { ModelLoadError, UnsupportedModelError } from '../errors.js';

/** GGUF metadata value types (on-disk ids). */
export const GgufValueType = {
  UINT8: 0,
  INT8: 1,
  UINT16: 2,
  INT16: 3,
  UINT32: 4,
  INT32: 5,
  FLOAT32: 6,
  BOOL: 7,
  STRING: 8,
  ARRAY: 9,
  UINT64: 10,
  INT64: 11,
  FLOAT64: 12,
} as const;
export type GgufValueTypeId = (typeof GgufValueType)[keyof typeof GgufValueType];

/** ggml tensor type ids by name (the ones this project reads or writes). */
export const GgmlType = { F32: 0, F16: 1, Q4_0: 2, Q5_0: 6, Q5_1: 7, Q8_0: 8, Q4_K: 12, Q5_K: 13, Q6_K: 14, BF16: 30 } as const;
export type GgmlTypeName = keyof typeof GgmlType;

/** Values per block and bytes per block of the ggml types in GgmlType. */
export const GGML_BLOCK: Readonly<Record<GgmlTypeName, { elems: number; bytes: number }>> = {
  F32: { elems: 1, bytes: 4 },
  F16: { elems: 1, bytes: 2 },
  BF16: { elems: 1, bytes: 2 },
  Q8_0: { elems: 32, bytes: 34 },
  Q4_0: { elems: 32, bytes: 18 },
  Q5_0: { elems: 32, bytes: 22 },
  Q5_1: { elems: 32, bytes: 24 },
  Q4_K: { elems: 256, bytes: 144 },
  Q5_K: { elems: 256, bytes: 176 },
  Q6_K: { elems: 256, bytes: 210 },
};

const GGML_TYPE_NAMES = [
  'F32', 'F16', 'Q4_0', 'Q4_1', 'Q4_2', 'Q4_3', 'Q5_0', 'Q5_1', 'Q8_0', 'Q8_1', 'Q2_K', 'Q3_K', 'Q4_K', 'Q5_K',
  'Q6_K', 'Q8_K', 'IQ2_XXS', 'IQ2_XS', 'IQ3_XXS', 'IQ1_S', 'IQ4_NL', 'IQ3_S', 'IQ2_S', 'IQ4_XS', 'I8', 'I16',
  'I32', 'I64', 'F64', 'IQ1_M', 'BF16', 'Q4_0_4_4', 'Q4_0_4_8', 'Q4_0_8_8', 'TQ1_0', 'TQ2_0', 'IQ4_NL_4_4',
  'IQ4_NL_4_8', 'IQ4_NL_8_8', 'MXFP4',
];

/** The ggml name of a tensor type id ("Q4_1"), or "unknown". */
export function ggmlTypeName(id: number): string {
  return GGML_TYPE_NAMES[id] ?? 'unknown';
}

/** A metadata value: a scalar, or an array of scalars. 64-bit integers beyond 2^53 are bigints. */
export type GgufScalar = number | bigint | boolean | string;
export type GgufValue = GgufScalar | GgufScalar[];

export interface GgufEntry {
  type: GgufValueTypeId;
  /** For arrays: the element type. */
  elemType?: GgufValueTypeId;
  value: GgufValue;
}

export interface GgufTensorInfo {
  name: string;
  /** ggml order: shape[0] is the innermost (contiguous) dimension. */
  shape: number[];
  type: number;
  typeName: string;
  /** Offset of the data, relative to the data section. */
  offset: number;
}

export interface GgufMetadata {
  path: string;
  version: number;
  fileSize: number;
  alignment: number;
  /** Where the data section starts in the file. */
  dataOffset: number;
  /** Metadata in file order. */
  kv: Map<string, GgufEntry>;
  tensors: GgufTensorInfo[];
}

function invalid(file: string, what: string): ModelLoadError {
  return new ModelLoadError('ERR_INVALID_CHECKPOINT', `${file}: ${what}`);
}

/** Reads the file front to back in chunks, as far as the parser asks. */
class ChunkReader {
  private buf = Buffer.alloc(0);
  private bufStart = 0; // file position of buf[0]
  pos = 0;

  constructor(
    private readonly fd: number,
    readonly size: number,
    private readonly file: string,
  ) {}

  private ensure(n: number, what: string): void {
    if (this.pos + n > this.size) {
      throw invalid(this.file, `the file is truncated: it ends inside ${what} (needs ${n} bytes at offset ${this.pos}, the file has ${this.size})`);
    }
    const end = this.pos + n;
    if (this.pos >= this.bufStart && end <= this.bufStart + this.buf.length) return;
    const len = Math.min(Math.max(n, 1 << 20), this.size - this.pos);
    const b = Buffer.allocUnsafe(len);
    let got = 0;
    while (got < len) {
      const r = readSync(this.fd, b, got, len - got, this.pos + got);
      if (r === 0) throw invalid(this.file, `the file is truncated: it ends inside ${what}`);
      got += r;
    }
    this.buf = b;
    this.bufStart = this.pos;
  }

  private at(n: number, what: string): number {
    this.ensure(n, what);
    const o = this.pos - this.bufStart;
    this.pos += n;
    return o;
  }

  u8(what: string): number {
    const o = this.at(1, what);
    return this.buf.readUInt8(o);
  }
  i8(what: string): number {
    const o = this.at(1, what);
    return this.buf.readInt8(o);
  }
  u16(what: string): number {
    const o = this.at(2, what);
    return this.buf.readUInt16LE(o);
  }
  i16(what: string): number {
    const o = this.at(2, what);
    return this.buf.readInt16LE(o);
  }
  u32(what: string): number {
    const o = this.at(4, what);
    return this.buf.readUInt32LE(o);
  }
  i32(what: string): number {
    const o = this.at(4, what);
    return this.buf.readInt32LE(o);
  }
  f32(what: string): number {
    const o = this.at(4, what);
    return this.buf.readFloatLE(o);
  }
  f64(what: string): number {
    const o = this.at(8, what);
    return this.buf.readDoubleLE(o);
  }
  u64(what: string): bigint {
    const o = this.at(8, what);
    return this.buf.readBigUInt64LE(o);
  }
  i64(what: string): bigint {
    const o = this.at(8, what);
    return this.buf.readBigInt64LE(o);
  }
  /** A u64 that must be a safe integer (counts, lengths, offsets). */
  count(what: string): number {
    const v = this.u64(what);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw invalid(this.file, `${what} is ${v}, too large; the file is corrupt`);
    return Number(v);
  }
  string(what: string): string {
    const len = this.count(`the length of ${what}`);
    if (len > this.size - this.pos) {
      throw invalid(this.file, `${what} has length ${len}, past the end of the file (${this.size - this.pos} bytes remain); the file is truncated or corrupt`);
    }
    const o = this.at(len, what);
    return this.buf.toString('utf8', o, o + len);
  }
}

const SCALAR_BYTES: Record<number, number> = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };

function big(v: bigint): number | bigint {
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

function readScalar(r: ChunkReader, type: number, what: string): GgufScalar {
  switch (type) {
    case GgufValueType.UINT8: return r.u8(what);
    case GgufValueType.INT8: return r.i8(what);
    case GgufValueType.UINT16: return r.u16(what);
    case GgufValueType.INT16: return r.i16(what);
    case GgufValueType.UINT32: return r.u32(what);
    case GgufValueType.INT32: return r.i32(what);
    case GgufValueType.FLOAT32: return r.f32(what);
    case GgufValueType.FLOAT64: return r.f64(what);
    case GgufValueType.UINT64: return big(r.u64(what));
    case GgufValueType.INT64: return big(r.i64(what));
    case GgufValueType.BOOL: return r.u8(what) !== 0;
    case GgufValueType.STRING: return r.string(what);
    default: throw new Error(`unreachable: scalar type ${type}`);
  }
}

/**
 * Reads a GGUF file's header, metadata and tensor infos (not the tensor data). Throws ModelLoadError:
 * ERR_MODEL_NOT_FOUND when the file cannot be opened, ERR_INVALID_CHECKPOINT for anything malformed
 * (magic, version, truncation, unknown value types, duplicate keys, bad alignment).
 */
export function readGgufMetadata(file: string): GgufMetadata {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (cause) {
    throw new ModelLoadError('ERR_MODEL_NOT_FOUND', `cannot open ${file}: ${(cause as Error).message}`, { cause });
  }
  try {
    const size = fstatSync(fd).size;
    const r = new ChunkReader(fd, size, file);
    if (size < 4) throw invalid(file, `file is ${size} bytes long; not a GGUF file`);
    const magic = [r.u8('the magic'), r.u8('the magic'), r.u8('the magic'), r.u8('the magic')];
    if (String.fromCharCode(...magic) !== 'GGUF') throw invalid(file, 'not a GGUF file: it does not start with the magic "GGUF"');
    const version = r.u32('the GGUF header');
    if (version === 0x02000000 || version === 0x03000000) throw invalid(file, 'big-endian GGUF is not supported; convert the file to little-endian');
    if (version === 1) throw invalid(file, 'GGUF version 1 is not supported (it predates 64-bit counts); re-convert the model');
    if (version !== 2 && version !== 3) throw invalid(file, `unknown GGUF version ${version} (versions 2 and 3 are read)`);
    const nTensors = r.count('the tensor count');
    const nKv = r.count('the metadata count');
    if (nKv > (size - r.pos) / 13) throw invalid(file, `metadata count ${nKv} cannot fit in the file; the file is corrupt or truncated`);
    if (nTensors > (size - r.pos) / 28) throw invalid(file, `tensor count ${nTensors} cannot fit in the file; the file is corrupt or truncated`);

    const kv = new Map<string, GgufEntry>();
    for (let k = 0; k < nKv; k++) {
      const key = r.string(`the key of metadata entry ${k}`);
      if (key.length === 0) throw invalid(file, `metadata entry ${k} has an empty key`);
      const what = `metadata '${key}'`;
      const type = r.u32(what);
      if (type > 12) throw invalid(file, `${what} has value type ${type}, which GGUF does not define (0 to 12)`);
      let entry: GgufEntry;
      if (type === GgufValueType.ARRAY) {
        const elemType = r.u32(what);
        if (elemType > 12) throw invalid(file, `${what} is an array of value type ${elemType}, which GGUF does not define (0 to 12)`);
        if (elemType === GgufValueType.ARRAY) throw invalid(file, `${what} is an array of arrays, which is not supported`);
        const n = r.count(`the length of ${what}`);
        const minBytes = elemType === GgufValueType.STRING ? 8 : SCALAR_BYTES[elemType]!;
        if (n > (size - r.pos) / minBytes) throw invalid(file, `${what} claims ${n} elements, past the end of the file; the file is truncated or corrupt`);
        const items: GgufScalar[] = []; // grown as read: a corrupt count fails at the end of the file, not in an allocation
        for (let j = 0; j < n; j++) items.push(readScalar(r, elemType, what));
        entry = { type: GgufValueType.ARRAY, elemType: elemType as GgufValueTypeId, value: items };
      } else {
        entry = { type: type as GgufValueTypeId, value: readScalar(r, type, what) };
      }
      if (kv.has(key)) throw invalid(file, `metadata key '${key}' appears more than once`);
      kv.set(key, entry);
    }

    let alignment = 32;
    const a = kv.get('general.alignment');
    if (a) {
      if (a.type !== GgufValueType.UINT32) throw invalid(file, "metadata 'general.alignment' must be a uint32");
      const v = a.value as number;
      if (v === 0 || (v & (v - 1)) !== 0) throw invalid(file, `metadata 'general.alignment' is ${v}; it must be a power of two`);
      alignment = v;
    }

    const tensors: GgufTensorInfo[] = [];
    const names = new Set<string>();
    for (let k = 0; k < nTensors; k++) {
      const name = r.string(`the name of tensor ${k}`);
      const what = `tensor '${name}'`;
      if (names.has(name)) throw invalid(file, `${what} appears more than once`);
      names.add(name);
      const nDims = r.u32(`the info of ${what}`);
      if (nDims < 1 || nDims > 4) throw invalid(file, `${what} has ${nDims} dimensions (ggml allows 1 to 4)`);
      const shape: number[] = [];
      for (let d = 0; d < nDims; d++) shape.push(r.count(`the shape of ${what}`));
      const type = r.u32(`the info of ${what}`);
      const offset = r.count(`the offset of ${what}`);
      tensors.push({ name, shape, type, typeName: ggmlTypeName(type), offset });
    }
    const dataOffset = Math.ceil(r.pos / alignment) * alignment;
    return { path: file, version, fileSize: size, alignment, dataOffset, kv, tensors };
  } finally {
    closeSync(fd);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Typed metadata access

function get(meta: GgufMetadata, key: string): GgufValue | undefined {
  return meta.kv.get(key)?.value;
}

function num(meta: GgufMetadata, key: string): number | undefined {
  const v = get(meta, key);
  return typeof v === 'number' ? v : typeof v === 'bigint' ? Number(v) : undefined;
}

function str(meta: GgufMetadata, key: string): string | undefined {
  const v = get(meta, key);
  return typeof v === 'string' ? v : undefined;
}

function bool(meta: GgufMetadata, key: string): boolean | undefined {
  const v = get(meta, key);
  return typeof v === 'boolean' ? v : undefined;
}

/** The general.architecture string (undefined when absent). */
export function ggufArchitecture(meta: GgufMetadata): string | undefined {
  return str(meta, 'general.architecture');
}

/** Throws UnsupportedModelError (ERR_UNSUPPORTED_MODEL) naming the architecture unless it is nemotron_h. */
export function assertNemotronH(meta: GgufMetadata): void {
  const arch = ggufArchitecture(meta);
  if (arch === undefined) throw new ModelLoadError('ERR_INVALID_CONFIG', `${meta.path}: GGUF metadata: missing key 'general.architecture'`);
  if (arch !== 'nemotron_h' && arch !== 'nemotron_h_moe') {
    throw new UnsupportedModelError(
      `${meta.path}: general.architecture is ${JSON.stringify(arch)}; only "nemotron_h" (Nemotron-H / Nemotron Nano 2) and "nemotron_h_moe" (Nemotron-3) are supported`,
    );
  }
}

// ---------------------------------------------------------------------------------------------------------
// Tokenizer

/** llama.cpp token types (tokenizer.ggml.token_type). */
export const TokenType = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 } as const;

/**
 * Pre-tokenizer split patterns of the `tokenizer.ggml.pre` names llama.cpp uses, in Hugging Face's
 * tokenizer.json form. 'gpt-2' (and any name not listed) is the ByteLevel pre-tokenizer's own GPT-2
 * split. The case-insensitive contractions of the Llama-3 family are spelled out, as JS regexes have no
 * inline (?i:) group everywhere.
 */
const CONTRACTIONS_CI = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])";
const PRE_SPLIT: Readonly<Record<string, { pattern: string; ignoreMerges?: boolean }>> = {
  'llama-bpe': { pattern: `${CONTRACTIONS_CI}|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+`, ignoreMerges: true },
  'smaug-bpe': { pattern: `${CONTRACTIONS_CI}|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+` },
  qwen2: { pattern: `${CONTRACTIONS_CI}|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+` },
  tekken: {
    pattern:
      '[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+',
  },
};

function stringArray(meta: GgufMetadata, key: string): string[] | undefined {
  const e = meta.kv.get(key);
  if (!e) return undefined;
  if (e.type !== GgufValueType.ARRAY || e.elemType !== GgufValueType.STRING) {
    throw new ModelLoadError('ERR_INVALID_CONFIG', `${meta.path}: GGUF metadata: '${key}' must be an array of strings`);
  }
  return e.value as string[];
}

function numberArray(meta: GgufMetadata, key: string): number[] | undefined {
  const e = meta.kv.get(key);
  if (!e) return undefined;
  if (e.type !== GgufValueType.ARRAY || e.elemType === GgufValueType.STRING) {
    throw new ModelLoadError('ERR_INVALID_CONFIG', `${meta.path}: GGUF metadata: '${key}' must be an array of numbers`);
  }
  return (e.value as GgufScalar[]).map((x) => Number(x));
}

/** True when the file carries a tokenizer (tokenizer.ggml.tokens). */
export function hasGgufTokenizer(meta: GgufMetadata): boolean {
  return meta.kv.has('tokenizer.ggml.tokens');
}

/**
 * Builds a Hugging Face tokenizer.json and tokenizer_config.json from a GGUF's tokenizer metadata
 * (byte-level BPE, `tokenizer.ggml.model` "gpt2", as llama.cpp's converter writes it for nemotron_h):
 * the vocabulary from tokenizer.ggml.tokens (ids are positions), merges from tokenizer.ggml.merges,
 * CONTROL and UNKNOWN tokens as special added tokens and USER_DEFINED ones as non-special added tokens,
 * the pre-tokenizer from tokenizer.ggml.pre, BOS/EOS added as add_bos_token/add_eos_token say, and the
 * chat template from tokenizer.chat_template. Throws ModelLoadError (ERR_INVALID_CONFIG) when the
 * metadata is absent or inconsistent, UnsupportedModelError for another tokenizer model.
 */
export function tokenizerFromGguf(meta: GgufMetadata): { tokenizerJson: Record<string, unknown>; tokenizerConfig: Record<string, unknown> } {
  const fail = (what: string): ModelLoadError => new ModelLoadError('ERR_INVALID_CONFIG', `${meta.path}: GGUF tokenizer metadata: ${what}`);
  const model = str(meta, 'tokenizer.ggml.model');
  if (model === undefined) throw fail("missing 'tokenizer.ggml.model'");
  if (model !== 'gpt2') {
    throw new UnsupportedModelError(`${meta.path}: tokenizer.ggml.model is ${JSON.stringify(model)}; only byte-level BPE ("gpt2") tokenizers are supported`);
  }
  const tokens = stringArray(meta, 'tokenizer.ggml.tokens');
  if (!tokens || tokens.length === 0) throw fail("missing or empty 'tokenizer.ggml.tokens'");
  const types = numberArray(meta, 'tokenizer.ggml.token_type') ?? [];
  if (types.length !== 0 && types.length !== tokens.length) {
    throw fail(`tokenizer.ggml.token_type has ${types.length} entries but tokenizer.ggml.tokens has ${tokens.length}`);
  }
  const merges = stringArray(meta, 'tokenizer.ggml.merges') ?? [];

  const vocab = new Map<string, number>();
  const added: Array<Record<string, unknown>> = [];
  const addedDecoder: Record<string, Record<string, unknown>> = {};
  tokens.forEach((tok, id) => {
    if (!vocab.has(tok)) vocab.set(tok, id); // a repeated string (padding) keeps its first id
    const type = types[id] ?? TokenType.NORMAL;
    if (type === TokenType.CONTROL || type === TokenType.UNKNOWN || type === TokenType.USER_DEFINED) {
      const special = type !== TokenType.USER_DEFINED;
      const entry = { content: tok, single_word: false, lstrip: false, rstrip: false, normalized: false, special };
      added.push({ id, ...entry });
      addedDecoder[String(id)] = entry;
    }
  });
  const mergePairs = merges.map((m, i) => {
    const sp = m.indexOf(' ');
    if (sp <= 0 || sp === m.length - 1) throw fail(`tokenizer.ggml.merges[${i}] is ${JSON.stringify(m)}; expected "left right"`);
    return [m.slice(0, sp), m.slice(sp + 1)];
  });

  const tokenAt = (key: string): { id: number; text: string } | undefined => {
    const id = num(meta, key);
    if (id === undefined) return undefined;
    if (!Number.isInteger(id) || id < 0 || id >= tokens.length) throw fail(`${key} is ${id}, outside the vocabulary of ${tokens.length} tokens`);
    return { id, text: tokens[id]! };
  };
  const bos = tokenAt('tokenizer.ggml.bos_token_id');
  const eos = tokenAt('tokenizer.ggml.eos_token_id');
  const unk = tokenAt('tokenizer.ggml.unknown_token_id');
  const pad = tokenAt('tokenizer.ggml.padding_token_id');
  // llama.cpp's default for BPE vocabularies: add BOS unless told otherwise; never EOS.
  const addBos = (bool(meta, 'tokenizer.ggml.add_bos_token') ?? true) && bos !== undefined;
  const addEos = (bool(meta, 'tokenizer.ggml.add_eos_token') ?? false) && eos !== undefined;

  const pre = str(meta, 'tokenizer.ggml.pre') ?? 'default';
  const split = PRE_SPLIT[pre];
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: split === undefined };
  const preTokenizer = split
    ? { type: 'Sequence', pretokenizers: [{ type: 'Split', pattern: { Regex: split.pattern }, behavior: 'Isolated', invert: false }, byteLevel] }
    : byteLevel;

  let postProcessor: Record<string, unknown> | null = null;
  if (addBos || addEos) {
    const seq = (id: 'A' | 'B', typeId: number): Array<Record<string, unknown>> => [
      ...(addBos ? [{ SpecialToken: { id: bos!.text, type_id: typeId } }] : []),
      { Sequence: { id, type_id: typeId } },
      ...(addEos ? [{ SpecialToken: { id: eos!.text, type_id: typeId } }] : []),
    ];
    const specials: Record<string, unknown> = {};
    for (const t of [addBos ? bos : undefined, addEos ? eos : undefined]) {
      if (t) specials[t.text] = { id: t.text, ids: [t.id], tokens: [t.text] };
    }
    postProcessor = { type: 'TemplateProcessing', single: seq('A', 0), pair: [...seq('A', 0), ...seq('B', 1)], special_tokens: specials };
  }

  const tokenizerJson: Record<string, unknown> = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: null,
    pre_tokenizer: preTokenizer,
    post_processor: postProcessor,
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: split?.ignoreMerges ?? false,
      vocab: Object.fromEntries(vocab), // own properties even for a token spelled "__proto__"
      merges: mergePairs,
    },
  };

  const tokenizerConfig: Record<string, unknown> = {
    add_bos_token: addBos,
    add_eos_token: addEos,
    added_tokens_decoder: addedDecoder,
    clean_up_tokenization_spaces: false,
    tokenizer_class: 'PreTrainedTokenizerFast',
  };
  if (bos) tokenizerConfig.bos_token = bos.text;
  if (eos) tokenizerConfig.eos_token = eos.text;
  if (unk) tokenizerConfig.unk_token = unk.text;
  if (pad) tokenizerConfig.pad_token = pad.text;
  const template = str(meta, 'tokenizer.chat_template');
  const named = [...meta.kv.keys()].filter((k) => k.startsWith('tokenizer.chat_template.') && typeof get(meta, k) === 'string');
  if (named.length > 0) {
    // Several templates: HF's list form, the plain one named "default".
    tokenizerConfig.chat_template = [
      ...(template !== undefined ? [{ name: 'default', template }] : []),
      ...named.map((k) => ({ name: k.slice('tokenizer.chat_template.'.length), template: get(meta, k) as string })),
    ];
  } else if (template !== undefined) {
    tokenizerConfig.chat_template = template;
  }
  const ctx = num(meta, `${ggufArchitecture(meta) ?? 'nemotron_h'}.context_length`);
  if (ctx !== undefined) tokenizerConfig.model_max_length = ctx;
  return { tokenizerJson, tokenizerConfig };
}

// ---------------------------------------------------------------------------------------------------------
// Config for the memory planner

/**
 * An HF-style config (config.json keys) for lib/memory.ts planMemory, from a nemotron_h GGUF's metadata
 * (architecture.md §7): the layer pattern from the per-layer head_count_kv / feed_forward_length arrays
 * (recurrent when both are 0, attention when only the FFN is 0, MLP otherwise), sizes of each kind
 * from its layers, head_dim = key_length, mamba_num_heads = ssm.time_step_rank, mamba_head_dim =
 * ssm.inner_size / time_step_rank, vocab from the token list (else vocab_size, else token_embd's rows),
 * tie_word_embeddings when there is no output.weight. Keys that cannot be derived are left out (the
 * planner then reports them; the native loader names the precise problem). Throws UnsupportedModelError
 * for another architecture.
 */
export function ggufConfigForPlan(meta: GgufMetadata): Record<string, unknown> {
  assertNemotronH(meta);
  const arch = ggufArchitecture(meta) as 'nemotron_h' | 'nemotron_h_moe';
  const moe = arch === 'nemotron_h_moe';
  const k = (s: string): string => `${arch}.${s}`;
  // trailing multi-token-prediction blocks (nextn_predict_layers) are not run: the native loader drops them
  const blocks = num(meta, k('block_count'));
  const n = blocks === undefined ? undefined : blocks - (num(meta, k('nextn_predict_layers')) ?? 0);
  const perLayer = (key: string): number[] | undefined => {
    const e = meta.kv.get(k(key));
    if (!e || n === undefined) return undefined;
    if (e.type === GgufValueType.ARRAY) {
      const a = (e.value as GgufScalar[]).map((x) => Number(x));
      return blocks !== undefined && a.length === blocks ? a.slice(0, n) : undefined;
    }
    const x = num(meta, k(key));
    return x === undefined ? undefined : new Array<number>(n).fill(x);
  };
  const ff = perLayer('feed_forward_length');
  const kvh = perLayer('attention.head_count_kv');
  const qh = perLayer('attention.head_count');
  const out: Record<string, unknown> = { architectures: ['NemotronHForCausalLM'], model_type: 'nemotron_h' };
  let pattern = '';
  if (ff && kvh) {
    for (let i = 0; i < ff.length; i++) pattern += kvh[i] === 0 && ff[i] === 0 ? 'M' : ff[i] === 0 ? '*' : moe ? 'E' : '-';
    out.hybrid_override_pattern = pattern;
    out.num_hidden_layers = pattern.length;
    const first = (a: number[] | undefined, kind: string): number | undefined => {
      const i = pattern.indexOf(kind);
      return a && i >= 0 ? a[i] : undefined;
    };
    out.intermediate_size = first(ff, '-');
    if (moe) {
      out.n_routed_experts = num(meta, k('expert_count'));
      out.num_experts_per_tok = num(meta, k('expert_used_count'));
      out.moe_intermediate_size = num(meta, k('expert_feed_forward_length')) ?? first(ff, 'E');
      out.n_shared_experts = num(meta, k('expert_shared_count')) ?? 1;
      out.moe_shared_expert_intermediate_size = num(meta, k('expert_shared_feed_forward_length'));
    }
    out.num_key_value_heads = first(kvh, '*');
    out.num_attention_heads = first(qh, '*');
  }
  out.hidden_size = num(meta, k('embedding_length'));
  out.head_dim = num(meta, k('attention.key_length'));
  const inner = num(meta, k('ssm.inner_size'));
  const heads = num(meta, k('ssm.time_step_rank'));
  if (heads !== undefined) out.mamba_num_heads = heads;
  if (inner !== undefined && heads) out.mamba_head_dim = inner / heads;
  out.ssm_state_size = num(meta, k('ssm.state_size'));
  out.n_groups = num(meta, k('ssm.group_count'));
  out.conv_kernel = num(meta, k('ssm.conv_kernel'));
  out.layer_norm_epsilon = num(meta, k('attention.layer_norm_rms_epsilon'));
  out.max_position_embeddings = num(meta, k('context_length'));
  const embd = meta.tensors.find((t) => t.name === 'token_embd.weight');
  const tokens = meta.kv.get('tokenizer.ggml.tokens');
  out.vocab_size = tokens && Array.isArray(tokens.value) ? tokens.value.length : (num(meta, k('vocab_size')) ?? embd?.shape[1]);
  out.tie_word_embeddings = !meta.tensors.some((t) => t.name === 'output.weight');
  out.use_conv_bias = !pattern.includes('M') || meta.tensors.some((t) => t.name.endsWith('.ssm_conv1d.bias'));
  out.chunk_size = 128;
  out.bos_token_id = num(meta, 'tokenizer.ggml.bos_token_id');
  out.eos_token_id = num(meta, 'tokenizer.ggml.eos_token_id');
  for (const key of Object.keys(out)) if (out[key] === undefined) delete out[key];
  return out;
}
