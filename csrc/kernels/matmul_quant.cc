// matmul_quant: y[T, N] = x[T, K] · W[N, K]^T for block-quantized W (GGUF Q8_0, Q4_0, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K;
// the layouts are described in core/dtype.cc), read in place: no dequantized copy of W is ever made.
//
// This file is MatmulPrecision::kExact (kFast, with 8-bit activations: matmul_quant_fast.cc).
// Activations stay f32 (x is never quantized; kRelu2 applies relu(x)² to one L2-sized x tile at a
// time in a scratch buffer, in f32 as cpu::relu2). Each weight is dequantized to exactly the f32 value of
// convert_to_f32 / ggml's dequantize_row_* (see dtype.cc: at most one rounding per value) and enters
// an f32 multiply-add with x, so the only difference from the float64 product of x with the
// dequantized W is the f32 accumulation.
//
// Three paths, chosen per call from kernel_isa() (core/cpu_features.h):
//   scalar  plain C++: each W row is dequantized with convert_to_f32 into a per-task buffer (one row
//           at a time, 4 rows per group) and dotted with every x row with 4 partial sums.
//   avx2    8 floats per vector; avx512: 16 floats per vector. W blocks are unpacked into registers
//           inside the dot-product loop: bytes zero- or sign-extended to 32-bit lanes, bit fields
//           masked / shifted / merged, then either converted to f32 and scaled (one multiply or FMA)
//           or, on AVX-512 for the 4- and 5-bit types, looked up in a per-sub-block table of the 16
//           (32) possible values with vpermps (vpermt2ps). Every vector of VL consecutive weights has a
//           single scale (VL divides the 16 or 32 values of a sub-block).
//           The per-block scales are unpacked with a few vector ops (k4_scales, q6_scales).
//
// Decode throughput (4096 x 4096, T = 1, matmul_quant_selftest.cc --bench, Zen 5, shared machine):
// on AVX-512 one thread streams 12-15 GB/s of Q8_0/Q4_K blocks (BF16: ~28 GB/s); these kernels are
// bound by the unpacking work rather than memory bandwidth on one core, less so with 2 threads.
//
// SIMD structure (the loop nest is run_tiles of matmul_tiles.h; the tile kernel of both ISAs is
// matmul_quant_tile.inc over each ISA's block decoder):
//  * The work is split over W rows only; each task owns a range of groups of NR rows.
//  * A register tile computes TR tokens × NR W rows with TR*NR vector accumulators over the whole K:
//    each dequantized W vector is used for TR tokens, each x vector for NR rows.
//  * Decode (T <= SMALL): memory bound; each W row is streamed once, NRS rows at a time, with software
//    prefetch, all T tokens in the same tile.
//  * Prefill: x is cut into tiles of TB tokens that stay in L2 (kXTileBytes); for each tile, a task
//    walks its W row groups, and for each group all the TR-token slices of the tile: the group's
//    quantized rows (NR * row bytes, a few KB) stay in L1 while x streams from L2.
//
// Batch invariance: y[t, n] is bitwise the same whatever T is, wherever row t sits in the batch and
// however many threads run (on each path; paths differ from each other). Each (token, W row) has ONE
// vector accumulator that starts at +0 and takes one FMA per vector of VL weights, in a fixed order of
// the K index (block by block, within a block the order written in `block` below, the same for every
// tile shape), and is reduced by one fixed horizontal-sum tree. Tiles and tasks only decide which
// accumulators are computed together; K is never split. The scalar path computes each element by the
// same loop whatever T is.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#include "core/cpu_features.h"
#include "kernels/kernels.h"
#include "kernels/matmul_quant_fast.h"
#include "kernels/matmul_paths.h"
#include "kernels/matmul_tiles.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

