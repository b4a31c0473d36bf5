// matmul on the tensor cores: y[T, N] = x[T, K] · W[N, K]^T, W in BF16, Q8_0 or F8_E4M3 (device layout
// of layout.cuh / kernels_cuda.h), x f32 rounded to bf16, f32 accumulation. F8_E4M3 (ModelOpt FP8
// checkpoints) stays one byte per value on the device, in Q8_0's byte order without block scales; each
// value is widened to bf16 in registers (exact: every E4M3 value is a bf16) and multiplied on the same
// bf16 MMAs, chained like BF16; the tensor's scale (per tensor or per row) is applied to y afterwards
// (k_scale_cols). So an FP8 matrix gives what BF16 weights holding its values give, times its scale. Only the CUDA runtime and
// the engine's own kernels: mma.sync.m16n8k16 (sm_80+), no cuBLAS.
//
// FP8 tensor cores (sm_89+, precision kBf16, F8_E4M3 weights): x is quantized per token to E4M3 and
// multiplied by the stored bytes on mma.sync.m16n8k32 e4m3 (k_x_to_e4m3; k_mm_f8f8 for T <= 32,
// k_mm_f8f8_wide above, both in the reduction order described below); the other precisions and older
// devices keep the bf16 widening described here. Neither FP8 kernel stages tiles in shared memory: the
// prefill one reads x and W through L1/L2 (each load feeds 8 MMAs), simpler than k_mm_big and unmeasured.
//
// Operands. Tokens are the MMA's M dimension (operand A = x rows), W rows its N dimension (operand
// B = W rows, "col-major" K×N is exactly W's [N, K] row-major storage). x is first converted to a bf16
// copy xb [T, Kp] in the same permuted order as W's rows (layout.cuh), so one 16-byte load gives a lane
// its fragment words for two k-steps, from global memory or shared memory alike.
//
// Two kernels:
//   small (T <= 32, decode): a warp owns 8 W rows and a K segment, streams its W straight from global
//     memory into registers (U 64-blocks in flight per warp), and multiplies them with up to 32 token
//     rows of xb (L1/L2 resident). The 4 warps of a CTA take the K segments of the same 8 rows in turn
//     and the segment sums are added in order at the end. ceil(N/8) CTAs: N = 4480 gives 560.
//   big (prefill): CTA tile 128 tokens × 128 W rows × 64 k, 8 warps (2 × 4, warp tile 64 × 32 =
//     4 × 4 MMA tiles), 3-stage cp.async pipeline in 96 KB of shared memory, XOR-swizzled 16-byte
//     chunks (conflict-free 16-byte fragment loads). Grid: token tiles fastest, so the CTAs that share
//     a W tile run together and W is read from DRAM about once.
//
// Precision. kBf16 rounds x to bf16 (8 significant bits; the model's own activation precision). kBf16x2
// splits x = hi + lo into two bf16 terms (about 16 significant bits, within ~1e-5 of f32 x) and runs
// every k-step twice, hi then lo, into the same accumulator: twice the tensor work, no extra weight
// traffic (decode costs the same), for results within float rounding of the CPU engine.
//
// Batch invariance. y[t, n] must not depend on T or on where row t sits in the batch (a request gives
// the same tokens alone or batched, decode or alongside a prefill). Both kernels compute every element
// in ONE order: K is cut into segments of kSegBlocks 64-blocks; within a segment the 64-blocks, and in
// each block the four k-steps j = 0..3, are chained through the MMA accumulator from +0 (Q8_0: each
// 32-value quant block is a chain of two k-steps from +0, scaled by its f16 scale and added with one
// fmaf); the segment sums are added left to right to a total that starts at +0. An MMA output element
// depends only on its own A row and B column, so tiling, T and the row's place never change a bit.
#include <algorithm>
#include <atomic>

#include "cuda/common.cuh"
#include "cuda/kernels_cuda.h"
#include "cuda/layout.cuh"

