import { Template } from '@huggingface/jinja';
import { mkdtemp, readFile, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { Tokenizer } from '@huggingface/tokenizers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { InvalidArgumentError } from '../../lib/errors.js';
import { makeTinyModel, type TinyModelOptions } from '../../lib/tiny-model/index.js';
import { toBf16Bits, toF16Bits } from '../../lib/tiny-model/safetensors-writer.js';

// ---------------------------------------------------------------------------------------------------------
// independent helpers (deliberately not using the writer's code)

interface HeaderEntry {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}
interface ParsedSafetensors {
  headerLength: number;
  headerText: string;
  tensors: Map<string, HeaderEntry>;
  metadata: Record<string, string> | undefined;
  data: Buffer;
}

async function parseSafetensors(path: string): Promise<ParsedSafetensors> {
  const buf = await readFile(path);
  const n = Number(buf.readBigUInt64LE(0));
  const headerText = buf.subarray(8, 8 + n).toString('utf8');
  const obj = JSON.parse(headerText) as Record<string, unknown>;
  const tensors = new Map<string, HeaderEntry>();
  let metadata: Record<string, string> | undefined;
  for (const [k, v] of Object.entries(obj)) {
    if (k === '__metadata__') metadata = v as Record<string, string>;
    else tensors.set(k, v as HeaderEntry);
  }
  return { headerLength: n, headerText, tensors, metadata, data: buf.subarray(8 + n) };
}

const BYTES: Record<string, number> = { BF16: 2, F16: 2, F32: 4 };

/** The tensor inventory a Nemotron-H checkpoint must have, computed from its config.json (docs/architecture.md §2). */
function expectedTensors(cfg: Record<string, unknown>, prefix = 'backbone.'): Map<string, number[]> {
  const n = (k: string): number => cfg[k] as number;
  const H = n('hidden_size');
  const dInner = n('mamba_num_heads') * n('mamba_head_dim');
  const convDim = dInner + 2 * n('n_groups') * n('ssm_state_size');
  const m = new Map<string, number[]>();
  m.set(`${prefix}embeddings.weight`, [n('vocab_size'), H]);
  const pattern = cfg['hybrid_override_pattern'] as string;
  for (let i = 0; i < pattern.length; i++) {
    const p = `${prefix}layers.${i}.`;
    m.set(p + 'norm.weight', [H]);
    if (pattern[i] === 'M') {
      m.set(p + 'mixer.in_proj.weight', [dInner + convDim + n('mamba_num_heads'), H]);
      m.set(p + 'mixer.conv1d.weight', [convDim, 1, n('conv_kernel')]);
      m.set(p + 'mixer.conv1d.bias', [convDim]);
      m.set(p + 'mixer.A_log', [n('mamba_num_heads')]);
      m.set(p + 'mixer.D', [n('mamba_num_heads')]);
      m.set(p + 'mixer.dt_bias', [n('mamba_num_heads')]);
      m.set(p + 'mixer.norm.weight', [dInner]);
      m.set(p + 'mixer.out_proj.weight', [H, dInner]);
    } else if (pattern[i] === '*') {
      const q = n('num_attention_heads') * n('head_dim');
      const kv = n('num_key_value_heads') * n('head_dim');
      m.set(p + 'mixer.q_proj.weight', [q, H]);
      m.set(p + 'mixer.k_proj.weight', [kv, H]);
      m.set(p + 'mixer.v_proj.weight', [kv, H]);
      m.set(p + 'mixer.o_proj.weight', [H, q]);
    } else {
      m.set(p + 'mixer.up_proj.weight', [n('intermediate_size'), H]);
      m.set(p + 'mixer.down_proj.weight', [H, n('intermediate_size')]);
    }
  }
  m.set(`${prefix}norm_f.weight`, [H]);
  if (cfg['tie_word_embeddings'] !== true) m.set('lm_head.weight', [n('vocab_size'), H]);
  return m;
}

/** Checks layout invariants of a parsed file and that it holds exactly `expected` with the given dtype. */
function checkLayout(st: ParsedSafetensors, expected: Map<string, number[]>, dtype: string): void {
  expect((8 + st.headerLength) % 8).toBe(0);
  expect(st.headerText).toMatch(/^\{.*\} *$/s); // JSON padded with spaces only
  expect(st.metadata).toEqual({ format: 'pt' });
  expect([...st.tensors.keys()].sort()).toEqual([...expected.keys()].sort());
  const spans: [number, number][] = [];
  for (const [name, e] of st.tensors) {
    expect(e.dtype, name).toBe(dtype);
    expect(e.shape, name).toEqual(expected.get(name));
    const numel = e.shape.reduce((a, b) => a * b, 1);
    expect(e.data_offsets[1] - e.data_offsets[0], name).toBe(numel * (BYTES[dtype] as number));
    spans.push(e.data_offsets);
  }
  spans.sort((a, b) => a[0] - b[0]);
  let pos = 0;
  for (const [b, e] of spans) {
    expect(b).toBe(pos); // contiguous, no gaps or overlaps
    pos = e;
  }
  expect(pos).toBe(st.data.length);
}

function bf16ToNumber(bits: number): number {
  const f = new Float32Array(new Uint32Array([bits << 16]).buffer);
  return f[0] as number;
}

function f16ToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return sign * m * 2 ** -24;
  if (e === 31) return m ? NaN : sign * Infinity;
  return sign * (1 + m / 1024) * 2 ** (e - 15);
}

