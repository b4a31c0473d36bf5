// Mixture-of-experts blocks on the device (issue #19): the CUDA twins of csrc/kernels/moe.cc (moe_route,
// moe_scatter_add) and of the routed half of forward.cc moe_block, all on the stream so that a decode
// step with MoE layers is captured as one graph like the others (backend_cuda.cu): the host never sees
// the routing.
//
// moe_routed, for T rows of u [T, H]:
//   1. router logits [T, E] = u · router^T in f32 (k_router: exact products, one fixed order), as HF
//      computes the router in f32; the router stays an f32 matrix on the device (not the bf16 layout).
//   2. routing (k_route, one CTA per row): moe.cc's arithmetic step by step — sigmoid, + bias for the
//      choice only, group scores (the two best of each group, summed), the topk_group best groups kept,
//      top-k over the kept experts, weights from the unbiased sigmoid, normalised by sum + 1e-20,
//      scaled. Every ranking is by (value desc, index asc): a total order, so the block-wide argmax
//      rounds pick exactly what moe.cc's sequential selection picks from the same values.
//   3. grouping (k_group, one CTA): for each expert, the slots s = t·K + k that chose it, ascending
//      (warp ballots keep the order), at lists[e·T ..], counts[e], and the experts with any slot,
//      ascending, in active[0 .. active[E]). Nothing here depends on timing: no atomics.
//   4. up projection of the selected experts only (k_expert<.., UP>): grid.y walks active[], so an
//      expert no row chose is not read, and each chosen expert's matrix is read once per step for all
//      its rows (the rows of a tile of 8 share every 16-byte weight load; further tiles hit L2). The
//      output goes straight to relu(.)² in f32 at its permuted position in the down projection's input
//      (layout.cuh), so no separate activation or conversion pass.
//   5. down projection the same way, into y [T·K, H] by slot.
//   6. combine (k_combine): acc[t] = Σ over row t's experts in ASCENDING expert id of w · y — the order
//      in which forward.cc's CPU loop adds them — from +0.
//
// Batch invariance (batched = alone, decode = prefill): every output element of 1, 4, 5 and 6 is
// computed by one thread or one warp in an order fixed by the shapes of the model alone (lane-strided
// 16-byte chunks of K, a fixed xor tree over the warp), never by T, the tile a row falls in or the
// number of rows an expert got. Routing is per row. So a row's result does not depend on its batch.
//
// Precision: the experts multiply the weights in their device layout (BF16, or Q8_0 quants with their
// f16 block scales) by f32 activations on the CUDA cores, whatever the backend's matmul precision: the
// same products as the CPU engine's exact path, in another summation order.
#include <cfloat>
#include <cmath>

#include "cuda/common.cuh"
#include "cuda/kernels_cuda.h"
#include "cuda/layout.cuh"

namespace nemo::cuda {
namespace {

constexpr int kRouteThreads = 128;
constexpr int kMaxTopK = 32;
constexpr int kMaxExperts = 2048;  // k_route keeps 2 floats per expert and group in shared memory (<= 32 KiB)
constexpr int kExpertWarps = 4;    // W rows per CTA of k_expert (one per warp)
constexpr int kTokTile = 8;        // rows of one expert sharing each weight load

// a ranks before b: larger value first, then the lower index (moe.cc's `before`).
__device__ __forceinline__ bool before(float va, int ia, float vb, int ib) {
  return va > vb || (va == vb && ia < ib);
}

// ---- 1. router logits ------------------------------------------------------------------------------
// y[t, e] = Σ_k x[t, k] · w[e, k]: one warp per (t, e), lane-strided over k, then the xor tree.
__global__ void k_router(float* __restrict__ y, int64_t ldy, const float* __restrict__ x, int64_t ldx,
                         const float* __restrict__ w, int64_t E, int64_t H, int64_t T) {
  const int64_t gw = (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) >> 5;
  const int lane = threadIdx.x & 31;
  if (gw >= T * E) return;  // whole warps leave together (blockDim is a multiple of 32)
  const int64_t t = gw / E, e = gw % E;
  const float* xr = x + t * ldx;
  const float* wr = w + e * H;
  float s = 0.0f;
  for (int64_t k = lane; k < H; k += 32) s = fmaf(xr[k], wr[k], s);
  s = warp_sum(s);
  if (lane == 0) y[t * ldy + e] = s;
}

// ---- 2. routing ------------------------------------------------------------------------------------
// Block-wide best (value, index) by `before` among candidates; idx -1 = none. `rv`/`ri` are 32 slots of
// shared memory. Every thread gets the result.
__device__ __forceinline__ void block_best(float& v, int& i, float* rv, int* ri) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float v2 = __shfl_xor_sync(0xffffffffu, v, o);
    const int i2 = __shfl_xor_sync(0xffffffffu, i, o);
    if (i2 >= 0 && (i < 0 || before(v2, i2, v, i))) {
      v = v2;
      i = i2;
    }
  }
  __syncthreads();  // rv/ri may still be read by the previous call
  if (lane == 0) {
    rv[warp] = v;
    ri[warp] = i;
  }
  __syncthreads();
  v = -FLT_MAX;
  i = -1;
  for (int w = 0; w < n_warps; ++w) {  // the same sequence in every thread
    if (ri[w] >= 0 && (i < 0 || before(rv[w], ri[w], v, i))) {
      v = rv[w];
      i = ri[w];
    }
  }
}

