import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { InvalidArgumentError, NemotronError } from '../../lib/errors.js';
import * as index from '../../lib/index.js';
import { checkPlanFits, formatBytes, parameterCount, planMemory, sequenceStateBytes, type MemoryPlan } from '../../lib/memory.js';
import { NEMOTRON_NANO_12B_V2, NEMOTRON_NANO_9B_V2 } from '../../lib/known-configs.js';
import { makeTinyModel } from '../../lib/tiny-model/index.js';

// docs/architecture.md §1.1, as the raw Hugging Face config.json objects (lib/known-configs.ts).
const CONFIG_9B = NEMOTRON_NANO_9B_V2;
const CONFIG_12B = NEMOTRON_NANO_12B_V2;

// Nemotron-H-8B-Base-8K: the legacy key names (attention_head_dim, mamba_n_groups, mamba_d_conv).
const CONFIG_8B: Record<string, unknown> = {
  architectures: ['NemotronHForCausalLM'],
  hybrid_override_pattern: 'M-M-M-M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M-',
  num_hidden_layers: 52,
  hidden_size: 4096,
  intermediate_size: 21504,
  num_attention_heads: 32,
  num_key_value_heads: 8,
  attention_head_dim: 128,
  mamba_num_heads: 128,
  mamba_head_dim: 64,
  ssm_state_size: 128,
  mamba_n_groups: 8,
  mamba_d_conv: 4,
  vocab_size: 131072,
  tie_word_embeddings: false,
  max_position_embeddings: 8192,
};

const CTX = 131072;
const GiB = 1024 ** 3;

function expectInvalid(fn: () => unknown, ...fragments: string[]): void {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(InvalidArgumentError);
  const e = caught as InvalidArgumentError;
  expect(e.code).toBe('ERR_INVALID_ARGUMENT');
  for (const f of fragments) expect(e.message).toContain(f);
}

