// Native work runs off the JS thread: while a model loads and while it generates, a 5 ms interval
// timer keeps firing. A blocking call of the same length would hold the loop for the whole call.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { loadModel, makeTinyModel } from '../../lib/index.js';
import { tempDir } from '../helpers.js';

/** Runs `work` while measuring the longest gap between ticks of a 5 ms interval. */
async function maxTimerGap(work: () => Promise<unknown>): Promise<{ gap: number; elapsed: number; ticks: number }> {
  let last = performance.now();
  let gap = 0;
  let ticks = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    gap = Math.max(gap, now - last);
    last = now;
    ticks++;
  }, 5);
  const t0 = performance.now();
  await work();
  const elapsed = performance.now() - t0;
  clearInterval(timer);
  return { gap: Math.max(gap, performance.now() - last), elapsed, ticks };
}

describe('the event loop keeps turning', () => {
  const tmp = tempDir('eventloop');
  beforeAll(async () => {
    // Big enough that loading and generation take well over the bound below.
    await makeTinyModel(tmp.dir, { seed: 3, pattern: 'M-M*-M-M*-M-M-', hiddenSize: 512, intermediateSize: 2048, mambaNumHeads: 16, mambaHeadDim: 64, ssmStateSize: 64, vocabSize: 32768, dtype: 'bf16' });
  });
  afterAll(() => tmp.cleanup());

  it('during load and generation, timer delay stays bounded', async () => {
    let model: Awaited<ReturnType<typeof loadModel>> | undefined;
    const load = await maxTimerGap(async () => {
      model = await loadModel(tmp.dir, { threads: 2 });
    });
    const gen = await maxTimerGap(() => model!.generate({ prompt: 'the quick brown fox jumps over the lazy dog '.repeat(60), maxTokens: 80 }));
    await model!.close();
    console.log(`load: ${load.elapsed.toFixed(0)} ms, max timer gap ${load.gap.toFixed(1)} ms; generate: ${gen.elapsed.toFixed(0)} ms, max gap ${gen.gap.toFixed(1)} ms, ${gen.ticks} ticks`);
    // The generation must take long enough for the check to mean something...
    expect(gen.elapsed).toBeGreaterThan(200);
    // ...and the loop is never held for more than a fraction of it (the bound allows GC and a busy CI).
    expect(gen.gap).toBeLessThan(100);
    expect(gen.ticks).toBeGreaterThan(gen.elapsed / 50);
    expect(load.gap).toBeLessThan(100);
  });
});
