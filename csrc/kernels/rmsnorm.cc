// RMSNorm and the Mamba-2 gated grouped RMSNorm (docs/architecture.md §3.1, §3.2).
//
// Sums of squares are accumulated in double (C can be 5120 and the sum must not lose the small terms),
// 8 lanes at a time and the lanes added in a fixed order; the gate's SiLU uses the vectorisable exp of
// math.h. Bodies are compiled per instruction set and chosen by kernel_isa() (tests force each path).
#include <cmath>
#include <cstring>

#include "core/cpu_features.h"
#include "kernels/kernels.h"
#include "kernels/math.h"

namespace nemo::cpu {
namespace {

typedef float f32x8 __attribute__((vector_size(32)));
typedef double f64x8 __attribute__((vector_size(64)));

// Σ v[i]² over n values, in double.
__attribute__((always_inline)) inline double sum_squares(const float* v, int64_t n) {
  f64x8 acc = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    f32x8 f;
    std::memcpy(&f, v + i, sizeof(f));
    const f64x8 d = __builtin_convertvector(f, f64x8);
    acc += d * d;
  }
  double ss = 0.0;
  for (int j = 0; j < 8; ++j) ss += acc[j];
  for (; i < n; ++i) ss += static_cast<double>(v[i]) * v[i];
  return ss;
}

__attribute__((always_inline)) inline void rmsnorm_body(float* y, const float* x, const float* w,
                                                        int64_t T, int64_t C, float eps) {
  for (int64_t t = 0; t < T; ++t) {
    const float* xr = x + t * C;
    float* yr = y + t * C;
    const float inv =
        static_cast<float>(1.0 / std::sqrt(sum_squares(xr, C) / static_cast<double>(C) + eps));
    for (int64_t c = 0; c < C; ++c) yr[c] = w[c] * (xr[c] * inv);
  }
}

__attribute__((always_inline)) inline void gated_body(float* out, const float* y, const float* z,
                                                      int64_t ldz, const float* w, int64_t T,
                                                      int64_t C, int64_t group_size, float eps) {
  for (int64_t t = 0; t < T; ++t) {
    const float* yr = y + t * C;
    const float* zr = z + t * ldz;
    float* orow = out + t * C;
    // Gate first (norm_before_gate = false): v = y * silu(z).
    for (int64_t c = 0; c < C; ++c) orow[c] = yr[c] * silu_fast(zr[c]);
    for (int64_t g0 = 0; g0 < C; g0 += group_size) {
      const double ss = sum_squares(orow + g0, group_size);
      const float inv =
          static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(group_size) + eps));
      for (int64_t c = g0; c < g0 + group_size; ++c) orow[c] = w[c] * (orow[c] * inv);
    }
  }
}

#define NEMO_NORM_PATHS(suffix, attr)                                                             \
  attr void rmsnorm_##suffix(float* y, const float* x, const float* w, int64_t T, int64_t C,     \
                             float eps) {                                                         \
    rmsnorm_body(y, x, w, T, C, eps);                                                             \
  }                                                                                               \
  attr void gated_##suffix(float* out, const float* y, const float* z, int64_t ldz, const float* w, \
                           int64_t T, int64_t C, int64_t group_size, float eps) {                 \
    gated_body(out, y, z, ldz, w, T, C, group_size, eps);                                         \
  }

NEMO_NORM_PATHS(scalar, )
#if defined(__x86_64__)
NEMO_NORM_PATHS(avx2, __attribute__((target("avx2,fma"))))
NEMO_NORM_PATHS(avx512, __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma"))))
#endif
#undef NEMO_NORM_PATHS

}  // namespace

void rmsnorm(float* y, const float* x, const float* w, int64_t T, int64_t C, float eps) {
#if defined(__x86_64__)
  if (kernel_isa() == KernelIsa::kAvx512) return rmsnorm_avx512(y, x, w, T, C, eps);
  if (kernel_isa() == KernelIsa::kAvx2) return rmsnorm_avx2(y, x, w, T, C, eps);
#endif
  rmsnorm_scalar(y, x, w, T, C, eps);
}

void rmsnorm_gated_grouped(float* out, const float* y, const float* z, int64_t ldz, const float* w,
                           int64_t T, int64_t C, int64_t group_size, float eps) {
#if defined(__x86_64__)
  if (kernel_isa() == KernelIsa::kAvx512) return gated_avx512(out, y, z, ldz, w, T, C, group_size, eps);
  if (kernel_isa() == KernelIsa::kAvx2) return gated_avx2(out, y, z, ldz, w, T, C, group_size, eps);
#endif
  gated_scalar(out, y, z, ldz, w, T, C, group_size, eps);
}

}  // namespace nemo::cpu