// GCC 12's intrinsic headers self-initialise "undefined" vectors, which trips -Wuninitialized /
// -Wmaybe-uninitialized once inlined here (see matmul.cc). Not a real use of uninitialised data.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace nemo::cpu {
namespace {

// A range of row groups is worth handing to another thread once it holds about this much work
// (weight bytes plus 2 "bytes" per multiply-add).
int64_t group_grain(int64_t rows_per_group, int64_t row_bytes, int64_t K, int64_t T) {
  return row_group_grain(rows_per_group, row_bytes, 2 * K * T);  // 2 "bytes" per multiply-add
}

// ---- scalar path -------------------------------------------------------------------------------------

constexpr int kScalarRows = 4;

void matmul_quant_scalar(float* y, int64_t ldy, const float* x, int64_t ldx, const MatrixView& w,
                         int64_t T, ThreadPool& pool) {
  const int64_t N = w.rows, K = w.cols;
  const int64_t row_bytes = static_cast<int64_t>(dtype_row_bytes(w.dtype, K));
  const uint8_t* base = static_cast<const uint8_t*>(w.data);
  const int64_t groups = (N + kScalarRows - 1) / kScalarRows;
  pool.parallel_for(groups, group_grain(kScalarRows, row_bytes, K, T), [&](int64_t g0, int64_t g1) {
    std::vector<float> buf(static_cast<size_t>(kScalarRows * K));
    for (int64_t g = g0; g < g1; ++g) {
      const int64_t n0 = g * kScalarRows;
      const int64_t nr = std::min<int64_t>(kScalarRows, N - n0);
      for (int64_t r = 0; r < nr; ++r)
        convert_to_f32(buf.data() + r * K, base + (n0 + r) * row_bytes, w.dtype, static_cast<size_t>(K));
      for (int64_t t = 0; t < T; ++t) {
        const float* xr = x + t * ldx;
        for (int64_t r = 0; r < nr; ++r) {
          const float* wk = buf.data() + r * K;
          float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
          int64_t k = 0;
          for (; k + 4 <= K; k += 4) {  // K is a multiple of 32
            s0 += xr[k] * wk[k];
            s1 += xr[k + 1] * wk[k + 1];
            s2 += xr[k + 2] * wk[k + 2];
            s3 += xr[k + 3] * wk[k + 3];
          }
          y[t * ldy + n0 + r] = (s0 + s1) + (s2 + s3);
        }
      }
    }
  });
}

#if defined(__x86_64__)

// ---- the SIMD paths: kernels per ISA, the tile driver of matmul_tiles.h ------------------------------

// A tile kernel (TileFn<const float*>): out[i * rows + j] = sum over the kn blocks of x_i · W_j, for
// i < tokens (xr[i]: the token's x row) and j < rows (wr[j]: the row's first block); head is 0.
using QKernels = TileKernels<const float*>;

// Prefill x tiles: TB tokens of K floats in at most this many bytes (half of a Zen 4/5 L2).
constexpr int64_t kXTileBytes = int64_t{512} << 10;

// x as given (f32 rows), W rows whole (K is never sliced: one slice of nb blocks).
struct QuantSrc {
  const float* x;
  int64_t ldx;
  const uint8_t* base;
  int64_t row_bytes;
  void prepare(int64_t, int64_t) {}
  const float* x_row(int64_t t, int64_t) const { return x + t * ldx; }
  const uint8_t* w_row(int64_t n, int64_t) const { return base + n * row_bytes; }
};

void matmul_quant_simd(float* y, int64_t ldy, const float* x, int64_t ldx, const MatrixView& w,
                       int64_t T, ThreadPool& pool, const QKernels& ks) {
  const int64_t N = w.rows, K = w.cols;
  const int64_t nb = K / dtype_block_elems(w.dtype);
  TileWalk wk;
  wk.N = N;
  wk.ks = nb;
  wk.kc = nb;
  wk.tb = std::max<int64_t>(ks.tr, kXTileBytes / (K * 4) / ks.tr * ks.tr);
  wk.row_bytes = static_cast<int64_t>(dtype_row_bytes(w.dtype, K));
  wk.work = 2 * K;  // 2 "bytes" per multiply-add
  QuantSrc src{x, ldx, static_cast<const uint8_t*>(w.data), wk.row_bytes};
  run_tiles(y, ldy, T, ks, wk, src, pool);
}

// The software prefetch distance for the streaming tiles (bytes ahead in each row).
constexpr int64_t kPrefetch = 1024;

// ---- AVX2 + FMA + F16C ----------------------------------------------------------------------------------

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#endif

namespace avx2 {

using V = __m256;
using VI = __m256i;

// 8 bytes zero- or sign-extended to 32-bit lanes.
inline VI u8(const uint8_t* p) {
  return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
}
inline VI i8(const uint8_t* p) {
  return _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
}
inline V cvt(VI v) { return _mm256_cvtepi32_ps(v); }
inline VI c32(int v) { return _mm256_set1_epi32(v); }

inline float f16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);  // exact for every f16, subnormals included
}

