// Engine: the plain C++ API of the library (the N-API addon wraps it; C++ tests and benchmarks use it
// directly). Owns the weights, the backend, the sequences and the activation workspace.
//
// Requests: scheduler() owns generation requests end to end (scheduler.h): that is the library's path,
// and the only one the JS thread calls synchronously (it never waits for compute). The sequence-level
// methods below (create_sequence, evaluate, step, snapshot_sequence, restore_sequence, ...) are the
// engine's plain C++ API for native tests and benchmarks: compute is serialised on compute_mu_, so
// they may wait for a running step and must be called from worker threads.
#pragma once
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "cache/kv_pool.h"
#include "cache/prefix_cache.h"
#include "cache/sequence_state.h"
#include "core/status.h"
#include "engine/backend.h"
#include "engine/forward.h"
#include "engine/sampler.h"
#include "engine/scheduler.h"
#include "model/config.h"
#include "model/weights.h"

namespace nemo {

struct EngineOptions {
  int n_threads = 0;              // 0 = one per hardware thread
  int64_t context_length = 0;     // tokens per sequence; 0 = the config's max_position_embeddings
  int32_t max_sequences = 8;      // live sequences at once
  int64_t max_batch_tokens = 256; // tokens per forward pass: prompts are prefilled in chunks of this
  DType kv_dtype = DType::F16;    // KV cache storage: F16 (default) or F32
  int64_t cache_bytes = int64_t{1} << 30;  // the prefix cache's budget (and KV pool room for snapshots)
  std::string device = "cpu";     // "cpu", or "cuda" / "cuda:N" (builds with NEMOTRON_CUDA only)
  cpu::MatmulPrecision matmul_precision = cpu::MatmulPrecision::kExact;  // kernels.h
  WeightsPlacement weights = WeightsPlacement::kMmap;  // CPU: mapped files or a huge-page copy (weights.h)
};

struct CacheStats {
  int64_t cache_entries = 0;             // snapshots in the prefix cache
  int64_t cache_bytes = 0;               // what the prefix cache holds (its budget is options.cache_bytes)
  int64_t cache_hits = 0;                // requests that restored a cached prefix ...
  int64_t cache_tokens_reused = 0;       // ... and the prompt tokens that saved
  int64_t kv_blocks_total = 0;
  int64_t kv_blocks_used = 0;
  int64_t kv_block_bytes = 0;
  int64_t snapshots = 0;
  int64_t snapshot_state_bytes = 0;      // Mamba state copies held by snapshots
  int64_t snapshot_host_state_bytes = 0; // ... of which moved to host memory (offload_snapshot_states)
  int64_t snapshot_only_kv_blocks = 0;   // blocks referenced by snapshots and by no live sequence
};

class Engine {
 public:
  static Status load(const std::string& dir, const EngineOptions& options, std::unique_ptr<Engine>* out);
  ~Engine();

  const NemotronHConfig& config() const { return config_; }
  const ModelWeights& weights() const { return weights_; }
  const EngineOptions& options() const { return options_; }
  const char* backend_name() const { return backend_->name(); }
  int n_threads() const { return backend_->n_threads(); }

  Status create_sequence(int32_t* id);
  Status free_sequence(int32_t id);
  Status sequence_length(int32_t id, int64_t* n_past) const;
  int32_t live_sequences() const;  // sequence-level API only; requests: scheduler().live_sequences()
  // Bytes held by live sequences (conv + SSM state and allocated KV); 0 when none is live.
  int64_t sequence_bytes() const;

  // Appends `n` tokens to sequence `id` and returns the logits of the last new position (all_logits
  // false: [vocab]) or of every new position ([n, vocab], row-major). Long inputs run in chunks of
  // max_batch_tokens; the result does not depend on the chunking beyond float rounding.
  Status evaluate(int32_t id, const int32_t* tokens, int64_t n, bool all_logits,
                  std::vector<float>* logits);

  // ---- snapshots: a sequence's state frozen at its current position ---------------------------------
  Status snapshot_sequence(int32_t seq, int32_t* snapshot_id);
  // Replaces the sequence's state with the snapshot's (the snapshot stays).
  Status restore_sequence(int32_t seq, int32_t snapshot_id);
  Status drop_snapshot(int32_t snapshot_id);
  // A self-describing byte image of a snapshot (Mamba state and the KV rows it covers), and back.
  Status export_snapshot(int32_t snapshot_id, std::vector<uint8_t>* out) const;
  // The imported snapshot goes into the prefix cache with one pin (the caller unpins it through the
  // scheduler when done); token ids and state values are checked.
  Status import_snapshot(const uint8_t* bytes, size_t size, const int32_t* tokens, int64_t n_tokens,
                         int32_t* snapshot_id);
  // O(1): figures published at the end of each step (and after import/drop), never a walk.
  CacheStats cache_stats() const;

