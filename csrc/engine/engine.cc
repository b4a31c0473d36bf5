#include "engine/engine.h"

#include <algorithm>
#include <climits>
#include <cstring>

#include "cache/snapshot_image.h"
#include "engine/step_plan.h"

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
  if (options.device.empty() || options.device == "cpu") {
    e->backend_ = make_cpu_backend(options.n_threads, options.matmul_precision, options.weights);
  } else if (options.device == "cuda" || options.device.rfind("cuda:", 0) == 0) {
#ifdef NEMOTRON_CUDA
    const std::string idx = options.device == "cuda" ? "0" : options.device.substr(5);
    if (idx.empty() || idx.size() > 4 || idx.find_first_not_of("0123456789") != std::string::npos) {
      return Status(StatusCode::kInvalidArgument, "device '" + options.device + "': expected cuda:<index>");
    }
    Status st;
    e->backend_ = make_cuda_backend(std::stoi(idx), options.matmul_precision, &st);
    if (!e->backend_) return st;
#else
    return Status(StatusCode::kInvalidArgument,
                  "this build has no CUDA support (device '" + options.device +
                      "'): use the CUDA addon, built with cmake-js and NEMOTRON_CUDA=ON");
#endif
  } else {
    return Status(StatusCode::kInvalidArgument,
                  "unknown device '" + options.device + "': expected 'cpu', 'cuda' or 'cuda:N'");
  }
  NEMO_RETURN_IF_ERROR(e->backend_->prepare_weights(&e->weights_));
  // The KV pool: every live sequence at the full context, plus cache_bytes of room for snapshots.
  // Storage is reserved, not committed: memory is used as positions are written.
  int64_t n_attn = 0;
  for (BlockKind k : e->config_.layers) n_attn += k == BlockKind::kAttention;
  const int64_t B = KvPool::kBlockTokens;
  const int64_t block_bytes = std::max<int64_t>(
      2 * n_attn * B * e->config_.kv_dim() * static_cast<int64_t>(dtype_size(e->options_.kv_dtype)), 1);
  const int64_t per_seq = (e->options_.context_length + B - 1) / B;
  const int64_t capacity = n_attn == 0 ? 0
                           : per_seq * e->options_.max_sequences + e->options_.cache_bytes / block_bytes;
  if (capacity > INT32_MAX) {
    return Status(StatusCode::kInvalidArgument, "the KV pool would need more than 2^31 blocks");
  }
  e->kv_pool_ = std::make_unique<KvPool>(e->backend_.get(), e->backend_->kv_k_channel_major(), n_attn, e->config_.kv_dim(), capacity,
                                         e->options_.kv_dtype);
  NEMO_RETURN_IF_ERROR(e->kv_pool_->init());
  // One step holds a full prefill piece plus one decode row per sequence.
  e->workspace_ = std::make_unique<Workspace>(
      e->backend_.get(), e->config_, e->options_.max_batch_tokens + e->options_.max_sequences);
  NEMO_RETURN_IF_ERROR(e->workspace_->init());
  size_t n_mamba = 0;
  for (BlockKind k : e->config_.layers) n_mamba += k == BlockKind::kMamba;
  e->states_ = std::make_unique<MambaStatePool>(e->backend_.get(), n_mamba, e->config_.conv_state_floats(),
                                                e->config_.ssm_state_floats());
  e->cache_ = std::make_unique<PrefixCache>(e->kv_pool_.get(), e->options_.cache_bytes, &e->snapshot_ids_);
  e->scheduler_ = std::make_unique<Scheduler>(e.get());
  e->publish_cache_stats();
  *out = std::move(e);
  return Status::Ok();
}

Engine::~Engine() {
  // Requests, sequences, snapshots and the workspace hold pool and backend memory: release them first.
  scheduler_.reset();
  cache_.reset();
  sequences_.clear();
  snapshots_.clear();
  states_.reset();
  workspace_.reset();
  kv_pool_.reset();
}

