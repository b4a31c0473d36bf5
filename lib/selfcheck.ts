/**
 * The device self-check (issue #16). Before a CUDA model serves its first request, the built-in tiny
 * model (lib/default-model.ts: Mamba-2, attention and MLP layers, 'M-M*-M-M*-') runs through one script
 * on the device and on the CPU backend, and the results are compared:
 *
 *   1. prefill: a 100-token prompt in two chunks (70 + 30 tokens), every position's log-probs; the KV
 *      cache holds 64 positions per block, so attention reads two blocks and the second chunk continues
 *      a sequence;
 *   2. decode: six one-token steps (teacher-forced, fixed tokens), each row's log-probs, and the greedy
 *      token of each row;
 *   3. snapshot and restore: the state after the prompt is snapshotted, restored into a new sequence,
 *      and its next row compared with the original sequence's (same backend: it must be the same state)
 *      and with the CPU's;
 *   4. the sampler with fixed seeds (greedy; temperature; top-k + top-p + min-p; top-p + logit bias),
 *      4 draws each: the token the engine's step() samples (on the device: the CUDA sampler) must be the
 *      token the CPU sampler draws from the same logits, seed and draw.
 *
 * Both matmul precisions of the device are checked against the CPU engine in 'exact' precision (f32
 * activations, log-probs within ~1e-5 of a float64 reference). Tolerances on log-probs, from the numerics
 * of each precision (measured against the float64 reference in test/kernels/gpu.test.ts and
 * native-tests/cuda_golden_check.cc): 'exact' on CUDA multiplies bf16 weights by activations split into
 * two bf16 terms (~16 significant bits): measured 1.4e-4, tolerance 1e-3; 'fast' rounds activations to
 * bf16 (8 bits): measured 7e-2, tolerance 0.2. A restored sequence must give its original's row within
 * 1e-5 (the same state, the same kernels). Greedy tokens must agree wherever the CPU's two best log-probs
 * are more than twice the tolerance apart; sampled tokens must agree exactly (the same logits).
 *
 * The comparison code does not know which backend it runs: tests run it CPU against CPU, and with a
 * perturbed device output (`perturb`) it must fail.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';

import type { NativeAddon, NativeDebugEngine, NativeEngineOptions, NativeSampling } from './addon-types.js';
import { cacheDir, defaultModelPath } from './default-model.js';
import type { SelfCheckDifference } from './errors.js';
import { loadNative } from './native.js';
import { packageVersion } from './version.js';

/** Bump when the script or the tolerances change: cached passes of an older check are not reused. */
export const SELF_CHECK_VERSION = 1;

/** Log-prob tolerances (max |device - CPU|) per device precision; see the top of this file. */
export const SELF_CHECK_TOLERANCES = { exact: 1e-3, fast: 0.2, restore: 1e-5 } as const;

export interface SelfCheckFigures {
  precision: 'exact' | 'fast';
  /** The log-prob tolerance of this precision. */
  tolerance: number;
  /** Max |device - CPU| over the prompt's 100 positions (two prefill chunks, two KV blocks). */
  prefillMaxDiff: number;
  /** Max |device - CPU| over six decode steps. */
  decodeMaxDiff: number;
  /** Max |device - CPU| of a restored sequence's next row. */
  restoreMaxDiff: number;
  /** Max |restored - original| on the device itself (tolerance SELF_CHECK_TOLERANCES.restore). */
  restoreSelfDiff: number;
  /** Decode rows whose greedy token differs while the CPU's top two are more than 2·tolerance apart. */
  greedyMismatches: number;
  /** Sampled tokens (engine step() on the device) that differ from the CPU sampler on the same logits. */
  samplerMismatches: number;
  samplerDraws: number;
  /** Wall time of this precision's part, device and CPU engines included (ms). */
  ms: number;
}

export interface SelfCheckReport {
  ok: boolean;
  /** What was checked against the CPU, e.g. 'cuda' or 'NVIDIA H100 80GB HBM3 (cuda:0)'. */
  device: string;
  figures: SelfCheckFigures[];
  /** The failed checks (empty when ok). */
  differences: SelfCheckDifference[];
  /** Total wall time (ms). */
  ms: number;
  /** True when this report was read from the cache instead of run now. */
  cached: boolean;
  /** An error that stopped the check (the device engine failed to load or to run), if any. */
  error?: string;
}

/** The device side of the check: an addon and the device string its engines are made with. */
export interface SelfCheckDevice {
  /** @hidden the device's native addon (lib/cuda.ts finds it); not part of the public API */
  addon: Pick<NativeAddon, 'loadEngine'>;
  /** NativeEngineOptions.device: 'cuda', 'cuda:1', or 'cpu' (tests). */
  engineDevice: string;
  /** For messages. */
  name?: string;
}

