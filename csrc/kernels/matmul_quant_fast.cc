// matmul_quant with MatmulPrecision::kFast: 8-bit activations and integer dot products, for Q8_0,
// Q4_0, Q5_0, Q5_1, Q4_K, Q5_K and Q6_K (every block-quantized type; none computes as kExact on x86).
// Q5_0 / Q5_1 have their own tile step (matmul_quant_fast_q5.inc: the code offset 16, or Q5_1's min
// times the block's x sum, through the integer sums as Q4_0's offset 8) on the ymm paths; on vnni512
// they take Q8_0's scheme below (codes unpacked to bytes).
//
// Activation format (made once per call and x tile, shared by every path; plain C++, or AVX-512
// code giving the same bytes):
//   Each x row (relu(x)² first for kRelu2, in f32) is cut into blocks of the weight's block size (32
//   for Q8_0 / Q4_0, 256 for the K-quants). Per block: amax = max |x|, d = amax / 127,
//   q = round-to-nearest-even(x * (127 / amax)) in [-127, 127] (all f32 operations; amax = 0 gives
//   q = 0, d = 0). The K-quants also keep v = d * (sum of q) per 16 values, for the terms that do not
//   depend on the individual codes (Q4_K / Q5_K mins, Q6_K's code offset 32).
//   This is the semantics of llama.cpp's q8_0 / q8_K (their rounding details differ).
//
// Products, per block of one (token, W row): the weight codes are used unsigned (Q8_0 as w + 128 on
// VNNI, |w| with x's sign flipped on AVX2; Q4_0 as the nibble, its offset 8 removed through the x sum;
// K-quants as the 4/5/6-bit code, times the sub-block scale):
//   Q8_0, Q4_0   y += (dw * dx) * I,             I = sum of w * q over the block
//   K-quants     y += (d * dx) * I - sum u * v,  I = sum over sub-blocks of scale * sum of code * q,
//                u = dmin * m (Q4_K, Q5_K) or 32 * d * scale (Q6_K) per 16 values.
// Every integer sum is exact (int32, no saturation: the unsigned operand is at most 128 where maddubs
// pairs products) and identical on every path, as is every per-lane partial sum of 4 products.
// What differs between paths is only the f32 part: vector width (16, 8 or 1 lanes), hence which
// partial sums are converted and scaled together, and the horizontal sum. So paths agree to f32
// rounding of the scaling and accumulation (~1e-7 relative), not bitwise. Q8_0, Q5_0 and Q5_1 on
// vnni512 convert each block's whole sum I instead (y = fma(f32(I), f32(dw * dx), y), block after
// block: one f32 step per block, as the scalar path's order of rounding but with an fma), packing W
// into 16-row panels for prefill (vnni512::tile_q8p, vnni512::tile_q8r for decode: the same bits).
// Q4_K and Q5_K on vnni512 likewise take each super-block's integer sums whole, scales and mins applied in
// int32 (see "Q4_K: one f32 step per super-block"; vnni512::tile_q4p / tile_q4r: the same bits).
// The f32 conversion of a lane is exact while it stays below 2^24 in magnitude (always for Q8_0 / Q4_0 / Q4_K / Q5_K; Q6_K's
// 8-lane path flushes twice per super-block for this; the scalar path converts one sum per block).
//
// Batch invariance (as kExact): x rows are quantized independently; each (token, W row) has one f32
// accumulator fed block by block in a fixed order that does not depend on T, the tile shape or the
// thread count.
//
// Paths: vnni512 (vpdpbusd / vpdpwssd on zmm, AVX-512 VNNI), avxvnni (the same on ymm), avx2 (maddubs +
// madd on ymm), scalar; on aarch64 neon (smull + sadalp), neon-dotprod (sdot), neon-i8mm (smmla prefill
// tiles, sdot decode). The SIMD kernels register-tile TR tokens x NR W rows (prefill, x cut into
// L2-sized tiles) or stream W once for all T <= small tokens (decode), like matmul_quant.cc. The
// aarch64 kernels reduce each block's integer sum to one int32 and then take the scalar path's f32
// step, so they give the scalar path's result bit for bit (the x86 ones scale whole vectors of lane
// sums, ~1e-7 apart).
#include "kernels/matmul_quant_fast.h"
#include "kernels/matmul_paths.h"
#include "kernels/matmul_tiles.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#include "core/cpu_features.h"
#include "core/dtype.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif
#if defined(__aarch64__)
#include <arm_neon.h>
#endif

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace nemo::cpu {
namespace {

std::atomic<bool> g_allow_vnni{true};

enum class Dot { kScalar, kAvx2, kAvxVnni, kVnni512, kNeon, kNeonDotprod, kNeonI8mm };

Dot dot_path() {
  const KernelIsa isa = kernel_isa();
  if (isa == KernelIsa::kScalar) return Dot::kScalar;
  if (isa == KernelIsa::kNeon) {  // the SMMLA build decodes with SDOT, so it needs both
    if (!neon_ext(kNeonDotprod)) return Dot::kNeon;
    return neon_ext(kNeonI8mm) ? Dot::kNeonI8mm : Dot::kNeonDotprod;
  }
  const CpuFeatures& f = cpu_features();
  const bool vnni = g_allow_vnni.load(std::memory_order_relaxed);
  if (isa == KernelIsa::kAvx512 && f.avx512vnni && vnni) return Dot::kVnni512;
  return f.avxvnni && vnni ? Dot::kAvxVnni : Dot::kAvx2;
}

constexpr int64_t kPrefetch = 1024;

// One quantized x row.
struct XQ {
  const int8_t* q;  // K codes, zero-padded to a multiple of 64
  const float* d;   // one scale per block, zero-padded to an even count
  const float* v;   // K-quants: d * (sum of q) per 16 values
};

// The layout of a tile of quantized rows.
struct XLayout {
  int64_t be, qb, db, vb;  // block size; per-row bytes of q, floats of d, floats of v
  explicit XLayout(int64_t K, int64_t block)
      : be(block), qb((K + 63) / 64 * 64), db((K / block + 1) / 2 * 2), vb(block == 256 ? K / 16 : 0) {}
};

// Quantizes one row (see the top of the file). q, d, v: this row's slices, padding included.
void quantize_row(const float* x, int64_t K, const XLayout& L, bool relu2, int8_t* q, float* d, float* v) {
  float buf[256];
  const int64_t be = L.be;
  for (int64_t b = 0; b < K / be; ++b) {
    float amax = 0.0f;
    for (int64_t k = 0; k < be; ++k) {
      float a = x[b * be + k];
      if (relu2) {
        a = std::max(a, 0.0f);
        a = a * a;
      }
      buf[k] = a;
      amax = std::max(amax, a < 0 ? -a : a);
    }
    d[b] = amax / 127.0f;
    const float id = amax > 0.0f ? 127.0f / amax : 0.0f;
    int8_t* qb = q + b * be;
    for (int64_t k = 0; k < be; ++k) {
      // Round to nearest even by the 1.5 * 2^23 trick (|r| <= 127 here; NaN, inf: 0).
      float r = buf[k] * id;
      r = (r + 12582912.0f) - 12582912.0f;
      r = r == r ? std::min(127.0f, std::max(-127.0f, r)) : 0.0f;
      qb[k] = static_cast<int8_t>(r);
    }
    if (be == 256) {
      for (int s = 0; s < 16; ++s) {
        int sum = 0;
        for (int k = 0; k < 16; ++k) sum += qb[16 * s + k];
        v[b * 16 + s] = d[b] * static_cast<float>(sum);
      }
    }
  }
  std::memset(q + K, 0, static_cast<size_t>(L.qb - K));
  for (int64_t b = K / be; b < L.db; ++b) d[b] = 0.0f;
}

#if defined(__x86_64__)
// quantize_row on AVX-512, giving the same bytes: max is order-free and skips NaN as there (vmaxps
// returns its second operand on NaN), x * id is the same f32 product, rounded to nearest even, then
// NaN to 0 and the same clamp; the per-16 sums are exact integers.
__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq"))) void quantize_row_512(
    const float* x, int64_t K, const XLayout& L, bool relu2, int8_t* q, float* d, float* v) {
  const int64_t be = L.be;
  const int nv = static_cast<int>(be / 16);
  const __m512 zero = _mm512_setzero_ps(), hi = _mm512_set1_ps(127.0f), lo = _mm512_set1_ps(-127.0f);
  for (int64_t b = 0; b < K / be; ++b) {
    __m512 buf[16];
    __m512 am = zero;
    for (int k = 0; k < nv; ++k) {
      __m512 a = _mm512_loadu_ps(x + b * be + 16 * k);
      if (relu2) {
        a = _mm512_max_ps(zero, a);  // (0 > a) ? 0 : a, as std::max(a, 0.0f): NaN stays
        a = _mm512_mul_ps(a, a);
      }
      buf[k] = a;
      am = _mm512_max_ps(_mm512_abs_ps(a), am);
    }
    const float amax = _mm512_reduce_max_ps(am);
    d[b] = amax / 127.0f;
    const __m512 id = _mm512_set1_ps(amax > 0.0f ? 127.0f / amax : 0.0f);
    int8_t* qb = q + b * be;
    for (int k = 0; k < nv; ++k) {
      __m512 r = _mm512_roundscale_ps(_mm512_mul_ps(buf[k], id), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      r = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(r, r, _CMP_ORD_Q), r);
      const __m512i qi = _mm512_cvtps_epi32(_mm512_max_ps(_mm512_min_ps(r, hi), lo));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(qb + 16 * k), _mm512_cvtsepi32_epi8(qi));
      if (be == 256) v[b * 16 + k] = d[b] * static_cast<float>(_mm512_reduce_add_epi32(qi));
    }
  }
  std::memset(q + K, 0, static_cast<size_t>(L.qb - K));
  for (int64_t b = K / be; b < L.db; ++b) d[b] = 0.0f;
}
#endif

using QuantizeFn = void (*)(const float*, int64_t, const XLayout&, bool, int8_t*, float*, float*);

QuantizeFn quantize_fn() {
#if defined(__x86_64__)
  if (kernel_isa() == KernelIsa::kAvx512) return quantize_row_512;
#endif
  return quantize_row;
}

// Quantized x rows for tokens [t0, t1), in buffers owned by the calling thread.
struct XTile {
  std::vector<int8_t> q;
  std::vector<float> d, v;
  std::vector<XQ> rows;
};

void quantize_tile(XTile& xt, const float* x, int64_t ldx, int64_t t0, int64_t t1, int64_t K,
                   const XLayout& L, bool relu2, ThreadPool& pool) {
  const int64_t n = t1 - t0;
  xt.q.resize(static_cast<size_t>(n * L.qb));
  xt.d.resize(static_cast<size_t>(n * L.db));
  xt.v.resize(static_cast<size_t>(std::max<int64_t>(1, n * L.vb)));
  xt.rows.resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    xt.rows[i] = {xt.q.data() + i * L.qb, xt.d.data() + i * L.db, xt.v.data() + i * L.vb};
  const QuantizeFn quantize = quantize_fn();
  auto body = [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i)
      quantize(x + (t0 + i) * ldx, K, L, relu2, xt.q.data() + i * L.qb, xt.d.data() + i * L.db,
                   xt.v.data() + i * L.vb);
  };
  if (n == 1) {
    body(0, 1);
  } else {
    pool.parallel_for(n, std::max<int64_t>(1, 8192 / K), body);
  }
}

