/**
 * Soak (issue #13): `--streams` concurrent clients for `--seconds` against one model, through the
 * library and through the server, mixing every way a request can end:
 *   - library streams read to the end, aborted by a signal at a random moment, broken off with
 *     `return()`, paused for a while, or dropped unfinished (the iterator lost, as when a handler throws);
 *   - chat sessions: two turns, saved, loaded into a new session, one more turn;
 *   - server requests (streaming and not, stateless multi-turn), some of whose clients disconnect.
 * At the end (load stopped, engine idle, garbage collected) it checks: 0 live sequences, 0 queued, every
 * KV block in use held only by the prefix cache, RSS within 10 % of its value after warm-up, no request
 * that ended in an unexpected error. Prints the figures; exit status 1 if a check fails.
 *
 *   node --expose-gc --import tsx scripts/soak.ts [--seconds 600] [--streams 64]   (npm run soak)
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';

import { loadModel, makeTinyModel, type StreamEvent } from '../lib/index.js';
import { createServer } from '../lib/server/index.js';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '600' },
    streams: { type: 'string', default: '64' },
  },
});
const seconds = Number(values.seconds);
const streams = Number(values.streams);
const gc = (globalThis as { gc?: () => void }).gc ?? (() => {});
const noEnd = { 12: -100, 2: -100 };

const dir = mkdtempSync(path.join(os.tmpdir(), 'nemotron-soak-'));
await makeTinyModel(path.join(dir, 'model'), { seed: 77, pattern: 'M-M*-M-', hiddenSize: 96, vocabSize: 512, maxPositionEmbeddings: 4096 });
const cacheBytes = 32 * 2 ** 20;
const model = await loadModel(path.join(dir, 'model'), { threads: 2, contextLength: 2048, maxSequences: 16, cacheBytes, idleTimeoutMs: 1500 });
const server = await createServer(model, { modelName: 'soak', maxConcurrent: 256 });
const url = await server.listen(0, '127.0.0.1');

let seed = 99;
const rand = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
const pick = <T,>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const prompt = () => [1, ...Array.from({ length: 4 + Math.floor(rand() * 60) }, () => 20 + Math.floor(rand() * 400))];
const words = ['river', 'stone', 'quiet', 'north', 'lamp', 'seven', 'orange', 'bridge'];
const sentence = () => Array.from({ length: 3 + Math.floor(rand() * 8) }, () => pick(words)).join(' ');

const counts = new Map<string, number>();
const count = (k: string) => counts.set(k, (counts.get(k) ?? 0) + 1);
const unexpected: string[] = [];

async function drain(events: AsyncGenerator<StreamEvent>, label: string): Promise<void> {
  for await (const ev of events) {
    if (ev.type === 'done') {
      count(`${label}:${ev.result.finishReason}`);
      // 'abort' is an outcome here (signals, idle timeouts); 'error' never is.
      if (ev.result.finishReason === 'error') unexpected.push(`${label}: ${ev.result.error?.code} ${ev.result.error?.message}`);
    }
  }
}

const scenarios: Record<string, () => Promise<void>> = {
  async complete() {
    await drain(model.stream({ prompt: prompt(), maxTokens: 4 + Math.floor(rand() * 40), temperature: 0.8, seed: Math.floor(rand() * 1e6), logitBias: noEnd }), 'complete');
  },
  async aborted() {
    const ac = new AbortController();
    setTimeout(() => ac.abort(), rand() * 300);
    await drain(model.stream({ prompt: prompt(), maxTokens: 200, signal: ac.signal, logitBias: noEnd }), 'aborted');
  },
  async brokenOff() {
    const it = model.stream({ prompt: prompt(), maxTokens: 200, logitBias: noEnd });
    for (let n = Math.floor(rand() * 6); n >= 0; n--) if ((await it.next()).done) break;
    await it.return(undefined);
    count('brokenOff');
  },
  async paused() {
    const it = model.stream({ prompt: prompt(), maxTokens: 30, logitBias: noEnd });
    await it.next();
    await sleep(rand() * 2500); // sometimes past idleTimeoutMs: then the rest is an aborted end
    await drain(it, 'paused');
  },
  async abandoned() {
    const it = model.stream({ prompt: prompt(), maxTokens: 200, logitBias: noEnd });
    await it.next(); // then the iterator is lost
    count('abandoned');
  },
  async chat() {
    const chat = model.chat({ system: 'Be brief.', reasoning: rand() < 0.5 });
    await chat.send(sentence(), { maxTokens: 6, seed: 1 });
    await chat.send(sentence(), { maxTokens: 6, seed: 2 });
    const file = path.join(dir, `chat-${Math.floor(rand() * 1e9)}.nemo`);
    await chat.save(file);
    const restored = await model.loadChat(file);
    const r = await restored.send(sentence(), { maxTokens: 6, seed: 3 });
    if (r.finishReason === 'error') unexpected.push(`chat: ${r.error?.message}`);
    chat.dispose();
    restored.dispose();
    rmSync(file, { force: true });
    count('chat');
  },
  async serverStream() {
    const ac = new AbortController();
    const disconnect = rand() < 0.4;
    if (disconnect) setTimeout(() => ac.abort(), rand() * 200);
    try {
      const res = await fetch(`${url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'soak', messages: [{ role: 'user', content: sentence() }], max_tokens: 24, stream: true, logit_bias: noEnd }),
        signal: ac.signal,
      });
      if (res.status !== 200) unexpected.push(`server stream: HTTP ${res.status}`);
      await res.text();
      count('serverStream');
    } catch (err) {
      if (!disconnect) unexpected.push(`server stream: ${String(err)}`);
      else count('serverDisconnect');
    }
  },
  async serverTurns() {
    const messages: Array<{ role: string; content: string }> = [{ role: 'user', content: sentence() }];
    for (let turn = 0; turn < 2; turn++) {
      const res = await fetch(`${url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'soak', messages, max_tokens: 8, seed: turn }),
      });
      const body = (await res.json()) as { choices?: Array<{ message: { content: string } }>; error?: unknown };
      if (res.status !== 200) {
        unexpected.push(`server turn: HTTP ${res.status} ${JSON.stringify(body.error)}`);
        return;
      }
      messages.push({ role: 'assistant', content: body.choices![0]!.message.content }, { role: 'user', content: sentence() });
    }
    count('serverTurns');
  },
};
const names = Object.keys(scenarios);

async function settle(): Promise<void> {
  await model.idle();
  for (let i = 0; i < 5; i++) {
    gc();
    await sleep(50);
    await model.idle();
  }
}

// Warm-up: every scenario a few times, the prefix cache filled to its budget.
for (let round = 0; round < 3 || model.stats().snapshotBytes < 0.8 * cacheBytes; round++) {
  await Promise.all(Array.from({ length: streams }, (_, i) => scenarios[names[i % names.length]!]!()));
  if (round > 30) break;
}
await sleep(1600); // idle timeouts of the warm-up's abandoned streams
await settle();
counts.clear();
unexpected.length = 0;
const heapStart = process.memoryUsage();
const rssStart = heapStart.rss;
const t0 = performance.now();
const deadline = t0 + seconds * 1000;
await Promise.all(
  Array.from({ length: streams }, async () => {
    while (performance.now() < deadline) await scenarios[pick(names)]!();
  }),
);
const wall = (performance.now() - t0) / 1000;
await sleep(1600); // the last abandoned streams' idle timeouts
await settle();
const s = model.stats();
const rssEnd = process.memoryUsage().rss;
const rssChange = (rssEnd - rssStart) / rssStart;
const total = [...counts.values()].reduce((a, b) => a + b, 0);
console.log(`soak: ${streams} clients, ${wall.toFixed(0)} s, ${total} requests: ${JSON.stringify(Object.fromEntries([...counts].sort()))}`);
console.log(`end state: ${s.liveSequences} live sequences, ${s.queuedRequests} queued, ${s.kvBlocksUsed} KV blocks in use (${s.kvBlocksCached} held only by the prefix cache), cache ${(s.snapshotBytes / 2 ** 20).toFixed(1)} MiB / ${cacheBytes / 2 ** 20} MiB, ${s.prefixCacheHits} prefix hits`);
const heapEnd = process.memoryUsage();
console.log(`RSS after warm-up ${(rssStart / 2 ** 20).toFixed(0)} MiB, at the end ${(rssEnd / 2 ** 20).toFixed(0)} MiB (${(rssChange * 100).toFixed(1)} %); JS heap ${(heapStart.heapUsed / 2 ** 20).toFixed(1)} -> ${(heapEnd.heapUsed / 2 ** 20).toFixed(1)} MiB, external ${(heapStart.external / 2 ** 20).toFixed(1)} -> ${(heapEnd.external / 2 ** 20).toFixed(1)} MiB; unexpected errors: ${unexpected.length}`);
for (const u of unexpected.slice(0, 10)) console.log(`  ${u}`);
const failures: string[] = [];
if (s.liveSequences !== 0) failures.push('live sequences remain');
if (s.queuedRequests !== 0) failures.push('requests remain queued');
if (s.kvBlocksUsed !== s.kvBlocksCached) failures.push('KV blocks in use beyond the prefix cache');
if (Math.abs(rssChange) > 0.1) failures.push('RSS moved more than 10 %');
if (unexpected.length > 0) failures.push('unexpected errors');
if (total === 0) failures.push('no request ran');
await server.close();
await model.close();
rmSync(dir, { recursive: true, force: true });
console.log(failures.length === 0 ? 'soak: PASS' : `soak: FAIL (${failures.join('; ')})`);
process.exit(failures.length === 0 ? 0 : 1);
