// The CUDA addon's extra exports (csrc/addon/addon.cc calls AddCudaExports in builds with
// NEMOTRON_CUDA): `cudaDeviceCount()` and `cudaInfo()` (runtime, driver and devices; never throws) for
// lib/cuda.ts's smoke test, the driver check and `nemotron-node doctor`, and `_cudaKernels`, every CUDA
// kernel callable on typed arrays with the argument conventions of `_kernels` (debug_kernels.cc), so
// test/gpu.test.ts can run each one next to its CPU twin. Not part of the public API.
#include <cuda_runtime_api.h>
#include <napi.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "cuda/kernels_cuda.h"

namespace nemo::addon {
namespace {

void check(Napi::Env env, cudaError_t err, const char* what) {
  if (err != cudaSuccess) {
    cudaGetLastError();
    throw Napi::Error::New(env, std::string(what) + ": " + cudaGetErrorName(err) + ": " + cudaGetErrorString(err));
  }
}

// One device buffer, freed on scope exit.
class DevBuf {
 public:
  DevBuf(Napi::Env env, size_t bytes) { check(env, cudaMalloc(&p_, bytes == 0 ? 4 : bytes), "cudaMalloc"); }
  ~DevBuf() { cudaFree(p_); }
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
  template <typename T> T* as() const { return static_cast<T*>(p_); }