namespace nemo::cuda {
namespace {

constexpr int kSegBlocks = 16;     // 64-blocks per reduction segment (1024 values of K)
constexpr int kSmallWarps = 4;     // warps per CTA of the small kernel
constexpr int kSmallMaxT = 32;     // the small kernel takes T <= 32 (two 16-row MMA tiles)
constexpr int kBN = 128, kStages = 3, kBigThreads = 256;

// ---- PTX helpers ---------------------------------------------------------------------------------
__device__ __forceinline__ void mma_bf16(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                         uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// Streaming 16-byte load of weights (read once: do not keep them in L1).
__device__ __forceinline__ uint4 ld_stream(const void* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

__device__ __forceinline__ uint4 lds128(const void* p) {
  return *reinterpret_cast<const uint4*>(p);
}

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool valid) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  const int n = valid ? 16 : 0;  // 0: zero-fill, nothing read
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(n));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

__device__ __forceinline__ uint32_t word(const uint4& v, int i) {
  return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w;
}

// Four int8 quants (slots 2q, 2q+1, 2q+8, 2q+9 of a k-step) -> the two bf16x2 fragment words, exact:
// a byte u = q + 128 placed under the exponent of 2^23 is the float 2^23 + u.
__device__ __forceinline__ void q8_words(uint32_t w, uint32_t& lo, uint32_t& hi) {
  const uint32_t u = w ^ 0x80808080u;
  const float f0 = __uint_as_float(__byte_perm(u, 0x4B000000u, 0x7650)) - 8388736.0f;
  const float f1 = __uint_as_float(__byte_perm(u, 0x4B000000u, 0x7651)) - 8388736.0f;
  const float f2 = __uint_as_float(__byte_perm(u, 0x4B000000u, 0x7652)) - 8388736.0f;
  const float f3 = __uint_as_float(__byte_perm(u, 0x4B000000u, 0x7653)) - 8388736.0f;
  __nv_bfloat162 l = __floats2bfloat162_rn(f0, f1), h = __floats2bfloat162_rn(f2, f3);
  lo = *reinterpret_cast<uint32_t*>(&l);
  hi = *reinterpret_cast<uint32_t*>(&h);
}

// ---- x -> bf16 in the permuted order (and the residual x - hi, when split) ---------------------------
__device__ __forceinline__ uint32_t pack_bf16(float a, float b) {
  __nv_bfloat162 p = __floats2bfloat162_rn(a, b);
  return *reinterpret_cast<uint32_t*>(&p);
}

// relu2: the MLP's activation relu(x)² is applied here, as x is read (MatmulInput::kRelu2), in f32
// before the bf16 rounding: the same values the CPU's relu2-then-matmul multiplies, and no extra pass
// over the [T, intermediate] activations.
template <bool RELU2>
__global__ void k_x_to_bf16(uint4* __restrict__ xh, uint4* __restrict__ xl, const float* __restrict__ x, int64_t ldx,
                            int64_t T, int64_t K, int64_t Kp) {
  const int64_t per_row = Kp / 8, total = T * per_row;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = i / per_row, d0 = (i % per_row) * 8;
    const float* xr = x + t * ldx;
    float v[8], r[8];
#pragma unroll
    for (int e = 0; e < 8; ++e) {
      const int64_t k = perm_logical(d0 + e);
      v[e] = k < K ? xr[k] : 0.0f;
      if constexpr (RELU2) {
        const float r0 = v[e] > 0.0f ? v[e] : 0.0f;
        v[e] = r0 * r0;
      }
      r[e] = v[e] - __bfloat162float(__float2bfloat16_rn(v[e]));  // exact in f32
    }
    xh[i] = make_uint4(pack_bf16(v[0], v[1]), pack_bf16(v[2], v[3]), pack_bf16(v[4], v[5]), pack_bf16(v[6], v[7]));
    if (xl) xl[i] = make_uint4(pack_bf16(r[0], r[1]), pack_bf16(r[2], r[3]), pack_bf16(r[4], r[5]), pack_bf16(r[6], r[7]));
  }
}

// ---- small T (decode) ------------------------------------------------------------------------------
// The A fragments of one token tile for one 64-block: rows g (r0: steps 0-1, r1: steps 2-3) and g+8.
struct XFrag {
  uint4 a0, a1, b0, b1;
};

__device__ __forceinline__ XFrag load_x(const __nv_bfloat16* __restrict__ xb, int ta, int T, int64_t Kp, int64_t blk,
                                        int q) {
  XFrag f;
  f.a0 = f.a1 = f.b0 = f.b1 = make_uint4(0, 0, 0, 0);
  if (ta < T) {
    const uint4* p = reinterpret_cast<const uint4*>(xb + ta * Kp + blk * kKBlock + 16 * q);
    f.a0 = __ldg(p);
    f.a1 = __ldg(p + 1);
  }
  if (ta + 8 < T) {
    const uint4* p = reinterpret_cast<const uint4*>(xb + (ta + 8) * Kp + blk * kKBlock + 16 * q);
    f.b0 = __ldg(p);
    f.b1 = __ldg(p + 1);
  }
  return f;
}

// k-step j of a tile: A words from x, B words (lo, hi) given.
__device__ __forceinline__ void mma_step(float (&acc)[4], const XFrag& x, int j, uint32_t blo, uint32_t bhi) {
  const uint4& a = j < 2 ? x.a0 : x.a1;
  const uint4& b = j < 2 ? x.b0 : x.b1;
  const int s = 2 * (j & 1);
  mma_bf16(acc, word(a, s), word(b, s), word(a, s + 1), word(b, s + 1), blo, bhi);
}

// One 64-block, bf16 W: w0 holds steps 0-1, w1 steps 2-3. Per k-step: hi, then lo when split.
template <bool SPLIT>
__device__ __forceinline__ void block_bf16(float (&acc)[4], const XFrag& xh, const XFrag& xl, const uint4& w0,
                                           const uint4& w1) {
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const uint4& w = j < 2 ? w0 : w1;
    const int s = 2 * (j & 1);
    mma_step(acc, xh, j, word(w, s), word(w, s + 1));
    if constexpr (SPLIT) mma_step(acc, xl, j, word(w, s), word(w, s + 1));
  }
}

// One 64-block, Q8_0 W: wq word j = step j's quants; d0/d1 the scales of the block's two quant blocks
// for this lane's output columns 2q, 2q+1. Each quant block: a chain of its two k-steps from +0, then
// one fmaf per output into the accumulator.
template <bool SPLIT>
__device__ __forceinline__ void block_q8(float (&acc)[4], const XFrag& xh, const XFrag& xl, const uint4& wq,
                                         float2 d0, float2 d1) {
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    float p[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
    for (int s = 0; s < 2; ++s) {
      uint32_t lo, hi;
      q8_words(word(wq, 2 * h + s), lo, hi);
      mma_step(p, xh, 2 * h + s, lo, hi);
      if constexpr (SPLIT) mma_step(p, xl, 2 * h + s, lo, hi);
    }
    const float2 d = h == 0 ? d0 : d1;
    acc[0] = fmaf(d.x, p[0], acc[0]);
    acc[1] = fmaf(d.y, p[1], acc[1]);
    acc[2] = fmaf(d.x, p[2], acc[2]);
    acc[3] = fmaf(d.y, p[3], acc[3]);
  }
}

// Four E4M3 values (slots 2q, 2q+1, 2q+8, 2q+9 of a k-step, the Q8_0 byte order) -> the two bf16x2
// fragment words, exact (e4m3_to_bf16_bits, layout.cuh).
__device__ __forceinline__ void f8_words(uint32_t w, uint32_t& lo, uint32_t& hi) {
  lo = e4m3_to_bf16_bits(w & 0xffu) | (e4m3_to_bf16_bits((w >> 8) & 0xffu) << 16);
  hi = e4m3_to_bf16_bits((w >> 16) & 0xffu) | (e4m3_to_bf16_bits(w >> 24) << 16);
}

// One 64-block, F8_E4M3 W (bytes as Q8_0's, no block scales): word j = step j's values, chained through
// the accumulator like BF16 (the tensor scale is applied to y afterwards, k_scale_cols).
template <bool SPLIT>
__device__ __forceinline__ void block_f8(float (&acc)[4], const XFrag& xh, const XFrag& xl, const uint4& wq) {
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    uint32_t lo, hi;
    f8_words(word(wq, j), lo, hi);
    mma_step(acc, xh, j, lo, hi);
    if constexpr (SPLIT) mma_step(acc, xl, j, lo, hi);
  }
}

// Weight kinds of the kernels: BF16, Q8_0 (int8 + f16 block scales) and F8_E4M3 (one byte per value in
// the Q8_0 byte layout, no block scales).
constexpr int kWBf16 = 0, kWQ8 = 1, kWF8 = 2;

