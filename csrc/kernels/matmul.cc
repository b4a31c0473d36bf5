// matmul: y[T, N] = x[T, K] · W[N, K]^T with W in F32, F16 or BF16 and f32 accumulation.
//
// Three paths, chosen per call from core/cpu_features (kernel_isa()):
//   scalar  plain C++ (the correctness baseline; runs anywhere)
//   avx2    AVX2 + FMA + F16C, 8 floats per vector
//   avx512  AVX-512 F/BW/VL/DQ, 16 floats per vector
// With kExact activations stay f32 on every path, so paths differ only by float rounding. kFast for
// BF16 weights on a CPU with AVX-512 BF16 (and the avx512 path) rounds x to bf16 and uses vdpbf16ps
// (namespace avx512bf16), on aarch64 with FEAT_BF16 (and the neon path) BFDOT / BFMMLA
// (matmul_neon.cc); everywhere else kFast computes as kExact, bit for bit.
// kRelu2 applies relu(x)² while x is copied into the scratch buffer (the scalar path, which reads x
// in place, makes a copy for it); quantized weights go to matmul_quant.
//
// SIMD structure (both vector paths; the loop nest is run_tiles of matmul_tiles.h, shared by every SIMD
// matmul path, this file supplying the tile kernels, the x packing and the alignment shift):
//  * x is copied into a scratch buffer, each row zero-padded to a multiple of 32 elements. For BF16
//    weights the copy is also permuted within each block of S = 2 * vector-width elements to
//    [even elements, odd elements]: one vector load of S bf16 values then yields the even elements by
//    a 16-bit left shift of each 32-bit lane and the odd ones by masking off the low half, i.e. two f32
//    vectors for two cheap integer ops, matching the permuted x. F16 (F16C conversion) and F32 weights
//    use x in natural order.
//  * W loads are aligned when all rows share one offset within a cache line: the K loop then starts
//    that many elements early on a virtual index, x gets as many leading zeros, and the first vector
//    step reads only the real elements (masked load / zero-padded copy).
//  * The work is split over W rows: each parallel task owns a range of W rows and all tokens (of a T
//    tile), so each weight is read from memory once per call (per T tile of up to 4 MB of x).
//  * A register tile computes TR tokens × NR W rows over a K range with TR*NR vector accumulators
//    (reduced horizontally at the end, four at a time): each converted W vector is used TR times, each
//    x vector NR times.
//  * Small batches (decode, T <= kSmall) are memory bound: each task streams its W rows once over the
//    whole K, 4 rows at a time with software prefetch, all T tokens in the same tile.
//  * Prefill blocks K into slices of kKc elements and W rows into L2 blocks of kNB rows: for one K
//    slice, TR x rows (TR*kKc*4 bytes) stay in L1 while the W block slice streams from L2 for every
//    group of TR tokens; partial sums go to y and are added up over the K slices.
//  * K tails: x is zero-padded; W tails use masked loads (AVX-512) or a zero-padded copy (AVX2).
//    N tails reuse the last W row and drop the extra results; T tails use smaller TR instantiations.
//
// Batch invariance. Continuous batching packs a sequence's rows with other sequences' rows, so T and a
// row's position in the batch change from step to step, and a request must give exactly the same
// tokens alone or batched. So y[t, n] is bitwise the same whatever T, the row's position and the
// thread count (on each path; paths differ from each other). Every element is reduced in ONE order
// that depends only on K and on W's address (through the alignment shift), never on T or the tiling:
//  * the virtual K range [0, Ks) is cut into slices [k0, k0 + kKc), for decode and prefill alike;
//  * within a slice, one vector accumulator per (token, W row) starts at +0 and takes one FMA per
//    vector of kS/2 elements in increasing k' (the two halves of a step one after the other, into the
//    same accumulator; the first step of slice 0 reads only k' >= shift, the last step of the last
//    slice only k' < Ks, the other W elements reading as zero against zero x);
//  * the accumulator is reduced horizontally by one fixed tree (hsum4 and hsum use the same one);
//  * the slice sums are added left to right: y = s_0, then y += s_1, ... (in y for prefill, in a local
//    array for decode).
// Register tiles and thread tasks only decide how many tokens and W rows are computed together; tasks
// split W rows (and prefill's T tiles), never K. The scalar path needs nothing special: it computes
// each element by the same loop whatever T is.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <new>
#include <utility>
#include <vector>

#include "core/cpu_features.h"
#include "kernels/kernels.h"
#include "kernels/matmul_paths.h"
#include "kernels/matmul_tiles.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

