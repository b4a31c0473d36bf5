// Bad input of every kind gives a typed error with a stable code and a message that says what was
// expected: never a crash, a hang or a silent wrong answer. Corrupt checkpoints are made from a valid
// tiny model by editing its files on disk.
import { cpSync, readFileSync, rmSync, writeFileSync, truncateSync, statSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import {
  ContextOverflowError,
  InvalidArgumentError,
  ModelClosedError,
  ModelLoadError,
  NemotronError,
  UnsupportedModelError,
  loadModel,
  makeTinyModel,
  type NemotronModel,
} from '../../lib/index.js';
import { tempDir } from '../helpers.js';

const tmp = tempDir('errors');
const good = path.join(tmp.dir, 'good');
let n = 0;

/** A copy of the good checkpoint to break. */
function copy(): string {
  const dir = path.join(tmp.dir, `bad-${n++}`);
  cpSync(good, dir, { recursive: true });
  return dir;
}

/** Rewrites the safetensors header (JSON) of dir/model.safetensors, keeping the data bytes. */
function editHeader(dir: string, edit: (h: Record<string, any>) => void): void {
  const file = path.join(dir, 'model.safetensors');
  const bytes = readFileSync(file);
  const len = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + len).toString('utf8')) as Record<string, any>;
  edit(header);
  const text = Buffer.from(JSON.stringify(header), 'utf8');
  const lenBuf = Buffer.alloc(8);
  lenBuf.writeBigUInt64LE(BigInt(text.length));
  writeFileSync(file, Buffer.concat([lenBuf, text, bytes.subarray(8 + len)]));
}

function editConfig(dir: string, edit: (text: string) => string): void {
  const file = path.join(dir, 'config.json');
  writeFileSync(file, edit(readFileSync(file, 'utf8')));
}

async function loadError(dir: string): Promise<NemotronError> {
  try {
    const m = await loadModel(dir, { threads: 1 });
    await m.close();
  } catch (e) {
    expect(e).toBeInstanceOf(NemotronError);
    return e as NemotronError;
  }
  throw new Error(`loading ${dir} did not fail`);
}

beforeAll(async () => {
  await makeTinyModel(good, { seed: 5 });
});
afterAll(() => tmp.cleanup());

