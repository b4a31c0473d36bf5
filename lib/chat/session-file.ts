/**
 * The on-disk format of a saved chat session, and the model fingerprint that ties a session to its model.
 *
 * A session file holds the engine's opaque native state blob (Mamba conv/SSM state and KV rows, produced by
 * native code), the token history the state belongs to, and JS-side metadata (messages, options...). Restoring
 * it must reproduce the saved state bit-exactly, so the format detects truncation anywhere and the change of any
 * single byte, and refuses a session saved with another model.
 *
 * Layout, format version 1 (all integers little-endian):
 *
 *   offset          size   content
 *   0               8      magic "NEMOSESS"
 *   8               4      u32 format version (1)
 *   12              4      u32 H: byte length of the header JSON
 *   16              H      header JSON, UTF-8: {"fingerprint": "<64 hex>", "tokenCount": T, "stateBytes": S,
 *                          "meta": {...}} (other keys are ignored by readers of version 1)
 *   16+H            P      zero padding, so the tokens start on a multiple of 8 (P = (8 - (16+H) % 8) % 8)
 *   A = 16+H+P      4*T    tokens, int32
 *   A+4T            S      the native state blob, verbatim
 *   E = A+4T+S      8      end marker "NEMOEND\0"
 *   E+8             32     sha-256 of bytes [0, E): everything before the end marker
 *
 * The file size is exactly E + 40. Integrity: the sha-256 in the trailer covers every byte before it (magic,
 * version, header, padding, tokens, state), so any change there is detected; a change in the trailer either
 * damages the end marker or the recorded digest; truncation is detected because the header's counts
 * (checked against the file size) and the trailer's position no longer agree with the file. That the file
 * ends with "NEMOEND\0" + the sha-256 of everything before it is an invariant of every format version, so a
 * reader checks it before interpreting the version: a damaged version field reads as corruption, not as
 * "written by a newer version".
 *
 * The sha-256 detects damage only (a flipped bit, a truncated copy), not tampering: anyone who edits a file can
 * recompute it. A session file is trusted input, like a checkpoint. Loading still refuses what cannot run
 * (token ids outside the vocabulary, a token list that does not match the state, NaN or Inf in the state), but
 * a consistent forged file (other tokens with a state computed for them) loads as what it claims to be.
 *
 * Writes are atomic: the file is written under a temporary name in the same folder, fsynced, renamed over the
 * target and the folder is fsynced (best effort); on failure the temporary file is removed, so `path` holds
 * either its previous content or the complete new file, never a partial one. A writer killed outright
 * (SIGKILL, power loss) cannot remove its temporary file; the next save to the same path removes the
 * temporaries of writers that are no longer running (the pid in the name is not alive). The state blob (possibly
 * hundreds of MB) is written straight from the caller's memory, never copied or text-encoded, and hashed
 * incrementally while it is written.
 */

import { createHash, randomBytes, type Hash } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import { constants as bufferConstants } from 'node:buffer';
import os from 'node:os';
import path from 'node:path';

import { InvalidArgumentError, ModelLoadError, NemotronError, SessionFileError } from '../errors.js';
import { readGgufMetadata } from '../gguf/reader.js';

export const SESSION_FILE_MAGIC = 'NEMOSESS';
export const SESSION_FILE_VERSION = 1;
/** The 8-byte end marker that precedes the trailing sha-256. */
export const SESSION_FILE_END_MAGIC = 'NEMOEND\0';

export interface SessionFileContent {
  /** hex sha-256 identifying the model (see modelFingerprint); must match at load */
  modelFingerprint: string;
  /** token history of the sequence the state belongs to */
  tokens: Int32Array;
  /** opaque native state blob; written verbatim */
  state: Uint8Array;
  /** JSON-serialisable data: messages, options, created time, library version... */
  meta: Record<string, unknown>;
}

/** The few file-system calls writeSessionFile makes; `node:fs/promises` by default (replaceable for tests). */
export interface SessionFileSystem {
  open(path: string, flags: string, mode?: number): Promise<SessionFileHandle>;
  rename(oldPath: string, newPath: string): Promise<void>;
  unlink(path: string): Promise<void>;
}

export interface SessionFileHandle {
  write(buffer: Uint8Array, offset: number, length: number, position: number): Promise<{ bytesWritten: number }>;
  sync(): Promise<void>;
  close(): Promise<void>;
}

export interface WriteSessionFileOptions {
  /** file-system implementation (tests inject failures through it). Default: node:fs/promises. */
  fs?: SessionFileSystem;
}

const MAGIC = Buffer.from(SESSION_FILE_MAGIC, 'latin1');
const END_MAGIC = Buffer.from(SESSION_FILE_END_MAGIC, 'latin1');
const PREFIX_BYTES = 16; // magic + version + header length
const TRAILER_BYTES = END_MAGIC.length + 32;
const FINGERPRINT_RE = /^[0-9a-f]{64}$/;
const LITTLE_ENDIAN = os.endianness() === 'LE';
/** Slice size for writing/reading big blobs: hashing one slice overlaps the I/O of the same slice. */
const IO_CHUNK = 16 * 1024 * 1024;

