// The whole engine on random tiny models against the float64 reference model (test/reference/model.ts),
// and the equivalences that make incremental use safe: token-by-token decode, whole-prompt prefill,
// prefill in arbitrary pieces, chunked prefill (maxBatchTokens) and batches of several sequences all
// give the same logits.
//
// Tolerances, compared in log-softmax space:
// - against float64, f32 weights: 1e-4 absolute (golden/PROVENANCE.md: an f32 engine lands within
//   ~1e-4; real bugs move log-probs by >= 0.08). bf16/f16 weights: the reference reads the same rounded
//   weights, so the same tolerance holds.
// - engine paths against each other: 1e-4 as well. They differ only in f32 rounding order (chunked scan
//   vs recurrence, different chunk boundaries); exact agreement is not expected.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { NativeDebugEngine } from '../../lib/addon-types.js';
import { loadModel, makeTinyModel, type NemotronModel, type TinyModelOptions } from '../../lib/index.js';
import { ReferenceModel } from '../reference/model.js';
import { makeRng } from '../reference/random.js';
import { logSoftmaxRows, maxAbsDiff, native, tempDir } from '../helpers.js';

const TOL = 1e-4;

interface Case {
  name: string;
  options: TinyModelOptions;
  lengths: number[];
}

const CASES: Case[] = [
  { name: 'default M-M*-M*- f32', options: { seed: 11, dtype: 'f32' }, lengths: [1, 7, 23, 70] },
  { name: 'attention first and last, n_groups 1, bf16', options: { seed: 12, pattern: '*M-M-M*', nGroups: 1, dtype: 'bf16' }, lengths: [1, 9, 40] },
  {
    name: 'n_groups 4, state 32, chunk 8, 12 layers, f16',
    options: { seed: 13, pattern: 'MM-*M-M*-M-M', mambaNumHeads: 8, mambaHeadDim: 8, nGroups: 4, ssmStateSize: 32, chunkSize: 8, dtype: 'f16' },
    lengths: [5, 37],
  },
  {
    name: 'wide heads, GQA 6/2, conv 3, tied embeddings, model. prefix',
    options: { seed: 14, pattern: 'M*-M', numAttentionHeads: 6, numKeyValueHeads: 2, headDim: 8, convKernel: 3, tieWordEmbeddings: true, prefix: 'model.', dtype: 'f32' },
    lengths: [2, 17],
  },
];

function randomTokens(seed: number, n: number, vocab: number): number[] {
  const rng = makeRng(seed);
  return Array.from({ length: n }, () => Math.floor(rng.uniform() * vocab));
}

