// Mamba-2 selective state update for one token (decode; csrc/kernels/ssm_state_update.cc,
// architecture.md §5.3), state in f32. One warp per (head, p) row of the state: lanes stride over the
// N state columns (coalesced 128-byte rows), update S[p, n] = S·dA + x·dt·B[n] in place, and the warp
// reduces y[p] = Σ_n S[p, n]·C[n] by a fixed shuffle tree; + D·x. 8 rows per CTA.
#include "cuda/common.cuh"
#include "cuda/kernels_cuda.h"

namespace nemo::cuda {
namespace {

constexpr int kRowsPerBlock = 8;

__global__ void __launch_bounds__(kRowsPerBlock * 32)
    k_ssm_update(float* __restrict__ y, const float* __restrict__ x, const float* __restrict__ dt_raw,
                 const float* __restrict__ B, const float* __restrict__ C, float* __restrict__ state,
                 SsmParams p) {
  const int64_t h = blockIdx.x, pp = blockIdx.y * kRowsPerBlock + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  const int64_t P = p.head_dim, N = p.state_size;
  if (pp >= P) return;
  const int64_t g = h / (p.n_heads / p.n_groups);
  const float dt = clamp_f(softplus_f(dt_raw[h] + p.dt_bias[h]), p.dt_min, p.dt_max);
  const float dA = expf(dt * p.A[h]);
  const float xv = x[h * P + pp];
  const float xdt = xv * dt;
  const float* bg = B + g * N;
  const float* cg = C + g * N;
  float* S = state + (h * P + pp) * N;
  float acc = 0.0f;
  for (int64_t n = lane; n < N; n += 32) {
    const float s = S[n] * dA + xdt * bg[n];
    S[n] = s;
    acc += s * cg[n];
  }
  acc = warp_sum(acc);
  if (lane == 0) y[h * P + pp] = acc + p.D[h] * xv;
}

}  // namespace

cudaError_t ssm_state_update(float* y, const float* x, const float* dt_raw, const float* B, const float* C,
                             float* state, const SsmParams& p, cudaStream_t stream) {
  if (p.n_heads <= 0 || p.head_dim <= 0) return cudaSuccess;
  if (p.n_groups <= 0 || p.n_heads % p.n_groups != 0) return cudaErrorInvalidValue;
  const dim3 grid(static_cast<unsigned>(p.n_heads), static_cast<unsigned>(ceil_div(p.head_dim, kRowsPerBlock)));
  k_ssm_update<<<grid, kRowsPerBlock * 32, 0, stream>>>(y, x, dt_raw, B, C, state, p);
  return cudaGetLastError();
}

}  // namespace nemo::cuda
