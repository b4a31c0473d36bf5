// The native token sampler (csrc/engine/sampler.{h,cc}) through `_kernels.sample`, checked by
// properties that fail on a wrong implementation:
//   - exact agreement with an independent float64 reference of the documented pipeline (bias ->
//     repetition -> presence/frequency -> temperature -> top-k -> softmax -> min-p -> top-p ->
//     renormalise -> inverse CDF with the same counter-based uniform), step by step;
//   - support: nothing outside the top-k set, the top-p nucleus or the min-p set is ever drawn, and
//     everything inside it is;
//   - determinism: a draw depends on (seed, step) only;
//   - statistics: empirical frequencies against the (renormalised) softmax at temperature T;
//   - penalties: the effective logit of every token, probed with greedy decoding and a competitor;
//   - NaN / +-inf logits, vocab 1, bans.
import { describe, expect, it } from 'vitest';

import type { NativeSamplerParams } from '../../lib/addon-types.js';
import { makeRng } from '../reference/random.js';
import { native } from '../helpers.js';

const k = native._kernels;
const fr = Math.fround;

// ---------------------------------------------------------------------------------------------
// Reference: the uniform of csrc/engine/sampler.cc (splitmix64 finaliser) in BigInt arithmetic.
const M64 = (1n << 64n) - 1n;
function mix64(z: bigint): bigint {
  z = (z + 0x9e3779b97f4a7c15n) & M64;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & M64;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & M64;
  return z ^ (z >> 31n);
}
function counterUniform(seed: number, counter: number): number {
  const key = (BigInt(counter) * 0xd1342543de82ef95n + 1n) & M64;
  return Number(mix64(mix64(BigInt(seed)) ^ key) >> 11n) / 2 ** 53;
}

interface Params {
  temperature?: number;
  topK?: number;
  topP?: number;
  minP?: number;
  seed?: number;
  repetitionPenalty?: number;
  presencePenalty?: number;
  frequencyPenalty?: number;
  logitBias?: [number, number][];
}

/** Steps 1-5 of sampler.h in float64, rounding to f32 where the native code stores a float. */
function refLogits(logits: ArrayLike<number>, p: Params, history?: Int32Array, nPrompt = 0): Float64Array {
  const V = logits.length;
  const x = Float64Array.from(logits);
  for (const [id, b] of p.logitBias ?? []) {
    if (id < 0 || id >= V || Number.isNaN(b)) continue;
    x[id] = fr(b) <= -100 ? -Infinity : fr(x[id]! + fr(b));
  }
  if (history && history.length > 0) {
    const np = Math.min(Math.max(nPrompt, 0), history.length);
    const rp = fr(p.repetitionPenalty ?? 1);
    if (Number.isFinite(rp) && rp > 0 && rp !== 1) {
      for (const id of new Set(history)) {
        if (id < 0 || id >= V) continue;
        x[id] = x[id]! > 0 ? fr(x[id]! / rp) : fr(x[id]! * rp);
      }
    }
    const pres = fr(p.presencePenalty ?? 0);
    const freq = fr(p.frequencyPenalty ?? 0);
    if (pres !== 0 || freq !== 0) {
      const counts = new Map<number, number>();
      for (let i = np; i < history.length; i++) {
        const id = history[i]!;
        if (id >= 0 && id < V) counts.set(id, (counts.get(id) ?? 0) + 1);
      }
      for (const [id, c] of counts) x[id] = fr(x[id]! - pres - freq * c);
    }
  }
  for (let i = 0; i < V; i++) {
    if (Number.isNaN(x[i]!)) x[i] = -Infinity;
    else if (x[i] === Infinity) x[i] = 3.4028234663852886e38;
  }
  return x;
}

/** The kept tokens in sampling order and their cumulative (renormalised) mass, or the greedy token. */
interface Prepared {
  greedy?: number;
  ids: number[];
  cum: Float64Array; // cum[j] = mass of ids[0..j], renormalised so the last is 1
  nearTopP: boolean; // top_p * Z lies within rounding of a cumulative boundary: the nucleus is ambiguous
}