describe('docs/architecture.md §1.2 and §4 figures', () => {
  const cases = [
    {
      name: '9B', config: CONFIG_9B, params: 8_888_227_328, kv: 2_147_483_648, perToken: 16_384,
      convBf16: 1_990_656, ssmBf16: 70_778_880, ssmF32: 141_557_760, allBf16: 2_220_253_184, fp32Ssm: 2_291_032_064,
      mambaLayers: 27,
    },
    {
      name: '12B', config: CONFIG_12B, params: 12_310_001_152, kv: 3_221_225_472, perToken: 24_576,
      convBf16: 2_064_384, ssmBf16: 73_400_320, ssmF32: 146_800_640, allBf16: 3_296_690_176, fp32Ssm: 3_370_090_496,
      mambaLayers: 28,
    },
  ] as const;

  for (const k of cases) {
    describe(k.name, () => {
      const plan = planMemory(k.config, { contextLength: CTX, maxSequences: 1 });

      it('parameter count and bf16 weight bytes equal §1.2', () => {
        expect(plan.parameterCount).toBe(k.params);
        expect(parameterCount(k.config)).toBe(k.params);
        expect(plan.weights).toBe(2 * k.params);
        expect(planMemory(k.config, { contextLength: CTX, maxSequences: 1, weightDtype: 'f32' }).weights).toBe(4 * k.params);
      });

      it('KV at 131072 tokens (f16) and KV growth per token', () => {
        expect(plan.perSequence.kvAtContext).toBe(k.kv);
        expect(plan.kvBytesPerToken).toBe(k.perToken);
        expect(plan.perSequence.kvAtContext).toBe(CTX * k.perToken);
        // f32 KV doubles both
        const f32 = planMemory(k.config, { contextLength: CTX, maxSequences: 1, kvDtype: 'f32' });
        expect(f32.perSequence.kvAtContext).toBe(2 * k.kv);
        expect(f32.kvBytesPerToken).toBe(2 * k.perToken);
      });

      it('conv and SSM totals equal §4 (bf16 conv via the dtype-variant helper; f32 in the engine)', () => {
        const bf16 = sequenceStateBytes(k.config, { contextLength: CTX, convDtype: 'bf16', ssmDtype: 'bf16', kvDtype: 'bf16', kvBlockTokens: 1 });
        expect(bf16.conv).toBe(k.convBf16);
        expect(bf16.ssm).toBe(k.ssmBf16);
        expect(bf16.kv).toBe(k.kv);
        expect(bf16.total).toBe(k.allBf16);
        const fp32Ssm = sequenceStateBytes(k.config, { contextLength: CTX, convDtype: 'bf16', ssmDtype: 'f32', kvDtype: 'bf16' });
        expect(fp32Ssm.ssm).toBe(k.ssmF32);
        expect(fp32Ssm.total).toBe(k.fp32Ssm);
        expect(fp32Ssm.kvBytesPerToken).toBe(k.perToken);

        // The engine keeps conv AND SSM in f32.
        expect(plan.perSequence.ssm).toBe(k.ssmF32);
        expect(plan.perSequence.conv).toBe(2 * k.convBf16);
        expect(plan.perSequence.conv).toBe(k.mambaLayers * 3 * 12288 * 4);
        expect(plan.recurrentBytesPerSequence).toBe(2 * k.convBf16 + k.ssmF32);
        expect(plan.perSequence.total).toBe(2 * k.convBf16 + k.ssmF32 + k.kv);
      });
    });
  }

  it('9B totals: sequences, activations (Workspace::init), snapshot default, total', () => {
    const plan = planMemory(CONFIG_9B, { contextLength: CTX, maxSequences: 8 });
    const perSeq = 3_981_312 + 141_557_760 + 2_147_483_648;
    expect(plan.perSequence.total).toBe(perSeq);
    expect(plan.sequences).toBe(8 * perSeq);
    // R = 256 + 8 rows; h, u, out: R·4480 each; proj: R·max(22656, 5120 + 2·1024, 15680);
    // conv: R·12288; mix: R·max(10240, 5120); logits: 16·131072; all f32.
    const R = 264;
    const floats = 3 * R * 4480 + R * 22656 + R * 12288 + R * 10240 + 16 * 131072;
    expect(plan.activations).toBe(4 * floats);
    expect(plan.activations).toBe(70_295_552);
    expect(plan.snapshotBudget).toBe(GiB);
    expect(plan.total).toBe(2 * 8_888_227_328 + 8 * perSeq + 70_295_552 + GiB);
  });

  it('8B (legacy keys) equals §1.2 and the §4 row at 8k', () => {
    expect(parameterCount(CONFIG_8B)).toBe(8_100_852_736);
    const allBf16 = sequenceStateBytes(CONFIG_8B, { contextLength: 8192, convDtype: 'bf16', ssmDtype: 'bf16', kvDtype: 'bf16' });
    expect(allBf16.conv).toBe(1_474_560);
    expect(allBf16.ssm).toBe(50_331_648);
    expect(allBf16.kv).toBe(134_217_728);
    expect(allBf16.total).toBe(186_023_936);
    const fp32Ssm = sequenceStateBytes(CONFIG_8B, { contextLength: 8192, convDtype: 'bf16', ssmDtype: 'f32', kvDtype: 'bf16' });
    expect(fp32Ssm.total).toBe(236_355_584);
    expect(fp32Ssm.kvBytesPerToken).toBe(16_384);
  });

  it('accepts the camelCase config the engine reports, with the same figures', () => {
    const camel = {
      hybridOverridePattern: CONFIG_9B.hybrid_override_pattern,
      hiddenSize: 4480, intermediateSize: 15680, vocabSize: 131072,
      numAttentionHeads: 40, numKeyValueHeads: 8, headDim: 128,
      mambaNumHeads: 128, mambaHeadDim: 80, ssmStateSize: 128, nGroups: 8, convKernel: 4,
    };
    const a = planMemory(camel, { contextLength: 4096, maxSequences: 2, maxBatchTokens: 128 });
    const b = planMemory(CONFIG_9B, { contextLength: 4096, maxSequences: 2, maxBatchTokens: 128 });
    expect(a.total).toBe(b.total);
    expect(a.parameterCount).toBe(8_888_227_328);
  });
});

