// Standalone self-test and micro-benchmark for ThreadPool, cpu_features and cpu::matmul.
// Built and run (--quick) by scripts/native-tests.sh (CMake target nemotron_matmul_selftest; CI). By hand
// (one line):
//   g++ -std=c++17 -O2 -pthread -I csrc native-tests/matmul_selftest.cc csrc/kernels/matmul.cc
//       csrc/kernels/matmul_quant.cc csrc/kernels/matmul_quant_fast.cc csrc/kernels/matmul_neon.cc
//       csrc/kernels/matmul_quant_neon.cc csrc/core/dtype.cc csrc/core/thread_pool.cc
//       csrc/core/cpu_features.cc -o /tmp/mm && /tmp/mm
// (for aarch64 under qemu: scripts/test-neon.sh). Options: --quick (skip the benchmarks), --bench
// (only the benchmarks). NEMOTRON_CPU_KERNELS=<path> checks only that path; NEMOTRON_SELFTEST_LIGHT=1
// runs a smaller invariance sweep (for emulators). Exit status 0 when every check passes.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "core/cpu_features.h"
#include "core/dtype.h"
#include "core/thread_pool.h"
#include "kernels/kernels.h"

using namespace nemo;
using Clock = std::chrono::steady_clock;

namespace {

int g_failures = 0;

void check(bool ok, const char* what) {
  if (!ok) {
    ++g_failures;
    std::printf("  FAIL: %s\n", what);
  }
}

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// ---- ThreadPool -------------------------------------------------------------------------------------

// Runs parallel_for(n, grain) and checks that the ranges cover [0, n) exactly once and that every
// range but the last holds at least `grain` items.
bool coverage_once(ThreadPool& pool, int64_t n, int64_t grain, std::vector<std::atomic<int>>& hits) {
  for (int64_t i = 0; i < n; ++i) hits[i].store(0, std::memory_order_relaxed);
  std::atomic<int> bad_range{0};
  pool.parallel_for(n, grain, [&](int64_t b, int64_t e) {
    if (b < 0 || e > n || b >= e || (e - b < grain && e != n)) bad_range.fetch_add(1);
    for (int64_t i = b; i < e; ++i) hits[i].fetch_add(1, std::memory_order_relaxed);
  });
  if (bad_range.load() != 0) return false;
  for (int64_t i = 0; i < n; ++i)
    if (hits[i].load(std::memory_order_relaxed) != 1) return false;
  return true;
}

void test_thread_pool() {
  std::printf("ThreadPool\n");
  const int64_t ns[] = {0, 1, 2, 3, 5, 7, 8, 9, 13, 31, 64, 100, 257, 1000, 4097};
  const int64_t grains[] = {0, 1, 2, 3, 7, 64, 1000};
  std::vector<std::atomic<int>> hits(5000);
  for (int threads : {1, 2, 3, 4, 8}) {
    ThreadPool pool(threads);
    bool ok = pool.size() == threads;
    for (int64_t n : ns)
      for (int64_t g : grains) ok = ok && coverage_once(pool, n, std::max<int64_t>(g, 1), hits);
    char msg[96];
    std::snprintf(msg, sizeof msg, "coverage, %d threads", threads);
    check(ok, msg);
  }

  {  // 10,000 back-to-back jobs: exact sums, and how long a small job takes
    ThreadPool pool(2);
    std::mt19937 rng(7);
    bool ok = true;
    const auto t0 = Clock::now();
    const int reps = 10000;
    for (int r = 0; r < reps; ++r) {
      const int64_t n = 1 + static_cast<int64_t>(rng() % 3000);
      const int64_t grain = 1 + static_cast<int64_t>(rng() % 50);
      std::atomic<int64_t> sum{0}, count{0};
      pool.parallel_for(n, grain, [&](int64_t b, int64_t e) {
        int64_t s = 0;
        for (int64_t i = b; i < e; ++i) s += i;
        sum.fetch_add(s);
        count.fetch_add(e - b);
      });
      ok = ok && count.load() == n && sum.load() == n * (n - 1) / 2;
    }
    const double dt = seconds_since(t0);
    std::printf("  %d jobs (2 threads): %.1f us per parallel_for\n", reps, dt / reps * 1e6);
    check(ok, "10,000 repeated jobs");
  }

  {  // exceptions reach the caller, the first one wins, the pool still works afterwards
    ThreadPool pool(3);
    bool caught = false;
    try {
      pool.parallel_for(1000, 1, [&](int64_t b, int64_t e) {
        if (b <= 500 && 500 < e) throw std::runtime_error("boom at 500");
      });
    } catch (const std::runtime_error& ex) {
      caught = std::string(ex.what()) == "boom at 500";
    }
    check(caught, "exception propagated to the caller");
    int thrown = 0;
    for (int r = 0; r < 200; ++r) {
      try {
        pool.parallel_for(64, 1, [&](int64_t, int64_t) { throw 42; });
      } catch (int v) {
        thrown += v == 42;
      }
    }
    check(thrown == 200, "exception thrown by every range");
    std::atomic<int64_t> count{0};
    pool.parallel_for(1000, 1, [&](int64_t b, int64_t e) { count.fetch_add(e - b); });
    check(count.load() == 1000, "pool usable after exceptions");
    bool inline_caught = false;  // the inline path (n <= grain) propagates too
    try {
      pool.parallel_for(10, 100, [&](int64_t, int64_t) { throw std::logic_error("inline"); });
    } catch (const std::logic_error&) {
      inline_caught = true;
    }
    check(inline_caught, "exception from the inline path");
  }

  {  // nested parallel_for on the same pool runs inline
    ThreadPool pool(2);
    std::atomic<int64_t> count{0};
    pool.parallel_for(16, 1, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i)
        pool.parallel_for(100, 1, [&](int64_t b2, int64_t e2) { count.fetch_add(e2 - b2); });
    });
    check(count.load() == 1600, "nested parallel_for");
  }

  {  // two threads racing on one pool
    ThreadPool pool(3);
    std::atomic<bool> ok{true};
    auto caller = [&](int seed) {
      std::mt19937 rng(seed);
      for (int r = 0; r < 2000; ++r) {
        const int64_t n = 1 + static_cast<int64_t>(rng() % 500);
        std::atomic<int64_t> count{0};
        pool.parallel_for(n, 1, [&](int64_t b, int64_t e) { count.fetch_add(e - b); });
        if (count.load() != n) ok = false;
      }
    };
    std::thread a(caller, 1), b(caller, 2);
    a.join();
    b.join();
    check(ok.load(), "concurrent callers");
  }

  {  // destructor with idle (sleeping and spinning) workers, many times
    const auto t0 = Clock::now();
    for (int r = 0; r < 200; ++r) {
      ThreadPool pool(4);
      if (r % 2 == 0) pool.parallel_for(100, 1, [](int64_t, int64_t) {});
      if (r % 50 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    std::printf("  200 pools created and destroyed: %.1f ms\n", seconds_since(t0) * 1e3);
    check(true, "destructor");
  }
}

// ---- cpu_features ------------------------------------------------------------------------------------

std::vector<std::string> all_paths() {
  std::vector<std::string> paths = {"scalar"};
  if (cpu_features().avx2_fma) paths.push_back("avx2");
  if (cpu_features().avx512f) paths.push_back("avx512");
  if (cpu_features().neon) paths.push_back("neon");
  return paths;
}

// The paths the checks run on: all of them, or only the one NEMOTRON_CPU_KERNELS names (when the CPU
// has it), so that scripts/test-neon.sh can split the work between runs.
std::vector<std::string> available_paths() {
  const std::vector<std::string> all = all_paths();
  const char* env = std::getenv("NEMOTRON_CPU_KERNELS");
  if (env != nullptr && std::find(all.begin(), all.end(), env) != all.end()) return {env};
  return all;
}

void test_cpu_features(const std::string& initial) {
  const CpuFeatures& f = cpu_features();
  std::printf("CPU: avx2_fma=%d avx512f=%d avx512bf16=%d neon=%d dotprod=%d i8mm=%d bf16=%d; initial "
              "path: %s\n", f.avx2_fma, f.avx512f, f.avx512bf16, f.neon, f.neon_dotprod, f.neon_i8mm,
              f.neon_bf16, initial.c_str());
  // NEMOTRON_EXPECT_NEON_EXT (scripts/test-neon.sh, per qemu CPU model): the optional extensions the
  // CPU must report, "dotprod,i8mm,bf16" or a subset in that order, or "none"; so a CPU model or a
  // detection that loses one fails here instead of silently testing less.
  if (const char* want = std::getenv("NEMOTRON_EXPECT_NEON_EXT")) {
    std::string have;
    if (f.neon_dotprod) have += ",dotprod";
    if (f.neon_i8mm) have += ",i8mm";
    if (f.neon_bf16) have += ",bf16";
    have = have.empty() ? "none" : have.substr(1);
    check(have == want, ("NEON extensions detected: " + have + ", expected " + want).c_str());
  }
  const std::vector<std::string> all = all_paths();
  const std::string best = all.back();
  const char* env = std::getenv("NEMOTRON_CPU_KERNELS");
  if (env != nullptr && std::find(all.begin(), all.end(), env) != all.end())
    check(initial == env, "NEMOTRON_CPU_KERNELS selects the initial path");
  else if (env == nullptr)
    check(initial == best, "the initial path is the best one");
  check(std::string(set_kernel_path_override("scalar")) == "scalar", "override scalar");
  check(std::string(set_kernel_path_override("avx512")) == best, "override avx512 capped");
  check(std::string(set_kernel_path_override("bogus")) == best, "unknown name keeps the path");
  check(std::string(set_kernel_path_override("avx2")) ==
            (f.neon ? "neon" : f.avx2_fma ? "avx2" : "scalar"),
        "override avx2");
  // Forced down, never up, and mapped across architectures: neon on x86 gives the best x86 path.
  check(std::string(set_kernel_path_override("scalar")) == "scalar", "override scalar again");
  check(std::string(set_kernel_path_override("neon")) == best, "override neon");
  check(kernel_isa() == (f.neon ? KernelIsa::kNeon
                         : f.avx512f ? KernelIsa::kAvx512
                         : f.avx2_fma ? KernelIsa::kAvx2
                                      : KernelIsa::kScalar),
        "kernel_isa() matches the name");
#if defined(__aarch64__)
  check(f.neon && !f.avx2_fma && !f.avx512f, "aarch64: neon, no x86 features");
#elif defined(__x86_64__)
  check(!f.neon && !f.neon_dotprod && !f.neon_i8mm && !f.neon_bf16, "x86-64: no neon features");
  check(!neon_ext(kNeonDotprod) && !neon_ext(kNeonI8mm) && !neon_ext(kNeonBf16), "x86-64: no neon extensions used");
#endif
  check(std::string(set_kernel_path_override(nullptr)) == best, "auto");
}

// ---- matmul -----------------------------------------------------------------------------------------

struct Weights {
  DType dtype;
  int64_t N, K;
  std::vector<uint8_t> storage;  // the stored values, at `offset` bytes past a 64-byte boundary
  const uint8_t* data = nullptr;
  std::vector<double> ref;       // the stored values, decoded exactly
  MatrixView view() const {
    MatrixView v;
    v.data = data;
    v.dtype = dtype;
    v.rows = N;
    v.cols = K;
    return v;
  }
};

uint16_t f32_to_f16(float v) {  // round to nearest even; test values are normal and small
  uint32_t bits;
  std::memcpy(&bits, &v, 4);
  const uint32_t sign = (bits >> 16) & 0x8000u;
  const int exp = static_cast<int>((bits >> 23) & 0xff) - 127 + 15;
  uint32_t mant = bits & 0x7fffffu;
  if (exp <= 0) return static_cast<uint16_t>(sign);  // flush tiny values (not used here)
  uint32_t h = sign | (static_cast<uint32_t>(exp) << 10) | (mant >> 13);
  const uint32_t rest = mant & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;
  return static_cast<uint16_t>(h);
}

// offset < 0: an allocation of exactly the matrix's size (so a sanitizer sees any read past it);
// otherwise the matrix starts `offset` bytes past a 64-byte boundary.
Weights make_weights(DType dt, int64_t N, int64_t K, uint32_t seed, int offset = -1) {
  Weights w{dt, N, K, {}, nullptr, {}};
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  const size_t n = static_cast<size_t>(N * K), es = dtype_size(dt);
  w.storage.resize(n * es + (offset < 0 ? 0 : 128));
  uint8_t* base = w.storage.data();
  if (offset >= 0) base += (64 - reinterpret_cast<uintptr_t>(base) % 64) % 64 + offset;
  w.data = base;
  w.ref.resize(n);
  for (size_t i = 0; i < n; ++i) {
    const float v = dist(rng);
    if (dt == DType::F32) {
      std::memcpy(base + 4 * i, &v, 4);
      w.ref[i] = v;
    } else {
      const uint16_t h = dt == DType::BF16 ? f32_to_bf16(v) : f32_to_f16(v);
      std::memcpy(base + 2 * i, &h, 2);
      w.ref[i] = dt == DType::BF16 ? bf16_to_f32(h) : f16_to_f32(h);
    }
  }
  return w;
}

// Max over rows of max|y - ref| / max|ref|; also checks that padding columns of y stay untouched.
double run_case(const Weights& w, int64_t T, ThreadPool& pool, bool* pad_ok) {
  const int64_t K = w.K, N = w.N;
  const int64_t ldx = K + 3, ldy = N + 5;
  std::mt19937 rng(static_cast<uint32_t>(T * 1000003 + K * 31 + N));
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(T * ldx));
  for (auto& v : x) v = dist(rng);
  const float sentinel = 12345.0f;
  std::vector<float> y(static_cast<size_t>(T * ldy), sentinel);
  cpu::matmul(y.data(), ldy, x.data(), ldx, w.view(), T, pool);
  double worst = 0.0;
  *pad_ok = true;
  std::vector<double> ref(static_cast<size_t>(N));
  for (int64_t t = 0; t < T; ++t) {
    double scale = 0.0;
    for (int64_t n = 0; n < N; ++n) {
      double s = 0.0;
      const double* wr = w.ref.data() + n * K;
      const float* xr = x.data() + t * ldx;
      for (int64_t k = 0; k < K; ++k) s += static_cast<double>(xr[k]) * wr[k];
      ref[n] = s;
      scale = std::max(scale, std::fabs(s));
    }
    double err = 0.0;
    for (int64_t n = 0; n < N; ++n) {
      const double d = std::fabs(static_cast<double>(y[t * ldy + n]) - ref[n]);
      err = std::max(err, std::isfinite(d) ? d : 1e30);
    }
    if (scale > 0) worst = std::max(worst, err / scale);
    else worst = std::max(worst, err);
    for (int64_t n = N; n < ldy; ++n)
      if (y[t * ldy + n] != sentinel) *pad_ok = false;
  }
  return worst;
}

