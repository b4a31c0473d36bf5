// Issue #13 items 6 and 7: a checkpoint that loads must be one that runs. Fields the engine cannot honour
// (tokens beyond the vocabulary, activations and biases it does not implement, chunk sizes the scan is not
// tested for, another model_type), a context beyond the trained one, non-finite weights (checkTensors) and
// non-finite logit biases are typed errors that name the field.
import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { NemotronError, loadModel, makeTinyModel } from '../../lib/index.js';
import { defaultPrecision } from '../../lib/model/precision.js';
import { tempDir } from '../helpers.js';

const tmp = tempDir('load-validation');
const good = path.join(tmp.dir, 'good');
let n = 0;

function copy(): string {
  const dir = path.join(tmp.dir, `bad-${n++}`);
  cpSync(good, dir, { recursive: true });
  return dir;
}

function editJson(dir: string, file: string, edit: (j: Record<string, any>) => void): void {
  const p = path.join(dir, file);
  // config.json holds a bare Infinity (time_step_limit): keep it as text around the JSON edit.
  const text = readFileSync(p, 'utf8').replace(/\bInfinity\b/g, '"__INF__"');
  const j = JSON.parse(text) as Record<string, any>;
  edit(j);
  writeFileSync(p, JSON.stringify(j, null, 2).replace(/"__INF__"/g, 'Infinity'));
}

async function loadError(dir: string, options: Parameters<typeof loadModel>[1] = {}): Promise<NemotronError> {
  try {
    const m = await loadModel(dir, { threads: 1, ...options });
    await m.close();
  } catch (e) {
    expect(e).toBeInstanceOf(NemotronError);
    return e as NemotronError;
  }
  throw new Error(`loading ${dir} did not fail`);
}

/** Writes the f32 value `v` over the first element of tensor `name` in dir/model.safetensors. */
function poisonTensor(dir: string, name: string, v: number): void {
  const file = path.join(dir, 'model.safetensors');
  const bytes = readFileSync(file);
  const len = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + len).toString('utf8')) as Record<string, any>;
  const key = Object.keys(header).find((k) => k.endsWith(name))!;
  const t = header[key] as { dtype: string; data_offsets: [number, number] };
  const at = 8 + len + t.data_offsets[0] + 4; // the second element
  if (t.dtype === 'F32') bytes.writeFloatLE(v, at);
  else if (t.dtype === 'BF16') bytes.writeUInt16LE(Number.isNaN(v) ? 0x7fc0 : v > 0 ? 0x7f80 : 0xff80, at);
  else bytes.writeUInt16LE(Number.isNaN(v) ? 0x7e00 : v > 0 ? 0x7c00 : 0xfc00, at);
  writeFileSync(file, bytes);
}

beforeAll(async () => {
  await makeTinyModel(good, { seed: 11 });
});
afterAll(() => tmp.cleanup());

