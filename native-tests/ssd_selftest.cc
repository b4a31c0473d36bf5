// Standalone self-test and micro-benchmark for cpu::ssd_chunk_scan. Built and run (--quick) by
// scripts/native-tests.sh (CMake target nemotron_ssd_selftest; CI). By hand (one line):
//   g++ -std=c++17 -O3 -pthread -I csrc native-tests/ssd_selftest.cc csrc/kernels/ssd_scan.cc
//       csrc/core/thread_pool.cc csrc/core/cpu_features.cc -o /tmp/ssd && /tmp/ssd
// Options: --quick (skip the benchmarks), --bench (only the benchmarks), --small (benchmark T = 1024).
// The benchmarks pass x, B and C as the model does (columns of one conv output row); the 330M
// shape is the bench model of bench/table.ts (32 heads x 64, 8 groups, state 128, chunk 128).
// Exit status 0 when every check passes.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "core/cpu_features.h"
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

struct Case {
  int64_t T, H, P, G, N;
  std::vector<float> x, dt, B, C, s0, A, D, bias;
  SsmParams p;
};

Case make_case(int64_t T, int64_t H, int64_t P, int64_t G, int64_t N, uint32_t seed) {
  Case c{T, H, P, G, N, {}, {}, {}, {}, {}, {}, {}, {}, {}};
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::uniform_real_distribution<float> ud(0.0f, 1.0f);
  auto fill = [&](std::vector<float>& v, int64_t n, float s) {
    v.resize(static_cast<size_t>(n));
    for (auto& e : v) e = s * nd(rng);
  };
  fill(c.x, T * H * P, 1.0f);
  fill(c.dt, T * H, 1.0f);
  fill(c.B, T * G * N, 1.0f);
  fill(c.C, T * G * N, 1.0f);
  fill(c.s0, H * P * N, 0.5f);
  fill(c.D, H, 1.0f);
  c.A.resize(H);
  c.bias.resize(H);
  for (int64_t h = 0; h < H; ++h) {
    c.A[h] = -(1.0f + 15.0f * ud(rng));
    c.bias[h] = std::log(std::expm1(0.001f * std::pow(100.0f, ud(rng))));
  }
  c.p = SsmParams{H, P, G, N, 0.0f, INFINITY, c.A.data(), c.D.data(), c.bias.data()};
  return c;
}

void run_scan(const Case& c, int64_t chunk, ThreadPool& pool, std::vector<float>& y,
              std::vector<float>& s) {
  y.assign(static_cast<size_t>(c.T * c.H * c.P), 0.0f);
  s = c.s0;
  cpu::ssd_chunk_scan(y.data(), c.x.data(), c.H * c.P, c.dt.data(), c.H, c.B.data(), c.C.data(),
                      c.G * c.N, s.data(), c.p, c.T, chunk, pool);
}

// x, B and C as the model passes them: columns of one conv output row [x | B | C] (row stride
// conv_dim = H·P + 2·G·N floats, 16 KiB at the 330M shape).
struct ConvRows {
  std::vector<float> xbc;
  int64_t cd;
  explicit ConvRows(const Case& c) : cd(c.H * c.P + 2 * c.G * c.N) {
    const int64_t HP = c.H * c.P, GN = c.G * c.N;
    xbc.resize(static_cast<size_t>(c.T * cd));
    for (int64_t t = 0; t < c.T; ++t) {
      std::memcpy(&xbc[t * cd], &c.x[t * HP], HP * sizeof(float));
      std::memcpy(&xbc[t * cd + HP], &c.B[t * GN], GN * sizeof(float));
      std::memcpy(&xbc[t * cd + HP + GN], &c.C[t * GN], GN * sizeof(float));
    }
  }
};

void run_scan_conv_rows(const Case& c, const ConvRows& r, int64_t chunk, ThreadPool& pool,
                        std::vector<float>& y, std::vector<float>& s) {
  const int64_t HP = c.H * c.P, GN = c.G * c.N;
  y.assign(static_cast<size_t>(c.T * HP), 0.0f);
  s = c.s0;
  cpu::ssd_chunk_scan(y.data(), r.xbc.data(), r.cd, c.dt.data(), c.H, r.xbc.data() + HP,
                      r.xbc.data() + HP + GN, r.cd, s.data(), c.p, c.T, chunk, pool);
}

// The token-by-token recurrence in double.
void reference(const Case& c, std::vector<double>& y, std::vector<double>& S) {
  const int64_t T = c.T, H = c.H, P = c.P, G = c.G, N = c.N;
  y.assign(static_cast<size_t>(T * H * P), 0.0);
  S.assign(c.s0.begin(), c.s0.end());
  for (int64_t t = 0; t < T; ++t)
    for (int64_t h = 0; h < H; ++h) {
      const int64_t g = h / (H / G);
      const double v = c.dt[t * H + h] + c.bias[h];
      const double dt = v > 20.0 ? v : std::log1p(std::exp(v));
      const double dA = std::exp(dt * c.A[h]);
      for (int64_t p = 0; p < P; ++p) {
        const double xv = c.x[t * H * P + h * P + p];
        double out = 0.0;
        for (int64_t n = 0; n < N; ++n) {
          double& s = S[(h * P + p) * N + n];
          s = dA * s + dt * xv * c.B[t * G * N + g * N + n];
          out += c.C[t * G * N + g * N + n] * s;
        }
        y[t * H * P + h * P + p] = out + c.D[h] * xv;
      }
    }
}

