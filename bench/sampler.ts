/**
 * Sampler speed at the Nemotron vocabulary (131,072 logits): ms per sample for greedy, top-k 40,
 * top-p 0.95 and temperature alone, on a flat and a peaked distribution. A full sort of the
 * vocabulary per call would cost ~10 ms; the bucketed selection costs ~1 ms.
 *
 *   npm run bench:sampler
 */
import type { NativeSamplerParams } from '../lib/addon-types.js';
import { loadNative } from '../lib/native.js';
import { makeRng } from '../test/reference/random.js';

const k = loadNative()._kernels;
const V = 131072;
const rng = makeRng(51);
const dists: Array<[string, Float32Array]> = [
  ['flat N(0,1)', Float32Array.from(rng.normalArray(V, 1))],
  ['peaked N(0,3)', Float32Array.from(rng.normalArray(V, 3))],
];
const modes: Array<[string, NativeSamplerParams]> = [
  ['greedy', { temperature: 0 }],
  ['top_k 40', { temperature: 1, topK: 40, seed: 1 }],
  ['top_p 0.95', { temperature: 1, topP: 0.95, seed: 1 }],
  ['T=1 only', { temperature: 1, seed: 1 }],
];
console.log(`sampler, vocab ${V}: ms per sample (best of 5 x 200)`);
for (const [dname, logits] of dists) {
  for (const [mname, p] of modes) {
    for (let s = 0; s < 10; s++) k.sample(logits, p, s); // warm the per-thread buffers
    let best = Infinity;
    for (let rep = 0; rep < 5; rep++) {
      const t0 = performance.now();
      for (let s = 0; s < 200; s++) k.sample(logits, p, s);
      best = Math.min(best, (performance.now() - t0) / 200);
    }
    console.log(`  ${`${dname} ${mname}`.padEnd(26)} ${best.toFixed(3)} ms`);
  }
}