// Q4_K / Q5_K: out[s] = d * sc_s, out[8 + s] = dmin * m_s (exact in f32).
inline void k4_scales(const uint8_t* b, float* out) {
  uint32_t u[4];
  k4_unpack(b, u);
  const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(u));
  _mm256_storeu_ps(out, _mm256_mul_ps(cvt(_mm256_cvtepu8_epi32(bytes)), _mm256_set1_ps(f16(b))));
  _mm256_storeu_ps(out + 8, _mm256_mul_ps(cvt(_mm256_cvtepu8_epi32(_mm_srli_si128(bytes, 8))),
                                          _mm256_set1_ps(f16(b + 2))));
}

// Q6_K: out[i] = d * scales[i] (exact in f32).
inline void q6_scales(const uint8_t* b, float* out) {
  const V d = _mm256_set1_ps(f16(b + 208));
  _mm256_storeu_ps(out, _mm256_mul_ps(cvt(i8(b + 192)), d));
  _mm256_storeu_ps(out + 8, _mm256_mul_ps(cvt(i8(b + 200)), d));
}

// acc[i][j] += x_i[k .. k+8) * w[j]
template <int TR, int NR>
inline void madd(V (&acc)[TR][NR], const float* const* xr, int64_t k, const V (&w)[NR]) {
#pragma GCC unroll 8
  for (int i = 0; i < TR; ++i) {
    const V xv = _mm256_loadu_ps(xr[i] + k);
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) acc[i][j] = _mm256_fmadd_ps(xv, w[j], acc[i][j]);
  }
}

// Q5_0 / Q5_1 (layouts in core/dtype.cc): as Q4_0, each 8-lane vector of codes takes its fifth bits
// from the block's 32-bit qh word (bit v for value v), then (q - 16) * d, or q * d + m in one FMA (q * d
// is exact, so this is the scalar value).
template <DType DT, int TR, int NR>
inline void block_q5(V (&acc)[TR][NR], const float* const* xr, int64_t k0, const uint8_t* const* b) {
  constexpr bool kMin = DT == DType::Q5_1;
  constexpr int64_t kQh = kMin ? 4 : 2;
  V w[NR], d[NR];
  [[maybe_unused]] V m[NR];
  VI h[NR];
  const VI lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
#pragma GCC unroll 8
  for (int j = 0; j < NR; ++j) {
    d[j] = _mm256_set1_ps(f16(b[j]));
    if constexpr (kMin) m[j] = _mm256_set1_ps(f16(b[j] + 2));
    uint32_t qh;
    std::memcpy(&qh, b[j] + kQh, 4);
    h[j] = _mm256_set1_epi32(static_cast<int>(qh));
  }
  auto value = [&](VI q, int j) {
    if constexpr (kMin) return _mm256_fmadd_ps(cvt(q), d[j], m[j]);
    else return _mm256_mul_ps(cvt(_mm256_sub_epi32(q, c32(16))), d[j]);
  };
#pragma GCC unroll 2
  for (int c = 0; c < 2; ++c) {
    VI v[NR];
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) {
      v[j] = u8(b[j] + kQh + 4 + 8 * c);
      const VI hb = _mm256_and_si256(_mm256_srlv_epi32(h[j], _mm256_add_epi32(lane, c32(8 * c))), c32(1));
      w[j] = value(_mm256_or_si256(_mm256_and_si256(v[j], c32(15)), _mm256_slli_epi32(hb, 4)), j);
    }
    madd(acc, xr, k0 + 8 * c, w);
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) {
      const VI hb = _mm256_and_si256(_mm256_srlv_epi32(h[j], _mm256_add_epi32(lane, c32(16 + 8 * c))), c32(1));
      w[j] = value(_mm256_or_si256(_mm256_srli_epi32(v[j], 4), _mm256_slli_epi32(hb, 4)), j);
    }
    madd(acc, xr, k0 + 16 + 8 * c, w);
  }
}

