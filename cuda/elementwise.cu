// The MLP activation relu(x)² and the residual add (csrc/kernels/elementwise.cc): grid-stride loops,
// 16-byte accesses when the pointers allow.
#include "cuda/common.cuh"
#include "cuda/kernels_cuda.h"

namespace nemo::cuda {
namespace {

__device__ __forceinline__ float relu2_f(float v) {
  const float r = v > 0.0f ? v : 0.0f;
  return r * r;
}

__global__ void k_relu2(float* x, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t i0 = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if ((reinterpret_cast<uintptr_t>(x) & 15) == 0) {
    float4* x4 = reinterpret_cast<float4*>(x);
    for (int64_t j = i0; j < n / 4; j += stride) {
      float4 v = x4[j];
      v.x = relu2_f(v.x);
      v.y = relu2_f(v.y);
      v.z = relu2_f(v.z);
      v.w = relu2_f(v.w);
      x4[j] = v;
    }
    for (int64_t j = n / 4 * 4 + i0; j < n; j += stride) x[j] = relu2_f(x[j]);
    return;
  }
  for (int64_t j = i0; j < n; j += stride) x[j] = relu2_f(x[j]);
}

__global__ void k_add(float* y, const float* __restrict__ x, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t i0 = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (((reinterpret_cast<uintptr_t>(x) | reinterpret_cast<uintptr_t>(y)) & 15) == 0) {
    float4* y4 = reinterpret_cast<float4*>(y);
    const float4* x4 = reinterpret_cast<const float4*>(x);
    for (int64_t j = i0; j < n / 4; j += stride) {
      float4 a = y4[j];
      const float4 b = x4[j];
      a.x += b.x;
      a.y += b.y;
      a.z += b.z;
      a.w += b.w;
      y4[j] = a;
    }
    for (int64_t j = n / 4 * 4 + i0; j < n; j += stride) y[j] += x[j];
    return;
  }
  for (int64_t j = i0; j < n; j += stride) y[j] += x[j];
}

}  // namespace

cudaError_t relu2(float* x, int64_t n, cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  k_relu2<<<grid_for(ceil_div(n, 4), 256), 256, 0, stream>>>(x, n);
  return cudaGetLastError();
}

cudaError_t add_inplace(float* y, const float* x, int64_t n, cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  k_add<<<grid_for(ceil_div(n, 4), 256), 256, 0, stream>>>(y, x, n);
  return cudaGetLastError();
}

}  // namespace nemo::cuda
