#include "addon/convert.h"

namespace nemo::addon {
namespace {

double number_or(const Napi::Object& o, const char* key, double fallback) {
  Napi::Value v = o.Get(key);
  return v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : fallback;
}

}  // namespace

SamplingParams sampling_from_js(const Napi::Object& o) {
  SamplingParams sp;
  sp.temperature = static_cast<float>(number_or(o, "temperature", sp.temperature));
  sp.top_k = static_cast<int32_t>(number_or(o, "topK", sp.top_k));
  sp.top_p = static_cast<float>(number_or(o, "topP", sp.top_p));
  sp.min_p = static_cast<float>(number_or(o, "minP", sp.min_p));
  sp.repetition_penalty = static_cast<float>(number_or(o, "repetitionPenalty", sp.repetition_penalty));
  sp.presence_penalty = static_cast<float>(number_or(o, "presencePenalty", sp.presence_penalty));
  sp.frequency_penalty = static_cast<float>(number_or(o, "frequencyPenalty", sp.frequency_penalty));
  // Seeds are validated as integers in [0, 2^53): exact in a double.
  sp.seed = static_cast<uint64_t>(number_or(o, "seed", 0.0));
  Napi::Value bias = o.Get("logitBias");
  if (bias.IsArray()) {
    Napi::Array pairs = bias.As<Napi::Array>();
    for (uint32_t i = 0; i < pairs.Length(); ++i) {
      Napi::Array pair = pairs.Get(i).As<Napi::Array>();
      sp.logit_bias.emplace_back(pair.Get(0u).As<Napi::Number>().Int32Value(),
                                 pair.Get(1u).As<Napi::Number>().FloatValue());
    }
  }
  return sp;
}

std::vector<int32_t> int32_vector(const Napi::Value& v) {
  auto arr = v.As<Napi::Int32Array>();
  return std::vector<int32_t>(arr.Data(), arr.Data() + arr.ElementLength());
}

}  // namespace nemo::addon
