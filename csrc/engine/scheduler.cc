#include "engine/scheduler.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <chrono>
#include <future>
#include <string>

#include "cache/prefix_cache.h"
#include "cache/sequence_state.h"
#include "engine/engine.h"
#include "engine/step_plan.h"

namespace nemo {

struct Scheduler::Request {
  int64_t id = 0;
  RequestSpec spec;
  // Written by the JS thread, read by the step, under mu_.
  bool wanting = true;          // the consumer wants progress (cleared after each sampled token)
  bool cancelled = false;
  std::vector<int32_t> forced;  // tokens resume() asked to feed next
  int64_t input_left = 0;       // input.size() as of the last step (has_work)
  bool admitted = false;
  bool done = false;
  // The step's own (worker thread only).
  std::shared_ptr<SequenceState> seq;
  std::vector<int32_t> input;   // tokens waiting to be fed
  std::vector<int64_t> snaps;   // absolute positions still to snapshot at, ascending
  int64_t generated = 0;
  uint64_t draw = 0;
  std::shared_ptr<std::vector<float>> logits;
  std::unique_ptr<GrammarState> grammar;  // spec.grammar's state (worker thread only)
  std::vector<uint32_t> mask;             // its mask for this step's draw
};

Scheduler::Scheduler(Engine* engine) : engine_(engine) {}
Scheduler::~Scheduler() = default;

int64_t Scheduler::submit(RequestSpec spec) {
  auto r = std::make_unique<Request>();
  r->spec = std::move(spec);
  std::sort(r->spec.eos.begin(), r->spec.eos.end());
  std::lock_guard<std::mutex> lock(mu_);
  r->id = next_id_++;
  const int64_t id = r->id;
  requests_[id] = std::move(r);
  queue_.push_back(id);
  return id;
}

bool Scheduler::resume(int64_t request, const int32_t* forced, int64_t n_forced) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = requests_.find(request);
  if (it == requests_.end() || it->second->done) return false;
  it->second->wanting = true;
  it->second->forced.insert(it->second->forced.end(), forced, forced + n_forced);
  return true;
}

bool Scheduler::cancel(int64_t request) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = requests_.find(request);
  if (it == requests_.end() || it->second->done) return false;
  it->second->cancelled = true;
  pending_cancel_ = true;
  return true;
}

void Scheduler::pin(int32_t snapshot_id, int32_t delta) {
  std::lock_guard<std::mutex> lock(mu_);
  pin_ops_.emplace_back(snapshot_id, delta);
}

bool Scheduler::has_work() const {
  std::lock_guard<std::mutex> lock(mu_);
  if (pending_cancel_ || !pin_ops_.empty()) return true;
  if (!queue_.empty() && live_.load() < engine_->options().max_sequences) return true;
  for (const auto& [id, r] : requests_) {
    if (r->admitted && !r->done && r->wanting && (r->input_left > 0 || !r->forced.empty())) return true;
  }
  return false;
}

int64_t Scheduler::queued() const {
  std::lock_guard<std::mutex> lock(mu_);
  int64_t n = 0;
  for (int64_t id : queue_) {
    auto it = requests_.find(id);
    n += it != requests_.end() && !it->second->cancelled;
  }
  return n;
}

int64_t Scheduler::live_requests() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int64_t>(requests_.size());
}

void Scheduler::finish(Request* r, RequestEnd reason, const Status& error, StepEvents* ev) {
  if (r->done) return;
  r->done = true;
  if (r->seq) {
    r->seq.reset();  // Mamba buffers back to the free list, KV blocks released
    live_.fetch_sub(1);
  }
  r->input.clear();
  ev->finished.push_back(StepEvents::Finished{r->id, reason, error, std::move(r->logits)});
}

bool Scheduler::extends_pending_prefill(const Request& r) const {
  // A prefill-only request (the next turn's start of a conversation) still running or queued ahead
  // whose prompt is a prefix of this one: admitting now would compute the same tokens twice.
  for (const auto& [id, other] : requests_) {
    if (id >= r.id) break;  // only requests registered earlier (ids rise with registration)
    const RequestSpec& o = other->spec;
    if (other->done || other->cancelled || o.max_tokens != 0 || o.logits != RequestLogits::kNone) continue;
    if (o.prompt.size() <= r.spec.prompt.size() &&
        std::equal(o.prompt.begin(), o.prompt.end(), r.spec.prompt.begin())) {
      return true;
    }
  }
  return false;
}

