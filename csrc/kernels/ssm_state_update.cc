// Mamba-2 selective state update for one token (decode; docs/architecture.md §5.3).
//
// Per head h and channel p: S[p, :] = S[p, :]·dA + (x[p]·dt)·B,  y[p] = S[p, :]·C + D·x[p].
// The state is read and written once per token (H·P·N floats per layer and sequence), so the loop over
// N runs on whole vectors: 16 lanes (one AVX-512 register, two AVX2 ones), the lanes summed in a fixed
// order at the end, chosen by kernel_isa() like the other kernels (tests force every path).
#include <cmath>
#include <cstring>

#include "core/cpu_features.h"
#include "kernels/kernels.h"
#include "kernels/math.h"

namespace nemo::cpu {
namespace {

typedef float f32x16 __attribute__((vector_size(64)));

__attribute__((always_inline)) inline void update_heads(float* y, const float* x, const float* dt_raw,
                                                        const float* B, const float* C, float* state,
                                                        const SsmParams& p, int64_t h0, int64_t h1) {
  const int64_t P = p.head_dim, N = p.state_size;
  const int64_t heads_per_group = p.n_heads / p.n_groups;
  const int64_t nv = N / 16 * 16;  // vector part of N; the rest is scalar
  for (int64_t h = h0; h < h1; ++h) {
    const int64_t g = h / heads_per_group;
    const float dt = clampf(softplus(dt_raw[h] + p.dt_bias[h]), p.dt_min, p.dt_max);
    const float dA = std::exp(dt * p.A[h]);
    const float* bg = B + g * N;
    const float* cg = C + g * N;
    float* S = state + h * P * N;
    for (int64_t pp = 0; pp < P; ++pp) {
      const float xdt = x[h * P + pp] * dt;
      float* sp = S + pp * N;
      f32x16 acc = {};
      for (int64_t n = 0; n < nv; n += 16) {
        f32x16 s, b, c;
        std::memcpy(&s, sp + n, 64);
        std::memcpy(&b, bg + n, 64);
        std::memcpy(&c, cg + n, 64);
        s = s * dA + xdt * b;
        std::memcpy(sp + n, &s, 64);
        acc += s * c;
      }
      float lanes[16];
      std::memcpy(lanes, &acc, sizeof(lanes));
      float sum = 0.0f;
      for (int j = 0; j < 16; ++j) sum += lanes[j];
      for (int64_t n = nv; n < N; ++n) {
        sp[n] = sp[n] * dA + xdt * bg[n];
        sum += sp[n] * cg[n];
      }
      y[h * P + pp] = sum + p.D[h] * x[h * P + pp];
    }
  }
}

using UpdateFn = void (*)(float*, const float*, const float*, const float*, const float*, float*,
                          const SsmParams&, int64_t, int64_t);

void update_scalar(float* y, const float* x, const float* dt_raw, const float* B, const float* C,
                   float* state, const SsmParams& p, int64_t h0, int64_t h1) {
  update_heads(y, x, dt_raw, B, C, state, p, h0, h1);
}
#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) void update_avx2(float* y, const float* x, const float* dt_raw,
                                                     const float* B, const float* C, float* state,
                                                     const SsmParams& p, int64_t h0, int64_t h1) {
  update_heads(y, x, dt_raw, B, C, state, p, h0, h1);
}
__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma"))) void update_avx512(
    float* y, const float* x, const float* dt_raw, const float* B, const float* C, float* state,
    const SsmParams& p, int64_t h0, int64_t h1) {
  update_heads(y, x, dt_raw, B, C, state, p, h0, h1);
}
#endif

}  // namespace

void ssm_state_update(float* y, const float* x, const float* dt_raw, const float* B, const float* C,
                      float* state, const SsmParams& p, ThreadPool& pool) {
  UpdateFn update = update_scalar;
#if defined(__x86_64__)
  if (kernel_isa() == KernelIsa::kAvx512) update = update_avx512;
  if (kernel_isa() == KernelIsa::kAvx2) update = update_avx2;
#endif
  // About P·N·4 flops per head: hand out 4 heads at a time so a 24-head layer splits over 2 threads.
  pool.parallel_for(p.n_heads, 4, [&](int64_t begin, int64_t end) {
    update(y, x, dt_raw, B, C, state, p, begin, end);
  });
}

}  // namespace nemo::cpu
