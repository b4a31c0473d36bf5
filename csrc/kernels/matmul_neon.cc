// matmul, NEON path (aarch64): y[T, N] = x[T, K] · W[N, K]^T for W in F32, F16 or BF16, f32
// activations, f32 accumulation. matmul() in matmul.cc calls it when kernel_isa() is kNeon. Compiles to
// nothing on other architectures.
//
// Structure:
//  * x rows are copied into a scratch buffer, each zero-padded to a multiple of kS floats, so the last
//    vector step of a row reads zeros past K.
//  * W is converted in registers: BF16 by a 16-bit left shift into f32 lanes (vshll), F16 by
//    vcvt_f32_f16 (exact for every f16, subnormals included), F32 as is. Unaligned loads cost nothing
//    extra on aarch64 cores, so unlike x86 there is no realignment of the K loop.
//  * The work is split over W rows: each task owns groups of W rows and all tokens of a T tile.
//  * A register tile computes TR tokens × NR W rows with one 4-lane accumulator each (32 NEON
//    registers: 4 x 4 tiles leave room for 8 converted W vectors and an x vector).
//  * Decode (T <= kSmall) is memory bound: each task streams its W rows once with prefetch, 8 rows at
//    a time for T = 1 (8 independent FMA chains), 4 rows for T = 2..4.
//  * Prefill cuts K into slices of kKc and W rows into L2 blocks of kNB rows, as the x86 paths do.
//
// Batch invariance (the contract of matmul.cc): y[t, n] is bitwise the same whatever T, the row's
// position in the batch and the thread count. Every element is reduced in one order that depends only
// on K:
//  * K is cut into slices [k0, k0 + kKc), for decode and prefill alike;
//  * within a slice, one accumulator per (token, W row) starts at +0 and takes one FMA per 4
//    consecutive elements in increasing k (past K, zero W against zero x);
//  * the accumulator is reduced by vaddvq_f32 (pairwise: (a0 + a1) + (a2 + a3));
//  * the slice sums are added left to right (in y for prefill, in a local array for decode).
// Tiles and tasks only decide which elements are computed together; K is never split across tasks.
#if defined(__aarch64__)

#include <arm_neon.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "core/dtype.h"
#include "kernels/matmul_paths.h"
#include "kernels/matmul_tiles.h"

namespace nemo::cpu {
namespace {

constexpr int64_t kS = 8;        // elements per step: two 4-lane vectors (one 16-byte F16/BF16 load)
constexpr int64_t kKc = 1024;    // K slice (multiple of kS)
constexpr int64_t kNB = 64;      // W rows per L2 block in prefill
constexpr int64_t kXTileBytes = int64_t{2} << 20;  // prepared x per prefill T tile
constexpr int64_t kPrefetch = 1024;                 // bytes ahead along each W row when streaming
constexpr int kTR = 4, kNR = 4;                     // prefill tile
constexpr int kSmall = 4;                           // decode: T <= kSmall, 8 rows for T = 1, else 4

inline int64_t round_up(int64_t a, int64_t b) { return (a + b - 1) / b * b; }

template <DType DT>
constexpr int64_t kEs = DT == DType::F32 ? 4 : 2;

// The kS weights at p (any alignment) as two f32 vectors: elements 0-3 and 4-7.
template <DType DT>
inline void load_w(const uint8_t* p, float32x4_t& lo, float32x4_t& hi) {
  if constexpr (DT == DType::BF16) {
    const uint16x8_t v = vreinterpretq_u16_u8(vld1q_u8(p));
    lo = vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(v), 16));
    hi = vreinterpretq_f32_u32(vshll_high_n_u16(v, 16));
  } else if constexpr (DT == DType::F16) {
    const float16x8_t v = vreinterpretq_f16_u8(vld1q_u8(p));
    lo = vcvt_f32_f16(vget_low_f16(v));
    hi = vcvt_high_f32_f16(v);
  } else {
    lo = vreinterpretq_f32_u8(vld1q_u8(p));
    hi = vreinterpretq_f32_u8(vld1q_u8(p + 16));
  }
}