function tensorValues(st: ParsedSafetensors, name: string): number[] {
  const e = st.tensors.get(name);
  if (e === undefined) throw new Error(`missing ${name}`);
  const raw = st.data.subarray(e.data_offsets[0], e.data_offsets[1]);
  const out: number[] = [];
  if (e.dtype === 'F32') for (let i = 0; i < raw.length; i += 4) out.push(raw.readFloatLE(i));
  else if (e.dtype === 'BF16') for (let i = 0; i < raw.length; i += 2) out.push(bf16ToNumber(raw.readUInt16LE(i)));
  else for (let i = 0; i < raw.length; i += 2) out.push(f16ToNumber(raw.readUInt16LE(i)));
  return out;
}

const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
const std = (xs: number[]): number => {
  const m = mean(xs);
  return Math.sqrt(xs.reduce((a, b) => a + (b - m) ** 2, 0) / xs.length);
};

async function readJson(path: string): Promise<Record<string, unknown>> {
  return JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>;
}

// ---------------------------------------------------------------------------------------------------------

let root = '';
let counter = 0;
const fresh = (): string => join(root, `m${counter++}`);

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'nemotron-tiny-'));
});
afterAll(async () => {
  if (root !== '') await rm(root, { recursive: true, force: true });
});

describe('makeTinyModel: files and config', () => {
  it('writes a complete checkpoint folder with a Nemotron-H config', async () => {
    const dir = fresh();
    const res = await makeTinyModel(dir);
    expect((await readdir(dir)).sort()).toEqual([
      'config.json',
      'generation_config.json',
      'model.safetensors',
      'special_tokens_map.json',
      'tokenizer.json',
      'tokenizer_config.json',
    ]);
    const text = await readFile(join(dir, 'config.json'), 'utf8');
    // written literally as transformers does (json.dumps with allow_nan)
    expect(text).toContain('"time_step_limit": [\n    0.0,\n    Infinity\n  ]');
    expect(text).toContain('"layer_norm_epsilon": 1e-05');
    const cfg = JSON.parse(text.replace('Infinity', '1e999')) as Record<string, unknown>;
    // the full key set of a transformers-written Nemotron-H config (as in the golden tiny-a checkpoint)
    expect(Object.keys(cfg)).toEqual([
      'architectures', 'attention_bias', 'attention_dropout', 'bos_token_id', 'chunk_size', 'conv_kernel',
      'eos_token_id', 'expand', 'head_dim', 'hidden_dropout', 'hidden_size', 'hybrid_override_pattern',
      'initializer_range', 'intermediate_size', 'layer_norm_epsilon', 'mamba_head_dim', 'mamba_hidden_act',
      'mamba_num_heads', 'mamba_proj_bias', 'max_position_embeddings', 'mlp_bias', 'mlp_hidden_act', 'model_type',
      'n_groups', 'num_attention_heads', 'num_hidden_layers', 'num_key_value_heads', 'num_logits_to_keep',
      'pad_token_id', 'rescale_prenorm_residual', 'residual_in_fp32', 'rms_norm_eps', 'sliding_window',
      'ssm_state_size', 'tie_word_embeddings', 'time_step_floor', 'time_step_limit', 'time_step_max',
      'time_step_min', 'torch_dtype', 'transformers_version', 'use_bias', 'use_cache', 'use_conv_bias',
      'use_mamba_kernels', 'vocab_size',
    ]);
    expect(cfg).toMatchObject({
      architectures: ['NemotronHForCausalLM'],
      model_type: 'nemotron_h',
      hybrid_override_pattern: 'M-M*-M*-',
      num_hidden_layers: 8,
      hidden_size: 64,
      mamba_num_heads: 8,
      mamba_head_dim: 16,
      n_groups: 2,
      ssm_state_size: 16,
      conv_kernel: 4,
      chunk_size: 16,
      num_attention_heads: 4,
      num_key_value_heads: 2,
      head_dim: 16,
      intermediate_size: 128,
      vocab_size: 512,
      tie_word_embeddings: false,
      torch_dtype: 'bfloat16',
      mlp_hidden_act: 'relu2',
      bos_token_id: 1,
      eos_token_id: 12,
      pad_token_id: 0,
      time_step_limit: [0, Infinity],
    });
    expect(res.config).toEqual(cfg);
    expect(res.dir).toBe(dir);
    const gen = await readJson(join(dir, 'generation_config.json'));
    expect(gen).toMatchObject({ bos_token_id: 1, eos_token_id: [12, 2], pad_token_id: 0 });
    expect(await readJson(join(dir, 'special_tokens_map.json'))).toEqual({
      bos_token: '<s>',
      eos_token: '<SPECIAL_12>',
      pad_token: '<unk>',
      unk_token: '<unk>',
    });
  });

  it.each<[string, TinyModelOptions, string, string]>([
    ['default M-M*-M*- bf16', {}, 'BF16', 'backbone.'],
    ['MLP/attention only, f32', { pattern: '*-*--', dtype: 'f32' }, 'F32', 'backbone.'],
    ['Mamba only, f16, model. prefix', { pattern: 'MMM', dtype: 'f16', prefix: 'model.' }, 'F16', 'model.'],
    [
      'odd sizes, tied embeddings, bigger vocab',
      {
        pattern: 'M*M-',
        hiddenSize: 48,
        mambaNumHeads: 6,
        mambaHeadDim: 8,
        nGroups: 3,
        ssmStateSize: 8,
        convKernel: 3,
        numAttentionHeads: 6,
        numKeyValueHeads: 3,
        headDim: 12,
        intermediateSize: 40,
        vocabSize: 600,
        tieWordEmbeddings: true,
      },
      'BF16',
      'backbone.',
    ],
  ])('safetensors holds exactly the expected tensors: %s', async (_label, opts, dtype, prefix) => {
    const dir = fresh();
    const res = await makeTinyModel(dir, opts);
    const cfg = res.config;
    const st = await parseSafetensors(join(dir, 'model.safetensors'));
    const expected = expectedTensors(cfg, prefix);
    checkLayout(st, expected, dtype);
    const total = [...expected.values()].reduce((a, s) => a + s.reduce((x, y) => x * y, 1), 0);
    expect(res.parameterCount).toBe(total);
    if (opts.pattern !== undefined) expect(cfg['num_hidden_layers']).toBe(opts.pattern.length);
    if (opts.vocabSize !== undefined) expect(cfg['vocab_size']).toBe(opts.vocabSize);
    expect(cfg['torch_dtype']).toBe({ BF16: 'bfloat16', F16: 'float16', F32: 'float32' }[dtype]);
    expect((await stat(join(dir, 'model.safetensors'))).size).toBe(8 + st.headerLength + st.data.length);
  });

  it('weights have the documented initial scales', async () => {
    const dir = fresh();
    const res = await makeTinyModel(dir, { pattern: 'M*-M', dtype: 'f32', seed: 7 });
    const st = await parseSafetensors(join(dir, 'model.safetensors'));
    const L = 4;
    const resid = 1 / Math.sqrt(2 * L);
    const emb = tensorValues(st, 'backbone.embeddings.weight');
    expect(Math.abs(mean(emb))).toBeLessThan(0.03);
    expect(std(emb)).toBeGreaterThan(0.95);
    expect(std(emb)).toBeLessThan(1.05);
    const close = (name: string, want: number, tol = 0.08): void => {
      const s = std(tensorValues(st, name));
      expect(Math.abs(s / want - 1), `${name} std ${s} vs ${want}`).toBeLessThan(tol);
    };
    close('backbone.layers.0.mixer.in_proj.weight', 1 / 8);
    close('backbone.layers.0.mixer.out_proj.weight', resid / Math.sqrt(128));
    close('backbone.layers.1.mixer.q_proj.weight', 1 / 8);
    close('backbone.layers.1.mixer.o_proj.weight', resid / 8);
    close('backbone.layers.2.mixer.up_proj.weight', 1 / 8);
    close('backbone.layers.2.mixer.down_proj.weight', resid / Math.sqrt(128));
    close('backbone.layers.0.mixer.conv1d.weight', 1 / 2);
    close('lm_head.weight', 1 / 8);
    for (const name of [
      'backbone.layers.0.norm.weight',
      'backbone.layers.0.mixer.norm.weight',
      'backbone.layers.0.mixer.D',
      'backbone.norm_f.weight',
    ]) {
      const v = tensorValues(st, name);
      expect(Math.min(...v), name).toBeGreaterThanOrEqual(0.9);
      expect(Math.max(...v), name).toBeLessThanOrEqual(1.1);
      expect(v.some((x) => x !== 1), name).toBe(true);
      expect(std(v), name).toBeGreaterThan(0.01);
    }
    for (const x of tensorValues(st, 'backbone.layers.3.mixer.A_log')) {
      expect(x).toBeGreaterThanOrEqual(0);
      expect(x).toBeLessThanOrEqual(Math.log(8) + 1e-6);
    }
    for (const x of tensorValues(st, 'backbone.layers.3.mixer.dt_bias')) {
      const dt = Math.log1p(Math.exp(x)); // softplus
      expect(dt).toBeGreaterThanOrEqual(0.01 * (1 - 1e-5));
      expect(dt).toBeLessThanOrEqual(0.5 * (1 + 1e-5));
    }
    expect(res.parameterCount).toBeGreaterThan(0);
  });
});