template <int NG, int WT, bool SPLIT, int U>
__global__ void __launch_bounds__(kSmallWarps * 32)
    k_mm_small(float* __restrict__ y, int64_t ldy, const __nv_bfloat16* __restrict__ xh,
               const __nv_bfloat16* __restrict__ xl, int T, int64_t Kp, const void* __restrict__ w,
               const __half* __restrict__ scales, int64_t Np, int N) {
  extern __shared__ float part[];  // [segments][NG * 4][32]
  constexpr bool Q8 = WT == kWQ8, BYTES = WT != kWBf16;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, q = lane & 3;
  const int n0 = blockIdx.x * 8;
  const int64_t wrow = min(n0 + g, N - 1);  // rows past N read a valid row; results dropped
  const int64_t Kb = Kp / kKBlock;
  const int S = static_cast<int>((Kb + kSegBlocks - 1) / kSegBlocks);

  for (int s = warp; s < S; s += kSmallWarps) {
    float acc[NG][4];
#pragma unroll
    for (int tg = 0; tg < NG; ++tg) acc[tg][0] = acc[tg][1] = acc[tg][2] = acc[tg][3] = 0.0f;
    const int64_t b_begin = static_cast<int64_t>(s) * kSegBlocks;
    const int64_t b_end = min(Kb, b_begin + kSegBlocks);
    for (int64_t b0 = b_begin; b0 < b_end; b0 += U) {
      // W for U blocks first (the bytes in flight), then the MMAs.
      uint4 wv[U][2];
#pragma unroll
      for (int u = 0; u < U; ++u) {
        if (b0 + u < b_end) {
          if constexpr (BYTES) {
            wv[u][0] = ld_stream(static_cast<const int8_t*>(w) + wrow * Kp + (b0 + u) * kKBlock + 16 * q);
          } else {
            const __nv_bfloat16* p = static_cast<const __nv_bfloat16*>(w) + wrow * Kp + (b0 + u) * kKBlock + 16 * q;
            wv[u][0] = ld_stream(p);
            wv[u][1] = ld_stream(p + 8);
          }
        }
      }
#pragma unroll
      for (int u = 0; u < U; ++u) {
        if (b0 + u >= b_end) break;
        const int64_t blk = b0 + u;
        float2 d0 = make_float2(0.f, 0.f), d1 = d0;
        if constexpr (Q8) {
          d0 = __half22float2(*reinterpret_cast<const __half2*>(scales + (2 * blk) * Np + n0 + 2 * q));
          d1 = __half22float2(*reinterpret_cast<const __half2*>(scales + (2 * blk + 1) * Np + n0 + 2 * q));
        }
#pragma unroll
        for (int tg = 0; tg < NG; ++tg) {
          const XFrag fh = load_x(xh, tg * 16 + g, T, Kp, blk, q);
          XFrag fl = fh;
          if constexpr (SPLIT) fl = load_x(xl, tg * 16 + g, T, Kp, blk, q);
          if constexpr (WT == kWF8) {
            block_f8<SPLIT>(acc[tg], fh, fl, wv[u][0]);
          } else if constexpr (Q8) {
            block_q8<SPLIT>(acc[tg], fh, fl, wv[u][0], d0, d1);
          } else {
            block_bf16<SPLIT>(acc[tg], fh, fl, wv[u][0], wv[u][1]);
          }
        }
      }
    }
#pragma unroll
    for (int tg = 0; tg < NG; ++tg) {
#pragma unroll
      for (int i = 0; i < 4; ++i) part[(static_cast<int64_t>(s) * NG * 4 + tg * 4 + i) * 32 + lane] = acc[tg][i];
    }
  }
  __syncthreads();
  if (warp != 0) return;
  float tot[NG][4];
#pragma unroll
  for (int tg = 0; tg < NG; ++tg) tot[tg][0] = tot[tg][1] = tot[tg][2] = tot[tg][3] = 0.0f;
  for (int s = 0; s < S; ++s) {
#pragma unroll
    for (int tg = 0; tg < NG; ++tg) {
#pragma unroll
      for (int i = 0; i < 4; ++i) tot[tg][i] = tot[tg][i] + part[(static_cast<int64_t>(s) * NG * 4 + tg * 4 + i) * 32 + lane];
    }
  }
#pragma unroll
  for (int tg = 0; tg < NG; ++tg) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int t = tg * 16 + g + (i >> 1) * 8;
      const int n = n0 + 2 * q + (i & 1);
      if (t < T && n < N) y[static_cast<int64_t>(t) * ldy + n] = tot[tg][i];
    }
  }
}

// ---- big T (prefill) -------------------------------------------------------------------------------
// CTA tile: BM tokens × 128 W rows × one 64-block per stage. 8 warps, 2 (tokens) × 4 (W rows); a warp
// owns MF×16 tokens × 32 W rows = MF × 4 MMA tiles. kBf16: MF = 4 (BM = 128); kBf16x2: MF = 2 (BM = 64)
// with the hi and lo planes of x in shared memory (same MMAs per warp and stage, same 96 KB).
template <int WT, bool SPLIT>
struct BigTile {
  static constexpr int kMF = SPLIT ? 2 : 4;
  static constexpr int kBM = 2 * 16 * kMF;
  static constexpr int kPlaneBytes = kBM * kKBlock * 2;              // BM rows × 128 bytes
  static constexpr int kABytes = kPlaneBytes * (SPLIT ? 2 : 1);
  static constexpr int kBBytes = WT != kWBf16 ? kBN * kKBlock : kBN * kKBlock * 2;
  static constexpr int kSBytes = WT == kWQ8 ? 2 * kBN * 2 : 0;               // two quant blocks' f16 scales
  static constexpr int kStage = kABytes + kBBytes + kSBytes;
  static constexpr int kSmem = kStages * kStage;
};