void test_matmul() {
  std::printf("matmul correctness: max over rows of max|y-ref|/max|ref| (double reference)\n");
  struct Shape { int64_t T, K, N; };
  const Shape shapes[] = {{1, 64, 96},   {1, 4480, 257}, {3, 100, 33},  {17, 512, 130},
                          {130, 1000, 77}, {1, 1, 1},    {2, 7, 5},     {5, 33, 9},
                          {4, 2049, 11},  {9, 15, 3},    {1, 31, 1000}, {6, 2100, 70},
                          {300, 4000, 21}};  // the last one spans two T tiles
  const DType dtypes[] = {DType::F32, DType::F16, DType::BF16};
  ThreadPool pool2(2), pool3(3);
  std::vector<Weights> weights;
  for (const Shape& s : shapes)
    for (DType dt : dtypes)
      weights.push_back(make_weights(dt, s.N, s.K, static_cast<uint32_t>(s.K * 7 + s.N)));

  const double tol = 2e-5;
  for (const std::string& path : available_paths()) {
    set_kernel_path_override(path.c_str());
    for (DType dt : dtypes) {
      double worst = 0.0;
      std::string detail;
      bool pads = true;
      size_t wi = 0;
      for (const Shape& s : shapes) {
        for (DType d2 : dtypes) {
          const Weights& w = weights[wi++];
          if (d2 != dt) continue;
          for (ThreadPool* pool : {&pool2, &pool3}) {
            bool pad_ok = true;
            const double e = run_case(w, s.T, *pool, &pad_ok);
            pads = pads && pad_ok;
            if (e > tol) {
              char msg[160];
              std::snprintf(msg, sizeof msg, "%s %s T=%lld K=%lld N=%lld: error %.3g", path.c_str(),
                            dtype_name(dt), (long long)s.T, (long long)s.K, (long long)s.N, e);
              check(false, msg);
            }
            worst = std::max(worst, e);
          }
          if (s.T == 1 && s.K == 4480) {
            char buf[64];
            std::snprintf(buf, sizeof buf, " (1,4480,257): %.2e", run_case(w, 1, pool2, &pads));
            detail += buf;
          }
          if (s.T == 130) {
            char buf[64];
            std::snprintf(buf, sizeof buf, " (130,1000,77): %.2e", run_case(w, 130, pool2, &pads));
            detail += buf;
          }
        }
      }
      std::printf("  %-6s %-4s max %.2e over %zu shapes;%s\n", path.c_str(), dtype_name(dt), worst,
                  sizeof(shapes) / sizeof(shapes[0]), detail.c_str());
      check(pads, "columns beyond N untouched");
    }
    // Every W start offset within a 64-byte line (the SIMD paths realign their loads), with row sizes
    // that keep all rows at the same offset and ones that do not.
    const Shape aligned_shapes[] = {{1, 96, 7}, {5, 2080, 9}, {1, 32, 1}, {3, 64, 2}, {2, 40, 3},
                                    {1, 1056, 5}};
    double worst = 0.0;
    for (DType dt : dtypes) {
      const size_t es = dtype_size(dt);
      for (int off = 0; off < 64; off += static_cast<int>(es)) {
        for (const Shape& s : aligned_shapes) {
          const Weights w = make_weights(dt, s.N, s.K, static_cast<uint32_t>(off + s.K), off);
          bool pad_ok = true;
          const double e = run_case(w, s.T, pool2, &pad_ok);
          worst = std::max(worst, e);
          if (e > tol || !pad_ok) {
            char msg[160];
            std::snprintf(msg, sizeof msg, "%s %s offset %d T=%lld K=%lld N=%lld: error %.3g",
                          path.c_str(), dtype_name(dt), off, (long long)s.T, (long long)s.K,
                          (long long)s.N, e);
            check(false, msg);
          }
        }
      }
    }
    std::printf("  %-6s all dtypes, W at every offset in a 64-byte line: max %.2e\n", path.c_str(),
                worst);
    // Every F16 and BF16 bit pattern: with K = 1 and x = 1, y[n] must equal the decoded W[n] exactly
    // (NaN for NaN; -0 may come out as +0).
    for (DType dt : {DType::F16, DType::BF16}) {
      const int64_t N = 65536;
      std::vector<uint16_t> wbits(N);
      for (int64_t n = 0; n < N; ++n) wbits[n] = static_cast<uint16_t>(n);
      MatrixView v;
      v.data = wbits.data();
      v.dtype = dt;
      v.rows = N;
      v.cols = 1;
      const float one = 1.0f;
      std::vector<float> y(N);
      cpu::matmul(y.data(), N, &one, 1, v, 1, pool2);
      int64_t bad = 0;
      for (int64_t n = 0; n < N; ++n) {
        const float want = dt == DType::F16 ? f16_to_f32(wbits[n]) : bf16_to_f32(wbits[n]);
        if (!(y[n] == want || (std::isnan(y[n]) && std::isnan(want)))) ++bad;
      }
      char msg[96];
      std::snprintf(msg, sizeof msg, "%s %s: %lld of 65536 bit patterns decoded wrongly", path.c_str(),
                    dtype_name(dt), (long long)bad);
      check(bad == 0, msg);
    }
  }
  set_kernel_path_override(nullptr);
}

