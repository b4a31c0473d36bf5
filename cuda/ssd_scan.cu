// Mamba-2 chunked SSD scan for prompts (csrc/kernels/ssd_scan.cc, architecture.md §5.2), f32
// throughout, state f32. Four kernels per call, Q = min(chunk_size, T) tokens per chunk:
//   1. dt:     dt[h, t] = clamp(softplus(dt_raw + dt_bias)), Acs = per-chunk inclusive cumsum of dt·A
//              (one thread per (head, chunk), sequential like the CPU).
//   2. cb:     CB[g, chunk] = C·Bᵀ (lower triangle), once per group and chunk (shared by the H/G heads
//              of a group), 32×32 output tiles over 32-wide slices of N in shared memory.
//   3. states: the state passing, one CTA per (head, 16 rows of P) holding its [16, N] slice of the
//              state in shared memory: for each chunk in order, store the entering state S_in(c), then
//              S = exp(Acs[L-1])·S + Σ_j exp(Acs[L-1]-Acs[j])·dt[j]·x[j] ⊗ B[j] (x and B staged 32
//              tokens at a time); the final state goes back to `state`.
//   4. out:    y for one (chunk, head, 32 tokens) per CTA: exp(Acs[i])·(C[i]·S_in(c)) (state tiles of
//              32 columns of N) + Σ_{j<=i} CB[i,j]·exp(Acs[i]-Acs[j])·dt[j]·x[j] + D·x[i].
// Every output and state element is accumulated in the CPU kernel's order (over n, then over j
// ascending), so the two differ only by FMA contraction and expf.
#include <algorithm>

#include "cuda/common.cuh"
#include "cuda/kernels_cuda.h"