template <int WT, bool SPLIT>
__global__ void __launch_bounds__(kBigThreads, 1)
    k_mm_big(float* __restrict__ y, int64_t ldy, const __nv_bfloat16* __restrict__ xh,
             const __nv_bfloat16* __restrict__ xl, int T, int64_t Kp, const void* __restrict__ w,
             const __half* __restrict__ scales, int64_t Np, int N) {
  using Tile = BigTile<WT, SPLIT>;
  constexpr int MF = Tile::kMF, BM = Tile::kBM, PLANES = SPLIT ? 2 : 1;
  constexpr bool Q8 = WT == kWQ8, BYTES = WT != kWBf16;
  extern __shared__ __align__(16) uint8_t smem[];
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, q = lane & 3;
  const int wm = warp >> 2, wn = warp & 3;  // warp tile: tokens wm*MF*16.., W rows wn*32..
  const int m0 = blockIdx.x * BM, n0 = blockIdx.y * kBN;
  const int64_t Kb = Kp / kKBlock;

  auto load_stage = [&](int stage, int64_t kb) {
    uint8_t* sA = smem + stage * Tile::kStage;
    uint8_t* sB = sA + Tile::kABytes;
#pragma unroll
    for (int pl = 0; pl < PLANES; ++pl) {
      const __nv_bfloat16* xs = pl == 0 ? xh : xl;
#pragma unroll
      for (int i = 0; i < BM * 8 / kBigThreads; ++i) {
        const int c = tid + kBigThreads * i, row = c >> 3, ch = c & 7;
        const bool ok = m0 + row < T;
        const __nv_bfloat16* src = xs + (ok ? static_cast<int64_t>(m0 + row) : 0) * Kp + kb * kKBlock + ch * 8;
        cp_async16(sA + pl * Tile::kPlaneBytes + row * 128 + ((ch ^ (row & 7)) * 16), src, ok);
      }
    }
    if constexpr (!BYTES) {
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int c = tid + kBigThreads * i, row = c >> 3, ch = c & 7;
        const bool ok = n0 + row < N;
        const __nv_bfloat16* src = static_cast<const __nv_bfloat16*>(w) +
                                   (ok ? static_cast<int64_t>(n0 + row) : 0) * Kp + kb * kKBlock + ch * 8;
        cp_async16(sB + row * 128 + ((ch ^ (row & 7)) * 16), src, ok);
      }
    } else {
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        const int c = tid + kBigThreads * i, row = c >> 2, ch = c & 3;
        const bool ok = n0 + row < N;
        const int8_t* src = static_cast<const int8_t*>(w) + (ok ? static_cast<int64_t>(n0 + row) : 0) * Kp +
                            kb * kKBlock + ch * 16;
        cp_async16(sB + row * 64 + ch * 16, src, ok);
      }
      if (Q8 && tid < 32) {
        const int h = tid >> 4, part = tid & 15;
        const bool ok = n0 + part * 8 < Np;
        const __half* src = scales + (2 * kb + h) * Np + (ok ? n0 + part * 8 : 0);
        cp_async16(sB + Tile::kBBytes + (h * kBN + part * 8) * 2, src, ok);
      }
    }
  };

  float acc[MF][4][4], tot[MF][4][4];
#pragma unroll
  for (int a = 0; a < MF; ++a)
#pragma unroll
    for (int b = 0; b < 4; ++b)
#pragma unroll
      for (int i = 0; i < 4; ++i) acc[a][b][i] = tot[a][b][i] = 0.0f;

#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < Kb) load_stage(s, s);
    cp_async_commit();
  }
  for (int64_t kb = 0; kb < Kb; ++kb) {
    cp_async_wait<kStages - 2>();
    __syncthreads();
    {
      const int64_t next = kb + kStages - 1;
      if (next < Kb) load_stage(static_cast<int>(next % kStages), next);
      cp_async_commit();
    }
    const uint8_t* sA = smem + (kb % kStages) * Tile::kStage;
    const uint8_t* sB = sA + Tile::kABytes;
    uint4 bq[4];
    if constexpr (BYTES) {
#pragma unroll
      for (int nf = 0; nf < 4; ++nf) bq[nf] = lds128(sB + (wn * 32 + nf * 8 + g) * 64 + q * 16);
    }
#pragma unroll
    for (int hh = 0; hh < 2; ++hh) {  // 16-byte chunk 2q + hh: k-steps 2hh, 2hh + 1
      uint4 alo[PLANES][MF], ahi[PLANES][MF];  // rows g and g + 8 of each MMA tile
#pragma unroll
      for (int pl = 0; pl < PLANES; ++pl)
#pragma unroll
        for (int mf = 0; mf < MF; ++mf) {
          const int ra = wm * MF * 16 + mf * 16 + g;  // ra + 8 has the same swizzle (ra & 7)
          const int off = ((2 * q + hh) ^ (ra & 7)) * 16;
          alo[pl][mf] = lds128(sA + pl * Tile::kPlaneBytes + ra * 128 + off);
          ahi[pl][mf] = lds128(sA + pl * Tile::kPlaneBytes + (ra + 8) * 128 + off);
        }
      if constexpr (WT == kWF8) {
        // bq[nf] word 2hh + s = k-step 2hh + s of W row wn*32 + nf*8 + g, in the order BF16 chains them.
#pragma unroll
        for (int s = 0; s < 2; ++s) {
          uint32_t lo[4], hi[4];
#pragma unroll
          for (int nf = 0; nf < 4; ++nf) f8_words(word(bq[nf], 2 * hh + s), lo[nf], hi[nf]);
#pragma unroll
          for (int mf = 0; mf < MF; ++mf)
#pragma unroll
            for (int nf = 0; nf < 4; ++nf)
#pragma unroll
              for (int pl = 0; pl < PLANES; ++pl)
                mma_bf16(acc[mf][nf], word(alo[pl][mf], 2 * s), word(ahi[pl][mf], 2 * s), word(alo[pl][mf], 2 * s + 1),
                         word(ahi[pl][mf], 2 * s + 1), lo[nf], hi[nf]);
        }
      } else if constexpr (!Q8) {
        uint4 bv[4];
#pragma unroll
        for (int nf = 0; nf < 4; ++nf) {
          const int rn = wn * 32 + nf * 8 + g;
          bv[nf] = lds128(sB + rn * 128 + (((2 * q + hh) ^ (rn & 7)) * 16));
        }
#pragma unroll
        for (int s = 0; s < 2; ++s)
#pragma unroll
          for (int mf = 0; mf < MF; ++mf)
#pragma unroll
            for (int nf = 0; nf < 4; ++nf)
#pragma unroll
              for (int pl = 0; pl < PLANES; ++pl)
                mma_bf16(acc[mf][nf], word(alo[pl][mf], 2 * s), word(ahi[pl][mf], 2 * s), word(alo[pl][mf], 2 * s + 1),
                         word(ahi[pl][mf], 2 * s + 1), word(bv[nf], 2 * s), word(bv[nf], 2 * s + 1));
      } else {
        const __half* sS = reinterpret_cast<const __half*>(sB + Tile::kBBytes);
#pragma unroll
        for (int nf = 0; nf < 4; ++nf) {
          const float2 d = __half22float2(*reinterpret_cast<const __half2*>(sS + hh * kBN + wn * 32 + nf * 8 + 2 * q));
          uint32_t lo[2], hi[2];
          q8_words(word(bq[nf], 2 * hh), lo[0], hi[0]);
          q8_words(word(bq[nf], 2 * hh + 1), lo[1], hi[1]);
#pragma unroll
          for (int mf = 0; mf < MF; ++mf) {
            float p[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
            for (int s = 0; s < 2; ++s)
#pragma unroll
              for (int pl = 0; pl < PLANES; ++pl)
                mma_bf16(p, word(alo[pl][mf], 2 * s), word(ahi[pl][mf], 2 * s), word(alo[pl][mf], 2 * s + 1),
                         word(ahi[pl][mf], 2 * s + 1), lo[s], hi[s]);
            acc[mf][nf][0] = fmaf(d.x, p[0], acc[mf][nf][0]);
            acc[mf][nf][1] = fmaf(d.y, p[1], acc[mf][nf][1]);
            acc[mf][nf][2] = fmaf(d.x, p[2], acc[mf][nf][2]);
            acc[mf][nf][3] = fmaf(d.y, p[3], acc[mf][nf][3]);
          }
        }
      }
    }
    if ((kb + 1) % kSegBlocks == 0 || kb + 1 == Kb) {  // end of a reduction segment
#pragma unroll
      for (int a = 0; a < MF; ++a)
#pragma unroll
        for (int b = 0; b < 4; ++b)
#pragma unroll
          for (int i = 0; i < 4; ++i) {
            tot[a][b][i] = tot[a][b][i] + acc[a][b][i];
            acc[a][b][i] = 0.0f;
          }
    }
  }
  cp_async_wait<0>();

#pragma unroll
  for (int mf = 0; mf < MF; ++mf)
#pragma unroll
    for (int nf = 0; nf < 4; ++nf)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int t = m0 + wm * MF * 16 + mf * 16 + g + (i >> 1) * 8;
        const int n = n0 + wn * 32 + nf * 8 + 2 * q + (i & 1);
        if (t < T && n < N) y[static_cast<int64_t>(t) * ldy + n] = tot[mf][nf][i];
      }
}