// A range of row groups is worth handing to another thread once it holds about this much work.
int64_t group_grain(int64_t rows_per_group, int64_t row_bytes, int64_t K, int64_t T) {
  return row_group_grain(rows_per_group, row_bytes, K * T / 2);  // integer dots: 1/2 "byte" each
}

// Prefill x tiles: TB tokens of K int8 codes in about this many bytes (a quarter of a Zen 4/5 L2).
constexpr int64_t kXTileBytes = int64_t{256} << 10;

// ---- scalar path: the same integer sums, one (token, row) at a time --------------------------------

inline float f16s(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return f16_to_f32(h);
}

// The f32 part of one block, shared by the scalar and the NEON paths so that they agree bit for bit
// (their integer sums are the same exact int32): the W block's scale d and, for the K-quants, the term
// u per 16 values (dmin * m for Q4_K / Q5_K, 32 * d * scale for Q6_K's code offset).
struct WScale {
  float d;
  float u[16];
};

template <DType DT>
inline void w_scale(const uint8_t* b, WScale& w) {
  if constexpr (DT == DType::Q8_0 || DT == DType::Q4_0) {
    w.d = f16s(b);
  } else if constexpr (DT == DType::Q6_K) {
    const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
    const float d = f16s(b + 208);
    w.d = d;
    for (int t = 0; t < 16; ++t) w.u[t] = 32.0f * d * static_cast<float>(sc[t]);
  } else {
    uint32_t sm[4];
    k4_unpack(b, sm);
    const uint8_t* s8 = reinterpret_cast<const uint8_t*>(sm);
    const float dmin = f16s(b + 2);
    w.d = f16s(b);
    for (int t = 0; t < 16; ++t) w.u[t] = dmin * static_cast<float>(s8[8 + t / 2]);
  }
}

// acc after block blk of x with integer sum I (see the top of the file).
template <DType DT>
inline float block_f32(float acc, const WScale& w, const XQ& x, int64_t blk, int32_t I) {
  acc += (w.d * x.d[blk]) * static_cast<float>(I);
  if constexpr (kBE<DT> == 256)
    for (int t = 0; t < 16; ++t) acc -= w.u[t] * x.v[16 * blk + t];
  return acc;
}

template <DType DT>
float dot_scalar(const XQ& x, const uint8_t* b, int64_t nb) {
  float acc = 0.0f;
  for (int64_t blk = 0; blk < nb; ++blk, b += kBB<DT>) {
    const int8_t* xq = x.q + kBE<DT> * blk;
    int32_t I = 0;
    if constexpr (DT == DType::Q5_0 || DT == DType::Q5_1) {
      // The fifth bit of value v is bit v of qh (see matmul_quant_fast_q5.inc for the sums). Q5 has its
      // own float step (the offset 16 or the min m through the sum of x codes); no NEON path shares it.
      constexpr bool kMin = DT == DType::Q5_1;
      const uint8_t* p = b + (kMin ? 4 : 2);
      uint32_t qh;
      std::memcpy(&qh, p, 4);
      int32_t sx = 0;
      for (int k = 0; k < 16; ++k) {
        const int q0 = (p[4 + k] & 15) | static_cast<int>((qh >> k) & 1u) << 4;
        const int q1 = (p[4 + k] >> 4) | static_cast<int>((qh >> (k + 16)) & 1u) << 4;
        I += q0 * xq[k] + q1 * xq[k + 16];
        sx += xq[k] + xq[k + 16];
      }
      if constexpr (!kMin) I -= 16 * sx;
      const float dx = x.d[blk];
      acc += (f16s(b) * dx) * static_cast<float>(I);
      if constexpr (kMin) acc += (f16s(b + 2) * dx) * static_cast<float>(sx);
      continue;
    } else if constexpr (DT == DType::Q8_0) {
      for (int k = 0; k < 32; ++k) I += static_cast<int8_t>(b[2 + k]) * xq[k];
    } else if constexpr (DT == DType::Q4_0) {
      for (int k = 0; k < 16; ++k)
        I += ((b[2 + k] & 15) - 8) * xq[k] + ((b[2 + k] >> 4) - 8) * xq[k + 16];
    } else if constexpr (DT == DType::Q6_K) {
      const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
      for (int n = 0; n < 2; ++n)
        for (int S = 0; S < 4; ++S)
          for (int l = 0; l < 32; ++l) {
            const uint8_t ql = b[64 * n + 32 * (S & 1) + l];
            const int code = (S < 2 ? ql & 15 : ql >> 4) | ((b[128 + 32 * n + l] >> (2 * S)) & 3) << 4;
            const int e = 128 * n + 32 * S + l;
            I += sc[e / 16] * code * xq[e];
          }
    } else {
      constexpr bool kFive = DT == DType::Q5_K;
      uint32_t sm[4];
      k4_unpack(b, sm);
      const uint8_t* s8 = reinterpret_cast<const uint8_t*>(sm);
      for (int s = 0; s < 8; ++s) {
        int32_t si = 0;
        for (int l = 0; l < 32; ++l) {
          const uint8_t qs = b[(kFive ? 48 : 16) + 32 * (s >> 1) + l];
          int code = s & 1 ? qs >> 4 : qs & 15;
          if constexpr (kFive) code |= ((b[16 + l] >> s) & 1) << 4;
          si += code * xq[32 * s + l];
        }
        I += s8[s] * si;
      }
    }
    WScale w;
    w_scale<DT>(b, w);
    acc = block_f32<DT>(acc, w, x, blk, I);
  }
  return acc;
}

using DotFn = float (*)(const XQ&, const uint8_t*, int64_t);

DotFn scalar_dot(DType dt) {
  switch (dt) {
    case DType::Q8_0: return dot_scalar<DType::Q8_0>;
    case DType::Q4_0: return dot_scalar<DType::Q4_0>;
    case DType::Q5_0: return dot_scalar<DType::Q5_0>;
    case DType::Q5_1: return dot_scalar<DType::Q5_1>;
    case DType::Q4_K: return dot_scalar<DType::Q4_K>;
    case DType::Q5_K: return dot_scalar<DType::Q5_K>;
    default: return dot_scalar<DType::Q6_K>;
  }
}

#if defined(__x86_64__) || defined(__aarch64__)

// ---- the SIMD tiles ----------------------------------------------------------------------------------

// The tile kernels (TileFn<XQ> of matmul_tiles.h): out[i * rows + j] = the product of quantized row
// xr[i] with W row wr[j] over kn blocks (head unused: 0).
using FKernels = TileKernels<XQ>;

// The source of run_tiles: x tiles quantized into the calling thread's buffers, W rows whole.
struct FastSrc {
  XTile& xt;
  const float* x;
  int64_t ldx, K;
  const XLayout& L;
  bool relu2;
  ThreadPool& pool;
  const uint8_t* base;
  int64_t row_bytes;
  int64_t tt0 = 0;
  void prepare(int64_t t0, int64_t t1) {
    tt0 = t0;
    quantize_tile(xt, x, ldx, t0, t1, K, L, relu2, pool);
  }
  XQ x_row(int64_t t, int64_t) const { return xt.rows[static_cast<size_t>(t - tt0)]; }
  const uint8_t* w_row(int64_t n, int64_t) const { return base + n * row_bytes; }
};

#endif  // __x86_64__ || __aarch64__

#if defined(__aarch64__)

// ---- aarch64: baseline NEON, SDOT (FEAT_DotProd), SMMLA (FEAT_I8MM) ------------------------------------
// Three builds of matmul_quant_fast_neon.inc, chosen at run time (dot_path): the extensions are
// compiled in per function (target pragmas), so the baseline armv8-a binary still runs on CPUs
// without them. All three give the scalar path's result bit for bit (the .inc says why).