Status Scheduler::admit(Request* r, StepEvents* ev) {
  Engine& e = *engine_;
  const std::vector<int32_t>& prompt = r->spec.prompt;
  const int64_t n = static_cast<int64_t>(prompt.size());
  if (n == 0) return Status(StatusCode::kInvalidArgument, "the prompt has no tokens");
  if (n > e.options_.context_length) {
    return Status(StatusCode::kContextOverflow, "the prompt has " + std::to_string(n) +
                                                    " tokens but the context length is " +
                                                    std::to_string(e.options_.context_length));
  }
  // A request that needs the last position's logits leaves at least one token to compute.
  const bool needs_last = r->spec.max_tokens > 0 || r->spec.logits != RequestLogits::kNone;
  PrefixCache::Hit hit;
  if (r->spec.reuse_prefix && r->spec.logits != RequestLogits::kAll) {
    hit = e.cache_->lookup(prompt.data(), n, needs_last ? n - 1 : n);
  }
  auto seq = std::make_shared<SequenceState>(e.backend_.get(), e.kv_pool_.get(), e.config_,
                                             e.options_.context_length, e.states_.get());
  Status st = seq->init(/*will_restore=*/hit.snapshot != nullptr);
  if (st.code() == StatusCode::kOutOfMemory && e.offload_locked(INT64_MAX) > 0) st = seq->init(hit.snapshot != nullptr);
  NEMO_RETURN_IF_ERROR(st);
  if (hit.snapshot) NEMO_RETURN_IF_ERROR(seq->restore(*hit.snapshot));
  r->seq = std::move(seq);
  if (r->spec.grammar) r->grammar = std::make_unique<GrammarState>(*r->spec.grammar, r->spec.eos);
  const int64_t cached = hit.snapshot ? hit.length : 0;
  r->input.assign(prompt.begin() + cached, prompt.end());
  if (r->spec.logits == RequestLogits::kAll) r->logits = std::make_shared<std::vector<float>>();
  ev->admitted.push_back(StepEvents::Admitted{r->id, cached});

  // Snapshot positions past the restored prefix. One that is cached already costs nothing: a pinned one
  // pins the existing entry, the others are skipped.
  std::vector<int64_t> at;
  for (int64_t p : r->spec.snapshot_at) if (p > cached && p <= n) at.push_back(p);
  if (r->spec.snapshot_every > 0) {
    for (int64_t p = r->spec.snapshot_every; p <= n; p += r->spec.snapshot_every) if (p > cached) at.push_back(p);
  }
  std::sort(at.begin(), at.end());
  at.erase(std::unique(at.begin(), at.end()), at.end());
  for (int64_t p : r->spec.pin_at) {
    if (p > 0 && p <= cached) at.insert(at.begin(), p);  // inside the restored prefix: pin if cached
  }
  for (int64_t p : at) {
    const bool pinned = std::find(r->spec.pin_at.begin(), r->spec.pin_at.end(), p) != r->spec.pin_at.end();
    const int32_t existing = e.cache_->find(prompt.data(), p);
    if (existing >= 0) {
      if (pinned && e.cache_->pin(existing, +1)) {
        ev->snapshots.push_back(StepEvents::Snapshot{r->id, p, existing, true});
      }
      continue;
    }
    if (p > cached) r->snaps.push_back(p);
  }
  return Status::Ok();
}

Status Scheduler::take_snapshot_at(Request* r, StepEvents* ev) {
  Engine& e = *engine_;
  const int64_t pos = r->seq->n_past();
  std::shared_ptr<Snapshot> snap;
  NEMO_RETURN_IF_ERROR(e.make_snapshot(*r->seq, &snap));
  const bool pinned = std::find(r->spec.pin_at.begin(), r->spec.pin_at.end(), pos) != r->spec.pin_at.end();
  const int32_t id = e.cache_->insert(std::move(snap), pinned ? 1 : 0);
  ev->snapshots.push_back(StepEvents::Snapshot{r->id, pos, id, pinned});
  return Status::Ok();
}

