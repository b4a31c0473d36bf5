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
#include <cstring>
#include <vector>

#include "core/cpu_features.h"
#include "kernels/kernels.h"
#include "kernels/math.h"

namespace nemo::cpu {
namespace {

// 16 floats as one value (one AVX-512 register, two AVX2 or four SSE registers).
typedef float f32x16 __attribute__((vector_size(64)));

__attribute__((always_inline)) inline f32x16 load16(const float* p) {
  f32x16 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

// Σ a[i]·b[i] in 16 lanes, then the lanes in order, then the tail: a fixed order for a given n.
__attribute__((always_inline)) inline float dot(const float* a, const float* b, int64_t n) {
  f32x16 acc = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) acc += load16(a + i) * load16(b + i);
  float lanes[16];
  std::memcpy(lanes, &acc, sizeof(lanes));
  float sum = 0.0f;
  for (int j = 0; j < 16; ++j) sum += lanes[j];
  for (; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

struct ScanArgs {
  float* y;
  const float* x;
  int64_t ldx;
  const float* dt_raw;
  int64_t lddt;
  const float* B;
  const float* C;
  int64_t ldbc;
  float* state;
  const SsmParams* p;
  int64_t T, Q, n_chunks;
  const float* cb;  // [G][n_chunks][Q][Q] lower triangles of C·Bᵀ
};

// CB[i][j] = C[i]·B[j] (j <= i) for one (group, chunk).
__attribute__((always_inline)) inline void cb_block_body(const ScanArgs& a, int64_t g, int64_t c, float* blk) {
  const int64_t N = a.p->state_size, Q = a.Q;
  const int64_t t0 = c * Q, L = std::min(Q, a.T - t0);
  for (int64_t i = 0; i < L; ++i) {
    const float* ci = a.C + (t0 + i) * a.ldbc + g * N;
    for (int64_t j = 0; j <= i; ++j) blk[i * Q + j] = dot(ci, a.B + (t0 + j) * a.ldbc + g * N, N);
  }
}

// Steps 1-4 for one head over every chunk (see the top of this file).
__attribute__((always_inline)) inline void head_body(const ScanArgs& a, int64_t h, float* dt, float* acs, float* m,
                                                     float* w_end) {
  const SsmParams& p = *a.p;
  const int64_t H = p.n_heads, P = p.head_dim, N = p.state_size, Q = a.Q;
  const int64_t g = h / (H / p.n_groups);
  const float A = p.A[h], Dh = p.D[h], bias = p.dt_bias[h];
  float* S = a.state + h * P * N;  // [P, N]
  for (int64_t c = 0; c < a.n_chunks; ++c) {
    const int64_t t0 = c * Q, L = std::min(Q, a.T - t0);
    // 1. discretisation and cumulative decay
    float run = 0.0f;
    for (int64_t i = 0; i < L; ++i) {
      dt[i] = clampf(softplus(a.dt_raw[(t0 + i) * a.lddt + h] + bias), p.dt_min, p.dt_max);
      run += dt[i] * A;
      acs[i] = run;
    }
    // 2. contribution of the incoming state: y[i, p] = exp(Acs[i]) Σ_n C[i, n] S[p, n]
    for (int64_t i = 0; i < L; ++i) {
      const float* ci = a.C + (t0 + i) * a.ldbc + g * N;
      const float decay = std::exp(acs[i]);
      float* yi = a.y + (t0 + i) * H * P + h * P;
      for (int64_t pp = 0; pp < P; ++pp) yi[pp] = decay * dot(ci, S + pp * N, N);
    }
    // 3. within the chunk: M[i, j] = CB[i, j] · exp(Acs[i] - Acs[j]) · dt[j], y[i] += Σ_j M[i, j] x[j]
    const float* blk = a.cb + (g * a.n_chunks + c) * Q * Q;
    for (int64_t i = 0; i < L; ++i) {
      for (int64_t j = 0; j <= i; ++j) m[i * Q + j] = blk[i * Q + j] * std::exp(acs[i] - acs[j]) * dt[j];
    }
    for (int64_t i = 0; i < L; ++i) {
      float* yi = a.y + (t0 + i) * H * P + h * P;
      for (int64_t j = 0; j <= i; ++j) {
        const float mij = m[i * Q + j];
        const float* xj = a.x + (t0 + j) * a.ldx + h * P;
        for (int64_t pp = 0; pp < P; ++pp) yi[pp] += mij * xj[pp];
      }
      const float* xi = a.x + (t0 + i) * a.ldx + h * P;
      for (int64_t pp = 0; pp < P; ++pp) yi[pp] += Dh * xi[pp];  // D skip
    }
    // 4. state passing: S = exp(Acs[L-1]) S + Σ_j exp(Acs[L-1] - Acs[j]) dt[j] x[j] ⊗ B[j]
    const float chunk_decay = std::exp(acs[L - 1]);
    for (int64_t j = 0; j < L; ++j) w_end[j] = std::exp(acs[L - 1] - acs[j]) * dt[j];
    for (int64_t pp = 0; pp < P; ++pp) {
      float* sp = S + pp * N;
      for (int64_t n = 0; n < N; ++n) sp[n] *= chunk_decay;
      for (int64_t j = 0; j < L; ++j) {
        const float coef = w_end[j] * a.x[(t0 + j) * a.ldx + h * P + pp];
        const float* bj = a.B + (t0 + j) * a.ldbc + g * N;
        for (int64_t n = 0; n < N; ++n) sp[n] += coef * bj[n];
      }
    }
  }
}

// The bodies compiled per instruction set, chosen by kernel_isa() (tests force every path).
void cb_block_scalar(const ScanArgs& a, int64_t g, int64_t c, float* blk) { cb_block_body(a, g, c, blk); }
void head_scalar(const ScanArgs& a, int64_t h, float* dt, float* acs, float* m, float* w) { head_body(a, h, dt, acs, m, w); }
#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) void cb_block_avx2(const ScanArgs& a, int64_t g, int64_t c, float* blk) {
  cb_block_body(a, g, c, blk);
}
__attribute__((target("avx2,fma"))) void head_avx2(const ScanArgs& a, int64_t h, float* dt, float* acs, float* m,
                                                   float* w) {
  head_body(a, h, dt, acs, m, w);
}
__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma"))) void cb_block_avx512(const ScanArgs& a, int64_t g,
                                                                                        int64_t c, float* blk) {
  cb_block_body(a, g, c, blk);
}
__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma"))) void head_avx512(const ScanArgs& a, int64_t h,
                                                                                    float* dt, float* acs, float* m,
                                                                                    float* w) {
  head_body(a, h, dt, acs, m, w);
}
#endif

}  // namespace