describe('makeTinyModel: determinism', () => {
  const files = [
    'config.json',
    'generation_config.json',
    'model.safetensors',
    'special_tokens_map.json',
    'tokenizer.json',
    'tokenizer_config.json',
  ];
  it('the same seed gives byte-identical files, another seed different weights', async () => {
    const a = fresh();
    const b = fresh();
    const c = fresh();
    await makeTinyModel(a, { seed: 42 });
    await makeTinyModel(b, { seed: 42 });
    await makeTinyModel(c, { seed: 43 });
    for (const f of files) {
      expect((await readFile(join(a, f))).equals(await readFile(join(b, f))), f).toBe(true);
    }
    const wa = await parseSafetensors(join(a, 'model.safetensors'));
    const wc = await parseSafetensors(join(c, 'model.safetensors'));
    expect(wa.headerText).toBe(wc.headerText);
    // every tensor differs, not just some
    for (const [name, e] of wa.tensors) {
      const ec = wc.tensors.get(name) as HeaderEntry;
      const x = wa.data.subarray(e.data_offsets[0], e.data_offsets[1]);
      const y = wc.data.subarray(ec.data_offsets[0], ec.data_offsets[1]);
      expect(x.equals(y), name).toBe(false);
    }
    for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json']) {
      expect((await readFile(join(a, f))).equals(await readFile(join(c, f))), f).toBe(true);
    }
  });

  it('bf16/f16 files are the rounded f32 values (dtype and prefix change only the storage)', async () => {
    const dirs = { f32: fresh(), bf16: fresh(), f16: fresh() };
    await makeTinyModel(dirs.f32, { seed: 11, dtype: 'f32' });
    await makeTinyModel(dirs.bf16, { seed: 11, dtype: 'bf16', prefix: 'model.' });
    await makeTinyModel(dirs.f16, { seed: 11, dtype: 'f16' });
    const f32 = await parseSafetensors(join(dirs.f32, 'model.safetensors'));
    const bf16 = await parseSafetensors(join(dirs.bf16, 'model.safetensors'));
    const f16 = await parseSafetensors(join(dirs.f16, 'model.safetensors'));
    let checked = 0;
    for (const [name, e] of f32.tensors) {
      const raw = f32.data.subarray(e.data_offsets[0], e.data_offsets[1]);
      const eb = bf16.tensors.get(name.replace(/^backbone\./, 'model.')) as HeaderEntry;
      const eh = f16.tensors.get(name) as HeaderEntry;
      expect(eb, name).toBeDefined();
      let bad = 0;
      for (let i = 0, j = 0; i < raw.length; i += 4, j += 2) {
        const x = raw.readFloatLE(i);
        if (bf16.data.readUInt16LE(eb.data_offsets[0] + j) !== toBf16Bits(x)) bad++;
        if (f16.data.readUInt16LE(eh.data_offsets[0] + j) !== toF16Bits(x)) bad++;
        checked++;
      }
      expect(bad, name).toBe(0);
    }
    expect(checked).toBeGreaterThan(100_000);
  });

  it('the default seed is 0 and rewriting a folder replaces its files', async () => {
    const a = fresh();
    const b = fresh();
    await makeTinyModel(a);
    await makeTinyModel(b, { seed: 0 });
    expect((await readFile(join(a, 'model.safetensors'))).equals(await readFile(join(b, 'model.safetensors')))).toBe(
      true,
    );
    await makeTinyModel(a, { shards: 2 });
    await makeTinyModel(a, { seed: 0 });
    expect((await readdir(a)).sort()).toEqual(files);
    expect((await readFile(join(a, 'model.safetensors'))).equals(await readFile(join(b, 'model.safetensors')))).toBe(
      true,
    );
  });
});

