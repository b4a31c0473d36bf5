// RMSNorm and the Mamba-2 gated grouped RMSNorm (csrc/kernels/rmsnorm.cc), each one fused kernel:
// one CTA per row (per row and group), the sum of squares reduced in f32 by a fixed tree, then the
// scaling pass. Every element is read and written by the same thread in both passes, so y may alias x.
#include "cuda/common.cuh"
#include "cuda/kernels_cuda.h"

namespace nemo::cuda {
namespace {

constexpr int kThreads = 512;

__global__ void __launch_bounds__(kThreads) k_rmsnorm(float* y, const float* x, const float* __restrict__ w,
                                                      int64_t C, float eps) {
  __shared__ float red[32];
  const float* xr = x + blockIdx.x * C;
  float* yr = y + blockIdx.x * C;
  float ss = 0.0f;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) ss += xr[c] * xr[c];
  ss = block_sum(ss, red);
  const float inv = 1.0f / sqrtf(ss / static_cast<float>(C) + eps);
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) yr[c] = w[c] * (xr[c] * inv);
}

// Grid (T, C / group_size): v = y ⊙ silu(z) per group, RMS-normalised on its own, times w.
__global__ void __launch_bounds__(kThreads) k_rmsnorm_gated(float* out, const float* y, const float* __restrict__ z,
                                                            int64_t ldz, const float* __restrict__ w, int64_t C,
                                                            int64_t group_size, float eps) {
  __shared__ float red[32];
  const int64_t t = blockIdx.x, g0 = blockIdx.y * group_size;
  const float* yr = y + t * C + g0;
  const float* zr = z + t * ldz + g0;
  float* orow = out + t * C + g0;
  float ss = 0.0f;
  for (int64_t c = threadIdx.x; c < group_size; c += blockDim.x) {
    const float v = yr[c] * silu_f(zr[c]);
    orow[c] = v;
    ss += v * v;
  }
  ss = block_sum(ss, red);
  const float inv = 1.0f / sqrtf(ss / static_cast<float>(group_size) + eps);
  for (int64_t c = threadIdx.x; c < group_size; c += blockDim.x) orow[c] = w[g0 + c] * (orow[c] * inv);
}

}  // namespace

cudaError_t rmsnorm(float* y, const float* x, const float* w, int64_t T, int64_t C, float eps, cudaStream_t stream) {
  if (T <= 0 || C <= 0) return cudaSuccess;
  const int threads = C >= kThreads ? kThreads : static_cast<int>(round_up(C, 32));
  k_rmsnorm<<<static_cast<unsigned>(T), threads, 0, stream>>>(y, x, w, C, eps);
  return cudaGetLastError();
}

cudaError_t rmsnorm_gated_grouped(float* out, const float* y, const float* z, int64_t ldz, const float* w, int64_t T,
                                  int64_t C, int64_t group_size, float eps, cudaStream_t stream) {
  if (T <= 0 || C <= 0) return cudaSuccess;
  if (group_size <= 0 || C % group_size != 0) return cudaErrorInvalidValue;
  const int threads = group_size >= kThreads ? kThreads : static_cast<int>(round_up(group_size, 32));
  const dim3 grid(static_cast<unsigned>(T), static_cast<unsigned>(C / group_size));
  k_rmsnorm_gated<<<grid, threads, 0, stream>>>(out, y, z, ldz, w, C, group_size, eps);
  return cudaGetLastError();
}

}  // namespace nemo::cuda