export interface SelfCheckOptions {
  device: SelfCheckDevice;
  /**
   * The CPU addon the device is compared with (default: loadNative()).
   * @hidden tests and tools only: the native surface is not part of the public API
   */
  reference?: NativeAddon;
  /** Default ['exact', 'fast']. */
  precisions?: ('exact' | 'fast')[];
  /** The checkpoint to run (default: the built-in tiny model, made once in the cache folder). */
  modelPath?: string;
  /**
   * Test-only: corrupt the device's output so the check must fail. 'logprob' adds 4 x the tolerance to
   * one logit of the first decode row; 'token' changes the first token the device's step() samples.
   * Default: the NEMOTRON_NODE_SELFCHECK_PERTURB environment variable, else none.
   */
  perturb?: 'logprob' | 'token' | 'none';
}

const PROMPT_TOKENS = 100;
const FIRST_CHUNK = 70; // > 64: the first chunk already fills one KV block and starts a second
const DECODE_STEPS = 6;
const DRAWS = 4;

const BASE_SAMPLING: NativeSampling = { temperature: 0, topK: 0, topP: 1, minP: 0, repetitionPenalty: 1, presencePenalty: 0, frequencyPenalty: 0, logitBias: [], seed: 0 };
const SAMPLINGS: NativeSampling[] = [
  BASE_SAMPLING,
  { ...BASE_SAMPLING, temperature: 0.8, seed: 7 },
  { ...BASE_SAMPLING, temperature: 1.3, topK: 20, topP: 0.9, minP: 0.02, seed: 11 },
  { ...BASE_SAMPLING, temperature: 0.7, topP: 0.95, logitBias: [[5, 3], [6, -100]], seed: 3 },
];

/** What one engine produced; compared field by field. */
interface Run {
  prefill: Float64Array; // [PROMPT_TOKENS, V] log-probs
  decode: Float64Array; // [DECODE_STEPS, V]
  restored: Float64Array; // [V]: the restored sequence's row for decode token 0
  sampled: number[]; // step()'s tokens, SAMPLINGS x DRAWS
  sampledWant: number[]; // the CPU sampler on the same logits
}

function logSoftmaxRows(logits: Float32Array, V: number): Float64Array {
  const rows = logits.length / V;
  const out = new Float64Array(logits.length);
  for (let r = 0; r < rows; r++) {
    let max = -Infinity;
    for (let i = 0; i < V; i++) max = Math.max(max, logits[r * V + i]!);
    let sum = 0;
    for (let i = 0; i < V; i++) sum += Math.exp(logits[r * V + i]! - max);
    const lse = max + Math.log(sum);
    for (let i = 0; i < V; i++) out[r * V + i] = logits[r * V + i]! - lse;
  }
  return out;
}

function maxAbsDiff(a: Float64Array, b: Float64Array): number {
  if (a.length !== b.length) return Infinity;
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    if (!(d <= m)) m = Number.isNaN(d) ? Infinity : d;
  }
  return m;
}

function argmaxAndGap(row: Float64Array, at: number, V: number): { best: number; gap: number } {
  let best = 0;
  let second = -Infinity;
  for (let i = 1; i < V; i++) {
    const x = row[at + i]!;
    if (x > row[at + best]!) {
      second = row[at + best]!;
      best = i;
    } else if (x > second) {
      second = x;
    }
  }
  return { best, gap: row[at + best]! - second };
}

/** The fixed token ids of the script (deterministic, spread over the vocabulary, away from id 0). */
function scriptTokens(n: number, salt: number, V: number): Int32Array {
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) out[i] = 1 + ((i * 7919 + salt * 104729 + 17) % (V - 1));
  return out;
}

