// Issue #13 items 3-5: session files as a hostile user makes them. The fingerprint must tell two checkpoints
// with the same layout but other weights apart; crafted contents whose checksum was recomputed (token ids
// outside the vocabulary, token lists that do not match the state, non-finite state) must be refused; and
// the temporary files a killed writer leaves behind are removed by the next save to the same path.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { loadModel, makeTinyModel, type NemotronModel } from '../../lib/index.js';
import { decodeSessionFile, encodeSessionFile, fingerprintCheckpoint, writeSessionFile } from '../../lib/chat/session-file.js';
import { tempDir } from '../helpers.js';

const tmp = tempDir('session-hostile');
const dirA = path.join(tmp.dir, 'seed-1');
const dirB = path.join(tmp.dir, 'seed-2');
let model: NemotronModel;
let saved: string;
let fpA: string;

/** Snapshot image header: 8-byte magic + 8 u64 fields; the Mamba conv floats follow. */
const SNAP_HEADER = 8 + 8 * 8;

/** Rewrites the session file with edited content and a recomputed (valid) checksum. */
function craft(edit: (c: { tokens: Int32Array; state: Uint8Array; meta: Record<string, unknown> }) => void, name: string): string {
  const c = decodeSessionFile(readFileSync(saved), fpA);
  const content = { ...c, tokens: Int32Array.from(c.tokens), state: Uint8Array.from(c.state), meta: structuredClone(c.meta) };
  edit(content);
  const out = path.join(tmp.dir, name);
  writeFileSync(out, Buffer.concat(encodeSessionFile(content)));
  return out;
}

beforeAll(async () => {
  await makeTinyModel(dirA, { seed: 1 });
  await makeTinyModel(dirB, { seed: 2 });
  model = await loadModel(dirA, { threads: 1 });
  expect(model.info.config.vocabSize).toBe(512); // the ids below are chosen around it
  fpA = await fingerprintCheckpoint(dirA);
  const chat = model.chat({ reasoning: false });
  await chat.send('hello there', { maxTokens: 6 });
  saved = path.join(tmp.dir, 'good.session');
  await chat.save(saved);
}, 60_000);
afterAll(async () => {
  await model?.close();
  tmp.cleanup();
});

describe('the fingerprint identifies the weights', () => {
  it('two checkpoints with the same config and layout but other weights differ', async () => {
    const fpB = await fingerprintCheckpoint(dirB);
    expect(readFileSync(path.join(dirA, 'config.json'), 'utf8')).toBe(readFileSync(path.join(dirB, 'config.json'), 'utf8'));
    expect(fpB).not.toBe(fpA);
    // one changed weight byte in the middle of a tensor changes it too
    const c = path.join(tmp.dir, 'one-byte');
    await makeTinyModel(c, { seed: 1 });
    expect(await fingerprintCheckpoint(c)).toBe(fpA);
    const st = path.join(c, 'model.safetensors');
    const bytes = readFileSync(st);
    const len = Number(bytes.readBigUInt64LE(0));
    const header = JSON.parse(bytes.subarray(8, 8 + len).toString('utf8')) as Record<string, { data_offsets: [number, number] }>;
    for (const [name, t] of Object.entries(header)) {
      if (name === '__metadata__') continue;
      const copy = Buffer.from(bytes);
      copy[8 + len + t.data_offsets[0]] ^= 0x01; // the first byte of each tensor, one at a time
      writeFileSync(st, copy);
      expect(await fingerprintCheckpoint(c), name).not.toBe(fpA);
    }
  });

  it('GGUF files: the same for the same weights, different for other weights of the same layout', async () => {
    const g = async (name: string, seed: number) => (await makeTinyModel(path.join(tmp.dir, name), { seed, format: 'gguf' })).gguf!;
    const [a1, a2, b] = [await g('gguf-a1', 1), await g('gguf-a2', 1), await g('gguf-b', 2)];
    const fa = await fingerprintCheckpoint(a1);
    expect(await fingerprintCheckpoint(a2)).toBe(fa);
    expect(await fingerprintCheckpoint(b)).not.toBe(fa);
  });

  it('a session saved with one checkpoint does not load into the other', async () => {
    const other = await loadModel(dirB, { threads: 1 });
    try {
      await expect(other.loadChat(saved)).rejects.toMatchObject({ code: 'ERR_INVALID_SESSION_FILE', message: expect.stringMatching(/different model/) });
    } finally {
      await other.close();
    }
  });
});