// One block of every row b[j], against x elements [k0, k0 + block). The order of the madd calls is
// the reduction order of every accumulator (the same for every tile shape).
template <DType DT, int TR, int NR>
inline void block(V (&acc)[TR][NR], const float* const* xr, int64_t k0, const uint8_t* const* b) {
  V w[NR];
  if constexpr (DT == DType::Q5_0 || DT == DType::Q5_1) {
    block_q5<DT, TR, NR>(acc, xr, k0, b);
  } else if constexpr (DT == DType::Q8_0) {
    V d[NR];
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) d[j] = _mm256_set1_ps(f16(b[j]));
#pragma GCC unroll 4
    for (int c = 0; c < 4; ++c) {
#pragma GCC unroll 8
      for (int j = 0; j < NR; ++j) w[j] = _mm256_mul_ps(cvt(i8(b[j] + 2 + 8 * c)), d[j]);
      madd(acc, xr, k0 + 8 * c, w);
    }
  } else if constexpr (DT == DType::Q4_0) {
    V d[NR];
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) d[j] = _mm256_set1_ps(f16(b[j]));
#pragma GCC unroll 2
    for (int c = 0; c < 2; ++c) {
      VI v[NR];
#pragma GCC unroll 8
      for (int j = 0; j < NR; ++j) {
        v[j] = u8(b[j] + 2 + 8 * c);
        w[j] = _mm256_mul_ps(cvt(_mm256_sub_epi32(_mm256_and_si256(v[j], c32(15)), c32(8))), d[j]);
      }
      madd(acc, xr, k0 + 8 * c, w);
#pragma GCC unroll 8
      for (int j = 0; j < NR; ++j)
        w[j] = _mm256_mul_ps(cvt(_mm256_sub_epi32(_mm256_srli_epi32(v[j], 4), c32(8))), d[j]);
      madd(acc, xr, k0 + 16 + 8 * c, w);
    }
  } else if constexpr (DT == DType::Q4_K || DT == DType::Q5_K) {
    constexpr bool kFive = DT == DType::Q5_K;
    float sm[NR][16];  // scales, then mins
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) k4_scales(b[j], sm[j]);
#pragma GCC unroll 4
    for (int g = 0; g < 4; ++g) {
#pragma GCC unroll 4
      for (int c = 0; c < 4; ++c) {  // 8 bytes of qs: values 64g + 8c .. (low) and 64g + 32 + 8c .. (high)
        VI v[NR];
        [[maybe_unused]] VI hb[NR];
#pragma GCC unroll 8
        for (int j = 0; j < NR; ++j) {
          v[j] = u8(b[j] + (kFive ? 48 : 16) + 32 * g + 8 * c);
          VI q = _mm256_and_si256(v[j], c32(15));
          if constexpr (kFive) {
            hb[j] = u8(b[j] + 16 + 8 * c);
            q = _mm256_or_si256(q, _mm256_slli_epi32(
                                       _mm256_and_si256(_mm256_srlv_epi32(hb[j], c32(2 * g)), c32(1)), 4));
          }
          w[j] = _mm256_fmsub_ps(cvt(q), _mm256_set1_ps(sm[j][2 * g]), _mm256_set1_ps(sm[j][8 + 2 * g]));
        }
        madd(acc, xr, k0 + 64 * g + 8 * c, w);
#pragma GCC unroll 8
        for (int j = 0; j < NR; ++j) {
          VI q = _mm256_srli_epi32(v[j], 4);
          if constexpr (kFive) {
            q = _mm256_or_si256(
                q, _mm256_slli_epi32(_mm256_and_si256(_mm256_srlv_epi32(hb[j], c32(2 * g + 1)), c32(1)), 4));
          }
          w[j] = _mm256_fmsub_ps(cvt(q), _mm256_set1_ps(sm[j][2 * g + 1]), _mm256_set1_ps(sm[j][9 + 2 * g]));
        }
        madd(acc, xr, k0 + 64 * g + 32 + 8 * c, w);
      }
    }
  } else {  // Q6_K
    float ds[NR][16];
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) q6_scales(b[j], ds[j]);
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) {
#pragma GCC unroll 4
      for (int c = 0; c < 4; ++c) {  // values 128h + 32s + 8c .. for s = 0..3
#pragma GCC unroll 4
        for (int s = 0; s < 4; ++s) {
#pragma GCC unroll 8
          for (int j = 0; j < NR; ++j) {
            const VI lq = u8(b[j] + 64 * h + 32 * (s & 1) + 8 * c);
            const VI hq = u8(b[j] + 128 + 32 * h + 8 * c);
            const VI lo = s < 2 ? _mm256_and_si256(lq, c32(15)) : _mm256_srli_epi32(lq, 4);
            const VI hi = _mm256_and_si256(_mm256_srlv_epi32(_mm256_slli_epi32(hq, 4), c32(2 * s)), c32(0x30));
            const VI q = _mm256_sub_epi32(_mm256_or_si256(lo, hi), c32(32));
            w[j] = _mm256_mul_ps(cvt(q), _mm256_set1_ps(ds[j][8 * h + 2 * s + c / 2]));
          }
          madd(acc, xr, k0 + 128 * h + 32 * s + 8 * c, w);
        }
      }
    }
  }
}

