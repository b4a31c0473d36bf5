// The module: loadEngine, the NativeEngine class, and the `_kernels` test surface.
// lib/addon-types.ts is the typed description of everything exported here.
#include <napi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "addon/addon_data.h"
#include "addon/js_engine.h"
#include "core/memory_bandwidth.h"
#include "core/thread_pool.h"
#include "engine/engine.h"
#include "kernels/kernels.h"
#include "model/weights.h"

namespace nemo::addon {

Napi::Object DebugKernels(Napi::Env env);
#ifdef NEMOTRON_CUDA
void AddCudaExports(Napi::Env env, Napi::Object exports);  // cuda_addon.cc (CUDA addon only)
#endif

// _measureReadBandwidth(bytes, threads): GB/s of memory reads on `threads` threads (benchmarks state
// decode as a fraction of it). Blocks the calling thread for about a second: not for request paths.
Napi::Value MeasureReadBandwidth(const Napi::CallbackInfo& info) {
  const double bytes = info[0].As<Napi::Number>().DoubleValue();
  const int threads = std::max(1, info[1].As<Napi::Number>().Int32Value());
  ThreadPool pool(threads);
  return Napi::Number::New(info.Env(), measure_read_bandwidth(static_cast<size_t>(bytes), 5, pool));
}

// The engine's constants that the JavaScript side plans with (lib/memory.ts), from their one definition.
Napi::Object EngineConstants(Napi::Env env) {
  const EngineOptions defaults;
  Napi::Object c = Napi::Object::New(env);
  c.Set("kvBlockTokens", static_cast<double>(KvPool::kBlockTokens));
  c.Set("logitRows", static_cast<double>(Workspace::kLogitRows));
  c.Set("defaultMaxSequences", static_cast<double>(defaults.max_sequences));
  c.Set("defaultMaxBatchTokens", static_cast<double>(defaults.max_batch_tokens));
  c.Set("defaultCacheBytes", static_cast<double>(defaults.cache_bytes));
  c.Freeze();
  return c;
}

// Reads a field "Name:   N kB" of /proc/self/smaps_rollup, in bytes (0 when absent).
static double smaps_bytes(const char* name) {
  FILE* f = std::fopen("/proc/self/smaps_rollup", "r");
  if (f == nullptr) return 0;
  char line[256];
  double kb = 0;
  const size_t n = std::strlen(name);
  while (std::fgets(line, sizeof(line), f) != nullptr)
    if (std::strncmp(line, name, n) == 0 && line[n] == ':') kb = std::strtod(line + n + 1, nullptr);
  std::fclose(f);
  return kb * 1024;
}

// _measureWeightsReadBandwidth(path, weights, threads): loads a checkpoint's weights (no engine), places
// them as LoadOptions.weights would ('mmap' | 'memory'), and measures the read bandwidth of the weights
// where they are (best of 5 passes, each matrix split over `threads` threads as decode splits it).
// Returns { gbps, bytes, placeMs, copiedBytes, anonHugeBytes, filePmdBytes } (the last two: growth of
// AnonHugePages / FilePmdMapped in /proc/self/smaps_rollup, i.e. how much sits in 2 MiB pages).
// With a fourth argument `passes` > 0 it instead loads the weights twice, once per placement, and
// alternates single read passes (mmap, memory, mmap, ...) `passes` times, returning { mmap: [GB/s...],
// memory: [GB/s...], bytes }: adjacent passes see the same load of a shared host. A fifth argument
// 'matmul' makes each pass a T = 1 product with every matrix (decode's weight stream) instead of reads.
// Synchronous, seconds: for benchmarks only.
Napi::Value MeasureWeightsReadBandwidth(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string path = info[0].As<Napi::String>().Utf8Value();
  const bool memory = info[1].As<Napi::String>().Utf8Value() == "memory";
  const int threads = std::max(1, info[2].As<Napi::Number>().Int32Value());
  const int passes = info.Length() > 3 && info[3].IsNumber() ? info[3].As<Napi::Number>().Int32Value() : 0;
  auto ranges_of = [](ModelWeights* mw, double* bytes) {
    std::vector<std::pair<const uint8_t*, size_t>> ranges;
    *bytes = 0;
    for (MatrixView* m : weight_matrices(mw)) {
      const size_t n = static_cast<size_t>(m->rows) * dtype_row_bytes(m->dtype, static_cast<size_t>(m->cols));
      ranges.emplace_back(static_cast<const uint8_t*>(m->data), n);
      *bytes += static_cast<double>(n);
    }
    return ranges;
  };
  if (passes > 0) {
    NemotronHConfig c0, c1;
    ModelWeights w0, w1;
    ThreadPool pool(threads);
    Status s = load_checkpoint(path, &c0, &w0);
    if (s.ok()) s = load_checkpoint(path, &c1, &w1);
    if (s.ok()) s = place_weights(&w0, WeightsPlacement::kMmap, pool);
    if (s.ok()) s = place_weights(&w1, WeightsPlacement::kMemory, pool);
    if (!s.ok()) {
      Napi::Error::New(env, s.message()).ThrowAsJavaScriptException();
      return env.Undefined();
    }
    double bytes = 0;
    const auto r0 = ranges_of(&w0, &bytes), r1 = ranges_of(&w1, &bytes);
    // kind 'matmul': each pass is one decode-shaped product (T = 1, exact) with every matrix, i.e. the
    // weight stream of a decode step without the per-token state work; else plain reads.
    const bool matmul = info.Length() > 4 && info[4].IsString() && info[4].As<Napi::String>().Utf8Value() == "matmul";
    int64_t max_dim = 1;
    for (MatrixView* m : weight_matrices(&w0)) max_dim = std::max({max_dim, m->rows, m->cols});
    std::vector<float> x(static_cast<size_t>(max_dim), 0.01f), y(static_cast<size_t>(max_dim));
    auto pass = [&](ModelWeights* mw, const std::vector<std::pair<const uint8_t*, size_t>>& r) {
      if (!matmul) return measure_read_bandwidth_of(r, 1, pool);
      const auto t0 = std::chrono::steady_clock::now();
      for (MatrixView* m : weight_matrices(mw)) cpu::matmul(y.data(), m->rows, x.data(), m->cols, *m, 1, pool);
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      return s > 0 ? bytes / s / 1e9 : 0.0;
    };
    pass(&w0, r0);  // faults the mapping in
    pass(&w1, r1);
    Napi::Array a0 = Napi::Array::New(env), a1 = Napi::Array::New(env);
    for (int p = 0; p < passes; ++p) {
      a0.Set(static_cast<uint32_t>(p), pass(&w0, r0));
      a1.Set(static_cast<uint32_t>(p), pass(&w1, r1));
    }
    Napi::Object out = Napi::Object::New(env);
    out.Set("mmap", a0);
    out.Set("memory", a1);
    out.Set("bytes", bytes);
    return out;
  }
  NemotronHConfig config;
  ModelWeights w;
  Status st = load_checkpoint(path, &config, &w);
  if (!st.ok()) {
    Napi::Error::New(env, st.message()).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  ThreadPool pool(threads);
  const double anon0 = smaps_bytes("AnonHugePages"), pmd0 = smaps_bytes("FilePmdMapped");
  const auto t0 = std::chrono::steady_clock::now();
  int64_t copied = 0;
  st = place_weights(&w, memory ? WeightsPlacement::kMemory : WeightsPlacement::kMmap, pool, &copied);
  const double place_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  if (!st.ok()) {
    Napi::Error::New(env, st.message()).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  double bytes = 0;
  const auto ranges = ranges_of(&w, &bytes);
  const double gbps = measure_read_bandwidth_of(ranges, 5, pool);
  Napi::Object out = Napi::Object::New(env);
  out.Set("gbps", gbps);
  out.Set("bytes", bytes);
  out.Set("placeMs", place_ms);
  out.Set("copiedBytes", static_cast<double>(copied));
  out.Set("anonHugeBytes", smaps_bytes("AnonHugePages") - anon0);
  out.Set("filePmdBytes", smaps_bytes("FilePmdMapped") - pmd0);
  return out;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto* data = new AddonData();
  data->engine_ctor = Napi::Persistent(JsEngine::Init(env));
  env.SetInstanceData<AddonData>(data);  // freed with the environment
  exports.Set("loadEngine", Napi::Function::New<LoadEngine>(env));
  exports.Set("engineConstants", EngineConstants(env));
  exports.Set("_kernels", DebugKernels(env));
  exports.Set("_measureReadBandwidth", Napi::Function::New<MeasureReadBandwidth>(env));
  exports.Set("_measureWeightsReadBandwidth", Napi::Function::New<MeasureWeightsReadBandwidth>(env));
#ifdef NEMOTRON_CUDA
  AddCudaExports(env, exports);
#endif
  return exports;
}

}  // namespace nemo::addon

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) {
  return nemo::addon::Init(env, exports);
}

NODE_API_MODULE(nemotron_node, InitModule)
