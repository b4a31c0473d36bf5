// The on-disk session format: bit-exact round trips, every truncation and every single-byte change detected
// with a SessionFileError (never a crash or a wrong result), atomic writes that leave no partial or temporary
// file behind, and model fingerprints that follow the config and the tensor headers.
import { createHash, randomBytes } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, readFileSync, readdirSync, truncateSync, writeFileSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

import { InvalidArgumentError, ModelLoadError, SessionFileError } from '../../lib/errors.js';
import {
  SESSION_FILE_MAGIC,
  SESSION_FILE_VERSION,
  decodeSessionFile,
  encodeSessionFile,
  fingerprintCheckpoint,
  modelFingerprint,
  readSessionFile,
  writeSessionFile,
  type SessionFileContent,
  type SessionFileHandle,
  type SessionFileSystem,
} from '../../lib/chat/session-file.js';
import { makeTinyModel } from '../../lib/tiny-model/index.js';
import { tempDir } from '../helpers.js';

const tmp = tempDir('session-file');
afterAll(() => tmp.cleanup());

const FP = createHash('sha256').update('model A').digest('hex');
const OTHER_FP = createHash('sha256').update('model B').digest('hex');

const META = {
  messages: [
    { role: 'system', content: 'Tu es un assistant. 你好 — ✓' },
    { role: 'user', content: 'emoji 🤖👩‍🚀, RTL שלום, combining é, NUL \u0000, lone surrogate \ud800, line\nbreak' },
  ],
  options: { system: 'be brief', reasoning: true, maxTokens: 128, temperature: 0.7, stop: ['</s>'] },
  created: '2025-01-02T03:04:05.678Z',
  version: '0.1.0',
  nested: { empty: {}, list: [], n: null, big: 2 ** 53 - 1, neg: -1.5e-300 },
};

function content(tokenCount: number, stateBytes: number, meta: Record<string, unknown> = META): SessionFileContent {
  const tokens = new Int32Array(tokenCount);
  for (let i = 0; i < tokenCount; i++) tokens[i] = (i * 2654435761) | 0; // negative and large values included
  if (tokenCount > 1) {
    tokens[0] = -2147483648;
    tokens[1] = 2147483647;
  }
  return { modelFingerprint: FP, tokens, state: new Uint8Array(randomBytes(stateBytes)), meta };
}

function bytesOf(c: SessionFileContent): Buffer {
  return Buffer.concat(encodeSessionFile(c));
}

/** Re-seals edited bytes with a valid trailer (sha-256 of everything before it), as a writer would. */
function reseal(bytes: Buffer): Buffer {
  const body = bytes.subarray(0, bytes.length - 40);
  const digest = createHash('sha256').update(body).digest();
  return Buffer.concat([body, Buffer.from('NEMOEND\0', 'latin1'), digest]);
}

/** Replaces the header JSON (recomputing length and padding, keeping tokens/state) and re-seals. */
function withHeader(bytes: Buffer, edit: (h: Record<string, unknown>) => unknown): Buffer {
  const len = bytes.readUInt32LE(12);
  const header = JSON.parse(bytes.subarray(16, 16 + len).toString('utf8')) as Record<string, unknown>;
  const pad = (8 - ((16 + len) % 8)) % 8;
  const rest = bytes.subarray(16 + len + pad, bytes.length - 40);
  const edited = edit(header);
  const text = Buffer.from(typeof edited === 'string' ? edited : JSON.stringify(edited ?? header), 'utf8');
  const prefix = Buffer.alloc(16 + text.length + ((8 - ((16 + text.length) % 8)) % 8));
  bytes.copy(prefix, 0, 0, 12);
  prefix.writeUInt32LE(text.length, 12);
  text.copy(prefix, 16);
  return reseal(Buffer.concat([prefix, rest, Buffer.alloc(40)]));
}

