// Shared test utilities: comparisons in log-softmax space, temporary folders, the native addon.
import { mkdtempSync, rmSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { loadNative } from '../lib/native.js';

export const native = loadNative();

/** Row-wise log-softmax in float64 of [T, V] logits (logits are defined up to a constant per row). */
export function logSoftmaxRows(logits: ArrayLike<number>, V: number): Float64Array {
  const T = logits.length / V;
  const out = new Float64Array(logits.length);
  for (let t = 0; t < T; t++) {
    let max = -Infinity;
    for (let i = 0; i < V; i++) max = Math.max(max, logits[t * V + i]!);
    let sum = 0;
    for (let i = 0; i < V; i++) sum += Math.exp(logits[t * V + i]! - max);
    const lse = max + Math.log(sum);
    for (let i = 0; i < V; i++) out[t * V + i] = logits[t * V + i]! - lse;
  }
  return out;
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length mismatch: ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** max |a - b| / max |b|: error relative to the scale of the reference. */
export function maxRelErr(actual: ArrayLike<number>, ref: ArrayLike<number>): number {
  let scale = 0;
  for (let i = 0; i < ref.length; i++) scale = Math.max(scale, Math.abs(ref[i]!));
  return maxAbsDiff(actual, ref) / (scale || 1);
}

export function argmaxRows(logits: ArrayLike<number>, V: number): number[] {
  const out: number[] = [];
  for (let t = 0; t < logits.length / V; t++) {
    let best = 0;
    for (let i = 1; i < V; i++) if (logits[t * V + i]! > logits[t * V + best]!) best = i;
    out.push(best);
  }
  return out;
}

const TMP_ROOT = path.resolve(import.meta.dirname, '.tmp');

/** A fresh temporary folder under test/.tmp (removed by cleanup()). */
export function tempDir(prefix: string): { dir: string; cleanup: () => void } {
  mkdirSync(TMP_ROOT, { recursive: true });
  const dir = mkdtempSync(path.join(TMP_ROOT, `${prefix}-`));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export function osTempDir(prefix: string): string {
  return mkdtempSync(path.join(os.tmpdir(), `${prefix}-`));
}

export const GOLDEN = path.resolve(import.meta.dirname, 'fixtures/golden');

/** Polls `check` every 5 ms until it holds; throws after `ms`. Resolves to the time it took. */
export async function waitFor(check: () => boolean, ms = 10_000): Promise<number> {
  const t0 = performance.now();
  while (!check()) {
    if (performance.now() - t0 > ms) throw new Error(`condition not met within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
  return performance.now() - t0;
}

/** Per block of `size` values: the largest |x| and the largest |x - y| (quantization error bounds). */
export function blockMaxErrors(x: ArrayLike<number>, y: ArrayLike<number>, size: number): Array<{ amax: number; err: number }> {
  const out: Array<{ amax: number; err: number }> = [];
  for (let b = 0; b < x.length / size; b++) {
    let amax = 0;
    let err = 0;
    for (let j = size * b; j < size * b + size; j++) {
      amax = Math.max(amax, Math.abs(x[j]!));
      err = Math.max(err, Math.abs(x[j]! - y[j]!));
    }
    out.push({ amax, err });
  }
  return out;
}
