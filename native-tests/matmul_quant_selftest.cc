// Standalone self-test and decode benchmark for cpu::matmul_quant (block-quantized weights).
// Built and run (--quick) by scripts/native-tests.sh (CMake target nemotron_matmul_quant_selftest; CI).
// By hand (one line):
//   g++ -std=c++17 -O2 -pthread -I csrc native-tests/matmul_quant_selftest.cc
//       csrc/kernels/matmul_quant.cc csrc/kernels/matmul_quant_fast.cc csrc/kernels/matmul.cc csrc/core/dtype.cc
//       csrc/core/thread_pool.cc csrc/core/cpu_features.cc -o /tmp/mq && /tmp/mq
// (add csrc/kernels/matmul_neon.cc csrc/kernels/matmul_quant_neon.cc; for aarch64 under qemu:
// scripts/test-neon.sh). Options: --quick (skip the benchmark), --bench (only the benchmark), --fast
// (only the precision benchmark: Q8_0, Q5_0, Q5_1, Q4_K and Q5_K 4096 x 4096, exact vs fast, T = 512 and T = 8 GFLOP/s and T = 1
// GB/s, 1 and 2 threads), --only NAME (benchmark only the type, path or precision NAME, e.g. Q4_K, avx2 or fast;
// repeatable). NEMOTRON_CPU_KERNELS=<path> checks only that path. Exit status 0 when every check passes.
//
// Checks (every available path, every quantized type): each SIMD path against the float64 product
// with the convert_to_f32 weights, one-hot x rows giving back the dequantized weights bit for bit, and
// batch invariance (rows alone vs in batches, bitwise). The benchmark streams a 4096 x 4096 matrix per
// type at T = 1 with 1 and 2 threads, rotating over copies (>= 128 MB in all) so that no pass is
// served from cache, and prints GB/s of quantized bytes read, next to the BF16 matmul on the same path.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/cpu_features.h"
#include "core/dtype.h"
#include "core/thread_pool.h"
#include "kernels/kernels.h"
#include "kernels/matmul_quant_fast.h"

using namespace nemo;
using Clock = std::chrono::steady_clock;