// ---------------------------------------------------------------------------------------------------------
// helpers

function short(hex: string): string {
  return `${hex.slice(0, 12)}…`;
}

/** A few bytes as text when printable ASCII, else hex. */
function showBytes(b: Uint8Array): string {
  if (b.length === 0) return 'nothing';
  const printable = b.every((c) => c >= 0x20 && c < 0x7f);
  return printable ? JSON.stringify(Buffer.from(b).toString('latin1')) : `bytes 0x${Buffer.from(b).toString('hex')}`;
}

function showValue(v: unknown): string {
  if (v === undefined) return 'nothing (the key is missing)';
  try {
    const s = JSON.stringify(v);
    return s.length > 80 ? `${s.slice(0, 80)}…` : s;
  } catch {
    return typeof v;
  }
}

function invalidArg(message: string): InvalidArgumentError {
  return new InvalidArgumentError('ERR_INVALID_ARGUMENT', message);
}

function isPlainRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A Buffer over the same memory as `a` (no copy). */
function view(a: ArrayBufferView): Buffer {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength);
}

/** Token bytes in file order (int32 little-endian): a view of the array's memory on little-endian hosts. */
function tokenBytes(tokens: Int32Array): Buffer {
  if (LITTLE_ENDIAN) return view(tokens);
  const out = Buffer.allocUnsafe(tokens.length * 4);
  for (let i = 0; i < tokens.length; i++) out.writeInt32LE(tokens[i]!, i * 4);
  return out;
}

function checkContent(content: SessionFileContent, fn: string): void {
  if (!isPlainRecord(content)) throw invalidArg(`${fn}: content must be an object; got ${showValue(content)}`);
  const fp: unknown = content.modelFingerprint;
  if (typeof fp !== 'string' || !FINGERPRINT_RE.test(fp)) {
    throw invalidArg(`${fn}: content.modelFingerprint must be a 64-digit lowercase hex sha-256; got ${showValue(fp)}`);
  }
  if (!(content.tokens instanceof Int32Array)) {
    throw invalidArg(`${fn}: content.tokens must be an Int32Array; got ${describeType(content.tokens)}`);
  }
  if (!(content.state instanceof Uint8Array)) {
    throw invalidArg(`${fn}: content.state must be a Uint8Array; got ${describeType(content.state)}`);
  }
  if (!isPlainRecord(content.meta)) {
    throw invalidArg(`${fn}: content.meta must be a JSON object; got ${describeType(content.meta)}`);
  }
}

function describeType(v: unknown): string {
  if (v === null) return 'null';
  if (typeof v === 'object') return (v as object).constructor?.name ?? 'object';
  return typeof v;
}

interface Encoded {
  /** magic, version, header length, header JSON, padding */
  prefix: Buffer;
  tokens: Buffer;
  state: Buffer;
}

function encodeBody(content: SessionFileContent, fn: string): Encoded {
  checkContent(content, fn);
  const header = {
    fingerprint: content.modelFingerprint,
    tokenCount: content.tokens.length,
    stateBytes: content.state.byteLength,
    meta: content.meta,
  };
  let json: string;
  try {
    json = JSON.stringify(header);
  } catch (e) {
    throw new InvalidArgumentError('ERR_INVALID_ARGUMENT', `${fn}: content.meta cannot be written as JSON: ${(e as Error).message}`, { cause: e });
  }
  const headerLen = Buffer.byteLength(json, 'utf8');
  if (headerLen > 0xffffffff) throw invalidArg(`${fn}: content.meta is too large (${headerLen} bytes of JSON; at most 4 GiB)`);
  const headerEnd = PREFIX_BYTES + headerLen;
  const pad = (8 - (headerEnd % 8)) % 8;
  const prefix = Buffer.alloc(headerEnd + pad); // zero-filled: the padding is zeros
  MAGIC.copy(prefix, 0);
  prefix.writeUInt32LE(SESSION_FILE_VERSION, 8);
  prefix.writeUInt32LE(headerLen, 12);
  prefix.write(json, PREFIX_BYTES, 'utf8');
  return { prefix, tokens: tokenBytes(content.tokens), state: view(content.state) };
}

function trailerOf(digest: Buffer): Buffer {
  return Buffer.concat([END_MAGIC, digest]);
}

// ---------------------------------------------------------------------------------------------------------
// encode / decode in memory

/**
 * The file's bytes as chunks in file order: [prefix (magic, version, header length, header, padding), tokens,
 * state, trailer]. The tokens (on little-endian hosts) and state chunks are views of the caller's memory.
 */
export function encodeSessionFile(content: SessionFileContent): Buffer[] {
  const { prefix, tokens, state } = encodeBody(content, 'encodeSessionFile');
  const hash = createHash('sha256').update(prefix).update(tokens).update(state);
  return [prefix, tokens, state, trailerOf(hash.digest())];
}