// One CTA per row. Dynamic shared memory: s[E], c[E], gscore[G], keep[G] (floats).
__global__ void __launch_bounds__(kRouteThreads) k_route(int32_t* __restrict__ ids, float* __restrict__ weights,
                                                        const float* __restrict__ logits, int64_t ld,
                                                        const float* __restrict__ bias, int E, int K, int G,
                                                        int topk_group, bool norm, float scaling) {
  extern __shared__ float sh[];
  float* s = sh;
  float* c = s + E;
  float* gscore = c + E;
  float* keep = gscore + G;
  __shared__ float rv[32];
  __shared__ int ri[32];
  __shared__ int chosen[kMaxTopK];
  const int64_t t = blockIdx.x;
  const float* x = logits + t * ld;
  for (int e = threadIdx.x; e < E; e += blockDim.x) {
    s[e] = 1.0f / (1.0f + expf(-x[e]));
    c[e] = s[e] + bias[e];
  }
  __syncthreads();
  if (G > 1 && topk_group < G) {
    const int per = E / G;
    for (int g = threadIdx.x; g < G; g += blockDim.x) {
      const float* cg = c + g * per;
      float a = -INFINITY, b = -INFINITY;  // the two largest of the group, summed (moe.cc)
      for (int i = 0; i < per; ++i) {
        if (cg[i] > a) {
          b = a;
          a = cg[i];
        } else if (cg[i] > b) {
          b = cg[i];
        }
      }
      gscore[g] = a + b;
      keep[g] = 0.0f;
    }
    __syncthreads();
    for (int j = 0; j < topk_group; ++j) {  // the topk_group best groups, as moe.cc's top_k
      float v = -FLT_MAX;
      int i = -1;
      for (int g = threadIdx.x; g < G; g += blockDim.x) {
        if (keep[g] != 0.0f) continue;
        if (i < 0 || before(gscore[g], g, v, i)) {
          v = gscore[g];
          i = g;
        }
      }
      block_best(v, i, rv, ri);
      if (threadIdx.x == 0 && i >= 0) keep[i] = 1.0f;
      __syncthreads();
    }
    for (int e = threadIdx.x; e < E; e += blockDim.x) {
      if (keep[e / per] == 0.0f) c[e] = -INFINITY;
    }
    __syncthreads();
  }
  for (int j = 0; j < K; ++j) {  // top-k experts, best first
    float v = -FLT_MAX;
    int i = -1;
    for (int e = threadIdx.x; e < E; e += blockDim.x) {
      bool taken = false;
      for (int q = 0; q < j; ++q) taken = taken || chosen[q] == e;
      if (taken) continue;
      if (i < 0 || before(c[e], e, v, i)) {
        v = c[e];
        i = e;
      }
    }
    block_best(v, i, rv, ri);
    if (threadIdx.x == 0) chosen[j] = i;
    __syncthreads();
  }
  if (threadIdx.x == 0) {  // weights: moe.cc's sequence of f32 operations
    int32_t* id = ids + t * K;
    float* w = weights + t * K;
    for (int j = 0; j < K; ++j) {
      id[j] = chosen[j];
      w[j] = s[chosen[j]];
    }
    if (norm) {
      float sum = 0.0f;
      for (int j = 0; j < K; ++j) sum += w[j];
      const float denom = sum + 1e-20f;
      for (int j = 0; j < K; ++j) w[j] /= denom;
    }
    for (int j = 0; j < K; ++j) w[j] *= scaling;
  }
}

