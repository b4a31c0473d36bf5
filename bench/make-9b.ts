/**
 * Issue #12 item 1: a checkpoint with NVIDIA-Nemotron-Nano-9B-v2's exact configuration (lib/known-configs.ts:
 * 56 layers — 27 Mamba-2, 4 attention, 25 MLP — hidden 4,480, vocabulary 131,072, 8.89 B parameters) and
 * random weights, for measuring load, memory and decode at the real size. Made on demand, never in CI:
 *
 *   npm run bench:make-9b -- [--out bench/models/nano-9b-v2-random] [--formats bf16,Q8_0,Q4_K,Q5_K] [--seed 9]
 *                            [--layers 56] [--shards 4] [--force]
 *
 * Writes under --out, one folder per format:
 *   bf16/  config.json, tokenizer files and model-0000k-of-00004.safetensors + model.safetensors.index.json
 *          (bf16, NVIDIA's layout: `backbone.` names, shards with an index); 17.8 GB
 *   q8_0/  model.gguf (llama.cpp's nemotron_h layout, Q8_0 matrices) + config/tokenizer files; ~9.5 GB
 *   q4_k/  model.gguf as llama-quantize's Q4_K_M lays out this model's matrices: Q4_K where the inner
 *          dimension is a multiple of 256 (Mamba out_proj, attention o_proj), Q5_0 for the others (inner
 *          dimension 4,480 or 15,680: llama-quantize's fallback for Q4_K, makeTinyModel's ggufFallback
 *          'quantize') — so a "Q4_K_M" 9B file is mostly Q5_0: 85 % of the matrix parameters, 5.35 bits per
 *          weight overall; ~5.9 GB.
 *          (Q4_K_M's promotions of some tensors to Q6_K, which fall back to Q8_0 here, are not modelled.)
 *   q5_k/  the same with Q5_K, falling back to Q5_1 (Q5_K_M's layout, without its Q6_K promotions); ~6.6 GB
 * The same seed gives the same values in every format (the GGUFs hold the bf16-rounded values).
 * A folder whose weight files exist is skipped unless --force. --layers N takes the first N layers of
 * the 9B's pattern (a quick check of the command; the default 56 is the exact configuration).
 * Checks the free disk space first. Writing streams tensor by tensor (a few MB of memory), but takes
 * minutes per format and the whole disk bandwidth: not while others need the machine.
 */
import { existsSync, statfsSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';

import { makeTinyModel, NEMOTRON_NANO_9B_V2, type TinyModelOptions } from '../lib/index.js';
import type { GgmlTypeName } from '../lib/gguf/reader.js';

const { values } = parseArgs({
  options: {
    out: { type: 'string', default: path.resolve(import.meta.dirname, 'models/nano-9b-v2-random') },
    formats: { type: 'string', default: 'bf16,Q8_0,Q4_K' },
    seed: { type: 'string', default: '9' },
    layers: { type: 'string', default: String(NEMOTRON_NANO_9B_V2.num_hidden_layers) },
    shards: { type: 'string', default: '4' },
    force: { type: 'boolean', default: false },
  },
});

const c = NEMOTRON_NANO_9B_V2;
const layers = Number(values.layers);
if (!Number.isInteger(layers) || layers < 1 || layers > c.num_hidden_layers) throw new Error(`--layers: 1..${c.num_hidden_layers}`);
const base: TinyModelOptions = {
  seed: Number(values.seed),
  pattern: c.hybrid_override_pattern.slice(0, layers),
  dtype: 'bf16',
  hiddenSize: c.hidden_size,
  mambaNumHeads: c.mamba_num_heads,
  mambaHeadDim: c.mamba_head_dim,
  nGroups: c.n_groups,
  ssmStateSize: c.ssm_state_size,
  convKernel: c.conv_kernel,
  chunkSize: c.chunk_size,
  numAttentionHeads: c.num_attention_heads,
  numKeyValueHeads: c.num_key_value_heads,
  headDim: c.head_dim,
  intermediateSize: c.intermediate_size,
  vocabSize: c.vocab_size,
  maxPositionEmbeddings: c.max_position_embeddings,
  tieWordEmbeddings: c.tie_word_embeddings,
  prefix: 'backbone.',
};

// Bytes per parameter of each format's weights, for the disk check: Q4_K / Q5_K are mostly their 32-value
// fallbacks (Q5_0 22/32, Q5_1 24/32 bytes per value), with a margin for the F32 vectors.
const BYTES_PER_PARAM: Record<string, number> = { bf16: 2, Q8_0: 34 / 32, Q4_K: 0.68, Q5_K: 0.75 };
const params = 8_888_227_328 * (layers / c.num_hidden_layers);
const formats = values.formats.split(',').map((f) => f.trim()).filter(Boolean);
for (const f of formats) if (!(f in BYTES_PER_PARAM)) throw new Error(`--formats: bf16, Q8_0, Q4_K or Q5_K, not '${f}'`);

const need = formats.reduce((a, f) => a + params * BYTES_PER_PARAM[f]!, 0);
const fs = statfsSync(path.dirname(values.out));
const free = fs.bavail * fs.bsize;
if (need > free * 0.9) throw new Error(`needs ~${(need / 1e9).toFixed(1)} GB, only ${(free / 1e9).toFixed(1)} GB free under ${path.dirname(values.out)}`);
console.log(`NVIDIA-Nemotron-Nano-9B-v2 configuration${layers < c.num_hidden_layers ? ` (first ${layers} of 56 layers)` : ''}, random weights (seed ${values.seed}), ~${(need / 1e9).toFixed(1)} GB to write`);

for (const f of formats) {
  const dir = path.join(values.out, f.toLowerCase());
  const done = f === 'bf16' ? existsSync(path.join(dir, 'model.safetensors.index.json')) : existsSync(path.join(dir, 'model.gguf'));
  if (done && !values.force) {
    console.log(`${dir}: present (--force rewrites it)`);
    continue;
  }
  const t0 = performance.now();
  const options: TinyModelOptions =
    f === 'bf16'
      ? { ...base, shards: Number(values.shards) }
      : { ...base, format: 'gguf', ggufType: f as GgmlTypeName, ggufFallback: 'quantize', safetensors: false };
  const r = await makeTinyModel(dir, options);
  console.log(`${dir}: ${r.parameterCount.toLocaleString('en-US')} parameters, ${f}, ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}
