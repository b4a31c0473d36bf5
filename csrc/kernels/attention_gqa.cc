// Causal grouped-query attention without position encoding (docs/architecture.md §3.4) over the paged KV
// cache, one pass over the keys with an online softmax, so memory stays O(head_dim) however long the
// context.
//
// Layout (kernels.h, KvBlocks): a K block is stored channel-major, [Hkv*Dh][block_tokens], so for one
// channel d the keys of a block are contiguous and q·K over a vector of keys is a run of vertical FMAs
// (one broadcast q[d] times L keys), with no transpose and no horizontal sum. V stays token-major
// [block_tokens][Hkv*Dh]: out += p·V then reads whole V rows, again vertical FMAs over channels.
//
// Work items: (tile of up to kTile queries, kv head, slice of the key blocks). The "slots" of an item
// are its (query, query head) pairs; every slot of a kv head reads the same K/V block, so the block is
// converted from f16 once per group of up to kMaxSlots slots while it sits in L1.
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

constexpr int64_t kSub = 64;      // keys per online-softmax step (any block_tokens is cut into these)
constexpr int kMaxSlots = 6;      // slots scored together: 6 x 2 key vectors of accumulators fit 16 ymm
constexpr int64_t kTile = 16;     // queries per prefill item
constexpr int64_t kSliceBlocks = 16;  // decode: keys per split slice, in blocks (1,024 keys at 64)

typedef float f32x8 __attribute__((vector_size(32)));
typedef int32_t i32x8 __attribute__((vector_size(32)));
typedef float f32x16 __attribute__((vector_size(64)));
typedef int32_t i32x16 __attribute__((vector_size(64)));