// The horizontal sum of v by one fixed tree.
inline float hsum(V v) {
  __m128 a = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  a = _mm_add_ps(a, _mm_movehl_ps(a, a));
  a = _mm_add_ss(a, _mm_movehdup_ps(a));
  return _mm_cvtss_f32(a);
}

// Prefill 4 tokens x 2 rows (8 accumulators, 16 ymm registers in all); decode up to 2 tokens x 4 rows.
template <DType DT>
struct Shape {
  static constexpr int tr = 4, nr = 2;     // prefill
  static constexpr int small = 2, nrs = 4;  // decode
};

inline V zero() { return _mm256_setzero_ps(); }

#include "kernels/matmul_quant_tile.inc"

}  // namespace avx2

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

// ---- AVX-512 ------------------------------------------------------------------------------------------

#if defined(__clang__)
#pragma clang attribute push(                                                               \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c"))), \
    apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")
#endif

namespace avx512 {

using V = __m512;
using VI = __m512i;

// 16 bytes zero- or sign-extended to 32-bit lanes.
inline VI u8(const uint8_t* p) {
  return _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
inline VI i8(const uint8_t* p) {
  return _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
inline V cvt(VI v) { return _mm512_cvtepi32_ps(v); }
inline VI c32(int v) { return _mm512_set1_epi32(v); }

inline float f16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);  // exact for every f16, subnormals included
}

// Q4_K / Q5_K: out[s] = d * sc_s, out[8 + s] = dmin * m_s (exact in f32).
inline void k4_scales(const uint8_t* b, float* out) {
  uint32_t u[4];
  k4_unpack(b, u);
  const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(u));
  const V dm = _mm512_insertf32x8(_mm512_set1_ps(f16(b)), _mm256_set1_ps(f16(b + 2)), 1);
  _mm512_storeu_ps(out, _mm512_mul_ps(cvt(_mm512_cvtepu8_epi32(bytes)), dm));
}

// Q6_K: out[i] = d * scales[i] (exact in f32).
inline void q6_scales(const uint8_t* b, float* out) {
  _mm512_storeu_ps(out, _mm512_mul_ps(cvt(i8(b + 192)), _mm512_set1_ps(f16(b + 208))));
}

// acc[i][j] += x_i[k .. k+16) * w[j]
template <int TR, int NR>
inline void madd(V (&acc)[TR][NR], const float* const* xr, int64_t k, const V (&w)[NR]) {
#pragma GCC unroll 8
  for (int i = 0; i < TR; ++i) {
    const V xv = _mm512_loadu_ps(xr[i] + k);
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_fmadd_ps(xv, w[j], acc[i][j]);
  }
}

// 0, 1, ..., 15 as floats: the codes of a 4-bit table.
inline V iota() { return _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15); }

// Bits 0-3 from a, bits 4-31 from b (a bitwise select by the mask 0x0F).
inline VI select_low4(VI a, VI b) { return _mm512_ternarylogic_epi32(c32(0x0F), a, b, 0xCA); }

// Q6_K: the 6-bit codes of sub-block part S (0..3) for 16 values, from the 16 ql bytes lq (low nibbles
// for S = 0, 1, high nibbles for S = 2, 3) and the 16 qh bytes hq (bits 2S, 2S+1 are the top bits).
template <int S>
inline VI q6_code(VI lq, VI hq) {
  const VI lo = S < 2 ? lq : _mm512_srli_epi32(lq, 4);
  const VI hs = S == 0 ? _mm512_slli_epi32(hq, 4)
                : S == 1 ? _mm512_slli_epi32(hq, 2)
                : S == 2 ? hq
                         : _mm512_srli_epi32(hq, 2);
  const VI q = select_low4(lo, hs);  // bits 4-5 now hold the two top bits
  return S == 3 ? q : _mm512_and_si512(q, c32(0x3F));
}