/**
 * Parses and verifies a whole session file held in memory. Throws SessionFileError when the bytes are not a
 * complete, intact session file of a supported version saved with the model `expectedFingerprint`.
 * The returned `state` is a view of `bytes` (no copy); `tokens` is a fresh array.
 * `label` names the source in messages (a path); default "session file".
 */
export function decodeSessionFile(bytes: Uint8Array, expectedFingerprint: string, label?: string): SessionFileContent {
  if (!(bytes instanceof Uint8Array)) throw invalidArg(`decodeSessionFile: bytes must be a Uint8Array; got ${describeType(bytes)}`);
  checkExpected(expectedFingerprint, 'decodeSessionFile');
  return decodeVerified(bytes, expectedFingerprint, label ?? 'session file', undefined);
}

function checkExpected(expectedFingerprint: unknown, fn: string): void {
  if (typeof expectedFingerprint !== 'string' || !FINGERPRINT_RE.test(expectedFingerprint)) {
    throw invalidArg(`${fn}: expectedFingerprint must be a 64-digit lowercase hex sha-256; got ${showValue(expectedFingerprint)}`);
  }
}

/**
 * `bodyDigest`, when given, is the sha-256 of bytes [0, length - 40) computed while reading the file.
 */
function decodeVerified(b: Uint8Array, expected: string, label: string, bodyDigest: Buffer | undefined): SessionFileContent {
  const fail = (msg: string): SessionFileError => new SessionFileError(`${label}: ${msg}`);
  const n = b.length;
  const buf = view(b);

  // 1. magic
  const m = Math.min(n, MAGIC.length);
  if (!buf.subarray(0, m).equals(MAGIC.subarray(0, m))) {
    throw fail(`not a nemotron-node session file (expected it to start with "${SESSION_FILE_MAGIC}", found ${showBytes(buf.subarray(0, m))})`);
  }
  const minSize = PREFIX_BYTES + TRAILER_BYTES;
  if (n < minSize) {
    throw fail(`the file is truncated: it is ${n} bytes long, a session file has at least ${minSize} bytes`);
  }

  // 2. trailer (every format version ends with END_MAGIC + sha-256 of everything before it)
  const bodyEnd = n - TRAILER_BYTES;
  const trailerFound = buf.subarray(bodyEnd, bodyEnd + END_MAGIC.length).equals(END_MAGIC);
  if (trailerFound) {
    const digest = bodyDigest ?? createHash('sha256').update(buf.subarray(0, bodyEnd)).digest();
    const recorded = buf.subarray(bodyEnd + END_MAGIC.length);
    if (!digest.equals(recorded)) {
      throw fail(
        `checksum mismatch: the file is corrupted (the sha-256 of its first ${bodyEnd} bytes is ` +
          `${short(digest.toString('hex'))}, the trailer records ${short(recorded.toString('hex'))})`,
      );
    }
  }

  // 3. version
  const version = buf.readUInt32LE(8);
  if (version !== SESSION_FILE_VERSION) {
    const newer = version > SESSION_FILE_VERSION ? ': it was written by a newer nemotron-node; upgrade to read it' : '';
    throw fail(`unsupported session file version ${version} (this library reads version ${SESSION_FILE_VERSION})${newer}`);
  }

  // 4. header
  const headerLen = buf.readUInt32LE(12);
  const headerEnd = PREFIX_BYTES + headerLen;
  if (headerEnd > n) {
    throw fail(`the file is truncated: its header is ${headerLen} bytes long, which runs past the end of the file (${n} bytes)`);
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(buf.subarray(PREFIX_BYTES, headerEnd));
  } catch {
    throw fail('header JSON invalid: it is not valid UTF-8');
  }
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch (e) {
    throw fail(`header JSON invalid: ${(e as Error).message}`);
  }
  if (!isPlainRecord(header)) throw fail(`header JSON invalid: expected an object, found ${showValue(header)}`);
  const { fingerprint, tokenCount, stateBytes, meta } = header;
  if (typeof fingerprint !== 'string' || !FINGERPRINT_RE.test(fingerprint)) {
    throw fail(`header JSON invalid: "fingerprint" must be a 64-digit hex sha-256, found ${showValue(fingerprint)}`);
  }
  for (const [key, v] of [['tokenCount', tokenCount], ['stateBytes', stateBytes]] as const) {
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
      throw fail(`header JSON invalid: "${key}" must be a non-negative integer, found ${showValue(v)}`);
    }
  }
  if (!isPlainRecord(meta)) throw fail(`header JSON invalid: "meta" must be an object, found ${showValue(meta)}`);
  const T = tokenCount as number;
  const S = stateBytes as number;

  // 5. the header's counts against the file size
  const pad = (8 - (headerEnd % 8)) % 8;
  const tokensStart = headerEnd + pad;
  const stateStart = tokensStart + 4 * T;
  const stateEnd = stateStart + S;
  const size = stateEnd + TRAILER_BYTES;
  const described = `${Number.isSafeInteger(size) ? size : 'more than 2^53'} bytes (${T} tokens, ${S} state bytes)`;
  if (!Number.isSafeInteger(size) || size !== n) {
    if (trailerFound) {
      throw fail(`counts inconsistent: the header describes ${described} but the file has ${n} bytes`);
    }
    if (!Number.isSafeInteger(size) || size > n) {
      throw fail(`the file is truncated: the header describes ${described} but the file has only ${n} bytes`);
    }
    throw fail(
      `the file is longer than its header describes: ${described} expected, the file has ${n} bytes ` +
        `(${n - size} unexpected bytes at the end, or the file is corrupted)`,
    );
  }
  if (!trailerFound) {
    throw fail(
      `the end marker is damaged: the file is corrupted (expected "NEMOEND\\0" at byte ${bodyEnd}, ` +
        `found ${showBytes(buf.subarray(bodyEnd, bodyEnd + END_MAGIC.length))})`,
    );
  }
  for (let i = headerEnd; i < tokensStart; i++) {
    if (buf[i] !== 0) throw fail(`the padding after the header is not zero at byte ${i}: the file is corrupted`);
  }

  // 6. the model
  if (fingerprint !== expected) {
    throw fail(`this session was saved with a different model (fingerprint ${short(fingerprint)}, this model ${short(expected)})`);
  }

  const tokens = new Int32Array(T);
  if (LITTLE_ENDIAN) {
    new Uint8Array(tokens.buffer).set(buf.subarray(tokensStart, stateStart));
  } else {
    for (let i = 0; i < T; i++) tokens[i] = buf.readInt32LE(tokensStart + 4 * i);
  }
  return { modelFingerprint: fingerprint, tokens, state: b.subarray(stateStart, stateEnd), meta };
}

