// Causal grouped-query attention without position encoding (architecture.md §3.4) over the paged KV
// cache, one pass over the keys with an online softmax, so memory stays O(head_dim) however long the
// context. Work is split over (query position, kv head): the query heads of a group share each K/V row,
// which is read and converted once per block for all of them.
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "core/cpu_features.h"
#include "kernels/kernels.h"
#include "kernels/math.h"

namespace nemo::cpu {
namespace {

#if defined(__x86_64__)
// f16 -> f32 with F16C, 8 at a time: exact, like the scalar conversion, and ~10x faster. The KV cache is
// f16 by default, so at long contexts this conversion is most of decode attention's time.
__attribute__((target("avx,f16c"))) void f16_to_f32_f16c(float* dst, const uint16_t* src, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
  }
  for (; i < n; ++i) dst[i] = f16_to_f32(src[i]);
}
#endif

void load_rows(float* dst, const void* base, DType dtype, int64_t offset, int64_t n) {
#if defined(__x86_64__)
  if (dtype == DType::F16 && kernel_isa() != KernelIsa::kScalar) {  // AVX2 level implies F16C here
    f16_to_f32_f16c(dst, static_cast<const uint16_t*>(base) + offset, n);
    return;
  }
#endif
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
// max m, normaliser l and accumulator a[Dh]. kT is the block's K transposed ([Dq][B], B a multiple of
// 16), v its V [rows][Dh] and a[Dh] with Dh here a multiple of 16 (zero-padded columns).
__attribute__((always_inline)) inline void block_update_body(const float* qv, const float* kT, const float* v,
                                                             int64_t rows, int64_t B, int64_t Dq, int64_t Dh,
                                                             float scale, float* s, float* a, float* m, float* l) {
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

// The same body compiled per instruction set; chosen by kernel_isa() (cpu_features.h), so tests can
// force every path the CPU has (NEMOTRON_CPU_KERNELS / set_kernel_path_override).
using BlockUpdateFn = void (*)(const float*, const float*, const float*, int64_t, int64_t, int64_t, int64_t,
                               float, float*, float*, float*, float*);
void block_update_scalar(const float* qv, const float* kT, const float* v, int64_t rows, int64_t B, int64_t Dq,
                         int64_t Dh, float scale, float* s, float* a, float* m, float* l) {
  block_update_body(qv, kT, v, rows, B, Dq, Dh, scale, s, a, m, l);
}
#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) void block_update_avx2(const float* qv, const float* kT, const float* v,
                                                          int64_t rows, int64_t B, int64_t Dq, int64_t Dh,
                                                          float scale, float* s, float* a, float* m, float* l) {
  block_update_body(qv, kT, v, rows, B, Dq, Dh, scale, s, a, m, l);
}
__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma"))) void block_update_avx512(
    const float* qv, const float* kT, const float* v, int64_t rows, int64_t B, int64_t Dq, int64_t Dh, float scale,
    float* s, float* a, float* m, float* l) {
  block_update_body(qv, kT, v, rows, B, Dq, Dh, scale, s, a, m, l);
}
#endif

BlockUpdateFn pick_block_update() {
#if defined(__x86_64__)
  switch (kernel_isa()) {
    case KernelIsa::kAvx512: return block_update_avx512;
    case KernelIsa::kAvx2: return block_update_avx2;
    default: break;
  }
#endif
  return block_update_scalar;
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
  // Work items: (tile of up to kTile consecutive queries, kv head, slice of the key blocks). Each item
  // walks its blocks once: a block's K/V columns of that head are converted to f32 once and used by every
  // query of the tile and every query head of the group; the softmax is online per block. With few
  // queries (decode) and a long context there are too few (tile, head) items to keep every thread busy,
  // so the keys are split into slices whose partial results merge with the online-softmax rule. The
  // split depends only on this sequence's shape and the thread count, never on the rest of the batch.
  constexpr int64_t kTile = 16;
  const int64_t Dh = head_dim, G = n_heads / n_kv_heads, kv_dim = n_kv_heads * Dh;
  const int64_t B = kv.block_tokens;
  const int64_t Bp = (B + 15) / 16 * 16;     // transposed K row stride, padded for 16-wide score chunks
  const int64_t Dp = (Dh + 15) / 16 * 16;    // V and accumulator row stride, padded the same way
  const int64_t n_tiles = (T + kTile - 1) / kTile;
  const int64_t n_blocks = (past + T + B - 1) / B;
  const int64_t items = n_tiles * n_kv_heads;
  const int64_t want = 2 * static_cast<int64_t>(pool.size());
  const int64_t splits = (items >= want || n_blocks < 8) ? 1 : std::min<int64_t>((want + items - 1) / items, n_blocks / 4);
  const int64_t per_split = (n_blocks + splits - 1) / splits;
  const float scale = 1.0f / std::sqrt(static_cast<float>(Dh));
  const BlockUpdateFn update = pick_block_update();
  const int64_t slots = kTile * G;
  // Partial (m, l, acc) of every (item, split), merged below in split order.
  std::vector<float> part_m(static_cast<size_t>(items * splits * slots));
  std::vector<float> part_l(part_m.size());
  std::vector<float> part_acc(static_cast<size_t>(items * splits * slots * Dp));
  pool.parallel_for(items * splits, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> kbuf(static_cast<size_t>(Bp * Dh), 0.0f), vbuf(static_cast<size_t>(B * Dp), 0.0f);
    std::vector<float> s(static_cast<size_t>(Bp));
    std::vector<float> row(static_cast<size_t>(Dh));
    for (int64_t job = begin; job < end; ++job) {
      const int64_t item = job / splits, split = job % splits;
      const int64_t tile = item / n_kv_heads, h = item % n_kv_heads;
      const int64_t t0 = tile * kTile, nt = std::min(kTile, T - t0);
      float* m = part_m.data() + job * slots;
      float* l = part_l.data() + job * slots;
      float* acc = part_acc.data() + job * slots * Dp;
      std::fill(m, m + slots, -std::numeric_limits<float>::infinity());
      std::fill(l, l + slots, 0.0f);
      std::fill(acc, acc + slots * Dp, 0.0f);
      const int64_t last_of_tile = past + t0 + nt - 1;  // the furthest position any query here sees
      const int64_t b_end = std::min((split + 1) * per_split * B, last_of_tile + 1);
      for (int64_t b0 = split * per_split * B; b0 < b_end; b0 += B) {
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
            update(q + (t0 + i) * ldq + (h * G + g) * Dh, kbuf.data(), vbuf.data(), rows, Bp, Dh, Dp, scale,
                   s.data(), acc + slot * Dp, &m[slot], &l[slot]);
          }
        }
      }
    }
  });
  // Merge the slices of each (item, query, head): rescale each to the common max, in slice order.
  for (int64_t item = 0; item < items; ++item) {
    const int64_t tile = item / n_kv_heads, h = item % n_kv_heads;
    const int64_t t0 = tile * kTile, nt = std::min(kTile, T - t0);
    for (int64_t i = 0; i < nt; ++i) {
      for (int64_t g = 0; g < G; ++g) {
        const int64_t slot = i * G + g;
        float* o = out + (t0 + i) * n_heads * Dh + (h * G + g) * Dh;
        float m = -std::numeric_limits<float>::infinity();
        for (int64_t sp = 0; sp < splits; ++sp) m = std::max(m, part_m[(item * splits + sp) * slots + slot]);
        float l = 0.0f;
        for (int64_t d = 0; d < Dh; ++d) o[d] = 0.0f;
        for (int64_t sp = 0; sp < splits; ++sp) {
          const int64_t job = item * splits + sp;
          if (part_l[job * slots + slot] == 0.0f) continue;  // no key of this slice is visible to the query
          const float c = softmax_exp(part_m[job * slots + slot] - m);
          l += part_l[job * slots + slot] * c;
          const float* a = part_acc.data() + (job * slots + slot) * Dp;
          for (int64_t d = 0; d < Dh; ++d) o[d] += a[d] * c;
        }
        const float inv = 1.0f / l;
        for (int64_t d = 0; d < Dh; ++d) o[d] *= inv;
      }
    }
  }
}

}  // namespace nemo::cpu
