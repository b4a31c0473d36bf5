// matmul_quant, NEON path (aarch64): y[T, N] = x[T, K] · W[N, K]^T for block-quantized W (Q8_0, Q4_0,
// Q4_K, Q5_K, Q6_K; layouts in core/dtype.cc), read in place, f32 activations. matmul_quant() in
// matmul_quant.cc calls it when kernel_isa() is kNeon. Compiles to nothing on other architectures.
//
// Each weight is dequantized in registers to exactly the f32 value of convert_to_f32 (bytes widened
// to 32-bit lanes, converted, times the exact f32 block scale; for Q4_K / Q5_K one FMA q * (d*sc) -
// dmin*m, where q * (d*sc) is exact, so it rounds once like the scalar formula), then enters an f32 FMA
// with x. So the only difference from the float64 product is the f32 accumulation.
//
// Structure (as the x86 paths of matmul_quant.cc): work split over W rows; a register tile computes
// TR tokens × NR rows with one 4-lane accumulator each over the whole K; decode (T <= kSmall) streams
// the rows once with prefetch (8 rows for T = 1, 4 for T = 2..4); prefill cuts x into T tiles that stay
// in L2 and walks each task's row groups over them, the group's blocks staying in L1.
//
// Batch invariance: one accumulator per (token, W row) starts at +0 and takes one FMA per 4
// consecutive weights in increasing k over the whole row, then vaddvq_f32. Tiles and tasks only decide
// which accumulators are computed together; K is never split.
#if defined(__aarch64__)

#include <arm_neon.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "kernels/matmul_paths.h"
#include "kernels/matmul_tiles.h"

namespace nemo::cpu {
namespace {

constexpr int kTR = 4, kNR = 4;          // prefill tile
constexpr int kSmall = 4;               // decode: T <= kSmall, 8 rows for T = 1, else 4
constexpr int64_t kXTileBytes = int64_t{512} << 10;
constexpr int64_t kPrefetch = 1024;      // bytes ahead in each row when streaming

inline float f16(const uint8_t* p) {
  __fp16 h;
  std::memcpy(&h, p, 2);
  return static_cast<float>(h);  // exact, subnormals included
}

// 8 signed 16-bit codes as two f32 vectors times the scale d (each product exact or rounded once,
// as the scalar q * d).
inline void scale8(int16x8_t q, float d, float32x4_t& lo, float32x4_t& hi) {
  lo = vmulq_n_f32(vcvtq_f32_s32(vmovl_s16(vget_low_s16(q))), d);
  hi = vmulq_n_f32(vcvtq_f32_s32(vmovl_high_s16(q)), d);
}

inline int16x8_t widen(uint8x8_t v) { return vreinterpretq_s16_u16(vmovl_u8(v)); }

// acc[i][j] += x_i[k .. k+4) * lo[j], then x_i[k+4 .. k+8) * hi[j].
template <int TR, int NR>
inline void madd8(float32x4_t (&acc)[TR][NR], const float* const* xr, int64_t k,
                  const float32x4_t (&lo)[NR], const float32x4_t (&hi)[NR]) {
#pragma GCC unroll 8
  for (int i = 0; i < TR; ++i) {
    const float32x4_t xv = vld1q_f32(xr[i] + k);
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) acc[i][j] = vfmaq_f32(acc[i][j], xv, lo[j]);
  }
#pragma GCC unroll 8
  for (int i = 0; i < TR; ++i) {
    const float32x4_t xv = vld1q_f32(xr[i] + k + 4);
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) acc[i][j] = vfmaq_f32(acc[i][j], xv, hi[j]);
  }
}

// Q4_K / Q5_K sub-block s (0..7): sc = d * scale_s, mn = dmin * min_s (exact in f32), unpacked from
// the 12 bytes at b + 4 as ggml's get_scale_min_k4.
inline void k4_scale(const uint8_t* b, int s, float d, float dmin, float* sc, float* mn) {
  const uint8_t* q = b + 4;
  int a, m;
  if (s < 4) {
    a = q[s] & 63;
    m = q[s + 4] & 63;
  } else {
    a = (q[s + 4] & 0xF) | ((q[s - 4] >> 6) << 4);
    m = (q[s + 4] >> 4) | ((q[s] >> 6) << 4);
  }
  *sc = d * static_cast<float>(a);
  *mn = dmin * static_cast<float>(m);
}

