// Every CUDA kernel (cuda/kernels_cuda.h) against its CPU twin (csrc/kernels/kernels.h) on random
// inputs, small shapes that exercise tails and 9B-sized ones. Prints kernel, shape, max relative error
// (max |cuda - cpu| / max |cpu|) and the tolerance; exits non-zero if any check fails.
//
// The one CUDA kernel parity harness (issue #17; test/kernels/gpu.test.ts covers the whole model on the device).
// Without a usable device every check is reported as skipped, by name, and the exit status is 0.
//
// Usage: nemotron_cuda_kernels_check [device index]
//
// What each comparison isolates:
//  * matmul: the CPU runs on exactly the inputs the tensor cores see (x rounded to bf16, or split into
//    hi + lo for bf16x2; F32/F16 weights rounded to bf16 as the upload does), so the difference is the
//    accumulation order alone: ~1e-6 relative, tolerance 1e-4. The effect of bf16 activations against
//    the f32 x is printed for information. Batch invariance is checked bit for bit: every row computed
//    alone (T = 1) against the same rows in batches of 2, 17, 32 (decode kernel) and 130 (prefill kernel).
//  * matmul on the FP8 tensor cores (sm_89+ only; "skipped: <name> (<reason>)" elsewhere): the CPU
//    quantizes x as the device does (per-token amax / 448, E4M3 round-to-nearest-even, saturating) and
//    sums in double; error relative to Σ|x̂·ŵ|, tolerance 1e-3 (check_matmul_fp8 says why), and bitwise
//    batch invariance as above.
//  * norms, conv, SSM, attention: both sides compute in f32 in the same order up to FMA contraction,
//    expf vs the CPU's exp and reduction trees: 2e-5 (norms, conv, state update), 1e-4 (SSD scan and
//    attention, which chain exp() and long sums). Conv states are copies: exact.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "core/dtype.h"
#include "core/thread_pool.h"
#include "cuda/kernels_cuda.h"
#include "engine/sampler.h"
#include "kernels/kernels.h"

using namespace nemo;

namespace {

int failures = 0;
cudaStream_t stream = nullptr;

ThreadPool& pool() {
  static ThreadPool p(static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  return p;
}

struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 1) {}
  uint64_t next() {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
  }
  float uniform() { return static_cast<float>(next() >> 40) / 16777216.0f; }
  float normal() {
    const float u1 = std::max(uniform(), 1e-7f), u2 = uniform();
    return std::sqrt(-2.0f * std::log(u1)) * std::cos(6.2831853f * u2);
  }
  std::vector<float> normals(size_t n, float scale = 1.0f) {
    std::vector<float> v(n);
    for (float& x : v) x = normal() * scale;
    return v;
  }
};

void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) {
    std::fprintf(stderr, "%s: %s\n", what, cudaGetErrorString(err));
    std::exit(3);
  }
}

// A device copy of a host vector (freed at exit of scope).
template <typename T>
struct Dev {
  T* p = nullptr;
  size_t n = 0;
  explicit Dev(size_t count) : n(count) {
    check(cudaMalloc(reinterpret_cast<void**>(&p), std::max<size_t>(n, 1) * sizeof(T)), "cudaMalloc");
    check(cudaMemset(p, 0, std::max<size_t>(n, 1) * sizeof(T)), "cudaMemset");
  }
  explicit Dev(const std::vector<T>& h) : Dev(h.size()) {
    check(cudaMemcpy(p, h.data(), n * sizeof(T), cudaMemcpyHostToDevice), "cudaMemcpy");
  }
  ~Dev() { cudaFree(p); }
  Dev(const Dev&) = delete;
  std::vector<T> host() const {
    check(cudaStreamSynchronize(stream), "kernel");
    std::vector<T> h(n);
    check(cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost), "cudaMemcpy");
    return h;
  }
};

double rel_err(const std::vector<float>& got, const std::vector<float>& want) {
  if (got.size() != want.size()) return INFINITY;
  double scale = 0, diff = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    scale = std::max(scale, std::fabs(static_cast<double>(want[i])));
    const double d = std::fabs(static_cast<double>(got[i]) - want[i]);
    diff = std::isfinite(d) ? std::max(diff, d) : INFINITY;
  }
  return diff / (scale > 0 ? scale : 1);
}

void report(const std::string& kernel, const std::string& shape, double err, double tol) {
  const bool ok = err <= tol;
  if (!ok) ++failures;
  std::printf("  %-24s %-44s %10.3e  (tol %.0e)  %s\n", kernel.c_str(), shape.c_str(), err, tol, ok ? "PASS" : "FAIL");
  std::fflush(stdout);
}

void report_bool(const std::string& kernel, const std::string& shape, bool ok) {
  if (!ok) ++failures;
  std::printf("  %-24s %-44s %10s  %s\n", kernel.c_str(), shape.c_str(), ok ? "bitwise" : "differs", ok ? "PASS" : "FAIL");
  std::fflush(stdout);
}

std::string dims(std::initializer_list<std::pair<const char*, int64_t>> d) {
  std::string s;
  for (const auto& [k, v] : d) s += std::string(s.empty() ? "" : " ") + k + "=" + std::to_string(v);
  return s;
}

float round_bf16(float v) { return bf16_to_f32(f32_to_bf16(v)); }

// ---- matmul ---------------------------------------------------------------------------------------
// Host weights of `dtype` with N(0, 1/sqrt(K)) values; `exact` gets the f32 values the GPU multiplies.
std::vector<uint8_t> make_weights(Rng& rng, DType dtype, int64_t N, int64_t K, std::vector<float>* exact) {
  std::vector<float> w = rng.normals(static_cast<size_t>(N * K), 1.0f / std::sqrt(static_cast<float>(K)));
  exact->resize(w.size());
  std::vector<uint8_t> bytes;
  if (dtype == DType::F32) {
    bytes.resize(w.size() * 4);
    std::memcpy(bytes.data(), w.data(), bytes.size());
    for (size_t i = 0; i < w.size(); ++i) (*exact)[i] = round_bf16(w[i]);  // rounded at upload
  } else if (dtype == DType::F16 || dtype == DType::BF16) {
    bytes.resize(w.size() * 2);
    for (size_t i = 0; i < w.size(); ++i) {
      const uint16_t h = dtype == DType::F16 ? f32_to_f16(w[i]) : f32_to_bf16(w[i]);
      std::memcpy(bytes.data() + 2 * i, &h, 2);
      (*exact)[i] = round_bf16(dtype == DType::F16 ? f16_to_f32(h) : bf16_to_f32(h));
    }
  } else if (dtype == DType::F8_E4M3) {  // random E4M3 bytes but the NaNs (0x7f, 0xff); exact in bf16
    bytes.resize(w.size());
    for (size_t i = 0; i < w.size(); ++i) {
      uint8_t b = static_cast<uint8_t>(rng.next() >> 56);
      if ((b & 0x7f) == 0x7f) b ^= 1;
      bytes[i] = b;
      (*exact)[i] = f8_e4m3_to_f32(b);
    }
  } else {  // Q8_0: scale = max|w| / 127 per block of 32
    const int64_t nb = K / 32;
    bytes.resize(static_cast<size_t>(N * nb * 34));
    for (int64_t r = 0; r < N; ++r) {
      for (int64_t b = 0; b < nb; ++b) {
        const float* src = w.data() + r * K + b * 32;
        float amax = 0;
        for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(src[j]));
        const uint16_t dh = f32_to_f16(amax / 127.0f);
        const float d = f16_to_f32(dh);
        uint8_t* blk = bytes.data() + (r * nb + b) * 34;
        std::memcpy(blk, &dh, 2);
        for (int j = 0; j < 32; ++j) {
          const int q = d > 0 ? static_cast<int>(std::lrint(src[j] / d)) : 0;
          const int8_t qc = static_cast<int8_t>(std::max(-127, std::min(127, q)));
          blk[2 + j] = static_cast<uint8_t>(qc);
          (*exact)[r * K + b * 32 + j] = static_cast<float>(qc) * d;
        }
      }
    }
  }
  return bytes;
}

