/**
 * Prefill and decode throughput on a ~100M-parameter random Nemotron-H model (the 9B's layer mix and
 * proportions, scaled down; bf16 weights), with decode set against the memory-bandwidth limit
 * measured in the same run: at batch 1 every weight is read once per token, so
 *   limit tokens/s = copy bandwidth (bytes/s) / weight bytes read per token.
 *
 *   npm run bench                 # builds bench/models/bench-100m once, then measures
 *   npm run bench -- --threads 2 --prompt 512 --decode 128
 */
import os from 'node:os';
import { parseArgs } from 'node:util';

import { loadModel } from '../lib/index.js';
import { ensureBenchModel } from './bench-model.js';

const { values } = parseArgs({
  options: {
    threads: { type: 'string', default: String(os.availableParallelism()) },
    prompt: { type: 'string', default: '512' },
    decode: { type: 'string', default: '128' },
    runs: { type: 'string', default: '3' },
  },
});
const threads = Number(values.threads);
const promptLen = Number(values.prompt);
const decodeLen = Number(values.decode);
const runs = Number(values.runs);

const modelDir = await ensureBenchModel();

/** Copy bandwidth of this machine: read + write of a 256 MiB buffer, best of 5. */
function copyBandwidth(): number {
  const n = 256 * 1024 * 1024;
  const a = Buffer.alloc(n, 1);
  const b = Buffer.alloc(n);
  let best = 0;
  for (let i = 0; i < 5; i++) {
    const t0 = performance.now();
    a.copy(b);
    const s = (performance.now() - t0) / 1000;
    best = Math.max(best, (2 * n) / s); // bytes read + bytes written
  }
  return best;
}

const model = await loadModel(modelDir, { threads, maxBatchTokens: 512 });
const info = model.info;
const vocab = info.config.vocabSize;
const prompt = Array.from({ length: promptLen }, (_, i) => (i * 7919 + 13) % vocab);
// Weight bytes read per decoded token: everything but the embedding table (one row is read).
const bytesPerToken = info.weightBytes - vocab * info.config.hiddenSize * 2;

let prefill = 0;
let decode = 0;
for (let r = 0; r < runs; r++) {
  const res = await model.generate({ prompt, maxTokens: decodeLen, temperature: 0, logitBias: { 12: -100, 2: -100 } });
  // Prefill: prompt tokens over the time to the first token. Decode: the rest.
  prefill = Math.max(prefill, res.timings.prefillTokensPerSecond);
  decode = Math.max(decode, res.timings.decodeTokensPerSecond);
}
await model.close();

const bw = copyBandwidth();
const limit = bw / bytesPerToken;
const line = (k: string, v: string) => console.log(`${k.padEnd(34)}${v}`);
line('model', `${modelDir} (${(info.parameterCount / 1e6).toFixed(1)}M parameters, bf16, ${info.config.hybridOverridePattern})`);
line('machine', `${os.cpus()[0]?.model ?? 'unknown CPU'}, ${threads} threads`);
line('prefill tokens/s', `${prefill.toFixed(1)}  (prompt ${promptLen})`);
line('decode tokens/s', `${decode.toFixed(1)}  (${decodeLen} tokens after the prompt)`);
line('copy bandwidth', `${(bw / 1e9).toFixed(2)} GB/s (read + write, 256 MiB, best of 5)`);
line('decode bandwidth limit', `${limit.toFixed(1)} tokens/s  (${(bytesPerToken / 1e6).toFixed(1)} MB of weights per token)`);
line('decode / limit', `${((100 * decode) / limit).toFixed(1)} %`);