describe('config fields the engine cannot honour are typed errors naming the field', () => {
  it('eos_token_id / bos_token_id outside the vocabulary', async () => {
    const vocab = JSON.parse(readFileSync(path.join(good, 'config.json'), 'utf8').replace(/\bInfinity\b/g, '0')).vocab_size as number;
    for (const [field, value] of [['eos_token_id', 100000], ['eos_token_id', 2 ** 31], ['eos_token_id', [5, 2 ** 53 + 1]], ['bos_token_id', vocab], ['bos_token_id', 2 ** 31]] as const) {
      const dir = copy();
      editJson(dir, 'config.json', (c) => (c[field] = value));
      const e = await loadError(dir);
      expect(e.code, `${field}=${JSON.stringify(value)}`).toBe('ERR_INVALID_CONFIG');
      expect(e.message).toContain(field);
    }
  });

  it('unknown mlp_hidden_act / mamba_hidden_act', async () => {
    for (const field of ['mlp_hidden_act', 'mamba_hidden_act']) {
      const dir = copy();
      editJson(dir, 'config.json', (c) => (c[field] = 'gelu_new'));
      const e = await loadError(dir);
      expect(e.code).toBe('ERR_UNSUPPORTED_MODEL');
      expect(e.message).toMatch(new RegExp(`${field}.*gelu_new`));
    }
  });

  it('attention_bias / mlp_bias / use_bias true: the engine has no bias tensors for them', async () => {
    for (const field of ['attention_bias', 'mlp_bias', 'use_bias']) {
      const dir = copy();
      editJson(dir, 'config.json', (c) => (c[field] = true));
      const e = await loadError(dir);
      expect(e.code).toBe('ERR_UNSUPPORTED_MODEL');
      expect(e.message).toContain(field);
    }
  });

  it('chunk_size outside what the scan is tested for', async () => {
    for (const value of [0, 257, 4096, 2 ** 26]) {
      const dir = copy();
      editJson(dir, 'config.json', (c) => (c.chunk_size = value));
      const e = await loadError(dir);
      expect(e.code, `chunk_size=${value}`).toBe('ERR_INVALID_CONFIG');
      expect(e.message).toContain('chunk_size');
    }
  });

  it('chunk_size 1 to 256 (odd ones too) run and agree with the default chunking', async () => {
    const prompt = Array.from({ length: 45 }, (_, i) => 10 + ((i * 13) % 300));
    const ref = await loadModel(good, { threads: 1 });
    const want = await ref.evaluate(prompt, { logits: 'all' });
    await ref.close();
    for (const value of [1, 7, 256]) {
      const dir = copy();
      editJson(dir, 'config.json', (c) => (c.chunk_size = value));
      const m = await loadModel(dir, { threads: 1 });
      const got = await m.evaluate(prompt, { logits: 'all' });
      await m.close();
      let worst = 0;
      for (let i = 0; i < got.length; i++) worst = Math.max(worst, Math.abs(got[i]! - want[i]!));
      expect(worst, `chunk_size=${value}`).toBeLessThan(1e-3); // chunking sets only the rounding
    }
  });

  it('model_type other than nemotron_h, even with the right architectures', async () => {
    const dir = copy();
    editJson(dir, 'config.json', (c) => (c.model_type = 'llama'));
    const e = await loadError(dir);
    expect(e.code).toBe('ERR_UNSUPPORTED_MODEL');
    expect(e.message).toMatch(/model_type.*llama/);
  });

  it('tokenizer added tokens with ids beyond the vocabulary', async () => {
    const dir = copy();
    editJson(dir, 'tokenizer.json', (t) => t.added_tokens.push({ id: 5000, content: '<beyond>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }));
    const e = await loadError(dir);
    expect(e.code).toBe('ERR_INVALID_CONFIG');
    expect(e.message).toMatch(/tokenizer\.json.*<beyond>.*5000.*vocab_size 512/);
  });

  it('contextLength above max_position_embeddings needs allowContextBeyondTraining', async () => {
    const e = await loadError(good, { contextLength: 8192 });
    expect(e.code).toBe('ERR_INVALID_ARGUMENT');
    expect(e.message).toMatch(/contextLength.*max_position_embeddings.*allowContextBeyondTraining/);
    const m = await loadModel(good, { threads: 1, contextLength: 8192, allowContextBeyondTraining: true });
    expect(m.info.contextLength).toBe(8192);
    await m.close();
    await expect(loadModel(good, { allowContextBeyondTraining: 1 as never })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
  });

  it('the unmodified model still loads and generates', async () => {
    const m = await loadModel(good, { threads: 1 });
    const r = await m.generate({ prompt: [1, 20, 30], maxTokens: 4 });
    expect(r.finishReason).not.toBe('error');
    await m.close();
  });
});

describe('non-finite weights and biases', () => {
  it('checkTensors: names the first tensor holding NaN or Inf; off by default', async () => {
    for (const v of [NaN, Infinity, -Infinity]) {
      const dir = copy();
      poisonTensor(dir, 'layers.3.mixer.o_proj.weight', v);
      const e = await loadError(dir, { checkTensors: true });
      expect(e.code).toBe('ERR_INVALID_CHECKPOINT');
      expect(e.message).toMatch(/layers\.3\.mixer\.o_proj\.weight.*(NaN|Inf)/);
      const m = await loadModel(dir, { threads: 1 }); // not scanned unless asked
      await m.close();
    }
    const ok = await loadModel(good, { threads: 2, checkTensors: true });
    await ok.close();
    await expect(loadModel(good, { checkTensors: 'yes' as never })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
  });

  it('checkTensors scans the small vectors too (norms, A_log, D, dt_bias)', async () => {
    const dir = copy();
    poisonTensor(dir, 'layers.0.mixer.dt_bias', NaN);
    const e = await loadError(dir, { checkTensors: true });
    expect(e.message).toMatch(/layers\.0\.mixer\.dt_bias/);
  });

  it('logitBias accepts finite values and -Infinity (a ban) only', async () => {
    const m = await loadModel(good, { threads: 1 });
    try {
      for (const bad of [Infinity, NaN]) {
        await expect(m.generate({ prompt: [1, 20], maxTokens: 2, logitBias: { 7: bad } })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT', message: expect.stringMatching(/logitBias\[7\]/) });
      }
      const r = await m.generate({ prompt: [1, 20], maxTokens: 3, logitBias: { 7: -Infinity, 8: 2.5 } });
      expect(r.tokens).not.toContain(7);
    } finally {
      await m.close();
    }
  });
});

// Issue #12 item 3: without options.precision, a checkpoint whose matrices are mostly block-quantized
// (GGUF Q8_0, Q4_K, ...) loads in 'fast' (8-bit activation blocks, as llama.cpp), float and FP8 weights
// in 'exact'; an explicit precision always wins, and model.info.precision reports what was used.
describe('default precision per weight type', () => {
  const dims = { hiddenSize: 256, mambaNumHeads: 8, mambaHeadDim: 32, headDim: 64, intermediateSize: 512, chunkSize: 128, dtype: 'f32' as const, seed: 12 };
  const tokens = Array.from({ length: 24 }, (_, i) => (i * 37 + 5) % 300);

  async function infoAndLogits(p: string, options: Parameters<typeof loadModel>[1] = {}): Promise<{ precision: string; logits: Float32Array }> {
    const m = await loadModel(p, { threads: 2, kvDtype: 'f32', contextLength: 256, maxSequences: 1, ...options });
    try {
      return { precision: m.info.precision, logits: await m.evaluate(tokens, { logits: 'all' }) };
    } finally {
      await m.close();
    }
  }

  it("a Q8_0 GGUF defaults to 'fast'; explicit 'exact' wins and changes the logits; explicit 'fast' is the default", async () => {
    const r = await makeTinyModel(path.join(tmp.dir, 'q8'), { ...dims, format: 'gguf', ggufType: 'Q8_0' });
    const byDefault = await infoAndLogits(r.gguf!);
    const exact = await infoAndLogits(r.gguf!, { precision: 'exact' });
    const fast = await infoAndLogits(r.gguf!, { precision: 'fast' });
    expect(byDefault.precision).toBe('fast');
    expect(exact.precision).toBe('exact');
    expect(fast.precision).toBe('fast');
    let differ = false;
    for (let i = 0; i < exact.logits.length; i++) if (exact.logits[i] !== byDefault.logits[i]) differ = true;
    expect(differ).toBe(true); // 'exact' really took effect
    expect(fast.logits).toEqual(byDefault.logits);
  });

  it("F32 and BF16 weights (safetensors or GGUF) default to 'exact'; explicit 'fast' wins", async () => {
    const f32 = await makeTinyModel(path.join(tmp.dir, 'f32'), { ...dims, format: 'gguf', ggufType: 'F32' });
    expect((await infoAndLogits(f32.dir)).precision).toBe('exact');
    expect((await infoAndLogits(f32.gguf!)).precision).toBe('exact');
    expect((await infoAndLogits(good)).precision).toBe('exact'); // bf16 safetensors
    expect((await infoAndLogits(good, { precision: 'fast' })).precision).toBe('fast');
  });

  it('an invalid precision is still a typed error', async () => {
    const e = await loadError(good, { precision: 'auto' as never });
    expect(e.code).toBe('ERR_INVALID_ARGUMENT');
    expect(e.message).toMatch(/options\.precision must be 'exact' or 'fast'/);
  });

  it('defaultPrecision: the majority of matrix parameters decides; vectors do not count', () => {
    const t = (typeName: string, ...shape: number[]) => ({ typeName, shape });
    expect(defaultPrecision(undefined)).toBe('exact'); // safetensors: float or FP8
    expect(defaultPrecision([t('Q8_0', 256, 512), t('F32', 256), t('F32', 1, 8)])).toBe('fast');
    expect(defaultPrecision([t('Q4_K', 256, 512), t('Q5_0', 512, 256), t('F16', 256, 300)])).toBe('fast');
    expect(defaultPrecision([t('Q4_K', 256, 100), t('F16', 256, 300), t('F32', 1 << 20)])).toBe('exact'); // F16 the majority
    expect(defaultPrecision([t('BF16', 256, 512), t('F32', 64, 64)])).toBe('exact');
    expect(defaultPrecision([t('IQ4_XS', 256, 512), t('MXFP4', 32, 64, 8)])).toBe('fast');
  });
});