Status Engine::create_sequence(int32_t* id) {
  auto seq = std::make_shared<SequenceState>(backend_.get(), kv_pool_.get(), config_,
                                             options_.context_length, states_.get());
  Status st = seq->init();
  if (st.code() == StatusCode::kOutOfMemory) {  // device memory: move snapshot states out, retry once
    std::lock_guard<std::mutex> lock(compute_mu_);
    if (offload_locked(INT64_MAX) > 0) {
      seq = std::make_shared<SequenceState>(backend_.get(), kv_pool_.get(), config_, options_.context_length, states_.get());
      st = seq->init();
    }
  }
  NEMO_RETURN_IF_ERROR(st);
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
    const int64_t n_past = seqs[i]->n_past();
    int64_t next_cut = INT64_MAX;
    for (int64_t p : requests[i].snapshot_at) {
      if (p > n_past) {
        next_cut = p;
        break;
      }
    }
    inputs.push_back(PlanInput{n_past, static_cast<int64_t>(requests[i].tokens.size()), next_cut});
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
  // Device sampling (backend.h logits_sink/sample): the logits stay on the device, only ids come back.
  float* sink = sampled.empty() ? nullptr : backend_->logits_sink(static_cast<int64_t>(sampled.size()), vocab);
  std::vector<float> logits(sink ? 0 : sampled.size() * static_cast<size_t>(vocab));
  NEMO_RETURN_IF_ERROR(forward(*backend_, config_, weights_, *workspace_, items, sink ? sink : logits.data()));
  // Snapshots requested at the position a piece just reached.
  for (const PlanItem& p : plan) {
    if (p.count == 0) continue;
    const auto& at = requests[p.request].snapshot_at;
    const int64_t pos = seqs[p.request]->n_past();
    if (std::find(at.begin(), at.end(), pos) == at.end()) continue;
    int32_t id = -1;
    NEMO_RETURN_IF_ERROR(take_snapshot(*seqs[p.request], &id));
    (*results)[p.request].snapshot_position = pos;
    (*results)[p.request].snapshot_id = id;
  }
  if (sink) {
    std::vector<SampleSpec> specs;
    for (size_t i : sampled) {
      const std::vector<int32_t>& history = seqs[i]->tokens();
      specs.push_back(SampleSpec{&requests[i].sampling, history.data(), static_cast<int64_t>(history.size()),
                                 requests[i].n_prompt, requests[i].draw});
    }
    std::vector<int32_t> tokens(specs.size());
    NEMO_RETURN_IF_ERROR(backend_->sample(specs, tokens.data(), nullptr));
    for (size_t k = 0; k < sampled.size(); ++k) (*results)[sampled[k]].token = tokens[k];
    return Status::Ok();
  }
  for (size_t k = 0; k < sampled.size(); ++k) {
    const size_t i = sampled[k];
    const StepRequest& r = requests[i];
    const std::vector<int32_t>& history = seqs[i]->tokens();
    (*results)[i].token = sample_token(logits.data() + k * vocab, vocab, r.sampling, history.data(),
                                       static_cast<int64_t>(history.size()), r.n_prompt, r.draw);
  }
  return Status::Ok();
}

// ---- snapshots ----------------------------------------------------------------------------------------

Status Engine::make_snapshot(const SequenceState& seq, std::shared_ptr<Snapshot>* out) {
  auto snap = std::make_shared<Snapshot>(backend_.get(), kv_pool_.get());
  Status st = seq.snapshot(snap.get());
  if (st.code() == StatusCode::kOutOfMemory) {  // compute_mu_ is held by every caller
    snap = std::make_shared<Snapshot>(backend_.get(), kv_pool_.get());  // frees the partial copy first
    if (offload_locked(seq.mamba_state_bytes()) > 0) st = seq.snapshot(snap.get());
  }
  NEMO_RETURN_IF_ERROR(st);
  *out = std::move(snap);
  return Status::Ok();
}

Status Engine::take_snapshot(const SequenceState& seq, int32_t* snapshot_id) {
  std::shared_ptr<Snapshot> snap;
  NEMO_RETURN_IF_ERROR(make_snapshot(seq, &snap));
  std::lock_guard<std::mutex> lock(seq_mu_);
  *snapshot_id = snapshot_ids_.fetch_add(1);
  snapshots_[*snapshot_id] = std::move(snap);
  return Status::Ok();
}

std::shared_ptr<const Snapshot> Engine::any_snapshot(int32_t snapshot_id) const {
  {
    std::lock_guard<std::mutex> lock(seq_mu_);
    auto it = snapshots_.find(snapshot_id);
    if (it != snapshots_.end()) return it->second;
  }
  return cache_->get(snapshot_id);
}

Status Engine::find_snapshot(int32_t snapshot_id, std::shared_ptr<Snapshot>* out) const {
  std::lock_guard<std::mutex> lock(seq_mu_);
  auto it = snapshots_.find(snapshot_id);
  if (it == snapshots_.end()) {
    return Status(StatusCode::kInvalidArgument, "no snapshot with id " + std::to_string(snapshot_id));
  }
  *out = it->second;
  return Status::Ok();
}

Status Engine::snapshot_sequence(int32_t id, int32_t* snapshot_id) {
  std::shared_ptr<SequenceState> seq;
  NEMO_RETURN_IF_ERROR(acquire(id, &seq));
  std::lock_guard<std::mutex> lock(compute_mu_);  // not while a step writes this sequence
  return take_snapshot(*seq, snapshot_id);
}

