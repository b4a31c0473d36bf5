// Causal grouped-query attention without position encoding over the paged KV pool (csrc/kernels/
// attention_gqa.cc; same KvBlocks layout: position p of a sequence is row p % block_tokens of block
// table[p / block_tokens], K and V in separate storage, F16 / BF16 / F32). f32 arithmetic, online
// softmax: memory does not grow with the context.
//
// Prompts (more than 8 query rows per kv head): a tiled, flash-style kernel. The query rows of a kv
// head are the (position t, group head g) pairs of its G = Hq/Hkv query heads, flattened; a CTA takes 64
// of them (scaled by 1/sqrt(Dh) once, in shared memory) and walks the keys up to its last row's position
// in tiles of 32 (K and V converted to f32 in shared memory once for all 64 rows): scores by 2×4
// register tiles, one online-softmax rescale per tile, then P·V accumulated by 4×8 register tiles.
// Decode (T·G <= 8 rows, e.g. one token of a 40/8-head model): flash-decoding. The context is split
// over up to 64 CTAs per kv head (4 warps each, a warp one key at a time: lanes hold Dh/32 dimensions,
// the scores are warp sums, every row of the group shares the K/V row it loaded), each writes
// (max, sum, accumulator) per row, and a second kernel merges the splits in order.
#include <algorithm>
#include <cmath>

#include "cuda/common.cuh"
#include "cuda/kernels_cuda.h"

namespace nemo::cuda {
namespace {

constexpr int kRows = 64, kKeys = 32, kTileThreads = 256, kMaxDh = 128;
constexpr int kDecRows = 8, kDecWarps = 4, kMaxSplits = 64;

template <typename KT>
__global__ void k_kv_store(KT* __restrict__ k, KT* __restrict__ v, const int32_t* __restrict__ table, int64_t bt,
                           int64_t bs, int64_t pos, const float* __restrict__ kr, const float* __restrict__ vr,
                           int64_t ld, int64_t T, int64_t kv_dim) {
  const int64_t total = T * kv_dim;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = i / kv_dim, e = i % kv_dim, p = pos + t;
    const int64_t off = static_cast<int64_t>(table[p / bt]) * bs + (p % bt) * kv_dim + e;
    k[off] = from_f32<KT>(kr[t * ld + e]);
    v[off] = from_f32<KT>(vr[t * ld + e]);
  }
}

struct AttnArgs {
  float* out;
  const float* q;
  int64_t ldq;
  const void* k;
  const void* v;
  const int32_t* table;
  int64_t bt, bs, kv_dim, past, T, Hq, Hkv, Dh;
  float scale;
};

// grid (ceil(T·G / 64), Hkv), block 256.
// dynamic smem: Qs [64][Dh+1], Ks [32][Dh+1], Vs [32][Dh], Ps [64][33], m/l/c [64] each.
template <typename KT>
__global__ void __launch_bounds__(kTileThreads) k_attn_tile(AttnArgs a) {
  extern __shared__ float sm[];
  const int64_t Dh = a.Dh, G = a.Hq / a.Hkv, h = blockIdx.y, r0 = blockIdx.x * static_cast<int64_t>(kRows);
  const int64_t DQ = Dh + 1;
  float* Qs = sm;
  float* Ks = Qs + kRows * DQ;
  float* Vs = Ks + kKeys * DQ;
  float* Ps = Vs + kKeys * Dh;
  float* m_s = Ps + kRows * 33;
  float* l_s = m_s + kRows;
  float* c_s = l_s + kRows;
  const KT* K = static_cast<const KT*>(a.k);
  const KT* V = static_cast<const KT*>(a.v);
  const int tid = threadIdx.x;

  for (int64_t e = tid; e < kRows * Dh; e += kTileThreads) {
    const int64_t r = e / Dh, d = e % Dh, rr = r0 + r, t = rr / G, gi = rr % G;
    Qs[r * DQ + d] = t < a.T ? a.q[t * a.ldq + (h * G + gi) * Dh + d] * a.scale : 0.0f;
  }
  if (tid < kRows) {
    m_s[tid] = -INFINITY;
    l_s[tid] = 0.0f;
  }
  const int64_t last_row = min(r0 + kRows - 1, a.T * G - 1);
  const int64_t kmax = a.past + last_row / G;  // the furthest key any row here sees

  float acc[4][8];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 8; ++j) acc[i][j] = 0.0f;

  const int rg = tid >> 3, kg = tid & 7;          // scores: rows 2rg, 2rg+1; keys kg + 8i
  const int srow = tid >> 2, spart = tid & 3;     // softmax: one row, 8 keys
  const int prow = (tid >> 4) * 4, pd = tid & 15; // P·V: rows prow..+3, dims pd + 16b