// input kRelu2: the product reads relu(x)² (the MLP's down projection); the reference is cpu::matmul with
// MatmulInput::kRelu2 on what the tensor cores see (relu² in f32, then the bf16 rounding), and x on the
// device must come back unchanged.
void check_matmul(Rng& rng, DType dtype, int64_t T, int64_t K, int64_t N, cuda::MmaPrecision prec,
                  bool invariance, MatmulInput input = MatmulInput::kPlain) {
  const bool relu2 = input == MatmulInput::kRelu2;
  std::vector<float> wexact;
  std::vector<uint8_t> wbytes = make_weights(rng, dtype, N, K, &wexact);
  const MatrixView host{wbytes.data(), dtype, N, K};
  Dev<uint8_t> wdev(cuda::device_matrix_bytes(dtype, N, K));
  cuda::Scratch scratch;
  MatrixView w;
  check(cuda::upload_matrix(host, wdev.p, &w, scratch, stream), "upload_matrix");
  const std::vector<float> x = rng.normals(static_cast<size_t>(T * K));
  // What the tensor cores see.
  std::vector<float> xr(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const float a = relu2 ? (x[i] > 0 ? x[i] * x[i] : 0.0f) : x[i];  // relu2 as the GPU computes it
    const float hi = round_bf16(a);
    const float seen = prec == cuda::MmaPrecision::kBf16x2 ? hi + round_bf16(a - hi) : hi;
    xr[i] = seen;
  }
  const MatrixView wcpu{wexact.data(), DType::F32, N, K};
  std::vector<float> want(static_cast<size_t>(T * N)), want_f32(want.size());
  cpu::matmul(want.data(), N, xr.data(), K, wcpu, T, pool());
  // The f32 reference: cpu::matmul reading x (kRelu2: relu(x)² applied by the CPU product itself).
  cpu::matmul(want_f32.data(), N, x.data(), K, wcpu, T, pool(), cpu::MatmulPrecision::kExact, input);
  Dev<float> xd(x), yd(static_cast<size_t>(T * N));
  check(cuda::matmul(yd.p, N, xd.p, K, w, T, scratch, stream, prec, input), "matmul");
  const std::vector<float> got = yd.host();
  const std::string name = std::string("matmul ") + dtype_name(dtype) +
                           (prec == cuda::MmaPrecision::kBf16x2 ? " bf16x2" : " bf16") + (relu2 ? " relu2" : "");
  if (relu2) {
    const std::vector<float> x_after = xd.host();
    report_bool(name + " keeps x", dims({{"T", T}, {"K", K}}), std::memcmp(x_after.data(), x.data(), x.size() * 4) == 0);
  }
  const std::string shape = dims({{"T", T}, {"K", K}, {"N", N}});
  report(name, shape, rel_err(got, want), 1e-4);
  if (relu2 && prec == cuda::MmaPrecision::kBf16x2) {  // bf16x2 is within float rounding of the f32 CPU
    report(name + " vs cpu kRelu2", shape, rel_err(got, want_f32), 1e-4);
  }
  std::printf("  %-24s %-44s %10.3e  (vs f32 x: the activation rounding, for information)\n", "", "",
              rel_err(got, want_f32));
  if (!invariance) return;
  // Bitwise batch invariance: rows alone vs in batches (decode and prefill kernels).
  bool same = true;
  for (int64_t t = 0; t < T && same; ++t) {
    Dev<float> y1(static_cast<size_t>(N));
    check(cuda::matmul(y1.p, N, xd.p + t * K, K, w, 1, scratch, stream, prec, input), "matmul");
    const std::vector<float> alone = y1.host();
    same = std::memcmp(alone.data(), got.data() + t * N, static_cast<size_t>(N) * 4) == 0;
  }
  for (int64_t B : {2, 17, 32}) {
    for (int64_t t0 = 0; t0 + B <= T && same; t0 += B * 3 + 1) {
      Dev<float> yb(static_cast<size_t>(B * N));
      check(cuda::matmul(yb.p, N, xd.p + t0 * K, K, w, B, scratch, stream, prec, input), "matmul");
      const std::vector<float> part = yb.host();
      same = std::memcmp(part.data(), got.data() + t0 * N, static_cast<size_t>(B * N) * 4) == 0;
    }
  }
  report_bool(name + " invariance", shape + " rows alone/2/17/32/" + std::to_string(T), same);
}

// ---- matmul on the FP8 tensor cores (sm_89+: precision kBf16, F8_E4M3 weights) -------------------------
// The reference quantizes x as the device is specified to (kernels_cuda.h): per row s = amax|x| / 448 (1 for
// an all-zero row), x̂ = E4M3(x / s) rounded to nearest even, saturating to 448. It finds E4M3(v) by
// search over the 127 non-negative finite codes (nearest value, a tie to the even code = even mantissa),
// independently of the device's bit manipulation. Then y = float(Σ x̂·ŵ in double) · s · w_scale.
uint8_t ref_e4m3(float v) {
  static const std::vector<float> vals = [] {
    std::vector<float> t(127);
    for (int b = 0; b < 127; ++b) t[b] = f8_e4m3_to_f32(static_cast<uint8_t>(b));
    return t;
  }();
  const uint8_t sign = std::signbit(v) ? 0x80 : 0;
  const float a = std::min(std::fabs(v), 448.0f);  // saturation
  int best = 0;
  for (int b = 1; b < 127; ++b) {
    const float d = std::fabs(vals[b] - a), e = std::fabs(vals[best] - a);
    if (d < e || (d == e && (b & 1) == 0 && (best & 1) != 0)) best = b;
  }
  return static_cast<uint8_t>(sign | best);
}