namespace {
bool all_finite(const float* x, int64_t n) {
  float acc = 0.0f;
  for (int64_t i = 0; i < n; ++i) acc += x[i] * 0.0f;  // NaN or ±Inf anywhere makes it NaN
  return acc == 0.0f;
}
// top_logprobs: [token, its log-prob, k, then k (id, log-prob) pairs, most likely first] of the raw
// distribution log_softmax(row), computed in double.
std::vector<double> logprobs_of(const float* row, int64_t vocab, int32_t token, int32_t k) {
  k = std::max<int32_t>(0, std::min<int32_t>(k, 20));
  double mx = -INFINITY;
  for (int64_t v = 0; v < vocab; ++v) mx = std::max(mx, static_cast<double>(row[v]));
  double sum = 0.0;
  for (int64_t v = 0; v < vocab; ++v) sum += std::exp(static_cast<double>(row[v]) - mx);
  const double lse = mx + std::log(sum);
  // The k largest: a small sorted list (k <= 20), ties broken by the lower id.
  std::vector<std::pair<float, int32_t>> top;
  top.reserve(static_cast<size_t>(k) + 1);
  for (int64_t v = 0; v < vocab && k > 0; ++v) {
    if (static_cast<int32_t>(top.size()) == k && !(row[v] > top.back().first)) continue;
    auto at = std::find_if(top.begin(), top.end(), [&](const std::pair<float, int32_t>& t) { return row[v] > t.first; });
    top.insert(at, {row[v], static_cast<int32_t>(v)});
    if (static_cast<int32_t>(top.size()) > k) top.pop_back();
  }
  std::vector<double> out;
  out.reserve(3 + 2 * top.size());
  out.push_back(token);
  out.push_back(static_cast<double>(row[token]) - lse);
  out.push_back(static_cast<double>(top.size()));
  for (const auto& [logit, id] : top) {
    out.push_back(id);
    out.push_back(static_cast<double>(logit) - lse);
  }
  return out;
}
}  // namespace