function refPrepare(logits: ArrayLike<number>, p: Params, history?: Int32Array, nPrompt = 0): Prepared {
  const x = refLogits(logits, p, history, nPrompt);
  const V = x.length;
  let arg = -1;
  let max = -Infinity;
  for (let i = 0; i < V; i++) if (x[i]! > max) (max = x[i]!), (arg = i);
  if (arg < 0) {
    let g = 0;
    for (let i = 0; i < V; i++) if (Number.isFinite(logits[i]!)) { g = i; break; }
    return { greedy: g, ids: [], cum: new Float64Array(), nearTopP: false };
  }
  const T = fr(p.temperature ?? 0);
  if (!(T > 0)) return { greedy: arg, ids: [], cum: new Float64Array(), nearTopP: false };
  let set: number[] = [];
  for (let i = 0; i < V; i++) if (x[i]! !== -Infinity) set.push(i);
  const byLogit = (a: number, b: number) => x[b]! - x[a]! || a - b;
  const topK = p.topK ?? 0;
  if (topK > 0 && topK < V) set = set.sort(byLogit).slice(0, topK);
  const inv = 1 / T;
  const e = new Map<number, number>();
  let z = 0;
  for (const i of set) {
    const v = Math.exp((x[i]! - max) * inv);
    e.set(i, v);
    z += v;
  }
  const order = set.filter((i) => e.get(i)! > 0).sort((a, b) => e.get(b)! - e.get(a)! || a - b);
  let n = order.length;
  const minP = fr(p.minP ?? 0);
  if (minP > 0) {
    const floor = Math.min(minP, 1);
    n = 0;
    while (n < order.length && e.get(order[n]!)! >= floor) n++;
  }
  let nearTopP = false;
  const topP = fr(p.topP ?? 1);
  if (topP < 1) {
    const target = topP * z;
    let acc = 0;
    let j = 0;
    for (; j < n; j++) {
      acc += e.get(order[j]!)!;
      if (Math.abs(acc - target) <= 1e-9 * z) nearTopP = true;
      if (acc >= target) break;
    }
    n = Math.min(n, j + 1);
  }
  const ids = order.slice(0, n);
  const cum = new Float64Array(n);
  let acc = 0;
  for (let j = 0; j < n; j++) cum[j] = acc += e.get(ids[j]!)!;
  for (let j = 0; j < n; j++) cum[j]! /= acc;
  return { ids, cum, nearTopP };
}

/** The reference draw; `near` when u lies within rounding of a cumulative boundary. */
function refDraw(prep: Prepared, seed: number, step: number): { token: number; near: boolean } {
  if (prep.greedy !== undefined) return { token: prep.greedy, near: false };
  const u = counterUniform(seed, step);
  let lo = 0;
  let hi = prep.cum.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (prep.cum[mid]! > u) hi = mid;
    else lo = mid + 1;
  }
  const near =
    prep.nearTopP ||
    Math.abs(prep.cum[lo]! - u) < 1e-9 ||
    (lo > 0 && Math.abs(prep.cum[lo - 1]! - u) < 1e-9);
  return { token: prep.ids[lo]!, near };
}

function argmax(x: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i]! > x[best]!) best = i;
  return best;
}

/** Softmax of logits / T in float64 over `ids` (all when omitted). */
function softmax(logits: ArrayLike<number>, T: number, ids?: number[]): Map<number, number> {
  const set = ids ?? Array.from({ length: logits.length }, (_, i) => i);
  const max = Math.max(...set.map((i) => logits[i]!));
  const out = new Map<number, number>();
  let z = 0;
  for (const i of set) {
    const v = Math.exp((logits[i]! - max) / T);
    out.set(i, v);
    z += v;
  }
  for (const i of set) out.set(i, out.get(i)! / z);
  return out;
}

function draws(logits: Float32Array, p: NativeSamplerParams, n: number, history?: Int32Array, nPrompt?: number): number[] {
  const out: number[] = [];
  for (let s = 0; s < n; s++) out.push(k.sample(logits, p, s, history, nPrompt));
  return out;
}

function counts(tokens: number[], V: number): Float64Array {
  const c = new Float64Array(V);
  for (const t of tokens) c[t]!++;
  return c;
}