// Error measure: max over elements of |cuda - ref| / (s · |w_scale| · Σ_k |x̂·ŵ|), the error relative to
// the sum of the magnitudes of the terms. E4M3 products are exact in f32 (4 × 4 significant bits), so all
// of it is accumulation: f32 chains of K/32 MMAs per 1024-value segment plus the segment sums (~1e-5 at
// K = 15680), and the tensor cores' FP8 accumulation, which may keep only ~13-14 bits inside an MMA (a
// random walk of such roundings over K/32 MMAs stays near 1e-4 here). Tolerance 1e-3: ten times that, and
// far below what a wrong k pairing of the A/B fragments gives (a sum of unrelated products: ~1/sqrt(K),
// ~3e-3 even at K = 100000).
void check_matmul_fp8(Rng& rng, int64_t T, int64_t K, int64_t N, int scale_kind, bool invariance,
                      MatmulInput input = MatmulInput::kPlain) {
  const bool relu2 = input == MatmulInput::kRelu2;
  std::vector<float> wexact;
  std::vector<uint8_t> wbytes = make_weights(rng, DType::F8_E4M3, N, K, &wexact);
  Dev<uint8_t> wdev(cuda::device_matrix_bytes(DType::F8_E4M3, N, K));
  cuda::Scratch scratch;
  MatrixView w;
  check(cuda::upload_matrix(MatrixView{wbytes.data(), DType::F8_E4M3, N, K}, wdev.p, &w, scratch, stream),
        "upload_matrix");
  // Weight scale: 0 none, 1 per tensor, 2 per row (a device array, as the backend uploads it).
  std::vector<float> wscale(static_cast<size_t>(N), scale_kind == 1 ? 0.0123f : 1.0f);
  if (scale_kind == 2) {
    for (auto& v : wscale) v = 0.001f + static_cast<float>(rng.next() >> 40) * 1e-9f;  // 0.001 .. 0.018
  }
  Dev<float> rs(wscale);
  if (scale_kind == 1) w.scale = 0.0123f;
  if (scale_kind == 2) w.row_scales = rs.p;
  // x: normal rows at different magnitudes, one all-zero row (scale 1), one with a single outlier.
  std::vector<float> x = rng.normals(static_cast<size_t>(T * K));
  for (int64_t t = 0; t < T; ++t) {
    const float mag = std::ldexp(1.0f, static_cast<int>(t % 7) * 3 - 9);
    for (int64_t k = 0; k < K; ++k) x[t * K + k] *= mag;
  }
  if (T > 2) std::fill(x.begin() + K, x.begin() + 2 * K, 0.0f);
  if (T > 3) x[3 * K + K / 2] = 1e4f;
  std::vector<float> want(static_cast<size_t>(T * N)), den(want.size());
  std::vector<float> xq(static_cast<size_t>(K));
  for (int64_t t = 0; t < T; ++t) {
    float amax = 0;
    for (int64_t k = 0; k < K; ++k) {
      const float v = x[t * K + k];
      const float a = relu2 ? (v > 0 ? v * v : 0.0f) : v;
      xq[k] = a;
      amax = std::max(amax, std::fabs(a));
    }
    const float s = amax > 0 ? amax / 448.0f : 1.0f;
    for (int64_t k = 0; k < K; ++k) xq[k] = f8_e4m3_to_f32(ref_e4m3(xq[k] / s));
    for (int64_t n = 0; n < N; ++n) {
      double acc = 0, mag = 0;
      for (int64_t k = 0; k < K; ++k) {
        const double p = static_cast<double>(xq[k]) * wexact[n * K + k];
        acc += p;
        mag += std::fabs(p);
      }
      want[t * N + n] = static_cast<float>(acc) * s * wscale[n];
      den[t * N + n] = static_cast<float>(mag) * s * std::fabs(wscale[n]);
    }
  }
  Dev<float> xd(x), yd(static_cast<size_t>(T * N));
  check(cuda::matmul(yd.p, N, xd.p, K, w, T, scratch, stream, cuda::MmaPrecision::kBf16, input), "matmul");
  const std::vector<float> got = yd.host();
  double err = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    const double d = std::fabs(static_cast<double>(got[i]) - want[i]);
    const double e = den[i] > 0 ? d / den[i] : d;  // den 0: every term 0, so want is 0 and so must got be
    err = std::isfinite(e) ? std::max(err, e) : INFINITY;
  }
  const std::string name = std::string("matmul F8_E4M3 fp8mma") + (relu2 ? " relu2" : "") +
                           (scale_kind == 1 ? " scale" : scale_kind == 2 ? " rowscale" : "");
  const std::string shape = dims({{"T", T}, {"K", K}, {"N", N}});
  report(name, shape, err, 1e-3);
  if (!invariance) return;
  bool same = true;
  for (int64_t t = 0; t < T && same; ++t) {
    Dev<float> y1(static_cast<size_t>(N));
    check(cuda::matmul(y1.p, N, xd.p + t * K, K, w, 1, scratch, stream, cuda::MmaPrecision::kBf16, input), "matmul");
    const std::vector<float> alone = y1.host();
    same = std::memcmp(alone.data(), got.data() + t * N, static_cast<size_t>(N) * 4) == 0;
  }
  for (int64_t B : {2, 17, 32, 33}) {
    for (int64_t t0 = 0; t0 + B <= T && same; t0 += B * 3 + 1) {
      Dev<float> yb(static_cast<size_t>(B * N));
      check(cuda::matmul(yb.p, N, xd.p + t0 * K, K, w, B, scratch, stream, cuda::MmaPrecision::kBf16, input),
            "matmul");
      const std::vector<float> part = yb.host();
      same = std::memcmp(part.data(), got.data() + t0 * N, static_cast<size_t>(B * N) * 4) == 0;
    }
  }
  report_bool(name + " invariance", shape + " rows alone/2/17/32/33/" + std::to_string(T), same);
}

// Why the FP8 path does not run here ("" when it does).
std::string fp8_skip_reason() {
  int dev = 0, major = 0, minor = 0;
  cudaGetDevice(&dev);
  cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
  cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev);
  if (major * 10 + minor < 89)
    return "compute capability " + std::to_string(major) + "." + std::to_string(minor) + " < 8.9: no FP8 MMA";
  if (!cuda::fp8_mma_active()) return "this build has no sm_89+ code for the device";
  return "";
}

// ---- the rest ---------------------------------------------------------------------------------------
void check_embedding(Rng& rng, DType dtype) {
  const int64_t V = 300, C = 4480, T = 9;
  std::vector<float> exact;
  std::vector<uint8_t> bytes = make_weights(rng, dtype, V, C, &exact);
  Dev<uint8_t> tdev(cuda::device_matrix_bytes(dtype, V, C));
  cuda::Scratch scratch;
  MatrixView table;
  check(cuda::upload_matrix(MatrixView{bytes.data(), dtype, V, C}, tdev.p, &table, scratch, stream), "upload");
  std::vector<int32_t> ids(T);
  for (auto& id : ids) id = static_cast<int32_t>(rng.next() % V);
  std::vector<float> want(static_cast<size_t>(T * C));
  cpu::embedding(want.data(), MatrixView{exact.data(), DType::F32, V, C}, ids.data(), T);
  Dev<int32_t> idd(ids);
  Dev<float> y(static_cast<size_t>(T * C));
  check(cuda::embedding(y.p, table, idd.p, T, stream), "embedding");
  report(std::string("embedding ") + dtype_name(dtype), dims({{"V", V}, {"C", C}, {"T", T}}), rel_err(y.host(), want), 0);
}

void check_norms(Rng& rng) {
  for (auto [T, C] : {std::pair<int64_t, int64_t>{1, 64}, {5, 130}, {64, 4480}}) {
    const auto x = rng.normals(static_cast<size_t>(T * C), 3.0f);
    std::vector<float> w(static_cast<size_t>(C));
    for (float& v : w) v = 0.5f + rng.uniform();
    std::vector<float> want(x.size());
    cpu::rmsnorm(want.data(), x.data(), w.data(), T, C, 1e-5f);
    Dev<float> xd(x), wd(w);
    check(cuda::rmsnorm(xd.p, xd.p, wd.p, T, C, 1e-5f, stream), "rmsnorm");  // in place, as forward does
    report("rmsnorm (in place)", dims({{"T", T}, {"C", C}}), rel_err(xd.host(), want), 2e-5);
  }
  for (auto [T, C, G] : {std::tuple<int64_t, int64_t, int64_t>{1, 48, 1}, {4, 96, 2}, {33, 10240, 8}}) {
    const int64_t ldz = C + 7;
    const auto y = rng.normals(static_cast<size_t>(T * C));
    const auto z = rng.normals(static_cast<size_t>(T * ldz), 2.0f);
    std::vector<float> w(static_cast<size_t>(C));
    for (float& v : w) v = 0.5f + rng.uniform();
    std::vector<float> want(y.size());
    cpu::rmsnorm_gated_grouped(want.data(), y.data(), z.data(), ldz, w.data(), T, C, C / G, 1e-5f);
    Dev<float> yd(y), zd(z), wd(w);
    check(cuda::rmsnorm_gated_grouped(yd.p, yd.p, zd.p, ldz, wd.p, T, C, C / G, 1e-5f, stream), "gated");
    report("rmsnorm_gated_grouped", dims({{"T", T}, {"C", C}, {"groups", G}}), rel_err(yd.host(), want), 2e-5);
  }
}