  // Recomputes what cache_stats() returns; the scheduler calls it after each step, the sequence-level
  // API's callers after theirs (it takes the engine's bookkeeping locks: not while holding them).
  void publish_cache_stats();

  Scheduler& scheduler() { return *scheduler_; }
  PrefixCache& prefix_cache() { return *cache_; }
  // Moves snapshots' Mamba states to host memory (oldest snapshot first) until `bytes` have moved or
  // none is left on the device; returns the bytes moved. A device backend's way to make room: the
  // engine calls it when a Mamba state allocation fails, then retries once. Restores read the host copy
  // straight into the sequence's device state. 0 on backends without offload (the CPU).
  int64_t offload_snapshot_states(int64_t bytes);

  // Several sequences in ONE forward pass (their rows packed, each weight read once): item i appends
  // its tokens to its sequence; (*logits)[i] gets its last or all rows. The total number of tokens
  // must not exceed max_batch_tokens.
  struct BatchRequest {
    int32_t id;
    std::vector<int32_t> tokens;
    bool all_logits;
  };
  Status evaluate_batch(const std::vector<BatchRequest>& batch,
                        std::vector<std::vector<float>>* logits);

  // One step of continuous batching. Each request names a live sequence, the tokens it is waiting to
  // feed (a prompt's remainder, the last sampled token, forced tokens) and whether to sample once they
  // are all in. The scheduler (scheduler.h) decides how much of each runs now; all of it runs as ONE
  // forward pass. (*results)[i] says how many of request i's tokens were consumed and, if it finished
  // its input and asked to sample, the sampled token (else -1). Deferred requests consume 0.
  struct StepRequest {
    int32_t id;
    std::vector<int32_t> tokens;
    bool sample;
    SamplingParams sampling;
    int64_t n_prompt;  // sequence tokens before this request's generated ones (for the penalties)
    uint64_t draw;     // the sampler's counter: index of this token in its request
    // Absolute positions at which to snapshot the sequence (a piece is cut there, so the state at
    // exactly that position exists); ascending.
    std::vector<int64_t> snapshot_at;
  };
  struct StepResult {
    int64_t consumed = 0;
    int32_t token = -1;
    int64_t snapshot_position = -1;  // a snapshot was taken at this position ...
    int32_t snapshot_id = -1;        // ... with this id
  };
  Status step(const std::vector<StepRequest>& requests, std::vector<StepResult>* results);


 private:
  friend class Scheduler;
  Engine() = default;
  // A copy of the sequence's state; moves older snapshot states to the host and retries once when the
  // device is out of memory. compute_mu_ held.
  Status make_snapshot(const SequenceState& seq, std::shared_ptr<Snapshot>* out);
  std::shared_ptr<const Snapshot> any_snapshot(int32_t snapshot_id) const;  // debug map or cache
  Status acquire(int32_t id, std::shared_ptr<SequenceState>* seq);
  Status check_tokens(const int32_t* tokens, int64_t n) const;

  NemotronHConfig config_;
  ModelWeights weights_;
  EngineOptions options_;
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<KvPool> kv_pool_;
  std::unique_ptr<Workspace> workspace_;
  std::unique_ptr<MambaStatePool> states_;
  std::unique_ptr<PrefixCache> cache_;
  std::unique_ptr<Scheduler> scheduler_;
  std::atomic<int32_t> snapshot_ids_{1};  // one id space for debug snapshots and cache entries
  mutable std::mutex stats_mu_;
  CacheStats published_;  // stats_mu_

  mutable std::mutex seq_mu_;  // guards sequences_, snapshots_, next ids
  std::map<int32_t, std::shared_ptr<SequenceState>> sequences_;
  std::map<int32_t, std::shared_ptr<Snapshot>> snapshots_;
  int32_t next_id_ = 1;
  Status take_snapshot(const SequenceState& seq, int32_t* snapshot_id);
  Status find_snapshot(int32_t snapshot_id, std::shared_ptr<Snapshot>* out) const;
  int64_t offload_locked(int64_t bytes);          // offload_snapshot_states with compute_mu_ held

  std::mutex compute_mu_;  // one forward pass at a time
};

}  // namespace nemo