// One step of kS elements: x_i's at xr[i] + kx, W_j's at wr[j] + kw elements. Elements 0-3 go into
// every accumulator before elements 4-7 (increasing k).
template <DType DT, int TR, int NR>
inline void step(const float* const* xr, const uint8_t* const* wr, int64_t kx, int64_t kw,
                 float32x4_t (&acc)[TR][NR]) {
  float32x4_t lo[NR], hi[NR];
#pragma GCC unroll 8
  for (int j = 0; j < NR; ++j) load_w<DT>(wr[j] + kw * kEs<DT>, lo[j], hi[j]);
#pragma GCC unroll 8
  for (int i = 0; i < TR; ++i) {
    const float32x4_t xv = vld1q_f32(xr[i] + kx);
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) acc[i][j] = vfmaq_f32(acc[i][j], xv, lo[j]);
  }
#pragma GCC unroll 8
  for (int i = 0; i < TR; ++i) {
    const float32x4_t xv = vld1q_f32(xr[i] + kx + 4);
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) acc[i][j] = vfmaq_f32(acc[i][j], xv, hi[j]);
  }
}

// out[i * NR + j] = sum over k < kn of xr[i][k] * W_j[k] (wr[j]: W_j's element 0 of the slice); the
// TileFn<const float*> of matmul_tiles.h (head unused: no realignment on aarch64, always 0).
template <DType DT, int TR, int NR, bool kPf>
void tile(const float* const* xr, const uint8_t* const* wr, int64_t, int64_t kn, float* out) {
  constexpr int64_t es = kEs<DT>;
  float32x4_t acc[TR][NR];
#pragma GCC unroll 8
  for (int i = 0; i < TR; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) acc[i][j] = vdupq_n_f32(0.0f);
  int64_t k = 0;
  if constexpr (kPf) {
    constexpr int64_t kLine = 64 / es;  // elements per 64-byte line of W
    for (; k + kLine <= kn; k += kLine) {
#pragma GCC unroll 8
      for (int j = 0; j < NR; ++j) __builtin_prefetch(wr[j] + k * es + kPrefetch, 0, 3);
#pragma GCC unroll 4
      for (int64_t u = 0; u < kLine; u += kS) step<DT, TR, NR>(xr, wr, k + u, k + u, acc);
    }
  }
  for (; k + kS <= kn; k += kS) step<DT, TR, NR>(xr, wr, k, k, acc);
  if (k < kn) {  // K tail: W's last elements in zero-filled buffers (x is zero-padded already)
    alignas(16) uint8_t buf[NR][kS * es];
    const uint8_t* tw[NR];
    for (int j = 0; j < NR; ++j) {
      std::memset(buf[j], 0, sizeof(buf[j]));
      std::memcpy(buf[j], wr[j] + k * es, static_cast<size_t>((kn - k) * es));
      tw[j] = buf[j];
    }
    step<DT, TR, NR>(xr, tw, k, 0, acc);
  }
#pragma GCC unroll 8
  for (int i = 0; i < TR; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) out[i * NR + j] = vaddvq_f32(acc[i][j]);
}

using Tiles = TileKernels<const float*>;

template <DType DT>
const Tiles& tiles() {
  static const Tiles t = {
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

// Scratch for the prepared x, owned by the calling thread and read by the workers.
float* x_scratch(size_t n) {
  thread_local std::vector<float> buf;
  if (buf.size() < n) buf.resize(n);
  return buf.data();
}

// xp[t, 0..Kp) = x[t, 0..K) followed by zeros.
void prepare_x(float* xp, int64_t Kp, const float* x, int64_t ldx, int64_t T, int64_t K,
               ThreadPool& pool) {
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(Kp, 1));
  pool.parallel_for(T, grain, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      float* dst = xp + t * Kp;
      std::memcpy(dst, x + t * ldx, static_cast<size_t>(K) * sizeof(float));
      std::fill(dst + K, dst + Kp, 0.0f);
    }
  });
}

// The source of run_tiles (matmul_tiles.h): x rows prepared one T tile at a time into the calling
// thread's scratch, W rows at the slice's first element.
struct DenseSrc {
  const float* x;
  int64_t ldx, K, Kp;
  ThreadPool& pool;
  float* xp;
  const uint8_t* wb;
  int64_t row_bytes, es;
  int64_t tt0 = 0;
  void prepare(int64_t t0, int64_t t1) {
    tt0 = t0;
    prepare_x(xp, Kp, x + t0 * ldx, ldx, t1 - t0, K, pool);
  }
  const float* x_row(int64_t t, int64_t k0) const { return xp + (t - tt0) * Kp + k0; }
  const uint8_t* w_row(int64_t n, int64_t k0) const { return wb + n * row_bytes + k0 * es; }
};