// ---- 3. grouping -----------------------------------------------------------------------------------
// One CTA of 32 warps. Expert e's slots (t·K + k with ids[t·K + k] == e), ascending, at lists[e·cap ..];
// cap = T (a row chooses an expert at most once). active[0 .. active[E]) = experts with a slot, ascending.
__global__ void __launch_bounds__(1024) k_group(int32_t* __restrict__ counts, int32_t* __restrict__ lists,
                                               int32_t* __restrict__ active, const int32_t* __restrict__ ids,
                                               int64_t TK, int64_t cap, int E) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
  const unsigned below = (1u << lane) - 1u;
  for (int e = warp; e < E; e += n_warps) {
    int n = 0;
    int32_t* list = lists + static_cast<int64_t>(e) * cap;
    for (int64_t base = 0; base < TK; base += 32) {
      const int64_t i = base + lane;
      const bool m = i < TK && ids[i] == e;
      const unsigned bal = __ballot_sync(0xffffffffu, m);
      if (m) list[n + __popc(bal & below)] = static_cast<int32_t>(i);
      n += __popc(bal);
    }
    if (lane == 0) counts[e] = n;
  }
  __syncthreads();
  if (warp == 0) {
    int total = 0;
    for (int base = 0; base < E; base += 32) {
      const int e = base + lane;
      const bool m = e < E && counts[e] > 0;
      const unsigned bal = __ballot_sync(0xffffffffu, m);
      if (m) active[total + __popc(bal & below)] = e;
      total += __popc(bal);
    }
    if (lane == 0) active[E] = total;
  }
}

// u [T, H] -> xu [T, Kp] f32 in the weights' permuted order (layout.cuh), zeros past H.
__global__ void k_permute(float* __restrict__ xp, const float* __restrict__ x, int64_t ldx, int64_t T, int64_t H,
                          int64_t Kp) {
  const int64_t total = T * Kp;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = i / Kp, k = perm_logical(i % Kp);
    xp[i] = k < H ? x[t * ldx + k] : 0.0f;
  }
}

// ---- 4, 5. the selected experts' products ------------------------------------------------------------
__device__ __forceinline__ uint4 ld_weights(const void* p) {  // streamed: read once per tile
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}
__device__ __forceinline__ float bf16_lo(uint32_t w) { return __uint_as_float(w << 16); }
__device__ __forceinline__ float bf16_hi(uint32_t w) { return __uint_as_float(w & 0xffff0000u); }
__device__ __forceinline__ float s8(uint32_t w, int b) {
  return static_cast<float>(static_cast<int8_t>((w >> (8 * b)) & 0xffu));
}

// Dot product of one 16-byte weight chunk with 8 (BF16) or 16 (Q8_0) permuted f32 activations, in a
// fixed order. Q8_0: a 16-byte chunk holds 8 quants of block 2·(c/4) then 8 of the next (layout.cuh: a
// lane quad's bytes 0-7 are k-steps 0, 1 of its 64-block, bytes 8-15 k-steps 2, 3).
__device__ __forceinline__ float dot_bf16(const uint4& w, const float* x) {
  const float4 a = *reinterpret_cast<const float4*>(x), b = *reinterpret_cast<const float4*>(x + 4);
  float s = 0.0f;
  s = fmaf(bf16_lo(w.x), a.x, s);
  s = fmaf(bf16_hi(w.x), a.y, s);
  s = fmaf(bf16_lo(w.y), a.z, s);
  s = fmaf(bf16_hi(w.y), a.w, s);
  s = fmaf(bf16_lo(w.z), b.x, s);
  s = fmaf(bf16_hi(w.z), b.y, s);
  s = fmaf(bf16_lo(w.w), b.z, s);
  s = fmaf(bf16_hi(w.w), b.w, s);
  return s;
}
__device__ __forceinline__ float dot_q8_half(uint32_t w0, uint32_t w1, const float* x) {
  const float4 a = *reinterpret_cast<const float4*>(x), b = *reinterpret_cast<const float4*>(x + 4);
  float s = 0.0f;
  s = fmaf(s8(w0, 0), a.x, s);
  s = fmaf(s8(w0, 1), a.y, s);
  s = fmaf(s8(w0, 2), a.z, s);
  s = fmaf(s8(w0, 3), a.w, s);
  s = fmaf(s8(w1, 0), b.x, s);
  s = fmaf(s8(w1, 1), b.y, s);
  s = fmaf(s8(w1, 2), b.z, s);
  s = fmaf(s8(w1, 3), b.w, s);
  return s;
}

