// Mixture-of-experts routing (kernels.h, moe_route) and the weighted scatter of expert outputs.
// Follows Hugging Face's NemotronHMoE.route_tokens_to_experts (modeling_nemotron_h.py) step by step,
// in f32 like the reference: sigmoid, + e_score_correction_bias for the choice only, group-limited
// top-k (groups scored by their two best experts), weights from the unbiased sigmoid, normalised by
// their sum + 1e-20, times routed_scaling_factor.
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/kernels.h"

namespace nemo::cpu {
namespace {

// a ranks before b: larger value first, then the lower index (a fixed, documented tie order).
inline bool before(float va, int64_t ia, float vb, int64_t ib) { return va > vb || (va == vb && ia < ib); }

// Indices of the k best of v[0..n) by `before`, best first, into out[0..k). Simple selection: k and n
// are small (k <= 8 or so, n <= 512 experts).
void top_k(const float* v, int64_t n, int64_t k, int32_t* out) {
  for (int64_t j = 0; j < k; ++j) {
    int64_t best = -1;
    for (int64_t i = 0; i < n; ++i) {
      bool taken = false;
      for (int64_t q = 0; q < j; ++q) taken = taken || out[q] == i;
      if (taken) continue;
      if (best < 0 || before(v[i], i, v[best], best)) best = i;
    }
    out[j] = static_cast<int32_t>(best);
  }
}

}  // namespace

void moe_route(int32_t* ids, float* weights, const float* logits, int64_t ld, const float* bias, int64_t T,
               const MoeRouting& p) {
  const int64_t E = p.n_experts, K = p.top_k, G = p.n_group, per = E / G;
  std::vector<float> s(E), choice(E), gscore(G);
  std::vector<int32_t> gsel(G);
  for (int64_t t = 0; t < T; ++t) {
    const float* x = logits + t * ld;
    for (int64_t e = 0; e < E; ++e) {
      s[e] = 1.0f / (1.0f + std::exp(-x[e]));
      choice[e] = s[e] + bias[e];
    }
    if (G > 1 && p.topk_group < G) {
      for (int64_t g = 0; g < G; ++g) {
        const float* c = choice.data() + g * per;
        // the two largest values of the group (as torch.topk(2)), summed
        float a = -std::numeric_limits<float>::infinity(), b = a;
        for (int64_t i = 0; i < per; ++i) {
          if (c[i] > a) { b = a; a = c[i]; }
          else if (c[i] > b) b = c[i];
        }
        gscore[g] = a + b;
      }
      top_k(gscore.data(), G, p.topk_group, gsel.data());
      std::vector<bool> keep(G, false);
      for (int64_t j = 0; j < p.topk_group; ++j) keep[gsel[j]] = true;
      for (int64_t g = 0; g < G; ++g)
        if (!keep[g])
          for (int64_t i = 0; i < per; ++i) choice[g * per + i] = -std::numeric_limits<float>::infinity();
    }
    int32_t* id = ids + t * K;
    float* w = weights + t * K;
    top_k(choice.data(), E, K, id);
    for (int64_t j = 0; j < K; ++j) w[j] = s[id[j]];
    if (p.norm_topk_prob) {
      float sum = 0.0f;
      for (int64_t j = 0; j < K; ++j) sum += w[j];
      const float denom = sum + 1e-20f;
      for (int64_t j = 0; j < K; ++j) w[j] /= denom;
    }
    for (int64_t j = 0; j < K; ++j) w[j] *= p.scaling;
  }
}

void moe_scatter_add(float* acc, const float* y, const int32_t* rows, const float* w, int64_t n, int64_t C) {
  for (int64_t j = 0; j < n; ++j) {
    float* a = acc + static_cast<int64_t>(rows[j]) * C;
    const float* v = y + j * C;
    const float wj = w[j];
    for (int64_t i = 0; i < C; ++i) a[i] += wj * v[i];
  }
}

}  // namespace nemo::cpu
