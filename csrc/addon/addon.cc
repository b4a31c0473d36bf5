// The module: loadEngine, the NativeEngine class, and the `_kernels` test surface.
// lib/addon-types.ts is the typed description of everything exported here.
#include <napi.h>

#include <algorithm>

#include "addon/addon_data.h"
#include "addon/js_engine.h"
#include "core/memory_bandwidth.h"
#include "core/thread_pool.h"
#include "engine/engine.h"

namespace nemo::addon {

Napi::Object DebugKernels(Napi::Env env);
#ifdef NEMOTRON_CUDA
void AddCudaExports(Napi::Env env, Napi::Object exports);  // cuda/addon_cuda.cc (CUDA addon only)
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

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto* data = new AddonData();
  data->engine_ctor = Napi::Persistent(JsEngine::Init(env));
  env.SetInstanceData<AddonData>(data);  // freed with the environment
  exports.Set("loadEngine", Napi::Function::New<LoadEngine>(env));
  exports.Set("engineConstants", EngineConstants(env));
  exports.Set("_kernels", DebugKernels(env));
  exports.Set("_measureReadBandwidth", Napi::Function::New<MeasureReadBandwidth>(env));
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
