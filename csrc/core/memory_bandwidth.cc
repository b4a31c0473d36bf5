#include "core/memory_bandwidth.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "core/cpu_features.h"
#include "core/thread_pool.h"

namespace nemo {
namespace {

typedef uint64_t u64x8 __attribute__((vector_size(64)));

// ORs 256 bytes per step into four independent accumulators (no dependency chain limits the loads);
// the result is returned so the compiler cannot drop the reads.
__attribute__((always_inline)) inline uint64_t read_body(const uint8_t* p, size_t n) {
  u64x8 a = {}, b = {}, c = {}, d = {};
  for (size_t i = 0; i + 256 <= n; i += 256) {
    u64x8 v0, v1, v2, v3;
    std::memcpy(&v0, p + i, 64);
    std::memcpy(&v1, p + i + 64, 64);
    std::memcpy(&v2, p + i + 128, 64);
    std::memcpy(&v3, p + i + 192, 64);
    a |= v0;
    b |= v1;
    c |= v2;
    d |= v3;
  }
  const u64x8 r = a | b | c | d;
  uint64_t out = 0;
  for (int j = 0; j < 8; ++j) out |= r[j];
  return out;
}

uint64_t read_scalar(const uint8_t* p, size_t n) { return read_body(p, n); }
#if defined(__x86_64__)
__attribute__((target("avx2"))) uint64_t read_avx2(const uint8_t* p, size_t n) { return read_body(p, n); }
__attribute__((target("avx512f"))) uint64_t read_avx512(const uint8_t* p, size_t n) { return read_body(p, n); }
#endif

}  // namespace

double measure_read_bandwidth(size_t bytes, int reps, ThreadPool& pool) {
  bytes = bytes / 256 * 256;
  if (bytes == 0 || reps <= 0) return 0.0;
  uint8_t* buf = static_cast<uint8_t*>(std::aligned_alloc(4096, (bytes + 4095) / 4096 * 4096));
  if (buf == nullptr) return 0.0;
  auto read = read_scalar;
#if defined(__x86_64__)
  if (kernel_isa() == KernelIsa::kAvx512) read = read_avx512;
  if (kernel_isa() == KernelIsa::kAvx2) read = read_avx2;
#endif
  // One slice of 256-byte lines per thread, each thread first-touching its own slice (NUMA placement).
  const int64_t lines = static_cast<int64_t>(bytes / 256);
  const int64_t per_task = (lines + pool.size() - 1) / pool.size();
  pool.parallel_for(pool.size(), 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t l0 = std::min(lines, t * per_task), l1 = std::min(lines, (t + 1) * per_task);
      std::memset(buf + l0 * 256, static_cast<int>(t + 1), static_cast<size_t>((l1 - l0) * 256));
    }
  });
  std::vector<uint64_t> sink(static_cast<size_t>(pool.size()));
  double best = 0.0;
  for (int r = 0; r < reps; ++r) {
    const auto start = std::chrono::steady_clock::now();
    pool.parallel_for(pool.size(), 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t l0 = std::min(lines, t * per_task), l1 = std::min(lines, (t + 1) * per_task);
        sink[static_cast<size_t>(t)] |= read(buf + l0 * 256, static_cast<size_t>((l1 - l0) * 256));
      }
    });
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (s > 0) best = std::max(best, static_cast<double>(bytes) / s / 1e9);
  }
  std::free(buf);
  volatile uint64_t keep = 0;
  for (uint64_t v : sink) keep = keep | v;
  (void)keep;
  return best;
}

double measure_read_bandwidth_of(const std::vector<std::pair<const uint8_t*, size_t>>& ranges, int reps,
                                 ThreadPool& pool) {
  size_t total = 0;
  for (const auto& r : ranges) total += r.second / 256 * 256;
  if (total == 0 || reps <= 0) return 0.0;
  auto read = read_scalar;
#if defined(__x86_64__)
  if (kernel_isa() == KernelIsa::kAvx512) read = read_avx512;
  if (kernel_isa() == KernelIsa::kAvx2) read = read_avx2;
#endif
  const int64_t threads = pool.size();
  std::vector<uint64_t> sink(static_cast<size_t>(threads));
  double best = 0.0;
  for (int r = 0; r < reps; ++r) {
    const auto start = std::chrono::steady_clock::now();
    for (const auto& range : ranges) {
      const int64_t lines = static_cast<int64_t>(range.second / 256);
      const int64_t per_task = (lines + threads - 1) / threads;
      pool.parallel_for(threads, 1, [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t) {
          const int64_t l0 = std::min(lines, t * per_task), l1 = std::min(lines, (t + 1) * per_task);
          sink[static_cast<size_t>(t)] |= read(range.first + l0 * 256, static_cast<size_t>((l1 - l0) * 256));
        }
      });
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (s > 0) best = std::max(best, static_cast<double>(total) / s / 1e9);
  }
  volatile uint64_t keep = 0;
  for (uint64_t v : sink) keep = keep | v;
  (void)keep;
  return best;
}

}  // namespace nemo