Status Engine::restore_sequence(int32_t id, int32_t snapshot_id) {
  std::shared_ptr<SequenceState> seq;
  NEMO_RETURN_IF_ERROR(acquire(id, &seq));
  std::shared_ptr<const Snapshot> snap = any_snapshot(snapshot_id);
  if (!snap) return Status(StatusCode::kInvalidArgument, "no snapshot with id " + std::to_string(snapshot_id));
  if (snap->n_past > seq->max_context()) {
    return Status(StatusCode::kContextOverflow, "the snapshot holds more tokens than the context length");
  }
  std::lock_guard<std::mutex> lock(compute_mu_);
  return seq->restore(*snap);
}

Status Engine::drop_snapshot(int32_t snapshot_id) {
  std::shared_ptr<Snapshot> victim;  // destroyed outside the lock
  {
    std::lock_guard<std::mutex> lock(seq_mu_);
    auto it = snapshots_.find(snapshot_id);
    if (it != snapshots_.end()) {
      victim = std::move(it->second);
      snapshots_.erase(it);
    }
  }
  // A prefix-cache entry (an imported snapshot): drop the caller's pin; the LRU evicts it later.
  if (!victim && !cache_->pin(snapshot_id, -1)) {
    return Status(StatusCode::kInvalidArgument, "no snapshot with id " + std::to_string(snapshot_id));
  }
  victim.reset();
  publish_cache_stats();
  return Status::Ok();
}

int64_t Engine::offload_snapshot_states(int64_t bytes) {
  std::lock_guard<std::mutex> lock(compute_mu_);  // no restore or step reads a state while it moves
  return offload_locked(bytes);
}

int64_t Engine::offload_locked(int64_t bytes) {
  const size_t conv_n = config_.conv_state_floats(), ssm_n = config_.ssm_state_floats();
  // Debug snapshots by id (age), then the prefix cache's least recently used first.
  std::vector<std::shared_ptr<Snapshot>> order;
  {
    std::lock_guard<std::mutex> lock(seq_mu_);
    for (auto& [id, snap] : snapshots_) order.push_back(snap);
  }
  for (auto& snap : cache_->snapshots_by_age()) order.push_back(std::move(snap));
  int64_t moved = 0;
  for (auto& snap : order) {
    if (moved >= bytes) break;
    for (size_t i = 0; i < snap->conv.size(); ++i) {
      for (auto [p, n] : {std::pair<float**, size_t>{&snap->conv[i], conv_n}, {&snap->ssm[i], ssm_n}}) {
        float* h = backend_->offload(*p, n);
        if (h == nullptr) return moved;  // not supported, or no host memory left
        if (h == *p) continue;           // there already
        *p = h;
        moved += static_cast<int64_t>(n * sizeof(float));
        snap->host_state_bytes += static_cast<int64_t>(n * sizeof(float));
      }
    }
  }
  return moved;
}

Status Engine::export_snapshot(int32_t snapshot_id, std::vector<uint8_t>* out) const {
  std::shared_ptr<const Snapshot> snap = any_snapshot(snapshot_id);
  if (!snap) return Status(StatusCode::kInvalidArgument, "no snapshot with id " + std::to_string(snapshot_id));
  write_snapshot_image(*snap, config_, *kv_pool_, backend_.get(), out);
  return Status::Ok();
}

Status Engine::import_snapshot(const uint8_t* bytes, size_t size, const int32_t* tokens,
                               int64_t n_tokens, int32_t* snapshot_id) {
  std::shared_ptr<Snapshot> snap;
  NEMO_RETURN_IF_ERROR(read_snapshot_image(bytes, size, tokens, n_tokens, config_, options_.context_length,
                                           kv_pool_.get(), backend_.get(), &snap));
  *snapshot_id = cache_->insert(std::move(snap), /*pins=*/1);
  publish_cache_stats();
  return Status::Ok();
}

void Engine::publish_cache_stats() {
  CacheStats st;
  st.kv_blocks_total = kv_pool_->capacity();
  st.kv_blocks_used = kv_pool_->used();
  st.kv_block_bytes = kv_pool_->block_bytes();
  st.snapshot_only_kv_blocks = kv_pool_->snapshot_only_blocks();
  st.cache_entries = cache_->entries();
  st.cache_bytes = cache_->bytes();
  st.cache_hits = cache_->hits();
  st.cache_tokens_reused = cache_->tokens_reused();
  st.snapshot_state_bytes = cache_->state_bytes();
  for (const auto& snap : cache_->snapshots_by_age()) st.snapshot_host_state_bytes += snap->host_state_bytes;
  {
    std::lock_guard<std::mutex> lock(seq_mu_);
    st.snapshots = st.cache_entries + static_cast<int64_t>(snapshots_.size());
    for (const auto& [id, snap] : snapshots_) {
      st.snapshot_state_bytes += snap->state_bytes;
      st.snapshot_host_state_bytes += snap->host_state_bytes;
    }
  }
  std::lock_guard<std::mutex> lock(stats_mu_);
  published_ = st;
}

CacheStats Engine::cache_stats() const {
  std::lock_guard<std::mutex> lock(stats_mu_);
  return published_;
}


}  // namespace nemo