// ---------------------------------------------------------------------------------------------
describe('sampler: greedy', () => {
  it('temperature 0 is the argmax, lowest id on ties, at every step and seed', () => {
    const rng = makeRng(101);
    for (const V of [2, 17, 1000, 131072]) {
      const logits = Float32Array.from(rng.normalArray(V, 3));
      for (let s = 0; s < 3; s++) expect(k.sample(logits, { temperature: 0, seed: s * 7 }, s)).toBe(argmax(logits));
    }
    const ties = new Float32Array([1, 5, 2, 5, 5, -1]);
    expect(k.sample(ties, { temperature: 0 }, 0)).toBe(1);
    const flat = new Float32Array(131072).fill(0.25);
    expect(k.sample(flat, { temperature: 0 }, 0)).toBe(0);
    flat[70000] = 0.5;
    flat[90000] = 0.5;
    expect(k.sample(flat, { temperature: 0 }, 0)).toBe(70000);
  });

  it('with logit_bias it is the argmax of the biased logits (pairs or an object map)', () => {
    const rng = makeRng(102);
    const logits = Float32Array.from(rng.normalArray(500, 2));
    const top = argmax(logits);
    for (let trial = 0; trial < 20; trial++) {
      const bias: [number, number][] = [];
      for (let b = 0; b < 5; b++) bias.push([Math.floor(rng.uniform() * 500), (rng.uniform() - 0.3) * 8]);
      bias.push([top, -3 * rng.uniform()]);
      const biased = Float32Array.from(logits);
      for (const [id, b] of bias) biased[id] = fr(biased[id]! + fr(b));
      expect(k.sample(logits, { temperature: 0, logitBias: bias }, trial)).toBe(argmax(biased));
      expect(k.sample(logits, { temperature: 0, logitBias: Object.fromEntries(bias) }, trial)).toBe(
        // an object map keeps the last value of a repeated id
        argmax(refLogits(logits, { logitBias: Object.entries(Object.fromEntries(bias)).map(([i, b]) => [Number(i), b]) })),
      );
    }
  });
});

describe('sampler: exact agreement with the float64 reference', () => {
  it('matches the reference token at every step over random vocabularies and parameter sets', () => {
    const rng = makeRng(7);
    let compared = 0;
    let near = 0;
    const mismatches: string[] = [];
    const configs: Params[] = [
      { temperature: 1 },
      { temperature: 0.7, topK: 5 },
      { temperature: 1.3, topP: 0.8 },
      { temperature: 1, minP: 0.1 },
      { temperature: 2, topK: 50, topP: 0.9, minP: 0.02 },
      { temperature: 0.5, topP: 0.95 },
      { temperature: 1, repetitionPenalty: 1.3, presencePenalty: 0.5, frequencyPenalty: 0.2 },
      { temperature: 0.9, topK: 2000, topP: 0.7, repetitionPenalty: 0.8, logitBias: [[3, 2], [4, -100], [5, -0.5]] },
      { temperature: 1.1, topK: 1, seed: 5 },
      { temperature: 3, topP: 0.3, minP: 0.5 },
      { temperature: 1.2, topK: 50000, topP: 0.9, minP: 0.01 },
      { temperature: 0.25, frequencyPenalty: -0.5, logitBias: [[1, 1.5]] },
    ];
    for (const V of [1, 2, 7, 100, 5000, 131072]) {
      const logits = Float32Array.from(rng.normalArray(V, V > 1000 ? 1.5 : 2.5));
      const history = Int32Array.from({ length: 40 }, () => Math.floor(rng.uniform() * Math.min(V, 60)));
      for (const [ci, cfg] of configs.entries()) {
        const p: Params = { ...cfg, seed: cfg.seed ?? 1000 + ci };
        const prep = refPrepare(logits, p, history, 25);
        const steps = V >= 100000 ? 60 : 150;
        for (let step = 0; step < steps; step++) {
          const want = refDraw(prep, p.seed!, step);
          if (want.near) {
            near++;
            continue;
          }
          compared++;
          const got = k.sample(logits, p, step, history, 25);
          if (got !== want.token) mismatches.push(`V=${V} cfg=${ci} step=${step}: got ${got}, want ${want.token}`);
        }
      }
    }
    console.log(`reference agreement: ${compared} draws compared, ${near} skipped as within 1e-9 of a boundary, ${mismatches.length} mismatches`);
    expect(mismatches.slice(0, 10)).toEqual([]);
    expect(near).toBeLessThan(compared / 1000 + 5);
  });

  it('top-p over 131072 ties: the nucleus takes the tied tokens lowest id first', () => {
    // Token 77777 has logit 12, every other 0: p_max ~ 0.55 and the nucleus at 0.95 is 77777 plus the
    // m lowest ids of the tied rest, m = ceil((0.95 Z - 1) / e^-12).
    const V = 131072;
    const logits = new Float32Array(V);
    logits[77777] = 12;
    const p = { temperature: 1, topP: 0.95, seed: 9 };
    const prep = refPrepare(logits, p);
    const e = Math.exp(-12);
    const z = 1 + (V - 1) * e;
    const m = Math.ceil((fr(0.95) * z - 1) / e);
    expect(prep.ids.length).toBe(m + 1);
    const got = draws(logits, p, 2000);
    for (const t of got) expect(t === 77777 || t < m).toBe(true);
    for (let s = 0; s < 2000; s++) {
      const want = refDraw(prep, 9, s);
      if (!want.near) expect(got[s]).toBe(want.token);
    }
    expect(got.some((t) => t > m * 0.9 && t < m)).toBe(true); // the far end of the tied nucleus is reached
  });
});

