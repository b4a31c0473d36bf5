// The state one sequence carries between forward calls (architecture.md §4): for each Mamba layer a
// conv window [K-1, conv_dim] and an SSM state [H, P, N], both f32 and fixed in size; for the attention
// layers, a table of KV blocks in the shared pool (kv_pool.h) covering its positions. MLP layers hold
// nothing. A Snapshot is the same state frozen at a position: copies of the Mamba state (small and
// fixed) plus references to the KV blocks (shared, not copied) — which is what makes snapshots, prefix
// reuse and fork cheap on a hybrid model.
#pragma once
#include <cstdint>
#include <mutex>
#include <vector>

#include "cache/kv_pool.h"
#include "core/status.h"
#include "core/device_memory.h"
#include "core/views.h"
#include "model/config.h"

namespace nemo {

class Snapshot {
 public:
  Snapshot(DeviceMemory* memory, KvPool* pool) : memory_(memory), pool_(pool) {}
  ~Snapshot();
  Snapshot(const Snapshot&) = delete;
  Snapshot& operator=(const Snapshot&) = delete;

  int64_t n_past = 0;
  std::vector<int32_t> tokens;  // the tokens the state has seen, in order
  std::vector<float*> conv;     // per Mamba layer, [K-1, conv_dim]
  std::vector<float*> ssm;      // per Mamba layer, [H, P, N]
  std::vector<int32_t> blocks;  // KV blocks covering [0, n_past), one reference each

  int64_t state_bytes = 0;       // the Mamba state copies
  int64_t host_state_bytes = 0;  // of those, moved to host memory (DeviceMemory::offload)

 private:
  DeviceMemory* memory_;
  KvPool* pool_;
};

// A free list of Mamba state buffers (conv window + SSM state per Mamba layer). A new sequence takes the
// buffers a finished one gave back instead of allocating: at the 9B shape that is ~145 MB a sequence,
// and fresh pages cost a page fault each on first write. The list holds at most as many sets as were
// live at once (maxSequences), memory the plan counts anyway.
class MambaStatePool {
 public:
  MambaStatePool(DeviceMemory* memory, size_t n_layers, size_t conv_floats, size_t ssm_floats)
      : memory_(memory), n_layers_(n_layers), conv_floats_(conv_floats), ssm_floats_(ssm_floats) {}
  ~MambaStatePool();
  MambaStatePool(const MambaStatePool&) = delete;
  MambaStatePool& operator=(const MambaStatePool&) = delete;

  struct Buffers {
    std::vector<float*> conv, ssm;
  };
  // A set of buffers; *zeroed says whether they are known to hold zeros (fresh ones do).
  Status take(Buffers* out, bool* zeroed);
  void give(Buffers* b);  // back to the list; *b is left empty
  size_t free_sets() const;

 private:
  static void free_set(DeviceMemory* memory, Buffers* b);
  DeviceMemory* memory_;
  size_t n_layers_, conv_floats_, ssm_floats_;
  mutable std::mutex mu_;
  std::vector<Buffers> free_;
};

class SequenceState {
 public:
  // `states`, when given, lends the Mamba buffers (and takes them back when the sequence ends).
  SequenceState(DeviceMemory* memory, KvPool* pool, const NemotronHConfig& config, int64_t max_context,
                MambaStatePool* states = nullptr);
  ~SequenceState();
  SequenceState(const SequenceState&) = delete;
  SequenceState& operator=(const SequenceState&) = delete;

  // Allocates the fixed-size Mamba state, zeroed unless `will_restore` (a restore overwrites it all).
  // Fails with kOutOfMemory.
  Status init(bool will_restore = false);

  int64_t n_past() const { return n_past_; }
  int64_t max_context() const { return max_context_; }

  float* conv_state(int64_t layer) { return conv_[slot_[layer]]; }
  float* ssm_state(int64_t layer) { return ssm_[slot_[layer]]; }
  // This sequence's KV blocks in attention layer `layer`.
  KvBlocks kv(int64_t layer) const { return pool_->view(slot_[layer], table_.data()); }

  // Makes positions [n_past, n_past + extra) writable: blocks allocated as needed, and the block holding
  // n_past copied first if it is shared (copy-on-write). kContextOverflow past max_context;
  // kOutOfMemory when the pool has no free block.
  Status reserve(int64_t extra);
  // Records that `tokens` were processed (their K/V rows written at [n_past, n_past + n)).
  void advance(const int32_t* tokens, int64_t n) {
    tokens_.insert(tokens_.end(), tokens, tokens + n);
    n_past_ += n;
  }
  // Every token the sequence holds, in order (the sampler's penalties read it).
  const std::vector<int32_t>& tokens() const { return tokens_; }

  // Back to a fresh sequence: Mamba state zeroed, KV blocks released.
  void reset();
  // Freezes the current state into `out` (Mamba state copied, KV blocks shared).
  Status snapshot(Snapshot* out) const;
  // Replaces the current state with a snapshot's (Mamba state copied, KV blocks shared).
  Status restore(const Snapshot& snap);

  int64_t mamba_state_bytes() const;
  int64_t state_bytes() const;  // Mamba state + KV blocks held
  const std::vector<int32_t>& block_table() const { return table_; }

 private:
  size_t conv_floats() const { return static_cast<size_t>(config_.conv_state_floats()); }
  size_t ssm_floats() const { return static_cast<size_t>(config_.ssm_state_floats()); }
  void release_blocks();

  DeviceMemory* memory_;
  KvPool* pool_;
  const NemotronHConfig& config_;
  int64_t max_context_;
  MambaStatePool* states_;
  int64_t n_past_ = 0;
  std::vector<int64_t> slot_;  // layer -> index among its kind, or -1
  std::vector<float*> conv_, ssm_;
  std::vector<int32_t> table_;
  std::vector<int32_t> tokens_;
};

}  // namespace nemo
