// A 131,072-token prompt through a tiny model: chunked prefill keeps activations bounded and attention
// over the long KV cache is tiled (never a T×T score matrix), so peak memory stays within the memory
// plan. Run in a child process so its peak RSS measures only this work.
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { makeTinyModel } from '../../lib/index.js';
import { tempDir } from '../helpers.js';

const run = promisify(execFile);
const root = path.resolve(import.meta.dirname, '../..');
const LENGTH = 131_072;
/** Room for the JS runtime itself (V8 heap growth, the prompt array, JIT code): not model memory. */
const RUNTIME_SLACK = 48 * 1024 * 1024;

describe('128k context', () => {
  const tmp = tempDir('long');
  beforeAll(async () => {
    // One attention layer with small heads: the T² attention work stays within CI's time.
    await makeTinyModel(tmp.dir, { seed: 3, pattern: 'M*-', hiddenSize: 64, mambaNumHeads: 4, mambaHeadDim: 16, nGroups: 1, ssmStateSize: 16, numAttentionHeads: 2, numKeyValueHeads: 1, headDim: 16, intermediateSize: 128, maxPositionEmbeddings: 262_144 });
  });
  afterAll(() => tmp.cleanup());

  it(`a ${LENGTH.toLocaleString('en-US')}-token prompt runs and peak memory stays within the plan`, async () => {
    const { stdout } = await run(process.execPath, ['--import', 'tsx', path.join(root, 'test/fixtures/scripts/long-context.ts'), tmp.dir, String(LENGTH)], { cwd: root, maxBuffer: 1 << 20 });
    const r = JSON.parse(stdout) as { promptTokens: number; completionTokens: number; finishReason: string; seconds: number; baselineRss: number; peakRss: number; plan: { total: number; kv: number; activations: number } };
    const grew = r.peakRss - r.baselineRss;
    console.log(`128k prompt: ${r.seconds.toFixed(1)} s; peak RSS grew ${(grew / 2 ** 20).toFixed(1)} MiB; plan ${(r.plan.total / 2 ** 20).toFixed(1)} MiB (KV ${(r.plan.kv / 2 ** 20).toFixed(1)} MiB, activations ${(r.plan.activations / 2 ** 20).toFixed(1)} MiB)`);
    expect(r.promptTokens).toBe(LENGTH);
    expect(r.completionTokens).toBe(4);
    expect(r.finishReason).toBe('length');
    // A full score matrix would be 64 GiB, full-prompt activations hundreds of MiB: the bound is tight.
    expect(grew).toBeLessThan(r.plan.total + RUNTIME_SLACK);
  }, 600_000);
});
