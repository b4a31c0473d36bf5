// Mamba-2 chunked SSD scan for prompts (architecture.md §5.2; the steps of mamba_ssm's
// ssd_minimal, written out for one head at a time).
//
// Per chunk of L tokens and head h (group g = h / (H/G)):
//   1. dt[i] = clamp(softplus(dt_raw[i] + dt_bias)),  Acs[i] = Σ_{j<=i} dt[j]·A      (cumulative decay)
//   2. Y_off[i] = exp(Acs[i]) · C[i] · S_in               (what the state entering the chunk contributes)
//   3. Y_diag[i] = Σ_{j<=i} (C[i]·B[j]) · exp(Acs[i]-Acs[j]) · dt[j] · x[j]   (within-chunk, quadratic)
//   4. S_out = exp(Acs[L-1]) · S_in + Σ_j exp(Acs[L-1]-Acs[j]) · dt[j] · x[j] ⊗ B[j]
// y = Y_off + Y_diag + D·x.  C·B is shared by the heads of a group, so it is computed once per
// (group, chunk) before the per-head pass.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/kernels.h"
#include "kernels/math.h"

namespace nemo::cpu {

void ssd_chunk_scan(float* y, const float* x, int64_t ldx, const float* dt_raw, int64_t lddt,
                    const float* B, const float* C, int64_t ldbc, float* state, const SsmParams& p,
                    int64_t T, int64_t chunk_size, ThreadPool& pool) {
  const int64_t H = p.n_heads, P = p.head_dim, G = p.n_groups, N = p.state_size;
  const int64_t heads_per_group = H / G;
  const int64_t Q = std::max<int64_t>(1, std::min(chunk_size, T));
  const int64_t n_chunks = (T + Q - 1) / Q;

  // CB[g][c] is the lower triangle of C·Bᵀ for chunk c, stored as a full [Q, Q] block.
  std::vector<float> cb(static_cast<size_t>(G * n_chunks * Q * Q), 0.0f);
  pool.parallel_for(G * n_chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t job = begin; job < end; ++job) {
      const int64_t g = job / n_chunks, c = job % n_chunks;
      const int64_t t0 = c * Q, L = std::min(Q, T - t0);
      float* blk = cb.data() + job * Q * Q;
      for (int64_t i = 0; i < L; ++i) {
        const float* ci = C + (t0 + i) * ldbc + g * N;
        for (int64_t j = 0; j <= i; ++j) {
          const float* bj = B + (t0 + j) * ldbc + g * N;
          float acc = 0.0f;
          for (int64_t n = 0; n < N; ++n) acc += ci[n] * bj[n];
          blk[i * Q + j] = acc;
        }
      }
    }
  });

  pool.parallel_for(H, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> dt(Q), acs(Q), m(Q * Q), w_end(Q);
    for (int64_t h = begin; h < end; ++h) {
      const int64_t g = h / heads_per_group;
      const float A = p.A[h], Dh = p.D[h], bias = p.dt_bias[h];
      float* S = state + h * P * N;  // [P, N]
      for (int64_t c = 0; c < n_chunks; ++c) {
        const int64_t t0 = c * Q, L = std::min(Q, T - t0);
        // 1. discretisation and cumulative decay
        float run = 0.0f;
        for (int64_t i = 0; i < L; ++i) {
          dt[i] = clampf(softplus(dt_raw[(t0 + i) * lddt + h] + bias), p.dt_min, p.dt_max);
          run += dt[i] * A;
          acs[i] = run;
        }
        // 2. contribution of the incoming state: y[i, p] = exp(Acs[i]) Σ_n C[i, n] S[p, n]
        for (int64_t i = 0; i < L; ++i) {
          const float* ci = C + (t0 + i) * ldbc + g * N;
          const float decay = std::exp(acs[i]);
          float* yi = y + (t0 + i) * H * P + h * P;
          for (int64_t pp = 0; pp < P; ++pp) {
            const float* sp = S + pp * N;
            float acc = 0.0f;
            for (int64_t n = 0; n < N; ++n) acc += ci[n] * sp[n];
            yi[pp] = decay * acc;
          }
        }
        // 3. within the chunk: M[i, j] = CB[i, j] · exp(Acs[i] - Acs[j]) · dt[j], y[i] += Σ_j M[i, j] x[j]
        const float* blk = cb.data() + (g * n_chunks + c) * Q * Q;
        for (int64_t i = 0; i < L; ++i) {
          for (int64_t j = 0; j <= i; ++j) m[i * Q + j] = blk[i * Q + j] * std::exp(acs[i] - acs[j]) * dt[j];
        }
        for (int64_t i = 0; i < L; ++i) {
          float* yi = y + (t0 + i) * H * P + h * P;
          for (int64_t j = 0; j <= i; ++j) {
            const float mij = m[i * Q + j];
            const float* xj = x + (t0 + j) * ldx + h * P;
            for (int64_t pp = 0; pp < P; ++pp) yi[pp] += mij * xj[pp];
          }
          const float* xi = x + (t0 + i) * ldx + h * P;
          for (int64_t pp = 0; pp < P; ++pp) yi[pp] += Dh * xi[pp];  // D skip
        }
        // 4. state passing: S = exp(Acs[L-1]) S + Σ_j exp(Acs[L-1] - Acs[j]) dt[j] x[j] ⊗ B[j]
        const float chunk_decay = std::exp(acs[L - 1]);
        for (int64_t j = 0; j < L; ++j) w_end[j] = std::exp(acs[L - 1] - acs[j]) * dt[j];
        for (int64_t pp = 0; pp < P; ++pp) {
          float* sp = S + pp * N;
          for (int64_t n = 0; n < N; ++n) sp[n] *= chunk_decay;
          for (int64_t j = 0; j < L; ++j) {
            const float coef = w_end[j] * x[(t0 + j) * ldx + h * P + pp];
            const float* bj = B + (t0 + j) * ldbc + g * N;
            for (int64_t n = 0; n < N; ++n) sp[n] += coef * bj[n];
          }
        }
      }
    }
  });
}

}  // namespace nemo::cpu
