// Mamba-2 selective state update for one token (decode; architecture.md §5.3).
#include <cmath>

#include "kernels/kernels.h"
#include "kernels/math.h"

namespace nemo::cpu {

void ssm_state_update(float* y, const float* x, const float* dt_raw, const float* B, const float* C,
                      float* state, const SsmParams& p, ThreadPool& pool) {
  const int64_t H = p.n_heads, P = p.head_dim, N = p.state_size;
  const int64_t heads_per_group = H / p.n_groups;
  pool.parallel_for(H, 4, [&](int64_t begin, int64_t end) {
    for (int64_t h = begin; h < end; ++h) {
      const int64_t g = h / heads_per_group;
      const float dt = clampf(softplus(dt_raw[h] + p.dt_bias[h]), p.dt_min, p.dt_max);
      const float dA = std::exp(dt * p.A[h]);
      const float* bg = B + g * N;
      const float* cg = C + g * N;
      float* S = state + h * P * N;
      for (int64_t pp = 0; pp < P; ++pp) {
        const float xdt = x[h * P + pp] * dt;
        float* sp = S + pp * N;
        float acc = 0.0f;
        for (int64_t n = 0; n < N; ++n) {
          sp[n] = sp[n] * dA + xdt * bg[n];
          acc += sp[n] * cg[n];
        }
        y[h * P + pp] = acc + p.D[h] * x[h * P + pp];
      }
    }
  });
}

}  // namespace nemo::cpu