// ---- batch invariance ---------------------------------------------------------------------------------
// y[t, n] must be bitwise the same whatever the batch size, the row's position in the batch and the
// thread count: each row computed alone (one thread) is the reference, then batches of T rows starting
// at several offsets are computed with 2 and 3 threads and compared bit for bit.

void test_invariance(cpu::MatmulPrecision prec) {
  const bool fast = prec == cpu::MatmulPrecision::kFast;
  std::printf("matmul batch invariance%s (bitwise, alone vs batched, 1/2/3 threads)\n",
              fast ? " kFast" : "");
  // NEMOTRON_SELFTEST_LIGHT (scripts/test-neon.sh, under an emulator): fewer K and N, still with K
  // tails, K below and above one kKc slice and N tails.
  const bool light = std::getenv("NEMOTRON_SELFTEST_LIGHT") != nullptr;
  const std::vector<int64_t> Ks = light ? std::vector<int64_t>{1, 31, 100, 1056, 2080}
                                        : std::vector<int64_t>{1, 31, 64, 100, 1000, 1024, 1056,
                                                               1500, 2080, 4480};
  const std::vector<int64_t> Ns = light ? std::vector<int64_t>{1, 33, 70}
                                        : std::vector<int64_t>{1, 33, 257};
  const int64_t Ts[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 17, 64, 130};
  const int64_t rows = 150;
  const DType dtypes[] = {DType::F32, DType::F16, DType::BF16};
  ThreadPool pool1(1), pool2(2), pool3(3);
  for (const std::string& path : available_paths()) {
    set_kernel_path_override(path.c_str());
    int64_t compared = 0, mismatched = 0;
    std::string first_bad;
    for (DType dt : dtypes) {
      if (fast && dt != DType::BF16) continue;  // kFast is kExact for the other dtypes
      for (int64_t K : Ks) {
        for (int64_t N : Ns) {
          // W offsets: aligned, and a misaligned start (exercises the realigned K loop).
          for (int off : {0, 6}) {
            if (path == "scalar" && off != 0) continue;
            const Weights w = make_weights(dt, N, K, static_cast<uint32_t>(K * 13 + N + off), off);
            const int64_t ldx = K + 5;
            std::mt19937 rng(static_cast<uint32_t>(K * 7 + N * 3 + off));
            std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
            std::vector<float> x(static_cast<size_t>(rows * ldx));
            for (auto& v : x) v = dist(rng);
            std::vector<float> alone(static_cast<size_t>(rows * N));
            for (int64_t r = 0; r < rows; ++r)
              cpu::matmul(alone.data() + r * N, N, x.data() + r * ldx, ldx, w.view(), 1, pool1,
                          prec);
            std::vector<float> y;
            int which = 0;
            for (int64_t T : Ts) {
              if (path == "scalar" && T > 17 && K > 1100) continue;
              for (int64_t start : {int64_t{0}, int64_t{1}, rows - T, (rows - T) / 2 + 3}) {
                start = std::min(std::max<int64_t>(start, 0), rows - T);
                ThreadPool& pool = (which++ % 2) ? pool3 : pool2;
                y.assign(static_cast<size_t>(T * N), 0.0f);
                cpu::matmul(y.data(), N, x.data() + start * ldx, ldx, w.view(), T, pool, prec);
                for (int64_t t = 0; t < T; ++t) {
                  const int cmp = std::memcmp(y.data() + t * N, alone.data() + (start + t) * N,
                                              static_cast<size_t>(N) * sizeof(float));
                  ++compared;
                  if (cmp != 0) {
                    ++mismatched;
                    if (first_bad.empty()) {
                      char msg[160];
                      std::snprintf(msg, sizeof msg, "%s K=%lld N=%lld off=%d T=%lld start=%lld row=%lld",
                                    dtype_name(dt), (long long)K, (long long)N, off, (long long)T,
                                    (long long)start, (long long)t);
                      first_bad = msg;
                    }
                  }
                }
              }
            }
          }
        }
      }
    }
    std::printf("  %-6s %lld rows compared, %lld differ%s%s\n", path.c_str(), (long long)compared,
                (long long)mismatched, first_bad.empty() ? "" : "; first: ", first_bad.c_str());
    char msg[96];
    std::snprintf(msg, sizeof msg, "%s: batched rows equal to rows computed alone", path.c_str());
    check(mismatched == 0, msg);
  }
  set_kernel_path_override(nullptr);
}

