// JsEngine: the Engine as a JS object. Compute runs in AsyncWorkers on the libuv pool and resolves a
// Promise; bookkeeping calls are synchronous and never wait for compute.
#pragma once
#include <napi.h>

#include <memory>

#include "engine/engine.h"
#include "engine/grammar.h"

namespace nemo::addon {

class JsEngine : public Napi::ObjectWrap<JsEngine> {
 public:
  static Napi::Function Init(Napi::Env env);
  static Napi::Object NewInstance(Napi::Env env, std::shared_ptr<Engine> engine);
  explicit JsEngine(const Napi::CallbackInfo& info);

 private:
  Napi::Value Info(const Napi::CallbackInfo& info);
  Napi::Value CreateSequence(const Napi::CallbackInfo& info);
  Napi::Value FreeSequence(const Napi::CallbackInfo& info);
  Napi::Value SequenceLength(const Napi::CallbackInfo& info);
  Napi::Value LiveSequences(const Napi::CallbackInfo& info);
  Napi::Value SequenceBytes(const Napi::CallbackInfo& info);
  Napi::Value Evaluate(const Napi::CallbackInfo& info);
  Napi::Value EvaluateBatch(const Napi::CallbackInfo& info);
  Napi::Value Step(const Napi::CallbackInfo& info);
  Napi::Value Snapshot(const Napi::CallbackInfo& info);
  Napi::Value Restore(const Napi::CallbackInfo& info);
  Napi::Value DropSnapshot(const Napi::CallbackInfo& info);
  Napi::Value ExportSnapshot(const Napi::CallbackInfo& info);
  Napi::Value ImportSnapshot(const Napi::CallbackInfo& info);
  Napi::Value CacheStats(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  // The request API (engine/scheduler.h): the library's path. Synchronous calls are O(1) and never wait
  // for a step; runStep() runs one step on a worker and resolves with its events.
  Napi::Value Submit(const Napi::CallbackInfo& info);
  Napi::Value Resume(const Napi::CallbackInfo& info);
  Napi::Value Cancel(const Napi::CallbackInfo& info);
  Napi::Value Pin(const Napi::CallbackInfo& info);
  Napi::Value HasWork(const Napi::CallbackInfo& info);
  Napi::Value RunStep(const Napi::CallbackInfo& info);
  Napi::Value SchedulerStats(const Napi::CallbackInfo& info);
  // Grammar-constrained decoding (engine/grammar.h): the vocabulary once, then compiled grammars.
  Napi::Value SetGrammarVocab(const Napi::CallbackInfo& info);
  Napi::Value CompileGrammar(const Napi::CallbackInfo& info);

  // The engine, or a thrown ERR_MODEL_CLOSED when closed.
  std::shared_ptr<Engine> engine_or_throw(Napi::Env env);

  std::shared_ptr<Engine> engine_;  // workers hold their own reference while they run
  std::shared_ptr<GrammarVocab> grammar_vocab_;  // set once by setGrammarVocab
};

// loadEngine(path, options) -> Promise<JsEngine>
Napi::Value LoadEngine(const Napi::CallbackInfo& info);

}  // namespace nemo::addon
