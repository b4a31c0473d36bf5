#include "addon/js_engine.h"

#include <algorithm>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "addon/addon_data.h"
#include "addon/convert.h"
#include "addon/errors.h"
#include "model/tensor_check.h"

namespace nemo::addon {
namespace {

// Runs `compute` off the JS thread, then settles a Promise with `result(env)` on the JS thread, or
// rejects it with the Status turned into a coded Error. Inputs are captured by value before queuing
// and outputs live in state shared by the two callbacks, so workers never touch JS values.
class TaskWorker : public Napi::AsyncWorker {
 public:
  using Compute = std::function<Status()>;
  using Result = std::function<Napi::Value(Napi::Env)>;

  static Napi::Promise Queue(Napi::Env env, Compute compute, Result result) {
    auto* w = new TaskWorker(env, std::move(compute), std::move(result));
    Napi::Promise p = w->deferred_.Promise();
    w->Napi::AsyncWorker::Queue();
    return p;
  }

 private:
  TaskWorker(Napi::Env env, Compute compute, Result result)
      : Napi::AsyncWorker(env, "nemotron-node"), deferred_(Napi::Promise::Deferred::New(env)),
        compute_(std::move(compute)), result_(std::move(result)) {}

  void Execute() override {
    try {
      status_ = compute_();
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
    deferred_.Resolve(result_(env));
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

  Napi::Promise::Deferred deferred_;
  Compute compute_;
  Result result_;
  Status status_;
};

template <typename TypedArray, typename T>
TypedArray copy_to_js(Napi::Env env, const std::vector<T>& v) {
  auto out = TypedArray::New(env, v.size());
  std::copy(v.begin(), v.end(), out.Data());
  return out;
}

int64_t int_field(const Napi::Object& o, const char* key, int64_t fallback) {
  Napi::Value v = o.Get(key);
  return v.IsNumber() ? v.As<Napi::Number>().Int64Value() : fallback;
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
                         InstanceMethod<&JsEngine::Step>("step"),
                         InstanceMethod<&JsEngine::Snapshot>("snapshot"),
                         InstanceMethod<&JsEngine::Restore>("restore"),
                         InstanceMethod<&JsEngine::DropSnapshot>("dropSnapshot"),
                         InstanceMethod<&JsEngine::ExportSnapshot>("exportSnapshot"),
                         InstanceMethod<&JsEngine::ImportSnapshot>("importSnapshot"),
                         InstanceMethod<&JsEngine::CacheStats>("cacheStats"),
                         InstanceMethod<&JsEngine::Close>("close"),
                         InstanceMethod<&JsEngine::Submit>("submit"),
                         InstanceMethod<&JsEngine::Resume>("resume"),
                         InstanceMethod<&JsEngine::Cancel>("cancel"),
                         InstanceMethod<&JsEngine::Pin>("pin"),
                         InstanceMethod<&JsEngine::HasWork>("hasWork"),
                         InstanceMethod<&JsEngine::RunStep>("runStep"),
                         InstanceMethod<&JsEngine::SchedulerStats>("schedulerStats"),
                         InstanceMethod<&JsEngine::SetGrammarVocab>("setGrammarVocab"),
                         InstanceMethod<&JsEngine::CompileGrammar>("compileGrammar"),
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
  if (c.n_routed_experts > 0) {  // MoE ('E') fields, only for models that have them
    cfg.Set("nRoutedExperts", static_cast<double>(c.n_routed_experts));
    cfg.Set("numExpertsPerTok", static_cast<double>(c.num_experts_per_tok));
    cfg.Set("moeIntermediateSize", static_cast<double>(c.moe_intermediate_size));
    cfg.Set("moeSharedExpertIntermediateSize", static_cast<double>(c.moe_shared_expert_intermediate_size));
    cfg.Set("nGroup", static_cast<double>(c.n_group));
    cfg.Set("topkGroup", static_cast<double>(c.topk_group));
    cfg.Set("normTopkProb", c.norm_topk_prob);
    cfg.Set("routedScalingFactor", c.routed_scaling_factor);
  }

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
  e->publish_cache_stats();
  if (!st.ok()) throw make_error(info.Env(), st);
  return Napi::Number::New(info.Env(), id);
}

Napi::Value JsEngine::FreeSequence(const Napi::CallbackInfo& info) {
  if (!engine_) return info.Env().Undefined();  // closing the engine freed every sequence already
  auto e = engine_;
  Status st = e->free_sequence(info[0].As<Napi::Number>().Int32Value());
  e->publish_cache_stats();
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
  const int32_t id = info[0].As<Napi::Number>().Int32Value();
  auto tokens = std::make_shared<std::vector<int32_t>>(int32_vector(info[1]));
  const bool all = info[2].ToBoolean().Value();
  auto logits = std::make_shared<std::vector<float>>();
  return TaskWorker::Queue(
      info.Env(),
      [e, id, tokens, all, logits] {
        Status st = e->evaluate(id, tokens->data(), static_cast<int64_t>(tokens->size()), all, logits.get());
        e->publish_cache_stats();
        return st;
      },
      [logits](Napi::Env env) { return copy_to_js<Napi::Float32Array>(env, *logits); });
}

Napi::Value JsEngine::EvaluateBatch(const Napi::CallbackInfo& info) {
  auto e = engine_or_throw(info.Env());
  Napi::Array items = info[0].As<Napi::Array>();
  std::vector<Engine::BatchRequest> batch;
  for (uint32_t i = 0; i < items.Length(); ++i) {
    Napi::Object it = items.Get(i).As<Napi::Object>();
    batch.push_back(Engine::BatchRequest{it.Get("id").As<Napi::Number>().Int32Value(),
                                         int32_vector(it.Get("tokens")),
                                         it.Get("allLogits").ToBoolean().Value()});
  }
  auto shared = std::make_shared<std::vector<Engine::BatchRequest>>(std::move(batch));
  auto logits = std::make_shared<std::vector<std::vector<float>>>();
  return TaskWorker::Queue(
      info.Env(),
      [e, shared, logits] {
        Status st = e->evaluate_batch(*shared, logits.get());
        e->publish_cache_stats();
        return st;
      },
      [logits](Napi::Env env) -> Napi::Value {
        auto arr = Napi::Array::New(env, logits->size());
        for (size_t i = 0; i < logits->size(); ++i) {
          arr.Set(static_cast<uint32_t>(i), copy_to_js<Napi::Float32Array>(env, (*logits)[i]));
        }
        return arr;
      });
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
  auto shared = std::make_shared<std::vector<Engine::StepRequest>>(std::move(requests));
  auto results = std::make_shared<std::vector<Engine::StepResult>>();
  return TaskWorker::Queue(
      info.Env(),
      [e, shared, results] {
        Status st = e->step(*shared, results.get());
        e->publish_cache_stats();
        return st;
      },
      [results](Napi::Env env) -> Napi::Value {
        // Parallel arrays: consumed[i], token[i] (-1: none sampled), and the snapshot taken, if any.
        const size_t n = results->size();
        auto consumed = Napi::Int32Array::New(env, n);
        auto token = Napi::Int32Array::New(env, n);
        auto snap_pos = Napi::Float64Array::New(env, n);
        auto snap_id = Napi::Int32Array::New(env, n);
        for (size_t i = 0; i < n; ++i) {
          const Engine::StepResult& r = (*results)[i];
          consumed[i] = static_cast<int32_t>(r.consumed);
          token[i] = r.token;
          snap_pos[i] = static_cast<double>(r.snapshot_position);
          snap_id[i] = r.snapshot_id;
        }
        Napi::Object out = Napi::Object::New(env);
        out.Set("consumed", consumed);
        out.Set("token", token);
        out.Set("snapshotPosition", snap_pos);
        out.Set("snapshotId", snap_id);
        return out;
      });
}

Napi::Value JsEngine::Snapshot(const Napi::CallbackInfo& info) {
  auto e = engine_or_throw(info.Env());
  int32_t id = -1;
  Status st = e->snapshot_sequence(info[0].As<Napi::Number>().Int32Value(), &id);
  e->publish_cache_stats();
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
  const int32_t id = info[0].As<Napi::Number>().Int32Value();
  auto bytes = std::make_shared<std::vector<uint8_t>>();
  return TaskWorker::Queue(
      info.Env(), [e, id, bytes] { return e->export_snapshot(id, bytes.get()); },
      [bytes](Napi::Env env) -> Napi::Value {
        if (bytes->empty()) return Napi::Uint8Array::New(env, 0);
        // Zero-copy: the ArrayBuffer owns the image (a 9B state is ~150 MB: no copy on the JS thread).
        auto* holder = new std::shared_ptr<std::vector<uint8_t>>(bytes);
        auto buf = Napi::ArrayBuffer::New(env, (*holder)->data(), (*holder)->size(),
                                          [](Napi::Env, void*, std::shared_ptr<std::vector<uint8_t>>* h) { delete h; },
                                          holder);
        return Napi::Uint8Array::New(env, (*holder)->size(), buf, 0);
      });
}

Napi::Value JsEngine::ImportSnapshot(const Napi::CallbackInfo& info) {
  auto e = engine_or_throw(info.Env());
  // The image is read in place on the worker (no copy of a ~150 MB state on the JS thread); a reference
  // keeps its buffer alive until the promise settles. The caller must not modify it meanwhile.
  auto js_bytes = info[0].As<Napi::Uint8Array>();
  auto keep = std::make_shared<Napi::ObjectReference>(Napi::Persistent(js_bytes.As<Napi::Object>()));
  const uint8_t* data = js_bytes.Data();
  const size_t size = js_bytes.ByteLength();
  auto tokens = std::make_shared<std::vector<int32_t>>(int32_vector(info[1]));
  auto id = std::make_shared<int32_t>(-1);
  return TaskWorker::Queue(
      info.Env(),
      [e, data, size, tokens, id] {
        return e->import_snapshot(data, size, tokens->data(), static_cast<int64_t>(tokens->size()), id.get());
      },
      [id, keep](Napi::Env env) {
        keep->Reset();
        return Napi::Number::New(env, *id);
      });
}

Napi::Value JsEngine::CacheStats(const Napi::CallbackInfo& info) {
  auto e = engine_or_throw(info.Env());
  const nemo::CacheStats st = e->cache_stats();
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("cacheEntries", static_cast<double>(st.cache_entries));
  o.Set("cacheBytes", static_cast<double>(st.cache_bytes));
  o.Set("cacheHits", static_cast<double>(st.cache_hits));
  o.Set("cacheTokensReused", static_cast<double>(st.cache_tokens_reused));
  o.Set("kvBlocksTotal", static_cast<double>(st.kv_blocks_total));
  o.Set("kvBlocksUsed", static_cast<double>(st.kv_blocks_used));
  o.Set("kvBlockBytes", static_cast<double>(st.kv_block_bytes));
  o.Set("snapshots", static_cast<double>(st.snapshots));
  o.Set("snapshotStateBytes", static_cast<double>(st.snapshot_state_bytes));
  o.Set("snapshotHostStateBytes", static_cast<double>(st.snapshot_host_state_bytes));
  o.Set("snapshotOnlyKvBlocks", static_cast<double>(st.snapshot_only_kv_blocks));
  return o;
}

Napi::Value JsEngine::Close(const Napi::CallbackInfo& info) {
  // Running workers keep their own reference; the memory goes with the last one. This reference is
  // dropped on a worker too: freeing gigabytes of state is not the JS thread's job.
  auto last = std::make_shared<std::shared_ptr<Engine>>(std::move(engine_));
  return TaskWorker::Queue(
      info.Env(),
      [last] {
        if (*last) (*last)->scheduler().cancel_all();
        last->reset();
        return Status::Ok();
      },
      [](Napi::Env env) { return env.Undefined(); });
}

// ---- the request API ------------------------------------------------------------------------------

namespace {

std::vector<int64_t> int64_list(const Napi::Value& v) {
  std::vector<int64_t> out;
  if (!v.IsArray()) return out;
  Napi::Array a = v.As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); ++i) out.push_back(a.Get(i).As<Napi::Number>().Int64Value());
  return out;
}

const char* end_name(RequestEnd r) {
  switch (r) {
    case RequestEnd::kStop: return "stop";
    case RequestEnd::kLength: return "length";
    case RequestEnd::kDone: return "done";
    case RequestEnd::kCancelled: return "cancelled";
    case RequestEnd::kError: return "error";
  }
  return "error";
}

}  // namespace

Napi::Value JsEngine::Submit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto e = engine_or_throw(env);
  Napi::Object o = info[0].As<Napi::Object>();
  RequestSpec spec;
  spec.prompt = int32_vector(o.Get("prompt"));
  if (o.Get("sampling").IsObject()) spec.sampling = sampling_from_js(o.Get("sampling").As<Napi::Object>());
  if (o.Get("eos").IsTypedArray()) spec.eos = int32_vector(o.Get("eos"));
  spec.max_tokens = int_field(o, "maxTokens", 0);
  spec.logits = static_cast<RequestLogits>(int_field(o, "logits", 0));
  spec.reuse_prefix = o.Get("reusePrefix").ToBoolean().Value();
  spec.snapshot_at = int64_list(o.Get("snapshotAt"));
  spec.pin_at = int64_list(o.Get("pinAt"));
  spec.snapshot_every = int_field(o, "snapshotEvery", 0);
  spec.top_logprobs = static_cast<int32_t>(std::max<int64_t>(-1, std::min<int64_t>(20, int_field(o, "topLogprobs", -1))));
  if (o.Get("grammar").IsObject()) {
    // { compiled: External (compileGrammar), triggers?: Uint8Array[] }
    Napi::Object g = o.Get("grammar").As<Napi::Object>();
    if (!grammar_vocab_ || !g.Get("compiled").IsExternal()) {
      Napi::TypeError::New(env, "grammar: compile it with compileGrammar() first").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    auto gs = std::make_shared<GrammarSpec>();
    gs->vocab = grammar_vocab_;
    gs->grammar = *g.Get("compiled").As<Napi::External<std::shared_ptr<const CompiledGrammar>>>().Data();
    if (g.Get("triggers").IsArray()) {
      Napi::Array t = g.Get("triggers").As<Napi::Array>();
      for (uint32_t i = 0; i < t.Length(); ++i) {
        auto b = t.Get(i).As<Napi::Uint8Array>();
        gs->triggers.emplace_back(reinterpret_cast<const char*>(b.Data()), b.ElementLength());
      }
    }
    spec.grammar = std::move(gs);
  }
  return Napi::Number::New(env, static_cast<double>(e->scheduler().submit(std::move(spec))));
}

Napi::Value JsEngine::SetGrammarVocab(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto e = engine_or_throw(env);
  Napi::Array arr = info[0].As<Napi::Array>();
  std::vector<std::string> tokens(arr.Length());
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    auto b = arr.Get(i).As<Napi::Uint8Array>();
    tokens[i].assign(reinterpret_cast<const char*>(b.Data()), b.ElementLength());
  }
  std::vector<int32_t> stop = int32_vector(info[1]);
  const int64_t vocab = e->config().vocab_size;
  auto out = std::make_shared<std::shared_ptr<GrammarVocab>>();
  // Keeps this object alive until the result is set (the worker is deleted on the JS thread).
  auto self = std::make_shared<Napi::ObjectReference>(Napi::Persistent(info.This().As<Napi::Object>()));
  return TaskWorker::Queue(
      env, [tokens = std::move(tokens), stop = std::move(stop), vocab, out] { return make_grammar_vocab(tokens, stop, vocab, out.get()); },
      [this, self, out](Napi::Env env) -> Napi::Value {
        grammar_vocab_ = *out;
        return env.Undefined();
      });
}

Napi::Value JsEngine::CompileGrammar(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  engine_or_throw(env);
  if (!grammar_vocab_) {
    Napi::TypeError::New(env, "compileGrammar: call setGrammarVocab() first").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  // parts: Array<{ kind: 'ebnf' | 'json_schema' | 'json_object' | 'regex' | 'literal', source, strict? }>
  Napi::Array arr = info[0].As<Napi::Array>();
  std::vector<GrammarPart> parts;
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    Napi::Object o = arr.Get(i).As<Napi::Object>();
    GrammarPart p;
    const std::string kind = o.Get("kind").ToString().Utf8Value();
    if (kind == "ebnf") p.kind = GrammarPart::Kind::kEbnf;
    else if (kind == "json_schema") p.kind = GrammarPart::Kind::kJsonSchema;
    else if (kind == "json_object") p.kind = GrammarPart::Kind::kJsonObject;
    else if (kind == "regex") p.kind = GrammarPart::Kind::kRegex;
    else p.kind = GrammarPart::Kind::kLiteral;
    if (o.Get("source").IsString()) p.source = o.Get("source").As<Napi::String>().Utf8Value();
    p.strict = !o.Get("strict").IsBoolean() || o.Get("strict").As<Napi::Boolean>().Value();
    parts.push_back(std::move(p));
  }
  auto vocab = grammar_vocab_;
  auto out = std::make_shared<std::shared_ptr<const CompiledGrammar>>();
  return TaskWorker::Queue(
      env, [vocab, parts = std::move(parts), out] { return compile_grammar(*vocab, parts, out.get()); },
      [out](Napi::Env env) -> Napi::Value {
        return Napi::External<std::shared_ptr<const CompiledGrammar>>::New(
            env, new std::shared_ptr<const CompiledGrammar>(*out),
            [](Napi::Env, std::shared_ptr<const CompiledGrammar>* p) { delete p; });
      });
}

Napi::Value JsEngine::Resume(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!engine_) return Napi::Boolean::New(env, false);
  const int64_t id = info[0].As<Napi::Number>().Int64Value();
  std::vector<int32_t> forced;
  if (info.Length() > 1 && info[1].IsTypedArray()) forced = int32_vector(info[1]);
  return Napi::Boolean::New(env, engine_->scheduler().resume(id, forced.data(), static_cast<int64_t>(forced.size())));
}