// ---------------------------------------------------------------------------------------------------------
// files

async function writeFully(fh: SessionFileHandle, data: Uint8Array, position: number): Promise<void> {
  let off = 0;
  while (off < data.length) {
    const { bytesWritten } = await fh.write(data, off, data.length - off, position + off);
    if (!(bytesWritten > 0)) throw new Error(`write returned ${bytesWritten} bytes at offset ${position + off}`);
    off += bytesWritten;
  }
}

/** Writes `data` at `position` slice by slice, hashing each slice while it is being written. */
async function writeHashed(fh: SessionFileHandle, data: Uint8Array, position: number, hash: Hash): Promise<number> {
  for (let off = 0; off < data.length; off += IO_CHUNK) {
    const slice = data.subarray(off, Math.min(data.length, off + IO_CHUNK));
    const pending = writeFully(fh, slice, position + off);
    hash.update(slice); // synchronous: runs while the thread pool writes the same slice
    await pending;
  }
  return position + data.length;
}

/** Whether a process with this pid exists (EPERM: it does, owned by another user). */
function pidAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes `<target>.tmp-<pid>-<12 hex>` files whose writer is no longer running: what a save killed with
 * SIGKILL (or a crash) leaves behind. Best effort: a folder that cannot be listed is left alone. Another
 * host writing the same folder over a network file system could own a pid not alive here; such setups
 * should not share a session path.
 */
async function removeStaleTemporaries(filePath: string): Promise<void> {
  const dir = path.dirname(path.resolve(filePath));
  const base = path.basename(filePath);
  let names: string[];
  try {
    names = await fsp.readdir(dir);
  } catch {
    return;
  }
  const re = /^\.tmp-(\d+)-[0-9a-f]{12}$/;
  for (const name of names) {
    if (!name.startsWith(base)) continue;
    const m = re.exec(name.slice(base.length));
    if (!m) continue;
    const pid = Number(m[1]);
    if (!Number.isSafeInteger(pid) || pid <= 0 || pidAlive(pid)) continue;
    await fsp.unlink(path.join(dir, name)).catch(() => {});
  }
}

/**
 * Checks the token ids of a decoded session against the model's vocabulary; throws SessionFileError naming
 * the first bad one. (The checksum cannot catch an edited id: it is recomputed by whoever edits the file.)
 */
export function checkSessionTokens(tokens: Int32Array, vocabSize: number, label: string): void {
  for (let i = 0; i < tokens.length; i++) {
    const id = tokens[i]!;
    if (id < 0 || id >= vocabSize) {
      throw new SessionFileError(`${label}: token ${i} is ${id}, outside the model's vocabulary [0, ${vocabSize}): the file was edited or belongs to another model`);
    }
  }
}

/**
 * Writes a session file atomically: `path` ends up holding either its previous content or the complete new
 * file. Throws InvalidArgumentError for invalid content and SessionFileError (with the system error as
 * `cause`) when the file cannot be written. The state must not be modified while the write is in progress.
 * The file is created with mode 0600 (chat transcripts are private).
 */
