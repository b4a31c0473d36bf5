// Causal depthwise conv1d + bias + SiLU, for prompts and for one decode step (architecture.md §5.1).
#include <algorithm>
#include <cstring>
#include <vector>

#include "core/cpu_features.h"
#include "kernels/kernels.h"
#include "kernels/math.h"

namespace nemo::cpu {

void conv1d_causal(float* y, const float* x, int64_t ldx, float* conv_state, const float* w,
                   const float* b, int64_t T, int64_t C, int64_t K) {
  const int64_t S = K - 1;  // rows of state
  // Input row i (i in [-S, T)): rows < 0 come from the state (state row S + i), others from x.
  auto in_row = [&](int64_t i) -> const float* {
    return i < 0 ? conv_state + (S + i) * C : x + i * ldx;
  };
  for (int64_t t = 0; t < T; ++t) {
    float* yr = y + t * C;
    for (int64_t c = 0; c < C; ++c) yr[c] = b[c];
    for (int64_t k = 0; k < K; ++k) {
      const float* xr = in_row(t - S + k);  // tap K-1 is the current token
      for (int64_t c = 0; c < C; ++c) yr[c] += w[c * K + k] * xr[c];
    }
    for (int64_t c = 0; c < C; ++c) yr[c] = silu(yr[c]);
  }
  // The new state is the last S raw inputs of (old state ++ x).
  if (S == 0) return;
  std::vector<float> next(static_cast<size_t>(S * C));
  for (int64_t r = 0; r < S; ++r) {
    std::memcpy(next.data() + r * C, in_row(T - S + r), static_cast<size_t>(C) * sizeof(float));
  }
  std::memcpy(conv_state, next.data(), next.size() * sizeof(float));
}

namespace {

// silu with the branch-free exp of math.h, so the loop over channels vectorises (relative error of
// the exp < 1.3e-7; the prompt path's std::exp silu differs from it only by that rounding).
__attribute__((always_inline)) inline float silu_fast(float x) { return x / (1.0f + softmax_exp(-x)); }

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

void conv1d_step(float* y, const float* x, float* conv_state, const float* w, const float* b,
                 int64_t C, int64_t K) {
#if defined(__x86_64__)
  if (kernel_isa() == KernelIsa::kAvx512) return step_avx512(y, x, conv_state, w, b, C, K);
  if (kernel_isa() == KernelIsa::kAvx2) return step_avx2(y, x, conv_state, w, b, C, K);
#endif
  step_scalar(y, x, conv_state, w, b, C, K);
}

}  // namespace nemo::cpu
