#include "cache/sequence_state.h"

#include <algorithm>
#include <string>

namespace nemo {

Snapshot::~Snapshot() {
  for (float* p : conv) if (p) memory_->free(p);
  for (float* p : ssm) if (p) memory_->free(p);
  for (int32_t b : blocks) pool_->release(b, KvPool::Holder::kSnapshot);
}

MambaStatePool::~MambaStatePool() {
  for (Buffers& b : free_) free_set(memory_, &b);
}

void MambaStatePool::free_set(DeviceMemory* memory, Buffers* b) {
  for (float* p : b->conv) if (p) memory->free(p);
  for (float* p : b->ssm) if (p) memory->free(p);
  b->conv.clear();
  b->ssm.clear();
}

Status MambaStatePool::take(Buffers* out, bool* zeroed) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!free_.empty()) {
      *out = std::move(free_.back());
      free_.pop_back();
      *zeroed = false;
      return Status::Ok();
    }
  }
  Buffers b;
  for (size_t i = 0; i < n_layers_; ++i) {
    b.conv.push_back(memory_->alloc(conv_floats_));
    b.ssm.push_back(memory_->alloc(ssm_floats_));
    if (!b.conv.back() || !b.ssm.back()) {
      free_set(memory_, &b);
      return Status(StatusCode::kOutOfMemory, "cannot allocate the Mamba state of a sequence");
    }
  }
  *out = std::move(b);
  *zeroed = true;  // backend alloc() zero-fills
  return Status::Ok();
}

void MambaStatePool::give(Buffers* b) {
  if (b->conv.empty()) return;
  std::lock_guard<std::mutex> lock(mu_);
  free_.push_back(std::move(*b));
  b->conv.clear();
  b->ssm.clear();
}

size_t MambaStatePool::free_sets() const {
  std::lock_guard<std::mutex> lock(mu_);
  return free_.size();
}

SequenceState::SequenceState(DeviceMemory* memory, KvPool* pool, const NemotronHConfig& config,
                             int64_t max_context, MambaStatePool* states)
    : memory_(memory), pool_(pool), config_(config), max_context_(max_context), states_(states) {
  int64_t n_mamba = 0, n_attn = 0;
  for (BlockKind kind : config.layers) {
    if (kind == BlockKind::kMamba) slot_.push_back(n_mamba++);
    else if (kind == BlockKind::kAttention) slot_.push_back(n_attn++);
    else slot_.push_back(-1);
  }
  conv_.assign(n_mamba, nullptr);
  ssm_.assign(n_mamba, nullptr);
}

SequenceState::~SequenceState() {
  if (states_ && !conv_.empty() && conv_[0]) {
    MambaStatePool::Buffers b{conv_, ssm_};
    states_->give(&b);
  } else {
    for (float* p : conv_) if (p) memory_->free(p);
    for (float* p : ssm_) if (p) memory_->free(p);
  }
  release_blocks();
}

Status SequenceState::init(bool will_restore) {
  if (states_) {
    if (conv_.empty()) return Status::Ok();
    MambaStatePool::Buffers b;
    bool zeroed = false;
    NEMO_RETURN_IF_ERROR(states_->take(&b, &zeroed));
    conv_ = std::move(b.conv);
    ssm_ = std::move(b.ssm);
    if (!zeroed && !will_restore) {
      for (size_t i = 0; i < conv_.size(); ++i) {
        memory_->zero(conv_[i], conv_floats());
        memory_->zero(ssm_[i], ssm_floats());
      }
    }
    return Status::Ok();
  }
  for (size_t i = 0; i < conv_.size(); ++i) {
    conv_[i] = memory_->alloc(conv_floats());
    ssm_[i] = memory_->alloc(ssm_floats());
    if (!conv_[i] || !ssm_[i]) {
      return Status(StatusCode::kOutOfMemory, "cannot allocate the Mamba state of a sequence");
    }
  }
  return Status::Ok();
}

