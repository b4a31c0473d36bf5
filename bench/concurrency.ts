/**
 * Aggregate decode throughput with 1, 4 and 8 concurrent streams on the bench model, as ratios to one
 * stream. Continuous batching reads each weight once per step for all live streams, so at small batch
 * (memory-bound) the aggregate should grow almost linearly with the number of streams.
 *
 *   npm run bench:concurrency [-- --tokens 64 --threads 2]
 */
import os from 'node:os';
import { parseArgs } from 'node:util';

import { loadModel } from '../lib/index.js';
import { ensureBenchModel } from './bench-model.js';
import { noEnd } from './engines.js'; // random weights: keep every stream going for its full length

const { values } = parseArgs({
  options: {
    threads: { type: 'string', default: String(os.availableParallelism()) },
    tokens: { type: 'string', default: '64' },
  },
});
const tokens = Number(values.tokens);
const model = await loadModel(await ensureBenchModel(), { threads: Number(values.threads), maxSequences: 8 });

async function aggregate(streams: number): Promise<number> {
  // Warm-up, then measure from the moment every stream has its first token (prefill excluded).
  const prompts = Array.from({ length: streams }, (_, i) => [1, 100 + i, 200 + i, 300 + i]);
  await Promise.all(prompts.map((prompt) => model.generate({ prompt, maxTokens: 4, logitBias: noEnd })));
  const results = await Promise.all(prompts.map((prompt, i) => model.generate({ prompt, maxTokens: tokens, temperature: 0.8, seed: i, logitBias: noEnd })));
  // Decode tokens per second of each stream, summed: tokens after the first over the decode time.
  return results.reduce((s, r) => s + r.timings.decodeTokensPerSecond, 0);
}

const base = await aggregate(1);
console.log(`model: ${model.info.parameterCount.toLocaleString('en-US')} parameters, ${model.info.threads} threads, ${tokens} tokens per stream`);
console.log('streams  aggregate decode tok/s  ratio to 1 stream');
for (const n of [1, 4, 8]) {
  const agg = n === 1 ? base : await aggregate(n);
  console.log(`${String(n).padStart(7)}  ${agg.toFixed(1).padStart(22)}  ${(agg / base).toFixed(2).padStart(17)}`);
}
await model.close();