describe('makeTinyModel: option validation', () => {
  const bad: [string, Record<string, unknown>, string][] = [
    ['mamba heads not divisible by groups', { mambaNumHeads: 6, nGroups: 4 }, 'mambaNumHeads'],
    ['attention heads not divisible by kv heads', { numAttentionHeads: 4, numKeyValueHeads: 3 }, 'numAttentionHeads'],
    ['pattern with a foreign character', { pattern: 'M-X*' }, 'pattern'],
    ['MoE layer (E) with top-k above the experts', { pattern: 'ME', nRoutedExperts: 2, numExpertsPerTok: 3 }, 'numExpertsPerTok'],
    ['MoE and MLP layers in one GGUF', { pattern: 'ME-', format: 'gguf' }, 'pattern'],
    ['empty pattern', { pattern: '' }, 'pattern'],
    ['unknown dtype', { dtype: 'f64' }, 'dtype'],
    ['zero hidden size', { hiddenSize: 0 }, 'hiddenSize'],
    ['fractional hidden size', { hiddenSize: 64.5 }, 'hiddenSize'],
    ['string hidden size', { hiddenSize: '64' }, 'hiddenSize'],
    ['negative state size', { ssmStateSize: -16 }, 'ssmStateSize'],
    ['fractional seed', { seed: 1.5 }, 'seed'],
    ['vocab smaller than the tokenizer', { vocabSize: 100 }, 'vocabSize'],
    ['zero shards', { shards: 0 }, 'shards'],
    ['more shards than tensors', { shards: 1000 }, 'shards'],
    ['bad prefix', { prefix: 'transformer.' }, 'prefix'],
    ['non-boolean tie', { tieWordEmbeddings: 'yes' }, 'tieWordEmbeddings'],
    ['unknown option', { hidden_size: 64 }, 'hidden_size'],
  ];
  it.each(bad)('%s', async (_label, opts, option) => {
    const dir = fresh();
    const err = await makeTinyModel(dir, opts as TinyModelOptions).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(InvalidArgumentError);
    const e = err as InvalidArgumentError;
    expect(e.code).toBe('ERR_INVALID_ARGUMENT');
    expect(e.message).toContain(`'${option}'`);
    const given = opts[option];
    expect(e.message).toContain(typeof given === 'string' ? JSON.stringify(given) : String(given));
    // nothing half-written
    await expect(readdir(dir)).rejects.toThrow();
  });
});