describe('loading a broken checkpoint', () => {
  it('missing folder, a file instead of a folder, missing config.json, missing weights', async () => {
    let e = await loadError(path.join(tmp.dir, 'does-not-exist'));
    expect(e).toBeInstanceOf(ModelLoadError);
    expect(e.code).toBe('ERR_MODEL_NOT_FOUND');

    e = await loadError(path.join(good, 'config.json'));
    expect(e.code).toBe('ERR_MODEL_NOT_FOUND');
    expect(e.message).toMatch(/not a folder/);

    const noConfig = copy();
    rmSync(path.join(noConfig, 'config.json'));
    e = await loadError(noConfig);
    expect(e.code).toBe('ERR_MODEL_NOT_FOUND');
    expect(e.message).toMatch(/no config\.json/);

    const noWeights = copy();
    rmSync(path.join(noWeights, 'model.safetensors'));
    e = await loadError(noWeights);
    expect(e.code).toBe('ERR_MODEL_NOT_FOUND');
    expect(e.message).toMatch(/model\.safetensors/);
  });

  it('truncated safetensors: data cut short, header cut short, shorter than 8 bytes', async () => {
    const cut = copy();
    const file = path.join(cut, 'model.safetensors');
    truncateSync(file, statSync(file).size - 100);
    let e = await loadError(cut);
    expect(e.code).toBe('ERR_INVALID_CHECKPOINT');
    expect(e.message).toMatch(/past the end of the data section/);

    const cutHeader = copy();
    truncateSync(path.join(cutHeader, 'model.safetensors'), 50);
    e = await loadError(cutHeader);
    expect(e.code).toBe('ERR_INVALID_CHECKPOINT');
    expect(e.message).toMatch(/header length \d+ runs past the end of the file/);

    const tiny = copy();
    truncateSync(path.join(tiny, 'model.safetensors'), 5);
    e = await loadError(tiny);
    expect(e.code).toBe('ERR_INVALID_CHECKPOINT');
    expect(e.message).toMatch(/8-byte header length/);
  });

  it('corrupt safetensors header: bad JSON, offsets out of range or overlapping, unknown dtype', async () => {
    const badJson = copy();
    const f = path.join(badJson, 'model.safetensors');
    const bytes = readFileSync(f);
    bytes[8] = 0x5b; // '[' where the header's '{' was: the brackets no longer match
    writeFileSync(f, bytes);
    let e = await loadError(badJson);
    expect(e.code).toBe('ERR_INVALID_CHECKPOINT');
    expect(e.message).toMatch(/not valid JSON/);

    const range = copy();
    editHeader(range, (h) => {
      h['backbone.norm_f.weight'].data_offsets[1] += 10_000_000;
    });
    e = await loadError(range);
    expect(e.code).toBe('ERR_INVALID_CHECKPOINT');
    expect(e.message).toMatch(/backbone\.norm_f\.weight/);

    const overlap = copy();
    editHeader(overlap, (h) => {
      const [a, b] = ['backbone.layers.0.mixer.A_log', 'backbone.layers.0.mixer.D'];
      const len = h[b].data_offsets[1] - h[b].data_offsets[0];
      h[b].data_offsets = [h[a].data_offsets[0], h[a].data_offsets[0] + len];
    });
    e = await loadError(overlap);
    expect(e.code).toBe('ERR_INVALID_CHECKPOINT');
    expect(e.message).toMatch(/overlap/);

    const dtype = copy();
    editHeader(dtype, (h) => {
      h['backbone.layers.0.mixer.D'].dtype = 'I8';
    });
    e = await loadError(dtype);
    expect(e.code).toBe('ERR_INVALID_CHECKPOINT');
    expect(e.message).toMatch(/dtype I8; only F32, F16, BF16 and F8_E4M3/);
  });

  it('config and tensors that disagree name the tensor and both shapes', async () => {
    const wrongHidden = copy();
    editConfig(wrongHidden, (t) => t.replace('"intermediate_size": 128', '"intermediate_size": 96'));
    let e = await loadError(wrongHidden);
    expect(e.code).toBe('ERR_TENSOR_MISMATCH');
    expect(e.message).toMatch(/up_proj\.weight' has shape \[128, 64\], expected \[96, 64\]/);

    const missing = copy();
    editHeader(missing, (h) => {
      delete h['backbone.layers.2.mixer.out_proj.weight'];
    });
    e = await loadError(missing);
    expect(e.code).toBe('ERR_TENSOR_MISMATCH');
    expect(e.message).toMatch(/missing tensor 'backbone\.layers\.2\.mixer\.out_proj\.weight'/);

    const pattern = copy();
    editConfig(pattern, (t) => t.replace('"hybrid_override_pattern": "M-M*-M*-"', '"hybrid_override_pattern": "M-M-*M*-"'));
    e = await loadError(pattern);
    expect(e.code).toBe('ERR_TENSOR_MISMATCH');
    expect(e.message).toMatch(/pattern and the weights disagree/);
  });

  it('other architectures and latent MoE blocks are refused as unsupported', async () => {
    const llama = copy();
    editConfig(llama, (t) => t.replace('"NemotronHForCausalLM"', '"LlamaForCausalLM"'));
    let e = await loadError(llama);
    expect(e).toBeInstanceOf(UnsupportedModelError);
    expect(e.message).toMatch(/LlamaForCausalLM.*only NemotronHForCausalLM/);

    const moe = copy();
    // MoE blocks ('E') run (test/engine/moe.test.ts); Nemotron-3 Super's latent MoE projections do not.
    editConfig(moe, (t) =>
      t.replace(
        '"hybrid_override_pattern": "M-M*-M*-"',
        '"hybrid_override_pattern": "M-ME-M*-", "n_routed_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 8, "moe_shared_expert_intermediate_size": 8, "moe_latent_size": 16',
      ),
    );
    e = await loadError(moe);
    expect(e.code).toBe('ERR_UNSUPPORTED_MODEL');
    expect(e.message).toMatch(/moe_latent_size.*latent MoE/);
  });

  it('a config.json that is not JSON, or misses a field, is an invalid config', async () => {
    const broken = copy();
    editConfig(broken, (t) => t.slice(0, 40));
    let e = await loadError(broken);
    expect(e.code).toBe('ERR_INVALID_CONFIG');

    const noHidden = copy();
    editConfig(noHidden, (t) => t.replace(/"hidden_size": \d+,/, ''));
    e = await loadError(noHidden);
    expect(e.code).toBe('ERR_INVALID_CONFIG');
    expect(e.message).toMatch(/missing required field 'hidden_size'/);
  });

  it("device 'cuda' without a usable GPU is a typed error; 'auto' falls back to the CPU", async () => {
    // No GPU on this machine or in CI (when one is present, test/kernels/gpu.test.ts covers the CUDA path).
    await expect(loadModel(good, { threads: 1, device: 'cuda' })).rejects.toMatchObject({ code: 'ERR_DEVICE_UNAVAILABLE', message: expect.stringMatching(/device 'cuda' is not available/) });
    const m = await loadModel(good, { threads: 1, device: 'auto' });
    expect(m.info.backend).toBe('cpu');
    await m.close();
    await expect(loadModel(good, { device: 'tpu' as never })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
  });

  it('invalid load options are refused before any work', async () => {
    await expect(loadModel(good, { threads: -1 })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT', message: expect.stringMatching(/options\.threads must be an integer/) });
    await expect(loadModel(good, { contextLength: 1.5 })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(loadModel(good, { bogus: 1 } as never)).rejects.toMatchObject({ message: expect.stringMatching(/unknown option "bogus"/) });
    await expect(loadModel('' as string)).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
    await expect(loadModel(good, { precision: 'bf16' as never })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT', message: expect.stringMatching(/options\.precision must be 'exact' or 'fast'/) });
  });

  it('the precision option reaches the model and is reported', async () => {
    for (const precision of ['exact', 'fast'] as const) {
      const m = await loadModel(good, { threads: 1, precision });
      expect(m.info.precision).toBe(precision);
      await m.close();
    }
    const d = await loadModel(good, { threads: 1 });
    expect(d.info.precision).toBe('exact'); // the default
    await d.close();
  });
});

describe('bad requests to a loaded model', () => {
  let model: NemotronModel;
  beforeAll(async () => {
    model = await loadModel(good, { threads: 1, contextLength: 64 });
  });
  afterAll(async () => model.close());

  it('token ids out of range, not integers, or empty', async () => {
    const V = model.info.config.vocabSize;
    await expect(model.evaluate([1, V])).rejects.toMatchObject({ code: 'ERR_TOKEN_OUT_OF_RANGE', message: expect.stringMatching(new RegExp(`ids\\[1\\] = ${V} is out of range`)) });
    await expect(model.evaluate([-1])).rejects.toMatchObject({ code: 'ERR_TOKEN_OUT_OF_RANGE' });
    await expect(model.evaluate([1.5])).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
    await expect(model.evaluate([])).rejects.toMatchObject({ code: 'ERR_EMPTY_PROMPT' });
    expect(() => model.detokenize([V + 3])).toThrow(InvalidArgumentError);
  });

  it('empty prompts and invalid generation options', async () => {
    expect(() => model.stream({ prompt: '' })).toThrow(expect.objectContaining({ code: 'ERR_EMPTY_PROMPT' }));
    await expect(model.generate({ prompt: 'hi', temperature: -1 })).rejects.toMatchObject({ message: expect.stringMatching(/temperature must be a number >= 0, got -1/) });
    await expect(model.generate({ prompt: 'hi', topP: 0 })).rejects.toMatchObject({ message: expect.stringMatching(/topP must be a number in \(0, 1\]/) });
    await expect(model.generate({ prompt: 'hi', maxTokens: 2.5 })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(model.generate({ prompt: 'hi', topK: -3 })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(model.generate({ prompt: 'hi', signal: 'no' as never })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(model.generate({ prompt: 'hi', colour: 'red' } as never)).rejects.toMatchObject({ message: expect.stringMatching(/unknown option "colour"/) });
    await expect(model.generate({ prompt: 42 } as never)).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(model.evaluate([1, 2], { logits: 'some' as never })).rejects.toBeInstanceOf(InvalidArgumentError);
  });

  it('a prompt longer than the context fails before any work; generation stops at the context', async () => {
    await expect(model.evaluate(Array(65).fill(1))).rejects.toBeInstanceOf(ContextOverflowError);
    const r = await model.generate({ prompt: Array(60).fill(1), maxTokens: 50 });
    expect(r.usage.promptTokens + r.usage.completionTokens).toBeLessThanOrEqual(65);
    expect(['length', 'stop']).toContain(r.finishReason);
  });

  it('an aborted signal stops generation with finishReason abort', async () => {
    const ac = new AbortController();
    ac.abort();
    const r = await model.generate({ prompt: 'hello', maxTokens: 10, signal: ac.signal });
    expect(r.finishReason).toBe('abort');
    expect(r.tokens).toEqual([]);
  });
});

describe('a closed model', () => {
  it('refuses calls with ModelClosedError, and close is idempotent', async () => {
    const m = await loadModel(good, { threads: 1 });
    await m.close();
    await m.close();
    await expect(m.evaluate([1, 2])).rejects.toBeInstanceOf(ModelClosedError);
    expect(() => m.stream({ prompt: 'x' })).toThrow(ModelClosedError);
    expect(() => m.tokenize('x')).toThrow(ModelClosedError);
  });

  it('close during generation ends it with finishReason abort and frees the sequence', async () => {
    const m = await loadModel(good, { threads: 1 });
    // Precondition: greedy decoding of this prompt runs 300 tokens without an end token, so only the
    // close can end the second run early.
    let prompt: number[] | undefined;
    for (let first = 20; first < 200 && !prompt; first++) {
      const free = await m.generate({ prompt: [1, first], maxTokens: 300 });
      if (free.finishReason === 'length') prompt = [1, first];
    }
    expect(prompt).toBeDefined();
    const gen = m.generate({ prompt: prompt!, maxTokens: 300 });
    await new Promise((r) => setTimeout(r, 10));
    await m.close();
    const r = await gen;
    expect(r.finishReason).toBe('abort');
    expect(r.tokens.length).toBeLessThan(300);
  });
});
