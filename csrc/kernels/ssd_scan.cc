// Mamba-2 chunked SSD scan for prompts (docs/architecture.md §5.2), with the within-chunk work done as
// small dense products (the SSD "matrix" form of mamba_ssm's ssd_minimal, one head at a time).
//
// Per chunk of L tokens, group g and head h of the group:
//   dt[i] = clamp(softplus(dt_raw[i] + dt_bias)),  a[i] = Σ_{k<=i} dt[k]·A        (cumulative decay)
//   CB    = C · Bᵀ                                           [L x L], once per (group, chunk)
//   M     = CB[i, j] · exp(a[i] - a[j]) · dt[j]  for j <= i, 0 above; D added on the diagonal
//   Y     = M · X  +  diag(exp(a)) · (C · S)                  [L x P]; S is the state entering the chunk
//   S     = exp(a[L-1]) · S  +  Bᵀ · (w ⊙ X),  w[j] = exp(a[L-1] - a[j]) · dt[j]
// The state is kept transposed, S[n, p] ([N x P]), while a head runs, so all four products have the
// same form: out[m x n] = A[m x k] · B[k x n], B rows contiguous, the n side in whole vectors. One
// register-tiled micro-kernel serves them all. exp(a[i] - a[j]) is only taken for j <= i, where the
// argument is <= 0, so nothing overflows however strong the decay over a chunk.
//
// Threads: the chunks go in waves; in a wave, Bᵀ and C·Bᵀ are computed per (group, chunk) in
// parallel, then the heads run in parallel, each over the wave's chunks in order. Every output
// value is computed by the same operations in the same order whatever the thread count.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#include "core/cpu_features.h"
#include "kernels/kernels.h"
#include "kernels/math.h"

