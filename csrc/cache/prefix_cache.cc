#include "cache/prefix_cache.h"

#include <algorithm>

namespace nemo {

namespace {

// Rolling hash of every prefix: out[i] covers tokens[0, i) (out has n + 1 entries).
void prefix_hashes(const int32_t* tokens, int64_t n, std::vector<uint32_t>* out) {
  out->resize(static_cast<size_t>(n) + 1);
  uint32_t x = 0x811c9dc5u;
  (*out)[0] = x;
  for (int64_t i = 0; i < n; ++i) {
    x = (x ^ static_cast<uint32_t>(tokens[i])) * 0x01000193u + 0x9e3779b9u;
    (*out)[static_cast<size_t>(i) + 1] = x;
  }
}

}  // namespace

bool PrefixCache::same_tokens(const Entry& e, const int32_t* tokens, int64_t n) const {
  const std::vector<int32_t>& t = e.snapshot->tokens;
  return static_cast<int64_t>(t.size()) == n && std::equal(t.begin(), t.end(), tokens);
}

int32_t PrefixCache::find_locked(const int32_t* tokens, int64_t n, uint32_t hash) const {
  auto level = index_.find(n);
  if (level == index_.end()) return -1;
  auto [lo, hi] = level->second.equal_range(hash);
  for (auto it = lo; it != hi; ++it) {
    if (same_tokens(entries_.at(it->second), tokens, n)) return it->second;
  }
  return -1;
}

PrefixCache::Hit PrefixCache::lookup(const int32_t* tokens, int64_t n, int64_t max_length) {
  max_length = std::min(max_length, n);
  std::lock_guard<std::mutex> lock(mu_);
  Hit hit;
  if (index_.empty() || max_length <= 0) return hit;
  std::vector<uint32_t> h;
  prefix_hashes(tokens, max_length, &h);
  // Longest first: walk the lengths present, from max_length down.
  for (auto it = index_.upper_bound(max_length); it != index_.begin();) {
    --it;
    const int64_t len = it->first;
    if (len <= 0) break;
    const int32_t id = find_locked(tokens, len, h[static_cast<size_t>(len)]);
    if (id < 0) continue;
    Entry& e = entries_.at(id);
    e.last_used = ++clock_;
    ++hits_;
    tokens_reused_ += len;
    hit.id = id;
    hit.length = len;
    hit.snapshot = e.snapshot;
    return hit;
  }
  return hit;
}

int32_t PrefixCache::find(const int32_t* tokens, int64_t n) const {
  std::vector<uint32_t> h;
  prefix_hashes(tokens, n, &h);
  std::lock_guard<std::mutex> lock(mu_);
  return find_locked(tokens, n, h[static_cast<size_t>(n)]);
}

std::vector<std::shared_ptr<Snapshot>> PrefixCache::snapshots_by_age() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::pair<uint64_t, std::shared_ptr<Snapshot>>> by_use;
  for (const auto& [id, e] : entries_) by_use.emplace_back(e.last_used, e.snapshot);
  std::sort(by_use.begin(), by_use.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<std::shared_ptr<Snapshot>> out;
  for (auto& [t, s] : by_use) out.push_back(std::move(s));
  return out;
}

int32_t PrefixCache::insert(std::shared_ptr<Snapshot> snapshot, int32_t pins) {
  const std::vector<int32_t>& t = snapshot->tokens;
  const int64_t n = static_cast<int64_t>(t.size());
  std::vector<uint32_t> h;
  prefix_hashes(t.data(), n, &h);
  std::shared_ptr<Snapshot> duplicate;  // destroyed after the lock
  std::lock_guard<std::mutex> lock(mu_);
  const uint32_t key = h[static_cast<size_t>(n)];
  const int32_t existing = find_locked(t.data(), n, key);
  if (existing >= 0) {
    Entry& e = entries_.at(existing);
    e.pins += pins;
    e.last_used = ++clock_;
    duplicate = std::move(snapshot);
    return existing;
  }
  const int32_t id = ids_->fetch_add(1);
  state_bytes_ += snapshot->state_bytes;
  entries_[id] = Entry{std::move(snapshot), key, ++clock_, pins};
  index_[n].emplace(key, id);
  return id;
}

bool PrefixCache::pin(int32_t id, int32_t delta) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(id);
  if (it == entries_.end()) return false;
  it->second.pins = std::max(0, it->second.pins + delta);
  return true;
}

std::shared_ptr<const Snapshot> PrefixCache::get(int32_t id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(id);
  return it == entries_.end() ? nullptr : it->second.snapshot;
}

int64_t PrefixCache::bytes_locked() const {
  return state_bytes_ + pool_->snapshot_only_blocks() * pool_->block_bytes();
}

void PrefixCache::evict() {
  std::vector<std::shared_ptr<Snapshot>> victims;
  {
    std::lock_guard<std::mutex> lock(mu_);
    // bytes_locked() is re-read after each drop: a victim's KV blocks that live sequences share free
    // nothing, so the count of snapshot-only blocks decides, not the victim's size.
    while (!entries_.empty() && bytes_locked() > budget_bytes_) {
      auto victim = entries_.end();
      for (auto it = entries_.begin(); it != entries_.end(); ++it) {
        if (it->second.pins == 0 && (victim == entries_.end() || it->second.last_used < victim->second.last_used)) {
          victim = it;
        }
      }
      if (victim == entries_.end()) break;  // everything left is pinned
      const int64_t n = static_cast<int64_t>(victim->second.snapshot->tokens.size());
      auto level = index_.find(n);
      auto [lo, hi] = level->second.equal_range(victim->second.hash);
      for (auto it = lo; it != hi; ++it) {
        if (it->second == victim->first) {
          level->second.erase(it);
          break;
        }
      }
      if (level->second.empty()) index_.erase(level);
      state_bytes_ -= victim->second.snapshot->state_bytes;
      // Released now, so that the next bytes_locked() sees its KV references gone; one still in use
      // elsewhere (an export running) is released by its last holder.
      if (victim->second.snapshot.use_count() == 1) {
        victim->second.snapshot.reset();
      } else {
        victims.push_back(std::move(victim->second.snapshot));
      }
      entries_.erase(victim);
    }
  }
}

int64_t PrefixCache::bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return bytes_locked();
}

int64_t PrefixCache::entries() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int64_t>(entries_.size());
}

int64_t PrefixCache::state_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return state_bytes_;
}

int64_t PrefixCache::hits() const {
  std::lock_guard<std::mutex> lock(mu_);
  return hits_;
}

int64_t PrefixCache::tokens_reused() const {
  std::lock_guard<std::mutex> lock(mu_);
  return tokens_reused_;
}

}  // namespace nemo