function decodeError(bytes: Uint8Array, expected = FP): SessionFileError {
  try {
    decodeSessionFile(bytes, expected, 'test.session');
  } catch (e) {
    expect(e).toBeInstanceOf(SessionFileError);
    expect((e as SessionFileError).code).toBe('ERR_INVALID_SESSION_FILE');
    return e as SessionFileError;
  }
  throw new Error(`decoding ${bytes.length} bytes did not fail`);
}

async function readError(file: string, expected = FP): Promise<SessionFileError> {
  try {
    await readSessionFile(file, expected);
  } catch (e) {
    expect(e).toBeInstanceOf(SessionFileError);
    expect((e as SessionFileError).code).toBe('ERR_INVALID_SESSION_FILE');
    return e as SessionFileError;
  }
  throw new Error(`reading ${file} did not fail`);
}

function expectSame(got: SessionFileContent, want: SessionFileContent): void {
  expect(got.modelFingerprint).toBe(want.modelFingerprint);
  expect(got.tokens).toBeInstanceOf(Int32Array);
  expect(got.tokens.length).toBe(want.tokens.length);
  expect(Buffer.from(got.tokens.buffer, got.tokens.byteOffset, got.tokens.byteLength).equals(
    Buffer.from(want.tokens.buffer, want.tokens.byteOffset, want.tokens.byteLength))).toBe(true);
  expect(got.state).toBeInstanceOf(Uint8Array);
  expect(Buffer.from(got.state.buffer, got.state.byteOffset, got.state.byteLength).equals(
    Buffer.from(want.state.buffer, want.state.byteOffset, want.state.byteLength))).toBe(true);
  expect(got.meta).toEqual(want.meta);
}

let fileNo = 0;
function freshPath(name = 'chat'): string {
  const dir = path.join(tmp.dir, `f${fileNo++}`);
  mkdirSync(dir, { recursive: true });
  return path.join(dir, `${name}.session`);
}

const tempsIn = (dir: string): string[] => readdirSync(dir).filter((n) => n.includes('.tmp-'));