namespace neon {
// acc += a * b over 16 int8: SMULL / SMULL2 (int16 products, |product| <= 128 * 127, exact) and
// SADALP (pairs added into the int32 lanes).
inline int32x4_t dot16(int32x4_t acc, int8x16_t a, int8x16_t b) {
  acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(a), vget_low_s8(b)));
  return vpadalq_s16(acc, vmull_high_s8(a, b));
}
#define NEMO_NEON_MMLA 0
#include "kernels/matmul_quant_fast_neon.inc"
#undef NEMO_NEON_MMLA
}  // namespace neon

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("dotprod"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("arch=armv8.2-a+dotprod")
#endif
namespace dotprod {
inline int32x4_t dot16(int32x4_t acc, int8x16_t a, int8x16_t b) { return vdotq_s32(acc, a, b); }
#define NEMO_NEON_MMLA 0
#include "kernels/matmul_quant_fast_neon.inc"
#undef NEMO_NEON_MMLA
}  // namespace dotprod
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("dotprod,i8mm"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("arch=armv8.2-a+dotprod+i8mm")
#endif
namespace i8mm {
inline int32x4_t dot16(int32x4_t acc, int8x16_t a, int8x16_t b) { return vdotq_s32(acc, a, b); }
#define NEMO_NEON_MMLA 1
#include "kernels/matmul_quant_fast_neon.inc"
#undef NEMO_NEON_MMLA
}  // namespace i8mm
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

template <DType DT>
const FKernels& simd_kernels(Dot dot) {
  static const FKernels k0 = neon::kernels<DT>();
  static const FKernels k1 = dotprod::kernels<DT>();
  static const FKernels k2 = i8mm::kernels<DT>();
  return dot == Dot::kNeonI8mm ? k2 : dot == Dot::kNeonDotprod ? k1 : k0;
}

// The kernels of a type on this path, or nullptr (no NEON kernels for Q5_0 / Q5_1 yet: the scalar path).
const FKernels* simd_kernels(DType dt, Dot dot) {
  switch (dt) {
    case DType::Q8_0: return &simd_kernels<DType::Q8_0>(dot);
    case DType::Q4_0: return &simd_kernels<DType::Q4_0>(dot);
    case DType::Q4_K: return &simd_kernels<DType::Q4_K>(dot);
    case DType::Q5_K: return &simd_kernels<DType::Q5_K>(dot);
    case DType::Q6_K: return &simd_kernels<DType::Q6_K>(dot);
    default: return nullptr;
  }
}

#endif  // __aarch64__

#if defined(__x86_64__)

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c"))), \
                             apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")
#endif

namespace vnni512 {

using VI = __m512i;
using VF = __m512;
constexpr int kW = 64;
constexpr bool kVnni = true;
// Prefill 6 tokens x 4 rows (24 accumulators; measured against 4 x 4: as fast at T = 512, +30-45 % at
// T = 8, 8 x 2 and 8 x 3 no better); decode up to 4 tokens, 4 rows at a time.
constexpr int kTR = 6, kNR = 4, kSmall = 4, kNRS = 4;
// Q4_K prefill: 8 tokens x 3 rows (the same 24 accumulators): one tile covers T = 8 (8 streams
// decoding), so each super-block is decoded once per row instead of twice (6 + 2 tokens). Measured on
// an Intel Xeon (AVX-512 VNNI; 1 thread, 5 alternating rounds): T = 8 156 vs 145 GFLOP/s median, T = 512
// 182 vs 186 (best 189 vs 188: the same). Q8_0, whose blocks are cheap to decode, stays 6 x 4 (T = 512
// 151 vs 140 for 8 x 3).
template <DType DT>
struct TileShape {
  static constexpr int tr = DT == DType::Q4_K ? 8 : kTR, nr = DT == DType::Q4_K ? 3 : kNR;
};

inline float f16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}
inline VI ld(const void* p) { return _mm512_loadu_si512(p); }
inline VF ldf(const float* p) { return _mm512_loadu_ps(p); }
inline VI c8(int v) { return _mm512_set1_epi8(static_cast<char>(v)); }
inline VI zero_i() { return _mm512_setzero_si512(); }
inline VF zero_f() { return _mm512_setzero_ps(); }
inline VF set1(float v) { return _mm512_set1_ps(v); }
inline VI xor_(VI a, VI b) { return _mm512_xor_si512(a, b); }
inline VI abs8(VI a) { return _mm512_abs_epi8(a); }
inline VI sign8(VI, VI) { return zero_i(); }  // unused: kVnni
inline VI sub32(VI a, VI b) { return _mm512_sub_epi32(a, b); }
inline VI dot4(VI acc, VI u, VI s) { return _mm512_dpbusd_epi32(acc, u, s); }
inline VI dot4_signed(VI u, VI s) { return _mm512_dpbusd_epi32(zero_i(), u, s); }  // unused
inline VI dot4s(VI acc, VI u, VI s, VI sc) { return _mm512_dpwssd_epi32(acc, _mm512_maddubs_epi16(u, s), sc); }
inline VF cvt(VI v) { return _mm512_cvtepi32_ps(v); }
inline VF mul(VF a, VF b) { return _mm512_mul_ps(a, b); }
inline VF fmadd(VF a, VF b, VF c) { return _mm512_fmadd_ps(a, b, c); }
inline VF fnmadd(VF a, VF b, VF c) { return _mm512_fnmadd_ps(a, b, c); }
// int16 lanes: a in the low 256 bits, b in the high.
inline VI halves16(int a, int b) {
  return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi16(static_cast<short>(a))),
                            _mm256_set1_epi16(static_cast<short>(b)), 1);
}
// 16-bit shift counts 0, 4, 0, 4 per 128-bit lane.
inline VI shifts4() {
  return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set_m128i(_mm_set1_epi16(4), _mm_set1_epi16(0))),
                            _mm256_set_m128i(_mm_set1_epi16(4), _mm_set1_epi16(0)), 1);
}
inline float hsum(VF v) {
  const __m256 a = _mm256_add_ps(_mm512_castps512_ps256(v),
                                 _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
  __m128 b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  b = _mm_add_ps(b, _mm_movehl_ps(b, b));
  b = _mm_add_ss(b, _mm_movehdup_ps(b));
  return _mm_cvtss_f32(b);
}

// Two Q8_0 / Q4_0 blocks per vector (`two` false: only the first, the row's odd last block): the
// signed weights or the codes, and each block's scale in its 8 lanes.
template <DType DT>
inline void w32(const uint8_t* b, bool two, VI& ws, VF& dw) {
  constexpr int64_t BB = kBB<DT>;
  // Both scales in one conversion, then each to its 8 lanes.
  uint16_t h0, h1 = 0;
  std::memcpy(&h0, b, 2);
  if (two) std::memcpy(&h1, b + BB, 2);
  const __m128 f = _mm_cvtph_ps(_mm_cvtsi32_si128(static_cast<int>(h0 | static_cast<uint32_t>(h1) << 16)));
  dw = _mm512_permutexvar_ps(_mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0), _mm512_castps128_ps512(f));
  if constexpr (DT == DType::Q8_0) {
    const __m256i lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 2));
    const __m256i hi =
        two ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + BB + 2)) : _mm256_setzero_si256();
    ws = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
  } else {
    // [A | A | B | B] as 128-bit lanes, the second copy of each shifted by 4: low, high nibbles.
    const __m256i a = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 2)));
    const __m256i c =
        two ? _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + BB + 2)))
            : _mm256_setzero_si256();
    const VI z = _mm512_inserti64x4(_mm512_castsi256_si512(a), c, 1);
    ws = _mm512_and_si512(_mm512_srlv_epi16(z, shifts4()), c8(15));
  }
}

inline VF dx32(const XQ& x, int64_t blk) {
  return _mm512_insertf32x8(_mm512_set1_ps(x.d[blk]), _mm256_set1_ps(x.d[blk + 1]), 1);
}

// The K-quant super-block of one row decoded for the integer products: kC vectors of unsigned codes
// q[c] (in value order), their int16 scale vectors sc[c] (each 32-bit lane's sub-block scale, twice),
// the super-scale d and u: the float term per 16 values to be multiplied by the x block's v and
// subtracted (dmin * m for Q4_K / Q5_K, 32 * d * scale for Q6_K's code offset).
constexpr int kC = 4;

template <DType DT>
inline void decode_k(const uint8_t* b, VI (&q)[kC], VI (&sc)[kC], float& d, VF (&u)[1]) {
  if constexpr (DT == DType::Q4_K || DT == DType::Q5_K) {
    constexpr bool kFive = DT == DType::Q5_K;
    constexpr int64_t kQs = kFive ? 48 : 16;
    uint32_t sm[4];
    k4_unpack(b, sm);
    const uint8_t* s8 = reinterpret_cast<const uint8_t*>(sm);
    d = f16(b);
    const __m128i mb = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(s8 + 8));
    const __m128i mm = _mm_unpacklo_epi8(mb, mb);  // m_s for each 16 values
    u[0] = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(mm)), _mm512_set1_ps(f16(b + 2)));
    [[maybe_unused]] VI h;
    if constexpr (kFive) h = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 16)));
#pragma GCC unroll 4
    for (int g = 0; g < 4; ++g) {  // sub-blocks 2g (low nibbles), 2g + 1 (high) of 32 qs bytes
      const VI z = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + kQs + 32 * g)));
      VI c = _mm512_and_si512(_mm512_srlv_epi16(z, halves16(0, 4)), c8(15));
      if constexpr (kFive) {
        const VI hb = _mm512_and_si512(_mm512_srlv_epi16(h, halves16(2 * g, 2 * g + 1)), c8(1));
        c = _mm512_or_si512(c, _mm512_slli_epi16(hb, 4));
      }
      q[g] = c;
      sc[g] = halves16(s8[2 * g], s8[2 * g + 1]);
    }
  } else {  // Q6_K: ql at 0, qh at 128, int8 scales at 192, d at 208
    d = f16(b + 208);
    const __m128i s16 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 192));
    const int8_t* sc8 = reinterpret_cast<const int8_t*>(b + 192);
    u[0] = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(s16)), _mm512_set1_ps(32.0f * d));
#pragma GCC unroll 4
    for (int c = 0; c < 4; ++c) {  // values 64c ..: ql of half c / 2, low (c even) or high nibbles
      const int n = c >> 1;
      const VI l = _mm512_loadu_si512(b + 64 * n);
      const VI lo = _mm512_and_si512(c & 1 ? _mm512_srli_epi16(l, 4) : l, c8(15));
      const VI h = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 128 + 32 * n)));
      const VI hb = _mm512_and_si512(_mm512_srlv_epi16(h, halves16(4 * (c & 1), 4 * (c & 1) + 2)), c8(3));
      q[c] = _mm512_or_si512(lo, _mm512_slli_epi16(hb, 4));
      // 128-bit lane k holds values 64c + 16k ..: scale 4c + k.
      sc[c] = _mm512_inserti64x4(
          _mm512_castsi256_si512(_mm256_set_m128i(_mm_set1_epi16(sc8[4 * c + 1]), _mm_set1_epi16(sc8[4 * c]))),
          _mm256_set_m128i(_mm_set1_epi16(sc8[4 * c + 3]), _mm_set1_epi16(sc8[4 * c + 2])), 1);
    }
  }
}

#include "kernels/matmul_quant_fast_q5.inc"
#include "kernels/matmul_quant_fast_body.inc"

// ---- Q8_0, Q5_0, Q5_1: one f32 step per block ----------------------------------------------------
// The products of these types on this path take each block's integer sum whole: per (token, W row)
// and block b, I_b = sum of w * q over the 32 values (exact in int32; Q5_0's w = code - 16, Q5_1's w
// = its code 0..31), then acc = fma(f32(I_b), f32(dw_b * dx_b), acc), and for Q5_1 then
// acc = fma(m_b, dx_b * f32(S_b), acc) with S_b the block's sum of q, blocks in order from acc = 0
// (one f32 multiply and one fma per block and pair, where the generic step32 / step_q5 convert and
// scale each lane's 4-product partial sum). Two kernels give these same bits, so any T and any tile
// shape give the same y bitwise:
//  * q8r (decode and small T): W rows as stored, 8 rows per tile (Q5 codes unpacked by w5). The 8
//    rows' vpdpbusd sums of a block pair are reduced and transposed into one vector (block A rows
//    0-7, block B rows 0-7), then converted, scaled and added in 8-lane steps (A, then B).
//  * q8p (prefill, T >= kPackMinT): W repacked once per call (q8_pack), 16 rows per panel, each block
//    as 16 f32 scales (Q5_1: then 16 f32 mins) then 8 groups of [16 rows x 4 unsigned codes: w + 128,
//    Q5_1's q as is]: one vpdpbusd of a group with a token's 4 codes broadcast adds 4 products to each
//    of the 16 rows' block sums, so a block is 8 vpdpbusd per (token, 16 rows), started from the
//    token's -128 * (sum of q) (Q5_1: 0), then one convert, multiply and fma (Q5_1: one more fma).
//    Unpacking the 5-bit codes into bytes once per call makes Q5_0 / Q5_1 run at Q8_0's speed. The
//    tile is 8 tokens x 16 rows: 16 accumulators, nothing spills.
constexpr int kQ8Rows = 8;       // q8r: W rows per tile
constexpr int kQ8PanelRows = 16; // q8p: W rows per panel
// q8p: one block of a panel: the d scales, Q5_1's m scales, 8 code groups.
template <DType DT>
constexpr int64_t kQ8BlockBytes = (DT == DType::Q5_1 ? 128 : 64) + 8 * 64;
// T from which the product packs W: packing costs a pass over W, worth it for Q8_0 from T = 32
// (4096 x 4096, 1 thread, thread CPU: T = 16 packed 86-114 GFLOP/s, unpacked 135-138; T = 32 138-144
// vs 131-139), for Q5_0 / Q5_1 from T = 12, their unpacked tile decoding the 5-bit codes per row
// and token tile (W from memory, 1 thread: T = 8 packed 118-127 / 111-113 vs unpacked 134-144 /
// 112-118; T = 12 170-194 / 169-178 vs 149-150 / 120-121).
template <DType DT>
constexpr int64_t kPackMinT = DT == DType::Q8_0 ? 32 : 12;