// Per-ISA vector width and loads. The scalar path uses the generic 8-lane type too: the compiler lowers
// it to whatever the target has (SSE2 on x86-64, NEON elsewhere, or plain scalars).
struct IsaScalar {
  using F = f32x8;
  using I = i32x8;
  static constexpr int L = 8, kDv = 2;  // lanes; V accumulator vectors per slot held in registers
  static inline F load(const float* p) {
    F x;
    std::memcpy(&x, p, sizeof(x));
    return x;
  }
  static inline F load(const uint16_t* p) {
    float t[8];
    for (int i = 0; i < 8; ++i) t[i] = f16_to_f32(p[i]);
    return load(t);
  }
};
#if defined(__x86_64__)
// The f16 loads carry their own target attribute and are called only from functions compiled for that
// target, where GCC/Clang inline them (correct, just slower, if they did not).
struct IsaAvx2 {
  using F = f32x8;
  using I = i32x8;
  static constexpr int L = 8, kDv = 2;
  static inline F load(const float* p) { return IsaScalar::load(p); }
  __attribute__((target("avx2,fma,f16c"))) static inline F load(const uint16_t* p) {
    return (F)_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
};
struct IsaAvx512 {
  using F = f32x16;
  using I = i32x16;
  static constexpr int L = 16, kDv = 4;
  static inline F load(const float* p) {
    F x;
    std::memcpy(&x, p, sizeof(x));
    return x;
  }
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c"))) static inline F load(
      const uint16_t* p) {
    return (F)_mm512_maskz_cvtph_ps(0xffff, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
};
#endif

template <class F>
__attribute__((always_inline)) inline void store(float* p, F x) {
  std::memcpy(p, &x, sizeof(x));
}

inline float to_f32(float x) { return x; }
inline float to_f32(uint16_t h) { return f16_to_f32(h); }

// Loads keys [t0, t0 + L) of one channel row; lanes at or past n (the row's end) read as 0.
template <class Isa, class T>
__attribute__((always_inline)) inline typename Isa::F load_part(const T* p, int64_t n) {
  T tmp[Isa::L] = {};
  for (int64_t i = 0; i < Isa::L && i < n; ++i) tmp[i] = p[i];
  return Isa::load(tmp);
}

// One online-softmax step of NG slots over the keys [0, max rows) of a sub-block. kt: the sub-block's
// K, channel d at kt + d * ldk (ldk = block_tokens, row_end keys valid before the row ends); v: its V,
// key t at v + t * ldv. rows[g]: keys slot g may see (>= 1). s: scratch [NG][kSub].
template <class Isa, class T, int NG>
__attribute__((always_inline)) inline void slots_step(const T* kt, const T* v, int64_t ldk, int64_t row_end,
                                                      int64_t ldv, int64_t Dh, const float* const* q,
                                                      const int64_t* rows, float scale, float* m, float* l,
                                                      float* const* acc, float* s, const T* pf_k,
                                                      const char* pf_v, int64_t pf_v_bytes) {
  using F = typename Isa::F;
  using I = typename Isa::I;
  constexpr int L = Isa::L;
  int64_t rmax = 0;
  for (int g = 0; g < NG; ++g) rmax = std::max(rmax, rows[g]);
  // Scores, KV key vectors (up to a whole 64-key row of a channel) at a time, so each K row is read
  // once, front to back: acc[g][j] += q_g[d] * K[d][t0 + jL ..], all vertical.
  constexpr int KV = Isa::L == 16 || NG <= 2 ? 4 : 2;  // accumulators + loads fit the registers
  for (int64_t t0 = 0; t0 < rmax; t0 += KV * L) {
    F sc[NG][KV];
    for (int g = 0; g < NG; ++g) {
      for (int j = 0; j < KV; ++j) sc[g][j] = F{};
    }
    if (t0 + KV * L <= row_end) {
      for (int64_t d = 0; d < Dh; ++d) {
        if (pf_k) {  // the next block's K row d, while this one is consumed
          __builtin_prefetch(pf_k + d * ldk);
          __builtin_prefetch(reinterpret_cast<const char*>(pf_k + d * ldk) + 64);
        }
        F kv[KV];
        for (int j = 0; j < KV; ++j) kv[j] = Isa::load(kt + d * ldk + t0 + j * L);
        for (int g = 0; g < NG; ++g) {
          const float qd = q[g][d];
          for (int j = 0; j < KV; ++j) sc[g][j] += qd * kv[j];
        }
      }
    } else {  // the row ends inside these vectors (block_tokens not a multiple of KV * L)
      for (int64_t d = 0; d < Dh; ++d) {
        F kv[KV];
        for (int j = 0; j < KV; ++j) kv[j] = load_part<Isa>(kt + d * ldk + t0 + j * L, row_end - t0 - j * L);
        for (int g = 0; g < NG; ++g) {
          for (int j = 0; j < KV; ++j) sc[g][j] += q[g][d] * kv[j];
        }
      }
    }
    for (int g = 0; g < NG; ++g) {  // t0 + KV * L <= kSub: KV * L divides kSub
      for (int j = 0; j < KV; ++j) store(s + g * kSub + t0 + j * L, sc[g][j] * scale);
    }
  }
  // Online softmax per slot: block max, p = exp(s - m_new) (0 past the slot's rows), rescale factor.
  I lane;
  for (int i = 0; i < L; ++i) lane[i] = i;
  float c[NG];
  for (int g = 0; g < NG; ++g) {
    float* sg = s + g * kSub;
    const int64_t n = rows[g];
    F mx = F{} - std::numeric_limits<float>::infinity();
    for (int64_t t0 = 0; t0 < n; t0 += L) {
      const F x = Isa::load(sg + t0);
      const F y = (lane + static_cast<int32_t>(t0)) < static_cast<int32_t>(n) ? x : mx;
      mx = y > mx ? y : mx;
    }
    float block_max = mx[0];
    for (int i = 1; i < L; ++i) block_max = std::max(block_max, mx[i]);
    const float m_new = std::max(m[g], block_max);
    c[g] = softmax_exp(m[g] - m_new);
    F sum = F{};
    for (int64_t t0 = 0; t0 < rmax; t0 += L) {
      const F p = softmax_exp_vec<F, I>(Isa::load(sg + t0) - m_new);
      const F pz = (lane + static_cast<int32_t>(t0)) < static_cast<int32_t>(n) ? p : F{};
      store(sg + t0, pz);
      sum += pz;
    }
    float total = 0.0f;
    for (int i = 0; i < L; ++i) total += sum[i];
    l[g] = l[g] * c[g] + total;
    m[g] = m_new;
  }
  // acc_g = c_g·acc_g + Σ_t p_g[t]·V[t], kDv vectors of channels at a time in registers.
  constexpr int kDv = Isa::kDv;
  int64_t d0 = 0;
  for (; d0 + kDv * L <= Dh; d0 += kDv * L) {
    F a[NG][kDv];
    for (int g = 0; g < NG; ++g) {
      for (int j = 0; j < kDv; ++j) a[g][j] = Isa::load(acc[g] + d0 + j * L) * c[g];
    }
    for (int64_t t = 0; t < rmax; ++t) {
      if (pf_v && d0 == 0) {  // the next block's V row t (this head's channels)
        for (int64_t o = 0; o < pf_v_bytes; o += 64) __builtin_prefetch(pf_v + t * ldv * sizeof(T) + o);
      }
      F vv[kDv];
      for (int j = 0; j < kDv; ++j) vv[j] = Isa::load(v + t * ldv + d0 + j * L);
      for (int g = 0; g < NG; ++g) {
        const float p = s[g * kSub + t];
        for (int j = 0; j < kDv; ++j) a[g][j] += p * vv[j];
      }
    }
    for (int g = 0; g < NG; ++g) {
      for (int j = 0; j < kDv; ++j) store(acc[g] + d0 + j * L, a[g][j]);
    }
  }
  for (; d0 + L <= Dh; d0 += L) {
    F a[NG];
    for (int g = 0; g < NG; ++g) a[g] = Isa::load(acc[g] + d0) * c[g];
    for (int64_t t = 0; t < rmax; ++t) {
      const F vv = Isa::load(v + t * ldv + d0);
      for (int g = 0; g < NG; ++g) a[g] += s[g * kSub + t] * vv;
    }
    for (int g = 0; g < NG; ++g) store(acc[g] + d0, a[g]);
  }
  if (d0 < Dh) {  // channels past the last full vector (head dims not a multiple of L)
    for (int g = 0; g < NG; ++g) {
      for (int64_t d = d0; d < Dh; ++d) acc[g][d] *= c[g];
    }
    float vt[Isa::L];
    for (int64_t t = 0; t < rmax; ++t) {
      for (int64_t d = d0; d < Dh; ++d) vt[d - d0] = to_f32(v[t * ldv + d]);
      for (int g = 0; g < NG; ++g) {
        for (int64_t d = d0; d < Dh; ++d) acc[g][d] += s[g * kSub + t] * vt[d - d0];
      }
    }
  }
}

// Everything one item does with one block: its keys cut into kSub-key steps, its slots into groups of
// at most kMaxSlots (the NG of slots_step). limit[i]: keys of this block slot i may see (may be <= 0).
struct BlockTask {
  const void* kt;  // the block's K rows of this kv head: channel d at kt + d * ldk
  const void* v;   // the block's V of this kv head: key t at v + t * ldv
  const void* next_kt;  // the same for the item's next block (prefetched), or nullptr
  const void* next_v;
  int64_t ldk, rows_valid, ldv, Dh, n_slots;
  const float* const* q;
  const int64_t* limit;
  float scale;
  float *m, *l;
  float* const* acc;
  float* s;  // scratch [kMaxSlots][kSub]
};

template <class Isa, class T>
__attribute__((always_inline)) inline void block_task(const BlockTask& b) {
  const T* kt = static_cast<const T*>(b.kt);
  const T* v = static_cast<const T*>(b.v);
  for (int64_t k0 = 0; k0 < b.rows_valid; k0 += kSub) {
    // Keys of this step slot i sees: its causal limit, the block's written rows and kSub.
    auto rows_of = [&](int64_t i) { return std::min({kSub, b.limit[i] - k0, b.rows_valid - k0}); };
    int n = 0;  // slots that see at least one key here; groups skip the others
    for (int64_t i = 0; i < b.n_slots; ++i) n += rows_of(i) > 0;
    const T* kts = kt + k0;
    const T* vs = v + k0 * b.ldv;
    const int64_t row_end = b.ldk - k0;
    int64_t next = 0;
    const T* pf_k = k0 == 0 ? static_cast<const T*>(b.next_kt) : nullptr;
    const char* pf_v = k0 == 0 ? static_cast<const char*>(b.next_v) : nullptr;
    const int64_t pf_v_bytes = b.Dh * static_cast<int64_t>(sizeof(T));
    while (n > 0) {
      // Balanced groups (8 slots as 4 + 4, not 6 + 2).
      const int groups = (n + kMaxSlots - 1) / kMaxSlots;
      const int ng = (n + groups - 1) / groups;
      const float* q[kMaxSlots];
      int64_t rows[kMaxSlots], idx[kMaxSlots];
      float mm[kMaxSlots], ll[kMaxSlots];
      float* acc[kMaxSlots];
      for (int g = 0; g < ng; ++next) {
        const int64_t r = rows_of(next);
        if (r <= 0) continue;
        idx[g] = next, q[g] = b.q[next], rows[g] = r, mm[g] = b.m[next], ll[g] = b.l[next];
        acc[g] = b.acc[next];
        ++g;
      }
#define NEMO_SLOTS_STEP(NG)                                                                            \
  case NG:                                                                                             \
    slots_step<Isa, T, NG>(kts, vs, b.ldk, row_end, b.ldv, b.Dh, q, rows, b.scale, mm, ll, acc, b.s, \
                           pf_k, pf_v, pf_v_bytes);                                            \
    break;
      switch (ng) {
        NEMO_SLOTS_STEP(1)
        NEMO_SLOTS_STEP(2)
        NEMO_SLOTS_STEP(3)
        NEMO_SLOTS_STEP(4)
        NEMO_SLOTS_STEP(5)
        NEMO_SLOTS_STEP(6)
      }
#undef NEMO_SLOTS_STEP
      for (int g = 0; g < ng; ++g) b.m[idx[g]] = mm[g], b.l[idx[g]] = ll[g];
      n -= ng;
      pf_k = nullptr, pf_v = nullptr;  // once per block is enough
    }
  }
}

// The same code compiled per instruction set; chosen by kernel_isa() (cpu_features.h), so tests can
// force every path the CPU has (NEMOTRON_CPU_KERNELS / set_kernel_path_override).
using BlockTaskFn = void (*)(const BlockTask&);
void block_task_scalar_f32(const BlockTask& b) { block_task<IsaScalar, float>(b); }
void block_task_scalar_f16(const BlockTask& b) { block_task<IsaScalar, uint16_t>(b); }
#if defined(__x86_64__)
__attribute__((target("avx2,fma,f16c"))) void block_task_avx2_f32(const BlockTask& b) {
  block_task<IsaAvx2, float>(b);
}
__attribute__((target("avx2,fma,f16c"))) void block_task_avx2_f16(const BlockTask& b) {
  block_task<IsaAvx2, uint16_t>(b);
}
__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c"))) void block_task_avx512_f32(
    const BlockTask& b) {
  block_task<IsaAvx512, float>(b);
}
__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c"))) void block_task_avx512_f16(
    const BlockTask& b) {
  block_task<IsaAvx512, uint16_t>(b);
}
#endif

