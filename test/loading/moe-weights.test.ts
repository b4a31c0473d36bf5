// weights: 'memory' repoints every matrix into the copy and unmaps the file, so the MoE experts (added beside
// the tile-driver work) must be among the matrices it moves: bitwise the same logits as mapped.
import { it, expect } from 'vitest';
import { loadModel, makeTinyModel } from '../../lib/index.js';
import { tempDir } from '../helpers.js';
it('an MoE model gives the same logits with its weights copied into memory', async () => {
  const tmp = tempDir('moe-weights');
  await makeTinyModel(tmp.dir, { seed: 5, pattern: 'ME*E', nRoutedExperts: 8, numExpertsPerTok: 2, moeIntermediateSize: 32, moeSharedExpertIntermediateSize: 48 });
  const a = await loadModel(tmp.dir, { threads: 2, weights: 'mmap' });
  const b = await loadModel(tmp.dir, { threads: 2, weights: 'memory' });
  expect(b.info.weights).toBe('memory');
  const ids = [1, 30, 31, 32, 33, 34];
  const la = await a.evaluate(ids, { logits: 'all' });
  const lb = await b.evaluate(ids, { logits: 'all' });
  expect(Buffer.from(lb.buffer).equals(Buffer.from(la.buffer))).toBe(true);
  await a.close(); await b.close(); tmp.cleanup();
});