void check_conv(Rng& rng) {
  for (auto [T, C, K] : {std::tuple<int64_t, int64_t, int64_t>{1, 8, 4}, {2, 16, 4}, {7, 24, 4}, {33, 12, 3},
                         {5, 10, 1}, {256, 12288, 4}}) {
    const int64_t ldx = C + 5;
    const auto x = rng.normals(static_cast<size_t>(T * ldx));
    const auto w = rng.normals(static_cast<size_t>(C * K), 0.5f);
    const auto b = rng.normals(static_cast<size_t>(C), 0.1f);
    auto state = rng.normals(static_cast<size_t>(std::max<int64_t>(K - 1, 1) * C));
    Dev<float> xd(x), wd(w), bd(b), sd(state), yd(static_cast<size_t>(T * C));
    std::vector<float> want(static_cast<size_t>(T * C));
    cpu::conv1d_causal(want.data(), x.data(), ldx, state.data(), w.data(), b.data(), T, C, K);
    check(cuda::conv1d_causal(yd.p, xd.p, ldx, sd.p, wd.p, bd.p, T, C, K, stream), "conv1d_causal");
    const std::string shape = dims({{"T", T}, {"C", C}, {"K", K}});
    report("conv1d_causal y", shape, rel_err(yd.host(), want), 2e-5);
    report("conv1d_causal state", shape, rel_err(sd.host(), state), 0);
  }
  const int64_t C = 12288, K = 4;
  const auto x = rng.normals(static_cast<size_t>(C));
  const auto w = rng.normals(static_cast<size_t>(C * K), 0.5f);
  const auto b = rng.normals(static_cast<size_t>(C), 0.1f);
  auto state = rng.normals(static_cast<size_t>((K - 1) * C));
  Dev<float> xd(x), wd(w), bd(b), sd(state), yd(static_cast<size_t>(C));
  std::vector<float> want(static_cast<size_t>(C));
  cpu::conv1d_step(want.data(), x.data(), state.data(), w.data(), b.data(), C, K);
  check(cuda::conv1d_step(yd.p, xd.p, sd.p, wd.p, bd.p, C, K, stream), "conv1d_step");
  report("conv1d_step y", dims({{"C", C}, {"K", K}}), rel_err(yd.host(), want), 2e-5);
  report("conv1d_step state", dims({{"C", C}, {"K", K}}), rel_err(sd.host(), state), 0);
}

struct Ssm {
  std::vector<float> A, D, dt_bias;
};

Ssm ssm_params(Rng& rng, int64_t H) {
  Ssm s;
  for (int64_t h = 0; h < H; ++h) {
    s.A.push_back(-std::exp(std::log(1.0f + 15.0f * rng.uniform())));
    s.D.push_back(rng.normal());
    s.dt_bias.push_back(std::log(std::expm1(0.001f * std::pow(100.0f, rng.uniform()))));
  }
  return s;
}

void check_ssm(Rng& rng) {
  cuda::Scratch scratch;
  for (auto [T, H, P, G, N, Q] : {std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t>{1, 4, 8, 1, 8, 16},
                                  {7, 4, 8, 2, 8, 4}, {37, 8, 12, 4, 16, 16}, {70, 6, 8, 3, 8, 32},
                                  {300, 16, 80, 2, 128, 128}, {130, 8, 64, 1, 128, 128}}) {
    const Ssm s = ssm_params(rng, H);
    const int64_t HP = H * P, GN = G * N, ld = HP + 2 * GN + H + 3;  // packed like in_proj's output
    const auto xz = rng.normals(static_cast<size_t>(T * ld));
    auto state = rng.normals(static_cast<size_t>(H * P * N), 0.5f);
    const float* x = xz.data();
    const float* Bp = x + HP;
    const float* Cp = Bp + GN;
    const float* dt = Cp + GN;
    SsmParams pc{H, P, G, N, 0.0f, INFINITY, s.A.data(), s.D.data(), s.dt_bias.data()};
    std::vector<float> want(static_cast<size_t>(T * HP)), want_state = state;
    cpu::ssd_chunk_scan(want.data(), x, ld, dt, ld, Bp, Cp, ld, want_state.data(), pc, T, Q, pool());
    Dev<float> xd(xz), sd(state), Ad(s.A), Dd(s.D), bd(s.dt_bias), yd(static_cast<size_t>(T * HP));
    SsmParams pg{H, P, G, N, 0.0f, INFINITY, Ad.p, Dd.p, bd.p};
    check(cuda::ssd_chunk_scan(yd.p, xd.p, ld, xd.p + HP + 2 * GN, ld, xd.p + HP, xd.p + HP + GN, ld, sd.p, pg, T, Q,
                               scratch, stream),
          "ssd_chunk_scan");
    const std::string shape = dims({{"T", T}, {"H", H}, {"P", P}, {"G", G}, {"N", N}, {"chunk", Q}});
    report("ssd_chunk_scan y", shape, rel_err(yd.host(), want), 1e-4);
    report("ssd_chunk_scan state", shape, rel_err(sd.host(), want_state), 1e-4);
  }
  for (auto [H, P, G, N] : {std::tuple<int64_t, int64_t, int64_t, int64_t>{4, 8, 1, 8}, {12, 10, 3, 32}, {128, 80, 8, 128}}) {
    const Ssm s = ssm_params(rng, H);
    const int64_t HP = H * P, GN = G * N;
    const auto x = rng.normals(static_cast<size_t>(HP)), Bv = rng.normals(static_cast<size_t>(GN));
    const auto Cv = rng.normals(static_cast<size_t>(GN)), dt = rng.normals(static_cast<size_t>(H));
    auto state = rng.normals(static_cast<size_t>(H * P * N), 0.5f);
    SsmParams pc{H, P, G, N, 0.0f, INFINITY, s.A.data(), s.D.data(), s.dt_bias.data()};
    std::vector<float> want(static_cast<size_t>(HP)), want_state = state;
    cpu::ssm_state_update(want.data(), x.data(), dt.data(), Bv.data(), Cv.data(), want_state.data(), pc, pool());
    Dev<float> xd(x), bd(Bv), cd(Cv), dd(dt), sd(state), Ad(s.A), Dd(s.D), biasd(s.dt_bias), yd(static_cast<size_t>(HP));
    SsmParams pg{H, P, G, N, 0.0f, INFINITY, Ad.p, Dd.p, biasd.p};
    check(cuda::ssm_state_update(yd.p, xd.p, dd.p, bd.p, cd.p, sd.p, pg, stream), "ssm_state_update");
    const std::string shape = dims({{"H", H}, {"P", P}, {"G", G}, {"N", N}});
    report("ssm_state_update y", shape, rel_err(yd.host(), want), 2e-5);
    report("ssm_state_update state", shape, rel_err(sd.host(), want_state), 2e-5);
  }
}