// GCC 12's intrinsic headers self-initialise "undefined" vectors (__m512 __Y = __Y), which trips
// -Wuninitialized / -Wmaybe-uninitialized once inlined here. Not a real use of uninitialised data.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace nemo::cpu {
namespace {

// Tasks are groups of NR W rows; a range of groups is worth handing to another thread once it holds
// about this much work (weight bytes plus 2 "bytes" per multiply-add).
int64_t group_grain(int64_t NR, int64_t K, int64_t esize, int64_t T) {
  return row_group_grain(NR, K * esize, 2 * K * T);  // 2 "bytes" per multiply-add
}

// ---- scalar path -----------------------------------------------------------------------------------
// Plain C++: W rows are converted to f32 once per call (4 rows at a time), then dotted with every x
// row using 4 partial sums.

// f16 -> f32 without the subnormal loop of dtype.h's f16_to_f32 (same results for every input), and
// without branches so that the conversion loop vectorises: move exponent and mantissa into place and
// rebias; Inf/NaN get the maximal exponent; zeros and subnormals are mantissa * 2^-24, exact in f32;
// the sign bit goes in last.
inline float f16_to_f32_fast(uint16_t h) {
  const uint32_t em = static_cast<uint32_t>(h & 0x7fffu) << 13;
  const uint32_t exp = em & 0x0f800000u;
  uint32_t bits = em + ((127u - 15u) << 23);
  bits += ((128u - 16u) << 23) & (0u - static_cast<uint32_t>(exp == 0x0f800000u));  // Inf / NaN
  const float sub = static_cast<float>(static_cast<int32_t>(h & 0x3ffu)) * 5.9604644775390625e-08f;
  uint32_t sub_bits;
  std::memcpy(&sub_bits, &sub, 4);
  const uint32_t is_sub = 0u - static_cast<uint32_t>(exp == 0);
  bits = (sub_bits & is_sub) | (bits & ~is_sub);
  bits |= static_cast<uint32_t>(h & 0x8000u) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

constexpr int kScalarRows = 4;

// relu(v)², NaN staying NaN (std::max keeps its first argument when unordered).
inline float relu_sq(float v) {
  v = std::max(v, 0.0f);
  return v * v;
}

void matmul_scalar(float* y, int64_t ldy, const float* x, int64_t ldx, const MatrixView& w,
                   int64_t T, ThreadPool& pool, MatmulInput input) {
  const int64_t N = w.rows, K = w.cols;
  std::vector<float> act;  // the scalar path reads x in place, so kRelu2 needs its own copy
  if (input == MatmulInput::kRelu2) {
    act.resize(static_cast<size_t>(T * K));
    for (int64_t t = 0; t < T; ++t)
      for (int64_t k = 0; k < K; ++k) act[static_cast<size_t>(t * K + k)] = relu_sq(x[t * ldx + k]);
    x = act.data();
    ldx = K;
  }
  const int64_t esize = static_cast<int64_t>(dtype_size(w.dtype));
  const int64_t groups = (N + kScalarRows - 1) / kScalarRows;
  pool.parallel_for(groups, group_grain(kScalarRows, K, esize, T), [&](int64_t g0, int64_t g1) {
    std::vector<float> buf(w.dtype == DType::F32 ? 0 : static_cast<size_t>(kScalarRows * K));
    const float* wr[kScalarRows];
    for (int64_t g = g0; g < g1; ++g) {
      const int64_t n0 = g * kScalarRows;
      const int64_t nr = std::min<int64_t>(kScalarRows, N - n0);
      for (int r = 0; r < kScalarRows; ++r) {
        const int64_t n = n0 + std::min<int64_t>(r, nr - 1);  // N tail: repeat the last row
        if (w.dtype == DType::F32) {
          wr[r] = static_cast<const float*>(w.data) + n * K;
          continue;
        }
        float* dst = buf.data() + r * K;
        const uint16_t* src = static_cast<const uint16_t*>(w.data) + n * K;
        if (r < nr) {
          if (w.dtype == DType::BF16) {
            for (int64_t k = 0; k < K; ++k) dst[k] = bf16_to_f32(src[k]);
          } else {
            for (int64_t k = 0; k < K; ++k) dst[k] = f16_to_f32_fast(src[k]);
          }
        }
        wr[r] = buf.data() + std::min<int64_t>(r, nr - 1) * K;
      }
      for (int64_t t = 0; t < T; ++t) {
        const float* xr = x + t * ldx;
        for (int64_t r = 0; r < nr; ++r) {
          const float* wk = wr[r];
          float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
          int64_t k = 0;
          for (; k + 4 <= K; k += 4) {
            s0 += xr[k] * wk[k];
            s1 += xr[k + 1] * wk[k + 1];
            s2 += xr[k + 2] * wk[k + 2];
            s3 += xr[k + 3] * wk[k + 3];
          }
          for (; k < K; ++k) s0 += xr[k] * wk[k];
          y[t * ldy + n0 + r] = (s0 + s1) + (s2 + s3);
        }
      }
    }
  });
}

#if defined(__x86_64__)

constexpr int64_t kXPad = 32;  // x rows in scratch are padded to a multiple of this many floats
constexpr int64_t kKc = 1024;  // K slice for f32 x (multiple of 32): TR x rows of it stay in L1
constexpr int64_t kNB = 64;    // W rows per L2 block in prefill (kNB * kKc * 4 bytes at most)
// Prefill tiles T so that the prepared x tile (TB rows) stays in the shared last-level cache while
// all threads stream their W rows past it; W is then read from memory once per tile.
constexpr int64_t kXTileBytes = int64_t{4} << 20;

inline int64_t round_up(int64_t a, int64_t b) { return (a + b - 1) / b * b; }

// ---- scratch for the prepared x (owned by the calling thread, read by the workers) ---------------

struct ScratchBuffer {
  float* data = nullptr;
  size_t cap = 0;
  ~ScratchBuffer() { ::operator delete(data, std::align_val_t(64)); }
  float* get(size_t n) {
    if (n > cap) {
      ::operator delete(data, std::align_val_t(64));
      data = nullptr;
      cap = 0;
      data = static_cast<float*>(::operator new(n * sizeof(float), std::align_val_t(64)));
      cap = n;
    }
    return data;
  }
};

float* x_scratch(size_t n) {
  thread_local ScratchBuffer buf;
  return buf.get(n);
}

// One prepared x row: dst[k'] = in(x[k' - shift]) for k' in [shift, shift + K), zero elsewhere in
// [0, Kp), where in() is the identity or relu² (kRelu2, fused here: the copy is made anyway).
template <class XT>
using PackFn = void (*)(XT* dst, int64_t Kp, const float* src, int64_t K, int64_t shift,
                        bool relu2);

// f32 rows; with PERM > 0, every block of PERM values of the row is reordered as [even, odd].
template <int PERM>
void pack_f32(float* dst, int64_t Kp, const float* src, int64_t K, int64_t shift, bool relu2) {
  const int64_t end = shift + K;
  if (PERM == 0) {
    std::fill(dst, dst + shift, 0.0f);
    if (relu2) {
      for (int64_t k = 0; k < K; ++k) dst[shift + k] = relu_sq(src[k]);
    } else {
      std::memcpy(dst + shift, src, static_cast<size_t>(K) * sizeof(float));
    }
    std::fill(dst + end, dst + Kp, 0.0f);
    return;
  }
  constexpr int64_t half = PERM / 2;
  for (int64_t b = 0; b < Kp; b += PERM) {
    for (int64_t i = 0; i < half; ++i) {
      const int64_t ke = b + 2 * i, ko = ke + 1;
      float ve = ke >= shift && ke < end ? src[ke - shift] : 0.0f;
      float vo = ko >= shift && ko < end ? src[ko - shift] : 0.0f;
      if (relu2) {
        ve = relu_sq(ve);
        vo = relu_sq(vo);
      }
      dst[b + i] = ve;
      dst[b + half + i] = vo;
    }
  }
}

// Prepares x[T, K] (ld ldx) as T rows of Kp elements at xp, rows split over the pool.
template <class XT>
void prepare_x(XT* xp, int64_t Kp, const float* x, int64_t ldx, int64_t T, int64_t K, int64_t shift,
               bool relu2, PackFn<XT> pack, ThreadPool& pool) {
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(Kp, 1));
  pool.parallel_for(T, grain, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) pack(xp + t * Kp, Kp, x + t * ldx, K, shift, relu2);
  });
}

