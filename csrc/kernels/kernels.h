// The CPU kernels, one list. cuda/ mirrors these names and argument orders (plus a stream).
//
// Conventions for the whole codebase:
//   T = tokens in a batch, C = channels, H = Mamba heads, P = Mamba head dim, G = B/C groups,
//   N = SSM state size, K = conv kernel width, Hq/Hkv = attention query/kv heads, Dh = attention head dim.
//   Activations are f32, row-major [T, C]: row t starts at ptr + t * ld (ld = row stride in floats).
//   Weights are MatrixView in their stored dtype, PyTorch layout [out, in].
//   The views the kernels share with cuda/ and the engine (MatrixView, MatmulInput, SsmParams, KvBlocks)
//   are core/views.h's, in namespace nemo.
#pragma once
#include <cstdint>
#include <vector>

#include "core/thread_pool.h"
#include "core/views.h"

namespace nemo::cpu {

// ---- dense ---------------------------------------------------------------------------------------
// What matmul does with the activations (a model-wide choice, LoadOptions.precision):
//   kExact  x stays f32; the only rounding is f32 accumulation (the default; matches the float64
//           reference to ~1e-5 in log-probs).
//   kFast   x is rounded to the weights' dot-product type, as llama.cpp does: for BF16 weights, bf16
//           pairs multiplied by AVX-512 BF16 (vdpbf16ps) or aarch64 FEAT_BF16 (BFDOT / BFMMLA, which
//           round their sums to odd) — where the CPU or the forced path lacks them, BF16 computes as
//           kExact; for block-quantized weights, 8-bit blocks with an f32 scale and integer dot
//           products on every path (AVX-512 VNNI, AVX-VNNI, AVX2, NEON with or without SDOT / SMMLA,
//           scalar: the integer sums are the same on all). F32 and F16 weights compute as kExact.
// Both modes are batch invariant (below); they differ from each other by the activation rounding.
enum class MatmulPrecision { kExact = 0, kFast = 1 };

// y[T, N] = in(x)[T, Kin] · W[N, Kin]^T      (N = w.rows, Kin = w.cols); f32 accumulation.
void matmul(float* y, int64_t ldy, const float* x, int64_t ldx, const MatrixView& w, int64_t T,
            ThreadPool& pool, MatmulPrecision precision = MatmulPrecision::kExact,
            MatmulInput input = MatmulInput::kPlain);

// matmul for block-quantized W (Q8_0, Q4_0, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K; w.cols a multiple of the block size),
// reading the blocks in place; matmul calls it for those dtypes. Batch invariant like matmul.
void matmul_quant(float* y, int64_t ldy, const float* x, int64_t ldx, const MatrixView& w, int64_t T,
                  ThreadPool& pool, MatmulPrecision precision = MatmulPrecision::kExact,
                  MatmulInput input = MatmulInput::kPlain);

// y[t, :] = table[ids[t], :]  converted to f32.  ids must be in range (checked by the caller).
void embedding(float* y, const MatrixView& table, const int32_t* ids, int64_t T);

// ---- norms ---------------------------------------------------------------------------------------
// y[t] = w ⊙ x[t] / sqrt(mean(x[t]²) + eps).  y may alias x.
void rmsnorm(float* y, const float* x, const float* w, int64_t T, int64_t C, float eps);

// Mamba-2 output norm (norm_before_gate = false): v = y ⊙ silu(z); every group of `group_size`
// consecutive channels is RMS-normalised on its own; out = w ⊙ v.  out may alias y.
void rmsnorm_gated_grouped(float* out, const float* y, const float* z, int64_t ldz, const float* w,
                           int64_t T, int64_t C, int64_t group_size, float eps);

// ---- Mamba-2 -------------------------------------------------------------------------------------
// Causal depthwise conv1d + bias + SiLU over T new tokens of C channels, continuing from conv_state
// (the K-1 most recent raw inputs, oldest first, [K-1, C]; zeros for a fresh sequence) and leaving in
// it the K-1 most recent raw inputs after these T.  w is [C, K]; tap K-1 multiplies the newest token.
void conv1d_causal(float* y, const float* x, int64_t ldx, float* conv_state, const float* w,
                   const float* b, int64_t T, int64_t C, int64_t K);

// The same for exactly one token (decode), without the prefill bookkeeping.
void conv1d_step(float* y, const float* x, float* conv_state, const float* w, const float* b,
                 int64_t C, int64_t K);

// SsmParams (core/views.h): H, P, G, N, the dt clamp, A, D and dt_bias.
// Chunked SSD scan over T tokens (prefill), continuing from `state` [H, P, N] and leaving the final
// state in it.  x: [T, H*P] (ldx), dt_raw: [T, H] (lddt), B and C: [T, G*N] (ldbc), y: [T, H*P]
// contiguous.  y includes the D skip.  chunk_size sets only the rounding, not the result.
void ssd_chunk_scan(float* y, const float* x, int64_t ldx, const float* dt_raw, int64_t lddt,
                    const float* B, const float* C, int64_t ldbc, float* state, const SsmParams& p,
                    int64_t T, int64_t chunk_size, ThreadPool& pool);

// One-token selective state update (decode): same layouts with T = 1.
void ssm_state_update(float* y, const float* x, const float* dt_raw, const float* B, const float* C,
                      float* state, const SsmParams& p, ThreadPool& pool);

// ---- attention -----------------------------------------------------------------------------------
// Writes T rows of K and V (f32, row stride ld) at positions [pos, pos + T), converting to kv.dtype,
// in the block layout of KvBlocks (core/views.h).
void kv_store(const KvBlocks& kv, int64_t pos, const float* k_rows, const float* v_rows, int64_t ld,
              int64_t T, int64_t kv_dim);

// Causal grouped-query attention, no position encoding, scale 1/sqrt(Dh), over the paged cache that
// already holds past + T positions (the T new rows stored). Query t sits at position past + t and
// attends to positions 0..past+t. q: [T, Hq*Dh] (ldq); out: [T, Hq*Dh] contiguous. Query head j reads
// kv head j / (Hq / Hkv). One pass over the keys with an online softmax (memory does not grow with the
// context); each K/V row is converted once for all the query heads that share it.
void attention_gqa(float* out, const float* q, int64_t ldq, const KvBlocks& kv, int64_t past,
                   int64_t T, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, ThreadPool& pool);

// ---- mixture of experts (HF NemotronHMoE.route_tokens_to_experts) ------------------------------------
struct MoeRouting {
  int64_t n_experts;    // E (n_routed_experts)
  int64_t top_k;        // num_experts_per_tok
  int64_t n_group;      // expert groups (E / n_group experts each, consecutive)
  int64_t topk_group;   // groups a token may use
  bool norm_topk_prob;  // divide the k weights by their sum (+ 1e-20)
  float scaling;        // routed_scaling_factor, applied last
};

// Routes T tokens from their router logits [T, E] (row stride ld), all in f32 as HF does:
//   s = sigmoid(logit); c = s + bias                          (bias: e_score_correction_bias)
//   group score = sum of the 2 largest c in the group; keep the topk_group best groups (n_group > 1)
//   ids = the top_k largest c among the kept groups' experts
//   w = s[ids] (the bias selects but does not weigh); if norm: w /= (Σw + 1e-20); w *= scaling
// Ties are broken toward the lower index (group or expert), so the result is deterministic. ids and
// weights: [T, top_k], each row in descending order of c.
void moe_route(int32_t* ids, float* weights, const float* logits, int64_t ld, const float* bias, int64_t T,
               const MoeRouting& p);

// acc[rows[j], :] += w[j] * y[j, :] for j < n (y: [n, C] contiguous, acc row stride C).
void moe_scatter_add(float* acc, const float* y, const int32_t* rows, const float* w, int64_t n, int64_t C);

// Working memory of moe_forward, kept between calls (one per backend; not thread-safe).
struct MoeScratch {
  std::vector<float> logits, w, xg, h, sh;
  std::vector<int32_t> ids, order, active;
  std::vector<int64_t> offset, fill;
};

// A whole MoE block (HF NemotronHMoE) for T rows of x [T, H] (contiguous): router logits in f32,
// moe_route, then out[T, H] = shared(x) + Σ_k w_k · down_k(relu(up_k(x))²), the routed terms added to a
// +0 accumulator in ascending expert id, then to the shared expert's output (S = its width; 0: none,
// out = the routed sum). Slots are grouped by expert, so each chosen expert's matrices are read once for
// all its rows and the others not at all. Two parallel jobs after the routing: all up projections (the
// chosen experts' and the shared one's, in blocks of W rows), then per block of output channels all down
// projections and the weighted sum; matmul runs inline inside them. Batch invariant (a row's out does not
// depend on T or on the other rows): matmul is, and each row's sum has a fixed order. FP8 scales are
// applied as forward.cc's mm does. Returns the number of routed experts read.
// The layer's matrices: router [E, H] (F32), score_bias [E], up[e] [I, H], down[e] [H, I], shared_up [S, H],
// shared_down [H, S].
struct MoeMatrices {
  MatrixView router;
  const float* score_bias;
  const MatrixView* up;
  const MatrixView* down;
  MatrixView shared_up, shared_down;
};
int64_t moe_forward(float* out, const float* x, int64_t T, const MoeMatrices& w, const MoeRouting& p, int64_t H,
                    int64_t I, int64_t S, MoeScratch& s, ThreadPool& pool, MatmulPrecision precision);

// ---- MLP and elementwise -------------------------------------------------------------------------
// x = relu(x)², in place (the Nemotron-H MLP activation; the MLP is down(relu2(up(u)))).
void relu2(float* x, int64_t n);

// y += x
void add_inplace(float* y, const float* x, int64_t n);

}  // namespace nemo::cpu