// A K or V pool (nb blocks of B positions of kv_dim values, stored as `dt`) as f32 values in one layout,
// token-major [block][position][kv_dim]. The CPU backend writes K channel-major inside a block
// ([kv_dim][B]: Backend::kv_k_channel_major() is true there) and the CUDA kernels token-major (false),
// by design; V is token-major on both. Comparing bytes across the two would compare two layouts.
std::vector<float> pool_values(const std::vector<uint8_t>& bytes, DType dt, int64_t nb, int64_t B, int64_t kv_dim,
                               bool channel_major) {
  std::vector<float> out(static_cast<size_t>(nb * B * kv_dim));
  for (int64_t b = 0; b < nb; ++b) {
    for (int64_t r = 0; r < B; ++r) {
      for (int64_t c = 0; c < kv_dim; ++c) {
        const size_t at = static_cast<size_t>(b * B * kv_dim + (channel_major ? c * B + r : r * kv_dim + c));
        float v;
        if (dt == DType::F32) {
          std::memcpy(&v, bytes.data() + at * 4, 4);
        } else {
          uint16_t h;
          std::memcpy(&h, bytes.data() + at * 2, 2);
          v = dt == DType::F16 ? f16_to_f32(h) : bf16_to_f32(h);
        }
        out[static_cast<size_t>((b * B + r) * kv_dim + c)] = v;
      }
    }
  }
  return out;
}

// The paged cache written by cuda::kv_store and read by cuda::attention_gqa, against the CPU's kv_store
// and attention_gqa. The CPU has block tasks for F32 and F16 pools only; for a BF16 device pool the CPU
// reference runs on an F32 pool holding K and V rounded to bf16 (exactly the values the device stores),
// so the attention math is compared on the same inputs and the store is compared value for value.
void check_attention(Rng& rng) {
  cuda::Scratch scratch;
  struct Case { int64_t past, T, Hq, Hkv, Dh, B; DType dt; };
  const Case cases[] = {
      {0, 9, 4, 2, 16, 4, DType::F32},     {61, 3, 6, 2, 8, 64, DType::F16},  {130, 1, 8, 2, 16, 64, DType::F16},
      {5, 40, 5, 1, 24, 16, DType::F32},   {0, 200, 40, 8, 128, 64, DType::F16},
      {300, 64, 40, 8, 128, 64, DType::F16}, {1000, 1, 40, 8, 128, 64, DType::F16},
      {5000, 1, 40, 8, 128, 64, DType::F32}, {2000, 1, 40, 8, 128, 64, DType::BF16},
      {70, 30, 8, 2, 64, 64, DType::BF16},
  };
  for (const Case& c : cases) {
    const int64_t S = c.past + c.T, kv_dim = c.Hkv * c.Dh, nb = (S + c.B - 1) / c.B;
    std::vector<int32_t> table(static_cast<size_t>(nb));
    for (int64_t i = 0; i < nb; ++i) table[i] = static_cast<int32_t>(nb - 1 - i);  // shuffled order
    const auto q = rng.normals(static_cast<size_t>(c.T * c.Hq * c.Dh));
    const auto k = rng.normals(static_cast<size_t>(S * kv_dim)), v = rng.normals(static_cast<size_t>(S * kv_dim));
    const size_t elems = static_cast<size_t>(nb * c.B * kv_dim);
    // The CPU side: the same dtype, or f32 holding bf16-rounded values for a BF16 device pool.
    const bool bf16 = c.dt == DType::BF16;
    const DType cpu_dt = bf16 ? DType::F32 : c.dt;
    std::vector<float> kc = k, vc = v;
    if (bf16) {
      for (float& x : kc) x = round_bf16(x);
      for (float& x : vc) x = round_bf16(x);
    }
    std::vector<uint8_t> kh(elems * dtype_size(cpu_dt)), vh(elems * dtype_size(cpu_dt));
    const KvBlocks kvh{kh.data(), vh.data(), table.data(), c.B, c.B * kv_dim, cpu_dt};
    cpu::kv_store(kvh, 0, kc.data(), vc.data(), kv_dim, S, kv_dim);
    std::vector<float> want(static_cast<size_t>(c.T * c.Hq * c.Dh));
    cpu::attention_gqa(want.data(), q.data(), c.Hq * c.Dh, kvh, c.past, c.T, c.Hq, c.Hkv, c.Dh, pool());
    Dev<uint8_t> kd(elems * dtype_size(c.dt)), vd(elems * dtype_size(c.dt));
    Dev<int32_t> td(table);
    Dev<float> qd(q), kr(k), vr(v), od(want.size());
    const KvBlocks kvd{kd.p, vd.p, td.p, c.B, c.B * kv_dim, c.dt};
    check(cuda::kv_store(kvd, 0, kr.p, vr.p, kv_dim, S, kv_dim, stream), "kv_store");
    const std::string shape = dims({{"past", c.past}, {"T", c.T}, {"Hq", c.Hq}, {"Hkv", c.Hkv}, {"Dh", c.Dh}}) + " " +
                              dtype_name(c.dt);
    // K: CPU channel-major vs CUDA token-major, compared as values in one layout; V: token-major both.
    const auto kcpu = pool_values(kh, cpu_dt, nb, c.B, kv_dim, true), kdev = pool_values(kd.host(), c.dt, nb, c.B, kv_dim, false);
    const auto vcpu = pool_values(vh, cpu_dt, nb, c.B, kv_dim, false), vdev = pool_values(vd.host(), c.dt, nb, c.B, kv_dim, false);
    // Only the S stored positions: the rest of the last block is never written on either side.
    bool same = true;
    for (int64_t p = 0; p < S && same; ++p) {
      const int64_t blk = table[static_cast<size_t>(p / c.B)], row = p % c.B;
      const size_t at = static_cast<size_t>((blk * c.B + row) * kv_dim);
      same = std::memcmp(kcpu.data() + at, kdev.data() + at, static_cast<size_t>(kv_dim) * 4) == 0 &&
             std::memcmp(vcpu.data() + at, vdev.data() + at, static_cast<size_t>(kv_dim) * 4) == 0;
    }
    report_bool("kv_store (K and V)", shape, same);
    check(cuda::attention_gqa(od.p, qd.p, c.Hq * c.Dh, kvd, c.past, c.T, c.Hq, c.Hkv, c.Dh, scratch, stream), "attention");
    const bool decode = c.T * (c.Hq / c.Hkv) <= 8;
    report(decode ? "attention (decode)" : "attention (tiled)", shape, rel_err(od.host(), want), 1e-4);
  }
}

void check_elementwise(Rng& rng) {
  const auto x = rng.normals(100003, 2.0f), y = rng.normals(100003);
  std::vector<float> r = x, s = y;
  cpu::relu2(r.data(), static_cast<int64_t>(r.size()));
  cpu::add_inplace(s.data(), x.data(), static_cast<int64_t>(s.size()));
  Dev<float> xd(x), yd(y);
  check(cuda::add_inplace(yd.p, xd.p, static_cast<int64_t>(y.size()), stream), "add");
  check(cuda::relu2(xd.p, static_cast<int64_t>(x.size()), stream), "relu2");
  report("relu2", "n=100003", rel_err(xd.host(), r), 0);
  report("add_inplace", "n=100003", rel_err(yd.host(), s), 0);
}

