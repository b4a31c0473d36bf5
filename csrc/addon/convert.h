// JS option objects -> engine structs, on the JS thread (workers never touch JS values). The facade
// has validated every field already; missing fields take the engine defaults.
#pragma once
#include <napi.h>

#include <vector>

#include "engine/sampler.h"

namespace nemo::addon {

// { temperature, topK, topP, minP, repetitionPenalty, presencePenalty, frequencyPenalty,
//   logitBias: Array<[id, bias]>, seed }
SamplingParams sampling_from_js(const Napi::Object& o);

std::vector<int32_t> int32_vector(const Napi::Value& typed_array);

}  // namespace nemo::addon
