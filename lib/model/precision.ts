/**
 * The default matrix-product precision of a checkpoint (LoadOptions.precision when not given), decided
 * from its weight types.
 */
import type { GgufTensorInfo } from '../gguf/reader.js';

/** ggml types that store blocks of small integers with per-block scales (Q8_0, Q4_K, IQ4_XS, TQ1_0, MXFP4, ...). */
const BLOCK_QUANTIZED = /^(Q\d|IQ\d|TQ\d|MXFP)/;

/**
 * 'fast' when the block-quantized matrices hold the majority of the matrix parameters (the tensors of two
 * or more dimensions), else 'exact'. Why: 'fast' rounds the activations to 8-bit blocks for quantized
 * weights, an error of the same order as or below the weights' own quantization error, and it is what
 * llama.cpp does by default, so whoever picked a quantized checkpoint has already accepted that order of
 * error, and 'fast' is what makes its prompts as fast as llama.cpp's. Float weights (BF16, F16, F32
 * safetensors or GGUF) and FP8 (ModelOpt E4M3 safetensors) keep exactness. `tensors` is the GGUF tensor
 * list; a safetensors checkpoint (undefined) stores only float or FP8 weights. An explicit precision
 * always wins over this.
 */
export function defaultPrecision(tensors: readonly Pick<GgufTensorInfo, 'shape' | 'typeName'>[] | undefined): 'exact' | 'fast' {
  if (!tensors) return 'exact';
  let quantized = 0;
  let total = 0;
  for (const t of tensors) {
    if (t.shape.filter((d) => d > 1).length < 2) continue; // norms, biases, per-head vectors
    const n = t.shape.reduce((a, b) => a * b, 1);
    total += n;
    if (BLOCK_QUANTIZED.test(t.typeName)) quantized += n;
  }
  return quantized * 2 > total ? 'fast' : 'exact';
}
