// The module: loadEngine, the NativeEngine class, and the `_kernels` test surface.
// lib/addon-types.ts is the typed description of everything exported here.
#include <napi.h>

#include "addon/addon_data.h"
#include "addon/js_engine.h"

namespace nemo::addon {

Napi::Object DebugKernels(Napi::Env env);
#ifdef NEMOTRON_CUDA
void AddCudaExports(Napi::Env env, Napi::Object exports);  // cuda/addon_cuda.cc (CUDA addon only)
#endif

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto* data = new AddonData();
  data->engine_ctor = Napi::Persistent(JsEngine::Init(env));
  env.SetInstanceData<AddonData>(data);  // freed with the environment
  exports.Set("loadEngine", Napi::Function::New<LoadEngine>(env));
  exports.Set("_kernels", DebugKernels(env));
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