namespace nemo::cpu {
namespace {

// The vector types of the paths: one AVX-512 register, one AVX2 register, and for the portable
// ("scalar") path four floats, which the compiler maps to SSE, NEON or plain scalar code.
typedef float f32x16 __attribute__((vector_size(64)));
typedef float f32x8 __attribute__((vector_size(32)));
typedef float f32x4 __attribute__((vector_size(16)));
typedef int32_t i32x16 __attribute__((vector_size(64)));
typedef int32_t i32x8 __attribute__((vector_size(32)));
typedef int32_t i32x4 __attribute__((vector_size(16)));

// Operand widths are padded to kPad floats (the widest vector), so tiles never need masks.
constexpr int64_t kPad = 16;
inline int64_t pad(int64_t n) { return (n + kPad - 1) / kPad * kPad; }

template <class V>
constexpr int lanes() {
  return static_cast<int>(sizeof(V) / sizeof(float));
}

template <class V>
__attribute__((always_inline)) inline V load(const float* p) {
  V v;
  std::memcpy(&v, p, sizeof(V));
  return v;
}

template <class V>
__attribute__((always_inline)) inline void store(float* p, V v) {
  std::memcpy(p, &v, sizeof(V));
}

// softmax_exp (kernels/math.h) on a whole vector, lane by lane.
template <class V>
__attribute__((always_inline)) inline V vexp(V x) {
  using I = std::conditional_t<lanes<V>() == 16, i32x16,
                               std::conditional_t<lanes<V>() == 8, i32x8, i32x4>>;
  return softmax_exp_vec<V, I>(x);
}

// How a product's result is stored: out = beta·out + rs[row]·acc when `accumulate`, else rs[row]·acc
// (rs == nullptr: 1).
struct Epilogue {
  bool accumulate;
  float beta;
  const float* rs;
};

// One MR x (NV vectors) tile: out[r, :] (+)= Σ_{k<K} A[r, k] · B[k, :]. The sum runs over k in order
// for every element, so the result does not depend on the tile shape.
template <class V, int MR, int NV>
__attribute__((always_inline)) inline void tile(int64_t K, const float* A, int64_t lda,
                                                const float* B, int64_t ldb, float* out,
                                                int64_t ldo, const Epilogue& e, int64_t row0) {
  constexpr int W = lanes<V>();
  V acc[MR][NV];
#pragma GCC unroll 24
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = V{} + 0.0f;
  for (int64_t k = 0; k < K; ++k) {
    V b[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) b[v] = load<V>(B + k * ldb + v * W);
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const float a = A[r * lda + k];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[r][v] += a * b[v];
    }
  }
  for (int r = 0; r < MR; ++r) {
    const float s = e.rs ? e.rs[row0 + r] : 1.0f;
    float* o = out + r * ldo;
    for (int v = 0; v < NV; ++v) {
      V res = e.rs ? acc[r][v] * s : acc[r][v];
      if (e.accumulate) res = e.beta * load<V>(o + v * W) + res;
      store<V>(o + v * W, res);
    }
  }
}

// Register budget per path: MR rows x NV vectors of accumulators, plus NV loaded B vectors.
template <class V>
struct Tiling;
template <>
struct Tiling<f32x16> {  // 24 + 4 + 1 of the 32 zmm registers
  static constexpr int MR = 6, NV = 4;
};
template <>
struct Tiling<f32x8> {  // 12 + 2 + 1 of the 16 ymm registers
  static constexpr int MR = 6, NV = 2;
};
template <>
struct Tiling<f32x4> {  // 8 + 2 + 1: fits the 16 SSE registers
  static constexpr int MR = 4, NV = 2;
};

template <class V, int MR>
__attribute__((always_inline)) inline void tile_row(int64_t nv, int64_t K, const float* A,
                                                    int64_t lda, const float* B, int64_t ldb,
                                                    float* out, int64_t ldo, const Epilogue& e,
                                                    int64_t row0) {
  switch (nv) {
    case 1: tile<V, MR, 1>(K, A, lda, B, ldb, out, ldo, e, row0); break;
    case 2: if constexpr (Tiling<V>::NV >= 2) tile<V, MR, 2>(K, A, lda, B, ldb, out, ldo, e, row0); break;
    case 3: if constexpr (Tiling<V>::NV >= 3) tile<V, MR, 3>(K, A, lda, B, ldb, out, ldo, e, row0); break;
    case 4: if constexpr (Tiling<V>::NV >= 4) tile<V, MR, 4>(K, A, lda, B, ldb, out, ldo, e, row0); break;
  }
}

// out[m x n] (+)= A[m x K] · B[K x n], n a multiple of kPad. `lower`: row i only needs
// k < i + 1 and columns j < i + 1 (A's entries above the diagonal are zero, or the caller ignores
// those outputs); whole tiles past that are skipped.
template <class V>
__attribute__((always_inline)) inline void gemm(int64_t m, int64_t n, int64_t K, const float* A,
                                                int64_t lda, const float* B, int64_t ldb,
                                                float* out, int64_t ldo, const Epilogue& e,
                                                bool lower_k, bool lower_n) {
  constexpr int W = lanes<V>(), MR = Tiling<V>::MR, NV = Tiling<V>::NV;
  for (int64_t i0 = 0; i0 < m; i0 += MR) {
    const int64_t rows = std::min<int64_t>(MR, m - i0);
    const int64_t kk = lower_k ? std::min(K, i0 + rows) : K;
    const int64_t nn = lower_n ? std::min(n, (i0 + rows + W - 1) / W * W) : n;
    const float* a = A + i0 * lda;
    float* o = out + i0 * ldo;
    for (int64_t j0 = 0; j0 < nn; j0 += NV * W) {
      const int64_t nv = std::min<int64_t>(NV, (nn - j0) / W);
      switch (rows) {
        case 1: tile_row<V, 1>(nv, kk, a, lda, B + j0, ldb, o + j0, ldo, e, i0); break;
        case 2: tile_row<V, 2>(nv, kk, a, lda, B + j0, ldb, o + j0, ldo, e, i0); break;
        case 3: tile_row<V, 3>(nv, kk, a, lda, B + j0, ldb, o + j0, ldo, e, i0); break;
        case 4: tile_row<V, 4>(nv, kk, a, lda, B + j0, ldb, o + j0, ldo, e, i0); break;
        case 5: if constexpr (MR >= 5) tile_row<V, 5>(nv, kk, a, lda, B + j0, ldb, o + j0, ldo, e, i0); break;
        case 6: if constexpr (MR >= 6) tile_row<V, 6>(nv, kk, a, lda, B + j0, ldb, o + j0, ldo, e, i0); break;
      }
    }
  }
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
  int64_t T, Q, Qp, Pp;  // chunk length, and the padded widths of chunk and head
};

// Per (group, chunk) of a wave: Bᵀ [N x Qp] (zero past L), C·Bᵀ [Qp x Qp] (rows < L; columns
// j <= i hold C[i]·B[j], the rest is unused) and the chunk's C rows copied together, [Qp x N] (rows
// < L). In the model B and C are columns of the conv output (a row stride of conv_dim floats, 16 KiB
// at the 330M shape), so each head's C·S would otherwise read its A rows one page apart; the copy is
// made once per group and read by every head of it. Same values, same products: no bit changes.
struct GroupChunk {
  float* bt;
  float* cb;
  float* cc;
};

template <class V>
__attribute__((always_inline)) inline void group_chunk_body(const ScanArgs& a, int64_t g, int64_t c,
                                                            const GroupChunk& gc) {
  const int64_t N = a.p->state_size, Qp = a.Qp;
  const int64_t t0 = c * a.Q, L = std::min(a.Q, a.T - t0);
  const float* Bc = a.B + t0 * a.ldbc + g * N;
  const float* Cc = a.C + t0 * a.ldbc + g * N;
  for (int64_t n = 0; n < N; ++n) {
    float* row = gc.bt + n * Qp;
    for (int64_t j = 0; j < L; ++j) row[j] = Bc[j * a.ldbc + n];
    for (int64_t j = L; j < Qp; ++j) row[j] = 0.0f;
  }
  for (int64_t i = 0; i < L; ++i) std::memcpy(gc.cc + i * N, Cc + i * a.ldbc, N * sizeof(float));
  gemm<V>(L, Qp, N, gc.cc, N, gc.bt, Qp, gc.cb, Qp, Epilogue{false, 0.0f, nullptr}, false, true);
}

// Scratch of one thread running heads.
struct HeadScratch {
  float* st;  // [N x Pp] the head's state, transposed
  float* xp;  // [Qp x Pp] the chunk's x
  float* xw;  // [Qp x Pp] w[j] · x[j]
  float* m;   // [Qp x Qp]
  float* yp;  // [Qp x Pp]
  float* dt;  // [Qp]
  float* acs; // [Qp]
  float* ea;  // [Qp] exp(a[i])
  float* w;   // [Qp]
};

// One head over the chunks [c0, c1) of a wave; gcs[(g * wave + c - c0)] holds the group's products.
template <class V>
__attribute__((always_inline)) inline void head_body(const ScanArgs& a, int64_t h, int64_t c0,
                                                     int64_t c1, const GroupChunk* gcs,
                                                     const HeadScratch& s) {
  constexpr int W = lanes<V>();
  const SsmParams& p = *a.p;
  const int64_t H = p.n_heads, P = p.head_dim, N = p.state_size, Q = a.Q, Qp = a.Qp, Pp = a.Pp;
  const int64_t g = h / (H / p.n_groups);
  const float A = p.A[h], Dh = p.D[h], bias = p.dt_bias[h];
  float* S = a.state + h * P * N;  // [P, N]
  for (int64_t n = 0; n < N; ++n)
    for (int64_t pp = 0; pp < P; ++pp) s.st[n * Pp + pp] = S[pp * N + n];
  for (int64_t c = c0; c < c1; ++c) {
    const GroupChunk& gc = gcs[g * (c1 - c0) + (c - c0)];
    const int64_t t0 = c * Q, L = std::min(Q, a.T - t0);
    // discretisation and cumulative decay
    float run = 0.0f;
    for (int64_t i = 0; i < L; ++i) {
      s.dt[i] = clampf(softplus(a.dt_raw[(t0 + i) * a.lddt + h] + bias), p.dt_min, p.dt_max);
      run += s.dt[i] * A;
      s.acs[i] = run;
      s.ea[i] = std::exp(run);
    }
    for (int64_t j = 0; j < L; ++j) s.w[j] = std::exp(run - s.acs[j]) * s.dt[j];
    for (int64_t j = 0; j < L; ++j) {
      const float* xj = a.x + (t0 + j) * a.ldx + h * P;
      float* xr = s.xp + j * Pp;
      float* wr = s.xw + j * Pp;
      for (int64_t pp = 0; pp < P; ++pp) {
        xr[pp] = xj[pp];
        wr[pp] = s.w[j] * xj[pp];
      }
    }
    // M = CB ⊙ exp(a[i] - a[j]) · dt[j] on and below the diagonal, D on the diagonal.
    for (int64_t i = 0; i < L; ++i) {
      const float* cbr = gc.cb + i * Qp;
      float* mr = s.m + i * Qp;
      const float ai = s.acs[i];
      int64_t j = 0;
      for (; j <= i; j += W) {
        const V e = vexp<V>(ai - load<V>(s.acs + j));
        store<V>(mr + j, load<V>(cbr + j) * e * load<V>(s.dt + j));
      }
      (void)j;
      // Zero up to L: a row tile of M · X reads up to its last row's diagonal.
      for (int64_t z = i + 1; z < L; ++z) mr[z] = 0.0f;
      mr[i] += Dh;
    }
    // Y = M · X (x[j] for j <= i), then += exp(a[i]) · C[i] · S
    gemm<V>(L, Pp, L, s.m, Qp, s.xp, Pp, s.yp, Pp, Epilogue{false, 0.0f, nullptr}, true, false);
    gemm<V>(L, Pp, N, gc.cc, N, s.st, Pp, s.yp, Pp,
            Epilogue{true, 1.0f, s.ea}, false, false);
    for (int64_t i = 0; i < L; ++i) std::memcpy(a.y + (t0 + i) * H * P + h * P, s.yp + i * Pp, P * 4);
    // S = exp(a[L-1]) · S + Bᵀ · (w ⊙ X)
    gemm<V>(N, Pp, L, gc.bt, Qp, s.xw, Pp, s.st, Pp, Epilogue{true, s.ea[L - 1], nullptr}, false,
            false);
  }
  for (int64_t pp = 0; pp < P; ++pp)
    for (int64_t n = 0; n < N; ++n) S[pp * N + n] = s.st[n * Pp + pp];
}

// The bodies compiled per instruction set, chosen by kernel_isa() (tests force every path).
using GroupChunkFn = void (*)(const ScanArgs&, int64_t, int64_t, const GroupChunk&);
using HeadFn = void (*)(const ScanArgs&, int64_t, int64_t, int64_t, const GroupChunk*,
                        const HeadScratch&);

void group_chunk_scalar(const ScanArgs& a, int64_t g, int64_t c, const GroupChunk& gc) {
  group_chunk_body<f32x4>(a, g, c, gc);
}
void head_scalar(const ScanArgs& a, int64_t h, int64_t c0, int64_t c1, const GroupChunk* gcs,
                 const HeadScratch& s) {
  head_body<f32x4>(a, h, c0, c1, gcs, s);
}
#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) void group_chunk_avx2(const ScanArgs& a, int64_t g, int64_t c,
                                                          const GroupChunk& gc) {
  group_chunk_body<f32x8>(a, g, c, gc);
}
__attribute__((target("avx2,fma"))) void head_avx2(const ScanArgs& a, int64_t h, int64_t c0,
                                                   int64_t c1, const GroupChunk* gcs,
                                                   const HeadScratch& s) {
  head_body<f32x8>(a, h, c0, c1, gcs, s);
}
__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma"))) void group_chunk_avx512(
    const ScanArgs& a, int64_t g, int64_t c, const GroupChunk& gc) {
  group_chunk_body<f32x16>(a, g, c, gc);
}
__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma"))) void head_avx512(
    const ScanArgs& a, int64_t h, int64_t c0, int64_t c1, const GroupChunk* gcs,
    const HeadScratch& s) {
  head_body<f32x16>(a, h, c0, c1, gcs, s);
}
#endif

