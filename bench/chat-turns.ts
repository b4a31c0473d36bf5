/**
 * Per-turn latency of a chat as its history grows: 1k, 4k, 16k and 64k tokens. The session restores
 * the state at the previous assistant message from a snapshot and computes only the new tokens, so a
 * turn should cost the same whatever came before. For contrast, the same turn with the cache off
 * re-processes the whole conversation, as engines without hybrid-state reuse do on these models.
 *
 *   npm run bench:chat [-- --sizes 1024,4096,16384,65536 --threads 2]
 */
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';

import { loadModel, makeTinyModel } from '../lib/index.js';
import { noEnd } from './engines.js'; // random weights: keep every stream going for its full length

const { values } = parseArgs({
  options: {
    threads: { type: 'string', default: String(os.availableParallelism()) },
    sizes: { type: 'string', default: '1024,4096,16384,65536' },
    'cold-max': { type: 'string', default: '16384' },
  },
});
const sizes = values.sizes.split(',').map(Number);
const coldMax = Number(values['cold-max']);
const threads = Number(values.threads);

// A mid-size model (long prefills on 2 cores stay in minutes): the 9B's block mix, hidden 256.
const dir = path.resolve(import.meta.dirname, 'models/chat-bench');
if (!existsSync(path.join(dir, 'config.json'))) {
  await makeTinyModel(dir, { seed: 7, pattern: 'M-M-M*-M-M-M*-M-', hiddenSize: 256, mambaNumHeads: 8, mambaHeadDim: 32, nGroups: 2, ssmStateSize: 64, numAttentionHeads: 4, numKeyValueHeads: 2, headDim: 32, intermediateSize: 896, vocabSize: 4096, maxPositionEmbeddings: 131072 });
}
const turnText = 'Please summarise what we discussed in one short sentence.';

async function turnLatency(historyTokens: number, cached: boolean): Promise<{ ms: number; computed: number }> {
  const model = await loadModel(dir, { threads, contextLength: historyTokens + 2048, maxSequences: 2, maxBatchTokens: 512, ...(cached ? {} : { cacheBytes: 0, snapshotInterval: 0 }) });
  // The history: a system prompt of about historyTokens tokens (tokenizer: ~0.6 tokens per byte).
  const word = 'context ';
  const perWord = model.tokenize(word.repeat(100), { addSpecialTokens: false }).length / 100;
  const chat = model.chat({ system: word.repeat(Math.round(historyTokens / perWord)), reasoning: false });
  await chat.send('Hello.', { maxTokens: 16, logitBias: noEnd });
  await chat.send('Tell me more.', { maxTokens: 16, logitBias: noEnd }); // warm
  const r = await chat.send(turnText, { maxTokens: 16, logitBias: noEnd });
  await model.close();
  return { ms: r.timings.totalMs, computed: r.usage.promptTokens - r.usage.cachedTokens };
}

console.log(`model: ${dir}, ${threads} threads; a turn = ~20 new prompt tokens + 16 generated`);
console.log('history tokens   turn ms (cached)   computed tokens   turn ms (no cache)   computed tokens');
for (const n of sizes) {
  const warm = await turnLatency(n, true);
  const cold = n <= coldMax ? await turnLatency(n, false) : undefined;
  console.log(
    `${String(n).padStart(14)}   ${warm.ms.toFixed(1).padStart(16)}   ${String(warm.computed).padStart(15)}   ${cold ? cold.ms.toFixed(1).padStart(18) : '(skipped)'.padStart(18)}   ${cold ? String(cold.computed).padStart(15) : ''}`,
  );
}
