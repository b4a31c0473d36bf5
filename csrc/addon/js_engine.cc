#include "addon/js_engine.h"

#include <string>
#include <utility>
#include <vector>

#include "addon/addon_data.h"
#include "addon/convert.h"
#include "addon/errors.h"

namespace nemo::addon {
namespace {

// Base for the engine's async calls: runs `compute` off the JS thread, settles a Promise with the
// result of `resolve`, or rejects with the Status turned into a coded Error.
class StatusWorker : public Napi::AsyncWorker {
 public:
  explicit StatusWorker(Napi::Env env)
      : Napi::AsyncWorker(env, "nemotron-node"), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise promise() { return deferred_.Promise(); }

 protected:
  virtual Status compute() = 0;
  virtual Napi::Value result(Napi::Env env) = 0;

 private:
  void Execute() override {
    try {
      status_ = compute();
    } catch (const std::bad_alloc&) {
      status_ = Status(StatusCode::kOutOfMemory, "out of memory");
    } catch (const std::exception& e) {
      status_ = Status(StatusCode::kInternal, e.what());
    }
  }
  void OnOK() override {
    Napi::Env env = Env();
    if (!status_.ok()) {
      deferred_.Reject(make_error(env, status_).Value());
      return;
    }
    deferred_.Resolve(result(env));
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

  Napi::Promise::Deferred deferred_;
  Status status_;
};

class LoadWorker : public StatusWorker {
 public:
  LoadWorker(Napi::Env env, std::string path, EngineOptions options)
      : StatusWorker(env), path_(std::move(path)), options_(options) {}

 protected:
  Status compute() override {
    std::unique_ptr<Engine> e;
    NEMO_RETURN_IF_ERROR(Engine::load(path_, options_, &e));
    engine_ = std::move(e);
    return Status::Ok();
  }
  Napi::Value result(Napi::Env env) override { return JsEngine::NewInstance(env, engine_); }

 private:
  std::string path_;
  EngineOptions options_;
  std::shared_ptr<Engine> engine_;
};

class EvaluateWorker : public StatusWorker {
 public:
  EvaluateWorker(Napi::Env env, std::shared_ptr<Engine> engine, int32_t id,
                 std::vector<int32_t> tokens, bool all_logits)
      : StatusWorker(env), engine_(std::move(engine)), id_(id), tokens_(std::move(tokens)),
        all_logits_(all_logits) {}

 protected:
  Status compute() override {
    return engine_->evaluate(id_, tokens_.data(), static_cast<int64_t>(tokens_.size()), all_logits_,
                             &logits_);
  }
  Napi::Value result(Napi::Env env) override {
    auto out = Napi::Float32Array::New(env, logits_.size());
    std::copy(logits_.begin(), logits_.end(), out.Data());
    return out;
  }

 private:
  std::shared_ptr<Engine> engine_;
  int32_t id_;
  std::vector<int32_t> tokens_;
  bool all_logits_;
  std::vector<float> logits_;
};

class EvaluateBatchWorker : public StatusWorker {
 public:
  EvaluateBatchWorker(Napi::Env env, std::shared_ptr<Engine> engine,
                      std::vector<Engine::BatchRequest> batch)
      : StatusWorker(env), engine_(std::move(engine)), batch_(std::move(batch)) {}

 protected:
  Status compute() override { return engine_->evaluate_batch(batch_, &logits_); }
  Napi::Value result(Napi::Env env) override {
    auto arr = Napi::Array::New(env, logits_.size());
    for (size_t i = 0; i < logits_.size(); ++i) {
      auto out = Napi::Float32Array::New(env, logits_[i].size());
      std::copy(logits_[i].begin(), logits_[i].end(), out.Data());
      arr.Set(static_cast<uint32_t>(i), out);
    }
    return arr;
  }

 private:
  std::shared_ptr<Engine> engine_;
  std::vector<Engine::BatchRequest> batch_;
  std::vector<std::vector<float>> logits_;
};

class SampleWorker : public StatusWorker {
 public:
  SampleWorker(Napi::Env env, std::shared_ptr<Engine> engine, int32_t id,
               std::vector<int32_t> tokens, SamplingParams sampling, uint64_t step)
      : StatusWorker(env), engine_(std::move(engine)), id_(id), tokens_(std::move(tokens)),
        sampling_(sampling), step_(step) {}

