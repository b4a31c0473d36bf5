/**
 * What the default precision costs in accuracy (issue #12 item 3): on the 330M bench model (random
 * weights; bench/bench-model.ts, the same values as BF16, Q8_0 and Q4_K GGUFs), the log-probabilities of
 * a 256-token prompt at every position, compared pairwise:
 *   weights: <type> exact against BF16 exact    (what quantizing the weights changes)
 *   activations: <type> fast against <type> exact (what 'fast' adds: 8-bit activation blocks)
 * Prints max |Δ log-prob| over all positions and the vocabulary, mean |Δ| of each position's most likely
 * token, and how often the most likely token agrees.
 *
 *   node --import tsx bench/precision-error.ts [--types Q8_0,Q4_K] [--tokens 256]
 */
import { parseArgs } from 'node:util';

import { loadModel } from '../lib/index.js';
import { ensureTableModel, type BenchGgufType } from './bench-model.js';
import { ids } from './engines.js';

const { values } = parseArgs({ options: { types: { type: 'string', default: 'Q8_0,Q4_K' }, tokens: { type: 'string', default: '256' } } });
const prompt = ids(Number(values.tokens), 7);

async function logProbs(gguf: string, precision: 'exact' | 'fast'): Promise<{ lp: Float64Array; V: number }> {
  const m = await loadModel(gguf, { threads: 2, kvDtype: 'f32', precision });
  try {
    const logits = await m.evaluate(prompt, { logits: 'all' });
    const V = m.info.config.vocabSize;
    const lp = new Float64Array(logits.length);
    for (let t = 0; t < prompt.length; t++) {
      let max = -Infinity;
      for (let v = 0; v < V; v++) max = Math.max(max, logits[t * V + v]!);
      let sum = 0;
      for (let v = 0; v < V; v++) sum += Math.exp(logits[t * V + v]! - max);
      const lse = max + Math.log(sum);
      for (let v = 0; v < V; v++) lp[t * V + v] = logits[t * V + v]! - lse;
    }
    return { lp, V };
  } finally {
    await m.close();
  }
}

function compare(name: string, a: { lp: Float64Array; V: number }, b: { lp: Float64Array; V: number }): void {
  const V = a.V;
  let maxAll = 0;
  let topDiff = 0;
  let agree = 0;
  const T = prompt.length;
  for (let t = 0; t < T; t++) {
    let ia = 0;
    let ib = 0;
    for (let v = 0; v < V; v++) {
      const i = t * V + v;
      maxAll = Math.max(maxAll, Math.abs(a.lp[i]! - b.lp[i]!));
      if (a.lp[i]! > a.lp[t * V + ia]!) ia = v;
      if (b.lp[i]! > b.lp[t * V + ib]!) ib = v;
    }
    topDiff += Math.abs(a.lp[t * V + ia]! - b.lp[t * V + ia]!);
    if (ia === ib) agree++;
  }
  console.log(`| ${name} | ${maxAll.toFixed(4)} | ${(topDiff / T).toFixed(5)} | ${((100 * agree) / T).toFixed(1)} % |`);
}

const bf16 = await logProbs((await ensureTableModel('BF16')).gguf, 'exact');
console.log(`330M bench model, ${prompt.length}-token prompt, log-probs at every position\n`);
console.log('| pair | max abs Δ log-prob | mean abs Δ, top token | same top token |');
console.log('|---|---:|---:|---:|');
for (const type of values.types.split(',') as BenchGgufType[]) {
  const { gguf } = await ensureTableModel(type);
  const exact = await logProbs(gguf, 'exact');
  const fast = await logProbs(gguf, 'fast');
  compare(`weights: ${type} exact vs BF16 exact`, exact, bf16);
  compare(`activations: ${type} fast vs ${type} exact`, fast, exact);
}