describe('round trip', () => {
  it('tokens, a 5 MB random state and unicode meta come back bit-exact', async () => {
    const c = content(3000, 5 * 1024 * 1024);
    const file = freshPath();
    await writeSessionFile(file, c);
    const onDisk = readFileSync(file);
    expect(onDisk.equals(bytesOf(c))).toBe(true); // the file is exactly the encoded chunks
    expectSame(await readSessionFile(file, FP), c);
    expectSame(decodeSessionFile(onDisk, FP), c);
    expect(tempsIn(path.dirname(file))).toEqual([]);
  });

  it('a state larger than one I/O slice (17 MB): streamed hash on read, corruption in any slice detected', async () => {
    const c = content(10, 17 * 1024 * 1024 + 13);
    const file = freshPath();
    await writeSessionFile(file, c);
    expectSame(await readSessionFile(file, FP), c);
    const size = readFileSync(file).length;
    const fh = await fsp.open(file, 'r+');
    try {
      for (const at of [100, 16 * 1024 * 1024 + 5, size - 41]) {
        const one = Buffer.alloc(1);
        await fh.read(one, 0, 1, at);
        await fh.write(Buffer.from([one[0]! ^ 0x10]), 0, 1, at);
        expect((await readError(file)).message, `byte ${at}`).toMatch(/checksum mismatch: the file is corrupted/);
        await fh.write(one, 0, 1, at);
      }
    } finally {
      await fh.close();
    }
    expectSame(await readSessionFile(file, FP), c);
  });

  it('empty tokens, empty state, empty meta; unaligned views of larger buffers', async () => {
    const empty: SessionFileContent = { modelFingerprint: FP, tokens: new Int32Array(0), state: new Uint8Array(0), meta: {} };
    const file = freshPath();
    await writeSessionFile(file, empty);
    expectSame(await readSessionFile(file, FP), empty);

    const bigTokens = new Int32Array([9, 8, 7, 6, 5, 4]);
    const bigState = new Uint8Array(randomBytes(1001));
    const views: SessionFileContent = {
      modelFingerprint: FP,
      tokens: bigTokens.subarray(1, 4),
      state: bigState.subarray(3, 998), // odd offset and length
      meta: { a: 1 },
    };
    await writeSessionFile(file, views); // replaces the previous file
    const back = await readSessionFile(file, FP);
    expectSame(back, views);
    expect([...back.tokens]).toEqual([8, 7, 6]);
  });

  it('layout: magic, version, header length, 8-aligned tokens, state verbatim, trailer with the sha-256', () => {
    const c = content(5, 77, { x: 'é' });
    const chunks = encodeSessionFile(c);
    expect(chunks).toHaveLength(4);
    const [prefix, tokens, state, trailer] = chunks as [Buffer, Buffer, Buffer, Buffer];
    expect(prefix.subarray(0, 8).toString('latin1')).toBe(SESSION_FILE_MAGIC);
    expect(prefix.readUInt32LE(8)).toBe(SESSION_FILE_VERSION);
    const h = prefix.readUInt32LE(12);
    const header = JSON.parse(prefix.subarray(16, 16 + h).toString('utf8')) as Record<string, unknown>;
    expect(header).toEqual({ fingerprint: FP, tokenCount: 5, stateBytes: 77, meta: { x: 'é' } });
    expect(prefix.length % 8).toBe(0);
    expect(prefix.length - (16 + h)).toBeLessThan(8);
    expect(prefix.subarray(16 + h).every((b) => b === 0)).toBe(true);
    expect(tokens.length).toBe(20);
    expect(tokens.readInt32LE(0)).toBe(c.tokens[0]);
    expect(state.buffer).toBe(c.state.buffer); // the state is not copied
    expect(trailer.subarray(0, 8).toString('latin1')).toBe('NEMOEND\0');
    const digest = createHash('sha256').update(prefix).update(tokens).update(state).digest();
    expect(trailer.subarray(8).equals(digest)).toBe(true);
    const whole = Buffer.concat(chunks);
    // the decoded state is a view of the input (no copy)
    const back = decodeSessionFile(whole, FP);
    expect(back.state.buffer).toBe(whole.buffer);
  });
});