// ---- the blocked driver shared by the SIMD paths ----------------------------------------------------
//
// Alignment shift: when every W row starts at the same offset within an `align`-byte line (row bytes a
// multiple of 64), the K loop runs over a virtual index k' = k + s, where s is the row start's offset
// in elements, so that every full-vector load of W is aligned. The prepared x rows get s leading
// zeros, and the first vector step of the first K slice reads only elements k' >= s of W (`head`).

// The tile kernels (TileFn<const XT*> of matmul_tiles.h): out[i * rows + j] = sum_{head <= k' < kn}
// xr[i][k'] * W_j[k'] for i < tokens, j < rows, where xr are prepared x rows and wr[j] is the address
// of W_j's element k' = 0 (which may lie before the row: elements below `head` are never read).
// head < one vector step.
//
// XT: the prepared x element (float, or uint16_t bf16 bits for kFast). Prefill tiles are tr tokens x
// nr W rows; batches of at most `small` tokens (decode) are memory bound and stream each W row once
// over the whole K with software prefetch. One token streams 2x the rows of larger T (more loads in
// flight per thread; measured +19 % on Zen 5) where registers allow, larger T keeps fewer rows so the
// accumulators stay in registers.
template <class XT>
struct TileSet {
  TileKernels<const XT*> k;
  PackFn<XT> pack;  // prepares one x row
  int align;        // W load alignment the shift aims for (bytes)
  int64_t kc;       // K slice (multiple of kXPad): part of the reduction order
};

// Stream tiles' row counts: stream[1] has rows1, stream[2..] rows.
constexpr int same_value(int, int v) { return v; }

inline const uint8_t* offset_ptr(const uint8_t* p, int64_t bytes) {
  return reinterpret_cast<const uint8_t*>(reinterpret_cast<uintptr_t>(p) + bytes);
}

// x scratch for n elements of XT.
template <class XT>
XT* x_scratch_as(int64_t n) {
  return reinterpret_cast<XT*>(x_scratch((static_cast<size_t>(n) * sizeof(XT) + 3) / 4));
}

// The source of run_tiles (matmul_tiles.h): x rows prepared one T tile at a time into the calling
// thread's scratch, W rows at the alignment-shifted virtual K index.
template <class XT>
struct DenseSrc {
  const float* x;
  int64_t ldx, K, Kp, shift;
  bool relu2;
  PackFn<XT> pack;
  ThreadPool& pool;
  XT* xp;
  const uint8_t* wbase;
  int64_t row_bytes, esize;
  int64_t tt0 = 0;
  void prepare(int64_t t0, int64_t t1) {
    tt0 = t0;
    prepare_x(xp, Kp, x + t0 * ldx, ldx, t1 - t0, K, shift, relu2, pack, pool);
  }
  const XT* x_row(int64_t t, int64_t k0) const { return xp + (t - tt0) * Kp + k0; }
  const uint8_t* w_row(int64_t n, int64_t k0) const {
    return offset_ptr(wbase, n * row_bytes + (k0 - shift) * esize);
  }
};