 protected:
  Status compute() override {
    return engine_->evaluate_and_sample(id_, tokens_.data(), static_cast<int64_t>(tokens_.size()),
                                        sampling_, step_, &token_);
  }
  Napi::Value result(Napi::Env env) override { return Napi::Number::New(env, token_); }

 private:
  std::shared_ptr<Engine> engine_;
  int32_t id_;
  std::vector<int32_t> tokens_;
  SamplingParams sampling_;
  uint64_t step_;
  int32_t token_ = -1;
};

class StepWorker : public StatusWorker {
 public:
  StepWorker(Napi::Env env, std::shared_ptr<Engine> engine, std::vector<Engine::StepRequest> requests)
      : StatusWorker(env), engine_(std::move(engine)), requests_(std::move(requests)) {}

 protected:
  Status compute() override { return engine_->step(requests_, &results_); }
  Napi::Value result(Napi::Env env) override {
    // Two parallel arrays: consumed[i] and token[i] (-1 when none was sampled).
    auto consumed = Napi::Int32Array::New(env, results_.size());
    auto token = Napi::Int32Array::New(env, results_.size());
    auto snap_pos = Napi::Float64Array::New(env, results_.size());
    auto snap_id = Napi::Int32Array::New(env, results_.size());
    for (size_t i = 0; i < results_.size(); ++i) {
      consumed[i] = static_cast<int32_t>(results_[i].consumed);
      token[i] = results_[i].token;
      snap_pos[i] = static_cast<double>(results_[i].snapshot_position);
      snap_id[i] = results_[i].snapshot_id;
    }
    Napi::Object out = Napi::Object::New(env);
    out.Set("consumed", consumed);
    out.Set("token", token);
    out.Set("snapshotPosition", snap_pos);
    out.Set("snapshotId", snap_id);
    return out;
  }

 private:
  std::shared_ptr<Engine> engine_;
  std::vector<Engine::StepRequest> requests_;
  std::vector<Engine::StepResult> results_;
};

class ExportWorker : public StatusWorker {
 public:
  ExportWorker(Napi::Env env, std::shared_ptr<Engine> engine, int32_t id)
      : StatusWorker(env), engine_(std::move(engine)), id_(id) {}

 protected:
  Status compute() override { return engine_->export_snapshot(id_, &bytes_); }
  Napi::Value result(Napi::Env env) override {
    auto out = Napi::Uint8Array::New(env, bytes_.size());
    std::copy(bytes_.begin(), bytes_.end(), out.Data());
    return out;
  }

 private:
  std::shared_ptr<Engine> engine_;
  int32_t id_;
  std::vector<uint8_t> bytes_;
};

class ImportWorker : public StatusWorker {
 public:
  ImportWorker(Napi::Env env, std::shared_ptr<Engine> engine, std::vector<uint8_t> bytes,
               std::vector<int32_t> tokens)
      : StatusWorker(env), engine_(std::move(engine)), bytes_(std::move(bytes)), tokens_(std::move(tokens)) {}

 protected:
  Status compute() override {
    return engine_->import_snapshot(bytes_.data(), bytes_.size(), tokens_.data(),
                                    static_cast<int64_t>(tokens_.size()), &id_);
  }
  Napi::Value result(Napi::Env env) override { return Napi::Number::New(env, id_); }

