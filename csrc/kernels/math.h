// Scalar activation functions shared by the CPU kernels.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

namespace nemo::cpu {

inline float silu(float x) { return x / (1.0f + std::exp(-x)); }

// softplus as the Mamba kernels compute it: linear above 20, where log1p(exp(x)) == x in f32.
inline float softplus(float x) { return x > 20.0f ? x : std::log1p(std::exp(x)); }

inline float clampf(float x, float lo, float hi) { return x < lo ? lo : (x > hi ? hi : x); }

// exp(x) for the softmax (x <= 0 in practice), branch-free so loops over it vectorise:
// x·log2(e) = n + f with n an integer (rounded to nearest via the 1.5·2^23 trick) and |f| <= 1/2,
// 2^f by its Taylor polynomial of degree 6 (truncation error < 1.3e-7 relative on |f| <= 1/2), and
// 2^n put straight into the exponent bits. Inputs below -87 give ~0 instead of a subnormal.
inline float softmax_exp(float x) {
  x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  const float t = x * 1.44269504088896341f;
  const float r = (t + 12582912.0f) - 12582912.0f;  // round to nearest integer
  const float f = t - r;
  float p = 1.5403530393381609e-4f;
  p = p * f + 1.3333558146428443e-3f;
  p = p * f + 9.6181291076284772e-3f;
  p = p * f + 5.5504108664821580e-2f;
  p = p * f + 2.4022650695910071e-1f;
  p = p * f + 6.9314718055994531e-1f;
  p = p * f + 1.0f;
  const int32_t bits = (static_cast<int32_t>(r) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, 4);
  return p * scale;
}

// softmax_exp on a GCC vector of floats V (I: the int32 vector with as many lanes): the same clamp,
// rounding trick and polynomial lane by lane, so the same accuracy. For the SIMD kernels' loops.
template <class V, class I>
__attribute__((always_inline)) inline V softmax_exp_vec(V x) {
  const V lo = V{} - 87.0f, hi = V{} + 88.0f;
  x = x < lo ? lo : (x > hi ? hi : x);
  const V t = x * 1.44269504088896341f;
  const V r = (t + 12582912.0f) - 12582912.0f;  // round to nearest integer
  const V f = t - r;
  V p = V{} + 1.5403530393381609e-4f;
  p = p * f + 1.3333558146428443e-3f;
  p = p * f + 9.6181291076284772e-3f;
  p = p * f + 5.5504108664821580e-2f;
  p = p * f + 2.4022650695910071e-1f;
  p = p * f + 6.9314718055994531e-1f;
  p = p * f + 1.0f;
  const I bits = (__builtin_convertvector(r, I) + 127) << 23;
  V scale;
  std::memcpy(&scale, &bits, sizeof(V));
  return p * scale;
}

// silu with softmax_exp, so loops over it vectorise (relative error of the exp < 1.3e-7; |x| > 87
// saturates the exp, where silu is x or 0 to f32 precision anyway).
inline float silu_fast(float x) { return x / (1.0f + softmax_exp(-x)); }

}  // namespace nemo::cpu
