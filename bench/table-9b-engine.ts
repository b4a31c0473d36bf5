/**
 * One engine of bench/table-9b.ts, in a process of its own so that its load time and peak resident
 * memory are its own: loads the GGUF once, runs the asked measures in order, prints one JSON line.
 *
 *   node --import tsx bench/table-9b-engine.ts --gguf PATH --engine ours[-exact|-fast][-memory]|llama.cpp
 *        --threads 2 --measures load,prefill512,decode128,streams4,decode8k --decode 32
 *
 * 'ours' is the library's default configuration (no precision given: the default for the file's weight
 * type), '-memory' loads with weights: 'memory' (the huge-page copy); llama.cpp runs node-llama-cpp's defaults (mmap, its own activation types) on the same file.
 * Each measure uses prompts that share no prefix with another measure's, so no cache reuse helps.
 */
import { parseArgs } from 'node:util';

import { loadModel, type LoadOptions } from '../lib/index.js';
import { oursOn, peerLlama, peerOn, type Engine } from './engines.js';

const { values } = parseArgs({
  options: {
    gguf: { type: 'string' },
    engine: { type: 'string', default: 'ours' },
    threads: { type: 'string', default: '2' },
    measures: { type: 'string', default: 'load,prefill512,decode128,streams4' },
    decode: { type: 'string', default: '32' },
  },
});
if (!values.gguf) throw new Error('--gguf PATH is required');
const threads = Number(values.threads);
const decode = Number(values.decode);
const measures = values.measures.split(',');
const longContext = measures.includes('decode8k');
const contextPerStream = longContext ? 8192 + 256 : 1024;

const out: Record<string, number | string> = { engine: values.engine };
let engine: Engine;
let close: () => Promise<void>;
const t0 = performance.now();
if (values.engine === 'llama.cpp') {
  const llama = await peerLlama();
  const peerModel = await llama.loadModel({ modelPath: values.gguf });
  engine = peerOn(peerModel, threads, contextPerStream);
  close = () => peerModel.dispose();
} else {
  // ours[-exact|-fast][-memory]: the precision when not the default, and the huge-page copy of the weights.
  const parts = values.engine.split('-');
  if (parts[0] !== 'ours' || parts.slice(1).some((p) => !['exact', 'fast', 'memory'].includes(p))) throw new Error(`--engine: ours[-exact|-fast][-memory] or llama.cpp, not ${values.engine}`);
  const precision = parts.includes('exact') ? 'exact' : parts.includes('fast') ? 'fast' : undefined;
  const weights = parts.includes('memory') ? 'memory' : 'mmap';
  const options: LoadOptions = { threads, contextLength: contextPerStream, maxSequences: 4, maxBatchTokens: 512, snapshotInterval: 0, weights, ...(precision ? { precision } : {}) };
  const model = await loadModel(values.gguf, options);
  out.precision = model.info.precision;
  engine = oursOn(model);
  close = () => model.close();
}
out.load = (performance.now() - t0) / 1000;

for (const m of measures) {
  if (m === 'load') continue;
  if (m === 'prefill512') out[m] = (await engine(512, 4, 1, 10)).prefill;
  else if (m === 'decode128') out[m] = (await engine(128, decode, 1, 20)).decode;
  else if (m === 'streams4') out[m] = (await engine(128, decode, 4, 30)).decode;
  else if (m === 'decode8k') out[m] = (await engine(8192, decode, 1, 40)).decode;
  else throw new Error(`unknown measure ${m}`);
}
await close();
out.peakRssGB = (process.resourceUsage().maxRSS * 1024) / 1e9;
console.log(JSON.stringify(out));