 private:
  std::shared_ptr<Engine> engine_;
  std::vector<uint8_t> bytes_;
  std::vector<int32_t> tokens_;
  int32_t id_ = -1;
};

std::vector<int32_t> tokens_arg(const Napi::Value& v) {
  auto arr = v.As<Napi::Int32Array>();
  return std::vector<int32_t>(arr.Data(), arr.Data() + arr.ElementLength());
}

int64_t int_field(const Napi::Object& o, const char* key, int64_t fallback) {
  Napi::Value v = o.Get(key);
  return v.IsNumber() ? v.As<Napi::Number>().Int64Value() : fallback;
}

double num_field(const Napi::Object& o, const char* key, double fallback) {
  Napi::Value v = o.Get(key);
  return v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : fallback;
}

}  // namespace

Napi::Function JsEngine::Init(Napi::Env env) {
  return DefineClass(env, "NativeEngine",
                     {
                         InstanceMethod<&JsEngine::Info>("info"),
                         InstanceMethod<&JsEngine::CreateSequence>("createSequence"),
                         InstanceMethod<&JsEngine::FreeSequence>("freeSequence"),
                         InstanceMethod<&JsEngine::SequenceLength>("sequenceLength"),
                         InstanceMethod<&JsEngine::LiveSequences>("liveSequences"),
                         InstanceMethod<&JsEngine::SequenceBytes>("sequenceBytes"),
                         InstanceMethod<&JsEngine::Evaluate>("evaluate"),
                         InstanceMethod<&JsEngine::EvaluateBatch>("evaluateBatch"),
                         InstanceMethod<&JsEngine::EvaluateAndSample>("evaluateAndSample"),
                         InstanceMethod<&JsEngine::Step>("step"),
                         InstanceMethod<&JsEngine::Snapshot>("snapshot"),
                         InstanceMethod<&JsEngine::Restore>("restore"),
                         InstanceMethod<&JsEngine::DropSnapshot>("dropSnapshot"),
                         InstanceMethod<&JsEngine::ExportSnapshot>("exportSnapshot"),
                         InstanceMethod<&JsEngine::ImportSnapshot>("importSnapshot"),
                         InstanceMethod<&JsEngine::CacheStats>("cacheStats"),
                         InstanceMethod<&JsEngine::Close>("close"),
                     });
}

Napi::Object JsEngine::NewInstance(Napi::Env env, std::shared_ptr<Engine> engine) {
  Napi::Object obj = env.GetInstanceData<AddonData>()->engine_ctor.New({});
  JsEngine::Unwrap(obj)->engine_ = std::move(engine);
  return obj;
}

JsEngine::JsEngine(const Napi::CallbackInfo& info) : Napi::ObjectWrap<JsEngine>(info) {}

std::shared_ptr<Engine> JsEngine::engine_or_throw(Napi::Env env) {
  if (!engine_) {
    Napi::Error err = Napi::Error::New(env, "the model has been closed");
    err.Set("code", Napi::String::New(env, "ERR_MODEL_CLOSED"));
    throw err;
  }
  return engine_;
}

Napi::Value JsEngine::Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto e = engine_or_throw(env);
  const NemotronHConfig& c = e->config();
  Napi::Object cfg = Napi::Object::New(env);
  cfg.Set("architecture", c.architecture);
  cfg.Set("hybridOverridePattern", c.hybrid_override_pattern);
  cfg.Set("numLayers", static_cast<double>(c.num_layers()));
  cfg.Set("vocabSize", static_cast<double>(c.vocab_size));
  cfg.Set("hiddenSize", static_cast<double>(c.hidden_size));
  cfg.Set("intermediateSize", static_cast<double>(c.intermediate_size));
  cfg.Set("numAttentionHeads", static_cast<double>(c.num_attention_heads));
  cfg.Set("numKeyValueHeads", static_cast<double>(c.num_key_value_heads));
  cfg.Set("headDim", static_cast<double>(c.head_dim));
  cfg.Set("mambaNumHeads", static_cast<double>(c.mamba_num_heads));
  cfg.Set("mambaHeadDim", static_cast<double>(c.mamba_head_dim));
  cfg.Set("ssmStateSize", static_cast<double>(c.ssm_state_size));
  cfg.Set("nGroups", static_cast<double>(c.n_groups));
  cfg.Set("convKernel", static_cast<double>(c.conv_kernel));
  cfg.Set("chunkSize", static_cast<double>(c.chunk_size));
  cfg.Set("layerNormEpsilon", c.layer_norm_epsilon);
  cfg.Set("maxPositionEmbeddings", static_cast<double>(c.max_position_embeddings));
  cfg.Set("bosTokenId", static_cast<double>(c.bos_token_id));
  Napi::Array eos = Napi::Array::New(env, c.eos_token_ids.size());
  for (size_t i = 0; i < c.eos_token_ids.size(); ++i) {
    eos.Set(static_cast<uint32_t>(i), static_cast<double>(c.eos_token_ids[i]));
  }
  cfg.Set("eosTokenIds", eos);
  cfg.Set("torchDtype", c.torch_dtype);