template <class XT>
void matmul_blocked(float* y, int64_t ldy, const float* x, int64_t ldx, const MatrixView& w,
                    int64_t T, ThreadPool& pool, const TileSet<XT>& ks, bool relu2) {
  const int64_t N = w.rows, K = w.cols;
  const int64_t esize = static_cast<int64_t>(dtype_size(w.dtype));
  const uint8_t* wbase = static_cast<const uint8_t*>(w.data);
  const int64_t row_bytes = K * esize;

  int64_t shift = 0;
  const int64_t mis = static_cast<int64_t>(reinterpret_cast<uintptr_t>(wbase) % ks.align);
  if (N == 1 || row_bytes % 64 == 0) {
    if (mis % esize == 0) shift = mis / esize;
  }
  const int64_t Ks = K + shift;  // virtual K
  const int64_t Kp = round_up(Ks, kXPad);

  TileWalk wk;
  wk.N = N;
  wk.ks = Ks;
  wk.kc = ks.kc;
  wk.head = shift;
  // Prefill: T tiles of TB tokens (all of T when it fits kXTileBytes); L2 blocks of kNB W rows.
  const int TR = ks.k.tr;
  wk.tb = T <= ks.k.small
              ? T
              : std::max<int64_t>(TR, kXTileBytes / (Kp * static_cast<int64_t>(sizeof(XT))) / TR * TR);
  wk.gpb = std::max<int64_t>(1, kNB / ks.k.nr);
  wk.row_bytes = K * esize;
  wk.work = 2 * K;  // 2 "bytes" per multiply-add
  DenseSrc<XT> src{x, ldx, K, Kp, shift, relu2, ks.pack, pool,
                   x_scratch_as<XT>(std::min(T, wk.tb) * Kp), wbase, row_bytes, esize};
  run_tiles(y, ldy, T, ks.k, wk, src, pool);
}

// Software prefetch distance for the streaming (small-T) tiles, in bytes ahead along each W row.
constexpr int64_t kPrefetch = 2048;

// ---- AVX2 + FMA + F16C -----------------------------------------------------------------------------

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#endif

namespace avx2 {

constexpr int kS = 16;  // elements per step: two 8-float vectors


// Half `H` (0 or 1) of the kS weights at p as one f32 vector. BF16: H = 0 gives the even elements,
// H = 1 the odd ones (x is permuted to match); F16 / F32: elements [8H, 8H + 8).
template <DType DT, int H>
inline __m256 load_w(const uint8_t* p) {
  if constexpr (DT == DType::BF16) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    return H == 0 ? _mm256_castsi256_ps(_mm256_slli_epi32(v, 16))
                  : _mm256_castsi256_ps(
                        _mm256_and_si256(v, _mm256_set1_epi32(static_cast<int>(0xffff0000u))));
  } else if constexpr (DT == DType::F16) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16 * H)));
  } else {
    return _mm256_loadu_ps(reinterpret_cast<const float*>(p + 32 * H));
  }
}

// out[0..3] = horizontal sums of a, b, c, d.
inline void hsum4(__m256 a, __m256 b, __m256 c, __m256 d, float* out) {
  const __m256 ab = _mm256_add_ps(_mm256_unpacklo_ps(a, b), _mm256_unpackhi_ps(a, b));
  const __m256 cd = _mm256_add_ps(_mm256_unpacklo_ps(c, d), _mm256_unpackhi_ps(c, d));
  const __m256 abcd = _mm256_add_ps(_mm256_shuffle_ps(ab, cd, _MM_SHUFFLE(1, 0, 1, 0)),
                                    _mm256_shuffle_ps(ab, cd, _MM_SHUFFLE(3, 2, 3, 2)));
  _mm_storeu_ps(out, _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1)));
}

// The horizontal sum of v by exactly the tree hsum4 uses for each of its inputs.
inline float hsum(__m256 v) {
  float o[4];
  hsum4(v, v, v, v, o);
  return o[0];
}

template <int TR, int NR>
using Acc = __m256[TR][NR];

// out[i * NR + j] = horizontal sum of acc[i][j], four at a time (hsum4 and hsum add the lanes of
// every accumulator in the same order, so the result does not depend on the tile shape).
template <int TR, int NR, class V>
inline void reduce(V (&acc)[TR][NR], float* out) {
  constexpr int kTotal = TR * NR;
  V s[kTotal];
#pragma GCC unroll 32
  for (int f = 0; f < kTotal; ++f) s[f] = acc[f / NR][f % NR];
  int f = 0;
#pragma GCC unroll 8
  for (; f + 4 <= kTotal; f += 4) hsum4(s[f], s[f + 1], s[f + 2], s[f + 3], out + f);
#pragma GCC unroll 4
  for (; f < kTotal; ++f) out[f] = hsum(s[f]);
}


// One step of kS elements: W_j's elements are read at wr[j] + kw * es, x's at xr[i] + k. The two
// halves run one after the other so that only NR converted W vectors are live at a time.
template <DType DT, int TR, int NR, int H>
inline void half_step(const float* const* xr, const uint8_t* const* wr, int64_t k, int64_t kw,
                      Acc<TR, NR>& acc) {
  constexpr int64_t es = DT == DType::F32 ? 4 : 2;
  __m256 wv[NR];
#pragma GCC unroll 8
  for (int j = 0; j < NR; ++j) wv[j] = load_w<DT, H>(wr[j] + kw * es);
#pragma GCC unroll 8
  for (int i = 0; i < TR; ++i) {
    const __m256 xv = _mm256_loadu_ps(xr[i] + k + 8 * H);
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) acc[i][j] = _mm256_fmadd_ps(xv, wv[j], acc[i][j]);
  }
}