export async function writeSessionFile(
  filePath: string,
  content: SessionFileContent,
  options: WriteSessionFileOptions = {},
): Promise<void> {
  if (typeof filePath !== 'string' || filePath.length === 0) {
    throw invalidArg(`writeSessionFile: path must be a non-empty string; got ${showValue(filePath)}`);
  }
  const { prefix, tokens, state } = encodeBody(content, 'writeSessionFile');
  const fsys: SessionFileSystem = options.fs ?? fsp;
  await removeStaleTemporaries(filePath);
  const tmp = `${filePath}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`;
  let fh: SessionFileHandle | undefined;
  let created = false;
  try {
    fh = await fsys.open(tmp, 'wx', 0o600);
    created = true;
    const hash = createHash('sha256');
    let pos = 0;
    pos = await writeHashed(fh, prefix, pos, hash);
    pos = await writeHashed(fh, tokens, pos, hash);
    pos = await writeHashed(fh, state, pos, hash);
    await writeFully(fh, trailerOf(hash.digest()), pos);
    await fh.sync();
    const h = fh;
    fh = undefined;
    await h.close();
    await fsys.rename(tmp, filePath);
    created = false;
  } catch (e) {
    if (fh !== undefined) await fh.close().catch(() => {});
    if (created) await fsys.unlink(tmp).catch(() => {});
    if (e instanceof NemotronError) throw e;
    throw new SessionFileError(`cannot write session file ${filePath}: ${(e as Error)?.message ?? String(e)}`, { cause: e });
  }
  // Make the rename durable (best effort: not every platform can open or fsync a folder).
  try {
    const dir = await fsys.open(path.dirname(path.resolve(filePath)), 'r');
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
  } catch {
    // ignored
  }
}

/**
 * Reads and verifies a session file saved with the model `expectedFingerprint` (see decodeSessionFile).
 * The returned state is a view of a buffer holding the whole file.
 */
export async function readSessionFile(filePath: string, expectedFingerprint: string): Promise<SessionFileContent> {
  if (typeof filePath !== 'string' || filePath.length === 0) {
    throw invalidArg(`readSessionFile: path must be a non-empty string; got ${showValue(filePath)}`);
  }
  checkExpected(expectedFingerprint, 'readSessionFile');
  const label = `session file ${filePath}`;
  let fh: fsp.FileHandle;
  try {
    fh = await fsp.open(filePath, 'r');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new SessionFileError(`no session file at ${filePath}`, { cause: e });
    throw new SessionFileError(`cannot read ${label}: ${(e as Error).message}`, { cause: e });
  }
  try {
    let bytes: Buffer;
    let digest: Buffer | undefined;
    try {
      const st = await fh.stat();
      if (!st.isFile()) throw new SessionFileError(`${filePath} is not a file (a session file was expected)`);
      if (st.size > bufferConstants.MAX_LENGTH) {
        throw new SessionFileError(`${label}: the file is ${st.size} bytes, more than this platform can hold in one buffer (${bufferConstants.MAX_LENGTH})`);
      }
      bytes = Buffer.allocUnsafeSlow(st.size);
      // Read slice by slice, hashing [0, size - 40) as it arrives (the hash of one slice overlaps the next read).
      const bodyEnd = st.size - TRAILER_BYTES;
      const hash = bodyEnd >= 0 ? createHash('sha256') : undefined;
      let got = 0;
      let hashed = 0;
      const readSlice = async (at: number): Promise<number> => {
        const end = Math.min(st.size, at + IO_CHUNK);
        let off = at;
        while (off < end) {
          const { bytesRead } = await fh.read(bytes, off, end - off, off);
          if (bytesRead === 0) break; // the file shrank while being read
          off += bytesRead;
        }
        return off;
      };
      let pending = st.size > 0 ? readSlice(0) : Promise.resolve(0);
      while (got < st.size) {
        const end = await pending;
        if (end < Math.min(st.size, got + IO_CHUNK)) {
          throw new SessionFileError(`${label}: the file is truncated: it shrank to ${end} bytes while being read`);
        }
        const start = got;
        got = end;
        if (got < st.size) pending = readSlice(got);
        if (hash !== undefined) {
          const hEnd = Math.min(end, bodyEnd);
          if (hEnd > hashed) hash.update(bytes.subarray(Math.max(start, hashed), hEnd));
          hashed = Math.max(hashed, hEnd);
        }
      }
      digest = hash?.digest();
    } catch (e) {
      if (e instanceof NemotronError) throw e;
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EISDIR') throw new SessionFileError(`${filePath} is a folder, not a session file`, { cause: e });
      throw new SessionFileError(`cannot read ${label}: ${(e as Error).message}`, { cause: e });
    }
    return decodeVerified(bytes, expectedFingerprint, label, digest);
  } finally {
    await fh.close().catch(() => {});
  }
}

// ---------------------------------------------------------------------------------------------------------
// model fingerprint

export interface ModelFingerprintInput {
  /** the model config as a value: fingerprinted as canonical JSON (keys sorted). Give this or configText. */
  config?: unknown;
  /** the raw text of config.json (which may contain bare Infinity): fingerprinted verbatim. */
  configText?: string;
  /**
   * weight files: name, size in bytes, optionally the safetensors header bytes and optionally `samples`, bytes
   * read from the tensor data (fingerprintCheckpoint: sampleTensorData). Order does not matter.
   */
  weightFiles: Array<{ name: string; size: number; header?: Uint8Array; samples?: Uint8Array }>;
}