// ---- sampling -----------------------------------------------------------------------------------------
// cuda::sample against the CPU sampler (sample_token) on the same logits, params, history and draw: the
// same token is expected for every row (a mismatch needs u within float rounding of a CDF boundary,
// about 1e-12 per draw). Log-probs against the host log-softmax of the raw logits.
void check_sampling(Rng& rng) {
  cuda::Scratch scratch;
  struct Case { const char* what; int64_t vocab; bool ties; bool specials; bool zeros = false; };
  // "signed zeros": most logits are -0.0 or +0.0 (a few are 1), so the top-k and top-p cuts fall among
  // zeros of both signs: the CPU compares them equal (ties by id), so must the device's sort key.
  const Case cases[] = {{"vocab 131072", 131072, false, false}, {"vocab 1000, tied logits", 1000, true, false},
                        {"vocab 5000, NaN/inf logits", 5000, false, true},
                        {"vocab 1000, signed zeros", 1000, false, false, true}};
  for (const Case& c : cases) {
    std::vector<SamplingParams> ps;
    auto add = [&](float t, int32_t k, float p, float mp) {
      SamplingParams sp;
      sp.temperature = t; sp.top_k = k; sp.top_p = p; sp.min_p = mp;
      ps.push_back(sp);
    };
    add(0.0f, 0, 1.0f, 0.0f);    // greedy
    add(1.0f, 0, 1.0f, 0.0f);    // the whole vocabulary
    add(0.7f, 40, 1.0f, 0.0f);   // small top-k
    add(1.0f, 2000, 1.0f, 0.0f); // large top-k (the CPU's bucketed path)
    add(1.0f, 0, 0.9f, 0.0f);    // top-p
    add(1.2f, 0, 1.0f, 0.05f);   // min-p
    add(0.9f, 50, 0.8f, 0.02f);  // all cuts
    add(1e-3f, 0, 0.95f, 0.0f);  // nearly greedy
    {  // penalties and bias
      SamplingParams sp;
      sp.temperature = 0.8f; sp.top_p = 0.95f; sp.repetition_penalty = 1.3f; sp.presence_penalty = 0.4f;
      sp.frequency_penalty = 0.3f;
      sp.logit_bias = {{3, 5.0f}, {7, -100.0f}, {3, 1.5f}, {-1, 2.0f}, {static_cast<int32_t>(c.vocab), 1.0f}, {11, NAN}};
      ps.push_back(sp);
      sp.temperature = 0.0f;
      ps.push_back(sp);
    }
    const int rows = static_cast<int>(ps.size()) * 4;
    std::vector<float> logits(static_cast<size_t>(rows * c.vocab));
    for (float& v : logits) {
      if (c.zeros) {
        const float u = rng.uniform();
        v = u < 0.01f ? 1.0f : (u < 0.5f ? -0.0f : 0.0f);
      } else {
        v = c.ties ? static_cast<float>(static_cast<int>(rng.uniform() * 8)) : rng.normal() * 3.0f;
      }
    }
    if (c.specials) {
      for (int r = 0; r < rows; ++r) {
        float* row = logits.data() + static_cast<int64_t>(r) * c.vocab;
        row[r % 50] = NAN;
        row[100 + r] = -INFINITY;
        if (r % 7 == 0) row[200 + r] = INFINITY;
      }
      // A row with nothing finite: the CPU returns 0.
      std::fill(logits.begin(), logits.begin() + c.vocab, -INFINITY);
    }
    std::vector<int32_t> history(300);
    for (auto& t : history) t = static_cast<int32_t>(rng.next() % static_cast<uint64_t>(std::min<int64_t>(c.vocab, 64)));
    std::vector<SampleSpec> specs;
    for (int r = 0; r < rows; ++r) {
      specs.push_back(SampleSpec{&ps[static_cast<size_t>(r) / 4], history.data(), 300, 100, static_cast<uint64_t>(r * 3), true});
    }
    // Seeds are per params block: rows of one block differ by their step.
    for (size_t b = 0; b < ps.size(); ++b) ps[b].seed = 1000 + b;
    Dev<float> ld(logits);
    std::vector<int32_t> got(static_cast<size_t>(rows));
    std::vector<float> lp(static_cast<size_t>(rows));
    check(cuda::sample(got.data(), lp.data(), ld.p, c.vocab, c.vocab, specs, scratch, stream), "sample");
    int same = 0;
    double lp_err = 0;
    for (int r = 0; r < rows; ++r) {
      const float* row = logits.data() + static_cast<int64_t>(r) * c.vocab;
      const int32_t want = sample_token(row, c.vocab, *specs[r].params, history.data(), 300, 100, specs[r].step);
      same += got[r] == want;
      if (got[r] != want) {
        std::printf("    row %d (params %d): cuda %d, cpu %d\n", r, r / 4, got[r], want);
      }
      double m = -INFINITY, z = 0;
      for (int64_t i = 0; i < c.vocab; ++i) if (std::isfinite(row[i])) m = std::max(m, static_cast<double>(row[i]));
      for (int64_t i = 0; i < c.vocab; ++i) if (std::isfinite(row[i])) z += std::exp(row[i] - m);
      if (got[r] >= 0 && got[r] < c.vocab && std::isfinite(row[got[r]]) && z > 0) {
        lp_err = std::max(lp_err, std::fabs(lp[r] - (row[got[r]] - m - std::log(z))));
      }
    }
    report_bool(std::string("sample ") + c.what, std::to_string(same) + "/" + std::to_string(rows) + " tokens = sample_token",
                same == rows);
    report("sample log-prob", c.what, lp_err, 1e-5);
  }
}

// ---- mixture of experts (cuda/moe.cu) ------------------------------------------------------------------
// Routing: cuda::moe_route against cpu::moe_route on the same logits: ids exactly, weights within 1e-5
// (expf against the CPU's exp), for plain top-k, group-limited top-k, no normalisation, and exact ties
// (logits on a grid of 0.25: ties between experts and between groups break toward the lower index).
void check_moe_route(Rng& rng) {
  struct Case { int64_t E, K, G, TG; bool norm; float scaling; bool ties; };
  for (const Case& c : {Case{128, 6, 1, 1, true, 2.5f, false}, Case{64, 4, 8, 3, true, 1.0f, false},
                        Case{16, 2, 4, 2, false, 1.5f, false}, Case{256, 8, 8, 4, true, 2.5f, false},
                        Case{32, 4, 4, 2, true, 1.0f, true}, Case{5, 5, 1, 1, true, 1.0f, true}}) {
    const int64_t T = 37;
    std::vector<float> logits = rng.normals(static_cast<size_t>(T * c.E)), bias = rng.normals(static_cast<size_t>(c.E), 0.1f);
    if (c.ties) {
      for (float& v : logits) v = std::round(v * 4.0f) / 4.0f;
      for (float& v : bias) v = 0.0f;
    }
    const cpu::MoeRouting p{c.E, c.K, c.G, c.TG, c.norm, c.scaling};
    std::vector<int32_t> ids(static_cast<size_t>(T * c.K));
    std::vector<float> w(ids.size());
    cpu::moe_route(ids.data(), w.data(), logits.data(), c.E, bias.data(), T, p);
    Dev<float> ld(logits), bd(bias), wd(w.size());
    Dev<int32_t> idd(ids.size());
    check(cuda::moe_route(idd.p, wd.p, ld.p, c.E, bd.p, T, p, stream), "moe_route");
    const std::vector<int32_t> got_ids = idd.host();
    const std::string shape = dims({{"T", T}, {"E", c.E}, {"K", c.K}, {"G", c.G}, {"topkG", c.TG}}) + (c.ties ? " ties" : "");
    report_bool("moe_route ids", shape, got_ids == ids);
    report("moe_route weights", shape, rel_err(wd.host(), w), 1e-5);
  }
}

