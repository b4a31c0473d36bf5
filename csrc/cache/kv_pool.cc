#include "cache/kv_pool.h"

#include <string>

namespace nemo {

KvPool::KvPool(Backend* backend, int64_t n_layers, int64_t kv_dim, int64_t capacity_blocks, DType dtype)
    : backend_(backend), n_layers_(n_layers), kv_dim_(kv_dim), capacity_(capacity_blocks), dtype_(dtype) {}

KvPool::~KvPool() { backend_->free_pool(storage_, storage_bytes_); }

size_t KvPool::layer_bytes() const {
  return static_cast<size_t>(capacity_) * kBlockTokens * static_cast<size_t>(row_bytes());
}

Status KvPool::init() {
  refs_.assign(static_cast<size_t>(capacity_), 0);
  free_.clear();
  for (int64_t b = capacity_ - 1; b >= 0; --b) free_.push_back(static_cast<int32_t>(b));
  if (n_layers_ == 0 || capacity_ == 0) return Status::Ok();
  storage_bytes_ = 2 * static_cast<size_t>(n_layers_) * layer_bytes();
  storage_ = backend_->alloc_pool(storage_bytes_);
  if (!storage_) {
    return Status(StatusCode::kOutOfMemory,
                  "cannot reserve " + std::to_string(storage_bytes_) + " bytes for the KV cache pool");
  }
  return Status::Ok();
}

int32_t KvPool::allocate() {
  std::lock_guard<std::mutex> lock(mu_);
  if (free_.empty()) return -1;
  const int32_t b = free_.back();
  free_.pop_back();
  refs_[b] = 1;
  return b;
}

void KvPool::retain(int32_t block) {
  std::lock_guard<std::mutex> lock(mu_);
  ++refs_[block];
}

void KvPool::release(int32_t block) {
  std::lock_guard<std::mutex> lock(mu_);
  if (--refs_[block] == 0) free_.push_back(block);
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

void* KvPool::k_row_ptr(int64_t layer_slot, int32_t block, int64_t row) const {
  char* layer = static_cast<char*>(storage_) + 2 * static_cast<size_t>(layer_slot) * layer_bytes();
  return layer + (static_cast<size_t>(block) * kBlockTokens + static_cast<size_t>(row)) * row_bytes();
}

void* KvPool::v_row_ptr(int64_t layer_slot, int32_t block, int64_t row) const {
  return static_cast<char*>(k_row_ptr(layer_slot, block, row)) + layer_bytes();
}

void KvPool::copy_rows(int32_t dst, int32_t src, int64_t rows) {
  const size_t n = static_cast<size_t>(rows * row_bytes());
  for (int64_t l = 0; l < n_layers_; ++l) {
    backend_->copy_bytes(k_row_ptr(l, dst, 0), k_row_ptr(l, src, 0), n);
    backend_->copy_bytes(v_row_ptr(l, dst, 0), v_row_ptr(l, src, 0), n);
  }
}

cpu::KvBlocks KvPool::view(int64_t layer_slot, const int32_t* table) const {
  return cpu::KvBlocks{k_row_ptr(layer_slot, 0, 0), v_row_ptr(layer_slot, 0, 0), table, kBlockTokens,
                       kBlockTokens * kv_dim_, dtype_};
}

}  // namespace nemo
