// Status -> JS Error with a stable `code` (lib/errors.ts turns it into the typed subclass).
#pragma once
#include <napi.h>

#include "core/status.h"

namespace nemo::addon {

inline Napi::Error make_error(Napi::Env env, const Status& st) {
  Napi::Error err = Napi::Error::New(env, st.message());
  err.Set("code", Napi::String::New(env, status_code_name(st.code())));
  return err;
}

inline Napi::Error make_error(Napi::Env env, StatusCode code, const std::string& message) {
  return make_error(env, Status(code, message));
}

}  // namespace nemo::addon
