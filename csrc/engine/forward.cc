// THE forward pass. Read this file first: one residual block per character of
// hybrid_override_pattern, each `h = h + mixer(rmsnorm(h))`, then norm_f and lm_head.
//
// Rows of all sequences in the batch are packed ([R, C], R = Σ tokens): the projections (the bulk of
// the work) run once over all rows, so every weight is read once per step whatever the batch size.
// The stateful parts (conv window, SSM scan, attention over the KV cache) run per sequence.
#include "engine/forward.h"

#include <algorithm>
#include <atomic>

namespace nemo {

Workspace::Workspace(Backend* backend, const NemotronHConfig& config, int64_t max_rows)
    : backend_(backend), config_(config), max_rows_(max_rows) {}

Workspace::~Workspace() {
  for (float* p : {h, u, proj, conv, mix, out, logits, moe_acc}) if (p) backend_->free(p);
}

Status Workspace::init() {
  const NemotronHConfig& c = config_;
  proj_ld = std::max({c.in_proj_dim(), c.q_dim() + 2 * c.kv_dim(), c.intermediate_size, c.n_routed_experts,
                      c.moe_intermediate_size, c.moe_shared_expert_intermediate_size});
  const int64_t R = max_rows_;
  if (std::find(c.layers.begin(), c.layers.end(), BlockKind::kMoe) != c.layers.end()) {
    moe_acc = backend_->alloc(R * c.hidden_size);
    if (!moe_acc) return Status(StatusCode::kOutOfMemory, "cannot allocate the MoE activation workspace");
  }
  h = backend_->alloc(R * c.hidden_size);
  u = backend_->alloc(R * c.hidden_size);
  proj = backend_->alloc(R * proj_ld);
  conv = backend_->alloc(R * c.conv_dim());
  mix = backend_->alloc(R * std::max(c.d_inner(), c.q_dim()));
  out = backend_->alloc(R * c.hidden_size);
  logits = backend_->alloc(std::min(R, kLogitRows) * c.vocab_size);
  for (float* p : {h, u, proj, conv, mix, out, logits}) {
    if (!p) return Status(StatusCode::kOutOfMemory, "cannot allocate the activation workspace");
  }
  return Status::Ok();
}

namespace {

std::atomic<int64_t> g_weight_bytes_read{0};

// Every weight product of the forward pass goes through here, so the bytes of weights it reads are
// counted (weight_bytes_read in forward.h): a decode step's memory traffic, and the proof that an MoE
// step reads only the experts its tokens chose.
inline void mm(Backend& be, float* y, int64_t ldy, const float* x, int64_t ldx, const MatrixView& w, int64_t T,
               MatmulInput input = MatmulInput::kPlain) {
  g_weight_bytes_read.fetch_add(static_cast<int64_t>(dtype_row_bytes(w.dtype, w.cols)) * w.rows,
                                std::memory_order_relaxed);
  be.matmul(y, ldy, x, ldx, w, T, input);
  if (w.scaled() && be.host_memory()) {  // FP8 weights (weights.h MatrixView::scale); a device backend scales in its matmul
    for (int64_t t = 0; t < T; ++t) {
      float* row = y + t * ldy;
      if (w.row_scales) {
        for (int64_t n = 0; n < w.rows; ++n) row[n] *= w.row_scales[n];
      } else {
        for (int64_t n = 0; n < w.rows; ++n) row[n] *= w.scale;
      }
    }
  }
}

struct Ctx {
  Backend& be;
  const NemotronHConfig& cfg;
  Workspace& ws;
  const std::vector<BatchItem>& items;
  std::vector<int64_t> row0;  // first packed row of each item
  int64_t rows;
};

// Mamba-2 mixer (§3.2): in_proj -> [z | xBC | dt]; conv1d+SiLU on xBC; SSD scan; gated norm; out_proj.
void mamba_block(Ctx& c, int64_t layer, const MambaWeights& w) {
  const NemotronHConfig& cfg = c.cfg;
  const int64_t d_inner = cfg.d_inner(), conv_dim = cfg.conv_dim(), ld = c.ws.proj_ld;
  const int64_t GN = cfg.n_groups * cfg.ssm_state_size;
  mm(c.be, c.ws.proj, ld, c.ws.u, cfg.hidden_size, w.in_proj, c.rows,  // [R, in_proj_dim]
              MatmulInput::kPlain);
  const SsmParams sp{cfg.mamba_num_heads, cfg.mamba_head_dim, cfg.n_groups,
                          cfg.ssm_state_size, static_cast<float>(cfg.time_step_limit_min),
                          static_cast<float>(cfg.time_step_limit_max), w.A.data(),
                          w.D.data(), w.dt_bias.data()};
  for (size_t i = 0; i < c.items.size(); ++i) {
    const BatchItem& it = c.items[i];
    const int64_t r0 = c.row0[i], T = it.n_tokens;
    float* zxbcdt = c.ws.proj + r0 * ld;
    float* xbc = c.ws.conv + r0 * conv_dim;          // [T, conv_dim] = x | B | C after conv
    float* y = c.ws.mix + r0 * d_inner;               // [T, d_inner]
    const float* dt_raw = zxbcdt + d_inner + conv_dim;  // [T, H] (row stride ld)
    float* conv_state = it.seq->conv_state(layer);
    float* ssm_state = it.seq->ssm_state(layer);
    if (T == 1) {  // decode: one-step conv and state update
      c.be.conv1d_step(xbc, zxbcdt + d_inner, conv_state, w.conv_w.data(),
                       w.conv_b.data(), conv_dim, cfg.conv_kernel);
      c.be.ssm_state_update(y, xbc, dt_raw, xbc + d_inner, xbc + d_inner + GN, ssm_state, sp);
    } else {       // prompt: causal conv over the window, chunked SSD scan
      c.be.conv1d_causal(xbc, zxbcdt + d_inner, ld, conv_state, w.conv_w.data(),
                         w.conv_b.data(), T, conv_dim, cfg.conv_kernel);
      c.be.ssd_chunk_scan(y, xbc, conv_dim, dt_raw, ld, xbc + d_inner, xbc + d_inner + GN, conv_dim,
                          ssm_state, sp, T, cfg.chunk_size);
    }
  }
  // y ⊙ silu(z), RMS-normalised per group of d_inner / n_groups channels, then out_proj.
  c.be.rmsnorm_gated_grouped(c.ws.mix, c.ws.mix, c.ws.proj, ld, w.norm_w.data(), c.rows, d_inner,
                             d_inner / cfg.n_groups, static_cast<float>(cfg.layer_norm_epsilon));
  mm(c.be, c.ws.out, cfg.hidden_size, c.ws.mix, d_inner, w.out_proj, c.rows,
              MatmulInput::kPlain);
}

// Grouped-query attention (§3.4): no position encoding; new K/V rows appended to each sequence.
void attention_block(Ctx& c, int64_t layer, const AttentionWeights& w) {
  const NemotronHConfig& cfg = c.cfg;
  const int64_t q_dim = cfg.q_dim(), kv_dim = cfg.kv_dim(), ld = c.ws.proj_ld;
  float* q = c.ws.proj;            // [R, q_dim]   (row stride ld)
  float* k = c.ws.proj + q_dim;    // [R, kv_dim]
  float* v = k + kv_dim;           // [R, kv_dim]
  mm(c.be, q, ld, c.ws.u, cfg.hidden_size, w.q_proj, c.rows, MatmulInput::kPlain);
  mm(c.be, k, ld, c.ws.u, cfg.hidden_size, w.k_proj, c.rows, MatmulInput::kPlain);
  mm(c.be, v, ld, c.ws.u, cfg.hidden_size, w.v_proj, c.rows, MatmulInput::kPlain);
  for (size_t i = 0; i < c.items.size(); ++i) {
    const BatchItem& it = c.items[i];
    const int64_t r0 = c.row0[i], T = it.n_tokens, past = it.seq->n_past();
    const KvBlocks kv = it.seq->kv(layer);
    c.be.kv_store(kv, past, k + r0 * ld, v + r0 * ld, ld, T, kv_dim);  // append, then attend
    c.be.attention_gqa(c.ws.mix + r0 * q_dim, q + r0 * ld, ld, kv, past, T,
                       cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim);
  }
  mm(c.be, c.ws.out, cfg.hidden_size, c.ws.mix, q_dim, w.o_proj, c.rows,
              MatmulInput::kPlain);
}

// MLP (§3.3): down(relu(up(u))²), no gate; relu² is applied by the down product as it reads.
void mlp_block(Ctx& c, const MlpWeights& w) {
  const NemotronHConfig& cfg = c.cfg;
  const int64_t inter = cfg.intermediate_size;
  mm(c.be, c.ws.proj, inter, c.ws.u, cfg.hidden_size, w.up_proj, c.rows,
              MatmulInput::kPlain);
  mm(c.be, c.ws.out, cfg.hidden_size, c.ws.proj, inter, w.down_proj, c.rows,
              MatmulInput::kRelu2);
}

// Mixture of experts (HF NemotronHMoE): out = shared(u) + Σ_k w_k · expert_{id_k}(u), every expert a
// relu² MLP down(relu(up(u))²), routed by f32 router logits (kernels.h moe_route). The backend's moe op
// does the whole block (CPU: kernels.h moe_forward; CUDA: cuda/moe.cu, routing on the device). Tokens are
// grouped by expert, so each selected expert's weights are read once per step for all the rows that
// chose it, and experts nobody chose are not read at all. Each row's routed sum is accumulated in
// ascending expert order whatever the batch holds, and the products are batch invariant, so a sequence's
// result does not depend on the other rows of the batch.
void moe_block(Ctx& c, const MoeWeights& w) {
  const NemotronHConfig& cfg = c.cfg;
  Workspace& ws = c.ws;
  const int64_t R = c.rows, H = cfg.hidden_size, E = cfg.n_routed_experts, K = cfg.num_experts_per_tok;
  const int64_t S = cfg.moe_shared_expert_intermediate_size;
  const cpu::MoeRouting rp{E, K, cfg.n_group, cfg.topk_group, cfg.norm_topk_prob,
                           static_cast<float>(cfg.routed_scaling_factor)};
  const int64_t read = c.be.moe(ws.out, ws.moe_acc, ws.proj, ws.u, R, w, rp, H, cfg.moe_intermediate_size, S);
  // Bytes of weights read: the router, the routed experts read (a device backend does not tell the host
  // which: min(E, R·K), exact for decode) and the shared expert.
  const int64_t used = read >= 0 ? read : std::min(E, R * K);
  auto bytes = [](const MatrixView& m) {
    return m.rows == 0 ? int64_t{0} : static_cast<int64_t>(dtype_row_bytes(m.dtype, m.cols)) * m.rows;
  };
  g_weight_bytes_read.fetch_add(bytes(w.router) + used * (bytes(w.up[0]) + bytes(w.down[0])) + bytes(w.shared_up) +
                                    bytes(w.shared_down),
                                std::memory_order_relaxed);
}

}  // namespace

int64_t weight_bytes_read() { return g_weight_bytes_read.load(std::memory_order_relaxed); }

Status forward(Backend& backend, const NemotronHConfig& config, const ModelWeights& weights,
               Workspace& ws, const std::vector<BatchItem>& items, float* logits_host) {
  Ctx c{backend, config, ws, items, {}, 0};
  for (const BatchItem& it : items) {
    c.row0.push_back(c.rows);
    c.rows += it.n_tokens;
  }
  if (c.rows == 0) return Status::Ok();
  if (c.rows > ws.max_rows()) {
    return Status(StatusCode::kInternal, "forward: batch larger than the workspace");
  }
  if (!backend.has_moe() &&
      std::find(config.layers.begin(), config.layers.end(), BlockKind::kMoe) != config.layers.end())
    return Status(StatusCode::kUnsupportedModel, std::string("MoE blocks ('E'): the ") + backend.name() +
                                                     " backend has no MoE kernels");

  const int64_t hidden = config.hidden_size;
  const float eps = static_cast<float>(config.layer_norm_epsilon);
  // A pure decode pass (one token per item) may be recorded and replayed by the backend (backend.h).
  const bool decode = std::all_of(items.begin(), items.end(), [](const BatchItem& it) { return it.n_tokens == 1; });
  backend.begin_step(decode ? Backend::StepKind::kDecode : Backend::StepKind::kPrefill, c.rows);

  // h = embeddings[tokens]   (no scaling)
  for (size_t i = 0; i < items.size(); ++i) {
    backend.embedding(ws.h + c.row0[i] * hidden, weights.embeddings, items[i].tokens,
                      items[i].n_tokens);
  }
  for (int64_t l = 0; l < config.num_layers(); ++l) {
    const LayerWeights& lw = weights.layers[l];
    backend.rmsnorm(ws.u, ws.h, lw.norm.data(), c.rows, hidden, eps);  // the block's pre-norm
    switch (lw.kind) {
      case BlockKind::kMamba: mamba_block(c, l, lw.mamba); break;
      case BlockKind::kAttention: attention_block(c, l, lw.attn); break;
      case BlockKind::kMlp: mlp_block(c, lw.mlp); break;
      case BlockKind::kMoe: moe_block(c, lw.moe); break;
    }
    backend.add_inplace(ws.h, ws.out, c.rows * hidden);  // residual
  }
  for (const BatchItem& it : items) it.seq->advance(it.tokens, it.n_tokens);

  // Final norm and lm_head, only on the rows whose logits were asked for.
  int64_t n_out = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    if (items[i].logits == Logits::kNone) continue;
    const int64_t first = items[i].logits == Logits::kAll ? 0 : items[i].n_tokens - 1;
    for (int64_t t = first; t < items[i].n_tokens; ++t) {
      backend.copy(ws.u + n_out * hidden, ws.h + (c.row0[i] + t) * hidden, hidden);
      ++n_out;
    }
  }
  if (n_out == 0) {
    backend.end_step();
    return backend.take_error();
  }
  backend.rmsnorm(ws.u, ws.u, weights.norm_f.data(), n_out, hidden, eps);
  const int64_t vocab = config.vocab_size;
  for (int64_t r = 0; r < n_out; r += Workspace::kLogitRows) {  // bounded logits buffer
    const int64_t n = std::min(Workspace::kLogitRows, n_out - r);
    mm(backend, ws.logits, vocab, ws.u + r * hidden, hidden, weights.lm_head, n,
                   MatmulInput::kPlain);
    backend.to_host(logits_host + r * vocab, ws.logits, static_cast<size_t>(n * vocab));
  }
  backend.end_step();
  return backend.take_error();
}

}  // namespace nemo