  for (int64_t k0 = 0; k0 <= kmax; k0 += kKeys) {
    __syncthreads();
    for (int64_t e = tid; e < kKeys * Dh; e += kTileThreads) {
      const int64_t kk = e / Dh, d = e % Dh, kp = k0 + kk;
      float kvk = 0.0f, kvv = 0.0f;
      if (kp <= kmax) {
        const int64_t off = static_cast<int64_t>(a.table[kp / a.bt]) * a.bs + (kp % a.bt) * a.kv_dim + h * Dh + d;
        kvk = to_f32<KT>(K[off]);
        kvv = to_f32<KT>(V[off]);
      }
      Ks[kk * DQ + d] = kvk;
      Vs[kk * Dh + d] = kvv;
    }
    __syncthreads();
    {
      float s[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};
      const float* q0 = Qs + (2 * rg) * DQ;
      const float* q1 = q0 + DQ;
      for (int64_t d = 0; d < Dh; ++d) {
        const float a0 = q0[d], a1 = q1[d];
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const float kv = Ks[(kg + 8 * i) * DQ + d];
          s[0][i] += a0 * kv;
          s[1][i] += a1 * kv;
        }
      }
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const int64_t row = 2 * rg + r, t = (r0 + row) / G;
        const int64_t qpos = a.past + t;
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const int64_t kp = k0 + kg + 8 * i;
          Ps[row * 33 + kg + 8 * i] = t < a.T && kp <= qpos ? s[r][i] : -INFINITY;
        }
      }
    }
    __syncthreads();
    {
      float mx = -INFINITY;
#pragma unroll
      for (int j = 0; j < 8; ++j) mx = fmaxf(mx, Ps[srow * 33 + spart * 8 + j]);
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      const float m_old = m_s[srow];
      const float m_new = fmaxf(m_old, mx);
      float c = 1.0f, sum = 0.0f;
      if (m_new != -INFINITY) {
        c = expf(m_old - m_new);
#pragma unroll
        for (int j = 0; j < 8; ++j) {
          const float p = expf(Ps[srow * 33 + spart * 8 + j] - m_new);
          Ps[srow * 33 + spart * 8 + j] = p;
          sum += p;
        }
      } else {
#pragma unroll
        for (int j = 0; j < 8; ++j) Ps[srow * 33 + spart * 8 + j] = 0.0f;
      }
      sum += __shfl_xor_sync(0xffffffffu, sum, 1);
      sum += __shfl_xor_sync(0xffffffffu, sum, 2);
      __syncwarp();
      if (spart == 0) {
        m_s[srow] = m_new;
        l_s[srow] = l_s[srow] * c + sum;
        c_s[srow] = c;
      }
    }
    __syncthreads();
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float cf = c_s[prow + i];
#pragma unroll
      for (int b = 0; b < 8; ++b) acc[i][b] *= cf;
    }
    for (int j = 0; j < kKeys; ++j) {
      float vv[8];
#pragma unroll
      for (int b = 0; b < 8; ++b) vv[b] = pd + 16 * b < Dh ? Vs[j * Dh + pd + 16 * b] : 0.0f;
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const float p = Ps[(prow + i) * 33 + j];
#pragma unroll
        for (int b = 0; b < 8; ++b) acc[i][b] += p * vv[b];
      }
    }
  }
  __syncthreads();
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int64_t rr = r0 + prow + i, t = rr / G, gi = rr % G;
    if (t >= a.T) continue;
    const float inv = 1.0f / l_s[prow + i];
    float* o = a.out + t * a.Hq * Dh + (h * G + gi) * Dh;
#pragma unroll
    for (int b = 0; b < 8; ++b) {
      const int64_t d = pd + 16 * b;
      if (d < Dh) o[d] = acc[i][b] * inv;
    }
  }
}