template <int S, int TR, int NR>
inline void q6_part(V (&acc)[TR][NR], const float* const* xr, int64_t k, const VI (&lq)[NR],
                    const VI (&hq)[NR], const float (&ds)[NR][16], int sc) {
  V w[NR];
#pragma GCC unroll 8
  for (int j = 0; j < NR; ++j)
    w[j] = _mm512_mul_ps(cvt(_mm512_sub_epi32(q6_code<S>(lq[j], hq[j]), c32(32))),
                         _mm512_set1_ps(ds[j][sc]));
  madd(acc, xr, k, w);
}

// One block of every row b[j], against x elements [k0, k0 + block). The order of the madd calls is
// the reduction order of every accumulator (the same for every tile shape).
//
// The 4-bit types look their values up: for each (sub-)block, the 16 possible values of a 4-bit code
// (q - 8) * d, or sc_s * q - m_s (FMA, rounded once) are put in one vector, and vpermps picks them by
// the nibbles (it reads the low 4 bits of each lane). Q5_K does the same with 32 values in two vectors
// (vpermt2ps, 5-bit index). These are exactly the values of the scalar formula.
template <DType DT, int TR, int NR>
inline void block_q5(V (&acc)[TR][NR], const float* const* xr, int64_t k0, const uint8_t* const* b);

template <DType DT, int TR, int NR>
inline void block(V (&acc)[TR][NR], const float* const* xr, int64_t k0, const uint8_t* const* b) {
  V w[NR];
  if constexpr (DT == DType::Q5_0 || DT == DType::Q5_1) {
    block_q5<DT, TR, NR>(acc, xr, k0, b);
  } else if constexpr (DT == DType::Q8_0) {
    V d[NR];
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) d[j] = _mm512_set1_ps(f16(b[j]));
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) w[j] = _mm512_mul_ps(cvt(i8(b[j] + 2)), d[j]);
    madd(acc, xr, k0, w);
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) w[j] = _mm512_mul_ps(cvt(i8(b[j] + 18)), d[j]);
    madd(acc, xr, k0 + 16, w);
  } else if constexpr (DT == DType::Q4_0) {
    V tbl[NR];
    VI v[NR];
    const V m8 = _mm512_sub_ps(iota(), _mm512_set1_ps(8.0f));
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) {
      tbl[j] = _mm512_mul_ps(m8, _mm512_set1_ps(f16(b[j])));
      v[j] = u8(b[j] + 2);
      w[j] = _mm512_permutexvar_ps(v[j], tbl[j]);
    }
    madd(acc, xr, k0, w);
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) w[j] = _mm512_permutexvar_ps(_mm512_srli_epi32(v[j], 4), tbl[j]);
    madd(acc, xr, k0 + 16, w);
  } else if constexpr (DT == DType::Q4_K || DT == DType::Q5_K) {
    constexpr bool kFive = DT == DType::Q5_K;
    constexpr int64_t kQs = kFive ? 48 : 16;
    float sm[NR][16];  // scales, then mins
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) k4_scales(b[j], sm[j]);
#pragma GCC unroll 8
    for (int s = 0; s < 8; ++s) {  // sub-block s: values 32s .. 32s + 31
      V t0[NR];
      [[maybe_unused]] V t1[NR];
#pragma GCC unroll 8
      for (int j = 0; j < NR; ++j) {
        const V sc = _mm512_set1_ps(sm[j][s]), mn = _mm512_set1_ps(sm[j][8 + s]);
        t0[j] = _mm512_fmsub_ps(iota(), sc, mn);
        if constexpr (kFive) t1[j] = _mm512_fmsub_ps(_mm512_add_ps(iota(), _mm512_set1_ps(16.0f)), sc, mn);
      }
#pragma GCC unroll 2
      for (int c = 0; c < 2; ++c) {
#pragma GCC unroll 8
        for (int j = 0; j < NR; ++j) {
          VI q = u8(b[j] + kQs + 32 * (s >> 1) + 16 * c);
          if (s & 1) q = _mm512_srli_epi32(q, 4);
          if constexpr (kFive) {
            // Bit s of qh[l] to bit 4 of the index.
            const VI hq = u8(b[j] + 16 + 16 * c);
            const VI hs = _mm512_srlv_epi32(_mm512_slli_epi32(hq, 4), _mm512_set1_epi32(s));
            w[j] = _mm512_permutex2var_ps(t0[j], select_low4(q, hs), t1[j]);
          } else {
            w[j] = _mm512_permutexvar_ps(q, t0[j]);
          }
        }
        madd(acc, xr, k0 + 32 * s + 16 * c, w);
      }
    }
  } else {  // Q6_K
    float ds[NR][16];
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) q6_scales(b[j], ds[j]);
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) {
#pragma GCC unroll 2
      for (int c = 0; c < 2; ++c) {  // values 128h + 32S + 16c .. for S = 0..3
        VI l0[NR], l1[NR], hq[NR];
#pragma GCC unroll 8
        for (int j = 0; j < NR; ++j) {
          l0[j] = u8(b[j] + 64 * h + 16 * c);
          l1[j] = u8(b[j] + 64 * h + 32 + 16 * c);
          hq[j] = u8(b[j] + 128 + 32 * h + 16 * c);
        }
        const int64_t k = k0 + 128 * h + 16 * c;
        q6_part<0>(acc, xr, k, l0, hq, ds, 8 * h + c);
        q6_part<1>(acc, xr, k + 32, l1, hq, ds, 8 * h + 2 + c);
        q6_part<2>(acc, xr, k + 64, l0, hq, ds, 8 * h + 4 + c);
        q6_part<3>(acc, xr, k + 96, l1, hq, ds, 8 * h + 6 + c);
      }
    }
  }
}

