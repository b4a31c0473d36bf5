// `_kernels`: every CPU kernel callable on typed arrays, synchronously, so test/ can check each one
// against its float64 reference twin. Not part of the public API.
#include <napi.h>

#include <memory>
#include <vector>

#include "addon/errors.h"
#include "core/cpu_features.h"
#include "core/dtype.h"
#include "engine/forward.h"
#include "engine/sampler.h"
#include "kernels/kernels.h"
#include "kernels/matmul_quant_fast.h"

namespace nemo::addon {
namespace {

ThreadPool& pool() {
  static ThreadPool p(2);  // two workers: enough to exercise the parallel splits
  return p;
}

ThreadPool& pool1() {  // one thread, for thread-count invariance checks
  static ThreadPool p(1);
  return p;
}

std::vector<float> f32(const Napi::Value& v) {
  auto a = v.As<Napi::Float32Array>();
  return std::vector<float>(a.Data(), a.Data() + a.ElementLength());
}
int64_t i64(const Napi::Value& v) { return v.As<Napi::Number>().Int64Value(); }
double f64(const Napi::Value& v) { return v.As<Napi::Number>().DoubleValue(); }

Napi::Float32Array out(Napi::Env env, const std::vector<float>& v) {
  auto a = Napi::Float32Array::New(env, v.size());
  std::copy(v.begin(), v.end(), a.Data());
  return a;
}

Napi::Object y_state(Napi::Env env, const std::vector<float>& y, const std::vector<float>& state) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("y", out(env, y));
  o.Set("state", out(env, state));
  return o;
}

// matmul(x: Float32Array, T, K, w: Float32Array | Uint16Array | Uint8Array, dtype, N, options?)
// dtype 'F32' (Float32Array), 'BF16' | 'F16' (Uint16Array), or a block-quantized type 'Q8_0' | 'Q4_0' |
// 'Q5_0' | 'Q5_1' | 'Q4_K' | 'Q5_K' | 'Q6_K' (Uint8Array of N rows of K / block values blocks, row-major; K a multiple
// of the block size). The weights are used in place, at whatever byte offset the array starts.
// options: { precision?: 'exact' | 'fast', input?: 'plain' | 'relu2', threads?: 1 | 2 } (defaults
// 'exact', 'plain', 2).
Napi::Value Matmul(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto x = f32(info[0]);
  const int64_t T = i64(info[1]), K = i64(info[2]), N = i64(info[5]);
  const std::string dtype = info[4].As<Napi::String>().Utf8Value();
  MatrixView w;
  w.rows = N;
  w.cols = K;
  static const struct {
    const char* name;
    DType dtype;
  } kQuant[] = {{"Q8_0", DType::Q8_0}, {"Q4_0", DType::Q4_0}, {"Q5_0", DType::Q5_0},
                {"Q5_1", DType::Q5_1}, {"Q4_K", DType::Q4_K}, {"Q5_K", DType::Q5_K},
                {"Q6_K", DType::Q6_K}};
  bool quant = false;
  for (const auto& q : kQuant) {
    if (dtype == q.name) {
      w.dtype = q.dtype;
      quant = true;
    }
  }
  if (quant) {
    if (K % dtype_block_elems(w.dtype) != 0)
      throw Napi::RangeError::New(env, "matmul: K must be a multiple of the block size");
    auto bytes = info[3].As<Napi::Uint8Array>();
    if (bytes.ByteLength() < static_cast<size_t>(N) * dtype_row_bytes(w.dtype, K))
      throw Napi::RangeError::New(env, "matmul: w holds fewer than N rows of blocks");
    w.data = bytes.Data();
  } else if (dtype == "F32") {
    w.dtype = DType::F32;
    w.data = info[3].As<Napi::Float32Array>().Data();
  } else {
    w.dtype = dtype == "BF16" ? DType::BF16 : DType::F16;
    w.data = info[3].As<Napi::Uint16Array>().Data();
  }
  cpu::MatmulPrecision precision = cpu::MatmulPrecision::kExact;
  MatmulInput input = MatmulInput::kPlain;
  ThreadPool* tp = &pool();
  if (info.Length() > 6 && info[6].IsObject()) {
    const Napi::Object o = info[6].As<Napi::Object>();
    const auto str = [&](const char* key, const char* dflt) {
      return o.Has(key) && !o.Get(key).IsUndefined() ? o.Get(key).As<Napi::String>().Utf8Value()
                                                     : std::string(dflt);
    };
    const std::string p = str("precision", "exact"), in = str("input", "plain");
    if (p != "exact" && p != "fast") throw Napi::RangeError::New(env, "matmul: bad precision");
    if (in != "plain" && in != "relu2") throw Napi::RangeError::New(env, "matmul: bad input");
    if (p == "fast") precision = cpu::MatmulPrecision::kFast;
    if (in == "relu2") input = MatmulInput::kRelu2;
    if (o.Has("threads") && !o.Get("threads").IsUndefined()) {
      const int64_t n = i64(o.Get("threads"));
      if (n != 1 && n != 2) throw Napi::RangeError::New(env, "matmul: threads must be 1 or 2");
      if (n == 1) tp = &pool1();
    }
  }
  std::vector<float> y(static_cast<size_t>(T * N));
  cpu::matmul(y.data(), N, x.data(), K, w, T, *tp, precision, input);
  return out(env, y);
}

// rmsnorm(x, T, C, w, eps)
Napi::Value Rmsnorm(const Napi::CallbackInfo& info) {
  auto x = f32(info[0]);
  auto w = f32(info[3]);
  std::vector<float> y(x.size());
  cpu::rmsnorm(y.data(), x.data(), w.data(), i64(info[1]), i64(info[2]), static_cast<float>(f64(info[4])));
  return out(info.Env(), y);
}

// rmsnormGatedGrouped(y, z, T, C, groupSize, w, eps)
Napi::Value RmsnormGatedGrouped(const Napi::CallbackInfo& info) {
  auto y = f32(info[0]);
  auto z = f32(info[1]);
  auto w = f32(info[5]);
  const int64_t T = i64(info[2]), C = i64(info[3]);
  std::vector<float> o(y.size());
  cpu::rmsnorm_gated_grouped(o.data(), y.data(), z.data(), C, w.data(), T, C, i64(info[4]),
                             static_cast<float>(f64(info[6])));
  return out(info.Env(), o);
}

// conv1dCausal(x, T, C, w, K, b, state) -> { y, state }
Napi::Value Conv1dCausal(const Napi::CallbackInfo& info) {
  auto x = f32(info[0]);
  const int64_t T = i64(info[1]), C = i64(info[2]), K = i64(info[4]);
  auto w = f32(info[3]);
  auto b = f32(info[5]);
  auto state = f32(info[6]);
  std::vector<float> y(static_cast<size_t>(T * C));
  cpu::conv1d_causal(y.data(), x.data(), C, state.data(), w.data(), b.data(), T, C, K);
  return y_state(info.Env(), y, state);
}

// conv1dStep(x, C, w, K, b, state) -> { y, state }
Napi::Value Conv1dStep(const Napi::CallbackInfo& info) {
  auto x = f32(info[0]);
  const int64_t C = i64(info[1]), K = i64(info[3]);
  auto w = f32(info[2]);
  auto b = f32(info[4]);
  auto state = f32(info[5]);
  std::vector<float> y(static_cast<size_t>(C));
  cpu::conv1d_step(y.data(), x.data(), state.data(), w.data(), b.data(), C, K);
  return y_state(info.Env(), y, state);
}

struct SsmArgs {
  std::vector<float> A, D, dt_bias;
  SsmParams p;
};

SsmArgs ssm_params(const Napi::Object& o) {
  SsmArgs a;
  a.A = f32(o.Get("A"));
  a.D = f32(o.Get("D"));
  a.dt_bias = f32(o.Get("dtBias"));
  a.p = SsmParams{i64(o.Get("H")), i64(o.Get("P")), i64(o.Get("G")), i64(o.Get("N")),
                       static_cast<float>(f64(o.Get("dtMin"))), static_cast<float>(f64(o.Get("dtMax"))),
                       a.A.data(), a.D.data(), a.dt_bias.data()};
  return a;
}

// ssdChunkScan(x, dtRaw, B, C, params, T, state, chunkSize, threads = 2) -> { y, state }
// threads 1 runs on a one-thread pool, so tests can check that the split does not change the bits.
Napi::Value SsdChunkScan(const Napi::CallbackInfo& info) {
  auto x = f32(info[0]);
  auto dt = f32(info[1]);
  auto B = f32(info[2]);
  auto C = f32(info[3]);
  SsmArgs a = ssm_params(info[4].As<Napi::Object>());
  const int64_t T = i64(info[5]);
  auto state = f32(info[6]);
  const int64_t HP = a.p.n_heads * a.p.head_dim, GN = a.p.n_groups * a.p.state_size;
  std::vector<float> y(static_cast<size_t>(T * HP));
  static ThreadPool one(1);
  ThreadPool& tp = info.Length() > 8 && info[8].IsNumber() && i64(info[8]) == 1 ? one : pool();
  cpu::ssd_chunk_scan(y.data(), x.data(), HP, dt.data(), a.p.n_heads, B.data(), C.data(), GN,
                      state.data(), a.p, T, i64(info[7]), tp);
  return y_state(info.Env(), y, state);
}

// ssmStateUpdate(x, dtRaw, B, C, params, state) -> { y, state }
Napi::Value SsmStateUpdate(const Napi::CallbackInfo& info) {
  auto x = f32(info[0]);
  auto dt = f32(info[1]);
  auto B = f32(info[2]);
  auto C = f32(info[3]);
  SsmArgs a = ssm_params(info[4].As<Napi::Object>());
  auto state = f32(info[5]);
  std::vector<float> y(static_cast<size_t>(a.p.n_heads * a.p.head_dim));
  cpu::ssm_state_update(y.data(), x.data(), dt.data(), B.data(), C.data(), state.data(), a.p, pool());
  return y_state(info.Env(), y, state);
}

// attentionGqa(q, k, v, past, T, Hq, Hkv, Dh, opts?: { blockTokens, dtype: 'F32' | 'F16', shuffle,
//                                                      threads: 1 | 2 })
// K and V rows [past + T, Hkv*Dh] are stored by kv_store into a paged layout (blocks of blockTokens
// positions, placed in a shuffled block order when asked) and attention runs over it on a pool of
// `threads` threads (default 2).
Napi::Value AttentionGqa(const Napi::CallbackInfo& info) {
  auto q = f32(info[0]);
  auto k = f32(info[1]);
  auto v = f32(info[2]);
  const int64_t past = i64(info[3]), T = i64(info[4]), Hq = i64(info[5]), Hkv = i64(info[6]),
                Dh = i64(info[7]);
  int64_t B = past + T;
  DType dtype = DType::F32;
  bool shuffle = false;
  int threads = 2;
  if (info.Length() > 8 && info[8].IsObject()) {
    Napi::Object o = info[8].As<Napi::Object>();
    if (o.Get("blockTokens").IsNumber()) B = i64(o.Get("blockTokens"));
    if (o.Get("dtype").IsString() && o.Get("dtype").As<Napi::String>().Utf8Value() == "F16") dtype = DType::F16;
    shuffle = o.Get("shuffle").ToBoolean().Value();
    if (o.Get("threads").IsNumber() && i64(o.Get("threads")) == 1) threads = 1;
  }
  const int64_t kv_dim = Hkv * Dh, S = past + T, n_blocks = (S + B - 1) / B;
  std::vector<int32_t> table(static_cast<size_t>(n_blocks));
  for (int64_t i = 0; i < n_blocks; ++i) table[i] = static_cast<int32_t>(shuffle ? n_blocks - 1 - i : i);
  const size_t elems = static_cast<size_t>(n_blocks * B * kv_dim);
  std::vector<uint8_t> kst(elems * dtype_size(dtype)), vst(kst.size());
  KvBlocks kv{kst.data(), vst.data(), table.data(), B, B * kv_dim, dtype};
  cpu::kv_store(kv, 0, k.data(), v.data(), kv_dim, S, kv_dim);
  std::vector<float> o(static_cast<size_t>(T * Hq * Dh));
  static ThreadPool one(1);
  cpu::attention_gqa(o.data(), q.data(), Hq * Dh, kv, past, T, Hq, Hkv, Dh, threads == 1 ? one : pool());
  return out(info.Env(), o);
}

// relu2(x) -> relu(x)²
Napi::Value Relu2(const Napi::CallbackInfo& info) {
  auto x = f32(info[0]);
  cpu::relu2(x.data(), static_cast<int64_t>(x.size()));
  return out(info.Env(), x);
}

// moeRoute(logits: Float32Array [T*E], bias: Float32Array [E], T, {nExperts, topK, nGroup, topkGroup,
// normTopkProb, scaling}) -> {ids: Int32Array [T*topK], weights: Float32Array [T*topK]}
Napi::Value MoeRoute(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto logits = f32(info[0]);
  auto bias = f32(info[1]);
  const int64_t T = i64(info[2]);
  Napi::Object o = info[3].As<Napi::Object>();
  cpu::MoeRouting p{i64(o.Get("nExperts")), i64(o.Get("topK")), i64(o.Get("nGroup")), i64(o.Get("topkGroup")),
                    o.Get("normTopkProb").As<Napi::Boolean>().Value(), static_cast<float>(f64(o.Get("scaling")))};
  if (p.n_experts < 1 || p.top_k < 1 || p.n_group < 1 || p.n_experts % p.n_group != 0 ||
      static_cast<int64_t>(logits.size()) != T * p.n_experts || static_cast<int64_t>(bias.size()) != p.n_experts)
    throw Napi::RangeError::New(env, "moeRoute: bad sizes");
  std::vector<int32_t> ids(static_cast<size_t>(T * p.top_k));
  std::vector<float> w(static_cast<size_t>(T * p.top_k));
  cpu::moe_route(ids.data(), w.data(), logits.data(), p.n_experts, bias.data(), T, p);
  Napi::Object r = Napi::Object::New(env);
  auto ia = Napi::Int32Array::New(env, ids.size());
  std::copy(ids.begin(), ids.end(), ia.Data());
  r.Set("ids", ia);
  r.Set("weights", out(env, w));
  return r;
}

// sample(logits, sampling, step, history?, nPrompt?) -> token id. `sampling` holds temperature, topK,
// topP, minP, seed and optionally repetitionPenalty, presencePenalty, frequencyPenalty and logitBias
// (an array of [id, bias] pairs or an object keyed by id); a missing field takes the SamplingParams
// default. history: Int32Array of every token of the sequence; nPrompt: how many of them are the
// prompt (default 0: all generated). The logits are read in place, not copied.
Napi::Value Sample(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsTypedArray() ||
      info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array || !info[1].IsObject() ||
      !info[2].IsNumber()) {
    throw Napi::TypeError::New(env, "sample(logits: Float32Array, sampling: object, step: number, history?: Int32Array, nPrompt?: number)");
  }
  auto logits = info[0].As<Napi::Float32Array>();
  Napi::Object o = info[1].As<Napi::Object>();
  SamplingParams sp;
  auto num = [&](const char* key, double fallback) {
    Napi::Value v = o.Get(key);
    return v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : fallback;
  };
  // Seeds and steps are JS numbers: integers up to 2^53 are exact; negative ones wrap as int64.
  auto to_u64 = [](double d) -> uint64_t {
    if (!(d == d)) return 0;
    if (d >= 18446744073709551615.0) return ~0ull;
    if (d <= -9223372036854775808.0) return 1ull << 63;
    return d < 0 ? static_cast<uint64_t>(static_cast<int64_t>(d)) : static_cast<uint64_t>(d);
  };
  sp.temperature = static_cast<float>(num("temperature", sp.temperature));
  const double top_k = num("topK", 0.0);
  sp.top_k = top_k >= 2147483647.0 ? 2147483647 : top_k > 0 ? static_cast<int32_t>(top_k) : 0;
  sp.top_p = static_cast<float>(num("topP", sp.top_p));
  sp.min_p = static_cast<float>(num("minP", sp.min_p));
  sp.repetition_penalty = static_cast<float>(num("repetitionPenalty", sp.repetition_penalty));
  sp.presence_penalty = static_cast<float>(num("presencePenalty", sp.presence_penalty));
  sp.frequency_penalty = static_cast<float>(num("frequencyPenalty", sp.frequency_penalty));
  sp.seed = to_u64(num("seed", 0.0));
  auto add_bias = [&](double id, double bias) {
    if (id >= 0 && id < 2147483648.0 && id == static_cast<double>(static_cast<int64_t>(id))) {
      sp.logit_bias.emplace_back(static_cast<int32_t>(id), static_cast<float>(bias));
    }
  };
  Napi::Value lb = o.Get("logitBias");
  if (lb.IsArray()) {
    auto arr = lb.As<Napi::Array>();
    for (uint32_t i = 0; i < arr.Length(); ++i) {
      Napi::Value pair = arr.Get(i);
      if (!pair.IsArray() || pair.As<Napi::Array>().Length() < 2) {
        throw Napi::TypeError::New(env, "logitBias: expected [id, bias] pairs");
      }
      auto pr = pair.As<Napi::Array>();
      add_bias(pr.Get(0u).ToNumber().DoubleValue(), pr.Get(1u).ToNumber().DoubleValue());
    }
  } else if (lb.IsObject()) {
    auto obj = lb.As<Napi::Object>();
    Napi::Array keys = obj.GetPropertyNames();
    for (uint32_t i = 0; i < keys.Length(); ++i) {
      Napi::Value key = keys.Get(i);
      add_bias(key.ToNumber().DoubleValue(), obj.Get(key).ToNumber().DoubleValue());
    }
  }
  const int32_t* history = nullptr;
  int64_t n_history = 0;
  if (info.Length() > 3 && !info[3].IsUndefined() && !info[3].IsNull()) {
    if (!info[3].IsTypedArray() || info[3].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
      throw Napi::TypeError::New(env, "sample: history must be an Int32Array");
    }
    auto h = info[3].As<Napi::Int32Array>();
    history = h.Data();
    n_history = static_cast<int64_t>(h.ElementLength());
  }
  const int64_t n_prompt = info.Length() > 4 && info[4].IsNumber() ? info[4].As<Napi::Number>().Int64Value() : 0;
  const uint64_t step = to_u64(info[2].As<Napi::Number>().DoubleValue());
  return Napi::Number::New(env, sample_token(logits.Data(), static_cast<int64_t>(logits.ElementLength()), sp,
                                             history, n_history, n_prompt, step));
}

