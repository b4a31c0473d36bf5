/**
 * Fuzzes the session-file format (lib/chat/session-file.ts) and what loadChat does with its contents,
 * through to the native snapshot import (Engine::import_snapshot), on a tiny model. Seeded: the same
 * --seed gives the same cases. Two kinds of case:
 *   - raw: bytes of a saved file mutated as they are; the checksum must catch every change
 *     (decodeSessionFile throws SessionFileError);
 *   - crafted: the decoded content edited (token ids and counts, state bytes and header fields, NaN/Inf,
 *     meta of the wrong shape) and re-encoded with a valid checksum, as a hostile user would, then loaded
 *     with model.loadChat: it must load (and then run a turn without an error) or fail with a typed error.
 * A crash of the process leaves the case's file in --crash-dir as crash-session-current.
 *
 * Regression inputs (test/fixtures/fuzz/session/*.session, saved with this script's tiny model, seed 9) are
 * loaded first. `--write-regression NAME` saves the first crafted case as such a file instead of fuzzing.
 *
 *   node --import tsx scripts/fuzz-session.ts [--seed 1] [--cases 5000] [--seconds 0] [--crash-dir DIR]
 * Exit status 1 when a case failed (an untyped or internal error, a hang, a turn that ended in 'error').
 */
import { mkdtempSync, readdirSync, rmSync, writeFileSync, unlinkSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { NemotronError, loadModel, makeTinyModel } from '../lib/index.js';
import { SessionFileError } from '../lib/errors.js';
import { decodeSessionFile, encodeSessionFile, fingerprintCheckpoint } from '../lib/chat/session-file.js';

const args = new Map<string, string>();
for (let i = 2; i + 1 < process.argv.length; i += 2) args.set(process.argv[i]!.replace(/^--/, ''), process.argv[i + 1]!);
const seed = Number(args.get('seed') ?? 1);
const cases = Number(args.get('cases') ?? 5000);
const seconds = Number(args.get('seconds') ?? 0);
const crashDir = args.get('crash-dir') ?? os.tmpdir();

/** mulberry32: small, seeded, the same everywhere. */
function rng(s: number): () => number {
  let a = s >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const rand = rng(seed * 2654435761);
const below = (n: number) => Math.floor(rand() * n);
const pick = <T>(xs: readonly T[]): T => xs[below(xs.length)]!;

const INTS = [-1, 0, 1, 2, 511, 512, 513, 100000, 2 ** 31 - 1, -(2 ** 31)];
const U64 = [0n, 1n, 2n, 7n, 255n, 256n, 0xffffffffn, 0x100000000n, 2n ** 53n + 1n, 2n ** 63n, 2n ** 64n - 1n];
const F32 = [NaN, Infinity, -Infinity, 3.4e38, -0, 1e-45];
const F16 = [0x7e00, 0x7c00, 0xfc00, 0x7bff];
const META = [null, [], 1, 'x', {}, { options: null, history: [] }, { options: {}, history: null }, { options: [], history: [] },
  { options: { contextOverflow: 'bogus' }, history: [] }, { options: { system: 5 }, history: [] }, { options: {}, history: [{ role: 'user', content: 5 }] },
  { options: {}, history: [{ role: 'nobody', content: 'x' }] }, { options: { tools: 'x' }, history: [] }, { options: { reasoning: 'yes' }, history: [] }];

const tmp = mkdtempSync(path.join(os.tmpdir(), 'nemotron-fuzz-session-'));
const t0 = performance.now();
let failed = 0;
const outcomes = new Map<string, number>();
const note = (k: string) => outcomes.set(k, (outcomes.get(k) ?? 0) + 1);

try {
  const dir = path.join(tmp, 'model');
  await makeTinyModel(dir, { seed: 9 });
  const model = await loadModel(dir, { threads: 1, maxSequences: 2, contextLength: 512, cacheBytes: 1 << 22 });
  const fp = await fingerprintCheckpoint(dir);
  const chat = model.chat({ reasoning: false });
  await chat.send('hello', { maxTokens: 5 });
  const savedFile = path.join(tmp, 'saved.session');
  await chat.save(savedFile);
  chat.dispose();
  const saved = readFileSync(savedFile);
  const good = decodeSessionFile(saved, fp);
  const caseFile = path.join(crashDir, 'crash-session-current');

  // Regression inputs: each must give a typed error (or load).
  const regressDir = path.resolve(import.meta.dirname, '../test/fixtures/fuzz/session');
  for (const name of readdirSync(regressDir).filter((f) => f.endsWith('.session')).sort()) {
    try {
      (await model.loadChat(path.join(regressDir, name))).dispose();
      note('regression: loaded');
    } catch (e) {
      if (e instanceof NemotronError && e.code !== 'ERR_INTERNAL') note(`regression: ${e.code}`);
      else { failed++; console.error(`fuzz-session: regression input ${name}: ${String(e)}`); }
    }
  }
  const regression = args.get('write-regression');
  if (regression) {
    // The input that found the first bug: chat options null in an otherwise valid file.
    const bytes = Buffer.concat(encodeSessionFile({ ...good, meta: { ...good.meta, options: null } }));
    writeFileSync(path.join(regressDir, `${regression}.session`), bytes);
    console.log(`fuzz-session: wrote ${regression}.session`);
  }

  let n = 0;
  for (; cases <= 0 || n < cases; n++) {
    if (seconds > 0 && performance.now() - t0 > seconds * 1000) break;
    if (rand() < 0.3) {
      // raw: any change must be caught by the checksum or the structure checks
      const b = Buffer.from(saved);
      const k = 1 + below(4);
      for (let i = 0; i < k; i++) b[below(b.length)] ^= 1 << below(8);
      const cut = rand() < 0.2 ? b.subarray(0, below(b.length)) : b;
      if (cut.equals(saved)) continue;
      try {
        decodeSessionFile(cut, fp);
        failed++;
        console.error(`fuzz-session: case ${n}: a mutated file decoded without error`);
      } catch (e) {
        if (e instanceof SessionFileError) note('raw: ERR_INVALID_SESSION_FILE');
        else { failed++; console.error(`fuzz-session: case ${n}: raw mutation gave ${String(e)}`); }
      }
      continue;
    }
    // crafted: valid checksum, hostile content
    let tokens = Int32Array.from(good.tokens);
    const state = Buffer.from(good.state);
    let meta: unknown = structuredClone(good.meta);
    let st: Buffer = state;
    const k = 1 + below(3);
    for (let i = 0; i < k; i++) {
      switch (below(8)) {
        case 0: if (tokens.length) tokens[below(tokens.length)] = pick(INTS); break;
        case 1: tokens = rand() < 0.5 ? tokens.slice(0, below(tokens.length + 1)) : Int32Array.from([...tokens, ...Array.from({ length: 1 + below(70) }, () => below(512))]); break;
        case 2: if (st.length >= 72) st.writeBigUInt64LE(pick(U64), 8 + 8 * below(8)); break;
        case 3: if (st.length >= 76) st.writeFloatLE(pick(F32), 72 + 4 * below((st.length - 72) >> 2)); break;
        case 4: if (st.length >= 2) st.writeUInt16LE(pick(F16), 2 * below(st.length >> 1)); break;
        case 5: st = rand() < 0.5 ? st.subarray(0, below(st.length + 1)) : Buffer.concat([st, Buffer.alloc(1 + below(4096))]); break;
        case 6: meta = structuredClone(pick(META)); break;
        default: if (st.length) st[below(st.length)] ^= 1 << below(8); break;
      }
    }
    const bytes = Buffer.concat(encodeSessionFile({ modelFingerprint: fp, tokens, state: st, meta: (meta !== null && typeof meta === 'object' && !Array.isArray(meta) ? meta : { value: meta }) as Record<string, unknown> }));
    writeFileSync(caseFile, bytes);
    let timer: NodeJS.Timeout | undefined;
    try {
      const hang = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error('HANG: loadChat ran for 10 s')), 10_000); });
      const s = await Promise.race([model.loadChat(caseFile), hang]);
      note('crafted: loaded');
      if (n % 8 === 0) {
        const r = await Promise.race([s.send('more', { maxTokens: 2 }), hang]);
        if (r.finishReason === 'error') { failed++; console.error(`fuzz-session: case ${n}: a loaded session ended its turn in 'error'`); }
      }
      s.dispose();
    } catch (e) {
      if (e instanceof NemotronError && e.code !== 'ERR_INTERNAL') note(`crafted: ${e.code}`);
      else { failed++; console.error(`fuzz-session: case ${n}: ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`); }
    } finally {
      clearTimeout(timer);
    }
  }
  try { unlinkSync(caseFile); } catch { /* none written */ }
  await model.close();
  const summary = [...outcomes].sort().map(([k, v]) => `${k} ${v}`).join(', ');
  console.log(`fuzz: session     ${n} cases (seed ${seed}) in ${((performance.now() - t0) / 1000).toFixed(1)} s: ${failed === 0 ? 'no failure' : `${failed} FAILED`} (${summary})`);
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
process.exit(failed === 0 ? 0 : 1);