void SequenceState::release_blocks() {
  for (int32_t b : table_) pool_->release(b, KvPool::Holder::kSequence);
  table_.clear();
}

Status SequenceState::reserve(int64_t extra) {
  const int64_t needed = n_past_ + extra;
  if (needed > max_context_) {
    return Status(StatusCode::kContextOverflow,
                  "the sequence would hold " + std::to_string(needed) +
                      " tokens, more than the context length " + std::to_string(max_context_) +
                      " (it already holds " + std::to_string(n_past_) + ")");
  }
  if (pool_->n_layers() == 0 || extra <= 0) return Status::Ok();
  const int64_t B = KvPool::kBlockTokens;
  // Copy-on-write: the block that receives position n_past may be shared with a snapshot or another
  // sequence; its first n_past % B rows are copied into a block of our own before anything is written.
  const int64_t first = n_past_ / B;
  if (n_past_ % B != 0 && first < static_cast<int64_t>(table_.size()) && pool_->refs(table_[first]) > 1) {
    const int32_t own = pool_->allocate();
    if (own < 0) {
      return Status(StatusCode::kOutOfMemory, "the KV cache pool is full (" +
                                                  std::to_string(pool_->capacity()) + " blocks)");
    }
    pool_->copy_rows(own, table_[first], n_past_ % B);
    pool_->release(table_[first], KvPool::Holder::kSequence);
    table_[first] = own;
  }
  const int64_t blocks_needed = (needed + B - 1) / B;
  while (static_cast<int64_t>(table_.size()) < blocks_needed) {
    const int32_t b = pool_->allocate();
    if (b < 0) {
      return Status(StatusCode::kOutOfMemory, "the KV cache pool is full (" +
                                                  std::to_string(pool_->capacity()) + " blocks)");
    }
    table_.push_back(b);
  }
  return Status::Ok();
}

void SequenceState::reset() {
  for (size_t i = 0; i < conv_.size(); ++i) {
    memory_->zero(conv_[i], conv_floats());
    memory_->zero(ssm_[i], ssm_floats());
  }
  release_blocks();
  n_past_ = 0;
  tokens_.clear();
}

Status SequenceState::snapshot(Snapshot* out) const {
  out->n_past = n_past_;
  out->tokens = tokens_;
  for (size_t i = 0; i < conv_.size(); ++i) {
    float* c = memory_->alloc(conv_floats());
    float* s = memory_->alloc(ssm_floats());
    out->conv.push_back(c);
    out->ssm.push_back(s);
    if (!c || !s) return Status(StatusCode::kOutOfMemory, "cannot allocate a snapshot");
    memory_->copy(c, conv_[i], conv_floats());
    memory_->copy(s, ssm_[i], ssm_floats());
  }
  const int64_t B = KvPool::kBlockTokens;
  for (int64_t i = 0; i < (n_past_ + B - 1) / B; ++i) {
    pool_->retain(table_[i], KvPool::Holder::kSnapshot);
    out->blocks.push_back(table_[i]);
  }
  out->state_bytes = mamba_state_bytes();
  return Status::Ok();
}

Status SequenceState::restore(const Snapshot& snap) {
  release_blocks();  // the Mamba state is overwritten below: no need to zero it first
  for (size_t i = 0; i < conv_.size(); ++i) {
    memory_->copy(conv_[i], snap.conv[i], conv_floats());
    memory_->copy(ssm_[i], snap.ssm[i], ssm_floats());
  }
  for (int32_t b : snap.blocks) {
    pool_->retain(b, KvPool::Holder::kSequence);
    table_.push_back(b);
  }
  n_past_ = snap.n_past;
  tokens_ = snap.tokens;
  return Status::Ok();
}

int64_t SequenceState::mamba_state_bytes() const {
  return 4 * static_cast<int64_t>(conv_.size() * (conv_floats() + ssm_floats()));
}

int64_t SequenceState::state_bytes() const {
  return mamba_state_bytes() + static_cast<int64_t>(table_.size()) * pool_->block_bytes();
}

}  // namespace nemo