// cpuFeatures() -> { avx2Fma, avx512f, avx512bf16 }: what the CPU has (for feature-gated tests)
Napi::Value CpuFeaturesJs(const Napi::CallbackInfo& info) {
  const CpuFeatures& f = cpu_features();
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("avx2Fma", f.avx2_fma);
  o.Set("avx512f", f.avx512f);
  o.Set("avx512bf16", f.avx512bf16);
  return o;
}

// setKernelPath('scalar' | 'avx2' | 'avx512' | 'auto') -> the path now active
Napi::Value SetKernelPath(const Napi::CallbackInfo& info) {
  const std::string name = info[0].As<Napi::String>().Utf8Value();
  return Napi::String::New(info.Env(), set_kernel_path_override(name.c_str()));
}

Napi::Value KernelPath(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), active_kernel_path());
}

// quantDotPath(allowVnni?: boolean) -> the integer dot product kFast uses now ('vnni512' | 'avxvnni' |
// 'avx2' | 'scalar'); a boolean first allows or forbids the VNNI instructions.
Napi::Value QuantDotPath(const Napi::CallbackInfo& info) {
  if (info.Length() > 0 && info[0].IsBoolean()) cpu::quant_allow_vnni(info[0].As<Napi::Boolean>().Value());
  return Napi::String::New(info.Env(), cpu::quant_dot_path());
}

}  // namespace

