// Causal grouped-query attention without position encoding (architecture.md §3.4), one pass over the
// keys per query with an online softmax, so memory stays O(head_dim) however long the context.
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/kernels.h"

namespace nemo::cpu {

void attention_gqa(float* out, const float* q, int64_t ldq, const float* k_cache,
                   const float* v_cache, int64_t ldkv, int64_t past, int64_t T, int64_t n_heads,
                   int64_t n_kv_heads, int64_t head_dim, ThreadPool& pool) {
  const int64_t Dh = head_dim;
  const int64_t q_per_kv = n_heads / n_kv_heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(Dh));
  pool.parallel_for(T * n_heads, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> acc(static_cast<size_t>(Dh));
    for (int64_t job = begin; job < end; ++job) {
      const int64_t t = job / n_heads, j = job % n_heads;
      const int64_t kvh = j / q_per_kv;
      const float* qv = q + t * ldq + j * Dh;
      float m = -std::numeric_limits<float>::infinity();
      float l = 0.0f;
      std::fill(acc.begin(), acc.end(), 0.0f);
      const int64_t last = past + t;  // causal: positions 0..last
      for (int64_t s = 0; s <= last; ++s) {
        const float* kv = k_cache + s * ldkv + kvh * Dh;
        float score = 0.0f;
        for (int64_t d = 0; d < Dh; ++d) score += qv[d] * kv[d];
        score *= scale;
        if (score > m) {  // new running max: rescale what has been accumulated so far
          const float r = std::exp(m - score);
          l *= r;
          for (int64_t d = 0; d < Dh; ++d) acc[d] *= r;
          m = score;
        }
        const float w = std::exp(score - m);
        l += w;
        const float* vv = v_cache + s * ldkv + kvh * Dh;
        for (int64_t d = 0; d < Dh; ++d) acc[d] += w * vv[d];
      }
      float* o = out + t * n_heads * Dh + j * Dh;
      const float inv = 1.0f / l;
      for (int64_t d = 0; d < Dh; ++d) o[d] = acc[d] * inv;
    }
  });
}

}  // namespace nemo::cpu