namespace {

int g_failures = 0;
std::vector<std::string> g_only;  // --only filters for the benchmark

bool wanted(const std::string& name, const std::vector<std::string>& universe) {
  bool any = false;
  for (const auto& o : g_only)
    for (const auto& u : universe) any = any || o == u;
  if (!any) return true;  // no filter of this kind
  return std::find(g_only.begin(), g_only.end(), name) != g_only.end();
}

void check(bool ok, const std::string& what) {
  if (!ok) {
    ++g_failures;
    std::printf("  FAIL: %s\n", what.c_str());
  }
}

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

const DType kTypes[] = {DType::Q8_0, DType::Q4_0, DType::Q5_0, DType::Q5_1, DType::Q4_K, DType::Q5_K, DType::Q6_K};

// Every path the CPU has, or only the one NEMOTRON_CPU_KERNELS names (when the CPU has it), so that
// scripts/test-neon.sh can split the work between runs.
std::vector<std::string> available_paths() {
  std::vector<std::string> out;
  for (const char* p : {"scalar", "avx2", "avx512", "neon"})
    if (std::strcmp(set_kernel_path_override(p), p) == 0) out.push_back(p);
  set_kernel_path_override(nullptr);
  const char* env = std::getenv("NEMOTRON_CPU_KERNELS");
  if (env != nullptr && std::find(out.begin(), out.end(), env) != out.end()) return {env};
  return out;
}

// Valid random blocks: random bytes, with every f16 field (d, dmin) set to a finite value of order
// `scale` (so that dequantized weights are of order 1 to 10).
std::vector<uint8_t> random_blocks(DType dt, int64_t rows, int64_t cols, std::mt19937& rng) {
  const int64_t nb = rows * cols / dtype_block_elems(dt), bb = dtype_block_bytes(dt);
  std::vector<uint8_t> w(static_cast<size_t>(nb * bb));
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_real_distribution<float> mag(0.005f, 0.02f);
  for (auto& b : w) b = static_cast<uint8_t>(byte(rng));
  auto put = [&](uint8_t* p, float v) {
    const uint16_t h = f32_to_f16(v);
    std::memcpy(p, &h, 2);
  };
  for (int64_t i = 0; i < nb; ++i) {
    uint8_t* b = w.data() + i * bb;
    switch (dt) {
      case DType::Q8_0: put(b, mag(rng)); break;
      case DType::Q4_0: put(b, 10 * mag(rng)); break;
      case DType::Q5_0: put(b, 5 * mag(rng)); break;
      case DType::Q5_1:
        put(b, 5 * mag(rng));
        put(b + 2, -80 * mag(rng));
        break;
      case DType::Q4_K:
      case DType::Q5_K:
        put(b, 2 * mag(rng));
        put(b + 2, 2 * mag(rng));
        break;
      case DType::Q6_K: put(b + 208, mag(rng)); break;
      default: break;
    }
  }
  return w;
}

MatrixView view(const void* data, DType dt, int64_t rows, int64_t cols) {
  MatrixView v;
  v.data = data;
  v.dtype = dt;
  v.rows = rows;
  v.cols = cols;
  return v;
}

// Random blocks of dt stored one byte past an aligned start (the kernels must read blocks unaligned),
// as a view; blocks() is where they start, for convert_to_f32.
struct OddBlocks {
  std::vector<uint8_t> bytes;
  MatrixView w;
  const uint8_t* blocks() const { return bytes.data() + 1; }
};

OddBlocks odd_blocks(DType dt, int64_t rows, int64_t cols, std::mt19937& rng) {
  const std::vector<uint8_t> wq = random_blocks(dt, rows, cols, rng);
  OddBlocks o;
  o.bytes.resize(wq.size() + 1);
  std::memcpy(o.bytes.data() + 1, wq.data(), wq.size());
  o.w = view(o.bytes.data() + 1, dt, rows, cols);
  return o;
}

// The vector activation quantizer of kFast against the scalar one, bitwise, on rows built to hit the
// edges: rounding ties (amax 127 gives id 1 and x = k + 0.5), zeros, -0, subnormals (127 / amax
// overflows), huge values, inf, NaN, and plain random rows.
void test_fast_quantizer() {
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::uniform_int_distribution<int> pick(0, 11), code(-127, 127);
  const float specials[] = {0.0f, -0.0f, 1e-45f, -3e-39f, 1e38f, -3.4e38f, INFINITY, -INFINITY, NAN};
  int bad = 0, rows = 0;
  for (int64_t block : {32, 256}) {
    for (bool relu2 : {false, true}) {
      for (int r = 0; r < 2000; ++r, ++rows) {
        const int64_t K = block * (1 + r % 5);
        std::vector<float> x(static_cast<size_t>(K));
        const int kind = r % 4;
        for (int64_t k = 0; k < K; ++k) {
          float v = u(rng);
          if (kind == 1) v = static_cast<float>(code(rng)) + 0.5f * (pick(rng) & 1);  // ties
          if (kind == 2 && pick(rng) == 0) v = specials[rng() % 9];
          if (kind == 3) v = pick(rng) < 6 ? 0.0f : v * 1e-38f;  // zero and subnormal blocks
          x[k] = v;
        }
        if (kind == 1 && (r & 8)) x[0] = 127.0f;  // amax 127: x * id is x, ties kept
        bad += !cpu::quant_fast_quantizers_agree(x.data(), K, block, relu2);
      }
    }
  }
  check(bad == 0, "kFast vector quantizer differs from the scalar one on " + std::to_string(bad) + " of " +
                      std::to_string(rows) + " rows");
  std::printf("kFast activation quantizer: %d rows, %d differing\n", rows, bad);
}

void test_correctness() {
  test_fast_quantizer();
  std::printf("correctness\n");
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  ThreadPool pool(2), pool1(1);
  struct Shape { int64_t T, K, N; };
  // T from 1 (decode) to 300 (several prefill T tiles at K = 512), N tails of every size mod 8.
  const Shape shapes[] = {{1, 256, 33}, {2, 256, 9},  {3, 512, 70}, {4, 768, 5},   {5, 256, 3},
                          {7, 1024, 13}, {17, 1024, 130}, {40, 4608, 37}, {300, 512, 11}};
  for (const std::string& path : available_paths()) {
    set_kernel_path_override(path.c_str());
    for (DType dt : kTypes) {
      double worst = 0;
      for (const Shape& s : shapes) {
        const OddBlocks ob = odd_blocks(dt, s.N, s.K, rng);
        const MatrixView& w = ob.w;
        std::vector<float> wf(static_cast<size_t>(s.N * s.K));
        convert_to_f32(wf.data(), ob.blocks(), dt, wf.size());
        std::vector<float> x(static_cast<size_t>(s.T * s.K)), y(static_cast<size_t>(s.T * s.N));
        for (auto& v : x) v = dist(rng);
        cpu::matmul(y.data(), s.N, x.data(), s.K, w, s.T, pool);
        double scale = 0, err = 0;
        std::vector<double> ref(y.size());
        for (int64_t t = 0; t < s.T; ++t)
          for (int64_t n = 0; n < s.N; ++n) {
            double acc = 0;
            for (int64_t k = 0; k < s.K; ++k) acc += double(x[t * s.K + k]) * wf[n * s.K + k];
            ref[t * s.N + n] = acc;
            scale = std::max(scale, std::fabs(acc));
          }
        for (size_t i = 0; i < y.size(); ++i) err = std::max(err, std::fabs(y[i] - ref[i]));
        worst = std::max(worst, err / scale);

        // One-hot rows: y = the dequantized weights, exactly.
        const int64_t K1 = std::min<int64_t>(s.K, 256);
        std::vector<float> e(static_cast<size_t>(K1 * s.K), 0.0f), ye(static_cast<size_t>(K1 * s.N));
        for (int64_t k = 0; k < K1; ++k) e[k * s.K + k] = 1.0f;
        cpu::matmul(ye.data(), s.N, e.data(), s.K, w, K1, pool);
        bool exact = true;
        for (int64_t k = 0; k < K1; ++k)
          for (int64_t n = 0; n < s.N; ++n)
            exact = exact && ye[k * s.N + n] == wf[n * s.K + k];  // (+0 and -0 both read as 0)
        check(exact, path + " " + dtype_name(dt) + ": one-hot rows give the dequantized weights");

        // Batch invariance: every row alone vs all rows together and a window.
        std::vector<float> alone(y.size()), part(y.size());
        for (int64_t t = 0; t < s.T; ++t)  // alone on one thread; the batches below use two
          cpu::matmul(alone.data() + t * s.N, s.N, x.data() + t * s.K, s.K, w, 1, pool1);
        check(std::memcmp(alone.data(), y.data(), y.size() * 4) == 0,
              path + " " + dtype_name(dt) + ": batch of " + std::to_string(s.T) + " = rows alone");
        for (int64_t t0 = 0; t0 < s.T; t0 += 5) {
          const int64_t tn = std::min<int64_t>(5, s.T - t0);
          cpu::matmul(part.data() + t0 * s.N, s.N, x.data() + t0 * s.K, s.K, w, tn, pool);
        }
        check(std::memcmp(alone.data(), part.data(), y.size() * 4) == 0,
              path + " " + dtype_name(dt) + ": batches of 5 = rows alone");
      }
      std::printf("  %-6s %-4s max error / max|y| = %.2e\n", path.c_str(), dtype_name(dt), worst);
      check(worst < 2e-5, path + " " + dtype_name(dt) + ": error");
    }
  }
  set_kernel_path_override(nullptr);
}

#if defined(__aarch64__)
// The aarch64 kFast variants (baseline NEON, SDOT, SMMLA prefill tiles) against the scalar kFast path,
// bitwise: every variant computes each block's integer sum exactly and then runs the scalar path's
// own f32 step (matmul_quant_fast_neon.inc), so equality, not a tolerance, is the requirement. Shapes
// cover decode (T = 1..4, streamed) and prefill (SMMLA token pairs with odd tails), N tails of every
// size mod 8, one and several blocks, kRelu2, W at an odd address. Each variant is selected by masking
// the extensions (set_neon_ext_mask) and the test asserts which one ran (quant_dot_path), so a
// variant the CPU has but the dispatch skips fails. As a guard against an error shared with the
// scalar path, the result is also compared with the float64 product of the dequantized weights and
// the f32 x: 8-bit activations give about 1 % of max|y| here (0.7-1.0 % measured), the check allows 5 %.
void test_fast_neon_variants() {
  const std::vector<std::string> paths = available_paths();
  if (std::find(paths.begin(), paths.end(), "neon") == paths.end()) return;
  const CpuFeatures& f = cpu_features();
  std::printf("kFast aarch64 variants vs the scalar kFast path (bitwise)\n");
  struct Shape { int64_t T, K, N; };
  // Prefill tiles are 4 tokens: T = 5, 6, 7, 8 end on a tile of 1, 2, 3, 4 tokens.
  const Shape shapes[] = {{1, 256, 9},  {2, 512, 13}, {3, 256, 6},  {4, 768, 5},   {5, 256, 11},
                          {6, 512, 7},  {7, 512, 17}, {8, 1024, 4}, {17, 256, 15}, {33, 512, 10}};
  struct Variant { unsigned mask; const char* want; };
  const char* best = !f.neon_dotprod ? "neon" : f.neon_i8mm ? "neon-i8mm" : "neon-dotprod";
  const Variant variants[] = {{0u, "neon"},
                              {kNeonDotprod, f.neon_dotprod ? "neon-dotprod" : "neon"},
                              {kNeonAll, best}};
  ThreadPool pool(2);
  std::mt19937 rng(23);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<std::string> ran;
  for (const Variant& v : variants) {
    int64_t compared = 0, differ = 0;
    double worst = 0;
    set_kernel_path_override("neon");
    set_neon_ext_mask(v.mask);
    const std::string got = cpu::quant_dot_path();
    check(got == v.want, std::string("kFast dot path ") + got + ", expected " + v.want);
    for (DType dt : kTypes) {
      for (const Shape& s : shapes) {
        const int64_t K = dtype_block_elems(dt) == 256 ? std::max<int64_t>(256, s.K / 256 * 256) : s.K;
        const OddBlocks ob = odd_blocks(dt, s.N, K, rng);
        const MatrixView& w = ob.w;
        std::vector<float> x(static_cast<size_t>(s.T * K));
        for (auto& e : x) e = dist(rng);
        for (auto input : {MatmulInput::kPlain, MatmulInput::kRelu2}) {
          std::vector<float> ref(static_cast<size_t>(s.T * s.N)), y(ref.size());
          set_kernel_path_override("scalar");
          cpu::matmul_quant(ref.data(), s.N, x.data(), K, w, s.T, pool, cpu::MatmulPrecision::kFast, input);
          set_kernel_path_override("neon");
          cpu::matmul_quant(y.data(), s.N, x.data(), K, w, s.T, pool, cpu::MatmulPrecision::kFast, input);
          for (size_t i = 0; i < y.size(); ++i) differ += std::memcmp(&y[i], &ref[i], 4) != 0;
          compared += static_cast<int64_t>(y.size());
          if (input != MatmulInput::kPlain) continue;
          std::vector<float> wf(static_cast<size_t>(s.N * K));
          convert_to_f32(wf.data(), ob.blocks(), dt, wf.size());
          double scale = 0, err = 0;
          for (int64_t t = 0; t < s.T; ++t)
            for (int64_t n = 0; n < s.N; ++n) {
              double acc = 0;
              for (int64_t k = 0; k < K; ++k) acc += double(x[t * K + k]) * wf[n * K + k];
              scale = std::max(scale, std::fabs(acc));
              err = std::max(err, std::fabs(acc - y[t * s.N + n]));
            }
          worst = std::max(worst, err / scale);
        }
      }
    }
    std::printf("  kFast %-12s (mask %u): %lld of %lld outputs differ from scalar; vs float64: %.2e of max|y|\n",
                got.c_str(), v.mask, (long long)differ, (long long)compared, worst);
    check(differ == 0, "kFast " + got + " bitwise equal to the scalar kFast path");
    check(worst < 5e-2, "kFast " + got + " near the float64 product");
    ran.push_back(got);
  }
  std::string list;
  for (const auto& r : ran) list += " " + r;
  std::printf("kFast aarch64 variants checked:%s\n", list.c_str());
  set_neon_ext_mask(kNeonAll);
  set_kernel_path_override(nullptr);
}
#endif

#if defined(__x86_64__)
// kFast on the x86 dot paths (vnni512 with and without VNNI, avxvnni / avx2 as the CPU has them):
// Q8_0 / Q5_0 / Q5_1, whose vnni512 products pack W into panels from T = 32 (Q5: 12) and reduce 8
// rows per tile below; Q4_K / Q5_K (K = 256, 768, 1280: 1, 3 and 5 super-blocks), packed from T = 12 and
// reduced 8 rows per tile below. x blocks (32 values, Q4_K 256) are built exact under the 8-bit quantizer (integer codes in [-127, 127] with
// a +-127 in each block, times 2^e), so the float64 product of x and the dequantized W is the exact
// result and only the f32 steps differ: |y - ref| <= 2e-6 * sum |x w| (about nb f32 roundings).
// Batch invariance on random x: every row alone on 1 thread = the whole batch on 2 = batches of 5,
// bitwise, at T = 1 .. 301 around the packing threshold, N tails, odd weight addresses, odd nb.
void test_fast_x86() {
  std::printf("kFast x86 (Q8_0 / Q5_0 / Q5_1 / Q4_K / Q5_K)\n");
  std::mt19937 rng(13);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::uniform_int_distribution<int> code(-127, 127), expo(-6, 2), pos(0, 31);
  ThreadPool pool(2), pool1(1);
  struct Shape { int64_t T, K, N; };
  const Shape shapes[] = {{1, 256, 33},  {2, 800, 9},    {3, 512, 17},  {5, 800, 1},  {8, 256, 15},
                          {9, 512, 16},  {11, 256, 8},   {12, 800, 25}, {13, 256, 3}, {31, 800, 23},
                          {32, 256, 31}, {33, 512, 7},   {45, 800, 40}, {64, 256, 17}, {100, 512, 49},
                          {301, 800, 19}};
  for (bool vnni : {true, false}) {
    cpu::quant_allow_vnni(vnni);
    if (!vnni && std::string(cpu::quant_dot_path()) == "vnni512") continue;
    const std::string dot = cpu::quant_dot_path();
    for (DType dt : {DType::Q8_0, DType::Q5_0, DType::Q5_1, DType::Q4_K, DType::Q5_K}) {
      double worst = 0;
      const bool kq = dt == DType::Q4_K || dt == DType::Q5_K;
      const int64_t xb_len = kq ? 256 : 32;  // the x quantizer's block
      for (Shape s : shapes) {
        if (kq) s.K = s.K == 256 ? 256 : s.K == 512 ? 768 : 1280;
        const OddBlocks ob = odd_blocks(dt, s.N, s.K, rng);
        const MatrixView& w = ob.w;
        std::vector<float> wf(static_cast<size_t>(s.N * s.K));
        convert_to_f32(wf.data(), ob.blocks(), dt, wf.size());
        std::vector<float> x(static_cast<size_t>(s.T * s.K)), y(static_cast<size_t>(s.T * s.N));
        for (int64_t t = 0; t < s.T; ++t)
          for (int64_t b = 0; b < s.K / xb_len; ++b) {
            const float sc = std::ldexp(1.0f, expo(rng));
            float* xb = x.data() + t * s.K + xb_len * b;
            for (int k = 0; k < xb_len; ++k) xb[k] = sc * code(rng);
            xb[pos(rng) * (xb_len / 32)] = (code(rng) < 0 ? -127.0f : 127.0f) * sc;
          }
        cpu::matmul_quant(y.data(), s.N, x.data(), s.K, w, s.T, pool, cpu::MatmulPrecision::kFast);
        for (int64_t t = 0; t < s.T; ++t)
          for (int64_t n = 0; n < s.N; ++n) {
            double acc = 0, mag = 0;
            for (int64_t k = 0; k < s.K; ++k) {
              acc += double(x[t * s.K + k]) * wf[n * s.K + k];
              mag += std::fabs(double(x[t * s.K + k]) * wf[n * s.K + k]);
            }
            if (mag > 0) worst = std::max(worst, std::fabs(y[t * s.N + n] - acc) / mag);
          }
        for (auto& v : x) v = dist(rng);
        cpu::matmul_quant(y.data(), s.N, x.data(), s.K, w, s.T, pool, cpu::MatmulPrecision::kFast);
        std::vector<float> alone(y.size()), part(y.size());
        for (int64_t t = 0; t < s.T; ++t)
          cpu::matmul_quant(alone.data() + t * s.N, s.N, x.data() + t * s.K, s.K, w, 1, pool1, cpu::MatmulPrecision::kFast);
        for (int64_t t0 = 0; t0 < s.T; t0 += 5)
          cpu::matmul_quant(part.data() + t0 * s.N, s.N, x.data() + t0 * s.K, s.K, w, std::min<int64_t>(5, s.T - t0),
                            pool, cpu::MatmulPrecision::kFast);
        const std::string what = dot + " kFast " + dtype_name(dt) + " T=" + std::to_string(s.T) + " N=" + std::to_string(s.N);
        check(std::memcmp(alone.data(), y.data(), y.size() * 4) == 0, what + ": batch = rows alone");
        check(std::memcmp(alone.data(), part.data(), y.size() * 4) == 0, what + ": batches of 5 = rows alone");
      }
      std::printf("  %-8s %-4s max |y - ref| / sum|x w| = %.2e\n", dot.c_str(), dtype_name(dt), worst);
      check(worst <= 2e-6, dot + " kFast " + dtype_name(dt) + ": error");
    }
  }
  cpu::quant_allow_vnni(true);
}
#endif

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
  std::printf("decode throughput (4096 x 4096, T = 1): GB/s of stored weight bytes read\n");
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(K)), y(static_cast<size_t>(N));
  for (auto& v : x) v = dist(rng);
  const std::vector<std::string> paths = available_paths();

  struct Row { std::string label; DType dt; };
  std::vector<Row> rows = {{"BF16", DType::BF16}};
  for (DType dt : kTypes) rows.push_back({dtype_name(dt), dt});
  const std::vector<std::string> type_names = {"BF16", "Q8_0", "Q4_0", "Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K"};
  for (const Row& r : rows) {
    if (!wanted(r.label, type_names)) continue;
    const size_t bytes = dtype_row_bytes(r.dt, K) * N;
    const int copies = static_cast<int>(std::max<size_t>(2, (size_t{128} << 20) / bytes + 1));
    std::vector<std::vector<uint8_t>> mats;
    for (int c = 0; c < copies; ++c) {
      if (r.dt == DType::BF16) {
        std::vector<uint8_t> m(bytes);
        for (size_t i = 0; i < bytes; i += 2) {
          const uint16_t h = f32_to_bf16(dist(rng));
          std::memcpy(&m[i], &h, 2);
        }
        mats.push_back(std::move(m));
      } else {
        mats.push_back(random_blocks(r.dt, N, K, rng));
      }
    }
    for (const std::string& path : paths) {
      if (!wanted(path, {"scalar", "avx2", "avx512", "neon"})) continue;
      set_kernel_path_override(path.c_str());
      std::printf("  %-4s %-6s (%5.1f MB):", r.label.c_str(), path.c_str(), bytes / 1e6);
      for (int threads : {1, 2}) {
        ThreadPool pool(threads);
        int it = 0;
        auto run = [&] { cpu::matmul(y.data(), N, x.data(), K, view(mats[it++ % copies].data(), r.dt, N, K), 1, pool); };
        run();
        const double t = best_time(path == "scalar" ? 4 : 30, run);
        std::printf("  %d thread%s %6.1f GB/s (%.2f ms, %.2f Gweights/s)", threads, threads > 1 ? "s" : " ",
                    bytes / t / 1e9, t * 1e3, double(N) * K / t / 1e9);
      }
      std::printf("\n");
    }
  }
  // Prefill, for reference: T = 64 on the best path, 2 threads.
  set_kernel_path_override(nullptr);
  std::vector<float> xp(static_cast<size_t>(64 * K)), yp(static_cast<size_t>(64 * N));
  for (auto& v : xp) v = dist(rng);
  ThreadPool pool(2);
  for (const Row& r : rows) {
    if (!wanted(r.label, type_names)) continue;
    std::vector<uint8_t> m = r.dt == DType::BF16 ? std::vector<uint8_t>(dtype_row_bytes(r.dt, K) * N, 0x3f)
                                                 : random_blocks(r.dt, N, K, rng);
    const MatrixView w = view(m.data(), r.dt, N, K);
    cpu::matmul(yp.data(), N, xp.data(), K, w, 64, pool);
    const double t = best_time(3, [&] { cpu::matmul(yp.data(), N, xp.data(), K, w, 64, pool); });
    std::printf("  prefill %-4s %-6s 2 threads T=64: %6.1f GFLOP/s (%.1f ms)\n", r.label.c_str(),
                active_kernel_path(), 2.0 * 64 * N * K / t / 1e9, t * 1e3);
  }
}