 private:
  void* p_ = nullptr;
};

struct Kit {
  Napi::Env env;
  cuda::Scratch scratch;
  std::vector<std::unique_ptr<DevBuf>> bufs;
  explicit Kit(Napi::Env e) : env(e) {}
  float* up(const Napi::Value& v) {  // Float32Array -> device
    auto a = v.As<Napi::Float32Array>();
    return up_raw(a.Data(), a.ElementLength());
  }
  float* up_raw(const float* data, size_t n) {
    bufs.push_back(std::make_unique<DevBuf>(env, n * 4));
    float* d = bufs.back()->as<float>();
    if (n) check(env, cudaMemcpy(d, data, n * 4, cudaMemcpyHostToDevice), "cudaMemcpy");
    return d;
  }
  float* zeros(size_t n) {
    bufs.push_back(std::make_unique<DevBuf>(env, n * 4));
    float* d = bufs.back()->as<float>();
    check(env, cudaMemset(d, 0, n * 4), "cudaMemset");
    return d;
  }
  void* raw(size_t bytes) {
    bufs.push_back(std::make_unique<DevBuf>(env, bytes));
    return bufs.back()->as<void>();
  }
  Napi::Float32Array down(const float* d, size_t n) {
    check(env, cudaDeviceSynchronize(), "kernel");
    auto a = Napi::Float32Array::New(env, n);
    if (n) check(env, cudaMemcpy(a.Data(), d, n * 4, cudaMemcpyDeviceToHost), "cudaMemcpy");
    return a;
  }
  void ran(cudaError_t err) { check(env, err, "launch"); }
};

int64_t i64(const Napi::Value& v) { return v.As<Napi::Number>().Int64Value(); }
double f64(const Napi::Value& v) { return v.As<Napi::Number>().DoubleValue(); }
size_t len(const Napi::Value& v) { return v.As<Napi::TypedArray>().ElementLength(); }

Napi::Object y_state(Napi::Env env, Napi::Float32Array y, Napi::Float32Array state) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("y", y);
  o.Set("state", state);
  return o;
}

// A host MatrixView over a typed array: 'F32' | 'BF16' | 'F16' | 'Q8_0' (bytes) | other GGUF types.
MatrixView host_matrix(Napi::Env env, const Napi::Value& data, const std::string& dtype, int64_t rows, int64_t cols) {
  MatrixView w;
  w.rows = rows;
  w.cols = cols;
  static const struct { const char* name; DType dtype; } kTypes[] = {
      {"F32", DType::F32}, {"F16", DType::F16}, {"BF16", DType::BF16}, {"Q8_0", DType::Q8_0},
      {"Q4_0", DType::Q4_0}, {"Q4_K", DType::Q4_K}, {"Q5_K", DType::Q5_K}, {"Q6_K", DType::Q6_K}};
  bool found = false;
  for (const auto& t : kTypes) {
    if (dtype == t.name) {
      w.dtype = t.dtype;
      found = true;
    }
  }
  if (!found) throw Napi::TypeError::New(env, "unknown dtype " + dtype);
  auto arr = data.As<Napi::TypedArray>();
  const size_t need = dtype_is_quantized(w.dtype) ? static_cast<size_t>(rows) * dtype_row_bytes(w.dtype, cols)
                                                  : static_cast<size_t>(rows * cols) * dtype_size(w.dtype);
  if (arr.ByteLength() < need) throw Napi::RangeError::New(env, "weights: fewer bytes than rows x cols");
  w.data = static_cast<const uint8_t*>(arr.ArrayBuffer().Data()) + arr.ByteOffset();
  return w;
}

MatrixView upload(Kit& kit, const MatrixView& host) {
  void* dst = kit.raw(cuda::device_matrix_bytes(host.dtype, host.rows, host.cols));
  MatrixView dev;
  check(kit.env, cuda::upload_matrix(host, dst, &dev, kit.scratch, nullptr), "upload_matrix");
  return dev;
}

// matmul(x, T, K, w, dtype, N)
Napi::Value Matmul(const Napi::CallbackInfo& info) {
  Kit kit(info.Env());
  const int64_t T = i64(info[1]), K = i64(info[2]), N = i64(info[5]);
  const MatrixView w = upload(kit, host_matrix(info.Env(), info[3], info[4].As<Napi::String>().Utf8Value(), N, K));
  const float* x = kit.up(info[0]);
  float* y = kit.zeros(static_cast<size_t>(T * N));
  kit.ran(cuda::matmul(y, N, x, K, w, T, kit.scratch, nullptr));
  return kit.down(y, static_cast<size_t>(T * N));
}

// embedding(table, dtype, rows, cols, ids: Int32Array)
Napi::Value Embedding(const Napi::CallbackInfo& info) {
  Kit kit(info.Env());
  const int64_t rows = i64(info[2]), cols = i64(info[3]);
  const MatrixView table = upload(kit, host_matrix(info.Env(), info[0], info[1].As<Napi::String>().Utf8Value(), rows, cols));
  auto ids = info[4].As<Napi::Int32Array>();
  for (size_t i = 0; i < ids.ElementLength(); ++i) {
    if (ids[i] < 0 || ids[i] >= rows) throw Napi::RangeError::New(info.Env(), "embedding: id out of range");
  }
  const int64_t T = static_cast<int64_t>(ids.ElementLength());
  auto* d_ids = static_cast<int32_t*>(kit.raw(static_cast<size_t>(T) * 4));
  check(info.Env(), cudaMemcpy(d_ids, ids.Data(), static_cast<size_t>(T) * 4, cudaMemcpyHostToDevice), "cudaMemcpy");
  float* y = kit.zeros(static_cast<size_t>(T * cols));
  kit.ran(cuda::embedding(y, table, d_ids, T, nullptr));
  return kit.down(y, static_cast<size_t>(T * cols));
}

// rmsnorm(x, T, C, w, eps)
Napi::Value Rmsnorm(const Napi::CallbackInfo& info) {
  Kit kit(info.Env());
  const float* x = kit.up(info[0]);
  const float* w = kit.up(info[3]);
  float* y = kit.zeros(len(info[0]));
  kit.ran(cuda::rmsnorm(y, x, w, i64(info[1]), i64(info[2]), static_cast<float>(f64(info[4])), nullptr));
  return kit.down(y, len(info[0]));
}

// rmsnormGatedGrouped(y, z, T, C, groupSize, w, eps)
Napi::Value RmsnormGatedGrouped(const Napi::CallbackInfo& info) {
  Kit kit(info.Env());
  const float* y = kit.up(info[0]);
  const float* z = kit.up(info[1]);
  const float* w = kit.up(info[5]);
  const int64_t T = i64(info[2]), C = i64(info[3]);
  float* o = kit.zeros(len(info[0]));
  kit.ran(cuda::rmsnorm_gated_grouped(o, y, z, C, w, T, C, i64(info[4]), static_cast<float>(f64(info[6])), nullptr));
  return kit.down(o, len(info[0]));
}

// conv1dCausal(x, T, C, w, K, b, state) -> { y, state }
Napi::Value Conv1dCausal(const Napi::CallbackInfo& info) {
  Kit kit(info.Env());
  const int64_t T = i64(info[1]), C = i64(info[2]), K = i64(info[4]);
  const float* x = kit.up(info[0]);
  const float* w = kit.up(info[3]);
  const float* b = kit.up(info[5]);
  float* state = kit.up(info[6]);
  float* y = kit.zeros(static_cast<size_t>(T * C));
  kit.ran(cuda::conv1d_causal(y, x, C, state, w, b, T, C, K, nullptr));
  auto yh = kit.down(y, static_cast<size_t>(T * C));
  return y_state(info.Env(), yh, kit.down(state, len(info[6])));
}

// conv1dStep(x, C, w, K, b, state) -> { y, state }
Napi::Value Conv1dStep(const Napi::CallbackInfo& info) {
  Kit kit(info.Env());
  const int64_t C = i64(info[1]), K = i64(info[3]);
  const float* x = kit.up(info[0]);
  const float* w = kit.up(info[2]);
  const float* b = kit.up(info[4]);
  float* state = kit.up(info[5]);
  float* y = kit.zeros(static_cast<size_t>(C));
  kit.ran(cuda::conv1d_step(y, x, state, w, b, C, K, nullptr));
  auto yh = kit.down(y, static_cast<size_t>(C));
  return y_state(info.Env(), yh, kit.down(state, len(info[5])));
}

cpu::SsmParams ssm_params(Kit& kit, const Napi::Object& o) {
  return cpu::SsmParams{i64(o.Get("H")), i64(o.Get("P")), i64(o.Get("G")), i64(o.Get("N")),
                        static_cast<float>(f64(o.Get("dtMin"))), static_cast<float>(f64(o.Get("dtMax"))),
                        kit.up(o.Get("A")), kit.up(o.Get("D")), kit.up(o.Get("dtBias"))};
}

// ssdChunkScan(x, dtRaw, B, C, params, T, state, chunkSize) -> { y, state }
Napi::Value SsdChunkScan(const Napi::CallbackInfo& info) {
  Kit kit(info.Env());
  const float* x = kit.up(info[0]);
  const float* dt = kit.up(info[1]);
  const float* B = kit.up(info[2]);
  const float* C = kit.up(info[3]);
  const cpu::SsmParams p = ssm_params(kit, info[4].As<Napi::Object>());
  const int64_t T = i64(info[5]);
  float* state = kit.up(info[6]);
  const int64_t HP = p.n_heads * p.head_dim, GN = p.n_groups * p.state_size;
  float* y = kit.zeros(static_cast<size_t>(T * HP));
  kit.ran(cuda::ssd_chunk_scan(y, x, HP, dt, p.n_heads, B, C, GN, state, p, T, i64(info[7]), kit.scratch, nullptr));
  auto yh = kit.down(y, static_cast<size_t>(T * HP));
  return y_state(info.Env(), yh, kit.down(state, len(info[6])));
}

// ssmStateUpdate(x, dtRaw, B, C, params, state) -> { y, state }
Napi::Value SsmStateUpdate(const Napi::CallbackInfo& info) {
  Kit kit(info.Env());
  const float* x = kit.up(info[0]);
  const float* dt = kit.up(info[1]);
  const float* B = kit.up(info[2]);
  const float* C = kit.up(info[3]);
  const cpu::SsmParams p = ssm_params(kit, info[4].As<Napi::Object>());
  float* state = kit.up(info[5]);
  float* y = kit.zeros(static_cast<size_t>(p.n_heads * p.head_dim));
  kit.ran(cuda::ssm_state_update(y, x, dt, B, C, state, p, nullptr));
  auto yh = kit.down(y, static_cast<size_t>(p.n_heads * p.head_dim));
  return y_state(info.Env(), yh, kit.down(state, len(info[5])));
}

// attentionGqa(q, k, v, past, T, Hq, Hkv, Dh, opts?: { blockTokens, dtype: 'F32' | 'F16' | 'BF16', shuffle })
// as _kernels.attentionGqa: K/V rows [past + T] are stored by the CUDA kv_store into a paged layout.
Napi::Value AttentionGqa(const Napi::CallbackInfo& info) {
  Kit kit(info.Env());
  const int64_t past = i64(info[3]), T = i64(info[4]), Hq = i64(info[5]), Hkv = i64(info[6]), Dh = i64(info[7]);
  int64_t B = past + T;
  DType dtype = DType::F32;
  bool shuffle = false;
  if (info.Length() > 8 && info[8].IsObject()) {
    Napi::Object o = info[8].As<Napi::Object>();
    if (o.Get("blockTokens").IsNumber()) B = i64(o.Get("blockTokens"));
    if (o.Get("dtype").IsString()) {
      const std::string d = o.Get("dtype").As<Napi::String>().Utf8Value();
      dtype = d == "F16" ? DType::F16 : d == "BF16" ? DType::BF16 : DType::F32;
    }
    shuffle = o.Get("shuffle").ToBoolean().Value();
  }
  const int64_t kv_dim = Hkv * Dh, S = past + T, n_blocks = (S + B - 1) / B;
  std::vector<int32_t> table(static_cast<size_t>(n_blocks));
  for (int64_t i = 0; i < n_blocks; ++i) table[i] = static_cast<int32_t>(shuffle ? n_blocks - 1 - i : i);
  auto* d_table = static_cast<int32_t*>(kit.raw(table.size() * 4));
  check(info.Env(), cudaMemcpy(d_table, table.data(), table.size() * 4, cudaMemcpyHostToDevice), "cudaMemcpy");
  const size_t elems = static_cast<size_t>(n_blocks * B * kv_dim);
  void* kst = kit.raw(elems * dtype_size(dtype));
  void* vst = kit.raw(elems * dtype_size(dtype));
  const cpu::KvBlocks kv{kst, vst, d_table, B, B * kv_dim, dtype};
  const float* k = kit.up(info[1]);
  const float* v = kit.up(info[2]);
  kit.ran(cuda::kv_store(kv, 0, k, v, kv_dim, S, kv_dim, nullptr));
  const float* q = kit.up(info[0]);
  float* o = kit.zeros(static_cast<size_t>(T * Hq * Dh));
  kit.ran(cuda::attention_gqa(o, q, Hq * Dh, kv, past, T, Hq, Hkv, Dh, kit.scratch, nullptr));
  return kit.down(o, static_cast<size_t>(T * Hq * Dh));
}

// relu2(x) -> relu(x)²
Napi::Value Relu2(const Napi::CallbackInfo& info) {
  Kit kit(info.Env());
  float* x = kit.up(info[0]);
  kit.ran(cuda::relu2(x, static_cast<int64_t>(len(info[0])), nullptr));
  return kit.down(x, len(info[0]));
}

// addInplace(y, x) -> y + x
Napi::Value AddInplace(const Napi::CallbackInfo& info) {
  Kit kit(info.Env());
  float* y = kit.up(info[0]);
  const float* x = kit.up(info[1]);
  kit.ran(cuda::add_inplace(y, x, static_cast<int64_t>(len(info[0])), nullptr));
  return kit.down(y, len(info[0]));
}

// moeRoute(logits [T*E], bias [E], T, {nExperts, topK, nGroup, topkGroup, normTopkProb, scaling})
// -> {ids: Int32Array [T*topK], weights: Float32Array [T*topK]} (the CPU twin: _kernels.moeRoute)
Napi::Value MoeRoute(const Napi::CallbackInfo& info) {
  Kit kit(info.Env());
  Napi::Object o = info[3].As<Napi::Object>();
  const cpu::MoeRouting p{i64(o.Get("nExperts")), i64(o.Get("topK")), i64(o.Get("nGroup")), i64(o.Get("topkGroup")),
                          o.Get("normTopkProb").ToBoolean().Value(), static_cast<float>(f64(o.Get("scaling")))};
  const int64_t T = i64(info[2]);
  if (p.n_experts < 1 || p.top_k < 1 || T < 0 || static_cast<int64_t>(len(info[0])) != T * p.n_experts ||
      static_cast<int64_t>(len(info[1])) != p.n_experts) {
    throw Napi::RangeError::New(info.Env(), "moeRoute: bad sizes");
  }
  const float* logits = kit.up(info[0]);
  const float* bias = kit.up(info[1]);
  const size_t n = static_cast<size_t>(T * p.top_k);
  auto* ids = static_cast<int32_t*>(kit.raw(n * 4));
  float* w = kit.zeros(n);
  kit.ran(cuda::moe_route(ids, w, logits, p.n_experts, bias, T, p, nullptr));
  Napi::Object r = Napi::Object::New(info.Env());
  auto weights = kit.down(w, n);
  auto ia = Napi::Int32Array::New(info.Env(), n);
  if (n) check(info.Env(), cudaMemcpy(ia.Data(), ids, n * 4, cudaMemcpyDeviceToHost), "cudaMemcpy");
  r.Set("ids", ia);
  r.Set("weights", weights);
  return r;
}

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
  Napi::Object k = Napi::Object::New(env);
  k.Set("matmul", Napi::Function::New<Matmul>(env));
  k.Set("embedding", Napi::Function::New<Embedding>(env));
  k.Set("rmsnorm", Napi::Function::New<Rmsnorm>(env));
  k.Set("rmsnormGatedGrouped", Napi::Function::New<RmsnormGatedGrouped>(env));
  k.Set("conv1dCausal", Napi::Function::New<Conv1dCausal>(env));
  k.Set("conv1dStep", Napi::Function::New<Conv1dStep>(env));
  k.Set("ssdChunkScan", Napi::Function::New<SsdChunkScan>(env));
  k.Set("ssmStateUpdate", Napi::Function::New<SsmStateUpdate>(env));
  k.Set("attentionGqa", Napi::Function::New<AttentionGqa>(env));
  k.Set("relu2", Napi::Function::New<Relu2>(env));
  k.Set("addInplace", Napi::Function::New<AddInplace>(env));
  k.Set("moeRoute", Napi::Function::New<MoeRoute>(env));
  exports.Set("_cudaKernels", k);
}

}  // namespace nemo::addon