namespace nemo::cuda {
namespace {

constexpr int kPT = 16;  // state rows (of P) per CTA of the state pass

__global__ void k_ssd_dt(float* __restrict__ dt, float* __restrict__ acs, const float* __restrict__ dt_raw,
                         int64_t lddt, SsmParams p, int64_t T, int64_t Q, int64_t nc) {
  const int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (idx >= p.n_heads * nc) return;
  const int64_t h = idx / nc, c = idx % nc, t0 = c * Q, L = min(Q, T - t0);
  const float A = p.A[h], bias = p.dt_bias[h];
  float run = 0.0f;
  for (int64_t i = 0; i < L; ++i) {
    const float d = clamp_f(softplus_f(dt_raw[(t0 + i) * lddt + h] + bias), p.dt_min, p.dt_max);
    run += d * A;
    dt[h * T + t0 + i] = d;
    acs[h * T + t0 + i] = run;
  }
}

// grid (j tiles, i tiles, G * nc), block (32, 8).
__global__ void __launch_bounds__(256) k_ssd_cb(float* __restrict__ cb, const float* __restrict__ B,
                                                const float* __restrict__ C, int64_t ldbc, int64_t T, int64_t N,
                                                int64_t Q, int64_t nc) {
  const int jt = blockIdx.x, it = blockIdx.y;
  if (jt > it) return;  // strictly above the diagonal: never read
  const int64_t g = blockIdx.z / nc, c = blockIdx.z % nc, t0 = c * Q, L = min(Q, T - t0);
  __shared__ float Cs[32][33], Bs[32][33];
  const int tx = threadIdx.x, ty = threadIdx.y, tid = ty * 32 + tx;
  float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  for (int64_t n0 = 0; n0 < N; n0 += 32) {
    for (int e = tid; e < 32 * 32; e += 256) {
      const int r = e >> 5, nn = e & 31;
      const int64_t i = it * 32 + r, j = jt * 32 + r, n = n0 + nn;
      Cs[r][nn] = i < L && n < N ? C[(t0 + i) * ldbc + g * N + n] : 0.0f;
      Bs[r][nn] = j < L && n < N ? B[(t0 + j) * ldbc + g * N + n] : 0.0f;
    }
    __syncthreads();
    const int nn_end = static_cast<int>(min(int64_t{32}, N - n0));
    for (int nn = 0; nn < nn_end; ++nn) {
      const float b = Bs[tx][nn];
#pragma unroll
      for (int r = 0; r < 4; ++r) acc[r] += Cs[ty + 8 * r][nn] * b;
    }
    __syncthreads();
  }
  const int64_t j = jt * 32 + tx;
#pragma unroll
  for (int r = 0; r < 4; ++r) {
    const int64_t i = it * 32 + ty + 8 * r;
    if (i < L && j <= i) cb[((g * nc + c) * Q + i) * Q + j] = acc[r];
  }
}

// grid (H, ceil(P / kPT)), block 256; dynamic smem: S [kPT][N], wend [Q], xs [32][kPT], Bs [32][N].
__global__ void __launch_bounds__(256) k_ssd_states(float* __restrict__ sin, float* __restrict__ state,
                                                    const float* __restrict__ x, int64_t ldx,
                                                    const float* __restrict__ B, int64_t ldbc,
                                                    const float* __restrict__ dt, const float* __restrict__ acs,
                                                    SsmParams p, int64_t T, int64_t Q, int64_t nc) {
  extern __shared__ float sm[];
  const int64_t H = p.n_heads, P = p.head_dim, N = p.state_size;
  const int64_t h = blockIdx.x, p0 = blockIdx.y * kPT, g = h / (H / p.n_groups);
  float* Ssh = sm;                 // [kPT][N]
  float* wend = Ssh + kPT * N;     // [Q]
  float* xs = wend + Q;            // [32][kPT]
  float* Bs = xs + 32 * kPT;       // [32][N]
  const int tid = threadIdx.x;
  for (int64_t e = tid; e < kPT * N; e += 256) {
    const int64_t pl = e / N, n = e % N;
    Ssh[e] = p0 + pl < P ? state[(h * P + p0 + pl) * N + n] : 0.0f;
  }
  for (int64_t c = 0; c < nc; ++c) {
    const int64_t t0 = c * Q, L = min(Q, T - t0);
    for (int64_t e = tid; e < kPT * N; e += 256) {  // the state entering chunk c
      const int64_t pl = e / N, n = e % N;
      if (p0 + pl < P) sin[((c * H + h) * P + p0 + pl) * N + n] = Ssh[e];
    }
    const float acs_last = acs[h * T + t0 + L - 1];
    __syncthreads();  // wend / xs / Bs of the previous chunk are no longer read
    for (int64_t j = tid; j < L; j += 256) wend[j] = expf(acs_last - acs[h * T + t0 + j]) * dt[h * T + t0 + j];
    const float decay = expf(acs_last);
    for (int64_t e = tid; e < kPT * N; e += 256) Ssh[e] *= decay;
    for (int64_t j0 = 0; j0 < L; j0 += 32) {
      const int jn = static_cast<int>(min(int64_t{32}, L - j0));
      __syncthreads();
      for (int64_t e = tid; e < 32 * kPT; e += 256) {
        const int64_t jj = e / kPT, pl = e % kPT;
        xs[e] = jj < jn && p0 + pl < P ? x[(t0 + j0 + jj) * ldx + h * P + p0 + pl] : 0.0f;
      }
      for (int64_t e = tid; e < 32 * N; e += 256) {
        const int64_t jj = e / N, n = e % N;
        Bs[e] = jj < jn ? B[(t0 + j0 + jj) * ldbc + g * N + n] : 0.0f;
      }
      __syncthreads();
      for (int64_t e = tid; e < kPT * N; e += 256) {
        const int64_t pl = e / N, n = e % N;
        float s = Ssh[e];
        for (int jj = 0; jj < jn; ++jj) s += (wend[j0 + jj] * xs[jj * kPT + pl]) * Bs[jj * N + n];
        Ssh[e] = s;
      }
    }
  }
  for (int64_t e = tid; e < kPT * N; e += 256) {
    const int64_t pl = e / N, n = e % N;
    if (p0 + pl < P) state[(h * P + p0 + pl) * N + n] = Ssh[e];
  }
}

// grid (ceil(Q / 32), H, nc), block 256 = 32 token rows × 8 lanes over P (p = lane + 8r, r < PR).
// dynamic smem: Cs [32][33], Ss [P][33], xs [32][P], Ms [32][33].
template <int PR>
__global__ void __launch_bounds__(256) k_ssd_out(float* __restrict__ y, const float* __restrict__ x, int64_t ldx,
                                                 const float* __restrict__ C, int64_t ldbc,
                                                 const float* __restrict__ cb, const float* __restrict__ sin,
                                                 const float* __restrict__ dt, const float* __restrict__ acs,
                                                 SsmParams p, int64_t T, int64_t Q, int64_t nc) {
  extern __shared__ float sm[];
  const int64_t H = p.n_heads, P = p.head_dim, N = p.state_size;
  const int64_t it = blockIdx.x, h = blockIdx.y, c = blockIdx.z;
  const int64_t g = h / (H / p.n_groups), t0 = c * Q, L = min(Q, T - t0);
  if (it * 32 >= L) return;
  float* Cs = sm;              // [32][33]
  float* Ss = Cs + 32 * 33;    // [P][33]
  float* xs = Ss + P * 33;     // [32][P]
  float* Ms = xs + 32 * P;     // [32][33]
  const int tid = threadIdx.x, il = tid >> 3, pq = tid & 7;
  const int64_t i = it * 32 + il;
  const bool row_ok = i < L;
  const float acs_i = row_ok ? acs[h * T + t0 + i] : 0.0f;

  // Y_off = exp(Acs[i]) · Σ_n C[i, n] S_in[p, n]
  float yv[PR];
#pragma unroll
  for (int r = 0; r < PR; ++r) yv[r] = 0.0f;
  const float* S = sin + (c * H + h) * P * N;
  for (int64_t n0 = 0; n0 < N; n0 += 32) {
    __syncthreads();
    for (int64_t e = tid; e < 32 * 32; e += 256) {
      const int64_t r = e >> 5, nn = e & 31, ii = it * 32 + r;
      Cs[r * 33 + nn] = ii < L && n0 + nn < N ? C[(t0 + ii) * ldbc + g * N + n0 + nn] : 0.0f;
    }
    for (int64_t e = tid; e < P * 32; e += 256) {
      const int64_t pp = e >> 5, nn = e & 31;
      Ss[pp * 33 + nn] = n0 + nn < N ? S[pp * N + n0 + nn] : 0.0f;
    }
    __syncthreads();
    const int nn_end = static_cast<int>(min(int64_t{32}, N - n0));
    for (int nn = 0; nn < nn_end; ++nn) {
      const float cv = Cs[il * 33 + nn];
#pragma unroll
      for (int r = 0; r < PR; ++r) {
        const int pp = pq + 8 * r;
        if (pp < P) yv[r] += cv * Ss[pp * 33 + nn];
      }
    }
  }
  const float decay = expf(acs_i);
#pragma unroll
  for (int r = 0; r < PR; ++r) yv[r] = decay * yv[r];

  // Y_diag = Σ_{j<=i} CB[i, j] · exp(Acs[i] - Acs[j]) · dt[j] · x[j]
  const int64_t last = min(it * 32 + 31, L - 1);
  const float* cbk = cb + (g * nc + c) * Q * Q;
  for (int64_t j0 = 0; j0 <= last; j0 += 32) {
    __syncthreads();
    for (int64_t e = tid; e < 32 * P; e += 256) {
      const int64_t jj = e / P, pp = e % P;
      xs[e] = j0 + jj < L ? x[(t0 + j0 + jj) * ldx + h * P + pp] : 0.0f;
    }
    for (int64_t e = tid; e < 32 * 32; e += 256) {
      const int64_t r = e >> 5, jj = e & 31, ii = it * 32 + r, j = j0 + jj;
      float m = 0.0f;
      if (ii < L && j <= ii) {
        m = cbk[ii * Q + j] * expf(acs[h * T + t0 + ii] - acs[h * T + t0 + j]) * dt[h * T + t0 + j];
      }
      Ms[r * 33 + jj] = m;
    }
    __syncthreads();
    if (row_ok) {
      const int jn = static_cast<int>(min(int64_t{32}, i - j0 + 1));
      for (int jj = 0; jj < jn; ++jj) {
        const float m = Ms[il * 33 + jj];
#pragma unroll
        for (int r = 0; r < PR; ++r) {
          const int pp = pq + 8 * r;
          if (pp < P) yv[r] += m * xs[jj * P + pp];
        }
      }
    }
  }
  if (!row_ok) return;
  const float Dh = p.D[h];
#pragma unroll
  for (int r = 0; r < PR; ++r) {
    const int pp = pq + 8 * r;
    if (pp < P) {
      const float xi = x[(t0 + i) * ldx + h * P + pp];
      y[(t0 + i) * H * P + h * P + pp] = yv[r] + Dh * xi;
    }
  }
}

template <int PR>
cudaError_t launch_out(float* y, const float* x, int64_t ldx, const float* C, int64_t ldbc, const float* cb,
                       const float* sin, const float* dt, const float* acs, const SsmParams& p, int64_t T,
                       int64_t Q, int64_t nc, cudaStream_t stream) {
  const size_t smem = static_cast<size_t>(32 * 33 * 2 + p.head_dim * 33 + 32 * p.head_dim) * sizeof(float);
  auto kernel = k_ssd_out<PR>;
  CUDA_TRY(allow_smem(kernel, smem));
  const dim3 grid(static_cast<unsigned>(ceil_div(Q, 32)), static_cast<unsigned>(p.n_heads), static_cast<unsigned>(nc));
  kernel<<<grid, 256, smem, stream>>>(y, x, ldx, C, ldbc, cb, sin, dt, acs, p, T, Q, nc);
  return cudaGetLastError();
}

}  // namespace

cudaError_t ssd_chunk_scan(float* y, const float* x, int64_t ldx, const float* dt_raw, int64_t lddt, const float* B,
                           const float* C, int64_t ldbc, float* state, const SsmParams& p, int64_t T,
                           int64_t chunk_size, Scratch& scratch, cudaStream_t stream) {
  const int64_t H = p.n_heads, P = p.head_dim, G = p.n_groups, N = p.state_size;
  if (T <= 0 || H <= 0) return cudaSuccess;
  if (G <= 0 || H % G != 0 || P > 128) return cudaErrorInvalidValue;
  const int64_t Q = std::max<int64_t>(1, std::min(chunk_size, T)), nc = ceil_div(T, Q);
  // Scratch: dt [H][T], acs [H][T], CB [G][nc][Q][Q], S_in [nc][H][P][N].
  const size_t n_dt = static_cast<size_t>(H * T), n_cb = static_cast<size_t>(G * nc * Q * Q);
  const size_t n_sin = static_cast<size_t>(nc * H * P * N);
  void* buf = nullptr;
  CUDA_TRY(scratch.get((2 * n_dt + n_cb + n_sin) * sizeof(float), &buf, stream));
  float* dt = static_cast<float*>(buf);
  float* acs = dt + n_dt;
  float* cb = acs + n_dt;
  float* sin = cb + n_cb;

  k_ssd_dt<<<static_cast<unsigned>(ceil_div(H * nc, 128)), 128, 0, stream>>>(dt, acs, dt_raw, lddt, p, T, Q, nc);
  CUDA_TRY(cudaGetLastError());
  {
    const dim3 grid(static_cast<unsigned>(ceil_div(Q, 32)), static_cast<unsigned>(ceil_div(Q, 32)),
                    static_cast<unsigned>(G * nc));
    k_ssd_cb<<<grid, dim3(32, 8), 0, stream>>>(cb, B, C, ldbc, T, N, Q, nc);
    CUDA_TRY(cudaGetLastError());
  }
  {
    const size_t smem = static_cast<size_t>(kPT * N + Q + 32 * kPT + 32 * N) * sizeof(float);
    CUDA_TRY(allow_smem(k_ssd_states, smem));
    const dim3 grid(static_cast<unsigned>(H), static_cast<unsigned>(ceil_div(P, kPT)));
    k_ssd_states<<<grid, 256, smem, stream>>>(sin, state, x, ldx, B, ldbc, dt, acs, p, T, Q, nc);
    CUDA_TRY(cudaGetLastError());
  }
  if (P <= 8) return launch_out<1>(y, x, ldx, C, ldbc, cb, sin, dt, acs, p, T, Q, nc, stream);
  if (P <= 16) return launch_out<2>(y, x, ldx, C, ldbc, cb, sin, dt, acs, p, T, Q, nc, stream);
  if (P <= 32) return launch_out<4>(y, x, ldx, C, ldbc, cb, sin, dt, acs, p, T, Q, nc, stream);
  if (P <= 64) return launch_out<8>(y, x, ldx, C, ldbc, cb, sin, dt, acs, p, T, Q, nc, stream);
  return launch_out<16>(y, x, ldx, C, ldbc, cb, sin, dt, acs, p, T, Q, nc, stream);
}

}  // namespace nemo::cuda