// FP8 checkpoints (ModelOpt E4M3, weights.h MatrixView::scale): the product of the stored values is
// scaled per output column, y[t, n] *= scale (or row_scales[n], a device array), in f32 as the CPU does.
__global__ void k_scale_cols(float* __restrict__ y, int64_t ldy, int64_t T, int64_t N, float scale,
                             const float* __restrict__ row_scales) {
  const int64_t total = T * N;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = i / N, n = i - t * N;
    y[t * ldy + n] *= row_scales ? row_scales[n] : scale;
  }
}

// ---- FP8 tensor cores (sm_89+, precision kBf16, F8_E4M3 weights) -------------------------------------
// x is quantized per token: s[t] = amax_k |x[t, k]| / 448 (1 when the row is all zeros), x̂ = E4M3(x / s[t])
// rounded to nearest even with saturation to ±448, stored [T, Kp] in W's permuted byte order (zeros past
// K). Then acc[t, n] = Σ_k x̂·ŵ on mma.m16n8k32 e4m3 (f32 accumulation), y = acc · s[t], and the weight
// scale is applied afterwards by k_scale_cols as on the other path. Each row's scale depends on that row
// only, so the path stays batch invariant.
//
// Fragments of m16n8k32 for 8-bit types (lane: g = lane / 4, q = lane % 4): A (16 × 32, row) a0 = row g,
// k 4q..4q+3; a1 = row g+8, same k; a2 = row g, k 16+4q..16+4q+3; a3 = row g+8, same k. B (32 × 8, col)
// b0 = column g, k 4q..4q+3; b1 = column g, k 16+4q..16+4q+3. C/D: c0, c1 = row g, columns 2q, 2q+1;
// c2, c3 = row g+8. A's k of a register slot and B's k of the same slot are the same formula, so ANY
// assignment of logical k to MMA k slots works when A and B use the same one. Here: the 16 bytes at 16q of
// a 64-block (layout.cuh; words j = 0..3) are lane q's; MMA h = 0, 1 of the block takes words 2h (slots
// 4q..4q+3) and 2h+1 (slots 16+4q..), in W and in x̂ alike: one 16-byte load per row and block.

// f32 -> E4M3 byte, round to nearest even, saturating to ±448 (NaN -> 0x7f). Software, so the sm_80 build
// compiles it too and the host check can mirror it exactly.
__device__ __forceinline__ uint32_t f32_to_e4m3_sat(float f) {
  const uint32_t sign = (__float_as_uint(f) >> 24) & 0x80u;
  float a = fabsf(f);
  if (!(a == a)) return 0x7fu;
  a = fminf(a, 448.0f);
  uint32_t mag;
  if (a < 0.015625f) {  // below 2^-6: subnormal steps of 2^-9 (8 -> 0x08, the smallest normal)
    mag = static_cast<uint32_t>(rintf(a * 512.0f));
  } else {
    uint32_t u = __float_as_uint(a);
    u += 0x7ffffu + ((u >> 20) & 1u);  // round the f32 mantissa to 3 bits, ties to even
    mag = ((((u >> 23) - 127u + 7u) & 0xfu) << 3) | ((u >> 20) & 7u);  // <= 448 = 0x7e: no overflow
  }
  return sign | mag;
}

__device__ __forceinline__ void mma_e4m3(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                         uint32_t b0, uint32_t b1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
#else
  // Built for an architecture without FP8 MMAs: never launched there (fp8_kernel_ok checks the binary).
  (void)d, (void)a0, (void)a1, (void)a2, (void)a3, (void)b0, (void)b1;
  __trap();
#endif
}