Status Scheduler::step(StepEvents* ev) {
  Engine& e = *engine_;
  std::lock_guard<std::mutex> compute(e.compute_mu_);
  std::vector<Request*> cancel_now, admit_now, run;
  std::vector<std::pair<int32_t, int32_t>> pin_ops;
  std::vector<std::pair<Request*, std::vector<int32_t>>> forced_grammar;  // forced tokens a grammar must see
  {
    std::lock_guard<std::mutex> lock(mu_);
    pin_ops.swap(pin_ops_);
    pending_cancel_ = false;
    for (auto& [id, r] : requests_) {
      if (r->cancelled && !r->done) cancel_now.push_back(r.get());
    }
    std::deque<int64_t> deferred;
    while (!queue_.empty() && live_.load() < e.options_.max_sequences) {
      auto it = requests_.find(queue_.front());
      queue_.pop_front();
      if (it == requests_.end() || it->second->cancelled) continue;
      if (extends_pending_prefill(*it->second)) {
        deferred.push_back(it->first);  // its prefix is being computed: restore it when cached
        continue;
      }
      it->second->admitted = true;
      live_.fetch_add(1);
      admit_now.push_back(it->second.get());
    }
    queue_.insert(queue_.begin(), deferred.begin(), deferred.end());
    for (auto& [id, r] : requests_) {
      if (!r->admitted || r->cancelled || r->done) continue;
      if (r->grammar && !r->forced.empty()) forced_grammar.emplace_back(r.get(), r->forced);
      r->input.insert(r->input.end(), r->forced.begin(), r->forced.end());
      r->generated += static_cast<int64_t>(r->forced.size());
      r->forced.clear();
      if (r->wanting) run.push_back(r.get());
    }
  }
  for (auto& [r, toks] : forced_grammar) for (int32_t t : toks) r->grammar->accept(t);
  for (auto [id, delta] : pin_ops) e.cache_->pin(id, delta);
  for (Request* r : cancel_now) finish(r, RequestEnd::kCancelled, Status::Ok(), ev);
  for (Request* r : admit_now) {
    if (r->done) continue;
    Status st = admit(r, ev);
    if (!st.ok()) {
      live_.fetch_sub(1);  // counted at admission; admit() fails before the request holds a sequence
      finish(r, RequestEnd::kError, st, ev);
      continue;
    }
    // A prefill-only request whose whole prompt was cached has nothing left to do.
    if (r->input.empty()) finish(r, RequestEnd::kDone, Status::Ok(), ev);
  }

  // ---- plan ONE forward pass over every request that wants progress -------------------------------
  std::vector<Request*> cand;
  std::vector<PlanInput> inputs;
  for (Request* r : run) {
    if (r->done || r->input.empty()) continue;
    if (r->seq->n_past() + static_cast<int64_t>(r->input.size()) > e.options_.context_length) {
      finish(r, RequestEnd::kLength, Status::Ok(), ev);  // forced tokens would run past the context
      continue;
    }
    const int64_t next_cut = r->snaps.empty() ? INT64_MAX : r->snaps.front();
    cand.push_back(r);
    inputs.push_back(PlanInput{r->seq->n_past(), static_cast<int64_t>(r->input.size()), next_cut});
  }
  const std::vector<PlanItem> plan = plan_step(inputs, e.options_.max_batch_tokens, e.workspace_->max_rows());
  struct Item {
    Request* r;
    int64_t count;
    Logits mode;
    bool sample;
  };
  std::vector<Item> items;
  for (const PlanItem& p : plan) {
    if (p.count == 0) continue;
    Request* r = cand[p.request];
    Status st = r->seq->reserve(p.count);
    if (!st.ok()) {
      finish(r, RequestEnd::kError, st, ev);
      continue;
    }
    const bool finishes = p.count == static_cast<int64_t>(r->input.size());
    const bool sample = finishes && r->spec.max_tokens > 0;
    Logits mode = Logits::kNone;
    if (r->spec.logits == RequestLogits::kAll) mode = Logits::kAll;
    else if (finishes && (sample || r->spec.logits == RequestLogits::kLast)) mode = Logits::kLast;
    items.push_back(Item{r, p.count, mode, sample});
  }

  if (!items.empty()) {
    const int64_t vocab = e.config_.vocab_size;
    std::vector<BatchItem> batch;
    int64_t rows = 0;
    bool host_rows = false;  // some request returns logits itself: sample on the host too
    for (const Item& it : items) {
      batch.push_back(BatchItem{it.r->seq.get(), it.r->input.data(), it.count, it.mode});
      rows += it.mode == Logits::kAll ? it.count : it.mode == Logits::kLast ? 1 : 0;
      host_rows |= it.r->spec.logits != RequestLogits::kNone || (it.sample && it.r->spec.top_logprobs >= 0) || it.r->grammar != nullptr;
      ev->tokens_processed += it.count;
    }
    // Grammar masks for this step's draws, computed beside the forward pass (they depend only on
    // the tokens accepted so far).
    std::future<void> masks;
    {
      std::vector<Request*> constrained;
      for (const Item& it : items) {
        if (it.sample && it.r->grammar && it.r->grammar->active()) constrained.push_back(it.r);
      }
      if (!constrained.empty()) {
        masks = std::async(std::launch::async, [this, constrained] {
          const auto t0 = std::chrono::steady_clock::now();
          for (Request* r : constrained) {
            r->mask.resize(static_cast<size_t>(r->grammar->mask_words()));
            r->grammar->mask(r->mask.data());
          }
          g_mask_ns_ += std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count();
          g_masks_ += static_cast<int64_t>(constrained.size());
        });
      }
    }
    // Device sampling (backend.h logits_sink/sample): the logits stay on the device, only ids come back.
    float* sink = host_rows || rows == 0 ? nullptr : e.backend_->logits_sink(rows, vocab);
    std::vector<float> logits(sink ? 0 : static_cast<size_t>(rows * vocab));
    Status st = forward(*e.backend_, e.config_, e.weights_, *e.workspace_, batch, sink ? sink : logits.data());
    if (masks.valid()) {
      const auto t0 = std::chrono::steady_clock::now();
      masks.get();
      g_exposed_ns_ += std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count();
    }
    ev->ran_forward = true;
    if (!st.ok()) {
      for (const Item& it : items) finish(it.r, RequestEnd::kError, st, ev);
      items.clear();
    }
    // Inputs consumed; snapshots at the positions just reached.
    for (const Item& it : items) {
      it.r->input.erase(it.r->input.begin(), it.r->input.begin() + it.count);
      if (!it.r->snaps.empty() && it.r->seq->n_past() == it.r->snaps.front()) {
        it.r->snaps.erase(it.r->snaps.begin());
        Status sst = take_snapshot_at(it.r, ev);
        if (!sst.ok()) finish(it.r, RequestEnd::kError, sst, ev);
      }
    }
    // Sampled tokens, from the device or from the host rows.
    std::vector<int32_t> sampled(items.size(), -1);
    std::vector<std::vector<double>> token_logprobs(items.size());  // top_logprobs: see StepEvents::logprobs
    if (sink) {
      std::vector<SampleSpec> specs;
      std::vector<size_t> which;
      for (size_t i = 0; i < items.size(); ++i) {
        if (!items[i].sample) continue;
        const std::vector<int32_t>& history = items[i].r->seq->tokens();
        specs.push_back(SampleSpec{&items[i].r->spec.sampling, history.data(), static_cast<int64_t>(history.size()),
                                   static_cast<int64_t>(items[i].r->spec.prompt.size()), items[i].r->draw});
        which.push_back(i);
      }
      std::vector<int32_t> ids(specs.size());
      Status sst = e.backend_->sample(specs, ids.data(), nullptr);
      for (size_t k = 0; k < which.size(); ++k) {
        if (sst.ok()) sampled[which[k]] = ids[k];
        else finish(items[which[k]].r, RequestEnd::kError, sst, ev);
      }
    } else {
      const float* row = logits.data();
      for (size_t i = 0; i < items.size(); ++i) {
        Request* r = items[i].r;
        const int64_t n_rows = items[i].mode == Logits::kAll ? items[i].count : items[i].mode == Logits::kLast ? 1 : 0;
        if (n_rows > 0 && !r->done) {
          if (r->spec.logits == RequestLogits::kAll) {
            r->logits->insert(r->logits->end(), row, row + n_rows * vocab);
          } else if (r->spec.logits == RequestLogits::kLast) {
            r->logits = std::make_shared<std::vector<float>>(row, row + vocab);
          }
          const float* last = row + (n_rows - 1) * vocab;
          if (items[i].sample) {
            if (!all_finite(last, vocab)) {
              finish(r, RequestEnd::kError,
                     Status(StatusCode::kNumerical, "the model produced non-finite logits (NaN or infinity) at position " +
                                                        std::to_string(r->seq->n_past() - 1) +
                                                        ": the weights or the computation overflowed"),
                     ev);
            } else {
              const std::vector<int32_t>& history = r->seq->tokens();
              const uint32_t* allow =
                  r->grammar && r->grammar->active() && !r->mask.empty() ? r->mask.data() : nullptr;
              sampled[i] = sample_token(last, vocab, r->spec.sampling, history.data(),
                                        static_cast<int64_t>(history.size()),
                                        static_cast<int64_t>(r->spec.prompt.size()), r->draw, allow);
              if (r->spec.top_logprobs >= 0) token_logprobs[i] = logprobs_of(last, vocab, sampled[i], r->spec.top_logprobs);
              if (r->grammar) {
                const auto t0 = std::chrono::steady_clock::now();
                r->grammar->accept(sampled[i]);
                g_exposed_ns_ += std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count();
              }
            }
          }
        }
        row += n_rows * vocab;
      }
    }
    for (size_t i = 0; i < items.size(); ++i) {
      Request* r = items[i].r;
      if (r->done) continue;
      if (!items[i].sample) {
        if (r->input.empty() && r->spec.max_tokens == 0) finish(r, RequestEnd::kDone, Status::Ok(), ev);
        continue;
      }
      const int32_t tok = sampled[i];
      r->draw++;
      if (std::binary_search(r->spec.eos.begin(), r->spec.eos.end(), tok)) {
        finish(r, RequestEnd::kStop, Status::Ok(), ev);
        continue;
      }
      r->generated++;
      ev->tokens.push_back(StepEvents::Token{r->id, tok});
      if (!token_logprobs[i].empty()) {
        ev->logprobs.push_back(static_cast<double>(r->id));
        ev->logprobs.insert(ev->logprobs.end(), token_logprobs[i].begin(), token_logprobs[i].end());
      }
      r->input.assign(1, tok);
      if (r->generated >= r->spec.max_tokens || r->seq->n_past() + 1 > e.options_.context_length) {
        finish(r, RequestEnd::kLength, Status::Ok(), ev);
      }
    }
  }

  // ---- publish: flags for the JS side, finished requests out of the registry ----------------------
  int64_t seq_bytes = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const StepEvents::Token& t : ev->tokens) {
      auto it = requests_.find(t.request);
      if (it != requests_.end()) it->second->wanting = false;  // until the consumer asks again
    }
    for (auto it = requests_.begin(); it != requests_.end();) {
      Request& r = *it->second;
      if (r.done) {
        it = requests_.erase(it);
        continue;
      }
      r.input_left = static_cast<int64_t>(r.input.size());
      if (r.seq) seq_bytes += r.seq->state_bytes();
      ++it;
    }
  }
  sequence_bytes_.store(seq_bytes);
  // Sequences freed above may have left KV blocks that only snapshots hold: the budget decides now.
  e.cache_->evict();
  e.publish_cache_stats();
  return Status::Ok();
}

void Scheduler::cancel_all() {
  std::lock_guard<std::mutex> compute(engine_->compute_mu_);
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [id, r] : requests_) {
    if (r->seq) live_.fetch_sub(1);
    r->seq.reset();
  }
  requests_.clear();
  queue_.clear();
}

}  // namespace nemo