for (const c of CASES) {
  describe(c.name, () => {
    const tmp = tempDir('model');
    let model: NemotronModel;
    let engine: NativeDebugEngine; // the native engine directly, for multi-call sequences and batches
    let reference: ReferenceModel;
    let V: number;

    beforeAll(async () => {
      await makeTinyModel(tmp.dir, c.options);
      model = await loadModel(tmp.dir, { threads: 2, kvDtype: 'f32' });
      engine = await native.loadEngine(tmp.dir, { threads: 2, contextLength: 0, maxSequences: 8, maxBatchTokens: 64, kvDtype: 'f32', cacheBytes: 0 });
      reference = ReferenceModel.load(tmp.dir);
      V = model.info.config.vocabSize;
    });
    afterAll(async () => {
      await model.close();
      engine.close();
      tmp.cleanup();
    });

    for (const T of c.lengths) {
      it(`prompt of ${T}: all-position logits match the float64 reference`, async () => {
        const tokens = randomTokens(T, T, V);
        const got = await model.evaluate(tokens, { logits: 'all' });
        const want = reference.forward(tokens);
        const diff = maxAbsDiff(logSoftmaxRows(got, V), logSoftmaxRows(want, V));
        console.log(`${c.name}, T=${T}: max |Δ log-prob| vs float64 = ${diff.toExponential(2)}`);
        expect(diff).toBeLessThan(TOL);
      });
    }

    it('token-by-token decode, whole prefill and prefill in pieces give the same logits', async () => {
      const T = Math.max(...c.lengths);
      const tokens = randomTokens(99, T, V);
      const whole = logSoftmaxRows(await model.evaluate(tokens, { logits: 'all' }), V);

      const seq = engine.createSequence();
      const stepwise = new Float64Array(T * V);
      for (let t = 0; t < T; t++) {
        const row = await engine.evaluate(seq, Int32Array.of(tokens[t]!), false);
        stepwise.set(logSoftmaxRows(row, V), t * V);
      }
      engine.freeSequence(seq);
      expect(maxAbsDiff(stepwise, whole)).toBeLessThan(TOL);

      // Arbitrary pieces: 1, 2, then odd sizes, across chunk boundaries.
      const pieces = [1, 2, 5, 3, 11];
      const seq2 = engine.createSequence();
      const pieced = new Float64Array(T * V);
      let at = 0;
      for (let i = 0; at < T; i++) {
        const n = Math.min(pieces[i % pieces.length]!, T - at);
        const rows = await engine.evaluate(seq2, Int32Array.from(tokens.slice(at, at + n)), true);
        pieced.set(logSoftmaxRows(rows, V), at * V);
        at += n;
      }
      expect(engine.sequenceLength(seq2)).toBe(T);
      engine.freeSequence(seq2);
      expect(maxAbsDiff(pieced, whole)).toBeLessThan(TOL);
    });

    it('a prompt longer than maxBatchTokens is prefilled in chunks with the same logits', async () => {
      const T = 2 * 64 + 13; // three forward passes of at most 64 tokens
      const tokens = randomTokens(5, T, V);
      const seq = engine.createSequence();
      const chunked = await engine.evaluate(seq, Int32Array.from(tokens), true);
      engine.freeSequence(seq);
      const want = reference.forward(tokens);
      expect(maxAbsDiff(logSoftmaxRows(chunked, V), logSoftmaxRows(want, V))).toBeLessThan(TOL);
    });

    it('sequences batched in one forward pass match each run alone', async () => {
      const a = randomTokens(1, 12, V);
      const b = randomTokens(2, 5, V);
      const cTok = randomTokens(3, 1, V);
      // Alone.
      const alone: Float64Array[] = [];
      for (const toks of [a, b, cTok]) {
        const s = engine.createSequence();
        alone.push(logSoftmaxRows(await engine.evaluate(s, Int32Array.from(toks), true), V));
        engine.freeSequence(s);
      }
      // Together: three requests (prefill of 12, prefill of 5, and one token), every position's logits,
      // registered at once so that one step runs them in one forward pass.
      const rows = new Map<number, Float32Array>();
      const reqs = [a, b, cTok].map((toks) => engine.submit({ prompt: Int32Array.from(toks), maxTokens: 0, logits: 2, reusePrefix: false }));
      let forwards = 0;
      while (rows.size < reqs.length) {
        const ev = await engine.runStep();
        if (ev.ranForward) forwards++;
        for (const f of ev.finished) {
          expect(f.reason).toBe('done');
          rows.set(f.request, f.logits!);
        }
      }
      expect(forwards).toBe(1);
      for (let i = 0; i < 3; i++) expect(maxAbsDiff(logSoftmaxRows(rows.get(reqs[i]!)!, V), alone[i]!)).toBeLessThan(TOL);
      // Then a mixed pass (the sequence-level debug call): a decode token for one sequence alongside more
      // prompt for another.
      const ids = [engine.createSequence(), engine.createSequence()];
      await engine.evaluate(ids[0]!, Int32Array.from(a), false);
      await engine.evaluate(ids[1]!, Int32Array.from(b), false);
      const next = await engine.evaluateBatch([
        { id: ids[0]!, tokens: Int32Array.of(7), allLogits: false },
        { id: ids[1]!, tokens: Int32Array.from(a.slice(0, 4)), allLogits: false },
      ]);
      const s0 = engine.createSequence();
      const want0 = await engine.evaluate(s0, Int32Array.from([...a, 7]), false);
      const s1 = engine.createSequence();
      const want1 = await engine.evaluate(s1, Int32Array.from([...b, ...a.slice(0, 4)]), false);
      expect(maxAbsDiff(logSoftmaxRows(next[0]!, V), logSoftmaxRows(want0, V))).toBeLessThan(TOL);
      expect(maxAbsDiff(logSoftmaxRows(next[1]!, V), logSoftmaxRows(want1, V))).toBeLessThan(TOL);
      for (const id of [...ids, s0, s1]) engine.freeSequence(id);
      expect(engine.liveSequences()).toBe(0);
    });
  });
}