// One CTA per token row: the row's amax (exact, order free), its scale, and the E4M3 bytes in permuted
// order, 4 per thread and step (one 32-bit store).
template <bool RELU2>
__global__ void k_x_to_e4m3(uint32_t* __restrict__ xq, float* __restrict__ xs, const float* __restrict__ x,
                            int64_t ldx, int64_t K, int64_t Kp) {
  __shared__ float red[32];
  const int64_t t = blockIdx.x;
  const float* xr = x + t * ldx;
  auto val = [&](int64_t k) {
    float v = xr[k];
    if constexpr (RELU2) {
      const float r0 = v > 0.0f ? v : 0.0f;
      v = r0 * r0;
    }
    return v;
  };
  float m = 0.0f;
  for (int64_t k = threadIdx.x; k < K; k += blockDim.x) m = fmaxf(m, fabsf(val(k)));
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = m;
  __syncthreads();
  m = 0.0f;
  for (int i = 0; i < static_cast<int>(blockDim.x >> 5); ++i) m = fmaxf(m, red[i]);
  const float s = m > 0.0f ? __fdiv_rn(m, 448.0f) : 1.0f;
  if (threadIdx.x == 0) xs[t] = s;
  for (int64_t d0 = 4 * static_cast<int64_t>(threadIdx.x); d0 < Kp; d0 += 4 * static_cast<int64_t>(blockDim.x)) {
    uint32_t packed = 0;
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int64_t k = perm_logical(d0 + e);
      const uint32_t b = k < K ? f32_to_e4m3_sat(__fdiv_rn(val(k), s)) : 0u;
      packed |= b << (8 * e);
    }
    xq[(t * Kp + d0) / 4] = packed;
  }
}

// y[t, n] = s[t] · Σ x̂·ŵ, decode (T <= 32). CTA: 8 W rows × 16·NG tokens, 4 warps taking the K segments
// in turn, as the small bf16 kernel: per segment a chain of 64-blocks (two MMAs each, h = 0
// then 1) from +0, the segment sums added left to right from +0 by warp 0. Token rows past T load zeros
// and W rows past N read row N-1; both results are dropped.
template <int NG, int U>
__global__ void __launch_bounds__(kSmallWarps * 32)
    k_mm_f8f8(float* __restrict__ y, int64_t ldy, const uint8_t* __restrict__ xq, const float* __restrict__ xs,
              int T, int64_t Kp, const uint8_t* __restrict__ w, int N) {
  extern __shared__ float part[];  // [segments][NG * 4][32]
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, q = lane & 3;
  const int n0 = blockIdx.x * 8, t0 = blockIdx.y * 16 * NG;
  const int64_t wrow = min(n0 + g, N - 1);
  const int64_t Kb = Kp / kKBlock;
  const int S = static_cast<int>((Kb + kSegBlocks - 1) / kSegBlocks);

  for (int s = warp; s < S; s += kSmallWarps) {
    float acc[NG][4];
#pragma unroll
    for (int tg = 0; tg < NG; ++tg) acc[tg][0] = acc[tg][1] = acc[tg][2] = acc[tg][3] = 0.0f;
    const int64_t b_begin = static_cast<int64_t>(s) * kSegBlocks;
    const int64_t b_end = min(Kb, b_begin + kSegBlocks);
    for (int64_t b0 = b_begin; b0 < b_end; b0 += U) {
      uint4 wv[U];
#pragma unroll
      for (int u = 0; u < U; ++u) {
        if (b0 + u < b_end) wv[u] = ld_stream(w + wrow * Kp + (b0 + u) * kKBlock + 16 * q);
      }
#pragma unroll
      for (int u = 0; u < U; ++u) {
        if (b0 + u >= b_end) break;
        const int64_t blk = b0 + u;
#pragma unroll
        for (int tg = 0; tg < NG; ++tg) {
          const int ta = t0 + tg * 16 + g;
          uint4 xa = make_uint4(0, 0, 0, 0), xb = xa;  // rows ta and ta + 8
          if (ta < T) xa = __ldg(reinterpret_cast<const uint4*>(xq + ta * Kp + blk * kKBlock + 16 * q));
          if (ta + 8 < T) xb = __ldg(reinterpret_cast<const uint4*>(xq + (ta + 8) * Kp + blk * kKBlock + 16 * q));
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            mma_e4m3(acc[tg], word(xa, 2 * h), word(xb, 2 * h), word(xa, 2 * h + 1), word(xb, 2 * h + 1),
                     word(wv[u], 2 * h), word(wv[u], 2 * h + 1));
          }
        }
      }
    }
#pragma unroll
    for (int tg = 0; tg < NG; ++tg) {
#pragma unroll
      for (int i = 0; i < 4; ++i) part[(static_cast<int64_t>(s) * NG * 4 + tg * 4 + i) * 32 + lane] = acc[tg][i];
    }
  }
  __syncthreads();
  if (warp != 0) return;
  float tot[NG][4];
#pragma unroll
  for (int tg = 0; tg < NG; ++tg) tot[tg][0] = tot[tg][1] = tot[tg][2] = tot[tg][3] = 0.0f;
  for (int s = 0; s < S; ++s) {
#pragma unroll
    for (int tg = 0; tg < NG; ++tg) {
#pragma unroll
      for (int i = 0; i < 4; ++i) tot[tg][i] = tot[tg][i] + part[(static_cast<int64_t>(s) * NG * 4 + tg * 4 + i) * 32 + lane];
    }
  }
#pragma unroll
  for (int tg = 0; tg < NG; ++tg) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int t = t0 + tg * 16 + g + (i >> 1) * 8;
      const int n = n0 + 2 * q + (i & 1);
      if (t < T && n < N) y[static_cast<int64_t>(t) * ldy + n] = tot[tg][i] * xs[t];
    }
  }
}