void ssd_chunk_scan(float* y, const float* x, int64_t ldx, const float* dt_raw, int64_t lddt,
                    const float* B, const float* C, int64_t ldbc, float* state, const SsmParams& p,
                    int64_t T, int64_t chunk_size, ThreadPool& pool) {
  const int64_t H = p.n_heads, G = p.n_groups;
  const int64_t Q = std::max<int64_t>(1, std::min(chunk_size, T));
  const int64_t n_chunks = (T + Q - 1) / Q;
  auto cb_block = cb_block_scalar;
  auto head = head_scalar;
#if defined(__x86_64__)
  if (kernel_isa() == KernelIsa::kAvx512) {
    cb_block = cb_block_avx512;
    head = head_avx512;
  } else if (kernel_isa() == KernelIsa::kAvx2) {
    cb_block = cb_block_avx2;
    head = head_avx2;
  }
#endif
  // C·Bᵀ is shared by the heads of a group: once per (group, chunk), before the per-head pass.
  std::vector<float> cb(static_cast<size_t>(G * n_chunks * Q * Q), 0.0f);
  const ScanArgs args{y, x, ldx, dt_raw, lddt, B, C, ldbc, state, &p, T, Q, n_chunks, cb.data()};
  pool.parallel_for(G * n_chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t job = begin; job < end; ++job) cb_block(args, job / n_chunks, job % n_chunks, cb.data() + job * Q * Q);
  });
  pool.parallel_for(H, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> dt(Q), acs(Q), m(Q * Q), w_end(Q);
    for (int64_t h = begin; h < end; ++h) head(args, h, dt.data(), acs.data(), m.data(), w_end.data());
  });
}

}  // namespace nemo::cpu