BlockTaskFn pick_block_task(DType dtype) {
  const bool f16 = dtype == DType::F16;
#if defined(__x86_64__)
  switch (kernel_isa()) {
    case KernelIsa::kAvx512: return f16 ? block_task_avx512_f16 : block_task_avx512_f32;
    case KernelIsa::kAvx2: return f16 ? block_task_avx2_f16 : block_task_avx2_f32;
    default: break;
  }
#endif
  return f16 ? block_task_scalar_f16 : block_task_scalar_f32;
}

void store_value(void* base, DType dtype, int64_t offset, float x) {
  if (dtype == DType::F32) {
    static_cast<float*>(base)[offset] = x;
  } else {
    static_cast<uint16_t*>(base)[offset] = dtype == DType::F16 ? f32_to_f16(x) : f32_to_bf16(x);
  }
}

}  // namespace

void kv_store(const KvBlocks& kv, int64_t pos, const float* k_rows, const float* v_rows, int64_t ld,
              int64_t T, int64_t kv_dim) {
  const int64_t B = kv.block_tokens;
  for (int64_t t = 0; t < T; ++t) {
    const int64_t p = pos + t;
    const int64_t base = kv.table[p / B] * kv.block_stride, r = p % B;
    for (int64_t c = 0; c < kv_dim; ++c) store_value(kv.k, kv.dtype, base + c * B + r, k_rows[t * ld + c]);
    for (int64_t c = 0; c < kv_dim; ++c) store_value(kv.v, kv.dtype, base + r * kv_dim + c, v_rows[t * ld + c]);
  }
}

