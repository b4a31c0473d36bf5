// GGUF models (llama.cpp's `nemotron_h`, docs/architecture.md §7), memory-mapped, end to end.
//
// 1. The golden tiny-a model.gguf (F32, written by llama.cpp's converter) against the float64 reference
//    and llama.cpp's own log-probs, within 1e-4 in log-softmax space (as test/engine/golden.test.ts does for the
//    safetensors copy; an f32 engine lands ~5e-6 from both).
// 2. The same weights as safetensors and as GGUF (makeTinyModel format 'gguf') give bitwise identical
//    logits, F32 vs f32 and BF16 vs bf16. Two conditions make "identical" well defined: chunk_size is
//    128 on both sides (GGUF stores none and the engine uses 128; the chunked scan's rounding depends on
//    it), and every matrix's row bytes are NOT a multiple of 64 (hidden 72, d_inner 72, q_dim 72,
//    intermediate 136), because csrc/kernels/matmul.cc aligns its K loop to the W address when all rows
//    share one offset in a cache line, so its f32 summation order may depend on where a tensor sits in
//    its file; safetensors and GGUF place tensors at different offsets.
// 3. Quantized GGUFs (Q8_0, Q4_0, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K; dims multiples of 256 so every matrix
//    quantizes; and llama-quantize's Q5_0 / Q5_1 fallback for widths 256 does not divide):
//    (a) they equal an F32 GGUF holding the dequantized weights (lib/gguf/quantize.ts dequantizeRows)
//        up to f32 accumulation order (the kernels keep activations f32 and dequantize each weight
//        exactly), within 1e-4 (measured ~1e-6) — a misread block layout gives errors of order 1;
//    (b) they stay close to the unquantized f32 model, with per-type tolerances about 2x the values
//        measured on this seeded model (max |Δ log-prob| over 60 positions x 512 tokens: Q8_0 0.047,
//        Q6_K 0.16, Q5_K 0.36, Q4_K 0.56, Q4_0 0.68, Q5_1 0.28, Q5_0 0.42). The error follows the
//        quantization step (Q8_0 has 8-bit codes, Q6_K 6, ...), so the mean error must also grow in the
//        order Q8_0 < Q6_K < Q5_K < Q4_K, and for the 32-value types Q8_0 < Q5_0, Q5_1 < Q4_0.
// 4. Tokenizer from GGUF metadata = tokenizer.json on sample texts; the chat template from metadata renders.
// 5. Errors: another architecture, an unsupported tensor type, a truncated file.
import { copyFileSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { dequantizeRows, type QuantType } from '../../lib/gguf/quantize.js';
import { GgmlType, GgufValueType, readGgufMetadata, tokenizerFromGguf, type GgmlTypeName } from '../../lib/gguf/reader.js';
import { writeGguf, type GgufKv, type GgufTensorSource } from '../../lib/gguf/writer.js';
import { loadModel, makeTinyModel, type NemotronModel } from '../../lib/index.js';
import { TextTokenizer } from '../../lib/tokenizer.js';
import { GOLDEN, logSoftmaxRows, maxAbsDiff, native, tempDir } from '../helpers.js';

const TINY_A = path.join(GOLDEN, 'tiny-a');
const GGUF_A = path.join(TINY_A, 'model.gguf');
const NATIVE_OPTS = { threads: 2, contextLength: 256, maxSequences: 1, maxBatchTokens: 64, kvDtype: 'f32', cacheBytes: 0 } as const;

// precision 'exact' pinned: quantized GGUFs default to 'fast', and these checks compare a quantized
// file bitwise with its dequantized F32 copy (which defaults to 'exact') and with references.
async function allLogits(modelPath: string, tokens: number[]): Promise<{ logits: Float32Array; V: number }> {
  const m = await loadModel(modelPath, { threads: 2, kvDtype: 'f32', precision: 'exact' });
  try {
    return { logits: await m.evaluate(tokens, { logits: 'all' }), V: m.info.config.vocabSize };
  } finally {
    await m.close();
  }
}

function bitwiseEqual(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

async function nativeError(p: string): Promise<{ code: string; message: string }> {
  try {
    const e = await native.loadEngine(p, NATIVE_OPTS);
    e.close();
  } catch (err) {
    return err as { code: string; message: string };
  }
  throw new Error(`${p} loaded, expected an error`);
}

async function loadError(p: string): Promise<{ code: string; message: string }> {
  try {
    const m = await loadModel(p, { threads: 2 });
    await m.close();
  } catch (err) {
    return err as { code: string; message: string };
  }
  throw new Error(`${p} loaded, expected an error`);
}

// Byte offset of the string value of metadata `key` (its length prefix), found by scanning the header.
function stringValueOffset(buf: Buffer, key: string): number {
  const k = Buffer.from(key);
  const at = buf.indexOf(Buffer.concat([Buffer.from(new BigUint64Array([BigInt(k.length)]).buffer), k]));
  expect(at).toBeGreaterThan(0);
  const o = at + 8 + k.length;
  expect(buf.readUInt32LE(o)).toBe(8); // STRING
  return o + 4;
}

// Byte offset of the ggml type field of tensor `name`'s info record.
function tensorTypeOffset(buf: Buffer, name: string, nDims: number): number {
  const n = Buffer.from(name);
  const at = buf.lastIndexOf(Buffer.concat([Buffer.from(new BigUint64Array([BigInt(n.length)]).buffer), n]));
  expect(at).toBeGreaterThan(0);
  const o = at + 8 + n.length;
  expect(buf.readUInt32LE(o)).toBe(nDims);
  return o + 4 + 8 * nDims;
}

// A copy of a GGUF through lib/gguf/reader.ts + writer.ts: every tensor as F32 (quantized and F16 ones
// dequantized to their exact values), the metadata passed through `edit`.
async function rewriteAsF32(src: string, dst: string, edit: (entries: GgufKv[]) => GgufKv[] = (e) => e): Promise<void> {
  const meta = readGgufMetadata(src);
  const bytes = readFileSync(src);
  const entries: GgufKv[] = [...meta.kv].map(([key, e]) => (key === 'general.file_type' ? { key, type: e.type, value: 0 } : { key, ...e }));
  const tensors: GgufTensorSource[] = meta.tensors.map((t) => {
    const cols = t.shape[0]!;
    const rows = t.shape.slice(1).reduce((a, b) => a * b, 1);
    const start = meta.dataOffset + t.offset;
    let values: Float32Array;
    if (t.typeName === 'F32') {
      values = new Float32Array(bytes.buffer.slice(bytes.byteOffset + start, bytes.byteOffset + start + rows * cols * 4));
    } else if (t.typeName === 'F16') {
      values = new Float32Array(rows * cols);
      for (let i = 0; i < values.length; i++) {
        const h = bytes.readUInt16LE(start + 2 * i);
        const e = (h >> 10) & 31;
        const m = h & 1023;
        values[i] = (h & 0x8000 ? -1 : 1) * (e === 0 ? m * 2 ** -24 : (1 + m / 1024) * 2 ** (e - 15));
      }
    } else {
      values = dequantizeRows(t.typeName as QuantType, bytes.subarray(start), rows, cols);
    }
    return { name: t.name, shape: t.shape, type: 'F32' as GgmlTypeName, chunks: () => [values] };
  });
  await writeGguf(dst, edit(entries), tensors);
}

describe('golden tiny-a model.gguf (llama.cpp converter, F32)', () => {
  const f64 = JSON.parse(readFileSync(path.join(GOLDEN, 'tiny-a.reference-f64.json'), 'utf8')) as { tokens: number[]; logits: number[][] };
  const lcpp = JSON.parse(readFileSync(path.join(GOLDEN, 'tiny-a.llama-cpp.json'), 'utf8')) as { tokens: number[]; positions: Array<{ logprobs: number[] }> };
  let model: NemotronModel;
  let folder: NemotronModel;
  beforeAll(async () => {
    model = await loadModel(GGUF_A, { threads: 2, kvDtype: 'f32' });
    folder = await loadModel(TINY_A, { threads: 2, kvDtype: 'f32' });
  });
  afterAll(async () => {
    await model.close();
    await folder.close();
  });

  it('reads the config from the metadata', () => {
    const c = model.info.config;
    expect(c.hybridOverridePattern).toBe('M-M*-M*-');
    expect([c.vocabSize, c.hiddenSize, c.intermediateSize, c.numAttentionHeads, c.numKeyValueHeads, c.headDim]).toEqual([384, 64, 160, 4, 2, 24]);
    expect([c.mambaNumHeads, c.mambaHeadDim, c.nGroups, c.ssmStateSize, c.convKernel, c.chunkSize]).toEqual([8, 24, 2, 16, 4, 128]);
    expect(c.bosTokenId).toBe(1);
    expect(model.info.parameterCount).toBe(folder.info.parameterCount);
    expect(model.info.path).toBe(GGUF_A);
  });

  it('all-position logits match the float64 reference within 1e-4 (log-softmax)', async () => {
    const logits = await model.evaluate(f64.tokens, { logits: 'all' });
    const V = model.info.config.vocabSize;
    const diff = maxAbsDiff(logSoftmaxRows(logits, V), logSoftmaxRows(f64.logits.flat(), V));
    console.log(`tiny-a model.gguf: max |Δ log-prob| vs float64 = ${diff.toExponential(2)}`);
    expect(diff).toBeLessThan(1e-4);
  });

  it("log-probs match llama.cpp's on the same file within 1e-4", async () => {
    const logits = await model.evaluate(lcpp.tokens, { logits: 'all' });
    const V = model.info.config.vocabSize;
    const diff = maxAbsDiff(logSoftmaxRows(logits, V), lcpp.positions.flatMap((p) => p.logprobs));
    console.log(`tiny-a model.gguf: max |Δ log-prob| vs llama.cpp = ${diff.toExponential(2)}`);
    expect(diff).toBeLessThan(1e-4);
  });

  it('tokenizes from the GGUF metadata exactly as tokenizer.json does', () => {
    const fromJson = TextTokenizer.fromDir(TINY_A)!;
    const fromGguf = TextTokenizer.fromFiles(tokenizerFromGguf(readGgufMetadata(GGUF_A)));
    const samples = [
      'Hello world',
      'The quick brown fox jumps over the lazy dog.',
      "it's we'll I'M they've",
      '  leading spaces\n\n\ttabs and\r\nnewlines  ',
      'ünïcödé 日本語 🎉 emoji',
      '<SPECIAL_11>User\nWhat is 2+2?<think>\nfour</think><SPECIAL_12>',
      '</s><s><unk> 12345 3.14159',
    ];
    for (const text of samples) {
      for (const special of [true, false]) {
        const ids = fromJson.encode(text, special);
        expect(fromGguf.encode(text, special), JSON.stringify(text)).toEqual(ids);
        expect(fromGguf.decode(ids)).toBe(fromJson.decode(ids));
        expect(fromGguf.decode(ids, true)).toBe(fromJson.decode(ids, true));
      }
    }
    for (const id of [0, 1, 2, 3, 5, 6, 7, 100]) expect(fromGguf.isSpecial(id)).toBe(fromJson.isSpecial(id));
    expect(model.tokenize('Once upon a time')).toEqual(folder.tokenize('Once upon a time'));
    expect(model.info.eosTokenIds).toEqual(expect.arrayContaining([5]));
  });

  it('renders the chat template from the metadata', () => {
    const messages = [
      { role: 'system' as const, content: 'Be terse.' },
      { role: 'user' as const, content: 'What is 17 * 23?' },
    ];
    const text = model.applyChatTemplate(messages);
    expect(text).toBe(folder.applyChatTemplate(messages));
    expect(text).toContain('<SPECIAL_11>User\nWhat is 17 * 23?\n');
    expect(text.endsWith('<SPECIAL_11>Assistant\n<think>\n')).toBe(true);
  });
});

describe('GGUF writer and reader', () => {
  const tmp = tempDir('gguf-rw');
  afterAll(() => tmp.cleanup());

  it('round-trips metadata of every value type', async () => {
    const T = GgufValueType;
    const entries: GgufKv[] = [
      { key: 'general.architecture', type: T.STRING, value: 'nemotron_h' },
      { key: 't.u8', type: T.UINT8, value: 255 },
      { key: 't.i8', type: T.INT8, value: -128 },
      { key: 't.u16', type: T.UINT16, value: 65535 },
      { key: 't.i16', type: T.INT16, value: -32768 },
      { key: 't.u32', type: T.UINT32, value: 4294967295 },
      { key: 't.i32', type: T.INT32, value: -2147483648 },
      { key: 't.f32', type: T.FLOAT32, value: 0.5 },
      { key: 't.f64', type: T.FLOAT64, value: 1e-300 },
      { key: 't.u64', type: T.UINT64, value: 2n ** 64n - 1n },
      { key: 't.i64', type: T.INT64, value: -(2 ** 40) }, // 64-bit values come back as numbers when safe, else bigints
      { key: 't.bool', type: T.BOOL, value: true },
      { key: 't.str', type: T.STRING, value: 'ünïcödé ✓' },
      { key: 't.arr', type: T.ARRAY, elemType: T.INT32, value: [0, -1, 2] },
      { key: 't.strs', type: T.ARRAY, elemType: T.STRING, value: ['a', '', 'Ġthe'] },
      { key: 't.empty', type: T.ARRAY, elemType: T.FLOAT32, value: [] },
    ];
    const p = path.join(tmp.dir, 'kv.gguf');
    await writeGguf(p, entries, [{ name: 'v', shape: [3], type: 'F32', chunks: () => [Float32Array.from([1, 2, 3])] }]);
    const meta = readGgufMetadata(p);
    expect(meta.version).toBe(3);
    expect([...meta.kv.keys()]).toEqual(entries.map((e) => e.key));
    for (const e of entries) expect(meta.kv.get(e.key)).toEqual({ type: e.type, ...(e.elemType === undefined ? {} : { elemType: e.elemType }), value: e.value });
    expect(meta.tensors).toEqual([{ name: 'v', shape: [3], type: 0, typeName: 'F32', offset: 0 }]);
    expect(meta.dataOffset % 32).toBe(0);
    expect(readFileSync(p).subarray(meta.dataOffset).readFloatLE(8)).toBe(3);
  });

  it('a file with general.alignment 64 loads with the same logits', async () => {
    const p = path.join(tmp.dir, 'aligned64.gguf');
    await rewriteAsF32(GGUF_A, p, (e) => [...e, { key: 'general.alignment', type: GgufValueType.UINT32, value: 64 }]);
    const meta = readGgufMetadata(p);
    expect(meta.alignment).toBe(64);
    expect(meta.dataOffset % 64).toBe(0);
    for (const t of meta.tensors) expect(t.offset % 64).toBe(0);
    const tokens = [1, 50, 60, 70, 80, 90, 100];
    const a = await allLogits(GGUF_A, tokens);
    const b = await allLogits(p, tokens);
    expect(maxAbsDiff(logSoftmaxRows(a.logits, a.V), logSoftmaxRows(b.logits, b.V))).toBeLessThan(1e-5);
  });
});

describe('same weights as safetensors and as GGUF', () => {
  const tmp = tempDir('gguf-same');
  afterAll(() => tmp.cleanup());
  const dims = { chunkSize: 128, hiddenSize: 72, mambaHeadDim: 9, headDim: 18, intermediateSize: 136, seed: 11 };
  const tokens = Array.from({ length: 150 }, (_, i) => (i * 131 + 7) % 500);

  for (const [dtype, ggufType] of [['f32', 'F32'], ['bf16', 'BF16']] as const) {
    it(`${dtype} safetensors and ${ggufType} GGUF give bitwise identical logits`, async () => {
      const r = await makeTinyModel(path.join(tmp.dir, dtype), { ...dims, dtype, format: 'gguf', ggufType });
      expect(r.gguf).toBe(path.join(r.dir, 'model.gguf'));
      const a = await allLogits(r.dir, tokens);
      const b = await allLogits(r.gguf!, tokens);
      expect(b.V).toBe(a.V);
      console.log(`${dtype} safetensors vs ${ggufType} GGUF: max |Δ logit| = ${maxAbsDiff(a.logits, b.logits)}`);
      expect(bitwiseEqual(a.logits, b.logits)).toBe(true);
    });
  }

  it('the GGUF reports the same config and parameter count as the safetensors folder', async () => {
    const r = await makeTinyModel(path.join(tmp.dir, 'tied'), { ...dims, tieWordEmbeddings: true, format: 'gguf' });
    const meta = readGgufMetadata(r.gguf!);
    expect(meta.tensors.some((t) => t.name === 'output.weight')).toBe(false); // tied: no output.weight, as the converter writes
    const a = await loadModel(r.dir, { threads: 2 });
    const b = await loadModel(r.gguf!, { threads: 2 });
    try {
      // GGUF has no chunk_size, writes context_length 2^20 (no RoPE) and stores eps as float32.
      const { chunkSize: _a, maxPositionEmbeddings: _b, torchDtype: _c, layerNormEpsilon: ea, ...ca } = a.info.config;
      const { chunkSize: _d, maxPositionEmbeddings: _e, torchDtype: _f, layerNormEpsilon: eb, ...cb } = b.info.config;
      expect(cb).toEqual(ca);
      expect(eb).toBe(Math.fround(ea));
      expect(b.info.parameterCount).toBe(a.info.parameterCount);
      expect(b.info.memory.weights).toBeGreaterThan(0);
      const t = [1, 20, 30, 40];
      expect(bitwiseEqual(await b.evaluate(t, { logits: 'all' }), await a.evaluate(t, { logits: 'all' }))).toBe(true);
    } finally {
      await a.close();
      await b.close();
    }
  });
});

// The quantized kernels: present when native matmul accepts a Q8_0 matrix.
const quantKernels = (() => {
  try {
    native._kernels.matmul(new Float32Array(32), 1, 32, new Uint8Array(34), 'Q8_0', 1);
    return true;
  } catch {
    return false;
  }
})();

describe.runIf(quantKernels)('quantized GGUF', () => {
  const tmp = tempDir('gguf-quant');
  afterAll(() => tmp.cleanup());
  // Every matrix's inner dimension a multiple of 256, so every matrix takes the K-quants too.
  const dims = { hiddenSize: 256, mambaNumHeads: 8, mambaHeadDim: 32, headDim: 64, intermediateSize: 512, chunkSize: 128, dtype: 'f32' as const, seed: 5 };
  const tokens = Array.from({ length: 60 }, (_, i) => (i * 37 + 5) % 300);
  // max |Δ log-prob| and mean |Δ log-prob| against the f32 model: about 2x what was measured (see top).
  const TOL: Record<QuantType, { max: number; mean: number }> = {
    Q8_0: { max: 0.1, mean: 0.02 },
    Q6_K: { max: 0.3, mean: 0.06 },
    Q5_K: { max: 0.7, mean: 0.12 },
    Q4_K: { max: 1.1, mean: 0.22 },
    Q4_0: { max: 1.4, mean: 0.26 },
    Q5_1: { max: 0.6, mean: 0.12 },
    Q5_0: { max: 0.85, mean: 0.13 },
  };
  let ref: Float64Array;
  let V: number;
  const meanErr: Partial<Record<QuantType, number>> = {};

  beforeAll(async () => {
    const r = await makeTinyModel(path.join(tmp.dir, 'F32'), { ...dims, format: 'gguf', ggufType: 'F32' });
    const out = await allLogits(r.gguf!, tokens);
    V = out.V;
    ref = logSoftmaxRows(out.logits, V);
  });

  for (const type of ['Q8_0', 'Q6_K', 'Q5_K', 'Q4_K', 'Q5_1', 'Q5_0', 'Q4_0'] as const) {
    it(`${type}: every matrix quantized; equals its dequantized F32 copy; close to the f32 model`, async () => {
      const r = await makeTinyModel(path.join(tmp.dir, type), { ...dims, format: 'gguf', ggufType: type });
      const meta = readGgufMetadata(r.gguf!);
      for (const t of meta.tensors) {
        const matrix = t.shape.length === 2 && t.shape[0]! > 1 && !t.name.includes('ssm_conv1d') && !t.name.includes('ssm_norm');
        expect(t.type, t.name).toBe(matrix ? GgmlType[type] : GgmlType.F32);
      }
      const q = await allLogits(r.gguf!, tokens);
      const lq = logSoftmaxRows(q.logits, V);

      const copy = path.join(tmp.dir, `${type}-dequantized.gguf`);
      await rewriteAsF32(r.gguf!, copy);
      const d = await allLogits(copy, tokens);
      const exact = maxAbsDiff(lq, logSoftmaxRows(d.logits, V));

      const max = maxAbsDiff(lq, ref);
      let sum = 0;
      for (let i = 0; i < lq.length; i++) sum += Math.abs(lq[i]! - ref[i]!);
      const mean = sum / lq.length;
      meanErr[type] = mean;
      console.log(
        `${type}: vs its dequantized F32 copy max |Δ log-prob| = ${exact.toExponential(2)}; ` +
          `vs the f32 model max = ${max.toExponential(2)}, mean = ${mean.toExponential(2)} (tolerances ${TOL[type].max}, ${TOL[type].mean}); ` +
          `file ${statSync(r.gguf!).size} bytes`,
      );
      expect(exact).toBeLessThan(1e-4);
      expect(max).toBeLessThan(TOL[type].max);
      expect(mean).toBeLessThan(TOL[type].mean);
    });
  }

  it('the error grows as the bits shrink: Q8_0 < Q6_K < Q5_K < Q4_K', () => {
    const m = meanErr;
    expect(m.Q8_0! < m.Q6_K! && m.Q6_K! < m.Q5_K! && m.Q5_K! < m.Q4_K!, JSON.stringify(m)).toBe(true);
  });

  it('the 32-value types: Q8_0 < Q5_1, Q5_0 < Q4_0 (5-bit codes between 8 and 4)', () => {
    const m = meanErr;
    expect(m.Q8_0! < m.Q5_1! && m.Q8_0! < m.Q5_0! && m.Q5_1! < m.Q4_0! && m.Q5_0! < m.Q4_0!, JSON.stringify(m)).toBe(true);
  });

  // llama-quantize's layout of a model whose widths are not multiples of 256 (as the 9B's 4,480 and
  // 15,680): ggufFallback 'quantize' stores Q4_K's misfits as Q5_0 and Q5_K's as Q5_1 (F16 only where not
  // even 32 divides). Hidden 96 and MLP 288 take the fallback; d_inner 256 and q_dim 256 take the K-quant.
  for (const [type, fallback] of [['Q4_K', 'Q5_0'], ['Q5_K', 'Q5_1']] as const) {
    it(`${type} with ggufFallback 'quantize': ${fallback} where 256 does not divide; equals its dequantized F32 copy`, async () => {
      const mixDims = { hiddenSize: 96, mambaNumHeads: 8, mambaHeadDim: 32, headDim: 64, intermediateSize: 288, chunkSize: 128, dtype: 'f32' as const, seed: 6 };
      const r = await makeTinyModel(path.join(tmp.dir, `${type}-mix`), { ...mixDims, format: 'gguf', ggufType: type, ggufFallback: 'quantize' });
      const meta = readGgufMetadata(r.gguf!);
      const seen = new Set<string>();
      for (const t of meta.tensors) {
        const matrix = t.shape.length === 2 && t.shape[0]! > 1 && !t.name.includes('ssm_conv1d') && !t.name.includes('ssm_norm');
        const want = !matrix ? GgmlType.F32 : t.shape[0]! % 256 === 0 ? GgmlType[type] : GgmlType[fallback];
        expect(t.type, t.name).toBe(want);
        seen.add(t.typeName);
      }
      expect([...seen].sort()).toEqual(['F32', fallback, type].sort());
      const q = await allLogits(r.gguf!, tokens);
      const copy = path.join(tmp.dir, `${type}-mix-dequantized.gguf`);
      await rewriteAsF32(r.gguf!, copy);
      const d = await allLogits(copy, tokens);
      const exact = maxAbsDiff(logSoftmaxRows(q.logits, q.V), logSoftmaxRows(d.logits, d.V));
      console.log(`${type} + ${fallback} mix: vs its dequantized F32 copy max |Δ log-prob| = ${exact.toExponential(2)}`);
      expect(exact).toBeLessThan(1e-4);
    });
  }
});

describe('bad GGUF files', () => {
  const tmp = tempDir('gguf-bad');
  afterAll(() => tmp.cleanup());
  const original = readFileSync(GGUF_A);

  it('another general.architecture: ERR_UNSUPPORTED_MODEL naming it', async () => {
    const buf = Buffer.from(original);
    const o = stringValueOffset(buf, 'general.architecture');
    expect(buf.toString('utf8', o + 8, o + 18)).toBe('nemotron_h');
    buf.write('starcoder2', o + 8, 'utf8'); // same length
    const p = path.join(tmp.dir, 'starcoder2.gguf');
    writeFileSync(p, buf);
    for (const err of [await nativeError(p), await loadError(p)]) {
      expect(err.code).toBe('ERR_UNSUPPORTED_MODEL');
      expect(err.message).toContain('"starcoder2"');
      expect(err.message).toContain('nemotron_h');
    }
  });

  it('an unsupported tensor type: ERR_INVALID_CHECKPOINT naming the tensor and the type', async () => {
    const buf = Buffer.from(original);
    const o = tensorTypeOffset(buf, 'blk.0.ssm_in.weight', 2);
    expect(buf.readUInt32LE(o)).toBe(0); // F32
    buf.writeUInt32LE(3, o); // Q4_1: a ggml type this engine does not read
    const p = path.join(tmp.dir, 'q4_1.gguf');
    writeFileSync(p, buf);
    for (const err of [await nativeError(p), await loadError(p)]) {
      expect(err.code).toBe('ERR_INVALID_CHECKPOINT');
      expect(err.message).toContain("'blk.0.ssm_in.weight'");
      expect(err.message).toContain('Q4_1');
    }
    buf.writeUInt32LE(200, o); // not a ggml type at all
    writeFileSync(p, buf);
    const err = await nativeError(p);
    expect(err.code).toBe('ERR_INVALID_CHECKPOINT');
    expect(err.message).toMatch(/'blk\.0\.ssm_in\.weight' has ggml type id 200/);
  });

  it('a truncated file: ERR_INVALID_CHECKPOINT (in the data section and in the header)', async () => {
    const p = path.join(tmp.dir, 'truncated.gguf');
    writeFileSync(p, original.subarray(0, original.length - 1000));
    for (const err of [await nativeError(p), await loadError(p)]) {
      expect(err.code).toBe('ERR_INVALID_CHECKPOINT');
      expect(err.message).toMatch(/output\.weight.*runs past the end of the file.*truncated/);
    }
    writeFileSync(p, original.subarray(0, 5000)); // inside the tokenizer metadata
    for (const err of [await nativeError(p), await loadError(p)]) {
      expect(err.code).toBe('ERR_INVALID_CHECKPOINT');
      expect(err.message).toMatch(/truncated/);
    }
  });

  it('not GGUF, or a tensor of the wrong shape: typed errors naming the problem', async () => {
    const p = path.join(tmp.dir, 'bad.gguf');
    writeFileSync(p, Buffer.concat([Buffer.from('GGML'), original.subarray(4)]));
    let err = await nativeError(p);
    expect(err.code).toBe('ERR_INVALID_CHECKPOINT');
    expect(err.message).toContain('magic');

    // head_count_kv of layer 3 doubled: its attn_k/attn_v no longer fit.
    const buf = Buffer.from(original);
    const key = Buffer.from('nemotron_h.attention.head_count_kv');
    const at = buf.indexOf(key) + key.length;
    expect(buf.readUInt32LE(at)).toBe(9); // ARRAY
    expect(buf.readUInt32LE(at + 4)).toBe(5); // of INT32
    expect(buf.readInt32LE(at + 16 + 3 * 4)).toBe(2);
    buf.writeInt32LE(4, at + 16 + 3 * 4);
    buf.writeInt32LE(4, at + 16 + 6 * 4);
    writeFileSync(p, buf);
    err = await nativeError(p);
    expect(err.code).toBe('ERR_TENSOR_MISMATCH');
    expect(err.message).toMatch(/tensor 'blk\.3\.attn_k\.weight' has ggml shape \{64, 48\}, expected \{64, 96\}/);

    copyFileSync(GGUF_A, p); // a good copy under another name loads
    const m = await loadModel(p, { threads: 1 });
    await m.close();
  });
});
