// Per-environment state of the addon (one per Node realm / worker thread).
#pragma once
#include <napi.h>

namespace nemo::addon {

struct AddonData {
  Napi::FunctionReference engine_ctor;
};

}  // namespace nemo::addon
