// The CUDA backend (cuda/, lib/cuda.ts), run only where a CUDA build of the addon sees a GPU; elsewhere
// every test below is reported as skipped, by name, with the reason printed once.
//
// 1. Kernel parity (every CUDA kernel against its CPU twin, both matmul precisions, relu² input, 9B
//    shapes, device sampling) is native-tests/cuda_kernels_check.cc, the one harness for it (issue #17;
//    scripts/gpu-check.sh step 1; without a GPU it reports each check as skipped, by name).
// 2. Golden logits (test/fixtures/golden, float64 reference) on the device. Tolerances, measured on
//    the CPU engine made to round its matmul inputs like the CUDA kernels (native-tests/
//    cuda_golden_check.cc): precision 'exact' (bf16x2 products) 1.4e-4 -> 1e-3 (bugs move log-probs >= 0.08);
//    default bf16 (activations rounded to bf16) 7e-2 -> 0.2, plus the same greedy tokens.
// 3. Incremental use on the device: token-by-token decode, prefill in pieces and chunked prefill equal
//    the whole prefill (5e-3 in bf16x2 mode), and a decode row batched with another sequence equals
//    the same row alone bit for bit (the CUDA matmul is batch invariant).
// 4. Decode steps as CUDA graphs (the default) equal the same steps launched eagerly
//    (NEMOTRON_CUDA_GRAPHS=0, read when an engine is made) bit for bit: logits and sampled tokens at
//    batch 1, 3 and 8, across a KV block boundary, as sequences leave and join. That graphs were in
//    fact used is asserted by native-tests/cuda_golden_check.cc (the addon has no counter for it).
// 5. Mixture of experts (cuda/moe.cu): random tiny MoE models on the device against the CPU engine
//    (1e-3 in bf16x2 mode), decode = prefill, batched = alone bit for bit (the routing and expert
//    kernels' own parity is in native-tests/cuda_kernels_check.cc).
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { NativeDebugEngine } from '../../lib/addon-types.js';
import { loadCudaAddon, type CudaAddon, type CudaEngineOptions } from '../../lib/cuda.js';
import { makeTinyModel } from '../../lib/index.js';
import { GOLDEN, argmaxRows, logSoftmaxRows, maxAbsDiff, tempDir } from '../helpers.js';

const probe = loadCudaAddon();
const gpu = 'addon' in probe;
if (!gpu) console.log(`CUDA tests skipped: ${probe.reason}`);
const cuda = gpu ? (probe.addon as CudaAddon) : undefined;

// ---- whole model on the device ------------------------------------------------------------------

interface F64Golden {
  tokens: number[];
  logits: number[][];
  greedy: { tokens: number[]; logits: number[][] };
}

const baseOptions: CudaEngineOptions = {
  threads: 2, contextLength: 1024, maxSequences: 4, maxBatchTokens: 512, kvDtype: 'f32', cacheBytes: 0, device: 'cuda',
};

async function loadOnCuda(name: string, matmul: 'bf16' | 'bf16x2', options: Partial<CudaEngineOptions> = {}): Promise<NativeDebugEngine> {
  // precision 'exact' runs the bf16x2 products, 'fast' plain bf16 activations (cuda/backend_cuda.cu).
  return cuda!.loadEngine(path.join(GOLDEN, name), { ...baseOptions, precision: matmul === 'bf16' ? 'fast' : 'exact', ...options });
}

async function evalAll(e: NativeDebugEngine, tokens: number[]): Promise<Float32Array> {
  const id = e.createSequence();
  try {
    return await e.evaluate(id, Int32Array.from(tokens), true);
  } finally {
    e.freeSequence(id);
  }
}

async function greedy(e: NativeDebugEngine, prompt: number[], n: number, V: number): Promise<number[]> {
  const id = e.createSequence();
  try {
    let logits = await e.evaluate(id, Int32Array.from(prompt), false);
    const out: number[] = [];
    for (let i = 0; i < n; i++) {
      const next = argmaxRows(logits, V)[0]!;
      out.push(next);
      if (i + 1 < n) logits = await e.evaluate(id, Int32Array.from([next]), false);
    }
    return out;
  } finally {
    e.freeSequence(id);
  }
}