Napi::Value JsEngine::Cancel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!engine_) return Napi::Boolean::New(env, false);  // closing ended every request
  return Napi::Boolean::New(env, engine_->scheduler().cancel(info[0].As<Napi::Number>().Int64Value()));
}

Napi::Value JsEngine::Pin(const Napi::CallbackInfo& info) {
  if (engine_) engine_->scheduler().pin(info[0].As<Napi::Number>().Int32Value(), info[1].As<Napi::Number>().Int32Value());
  return info.Env().Undefined();
}

Napi::Value JsEngine::HasWork(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), engine_ && engine_->scheduler().has_work());
}

Napi::Value JsEngine::SchedulerStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("liveSequences", engine_ ? engine_->scheduler().live_sequences() : 0);
  o.Set("queued", static_cast<double>(engine_ ? engine_->scheduler().queued() : 0));
  o.Set("liveRequests", static_cast<double>(engine_ ? engine_->scheduler().live_requests() : 0));
  o.Set("sequenceBytes", static_cast<double>(engine_ ? engine_->scheduler().sequence_bytes() : 0));
  const Scheduler::GrammarStats g = engine_ ? engine_->scheduler().grammar_stats() : Scheduler::GrammarStats{};
  o.Set("grammarMasks", static_cast<double>(g.masks));
  o.Set("grammarMaskMs", static_cast<double>(g.mask_ns) / 1e6);
  o.Set("grammarExposedMs", static_cast<double>(g.exposed_ns) / 1e6);
  return o;
}

