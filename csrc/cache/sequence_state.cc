#include "cache/sequence_state.h"

#include <algorithm>
#include <string>

namespace nemo {

SequenceState::SequenceState(Backend* backend, const NemotronHConfig& config, int64_t max_context)
    : backend_(backend), config_(config), max_context_(max_context) {
  int64_t n_mamba = 0, n_attn = 0;
  for (BlockKind kind : config.layers) {
    if (kind == BlockKind::kMamba) slot_.push_back(n_mamba++);
    else if (kind == BlockKind::kAttention) slot_.push_back(n_attn++);
    else slot_.push_back(-1);
  }
  conv_.assign(n_mamba, nullptr);
  ssm_.assign(n_mamba, nullptr);
  k_.assign(n_attn, nullptr);
  v_.assign(n_attn, nullptr);
}

SequenceState::~SequenceState() {
  for (auto* vec : {&conv_, &ssm_, &k_, &v_}) {
    for (float* p : *vec) if (p) backend_->free(p);
  }
}

Status SequenceState::init() {
  const size_t conv_n = static_cast<size_t>((config_.conv_kernel - 1) * config_.conv_dim());
  const size_t ssm_n = static_cast<size_t>(config_.mamba_num_heads * config_.mamba_head_dim *
                                           config_.ssm_state_size);
  for (size_t i = 0; i < conv_.size(); ++i) {
    conv_[i] = backend_->alloc(std::max<size_t>(conv_n, 1));
    ssm_[i] = backend_->alloc(ssm_n);
    if (!conv_[i] || !ssm_[i]) {
      return Status(StatusCode::kOutOfMemory, "cannot allocate the Mamba state of a sequence");
    }
  }
  return Status::Ok();
}

Status SequenceState::reserve(int64_t extra) {
  const int64_t needed = n_past_ + extra;
  if (needed > max_context_) {
    return Status(StatusCode::kContextOverflow,
                  "the sequence would hold " + std::to_string(needed) +
                      " tokens, more than the context length " + std::to_string(max_context_) +
                      " (it already holds " + std::to_string(n_past_) + ")");
  }
  if (needed <= kv_capacity_ || k_.empty()) return Status::Ok();
  int64_t cap = std::max<int64_t>(kv_capacity_ * 2, 256);
  while (cap < needed) cap *= 2;
  cap = std::min(cap, max_context_);
  const int64_t kv_dim = config_.kv_dim();
  for (size_t i = 0; i < k_.size(); ++i) {
    for (auto* vec : {&k_, &v_}) {
      float* grown = backend_->alloc(static_cast<size_t>(cap * kv_dim));
      if (!grown) return Status(StatusCode::kOutOfMemory, "cannot grow the KV cache");
      float*& cur = (*vec)[i];
      if (cur) {
        backend_->copy(grown, cur, static_cast<size_t>(n_past_ * kv_dim));
        backend_->free(cur);
      }
      cur = grown;
    }
  }
  kv_capacity_ = cap;
  return Status::Ok();
}

void SequenceState::reset() {
  const size_t conv_n = static_cast<size_t>((config_.conv_kernel - 1) * config_.conv_dim());
  const size_t ssm_n = static_cast<size_t>(config_.mamba_num_heads * config_.mamba_head_dim *
                                           config_.ssm_state_size);
  for (size_t i = 0; i < conv_.size(); ++i) {
    backend_->zero(conv_[i], conv_n);
    backend_->zero(ssm_[i], ssm_n);
  }
  n_past_ = 0;
  tokens_.clear();
}

int64_t SequenceState::state_bytes() const {
  const int64_t conv_n = (config_.conv_kernel - 1) * config_.conv_dim();
  const int64_t ssm_n = config_.mamba_num_heads * config_.mamba_head_dim * config_.ssm_state_size;
  return 4 * (static_cast<int64_t>(conv_.size()) * (conv_n + ssm_n) +
              static_cast<int64_t>(k_.size()) * 2 * kv_capacity_ * config_.kv_dim());
}

}  // namespace nemo