for (const name of ['tiny-a', 'tiny-long']) {
  const golden = JSON.parse(readFileSync(path.join(GOLDEN, `${name}.reference-f64.json`), 'utf8')) as F64Golden;
  for (const [matmul, tol] of [['bf16x2', 1e-3], ['bf16', 0.2]] as const) {
    describe.skipIf(!gpu)(`golden logits on CUDA: ${name}, matmul ${matmul}`, () => {
      let e: NativeDebugEngine;
      let V: number;
      beforeAll(async () => {
        e = await loadOnCuda(name, matmul);
        V = e.info().config.vocabSize;
        expect(e.info().backend).toBe('cuda');
      });
      afterAll(() => e?.close());

      it(`prompt logits at every position are within ${tol} of float64 (log-softmax)`, async () => {
        const logits = await evalAll(e, golden.tokens);
        const diff = maxAbsDiff(logSoftmaxRows(logits, V), logSoftmaxRows(golden.logits.flat(), V));
        console.log(`${name} on CUDA (${matmul}): max |Δ log-prob| vs float64 = ${diff.toExponential(2)}`);
        expect(diff).toBeLessThan(tol);
      });
      it('greedy generation gives the reference tokens, and their logits match', async () => {
        expect(await greedy(e, golden.tokens, golden.greedy.tokens.length, V)).toEqual(golden.greedy.tokens);
        const all = await evalAll(e, [...golden.tokens, ...golden.greedy.tokens]);
        const tail = all.subarray(golden.tokens.length * V);
        expect(maxAbsDiff(logSoftmaxRows(tail, V), logSoftmaxRows(golden.greedy.logits.flat(), V))).toBeLessThan(tol);
      });
    });
  }
}

describe.skipIf(!gpu)('prefill = decode = chunked = batched on CUDA', () => {
  const golden = JSON.parse(readFileSync(path.join(GOLDEN, 'tiny-long.reference-f64.json'), 'utf8')) as F64Golden;
  const tokens = golden.tokens.slice(0, 100);
  const TOL = 5e-3;
  let e: NativeDebugEngine;
  let V: number;
  let whole: Float64Array;
  beforeAll(async () => {
    e = await loadOnCuda('tiny-long', 'bf16x2');
    V = e.info().config.vocabSize;
    whole = logSoftmaxRows(await evalAll(e, tokens), V);
  });
  afterAll(() => e?.close());

  it('token-by-token decode equals the whole prefill', async () => {
    const id = e.createSequence();
    const rows: number[] = [];
    try {
      for (const t of tokens) rows.push(...(await e.evaluate(id, Int32Array.from([t]), false)));
    } finally {
      e.freeSequence(id);
    }
    expect(maxAbsDiff(logSoftmaxRows(rows, V), whole)).toBeLessThan(TOL);
  });
  it('prefill in pieces (1, 2, 7, 13, ...) equals the whole prefill', async () => {
    const id = e.createSequence();
    const rows: number[] = [];
    try {
      for (let i = 0, n = 1; i < tokens.length; i += n, n = n === 1 ? 2 : n === 2 ? 7 : 13) {
        rows.push(...(await e.evaluate(id, Int32Array.from(tokens.slice(i, i + n)), true)));
      }
    } finally {
      e.freeSequence(id);
    }
    expect(maxAbsDiff(logSoftmaxRows(rows, V), whole)).toBeLessThan(TOL);
  });
  it('chunked prefill (maxBatchTokens 16) equals the whole prefill', async () => {
    const small = await loadOnCuda('tiny-long', 'bf16x2', { maxBatchTokens: 16 });
    try {
      expect(maxAbsDiff(logSoftmaxRows(await evalAll(small, tokens), V), whole)).toBeLessThan(TOL);
    } finally {
      small.close();
    }
  });
  it('a decode row batched with another sequence is bitwise the row computed alone', async () => {
    const a = e.createSequence();
    const b = e.createSequence();
    const c = e.createSequence();
    try {
      const pa = Int32Array.from(tokens.slice(0, 40));
      const pb = Int32Array.from(tokens.slice(40, 90));
      await e.evaluateBatch([{ id: a, tokens: pa, allLogits: false }, { id: b, tokens: pb, allLogits: false }]);
      const [rowA] = await e.evaluateBatch([
        { id: a, tokens: Int32Array.from([tokens[40]!]), allLogits: false },
        { id: b, tokens: Int32Array.from([tokens[90]!]), allLogits: false },
      ]);
      await e.evaluate(c, pa, false);
      const alone = await e.evaluate(c, Int32Array.from([tokens[40]!]), false);
      expect(Buffer.from(rowA!.buffer, rowA!.byteOffset, rowA!.byteLength).equals(Buffer.from(alone.buffer, alone.byteOffset, alone.byteLength))).toBe(true);
    } finally {
      for (const id of [a, b, c]) e.freeSequence(id);
    }
  });
});

