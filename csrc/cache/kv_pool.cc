#include "cache/kv_pool.h"

#include <cstring>
#include <string>
#include <vector>

namespace nemo {

KvPool::KvPool(DeviceMemory* memory, bool k_channel_major, int64_t n_layers, int64_t kv_dim, int64_t capacity_blocks,
               DType dtype)
    : memory_(memory),
      n_layers_(n_layers),
      kv_dim_(kv_dim),
      capacity_(capacity_blocks),
      dtype_(dtype),
      k_channel_major_(k_channel_major) {}

KvPool::~KvPool() { memory_->free_pool(storage_, storage_bytes_); }

size_t KvPool::layer_bytes() const {
  return static_cast<size_t>(capacity_) * kBlockTokens * static_cast<size_t>(row_bytes());
}

Status KvPool::init() {
  refs_.assign(static_cast<size_t>(capacity_), 0);
  seq_refs_.assign(static_cast<size_t>(capacity_), 0);
  snapshot_only_ = 0;
  free_.clear();
  for (int64_t b = capacity_ - 1; b >= 0; --b) free_.push_back(static_cast<int32_t>(b));
  if (n_layers_ == 0 || capacity_ == 0) return Status::Ok();
  storage_bytes_ = 2 * static_cast<size_t>(n_layers_) * layer_bytes();
  storage_ = memory_->alloc_pool(storage_bytes_);
  if (!storage_) {
    return Status(StatusCode::kOutOfMemory,
                  "cannot reserve " + std::to_string(storage_bytes_) + " bytes for the KV cache pool");
  }
  return Status::Ok();
}

int32_t KvPool::allocate(Holder holder) {
  std::lock_guard<std::mutex> lock(mu_);
  if (free_.empty()) return -1;
  const int32_t b = free_.back();
  free_.pop_back();
  refs_[b] = 1;
  seq_refs_[b] = holder == Holder::kSequence ? 1 : 0;
  if (holder == Holder::kSnapshot) ++snapshot_only_;
  return b;
}

void KvPool::retain(int32_t block, Holder holder) {
  std::lock_guard<std::mutex> lock(mu_);
  const bool was_snapshot_only = refs_[block] > 0 && seq_refs_[block] == 0;
  ++refs_[block];
  if (holder == Holder::kSequence && seq_refs_[block]++ == 0 && was_snapshot_only) --snapshot_only_;
}

void KvPool::release(int32_t block, Holder holder) {
  std::lock_guard<std::mutex> lock(mu_);
  const bool was_snapshot_only = refs_[block] > 0 && seq_refs_[block] == 0;
  --refs_[block];
  if (holder == Holder::kSequence) --seq_refs_[block];
  const bool is_snapshot_only = refs_[block] > 0 && seq_refs_[block] == 0;
  snapshot_only_ += static_cast<int64_t>(is_snapshot_only) - static_cast<int64_t>(was_snapshot_only);
  if (refs_[block] == 0) free_.push_back(block);
}

int64_t KvPool::snapshot_only_blocks() const {
  std::lock_guard<std::mutex> lock(mu_);
  return snapshot_only_;
}

int32_t KvPool::refs(int32_t block) const {
  std::lock_guard<std::mutex> lock(mu_);
  return refs_[block];
}

int64_t KvPool::used() const {
  std::lock_guard<std::mutex> lock(mu_);
  return capacity_ - static_cast<int64_t>(free_.size());
}

int64_t KvPool::block_bytes() const { return 2 * n_layers_ * kBlockTokens * row_bytes(); }

void* KvPool::block_ptr(int64_t layer_slot, int kv, int32_t block) const {
  char* layer = static_cast<char*>(storage_) + (2 * static_cast<size_t>(layer_slot) + kv) * layer_bytes();
  return layer + static_cast<size_t>(block) * kBlockTokens * static_cast<size_t>(row_bytes());
}

void KvPool::copy_rows(int32_t dst, int32_t src, int64_t rows) {
  // A channel-major K block keeps each channel's rows apart: copy it whole (unwritten rows included).
  const size_t n = static_cast<size_t>(rows * row_bytes()), whole = static_cast<size_t>(kBlockTokens * row_bytes());
  for (int64_t l = 0; l < n_layers_; ++l) {
    for (int kv = 0; kv < 2; ++kv) {
      memory_->copy_bytes(block_ptr(l, kv, dst), block_ptr(l, kv, src), channel_major(kv) ? whole : n);
    }
  }
}

void KvPool::read_rows(int64_t layer_slot, int kv, int32_t block, int64_t rows, void* host_dst) const {
  if (!channel_major(kv)) {
    memory_->bytes_to_host(host_dst, block_ptr(layer_slot, kv, block), static_cast<size_t>(rows * row_bytes()));
    return;
  }
  const size_t es = dtype_size(dtype_);
  std::vector<uint8_t> blk(static_cast<size_t>(kBlockTokens * row_bytes()));
  memory_->bytes_to_host(blk.data(), block_ptr(layer_slot, kv, block), blk.size());
  uint8_t* out = static_cast<uint8_t*>(host_dst);
  for (int64_t t = 0; t < rows; ++t) {
    for (int64_t c = 0; c < kv_dim_; ++c) std::memcpy(out + (t * kv_dim_ + c) * es, &blk[(c * kBlockTokens + t) * es], es);
  }
}

void KvPool::write_rows(int64_t layer_slot, int kv, int32_t block, int64_t rows, const void* host_src) {
  if (!channel_major(kv)) {
    memory_->bytes_from_host(block_ptr(layer_slot, kv, block), host_src, static_cast<size_t>(rows * row_bytes()));
    return;
  }
  // Rows past `rows` are zero; attention never reads them (nor kv_store overwrites them).
  const size_t es = dtype_size(dtype_);
  std::vector<uint8_t> blk(static_cast<size_t>(kBlockTokens * row_bytes()), 0);
  const uint8_t* in = static_cast<const uint8_t*>(host_src);
  for (int64_t t = 0; t < rows; ++t) {
    for (int64_t c = 0; c < kv_dim_; ++c) std::memcpy(&blk[(c * kBlockTokens + t) * es], in + (t * kv_dim_ + c) * es, es);
  }
  memory_->bytes_from_host(block_ptr(layer_slot, kv, block), blk.data(), blk.size());
}

KvBlocks KvPool::view(int64_t layer_slot, const int32_t* table) const {
  return KvBlocks{block_ptr(layer_slot, 0, 0), block_ptr(layer_slot, 1, 0), table, kBlockTokens,
                       kBlockTokens * kv_dim_, dtype_};
}

}  // namespace nemo