// The routed experts (cuda::moe_routed) against the CPU engine's arithmetic: router logits by cpu::matmul
// (f32), cpu::moe_route, then per row the chosen experts by cpu::matmul on the same stored weights with
// f32 activations on the values the device holds (make_weights' `exact`: BF16 as stored, F16 rounded to
// bf16 as the upload does, Q8_0 quants times scales), relu² in f32,
// summed in ascending expert id. The difference is summation order: 1e-4 of max |acc|. The GPU's ids
// must equal the CPU's. Then batch invariance bit for bit: every row alone, and in batches of 3 and 16,
// against the whole batch.
void check_moe_routed(Rng& rng, DType dtype, int64_t T, int64_t H, int64_t I, int64_t E, int64_t K, int64_t G,
                      int64_t TG) {
  const cpu::MoeRouting p{E, K, G, TG, true, 2.5f};
  std::vector<std::vector<uint8_t>> up_bytes, down_bytes;
  std::vector<std::vector<float>> up_exact, down_exact;
  std::vector<std::unique_ptr<Dev<uint8_t>>> mats;
  std::vector<const void*> table(static_cast<size_t>(2 * E));
  std::vector<MatrixView> up_host, down_host;
  cuda::Scratch scratch;
  for (int pass = 0; pass < 2; ++pass) {
    for (int64_t e = 0; e < E; ++e) {
      const int64_t N = pass == 0 ? I : H, Kin = pass == 0 ? H : I;
      std::vector<float> exact;
      auto& store = pass == 0 ? up_bytes : down_bytes;
      store.push_back(make_weights(rng, dtype, N, Kin, &exact));
      const MatrixView host{store.back().data(), dtype, N, Kin};
      auto& ex = pass == 0 ? up_exact : down_exact;
      ex.push_back(std::move(exact));
      (pass == 0 ? up_host : down_host).push_back(MatrixView{ex.back().data(), DType::F32, N, Kin});
      mats.push_back(std::make_unique<Dev<uint8_t>>(cuda::device_matrix_bytes(dtype, N, Kin)));
      MatrixView dev;
      check(cuda::upload_matrix(host, mats.back()->p, &dev, scratch, stream), "upload_matrix");
      table[static_cast<size_t>(pass * E + e)] = dev.data;
    }
  }
  const std::vector<float> router = rng.normals(static_cast<size_t>(E * H), 1.0f / std::sqrt(static_cast<float>(H)));
  const std::vector<float> bias = rng.normals(static_cast<size_t>(E), 0.05f);
  const std::vector<float> u = rng.normals(static_cast<size_t>(T * H));
  // CPU: the forward pass's host path, step by step.
  std::vector<float> logits(static_cast<size_t>(T * E));
  cpu::matmul(logits.data(), E, u.data(), H, MatrixView{router.data(), DType::F32, E, H}, T, pool());
  std::vector<int32_t> ids(static_cast<size_t>(T * K));
  std::vector<float> wts(ids.size());
  cpu::moe_route(ids.data(), wts.data(), logits.data(), E, bias.data(), T, p);
  std::vector<float> want(static_cast<size_t>(T * H), 0.0f), hbuf(static_cast<size_t>(I)), ybuf(static_cast<size_t>(H));
  for (int64_t e = 0; e < E; ++e) {
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t k = 0; k < K; ++k) {
        if (ids[t * K + k] != e) continue;
        cpu::matmul(hbuf.data(), I, u.data() + t * H, H, up_host[e], 1, pool());
        cpu::matmul(ybuf.data(), H, hbuf.data(), I, down_host[e], 1, pool(), cpu::MatmulPrecision::kExact,
                    MatmulInput::kRelu2);
        for (int64_t h = 0; h < H; ++h) want[t * H + h] += wts[t * K + k] * ybuf[h];
      }
    }
  }
  // GPU.
  Dev<const void*> tdev(table);
  Dev<float> rdev(router), bdev(bias), udev(u), acc(static_cast<size_t>(T * H));
  cuda::MoeLayerDev layer;
  layer.up = tdev.p;
  layer.down = tdev.p + E;
  layer.up_dtype = layer.down_dtype = cuda::device_dtype(dtype);
  layer.router = rdev.p;
  layer.bias = bdev.p;
  cuda::MoeRouteOut ro;
  check(cuda::moe_routed(acc.p, udev.p, T, layer, p, H, I, scratch, stream, &ro), "moe_routed");
  std::vector<int32_t> got_ids(ids.size());
  check(cudaStreamSynchronize(stream), "moe_routed");
  check(cudaMemcpy(got_ids.data(), ro.ids, got_ids.size() * 4, cudaMemcpyDeviceToHost), "cudaMemcpy");
  const std::vector<float> got = acc.host();
  const std::string name = std::string("moe_routed ") + dtype_name(dtype);
  const std::string shape = dims({{"T", T}, {"H", H}, {"I", I}, {"E", E}, {"K", K}, {"G", G}});
  report_bool(name + " ids", shape, got_ids == ids);
  report(name, shape, rel_err(got, want), 1e-4);
  bool same = true;
  for (int64_t t = 0; t < T && same; ++t) {
    Dev<float> a1(static_cast<size_t>(H));
    check(cuda::moe_routed(a1.p, udev.p + t * H, 1, layer, p, H, I, scratch, stream), "moe_routed");
    const std::vector<float> alone = a1.host();
    same = std::memcmp(alone.data(), got.data() + t * H, static_cast<size_t>(H) * 4) == 0;
  }
  for (int64_t B : {3, 16}) {
    for (int64_t t0 = 0; t0 + B <= T && same; t0 += B + 1) {
      Dev<float> ab(static_cast<size_t>(B * H));
      check(cuda::moe_routed(ab.p, udev.p + t0 * H, B, layer, p, H, I, scratch, stream), "moe_routed");
      const std::vector<float> part = ab.host();
      same = std::memcmp(part.data(), got.data() + t0 * H, static_cast<size_t>(B * H) * 4) == 0;
    }
  }
  report_bool(name + " invariance", shape + " rows alone/3/16/" + std::to_string(T), same);
}

}  // namespace