describe.skipIf(!gpu)('a tiny FP8 checkpoint on CUDA (E4M3 bytes on the device, scales applied to y)', () => {
  // precision 'exact' (bf16x2 products) against the CPU engine's exact FP8 path on the same checkpoint:
  // the 1e-3 of the golden 'exact' test (bugs in decoding or scaling move log-probs by 1e-2 and more).
  const tmp = tempDir('gpu-fp8');
  afterAll(() => tmp.cleanup());
  it('prefill and token-by-token decode match the CPU engine', async () => {
    const dir = path.join(tmp.dir, 'fp8');
    await makeTinyModel(dir, { seed: 43, pattern: 'M-M*-', hiddenSize: 64, vocabSize: 512, fp8: true });
    const tokens = [5, 17, 200, 3, 99, 42, 7, 150, 11, 250, 64, 8];
    const onGpu = await cuda!.loadEngine(dir, { ...baseOptions, precision: 'exact' });
    const onCpu = await cuda!.loadEngine(dir, { ...baseOptions, device: 'cpu' });
    try {
      const V = onCpu.info().config.vocabSize;
      const want = logSoftmaxRows(await evalAll(onCpu, tokens), V);
      expect(maxAbsDiff(logSoftmaxRows(await evalAll(onGpu, tokens), V), want)).toBeLessThan(1e-3);
      const id = onGpu.createSequence();
      const rows: number[] = [];
      try {
        for (const t of tokens) rows.push(...(await onGpu.evaluate(id, Int32Array.from([t]), true)));
      } finally {
        onGpu.freeSequence(id);
      }
      expect(maxAbsDiff(logSoftmaxRows(rows, V), want)).toBeLessThan(1e-3);
    } finally {
      onGpu.close();
      onCpu.close();
    }
  });
});

describe.skipIf(!gpu)('sampling on the device (CUDA step() copies back only the token ids)', () => {
  const golden = JSON.parse(readFileSync(path.join(GOLDEN, 'tiny-long.reference-f64.json'), 'utf8')) as F64Golden;
  const prompt = golden.tokens.slice(0, 60);
  let e: NativeDebugEngine;
  beforeAll(async () => {
    e = await loadOnCuda('tiny-long', 'bf16x2');
  });
  afterAll(() => e?.close());

  const base = { temperature: 0, topK: 0, topP: 1, minP: 0, repetitionPenalty: 1, presencePenalty: 0, frequencyPenalty: 0, logitBias: [] as [number, number][], seed: 0 };
  const params = [
    base,
    { ...base, temperature: 0.8, seed: 7 },
    { ...base, temperature: 1.3, topK: 20, topP: 0.9, minP: 0.02, seed: 11 },
    { ...base, temperature: 0.7, repetitionPenalty: 1.3, presencePenalty: 0.5, frequencyPenalty: 0.25, logitBias: [[prompt[0]!, -100], [prompt[1]!, 2]] as [number, number][], seed: 3 },
  ];
  it('gives the CPU sampler\'s token on the same logits, seed and draw', async () => {
    for (const sampling of params) {
      for (let draw = 0; draw < 6; draw++) {
        const a = e.createSequence();
        const twin = e.createSequence();
        try {
          const head = Int32Array.from(prompt.slice(0, -1));
          const last = Int32Array.from(prompt.slice(-1));
          await e.evaluate(a, head, false);
          await e.evaluate(twin, head, false);
          const logits = await e.evaluate(twin, last, false); // the same path as the step's forward pass
          const r = await e.step([{ id: a, tokens: last, sample: true, sampling, nPrompt: 2, draw }]);
          const want = cuda!._kernels.sample(logits, sampling, draw, Int32Array.from(prompt), 2);
          expect(r.token[0], `${JSON.stringify(sampling)} draw ${draw}`).toBe(want);
        } finally {
          e.freeSequence(a);
          e.freeSequence(twin);
        }
      }
    }
  });
});