Napi::Value JsEngine::RunStep(const Napi::CallbackInfo& info) {
  auto e = engine_or_throw(info.Env());
  auto events = std::make_shared<StepEvents>();
  return TaskWorker::Queue(
      info.Env(), [e, events] { return e->scheduler().step(events.get()); },
      [events](Napi::Env env) -> Napi::Value {
        const StepEvents& ev = *events;
        // Flat typed arrays for the per-token traffic; objects only for the rare finished requests.
        auto admitted = Napi::Float64Array::New(env, 2 * ev.admitted.size());
        for (size_t i = 0; i < ev.admitted.size(); ++i) {
          admitted[2 * i] = static_cast<double>(ev.admitted[i].request);
          admitted[2 * i + 1] = static_cast<double>(ev.admitted[i].cached);
        }
        auto tokens = Napi::Float64Array::New(env, 2 * ev.tokens.size());
        for (size_t i = 0; i < ev.tokens.size(); ++i) {
          tokens[2 * i] = static_cast<double>(ev.tokens[i].request);
          tokens[2 * i + 1] = ev.tokens[i].token;
        }
        auto snaps = Napi::Float64Array::New(env, 4 * ev.snapshots.size());
        for (size_t i = 0; i < ev.snapshots.size(); ++i) {
          snaps[4 * i] = static_cast<double>(ev.snapshots[i].request);
          snaps[4 * i + 1] = static_cast<double>(ev.snapshots[i].position);
          snaps[4 * i + 2] = ev.snapshots[i].id;
          snaps[4 * i + 3] = ev.snapshots[i].pinned ? 1 : 0;
        }
        Napi::Array finished = Napi::Array::New(env, ev.finished.size());
        for (size_t i = 0; i < ev.finished.size(); ++i) {
          const StepEvents::Finished& f = ev.finished[i];
          Napi::Object o = Napi::Object::New(env);
          o.Set("request", static_cast<double>(f.request));
          o.Set("reason", end_name(f.reason));
          if (!f.error.ok()) o.Set("error", make_error(env, f.error).Value());
          if (f.logits && f.logits->empty()) {
            o.Set("logits", Napi::Float32Array::New(env, 0));
          } else if (f.logits) {
            // Zero-copy: the ArrayBuffer owns the vector.
            auto* holder = new std::shared_ptr<std::vector<float>>(f.logits);
            auto buf = Napi::ArrayBuffer::New(env, (*holder)->data(), (*holder)->size() * sizeof(float),
                                              [](Napi::Env, void*, std::shared_ptr<std::vector<float>>* h) { delete h; },
                                              holder);
            o.Set("logits", Napi::Float32Array::New(env, (*holder)->size(), buf, 0));
          }
          finished.Set(static_cast<uint32_t>(i), o);
        }
        Napi::Object out = Napi::Object::New(env);
        out.Set("admitted", admitted);
        out.Set("tokens", tokens);
        out.Set("snapshots", snaps);
        out.Set("finished", finished);
        out.Set("logprobs", copy_to_js<Napi::Float64Array>(env, ev.logprobs));
        out.Set("tokensProcessed", static_cast<double>(ev.tokens_processed));
        out.Set("ranForward", ev.ran_forward);
        return out;
      });
}