void run(float* y, int64_t ldy, const float* x, int64_t ldx, const MatrixView& w, int64_t T,
         ThreadPool& pool, const Tiles& ks) {
  const int64_t K = w.cols;
  const int64_t es = static_cast<int64_t>(dtype_size(w.dtype));
  const int64_t Kp = round_up(K, kS);
  TileWalk wk;
  wk.N = w.rows;
  wk.ks = K;
  wk.kc = kKc;
  // Prefill: T tiles of TB tokens; L2 blocks of kNB W rows, K slices of kKc, groups of kTR tokens
  // (the W block slice stays in L2, x rows in L1).
  wk.tb = T <= kSmall ? T : std::max<int64_t>(kTR, kXTileBytes / (Kp * 4) / kTR * kTR);
  wk.gpb = kNB / kNR;
  wk.row_bytes = K * es;
  wk.work = 2 * K;  // 2 "bytes" per multiply-add
  DenseSrc src{x, ldx, K, Kp, pool, x_scratch(static_cast<size_t>(std::min(T, wk.tb) * Kp)),
               static_cast<const uint8_t*>(w.data), K * es, es};
  run_tiles(y, ldy, T, ks, wk, src, pool);
}

// ---- kFast for BF16 weights: BFDOT / BFMMLA (FEAT_BF16) -------------------------------------------
//
// Only for MatmulPrecision::kFast, as AVX-512 BF16 on x86: x is rounded to bf16 (round to nearest even,
// f32_to_bf16, NaN kept), and the bf16 instructions round differently from the f32 FMA chain of kExact:
// each BFDotAdd (one pair of products added to an f32 accumulator) rounds the pair sum and then the
// accumulation, to odd, and flushes denormal inputs and results whatever FPCR says (FEAT_EBF16 aside).
// kExact never comes here, so its results do not change.
//
// One order for every element, so that kFast stays batch invariant: an element's f32 accumulator
// (a lane, never reduced horizontally) takes one BFDotAdd per pair of consecutive k in increasing k,
// over K slices of kKcBf16 whose sums run_tiles adds left to right. Decode uses BFDOT by element
// (lane r: W row r, so 4 W rows are transposed into pairs per vector, and x's pair broadcast); prefill
// uses BFMMLA, a 2x4 by 4x2 block whose elements each take two BFDotAdds in k order, i.e. the same
// sequence. (Plain BFDOT over a row, lanes holding different k, would need a horizontal sum in another
// order than the prefill tiles.)