describe.skipIf(!gpu)('decode steps as CUDA graphs equal eager launches bit for bit (NEMOTRON_CUDA_GRAPHS)', () => {
  const golden = JSON.parse(readFileSync(path.join(GOLDEN, 'tiny-long.reference-f64.json'), 'utf8')) as F64Golden;
  const text = golden.tokens;
  const tok = (i: number) => text[i % text.length]!;
  const sampling = { temperature: 0.9, topK: 40, topP: 1, minP: 0, repetitionPenalty: 1, presencePenalty: 0, frequencyPenalty: 0, logitBias: [] as [number, number][], seed: 17 };
  const bytes = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
  const argmax = (a: Float32Array) => argmaxRows(a, a.length)[0]!;

  async function withGraphs<T>(on: boolean, fn: (e: NativeDebugEngine) => Promise<T>): Promise<T> {
    const saved = process.env.NEMOTRON_CUDA_GRAPHS;
    process.env.NEMOTRON_CUDA_GRAPHS = on ? '1' : '0';
    let e: NativeDebugEngine | undefined;
    try {
      e = await loadOnCuda('tiny-long', 'bf16x2', { maxSequences: 8, contextLength: 256, kvDtype: 'f16' });
    } finally {
      if (saved === undefined) delete process.env.NEMOTRON_CUDA_GRAPHS;
      else process.env.NEMOTRON_CUDA_GRAPHS = saved;
    }
    try {
      return await fn(e);
    } finally {
      e.close();
    }
  }

  // B sequences prefilled to 61..63 tokens; greedy decode with logits and seeded device sampling across
  // position 64 (a KV block boundary); then the first sequence leaves and a new one joins (same batch
  // size, other states), and one more leaves.
  async function trace(e: NativeDebugEngine, B: number): Promise<{ rows: Buffer[]; tokens: number[] }> {
    const rows: Buffer[] = [];
    const tokens: number[] = [];
    const ids: number[] = [];
    const next: number[] = [];
    const prefill = async (which: number[], lens: number[]) => {
      const out = await e.evaluateBatch(which.map((id, k) => ({
        id, tokens: Int32Array.from({ length: lens[k]! }, (_, i) => tok(i + 7 * k + id)), allLogits: false,
      })));
      for (const r of out) next.push(argmax(r));
    };
    const decode = async (steps: number) => {
      for (let s = 0; s < steps; s++) {
        const out = await e.evaluateBatch(ids.map((id, k) => ({ id, tokens: Int32Array.from([next[k]!]), allLogits: false })));
        out.forEach((r, k) => { next[k] = argmax(r); rows.push(Buffer.from(bytes(r))); });
      }
    };
    const sample = async (steps: number, draw0: number) => {
      for (let s = 0; s < steps; s++) {
        const r = await e.step(ids.map((id, k) => ({
          id, tokens: Int32Array.from([next[k]!]), sample: true, sampling: { ...sampling, seed: 17 + k }, nPrompt: 2, draw: draw0 + s,
        })));
        ids.forEach((_, k) => { next[k] = r.token[k]!; tokens.push(r.token[k]!); });
      }
    };
    try {
      for (let i = 0; i < B; i++) ids.push(e.createSequence());
      await prefill(ids, ids.map((_, i) => 61 + (i % 3)));
      await decode(3);
      await sample(3, 0);
      e.freeSequence(ids.shift()!);
      next.shift();
      const joined = e.createSequence();
      ids.push(joined);
      await prefill([joined], [50]);
      await decode(3);
      await sample(2, 3);
      if (ids.length > 1) {
        e.freeSequence(ids.shift()!);
        next.shift();
        await decode(2);
      }
    } finally {
      for (const id of ids) e.freeSequence(id);
    }
    return { rows, tokens };
  }

  for (const B of [1, 3, 8]) {
    it(`batch ${B}: the same logits and sampled tokens with graphs on and off`, async () => {
      const off = await withGraphs(false, (e) => trace(e, B));
      const on = await withGraphs(true, (e) => trace(e, B));
      expect(on.rows.length).toBe(off.rows.length);
      expect(on.rows.length).toBeGreaterThan(0);
      on.rows.forEach((r, i) => expect(r.equals(off.rows[i]!), `decode row ${i}`).toBe(true));
      expect(on.tokens).toEqual(off.tokens);
    });
  }
});

// Runs everywhere: 'auto' must fall back to the CPU with exactly one log line when the CUDA addon is
// unusable (here a file that is no addon: its child-process smoke test fails).
describe("device 'auto' without a usable CUDA addon", () => {
  it('loads on the CPU and says why in exactly one log line', async () => {
    const { loadModel } = await import('../../lib/index.js');
    const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
    const os = await import('node:os');
    const dir = mkdtempSync(path.join(os.tmpdir(), 'nemo-bogus-cuda-'));
    const bogus = path.join(dir, 'nemotron_node_cuda.node');
    writeFileSync(bogus, 'not a shared object');
    const saved = process.env.NEMOTRON_NODE_CUDA_BINARY;
    process.env.NEMOTRON_NODE_CUDA_BINARY = bogus;
    const lines: string[] = [];
    const warn = console.warn;
    console.warn = (...args: unknown[]) => void lines.push(args.map(String).join(' '));
    try {
      for (let i = 0; i < 2; i++) {
        const m = await loadModel(path.join(GOLDEN, 'tiny-a'), { threads: 1, device: 'auto' });
        expect(m.info.backend).toBe('cpu');
        await m.close();
      }
    } finally {
      console.warn = warn;
      if (saved === undefined) delete process.env.NEMOTRON_NODE_CUDA_BINARY;
      else process.env.NEMOTRON_NODE_CUDA_BINARY = saved;
      rmSync(dir, { recursive: true, force: true });
    }
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/device 'auto' is using the CPU/);
    expect(lines[0]).toContain(bogus);
  });
});