template <DType DT, int TR, int NR>
inline void step(const float* const* xr, const uint8_t* const* wr, int64_t k, int64_t kw,
                 Acc<TR, NR>& acc) {
  half_step<DT, TR, NR, 0>(xr, wr, k, kw, acc);
  half_step<DT, TR, NR, 1>(xr, wr, k, kw, acc);
}

// A step over elements [k + lo, k + hi) only: the W values are copied into zero-filled buffers.
template <DType DT, int TR, int NR>
inline void partial_step(const float* const* xr, const uint8_t* const* wr, int64_t k, int64_t lo,
                         int64_t hi, Acc<TR, NR>& acc) {
  constexpr int64_t es = DT == DType::F32 ? 4 : 2;
  alignas(32) uint8_t buf[NR][kS * es];
  const uint8_t* tw[NR];
  for (int j = 0; j < NR; ++j) {
    std::memset(buf[j], 0, sizeof(buf[j]));
    std::memcpy(buf[j] + lo * es, wr[j] + (k + lo) * es, static_cast<size_t>((hi - lo) * es));
    tw[j] = buf[j];
  }
  step<DT, TR, NR>(xr, tw, k, 0, acc);
}

template <DType DT, int TR, int NR, bool kPf>
void tile(const float* const* xr, const uint8_t* const* wr, int64_t head, int64_t kn, float* out) {
  constexpr int64_t es = DT == DType::F32 ? 4 : 2;
  Acc<TR, NR> acc;
#pragma GCC unroll 8
  for (int i = 0; i < TR; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) acc[i][j] = _mm256_setzero_ps();
  int64_t k = 0;
  if (head > 0 || kn < kS) {
    partial_step<DT, TR, NR>(xr, wr, 0, head, std::min<int64_t>(kn, kS), acc);
    k = kS;
  }
  if (kPf) {
    for (; k + 2 * kS <= kn; k += 2 * kS) {
#pragma GCC unroll 8
      for (int j = 0; j < NR; ++j)
#pragma GCC unroll 4
        for (int64_t b = 0; b < 2 * kS * es; b += 64)
          _mm_prefetch(reinterpret_cast<const char*>(wr[j] + k * es + kPrefetch + b), _MM_HINT_T0);
      step<DT, TR, NR>(xr, wr, k, k, acc);
      step<DT, TR, NR>(xr, wr, k + kS, k + kS, acc);
    }
  }
  for (; k + kS <= kn; k += kS) step<DT, TR, NR>(xr, wr, k, k, acc);
  if (k < kn) partial_step<DT, TR, NR>(xr, wr, k, 0, kn - k, acc);
  reduce<TR, NR>(acc, out);
}

// Register tiles, chosen by measurement on Zen 5: prefill 6 tokens x 2 rows (12 accumulators + 2 W +
// 1 x in 16 ymm registers); up to 3 tokens stream 4 rows at a time.
constexpr int kTR = 6, kNR = 2, kSmall = 3, kNRS = 4;
using Tiles = TileSet<float>;

// One token streams kNRS rows too: with 16 ymm registers 8 rows would spill.
template <DType DT, int... I, int... J>
constexpr Tiles make_tiles(std::integer_sequence<int, I...>, std::integer_sequence<int, J...>) {
  return {{kTR,
           kNR,
           kSmall,
           {nullptr, tile<DT, I + 1, kNR, false>...},
           {nullptr, tile<DT, J + 1, kNRS, true>...},
           {0, same_value(J, kNRS)...}},
          DT == DType::BF16 ? pack_f32<kS> : pack_f32<0>,
          32,
          kKc};
}
template <DType DT>
constexpr Tiles tiles() {
  return make_tiles<DT>(std::make_integer_sequence<int, kTR>(),
                        std::make_integer_sequence<int, kSmall>());
}

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

constexpr int kS = 32;  // elements per step: two 16-float vectors

// Half `H` (0 or 1) of the kS weights at p as one f32 vector. BF16: H = 0 gives the even elements,
// H = 1 the odd ones (x is permuted to match); F16 / F32: elements [16H, 16H + 16). When kMasked, bit e
// of `m` enables element e of the step; the others read as zero and are not accessed.
template <DType DT, int H, bool kMasked>
inline __m512 load_w(const uint8_t* p, __mmask32 m) {
  if constexpr (DT == DType::BF16) {
    const __m512i v = kMasked ? _mm512_maskz_loadu_epi16(m, p) : _mm512_loadu_si512(p);
    return H == 0 ? _mm512_castsi512_ps(_mm512_slli_epi32(v, 16))
                  : _mm512_castsi512_ps(
                        _mm512_and_si512(v, _mm512_set1_epi32(static_cast<int>(0xffff0000u))));
  } else if constexpr (DT == DType::F16) {
    const uint8_t* q = p + 32 * H;
    const __m256i v =
        kMasked ? _mm256_maskz_loadu_epi16(static_cast<__mmask16>(m >> (16 * H)), q)
                : _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q));
    return _mm512_cvtph_ps(v);
  } else {
    const float* f = reinterpret_cast<const float*>(p) + 16 * H;
    return kMasked ? _mm512_maskz_loadu_ps(static_cast<__mmask16>(m >> (16 * H)), f)
                   : _mm512_loadu_ps(f);
  }
}

