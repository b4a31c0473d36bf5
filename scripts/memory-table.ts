/**
 * The README's memory table: planMemory for NVIDIA-Nemotron-Nano-9B-v2 and -12B-v2 at 8k, 32k and 128k
 * tokens, 1 and 8 sequences, f16 KV cache, the loader's other defaults (256 batch tokens, 1 GiB snapshot
 * cache), bf16 weights. Prints a Markdown table.
 *
 *   node --import tsx scripts/memory-table.ts      # or: npm run memory-table
 *
 * The configs (lib/known-configs.ts) are the checkpoints' config.json fields the planner reads
 * (docs/architecture.md §1.1); test/loading/memory.test.ts checks their parameter counts (8,888,227,328 and
 * 12,310,001,152).
 */
import { NEMOTRON_NANO_12B_V2, NEMOTRON_NANO_9B_V2 } from '../lib/known-configs.js';
import { formatBytes, planMemory } from '../lib/memory.js';


const MODELS: Array<[string, Record<string, unknown>]> = [
  ['Nano-9B-v2', NEMOTRON_NANO_9B_V2],
  ['Nano-12B-v2', NEMOTRON_NANO_12B_V2],
];
const CONTEXTS: Array<[string, number]> = [
  ['8k', 8192],
  ['32k', 32768],
  ['128k', 131072],
];
const SEQUENCES = [1, 8];

const rows = [
  '| model | context | sequences | weights (bf16) | state per sequence (KV part) | all sequences | activations | total (incl. 1 GiB snapshot cache) |',
  '|---|---|---:|---:|---:|---:|---:|---:|',
];
for (const [name, config] of MODELS) {
  for (const [label, contextLength] of CONTEXTS) {
    for (const maxSequences of SEQUENCES) {
      const p = planMemory(config, { contextLength, maxSequences, kvDtype: 'f16' });
      rows.push(
        `| ${name} | ${label} | ${maxSequences} | ${formatBytes(p.weights)} | ${formatBytes(p.perSequence.total)} (${formatBytes(p.perSequence.kvAtContext)}) | ` +
          `${formatBytes(p.sequences)} | ${formatBytes(p.activations)} | ${formatBytes(p.total)} |`,
      );
    }
  }
}
console.log(rows.join('\n'));