// ---- kFast and kRelu2 -------------------------------------------------------------------------
// kFast BF16 (AVX-512 BF16, or FEAT_BF16 on the neon path) against a double reference over
// bf16-rounded x. The products are exact, so the only error is rounding the sums:
//  * vdpbf16ps: f32 accumulation, bounded by (adds per lane) * 2^-24 * sum |x' w|;
//  * BFDOT / BFMMLA: every BFDotAdd rounds the pair sum and then the accumulation, to odd (each
//    error below one ulp of a value at most sum |x' w|, so below 2^-23 * sum |x' w|), and an
//    element's lane takes K/2 of them: K roundings, plus K/2048 slice sums added in f32 (run_tiles)
//    and slack, so bounded by (K + K/2048 + 2) * 2^-23 * sum |x' w| (first order). A worst-case
//    bound: random signs land far below it (the log shows the ratio).
// Elsewhere (and on neon with the bf16 extension masked off) kFast must equal kExact bit for bit.
// kRelu2 against the product of relu(x)² made apart.

void test_fast() {
  std::printf("matmul kFast / kRelu2\n");
  ThreadPool pool(2);
  struct Shape { int64_t T, K, N; };
  const Shape shapes[] = {{1, 64, 17}, {3, 1000, 768}, {8, 4480, 33}, {64, 768, 257},
                          {300, 1000, 17}, {513, 4480, 9}};
  struct Variant { std::string path; unsigned mask; };
  std::vector<Variant> variants;
  for (const std::string& path : available_paths()) {
    variants.push_back({path, kNeonAll});
    if (path == "neon" && cpu_features().neon_bf16) variants.push_back({path, 0u});  // bf16 masked off
  }
  for (const Variant& var : variants) {
    const std::string& path = var.path;
    set_kernel_path_override(path.c_str());
    set_neon_ext_mask(var.mask);
    const bool neon_dot = path == "neon" && neon_ext(kNeonBf16);
    const bool dot = (path == "avx512" && cpu_features().avx512bf16) || neon_dot;
    if (path == "neon")  // a CPU with FEAT_BF16 must use it unless masked off
      check(neon_dot == (cpu_features().neon_bf16 && var.mask != 0), "neon kFast BF16 uses bfdot/bfmmla where it can");
    double worst = 0.0;  // error / bound
    int64_t same = 0, total = 0;
    for (const Shape& s : shapes) {
      const Weights w = make_weights(DType::BF16, s.N, s.K, static_cast<uint32_t>(s.K + s.N), 6);
      std::mt19937 rng(static_cast<uint32_t>(s.T * 7 + s.K));
      std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
      std::vector<float> x(static_cast<size_t>(s.T * s.K));
      for (auto& v : x) v = dist(rng);
      std::vector<float> yf(static_cast<size_t>(s.T * s.N)), ye(yf.size()), yr(yf.size());
      cpu::matmul(yf.data(), s.N, x.data(), s.K, w.view(), s.T, pool, cpu::MatmulPrecision::kFast);
      cpu::matmul(ye.data(), s.N, x.data(), s.K, w.view(), s.T, pool);
      // kRelu2, both precisions, against relu(x)² precomputed
      std::vector<float> act(x.size());
      for (size_t i = 0; i < x.size(); ++i) act[i] = std::max(x[i], 0.0f) * std::max(x[i], 0.0f);
      for (auto prec : {cpu::MatmulPrecision::kExact, cpu::MatmulPrecision::kFast}) {
        std::vector<float> a(yf.size()), b(yf.size());
        cpu::matmul(a.data(), s.N, x.data(), s.K, w.view(), s.T, pool, prec,
                    MatmulInput::kRelu2);
        cpu::matmul(b.data(), s.N, act.data(), s.K, w.view(), s.T, pool, prec);
        check(std::memcmp(a.data(), b.data(), a.size() * 4) == 0, "kRelu2 == product of relu(x)^2");
      }
      for (size_t i = 0; i < yf.size(); ++i) same += std::memcmp(&yf[i], &ye[i], 4) == 0;
      total += static_cast<int64_t>(yf.size());
      if (!dot) continue;
      const double adds = neon_dot ? static_cast<double>(s.K) + s.K / 2048 + 2 : static_cast<double>(s.K) / 16 + 16;
      const double unit = std::ldexp(1.0, neon_dot ? -23 : -24);
      for (int64_t t = 0; t < s.T; ++t) {
        for (int64_t n = 0; n < s.N; ++n) {
          double ref = 0.0, mag = 0.0;
          for (int64_t k = 0; k < s.K; ++k) {
            const double p = bf16_to_f32(f32_to_bf16(x[t * s.K + k])) * w.ref[n * s.K + k];
            ref += p;
            mag += std::fabs(p);
          }
          const double bound = adds * unit * mag;
          worst = std::max(worst, std::fabs(yf[t * s.N + n] - ref) / bound);
        }
      }
    }
    if (dot) {
      std::printf("  %-6s kFast BF16 (%s): max error / bound %.3f; %lld of %lld equal to kExact\n",
                  path.c_str(), neon_dot ? "bfdot/bfmmla" : "vdpbf16ps", worst, (long long)same, (long long)total);
      check(worst <= 1.0, "kFast within the f32 accumulation bound");
      check(same < total / 2, "kFast rounds x (differs from kExact)");
    } else {
      std::printf("  %-6s kFast == kExact%s: %lld of %lld\n", path.c_str(),
                  path == "neon" && var.mask == 0 ? " (bf16 masked off)" : "", (long long)same, (long long)total);
      check(same == total, "kFast without bf16 dot products is kExact");
    }
  }
  set_neon_ext_mask(kNeonAll);
  set_kernel_path_override(nullptr);
}