inline __m256 hi8(VF v) { return _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)); }

template <DType DT, int TR>
void tile_q8r(const XQ* xr, const uint8_t* const* wr, int64_t, int64_t nb, float* out) {
  constexpr int64_t BB = kBB<DT>;
  constexpr bool kMin = DT == DType::Q5_1;
  const uint8_t* b[kQ8Rows];
  for (int j = 0; j < kQ8Rows; ++j) b[j] = wr[j];
  __m256 acc[TR];
#pragma GCC unroll 8
  for (int i = 0; i < TR; ++i) acc[i] = _mm256_setzero_ps();
  [[maybe_unused]] const VI m128 = c8(-128);
  // qword indices: quarters [a.0, b.0, a.2, b.2] and [a.1, b.1, a.3, b.3].
  const VI ix = _mm512_set_epi64(13, 12, 5, 4, 9, 8, 1, 0), iy = _mm512_set_epi64(15, 14, 7, 6, 11, 10, 3, 2);
  for (int64_t blk = 0; blk < nb; blk += 2) {
    const bool two = blk + 1 < nb;
#pragma GCC unroll 8
    for (int j = 0; j < kQ8Rows; ++j) {
      _mm_prefetch(reinterpret_cast<const char*>(b[j] + kPrefetch), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(b[j] + kPrefetch + 64), _MM_HINT_T0);
    }
    VI wu[kQ8Rows];
    alignas(32) uint16_t hs[16], hm[16];
#pragma GCC unroll 8
    for (int j = 0; j < kQ8Rows; ++j) {
      if constexpr (DT == DType::Q8_0) {
        const __m256i lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b[j] + 2));
        const __m256i hi =
            two ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b[j] + BB + 2)) : _mm256_setzero_si256();
        wu[j] = xor_(_mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1), m128);  // w + 128
      } else {
        VF unused_d, unused_m;  // the scales come from hs / hm below
        w5<DT>(b[j], two, wu[j], unused_d, unused_m);  // the code q, 0..31
      }
      std::memcpy(&hs[j], b[j], 2);
      hs[8 + j] = 0;
      if (two) std::memcpy(&hs[8 + j], b[j] + BB, 2);
      if constexpr (kMin) {
        std::memcpy(&hm[j], b[j] + 2, 2);
        hm[8 + j] = 0;
        if (two) std::memcpy(&hm[8 + j], b[j] + BB + 2, 2);
      }
    }
    const VF dw = _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(hs)));
    [[maybe_unused]] VF dm;
    if constexpr (kMin) dm = _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(hm)));
#pragma GCC unroll 8
    for (int i = 0; i < TR; ++i) {
      const VI xv = ld(xr[i].q + 32 * blk);
      const VF dx = dx32(xr[i], blk);
      // The code offset through the x sums: -128 * (sum of the lane's 4 q) for w + 128, -16 * them
      // for Q5_0's q = w + 16; Q5_1 none (its min takes each block's whole x sum, S, below).
      VI cn = zero_i();
      [[maybe_unused]] VF sx;
      if constexpr (DT == DType::Q8_0) cn = sub32(zero_i(), dot4(zero_i(), m128, xv));
      if constexpr (DT == DType::Q5_0) cn = sub32(zero_i(), dot4(zero_i(), c8(16), xv));
      if constexpr (kMin) {  // dx * f32(S) of block A in lanes 0-7, of B in 8-15
        VI sv = dot4(zero_i(), c8(1), xv);
        sv = _mm512_add_epi32(sv, _mm512_shuffle_epi32(sv, _MM_PERM_BADC));
        sv = _mm512_add_epi32(sv, _mm512_shuffle_epi32(sv, _MM_PERM_CDAB));
        sv = _mm512_add_epi32(sv, _mm512_shuffle_i64x2(sv, sv, _MM_SHUFFLE(2, 3, 0, 1)));
        sx = mul(cvt(sv), dx);
      }
      VI d[kQ8Rows];
#pragma GCC unroll 8
      for (int j = 0; j < kQ8Rows; ++j) d[j] = dot4(cn, wu[j], xv);
      // 8 rows x 16 lanes -> 16 lanes (row, block): pairs of rows, then pairs of pairs (within
      // 128-bit quarters), then the two quarters of each block.
      VI t[4];
#pragma GCC unroll 4
      for (int p = 0; p < 4; ++p)
        t[p] = _mm512_add_epi32(_mm512_unpacklo_epi32(d[2 * p], d[2 * p + 1]),
                                _mm512_unpackhi_epi32(d[2 * p], d[2 * p + 1]));
      const VI u0 = _mm512_add_epi32(_mm512_unpacklo_epi64(t[0], t[1]), _mm512_unpackhi_epi64(t[0], t[1]));
      const VI u1 = _mm512_add_epi32(_mm512_unpacklo_epi64(t[2], t[3]), _mm512_unpackhi_epi64(t[2], t[3]));
      const VI z = _mm512_add_epi32(_mm512_permutex2var_epi64(u0, ix, u1), _mm512_permutex2var_epi64(u0, iy, u1));
      const VF f = cvt(z);
      const VF s = mul(dw, dx);
      acc[i] = _mm256_fmadd_ps(_mm512_castps512_ps256(f), _mm512_castps512_ps256(s), acc[i]);
      if constexpr (kMin) acc[i] = _mm256_fmadd_ps(_mm512_castps512_ps256(dm), _mm512_castps512_ps256(sx), acc[i]);
      if (two) {
        acc[i] = _mm256_fmadd_ps(hi8(f), hi8(s), acc[i]);
        if constexpr (kMin) acc[i] = _mm256_fmadd_ps(hi8(dm), hi8(sx), acc[i]);
      }
    }
#pragma GCC unroll 8
    for (int j = 0; j < kQ8Rows; ++j) b[j] += 2 * BB;
  }
  for (int i = 0; i < TR; ++i) _mm256_storeu_ps(out + kQ8Rows * i, acc[i]);
}

// x for q8p: groups of kMaxTileT tokens, per block [8 groups x 8 tokens x 4 codes], then the tokens'
// -128 * (sum of q) (Q5_1: dx * f32(sum of q)), then their scales (kQ8XBlockBytes), so that one
// pointer with constant offsets reaches every operand of a tile.
constexpr int64_t kQ8XBlockBytes = 8 * 4 * kMaxTileT + 8 * kMaxTileT;

template <DType DT, int TR>
void tile_q8p(const XQ* xr, const uint8_t* const* wr, int64_t, int64_t nb, float* out) {
  constexpr bool kMin = DT == DType::Q5_1;
  constexpr int64_t kCodes = kMin ? 128 : 64;
  const uint8_t* p = wr[0];
  const uint8_t* xp = reinterpret_cast<const uint8_t*>(xr[0].q);
  constexpr int64_t kC = 32 * kMaxTileT, kD = kC + 4 * kMaxTileT;
  VF acc[TR];
#pragma GCC unroll 8
  for (int i = 0; i < TR; ++i) acc[i] = zero_f();
  for (int64_t blk = 0; blk < nb; ++blk, p += kQ8BlockBytes<DT>, xp += kQ8XBlockBytes) {
    VI s[TR];
#pragma GCC unroll 8
    for (int i = 0; i < TR; ++i)
      s[i] = kMin ? zero_i() : _mm512_set1_epi32(*reinterpret_cast<const int32_t*>(xp + kC + 4 * i));
#pragma GCC unroll 8
    for (int g = 0; g < 8; ++g) {
      const VI w = _mm512_load_si512(p + kCodes + 64 * g);
#pragma GCC unroll 8
      for (int i = 0; i < TR; ++i)
        s[i] = _mm512_dpbusd_epi32(s[i], w, _mm512_set1_epi32(*reinterpret_cast<const int32_t*>(xp + 4 * kMaxTileT * g + 4 * i)));
    }
    const VF dw = _mm512_load_ps(reinterpret_cast<const float*>(p));
#pragma GCC unroll 8
    for (int i = 0; i < TR; ++i) {
      acc[i] = fmadd(cvt(s[i]), mul(dw, set1(*reinterpret_cast<const float*>(xp + kD + 4 * i))), acc[i]);
      if constexpr (kMin)  // + m * (dx * f32(S)), S the token's block sum of q (in the slot of c)
        acc[i] = fmadd(_mm512_load_ps(reinterpret_cast<const float*>(p + 64)),
                       set1(*reinterpret_cast<const float*>(xp + kC + 4 * i)), acc[i]);
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < TR; ++i) _mm512_storeu_ps(out + kQ8PanelRows * i, acc[i]);
}

// The 32 code bytes of one block as the panel holds them: Q8_0 w + 128, Q5_0 (q - 16) + 128, Q5_1 q.
template <DType DT>
inline __m256i panel_codes(const uint8_t* b) {
  if constexpr (DT == DType::Q8_0) {
    return _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 2)), _mm256_set1_epi8(-128));
  } else {
    __m256i q;
    __m256 unused_d, unused_m;
    w5<DT>(b, false, q, unused_d, unused_m);
    return DT == DType::Q5_0 ? _mm256_add_epi8(q, _mm256_set1_epi8(112)) : q;
  }
}

// Panels [g0, g1) of W (N rows of nb blocks) into the q8p layout; rows past N repeat row N - 1.
template <DType DT>
void q8_pack(const uint8_t* base, int64_t row_bytes, int64_t N, int64_t nb, uint8_t* out, int64_t g0, int64_t g1) {
  constexpr int64_t BB = kBB<DT>;
  constexpr int64_t kCodes = DT == DType::Q5_1 ? 128 : 64;
  const VI ix = _mm512_set_epi64(13, 12, 5, 4, 9, 8, 1, 0), iy = _mm512_set_epi64(15, 14, 7, 6, 11, 10, 3, 2);
  for (int64_t g = g0; g < g1; ++g) {
    uint8_t* o = out + g * nb * kQ8BlockBytes<DT>;
    const uint8_t* r0 = base;
    alignas(64) int64_t off[16];
    for (int r = 0; r < 16; ++r) off[r] = std::min<int64_t>(g * kQ8PanelRows + r, N - 1) * row_bytes;
    for (int64_t blk = 0; blk < nb; ++blk, o += kQ8BlockBytes<DT>) {
      alignas(32) uint16_t h[16];
      for (int r = 0; r < 16; ++r) std::memcpy(&h[r], r0 + off[r] + blk * BB, 2);
      _mm512_store_ps(reinterpret_cast<float*>(o), _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(h))));
      if constexpr (DT == DType::Q5_1) {
        for (int r = 0; r < 16; ++r) std::memcpy(&h[r], r0 + off[r] + blk * BB + 2, 2);
        _mm512_store_ps(reinterpret_cast<float*>(o + 64), _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(h))));
      }
      // 16 rows x 8 groups of 4 codes: transpose the 16 x 8 dword matrix. r[p] = rows p and p + 8;
      // within each 128-bit quarter, dword pairs then qword pairs of 4 rows; then the quarters.
      VI r[8], t[8], u[8];