// One block of every row b[j] against x elements [k0, k0 + block), 8 weights at a time in increasing k.
template <DType DT, int TR, int NR>
inline void block(float32x4_t (&acc)[TR][NR], const float* const* xr, int64_t k0,
                  const uint8_t* const* b) {
  float32x4_t lo[NR], hi[NR];
  if constexpr (DT == DType::Q8_0) {
    float d[NR];
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) d[j] = f16(b[j]);
#pragma GCC unroll 4
    for (int c = 0; c < 4; ++c) {
#pragma GCC unroll 8
      for (int j = 0; j < NR; ++j) scale8(vmovl_s8(vld1_s8(reinterpret_cast<const int8_t*>(b[j] + 2 + 8 * c))), d[j], lo[j], hi[j]);
      madd8(acc, xr, k0 + 8 * c, lo, hi);
    }
  } else if constexpr (DT == DType::Q4_0) {
    float d[NR];
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) d[j] = f16(b[j]);
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) {  // low nibbles are values 0..15, high nibbles 16..31
#pragma GCC unroll 2
      for (int c = 0; c < 2; ++c) {
#pragma GCC unroll 8
        for (int j = 0; j < NR; ++j) {
          const uint8x8_t v = vld1_u8(b[j] + 2 + 8 * c);
          const uint8x8_t q = h == 0 ? vand_u8(v, vdup_n_u8(15)) : vshr_n_u8(v, 4);
          scale8(vsubq_s16(widen(q), vdupq_n_s16(8)), d[j], lo[j], hi[j]);
        }
        madd8(acc, xr, k0 + 16 * h + 8 * c, lo, hi);
      }
    }
  } else if constexpr (DT == DType::Q4_K || DT == DType::Q5_K) {
    constexpr bool kFive = DT == DType::Q5_K;
    constexpr int64_t kQs = kFive ? 48 : 16;
    float d[NR], dmin[NR];
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) {
      d[j] = f16(b[j]);
      dmin[j] = f16(b[j] + 2);
    }
#pragma GCC unroll 1
    for (int s = 0; s < 8; ++s) {  // sub-block s: values 32s .. 32s + 31
      float32x4_t sc[NR], nm[NR];
#pragma GCC unroll 8
      for (int j = 0; j < NR; ++j) {
        float a, m;
        k4_scale(b[j], s, d[j], dmin[j], &a, &m);
        sc[j] = vdupq_n_f32(a);
        nm[j] = vdupq_n_f32(-m);
      }
      [[maybe_unused]] const int8x8_t shr = vdup_n_s8(static_cast<int8_t>(-s));
#pragma GCC unroll 4
      for (int c = 0; c < 4; ++c) {
#pragma GCC unroll 8
        for (int j = 0; j < NR; ++j) {
          const uint8x8_t v = vld1_u8(b[j] + kQs + 32 * (s >> 1) + 8 * c);
          uint8x8_t q = (s & 1) ? vshr_n_u8(v, 4) : vand_u8(v, vdup_n_u8(15));
          if constexpr (kFive) {  // bit s of qh[l] is bit 4 of the code
            const uint8x8_t h = vand_u8(vshl_u8(vld1_u8(b[j] + 16 + 8 * c), shr), vdup_n_u8(1));
            q = vorr_u8(q, vshl_n_u8(h, 4));
          }
          const int16x8_t q16 = widen(q);
          lo[j] = vfmaq_f32(nm[j], vcvtq_f32_s32(vmovl_s16(vget_low_s16(q16))), sc[j]);
          hi[j] = vfmaq_f32(nm[j], vcvtq_f32_s32(vmovl_high_s16(q16)), sc[j]);
        }
        madd8(acc, xr, k0 + 32 * s + 8 * c, lo, hi);
      }
    }
  } else {  // Q6_K
    float d[NR];
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) d[j] = f16(b[j] + 208);
#pragma GCC unroll 1
    for (int h = 0; h < 2; ++h) {
#pragma GCC unroll 1
      for (int s = 0; s < 4; ++s) {  // values 128h + 32s + l, l < 32
        const int8x8_t shr = vdup_n_s8(static_cast<int8_t>(-2 * s));
#pragma GCC unroll 4
        for (int c = 0; c < 4; ++c) {
#pragma GCC unroll 8
          for (int j = 0; j < NR; ++j) {
            const uint8x8_t l = vld1_u8(b[j] + 64 * h + 32 * (s & 1) + 8 * c);
            const uint8x8_t lq = s < 2 ? vand_u8(l, vdup_n_u8(15)) : vshr_n_u8(l, 4);
            const uint8x8_t hq = vand_u8(vshl_u8(vld1_u8(b[j] + 128 + 32 * h + 8 * c), shr), vdup_n_u8(3));
            const int16x8_t q = vsubq_s16(widen(vorr_u8(lq, vshl_n_u8(hq, 4))), vdupq_n_s16(32));
            const float ds = d[j] * static_cast<float>(static_cast<int8_t>(b[j][192 + 8 * h + 2 * s + c / 2]));
            scale8(q, ds, lo[j], hi[j]);
          }
          madd8(acc, xr, k0 + 128 * h + 32 * s + 8 * c, lo, hi);
        }
      }
    }
  }
}