// ---- throughput --------------------------------------------------------------------------------------

template <class F>
double best_time(int reps, F&& f) {
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = Clock::now();
    f();
    best = std::min(best, seconds_since(t0));
  }
  return best;
}

void bench() {
  const int64_t N = 4096, K = 4096;
  const size_t wbytes = static_cast<size_t>(N * K * 2);
  const int copies = 4;  // rotate over 4 matrices (128 MB) so no pass is served from cache
  std::vector<std::vector<uint16_t>> mats(copies, std::vector<uint16_t>(static_cast<size_t>(N * K)));
  {
    std::mt19937 rng(3);
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    for (auto& m : mats)
      for (auto& v : m) v = f32_to_bf16(dist(rng));
  }

  std::printf("throughput (4096x4096 BF16 = %.0f MB, rotating over %d copies)\n", wbytes / 1e6,
              copies);
  // memcpy bandwidth over the same amount of memory: copied bytes per second; the memory traffic
  // is twice that (read + write).
  std::vector<uint8_t> src(wbytes * 2), dst(wbytes * 2);
  std::memset(src.data(), 1, src.size());
  std::memset(dst.data(), 2, dst.size());
  double memcpy_gbs[3] = {0, 0, 0};
  for (int threads : {1, 2}) {
    ThreadPool pool(threads);
    const double t = best_time(10, [&] {
      pool.parallel_for(threads, 1, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) {
          const size_t part = src.size() / threads;
          std::memcpy(dst.data() + i * part, src.data() + i * part, part);
        }
      });
    });
    memcpy_gbs[threads] = src.size() / t / 1e9;
    std::printf("  memcpy %d thread%s: %.1f GB/s copied (%.1f GB/s read+write)\n", threads,
                threads > 1 ? "s" : "", memcpy_gbs[threads], 2 * memcpy_gbs[threads]);
  }

  std::vector<float> x(static_cast<size_t>(128 * K)), y(static_cast<size_t>(128 * N));
  {
    std::mt19937 rng(4);
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    for (auto& v : x) v = dist(rng);
  }
  auto view = [&](int i) {
    MatrixView v;
    v.data = mats[i % copies].data();
    v.dtype = DType::BF16;
    v.rows = N;
    v.cols = K;
    return v;
  };

  for (const std::string& path : available_paths()) {
    set_kernel_path_override(path.c_str());
    for (int threads : {1, 2}) {
      ThreadPool pool(threads);
      int it = 0;
      const int reps = path == "scalar" ? 4 : 40;
      cpu::matmul(y.data(), N, x.data(), K, view(it++), 1, pool);  // warm-up
      const double t =
          best_time(reps, [&] { cpu::matmul(y.data(), N, x.data(), K, view(it++), 1, pool); });
      const double gbs = wbytes / t / 1e9;
      std::printf("  decode  %-6s %d thread%s: %6.1f GB/s of weights (%.2f ms), %.0f%% of memcpy "
                  "copied, %.0f%% of memcpy read+write\n",
                  path.c_str(), threads, threads > 1 ? "s" : " ", gbs, t * 1e3,
                  100 * gbs / memcpy_gbs[threads], 100 * gbs / (2 * memcpy_gbs[threads]));
    }
  }
  for (const std::string& path : available_paths()) {
    set_kernel_path_override(path.c_str());
    const int64_t T = path == "scalar" ? 16 : 128;
    for (int threads : {1, 2}) {
      ThreadPool pool(threads);
      int it = 0;
      cpu::matmul(y.data(), N, x.data(), K, view(it++), T, pool);
      const double t = best_time(path == "scalar" ? 2 : 6,
                                 [&] { cpu::matmul(y.data(), N, x.data(), K, view(it++), T, pool); });
      std::printf("  prefill %-6s %d thread%s T=%lld: %6.1f GFLOP/s (%.1f ms)\n", path.c_str(),
                  threads, threads > 1 ? "s" : " ", (long long)T, 2.0 * T * N * K / t / 1e9, t * 1e3);
    }
  }
  set_kernel_path_override(nullptr);
}