#pragma GCC unroll 8
      for (int q = 0; q < 8; ++q)
        r[q] = _mm512_inserti64x4(_mm512_castsi256_si512(panel_codes<DT>(r0 + off[q] + blk * BB)),
                                  panel_codes<DT>(r0 + off[q + 8] + blk * BB), 1);
#pragma GCC unroll 4
      for (int q = 0; q < 4; ++q) {
        t[2 * q] = _mm512_unpacklo_epi32(r[2 * q], r[2 * q + 1]);
        t[2 * q + 1] = _mm512_unpackhi_epi32(r[2 * q], r[2 * q + 1]);
      }
#pragma GCC unroll 2
      for (int a = 0; a < 8; a += 4) {
        u[a] = _mm512_unpacklo_epi64(t[a], t[a + 2]);
        u[a + 1] = _mm512_unpackhi_epi64(t[a], t[a + 2]);
        u[a + 2] = _mm512_unpacklo_epi64(t[a + 1], t[a + 3]);
        u[a + 3] = _mm512_unpackhi_epi64(t[a + 1], t[a + 3]);
      }
#pragma GCC unroll 4
      for (int k = 0; k < 4; ++k) {
        _mm512_store_si512(o + kCodes + 64 * k, _mm512_permutex2var_epi64(u[k], ix, u[k + 4]));
        _mm512_store_si512(o + kCodes + 64 * (k + 4), _mm512_permutex2var_epi64(u[k], iy, u[k + 4]));
      }
    }
  }
}

// Token groups [g0, g1) of the n quantized rows of an x tile into the q8p x layout (the last group
// zero-padded past n). The slot c holds -128 * S (S = the block's sum of q) for the codes + 128,
// for Q5_1 the f32 dx * f32(S) of its min term instead.
template <DType DT>
void q8_interleave(const XTile& xt, int64_t n, int64_t nb, int64_t qb, int64_t db, uint8_t* out, int64_t g0, int64_t g1) {
  const VI ones = c8(1);
  for (int64_t g = g0; g < g1; ++g) {
    uint8_t* o = out + g * nb * kQ8XBlockBytes;
    for (int i = 0; i < kMaxTileT; ++i) {
      const int64_t t = g * kMaxTileT + i;
      uint8_t* oi = o + 4 * i;
      if (t >= n) {
        for (int64_t blk = 0; blk < nb; ++blk, oi += kQ8XBlockBytes) {
          for (int q = 0; q < 8; ++q) std::memset(oi + 4 * kMaxTileT * q, 0, 4);
          std::memset(oi + 32 * kMaxTileT, 0, 4);
          std::memset(oi + 36 * kMaxTileT, 0, 4);
        }
        continue;
      }
      const int8_t* q = xt.q.data() + t * qb;
      const float* d = xt.d.data() + t * db;
      for (int64_t blk = 0; blk < nb; blk += 2) {
        const VI xv = ld(q + 32 * blk);
        const VI s = _mm512_dpbusd_epi32(zero_i(), ones, xv);
        alignas(64) int32_t w[16];
        _mm512_store_si512(w, xv);
        for (int h = 0; h < 2 && blk + h < nb; ++h) {
          uint8_t* ob = oi + (blk + h) * kQ8XBlockBytes;
          for (int q4 = 0; q4 < 8; ++q4) std::memcpy(ob + 4 * kMaxTileT * q4, &w[8 * h + q4], 4);
          const int32_t sum = _mm512_mask_reduce_add_epi32(h ? 0xff00 : 0x00ff, s);
          if constexpr (DT == DType::Q5_1) {
            const float c = d[blk + h] * static_cast<float>(sum);
            std::memcpy(ob + 32 * kMaxTileT, &c, 4);
          } else {
            const int32_t c = -128 * sum;
            std::memcpy(ob + 32 * kMaxTileT, &c, 4);
          }
          std::memcpy(ob + 36 * kMaxTileT, &d[blk + h], 4);
        }
      }
    }
  }
}

// ---- Q4_K, Q5_K: one f32 step per super-block --------------------------------------------------------
// (Q5_K as Q4_K with codes 0..31: the fifth bit from qh when decoding or packing.)
// The Q4_K products on this path take each super-block whole: per (token, W row) and super-block,
// I = sum over the 8 sub-blocks of scale_s * (sum of code * q over its 32 values) and
// M = sum over the sub-blocks of min_s * (sum of q over its 32 values), both exact int32
// (|I| <= 63 * 15 * 127 * 256, |M| <= 63 * 127 * 256), then
//   acc = fma(f32(I), f32(d * dx), acc);  acc = fnma(f32(M), f32(dmin * dx), acc)
// super-block after super-block from acc = 0. (The mins term is the exact integer M times dmin * dx,
// instead of the generic path's 16 float products u * v.) Two kernels give these same bits, so any T
// and any tile shape give the same y bitwise:
//  * q4r (decode and T < kPackMinT): W rows as stored, 8 rows per tile; I as one vector of lane sums
//    per row (maddubs + vpdpwssd with the scales), the 8 rows' vectors reduced and transposed into 8
//    lanes (as tile_q8r); M of 4 rows by one vpdpwssd of the rows' mins with the token's 8 sub-block
//    sums of q (q4_xsums, once per call and token: Q4RSrc), then the two fma steps on 8 lanes.
//    (The mins through per-row vpdpbusd, 4 rows per tile, made decode slower than the generic tile.)
//  * q4p (prefill): W repacked once per call (q4_pack), 16 rows per panel, each super-block as 64
//    groups of [16 rows x 4 codes 0..15] (vpdpbusd layout), the 8 scales as 16 int32 each, the mins
//    as 4 vectors of int16 pairs (sub-blocks 2p, 2p + 1), d and dmin as 16 f32 each. One vpdpbusd of
//    a group with a token's 4 codes broadcast adds 4 products to the 16 rows' sub-block sums; a
//    sub-block's sum times its scale (vpmulld) goes into I; M is 4 vpdpwssd of the mins with the
//    token's sub-block sums of q (q4_interleave). The tile is 8 tokens x 16 rows.
constexpr int kQ4Rows = 8;                                  // q4r: W rows per tile
constexpr int64_t kQ4Codes = 64 * 64;                        // q4p: the codes of one panel super-block
constexpr int64_t kQ4BlockBytes = kQ4Codes + 8 * 64 + 4 * 64 + 2 * 64;  // + scales, mins, d, dmin
// x for q4p: per group of kMaxTileT tokens and super-block [64 groups x 8 tokens x 4 codes], then
// [4 pairs x 8 tokens x 2 int16 sub-block sums of q], then the 8 tokens' scales.
constexpr int64_t kQ4XSums = 64 * 4 * kMaxTileT, kQ4XD = kQ4XSums + 4 * 4 * kMaxTileT;
constexpr int64_t kQ4XBlockBytes = kQ4XD + 4 * kMaxTileT;

// q4r's per-token operand of the mins term, once per call and token (Q4RSrc): per super-block 64
// bytes, word 2 * (4p + r) + h = S[2p + h] (r = 0..3), S[s] the sum of q over sub-block s.
inline void q4_xsums(const int8_t* q, int64_t nb, uint8_t* out) {
  alignas(64) int16_t ips[32];
  for (int p = 0; p < 4; ++p)
    for (int r = 0; r < 4; ++r)
      for (int h = 0; h < 2; ++h) ips[2 * (4 * p + r) + h] = static_cast<int16_t>(h ? 16 + 2 * p : 2 * p);
  const VI psi = _mm512_load_si512(ips), ones = c8(1);
  for (int64_t blk = 0; blk < nb; ++blk) {
    VI sd[4];
#pragma GCC unroll 4
    for (int g = 0; g < 4; ++g)  // sub-block 2g in quarters 0-1, 2g + 1 in 2-3
      sd[g] = _mm512_dpbusd_epi32(zero_i(), ones, ld(q + 256 * blk + 64 * g));
    // Quarter q lane g: the sum of sd[g] over quarter q; then the quarter pairs: [S0 S2 S4 S6] at
    // dwords 0-3, [S1 S3 S5 S7] at 8-11.
    const VI s0 = _mm512_add_epi32(_mm512_unpacklo_epi32(sd[0], sd[1]), _mm512_unpackhi_epi32(sd[0], sd[1]));
    const VI s1 = _mm512_add_epi32(_mm512_unpacklo_epi32(sd[2], sd[3]), _mm512_unpackhi_epi32(sd[2], sd[3]));
    const VI su = _mm512_add_epi32(_mm512_unpacklo_epi64(s0, s1), _mm512_unpackhi_epi64(s0, s1));
    const VI sw = _mm512_add_epi32(su, _mm512_shuffle_i64x2(su, su, _MM_SHUFFLE(2, 3, 0, 1)));
    _mm512_store_si512(out + 64 * blk, _mm512_permutexvar_epi16(psi, sw));
  }
}