describe('makeTinyModel: shards', () => {
  it('writes model-0000k-of-0000n files and an index covering every tensor', async () => {
    const single = fresh();
    const sharded = fresh();
    const res = await makeTinyModel(single, { seed: 5 });
    await makeTinyModel(sharded, { seed: 5, shards: 3 });
    const names = (await readdir(sharded)).sort();
    expect(names).not.toContain('model.safetensors');
    const shardFiles = ['model-00001-of-00003.safetensors', 'model-00002-of-00003.safetensors', 'model-00003-of-00003.safetensors'];
    for (const f of shardFiles) expect(names).toContain(f);
    const index = await readJson(join(sharded, 'model.safetensors.index.json'));
    const weightMap = index['weight_map'] as Record<string, string>;
    const expected = expectedTensors(res.config);
    expect(Object.keys(weightMap).sort()).toEqual([...expected.keys()].sort());

    const one = await parseSafetensors(join(single, 'model.safetensors'));
    let totalBytes = 0;
    const seen = new Set<string>();
    for (const f of shardFiles) {
      const st = await parseSafetensors(join(sharded, f));
      expect(st.tensors.size).toBeGreaterThan(0);
      const sub = new Map([...st.tensors.keys()].map((k) => [k, expected.get(k) as number[]]));
      checkLayout(st, sub, 'BF16');
      for (const [name, e] of st.tensors) {
        expect(weightMap[name], name).toBe(f);
        expect(seen.has(name)).toBe(false);
        seen.add(name);
        totalBytes += e.data_offsets[1] - e.data_offsets[0];
        // sharding does not change any tensor's bytes
        const e1 = one.tensors.get(name) as HeaderEntry;
        const a = st.data.subarray(e.data_offsets[0], e.data_offsets[1]);
        const b = one.data.subarray(e1.data_offsets[0], e1.data_offsets[1]);
        expect(a.equals(b), name).toBe(true);
      }
    }
    expect(seen.size).toBe(expected.size);
    expect((index['metadata'] as Record<string, unknown>)['total_size']).toBe(totalBytes);
  });
});

describe('makeTinyModel: safetensors: false', () => {
  it("writes model.gguf (the same bytes as with the safetensors) and no safetensors files; needs format 'gguf'", async () => {
    const both = fresh();
    const only = fresh();
    await makeTinyModel(both, { seed: 6, format: 'gguf', ggufType: 'Q8_0' });
    await makeTinyModel(only, { seed: 6, format: 'gguf', ggufType: 'Q8_0', shards: 2 });
    await makeTinyModel(only, { seed: 6, format: 'gguf', ggufType: 'Q8_0', safetensors: false }); // removes the shards
    const names = await readdir(only);
    expect(names.filter((n) => n.endsWith('.safetensors') || n === 'model.safetensors.index.json')).toEqual([]);
    expect(names).toContain('config.json');
    expect((await readFile(join(only, 'model.gguf'))).equals(await readFile(join(both, 'model.gguf')))).toBe(true);
    await expect(makeTinyModel(fresh(), { safetensors: false })).rejects.toBeInstanceOf(InvalidArgumentError);
  });
});