/** JSON with object keys sorted; non-finite numbers as Infinity / -Infinity / NaN (as config.json writes them). */
function canonicalJson(v: unknown, stack: object[], where: string): string | undefined {
  if (v === null) return 'null';
  switch (typeof v) {
    case 'string':
      return JSON.stringify(v);
    case 'boolean':
      return v ? 'true' : 'false';
    case 'number':
      if (Number.isNaN(v)) return 'NaN';
      if (v === Infinity) return 'Infinity';
      if (v === -Infinity) return '-Infinity';
      return JSON.stringify(v);
    case 'undefined':
    case 'function':
    case 'symbol':
      return undefined;
    case 'bigint':
      throw invalidArg(`modelFingerprint: config${where} is a bigint, which JSON cannot hold`);
    default:
      break;
  }
  const obj = v as { toJSON?: unknown };
  if (typeof obj.toJSON === 'function') return canonicalJson((obj.toJSON as () => unknown)(), stack, where);
  if (stack.includes(obj)) throw invalidArg(`modelFingerprint: config${where} refers to itself (a cycle)`);
  stack.push(obj);
  let out: string;
  if (Array.isArray(obj)) {
    out = `[${obj.map((x, i) => canonicalJson(x, stack, `${where}[${i}]`) ?? 'null').join(',')}]`;
  } else {
    const parts: string[] = [];
    for (const k of Object.keys(obj).sort()) {
      const s = canonicalJson((obj as Record<string, unknown>)[k], stack, `${where}.${k}`);
      if (s !== undefined) parts.push(`${JSON.stringify(k)}:${s}`);
    }
    out = `{${parts.join(',')}}`;
  }
  stack.pop();
  return out;
}

/**
 * A hex sha-256 identifying a model: its config (canonical JSON of `config`, or the raw `configText`) and its
 * weight files' names, sizes, safetensors headers (which change whenever a tensor's name, shape, dtype or
 * offset changes) and the weight samples given. The two config forms give different
 * fingerprints for the same model; use one consistently (fingerprintCheckpoint uses the raw text).
 */
export function modelFingerprint(input: ModelFingerprintInput): string {
  if (!isPlainRecord(input)) throw invalidArg(`modelFingerprint: input must be an object; got ${showValue(input)}`);
  const hasText = input.configText !== undefined;
  const hasConfig = input.config !== undefined;
  if (hasText === hasConfig) {
    throw invalidArg('modelFingerprint: give exactly one of config (a value) and configText (the text of config.json)');
  }
  if (hasText && typeof input.configText !== 'string') {
    throw invalidArg(`modelFingerprint: configText must be a string; got ${describeType(input.configText)}`);
  }
  if (!Array.isArray(input.weightFiles)) {
    throw invalidArg(`modelFingerprint: weightFiles must be an array; got ${describeType(input.weightFiles)}`);
  }
  const files = input.weightFiles.map((f, i) => {
    if (!isPlainRecord(f) || typeof f.name !== 'string' || f.name.length === 0) {
      throw invalidArg(`modelFingerprint: weightFiles[${i}].name must be a non-empty string; got ${showValue(isPlainRecord(f) ? f.name : f)}`);
    }
    if (typeof f.size !== 'number' || !Number.isSafeInteger(f.size) || f.size < 0) {
      throw invalidArg(`modelFingerprint: weightFiles[${i}].size must be a non-negative integer; got ${showValue(f.size)}`);
    }
    if (f.header !== undefined && !(f.header instanceof Uint8Array)) {
      throw invalidArg(`modelFingerprint: weightFiles[${i}].header must be a Uint8Array; got ${describeType(f.header)}`);
    }
    if (f.samples !== undefined && !(f.samples instanceof Uint8Array)) {
      throw invalidArg(`modelFingerprint: weightFiles[${i}].samples must be a Uint8Array; got ${describeType(f.samples)}`);
    }
    return f;
  });
  files.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (let i = 1; i < files.length; i++) {
    if (files[i]!.name === files[i - 1]!.name) throw invalidArg(`modelFingerprint: weight file ${JSON.stringify(files[i]!.name)} is listed twice`);
  }

  // Every variable-length field is preceded by its length, so distinct inputs cannot hash the same bytes.
  const h = createHash('sha256');
  // v2: weight samples (issue #13). A session saved under v1 (layout only) is refused as another model.
  h.update('nemotron-node model fingerprint v2\n');
  const configBytes = hasText
    ? Buffer.from(input.configText as string, 'utf8')
    : Buffer.from(canonicalJson(input.config, [], '') ?? 'null', 'utf8');
  h.update(`${hasText ? 'configText' : 'config'} ${configBytes.length}\n`);
  h.update(configBytes);
  h.update(`\nfiles ${files.length}\n`);
  for (const f of files) {
    h.update(`${JSON.stringify([f.name, f.size, f.header === undefined ? null : f.header.length, f.samples === undefined ? null : f.samples.length])}\n`);
    if (f.header !== undefined) h.update(f.header);
    if (f.samples !== undefined) h.update(f.samples);
  }
  return h.digest('hex');
}