// grid (Hkv, n_splits), block 128. part: [Hkv][n_splits][R][Dh + 2] = (m, l, acc[Dh]).
template <typename KT, int DPL>
__global__ void __launch_bounds__(kDecWarps * 32) k_attn_decode(AttnArgs a, float* __restrict__ part, int n_splits) {
  __shared__ float sm_m[kDecWarps][kDecRows], sm_l[kDecWarps][kDecRows];
  __shared__ float sm_acc[kDecWarps][kDecRows][DPL * 32];
  const int64_t Dh = a.Dh, G = a.Hq / a.Hkv, h = blockIdx.x, split = blockIdx.y;
  const int R = static_cast<int>(a.T * G);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t S_tot = a.past + a.T, per = (S_tot + n_splits - 1) / n_splits;
  const int64_t k_begin = split * per, k_end = min(S_tot, k_begin + per);
  const KT* K = static_cast<const KT*>(a.k);
  const KT* V = static_cast<const KT*>(a.v);

  float qv[kDecRows][DPL], acc[kDecRows][DPL], m[kDecRows], l[kDecRows];
#pragma unroll
  for (int r = 0; r < kDecRows; ++r) {
    m[r] = -INFINITY;
    l[r] = 0.0f;
    const int64_t t = r / G, gi = r % G;
#pragma unroll
    for (int i = 0; i < DPL; ++i) {
      const int64_t d = lane + 32 * i;
      acc[r][i] = 0.0f;
      qv[r][i] = r < R && d < Dh ? a.q[t * a.ldq + (h * G + gi) * Dh + d] * a.scale : 0.0f;
    }
  }
  for (int64_t kp = k_begin + warp; kp < k_end; kp += kDecWarps) {
    const int64_t off = static_cast<int64_t>(a.table[kp / a.bt]) * a.bs + (kp % a.bt) * a.kv_dim + h * Dh;
    float kv[DPL], vv[DPL];
#pragma unroll
    for (int i = 0; i < DPL; ++i) {
      const int64_t d = lane + 32 * i;
      kv[i] = d < Dh ? to_f32<KT>(K[off + d]) : 0.0f;
      vv[i] = d < Dh ? to_f32<KT>(V[off + d]) : 0.0f;
    }
#pragma unroll
    for (int r = 0; r < kDecRows; ++r) {
      if (r >= R) break;
      float dot = 0.0f;
#pragma unroll
      for (int i = 0; i < DPL; ++i) dot += qv[r][i] * kv[i];
      dot = warp_sum(dot);
      if (kp > a.past + r / G) continue;  // causal: row r sits at position past + r / G
      const float m_new = fmaxf(m[r], dot);
      const float c = expf(m[r] - m_new), p = expf(dot - m_new);
      l[r] = l[r] * c + p;
#pragma unroll
      for (int i = 0; i < DPL; ++i) acc[r][i] = acc[r][i] * c + p * vv[i];
      m[r] = m_new;
    }
  }
#pragma unroll
  for (int r = 0; r < kDecRows; ++r) {
    if (lane == 0) {
      sm_m[warp][r] = m[r];
      sm_l[warp][r] = l[r];
    }
#pragma unroll
    for (int i = 0; i < DPL; ++i) sm_acc[warp][r][lane + 32 * i] = acc[r][i];
  }
  __syncthreads();
  // Merge the 4 warps in order; one thread per (row, dim).
  for (int64_t e = threadIdx.x; e < static_cast<int64_t>(R) * (Dh + 2); e += blockDim.x) {
    const int r = static_cast<int>(e / (Dh + 2));
    const int64_t col = e % (Dh + 2);
    float M = -INFINITY;
#pragma unroll
    for (int w = 0; w < kDecWarps; ++w) M = fmaxf(M, sm_m[w][r]);
    float val;
    if (col == 0) {
      val = M;
    } else {
      val = 0.0f;
      if (M != -INFINITY) {
#pragma unroll
        for (int w = 0; w < kDecWarps; ++w) {
          if (sm_m[w][r] == -INFINITY) continue;
          const float f = expf(sm_m[w][r] - M);
          val += (col == 1 ? sm_l[w][r] : sm_acc[w][r][col - 2]) * f;
        }
      }
    }
    part[((h * n_splits + split) * R + r) * (Dh + 2) + col] = val;
  }
}

// grid (Hkv, R), block 128: out row = Σ_s acc_s·e^{m_s - M} / Σ_s l_s·e^{m_s - M}, splits in order.
__global__ void k_attn_merge(AttnArgs a, const float* __restrict__ part, int n_splits) {
  const int64_t Dh = a.Dh, G = a.Hq / a.Hkv, h = blockIdx.x, r = blockIdx.y;
  const int64_t R = a.T * G, t = r / G, gi = r % G;
  float M = -INFINITY;
  for (int s = 0; s < n_splits; ++s) M = fmaxf(M, part[((h * n_splits + s) * R + r) * (Dh + 2)]);
  for (int64_t d = threadIdx.x; d < Dh; d += blockDim.x) {
    float L = 0.0f, A = 0.0f;
    for (int s = 0; s < n_splits; ++s) {
      const float* ps = part + ((h * n_splits + s) * R + r) * (Dh + 2);
      if (ps[0] == -INFINITY) continue;
      const float f = expf(ps[0] - M);
      L += ps[1] * f;
      A += ps[2 + d] * f;
    }
    a.out[t * a.Hq * Dh + (h * G + gi) * Dh + d] = A / L;
  }
}