describe('makeTinyModel: speed and scale', () => {
  it('writes a 30-layer bf16 model with hidden 256 in a few seconds', async () => {
    const dir = fresh();
    const pattern = 'M-M*-'.repeat(6);
    expect(pattern.length).toBe(30);
    const t0 = performance.now();
    const res = await makeTinyModel(dir, { pattern, hiddenSize: 256, intermediateSize: 512, seed: 9 });
    const ms = performance.now() - t0;
    expect(ms).toBeLessThan(5000);
    const st = await parseSafetensors(join(dir, 'model.safetensors'));
    checkLayout(st, expectedTensors(res.config), 'BF16');
    expect(res.config['num_hidden_layers']).toBe(30);
  }, 30_000);
});

describe('float conversion', () => {
  it('bf16 rounds to nearest even and keeps specials', () => {
    expect(toBf16Bits(1)).toBe(0x3f80);
    expect(toBf16Bits(-2)).toBe(0xc000);
    expect(toBf16Bits(1 + 2 ** -8)).toBe(0x3f80); // tie -> even (down)
    expect(toBf16Bits(1 + 3 * 2 ** -8)).toBe(0x3f82); // tie -> even (up)
    expect(toBf16Bits(1 + 2 ** -8 + 2 ** -20)).toBe(0x3f81); // above the tie
    expect(toBf16Bits(Infinity)).toBe(0x7f80);
    expect(toBf16Bits(-Infinity)).toBe(0xff80);
    expect(toBf16Bits(3.4e38)).toBe(0x7f80); // rounds up past the largest bf16
    expect(toBf16Bits(-0)).toBe(0x8000);
    const nan = toBf16Bits(NaN);
    expect(nan & 0x7f80).toBe(0x7f80);
    expect(nan & 0x7f).not.toBe(0);
  });

  it('f16 handles normals, subnormals, ties, overflow and NaN', () => {
    expect(toF16Bits(1)).toBe(0x3c00);
    expect(toF16Bits(-1.5)).toBe(0xbe00);
    expect(toF16Bits(65504)).toBe(0x7bff);
    expect(toF16Bits(65519)).toBe(0x7bff);
    expect(toF16Bits(65520)).toBe(0x7c00); // tie with the next (infinite) step rounds to even = Inf
    expect(toF16Bits(2 ** -14)).toBe(0x0400); // smallest normal
    expect(toF16Bits(2 ** -24)).toBe(0x0001); // smallest subnormal
    expect(toF16Bits(2 ** -25)).toBe(0x0000); // tie -> even (zero)
    expect(toF16Bits(1.5 * 2 ** -25)).toBe(0x0001);
    expect(toF16Bits(3 * 2 ** -25)).toBe(0x0002); // 1.5 ulp tie -> even (2)
    expect(toF16Bits(2 ** -14 - 2 ** -25)).toBe(0x0400); // tie between largest subnormal and smallest normal
    expect(toF16Bits(-(2 ** -20))).toBe(0x8010);
    expect(toF16Bits(1e-10)).toBe(0x0000);
    expect(toF16Bits(-0)).toBe(0x8000);
    expect(toF16Bits(Infinity)).toBe(0x7c00);
    const nan = toF16Bits(NaN);
    expect(nan & 0x7c00).toBe(0x7c00);
    expect(nan & 0x3ff).not.toBe(0);
  });

  it('both conversions pick the nearest representable value (random sweep)', () => {
    let s = 12345;
    const rnd = (): number => {
      s = (Math.imul(s, 1103515245) + 12345) >>> 0;
      return s / 2 ** 32;
    };
    const f32 = new Float32Array(1);
    for (let i = 0; i < 20000; i++) {
      f32[0] = (rnd() - 0.5) * 2 ** Math.floor(rnd() * 44 - 30);
      const x = f32[0] as number;
      const h = toF16Bits(x);
      const got = f16ToNumber(h);
      if (Math.abs(x) < 65504) {
        for (const nb of [h - 1, h + 1]) {
          if ((nb & 0x7fff) > 0x7bff || nb < 0 || (nb & 0x7fff) === 0x7fff) continue;
          if ((nb & 0x8000) !== (h & 0x8000)) continue;
          const other = f16ToNumber(nb);
          const dg = Math.abs(x - got);
          const dn = Math.abs(x - other);
          expect(dg <= dn, `f16 ${x}: ${got} vs ${other}`).toBe(true);
          if (dg === dn) expect(h & 1, `f16 tie ${x}`).toBe(0);
        }
      }
      const b = toBf16Bits(x);
      const bg = bf16ToNumber(b);
      for (const nb of [b - 1, b + 1]) {
        if ((nb & 0x8000) !== (b & 0x8000) || (nb & 0x7fff) >= 0x7f80) continue;
        const other = bf16ToNumber(nb);
        const dg = Math.abs(x - bg);
        const dn = Math.abs(x - other);
        expect(dg <= dn, `bf16 ${x}: ${bg} vs ${other}`).toBe(true);
        if (dg === dn) expect(b & 1, `bf16 tie ${x}`).toBe(0);
      }
    }
  });
});

