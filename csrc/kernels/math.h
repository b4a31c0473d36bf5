// Scalar activation functions shared by the CPU kernels.
#pragma once
#include <cmath>

namespace nemo::cpu {

inline float silu(float x) { return x / (1.0f + std::exp(-x)); }

// softplus as the Mamba kernels compute it: linear above 20, where log1p(exp(x)) == x in f32.
inline float softplus(float x) { return x > 20.0f ? x : std::log1p(std::exp(x)); }

inline float clampf(float x, float lo, float hi) { return x < lo ? lo : (x > hi ? hi : x); }

}  // namespace nemo::cpu