// Prefill GFLOP/s of kExact and kFast for BF16 weights at T = 512 (the best path), and decode GB/s.
void bench_prefill() {
  std::printf("prefill BF16, T=512, path %s: GFLOP/s kExact -> kFast\n", active_kernel_path());
  struct Shape { int64_t K, N; };
  const Shape shapes[] = {{768, 768}, {768, 2688}, {2688, 768}, {4480, 4480}};
  const int64_t T = 512;
  std::vector<float> x(static_cast<size_t>(T * 4480)), y(static_cast<size_t>(T * 4480));
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (auto& v : x) v = dist(rng);
  for (const Shape& s : shapes) {
    const Weights w = make_weights(DType::BF16, s.N, s.K, 9, 0);
    for (int threads : {1, 2}) {
      ThreadPool pool(threads);
      double gf[2];
      for (auto prec : {cpu::MatmulPrecision::kExact, cpu::MatmulPrecision::kFast}) {
        const auto f = [&] { cpu::matmul(y.data(), s.N, x.data(), s.K, w.view(), T, pool, prec); };
        f();
        gf[static_cast<int>(prec)] = 2.0 * T * s.N * s.K / best_time(4, f) / 1e9;
      }
      std::printf("  K=%-5lld N=%-5lld %d thread%s: %6.1f -> %6.1f GFLOP/s (x%.2f)\n",
                  (long long)s.K, (long long)s.N, threads, threads > 1 ? "s" : " ", gf[0], gf[1],
                  gf[1] / gf[0]);
    }
  }
  // decode, T = 1: memory bound, rotating over copies larger than the caches
  const int64_t N = 4096, K = 4096;
  std::vector<Weights> mats;
  for (int i = 0; i < 4; ++i) mats.push_back(make_weights(DType::BF16, N, K, 20 + i, 0));
  for (int threads : {1, 2}) {
    ThreadPool pool(threads);
    double gbs[2];
    for (auto prec : {cpu::MatmulPrecision::kExact, cpu::MatmulPrecision::kFast}) {
      int it = 0;
      const auto f = [&] {
        cpu::matmul(y.data(), N, x.data(), K, mats[it++ % 4].view(), 1, pool, prec);
      };
      f();
      gbs[static_cast<int>(prec)] = 2.0 * N * K / best_time(40, f) / 1e9;
    }
    std::printf("  decode 4096x4096 %d thread%s: %.1f -> %.1f GB/s of weights\n", threads,
                threads > 1 ? "s" : " ", gbs[0], gbs[1]);
  }
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false, bench_only = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) quick = true;
    if (std::strcmp(argv[i], "--bench") == 0) bench_only = true;
  }
  const std::string initial = active_kernel_path();  // before any override
  const auto t0 = Clock::now();
  if (!bench_only) {
    test_cpu_features(initial);
    test_thread_pool();
    test_matmul();
    test_invariance(cpu::MatmulPrecision::kExact);
    test_invariance(cpu::MatmulPrecision::kFast);
    test_fast();
  }
  if (!quick) bench();
  if (!quick) bench_prefill();
  std::printf("%s (%d failure%s) in %.1f s\n", g_failures == 0 ? "PASS" : "FAILED", g_failures,
              g_failures == 1 ? "" : "s", seconds_since(t0));
  return g_failures == 0 ? 0 : 1;
}