// out = W_e · x for the slots of active expert blockIdx.y, W row n = blockIdx.x·kExpertWarps + warp.
// W: N rows of Kp in the device layout (Q8: quants then f16 scales [Kp/32][Np]). x rows (f32, permuted,
// stride Kp): row slot / x_div. UP: writes relu(v)² to out[slot·ldo + perm_position(n)] (the down
// projection's permuted input); else out[slot·ldo + n].
template <bool Q8, bool UP>
__global__ void __launch_bounds__(kExpertWarps * 32)
    k_expert(const void* const* __restrict__ mats, const int32_t* __restrict__ counts,
             const int32_t* __restrict__ lists, const int32_t* __restrict__ active, int E, int64_t cap,
             const float* __restrict__ x, int64_t x_div, int64_t N, int64_t Kp, float* __restrict__ out,
             int64_t ldo) {
  const int a = blockIdx.y;
  if (a >= active[E]) return;
  const int e = active[a];
  const int lane = threadIdx.x & 31;
  const int64_t n = static_cast<int64_t>(blockIdx.x) * kExpertWarps + (threadIdx.x >> 5);
  if (n >= N) return;  // whole warps; no block-wide synchronisation below
  const int cnt = counts[e];
  const int32_t* list = lists + static_cast<int64_t>(e) * cap;
  const uint8_t* base = static_cast<const uint8_t*>(mats[e]);
  const int64_t n_chunks = Q8 ? Kp / 16 : Kp / 8;  // 16-byte chunks per row
  const uint8_t* wrow = base + n * (Q8 ? Kp : 2 * Kp);
  const __half* scales = Q8 ? reinterpret_cast<const __half*>(base + (N * Kp + 15) / 16 * 16) : nullptr;
  const int64_t Np = (N + 7) / 8 * 8;
  for (int t0 = 0; t0 < cnt; t0 += kTokTile) {
    const int nt = min(kTokTile, cnt - t0);
    const float* xr[kTokTile];
#pragma unroll
    for (int i = 0; i < kTokTile; ++i) xr[i] = x + (static_cast<int64_t>(list[t0 + min(i, nt - 1)]) / x_div) * Kp;
    float acc[kTokTile];
#pragma unroll
    for (int i = 0; i < kTokTile; ++i) acc[i] = 0.0f;
    for (int64_t ch = lane; ch < n_chunks; ch += 32) {
      const uint4 w = ld_weights(wrow + ch * 16);
      if constexpr (Q8) {
        const int64_t qb = 2 * (ch >> 2);
        const float s0 = __half2float(scales[qb * Np + n]), s1 = __half2float(scales[(qb + 1) * Np + n]);
#pragma unroll
        for (int i = 0; i < kTokTile; ++i) {
          if (i < nt) {
            const float* xp = xr[i] + ch * 16;
            const float p0 = dot_q8_half(w.x, w.y, xp), p1 = dot_q8_half(w.z, w.w, xp + 8);
            acc[i] = fmaf(s0, p0, acc[i]);
            acc[i] = fmaf(s1, p1, acc[i]);
          }
        }
      } else {
#pragma unroll
        for (int i = 0; i < kTokTile; ++i) {
          if (i < nt) acc[i] += dot_bf16(w, xr[i] + ch * 8);
        }
      }
    }
#pragma unroll
    for (int i = 0; i < kTokTile; ++i) {
      if (i < nt) {  // nt is the same in every lane: the shuffles see the whole warp
        const float v = warp_sum(acc[i]);
        if (lane == 0) {
          const int64_t slot = list[t0 + i];
          if constexpr (UP) {
            const float r = v > 0.0f ? v : 0.0f;
            out[slot * ldo + perm_position(n)] = r * r;
          } else {
            out[slot * ldo + n] = v;
          }
        }
      }
    }
  }
}