describe('damaged files', () => {
  const c = content(100, 20_000);
  const good = bytesOf(c);
  const n = good.length;
  const headerEnd = 16 + good.readUInt32LE(12);

  it('truncation anywhere is reported as truncation', () => {
    const lengths = new Set<number>();
    for (let L = 0; L < 200; L++) lengths.add(L);
    for (let L = 200; L < n; L += 97) lengths.add(L);
    for (const L of [headerEnd - 1, headerEnd, headerEnd + 1, n - 41, n - 40, n - 39, n - 33, n - 32, n - 1]) lengths.add(L);
    for (const L of lengths) {
      const e = decodeError(good.subarray(0, L));
      expect(e.message, `length ${L}`).toMatch(/truncated/);
      expect(e.message).toContain('test.session');
    }
  });

  it('truncated files on disk', async () => {
    const file = freshPath();
    writeFileSync(file, good);
    for (const L of [0, 5, 8, 15, 16, 40, headerEnd + 3, n - 20_000, n - 40, n - 1]) {
      truncateSync(file, L);
      const e = await readError(file);
      expect(e.message, `length ${L}`).toMatch(/truncated|empty/);
      expect(e.message).toContain(file);
      writeFileSync(file, good);
    }
  });

  it('a single changed byte anywhere is detected', () => {
    const positions = new Set<number>();
    for (let i = 0; i < 64; i++) positions.add(i); // magic, version, header length, start of header
    for (let i = n - 48; i < n; i++) positions.add(i); // end of state, whole trailer
    for (let i = 64; i < n - 48; i += Math.floor(n / 110)) positions.add(i); // header, tokens, state
    positions.add(headerEnd - 1);
    positions.add(headerEnd); // padding or first token
    expect(positions.size).toBeGreaterThan(180);
    for (const p of positions) {
      for (const mask of [0x01, 0x80, 0xff]) {
        const bad = Buffer.from(good);
        bad[p]! ^= mask;
        const e = decodeError(bad);
        const where = `byte ${p} ^ ${mask}`;
        if (p < 8) expect(e.message, where).toMatch(/not a nemotron-node session file/);
        else if (p >= n - 40 && p < n - 32) expect(e.message, where).toMatch(/end marker is damaged: the file is corrupted/);
        else expect(e.message, where).toMatch(/checksum mismatch: the file is corrupted/);
      }
    }
  });

  it('another model: names both fingerprints', async () => {
    const e = decodeError(good, OTHER_FP);
    expect(e.message).toContain('this session was saved with a different model');
    expect(e.message).toContain(`fingerprint ${FP.slice(0, 12)}…`);
    expect(e.message).toContain(`this model ${OTHER_FP.slice(0, 12)}…`);
    const file = freshPath();
    writeFileSync(file, good);
    expect((await readError(file, OTHER_FP)).message).toMatch(/different model/);
  });

  it('not a session file: other magic, other file types', () => {
    const bad = Buffer.from(good);
    bad.write('NEMOSESX', 0, 'latin1');
    expect(decodeError(bad).message).toMatch(/not a nemotron-node session file \(expected it to start with "NEMOSESS", found "NEMOSESX"\)/);
    expect(decodeError(Buffer.from('{"hello": "world"} and more text here, long enough')).message).toMatch(/not a nemotron-node session file/);
    expect(decodeError(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0, 0, 0, 0, 1, 2])).message).toMatch(/found bytes 0x89504e47/);
    expect(decodeError(Buffer.alloc(0)).message).toMatch(/truncated: it is 0 bytes long/);
  });

  it('future and invalid versions', () => {
    const v2 = Buffer.from(good);
    v2.writeUInt32LE(2, 8);
    const e = decodeError(reseal(v2));
    expect(e.message).toMatch(/unsupported session file version 2 \(this library reads version 1\).*newer/);
    const v0 = Buffer.from(good);
    v0.writeUInt32LE(0, 8);
    expect(decodeError(reseal(v0)).message).toMatch(/unsupported session file version 0/);
    // a future version with another layout, but still ending with the trailer, is still "newer"
    const future = reseal(Buffer.concat([Buffer.from('NEMOSESS', 'latin1'), Buffer.from([7, 0, 0, 0]), Buffer.alloc(100, 0xab), Buffer.alloc(40)]));
    expect(decodeError(future).message).toMatch(/version 7/);
  });

  it('header JSON invalid, counts inconsistent, bytes appended', () => {
    expect(decodeError(withHeader(good, () => '{"fingerprint": ')).message).toMatch(/header JSON invalid/);
    expect(decodeError(withHeader(good, () => '[1,2]')).message).toMatch(/header JSON invalid: expected an object/);
    const notUtf8 = Buffer.from(good);
    notUtf8[20] = 0xff;
    expect(decodeError(reseal(notUtf8)).message).toMatch(/header JSON invalid: it is not valid UTF-8/);
    expect(decodeError(withHeader(good, (h) => ({ ...h, fingerprint: 'abc' }))).message).toMatch(/"fingerprint" must be a 64-digit hex/);
    expect(decodeError(withHeader(good, (h) => ({ ...h, tokenCount: -1 }))).message).toMatch(/"tokenCount" must be a non-negative integer, found -1/);
    expect(decodeError(withHeader(good, (h) => ({ ...h, stateBytes: 1.5 }))).message).toMatch(/"stateBytes" must be a non-negative integer/);
    expect(decodeError(withHeader(good, (h) => ({ ...h, stateBytes: undefined }))).message).toMatch(/"stateBytes".*missing/);
    expect(decodeError(withHeader(good, (h) => ({ ...h, meta: [] }))).message).toMatch(/"meta" must be an object/);

    let e = decodeError(withHeader(good, (h) => ({ ...h, tokenCount: 101 })));
    expect(e.message).toMatch(/counts inconsistent: the header describes \d+ bytes \(101 tokens, 20000 state bytes\) but the file has \d+ bytes/);
    e = decodeError(withHeader(good, (h) => ({ ...h, stateBytes: 19_999 })));
    expect(e.message).toMatch(/counts inconsistent/);
    e = decodeError(withHeader(good, (h) => ({ ...h, stateBytes: 2 ** 53 - 1 })));
    expect(e.message).toMatch(/counts inconsistent/);
    const hugeLen = Buffer.from(good);
    hugeLen.writeUInt32LE(0xfffffff0, 12);
    expect(decodeError(reseal(hugeLen)).message).toMatch(/truncated: its header is 4294967280 bytes long/);

    e = decodeError(Buffer.concat([good, Buffer.from('extra')]));
    expect(e.message).toMatch(/longer than its header describes.*5 unexpected bytes/);
    e = decodeError(Buffer.concat([good, good]));
    expect(e.message).toMatch(/checksum mismatch|longer than/);

    // non-zero padding between header and tokens (re-sealed, so only the padding check can see it)
    let k = 0;
    let padded = bytesOf(content(3, 10, { p: '' }));
    while ((16 + padded.readUInt32LE(12)) % 8 === 0) padded = bytesOf(content(3, 10, { p: 'x'.repeat(++k) }));
    const padAt = 16 + padded.readUInt32LE(12);
    padded[padAt] = 1;
    expect(decodeError(reseal(padded)).message).toMatch(/padding after the header is not zero at byte \d+: the file is corrupted/);
  });

  it('missing file, a folder, bad arguments', async () => {
    const missing = path.join(tmp.dir, 'nope', 'x.session');
    expect((await readError(missing)).message).toBe(`no session file at ${missing}`);
    expect((await readError(tmp.dir)).message).toMatch(/folder|not a file/);
    await expect(readSessionFile(missing, 'ABC')).rejects.toBeInstanceOf(InvalidArgumentError);
    expect(() => decodeSessionFile('x' as unknown as Uint8Array, FP)).toThrow(InvalidArgumentError);
  });
});