constexpr int64_t kKcBf16 = 2048;  // K slice (multiple of kS); bf16 x rows are half the bytes

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("bf16"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("arch=armv8.2-a+bf16")
#endif

namespace bf16 {

inline bfloat16x8_t ld(const void* p) { return vreinterpretq_bf16_u16(vld1q_u16(static_cast<const uint16_t*>(p))); }
inline bfloat16x8_t zip_lo(bfloat16x8_t a, bfloat16x8_t b) {
  return vreinterpretq_bf16_u64(vzip1q_u64(vreinterpretq_u64_bf16(a), vreinterpretq_u64_bf16(b)));
}
inline bfloat16x8_t zip_hi(bfloat16x8_t a, bfloat16x8_t b) {
  return vreinterpretq_bf16_u64(vzip2q_u64(vreinterpretq_u64_bf16(a), vreinterpretq_u64_bf16(b)));
}

// The W elements of row j for step k: the row itself, or its last elements zero-padded in buf.
template <int NR>
inline void w_step(const uint8_t* const* wr, int64_t k, int64_t kn, uint16_t (&buf)[NR][kS],
                   const uint8_t* (&p)[NR]) {
  for (int j = 0; j < NR; ++j) {
    if (k + kS <= kn) {
      p[j] = wr[j] + 2 * k;
    } else {
      std::memset(buf[j], 0, sizeof(buf[j]));
      std::memcpy(buf[j], wr[j] + 2 * k, static_cast<size_t>((kn - k) * 2));
      p[j] = reinterpret_cast<const uint8_t*>(buf[j]);
    }
  }
}

// Decode: TR tokens x NR W rows (NR a multiple of 4), BFDOT by element.
template <int TR, int NR, bool kPf>
void tile_dot(const uint16_t* const* xr, const uint8_t* const* wr, int64_t, int64_t kn, float* out) {
  constexpr int G = NR / 4;
  float32x4_t acc[TR][G];
#pragma GCC unroll 8
  for (int i = 0; i < TR; ++i)
#pragma GCC unroll 2
    for (int g = 0; g < G; ++g) acc[i][g] = vdupq_n_f32(0.0f);
  uint16_t buf[NR][kS];
  for (int64_t k = 0; k < kn; k += kS) {
    const uint8_t* p[NR];
    w_step<NR>(wr, k, kn, buf, p);
    if constexpr (kPf) {
      if ((k & 31) == 0)
        for (int j = 0; j < NR; ++j) __builtin_prefetch(wr[j] + 2 * k + kPrefetch, 0, 3);
    }
    bfloat16x8_t v[G][4];  // v[g][m] lane r: pair m of W row 4g + r
#pragma GCC unroll 2
    for (int g = 0; g < G; ++g) {
      const uint32x4_t r0 = vld1q_u32(reinterpret_cast<const uint32_t*>(p[4 * g]));
      const uint32x4_t r1 = vld1q_u32(reinterpret_cast<const uint32_t*>(p[4 * g + 1]));
      const uint32x4_t r2 = vld1q_u32(reinterpret_cast<const uint32_t*>(p[4 * g + 2]));
      const uint32x4_t r3 = vld1q_u32(reinterpret_cast<const uint32_t*>(p[4 * g + 3]));
      const uint64x2_t t0 = vreinterpretq_u64_u32(vtrn1q_u32(r0, r1)), t1 = vreinterpretq_u64_u32(vtrn2q_u32(r0, r1));
      const uint64x2_t t2 = vreinterpretq_u64_u32(vtrn1q_u32(r2, r3)), t3 = vreinterpretq_u64_u32(vtrn2q_u32(r2, r3));
      v[g][0] = vreinterpretq_bf16_u64(vzip1q_u64(t0, t2));
      v[g][1] = vreinterpretq_bf16_u64(vzip1q_u64(t1, t3));
      v[g][2] = vreinterpretq_bf16_u64(vzip2q_u64(t0, t2));
      v[g][3] = vreinterpretq_bf16_u64(vzip2q_u64(t1, t3));
    }
#pragma GCC unroll 8
    for (int i = 0; i < TR; ++i) {
      const bfloat16x8_t x = ld(xr[i] + k);
#pragma GCC unroll 2
      for (int g = 0; g < G; ++g) {
        acc[i][g] = vbfdotq_laneq_f32(acc[i][g], v[g][0], x, 0);
        acc[i][g] = vbfdotq_laneq_f32(acc[i][g], v[g][1], x, 1);
        acc[i][g] = vbfdotq_laneq_f32(acc[i][g], v[g][2], x, 2);
        acc[i][g] = vbfdotq_laneq_f32(acc[i][g], v[g][3], x, 3);
      }
    }
  }
  for (int i = 0; i < TR; ++i)
    for (int g = 0; g < G; ++g) vst1q_f32(out + i * NR + 4 * g, acc[i][g]);
}

// Prefill: TR tokens x NR W rows in 2 x 2 blocks by BFMMLA, lanes (x0 W0, x0 W1, x1 W0, x1 W1); an odd
// last token pairs with itself and its copy is dropped.
template <int TR, int NR>
void tile_mmla(const uint16_t* const* xr, const uint8_t* const* wr, int64_t, int64_t kn, float* out) {
  constexpr int TP = (TR + 1) / 2, RP = NR / 2;
  float32x4_t acc[TP][RP];
#pragma GCC unroll 4
  for (int q = 0; q < TP; ++q)
#pragma GCC unroll 4
    for (int r = 0; r < RP; ++r) acc[q][r] = vdupq_n_f32(0.0f);
  uint16_t buf[NR][kS];
  for (int64_t k = 0; k < kn; k += kS) {
    const uint8_t* p[NR];
    w_step<NR>(wr, k, kn, buf, p);
    bfloat16x8_t wl[RP], wh[RP];  // elements k..k+3 and k+4..k+7 of a pair of W rows
#pragma GCC unroll 4
    for (int r = 0; r < RP; ++r) {
      const bfloat16x8_t a = ld(p[2 * r]), b = ld(p[2 * r + 1]);
      wl[r] = zip_lo(a, b);
      wh[r] = zip_hi(a, b);
    }
#pragma GCC unroll 4
    for (int q = 0; q < TP; ++q) {
      const bfloat16x8_t a = ld(xr[2 * q] + k), b = ld(xr[std::min(2 * q + 1, TR - 1)] + k);
      const bfloat16x8_t xl = zip_lo(a, b), xh = zip_hi(a, b);
#pragma GCC unroll 4
      for (int r = 0; r < RP; ++r) acc[q][r] = vbfmmlaq_f32(vbfmmlaq_f32(acc[q][r], xl, wl[r]), xh, wh[r]);
    }
  }
  for (int q = 0; q < TP; ++q)
    for (int r = 0; r < RP; ++r) {
      float v[4];
      vst1q_f32(v, acc[q][r]);
      for (int e = 0; e < 4; ++e) {
        const int i = 2 * q + (e >> 1), j = 2 * r + (e & 1);
        if (i < TR) out[i * NR + j] = v[e];
      }
    }
}

using Tiles = TileKernels<const uint16_t*>;

const Tiles& tiles() {
  static const Tiles t = {
      kTR,
      kNR,
      kSmall,
      {nullptr, tile_mmla<1, kNR>, tile_mmla<2, kNR>, tile_mmla<3, kNR>, tile_mmla<4, kNR>},
      {nullptr, tile_dot<1, 8, true>, tile_dot<2, 4, true>, tile_dot<3, 4, true>, tile_dot<4, 4, true>},
      {0, 8, 4, 4, 4}};
  return t;
}

}  // namespace bf16

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

// x rows rounded to bf16, one T tile at a time, each zero-padded to Kp.
struct Bf16Src {
  const float* x;
  int64_t ldx, K, Kp;
  ThreadPool& pool;
  uint16_t* xp;
  const uint8_t* wb;
  int64_t row_bytes;
  int64_t tt0 = 0;
  void prepare(int64_t t0, int64_t t1) {
    tt0 = t0;
    const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(Kp, 1));
    pool.parallel_for(t1 - t0, grain, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        const float* src = x + (t0 + i) * ldx;
        uint16_t* dst = xp + i * Kp;
        for (int64_t k = 0; k < K; ++k) dst[k] = f32_to_bf16(src[k]);
        std::fill(dst + K, dst + Kp, uint16_t{0});
      }
    });
  }
  const uint16_t* x_row(int64_t t, int64_t k0) const { return xp + (t - tt0) * Kp + k0; }
  const uint8_t* w_row(int64_t n, int64_t k0) const { return wb + n * row_bytes + k0 * 2; }
};

