// Scheduler: the engine owns every generation request from registration to its last token.
//
// A request is registered once (submit) with everything that stays constant: prompt tokens, sampling
// parameters, end tokens, token budget, the positions at which to snapshot and whether to reuse the
// prefix cache. Each step (on a worker thread, one at a time) then admits queued requests into free
// sequence slots (FIFO, maxSequences; a request whose prompt extends a prefill-only request still
// running waits for it, then restores its result), restores their longest cached prefix, cuts prompt
// chunks (step_plan.h), runs ONE forward pass over every request that wants progress, samples, takes and caches
// snapshots, frees finished sequences, evicts the cache down to its budget, and returns only events:
// admissions, (request, token) pairs, snapshots, finished requests.
//
// The JavaScript side keeps the text work (detokenizing, stop strings, the reasoning split and thinking
// budget, tool calls) and backpressure: after each sampled token a request waits until resume() says
// its consumer wants more, optionally with tokens to force in (`</think>` when a thinking budget ends).
//
// Thread safety: submit, resume, cancel, pin and the counters are called from the JS thread and only
// take `mu_` for O(1) work (a submit copies its prompt before locking). Nothing on that path waits for
// a step: the step holds `mu_` only while it exchanges flags with the JS side, never during compute.
#pragma once
#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "core/status.h"
#include "engine/grammar.h"
#include "engine/sampler.h"

namespace nemo {

class Engine;
class SequenceState;

// Which prompt positions return logits (evaluate): none, the last, or every one.
enum class RequestLogits : int32_t { kNone = 0, kLast = 1, kAll = 2 };

struct RequestSpec {
  std::vector<int32_t> prompt;
  SamplingParams sampling;
  std::vector<int32_t> eos;            // sampled end tokens finish the request (not emitted)
  int64_t max_tokens = 0;              // tokens to generate, forced ones included; 0 = none (prefill only)
  RequestLogits logits = RequestLogits::kNone;
  bool reuse_prefix = true;            // restore the longest cached prefix of the prompt
  std::vector<int64_t> snapshot_at;    // prompt positions in (0, prompt.size()] to snapshot and cache
  std::vector<int64_t> pin_at;         // of those, the ones whose snapshot is pinned for the caller
  int64_t snapshot_every = 0;          // also every this many prompt positions; 0 = off
  int32_t top_logprobs = -1;           // 0..20: log-prob of each emitted token and of the k most likely
                                       // tokens, from the raw model distribution (log-softmax of the
                                       // logits before penalties, bias and temperature); -1 = off.
                                       // On: the request samples on the host.
  // Grammar-constrained decoding (engine/grammar.h); null = unconstrained (costs nothing). Each
  // sampled token is drawn under the grammar's mask once its triggers have been generated; the mask
  // for a step is computed on a second thread while that step's forward pass runs.
  std::shared_ptr<GrammarSpec> grammar;
};

// Why a request ended. kStop: an end token; kLength: max_tokens or the context; kDone: a request
// without tokens to generate finished its prompt; kCancelled: cancel(); kError: `error` says why.
enum class RequestEnd : int32_t { kStop = 0, kLength = 1, kDone = 2, kCancelled = 3, kError = 4 };

struct StepEvents {
  struct Admitted {
    int64_t request;
    int64_t cached;  // prompt tokens restored from the prefix cache
  };
  struct Token {
    int64_t request;
    int32_t token;
  };
  struct Snapshot {
    int64_t request;
    int64_t position;
    int32_t id;
    bool pinned;  // the caller holds a pin and must unpin(id)
  };
  struct Finished {
    int64_t request;
    RequestEnd reason;
    Status error;
    std::shared_ptr<std::vector<float>> logits;  // RequestLogits: the rows, row-major
  };
  std::vector<Admitted> admitted;
  std::vector<Token> tokens;
  std::vector<Snapshot> snapshots;
  std::vector<Finished> finished;
  // For requests with top_logprobs >= 0, per emitted token (in token order): request, token, its
  // log-prob, k, then k (token id, log-prob) pairs, most likely first.
  std::vector<double> logprobs;
  int64_t tokens_processed = 0;  // fed through the forward pass in this step
  bool ran_forward = false;
};

class Scheduler {
 public:
  explicit Scheduler(Engine* engine);
  ~Scheduler();

  // ---- JS thread: O(1) under mu_ ------------------------------------------------------------------------
  int64_t submit(RequestSpec spec);
  // The consumer wants the next token; `forced` tokens are fed before it is sampled. False: no such request.
  bool resume(int64_t request, const int32_t* forced, int64_t n_forced);
  // Ends a request at the next step (its sequence is freed there); false: no such request.
  bool cancel(int64_t request);
  // Adds or removes a pin on a cached snapshot, applied in order at the next step (a fork pins its
  // anchor while the original still holds its own pin, so the entry cannot be evicted in between).
  void pin(int32_t snapshot_id, int32_t delta);
  // Whether a step now would do anything (admit, compute, cancel or unpin).
  bool has_work() const;

  int64_t queued() const;
  int32_t live_sequences() const { return live_.load(); }
  int64_t live_requests() const;
  int64_t sequence_bytes() const { return sequence_bytes_.load(); }
  // Grammar-constrained decoding cost (bench/grammar.ts): masks computed, the time computing them (beside
  // the forward pass), and the time the step spent on grammars outside it (waiting for masks after the
  // forward pass, advancing matchers).
  struct GrammarStats {
    int64_t masks = 0;
    int64_t mask_ns = 0;
    int64_t exposed_ns = 0;
  };
  GrammarStats grammar_stats() const { return {g_masks_.load(), g_mask_ns_.load(), g_exposed_ns_.load()}; }

  // ---- worker thread: one step at a time ----------------------------------------------------------------
  Status step(StepEvents* events);
  // Ends every request (engine closing); run on a worker.
  void cancel_all();

 private:
  struct Request;
  void finish(Request* r, RequestEnd reason, const Status& error, StepEvents* ev);
  Status admit(Request* r, StepEvents* ev);
  Status take_snapshot_at(Request* r, StepEvents* ev);
  bool extends_pending_prefill(const Request& r) const;  // mu_ held

  Engine* engine_;
  mutable std::mutex mu_;                          // JS-facing flags below
  std::map<int64_t, std::unique_ptr<Request>> requests_;
  std::deque<int64_t> queue_;                      // waiting for a sequence slot, FIFO
  std::vector<std::pair<int32_t, int32_t>> pin_ops_;  // (snapshot id, delta), in call order
  int64_t next_id_ = 1;
  bool pending_cancel_ = false;
  std::atomic<int32_t> live_{0};
  std::atomic<int64_t> sequence_bytes_{0};
  std::atomic<int64_t> g_masks_{0}, g_mask_ns_{0}, g_exposed_ns_{0};
};

}  // namespace nemo
