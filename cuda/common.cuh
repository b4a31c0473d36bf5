// Shared by the CUDA kernels (cuda/*.cu): error handling that ends in a nemo::Status (never exit),
// launch helpers, warp/block reductions and the scalar functions of csrc/kernels/math.h on the device.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "core/status.h"

namespace nemo::cuda {

// A CUDA error as a Status: out-of-memory maps to kOutOfMemory, everything else to kInternal with the
// call site and CUDA's own message.
inline Status cuda_status(cudaError_t err, const char* what, const char* file, int line) {
  if (err == cudaSuccess) return Status::Ok();
  std::string msg = std::string("CUDA error in ") + what + " (" + file + ":" + std::to_string(line) +
                    "): " + cudaGetErrorName(err) + ": " + cudaGetErrorString(err);
  return Status(err == cudaErrorMemoryAllocation ? StatusCode::kOutOfMemory : StatusCode::kInternal,
                std::move(msg));
}

// CUDA_CHECK(call): returns the failure from the enclosing function as a nemo::Status.
#define CUDA_CHECK(call)                                                                  \
  do {                                                                                    \
    const cudaError_t _err = (call);                                                      \
    if (_err != cudaSuccess) return ::nemo::cuda::cuda_status(_err, #call, __FILE__, __LINE__); \
  } while (0)

// CUDA_TRY(call): for the kernel wrappers, which return cudaError_t.
#define CUDA_TRY(call)                        \
  do {                                        \
    const cudaError_t _err = (call);          \
    if (_err != cudaSuccess) return _err;     \
  } while (0)

// Lets `kernel` launch with `smem` bytes of dynamic shared memory. Above the 48 KiB default that takes
// cudaFuncSetAttribute, a driver call: it is made once per kernel and device (and again only for a
// larger size), not on every launch. Thread-safe (memory.cu).
cudaError_t allow_dynamic_smem(const void* kernel, size_t smem);
template <typename F>
cudaError_t allow_smem(F* kernel, size_t smem) {
  return smem <= 48 * 1024 ? cudaSuccess : allow_dynamic_smem(reinterpret_cast<const void*>(kernel), smem);
}

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

// Blocks for a grid-stride loop over n items: enough to fill the device, capped by the grid limit.
inline unsigned grid_for(int64_t n, int threads) {
  int64_t b = ceil_div(n, threads);
  if (b > 65535LL * 16) b = 65535LL * 16;
  return static_cast<unsigned>(b < 1 ? 1 : b);
}

// ---- device math (the CPU kernels' definitions, csrc/kernels/math.h) -------------------------------
__device__ __forceinline__ float silu_f(float x) { return x / (1.0f + expf(-x)); }
__device__ __forceinline__ float softplus_f(float x) { return x > 20.0f ? x : log1pf(expf(x)); }
__device__ __forceinline__ float clamp_f(float x, float lo, float hi) {
  return x < lo ? lo : (x > hi ? hi : x);
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
// `red` is 32 floats of shared memory. Fixed tree: the result does not depend on timing.
__device__ __forceinline__ float block_sum(float v, float* red) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();  // `red` may still be read by a previous call
  if (lane == 0) red[warp] = v;
  __syncthreads();
  float t = lane < n_warps ? red[lane] : 0.0f;
  return warp_sum(t);
}

// ---- storage element loads (KV cache, weights) ------------------------------------------------------
template <typename T> __device__ __forceinline__ float to_f32(T v);
template <> __device__ __forceinline__ float to_f32<float>(float v) { return v; }
template <> __device__ __forceinline__ float to_f32<__half>(__half v) { return __half2float(v); }
template <> __device__ __forceinline__ float to_f32<__nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T> __device__ __forceinline__ T from_f32(float v);
template <> __device__ __forceinline__ float from_f32<float>(float v) { return v; }
template <> __device__ __forceinline__ __half from_f32<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

}  // namespace nemo::cuda
