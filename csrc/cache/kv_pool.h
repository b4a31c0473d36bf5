// KvPool: the attention layers' K/V cache as fixed-size blocks of positions, shared by all sequences
// and snapshots. A block id names the same rows in every attention layer, so a sequence needs one block
// table for all of them. Blocks are reference-counted: a prefix shared by several sequences or
// snapshots is stored once, and a block is copied only when a holder writes into a shared one
// (copy-on-write, which can only happen to the block holding the sequence's next position).
//
// Block size: 64 positions. Small enough that a copy-on-write (at most 63 rows) and the waste of a
// half-filled block stay small (a 9B block is 1 MiB in f16 across its 4 attention layers), large enough
// that the attention loop walks long contiguous runs and block tables stay short (2,048 entries at 128k).
// Inside a block V is token-major [kBlockTokens][kv_dim]; K is too, or channel-major [kv_dim]
// [kBlockTokens] when the backend asks for it (the CPU kernels; the constructor's k_channel_major): the same bytes either way.
#pragma once
#include <cstdint>
#include <mutex>
#include <vector>

#include "core/dtype.h"
#include "core/status.h"
#include "core/device_memory.h"
#include "core/views.h"

namespace nemo {

class KvPool {
 public:
  static constexpr int64_t kBlockTokens = 64;

  // k_channel_major: K blocks [kv_dim][kBlockTokens] (the backend's kv_k_channel_major(): the CPU kernels').
  KvPool(DeviceMemory* memory, bool k_channel_major, int64_t n_layers, int64_t kv_dim, int64_t capacity_blocks,
         DType dtype);
  ~KvPool();
  KvPool(const KvPool&) = delete;
  KvPool& operator=(const KvPool&) = delete;

  Status init();  // reserves the storage (pages committed when first written)

  // Who holds a reference: live sequences or snapshots. The pool counts the blocks that only snapshots
  // hold, so the prefix cache knows its size in O(1) (snapshot_only_blocks()).
  enum class Holder { kSequence, kSnapshot };

  // A fresh block with one reference, or -1 when the pool is full.
  int32_t allocate(Holder holder = Holder::kSequence);
  void retain(int32_t block, Holder holder);
  void release(int32_t block, Holder holder);
  int32_t refs(int32_t block) const;

  // Copies the first `rows` positions of every layer from `src` into `dst`.
  void copy_rows(int32_t dst, int32_t src, int64_t rows);

  // The view the attention kernels read, for one layer and one block table.
  KvBlocks view(int64_t layer_slot, const int32_t* table) const;

  // The first `rows` positions of one block of one layer, K (kv = 0) or V (kv = 1), as token-major
  // rows of row_bytes() on the host, whatever layout the backend stores (export/import).
  void read_rows(int64_t layer_slot, int kv, int32_t block, int64_t rows, void* host_dst) const;
  void write_rows(int64_t layer_slot, int kv, int32_t block, int64_t rows, const void* host_src);

  int64_t capacity() const { return capacity_; }
  int64_t used() const;
  // Blocks referenced by snapshots and by no live sequence.
  int64_t snapshot_only_blocks() const;
  int64_t block_bytes() const;  // all layers, K and V
  int64_t row_bytes() const { return kv_dim_ * static_cast<int64_t>(dtype_size(dtype_)); }
  DType dtype() const { return dtype_; }
  int64_t n_layers() const { return n_layers_; }

 private:
  size_t layer_bytes() const;
  void* block_ptr(int64_t layer_slot, int kv, int32_t block) const;
  bool channel_major(int kv) const { return kv == 0 && k_channel_major_; }

  DeviceMemory* memory_;
  int64_t n_layers_, kv_dim_, capacity_;
  DType dtype_;
  bool k_channel_major_;     // K blocks [kv_dim][kBlockTokens]
  void* storage_ = nullptr;  // [n_layers][K|V][capacity][block], a block kBlockTokens * kv_dim values
  size_t storage_bytes_ = 0;
  mutable std::mutex mu_;
  std::vector<int32_t> refs_;
  std::vector<int32_t> seq_refs_;  // of refs_, those held by live sequences
  int64_t snapshot_only_ = 0;      // blocks with refs_ > 0 and seq_refs_ == 0
  std::vector<int32_t> free_;  // stack of free block ids
};

}  // namespace nemo