// out[0..3] = horizontal sums of a, b, c, d.
inline void hsum4(__m512 a, __m512 b, __m512 c, __m512 d, float* out) {
  const __m512 ab = _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b));
  const __m512 cd = _mm512_add_ps(_mm512_unpacklo_ps(c, d), _mm512_unpackhi_ps(c, d));
  const __m512 abcd = _mm512_add_ps(_mm512_shuffle_ps(ab, cd, _MM_SHUFFLE(1, 0, 1, 0)),
                                    _mm512_shuffle_ps(ab, cd, _MM_SHUFFLE(3, 2, 3, 2)));
  const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(abcd),
                                 _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(abcd), 1)));
  _mm_storeu_ps(out, _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));
}

// The horizontal sum of v by exactly the tree hsum4 uses for each of its inputs (unlike
// _mm512_reduce_add_ps, which adds across 128-bit lanes first).
inline float hsum(__m512 v) {
  float o[4];
  hsum4(v, v, v, v, o);
  return o[0];
}

template <int TR, int NR>
using Acc = __m512[TR][NR];

// out[i * NR + j] = horizontal sum of acc[i][j], four at a time (hsum4 and hsum add the lanes of
// every accumulator in the same order, so the result does not depend on the tile shape).
template <int TR, int NR, class V>
inline void reduce(V (&acc)[TR][NR], float* out) {
  constexpr int kTotal = TR * NR;
  V s[kTotal];
#pragma GCC unroll 32
  for (int f = 0; f < kTotal; ++f) s[f] = acc[f / NR][f % NR];
  int f = 0;
#pragma GCC unroll 8
  for (; f + 4 <= kTotal; f += 4) hsum4(s[f], s[f + 1], s[f + 2], s[f + 3], out + f);
#pragma GCC unroll 4
  for (; f < kTotal; ++f) out[f] = hsum(s[f]);
}


template <DType DT, int TR, int NR, int H, bool kMasked>
inline void half_step(const float* const* xr, const uint8_t* const* wr, int64_t k, __mmask32 m,
                      Acc<TR, NR>& acc) {
  constexpr int64_t es = DT == DType::F32 ? 4 : 2;
  __m512 wv[NR];
#pragma GCC unroll 8
  for (int j = 0; j < NR; ++j) wv[j] = load_w<DT, H, kMasked>(wr[j] + k * es, m);
#pragma GCC unroll 8
  for (int i = 0; i < TR; ++i) {
    const __m512 xv = _mm512_loadu_ps(xr[i] + k + 16 * H);
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_fmadd_ps(xv, wv[j], acc[i][j]);
  }
}

// One step of kS elements; the two halves run one after the other so that only NR converted W
// vectors are live at a time.
template <DType DT, int TR, int NR, bool kMasked>
inline void step(const float* const* xr, const uint8_t* const* wr, int64_t k, __mmask32 m,
                 Acc<TR, NR>& acc) {
  half_step<DT, TR, NR, 0, kMasked>(xr, wr, k, m, acc);
  half_step<DT, TR, NR, 1, kMasked>(xr, wr, k, m, acc);
}

// Mask of elements [lo, hi) of a step, 0 <= lo < hi <= 32.
inline __mmask32 range_mask(int64_t lo, int64_t hi) {
  const uint64_t m = ((uint64_t{1} << hi) - 1) & ~((uint64_t{1} << lo) - 1);
  return static_cast<__mmask32>(m);
}

template <DType DT, int TR, int NR, bool kPf>
void tile(const float* const* xr, const uint8_t* const* wr, int64_t head, int64_t kn, float* out) {
  constexpr int64_t es = DT == DType::F32 ? 4 : 2;
  Acc<TR, NR> acc;
#pragma GCC unroll 8
  for (int i = 0; i < TR; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_setzero_ps();
  int64_t k = 0;
  if (head > 0 || kn < kS) {
    step<DT, TR, NR, true>(xr, wr, 0, range_mask(head, std::min<int64_t>(kn, kS)), acc);
    k = kS;
  }
  if (kPf) {
    for (; k + 2 * kS <= kn; k += 2 * kS) {
#pragma GCC unroll 8
      for (int j = 0; j < NR; ++j)
#pragma GCC unroll 4
        for (int64_t b = 0; b < 2 * kS * es; b += 64)
          _mm_prefetch(reinterpret_cast<const char*>(wr[j] + k * es + kPrefetch + b), _MM_HINT_T0);
      step<DT, TR, NR, false>(xr, wr, k, 0, acc);
      step<DT, TR, NR, false>(xr, wr, k + kS, 0, acc);
    }
  }
  for (; k + kS <= kn; k += kS) step<DT, TR, NR, false>(xr, wr, k, 0, acc);
  if (k < kn) step<DT, TR, NR, true>(xr, wr, k, range_mask(0, kn - k), acc);
  reduce<TR, NR>(acc, out);
}

// Register tiles, chosen by measurement on Zen 5: prefill 6 tokens x 4 rows (24 accumulators + 4 W +
// 1 x in 32 zmm registers); up to 6 tokens stream 4 rows at a time.
constexpr int kTR = 6, kNR = 4, kSmall = 6, kNRS = 4;
using Tiles = TileSet<float>;

// One token streams 2 * kNRS rows (stream[1]), 2..kSmall tokens kNRS rows.
template <DType DT, int... I, int... J>
constexpr Tiles make_tiles(std::integer_sequence<int, I...>, std::integer_sequence<int, J...>) {
  return {{kTR,
           kNR,
           kSmall,
           {nullptr, tile<DT, I + 1, kNR, false>...},
           {nullptr, tile<DT, 1, 2 * kNRS, true>, tile<DT, J + 2, kNRS, true>...},
           {0, 2 * kNRS, same_value(J, kNRS)...}},
          DT == DType::BF16 ? pack_f32<kS> : pack_f32<0>,
          64,
          kKc};
}
template <DType DT>
constexpr Tiles tiles() {
  return make_tiles<DT>(std::make_integer_sequence<int, kTR>(),
                        std::make_integer_sequence<int, kSmall - 1>());
}

}  // namespace avx512

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