Napi::Object DebugKernels(Napi::Env env) {
  Napi::Object k = Napi::Object::New(env);
  k.Set("matmul", Napi::Function::New<Matmul>(env));
  k.Set("rmsnorm", Napi::Function::New<Rmsnorm>(env));
  k.Set("rmsnormGatedGrouped", Napi::Function::New<RmsnormGatedGrouped>(env));
  k.Set("conv1dCausal", Napi::Function::New<Conv1dCausal>(env));
  k.Set("conv1dStep", Napi::Function::New<Conv1dStep>(env));
  k.Set("ssdChunkScan", Napi::Function::New<SsdChunkScan>(env));
  k.Set("ssmStateUpdate", Napi::Function::New<SsmStateUpdate>(env));
  k.Set("attentionGqa", Napi::Function::New<AttentionGqa>(env));
  k.Set("relu2", Napi::Function::New<Relu2>(env));
  k.Set("moeRoute", Napi::Function::New<MoeRoute>(env));
  // weightBytesRead() -> bytes of weight matrices read by all forward passes of the process (forward.h)
  k.Set("weightBytesRead", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
          return Napi::Number::New(info.Env(), static_cast<double>(weight_bytes_read()));
        }));
  k.Set("sample", Napi::Function::New<Sample>(env));
  k.Set("setKernelPath", Napi::Function::New<SetKernelPath>(env));
  k.Set("kernelPath", Napi::Function::New<KernelPath>(env));
  k.Set("quantDotPath", Napi::Function::New<QuantDotPath>(env));
  k.Set("cpuFeatures", Napi::Function::New<CpuFeaturesJs>(env));
  return k;
}

}  // namespace nemo::addon
