// Status: how the engine reports failure. The engine never throws across its C++ API and never
// exits; the addon turns a Status into a JS error whose `code` is the string below.
#pragma once
#include <string>
#include <utility>

namespace nemo {

enum class StatusCode {
  kOk = 0,
  kNotFound,            // ERR_MODEL_NOT_FOUND: a file or folder the checkpoint needs is missing
  kInvalidConfig,       // ERR_INVALID_CONFIG: config.json is unreadable or inconsistent
  kUnsupportedModel,    // ERR_UNSUPPORTED_MODEL: another architecture, or a block kind we do not run ('E')
  kInvalidCheckpoint,   // ERR_INVALID_CHECKPOINT: a weight file is truncated, corrupt or malformed
  kTensorMismatch,      // ERR_TENSOR_MISMATCH: a tensor is missing, extra, or has the wrong shape/dtype
  kInvalidArgument,     // ERR_INVALID_ARGUMENT: a caller passed something the engine cannot use
  kContextOverflow,     // ERR_CONTEXT_OVERFLOW: a sequence would grow past the planned context
  kOutOfMemory,         // ERR_OUT_OF_MEMORY
  kNumerical,           // ERR_NUMERICAL: the model computed NaN or infinite logits
  kInternal,            // ERR_INTERNAL: a bug; the message says where
};

// The stable JS-visible code for each StatusCode.
inline const char* status_code_name(StatusCode c) {
  switch (c) {
    case StatusCode::kOk: return "OK";
    case StatusCode::kNotFound: return "ERR_MODEL_NOT_FOUND";
    case StatusCode::kInvalidConfig: return "ERR_INVALID_CONFIG";
    case StatusCode::kUnsupportedModel: return "ERR_UNSUPPORTED_MODEL";
    case StatusCode::kInvalidCheckpoint: return "ERR_INVALID_CHECKPOINT";
    case StatusCode::kTensorMismatch: return "ERR_TENSOR_MISMATCH";
    case StatusCode::kInvalidArgument: return "ERR_INVALID_ARGUMENT";
    case StatusCode::kContextOverflow: return "ERR_CONTEXT_OVERFLOW";
    case StatusCode::kOutOfMemory: return "ERR_OUT_OF_MEMORY";
    case StatusCode::kNumerical: return "ERR_NUMERICAL";
    case StatusCode::kInternal: return "ERR_INTERNAL";
  }
  return "ERR_INTERNAL";
}

class Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}
  static Status Ok() { return Status(); }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

#define NEMO_RETURN_IF_ERROR(expr)          \
  do {                                      \
    ::nemo::Status _st = (expr);            \
    if (!_st.ok()) return _st;              \
  } while (0)

}  // namespace nemo