template <DType DT, int TR>
void tile_q4r(const XQ* xr, const uint8_t* const* wr, int64_t, int64_t nb, float* out) {
  constexpr int64_t BB = kBB<DT>;
  constexpr bool kFive = DT == DType::Q5_K;  // Q5_K: qh at 16 (bit 2g / 2g + 1 of byte l), qs at 48
  constexpr int64_t kQs = kFive ? 48 : 16;
  __m256 acc[TR];
#pragma GCC unroll 8
  for (int i = 0; i < TR; ++i) acc[i] = _mm256_setzero_ps();
  // qword indices as tile_q8r's reduction: 8 vectors (I of rows 0-7) -> 16 lanes (low / high halves).
  const VI ix = _mm512_set_epi64(13, 12, 5, 4, 9, 8, 1, 0), iy = _mm512_set_epi64(15, 14, 7, 6, 11, 10, 3, 2);
  // vpshufb indices on the 16 unpacked scale / min bytes: sc[g] the int16 scale of sub-block 2g (low
  // 256 bits) and 2g + 1 (high).
  VI sci[4];
  for (int g = 0; g < 4; ++g)
    sci[g] = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi16(static_cast<short>(0x8000 | (2 * g)))),
                                _mm256_set1_epi16(static_cast<short>(0x8000 | (2 * g + 1))), 1);
  // The mins term M = sum over sub-blocks s of m_s * S_s (S_s the token's sum of q over sub-block s)
  // by vpdpwssd of int16 pairs: word 2 * (4p + r) + h is, for row r of 4, m_r[2p + h] (pm, per block
  // and 4 rows) and S[2p + h] (ps, per token). The word indices: pm from the rows' 8 mins as words
  // (row r at word 8r), ps from [S0 S2 S4 S6] at dwords 0-3 and [S1 S3 S5 S7] at dwords 8-11.
  alignas(64) int16_t ipm[32];
  for (int p = 0; p < 4; ++p)
    for (int r = 0; r < 4; ++r)
      for (int h = 0; h < 2; ++h) ipm[2 * (4 * p + r) + h] = static_cast<int16_t>(8 * r + 2 * p + h);
  const VI pmi = _mm512_load_si512(ipm);
  // Decode tiles of 1 to 4 tokens take each row's codes and scales as decoded (in registers); larger
  // ones decode the 8 rows once into arrays and go token by token. The integer sums are the same.
  constexpr bool kFused = TR <= 4;
  for (int64_t blk = 0; blk < nb; ++blk) {
    alignas(64) VI q[kFused ? 1 : kQ4Rows][4], sc[kFused ? 1 : kQ4Rows][4];
    alignas(64) uint64_t mq[kQ4Rows];
    alignas(32) uint16_t hd[16];
    [[maybe_unused]] VI xv1[kFused ? TR : 1][4], v1[kFused ? TR : 1][kQ4Rows];
    if constexpr (kFused) {
#pragma GCC unroll 4
      for (int i = 0; i < TR; ++i)
#pragma GCC unroll 4
        for (int g = 0; g < 4; ++g) xv1[i][g] = ld(xr[i].q + 256 * blk + 64 * g);
    }
#pragma GCC unroll 8
    for (int j = 0; j < kQ4Rows; ++j) {
      const uint8_t* b = wr[j] + blk * BB;
      _mm_prefetch(reinterpret_cast<const char*>(b + kPrefetch), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(b + kPrefetch + 64), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(b + kPrefetch + 128), _MM_HINT_T0);
      alignas(16) uint32_t sm[4];
      k4_unpack(b, sm);
      std::memcpy(&hd[j], b, 2);
      std::memcpy(&hd[8 + j], b + 2, 2);
      mq[j] = sm[2] | static_cast<uint64_t>(sm[3]) << 32;
      const VI bs = _mm512_broadcast_i32x4(_mm_load_si128(reinterpret_cast<const __m128i*>(sm)));
      const int jj = kFused ? 0 : j;
      [[maybe_unused]] VI h;
      if constexpr (kFive) h = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 16)));
#pragma GCC unroll 4
      for (int g = 0; g < 4; ++g) {
        const VI z = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + kQs + 32 * g)));
        q[jj][g] = _mm512_and_si512(_mm512_srlv_epi16(z, halves16(0, 4)), c8(15));
        if constexpr (kFive) {
          const VI hb = _mm512_and_si512(_mm512_srlv_epi16(h, halves16(2 * g, 2 * g + 1)), c8(1));
          q[jj][g] = _mm512_or_si512(q[jj][g], _mm512_slli_epi16(hb, 4));
        }
        sc[jj][g] = _mm512_shuffle_epi8(bs, sci[g]);
      }
      if constexpr (kFused) {
#pragma GCC unroll 4
        for (int i = 0; i < TR; ++i) {
          VI vi = zero_i();
#pragma GCC unroll 4
          for (int g = 0; g < 4; ++g) vi = _mm512_dpwssd_epi32(vi, _mm512_maddubs_epi16(q[0][g], xv1[i][g]), sc[0][g]);
          v1[i][j] = vi;
        }
      }
    }
    const VI mw = _mm512_load_si512(mq);
    const VI pma = _mm512_permutexvar_epi16(pmi, _mm512_cvtepu8_epi16(_mm512_castsi512_si256(mw)));
    const VI pmb = _mm512_permutexvar_epi16(pmi, _mm512_cvtepu8_epi16(_mm512_extracti64x4_epi64(mw, 1)));
    const VF dd = _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(hd)));  // d rows 0-7, dmin rows 0-7
    const __m256 dw = _mm512_castps512_ps256(dd), dm = hi8(dd);
#pragma GCC unroll 8
    for (int i = 0; i < TR; ++i) {
      const VI ps = _mm512_load_si512(xr[i].v + 16 * blk);  // the token's S words (q4_xsums)
      const VI ma = _mm512_dpwssd_epi32(zero_i(), pma, ps), mb = _mm512_dpwssd_epi32(zero_i(), pmb, ps);
      VI v[kQ4Rows];
      if constexpr (kFused) {
#pragma GCC unroll 8
        for (int j = 0; j < kQ4Rows; ++j) v[j] = v1[i][j];
      } else {
        const int8_t* xq = xr[i].q + 256 * blk;
        VI xv[4];
#pragma GCC unroll 4
        for (int g = 0; g < 4; ++g) xv[g] = ld(xq + 64 * g);
#pragma GCC unroll 8
        for (int j = 0; j < kQ4Rows; ++j) {
          VI vi = zero_i();
#pragma GCC unroll 4
          for (int g = 0; g < 4; ++g) vi = _mm512_dpwssd_epi32(vi, _mm512_maddubs_epi16(q[j][g], xv[g]), sc[j][g]);
          v[j] = vi;
        }
      }
      // 8 vectors x 16 lanes -> lane j (0-7) the low-half sum of v[j], lane 8 + j the high half.
      VI t[4];
#pragma GCC unroll 4
      for (int p = 0; p < 4; ++p)
        t[p] = _mm512_add_epi32(_mm512_unpacklo_epi32(v[2 * p], v[2 * p + 1]), _mm512_unpackhi_epi32(v[2 * p], v[2 * p + 1]));
      const VI u0 = _mm512_add_epi32(_mm512_unpacklo_epi64(t[0], t[1]), _mm512_unpackhi_epi64(t[0], t[1]));
      const VI u1 = _mm512_add_epi32(_mm512_unpacklo_epi64(t[2], t[3]), _mm512_unpackhi_epi64(t[2], t[3]));
      const VI z = _mm512_add_epi32(_mm512_permutex2var_epi64(u0, ix, u1), _mm512_permutex2var_epi64(u0, iy, u1));
      const __m256i I8 = _mm256_add_epi32(_mm512_castsi512_si256(z), _mm512_extracti64x4_epi64(z, 1));
      // M: quarter sums of ma (rows 0-3) and mb (rows 4-7).
      const VI mx = _mm512_add_epi32(_mm512_shuffle_i64x2(ma, mb, _MM_SHUFFLE(1, 0, 1, 0)),
                                     _mm512_shuffle_i64x2(ma, mb, _MM_SHUFFLE(3, 2, 3, 2)));
      const VI my = _mm512_add_epi32(_mm512_shuffle_i64x2(mx, mx, _MM_SHUFFLE(2, 0, 2, 0)),
                                     _mm512_shuffle_i64x2(mx, mx, _MM_SHUFFLE(3, 1, 3, 1)));
      const VF f = cvt(_mm512_inserti64x4(_mm512_castsi256_si512(I8), _mm512_castsi512_si256(my), 1));
      const __m256 dx = _mm256_set1_ps(xr[i].d[blk]);
      acc[i] = _mm256_fmadd_ps(_mm512_castps512_ps256(f), _mm256_mul_ps(dw, dx), acc[i]);
      acc[i] = _mm256_fnmadd_ps(hi8(f), _mm256_mul_ps(dm, dx), acc[i]);
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < TR; ++i) _mm256_storeu_ps(out + kQ4Rows * i, acc[i]);
}

template <int TR>
void tile_q4p(const XQ* xr, const uint8_t* const* wr, int64_t, int64_t nb, float* out) {
  const uint8_t* p = wr[0];
  const uint8_t* xp = reinterpret_cast<const uint8_t*>(xr[0].q);
  VF acc[TR];
#pragma GCC unroll 8
  for (int i = 0; i < TR; ++i) acc[i] = zero_f();
  for (int64_t blk = 0; blk < nb; ++blk, p += kQ4BlockBytes, xp += kQ4XBlockBytes) {
    VI I[TR];
#pragma GCC unroll 8
    for (int i = 0; i < TR; ++i) I[i] = zero_i();
    for (int s = 0; s < 8; ++s) {
      VI S[TR];
#pragma GCC unroll 8
      for (int i = 0; i < TR; ++i) S[i] = zero_i();
#pragma GCC unroll 8
      for (int k = 0; k < 8; ++k) {
        const VI w = _mm512_load_si512(p + 64 * (8 * s + k));
#pragma GCC unroll 8
        for (int i = 0; i < TR; ++i)
          S[i] = _mm512_dpbusd_epi32(S[i], w, _mm512_set1_epi32(*reinterpret_cast<const int32_t*>(xp + 4 * kMaxTileT * (8 * s + k) + 4 * i)));
      }
      const VI sc = _mm512_load_si512(p + kQ4Codes + 64 * s);
#pragma GCC unroll 8
      for (int i = 0; i < TR; ++i) I[i] = _mm512_add_epi32(I[i], _mm512_mullo_epi32(S[i], sc));
    }
    const VF dw = _mm512_load_ps(reinterpret_cast<const float*>(p + kQ4Codes + 768));
    const VF dm = _mm512_load_ps(reinterpret_cast<const float*>(p + kQ4Codes + 832));
    VI mp[4];
#pragma GCC unroll 4
    for (int pp = 0; pp < 4; ++pp) mp[pp] = _mm512_load_si512(p + kQ4Codes + 512 + 64 * pp);
#pragma GCC unroll 8
    for (int i = 0; i < TR; ++i) {
      VI M = zero_i();
#pragma GCC unroll 4
      for (int pp = 0; pp < 4; ++pp)
        M = _mm512_dpwssd_epi32(M, mp[pp], _mm512_set1_epi32(*reinterpret_cast<const int32_t*>(xp + kQ4XSums + 4 * kMaxTileT * pp + 4 * i)));
      const VF dx = set1(*reinterpret_cast<const float*>(xp + kQ4XD + 4 * i));
      acc[i] = fmadd(cvt(I[i]), mul(dw, dx), acc[i]);
      acc[i] = fnmadd(cvt(M), mul(dm, dx), acc[i]);
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < TR; ++i) _mm512_storeu_ps(out + kQ8PanelRows * i, acc[i]);
}

// Panels [g0, g1) of W (N rows of nb Q4_K super-blocks) into the q4p layout; rows past N repeat row N - 1.
template <DType DT>
void q4_pack(const uint8_t* base, int64_t row_bytes, int64_t N, int64_t nb, uint8_t* out, int64_t g0, int64_t g1) {
  constexpr int64_t BB = kBB<DT>;
  constexpr bool kFive = DT == DType::Q5_K;
  constexpr int64_t kQs = kFive ? 48 : 16;
  for (int64_t g = g0; g < g1; ++g) {
    uint8_t* o = out + g * nb * kQ4BlockBytes;
    const uint8_t* rp[16];
    for (int r = 0; r < 16; ++r) rp[r] = base + std::min<int64_t>(g * kQ8PanelRows + r, N - 1) * row_bytes;
    for (int64_t blk = 0; blk < nb; ++blk, o += kQ4BlockBytes) {
      alignas(64) uint32_t cw[16][64];
      alignas(64) int32_t sc[8][16], mn[4][16];
      alignas(64) float dd[2][16];
      for (int r = 0; r < 16; ++r) {
        const uint8_t* b = rp[r] + blk * BB;
        uint32_t sm[4];
        k4_unpack(b, sm);
        const uint8_t* s8 = reinterpret_cast<const uint8_t*>(sm);
        for (int s = 0; s < 8; ++s) sc[s][r] = s8[s];
        for (int pp = 0; pp < 4; ++pp) mn[pp][r] = static_cast<int32_t>(s8[8 + 2 * pp] | static_cast<uint32_t>(s8[9 + 2 * pp]) << 16);
        dd[0][r] = f16(b);
        dd[1][r] = f16(b + 2);
        for (int gg = 0; gg < 4; ++gg) {
          const __m256i z = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + kQs + 32 * gg));
          const __m256i m15 = _mm256_set1_epi8(15);
          __m256i lo = _mm256_and_si256(z, m15), hi = _mm256_and_si256(_mm256_srli_epi16(z, 4), m15);
          if constexpr (kFive) {  // the fifth bits: bit 2gg (low nibbles) and 2gg + 1 (high) of qh byte l
            const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 16));
            const __m256i one = _mm256_set1_epi8(1);
            lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * gg)), one), 4));
            hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * gg + 1)), one), 4));
          }
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(&cw[r][16 * gg]), lo);
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(&cw[r][16 * gg + 8]), hi);
        }
      }
      uint32_t* oc = reinterpret_cast<uint32_t*>(o);
      for (int k = 0; k < 64; ++k)
        for (int r = 0; r < 16; ++r) oc[16 * k + r] = cw[r][k];
      std::memcpy(o + kQ4Codes, sc, sizeof sc);
      std::memcpy(o + kQ4Codes + 512, mn, sizeof mn);
      std::memcpy(o + kQ4Codes + 768, dd, sizeof dd);
    }
  }
}