/** The longest safetensors header read (the format's own limit is 100 MB). */
const MAX_SAFETENSORS_HEADER = 100_000_000;

async function readSafetensorsHeader(dir: string, name: string): Promise<{ size: number; header: Buffer; samples: Buffer }> {
  const file = path.join(dir, name);
  let fh: fsp.FileHandle;
  try {
    fh = await fsp.open(file, 'r');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new ModelLoadError('ERR_MODEL_NOT_FOUND', `weight file '${name}' is missing from ${dir}`, { cause: e });
    }
    throw new ModelLoadError('ERR_INVALID_CHECKPOINT', `cannot read ${file}: ${(e as Error).message}`, { cause: e });
  }
  try {
    const st = await fh.stat();
    const bad = (msg: string): ModelLoadError => new ModelLoadError('ERR_INVALID_CHECKPOINT', `${file}: ${msg}`);
    if (!st.isFile()) throw bad('not a file');
    if (st.size < 8) throw bad(`the file is ${st.size} bytes, too short for a safetensors header (8-byte length first)`);
    const readExactly = async (len: number, at: number): Promise<Buffer> => {
      const out = Buffer.alloc(len);
      let off = 0;
      while (off < len) {
        const { bytesRead } = await fh.read(out, off, len - off, at + off);
        if (bytesRead === 0) throw bad(`the file ended at byte ${at + off} while reading its header`);
        off += bytesRead;
      }
      return out;
    };
    const len = (await readExactly(8, 0)).readBigUInt64LE(0);
    if (len > BigInt(Math.min(MAX_SAFETENSORS_HEADER, st.size - 8))) {
      throw bad(`the header length ${len} runs past the end of the file (${st.size} bytes) or exceeds ${MAX_SAFETENSORS_HEADER} bytes`);
    }
    const header = await readExactly(Number(len), 8);
    return { size: st.size, header, samples: await sampleTensorData(fh, safetensorsSpans(header, 8 + Number(len), st.size, bad)) };
  } finally {
    await fh.close().catch(() => {});
  }
}

/**
 * Weight sampling (issue #13): the fingerprint must tell apart two checkpoints with the same config and
 * layout but other weights, without reading them all. It reads SAMPLE_BYTES at the start, the middle and the
 * end of every tensor (all of a tensor smaller than that), asynchronously, SAMPLE_READS at a time. For
 * NVIDIA-Nemotron-Nano-9B-v2 (341 tensors, 17.8 GB of bf16 in 4 shards) that is 747 reads of 3.0 MB in all:
 * 8-17 ms measured from the page cache, some tens of ms from a cold SSD (a spinning disk: a few seconds),
 * once per loaded model; it needs no cache file beside the checkpoint. The trade-off against a full
 * content hash (>= 11 s for 17.8 GB at this machine's 1.5 GB/s sha-256, plus reading it all, or a cache
 * file keyed by size and mtime that a copy or touch invalidates): an edit that leaves every
 * sampled range alone, e.g. a fine-tune that changed only the interior of tensors, or a forged file, is not
 * seen; any re-initialisation, conversion or re-training changes every tensor's first bytes.
 */
const SAMPLE_BYTES = 4096;
const SAMPLE_READS = 32;

/** [start, end) byte ranges of the tensors of a safetensors file, in data order. */
function safetensorsSpans(header: Buffer, dataStart: number, fileSize: number, bad: (msg: string) => Error): Array<[number, number]> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(header.toString('utf8'));
  } catch (e) {
    throw bad(`the safetensors header is not JSON: ${(e as Error).message}`);
  }
  if (!isPlainRecord(parsed)) throw bad('the safetensors header is not a JSON object');
  const spans: Array<[number, number]> = [];
  for (const [name, t] of Object.entries(parsed)) {
    if (name === '__metadata__') continue;
    const off = isPlainRecord(t) ? t.data_offsets : undefined;
    const [b, e] = Array.isArray(off) ? off : [];
    if (typeof b !== 'number' || typeof e !== 'number' || !Number.isSafeInteger(b) || !Number.isSafeInteger(e) || b < 0 || e < b || dataStart + e > fileSize) {
      throw bad(`tensor ${JSON.stringify(name)} has data_offsets ${showValue(off)} outside the file`);
    }
    spans.push([dataStart + b, dataStart + e]);
  }
  return spans.sort((x, y) => x[0] - y[0] || x[1] - y[1]);
}