// ---- 6. combine --------------------------------------------------------------------------------------
// acc[t, h] = Σ_k w[t, k] · y[t·K + k, h] over row t's experts in ascending expert id, from +0.
__global__ void k_combine(float* __restrict__ acc, const float* __restrict__ y, const int32_t* __restrict__ ids,
                          const float* __restrict__ weights, int64_t T, int K, int64_t H) {
  const int64_t total = T * H;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = i / H, h = i % H;
    const int32_t* id = ids + t * K;
    int order[kMaxTopK];
    for (int k = 0; k < K; ++k) {  // insertion sort of the row's slots by expert id (distinct ids)
      int j = k;
      while (j > 0 && id[order[j - 1]] > id[k]) {
        order[j] = order[j - 1];
        --j;
      }
      order[j] = k;
    }
    float s = 0.0f;
    for (int k = 0; k < K; ++k) {
      const int64_t slot = t * K + order[k];
      s += weights[slot] * y[slot * H + h];
    }
    acc[i] = s;
  }
}

cudaError_t check_routing(const cpu::MoeRouting& p) {
  if (p.n_experts < 1 || p.n_experts > kMaxExperts || p.top_k < 1 || p.top_k > kMaxTopK || p.top_k > p.n_experts ||
      p.n_group < 1 || p.n_experts % p.n_group != 0 || p.topk_group < 1 || p.topk_group > p.n_group) {
    return cudaErrorInvalidValue;
  }
  return cudaSuccess;
}

cudaError_t launch_route(int32_t* ids, float* weights, const float* logits, int64_t ld, const float* bias, int64_t T,
                         const cpu::MoeRouting& p, cudaStream_t stream) {
  CUDA_TRY(check_routing(p));
  if (T <= 0) return cudaSuccess;
  if (T > 0x7fffffffLL) return cudaErrorInvalidValue;
  const size_t smem = static_cast<size_t>(2 * p.n_experts + 2 * p.n_group) * sizeof(float);
  k_route<<<static_cast<unsigned>(T), kRouteThreads, smem, stream>>>(
      ids, weights, logits, ld, bias, static_cast<int>(p.n_experts), static_cast<int>(p.top_k),
      static_cast<int>(p.n_group), static_cast<int>(p.topk_group), p.norm_topk_prob, p.scaling);
  return cudaGetLastError();
}

template <bool UP>
cudaError_t launch_expert(DType dtype, const void* const* mats, const int32_t* counts, const int32_t* lists,
                          const int32_t* active, int E, int64_t cap, int64_t slots_bound, const float* x, int64_t x_div,
                          int64_t N, int64_t Kp, float* out, int64_t ldo, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(ceil_div(N, kExpertWarps)), static_cast<unsigned>(slots_bound));
  if (dtype == DType::Q8_0) {
    k_expert<true, UP><<<grid, kExpertWarps * 32, 0, stream>>>(mats, counts, lists, active, E, cap, x, x_div, N, Kp,
                                                              out, ldo);
  } else if (dtype == DType::BF16) {
    k_expert<false, UP><<<grid, kExpertWarps * 32, 0, stream>>>(mats, counts, lists, active, E, cap, x, x_div, N, Kp,
                                                               out, ldo);
  } else {
    return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

size_t aligned(size_t bytes) { return (bytes + 255) / 256 * 256; }

}  // namespace

cudaError_t moe_route(int32_t* ids, float* weights, const float* logits, int64_t ld, const float* bias, int64_t T,
                      const cpu::MoeRouting& p, cudaStream_t stream) {
  return launch_route(ids, weights, logits, ld, bias, T, p, stream);
}