void bench_precision() {
  const int64_t N = 4096, K = 4096, TP = 512;
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(TP * K)), y(static_cast<size_t>(TP * N));
  for (auto& v : x) v = dist(rng);
  std::printf("exact vs fast (4096 x 4096, best path %s):\n", active_kernel_path());
  for (DType dt : {DType::Q8_0, DType::Q5_0, DType::Q5_1, DType::Q4_K, DType::Q5_K}) {
    if (!wanted(dtype_name(dt), {"Q8_0", "Q5_0", "Q5_1", "Q4_K", "Q5_K"})) continue;
    const size_t bytes = dtype_row_bytes(dt, K) * N;
    const int copies = static_cast<int>(std::max<size_t>(2, (size_t{128} << 20) / bytes + 1));
    std::vector<std::vector<uint8_t>> mats;
    for (int c = 0; c < copies; ++c) mats.push_back(random_blocks(dt, N, K, rng));
    for (auto prec : {cpu::MatmulPrecision::kExact, cpu::MatmulPrecision::kFast}) {
      if (!wanted(prec == cpu::MatmulPrecision::kFast ? "fast" : "exact", {"fast", "exact"})) continue;
      for (int threads : {1, 2}) {
        ThreadPool pool(threads);
        int it = 0;
        auto dec = [&] {
          cpu::matmul_quant(y.data(), N, x.data(), K, view(mats[it++ % copies].data(), dt, N, K), 1, pool, prec);
        };
        dec();
        const double td = best_time(30, dec);
        const MatrixView w = view(mats[0].data(), dt, N, K);
        auto pre = [&] { cpu::matmul_quant(y.data(), N, x.data(), K, w, TP, pool, prec); };
        pre();
        const double tp = best_time(3, pre);
        // Batched decode (8 streams): W from memory again, as at T = 1.
        auto b8 = [&] {
          cpu::matmul_quant(y.data(), N, x.data(), K, view(mats[it++ % copies].data(), dt, N, K), 8, pool, prec);
        };
        b8();
        const double t8 = best_time(20, b8);
        std::printf("  %-4s %-5s %d thread%s  decode %6.1f GB/s (%.2f ms)  T=8 %6.1f GFLOP/s (%.2f ms)"
                    "  prefill T=512 %6.1f GFLOP/s (%.1f ms)\n",
                    dtype_name(dt), prec == cpu::MatmulPrecision::kFast ? "fast" : "exact", threads,
                    threads > 1 ? "s" : " ", bytes / td / 1e9, td * 1e3, 2.0 * 8 * N * K / t8 / 1e9, t8 * 1e3,
                    2.0 * TP * N * K / tp / 1e9, tp * 1e3);
      }
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false, bench_only = false, fast = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) quick = true;
    if (std::strcmp(argv[i], "--bench") == 0) bench_only = true;
    if (std::strcmp(argv[i], "--fast") == 0) fast = true;
    if (std::strcmp(argv[i], "--only") == 0 && i + 1 < argc) g_only.push_back(argv[++i]);
  }
  if (fast) {
    bench_precision();
    return 0;
  }
  const auto t0 = Clock::now();
  if (!bench_only) test_correctness();
#if defined(__aarch64__)
  if (!bench_only) test_fast_neon_variants();
#endif
#if defined(__x86_64__)
  if (!bench_only) test_fast_x86();
#endif
  if (!quick) bench();
  std::printf("%s (%d failure%s) in %.1f s\n", g_failures == 0 ? "PASS" : "FAILED", g_failures,
              g_failures == 1 ? "" : "s", seconds_since(t0));
  return g_failures == 0 ? 0 : 1;
}