describe('tokenizer', () => {
  let tok: Tokenizer;
  let tokJson: Record<string, unknown>;
  let tokConfig: Record<string, unknown>;
  let dir = '';

  beforeAll(async () => {
    dir = fresh();
    await makeTinyModel(dir);
    tokJson = await readJson(join(dir, 'tokenizer.json'));
    tokConfig = await readJson(join(dir, 'tokenizer_config.json'));
    tok = new Tokenizer(tokJson, tokConfig);
  });

  it('has the golden structure: ByteLevel BPE, <s> template, 512 tokens', () => {
    expect(tokJson['pre_tokenizer']).toMatchObject({ type: 'ByteLevel', use_regex: true, add_prefix_space: false });
    expect(tokJson['decoder']).toMatchObject({ type: 'ByteLevel' });
    expect(tokJson['post_processor']).toMatchObject({ type: 'TemplateProcessing' });
    const model = tokJson['model'] as { type: string; vocab: Record<string, number>; merges: unknown[] };
    expect(model.type).toBe('BPE');
    const ids = Object.values(model.vocab).sort((a, b) => a - b);
    expect(ids.length).toBe(512);
    expect(ids.every((id, i) => id === i)).toBe(true); // dense 0..511
    expect(model.merges.length).toBeGreaterThanOrEqual(512 - 21 - 256);
    expect(tok.get_vocab(true).size).toBe(512);
    expect(tokConfig).toMatchObject({
      add_bos_token: true,
      bos_token: '<s>',
      eos_token: '<SPECIAL_12>',
      pad_token: '<unk>',
      unk_token: '<unk>',
      tokenizer_class: 'PreTrainedTokenizerFast',
    });
    expect(typeof tokConfig['chat_template']).toBe('string');
  });

  it('special and added tokens have the Nemotron Nano 2 ids', () => {
    const want: [string, number, boolean][] = [
      ['<unk>', 0, true],
      ['<s>', 1, true],
      ['</s>', 2, true],
      ['<SPECIAL_3>', 3, true],
      ['<SPECIAL_9>', 9, true],
      ['<SPECIAL_10>', 10, true],
      ['<SPECIAL_11>', 11, true],
      ['<SPECIAL_12>', 12, true],
      ['<think>', 13, false],
      ['</think>', 14, false],
      ['<TOOLCALL>', 15, false],
      ['</TOOLCALL>', 16, false],
      ['<AVAILABLE_TOOLS>', 17, false],
      ['</AVAILABLE_TOOLS>', 18, false],
      ['<TOOL_RESPONSE>', 19, false],
      ['</TOOL_RESPONSE>', 20, false],
    ];
    const decoder = tokConfig['added_tokens_decoder'] as Record<string, { content: string; special: boolean }>;
    for (const [content, id, special] of want) {
      expect(tok.token_to_id(content), content).toBe(id);
      expect(tok.encode(content, { add_special_tokens: false }).ids, content).toEqual([id]);
      expect(decoder[String(id)], content).toMatchObject({ content, special });
    }
    // first byte token follows the added tokens: byte 0x00 is 'Ā'
    expect(tok.token_to_id('\u0100')).toBe(21);
    const ids = tok.encode('<SPECIAL_11>User\nhi\n<SPECIAL_12>\n<SPECIAL_11>Assistant\n<think>\n').ids;
    expect(ids[0]).toBe(1); // <s> added by the post-processor
    expect(ids).toContain(11);
    expect(ids).toContain(12);
    expect(ids).toContain(13);
  });

  it.each([
    ['ascii', 'Hello, world! The quick brown fox jumps over the lazy dog. 1234567890 {"a": [1, 2]}'],
    ['code', 'function f(x) {\n\treturn x * 2; // doubled\n}\n'],
    ['accented', 'Le café est très bon — Über Straße, niño, ação, naïve façade'],
    ['cjk', '你好，世界！日本語のテキスト。한국어 문장입니다.'],
    ['emoji', 'emoji 🙂🚀👍🏽 and 👨‍👩‍👧 family ❤️'],
    ['whitespace', '  leading\n\n  and trailing spaces   '],
    ['mixed with added tokens', '<think>\nreasoning\n</think>\n\nanswer <TOOLCALL>[{"name": "x"}]</TOOLCALL>'],
  ])('round-trips %s text', (_label, text) => {
    const enc = tok.encode(text);
    expect(enc.ids[0]).toBe(1);
    for (const id of enc.ids) {
      expect(id).toBeGreaterThanOrEqual(0);
      expect(id).toBeLessThan(512);
    }
    expect(tok.decode(enc.ids, { skip_special_tokens: true })).toBe(text);
    expect(tok.decode(enc.ids.slice(1))).toBe(text);
  });

  it('merges fire: English text takes clearly fewer tokens than bytes', () => {
    const text = 'The model is small, but it is fast, and that is what we want for the tests of the engine.';
    const ids = tok.encode(text, { add_special_tokens: false }).ids;
    expect(ids.length).toBeLessThan(0.6 * Buffer.byteLength(text));
    const tokens = tok.tokenize(' the');
    expect(tokens).toEqual(['Ġthe']); // a frequent word is one token
    // multi-byte characters get merged byte pairs too
    const cjk = tok.encode('我们', { add_special_tokens: false }).ids;
    expect(cjk.length).toBeLessThan(Buffer.byteLength('我们'));
  });
});