// ---- AVX-512 BF16 (kFast for BF16 weights) ------------------------------------------------------
//
// x is rounded to bf16 once, while packing (round to nearest even, NaN kept, as f32_to_bf16 and
// PyTorch do; done with integer ops rather than vcvtne2ps2bf16, which flushes denormal inputs), in
// natural order: W rows are already bf16 pairs, so vdpbf16ps reads both without any conversion, 32
// elements per instruction into 16 f32 lanes (two products per lane). vdpbf16ps itself treats
// denormal inputs as zero and flushes denormal results (it ignores MXCSR); the products are exact
// in f32, only the accumulation rounds. The reduction order is the one described at the top, with
// a step of 32 elements per accumulator and K slices of kKcBf16.

#if defined(__clang__)
#pragma clang attribute push(                                                                   \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,avx2,fma,f16c"))), \
    apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,avx2,fma,f16c")
#endif

namespace avx512bf16 {

constexpr int kS = 32;  // elements per step: one vector of 32 bf16
// bf16 x rows are half the bytes of f32 ones, so twice the K slice keeps TR rows in L1 and halves
// the horizontal reductions per multiply-add.
constexpr int64_t kKcBf16 = 2048;

// x row -> bf16 bits (see the note above), relu² first when asked.
void pack_bf16(uint16_t* dst, int64_t Kp, const float* src, int64_t K, int64_t shift, bool relu2) {
  std::fill(dst, dst + shift, uint16_t{0});
  uint16_t* d = dst + shift;
  const __m512i round = _mm512_set1_epi32(0x7fff), one = _mm512_set1_epi32(1);
  const __m512i quiet = _mm512_set1_epi32(0x40);
  for (int64_t k = 0; k < K; k += 16) {
    const __mmask16 m =
        K - k >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << (K - k)) - 1);
    __m512 v = _mm512_maskz_loadu_ps(m, src + k);
    if (relu2) {
      v = _mm512_max_ps(_mm512_setzero_ps(), v);  // gives v when unordered: NaN stays NaN
      v = _mm512_mul_ps(v, v);
    }
    const __m512i b = _mm512_castps_si512(v);
    const __m512i hi = _mm512_srli_epi32(b, 16);
    __m512i r = _mm512_srli_epi32(
        _mm512_add_epi32(b, _mm512_add_epi32(round, _mm512_and_si512(hi, one))), 16);
    const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    r = _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(hi, quiet));
    _mm512_mask_cvtepi32_storeu_epi16(d + k, m, r);
  }
  std::fill(dst + shift + K, dst + Kp, uint16_t{0});
}

template <int TR, int NR>
using Acc = __m512[TR][NR];

inline __m512bh as_bh(__m512i v) { return reinterpret_cast<__m512bh&>(v); }

// One step of kS elements at k' = k: W element loads masked by m when kMasked (the x row is
// zero-padded, so x is always read in full).
template <int TR, int NR, bool kMasked>
inline void step(const uint16_t* const* xr, const uint8_t* const* wr, int64_t k, __mmask32 m,
                 Acc<TR, NR>& acc) {
  __m512bh wv[NR];
#pragma GCC unroll 8
  for (int j = 0; j < NR; ++j) {
    const uint8_t* p = wr[j] + 2 * k;
    wv[j] = as_bh(kMasked ? _mm512_maskz_loadu_epi16(m, p) : _mm512_loadu_si512(p));
  }
#pragma GCC unroll 8
  for (int i = 0; i < TR; ++i) {
    const __m512bh xv = as_bh(_mm512_loadu_si512(xr[i] + k));
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], xv, wv[j]);
  }
}

