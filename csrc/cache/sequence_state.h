// The state one sequence carries between forward calls (architecture.md §4): for each Mamba layer a
// conv window [K-1, conv_dim] and an SSM state [H, P, N], both f32; for each attention layer its K and
// V rows [capacity, Hkv*Dh] f32, grown geometrically up to the planned context. MLP layers hold
// nothing. Memory belongs to the backend (host or device).
#pragma once
#include <cstdint>
#include <vector>

#include "core/status.h"
#include "engine/backend.h"
#include "model/config.h"

namespace nemo {

class SequenceState {
 public:
  SequenceState(Backend* backend, const NemotronHConfig& config, int64_t max_context);
  ~SequenceState();
  SequenceState(const SequenceState&) = delete;
  SequenceState& operator=(const SequenceState&) = delete;

  // Allocates the fixed-size Mamba state. Fails with kOutOfMemory.
  Status init();

  int64_t n_past() const { return n_past_; }
  int64_t max_context() const { return max_context_; }

  // Layer index -> its slot among the Mamba (or attention) layers, or -1.
  float* conv_state(int64_t layer) { return conv_[slot_[layer]]; }
  float* ssm_state(int64_t layer) { return ssm_[slot_[layer]]; }
  float* k_cache(int64_t layer) { return k_[slot_[layer]]; }
  float* v_cache(int64_t layer) { return v_[slot_[layer]]; }

  // Makes room for `extra` more positions in every attention layer's cache. kContextOverflow past
  // max_context, kOutOfMemory when the backend cannot grow.
  Status reserve(int64_t extra);
  // Records that `tokens` were processed (their K/V rows written at [n_past, n_past + n)).
  void advance(const int32_t* tokens, int64_t n) {
    tokens_.insert(tokens_.end(), tokens, tokens + n);
    n_past_ += n;
  }
  // Every token the sequence holds, in order (the sampler's penalties read it).
  const std::vector<int32_t>& tokens() const { return tokens_; }
  // Back to a fresh sequence (zero state, empty KV), keeping the allocations.
  void reset();

  int64_t state_bytes() const;  // conv + SSM + allocated KV, in bytes

 private:
  Backend* backend_;
  const NemotronHConfig& config_;
  int64_t max_context_;
  int64_t n_past_ = 0;
  int64_t kv_capacity_ = 0;
  std::vector<int32_t> tokens_;
  std::vector<int64_t> slot_;
  std::vector<float*> conv_, ssm_, k_, v_;
};

}  // namespace nemo
