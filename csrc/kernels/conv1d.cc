// Causal depthwise conv1d + bias + SiLU, for prompts and for one decode step (docs/architecture.md §5.1).
#include <algorithm>
#include <cstring>
#include <vector>

#include "core/cpu_features.h"
#include "kernels/kernels.h"
#include "kernels/math.h"

namespace nemo::cpu {

namespace {

// The decode step runs once per token and Mamba layer over all C channels: a loop over c per tap,
// compiled per instruction set and chosen by kernel_isa() like the other kernels.
__attribute__((always_inline)) inline void step_body(float* y, const float* x, float* conv_state,
                                                     const float* w, const float* b, int64_t C,
                                                     int64_t K) {
  const int64_t S = K - 1;
  for (int64_t c = 0; c < C; ++c) {
    const float* wc = w + c * K;
    float acc = b[c];
    for (int64_t k = 0; k < S; ++k) acc += wc[k] * conv_state[k * C + c];
    y[c] = silu_fast(acc + wc[S] * x[c]);
  }
  // Shift the window left by one token (rows are contiguous) and append the new raw input.
  if (S == 0) return;
  std::memmove(conv_state, conv_state + C, static_cast<size_t>((S - 1) * C) * sizeof(float));
  std::memcpy(conv_state + (S - 1) * C, x, static_cast<size_t>(C) * sizeof(float));
}

// The prompt path: per token, the taps over all channels (w transposed to [K][C] once per call so the
// channel loop reads it contiguously), then SiLU; compiled per instruction set like the step.
__attribute__((always_inline)) inline void causal_body(float* y, const float* x, int64_t ldx,
                                                       const float* conv_state, const float* wt,
                                                       const float* b, int64_t T, int64_t C,
                                                       int64_t K) {
  const int64_t S = K - 1;  // rows of state
  for (int64_t t = 0; t < T; ++t) {
    float* yr = y + t * C;
    for (int64_t c = 0; c < C; ++c) yr[c] = b[c];
    for (int64_t k = 0; k < K; ++k) {
      const int64_t i = t - S + k;  // tap K-1 is the current token; rows < 0 come from the state
      const float* xr = i < 0 ? conv_state + (S + i) * C : x + i * ldx;
      const float* wk = wt + k * C;
      for (int64_t c = 0; c < C; ++c) yr[c] += wk[c] * xr[c];
    }
    for (int64_t c = 0; c < C; ++c) yr[c] = silu_fast(yr[c]);
  }
}

void causal_scalar(float* y, const float* x, int64_t ldx, const float* st, const float* wt,
                   const float* b, int64_t T, int64_t C, int64_t K) {
  causal_body(y, x, ldx, st, wt, b, T, C, K);
}
#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) void causal_avx2(float* y, const float* x, int64_t ldx,
                                                     const float* st, const float* wt,
                                                     const float* b, int64_t T, int64_t C,
                                                     int64_t K) {
  causal_body(y, x, ldx, st, wt, b, T, C, K);
}
__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma"))) void causal_avx512(
    float* y, const float* x, int64_t ldx, const float* st, const float* wt, const float* b,
    int64_t T, int64_t C, int64_t K) {
  causal_body(y, x, ldx, st, wt, b, T, C, K);
}
#endif

void step_scalar(float* y, const float* x, float* st, const float* w, const float* b, int64_t C,
                 int64_t K) {
  step_body(y, x, st, w, b, C, K);
}
#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) void step_avx2(float* y, const float* x, float* st,
                                                   const float* w, const float* b, int64_t C,
                                                   int64_t K) {
  step_body(y, x, st, w, b, C, K);
}
__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma"))) void step_avx512(
    float* y, const float* x, float* st, const float* w, const float* b, int64_t C, int64_t K) {
  step_body(y, x, st, w, b, C, K);
}
#endif

}  // namespace

void conv1d_causal(float* y, const float* x, int64_t ldx, float* conv_state, const float* w,
                   const float* b, int64_t T, int64_t C, int64_t K) {
  std::vector<float> wt(static_cast<size_t>(K * C));
  for (int64_t c = 0; c < C; ++c)
    for (int64_t k = 0; k < K; ++k) wt[static_cast<size_t>(k * C + c)] = w[c * K + k];
  auto causal = causal_scalar;
#if defined(__x86_64__)
  if (kernel_isa() == KernelIsa::kAvx512) causal = causal_avx512;
  if (kernel_isa() == KernelIsa::kAvx2) causal = causal_avx2;
#endif
  causal(y, x, ldx, conv_state, wt.data(), b, T, C, K);
  // The new state is the last S raw inputs of (old state ++ x).
  const int64_t S = K - 1;
  if (S == 0) return;
  std::vector<float> next(static_cast<size_t>(S * C));
  for (int64_t r = 0; r < S; ++r) {
    const int64_t i = T - S + r;
    const float* src = i < 0 ? conv_state + (S + i) * C : x + i * ldx;
    std::memcpy(next.data() + r * C, src, static_cast<size_t>(C) * sizeof(float));
  }
  std::memcpy(conv_state, next.data(), next.size() * sizeof(float));
}

void conv1d_step(float* y, const float* x, float* conv_state, const float* w, const float* b,
                 int64_t C, int64_t K) {
#if defined(__x86_64__)
  if (kernel_isa() == KernelIsa::kAvx512) return step_avx512(y, x, conv_state, w, b, C, K);
  if (kernel_isa() == KernelIsa::kAvx2) return step_avx2(y, x, conv_state, w, b, C, K);
#endif
  step_scalar(y, x, conv_state, w, b, C, K);
}

}  // namespace nemo::cpu