// ---- mixture of experts on the device (cuda/moe.cu, issue #19) ------------------------------------
describe.skipIf(!gpu)('tiny MoE models on CUDA (routing and the chosen experts on the device)', () => {
  const BASE = { hiddenSize: 64, mambaNumHeads: 4, mambaHeadDim: 16, nGroups: 2, ssmStateSize: 16, chunkSize: 8, vocabSize: 512 };
  const CASES = [
    { name: 'E8 k2, shared expert', options: { ...BASE, seed: 1, pattern: 'ME*EM-E', nRoutedExperts: 8, numExpertsPerTok: 2 } },
    { name: 'E16 k4, 4 groups keep 2, f32 weights', options: { ...BASE, seed: 2, dtype: 'f32' as const, pattern: 'EME*E', nRoutedExperts: 16, numExpertsPerTok: 4, nGroup: 4, topkGroup: 2 } },
    { name: 'E6 k1, no shared expert, no normalisation', options: { ...BASE, seed: 3, pattern: 'MEE*E', nRoutedExperts: 6, numExpertsPerTok: 1, moeSharedExpertIntermediateSize: 0, normTopkProb: false, routedScalingFactor: 1 } },
  ];
  const PROMPT = [1, 17, 204, 33, 5, 99, 310, 42, 7, 150, 2, 64, 480, 11, 300, 301, 45, 46, 47, 9];
  const bytes = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

  for (const { name, options } of CASES) {
    it(`${name}: prompt log-probs within 1e-3 of the CPU engine, decode = prefill, batched = alone bit for bit`, async () => {
      const work = tempDir('gpu-moe');
      const { makeTinyModel } = await import('../../lib/index.js');
      await makeTinyModel(work.dir, options);
      const opts = { ...baseOptions, precision: 'exact' as const };
      const cpu = await cuda!.loadEngine(work.dir, { ...opts, device: 'cpu' });
      const dev = await cuda!.loadEngine(work.dir, opts);
      try {
        expect(dev.info().backend).toBe('cuda');
        const V = dev.info().config.vocabSize;
        const want = logSoftmaxRows(await evalAll(cpu, PROMPT), V);
        const whole = logSoftmaxRows(await evalAll(dev, PROMPT), V);
        const diff = maxAbsDiff(whole, want);
        console.log(`MoE ${name} on CUDA (exact): max |Δ log-prob| vs the CPU engine = ${diff.toExponential(2)}`);
        expect(diff).toBeLessThan(1e-3);
        // token by token (decode steps, captured as graphs) against the whole prompt
        const id = dev.createSequence();
        const rows: number[] = [];
        try {
          for (const t of PROMPT) rows.push(...(await dev.evaluate(id, Int32Array.from([t]), false)));
        } finally {
          dev.freeSequence(id);
        }
        expect(maxAbsDiff(logSoftmaxRows(rows, V), whole)).toBeLessThan(5e-3);
        // a decode row batched with another sequence equals the row alone, bit for bit
        const [a, b, c] = [dev.createSequence(), dev.createSequence(), dev.createSequence()];
        try {
          const pa = Int32Array.from(PROMPT.slice(0, 9));
          const pb = Int32Array.from(PROMPT.slice(9));
          await dev.evaluateBatch([{ id: a, tokens: pa, allLogits: false }, { id: b, tokens: pb, allLogits: false }]);
          const [rowA] = await dev.evaluateBatch([
            { id: a, tokens: Int32Array.from([PROMPT[9]!]), allLogits: false },
            { id: b, tokens: Int32Array.from([PROMPT[0]!]), allLogits: false },
          ]);
          await dev.evaluate(c, pa, false);
          const alone = await dev.evaluate(c, Int32Array.from([PROMPT[9]!]), false);
          expect(bytes(rowA!).equals(bytes(alone))).toBe(true);
        } finally {
          for (const s of [a, b, c]) dev.freeSequence(s);
        }
      } finally {
        dev.close();
        cpu.close();
        work.cleanup();
      }
    });
  }
});