// Floats of per-(group, chunk) products a wave may hold (4 MiB: 2 chunks of 128 for 8 groups of 128).
constexpr int64_t kWaveFloats = int64_t{1} << 20;

}  // namespace

void ssd_chunk_scan(float* y, const float* x, int64_t ldx, const float* dt_raw, int64_t lddt,
                    const float* B, const float* C, int64_t ldbc, float* state, const SsmParams& p,
                    int64_t T, int64_t chunk_size, ThreadPool& pool) {
  if (T <= 0) return;
  const int64_t H = p.n_heads, G = p.n_groups, P = p.head_dim, N = p.state_size;
  const int64_t Q = std::max<int64_t>(1, std::min(chunk_size, T));
  const int64_t n_chunks = (T + Q - 1) / Q;
  const int64_t Qp = pad(Q), Pp = pad(P);
  GroupChunkFn group_chunk = group_chunk_scalar;
  HeadFn head = head_scalar;
#if defined(__x86_64__)
  if (kernel_isa() == KernelIsa::kAvx512) {
    group_chunk = group_chunk_avx512;
    head = head_avx512;
  } else if (kernel_isa() == KernelIsa::kAvx2) {
    group_chunk = group_chunk_avx2;
    head = head_avx2;
  }
#endif
  const ScanArgs args{y, x, ldx, dt_raw, lddt, B, C, ldbc, state, &p, T, Q, Qp, Pp};
  const int64_t per_gc = (N + Qp) * Qp + Qp * N;
  const int64_t wave = std::clamp<int64_t>(kWaveFloats / (G * per_gc), 1, n_chunks);
  std::vector<float> gc_buf(static_cast<size_t>(G * wave * per_gc));
  std::vector<GroupChunk> gcs(static_cast<size_t>(G * wave));
  for (int64_t c0 = 0; c0 < n_chunks; c0 += wave) {
    const int64_t c1 = std::min(n_chunks, c0 + wave), nw = c1 - c0;
    for (int64_t i = 0; i < G * nw; ++i) {
      float* f = gc_buf.data() + i * per_gc;
      gcs[i] = GroupChunk{f, f + N * Qp, f + N * Qp + Qp * Qp};
    }
    pool.parallel_for(G * nw, 1, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) group_chunk(args, i / nw, c0 + i % nw, gcs[i]);
    });
    pool.parallel_for(H, 1, [&](int64_t begin, int64_t end) {
      // Zeroed once: the padding columns of x and w·x stay zero, so the state's do too.
      std::vector<float> buf(static_cast<size_t>(N * Pp + 3 * Qp * Pp + Qp * Qp + 4 * Qp), 0.0f);
      float* f = buf.data();
      HeadScratch s;
      s.st = f, f += N * Pp;
      s.xp = f, f += Qp * Pp;
      s.xw = f, f += Qp * Pp;
      s.yp = f, f += Qp * Pp;
      s.m = f, f += Qp * Qp;
      s.dt = f, f += Qp;
      s.acs = f, f += Qp;
      s.ea = f, f += Qp;
      s.w = f;
      for (int64_t h = begin; h < end; ++h) head(args, h, c0, c1, gcs.data(), s);
    });
  }
}

}  // namespace nemo::cpu