// The chat template is rendered with @huggingface/jinja, the engine lib/ uses for chat templates.
describe('chat template', () => {
  it('renders Nemotron Nano 2 prompts (@huggingface/jinja)', async () => {
    const dir = fresh();
    await makeTinyModel(dir);
    const template = (await readJson(join(dir, 'tokenizer_config.json')))['chat_template'] as string;
    const weather = {
      type: 'function',
      function: { name: 'get_weather', description: 'Weather', parameters: { type: 'object', properties: {} } },
    };
    const cases: [Record<string, unknown>, string][] = [
      [
        { messages: [{ role: 'user', content: 'Hello' }], add_generation_prompt: true },
        '<SPECIAL_10>System\n\n<SPECIAL_11>User\nHello\n<SPECIAL_11>Assistant\n<think>\n',
      ],
      [
        {
          messages: [
            { role: 'system', content: 'Be brief. /think' },
            { role: 'user', content: 'Hi /no_think' },
          ],
          add_generation_prompt: true,
        },
        '<SPECIAL_10>System\nBe brief.\n<SPECIAL_11>User\nHi\n<SPECIAL_11>Assistant\n<think></think>',
      ],
      [
        { messages: [{ role: 'user', content: '/no_think then /think' }], add_generation_prompt: true },
        '<SPECIAL_10>System\n\n<SPECIAL_11>User\nthen\n<SPECIAL_11>Assistant\n<think>\n',
      ],
      [
        {
          messages: [
            { role: 'user', content: 'q1' },
            { role: 'assistant', content: '<think>\nhmm\n</think>\n\nA1 ' },
            { role: 'user', content: 'q2' },
          ],
          add_generation_prompt: true,
        },
        '<SPECIAL_10>System\n\n<SPECIAL_11>User\nq1\n<SPECIAL_11>Assistant\nA1\n<SPECIAL_12>\n' +
          '<SPECIAL_11>User\nq2\n<SPECIAL_11>Assistant\n<think>\n',
      ],
      [
        {
          messages: [
            { role: 'system', content: 'S' },
            { role: 'user', content: 'w?' },
            {
              role: 'assistant',
              content: null,
              tool_calls: [{ type: 'function', function: { name: 'get_weather', arguments: { city: 'Paris' } } }],
            },
            { role: 'tool', content: '{"t": 20}' },
            { role: 'tool', content: 'ok' },
          ],
          tools: [weather],
          add_generation_prompt: true,
        },
        '<SPECIAL_10>System\nS\n\nYou can use the following tools to assist the user if required:\n' +
          '<AVAILABLE_TOOLS>[{"name": "get_weather", "description": "Weather", "parameters": {"type": "object", "properties": {}}}]</AVAILABLE_TOOLS>\n\n',
      ],
      [
        {
          messages: [
            { role: 'user', content: 'hi' },
            { role: 'assistant', content: 'partial' },
          ],
          continue_final_message: true,
        },
        '<SPECIAL_10>System\n\n<SPECIAL_11>User\nhi\n<SPECIAL_11>Assistant\n<think>\npartial',
      ],
    ];
    const compiled = new Template(template);
    const rendered = cases.map(([ctx]) => compiled.render(ctx));
    cases.forEach(([, want], i) => {
      if (i === 4) {
        const r = rendered[i] as string;
        expect(r.startsWith(want)).toBe(true);
        expect(r).toContain(
          '<SPECIAL_11>User\nw?\n<SPECIAL_11>Assistant\n<TOOLCALL>[{"name": "get_weather", "arguments": {"city": "Paris"}}]</TOOLCALL>\n<SPECIAL_12>\n' +
            '<SPECIAL_11>User\n<TOOL_RESPONSE>[{"t": 20}, ok]</TOOL_RESPONSE>\n<SPECIAL_11>Assistant\n<think>\n',
        );
        expect(r.endsWith('</TOOL_RESPONSE>\n<SPECIAL_11>Assistant\n<think>\n')).toBe(true);
      } else {
        expect(rendered[i]).toBe(want);
      }
    });
  });
});