describe('a tiny config, summed tensor by tensor', () => {
  // pattern M*-M: 2 Mamba, 1 attention, 1 MLP layer.
  const hidden = 8, vocab = 32, inter = 12;
  const heads = 2, kvHeads = 1, headDim = 4; // q 8, kv 4
  const mHeads = 4, mHeadDim = 2, N = 3, G = 2, K = 3; // d_inner 8, conv_dim 8 + 12 = 20, in_proj 8 + 20 + 4 = 32
  const tiny = {
    hybrid_override_pattern: 'M*-M', hidden_size: hidden, vocab_size: vocab, intermediate_size: inter,
    num_attention_heads: heads, num_key_value_heads: kvHeads, head_dim: headDim,
    mamba_num_heads: mHeads, mamba_head_dim: mHeadDim, ssm_state_size: N, n_groups: G, conv_kernel: K,
  };
  const shapes = (tied: boolean, convBias: boolean): number[][] => {
    const mamba = [[32, hidden], [20, 1, K], ...(convBias ? [[20]] : []), [mHeads], [mHeads], [mHeads], [8], [hidden, 8]];
    const attn = [[8, hidden], [4, hidden], [4, hidden], [hidden, 8]];
    const mlp = [[inter, hidden], [hidden, inter]];
    const norms = [[hidden], [hidden], [hidden], [hidden]];
    return [[vocab, hidden], ...(tied ? [] : [[vocab, hidden]]), [hidden], ...norms, ...mamba, ...mamba, ...attn, ...mlp];
  };
  const sum = (s: number[][]): number => s.reduce((a, dims) => a + dims.reduce((x, y) => x * y, 1), 0);

  it('parameter count and weight bytes', () => {
    const plan = planMemory(tiny, { contextLength: 100, maxSequences: 3, maxBatchTokens: 5, cacheBytes: 0 });
    expect(plan.parameterCount).toBe(sum(shapes(false, true)));
    expect(plan.parameterCount).toBe(1776);
    expect(plan.weights).toBe(2 * 1776);
    expect(parameterCount({ ...tiny, tie_word_embeddings: true })).toBe(sum(shapes(true, true)));
    expect(parameterCount({ ...tiny, use_conv_bias: false })).toBe(sum(shapes(false, false)));
  });

  it('state, KV paging, activations and total', () => {
    const plan = planMemory(tiny, { contextLength: 100, maxSequences: 3, maxBatchTokens: 5, cacheBytes: 0, weightBytes: 5000 });
    expect(plan.weights).toBe(5000);
    expect(plan.perSequence.conv).toBe(2 * (K - 1) * 20 * 4);
    expect(plan.perSequence.ssm).toBe(2 * mHeads * mHeadDim * N * 4);
    expect(plan.kvBytesPerToken).toBe(1 * 2 * 4 * 2);
    expect(plan.perSequence.kvAtContext).toBe(128 * 16); // 100 tokens -> 2 blocks of 64
    expect(planMemory(tiny, { contextLength: 64, maxSequences: 1 }).perSequence.kvAtContext).toBe(64 * 16);
    expect(planMemory(tiny, { contextLength: 65, maxSequences: 1 }).perSequence.kvAtContext).toBe(128 * 16);
    expect(plan.perSequence.total).toBe(320 + 192 + 2048);
    expect(plan.sequences).toBe(3 * 2560);
    // R = 8 rows (< 16, so the logits buffer has 8 rows); proj max(32, 8 + 8, 12) = 32; mix max(8, 8).
    expect(plan.activations).toBe(4 * (3 * 8 * hidden + 8 * 32 + 8 * 20 + 8 * 8 + 8 * vocab));
    expect(plan.snapshotBudget).toBe(0);
    expect(plan.total).toBe(5000 + 3 * 2560 + plan.activations);
  });

  it('a pattern without Mamba or attention needs no fields for them', () => {
    const mlpOnly = { hybrid_override_pattern: '--', hidden_size: 4, vocab_size: 10, intermediate_size: 6 };
    const plan = planMemory(mlpOnly, { contextLength: 10, maxSequences: 1 });
    expect(plan.parameterCount).toBe(2 * 10 * 4 + 4 + 2 * 4 + 2 * 2 * 6 * 4);
    expect(plan.perSequence.total).toBe(0);
    expect(plan.kvBytesPerToken).toBe(0);
  });

  it('matches a checkpoint written by makeTinyModel (parameters and stored bytes)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'nemotron-memory-'));
    try {
      const made = await makeTinyModel(dir, { seed: 1, pattern: 'M-M*-M*-', dtype: 'f32' });
      const files = (await readdir(dir)).filter((f) => f.endsWith('.safetensors'));
      let dataBytes = 0;
      for (const f of files) {
        const buf = await readFile(join(dir, f));
        const headerLen = Number(buf.readBigUInt64LE(0));
        const header = JSON.parse(buf.subarray(8, 8 + headerLen).toString('utf8')) as Record<string, { data_offsets?: [number, number] }>;
        for (const [name, t] of Object.entries(header)) if (name !== '__metadata__') dataBytes += t.data_offsets![1] - t.data_offsets![0];
      }
      const plan = planMemory(made.config, { contextLength: 64, maxSequences: 1, weightDtype: 'f32' });
      expect(plan.parameterCount).toBe(made.parameterCount);
      expect(plan.weights).toBe(dataBytes);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('checkPlanFits', () => {
  const plan: MemoryPlan = planMemory(CONFIG_9B, { contextLength: CTX, maxSequences: 4 });

  it('throws ERR_OUT_OF_MEMORY with the numbers when the limit is too small', () => {
    const limit = 16 * GiB;
    let caught: unknown;
    try {
      checkPlanFits(plan, limit);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(NemotronError);
    const e = caught as NemotronError;
    expect(e.code).toBe('ERR_OUT_OF_MEMORY');
    expect(e.message).toContain(formatBytes(plan.total));
    expect(e.message).toContain(plan.total.toLocaleString('en-US'));
    expect(e.message).toContain('16.0 GiB');
    expect(e.message).toContain(limit.toLocaleString('en-US'));
    expect(e.message).toContain(`weights ${formatBytes(plan.weights)}`);
    expect(e.message).toContain(formatBytes(plan.sequences));
    expect(e.message).toContain(formatBytes(plan.total - limit));
  });

  it('passes when the plan fits, including exactly', () => {
    expect(() => checkPlanFits(plan, 100 * GiB)).not.toThrow();
    expect(() => checkPlanFits(plan, plan.total)).not.toThrow();
    expect(() => checkPlanFits(plan, plan.total - 1)).toThrow(NemotronError);
  });

  it('rejects a bad limit', () => {
    expectInvalid(() => checkPlanFits(plan, -1), 'limitBytes', '-1');
    expectInvalid(() => checkPlanFits(plan, Number.NaN), 'limitBytes');
  });
});

describe('option and config validation', () => {
  const ok = { contextLength: 1024, maxSequences: 2 };

  it('names the option, what was expected and what was given', () => {
    expectInvalid(() => planMemory(CONFIG_9B, { ...ok, contextLength: 0 }), 'options.contextLength', 'integer', 'got 0');
    expectInvalid(() => planMemory(CONFIG_9B, { ...ok, contextLength: 1.5 }), 'options.contextLength', 'got 1.5');
    expectInvalid(() => planMemory(CONFIG_9B, { maxSequences: 1 } as never), 'options.contextLength', 'got undefined');
    expectInvalid(() => planMemory(CONFIG_9B, { ...ok, maxSequences: 0 }), 'options.maxSequences', '[1, 4096]', 'got 0');
    expectInvalid(() => planMemory(CONFIG_9B, { ...ok, maxBatchTokens: -3 }), 'options.maxBatchTokens', 'got -3');
    expectInvalid(() => planMemory(CONFIG_9B, { ...ok, kvDtype: 'bf16' as never }), 'options.kvDtype', "'f16' or 'f32'", 'got "bf16"');
    expectInvalid(() => planMemory(CONFIG_9B, { ...ok, weightDtype: 'int8' as never }), 'options.weightDtype', 'got "int8"');
    expectInvalid(() => planMemory(CONFIG_9B, { ...ok, cacheBytes: -1 }), 'options.cacheBytes', 'got -1');
    expectInvalid(() => planMemory(CONFIG_9B, { ...ok, weightBytes: 1.5 }), 'options.weightBytes', 'got 1.5');
    expectInvalid(() => planMemory(CONFIG_9B, { ...ok, contextLenght: 5 } as never), 'unknown option "contextLenght"');
    expectInvalid(() => planMemory(CONFIG_9B, null as never), 'options', 'an object');
  });

  it('checks the config', () => {
    expectInvalid(() => planMemory({ ...CONFIG_9B, hidden_size: 0 }, ok), 'config.hidden_size', 'got 0');
    expectInvalid(() => planMemory({ ...CONFIG_9B, hybrid_override_pattern: 'M*X' }, ok), 'config.hybrid_override_pattern', '"M*X"');
    expectInvalid(() => planMemory({ ...CONFIG_9B, hybrid_override_pattern: 'M*E' }, ok), 'config.n_routed_experts', 'required');
    const { mamba_num_heads: _dropped, ...noHeads } = CONFIG_9B;
    expectInvalid(() => planMemory(noHeads, ok), 'config.mamba_num_heads', 'required');
    expectInvalid(() => planMemory({ ...CONFIG_9B, mamba_n_groups: 4 }, ok), 'n_groups', 'mamba_n_groups', 'disagree');
    expectInvalid(() => planMemory({ ...CONFIG_9B, tie_word_embeddings: 'no' }, ok), 'config.tie_word_embeddings', 'got "no"');
    expectInvalid(() => planMemory('config' as never, ok), 'config', 'an object');
  });
});

describe('formatBytes and lines()', () => {
  it('formats with binary units and three significant digits', () => {
    expect(formatBytes(0)).toBe('0 B');
    expect(formatBytes(512)).toBe('512 B');
    expect(formatBytes(1023)).toBe('1023 B');
    expect(formatBytes(1024)).toBe('1.00 KiB');
    expect(formatBytes(16_384)).toBe('16.0 KiB');
    expect(formatBytes(70_778_880)).toBe('67.5 MiB');
    expect(formatBytes(77_280_000)).toBe('73.7 MiB');
    expect(formatBytes(2_291_032_064)).toBe('2.13 GiB');
    expect(formatBytes(2 * 8_888_227_328)).toBe('16.6 GiB');
    expect(formatBytes(1024 * 1024 - 1)).toBe('1.00 MiB');
    expect(formatBytes(3 * 1024 ** 4)).toBe('3.00 TiB');
    expectInvalid(() => formatBytes(Number.NaN), 'n');
  });

  it('one line per item', () => {
    const plan = planMemory(CONFIG_9B, { contextLength: CTX, maxSequences: 8 });
    const lines = plan.lines();
    expect(lines.length).toBeGreaterThanOrEqual(6);
    const text = lines.join('\n');
    expect(text).toContain(`weights: ${formatBytes(plan.weights)}`);
    expect(text).toContain('8,888,227,328 parameters');
    expect(text).toContain(`sequences: ${formatBytes(plan.sequences)} (8 × ${formatBytes(plan.perSequence.total)})`);
    expect(text).toContain(`activations: ${formatBytes(plan.activations)}`);
    expect(text).toContain('snapshot cache: 1.00 GiB');
    expect(text).toContain(`total: ${formatBytes(plan.total)}`);
    expect(lines.every((l) => !l.includes('\n'))).toBe(true);
  });

  it('is exported from the package index', () => {
    expect(index.planMemory).toBe(planMemory);
    expect(index.formatBytes).toBe(formatBytes);
  });
});

describe('MoE configs (issue #19)', () => {
  it('Nemotron 3 Nano 30B-A3B: 31.58 B parameters, 3.23 B active per token (NVIDIA: 31.6 B total, 3.2 B active without embeddings)', async () => {
    const { NEMOTRON_3_NANO_30B_A3B, activeParameterCount, parameterCount } = await import('../../lib/index.js');
    expect(parameterCount(NEMOTRON_3_NANO_30B_A3B)).toBe(31_577_940_288);
    expect(activeParameterCount(NEMOTRON_3_NANO_30B_A3B)).toBe(3_227_754_816);
    const plan = planMemory(NEMOTRON_3_NANO_30B_A3B, { contextLength: 262144, maxSequences: 1 });
    expect(plan.parameterCount).toBe(31_577_940_288);
    // 23 Mamba layers of conv + SSM state, 6 attention layers of KV: the MoE layers hold no state
    expect(plan.lines().join('\n')).toContain('23 Mamba layers');
    expect(plan.lines().join('\n')).toContain('6 attention layers');
  });

  it('the layers_block_type form gives the same plan as the pattern', async () => {
    const { NEMOTRON_3_NANO_30B_A3B } = await import('../../lib/index.js');
    const names: Record<string, string> = { M: 'mamba', E: 'moe', '*': 'attention' };
    const { hybrid_override_pattern: pattern, ...rest } = NEMOTRON_3_NANO_30B_A3B;
    const blocks = { ...rest, layers_block_type: [...pattern].map((c) => names[c]) };
    const opts = { contextLength: 8192, maxSequences: 2 };
    expect(planMemory(blocks, opts).total).toBe(planMemory(NEMOTRON_3_NANO_30B_A3B, opts).total);
  });
});

describe('Nemotron-H 4B config (issue #19)', () => {
  it('the planner counts 4,489,223,040 parameters and sizes the 4B state from its dimensions', async () => {
    const { NEMOTRON_H_4B, parameterCount, activeParameterCount } = await import('../../lib/index.js');
    // By hand from the config: hidden 3072, vocab 131072 (embeddings and lm_head untied), 24 Mamba-2
    // layers (112 heads x 64, 8 groups, state 128, conv 4), 24 MLP layers (12288), 4 attention layers
    // (32 x 128 query, 8 x 128 KV), 52 pre-norms and norm_f.
    const H = 3072, V = 131072, dInner = 112 * 64, convDim = dInner + 2 * 8 * 128, inProj = dInner + convDim + 112;
    const mamba = inProj * H + convDim * 4 + convDim + 3 * 112 + dInner + H * dInner;
    const attention = 4096 * H + 2 * 1024 * H + H * 4096;
    const mlp = 2 * 12288 * H;
    const expected = 2 * V * H + H + 52 * H + 24 * mamba + 4 * attention + 24 * mlp;
    expect(expected).toBe(4_489_223_040);
    expect(parameterCount(NEMOTRON_H_4B)).toBe(expected);
    expect(activeParameterCount(NEMOTRON_H_4B)).toBeLessThanOrEqual(expected); // dense: no routed experts to leave out

    const plan = planMemory(NEMOTRON_H_4B, { contextLength: 131072, maxSequences: 2 });
    expect(plan.parameterCount).toBe(expected);
    expect(plan.weights).toBe(expected * 2); // bf16
    expect(plan.perSequence.ssm).toBe(24 * 112 * 64 * 128 * 4); // f32 SSM state, 84 MiB
    expect(plan.perSequence.conv).toBe(24 * 3 * convDim * 4); // the K-1 = 3 newest conv inputs, f32
    expect(plan.kvBytesPerToken).toBe(4 * 2 * 1024 * 2); // 4 attention layers x K and V x 8 KV heads x 128, f16
    expect(plan.perSequence.kvAtContext).toBe(131072 * plan.kvBytesPerToken); // 131072 is a whole number of KV blocks
    expect(plan.sequences).toBe(2 * plan.perSequence.total);
    const text = plan.lines().join('\n');
    expect(text).toContain('24 Mamba layers');
    expect(text).toContain('4 attention layers');
  });
});