// Token groups [g0, g1) of the n quantized rows of an x tile into the q4p x layout (the last group
// zero-padded past n).
void q4_interleave(const XTile& xt, int64_t n, int64_t nb, int64_t qb, int64_t db, uint8_t* out, int64_t g0, int64_t g1) {
  for (int64_t g = g0; g < g1; ++g) {
    uint8_t* o = out + g * nb * kQ4XBlockBytes;
    for (int i = 0; i < kMaxTileT; ++i) {
      const int64_t t = g * kMaxTileT + i;
      for (int64_t blk = 0; blk < nb; ++blk) {
        uint8_t* ob = o + blk * kQ4XBlockBytes;
        uint32_t* oc = reinterpret_cast<uint32_t*>(ob);
        if (t >= n) {
          for (int k = 0; k < 64; ++k) oc[kMaxTileT * k + i] = 0;
          for (int pp = 0; pp < 4; ++pp) std::memset(ob + kQ4XSums + 4 * kMaxTileT * pp + 4 * i, 0, 4);
          std::memset(ob + kQ4XD + 4 * i, 0, 4);
          continue;
        }
        const int8_t* q = xt.q.data() + t * qb + 256 * blk;
        for (int k = 0; k < 64; ++k) std::memcpy(&oc[kMaxTileT * k + i], q + 4 * k, 4);
        for (int pp = 0; pp < 4; ++pp) {
          int16_t sums[2];
          for (int h = 0; h < 2; ++h) {
            int v = 0;
            for (int l = 0; l < 32; ++l) v += q[32 * (2 * pp + h) + l];
            sums[h] = static_cast<int16_t>(v);
          }
          std::memcpy(ob + kQ4XSums + 4 * kMaxTileT * pp + 4 * i, sums, 4);
        }
        std::memcpy(ob + kQ4XD + 4 * i, xt.d.data() + t * db + blk, 4);
      }
    }
  }
}

// Tiles of up to 8 tokens (T = 8, 8 streams decoding: each W block pair loaded and scaled once).
template <DType DT, int... I, int... J>
FKernels q8r_kernels(std::integer_sequence<int, I...>, std::integer_sequence<int, J...>) {
  return {kMaxTileT, kQ8Rows, kSmall, {nullptr, tile_q8r<DT, I + 1>...}, {nullptr, tile_q8r<DT, J + 1>...}, {0, same_value<J, kQ8Rows>...}};
}
template <DType DT, int... I>
FKernels q8p_kernels(std::integer_sequence<int, I...>) {
  return {kMaxTileT, kQ8PanelRows, 0, {nullptr, tile_q8p<DT, I + 1>...}, {}, {}};
}

template <DType DT, int... I, int... J>
FKernels q4r_kernels(std::integer_sequence<int, I...>, std::integer_sequence<int, J...>) {
  return {kMaxTileT, kQ4Rows, kSmall, {nullptr, tile_q4r<DT, I + 1>...}, {nullptr, tile_q4r<DT, J + 1>...}, {0, same_value<J, kQ4Rows>...}};
}
template <int... I>
FKernels q4p_kernels(std::integer_sequence<int, I...>) {
  return {kMaxTileT, kQ8PanelRows, 0, {nullptr, tile_q4p<I + 1>...}, {}, {}};
}

}  // namespace vnni512

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

// The two ymm paths share everything but dot4 / dot4s / Q8_0's sign handling.
#define NEMO_YMM_PRIMITIVES                                                                          \
  using VI = __m256i;                                                                                \
  using VF = __m256;                                                                                 \
  constexpr int kW = 32;                                                                             \
  constexpr int kTR = 3, kNR = 2, kSmall = 2, kNRS = 4;                                              \
  template <DType DT>                                                                                \
  struct TileShape {                                                                                 \
    static constexpr int tr = kTR, nr = kNR;                                                         \
  };                                                                                                 \
  inline float f16(const uint8_t* p) {                                                               \
    uint16_t h;                                                                                      \
    std::memcpy(&h, p, 2);                                                                           \
    return _cvtsh_ss(h);                                                                             \
  }                                                                                                  \
  inline VI ld(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }         \
  inline VF ldf(const float* p) { return _mm256_loadu_ps(p); }                                       \
  inline VI c8(int v) { return _mm256_set1_epi8(static_cast<char>(v)); }                            \
  inline VI zero_i() { return _mm256_setzero_si256(); }                                              \
  inline VF zero_f() { return _mm256_setzero_ps(); }                                                 \
  inline VF set1(float v) { return _mm256_set1_ps(v); }                                              \
  inline VI xor_(VI a, VI b) { return _mm256_xor_si256(a, b); }                                      \
  inline VI abs8(VI a) { return _mm256_abs_epi8(a); }                                                \
  inline VI sign8(VI x, VI w) { return _mm256_sign_epi8(x, w); }                                     \
  inline VI sub32(VI a, VI b) { return _mm256_sub_epi32(a, b); }                                     \
  inline VI dot4_signed(VI u, VI s) {                                                                \
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));                      \
  }                                                                                                  \
  inline VF cvt(VI v) { return _mm256_cvtepi32_ps(v); }                                              \
  inline VF mul(VF a, VF b) { return _mm256_mul_ps(a, b); }                                          \
  inline VF fmadd(VF a, VF b, VF c) { return _mm256_fmadd_ps(a, b, c); }                             \
  inline VF fnmadd(VF a, VF b, VF c) { return _mm256_fnmadd_ps(a, b, c); }                           \
  inline VI halves16(int, int) { return zero_i(); }                                                  \
  inline VI shifts4() { return zero_i(); }                                                           \
  inline float hsum(VF v) {                                                                          \
    __m128 a = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));                   \
    a = _mm_add_ps(a, _mm_movehl_ps(a, a));                                                          \
    a = _mm_add_ss(a, _mm_movehdup_ps(a));                                                           \
    return _mm_cvtss_f32(a);                                                                         \
  }

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c,avxvnni"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avxvnni")
#endif

namespace avxvnni {
NEMO_YMM_PRIMITIVES
constexpr bool kVnni = true;
inline VI dot4(VI acc, VI u, VI s) { return _mm256_dpbusd_avx_epi32(acc, u, s); }
inline VI dot4s(VI acc, VI u, VI s, VI sc) {
  return _mm256_dpwssd_avx_epi32(acc, _mm256_maddubs_epi16(u, s), sc);
}
#include "kernels/matmul_quant_fast_ymm.inc"
#include "kernels/matmul_quant_fast_q5.inc"
#include "kernels/matmul_quant_fast_body.inc"
}  // namespace avxvnni

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#endif

namespace avx2 {
NEMO_YMM_PRIMITIVES
constexpr bool kVnni = false;
// Only with u <= 128 (pairs of u * s stay within int16).
inline VI dot4(VI acc, VI u, VI s) {
  return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
}
inline VI dot4s(VI acc, VI u, VI s, VI sc) {
  return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), sc));
}
#include "kernels/matmul_quant_fast_ymm.inc"
#include "kernels/matmul_quant_fast_q5.inc"
#include "kernels/matmul_quant_fast_body.inc"
}  // namespace avx2

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#undef NEMO_YMM_PRIMITIVES

// The packed-panel scheme of vnni512 comes in two families that share everything but their layouts
// and kernels: Q8_0 / Q5_0 / Q5_1 (one f32 step per 32-value block: q8_pack, q8_interleave, tile_q8p,
// tile_q8r) and Q4_K / Q5_K (one f32 step per 256-value super-block: q4_pack, q4_interleave, tile_q4p,
// tile_q4r, which also reads each token's sub-block sums).
template <DType DT>
constexpr bool kSuperBlock = DT == DType::Q4_K || DT == DType::Q5_K;

template <DType DT>
constexpr int64_t panel_block_bytes() {
  if constexpr (kSuperBlock<DT>) return vnni512::kQ4BlockBytes;
  else return vnni512::kQ8BlockBytes<DT>;
}

template <DType DT>
constexpr int64_t x_block_bytes() {
  if constexpr (kSuperBlock<DT>) return vnni512::kQ4XBlockBytes;
  else return vnni512::kQ8XBlockBytes;
}

struct alignas(64) Line64 {
  uint8_t b[64];
};