// Q5_0 / Q5_1: 32 values per block, looked up like Q4_0 but in two tables (codes 0-15 and 16-31) by
// vpermt2ps with a 5-bit index: the nibble, and bit 4 from the block's qh word (bit v for value v).
// Table entries are (q - 16) * d (exact) or q * d + m (one FMA: q * d is exact), the scalar values.
template <DType DT, int TR, int NR>
inline void block_q5(V (&acc)[TR][NR], const float* const* xr, int64_t k0, const uint8_t* const* b) {
  constexpr bool kMin = DT == DType::Q5_1;
  constexpr int64_t kQh = kMin ? 4 : 2;
  V w[NR], t0[NR], t1[NR];
  VI v[NR], h[NR];
  const VI lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const V hi16 = _mm512_add_ps(iota(), _mm512_set1_ps(16.0f));
#pragma GCC unroll 8
  for (int j = 0; j < NR; ++j) {
    const V d = _mm512_set1_ps(f16(b[j]));
    if constexpr (kMin) {
      const V m = _mm512_set1_ps(f16(b[j] + 2));
      t0[j] = _mm512_fmadd_ps(iota(), d, m);
      t1[j] = _mm512_fmadd_ps(hi16, d, m);
    } else {
      t0[j] = _mm512_mul_ps(_mm512_sub_ps(iota(), _mm512_set1_ps(16.0f)), d);
      t1[j] = _mm512_mul_ps(iota(), d);
    }
    uint32_t qh;
    std::memcpy(&qh, b[j] + kQh, 4);
    h[j] = _mm512_set1_epi32(static_cast<int>(qh));
    v[j] = u8(b[j] + kQh + 4);
    // Bit 4 of lane l: bit l of qh (values 0-15).
    const VI hs = _mm512_srlv_epi32(_mm512_slli_epi32(h[j], 4), lane);
    w[j] = _mm512_permutex2var_ps(t0[j], select_low4(v[j], hs), t1[j]);
  }
  madd(acc, xr, k0, w);
#pragma GCC unroll 8
  for (int j = 0; j < NR; ++j) {
    // Bit 4 of lane l: bit 16 + l of qh (values 16-31).
    const VI hs = _mm512_srlv_epi32(h[j], _mm512_add_epi32(lane, c32(12)));
    w[j] = _mm512_permutex2var_ps(t0[j], select_low4(_mm512_srli_epi32(v[j], 4), hs), t1[j]);
  }
  madd(acc, xr, k0 + 16, w);
}

