/**
 * Serving figures (issue #11) on the 330M table model (bench/bench-model.ts), in one process:
 *
 *   1. Aggregate decode of 8 concurrent streams as a ratio to one stream (continuous batching reads
 *      each weight once per step for every stream).
 *   2. A soak: `--streams` concurrent clients for `--seconds`, each running requests back to back with
 *      random lengths, a random fifth of them aborted part-way. Reports aggregate tokens/s, p50/p99
 *      inter-token latency, p99 and max event-loop delay (perf_hooks), RSS after warm-up and after the
 *      load stops, errors, and the share of wall time spent in JavaScript between engine steps
 *      (ModelStats.jsMsBetweenSteps / (that + stepMs): event routing, text work and consumers; an upper
 *      bound, since it also counts the event loop's other work).
 *
 *   npm run bench:serving -- [--type BF16|Q8_0] [--precision exact|fast] [--streams 64] [--seconds 300]
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { parseArgs } from 'node:util';

import { loadModel, type NemotronModel } from '../lib/index.js';
import { ensureTableModel, type BenchGgufType } from './bench-model.js';
import { noEnd } from './engines.js'; // random weights: keep every stream going for its full length

const { values } = parseArgs({
  options: {
    type: { type: 'string', default: 'BF16' },
    precision: { type: 'string', default: 'exact' },
    threads: { type: 'string', default: '2' },
    streams: { type: 'string', default: '64' },
    seconds: { type: 'string', default: '300' },
    tokens: { type: 'string', default: '48' },
  },
});
const type = values.type as BenchGgufType;
const precision = values.precision as 'exact' | 'fast';
const threads = Number(values.threads);

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function aggregateDecode(model: NemotronModel, streams: number, tokens: number): Promise<number> {
  const prompts = Array.from({ length: streams }, (_, i) => [1, 100 + i, 200 + i, 300 + i]);
  await Promise.all(prompts.map((prompt) => model.generate({ prompt, maxTokens: 4, logitBias: noEnd })));
  const results = await Promise.all(prompts.map((prompt, i) => model.generate({ prompt, maxTokens: tokens, temperature: 0.8, seed: i, logitBias: noEnd })));
  return results.reduce((s, r) => s + r.timings.decodeTokensPerSecond, 0);
}

const { gguf } = await ensureTableModel(type);
const streams = Number(values.streams);

// ---- 1. 8 streams vs 1 --------------------------------------------------------------------------------
{
  const model = await loadModel(gguf, { threads, maxSequences: 8, precision });
  const tokens = Number(values.tokens);
  const one = await aggregateDecode(model, 1, tokens);
  const eight = await aggregateDecode(model, 8, tokens);
  console.log(`${type} ${precision}, ${threads} threads: 1 stream ${one.toFixed(1)} tok/s, 8 streams ${eight.toFixed(1)} tok/s aggregate = ${(eight / one).toFixed(2)}x`);
  await model.close();
}

// ---- 2. soak ------------------------------------------------------------------------------------------
{
  // The prefix cache keeps up to cacheBytes of snapshots by design: a budget the warm-up fills, so that
  // RSS after warm-up is the steady state and growth past it would be a leak.
  const cacheBytes = 256 * 2 ** 20;
  const model = await loadModel(gguf, { threads, maxSequences: streams, precision, contextLength: 1024, cacheBytes });
  const seconds = Number(values.seconds);
  let seed = 7;
  const rand = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
  const randomPrompt = () => [1, ...Array.from({ length: 8 + Math.floor(rand() * 120) }, () => 20 + Math.floor(rand() * 400))];
  // Warm-up: every slot used (the state free list and the allocator at their steady size), the prefix
  // cache filled to its budget (every request caches a snapshot one token before its end), and then the
  // soak's own mixed load for a tenth of the run (30 s at least), so that the KV pool's pages that the
  // load touches (reserved at load, committed on first write) are in RSS before it is measured.
  for (let round = 0; round < 2 || model.stats().snapshotBytes < 0.9 * cacheBytes; round++) {
    await Promise.all(Array.from({ length: streams }, () => model.generate({ prompt: randomPrompt(), maxTokens: 2, logitBias: noEnd })));
    if (round > 20) break;
  }
  const warmUntil = performance.now() + Math.max(30_000, seconds * 100);
  await Promise.all(
    Array.from({ length: streams }, async (_, client) => {
      while (performance.now() < warmUntil) {
        await model.generate({ prompt: randomPrompt(), maxTokens: 16 + Math.floor(rand() * 112), temperature: 0.7, seed: client, logitBias: noEnd });
      }
    }),
  );
  await model.idle();
  global.gc?.();
  const rssStart = process.memoryUsage().rss;
  const statsStart = model.stats();
  const loop = monitorEventLoopDelay({ resolution: 5 });
  loop.enable();
  const gaps: number[] = [];
  let tokens = 0;
  let requests = 0;
  let aborted = 0;
  let errors = 0;
  const deadline = performance.now() + seconds * 1000;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: streams }, async (_, client) => {
      while (performance.now() < deadline) {
        const ac = new AbortController();
        const abortAt = rand() < 0.2 ? setTimeout(() => ac.abort(), rand() * 2000) : undefined;
        const prompt = randomPrompt();
        let last = 0;
        try {
          for await (const ev of model.stream({ prompt, maxTokens: 16 + Math.floor(rand() * 112), temperature: 0.7, seed: client, signal: ac.signal, logitBias: noEnd })) {
            if (ev.type === 'done') {
              tokens += ev.result.usage.completionTokens;
              if (ev.result.finishReason === 'abort') aborted++;
              else if (ev.result.finishReason === 'error') errors++;
              continue;
            }
            const now = performance.now();
            if (last > 0) gaps.push(now - last);
            last = now;
          }
        } catch {
          errors++;
        }
        clearTimeout(abortAt);
        requests++;
      }
    }),
  );
  const wall = (performance.now() - t0) / 1000;
  loop.disable();
  await model.idle();
  const statsEnd = model.stats();
  global.gc?.();
  await new Promise((r) => setTimeout(r, 200));
  const rssEnd = process.memoryUsage().rss;
  gaps.sort((a, b) => a - b);
  const stepMs = statsEnd.stepMs - statsStart.stepMs;
  const jsMs = statsEnd.jsMsBetweenSteps - statsStart.jsMsBetweenSteps;
  const steps = statsEnd.steps - statsStart.steps;
  console.log(`soak: ${streams} streams, ${wall.toFixed(0)} s, ${requests} requests (${aborted} aborted), ${errors} errors`);
  console.log(`  aggregate ${(tokens / wall).toFixed(1)} tok/s; inter-token latency p50 ${percentile(gaps, 50).toFixed(1)} ms, p99 ${percentile(gaps, 99).toFixed(1)} ms`);
  console.log(`  event-loop delay p99 ${(loop.percentile(99) / 1e6).toFixed(1)} ms, max ${(loop.max / 1e6).toFixed(1)} ms`);
  console.log(`  JavaScript between steps: ${jsMs.toFixed(0)} ms of ${(jsMs + stepMs).toFixed(0)} ms = ${((100 * jsMs) / (jsMs + stepMs)).toFixed(1)} % (${steps} steps, ${(stepMs / Math.max(steps, 1)).toFixed(1)} ms native per step)`);
  console.log(`  RSS after warm-up ${(rssStart / 2 ** 20).toFixed(0)} MiB, after the load ${(rssEnd / 2 ** 20).toFixed(0)} MiB (${(((rssEnd - rssStart) / rssStart) * 100).toFixed(1)} %); prefix cache ${(statsStart.snapshotBytes / 2 ** 20).toFixed(0)} -> ${(statsEnd.snapshotBytes / 2 ** 20).toFixed(0)} MiB of ${cacheBytes / 2 ** 20}; live sequences ${statsEnd.liveSequences}, queued ${statsEnd.queuedRequests}`);
  await model.close();
}
