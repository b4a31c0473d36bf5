#include "engine/engine.h"

#include <algorithm>

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
  e->workspace_ = std::make_unique<Workspace>(e->backend_.get(), e->config_,
                                              e->options_.max_batch_tokens);
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
  const int64_t chunk = workspace_->max_rows();
  for (int64_t start = 0; start < n; start += chunk) {
    const int64_t len = std::min(chunk, n - start);
    const bool last_chunk = start + len == n;
    if (!all_logits && !last_chunk) {
      // Intermediate chunks of a prompt only advance the state; their one logits row is discarded.
      std::vector<float> scratch(static_cast<size_t>(vocab));
      NEMO_RETURN_IF_ERROR(forward(*backend_, config_, weights_, *workspace_,
                                   {BatchItem{seq.get(), tokens + start, len, false}}, scratch.data()));
      continue;
    }
    float* dst = logits->data() + (all_logits ? start * vocab : 0);
    NEMO_RETURN_IF_ERROR(forward(*backend_, config_, weights_, *workspace_,
                                 {BatchItem{seq.get(), tokens + start, len, all_logits}}, dst));
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
    items.push_back(BatchItem{seqs[i].get(), batch[i].tokens.data(), n, batch[i].all_logits});
    rows_out += batch[i].all_logits ? n : 1;
  }
  std::vector<float> packed(static_cast<size_t>(rows_out * vocab));
  NEMO_RETURN_IF_ERROR(forward(*backend_, config_, weights_, *workspace_, items, packed.data()));
  logits->clear();
  const float* src = packed.data();
  for (const BatchItem& it : items) {
    const int64_t rows = it.all_logits ? it.n_tokens : 1;
    logits->emplace_back(src, src + rows * vocab);
    src += rows * vocab;
  }
  return Status::Ok();
}

Status Engine::evaluate_and_sample(int32_t id, const int32_t* tokens, int64_t n,
                                   const SamplingParams& sampling, uint64_t step, int32_t* token) {
  std::vector<float> logits;
  NEMO_RETURN_IF_ERROR(evaluate(id, tokens, n, false, &logits));
  *token = sample_token(logits.data(), config_.vocab_size, sampling, step);
  return Status::Ok();
}

}  // namespace nemo
