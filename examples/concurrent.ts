// Several streams at once: the engine batches their decode steps into one forward pass per step.
//   node --import tsx examples/concurrent.ts [checkpoint]
import { loadModel } from '../lib/index.js';
import { defaultModelPath } from '../lib/default-model.js';

const model = await loadModel(process.argv[2] ?? (await defaultModelPath()), { maxSequences: 4 });

const prompts = ['The ocean', 'A robot', 'In the year 3000', 'My favourite recipe'];
const t0 = performance.now();
const results = await Promise.all(
  prompts.map(async (prompt, i) => {
    let text = '';
    for await (const ev of model.stream({ prompt, maxTokens: 32, temperature: 0.8, seed: i })) {
      if (ev.type === 'text') text += ev.text;
      if (ev.type === 'done') return { prompt, text, tokens: ev.result.usage.completionTokens, queueMs: ev.result.timings.queueMs };
    }
    throw new Error('stream ended without done');
  }),
);
const seconds = (performance.now() - t0) / 1000;
for (const r of results) console.log(`${JSON.stringify(r.prompt)} -> ${JSON.stringify(r.text.slice(0, 40))}… (${r.tokens} tokens, queued ${r.queueMs.toFixed(1)} ms)`);
const total = results.reduce((s, r) => s + r.tokens, 0);
console.log(`${total} tokens in ${seconds.toFixed(2)} s over ${prompts.length} streams; ${model.stats().steps} batched steps`);
await model.close();