int main(int argc, char** argv) {
  const int device = argc > 1 ? std::atoi(argv[1]) : 0;
  Rng rng(2026);
  using P = cuda::MmaPrecision;
  // Every check by name, in this order (the random stream runs through them in order).
  std::vector<std::pair<std::string, std::function<void()>>> checks;
  for (DType dt : {DType::BF16, DType::F16, DType::F32, DType::Q8_0}) {
    checks.push_back({std::string("matmul ") + dtype_name(dt) + " bf16, 5 shapes", [&rng, dt] {
      for (auto [T, K, N] : {std::tuple<int64_t, int64_t, int64_t>{1, 64, 96}, {3, 96, 33}, {17, 256, 130},
                             {32, 4480, 1024}, {130, 1024, 257}}) {
        check_matmul(rng, dt, T, K, N, P::kBf16, dt == DType::BF16 || dt == DType::Q8_0);
      }
    }});
  }
  // FP8 (ModelOpt E4M3): one byte per value on the device, widened to bf16 in registers (exact), so the
  // reference is the f32 product of the same values on the bf16-rounded x: accumulation order only.
  // On sm_89+ kBf16 would take the FP8 MMAs (next check): this one turns them off to test the widening path.
  checks.push_back({"matmul F8_E4M3 bf16, 6 shapes", [&rng] {
    cuda::set_fp8_mma_enabled(false);
    for (auto [T, K, N] : {std::tuple<int64_t, int64_t, int64_t>{1, 64, 96}, {3, 96, 33}, {5, 100, 7},
                           {17, 256, 130}, {32, 4480, 300}, {130, 1030, 257}}) {
      check_matmul(rng, DType::F8_E4M3, T, K, N, P::kBf16, T == 130);
    }
    cuda::set_fp8_mma_enabled(true);
  }});
  // FP8 tensor cores (issue #19): E4M3 x̂ (per-token dynamic scale) × E4M3 W, against a CPU reference that
  // quantizes x the same way (check_matmul_fp8). Tails of K (100, 1030) and N (7, 33, 257), T of both
  // token groupings (<= 16, <= 32, > 32), per-tensor and per-row weight scales, relu² input, invariance.
  checks.push_back({"matmul F8_E4M3 fp8 MMA (sm_89+), 10 shapes", [] {
    const std::string why = fp8_skip_reason();
    if (!why.empty()) {
      std::printf("skipped: %s (%s)\n", "matmul F8_E4M3 fp8 MMA (sm_89+), 10 shapes", why.c_str());
      return;
    }
    Rng r8(8919);  // its own stream: the checks after it draw the same inputs whether it runs or not
    check_matmul_fp8(r8, 1, 64, 96, 0, false);
    check_matmul_fp8(r8, 3, 96, 33, 1, true);
    check_matmul_fp8(r8, 5, 100, 7, 2, true);
    check_matmul_fp8(r8, 17, 256, 130, 0, true);
    check_matmul_fp8(r8, 32, 4480, 300, 2, false);
    check_matmul_fp8(r8, 130, 1030, 257, 1, true);
    check_matmul_fp8(r8, 70, 4480, 520, 0, true);
    check_matmul_fp8(r8, 3, 1000, 200, 0, true, MatmulInput::kRelu2);
    check_matmul_fp8(r8, 40, 15680, 256, 2, false, MatmulInput::kRelu2);
    // K = 100000: T = 17 no longer fits the decode kernel's partials, so it takes the prefill kernel,
    // while its rows alone take the decode kernel: the invariance check compares the two kernels' bits.
    check_matmul_fp8(r8, 17, 100000, 24, 0, true);
  }});
  checks.push_back({"matmul 9B shapes and a K tail", [&rng] {
    check_matmul(rng, DType::BF16, 1, 5000, 300, P::kBf16, false);  // K tail: not a multiple of 64
    check_matmul(rng, DType::BF16, 300, 4480, 4480, P::kBf16, false);
    check_matmul(rng, DType::BF16, 8, 15680, 4480, P::kBf16, false);
    check_matmul(rng, DType::Q8_0, 256, 4480, 2048, P::kBf16, false);
  }});
  checks.push_back({"matmul bf16x2", [&rng] {
    for (DType dt : {DType::BF16, DType::Q8_0}) {
      check_matmul(rng, dt, 130, 1024, 257, P::kBf16x2, true);
      check_matmul(rng, dt, 3, 4480, 1000, P::kBf16x2, false);
    }
  }});
  // relu² fused into the down projection (MatmulInput::kRelu2): decode and prefill kernels, both precisions.
  checks.push_back({"matmul relu2 input", [&rng] {
    for (auto prec : {P::kBf16, P::kBf16x2}) {
      check_matmul(rng, DType::BF16, 3, 1000, 200, prec, true, MatmulInput::kRelu2);
      check_matmul(rng, DType::BF16, 130, 15680, 300, prec, false, MatmulInput::kRelu2);
      check_matmul(rng, DType::Q8_0, 8, 15680, 4480, prec, false, MatmulInput::kRelu2);
    }
  }});
  checks.push_back({"embedding BF16", [&rng] { check_embedding(rng, DType::BF16); }});
  checks.push_back({"embedding Q8_0", [&rng] { check_embedding(rng, DType::Q8_0); }});
  checks.push_back({"rmsnorm, gated grouped rmsnorm", [&rng] { check_norms(rng); }});
  checks.push_back({"conv1d causal and step", [&rng] { check_conv(rng); }});
  checks.push_back({"SSD scan, state update", [&rng] { check_ssm(rng); }});
  checks.push_back({"paged GQA attention", [&rng] { check_attention(rng); }});
  checks.push_back({"relu2, add_inplace", [&rng] { check_elementwise(rng); }});
  checks.push_back({"device sampling", [&rng] { check_sampling(rng); }});
  checks.push_back({"MoE routing", [&rng] { check_moe_route(rng); }});
  // Tails: H and I not multiples of 64 (padded rows, the zeroed pad of the down input), 8+ rows per expert.
  checks.push_back({"MoE routed experts, small shapes", [&rng] {
    check_moe_routed(rng, DType::BF16, 40, 96, 80, 8, 2, 1, 1);
    check_moe_routed(rng, DType::Q8_0, 40, 96, 160, 8, 3, 4, 2);
    check_moe_routed(rng, DType::F16, 19, 128, 64, 16, 4, 1, 1);
  }});
  // The 30B-A3B's expert shapes (hidden 2688, experts of 1856, 6 per token; 16 experts rather than 128 to
  // keep the host-side weights small), decode and a small prefill; E = 128 routing is checked above.
  checks.push_back({"MoE routed experts, 30B-A3B shapes", [&rng] {
    check_moe_routed(rng, DType::BF16, 1, 2688, 1856, 16, 6, 1, 1);
    check_moe_routed(rng, DType::BF16, 33, 2688, 1856, 16, 6, 1, 1);
  }});

  // Without a usable device every check is reported as skipped, by name, and the run passes: a machine
  // without a GPU cannot fail it (scripts/gpu-check.sh runs it where there is one).
  int n_devices = 0;
  const cudaError_t err = cudaGetDeviceCount(&n_devices);
  if (err != cudaSuccess || device >= n_devices) {
    const std::string why = err != cudaSuccess ? std::string(cudaGetErrorName(err)) + ": " + cudaGetErrorString(err)
                                               : "no CUDA device " + std::to_string(device);
    for (const auto& c : checks) std::printf("skipped: %s (%s)\n", c.first.c_str(), why.c_str());
    std::printf("kernel check: SKIPPED (%zu checks; %s)\n", checks.size(), why.c_str());
    return 0;
  }
  check(cudaSetDevice(device), "cudaSetDevice");
  check(cudaStreamCreate(&stream), "cudaStreamCreate");
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
  std::printf("CUDA kernels vs CPU kernels on %s (sm_%d%d), max |cuda - cpu| / max |cpu|\n", prop.name, prop.major,
              prop.minor);
  for (const auto& c : checks) c.second();
  std::printf("kernel check: %s (%d failure%s)\n", failures ? "FAIL" : "PASS", failures, failures == 1 ? "" : "s");
  return failures ? 1 : 0;
}