/** The sampled bytes of every span, concatenated in span order. */
async function sampleTensorData(fh: fsp.FileHandle, spans: Array<[number, number]>): Promise<Buffer> {
  const reads: Array<[number, number]> = [];
  for (const [b, e] of spans) {
    if (e - b <= 3 * SAMPLE_BYTES) {
      if (e > b) reads.push([b, e - b]);
    } else {
      reads.push([b, SAMPLE_BYTES], [b + Math.floor((e - b - SAMPLE_BYTES) / 2), SAMPLE_BYTES], [e - SAMPLE_BYTES, SAMPLE_BYTES]);
    }
  }
  const total = reads.reduce((n, r) => n + r[1], 0);
  const out = Buffer.alloc(total);
  const at: number[] = [];
  reads.reduce((pos, r) => (at.push(pos), pos + r[1]), 0);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < reads.length) {
      const i = next++;
      const [pos, len] = reads[i]!;
      let off = 0;
      while (off < len) {
        const { bytesRead } = await fh.read(out, at[i]! + off, len - off, pos + off);
        if (bytesRead === 0) throw new ModelLoadError('ERR_INVALID_CHECKPOINT', `a weight file ended at byte ${pos + off} inside a tensor`);
        off += bytesRead;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(SAMPLE_READS, reads.length) }, worker));
  return out;
}

/**
 * The fingerprint of the checkpoint folder `dir` (or a .gguf file): the raw text of config.json plus the names,
 * sizes, safetensors headers and sampled tensor bytes (see SAMPLE_BYTES) of model.safetensors, or (when that
 * is absent, as the loader decides) of the shards named in model.safetensors.index.json. Throws ModelLoadError.
 */
export async function fingerprintCheckpoint(dir: string): Promise<string> {
  if (typeof dir !== 'string' || dir.length === 0) {
    throw invalidArg(`fingerprintCheckpoint: dir must be a non-empty path string; got ${showValue(dir)}`);
  }
  const readText = async (name: string): Promise<string | undefined> => {
    try {
      return await fsp.readFile(path.join(dir, name), 'utf8');
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
      throw new ModelLoadError('ERR_INVALID_CHECKPOINT', `cannot read ${path.join(dir, name)}: ${(e as Error).message}`, { cause: e });
    }
  };
  const isFile = async (p: string): Promise<boolean> => {
    try {
      return (await fsp.stat(p)).isFile();
    } catch {
      return false;
    }
  };

  // A GGUF file: everything before the tensor data (metadata and tensor table) plus the file size.
  if (dir.endsWith('.gguf') && (await isFile(dir))) {
    const handle = await fsp.open(dir, 'r');
    try {
      const { size } = await handle.stat();
      const { dataOffset, tensors } = readGgufMetadata(dir);
      const header = Buffer.alloc(dataOffset);
      await handle.read(header, 0, dataOffset, 0);
      // A tensor's bytes run to the next tensor's offset (the last one's to the end of the file).
      const starts = [...new Set(tensors.map((t) => dataOffset + t.offset))].filter((o) => o <= size).sort((a, b) => a - b);
      const spans = starts.map((b, i): [number, number] => [b, starts[i + 1] ?? size]);
      const samples = await sampleTensorData(handle, spans);
      return modelFingerprint({ configText: `gguf:${path.basename(dir)}`, weightFiles: [{ name: path.basename(dir), size, header, samples }] });
    } finally {
      await handle.close();
    }
  }

  const configText = await readText('config.json');
  if (configText === undefined) throw new ModelLoadError('ERR_MODEL_NOT_FOUND', `no config.json in ${dir}`);

  let names: string[];
  if (await isFile(path.join(dir, 'model.safetensors'))) {
    names = ['model.safetensors'];
  } else {
    const indexText = await readText('model.safetensors.index.json');
    if (indexText === undefined) {
      throw new ModelLoadError('ERR_MODEL_NOT_FOUND', `no weights in ${dir}: looked for model.safetensors and model.safetensors.index.json`);
    }
    const badIndex = (msg: string): ModelLoadError =>
      new ModelLoadError('ERR_INVALID_CHECKPOINT', `model.safetensors.index.json in ${dir}: ${msg}`);
    let index: unknown;
    try {
      index = JSON.parse(indexText);
    } catch (e) {
      throw badIndex(`invalid JSON: ${(e as Error).message}`);
    }
    const wm = isPlainRecord(index) ? index.weight_map : undefined;
    if (!isPlainRecord(wm)) throw badIndex('expected an object with a "weight_map" object (tensor name -> shard file)');
    const set = new Set<string>();
    for (const [tensor, shard] of Object.entries(wm)) {
      if (typeof shard !== 'string' || shard.length === 0) throw badIndex(`weight_map['${tensor}'] must be a file name`);
      if (shard.startsWith('/') || shard.includes('..')) {
        throw badIndex(`weight_map['${tensor}'] is "${shard}"; shard files must lie inside the folder`);
      }
      set.add(shard);
    }
    if (set.size === 0) throw badIndex('weight_map is empty');
    names = [...set].sort();
  }

  const weightFiles: ModelFingerprintInput['weightFiles'] = [];
  for (const name of names) {
    const { size, header, samples } = await readSafetensorsHeader(dir, name);
    weightFiles.push({ name, size, header, samples });
  }
  return modelFingerprint({ configText, weightFiles });
}