template <typename KT>
cudaError_t attention_typed(const AttnArgs& a, Scratch& scratch, cudaStream_t stream) {
  const int64_t G = a.Hq / a.Hkv, R = a.T * G;
  if (R <= kDecRows) {
    const int64_t S_tot = a.past + a.T;
    const int n_splits = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(kMaxSplits, ceil_div(S_tot, 128))));
    void* buf = nullptr;
    CUDA_TRY(scratch.get(static_cast<size_t>(a.Hkv * n_splits * R * (a.Dh + 2)) * sizeof(float), &buf, stream));
    float* part = static_cast<float*>(buf);
    const dim3 grid(static_cast<unsigned>(a.Hkv), static_cast<unsigned>(n_splits));
    if (a.Dh <= 32) {
      k_attn_decode<KT, 1><<<grid, kDecWarps * 32, 0, stream>>>(a, part, n_splits);
    } else if (a.Dh <= 64) {
      k_attn_decode<KT, 2><<<grid, kDecWarps * 32, 0, stream>>>(a, part, n_splits);
    } else {
      k_attn_decode<KT, 4><<<grid, kDecWarps * 32, 0, stream>>>(a, part, n_splits);
    }
    CUDA_TRY(cudaGetLastError());
    k_attn_merge<<<dim3(static_cast<unsigned>(a.Hkv), static_cast<unsigned>(R)), 128, 0, stream>>>(a, part, n_splits);
    return cudaGetLastError();
  }
  const size_t smem = static_cast<size_t>(kRows * (a.Dh + 1) + kKeys * (a.Dh + 1) + kKeys * a.Dh + kRows * 33 + 3 * kRows) *
                      sizeof(float);
  auto kernel = k_attn_tile<KT>;
  CUDA_TRY(allow_smem(kernel, smem));
  const dim3 grid(static_cast<unsigned>(ceil_div(R, kRows)), static_cast<unsigned>(a.Hkv));
  kernel<<<grid, kTileThreads, smem, stream>>>(a);
  return cudaGetLastError();
}

}  // namespace

cudaError_t kv_store(const KvBlocks& kv, int64_t pos, const float* k_rows, const float* v_rows, int64_t ld,
                     int64_t T, int64_t kv_dim, cudaStream_t stream) {
  if (T <= 0 || kv_dim <= 0) return cudaSuccess;
  const unsigned grid = grid_for(T * kv_dim, 256);
  switch (kv.dtype) {
    case DType::F32:
      k_kv_store<float><<<grid, 256, 0, stream>>>(static_cast<float*>(kv.k), static_cast<float*>(kv.v), kv.table,
                                                  kv.block_tokens, kv.block_stride, pos, k_rows, v_rows, ld, T, kv_dim);
      break;
    case DType::F16:
      k_kv_store<__half><<<grid, 256, 0, stream>>>(static_cast<__half*>(kv.k), static_cast<__half*>(kv.v), kv.table,
                                                   kv.block_tokens, kv.block_stride, pos, k_rows, v_rows, ld, T, kv_dim);
      break;
    case DType::BF16:
      k_kv_store<__nv_bfloat16><<<grid, 256, 0, stream>>>(static_cast<__nv_bfloat16*>(kv.k),
                                                          static_cast<__nv_bfloat16*>(kv.v), kv.table, kv.block_tokens,
                                                          kv.block_stride, pos, k_rows, v_rows, ld, T, kv_dim);
      break;
    default:
      return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

cudaError_t attention_gqa(float* out, const float* q, int64_t ldq, const KvBlocks& kv, int64_t past, int64_t T,
                          int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, Scratch& scratch,
                          cudaStream_t stream) {
  if (T <= 0) return cudaSuccess;
  if (n_kv_heads <= 0 || n_heads % n_kv_heads != 0 || head_dim <= 0 || head_dim > kMaxDh) return cudaErrorInvalidValue;
  const AttnArgs a{out, q, ldq, kv.k, kv.v, kv.table, kv.block_tokens, kv.block_stride, n_kv_heads * head_dim, past, T,
                   n_heads, n_kv_heads, head_dim, 1.0f / std::sqrt(static_cast<float>(head_dim))};
  switch (kv.dtype) {
    case DType::F32: return attention_typed<float>(a, scratch, stream);
    case DType::F16: return attention_typed<__half>(a, scratch, stream);
    case DType::BF16: return attention_typed<__nv_bfloat16>(a, scratch, stream);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace nemo::cuda
