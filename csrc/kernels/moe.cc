// Mixture-of-experts routing (kernels.h, moe_route) and the weighted scatter of expert outputs.
// Follows Hugging Face's NemotronHMoE.route_tokens_to_experts (modeling_nemotron_h.py) step by step,
// in f32 like the reference: sigmoid, + e_score_correction_bias for the choice only, group-limited
// top-k (groups scored by their two best experts), weights from the unbiased sigmoid, normalised by
// their sum + 1e-20, times routed_scaling_factor.
#include <algorithm>
#include <cmath>
#include <cstring>
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

// ---- the whole block (moe_forward) ----------------------------------------------------------------------
namespace nemo::cpu {
namespace {

// W rows [r0, r1) of m, viewed in place (every stored type keeps its rows contiguous).
MatrixView rows_of(const MatrixView& m, int64_t r0, int64_t r1) {
  MatrixView v = m;
  v.data = static_cast<const uint8_t*>(m.data) + static_cast<size_t>(r0) * dtype_row_bytes(m.dtype, m.cols);
  v.rows = r1 - r0;
  if (m.row_scales) v.row_scales = m.row_scales + r0;
  return v;
}

// y[T, r1 - r0] = in(x) · W[r0:r1]^T, and an FP8 matrix's scale as forward.cc's mm applies it. Called inside
// a pool job: matmul's own parallel_for runs inline on this thread. A row block gives bitwise the rows of
// the whole product: matmul's order depends on K and the rows' alignment, never on which rows it is given.
void product(float* y, int64_t ldy, const float* x, int64_t ldx, const MatrixView& m, int64_t r0, int64_t r1, int64_t T,
             ThreadPool& pool, MatmulPrecision precision, MatmulInput input) {
  const MatrixView v = rows_of(m, r0, r1);
  matmul(y, ldy, x, ldx, v, T, pool, precision, input);
  if (!v.scaled()) return;
  for (int64_t t = 0; t < T; ++t) {
    float* row = y + t * ldy;
    for (int64_t n = 0; n < v.rows; ++n) row[n] *= v.row_scales ? v.row_scales[n] : v.scale;
  }
}

thread_local std::vector<float> tls_down;  // one expert's down rows of a block [n, rows]
thread_local std::vector<float> tls_acc;   // the routed sum of a block [T, rows]

}  // namespace

int64_t moe_forward(float* out, const float* x, int64_t T, const MoeMatrices& w, const MoeRouting& p, int64_t H,
                    int64_t I, int64_t S, MoeScratch& s, ThreadPool& pool, MatmulPrecision precision) {
  const int64_t E = p.n_experts, K = p.top_k, TK = T * K;
  // Router logits in f32 (an F32 matrix: both precisions compute it exactly), then the routing.
  s.logits.resize(static_cast<size_t>(T * E));
  s.ids.resize(static_cast<size_t>(TK));
  s.w.resize(static_cast<size_t>(TK));
  matmul(s.logits.data(), E, x, H, w.router, T, pool, precision);
  moe_route(s.ids.data(), s.w.data(), s.logits.data(), E, w.score_bias, T, p);

  // Slots (t·K + k) grouped by expert, ascending within each expert (a stable counting sort).
  s.offset.assign(static_cast<size_t>(E + 1), 0);
  for (int64_t i = 0; i < TK; ++i) ++s.offset[static_cast<size_t>(s.ids[i]) + 1];
  for (int64_t e = 0; e < E; ++e) s.offset[e + 1] += s.offset[e];
  s.order.resize(static_cast<size_t>(TK));
  s.fill.assign(s.offset.begin(), s.offset.end() - 1);
  for (int64_t i = 0; i < TK; ++i) s.order[static_cast<size_t>(s.fill[s.ids[i]]++)] = static_cast<int32_t>(i);
  s.active.clear();
  for (int64_t e = 0; e < E; ++e)
    if (s.offset[e + 1] > s.offset[e]) s.active.push_back(static_cast<int32_t>(e));
  const int64_t n_active = static_cast<int64_t>(s.active.size());

  // Each expert's input rows, contiguous (a decode step's single row is used in place).
  const float* xg = x;
  if (T > 1) {
    s.xg.resize(static_cast<size_t>(TK * H));
    for (int64_t j = 0; j < TK; ++j)
      std::memcpy(s.xg.data() + j * H, x + (s.order[j] / K) * H, static_cast<size_t>(H) * sizeof(float));
    xg = s.xg.data();
  }
  s.h.resize(static_cast<size_t>(TK * I));
  s.sh.resize(static_cast<size_t>(T * S));

  // Job 1: every chosen expert's up projection and the shared expert's, in blocks of W rows: one
  // parallel job for all of them (no barrier per expert).
  const int64_t blk = T > 16 ? 256 : 64;
  const int64_t up_blocks = (I + blk - 1) / blk, sh_blocks = S > 0 ? (S + blk - 1) / blk : 0;
  pool.parallel_for(n_active * up_blocks + sh_blocks, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      if (b < n_active * up_blocks) {
        const int64_t a = b / up_blocks, r0 = (b % up_blocks) * blk, r1 = std::min(I, r0 + blk);
        const int64_t e = s.active[a], off = s.offset[e], n = s.offset[e + 1] - off;
        product(s.h.data() + off * I + r0, I, T > 1 ? xg + off * H : xg, H, w.up[e], r0, r1, n, pool, precision,
                MatmulInput::kPlain);
      } else {
        const int64_t r0 = (b - n_active * up_blocks) * blk, r1 = std::min(S, r0 + blk);
        product(s.sh.data() + r0, S, x, H, w.shared_up, r0, r1, T, pool, precision, MatmulInput::kPlain);
      }
    }
  });

  // Job 2: per block of output channels, the shared expert's down rows into out, each chosen expert's
  // down rows (relu² applied as the product reads h) weighted into the block's routed sum in ascending
  // expert order (each element from +0, as moe_scatter_add after a zeroed accumulator), then
  // out = shared + routed.
  int64_t oblk = blk;  // enough blocks for every thread (a prefill's 256 would leave threads idle)
  while (oblk > 16 && (H + oblk - 1) / oblk < 4 * pool.size()) oblk /= 2;
  const int64_t out_blocks = (H + oblk - 1) / oblk;
  pool.parallel_for(out_blocks, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t r0 = b * oblk, r1 = std::min(H, r0 + oblk), nr = r1 - r0;
      tls_acc.assign(static_cast<size_t>(T * nr), 0.0f);
      for (int64_t a = 0; a < n_active; ++a) {
        const int64_t e = s.active[a], off = s.offset[e], n = s.offset[e + 1] - off;
        tls_down.resize(static_cast<size_t>(n * nr));
        product(tls_down.data(), nr, s.h.data() + off * I, I, w.down[e], r0, r1, n, pool, precision,
                MatmulInput::kRelu2);
        for (int64_t j = 0; j < n; ++j) {
          const int32_t slot = s.order[off + j];
          const float wj = s.w[slot];
          float* acc = tls_acc.data() + (slot / K) * nr;
          const float* v = tls_down.data() + j * nr;
          for (int64_t c = 0; c < nr; ++c) acc[c] += wj * v[c];
        }
      }
      if (S > 0) {
        product(out + r0, H, s.sh.data(), S, w.shared_down, r0, r1, T, pool, precision, MatmulInput::kRelu2);
        for (int64_t t = 0; t < T; ++t)
          for (int64_t c = 0; c < nr; ++c) out[t * H + r0 + c] += tls_acc[t * nr + c];
      } else {
        for (int64_t t = 0; t < T; ++t)
          for (int64_t c = 0; c < nr; ++c) out[t * H + r0 + c] = tls_acc[t * nr + c];
      }
    }
  });
  return n_active;
}

}  // namespace nemo::cpu
