// Causal grouped-query attention without position encoding (architecture.md §3.4) over the paged KV
// cache, one pass over the keys with an online softmax, so memory stays O(head_dim) however long the
// context. Work is split over (query position, kv head): the query heads of a group share each K/V row,
// which is read and converted once per block for all of them.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/kernels.h"

namespace nemo::cpu {
namespace {

void load_rows(float* dst, const void* base, DType dtype, int64_t offset, int64_t n) {
  if (dtype == DType::F32) {
    std::memcpy(dst, static_cast<const float*>(base) + offset, static_cast<size_t>(n) * 4);
  } else {
    convert_to_f32(dst, static_cast<const uint16_t*>(base) + offset, dtype, static_cast<size_t>(n));
  }
}

void store_row(void* base, DType dtype, int64_t offset, const float* src, int64_t n) {
  if (dtype == DType::F32) {
    std::memcpy(static_cast<float*>(base) + offset, src, static_cast<size_t>(n) * 4);
    return;
  }
  uint16_t* dst = static_cast<uint16_t*>(base) + offset;
  for (int64_t i = 0; i < n; ++i) dst[i] = dtype == DType::F16 ? f32_to_f16(src[i]) : f32_to_bf16(src[i]);
}

}  // namespace

void kv_store(const KvBlocks& kv, int64_t pos, const float* k_rows, const float* v_rows, int64_t ld,
              int64_t T, int64_t kv_dim) {
  for (int64_t t = 0; t < T; ++t) {
    const int64_t p = pos + t;
    const int64_t offset = kv.table[p / kv.block_tokens] * kv.block_stride + (p % kv.block_tokens) * kv_dim;
    store_row(kv.k, kv.dtype, offset, k_rows + t * ld, kv_dim);
    store_row(kv.v, kv.dtype, offset, v_rows + t * ld, kv_dim);
  }
}

void attention_gqa(float* out, const float* q, int64_t ldq, const KvBlocks& kv, int64_t past,
                   int64_t T, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, ThreadPool& pool) {
  const int64_t Dh = head_dim, G = n_heads / n_kv_heads, kv_dim = n_kv_heads * Dh;
  const int64_t B = kv.block_tokens;
  const float scale = 1.0f / std::sqrt(static_cast<float>(Dh));
  pool.parallel_for(T * n_kv_heads, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> kbuf(static_cast<size_t>(B * Dh)), vbuf(kbuf.size());
    std::vector<float> acc(static_cast<size_t>(G * Dh)), m(G), l(G), score(G);
    for (int64_t job = begin; job < end; ++job) {
      const int64_t t = job / n_kv_heads, h = job % n_kv_heads;
      const float* qh = q + t * ldq + h * G * Dh;  // the G query heads of kv head h, contiguous
      std::fill(acc.begin(), acc.end(), 0.0f);
      std::fill(m.begin(), m.end(), -std::numeric_limits<float>::infinity());
      std::fill(l.begin(), l.end(), 0.0f);
      const int64_t last = past + t;  // causal: positions 0..last
      for (int64_t b0 = 0; b0 <= last; b0 += B) {
        const int64_t rows = std::min(B, last + 1 - b0);
        const int64_t base = kv.table[b0 / B] * kv.block_stride;
        // This kv head's columns of the block's rows, in f32.
        for (int64_t r = 0; r < rows; ++r) {
          load_rows(kbuf.data() + r * Dh, kv.k, kv.dtype, base + r * kv_dim + h * Dh, Dh);
          load_rows(vbuf.data() + r * Dh, kv.v, kv.dtype, base + r * kv_dim + h * Dh, Dh);
        }
        for (int64_t r = 0; r < rows; ++r) {
          const float* kr = kbuf.data() + r * Dh;
          const float* vr = vbuf.data() + r * Dh;
          for (int64_t g = 0; g < G; ++g) {
            const float* qv = qh + g * Dh;
            float s = 0.0f;
            for (int64_t d = 0; d < Dh; ++d) s += qv[d] * kr[d];
            s *= scale;
            float* a = acc.data() + g * Dh;
            if (s > m[g]) {  // new running max: rescale what has been accumulated so far
              const float c = std::exp(m[g] - s);
              l[g] *= c;
              for (int64_t d = 0; d < Dh; ++d) a[d] *= c;
              m[g] = s;
            }
            const float w = std::exp(s - m[g]);
            l[g] += w;
            for (int64_t d = 0; d < Dh; ++d) a[d] += w * vr[d];
          }
        }
      }
      for (int64_t g = 0; g < G; ++g) {
        float* o = out + t * n_heads * Dh + (h * G + g) * Dh;
        const float inv = 1.0f / l[g];
        for (int64_t d = 0; d < Dh; ++d) o[d] = acc[g * Dh + d] * inv;
      }
    }
  });
}

}  // namespace nemo::cpu