void run_bf16_fast(float* y, int64_t ldy, const float* x, int64_t ldx, const MatrixView& w, int64_t T,
                   ThreadPool& pool) {
  const int64_t K = w.cols;
  const int64_t Kp = round_up(K, kS);
  TileWalk wk;
  wk.N = w.rows;
  wk.ks = K;
  wk.kc = kKcBf16;
  wk.tb = T <= kSmall ? T : std::max<int64_t>(kTR, kXTileBytes / (Kp * 2) / kTR * kTR);
  wk.gpb = kNB / kNR;
  wk.row_bytes = K * 2;
  wk.work = K;  // 1 "byte" per multiply-add (two per lane and instruction)
  thread_local std::vector<uint16_t> buf;
  const size_t n = static_cast<size_t>(std::min(T, wk.tb) * Kp);
  if (buf.size() < n) buf.resize(n);
  Bf16Src src{x, ldx, K, Kp, pool, buf.data(), static_cast<const uint8_t*>(w.data), K * 2};
  run_tiles(y, ldy, T, bf16::tiles(), wk, src, pool);
}

}  // namespace

void matmul_neon(float* y, int64_t ldy, const float* x, int64_t ldx, const MatrixView& w, int64_t T,
                 ThreadPool& pool, bool bf16_fast) {
  if (bf16_fast && w.dtype == DType::BF16) return run_bf16_fast(y, ldy, x, ldx, w, T, pool);
  switch (w.dtype) {
    case DType::BF16: return run(y, ldy, x, ldx, w, T, pool, tiles<DType::BF16>());
    case DType::F16: return run(y, ldy, x, ldx, w, T, pool, tiles<DType::F16>());
    default: return run(y, ldy, x, ldx, w, T, pool, tiles<DType::F32>());
  }
}

}  // namespace nemo::cpu

#endif  // __aarch64__
