// ThreadPool: n_threads - 1 persistent workers plus the calling thread.
//
// One job at a time. parallel_for publishes the job (function, chunking, a fresh generation number)
// under mu_, wakes the workers, and then claims chunks itself. Chunks are claimed with an atomic
// fetch-add on next_chunk_. A worker joins a job only while it is open and counts itself in pending_;
// when the caller has run out of chunks it closes the job (no more workers may join) and waits until
// pending_ drops to zero, so no worker touches the job after parallel_for returns. Workers spin briefly
// for the next generation before sleeping on cv_start_.
//
// The header's fields are used with GCC/Clang __atomic builtins where they are read outside mu_
// (generation_, stop_, next_chunk_, pending_); every write to them also happens under mu_ except the
// chunk fetch-adds, which only registered participants perform.
#include "core/thread_pool.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <exception>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace nemo {
namespace {

// The pool whose job the current thread is running (to run nested calls inline instead of deadlocking).
thread_local const ThreadPool* tls_running_pool = nullptr;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

// How long a worker (or the caller waiting for workers) spins before blocking.
constexpr auto kSpin = std::chrono::microseconds(30);

template <class Pred>
bool spin_until(Pred ready) {
  const auto deadline = std::chrono::steady_clock::now() + kSpin;
  for (;;) {
    for (int i = 0; i < 64; ++i) {
      if (ready()) return true;
      cpu_relax();
    }
    if (std::chrono::steady_clock::now() >= deadline) return ready();
  }
}

struct RunningScope {
  const ThreadPool* saved;
  explicit RunningScope(const ThreadPool* p) : saved(tls_running_pool) { tls_running_pool = p; }
  ~RunningScope() { tls_running_pool = saved; }
};

}  // namespace

ThreadPool::ThreadPool(int n_threads) : n_threads_(n_threads < 1 ? 1 : n_threads) {
  workers_.reserve(static_cast<size_t>(n_threads_ - 1));
  try {
    for (int i = 0; i + 1 < n_threads_; ++i) workers_.emplace_back(&ThreadPool::worker_loop, this, i);
  } catch (...) {
    // Could not create every thread: run with the ones we have.
    n_threads_ = static_cast<int>(workers_.size()) + 1;
  }
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    __atomic_store_n(&stop_, true, __ATOMIC_RELEASE);
  }
  cv_start_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::worker_loop(int /*index*/) {
  uint64_t seen = 0;
  for (;;) {
    spin_until([&] {
      return __atomic_load_n(&generation_, __ATOMIC_ACQUIRE) != seen ||
             __atomic_load_n(&stop_, __ATOMIC_ACQUIRE);
    });
    std::unique_lock<std::mutex> lk(mu_);
    cv_start_.wait(lk, [&] { return stop_ || generation_ != seen; });
    if (stop_) return;
    seen = generation_;
    if (job_ == nullptr || job_chunks_ == 0) continue;  // that job is already closed
    const std::function<void(int64_t, int64_t)>* fn = job_;
    const int64_t n = job_n_, chunk = job_chunk_, chunks = job_chunks_;
    __atomic_store_n(&pending_, pending_ + 1, __ATOMIC_RELAXED);
    lk.unlock();
    {
      RunningScope scope(this);
      for (;;) {
        const int64_t c = __atomic_fetch_add(&next_chunk_, 1, __ATOMIC_RELAXED);
        if (c >= chunks) break;
        const int64_t b = c * chunk;
        (*fn)(b, std::min(n, b + chunk));  // fn is the caller's wrapper: it does not throw
      }
    }
    lk.lock();
    __atomic_store_n(&pending_, pending_ - 1, __ATOMIC_RELEASE);
    if (pending_ == 0) cv_done_.notify_all();
  }
}

void ThreadPool::parallel_for(int64_t n, int64_t grain,
                              const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  if (grain < 1) grain = 1;
  if (n_threads_ == 1 || n <= grain || tls_running_pool == this) {
    fn(0, n);
    return;
  }
  const int64_t target_chunks = static_cast<int64_t>(n_threads_) * 4;
  const int64_t chunk = std::max(grain, (n + target_chunks - 1) / target_chunks);
  const int64_t chunks = (n + chunk - 1) / chunk;
  if (chunks <= 1) {
    fn(0, n);
    return;
  }

  // Exceptions are caught on whichever thread runs the range; the first is rethrown here. After a
  // failure the remaining ranges are skipped.
  std::exception_ptr error;
  std::mutex error_mu;
  std::atomic<bool> failed{false};
  struct Ctx {
    const std::function<void(int64_t, int64_t)>* fn;
    std::exception_ptr* error;
    std::mutex* error_mu;
    std::atomic<bool>* failed;
  } ctx{&fn, &error, &error_mu, &failed};
  const std::function<void(int64_t, int64_t)> run = [c = &ctx](int64_t b, int64_t e) {
    if (c->failed->load(std::memory_order_relaxed)) return;
    try {
      (*c->fn)(b, e);
    } catch (...) {
      std::lock_guard<std::mutex> lk(*c->error_mu);
      if (!*c->error) *c->error = std::current_exception();
      c->failed->store(true, std::memory_order_relaxed);
    }
  };

  std::unique_lock<std::mutex> lk(mu_);
  cv_done_.wait(lk, [&] { return job_ == nullptr; });  // another caller's job is running
  job_ = &run;
  job_n_ = n;
  job_chunk_ = chunk;
  job_chunks_ = chunks;
  __atomic_store_n(&next_chunk_, 0, __ATOMIC_RELAXED);
  __atomic_store_n(&generation_, generation_ + 1, __ATOMIC_RELEASE);
  lk.unlock();
  cv_start_.notify_all();

  {
    RunningScope scope(this);
    for (;;) {
      const int64_t c = __atomic_fetch_add(&next_chunk_, 1, __ATOMIC_RELAXED);
      if (c >= chunks) break;
      const int64_t b = c * chunk;
      run(b, std::min(n, b + chunk));
    }
  }

  lk.lock();
  job_chunks_ = 0;  // closed: late workers will not join
  if (pending_ != 0) {
    lk.unlock();
    spin_until([&] { return __atomic_load_n(&pending_, __ATOMIC_ACQUIRE) == 0; });
    lk.lock();
    cv_done_.wait(lk, [&] { return pending_ == 0; });
  }
  job_ = nullptr;
  lk.unlock();
  cv_done_.notify_all();  // a caller may be waiting for the pool

  if (error) std::rethrow_exception(error);
}

}  // namespace nemo
