// The Nemotron-H forward pass over a batch of sequences (docs/architecture.md §3).
#pragma once
#include <cstdint>
#include <vector>

#include "cache/sequence_state.h"
#include "core/status.h"
#include "engine/backend.h"
#include "model/config.h"
#include "model/weights.h"

namespace nemo {

// One sequence's share of a batch: `n_tokens` new tokens appended to `seq`.
enum class Logits { kNone, kLast, kAll };

struct BatchItem {
  SequenceState* seq;
  const int32_t* tokens;
  int64_t n_tokens;
  Logits logits;  // which of its new positions get logits
};

// Activation buffers sized once for the largest batch (max_rows tokens), reused by every call.
class Workspace {
 public:
  Workspace(Backend* backend, const NemotronHConfig& config, int64_t max_rows);
  ~Workspace();
  Status init();
  int64_t max_rows() const { return max_rows_; }
  // lm_head runs on at most this many rows at a time, so the logits buffer stays small (vocab 131072).
  static constexpr int64_t kLogitRows = 16;

  float* h = nullptr;       // [R, hidden]       residual stream
  float* u = nullptr;       // [R, hidden]       normed input of the current block
  float* proj = nullptr;    // [R, max(in_proj, q+2kv, intermediate)]  first projection
  float* conv = nullptr;    // [R, conv_dim]     x|B|C after conv + SiLU
  float* mix = nullptr;     // [R, max(d_inner, q_dim)]  SSM output / attention output
  float* out = nullptr;     // [R, hidden]       block output before the residual add
  float* logits = nullptr;  // [kLogitRows, vocab]
  int64_t proj_ld = 0;
  // MoE blocks only (allocated when the pattern has an 'E'): the routed sum, for a backend's moe op.
  float* moe_acc = nullptr;  // [R, hidden]

 private:
  Backend* backend_;
  const NemotronHConfig& config_;
  int64_t max_rows_;
};

// Bytes of weight matrices read by every forward pass of the process so far (each product counts its
// whole matrix once; the small f32 vectors are not counted). bench/ divides its growth by the tokens
// decoded to report the bytes read per token.
int64_t weight_bytes_read();

// Runs the items' tokens through the model, updates each sequence's state, and writes the requested
// logits to `logits_host` row by row in item order (none, the last or all positions, per item).
// Total tokens must not exceed ws.max_rows(); each sequence must have room (reserve) already.
Status forward(Backend& backend, const NemotronHConfig& config, const ModelWeights& weights,
               Workspace& ws, const std::vector<BatchItem>& items, float* logits_host);

}  // namespace nemo
