#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace nemo {

namespace {
uint64_t mix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
}  // namespace

double counter_uniform(uint64_t seed, uint64_t counter) {
  const uint64_t bits = mix64(mix64(seed) ^ (counter * 0xd1342543de82ef95ull + 1));
  return static_cast<double>(bits >> 11) * (1.0 / 9007199254740992.0);  // 53 bits
}

int32_t sample_token(const float* logits, int64_t vocab, const SamplingParams& p, uint64_t step) {
  if (p.temperature <= 0.0f) {
    return static_cast<int32_t>(std::max_element(logits, logits + vocab) - logits);
  }
  // Candidates sorted by logit, descending (ties: lower id first), cut to top_k.
  std::vector<int32_t> idx(static_cast<size_t>(vocab));
  std::iota(idx.begin(), idx.end(), 0);
  auto better = [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  };
  int64_t n = vocab;
  if (p.top_k > 0 && p.top_k < vocab) {
    n = p.top_k;
    std::nth_element(idx.begin(), idx.begin() + n, idx.end(), better);
    idx.resize(static_cast<size_t>(n));
  }
  std::sort(idx.begin(), idx.end(), better);
  // Softmax at the temperature, in double.
  const double inv_t = 1.0 / p.temperature;
  const double top = logits[idx[0]];
  std::vector<double> prob(static_cast<size_t>(n));
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    prob[i] = std::exp((logits[idx[i]] - top) * inv_t);
    sum += prob[i];
  }
  for (double& q : prob) q /= sum;
  // min_p relative to the most likely token, then the smallest prefix holding top_p of the mass.
  int64_t keep = n;
  if (p.min_p > 0.0f) {
    const double floor = p.min_p * prob[0];
    keep = 1;
    while (keep < n && prob[keep] >= floor) ++keep;
  }
  if (p.top_p < 1.0f) {
    double mass = 0.0;
    int64_t cut = 0;
    while (cut < keep) {
      mass += prob[cut++];
      if (mass >= p.top_p) break;
    }
    keep = std::max<int64_t>(cut, 1);
  }
  double kept = 0.0;
  for (int64_t i = 0; i < keep; ++i) kept += prob[i];
  const double u = counter_uniform(p.seed, step) * kept;
  double acc = 0.0;
  for (int64_t i = 0; i < keep; ++i) {
    acc += prob[i];
    if (u < acc) return idx[i];
  }
  return idx[keep - 1];
}

}  // namespace nemo
