// Internal to the matmul files (the shared tile driver is matmul_tiles.h): the shared task-size rule,
// and the matmul paths that live in their own
// files, called by the dispatchers in matmul.cc and matmul_quant.cc once those have handled kRelu2,
// quantized dtypes and empty shapes. Not part of the kernel API (kernels.h).
#pragma once
#include <algorithm>
#include <cstdint>

#include "core/thread_pool.h"
#include "model/weights.h"

namespace nemo::cpu {

// Row groups per thread-pool task for every matmul path: a range of groups is worth handing to another
// thread once it holds about 64 KiB of work, counted as the weight bytes it streams plus each path's
// cost of its multiply-adds in "bytes" (work_per_row).
inline int64_t row_group_grain(int64_t rows_per_group, int64_t bytes_per_row, int64_t work_per_row) {
  const int64_t cost = rows_per_group * (bytes_per_row + work_per_row);
  return std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(cost, 1));
}

#if defined(__aarch64__)
// NEON (matmul_neon.cc): W in F32, F16 or BF16; T > 0, N > 0, K > 0. Activations stay f32, except with
// bf16_fast (kFast on a CPU with FEAT_BF16: BF16 weights by BFDOT / BFMMLA over bf16-rounded x; other
// dtypes ignore it). Batch invariant like the x86 paths.
void matmul_neon(float* y, int64_t ldy, const float* x, int64_t ldx, const MatrixView& w, int64_t T,
                 ThreadPool& pool, bool bf16_fast = false);

// NEON (matmul_quant_neon.cc): block-quantized W, f32 activations; T > 0, N > 0, K > 0. Returns false,
// computing nothing, for a dtype without a NEON path (the caller then runs the scalar path).
bool matmul_quant_neon(float* y, int64_t ldy, const float* x, int64_t ldx, const MatrixView& w,
                       int64_t T, ThreadPool& pool);
#endif

}  // namespace nemo::cpu