// The TileFn<const float*> of matmul_tiles.h: nb blocks of every row (head unused: 0).
template <DType DT, int TR, int NR, bool kPf>
void tile(const float* const* xr_in, const uint8_t* const* wr, int64_t, int64_t nb, float* out) {
  constexpr int64_t BE = kBE<DT>, BB = kBB<DT>;
  const float* xr[TR];
  const uint8_t* b[NR];
  for (int i = 0; i < TR; ++i) xr[i] = xr_in[i];
  for (int j = 0; j < NR; ++j) b[j] = wr[j];
  float32x4_t acc[TR][NR];
#pragma GCC unroll 8
  for (int i = 0; i < TR; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) acc[i][j] = vdupq_n_f32(0.0f);
  for (int64_t blk = 0; blk < nb; ++blk) {
    if constexpr (kPf) {
#pragma GCC unroll 8
      for (int j = 0; j < NR; ++j)
        for (int64_t o = 0; o < BB; o += 64) __builtin_prefetch(b[j] + kPrefetch + o, 0, 3);
    }
    block<DT, TR, NR>(acc, xr, blk * BE, b);
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) b[j] += BB;
  }
  for (int i = 0; i < TR; ++i)
    for (int j = 0; j < NR; ++j) out[i * NR + j] = vaddvq_f32(acc[i][j]);
}

using QTiles = TileKernels<const float*>;

template <DType DT>
const QTiles& tiles() {
  static const QTiles t = {
      kTR,
      kNR,
      kSmall,
      {nullptr, tile<DT, 1, kNR, false>, tile<DT, 2, kNR, false>, tile<DT, 3, kNR, false>,
       tile<DT, 4, kNR, false>},
      {nullptr, tile<DT, 1, 8, true>, tile<DT, 2, 4, true>, tile<DT, 3, 4, true>,
       tile<DT, 4, 4, true>},
      {0, 8, 4, 4, 4}};
  return t;
}

// x as given (f32 rows), W rows whole (one slice of nb blocks).
struct QuantSrc {
  const float* x;
  int64_t ldx;
  const uint8_t* base;
  int64_t row_bytes;
  void prepare(int64_t, int64_t) {}
  const float* x_row(int64_t t, int64_t) const { return x + t * ldx; }
  const uint8_t* w_row(int64_t n, int64_t) const { return base + n * row_bytes; }
};

void run(float* y, int64_t ldy, const float* x, int64_t ldx, const MatrixView& w, int64_t T,
         ThreadPool& pool, const QTiles& ks) {
  const int64_t K = w.cols;
  const int64_t nb = K / dtype_block_elems(w.dtype);
  TileWalk wk;
  wk.N = w.rows;
  wk.ks = nb;
  wk.kc = nb;
  wk.tb = std::max<int64_t>(kTR, kXTileBytes / (K * 4) / kTR * kTR);
  wk.row_bytes = static_cast<int64_t>(dtype_row_bytes(w.dtype, K));
  wk.work = 2 * K;  // 2 "bytes" per multiply-add
  QuantSrc src{x, ldx, static_cast<const uint8_t*>(w.data), wk.row_bytes};
  run_tiles(y, ldy, T, ks, wk, src, pool);
}

}  // namespace

bool matmul_quant_neon(float* y, int64_t ldy, const float* x, int64_t ldx, const MatrixView& w,
                       int64_t T, ThreadPool& pool) {
  switch (w.dtype) {
    case DType::Q8_0: run(y, ldy, x, ldx, w, T, pool, tiles<DType::Q8_0>()); return true;
    case DType::Q4_0: run(y, ldy, x, ldx, w, T, pool, tiles<DType::Q4_0>()); return true;
    case DType::Q4_K: run(y, ldy, x, ldx, w, T, pool, tiles<DType::Q4_K>()); return true;
    case DType::Q5_K: run(y, ldy, x, ldx, w, T, pool, tiles<DType::Q5_K>()); return true;
    case DType::Q6_K: run(y, ldy, x, ldx, w, T, pool, tiles<DType::Q6_K>()); return true;
    default: return false;
  }
}

}  // namespace nemo::cpu

#endif  // __aarch64__