// Prefill (T > 32): no split of K, so no partial sums in shared memory. CTA of 4 warps = 64 tokens
// (blockIdx.y) × 128 W rows; a warp owns 4 × 4 MMA tiles (64 tokens × 32 W rows) and walks every segment
// itself: the same per-segment chains and the same left-to-right sum from +0 as k_mm_f8f8, so the same
// bits (the batch invariance across the two kernels rests on this). Each 16-byte x load now feeds 8 MMAs
// and each W load 8: a quarter of k_mm_f8f8's L2 traffic for x at T > 32.
__global__ void __launch_bounds__(kSmallWarps * 32)
    k_mm_f8f8_wide(float* __restrict__ y, int64_t ldy, const uint8_t* __restrict__ xq, const float* __restrict__ xs,
                   int T, int64_t Kp, const uint8_t* __restrict__ w, int N) {
  constexpr int NG = 4, NF = 4;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, q = lane & 3;
  const int n0 = blockIdx.x * (kSmallWarps * 8 * NF) + warp * 8 * NF, t0 = blockIdx.y * 16 * NG;
  if (n0 >= N) return;  // whole warp: no shuffles or barriers below
  const int64_t Kb = Kp / kKBlock;
  const uint8_t* wr[NF];
#pragma unroll
  for (int nf = 0; nf < NF; ++nf) wr[nf] = w + static_cast<int64_t>(min(n0 + nf * 8 + g, N - 1)) * Kp + 16 * q;
  const uint8_t* xr[NG][2];
#pragma unroll
  for (int tg = 0; tg < NG; ++tg) {
    const int ta = t0 + tg * 16 + g;
    xr[tg][0] = ta < T ? xq + static_cast<int64_t>(ta) * Kp + 16 * q : nullptr;
    xr[tg][1] = ta + 8 < T ? xq + static_cast<int64_t>(ta + 8) * Kp + 16 * q : nullptr;
  }
  float tot[NG][NF][4], acc[NG][NF][4];
#pragma unroll
  for (int a = 0; a < NG; ++a)
#pragma unroll
    for (int b = 0; b < NF; ++b)
#pragma unroll
      for (int i = 0; i < 4; ++i) tot[a][b][i] = acc[a][b][i] = 0.0f;
  for (int64_t blk = 0; blk < Kb; ++blk) {
    uint4 wv[NF];
#pragma unroll
    for (int nf = 0; nf < NF; ++nf) wv[nf] = ld_stream(wr[nf] + blk * kKBlock);
#pragma unroll
    for (int tg = 0; tg < NG; ++tg) {
      const uint4 z = make_uint4(0, 0, 0, 0);
      const uint4 xa = xr[tg][0] ? __ldg(reinterpret_cast<const uint4*>(xr[tg][0] + blk * kKBlock)) : z;
      const uint4 xb = xr[tg][1] ? __ldg(reinterpret_cast<const uint4*>(xr[tg][1] + blk * kKBlock)) : z;
#pragma unroll
      for (int nf = 0; nf < NF; ++nf)
#pragma unroll
        for (int h = 0; h < 2; ++h)
          mma_e4m3(acc[tg][nf], word(xa, 2 * h), word(xb, 2 * h), word(xa, 2 * h + 1), word(xb, 2 * h + 1),
                   word(wv[nf], 2 * h), word(wv[nf], 2 * h + 1));
    }
    if ((blk + 1) % kSegBlocks == 0 || blk + 1 == Kb) {  // end of a segment: as k_mm_f8f8's warp 0 adds them
#pragma unroll
      for (int a = 0; a < NG; ++a)
#pragma unroll
        for (int b = 0; b < NF; ++b)
#pragma unroll
          for (int i = 0; i < 4; ++i) {
            tot[a][b][i] = tot[a][b][i] + acc[a][b][i];
            acc[a][b][i] = 0.0f;
          }
    }
  }
#pragma unroll
  for (int tg = 0; tg < NG; ++tg)
#pragma unroll
    for (int nf = 0; nf < NF; ++nf)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int t = t0 + tg * 16 + g + (i >> 1) * 8;
        const int n = n0 + nf * 8 + 2 * q + (i & 1);
        if (t < T && n < N) y[static_cast<int64_t>(t) * ldy + n] = tot[tg][nf][i] * xs[t];
      }
}

constexpr int kF8U = 8;  // 64-blocks of W in flight per warp

// Whether the FP8 path can run on the current device: compute capability >= 8.9 AND the kernel the
// runtime picked for it was compiled from PTX of compute_89 or later (__CUDA_ARCH__ >= 890: the MMA is
// in it). An sm_80 cubin, or compute_80 PTX JIT-compiled for an sm_89 GPU, has only the __trap(). Cached per
// device (a relaxed race on the cache only repeats the query).
bool fp8_kernel_ok() {
  static std::atomic<int> cache[64];  // 0 unknown, 1 no, 2 yes
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) return false;
  if (dev < 0 || dev >= 64) return false;
  const int c = cache[dev].load(std::memory_order_relaxed);
  if (c != 0) return c == 2;
  int major = 0, minor = 0;
  bool ok = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess &&
            cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) == cudaSuccess &&
            major * 10 + minor >= 89;
  if (ok) {
    cudaFuncAttributes attr{};
    ok = cudaFuncGetAttributes(&attr, k_mm_f8f8<1, kF8U>) == cudaSuccess && attr.ptxVersion >= 89;
  }
  cache[dev].store(ok ? 2 : 1, std::memory_order_relaxed);
  return ok;
}

std::atomic<bool> g_fp8_mma_enabled{true};

// T <= 32 takes k_mm_f8f8 unless its partial sums would not fit in shared memory (K over ~98k): then
// k_mm_f8f8_wide, which gives the same bits. Returns cudaErrorNotSupported (nothing queued) only when T
// needs more than 65535 token groups (T > 4194240): the caller then takes the bf16 path.
cudaError_t matmul_f8f8(float* y, int64_t ldy, const float* x, int64_t ldx, const MatrixView& w, int64_t T,
                        Scratch& scratch, cudaStream_t stream, MatmulInput input) {
  const int64_t K = w.cols, Kp = padded_cols(K), N = w.rows;
  const int64_t segments = ceil_div(Kp / kKBlock, kSegBlocks);
  const int NG = T <= 16 ? 1 : 2;
  const size_t smem = static_cast<size_t>(segments) * NG * 4 * 32 * sizeof(float);
  const bool wide = T > kSmallMaxT || smem > 96 * 1024;
  if (ceil_div(T, 64) > 65535) return cudaErrorNotSupported;
  void* buf = nullptr;
  const size_t qbytes = static_cast<size_t>(T * Kp);  // a multiple of 64: the scales stay aligned
  CUDA_TRY(scratch.get(qbytes + static_cast<size_t>(T) * sizeof(float), &buf, stream));
  auto* xq = static_cast<uint8_t*>(buf);
  auto* xs = reinterpret_cast<float*>(xq + qbytes);
  auto quant = input == MatmulInput::kRelu2 ? k_x_to_e4m3<true> : k_x_to_e4m3<false>;
  quant<<<static_cast<unsigned>(T), 256, 0, stream>>>(reinterpret_cast<uint32_t*>(xq), xs, x, ldx, K, Kp);
  CUDA_TRY(cudaGetLastError());
  const auto* wb = static_cast<const uint8_t*>(w.data);
  const int Ti = static_cast<int>(T), Ni = static_cast<int>(N);
  if (wide) {
    const dim3 grid(static_cast<unsigned>(ceil_div(N, kSmallWarps * 32)), static_cast<unsigned>(ceil_div(T, 64)));
    k_mm_f8f8_wide<<<grid, kSmallWarps * 32, 0, stream>>>(y, ldy, xq, xs, Ti, Kp, wb, Ni);
    return cudaGetLastError();
  }
  auto kernel = NG == 1 ? k_mm_f8f8<1, kF8U> : k_mm_f8f8<2, kF8U>;
  CUDA_TRY(allow_smem(kernel, smem));
  kernel<<<static_cast<unsigned>(ceil_div(N, 8)), kSmallWarps * 32, smem, stream>>>(y, ldy, xq, xs, Ti, Kp, wb, Ni);
  return cudaGetLastError();
}

