// LoadOptions.weights: 'mmap' (the mapped files), 'memory' (a huge-page copy made at load) and 'auto'
// give bitwise identical logits (every matrix keeps its address modulo 4 KiB, so the kernels take the
// same alignment path), for safetensors (tied and untied embeddings) and for a quantized GGUF; the
// memory plan counts the copy; bad values are typed errors. Speed: bench/weights.ts.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { loadModel, makeTinyModel, NEMOTRON_NANO_9B_V2, planMemory } from '../../lib/index.js';
import { chooseWeightsPlacement } from '../../lib/memory.js';
import { native, tempDir } from '../helpers.js';

const tokens = Array.from({ length: 37 }, (_, i) => (i * 131 + 7) % 250);

async function logits(dir: string, weights: 'mmap' | 'memory' | 'auto', precision: 'exact' | 'fast' = 'exact') {
  const model = await loadModel(dir, { threads: 2, weights, precision, contextLength: 256, maxSequences: 2 });
  try {
    return { logits: await model.evaluate(tokens, { logits: 'all' }), info: model.info };
  } finally {
    await model.close();
  }
}

describe("LoadOptions.weights ('mmap' | 'memory' | 'auto')", () => {
  const tmp = tempDir('weights');
  const untied = `${tmp.dir}/untied`;
  const tied = `${tmp.dir}/tied`;
  let q8 = '';

  beforeAll(async () => {
    await makeTinyModel(untied, { seed: 41, dtype: 'bf16', shards: 3 });
    await makeTinyModel(tied, { seed: 42, dtype: 'f32', tieWordEmbeddings: true });
    q8 = (await makeTinyModel(`${tmp.dir}/q8`, { seed: 43, dtype: 'bf16', format: 'gguf', ggufType: 'Q8_0' })).gguf!;
  });
  afterAll(() => tmp.cleanup());

  for (const [name, dir] of [['bf16 safetensors, 3 shards', () => untied], ['f32 safetensors, tied embeddings', () => tied], ['Q8_0 GGUF', () => q8]] as const) {
    it(`${name}: 'memory' gives the same logits as 'mmap', bit for bit`, async () => {
      for (const precision of ['exact', 'fast'] as const) {
        const a = await logits(dir(), 'mmap', precision);
        const b = await logits(dir(), 'memory', precision);
        expect(a.info.weights).toBe('mmap');
        expect(b.info.weights).toBe('memory');
        expect(Buffer.from(b.logits.buffer).equals(Buffer.from(a.logits.buffer))).toBe(true);
      }
    });
  }

  it("'auto' picks 'memory' for a model that fits easily, and the plan counts the copy", async () => {
    const r = await logits(untied, 'auto');
    expect(r.info.weights).toBe('memory');
    const m = r.info.memory;
    expect(m.weightsCopy).toBeGreaterThanOrEqual(m.weights);
    expect(m.weightsCopy % (2 * 1024 * 1024)).toBe(0);
    expect(m.total).toBe(m.weightsCopy + m.sequences + m.activations + m.snapshotBudget);
    expect(m.loadPeak).toBe(m.total + m.weights);
    expect(m.lines()[0]).toContain('huge-page memory');
    const mm = (await logits(untied, 'mmap')).info.memory;
    expect(mm.weightsCopy).toBe(0);
    expect(mm.total).toBe(mm.weights + mm.sequences + mm.activations + mm.snapshotBudget);
  });

  it("'auto' keeps 'mmap' when the copy would not fit comfortably", () => {
    const config = NEMOTRON_NANO_9B_V2;
    const opts = { contextLength: 8192, maxSequences: 1, weightBytes: 16e9, weights: 'memory' as const };
    const plan = planMemory(config, opts);
    expect(chooseWeightsPlacement(plan, 24 * 2 ** 30)).toBe('mmap'); // 2 x 16 GB of load peak in 24 GiB
    expect(chooseWeightsPlacement(plan, 128 * 2 ** 30)).toBe('memory');
    expect(chooseWeightsPlacement(planMemory(config, { ...opts, weights: 'mmap' }), 128 * 2 ** 30)).toBe('mmap');
  });

  it('rejects other values with a typed error', async () => {
    await expect(loadModel(untied, { weights: 'copy' as never })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
    expect(() => planMemory(NEMOTRON_NANO_9B_V2, { contextLength: 16, maxSequences: 1, weights: 'x' as never })).toThrow(/options\.weights/);
  });

  it('_measureWeightsReadBandwidth places and reads the weights', () => {
    for (const weights of ['mmap', 'memory'] as const) {
      const r = native._measureWeightsReadBandwidth(untied, weights, 2);
      expect(r.gbps).toBeGreaterThan(0);
      expect(r.bytes).toBeGreaterThan(0);
      if (weights === 'memory') expect(r.copiedBytes).toBeGreaterThanOrEqual(r.bytes);
      else expect(r.copiedBytes).toBe(0);
    }
  });
});