describe('crafted session contents with a valid checksum', () => {
  it('the untouched file loads and continues', async () => {
    const chat = await model.loadChat(saved);
    const r = await chat.send('and again', { maxTokens: 3 });
    expect(r.finishReason).not.toBe('error');
  });

  for (const id of [-1, 512, 100000, 2 ** 31 - 1, -(2 ** 31)]) {
    it(`token id ${id} is refused`, async () => {
      const file = craft((c) => (c.tokens[1] = id), `id-${id}.session`);
      await expect(model.loadChat(file)).rejects.toMatchObject({ code: 'ERR_INVALID_SESSION_FILE', message: expect.stringMatching(/token/) });
    });
  }

  it('a token list longer or shorter than the state', async () => {
    for (const delta of [1, -1]) {
      const file = craft((c) => {
        const t = delta > 0 ? Int32Array.from([...c.tokens, 20]) : c.tokens.slice(0, -1);
        c.tokens = t;
      }, `len-${delta}.session`);
      await expect(model.loadChat(file)).rejects.toMatchObject({ code: 'ERR_INVALID_SESSION_FILE', message: expect.stringMatching(/positions but \d+ tokens/) });
    }
  });

  it('chat metadata of the wrong shape (found by scripts/fuzz-session.ts: options null gave a TypeError)', async () => {
    for (const [name, meta] of [['null-options', { options: null, history: [] }], ['array-options', { options: [], history: [] }], ['bad-overflow', { options: { contextOverflow: 'x' }, history: [] }], ['bad-message', { options: {}, history: [{ role: 'nobody', content: 'x' }] }]] as const) {
      const file = craft((c) => (c.meta = structuredClone(meta) as unknown as Record<string, unknown>), `${name}.session`);
      await expect(model.loadChat(file), name).rejects.toMatchObject({ code: 'ERR_INVALID_SESSION_FILE' });
    }
  });

  it('NaN or Inf in the Mamba state or the KV rows', async () => {
    const cases: Array<[string, (s: Uint8Array) => void]> = [
      ['conv NaN', (s) => new DataView(s.buffer).setFloat32(SNAP_HEADER, NaN, true)],
      ['conv Inf', (s) => new DataView(s.buffer).setFloat32(SNAP_HEADER + 8, Infinity, true)],
      ['KV f16 NaN', (s) => new DataView(s.buffer).setUint16(s.length - 2, 0x7e00, true)],
      ['KV f16 -Inf', (s) => new DataView(s.buffer).setUint16(s.length - 4, 0xfc00, true)],
    ];
    for (const [name, poison] of cases) {
      const file = craft((c) => poison(c.state), `${name.replace(/\W/g, '-')}.session`);
      await expect(model.loadChat(file), name).rejects.toMatchObject({ code: 'ERR_INVALID_SESSION_FILE', message: expect.stringMatching(/non-finite/) });
    }
  });
});

describe('temporary files of killed writers', () => {
  /** A pid that certainly belongs to no live process: a child that has exited. */
  function deadPid(): number {
    const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
    return Number(r.stdout);
  }

  it('the next save to the same path removes them; live writers and other targets are left alone', async () => {
    const target = path.join(tmp.dir, 'chat.session');
    const dead = `${path.basename(target)}.tmp-${deadPid()}-0123456789ab`;
    const live = `${path.basename(target)}.tmp-${process.pid}-abcdefabcdef`; // a concurrent save of this process
    const other = `other.session.tmp-${deadPid()}-0123456789ab`;
    const notOurs = `${path.basename(target)}.tmp-notapid`;
    for (const f of [dead, live, other, notOurs]) writeFileSync(path.join(tmp.dir, f), Buffer.alloc(1000));
    const content = { modelFingerprint: fpA, tokens: new Int32Array([1, 2]), state: new Uint8Array(4), meta: {} };
    await writeSessionFile(target, content);
    const left = readdirSync(tmp.dir);
    expect(left).not.toContain(dead);
    expect(left).toContain(live);
    expect(left).toContain(other);
    expect(left).toContain(notOurs);
    expect(existsSync(target)).toBe(true);
  });

  it('a writer killed with SIGKILL mid-save: its temporary file goes at the next save', async () => {
    const target = path.join(tmp.dir, 'killed.session');
    // A child that opens the temporary file, writes part of it and is killed before the rename.
    const script = `
      const fs = require('node:fs');
      const tmp = ${JSON.stringify(target)} + '.tmp-' + process.pid + '-' + 'deadbeef0001';
      fs.writeFileSync(tmp, Buffer.alloc(1 << 20));
      process.kill(process.pid, 'SIGKILL');`;
    spawnSync(process.execPath, ['-e', script]);
    expect(readdirSync(tmp.dir).filter((f) => f.startsWith('killed.session.tmp-'))).toHaveLength(1);
    await writeSessionFile(target, { modelFingerprint: fpA, tokens: new Int32Array(0), state: new Uint8Array(0), meta: {} });
    expect(readdirSync(tmp.dir).filter((f) => f.startsWith('killed.session.tmp-'))).toHaveLength(0);
  });
});