template <int TR, int NR, bool kPf>
void tile(const uint16_t* const* xr, const uint8_t* const* wr, int64_t head, int64_t kn,
          float* out) {
  Acc<TR, NR> acc;
#pragma GCC unroll 8
  for (int i = 0; i < TR; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_setzero_ps();
  int64_t k = 0;
  if (head > 0 || kn < kS) {
    step<TR, NR, true>(xr, wr, 0, avx512::range_mask(head, std::min<int64_t>(kn, kS)), acc);
    k = kS;
  }
  if (kPf) {
    for (; k + 2 * kS <= kn; k += 2 * kS) {
#pragma GCC unroll 8
      for (int j = 0; j < NR; ++j) {  // 2 steps = 128 bytes of each W row
        _mm_prefetch(reinterpret_cast<const char*>(wr[j] + 2 * k + kPrefetch), _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(wr[j] + 2 * k + kPrefetch + 64), _MM_HINT_T0);
      }
      step<TR, NR, false>(xr, wr, k, 0, acc);
      step<TR, NR, false>(xr, wr, k + kS, 0, acc);
    }
  }
  for (; k + kS <= kn; k += kS) step<TR, NR, false>(xr, wr, k, 0, acc);
  if (k < kn) step<TR, NR, true>(xr, wr, k, avx512::range_mask(0, kn - k), acc);
  avx512::reduce<TR, NR>(acc, out);
}

// Register tiles, by measurement on Zen 5 (thread CPU time, T = 512): prefill 4 tokens x 6 rows (24
// accumulators + 6 W + 1 x in 32 zmm registers; ~290 GFLOP/s a core against ~250 for 6 x 4 and ~430
// for bare vdpbf16ps); up to 6 tokens stream 4 rows at a time. Software prefetch and other K slices
// (1024, 4096) or W blocks measured no better.
constexpr int kTR = 4, kNR = 6, kSmall = 6, kNRS = 4;
using Tiles = TileSet<uint16_t>;

template <int... I, int... J>
constexpr Tiles make_tiles(std::integer_sequence<int, I...>, std::integer_sequence<int, J...>) {
  return {{kTR,
           kNR,
           kSmall,
           {nullptr, tile<I + 1, kNR, false>...},
           {nullptr, tile<1, 2 * kNRS, true>, tile<J + 2, kNRS, true>...},
           {0, 2 * kNRS, same_value(J, kNRS)...}},
          pack_bf16,
          64,
          kKcBf16};
}
constexpr Tiles tiles() {
  return make_tiles(std::make_integer_sequence<int, kTR>(),
                    std::make_integer_sequence<int, kSmall - 1>());
}

}  // namespace avx512bf16

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

template <class Tiles>
void run_simd(float* y, int64_t ldy, const float* x, int64_t ldx, const MatrixView& w, int64_t T,
              ThreadPool& pool, bool relu2, const Tiles& bf16, const Tiles& f16, const Tiles& f32) {
  const Tiles& ks =
      w.dtype == DType::BF16 ? bf16 : (w.dtype == DType::F16 ? f16 : f32);
  matmul_blocked(y, ldy, x, ldx, w, T, pool, ks, relu2);
}

#endif  // __x86_64__

}  // namespace

void matmul(float* y, int64_t ldy, const float* x, int64_t ldx, const MatrixView& w, int64_t T,
            ThreadPool& pool, MatmulPrecision precision, MatmulInput input) {
  const int64_t N = w.rows, K = w.cols;
  if (dtype_is_quantized(w.dtype)) return matmul_quant(y, ldy, x, ldx, w, T, pool, precision, input);
  if (T <= 0 || N <= 0) return;
  if (K <= 0) {
    for (int64_t t = 0; t < T; ++t) std::fill(y + t * ldy, y + t * ldy + N, 0.0f);
    return;
  }
#if defined(__x86_64__)
  const bool relu2 = input == MatmulInput::kRelu2;
  switch (kernel_isa()) {
    case KernelIsa::kAvx512: {
      // kFast: bf16 dot products for BF16 weights where the CPU has them. On any other CPU or path
      // (avx2, scalar, forced or not) kFast computes exactly as kExact, bit for bit.
      if (precision == MatmulPrecision::kFast && w.dtype == DType::BF16 &&
          cpu_features().avx512bf16) {
        static constexpr auto fast = avx512bf16::tiles();
        matmul_blocked(y, ldy, x, ldx, w, T, pool, fast, relu2);
        return;
      }
      static constexpr auto bf = avx512::tiles<DType::BF16>();
      static constexpr auto hf = avx512::tiles<DType::F16>();
      static constexpr auto ff = avx512::tiles<DType::F32>();
      run_simd(y, ldy, x, ldx, w, T, pool, relu2, bf, hf, ff);
      return;
    }
    case KernelIsa::kAvx2: {
      static constexpr auto bf = avx2::tiles<DType::BF16>();
      static constexpr auto hf = avx2::tiles<DType::F16>();
      static constexpr auto ff = avx2::tiles<DType::F32>();
      run_simd(y, ldy, x, ldx, w, T, pool, relu2, bf, hf, ff);
      return;
    }
    case KernelIsa::kScalar:
    case KernelIsa::kNeon:  // aarch64 only
      break;
  }
#endif
#if defined(__aarch64__)
  if (kernel_isa() == KernelIsa::kNeon) {
    // kFast: BFDOT / BFMMLA for BF16 weights where the CPU has FEAT_BF16 (matmul_neon.cc); elsewhere
    // kFast computes as kExact, bit for bit.
    const bool bf16_fast = precision == MatmulPrecision::kFast && w.dtype == DType::BF16 && neon_ext(kNeonBf16);
    if (input != MatmulInput::kRelu2) return matmul_neon(y, ldy, x, ldx, w, T, pool, bf16_fast);
    // The NEON kernel does not fuse relu² yet: apply it into a copy.
    std::vector<float> act(static_cast<size_t>(T * K));
    for (int64_t t = 0; t < T; ++t)
      for (int64_t k = 0; k < K; ++k) act[static_cast<size_t>(t * K + k)] = relu_sq(x[t * ldx + k]);
    return matmul_neon(y, ldy, act.data(), K, w, T, pool, bf16_fast);
  }
#endif
  matmul_scalar(y, ldy, x, ldx, w, T, pool, input);
}

}  // namespace nemo::cpu
