// Embedding lookup (csrc/kernels/elementwise.cc `embedding`) from a table in the device layout
// (kernels_cuda.h): BF16 rows, or Q8_0 quants times their f16 scale (the same f32 value as the CPU's
// dequantizer: q · d is exact in f32). Token ids are device memory.
#include "cuda/common.cuh"
#include "cuda/kernels_cuda.h"
#include "cuda/layout.cuh"

namespace nemo::cuda {
namespace {

__global__ void k_embedding_bf16(float* __restrict__ y, const __nv_bfloat16* __restrict__ table,
                                 const int32_t* __restrict__ ids, int64_t T, int64_t C, int64_t Kp) {
  const int64_t total = T * C;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = i / C, c = i % C;
    y[i] = __bfloat162float(table[static_cast<int64_t>(ids[t]) * Kp + perm_position(c)]);
  }
}

__global__ void k_embedding_q8(float* __restrict__ y, const int8_t* __restrict__ q, const __half* __restrict__ scales,
                               const int32_t* __restrict__ ids, int64_t T, int64_t C, int64_t Kp, int64_t Np) {
  const int64_t total = T * C;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = i / C, c = i % C, row = ids[t];
    y[i] = static_cast<float>(q[row * Kp + perm_position(c)]) * __half2float(scales[(c / 32) * Np + row]);
  }
}

}  // namespace

cudaError_t embedding(float* y, const MatrixView& table, const int32_t* ids, int64_t T, cudaStream_t stream) {
  if (T <= 0) return cudaSuccess;
  const int64_t C = table.cols, Kp = padded_cols(C);
  const unsigned grid = grid_for(T * C, 256);
  if (table.dtype == DType::BF16) {
    k_embedding_bf16<<<grid, 256, 0, stream>>>(y, static_cast<const __nv_bfloat16*>(table.data), ids, T, C, Kp);
  } else if (table.dtype == DType::Q8_0) {
    const int8_t* q = static_cast<const int8_t*>(table.data);
    const __half* sc = reinterpret_cast<const __half*>(static_cast<const uint8_t*>(table.data) +
                                                       round_up(table.rows * Kp, 16));
    k_embedding_q8<<<grid, 256, 0, stream>>>(y, q, sc, ids, T, C, Kp, round_up(table.rows, 8));
  } else {
    return cudaErrorInvalidValue;  // not in the device layout
  }
  return cudaGetLastError();
}

}  // namespace nemo::cuda