void attention_gqa(float* out, const float* q, int64_t ldq, const KvBlocks& kv, int64_t past,
                   int64_t T, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, ThreadPool& pool) {
  // Decode (and short batches, one tile) split the keys into fixed slices of kSliceBlocks blocks so
  // both threads work on one sequence; partial (m, l, acc) merge with the online-softmax rule in slice
  // order. The split depends only on the sequence's shape, never on the thread count or the rest of
  // the batch, so results are the same for any number of threads.
  const int64_t Dh = head_dim, G = n_heads / n_kv_heads, kv_dim = n_kv_heads * Dh;
  const int64_t B = kv.block_tokens;
  const int64_t n_tiles = (T + kTile - 1) / kTile;
  const int64_t n_blocks = (past + T + B - 1) / B;
  const int64_t items = n_tiles * n_kv_heads;
  const int64_t splits = n_tiles == 1 ? std::max<int64_t>(1, (n_blocks + kSliceBlocks - 1) / kSliceBlocks) : 1;
  const int64_t per_split = (n_blocks + splits - 1) / splits;
  const float scale = 1.0f / std::sqrt(static_cast<float>(Dh));
  const BlockTaskFn task = pick_block_task(kv.dtype);
  const size_t esize = kv.dtype == DType::F32 ? 4 : 2;
  const int64_t slots = std::min(kTile, T) * G;
  std::vector<float> part_m(static_cast<size_t>(items * splits * slots));
  std::vector<float> part_l(part_m.size());
  std::vector<float> part_acc(static_cast<size_t>(items * splits * slots * Dh));
  pool.parallel_for(items * splits, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> s(static_cast<size_t>(kMaxSlots * kSub));
    std::vector<const float*> qs(static_cast<size_t>(slots));
    std::vector<float*> accs(static_cast<size_t>(slots));
    std::vector<int64_t> limit(static_cast<size_t>(slots));
    for (int64_t job = begin; job < end; ++job) {
      const int64_t item = job / splits, split = job % splits;
      const int64_t tile = item / n_kv_heads, h = item % n_kv_heads;
      const int64_t t0 = tile * kTile, nt = std::min(kTile, T - t0), n_slots = nt * G;
      float* m = part_m.data() + job * slots;
      float* l = part_l.data() + job * slots;
      float* acc = part_acc.data() + job * slots * Dh;
      std::fill(m, m + n_slots, -std::numeric_limits<float>::infinity());
      std::fill(l, l + n_slots, 0.0f);
      std::fill(acc, acc + n_slots * Dh, 0.0f);
      for (int64_t i = 0; i < nt; ++i) {
        for (int64_t g = 0; g < G; ++g) {
          qs[i * G + g] = q + (t0 + i) * ldq + (h * G + g) * Dh;
          accs[i * G + g] = acc + (i * G + g) * Dh;
        }
      }
      const int64_t last_of_tile = past + t0 + nt - 1;  // the furthest position any query here sees
      const int64_t b_end = std::min((split + 1) * per_split * B, last_of_tile + 1);
      for (int64_t b0 = split * per_split * B; b0 < b_end; b0 += B) {
        for (int64_t i = 0; i < nt; ++i) {
          for (int64_t g = 0; g < G; ++g) limit[i * G + g] = past + t0 + i + 1 - b0;  // causal mask
        }
        const int64_t base = kv.table[b0 / B] * kv.block_stride;
        BlockTask bt;
        bt.kt = static_cast<const char*>(kv.k) + (base + h * Dh * B) * esize;
        bt.v = static_cast<const char*>(kv.v) + (base + h * Dh) * esize;
        bt.next_kt = bt.next_v = nullptr;
        if (b0 + B < b_end) {
          const int64_t next = kv.table[b0 / B + 1] * kv.block_stride;
          bt.next_kt = static_cast<const char*>(kv.k) + (next + h * Dh * B) * esize;
          bt.next_v = static_cast<const char*>(kv.v) + (next + h * Dh) * esize;
        }
        bt.ldk = B, bt.rows_valid = std::min(B, last_of_tile + 1 - b0), bt.ldv = kv_dim, bt.Dh = Dh;
        bt.n_slots = n_slots, bt.q = qs.data(), bt.limit = limit.data(), bt.scale = scale;
        bt.m = m, bt.l = l, bt.acc = accs.data(), bt.s = s.data();
        task(bt);
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
          const float* a = part_acc.data() + (job * slots + slot) * Dh;
          for (int64_t d = 0; d < Dh; ++d) o[d] += a[d] * c;
        }
        const float inv = 1.0f / l;
        for (int64_t d = 0; d < Dh; ++d) o[d] *= inv;
      }
    }
  }
}

}  // namespace nemo::cpu
