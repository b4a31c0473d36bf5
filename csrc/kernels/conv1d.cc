// Causal depthwise conv1d + bias + SiLU, for prompts and for one decode step (architecture.md §5.1).
#include <algorithm>
#include <cstring>
#include <vector>

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

void conv1d_step(float* y, const float* x, float* conv_state, const float* w, const float* b,
                 int64_t C, int64_t K) {
  const int64_t S = K - 1;
  for (int64_t c = 0; c < C; ++c) {
    const float* wc = w + c * K;
    float acc = b[c];
    for (int64_t k = 0; k < S; ++k) acc += wc[k] * conv_state[k * C + c];
    acc += wc[S] * x[c];
    y[c] = silu(acc);
    // Shift the window left by one token and append the new raw input.
    for (int64_t k = 0; k + 1 < S; ++k) conv_state[k * C + c] = conv_state[(k + 1) * C + c];
    if (S > 0) conv_state[(S - 1) * C + c] = x[c];
  }
}

}  // namespace nemo::cpu
