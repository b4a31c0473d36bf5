// Grammar-constrained decoding cost (issue #15) on the 330M bench model (bench-model.ts ensureTableModel):
// decode tokens/s with a JSON-schema constraint vs without, single stream and 8 streams (runs
// interleaved, best of --runs), the time to hand the vocabulary to the grammar engine (once per model)
// and to compile a typical schema.
//
//   node --import tsx bench/grammar.ts [--runs 3] [--tokens 64] [--threads N] [--type BF16|Q8_0]
import { parseArgs } from 'node:util';

import { loadModel } from '../lib/model.js';
import { ensureTableModel, type BenchGgufType } from './bench-model.js';

const { values } = parseArgs({ options: { runs: { type: 'string', default: '3' }, tokens: { type: 'string', default: '64' }, threads: { type: 'string' }, type: { type: 'string', default: 'BF16' } } });
const runs = Number(values.runs);
const tokens = Number(values.tokens);

// A typical API schema: nested object, enum, numbers, an array, a free string first (the random bench model
// rarely closes it, so most answers are still open after `tokens` tokens; the count decoded is reported).
const SCHEMA = {
  type: 'object',
  properties: {
    summary: { type: 'string' },
    sentiment: { enum: ['positive', 'neutral', 'negative'] },
    score: { type: 'number', minimum: 0, maximum: 1 },
    entities: { type: 'array', items: { type: 'object', properties: { name: { type: 'string' }, kind: { enum: ['person', 'place', 'org'] } }, required: ['name', 'kind'] } },
    meta: { type: 'object', properties: { lang: { type: 'string', pattern: '^[a-z]{2}$' }, pages: { type: 'integer' } }, required: ['lang'] },
  },
  required: ['summary', 'sentiment', 'score', 'entities', 'meta'],
};

const { gguf } = await ensureTableModel(values.type as BenchGgufType);
const model = await loadModel(gguf, { maxSequences: 8, contextLength: 2048, ...(values.threads ? { threads: Number(values.threads) } : {}) });
console.log(`model: ${gguf} (${model.info.backend}, ${model.info.threads} threads)`);

// Compile times (through the public path: a 1-token request waits for its grammar before it is registered).
const engine = (model as unknown as { grammars: { compile(parts: unknown[]): Promise<unknown> } }).grammars;
let t0 = performance.now();
await engine.compile([{ kind: 'json_object', source: '' }]);
const firstMs = performance.now() - t0;
// Cold compiles: five schemas of different shapes (none seen before), then one again (the cache).
const shapes: Array<Record<string, unknown>> = [
  SCHEMA,
  { type: 'object', properties: { id: { type: 'integer' }, email: { type: 'string', pattern: '^[a-z]+@[a-z]+\\.com$' }, roles: { type: 'array', items: { enum: ['admin', 'dev', 'ops'] } } }, required: ['id', 'email'] },
  { type: 'array', items: { type: 'object', properties: { q: { type: 'string' }, a: { type: 'string', maxLength: 40 }, confidence: { type: 'number' } }, required: ['q', 'a'] }, minItems: 1 },
  { type: 'object', properties: { invoice: { type: 'object', properties: { number: { type: 'string' }, total: { type: 'number' }, lines: { type: 'array', items: { type: 'object', properties: { sku: { type: 'string' }, qty: { type: 'integer', minimum: 1 } }, required: ['sku', 'qty'] } } }, required: ['number', 'total', 'lines'] }, paid: { type: 'boolean' } }, required: ['invoice'] },
  { type: 'object', properties: { answer: { enum: ['yes', 'no', 'unsure'] }, reason: { type: 'string' } }, required: ['answer'] },
];
const compileMs: number[] = [];
for (const schema of shapes) {
  t0 = performance.now();
  await engine.compile([{ kind: 'json_schema', source: JSON.stringify(schema), strict: true }]);
  compileMs.push(performance.now() - t0);
}
t0 = performance.now();
await engine.compile([{ kind: 'json_schema', source: JSON.stringify(shapes[3]), strict: true }]);
const cachedMs = performance.now() - t0;
console.log(`vocabulary handed to XGrammar + json_object compiled: ${firstMs.toFixed(0)} ms (once per model)`);
console.log(`compile a JSON schema (5 shapes, cold): ${compileMs.map((x) => x.toFixed(1)).join(', ')} ms; again (cached): ${cachedMs.toFixed(2)} ms`);

const ban = Object.fromEntries(model.info.eosTokenIds.map((id) => [id, -100]));
let shortest = Infinity;
const native = (model as unknown as { engine: { schedulerStats(): { grammarMasks: number; grammarMaskMs: number; grammarExposedMs: number } } }).engine;
let constrainedWallMs = 0;
async function decode(streams: number, constrained: boolean): Promise<number> {
  const t = performance.now();
  const rs = await Promise.all(
    Array.from({ length: streams }, (_, i) =>
      model.generate({
        prompt: `Report ${i}: the quarterly numbers were`,
        maxTokens: tokens,
        temperature: 0.8,
        seed: i,
        ...(constrained ? { responseFormat: { type: 'json_schema' as const, schema: SCHEMA } } : { logitBias: ban }),
      }),
    ),
  );
  // Decode only: from each request's first token to its end.
  const decoded = rs.reduce((a, r) => a + r.tokens.length - 1, 0);
  const wall = performance.now() - t - Math.max(...rs.map((r) => r.timings.queueMs + r.timings.timeToFirstTokenMs));
  if (constrained) {
    shortest = Math.min(shortest, ...rs.map((r) => r.tokens.length));
    constrainedWallMs += performance.now() - t;
  }
  return (decoded * 1000) / wall;
}

for (const streams of [1, 8]) {
  await decode(streams, false);
  await decode(streams, true); // warm-up (compile cached)
  let free = 0;
  let con = 0;
  const g0 = native.schedulerStats();
  constrainedWallMs = 0;
  for (let i = 0; i < runs; i++) {
    free = Math.max(free, await decode(streams, false));
    con = Math.max(con, await decode(streams, true));
  }
  const overhead = ((free / con - 1) * 100).toFixed(1);
  const g1 = native.schedulerStats();
  const masks = g1.grammarMasks - g0.grammarMasks;
  console.log(
    `  measured in the engine: ${masks} masks, ${(((g1.grammarMaskMs - g0.grammarMaskMs) * 1000) / masks).toFixed(1)} us each (beside the forward pass); ` +
      `grammar work the steps waited for: ${(((g1.grammarExposedMs - g0.grammarExposedMs) * 1000) / masks).toFixed(1)} us per constrained token = ` +
      `${(((g1.grammarExposedMs - g0.grammarExposedMs) / constrainedWallMs) * 100).toFixed(3)}% of the constrained runs' wall time`,
  );
  console.log(`(shortest constrained answer: ${shortest} of ${tokens} tokens)`);
  shortest = Infinity;
  console.log(`${streams} stream${streams > 1 ? 's' : ''}: unconstrained ${free.toFixed(1)} tok/s, JSON schema ${con.toFixed(1)} tok/s: per-token overhead ${overhead}%`);
}
await model.close();