  Napi::Object out = Napi::Object::New(env);
  out.Set("config", cfg);
  out.Set("parameterCount", static_cast<double>(e->weights().parameter_count));
  out.Set("weightBytes", static_cast<double>(e->weights().weight_bytes));
  out.Set("backend", e->backend_name());
  out.Set("threads", e->n_threads());
  out.Set("contextLength", static_cast<double>(e->options().context_length));
  out.Set("maxSequences", e->options().max_sequences);
  out.Set("maxBatchTokens", static_cast<double>(e->options().max_batch_tokens));
  return out;
}

Napi::Value JsEngine::CreateSequence(const Napi::CallbackInfo& info) {
  auto e = engine_or_throw(info.Env());
  int32_t id = 0;
  Status st = e->create_sequence(&id);
  if (!st.ok()) throw make_error(info.Env(), st);
  return Napi::Number::New(info.Env(), id);
}

Napi::Value JsEngine::FreeSequence(const Napi::CallbackInfo& info) {
  if (!engine_) return info.Env().Undefined();  // closing the engine freed every sequence already
  auto e = engine_;
  Status st = e->free_sequence(info[0].As<Napi::Number>().Int32Value());
  if (!st.ok()) throw make_error(info.Env(), st);
  return info.Env().Undefined();
}

Napi::Value JsEngine::SequenceLength(const Napi::CallbackInfo& info) {
  auto e = engine_or_throw(info.Env());
  int64_t n = 0;
  Status st = e->sequence_length(info[0].As<Napi::Number>().Int32Value(), &n);
  if (!st.ok()) throw make_error(info.Env(), st);
  return Napi::Number::New(info.Env(), static_cast<double>(n));
}

Napi::Value JsEngine::LiveSequences(const Napi::CallbackInfo& info) {
  if (!engine_) return Napi::Number::New(info.Env(), 0);
  return Napi::Number::New(info.Env(), engine_->live_sequences());
}

Napi::Value JsEngine::SequenceBytes(const Napi::CallbackInfo& info) {
  if (!engine_) return Napi::Number::New(info.Env(), 0);
  return Napi::Number::New(info.Env(), static_cast<double>(engine_->sequence_bytes()));
}

Napi::Value JsEngine::Evaluate(const Napi::CallbackInfo& info) {
  auto e = engine_or_throw(info.Env());
  auto* w = new EvaluateWorker(info.Env(), e, info[0].As<Napi::Number>().Int32Value(),
                               tokens_arg(info[1]), info[2].ToBoolean().Value());
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
}

Napi::Value JsEngine::EvaluateBatch(const Napi::CallbackInfo& info) {
  auto e = engine_or_throw(info.Env());
  Napi::Array items = info[0].As<Napi::Array>();
  std::vector<Engine::BatchRequest> batch;
  for (uint32_t i = 0; i < items.Length(); ++i) {
    Napi::Object it = items.Get(i).As<Napi::Object>();
    batch.push_back(Engine::BatchRequest{it.Get("id").As<Napi::Number>().Int32Value(),
                                         tokens_arg(it.Get("tokens")),
                                         it.Get("allLogits").ToBoolean().Value()});
  }
  auto* w = new EvaluateBatchWorker(info.Env(), e, std::move(batch));
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
}

Napi::Value JsEngine::EvaluateAndSample(const Napi::CallbackInfo& info) {
  auto e = engine_or_throw(info.Env());
  Napi::Object s = info[2].As<Napi::Object>();
  SamplingParams sp;
  sp.temperature = static_cast<float>(num_field(s, "temperature", 0.0));
  sp.top_k = static_cast<int32_t>(int_field(s, "topK", 0));
  sp.top_p = static_cast<float>(num_field(s, "topP", 1.0));
  sp.min_p = static_cast<float>(num_field(s, "minP", 0.0));
  sp.seed = static_cast<uint64_t>(num_field(s, "seed", 0.0));
  auto* w = new SampleWorker(info.Env(), e, info[0].As<Napi::Number>().Int32Value(),
                             tokens_arg(info[1]), sp,
                             static_cast<uint64_t>(info[3].As<Napi::Number>().Int64Value()));
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
}

Napi::Value JsEngine::Step(const Napi::CallbackInfo& info) {
  auto e = engine_or_throw(info.Env());
  Napi::Array items = info[0].As<Napi::Array>();
  std::vector<Engine::StepRequest> requests;
  requests.reserve(items.Length());
  for (uint32_t i = 0; i < items.Length(); ++i) {
    Napi::Object it = items.Get(i).As<Napi::Object>();
    requests.push_back(Engine::StepRequest{
        it.Get("id").As<Napi::Number>().Int32Value(), int32_vector(it.Get("tokens")),
        it.Get("sample").ToBoolean().Value(), sampling_from_js(it.Get("sampling").As<Napi::Object>()),
        static_cast<int64_t>(it.Get("nPrompt").As<Napi::Number>().Int64Value()),
        static_cast<uint64_t>(it.Get("draw").As<Napi::Number>().Int64Value()), {}});
    Napi::Value at = it.Get("snapshotAt");
    if (at.IsArray()) {
      Napi::Array arr = at.As<Napi::Array>();
      for (uint32_t k = 0; k < arr.Length(); ++k) {
        requests.back().snapshot_at.push_back(arr.Get(k).As<Napi::Number>().Int64Value());
      }
    }
  }
  auto* w = new StepWorker(info.Env(), e, std::move(requests));
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
}

Napi::Value JsEngine::Snapshot(const Napi::CallbackInfo& info) {
  auto e = engine_or_throw(info.Env());
  int32_t id = -1;
  Status st = e->snapshot_sequence(info[0].As<Napi::Number>().Int32Value(), &id);
  if (!st.ok()) throw make_error(info.Env(), st);
  return Napi::Number::New(info.Env(), id);
}

Napi::Value JsEngine::Restore(const Napi::CallbackInfo& info) {
  auto e = engine_or_throw(info.Env());
  Status st = e->restore_sequence(info[0].As<Napi::Number>().Int32Value(),
                                  info[1].As<Napi::Number>().Int32Value());
  if (!st.ok()) throw make_error(info.Env(), st);
  return info.Env().Undefined();
}

Napi::Value JsEngine::DropSnapshot(const Napi::CallbackInfo& info) {
  if (!engine_) return info.Env().Undefined();  // closing freed every snapshot already
  Status st = engine_->drop_snapshot(info[0].As<Napi::Number>().Int32Value());
  if (!st.ok()) throw make_error(info.Env(), st);
  return info.Env().Undefined();
}

Napi::Value JsEngine::ExportSnapshot(const Napi::CallbackInfo& info) {
  auto e = engine_or_throw(info.Env());
  auto* w = new ExportWorker(info.Env(), e, info[0].As<Napi::Number>().Int32Value());
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
}

Napi::Value JsEngine::ImportSnapshot(const Napi::CallbackInfo& info) {
  auto e = engine_or_throw(info.Env());
  auto bytes = info[0].As<Napi::Uint8Array>();
  auto* w = new ImportWorker(info.Env(), e, std::vector<uint8_t>(bytes.Data(), bytes.Data() + bytes.ByteLength()),
                             int32_vector(info[1]));
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
}

Napi::Value JsEngine::CacheStats(const Napi::CallbackInfo& info) {
  auto e = engine_or_throw(info.Env());
  const nemo::CacheStats st = e->cache_stats();
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("kvBlocksTotal", static_cast<double>(st.kv_blocks_total));
  o.Set("kvBlocksUsed", static_cast<double>(st.kv_blocks_used));
  o.Set("kvBlockBytes", static_cast<double>(st.kv_block_bytes));
  o.Set("snapshots", static_cast<double>(st.snapshots));
  o.Set("snapshotStateBytes", static_cast<double>(st.snapshot_state_bytes));
  o.Set("snapshotOnlyKvBlocks", static_cast<double>(st.snapshot_only_kv_blocks));
  return o;
}

Napi::Value JsEngine::Close(const Napi::CallbackInfo& info) {
  engine_.reset();  // running workers keep their own reference; memory goes when the last one ends
  return info.Env().Undefined();
}

Napi::Value LoadEngine(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = info[0].As<Napi::String>().Utf8Value();
  Napi::Object o = info[1].As<Napi::Object>();
  EngineOptions options;
  options.n_threads = static_cast<int>(int_field(o, "threads", 0));
  options.context_length = int_field(o, "contextLength", 0);
  options.max_sequences = static_cast<int32_t>(int_field(o, "maxSequences", 8));
  options.max_batch_tokens = int_field(o, "maxBatchTokens", 256);
  Napi::Value kv = o.Get("kvDtype");
  options.kv_dtype = kv.IsString() && kv.As<Napi::String>().Utf8Value() == "f32" ? DType::F32 : DType::F16;
  options.cache_bytes = int_field(o, "cacheBytes", 0);
  Napi::Value device = o.Get("device");
  if (device.IsString()) options.device = device.As<Napi::String>().Utf8Value();
  auto* w = new LoadWorker(env, std::move(path), options);
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
}

}  // namespace nemo::addon
