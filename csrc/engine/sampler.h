// Token sampling from a row of logits. Deterministic: the random draw for step s of a request with
// seed k is a pure function of (k, s) (a counter-based generator), so a seeded request yields the same
// tokens however it is scheduled or batched.
#pragma once
#include <cstdint>

namespace nemo {

struct SamplingParams {
  float temperature = 0.0f;  // 0 = greedy (argmax, lowest id on ties)
  int32_t top_k = 0;         // 0 = off
  float top_p = 1.0f;        // nucleus mass in (0, 1]; 1 = off
  float min_p = 0.0f;        // drop tokens with p < min_p * p_max; 0 = off
  uint64_t seed = 0;
};

// Uniform double in [0, 1) for (seed, counter): splitmix64 finaliser over a combined key.
double counter_uniform(uint64_t seed, uint64_t counter);

int32_t sample_token(const float* logits, int64_t vocab, const SamplingParams& params, uint64_t step);

}  // namespace nemo