function wrapPerturbed(engine: NativeDebugEngine, mode: 'logprob' | 'token', eps: number): NativeDebugEngine {
  let evaluations = 0;
  let steps = 0;
  return new Proxy(engine, {
    get(target, key) {
      if (key === 'evaluate' && mode === 'logprob') {
        return async (id: number, tokens: Int32Array, all: boolean) => {
          const r = await target.evaluate(id, tokens, all);
          // The third evaluation is the first decode step (two prefill chunks come first).
          if (++evaluations === 3) r[5] = r[5]! + eps;
          return r;
        };
      }
      if (key === 'step' && mode === 'token') {
        return async (items: Parameters<NativeDebugEngine['step']>[0]) => {
          const r = await target.step(items);
          if (++steps === 1 && r.token[0]! >= 0) r.token[0] = (r.token[0]! + 1) % target.info().config.vocabSize;
          return r;
        };
      }
      const v = Reflect.get(target, key) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

async function runScript(engine: NativeDebugEngine, sampler: NativeAddon['_kernels']): Promise<Run> {
  const V = engine.info().config.vocabSize;
  const prompt = scriptTokens(PROMPT_TOKENS, 1, V);
  const decodeTokens = scriptTokens(DECODE_STEPS, 2, V);
  const seq = engine.createSequence();
  const live: number[] = [seq];
  let snap = -1;
  try {
    const a = await engine.evaluate(seq, prompt.slice(0, FIRST_CHUNK), true);
    const b = await engine.evaluate(seq, prompt.slice(FIRST_CHUNK), true);
    const prefillLogits = new Float32Array(PROMPT_TOKENS * V);
    prefillLogits.set(a, 0);
    prefillLogits.set(b, FIRST_CHUNK * V);
    snap = engine.snapshot(seq);
    const decodeLogits = new Float32Array(DECODE_STEPS * V);
    for (let j = 0; j < DECODE_STEPS; j++) {
      decodeLogits.set(await engine.evaluate(seq, decodeTokens.slice(j, j + 1), false), j * V);
    }
    const restoredSeq = engine.createSequence();
    live.push(restoredSeq);
    engine.restore(restoredSeq, snap);
    const restored = logSoftmaxRows(await engine.evaluate(restoredSeq, decodeTokens.slice(0, 1), false), V);

    const sampled: number[] = [];
    const sampledWant: number[] = [];
    const history = Int32Array.from([...prompt, decodeTokens[0]!]);
    for (const sampling of SAMPLINGS) {
      for (let draw = 0; draw < DRAWS; draw++) {
        const s = engine.createSequence();
        const twin = engine.createSequence();
        try {
          engine.restore(s, snap);
          engine.restore(twin, snap);
          // The twin's logits come from the same forward pass shape as the step's (one token).
          const logits = await engine.evaluate(twin, decodeTokens.slice(0, 1), false);
          const r = await engine.step([{ id: s, tokens: decodeTokens.slice(0, 1), sample: true, sampling, nPrompt: history.length, draw }]);
          sampled.push(r.token[0]!);
          sampledWant.push(sampler.sample(logits, sampling, draw, history, history.length));
        } finally {
          engine.freeSequence(s);
          engine.freeSequence(twin);
        }
      }
    }
    return { prefill: logSoftmaxRows(prefillLogits, V), decode: logSoftmaxRows(decodeLogits, V), restored, sampled, sampledWant };
  } finally {
    for (const id of live) engine.freeSequence(id);
    if (snap >= 0) engine.dropSnapshot(snap);
  }
}

function engineOptions(device: string, precision: 'exact' | 'fast'): NativeEngineOptions {
  return { threads: 1, contextLength: 256, maxSequences: 8, maxBatchTokens: 128, kvDtype: 'f16', cacheBytes: 16 << 20, device, precision };
}

function perturbation(options: SelfCheckOptions): 'logprob' | 'token' | undefined {
  const p = options.perturb ?? process.env.NEMOTRON_NODE_SELFCHECK_PERTURB;
  return p === 'logprob' || p === 'token' ? p : undefined;
}

/**
 * Runs the self-check: the device engines against a CPU engine on the same script. Never throws for a
 * mismatch (the report says ok: false and lists the differences); an engine that fails to load or run
 * gives ok: false with `error`.
 */
export async function runSelfCheck(options: SelfCheckOptions): Promise<SelfCheckReport> {
  const t0 = performance.now();
  const precisions = options.precisions ?? ['exact', 'fast'];
  const perturb = perturbation(options);
  const deviceName = options.device.name ?? options.device.engineDevice;
  const figures: SelfCheckFigures[] = [];
  const differences: SelfCheckDifference[] = [];
  let error: string | undefined;
  let ref: NativeDebugEngine | undefined;
  try {
    const reference = options.reference ?? loadNative();
    const modelPath = options.modelPath ?? (await defaultModelPath());
    ref = await reference.loadEngine(modelPath, engineOptions('cpu', 'exact'));
    const cpu = await runScript(ref, reference._kernels);
    for (const precision of precisions) {
      const t1 = performance.now();
      const tolerance = SELF_CHECK_TOLERANCES[precision];
      let dev: NativeDebugEngine | undefined;
      try {
        dev = await options.device.addon.loadEngine(modelPath, engineOptions(options.device.engineDevice, precision));
        const V = dev.info().config.vocabSize;
        const got = await runScript(perturb ? wrapPerturbed(dev, perturb, 4 * tolerance) : dev, reference._kernels);
        let greedyMismatches = 0;
        for (let j = 0; j < DECODE_STEPS; j++) {
          const want = argmaxAndGap(cpu.decode, j * V, V);
          const have = argmaxAndGap(got.decode, j * V, V);
          if (have.best !== want.best && want.gap > 2 * tolerance) greedyMismatches++;
        }
        let samplerMismatches = 0;
        for (let i = 0; i < got.sampled.length; i++) if (got.sampled[i] !== got.sampledWant[i]) samplerMismatches++;
        const f: SelfCheckFigures = {
          precision,
          tolerance,
          prefillMaxDiff: maxAbsDiff(got.prefill, cpu.prefill),
          decodeMaxDiff: maxAbsDiff(got.decode, cpu.decode),
          restoreMaxDiff: maxAbsDiff(got.restored, cpu.decode.subarray(0, V)),
          restoreSelfDiff: maxAbsDiff(got.restored, got.decode.subarray(0, V)),
          greedyMismatches,
          samplerMismatches,
          samplerDraws: got.sampled.length,
          ms: 0,
        };
        f.ms = performance.now() - t1;
        figures.push(f);
        const over = (check: string, measured: number, tol: number) => {
          if (!(measured <= tol)) differences.push({ check, precision, measured, tolerance: tol });
        };
        over('prefill log-probs', f.prefillMaxDiff, tolerance);
        over('decode log-probs', f.decodeMaxDiff, tolerance);
        over('restored sequence vs CPU', f.restoreMaxDiff, tolerance);
        over('restored sequence vs its original', f.restoreSelfDiff, SELF_CHECK_TOLERANCES.restore);
        over('greedy tokens', f.greedyMismatches, 0);
        over('sampled tokens', f.samplerMismatches, 0);
      } finally {
        await dev?.close();
      }
    }
  } catch (err) {
    error = `${deviceName}: ${(err as Error).message ?? String(err)}`;
  } finally {
    await ref?.close();
  }
  return { ok: error === undefined && differences.length === 0, device: deviceName, figures, differences, ms: performance.now() - t0, cached: false, ...(error === undefined ? {} : { error }) };
}

/** One line: what failed, measured against tolerance. */
export function describeSelfCheck(report: SelfCheckReport): string {
  if (report.error) return `the self-check could not run: ${report.error}`;
  if (report.ok) return `passed in ${Math.round(report.ms)} ms`;
  return report.differences
    .map((d) => `${d.check} (${d.precision}): ${d.measured < 1 && d.tolerance > 0 ? d.measured.toExponential(2) : d.measured} > ${d.tolerance}`)
    .join('; ');
}

/** What identifies a check result: the binary (path, size, mtime), the device and the driver. */
export interface SelfCheckKey {
  binary: string;
  device: string;
  driverVersion: number;
  runtimeVersion: number;
}

function keyFile(key: SelfCheckKey): string {
  let size = -1;
  let mtime = -1;
  try {
    const st = statSync(key.binary);
    size = st.size;
    mtime = st.mtimeMs;
  } catch {
    // no such file: the key still names it
  }
  const id = JSON.stringify({ v: SELF_CHECK_VERSION, pkg: packageVersion(), ...key, size, mtime });
  const hash = createHash('sha256').update(id).digest('hex').slice(0, 24);
  return path.join(cacheDir(), 'selfcheck', `${hash}.json`);
}

/** A passing report cached for this binary, device and driver, if any. */
export function readCachedSelfCheck(key: SelfCheckKey): SelfCheckReport | undefined {
  const file = keyFile(key);
  if (!existsSync(file)) return undefined;
  try {
    const r = JSON.parse(readFileSync(file, 'utf8')) as SelfCheckReport;
    return r.ok ? { ...r, cached: true } : undefined;
  } catch {
    return undefined;
  }
}

/** Caches a passing report (failures are never cached: the next load checks again). */
export function writeCachedSelfCheck(key: SelfCheckKey, report: SelfCheckReport): void {
  if (!report.ok) return;
  const file = keyFile(key);
  try {
    mkdirSync(path.dirname(file), { recursive: true });
    const tmp = `${file}.tmp-${process.pid}`;
    writeFileSync(tmp, JSON.stringify({ ...report, key }, null, 1));
    renameSync(tmp, file);
  } catch {
    // a read-only cache folder: the check runs again next time
  }
}
