#include "engine/engine.h"

#include <algorithm>

#include "engine/scheduler.h"

namespace nemo {

Status Engine::load(const std::string& dir, const EngineOptions& options,
                    std::unique_ptr<Engine>* out) {
  std::unique_ptr<Engine> e(new Engine());
  NEMO_RETURN_IF_ERROR(load_checkpoint(dir, &e->config_, &e->weights_));
  e->options_ = options;
  if (e->options_.context_length <= 0) {
    e->options_.context_length = std::max<int64_t>(e->config_.max_position_embeddings, 1);
  }
  if (e->options_.max_sequences <= 0) {
    return Status(StatusCode::kInvalidArgument, "maxSequences must be at least 1");
  }
  if (e->options_.max_batch_tokens <= 0) {
    return Status(StatusCode::kInvalidArgument, "maxBatchTokens must be at least 1");
  }
  e->backend_ = make_cpu_backend(options.n_threads);
  NEMO_RETURN_IF_ERROR(e->backend_->prepare_weights(&e->weights_));
  // One step holds a full prefill piece plus one decode row per sequence.
  e->workspace_ = std::make_unique<Workspace>(
      e->backend_.get(), e->config_, e->options_.max_batch_tokens + e->options_.max_sequences);
  NEMO_RETURN_IF_ERROR(e->workspace_->init());
  *out = std::move(e);
  return Status::Ok();
}

Engine::~Engine() {
  // Sequences and the workspace hold backend memory: release them before the backend.
  sequences_.clear();
  workspace_.reset();
}

Status Engine::create_sequence(int32_t* id) {
  auto seq = std::make_shared<SequenceState>(backend_.get(), config_, options_.context_length);
  NEMO_RETURN_IF_ERROR(seq->init());
  std::lock_guard<std::mutex> lock(seq_mu_);
  if (static_cast<int32_t>(sequences_.size()) >= options_.max_sequences) {
    return Status(StatusCode::kInvalidArgument,
                  "all " + std::to_string(options_.max_sequences) +
                      " sequence slots are in use (maxSequences); free one first");
  }
  *id = next_id_++;
  sequences_[*id] = std::move(seq);
  return Status::Ok();
}

Status Engine::free_sequence(int32_t id) {
  std::shared_ptr<SequenceState> victim;  // destroyed outside the lock
  std::lock_guard<std::mutex> lock(seq_mu_);
  auto it = sequences_.find(id);
  if (it == sequences_.end()) {
    return Status(StatusCode::kInvalidArgument, "no sequence with id " + std::to_string(id));
  }
  victim = std::move(it->second);
  sequences_.erase(it);
  return Status::Ok();
}

Status Engine::sequence_length(int32_t id, int64_t* n_past) const {
  std::lock_guard<std::mutex> lock(seq_mu_);
  auto it = sequences_.find(id);
  if (it == sequences_.end()) {
    return Status(StatusCode::kInvalidArgument, "no sequence with id " + std::to_string(id));
  }
  *n_past = it->second->n_past();
  return Status::Ok();
}

int32_t Engine::live_sequences() const {
  std::lock_guard<std::mutex> lock(seq_mu_);
  return static_cast<int32_t>(sequences_.size());
}

int64_t Engine::sequence_bytes() const {
  std::lock_guard<std::mutex> lock(seq_mu_);
  int64_t total = 0;
  for (const auto& [id, seq] : sequences_) total += seq->state_bytes();
  return total;
}

Status Engine::acquire(int32_t id, std::shared_ptr<SequenceState>* seq) {
  std::lock_guard<std::mutex> lock(seq_mu_);
  auto it = sequences_.find(id);
  if (it == sequences_.end()) {
    return Status(StatusCode::kInvalidArgument, "no sequence with id " + std::to_string(id));
  }
  *seq = it->second;
  return Status::Ok();
}

Status Engine::check_tokens(const int32_t* tokens, int64_t n) const {
  if (n <= 0) return Status(StatusCode::kInvalidArgument, "no tokens to evaluate");
  for (int64_t i = 0; i < n; ++i) {
    if (tokens[i] < 0 || tokens[i] >= config_.vocab_size) {
      return Status(StatusCode::kInvalidArgument,
                    "token id " + std::to_string(tokens[i]) + " at index " + std::to_string(i) +
                        " is out of range [0, " + std::to_string(config_.vocab_size) + ")");
    }
  }
  return Status::Ok();
}

Status Engine::evaluate(int32_t id, const int32_t* tokens, int64_t n, bool all_logits,
                        std::vector<float>* logits) {
  NEMO_RETURN_IF_ERROR(check_tokens(tokens, n));
  std::shared_ptr<SequenceState> seq;
  NEMO_RETURN_IF_ERROR(acquire(id, &seq));
  std::lock_guard<std::mutex> lock(compute_mu_);
  NEMO_RETURN_IF_ERROR(seq->reserve(n));  // fails before any work if the context would overflow
  const int64_t vocab = config_.vocab_size;
  logits->assign(static_cast<size_t>((all_logits ? n : 1) * vocab), 0.0f);
  // Pieces end at multiples of the prefill chunk in absolute positions, exactly as step() cuts them.
  const int64_t chunk = options_.max_batch_tokens;
  for (int64_t start = 0; start < n;) {
    const int64_t len = std::min(n - start, chunk - seq->n_past() % chunk);
    const bool last_piece = start + len == n;
    const Logits mode = all_logits ? Logits::kAll : (last_piece ? Logits::kLast : Logits::kNone);
    float* dst = logits->data() + (all_logits ? start * vocab : 0);
    NEMO_RETURN_IF_ERROR(forward(*backend_, config_, weights_, *workspace_,
                                 {BatchItem{seq.get(), tokens + start, len, mode}}, dst));
    start += len;
  }
  return Status::Ok();
}

Status Engine::evaluate_batch(const std::vector<BatchRequest>& batch,
                              std::vector<std::vector<float>>* logits) {
  std::vector<std::shared_ptr<SequenceState>> seqs;
  int64_t total = 0;
  for (const BatchRequest& r : batch) {
    NEMO_RETURN_IF_ERROR(check_tokens(r.tokens.data(), static_cast<int64_t>(r.tokens.size())));
    std::shared_ptr<SequenceState> seq;
    NEMO_RETURN_IF_ERROR(acquire(r.id, &seq));
    for (const auto& s : seqs) {
      if (s == seq) return Status(StatusCode::kInvalidArgument, "a batch names one sequence twice");
    }
    seqs.push_back(std::move(seq));
    total += static_cast<int64_t>(r.tokens.size());
  }
  if (total > workspace_->max_rows()) {
    return Status(StatusCode::kInvalidArgument,
                  "a batch of " + std::to_string(total) + " tokens exceeds maxBatchTokens (" +
                      std::to_string(workspace_->max_rows()) + ")");
  }
  std::lock_guard<std::mutex> lock(compute_mu_);
  for (size_t i = 0; i < batch.size(); ++i) {
    NEMO_RETURN_IF_ERROR(seqs[i]->reserve(static_cast<int64_t>(batch[i].tokens.size())));
  }
  const int64_t vocab = config_.vocab_size;
  std::vector<BatchItem> items;
  int64_t rows_out = 0;
  for (size_t i = 0; i < batch.size(); ++i) {
    const int64_t n = static_cast<int64_t>(batch[i].tokens.size());
    items.push_back(BatchItem{seqs[i].get(), batch[i].tokens.data(), n,
                              batch[i].all_logits ? Logits::kAll : Logits::kLast});
    rows_out += batch[i].all_logits ? n : 1;
  }
  std::vector<float> packed(static_cast<size_t>(rows_out * vocab));
  NEMO_RETURN_IF_ERROR(forward(*backend_, config_, weights_, *workspace_, items, packed.data()));
  logits->clear();
  const float* src = packed.data();
  for (const BatchItem& it : items) {
    const int64_t rows = it.logits == Logits::kAll ? it.n_tokens : 1;
    logits->emplace_back(src, src + rows * vocab);
    src += rows * vocab;
  }
  return Status::Ok();
}

Status Engine::step(const std::vector<StepRequest>& requests, std::vector<StepResult>* results) {
  std::vector<std::shared_ptr<SequenceState>> seqs;
  for (const StepRequest& r : requests) {
    NEMO_RETURN_IF_ERROR(check_tokens(r.tokens.data(), static_cast<int64_t>(r.tokens.size())));
    std::shared_ptr<SequenceState> seq;
    NEMO_RETURN_IF_ERROR(acquire(r.id, &seq));
    for (const auto& other : seqs) {
      if (other == seq) return Status(StatusCode::kInvalidArgument, "a step names one sequence twice");
    }
    seqs.push_back(std::move(seq));
  }
  std::lock_guard<std::mutex> lock(compute_mu_);
  std::vector<PlanInput> inputs;
  for (size_t i = 0; i < requests.size(); ++i) {
    inputs.push_back(PlanInput{seqs[i]->n_past(), static_cast<int64_t>(requests[i].tokens.size())});
  }
  const std::vector<PlanItem> plan = plan_step(inputs, options_.max_batch_tokens, workspace_->max_rows());
  results->assign(requests.size(), StepResult{});
  std::vector<BatchItem> items;
  std::vector<size_t> sampled;  // requests whose logits row comes back, in item order
  for (const PlanItem& p : plan) {
    if (p.count == 0) continue;
    const StepRequest& r = requests[p.request];
    NEMO_RETURN_IF_ERROR(seqs[p.request]->reserve(p.count));
    const bool finishes = p.count == static_cast<int64_t>(r.tokens.size());
    const bool wants = finishes && r.sample;
    items.push_back(BatchItem{seqs[p.request].get(), r.tokens.data(), p.count,
                              wants ? Logits::kLast : Logits::kNone});
    if (wants) sampled.push_back(p.request);
    (*results)[p.request].consumed = p.count;
  }
  if (items.empty()) return Status::Ok();
  const int64_t vocab = config_.vocab_size;
  std::vector<float> logits(sampled.size() * static_cast<size_t>(vocab));
  NEMO_RETURN_IF_ERROR(forward(*backend_, config_, weights_, *workspace_, items, logits.data()));
  for (size_t k = 0; k < sampled.size(); ++k) {
    const size_t i = sampled[k];
    const StepRequest& r = requests[i];
    const std::vector<int32_t>& history = seqs[i]->tokens();
    (*results)[i].token = sample_token(logits.data() + k * vocab, vocab, r.sampling, history.data(),
                                       static_cast<int64_t>(history.size()), r.n_prompt, r.draw);
  }
  return Status::Ok();
}

Status Engine::evaluate_and_sample(int32_t id, const int32_t* tokens, int64_t n,
                                   const SamplingParams& sampling, uint64_t step, int32_t* token) {
  std::vector<float> logits;
  NEMO_RETURN_IF_ERROR(evaluate(id, tokens, n, false, &logits));
  *token = sample_token(logits.data(), config_.vocab_size, sampling, nullptr, 0, 0, step);
  return Status::Ok();
}

}  // namespace nemo