cudaError_t moe_routed(float* acc, const float* u, int64_t T, const MoeLayerDev& w, const cpu::MoeRouting& p,
                       int64_t H, int64_t I, Scratch& scratch, cudaStream_t stream, MoeRouteOut* route_out) {
  CUDA_TRY(check_routing(p));
  if (T <= 0) return cudaSuccess;
  if (!w.up || !w.down || !w.router || !w.bias || H <= 0 || I <= 0) return cudaErrorInvalidValue;
  const int64_t E = p.n_experts, K = p.top_k, TK = T * K;
  const int64_t KpH = padded_cols(H), KpI = padded_cols(I);
  // Scratch: logits [T, E], ids and weights [T·K], counts [E], active [E + 1], lists [E, T],
  // xu [T, KpH], hd [T·K, KpI], y [T·K, H]; 256-byte aligned parts.
  const size_t b_logits = aligned(T * E * 4), b_ids = aligned(TK * 4), b_w = aligned(TK * 4),
               b_counts = aligned(E * 4), b_active = aligned((E + 1) * 4), b_lists = aligned(E * T * 4),
               b_xu = aligned(T * KpH * 4), b_hd = aligned(TK * KpI * 4), b_y = aligned(TK * H * 4);
  void* base = nullptr;
  CUDA_TRY(scratch.get(b_logits + b_ids + b_w + b_counts + b_active + b_lists + b_xu + b_hd + b_y, &base, stream));
  char* p0 = static_cast<char*>(base);
  float* logits = reinterpret_cast<float*>(p0);
  p0 += b_logits;
  int32_t* ids = reinterpret_cast<int32_t*>(p0);
  p0 += b_ids;
  float* wts = reinterpret_cast<float*>(p0);
  p0 += b_w;
  int32_t* counts = reinterpret_cast<int32_t*>(p0);
  p0 += b_counts;
  int32_t* active = reinterpret_cast<int32_t*>(p0);
  p0 += b_active;
  int32_t* lists = reinterpret_cast<int32_t*>(p0);
  p0 += b_lists;
  float* xu = reinterpret_cast<float*>(p0);
  p0 += b_xu;
  float* hd = reinterpret_cast<float*>(p0);
  p0 += b_hd;
  float* y = reinterpret_cast<float*>(p0);

  // 1, 2: router and routing.
  const int64_t router_threads = T * E * 32;
  k_router<<<static_cast<unsigned>(ceil_div(router_threads, 256)), 256, 0, stream>>>(logits, E, u, H, w.router, E, H,
                                                                                      T);
  CUDA_TRY(cudaGetLastError());
  CUDA_TRY(launch_route(ids, wts, logits, E, w.bias, T, p, stream));
  // 3: slots by expert.
  k_group<<<1, 1024, 0, stream>>>(counts, lists, active, ids, TK, T, static_cast<int>(E));
  CUDA_TRY(cudaGetLastError());
  // 4: up projections of the chosen experts, relu² into the permuted down input (pads stay zero).
  k_permute<<<grid_for(T * KpH, 256), 256, 0, stream>>>(xu, u, H, T, H, KpH);
  CUDA_TRY(cudaGetLastError());
  if (KpI != I) CUDA_TRY(cudaMemsetAsync(hd, 0, static_cast<size_t>(TK * KpI) * 4, stream));
  const int64_t bound = E < TK ? E : TK;  // at most this many experts are active
  CUDA_TRY(launch_expert<true>(w.up_dtype, w.up, counts, lists, active, static_cast<int>(E), T, bound, xu, K, I, KpH,
                               hd, KpI, stream));
  // 5: down projections, by slot.
  CUDA_TRY(launch_expert<false>(w.down_dtype, w.down, counts, lists, active, static_cast<int>(E), T, bound, hd, 1, H,
                                KpI, y, H, stream));
  // 6: the weighted sum in ascending expert order.
  k_combine<<<grid_for(T * H, 256), 256, 0, stream>>>(acc, y, ids, wts, T, static_cast<int>(K), H);
  CUDA_TRY(cudaGetLastError());
  if (route_out) {
    route_out->ids = ids;
    route_out->weights = wts;
    route_out->logits = logits;
  }
  return cudaSuccess;
}

}  // namespace nemo::cuda
