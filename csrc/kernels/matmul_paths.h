// Internal: matmul paths that live in their own files, called by the dispatchers in matmul.cc and
// matmul_quant.cc once those have handled kRelu2, quantized dtypes and empty shapes. Not part of the
// kernel API (kernels.h).
#pragma once
#include <cstdint>

#include "core/thread_pool.h"
#include "model/weights.h"

namespace nemo::cpu {

#if defined(__aarch64__)
// NEON (matmul_neon.cc): W in F32, F16 or BF16; T > 0, N > 0, K > 0. Activations stay f32 (kFast
// computes as kExact on this path). Batch invariant like the x86 paths.
void matmul_neon(float* y, int64_t ldy, const float* x, int64_t ldx, const MatrixView& w, int64_t T,
                 ThreadPool& pool);

// NEON (matmul_quant_neon.cc): block-quantized W, f32 activations; T > 0, N > 0, K > 0. Returns false,
// computing nothing, for a dtype without a NEON path (the caller then runs the scalar path).
bool matmul_quant_neon(float* y, int64_t ldy, const float* x, int64_t ldx, const MatrixView& w,
                       int64_t T, ThreadPool& pool);
#endif

}  // namespace nemo::cpu