Napi::Value LoadEngine(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = info[0].As<Napi::String>().Utf8Value();
  Napi::Object o = info[1].As<Napi::Object>();
  EngineOptions options;
  options.n_threads = static_cast<int>(int_field(o, "threads", 0));
  options.context_length = int_field(o, "contextLength", 0);
  options.max_sequences = static_cast<int32_t>(int_field(o, "maxSequences", options.max_sequences));
  options.max_batch_tokens = int_field(o, "maxBatchTokens", options.max_batch_tokens);
  Napi::Value kv = o.Get("kvDtype");
  options.kv_dtype = kv.IsString() && kv.As<Napi::String>().Utf8Value() == "f32" ? DType::F32 : DType::F16;
  options.cache_bytes = int_field(o, "cacheBytes", options.cache_bytes);
  Napi::Value precision = o.Get("precision");
  options.matmul_precision = precision.IsString() && precision.As<Napi::String>().Utf8Value() == "fast"
                                 ? cpu::MatmulPrecision::kFast
                                 : cpu::MatmulPrecision::kExact;
  Napi::Value device = o.Get("device");
  if (device.IsString()) options.device = device.As<Napi::String>().Utf8Value();
  const bool check_tensors = o.Get("checkTensors").ToBoolean();  // issue #13: scan weights for NaN/Inf first
  Napi::Value weights = o.Get("weights");  // 'mmap' (default) | 'memory'; lib/model.ts resolves 'auto'
  options.weights = weights.IsString() && weights.As<Napi::String>().Utf8Value() == "memory"
                        ? WeightsPlacement::kMemory
                        : WeightsPlacement::kMmap;
  auto engine = std::make_shared<std::shared_ptr<Engine>>();
  return TaskWorker::Queue(
      env,
      [path, options, engine, check_tensors] {
        if (check_tensors) NEMO_RETURN_IF_ERROR(check_checkpoint_finite(path, options.n_threads));
        std::unique_ptr<Engine> e;
        NEMO_RETURN_IF_ERROR(Engine::load(path, options, &e));
        *engine = std::move(e);
        return Status::Ok();
      },
      [engine](Napi::Env env) { return JsEngine::NewInstance(env, *engine); });
}

}  // namespace nemo::addon