template <class A, class B>
double max_rel(const A& got, const B& want) {
  double scale = 0.0, diff = 0.0;
  for (size_t i = 0; i < want.size(); ++i) {
    scale = std::max(scale, std::fabs(static_cast<double>(want[i])));
    diff = std::max(diff, std::fabs(static_cast<double>(got[i]) - static_cast<double>(want[i])));
  }
  return diff / (scale > 0.0 ? scale : 1.0);
}

void test_scan() {
  std::printf("ssd_chunk_scan on the %s path\n", active_kernel_path());
  ThreadPool one(1), two(2);
  const int64_t shapes[][6] = {{1, 4, 8, 1, 8, 16},    {7, 4, 8, 2, 8, 4},      {129, 8, 64, 2, 64, 128},
                               {300, 6, 80, 3, 128, 64}, {200, 16, 64, 8, 128, 128}};
  for (const auto& s : shapes) {
    const Case c = make_case(s[0], s[1], s[2], s[3], s[4], static_cast<uint32_t>(s[0] * 7 + s[1]));
    std::vector<float> y1, s1, y2, s2;
    run_scan(c, s[5], one, y1, s1);
    run_scan(c, s[5], two, y2, s2);
    std::vector<double> yr, sr;
    reference(c, yr, sr);
    const double ey = max_rel(y1, yr), es = max_rel(s1, sr);
    std::printf("  T=%lld H=%lld P=%lld G=%lld N=%lld chunk=%lld: y %.2e state %.2e\n",
                static_cast<long long>(s[0]), static_cast<long long>(s[1]),
                static_cast<long long>(s[2]), static_cast<long long>(s[3]),
                static_cast<long long>(s[4]), static_cast<long long>(s[5]), ey, es);
    check(ey < 5e-5 && es < 5e-5, "matches the float64 recurrence");
    check(y1 == y2 && s1 == s2, "1 and 2 threads give identical bits");
    std::vector<float> y3, s3;
    run_scan_conv_rows(c, ConvRows(c), s[5], two, y3, s3);
    check(y1 == y3 && s1 == s3, "x, B, C as conv output columns give identical bits");
  }
}

// Nominal flops of the chunked algorithm (what the dense products do), for GFLOP/s-equivalent.
double nominal_flops(int64_t T, int64_t H, int64_t P, int64_t G, int64_t N, int64_t Q) {
  double f = 0.0;
  for (int64_t t0 = 0; t0 < T; t0 += Q) {
    const double L = static_cast<double>(std::min(Q, T - t0));
    f += G * L * L * N;                              // C·Bᵀ, lower triangle
    f += H * (L * L * P + 2.0 * L * N * P * 2.0);    // M·X (triangle), C·Sᵀ, state update
  }
  return f;
}

void bench(int64_t T) {
  struct Shape {
    const char* name;
    int64_t H, P, G, N, Q;
  };
  const Shape shapes[] = {{"bench model", 24, 64, 8, 128, 128}, {"330M", 32, 64, 8, 128, 128},
                          {"9B", 128, 64, 8, 128, 128}};
  for (const Shape& sh : shapes) {
    const Case c = make_case(T, sh.H, sh.P, sh.G, sh.N, 11);
    const ConvRows rows(c);
    const double fl = nominal_flops(T, sh.H, sh.P, sh.G, sh.N, sh.Q);
    for (int threads : {1, 2}) {
      ThreadPool pool(threads);
      std::vector<float> y, s;
      double best = 1e30;
      for (int rep = 0; rep < 3; ++rep) {
        const auto t0 = Clock::now();
        run_scan_conv_rows(c, rows, sh.Q, pool, y, s);
        best = std::min(best, std::chrono::duration<double>(Clock::now() - t0).count());
      }
      std::printf("  %-11s T=%lld H=%lld P=%lld G=%lld N=%lld chunk=%lld, %d thread%s (%s): %8.1f ms"
                  "  %6.1f GFLOP/s-equiv\n",
                  sh.name, static_cast<long long>(T), static_cast<long long>(sh.H),
                  static_cast<long long>(sh.P), static_cast<long long>(sh.G),
                  static_cast<long long>(sh.N), static_cast<long long>(sh.Q), threads,
                  threads == 1 ? "" : "s", active_kernel_path(), best * 1e3, fl / best * 1e-9);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false, bench_only = false;
  int64_t T = 4096;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) quick = true;
    if (std::strcmp(argv[i], "--bench") == 0) bench_only = true;
    if (std::strcmp(argv[i], "--small") == 0) T = 1024;
  }
  if (!bench_only) test_scan();
  if (!quick) bench(T);
  std::printf("%s (%d failure%s)\n", g_failures == 0 ? "PASS" : "FAILED", g_failures,
              g_failures == 1 ? "" : "s");
  return g_failures == 0 ? 0 : 1;
}