describe('atomic writes', () => {
  /** node:fs/promises, recording created temp files, with failures injected. */
  function faultyFs(fail: { writeCall?: number; sync?: boolean; rename?: boolean }): { fs: SessionFileSystem; opened: string[] } {
    const opened: string[] = [];
    let writes = 0;
    const fs: SessionFileSystem = {
      async open(p, flags, mode) {
        const real = await fsp.open(p, flags, mode);
        if (flags !== 'wx') return real;
        opened.push(p);
        const handle: SessionFileHandle = {
          async write(buf, off, len, pos) {
            if (++writes === fail.writeCall) throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
            return real.write(buf, off, len, pos);
          },
          async sync() {
            if (fail.sync) throw Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' });
            return real.sync();
          },
          close: () => real.close(),
        };
        return handle;
      },
      async rename(a, b) {
        if (fail.rename) throw Object.assign(new Error('EXDEV: cross-device link not permitted, rename'), { code: 'EXDEV' });
        return fsp.rename(a, b);
      },
      unlink: (p) => fsp.unlink(p),
    };
    return { fs, opened };
  }

  for (const [name, fail] of [
    ['a write fails midway (after the header was written)', { writeCall: 3 }],
    ['the first write fails', { writeCall: 1 }],
    ['fsync fails', { sync: true }],
    ['rename fails', { rename: true }],
  ] as const) {
    it(`${name}: the previous file survives and no temporary file is left`, async () => {
      const file = freshPath();
      const before = content(10, 1000, { before: true });
      await writeSessionFile(file, before);
      const oldBytes = readFileSync(file);
      const { fs, opened } = faultyFs(fail);
      const err = await writeSessionFile(file, content(50, 3 * 1024 * 1024, { after: true }), { fs }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(SessionFileError);
      expect((err as SessionFileError).message).toMatch(new RegExp(`cannot write session file .*${path.basename(file)}`));
      expect(((err as SessionFileError).cause as NodeJS.ErrnoException).code).toMatch(/ENOSPC|EIO|EXDEV/);
      expect(opened).toHaveLength(1); // a temp file was really created...
      expect(opened[0]).toMatch(new RegExp(`${path.basename(file)}\\.tmp-${process.pid}-[0-9a-f]{12}$`));
      expect(path.dirname(opened[0]!)).toBe(path.dirname(file));
      expect(existsSync(opened[0]!)).toBe(false); // ...and removed
      expect(tempsIn(path.dirname(file))).toEqual([]);
      expect(readFileSync(file).equals(oldBytes)).toBe(true);
      expectSame(await readSessionFile(file, FP), before);
    });
  }

  it('a failed first write leaves no file at all', async () => {
    const file = freshPath();
    const { fs } = faultyFs({ writeCall: 2 });
    await expect(writeSessionFile(file, content(3, 10), { fs })).rejects.toBeInstanceOf(SessionFileError);
    expect(readdirSync(path.dirname(file))).toEqual([]);
  });

  it('the target is a folder (rename fails for real): no temp file left', async () => {
    const file = freshPath();
    mkdirSync(file);
    writeFileSync(path.join(file, 'inside'), 'x');
    await expect(writeSessionFile(file, content(3, 10))).rejects.toBeInstanceOf(SessionFileError);
    expect(tempsIn(path.dirname(file))).toEqual([]);
    expect(readdirSync(file)).toEqual(['inside']);
  });

  it('the folder does not exist', async () => {
    const file = path.join(tmp.dir, 'missing-folder', 'x.session');
    const err = await writeSessionFile(file, content(3, 10)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SessionFileError);
    expect((err as Error).message).toMatch(/cannot write session file .*ENOENT/);
    expect(existsSync(path.dirname(file))).toBe(false);
  });

  it('invalid content is refused before anything is written', async () => {
    const file = freshPath();
    const ok = content(2, 4);
    const cases: Array<[string, unknown]> = [
      ['modelFingerprint', { ...ok, modelFingerprint: 'abc' }],
      ['modelFingerprint', { ...ok, modelFingerprint: FP.toUpperCase() }],
      ['tokens', { ...ok, tokens: [1, 2] }],
      ['tokens', { ...ok, tokens: new Uint32Array(2) }],
      ['state', { ...ok, state: new ArrayBuffer(4) }],
      ['meta', { ...ok, meta: [] }],
      ['meta', { ...ok, meta: { n: 1n } }],
      ['content', null],
    ];
    for (const [field, bad] of cases) {
      const err = await writeSessionFile(file, bad as SessionFileContent).catch((e: unknown) => e);
      expect(err, field).toBeInstanceOf(InvalidArgumentError);
      expect((err as Error).message).toContain(field);
      expect(() => encodeSessionFile(bad as SessionFileContent)).toThrow(InvalidArgumentError);
    }
    expect(readdirSync(path.dirname(file))).toEqual([]);
  });

  it('concurrent writes to one path: the result is one complete file', async () => {
    const file = freshPath();
    const cs = [0, 1, 2, 3].map((i) => content(10 + i, 50_000 + i, { i }));
    await Promise.all(cs.map((c) => writeSessionFile(file, c)));
    const back = await readSessionFile(file, FP);
    const i = (back.meta as { i: number }).i;
    expectSame(back, cs[i]!);
    expect(tempsIn(path.dirname(file))).toEqual([]);
  });
});

describe('model fingerprint', () => {
  const files = [
    { name: 'model-00001-of-00002.safetensors', size: 1000, header: Buffer.from('{"a":{}}') },
    { name: 'model-00002-of-00002.safetensors', size: 2000, header: Buffer.from('{"b":{}}') },
  ];

  it('modelFingerprint: canonical config, order-insensitive files, sensitive to every field', () => {
    const fp = modelFingerprint({ config: { b: 1, a: [1, { y: 2, x: Infinity }] }, weightFiles: files });
    expect(fp).toMatch(/^[0-9a-f]{64}$/);
    expect(modelFingerprint({ config: { a: [1, { x: Infinity, y: 2 }], b: 1 }, weightFiles: [...files].reverse() })).toBe(fp);
    const variants = [
      modelFingerprint({ config: { b: 1, a: [1, { y: 2, x: 1e308 }] }, weightFiles: files }),
      modelFingerprint({ config: { b: 2, a: [1, { y: 2, x: Infinity }] }, weightFiles: files }),
      modelFingerprint({ config: { b: 1, a: [1, { y: 2, x: Infinity }] }, weightFiles: files.slice(1) }),
      modelFingerprint({ config: { b: 1, a: [1, { y: 2, x: Infinity }] }, weightFiles: [{ ...files[0]!, size: 1001 }, files[1]!] }),
      modelFingerprint({ config: { b: 1, a: [1, { y: 2, x: Infinity }] }, weightFiles: [{ ...files[0]!, name: 'other' }, files[1]!] }),
      modelFingerprint({ config: { b: 1, a: [1, { y: 2, x: Infinity }] }, weightFiles: [{ ...files[0]!, header: Buffer.from('{"a":{ }') }, files[1]!] }),
      modelFingerprint({ config: { b: 1, a: [1, { y: 2, x: Infinity }] }, weightFiles: [{ name: files[0]!.name, size: 1000 }, files[1]!] }),
      modelFingerprint({ configText: '{"a":[1,{"x":Infinity,"y":2}],"b":1}', weightFiles: files }),
    ];
    expect(new Set([fp, ...variants]).size).toBe(variants.length + 1);
    expect(modelFingerprint({ configText: 'x', weightFiles: [] })).toBe(modelFingerprint({ configText: 'x', weightFiles: [] }));
  });

  it('modelFingerprint: invalid input', () => {
    expect(() => modelFingerprint({ weightFiles: [] })).toThrow(/exactly one of config/);
    expect(() => modelFingerprint({ config: {}, configText: '{}', weightFiles: [] })).toThrow(InvalidArgumentError);
    expect(() => modelFingerprint({ config: {}, weightFiles: [files[0]!, files[0]!] })).toThrow(/listed twice/);
    expect(() => modelFingerprint({ config: {}, weightFiles: [{ name: 'a', size: -1 }] })).toThrow(/size/);
    expect(() => modelFingerprint({ config: { n: 1n }, weightFiles: [] })).toThrow(/bigint/);
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(() => modelFingerprint({ config: cyclic, weightFiles: [] })).toThrow(/cycle/);
  });

  it('fingerprintCheckpoint: same for identical copies, changes with a tensor shape or config.json', async () => {
    const a = path.join(tmp.dir, 'ckpt-a');
    const b = path.join(tmp.dir, 'ckpt-b');
    await makeTinyModel(a, { seed: 3 });
    await makeTinyModel(b, { seed: 3 });
    const fa = await fingerprintCheckpoint(a);
    expect(fa).toMatch(/^[0-9a-f]{64}$/);
    expect(await fingerprintCheckpoint(b)).toBe(fa);
    const copy = path.join(tmp.dir, 'ckpt-copy');
    cpSync(a, copy, { recursive: true });
    expect(await fingerprintCheckpoint(copy)).toBe(fa);

    // a tensor shape changed in the safetensors header (same byte count, same file size)
    const shape = path.join(tmp.dir, 'ckpt-shape');
    cpSync(a, shape, { recursive: true });
    const st = path.join(shape, 'model.safetensors');
    const bytes = readFileSync(st);
    const len = Number(bytes.readBigUInt64LE(0));
    const text = bytes.subarray(8, 8 + len).toString('utf8');
    const m = /"shape":\[(\d+),(\d+)\]/.exec(text)!;
    const edited = text.replace(m[0], `"shape":[${m[2]},${m[1]}]`);
    expect(edited).not.toBe(text);
    expect(Buffer.byteLength(edited)).toBe(len);
    writeFileSync(st, Buffer.concat([bytes.subarray(0, 8), Buffer.from(edited), bytes.subarray(8 + len)]));
    expect(readFileSync(st).length).toBe(bytes.length);
    expect(await fingerprintCheckpoint(shape)).not.toBe(fa);

    // config.json edited (bare Infinity in it is fine)
    const cfg = path.join(tmp.dir, 'ckpt-config');
    cpSync(a, cfg, { recursive: true });
    const cfgText = readFileSync(path.join(cfg, 'config.json'), 'utf8');
    expect(cfgText).toContain('Infinity');
    writeFileSync(path.join(cfg, 'config.json'), cfgText.replace('"max_position_embeddings": 4096', '"max_position_embeddings": 4097'));
    expect(await fingerprintCheckpoint(cfg)).not.toBe(fa);

    // other shapes give another fingerprint (other weights with the same shapes too: test/cache/session-hostile.test.ts)
    const wide = path.join(tmp.dir, 'ckpt-wide');
    await makeTinyModel(wide, { seed: 3, intermediateSize: 192 });
    expect(await fingerprintCheckpoint(wide)).not.toBe(fa);
  });

  it('fingerprintCheckpoint: sharded checkpoints, missing and broken ones', async () => {
    const s1 = path.join(tmp.dir, 'ckpt-s1');
    const s2 = path.join(tmp.dir, 'ckpt-s2');
    await makeTinyModel(s1, { seed: 4, shards: 3 });
    await makeTinyModel(s2, { seed: 4, shards: 3 });
    const fs1 = await fingerprintCheckpoint(s1);
    expect(await fingerprintCheckpoint(s2)).toBe(fs1);
    const single = path.join(tmp.dir, 'ckpt-single');
    await makeTinyModel(single, { seed: 4 });
    expect(await fingerprintCheckpoint(single)).not.toBe(fs1);

    await expect(fingerprintCheckpoint(path.join(tmp.dir, 'no-such-model'))).rejects.toThrow(/no config\.json/);
    const noWeights = path.join(tmp.dir, 'ckpt-noweights');
    mkdirSync(noWeights);
    writeFileSync(path.join(noWeights, 'config.json'), '{}');
    const e = await fingerprintCheckpoint(noWeights).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(ModelLoadError);
    expect((e as ModelLoadError).code).toBe('ERR_MODEL_NOT_FOUND');

    const broken = path.join(tmp.dir, 'ckpt-broken');
    cpSync(s1, broken, { recursive: true });
    const shard = readdirSync(broken).find((n) => n.startsWith('model-00002'))!;
    truncateSync(path.join(broken, shard), 20);
    const e2 = await fingerprintCheckpoint(broken).catch((x: unknown) => x);
    expect(e2).toBeInstanceOf(ModelLoadError);
    expect((e2 as ModelLoadError).code).toBe('ERR_INVALID_CHECKPOINT');
    expect((e2 as Error).message).toMatch(/header length/);

    writeFileSync(path.join(broken, 'model.safetensors.index.json'), '{"weight_map": {"a": "../x.safetensors"}}');
    await expect(fingerprintCheckpoint(broken)).rejects.toThrow(/inside the folder/);
  });
});