describe('sampler: support', () => {
  it('never draws outside the top-k set, and draws all of it', () => {
    const rng = makeRng(21);
    for (const V of [1000, 131072]) {
      const logits = Float32Array.from(rng.normalArray(V, 2));
      const order = Array.from(logits.keys()).sort((a, b) => logits[b]! - logits[a]! || a - b);
      const top40 = new Set(order.slice(0, 40));
      const got = draws(logits, { temperature: 4, topK: 40, seed: 3 }, 4000);
      for (const t of got) expect(top40.has(t)).toBe(true);
      expect(new Set(got).size).toBe(40);
    }
    // ties at the cut keep the lowest ids
    const flat = new Float32Array(100).fill(1);
    const got = draws(flat, { temperature: 1, topK: 10, seed: 4 }, 2000);
    expect([...new Set(got)].sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    // large k takes the nth_element path
    const logits = Float32Array.from(makeRng(22).normalArray(20000, 1));
    const order = Array.from(logits.keys()).sort((a, b) => logits[b]! - logits[a]! || a - b);
    const top5000 = new Set(order.slice(0, 5000));
    for (const t of draws(logits, { temperature: 1, topK: 5000, seed: 5 }, 3000)) expect(top5000.has(t)).toBe(true);
  });

  it('never draws outside the top-p nucleus (known exactly), and draws all of it', () => {
    // p = 0.4, 0.3, 0.2, 0.06, 0.04: cumulative 0.4, 0.7, 0.9, 0.96, 1. top_p 0.85 -> {0,1,2};
    // 0.69 -> {0,1}; 0.3 -> {0}; 0.95 -> {0,1,2,3}.
    const probs = [0.06, 0.4, 0.04, 0.2, 0.3]; // shuffled ids: sorted order is 1, 4, 3, 0, 2
    const logits = Float32Array.from(probs, (q) => Math.log(q));
    const cases: [number, number[]][] = [
      [0.85, [1, 3, 4]],
      [0.69, [1, 4]],
      [0.3, [1]],
      [0.93, [0, 1, 3, 4]],
      [1e-6, [1]],
    ];
    for (const [topP, want] of cases) {
      const got = new Set(draws(logits, { temperature: 1, topP, seed: 11 }, 3000));
      expect([...got].sort((a, b) => a - b)).toEqual(want);
    }
    // random logits: the nucleus from a float64 sort, with top_p kept away from any cumulative boundary
    const rng = makeRng(23);
    const V = 1000;
    const r = Float32Array.from(rng.normalArray(V, 2));
    const sm = softmax(r, 1);
    const order = Array.from(r.keys()).sort((a, b) => sm.get(b)! - sm.get(a)! || a - b);
    const topP = 0.9;
    let acc = 0;
    let n = 0;
    while (acc < topP) acc += sm.get(order[n++]!)!;
    expect(acc - topP).toBeGreaterThan(1e-6);
    expect(topP - (acc - sm.get(order[n - 1]!)!)).toBeGreaterThan(1e-6);
    const nucleus = new Set(order.slice(0, n));
    const got = draws(r, { temperature: 1, topP, seed: 12 }, 6000);
    for (const t of got) expect(nucleus.has(t)).toBe(true);
    const seen = new Set(got);
    // every nucleus token with renormalised p >= 2e-3 (>= 12 expected draws) shows up
    for (const i of nucleus) if (sm.get(i)! / acc >= 2e-3) expect(seen.has(i)).toBe(true);
  });

  it('min-p excludes exactly the tokens below min_p * p_max at the temperature', () => {
    // ratios to the max at T = 1: 1, 0.5, 0.21, 0.19, 0.1 -> min_p 0.2 keeps {0,1,2}. At T = 2 the
    // ratios are their square roots (1, 0.71, 0.46, 0.44, 0.32): min_p 0.45 keeps {0,1,2}, 0.3 keeps all.
    const ratios = [1, 0.5, 0.21, 0.19, 0.1];
    const logits = Float32Array.from(ratios, (q) => Math.log(q) + 3);
    const kept = (p: NativeSamplerParams) => [...new Set(draws(logits, p, 3000))].sort((a, b) => a - b);
    expect(kept({ temperature: 1, minP: 0.2, seed: 1 })).toEqual([0, 1, 2]);
    expect(kept({ temperature: 1, minP: 0.195, seed: 1 })).toEqual([0, 1, 2]);
    expect(kept({ temperature: 1, minP: 0.185, seed: 1 })).toEqual([0, 1, 2, 3]);
    expect(kept({ temperature: 1, minP: 0.6, seed: 1 })).toEqual([0]);
    expect(kept({ temperature: 2, minP: 0.45, seed: 1 })).toEqual([0, 1, 2]);
    expect(kept({ temperature: 2, minP: 0.3, seed: 1 })).toEqual([0, 1, 2, 3, 4]);
  });
});

describe('sampler: determinism', () => {
  const logits = Float32Array.from(makeRng(31).normalArray(1000, 1));
  const p = { temperature: 1, topP: 0.98, seed: 77 };

  it('the same (seed, step) gives the same token; different seeds give different sequences', () => {
    const a = draws(logits, p, 300);
    expect(draws(logits, p, 300)).toEqual(a);
    const seqs = [0, 1, 2, 77, 2 ** 53 - 1].map((seed) => draws(logits, { ...p, seed }, 64).join(','));
    expect(new Set(seqs).size).toBe(seqs.length);
    expect(new Set(a).size).toBeGreaterThan(100);
  });

  it('a draw depends only on (seed, step), not on earlier calls', () => {
    const inOrder = draws(logits, p, 300);
    const rng = makeRng(32);
    const steps = Array.from({ length: 300 }, (_, i) => i);
    for (let i = steps.length - 1; i > 0; i--) {
      const j = Math.floor(rng.uniform() * (i + 1));
      [steps[i], steps[j]] = [steps[j]!, steps[i]!];
    }
    const other = Float32Array.from(makeRng(33).normalArray(131072, 2));
    for (const s of steps) {
      k.sample(other, { temperature: 1.5, topK: 40, seed: s }, s * 3 + 1); // unrelated calls between
      expect(k.sample(logits, p, s)).toBe(inOrder[s]);
    }
  });
});

describe('sampler: statistics', () => {
  // n = 20,000 draws. For a correct sampler the count of token i is Binomial(n, p_i), so the frequency
  // f_i has standard deviation sigma_i = sqrt(p_i (1 - p_i) / n). We require |f_i - p_i| <= 5 sigma_i
  // + 1e-3 for every token: a 5-sigma excursion has probability ~6e-7 per token (the 1e-3 only absorbs
  // float rounding of p_i), so a correct sampler fails with negligible probability, while a wrong
  // temperature (T x 1.15 here) or an off-by-one in the cumulative sum (mass shifted to the next
  // token in order) moves some p_i by 10+ sigma — the power checks below assert exactly that.
  const n = 20000;
  const bound = (q: number) => 5 * Math.sqrt((q * (1 - q)) / n) + 1e-3;
  const logits = new Float32Array([1.1, 2.0, -0.3, 1.6, 0.2, -2.0, 0.7, -0.9]);

  function check(name: string, p: NativeSamplerParams, expected: Map<number, number>) {
    const f = counts(draws(logits, p, n), logits.length);
    let chi2 = 0;
    let worst = 0;
    for (let i = 0; i < logits.length; i++) {
      const q = expected.get(i) ?? 0;
      const fi = f[i]! / n;
      if (q === 0) {
        expect(f[i], `${name}: token ${i} is outside the kept set`).toBe(0);
        continue;
      }
      chi2 += (f[i]! - n * q) ** 2 / (n * q);
      worst = Math.max(worst, Math.abs(fi - q) / Math.sqrt((q * (1 - q)) / n));
      expect(Math.abs(fi - q), `${name}: token ${i} f=${fi} p=${q}`).toBeLessThanOrEqual(bound(q));
    }
    const df = expected.size - 1;
    console.log(`${name}: chi2 = ${chi2.toFixed(2)} on ${df} df (mean ${df}, sd ${Math.sqrt(2 * df).toFixed(2)}); worst |f-p| = ${worst.toFixed(2)} sigma`);
    // chi-square sanity: df + 10 sd is far in the tail (p < 1e-6 for df <= 7).
    expect(chi2).toBeLessThan(df + 10 * Math.sqrt(2 * df) + 1);
    return f;
  }

  /** Whether frequencies `f` pass the per-token bound against `q` (for the power checks). */
  function passes(f: Float64Array, q: Map<number, number>) {
    return Array.from(f).every((c, i) => Math.abs(c / n - (q.get(i) ?? 0)) <= bound(q.get(i) ?? 0));
  }
  /** Off-by-one: each token's mass moved to the next in sampling order. */
  function shifted(q: Map<number, number>) {
    const order = [...q.keys()].sort((a, b) => q.get(b)! - q.get(a)! || a - b);
    const out = new Map<number, number>();
    order.forEach((id, j) => out.set(order[(j + 1) % order.length]!, q.get(id)!));
    return out;
  }

  it('pure temperature matches softmax(logits / T), and the bound rejects wrong T or a shifted CDF', () => {
    const T = 0.8;
    const q = softmax(logits, T);
    const f = check('T=0.8', { temperature: T, seed: 2024 }, q);
    expect(passes(f, softmax(logits, T * 1.15))).toBe(false);
    expect(passes(f, shifted(q))).toBe(false);
    check('T=1.7', { temperature: 1.7, seed: 2025 }, softmax(logits, 1.7));
  });

  it('top-k, top-p and min-p match the renormalised softmax of the kept set', () => {
    const order = [1, 3, 0, 6, 4, 2, 7, 5]; // descending logits
    check('T=1.3 top_k=4', { temperature: 1.3, topK: 4, seed: 31 }, softmax(logits, 1.3, order.slice(0, 4)));
    // top_p: the nucleus at T = 1 from the float64 softmax; 0.8 is not near a cumulative boundary
    const q = softmax(logits, 1);
    let acc = 0;
    let m = 0;
    while (acc < 0.8) acc += q.get(order[m++]!)!;
    expect(acc - 0.8).toBeGreaterThan(0.01);
    const f = check('T=1 top_p=0.8', { temperature: 1, topP: 0.8, seed: 32 }, softmax(logits, 1, order.slice(0, m)));
    expect(passes(f, softmax(logits, 1, order.slice(0, m + 1)))).toBe(false); // one token too many
    // min_p 0.3 at T = 0.9: keep e^{(x - 2) / 0.9} >= 0.3 <=> x >= 2 + 0.9 ln 0.3 = 0.916
    check('T=0.9 min_p=0.3', { temperature: 0.9, minP: 0.3, seed: 33 }, softmax(logits, 0.9, [1, 3, 0]));
    check('T=1.5 top_k=6 top_p=0.9 min_p=0.05', { temperature: 1.5, topK: 6, topP: 0.9, minP: 0.05, seed: 34 }, (() => {
      const p = refPrepare(logits, { temperature: 1.5, topK: 6, topP: 0.9, minP: 0.05 });
      return softmax(logits, 1.5, p.ids);
    })());
  });
});

describe('sampler: penalties', () => {
  // The effective logit of token j after bias and penalties, probed with greedy decoding: every other
  // token sits at -50 except a competitor c (never penalised) at expected ± eps; the argmax must be j
  // below and c above. eps = 1e-3 is far above f32 rounding (~3e-7 at these magnitudes) and far below
  // any wrong amount (penalty applied per occurrence, prompt counted as generated, wrong order).
  const V = 32;
  const c = 31;
  const eps = 1e-3;
  const prompt = [3, 5, 5, 9, 12];
  const generated = [5, 7, 7, 7, 12, 20];
  const history = Int32Array.from([...prompt, ...generated]);
  const raw = (j: number) => (((j * 7) % 11) - 5) * 0.37;

  function expectedLogit(j: number, p: Params): number {
    let x = raw(j);
    for (const [id, b] of p.logitBias ?? []) if (id === j) x += b;
    if (history.includes(j)) {
      const rp = p.repetitionPenalty ?? 1;
      x = x > 0 ? x / rp : x * rp;
    }
    const count = generated.filter((t) => t === j).length;
    if (count > 0) x -= (p.presencePenalty ?? 0) + (p.frequencyPenalty ?? 0) * count;
    return x;
  }

  function probe(j: number, p: Params, want: number) {
    const logits = new Float32Array(V).fill(-50);
    logits[j] = raw(j);
    logits[c] = want + eps;
    expect(k.sample(logits, { ...p, temperature: 0 }, 0, history, prompt.length), `token ${j} above`).toBe(c);
    logits[c] = want - eps;
    expect(k.sample(logits, { ...p, temperature: 0 }, 0, history, prompt.length), `token ${j} below`).toBe(j);
  }

  const sets: [string, Params][] = [
    ['repetition 1.3', { repetitionPenalty: 1.3 }],
    ['repetition 0.7', { repetitionPenalty: 0.7 }],
    ['presence 0.4', { presencePenalty: 0.4 }],
    ['frequency 0.15', { frequencyPenalty: 0.15 }],
    ['negative presence/frequency', { presencePenalty: -0.3, frequencyPenalty: -0.1 }],
    ['all with bias', { repetitionPenalty: 1.3, presencePenalty: 0.4, frequencyPenalty: 0.15, logitBias: [[7, 0.5], [9, -0.25], [21, 1.0], [0, 2.2]] }],
  ];
  for (const [name, p] of sets) {
    it(`${name}: every token's effective logit is exactly the documented one`, () => {
      let changed = 0;
      for (let j = 0; j < V - 1; j++) {
        const want = expectedLogit(j, p);
        if (Math.abs(want - raw(j)) > 1e-9) changed++;
        probe(j, p, want);
      }
      expect(changed).toBeGreaterThan(0);
    });
  }

  it('repetition penalises prompt-only tokens, once per distinct token; presence/frequency do not', () => {
    const logits = new Float32Array([3.0, 2.5, -1, -1]);
    const hist = Int32Array.from([0, 0, 0, 2]); // token 0 three times, all in the prompt
    const s = (p: NativeSamplerParams) => k.sample(logits, { temperature: 0, ...p }, 0, hist, 4);
    expect(s({ repetitionPenalty: 1.15 })).toBe(0); // 3 / 1.15 = 2.61 > 2.5 (per occurrence: 1.97)
    expect(s({ repetitionPenalty: 1.25 })).toBe(1); // 3 / 1.25 = 2.4 < 2.5
    expect(s({ presencePenalty: 5, frequencyPenalty: 5 })).toBe(0); // prompt tokens untouched
    // the same tokens as generated ones are penalised: 3 - 0.1 - 3 * 0.1 = 2.6 vs 3 - 0.1 - 3 * 0.15 = 2.45
    expect(k.sample(logits, { temperature: 0, presencePenalty: 0.1, frequencyPenalty: 0.1 }, 0, hist, 0)).toBe(0);
    expect(k.sample(logits, { temperature: 0, presencePenalty: 0.1, frequencyPenalty: 0.15 }, 0, hist, 0)).toBe(1);
    // negative logits are multiplied: -1 * 2 = -2 < -1.5
    const neg = new Float32Array([-1, -1.5]);
    expect(k.sample(neg, { temperature: 0, repetitionPenalty: 2 }, 0, Int32Array.from([0]), 1)).toBe(1);
    expect(k.sample(neg, { temperature: 0, repetitionPenalty: 1.4 }, 0, Int32Array.from([0]), 1)).toBe(0);
    // bias comes before the penalty: (1 + 1) / 2 = 1 vs 1 / 2 + 1 = 1.5, competitor at 1.25
    const order = new Float32Array([1, 1.25]);
    expect(k.sample(order, { temperature: 0, repetitionPenalty: 2, logitBias: [[0, 1]] }, 0, Int32Array.from([0]), 1)).toBe(1);
    // ids outside the vocabulary in the history are ignored
    expect(k.sample(logits, { temperature: 0, repetitionPenalty: 2 }, 0, Int32Array.from([-1, 99, 1 << 30]), 0)).toBe(0);
  });

  it('penalties also shape sampling (reference distribution with history)', () => {
    const logits = new Float32Array([1, 1, 1, 1]);
    const hist = Int32Array.from([0, 1, 1, 1, 2]);
    const p = { temperature: 1, presencePenalty: 0.5, frequencyPenalty: 0.25, seed: 8 };
    const n = 20000;
    const f = counts(draws(logits, p, n, hist, 1), 4);
    // generated: 1 x3, 2 x1 -> logits 1, 1 - 0.5 - 0.75, 1 - 0.5 - 0.25, 1
    const q = softmax([1, -0.25, 0.25, 1], 1);
    for (let i = 0; i < 4; i++) {
      const qi = q.get(i)!;
      expect(Math.abs(f[i]! / n - qi)).toBeLessThanOrEqual(5 * Math.sqrt((qi * (1 - qi)) / n) + 1e-3);
    }
  });
});

describe('sampler: special values', () => {
  it('NaN logits are -inf: never drawn, no crash or hang; all NaN/-inf gives 0', () => {
    const x = new Float32Array([NaN, 1, NaN, 3, 2]);
    expect(k.sample(x, { temperature: 0 }, 0)).toBe(3);
    for (const p of [{ temperature: 1 }, { temperature: 5, topK: 4 }, { temperature: 2, topP: 0.99 }, { temperature: 1, minP: 0.01 }]) {
      for (const t of draws(x, { ...p, seed: 3 }, 500)) expect([1, 3, 4]).toContain(t);
    }
    // a NaN must not poison the normaliser: top-p 0.5 keeps token 1 alone (p = 0.95)
    const y = new Float32Array([NaN, 3, 0, NaN, -2]);
    for (const p of [{ temperature: 1, topP: 0.5 }, { temperature: 1, topK: 4, topP: 0.5 }, { temperature: 1, minP: 0.5 }]) {
      expect(new Set(draws(y, { ...p, seed: 3 }, 300))).toEqual(new Set([1]));
    }
    expect(k.sample(new Float32Array([NaN, NaN, NaN]), { temperature: 1 }, 0)).toBe(0);
    expect(k.sample(new Float32Array([-Infinity, NaN, -Infinity]), { temperature: 0 }, 0)).toBe(0);
    expect(k.sample(new Float32Array([-Infinity, NaN, -Infinity]), { temperature: 1, topP: 0.5 }, 0)).toBe(0);
    // every finite token banned: the lowest id whose input logit is finite
    expect(k.sample(new Float32Array([NaN, 2, 1]), { temperature: 1, logitBias: [[1, -1e9], [2, -1e9]] }, 0)).toBe(1);
    // big vocabulary with NaNs scattered through it
    const big = Float32Array.from(makeRng(41).normalArray(131072, 1));
    const nan = new Set<number>();
    for (let i = 0; i < 131072; i += 97) (big[i] = NaN), nan.add(i);
    for (const p of [{ temperature: 1 }, { temperature: 1, topP: 0.95 }, { temperature: 1, topK: 40 }]) {
      for (const t of draws(big, { ...p, seed: 4 }, 200)) expect(nan.has(t)).toBe(false);
    }
    // +inf wins outright
    expect(draws(new Float32Array([0, Infinity, 1]), { temperature: 1, seed: 5 }, 100).every((t) => t === 1)).toBe(true);
    expect(new Set(draws(new Float32Array([Infinity, 0, Infinity]), { temperature: 1, seed: 5 }, 200))).toEqual(new Set([0, 2]));
  });

  it('vocab 1 always gives 0', () => {
    for (const v of [0, -5, 100, NaN, -Infinity]) {
      for (const p of [
        { temperature: 0 },
        { temperature: 1, topK: 5, topP: 0.1, minP: 0.9 },
        { temperature: 1, logitBias: [[0, -1e9]] as [number, number][] },
        { temperature: 2, repetitionPenalty: 2, presencePenalty: 1 },
      ]) {
        for (let s = 0; s < 5; s++) expect(k.sample(new Float32Array([v]), p, s, Int32Array.from([0, 0]), 1)).toBe(0);
      }
    }
  });

  it('logit_bias <= -100 bans a token even at very high temperature (and greedy)', () => {
    const x = new Float32Array(10).fill(0);
    x[3] = 10;
    for (const temperature of [1, 100, 1e6, 1e30]) {
      const got = draws(x, { temperature, seed: 6, logitBias: [[3, -1e9], [5, -100]] }, 2000);
      expect(got.includes(3) || got.includes(5)).toBe(false);
      expect(new Set(got).size).toBe(8);
    }
    expect(k.sample(x, { temperature: 0, logitBias: [[3, -1e9]] }, 0)).toBe(0);
    // a bias just above the ban threshold is an ordinary addition
    expect(k.sample(x, { temperature: 0, logitBias: [[3, -99]], }, 0)).toBe(0);
    expect(k.sample(x, { temperature: 0, logitBias: [[3, -9]] }, 0)).toBe(3);
  });

  it('rejects non-Float32Array logits and a non-Int32Array history', () => {
    expect(() => k.sample([1, 2] as unknown as Float32Array, { temperature: 0 }, 0)).toThrow(TypeError);
    expect(() => k.sample(new Float32Array(2), { temperature: 0 }, 0, [0] as unknown as Int32Array)).toThrow(TypeError);
  });
});
