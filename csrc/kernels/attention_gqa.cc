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
#include "kernels/math.h"

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

// 16 floats as one value: GCC/Clang lower it to one AVX-512 register, two AVX2 or four SSE registers.
typedef float f32x16 __attribute__((vector_size(64)));

__attribute__((always_inline)) inline f32x16 load16(const float* p) {
  f32x16 x;
  std::memcpy(&x, p, sizeof(x));
  return x;
}

// One query head against `rows` keys of a block: scores, then the online-softmax update of its running
// max m, normaliser l and accumulator a[Dh]. kT is the block's K transposed ([Dh][B], B a multiple of
// 16), v its V [rows][Dh] and a[Dh] with Dh here a multiple of 16 (zero-padded columns).
// Compiled for AVX-512, AVX2 and baseline x86-64, picked at load time by the CPU (ifunc).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#endif
void block_update(const float* qv, const float* kT, const float* v, int64_t rows, int64_t B, int64_t Dq,
                  int64_t Dh, float scale, float* s, float* a, float* m, float* l) {
  // Scores 16 rows at a time, accumulated in a register over d (kT rows are padded to 16).
  for (int64_t r0 = 0; r0 < rows; r0 += 16) {
    f32x16 t = {};
    for (int64_t d = 0; d < Dq; ++d) t += (qv[d] * scale) * load16(kT + d * B + r0);
    float out[16];
    std::memcpy(out, &t, sizeof(out));
    for (int64_t j = 0; j < 16 && r0 + j < rows; ++j) s[r0 + j] = out[j];
  }
  float block_max = -std::numeric_limits<float>::infinity();
  for (int64_t r = 0; r < rows; ++r) block_max = std::max(block_max, s[r]);
  const float m_new = std::max(*m, block_max);
  const float c = softmax_exp(*m - m_new);  // rescale what earlier blocks accumulated
  float sum = 0.0f;
  for (int64_t r = 0; r < rows; ++r) {
    s[r] = softmax_exp(s[r] - m_new);
    sum += s[r];
  }
  *l = *l * c + sum;
  *m = m_new;
  // a = c·a + Σ_r s[r]·v[r], 16 columns at a time held in registers (v and a rows padded to 16).
  for (int64_t d0 = 0; d0 < Dh; d0 += 16) {
    f32x16 t = load16(a + d0) * c;
    for (int64_t r = 0; r < rows; ++r) t += s[r] * load16(v + r * Dh + d0);
    std::memcpy(a + d0, &t, sizeof(t));
  }
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
  // Work items: (tile of up to kTile consecutive queries, kv head). Each item walks the key blocks once:
  // a block's K/V columns of that head are converted to f32 once and used by every query of the tile
  // and every query head of the group. The softmax is online per block: one rescale per block of keys.
  constexpr int64_t kTile = 16;
  const int64_t Dh = head_dim, G = n_heads / n_kv_heads, kv_dim = n_kv_heads * Dh;
  const int64_t B = kv.block_tokens;
  const int64_t Bp = (B + 15) / 16 * 16;     // transposed K row stride, padded for 16-wide score chunks
  const int64_t Dp = (Dh + 15) / 16 * 16;    // V and accumulator row stride, padded the same way
  const int64_t n_tiles = (T + kTile - 1) / kTile;
  const float scale = 1.0f / std::sqrt(static_cast<float>(Dh));
  pool.parallel_for(n_tiles * n_kv_heads, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> kbuf(static_cast<size_t>(Bp * Dh), 0.0f), vbuf(static_cast<size_t>(B * Dp), 0.0f);
    std::vector<float> s(static_cast<size_t>(Bp));
    std::vector<float> row(static_cast<size_t>(Dh));
    std::vector<float> acc(static_cast<size_t>(kTile * G * Dp)), m(kTile * G), l(kTile * G);
    for (int64_t job = begin; job < end; ++job) {
      const int64_t tile = job / n_kv_heads, h = job % n_kv_heads;
      const int64_t t0 = tile * kTile, nt = std::min(kTile, T - t0);
      std::fill(acc.begin(), acc.end(), 0.0f);
      std::fill(m.begin(), m.end(), -std::numeric_limits<float>::infinity());
      std::fill(l.begin(), l.end(), 0.0f);
      const int64_t last_of_tile = past + t0 + nt - 1;  // the furthest position any query here sees
      for (int64_t b0 = 0; b0 <= last_of_tile; b0 += B) {
        const int64_t block_rows = std::min(B, last_of_tile + 1 - b0);
        const int64_t base = kv.table[b0 / B] * kv.block_stride;
        // K transposed ([Dh][B]) so the scores of a block are one vectorisable loop over its rows.
        for (int64_t r = 0; r < block_rows; ++r) {
          load_rows(row.data(), kv.k, kv.dtype, base + r * kv_dim + h * Dh, Dh);
          for (int64_t d = 0; d < Dh; ++d) kbuf[d * Bp + r] = row[d];
          load_rows(vbuf.data() + r * Dp, kv.v, kv.dtype, base + r * kv_dim + h * Dh, Dh);
        }
        for (int64_t i = 0; i < nt; ++i) {
          const int64_t rows = std::min(block_rows, past + t0 + i + 1 - b0);  // causal limit of query i
          if (rows <= 0) continue;
          for (int64_t g = 0; g < G; ++g) {
            const int64_t slot = i * G + g;
            block_update(q + (t0 + i) * ldq + (h * G + g) * Dh, kbuf.data(), vbuf.data(), rows, Bp, Dh,
                         Dp, scale, s.data(), acc.data() + slot * Dp, &m[slot], &l[slot]);
          }
        }
      }
      for (int64_t i = 0; i < nt; ++i) {
        for (int64_t g = 0; g < G; ++g) {
          const int64_t slot = i * G + g;
          float* o = out + (t0 + i) * n_heads * Dh + (h * G + g) * Dh;
          const float inv = 1.0f / l[slot];
          for (int64_t d = 0; d < Dh; ++d) o[d] = acc[slot * Dp + d] * inv;
        }
      }
    }
  });
}

}  // namespace nemo::cpu
