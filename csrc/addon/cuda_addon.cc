// The CUDA addon's extra exports (addon.cc calls AddCudaExports in builds with NEMOTRON_CUDA; built by
// CMake's NEMOTRON_CUDA_ADDON_SOURCES only, not by binding.gyp's CPU build): `cudaDeviceCount()` and
// `cudaInfo()` (runtime, driver and devices; never throws) for lib/cuda.ts's smoke test, the driver check
// and `nemotron-node doctor`. The CUDA kernels' parity with their CPU twins is checked natively
// (native-tests/cuda_kernels_check.cc), so this addon no longer exports them (`_cudaKernels`, issue #17).
#include <cuda_runtime_api.h>
#include <napi.h>

#include <cstdio>
#include <string>

namespace nemo::addon {
namespace {

Napi::Value CudaDeviceCount(const Napi::CallbackInfo& info) {
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    cudaGetLastError();
    // No device or no driver: the count is 0; the reason is the error's name and text.
    throw Napi::Error::New(info.Env(), std::string("cudaGetDeviceCount: ") + cudaGetErrorName(err) + ": " +
                                           cudaGetErrorString(err));
  }
  return Napi::Number::New(info.Env(), n);
}

#ifndef NEMOTRON_CUDA_ARCHS
#define NEMOTRON_CUDA_ARCHS "unknown"
#endif

// cudaInfo() -> { runtimeVersion, requiredDriverVersion, driverVersion, archs, deviceCount, error?, devices }
// The runtime is linked statically (CUDA::cudart_static): this binary needs only the NVIDIA driver
// (libcuda.so.1, loaded by the runtime on first use). Versions are CUDA's integers (13000 = 13.0):
// runtimeVersion is the toolkit this binary was built with; a driver supports it when it supports CUDA
// major.0 or later (minor version compatibility), so requiredDriverVersion = major * 1000.
// driverVersion is the latest CUDA version the installed driver supports, 0 when there is no driver.
Napi::Value CudaInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("runtimeVersion", CUDART_VERSION);
  o.Set("requiredDriverVersion", (CUDART_VERSION / 1000) * 1000);
  int driver = 0;
  if (cudaDriverGetVersion(&driver) != cudaSuccess) {
    cudaGetLastError();
    driver = 0;
  }
  o.Set("driverVersion", driver);
  o.Set("archs", NEMOTRON_CUDA_ARCHS);
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  Napi::Array devices = Napi::Array::New(env);
  if (err != cudaSuccess) {
    cudaGetLastError();
    n = 0;
    o.Set("error", std::string(cudaGetErrorName(err)) + ": " + cudaGetErrorString(err));
  }
  o.Set("deviceCount", n);
  for (int i = 0; i < n; ++i) {
    cudaDeviceProp prop{};
    Napi::Object d = Napi::Object::New(env);
    d.Set("index", i);
    if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) {
      cudaGetLastError();
      d.Set("name", "unknown");
      devices.Set(static_cast<uint32_t>(i), d);
      continue;
    }
    d.Set("name", prop.name);
    d.Set("computeCapability", std::to_string(prop.major) + "." + std::to_string(prop.minor));
    d.Set("totalMemory", static_cast<double>(prop.totalGlobalMem));
    d.Set("multiprocessors", prop.multiProcessorCount);
    char uuid[40];
    const unsigned char* u = reinterpret_cast<const unsigned char*>(prop.uuid.bytes);
    std::snprintf(uuid, sizeof uuid, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0], u[1],
                  u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
    d.Set("uuid", std::string("GPU-") + uuid);
    devices.Set(static_cast<uint32_t>(i), d);
  }
  o.Set("devices", devices);
  return o;
}

}  // namespace

void AddCudaExports(Napi::Env env, Napi::Object exports) {
  exports.Set("cudaDeviceCount", Napi::Function::New<CudaDeviceCount>(env));
  exports.Set("cudaInfo", Napi::Function::New<CudaInfo>(env));
}

}  // namespace nemo::addon