// The horizontal sum of v by one fixed tree.
inline float hsum(V v) {
  const __m256 a = _mm256_add_ps(_mm512_castps512_ps256(v),
                                 _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
  __m128 b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  b = _mm_add_ps(b, _mm_movehl_ps(b, b));
  b = _mm_add_ss(b, _mm_movehdup_ps(b));
  return _mm_cvtss_f32(b);
}

inline V zero() { return _mm512_setzero_ps(); }

// Register tiles (TR * NR accumulators of the 32 zmm registers), chosen by measurement on Zen 5:
// prefill 6 tokens x 4 rows for Q8_0 and Q6_K, 4 x 4 for the table-lookup types (their tables take
// registers too); decode (up to 4 tokens) streams 4 rows at a time.
template <DType DT>
struct Shape {
  static constexpr bool kTables = DT == DType::Q4_0 || DT == DType::Q4_K || DT == DType::Q5_K ||
                                  DT == DType::Q5_0 || DT == DType::Q5_1;
  static constexpr int tr = kTables ? 4 : 6, nr = 4;  // prefill
  static constexpr int small = 4, nrs = 4;            // decode
};

#include "kernels/matmul_quant_tile.inc"

}  // namespace avx512

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

template <DType DT>
const QKernels& simd_kernels(KernelIsa isa) {
  static const QKernels k512 = avx512::kernels<DT>();
  static const QKernels k2 = avx2::kernels<DT>();
  return isa == KernelIsa::kAvx512 ? k512 : k2;
}

const QKernels& simd_kernels(DType dt, KernelIsa isa) {
  switch (dt) {
    case DType::Q8_0: return simd_kernels<DType::Q8_0>(isa);
    case DType::Q4_0: return simd_kernels<DType::Q4_0>(isa);
    case DType::Q5_0: return simd_kernels<DType::Q5_0>(isa);
    case DType::Q5_1: return simd_kernels<DType::Q5_1>(isa);
    case DType::Q4_K: return simd_kernels<DType::Q4_K>(isa);
    case DType::Q5_K: return simd_kernels<DType::Q5_K>(isa);
    default: return simd_kernels<DType::Q6_K>(isa);
  }
}

#endif  // __x86_64__

// kExact: f32 x as given.
void matmul_quant_exact(float* y, int64_t ldy, const float* x, int64_t ldx, const MatrixView& w,
                        int64_t T, ThreadPool& pool) {
#if defined(__x86_64__)
  const KernelIsa isa = kernel_isa();
  if (isa != KernelIsa::kScalar) {
    matmul_quant_simd(y, ldy, x, ldx, w, T, pool, simd_kernels(w.dtype, isa));
    return;
  }
#endif
#if defined(__aarch64__)
  if (kernel_isa() == KernelIsa::kNeon && matmul_quant_neon(y, ldy, x, ldx, w, T, pool)) return;
#endif
  matmul_quant_scalar(y, ldy, x, ldx, w, T, pool);
}

}  // namespace

void matmul_quant(float* y, int64_t ldy, const float* x, int64_t ldx, const MatrixView& w, int64_t T,
                  ThreadPool& pool, MatmulPrecision precision, MatmulInput input) {
  const int64_t N = w.rows, K = w.cols;
  if (T <= 0 || N <= 0) return;
  if (K <= 0) {
    for (int64_t t = 0; t < T; ++t) std::fill(y + t * ldy, y + t * ldy + N, 0.0f);
    return;
  }
  // 8-bit activations (matmul_quant_fast.cc); types without that path compute as kExact.
  if (precision == MatmulPrecision::kFast && matmul_quant_fast(y, ldy, x, ldx, w, T, pool, input)) return;
  if (input == MatmulInput::kRelu2) {
    // relu(x)² one x tile at a time (an L2-sized scratch, not a [T, K] copy); the product is batch
    // invariant, so cutting T into tiles changes no bit.
    const int64_t TB = std::max<int64_t>(1, (int64_t{512} << 10) / (K * 4));
    thread_local std::vector<float> act;
    act.resize(static_cast<size_t>(std::min(T, TB) * K));
    for (int64_t t0 = 0; t0 < T; t0 += TB) {
      const int64_t tn = std::min(TB, T - t0);
      for (int64_t t = 0; t < tn; ++t) {
        const float* xr = x + (t0 + t) * ldx;
        float* ar = act.data() + t * K;
        for (int64_t k = 0; k < K; ++k) {
          const float v = std::max(xr[k], 0.0f);
          ar[k] = v * v;
        }
      }
      matmul_quant_exact(y + t0 * ldy, ldy, act.data(), K, w, tn, pool);
    }
    return;
  }
  matmul_quant_exact(y, ldy, x, ldx, w, T, pool);
}

}  // namespace nemo::cpu
