// Causal depthwise conv1d + bias + SiLU (csrc/kernels/conv1d.cc, docs/architecture.md §5.1).
// Prompt: one thread per (token, channel) reads its K taps (rows before the prompt from the conv
// state), then a second kernel leaves the K-1 most recent raw inputs in the state, one thread per
// channel walking the rows upwards (the shift is in place: row r takes row r + T, never one already
// overwritten). Decode: one thread per channel does the step and the shift.
#include "cuda/common.cuh"
#include "cuda/kernels_cuda.h"

namespace nemo::cuda {
namespace {

__global__ void k_conv_causal(float* __restrict__ y, const float* __restrict__ x, int64_t ldx,
                              const float* __restrict__ state, const float* __restrict__ w,
                              const float* __restrict__ b, int64_t T, int64_t C, int64_t K) {
  const int64_t S = K - 1, total = T * C;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = i / C, c = i % C;
    float acc = b[c];
    for (int64_t k = 0; k < K; ++k) {
      const int64_t r = t - S + k;  // tap K-1 is the current token
      const float v = r < 0 ? state[(S + r) * C + c] : x[r * ldx + c];
      acc += w[c * K + k] * v;
    }
    y[t * C + c] = silu_f(acc);
  }
}

__global__ void k_conv_state(float* __restrict__ state, const float* __restrict__ x, int64_t ldx, int64_t T, int64_t C,
                             int64_t K) {
  const int64_t S = K - 1;
  for (int64_t c = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; c < C;
       c += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    for (int64_t r = 0; r < S; ++r) {
      const int64_t i = T - S + r;  // input row i of (old state ++ x)
      state[r * C + c] = i < 0 ? state[(S + i) * C + c] : x[i * ldx + c];
    }
  }
}

__global__ void k_conv_step(float* __restrict__ y, const float* __restrict__ x, float* __restrict__ state,
                            const float* __restrict__ w, const float* __restrict__ b, int64_t C, int64_t K) {
  const int64_t S = K - 1;
  for (int64_t c = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; c < C;
       c += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float* wc = w + c * K;
    float acc = b[c];
    for (int64_t k = 0; k < S; ++k) acc += wc[k] * state[k * C + c];
    acc += wc[S] * x[c];
    y[c] = silu_f(acc);
    for (int64_t k = 0; k + 1 < S; ++k) state[k * C + c] = state[(k + 1) * C + c];
    if (S > 0) state[(S - 1) * C + c] = x[c];
  }
}

}  // namespace

cudaError_t conv1d_causal(float* y, const float* x, int64_t ldx, float* conv_state, const float* w, const float* b,
                          int64_t T, int64_t C, int64_t K, cudaStream_t stream) {
  if (T <= 0 || C <= 0) return cudaSuccess;
  k_conv_causal<<<grid_for(T * C, 256), 256, 0, stream>>>(y, x, ldx, conv_state, w, b, T, C, K);
  CUDA_TRY(cudaGetLastError());
  if (K <= 1) return cudaSuccess;
  k_conv_state<<<grid_for(C, 256), 256, 0, stream>>>(conv_state, x, ldx, T, C, K);
  return cudaGetLastError();
}

cudaError_t conv1d_step(float* y, const float* x, float* conv_state, const float* w, const float* b, int64_t C,
                        int64_t K, cudaStream_t stream) {
  if (C <= 0) return cudaSuccess;
  k_conv_step<<<grid_for(C, 256), 256, 0, stream>>>(y, x, conv_state, w, b, C, K);
  return cudaGetLastError();
}

}  // namespace nemo::cuda