// A type of either family on vnni512 with W packed into panels (tile_q8p / tile_q4p): x tiles as
// FastSrc, interleaved into the family's x layout (with each token's per-block sum terms); W row n is
// its panel.
template <DType DT>
struct PackedSrc {
  FastSrc& f;
  const uint8_t* panels;
  int64_t panel_bytes, nb;
  std::vector<Line64>& xi;  // the x tile in the family's layout
  int64_t tt0 = 0;
  void prepare(int64_t t0, int64_t t1) {
    f.prepare(t0, t1);
    tt0 = t0;
    const int64_t n = t1 - t0, groups = (n + kMaxTileT - 1) / kMaxTileT;
    xi.resize(static_cast<size_t>((groups * nb * x_block_bytes<DT>() + 63) / 64));
    uint8_t* out = xi.data()->b;
    f.pool.parallel_for(groups, std::max<int64_t>(1, 8192 / (kMaxTileT * f.K)), [&](int64_t g0, int64_t g1) {
      if constexpr (kSuperBlock<DT>) vnni512::q4_interleave(f.xt, n, nb, f.L.qb, f.L.db, out, g0, g1);
      else vnni512::q8_interleave<DT>(f.xt, n, nb, f.L.qb, f.L.db, out, g0, g1);
    });
  }
  // Token t's group (the tile kernel reads only its first row's).
  XQ x_row(int64_t t, int64_t) const {
    return {reinterpret_cast<const int8_t*>(xi.data()->b + (t - tt0) / kMaxTileT * nb * x_block_bytes<DT>()), nullptr, nullptr};
  }
  const uint8_t* w_row(int64_t n, int64_t) const { return panels + n / vnni512::kQ8PanelRows * panel_bytes; }
};

// The calling thread's panel and x buffers, one pair for all five types (a model mixing them does
// not keep a W-sized buffer per type).
std::vector<Line64>& q8_panel_buffer() {
  thread_local std::vector<Line64> v;
  return v;
}
std::vector<Line64>& q8_x_buffer() {
  thread_local std::vector<Line64> v;
  return v;
}

// Q4_K decode on vnni512 (vnni512::tile_q4r): FastSrc plus each token's S words (q4_xsums) in the
// place of v, which the tile does not read otherwise.
struct Q4RSrc {
  FastSrc& f;
  int64_t nb;
  std::vector<Line64>& xs;
  int64_t tt0 = 0;
  void prepare(int64_t t0, int64_t t1) {
    f.prepare(t0, t1);
    tt0 = t0;
    xs.resize(static_cast<size_t>((t1 - t0) * nb));
    for (int64_t t = t0; t < t1; ++t) vnni512::q4_xsums(f.x_row(t, 0).q, nb, xs[static_cast<size_t>((t - t0) * nb)].b);
  }
  XQ x_row(int64_t t, int64_t k) const {
    XQ r = f.x_row(t, k);
    r.v = reinterpret_cast<const float*>(xs[static_cast<size_t>((t - tt0) * nb)].b);
    return r;
  }
  const uint8_t* w_row(int64_t n, int64_t k) const { return f.w_row(n, k); }
};

// Q8_0, Q5_0, Q5_1, Q4_K and Q5_K on vnni512: W packed into panels from T = kPackMinT, else the
// decode tiles on W as stored (the same bits either way).
template <DType DT>
void packed_vnni512(float* y, int64_t ldy, int64_t T, int64_t N, int64_t nb, FastSrc& src) {
  ThreadPool& pool = src.pool;
  const int64_t row_bytes = src.row_bytes;
  TileWalk wk;
  wk.N = N;
  wk.ks = nb;
  wk.kc = nb;
  wk.row_bytes = row_bytes;
  wk.work = src.K / 2;
  constexpr auto tiles = std::make_integer_sequence<int, kMaxTileT>();
  constexpr auto small = std::make_integer_sequence<int, vnni512::kSmall>();
  if (T >= vnni512::kPackMinT<DT>) {
    static const FKernels kp = [&] {
      if constexpr (kSuperBlock<DT>) return vnni512::q4p_kernels(tiles);
      else return vnni512::q8p_kernels<DT>(tiles);
    }();
    const int64_t groups = (N + vnni512::kQ8PanelRows - 1) / vnni512::kQ8PanelRows;
    const int64_t pb = nb * panel_block_bytes<DT>();
    std::vector<Line64>& packed = q8_panel_buffer();
    packed.resize(static_cast<size_t>(groups * pb / 64));
    uint8_t* pk = packed.data()->b;
    const uint8_t* base = src.base;
    pool.parallel_for(groups, row_group_grain(vnni512::kQ8PanelRows, 2 * row_bytes, 0), [&](int64_t g0, int64_t g1) {
      if constexpr (kSuperBlock<DT>) vnni512::q4_pack<DT>(base, row_bytes, N, nb, pk, g0, g1);
      else vnni512::q8_pack<DT>(base, row_bytes, N, nb, pk, g0, g1);
    });
    wk.tb = std::max<int64_t>(kp.tr, kXTileBytes / src.L.qb / kp.tr * kp.tr);
    PackedSrc<DT> ps{src, pk, pb, nb, q8_x_buffer()};
    run_tiles(y, ldy, T, kp, wk, ps, pool);
  } else {
    static const FKernels kr = [&] {
      if constexpr (kSuperBlock<DT>) return vnni512::q4r_kernels<DT>(tiles, small);
      else return vnni512::q8r_kernels<DT>(tiles, small);
    }();
    wk.tb = std::max<int64_t>(kr.tr, kXTileBytes / src.L.qb / kr.tr * kr.tr);
    if constexpr (kSuperBlock<DT>) {
      thread_local std::vector<Line64> xs;
      Q4RSrc rs{src, nb, xs};
      run_tiles(y, ldy, T, kr, wk, rs, pool);
    } else {
      run_tiles(y, ldy, T, kr, wk, src, pool);
    }
  }
}

template <DType DT>
const FKernels& simd_kernels(Dot dot) {
  static const FKernels kz = vnni512::kernels<DT>();
  static const FKernels ky = avxvnni::kernels<DT>();
  static const FKernels k2 = avx2::kernels<DT>();
  return dot == Dot::kVnni512 ? kz : dot == Dot::kAvxVnni ? ky : k2;
}

// The kernels of a type on this path, or nullptr (the scalar path).
const FKernels* simd_kernels(DType dt, Dot dot) {
  switch (dt) {
    case DType::Q8_0: return &simd_kernels<DType::Q8_0>(dot);
    case DType::Q4_0: return &simd_kernels<DType::Q4_0>(dot);
    case DType::Q5_0: return &simd_kernels<DType::Q5_0>(dot);
    case DType::Q5_1: return &simd_kernels<DType::Q5_1>(dot);
    case DType::Q4_K: return &simd_kernels<DType::Q4_K>(dot);
    case DType::Q5_K: return &simd_kernels<DType::Q5_K>(dot);
    case DType::Q6_K: return &simd_kernels<DType::Q6_K>(dot);
    default: return nullptr;
  }
}

#endif  // __x86_64__

}  // namespace

bool quant_fast_quantizers_agree(const float* x, int64_t K, int64_t block, bool relu2) {
  const XLayout L(K, block);
  std::vector<int8_t> q0(L.qb), q1(L.qb);
  std::vector<float> d0(L.db), d1(L.db), v0(L.vb + 1), v1(L.vb + 1);
  quantize_row(x, K, L, relu2, q0.data(), d0.data(), v0.data());
  quantize_fn()(x, K, L, relu2, q1.data(), d1.data(), v1.data());
  return q0 == q1 && std::memcmp(d0.data(), d1.data(), d0.size() * 4) == 0 &&
         std::memcmp(v0.data(), v1.data(), L.vb * 4) == 0;
}

const char* quant_dot_path() {
  switch (dot_path()) {
    case Dot::kVnni512: return "vnni512";
    case Dot::kAvxVnni: return "avxvnni";
    case Dot::kAvx2: return "avx2";
    case Dot::kNeon: return "neon";
    case Dot::kNeonDotprod: return "neon-dotprod";
    case Dot::kNeonI8mm: return "neon-i8mm";
    default: return "scalar";
  }
}

void quant_allow_vnni(bool allow) { g_allow_vnni.store(allow, std::memory_order_relaxed); }

bool matmul_quant_fast(float* y, int64_t ldy, const float* x, int64_t ldx, const MatrixView& w,
                       int64_t T, ThreadPool& pool, MatmulInput input) {
  switch (w.dtype) {
    case DType::Q8_0: case DType::Q4_0: case DType::Q5_0: case DType::Q5_1: case DType::Q4_K: case DType::Q5_K:
    case DType::Q6_K: break;
    default: return false;
  }
  const int64_t N = w.rows, K = w.cols;
  const int64_t be = dtype_block_elems(w.dtype), nb = K / be;
  const int64_t row_bytes = static_cast<int64_t>(dtype_row_bytes(w.dtype, K));
  const uint8_t* base = static_cast<const uint8_t*>(w.data);
  const XLayout L(K, be);
  const bool relu2 = input == MatmulInput::kRelu2;
  thread_local XTile xt_local;
  XTile& xt = xt_local;  // the caller's buffers, also in the worker lambdas
#if defined(__x86_64__) || defined(__aarch64__)
  const Dot dot = dot_path();
  const FKernels* ks = dot != Dot::kScalar ? simd_kernels(w.dtype, dot) : nullptr;
  if (ks) {
#if defined(__x86_64__)
    if (dot == Dot::kVnni512) {
      void (*packed)(float*, int64_t, int64_t, int64_t, int64_t, FastSrc&) = nullptr;
      switch (w.dtype) {
        case DType::Q8_0: packed = packed_vnni512<DType::Q8_0>; break;
        case DType::Q5_0: packed = packed_vnni512<DType::Q5_0>; break;
        case DType::Q5_1: packed = packed_vnni512<DType::Q5_1>; break;
        case DType::Q4_K: packed = packed_vnni512<DType::Q4_K>; break;
        case DType::Q5_K: packed = packed_vnni512<DType::Q5_K>; break;
        default: break;
      }
      if (packed) {
        FastSrc src{xt, x, ldx, K, L, relu2, pool, base, row_bytes};
        packed(y, ldy, T, N, nb, src);
        return true;
      }
    }
#endif
    TileWalk wk;
    wk.N = N;
    wk.ks = nb;
    wk.kc = nb;
    wk.tb = std::max<int64_t>(ks->tr, kXTileBytes / L.qb / ks->tr * ks->tr);
    wk.row_bytes = row_bytes;
    wk.work = K / 2;  // integer dots: 1/2 "byte" each
    FastSrc src{xt, x, ldx, K, L, relu2, pool, base, row_bytes};
    run_tiles(y, ldy, T, *ks, wk, src, pool);
    return true;
  }
#endif

  const DotFn fn = scalar_dot(w.dtype);
  constexpr int64_t kTB = 64;
  for (int64_t tt0 = 0; tt0 < T; tt0 += kTB) {
    const int64_t tt1 = std::min(T, tt0 + kTB);
    quantize_tile(xt, x, ldx, tt0, tt1, K, L, relu2, pool);
    pool.parallel_for(N, group_grain(1, row_bytes, K, tt1 - tt0), [&](int64_t n0, int64_t n1) {
      for (int64_t n = n0; n < n1; ++n)
        for (int64_t t = tt0; t < tt1; ++t)
          y[t * ldy + n] = fn(xt.rows[t - tt0], base + n * row_bytes, nb);
    });
  }
  return true;
}

}  // namespace nemo::cpu
