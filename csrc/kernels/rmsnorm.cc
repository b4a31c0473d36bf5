// RMSNorm and the Mamba-2 gated grouped RMSNorm (architecture.md §3.1, §3.2).
#include <cmath>

#include "kernels/kernels.h"
#include "kernels/math.h"

namespace nemo::cpu {

void rmsnorm(float* y, const float* x, const float* w, int64_t T, int64_t C, float eps) {
  for (int64_t t = 0; t < T; ++t) {
    const float* xr = x + t * C;
    float* yr = y + t * C;
    double ss = 0.0;  // double: C can be 5120 and the sum must not lose the small terms
    for (int64_t c = 0; c < C; ++c) ss += static_cast<double>(xr[c]) * xr[c];
    const float inv = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(C) + eps));
    for (int64_t c = 0; c < C; ++c) yr[c] = w[c] * (xr[c] * inv);
  }
}

void rmsnorm_gated_grouped(float* out, const float* y, const float* z, int64_t ldz, const float* w,
                           int64_t T, int64_t C, int64_t group_size, float eps) {
  for (int64_t t = 0; t < T; ++t) {
    const float* yr = y + t * C;
    const float* zr = z + t * ldz;
    float* orow = out + t * C;
    // Gate first (norm_before_gate = false): v = y * silu(z).
    for (int64_t c = 0; c < C; ++c) orow[c] = yr[c] * silu(zr[c]);
    for (int64_t g0 = 0; g0 < C; g0 += group_size) {
      double ss = 0.0;
      for (int64_t c = g0; c < g0 + group_size; ++c) ss += static_cast<double>(orow[c]) * orow[c];
      const float inv =
          static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(group_size) + eps));
      for (int64_t c = g0; c < g0 + group_size; ++c) orow[c] = w[c] * (orow[c] * inv);
    }
  }
}

}  // namespace nemo::cpu
