// PrefixCache: snapshots keyed by the exact tokens they have seen. A new request restores the longest
// cached prefix of its prompt and computes only the rest. Entries are evicted least recently used first
// while the bytes the cache holds exceed its budget; pinned entries (a chat session's anchor, a snapshot
// a caller asked to keep) stay until unpinned.
//
// Bytes held = the Mamba state copies of the entries + the KV blocks that only snapshots reference
// (KvPool counts those as references come and go), so size checks are O(1), never a walk over every
// sequence and snapshot.
//
// Thread safety: every method takes the cache's own mutex, held for O(prompt) at most (lookup hashes the
// prompt once); snapshots that leave the cache are destroyed after the lock is released.
#pragma once
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "cache/kv_pool.h"
#include "cache/sequence_state.h"

namespace nemo {

class PrefixCache {
 public:
  // Entry ids come from `ids`, shared with the engine's other snapshots so that one id names one snapshot.
  PrefixCache(KvPool* pool, int64_t budget_bytes, std::atomic<int32_t>* ids)
      : pool_(pool), budget_bytes_(budget_bytes), ids_(ids) {}

  struct Hit {
    int32_t id = -1;  // -1: no entry
    int64_t length = 0;
    std::shared_ptr<const Snapshot> snapshot;
  };
  // The longest entry whose tokens are a prefix of tokens[0, n) and at most max_length long; marks it used.
  Hit lookup(const int32_t* tokens, int64_t n, int64_t max_length);
  // The entry holding exactly tokens[0, n), or -1.
  int32_t find(const int32_t* tokens, int64_t n) const;

  // Adds a snapshot (its tokens are snapshot->tokens) with `pins` pins and returns its id. When the same
  // tokens are cached already, the new snapshot is dropped and the existing entry gets the pins.
  int32_t insert(std::shared_ptr<Snapshot> snapshot, int32_t pins);
  // Adds or removes a pin; false when no such entry (unpinning an evicted entry is not an error).
  bool pin(int32_t id, int32_t delta);
  std::shared_ptr<const Snapshot> get(int32_t id) const;

  // Every cached snapshot, least recently used first (device backends move their states to the host).
  std::vector<std::shared_ptr<Snapshot>> snapshots_by_age() const;

  // Drops least recently used unpinned entries while the cache holds more than its budget.
  void evict();

  int64_t bytes() const;
  int64_t entries() const;
  int64_t state_bytes() const;
  int64_t hits() const;
  int64_t tokens_reused() const;

 private:
  struct Entry {
    std::shared_ptr<Snapshot> snapshot;
    uint32_t hash = 0;
    uint64_t last_used = 0;
    int32_t pins = 0;
  };
  int64_t bytes_locked() const;
  bool same_tokens(const Entry& e, const int32_t* tokens, int64_t n) const;
  int32_t find_locked(const int32_t* tokens, int64_t n, uint32_t hash) const;

  KvPool* pool_;
  const int64_t budget_bytes_;
  mutable std::mutex mu_;
  std::map<int32_t, Entry> entries_;  // id -> entry
  // length -> (hash of tokens[0, length) -> ids)
  std::map<int64_t, std::unordered_multimap<uint32_t, int32_t>> index_;
  std::atomic<int32_t>* ids_;
  uint64_t clock_ = 0;
  int64_t state_bytes_ = 0;
  int64_t hits_ = 0;
  int64_t tokens_reused_ = 0;
};

}  // namespace nemo