struct MmArgs {
  float* y;
  int64_t ldy;
  const __nv_bfloat16* xh;
  const __nv_bfloat16* xl;
  int T;
  int64_t Kp;
  const void* w;
  const __half* scales;
  int64_t Np;
  int N;
};

template <int NG, int WT, bool SPLIT>
cudaError_t launch_small(const MmArgs& a, size_t smem, cudaStream_t stream) {
  constexpr int U = WT != kWBf16 ? 8 : 4;
  auto kernel = k_mm_small<NG, WT, SPLIT, U>;
  CUDA_TRY(allow_smem(kernel, smem));
  kernel<<<static_cast<unsigned>(ceil_div(a.N, 8)), kSmallWarps * 32, smem, stream>>>(a.y, a.ldy, a.xh, a.xl, a.T, a.Kp,
                                                                                     a.w, a.scales, a.Np, a.N);
  return cudaGetLastError();
}

template <int WT, bool SPLIT>
cudaError_t launch_big(const MmArgs& a, cudaStream_t stream) {
  using Tile = BigTile<WT, SPLIT>;
  auto kernel = k_mm_big<WT, SPLIT>;
  CUDA_TRY(allow_smem(kernel, Tile::kSmem));
  const dim3 grid(static_cast<unsigned>(ceil_div(a.T, Tile::kBM)), static_cast<unsigned>(ceil_div(a.N, kBN)));
  kernel<<<grid, kBigThreads, Tile::kSmem, stream>>>(a.y, a.ldy, a.xh, a.xl, a.T, a.Kp, a.w, a.scales, a.Np, a.N);
  return cudaGetLastError();
}

template <int WT, bool SPLIT>
cudaError_t dispatch(const MmArgs& a, int64_t segments, cudaStream_t stream) {
  if (a.T <= kSmallMaxT) {
    const int NG = a.T <= 16 ? 1 : 2;
    const size_t smem = static_cast<size_t>(segments) * NG * 4 * 32 * sizeof(float);
    if (smem <= 96 * 1024) {
      return NG == 1 ? launch_small<1, WT, SPLIT>(a, smem, stream) : launch_small<2, WT, SPLIT>(a, smem, stream);
    }
  }
  return launch_big<WT, SPLIT>(a, stream);
}

}  // namespace

void set_fp8_mma_enabled(bool on) { g_fp8_mma_enabled.store(on, std::memory_order_relaxed); }
bool fp8_mma_active() { return g_fp8_mma_enabled.load(std::memory_order_relaxed) && fp8_kernel_ok(); }

cudaError_t matmul(float* y, int64_t ldy, const float* x, int64_t ldx, const MatrixView& w, int64_t T,
                   Scratch& scratch, cudaStream_t stream, MmaPrecision precision, MatmulInput input) {
  if (T <= 0 || w.rows <= 0) return cudaSuccess;
  if (w.dtype != DType::BF16 && w.dtype != DType::Q8_0 && w.dtype != DType::F8_E4M3)
    return cudaErrorInvalidValue;  // not uploaded
  if (T > INT32_MAX || w.rows > INT32_MAX) return cudaErrorInvalidValue;
  const bool split = precision == MmaPrecision::kBf16x2;
  if (!split && w.dtype == DType::F8_E4M3 && g_fp8_mma_enabled.load(std::memory_order_relaxed) && fp8_kernel_ok()) {
    const cudaError_t e = matmul_f8f8(y, ldy, x, ldx, w, T, scratch, stream, input);
    if (e != cudaErrorNotSupported) {
      if (e != cudaSuccess || !w.scaled()) return e;
      k_scale_cols<<<grid_for(T * w.rows, 256), 256, 0, stream>>>(y, ldy, T, w.rows, w.scale, w.row_scales);
      return cudaGetLastError();
    }
  }
  const int64_t K = w.cols, Kp = padded_cols(K), N = w.rows;
  void* buf = nullptr;
  CUDA_TRY(scratch.get(static_cast<size_t>(T * Kp) * 2 * (split ? 2 : 1), &buf, stream));
  auto* xh = static_cast<__nv_bfloat16*>(buf);
  auto* xl = split ? xh + T * Kp : nullptr;
  auto convert = input == MatmulInput::kRelu2 ? k_x_to_bf16<true> : k_x_to_bf16<false>;
  convert<<<grid_for(T * Kp / 8, 256), 256, 0, stream>>>(reinterpret_cast<uint4*>(xh), reinterpret_cast<uint4*>(xl), x,
                                                         ldx, T, K, Kp);
  CUDA_TRY(cudaGetLastError());

  const bool q8 = w.dtype == DType::Q8_0;
  const int64_t Np = round_up(N, 8);
  const __half* scales =
      q8 ? reinterpret_cast<const __half*>(static_cast<const uint8_t*>(w.data) + round_up(N * Kp, 16)) : nullptr;
  const MmArgs a{y, ldy, xh, xl, static_cast<int>(T), Kp, w.data, scales, Np, static_cast<int>(N)};
  const int64_t segments = ceil_div(Kp / kKBlock, kSegBlocks);
  cudaError_t err;
  if (q8) {
    err = split ? dispatch<kWQ8, true>(a, segments, stream) : dispatch<kWQ8, false>(a, segments, stream);
  } else if (w.dtype == DType::F8_E4M3) {
    err = split ? dispatch<kWF8, true>(a, segments, stream) : dispatch<kWF8, false>(a, segments, stream);
  } else {
    err = split ? dispatch<kWBf16, true>(a, segments, stream) : dispatch<kWBf16, false>(a, segments, stream);
  }
  if (err != cudaSuccess || !w.scaled()) return err;
  k_scale_cols<<<grid_for(T * N, 256), 256, 0, stream>>>(y, ldy, T, N, w.scale, w.row_scales);
  return cudaGetLastError();
}

}  // namespace nemo::cuda
