/**
 * A short run of the engine through the public API, for scripts/sanitize.sh (the addon built with ASan +
 * UBSan): batched generation (more requests than sequences, so some queue), prefix snapshots and their
 * reuse, evaluate, a chat turn saved to a session file and loaded back (bit-exact continuation), the
 * checkTensors scan, and the same model as GGUF. Prints one line per step; exit status 1 on a wrong result.
 * Run alone: node --import tsx scripts/sanitize-smoke.ts (it uses whichever addon NEMOTRON_NODE_BINARY names).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { loadModel, makeTinyModel } from '../lib/index.js';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'nemotron-smoke-'));
let failed = 0;
function check(ok: boolean, what: string): void {
  console.log(`smoke: ${ok ? 'ok  ' : 'FAIL'} ${what}`);
  if (!ok) failed++;
}

try {
  const dir = path.join(tmp, 'tiny');
  await makeTinyModel(dir, { seed: 4 });
  const model = await loadModel(dir, { threads: 2, maxSequences: 3, maxBatchTokens: 32, contextLength: 512, snapshotInterval: 32, checkTensors: true });
  // Batching: 6 requests on 3 sequences, prompts long enough for chunked prefill and snapshots.
  const prompt = (i: number) => Array.from({ length: 70 + i }, (_, k) => 10 + ((k * 7 + i) % 300));
  const seq = await Promise.all(Array.from({ length: 6 }, (_, i) => model.generate({ prompt: prompt(i), maxTokens: 8, seed: i, temperature: 0.8 })));
  check(seq.every((r) => r.finishReason !== 'error' && r.tokens.length > 0), `6 batched generations on 3 sequences (${seq.map((r) => r.tokens.length).join(',')} tokens)`);
  const again = await model.generate({ prompt: prompt(2), maxTokens: 8, seed: 2, temperature: 0.8 });
  check(JSON.stringify(again.tokens) === JSON.stringify(seq[2]!.tokens), 'a repeated prompt resumes from its snapshot and gives the same tokens');
  check(model.stats().prefixCacheHits > 0, `prefix cache hits: ${model.stats().prefixCacheHits}`);
  const logits = await model.evaluate(prompt(0).slice(0, 20), { logits: 'all' });
  check(logits.length === 20 * model.info.config.vocabSize && logits.every(Number.isFinite), 'evaluate: finite logits for every position');

  // Session save/load: the loaded session continues exactly as the original.
  const chat = model.chat({ reasoning: false });
  await chat.send('hello there', { maxTokens: 6 });
  const file = path.join(tmp, 'chat.session');
  await chat.save(file);
  const a = await chat.send('and then', { maxTokens: 6 });
  const loaded = await model.loadChat(file);
  const b = await loaded.send('and then', { maxTokens: 6 });
  check(a.text === b.text, 'session saved, loaded, continued bit-exactly');
  await model.close();

  const ggufDir = path.join(tmp, 'gguf');
  const g = await makeTinyModel(ggufDir, { seed: 4, format: 'gguf', ggufType: 'Q8_0' });
  const gm = await loadModel(g.gguf!, { threads: 2, maxSequences: 2, contextLength: 256, checkTensors: true });
  const gr = await gm.generate({ prompt: prompt(1).slice(0, 40), maxTokens: 6 });
  check(gr.finishReason !== 'error', 'GGUF (Q8_0) model: checkTensors and a generation');
  await gm.close();
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
console.log(`smoke: ${failed === 0 ? 'PASS' : `${failed} FAILED`}`);
process.exit(failed === 0 ? 0 : 1);
