// Fuzz target bodies (fuzz_targets.h). Each parses its input from a heap copy of exactly `size` bytes (so
// AddressSanitizer sees a read one byte past the end) and, when the parse succeeds, touches the first and
// last byte of every tensor it found: a parser that accepted an out-of-range tensor is caught here.
#include "fuzz_targets.h"

#include <cstring>
#include <string>
#include <vector>

#include "core/status.h"
#include "model/config.h"
#include "model/gguf.h"
#include "model/safetensors.h"

namespace nemo::fuzz {

const char* const kTargets[3] = {"safetensors", "gguf", "config"};

namespace {

volatile uint8_t g_sink = 0;

void touch(const void* data, size_t nbytes) {
  if (data == nullptr || nbytes == 0) return;
  const uint8_t* p = static_cast<const uint8_t*>(data);
  g_sink = static_cast<uint8_t>(g_sink + p[0] + p[nbytes - 1]);
}

void run_safetensors(const uint8_t* data, size_t size) {
  std::vector<TensorInfo> tensors;
  if (!parse_safetensors(data, size, "fuzz.safetensors", &tensors).ok()) return;
  for (const TensorInfo& t : tensors) {
    touch(t.data, t.nbytes);
    (void)t.numel();
    (void)shape_to_string(t.shape);
  }
}

void run_gguf(const uint8_t* data, size_t size) {
  GgufFile file;
  if (!parse_gguf(data, size, "fuzz.gguf", &file).ok()) return;
  for (const GgufTensor& t : file.tensors) {
    if (t.supported) touch(t.data, t.nbytes);
    (void)t.numel();
    (void)ggml_shape_to_string(t.ne);
  }
  NemotronHConfig config;
  if (gguf_config(file, "fuzz.gguf", &config).ok()) {
    (void)config.in_proj_dim();
    (void)config.kv_dim();
  }
}

void run_config(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  NemotronHConfig config;
  if (!parse_config(text, &config).ok()) return;
  // The derived sizes the planner and loader multiply: UBSan reports an overflow here.
  (void)(config.in_proj_dim() * config.hidden_size);
  (void)(config.q_dim() * config.hidden_size + config.vocab_size * config.hidden_size);
}

}  // namespace

bool run_target(const char* target, const uint8_t* data, size_t size) {
  // A private copy of exactly `size` bytes: the caller's buffer may be larger.
  std::vector<uint8_t> copy(data, data + size);
  const uint8_t* p = copy.empty() ? nullptr : copy.data();
  if (std::strcmp(target, "safetensors") == 0) {
    run_safetensors(p, size);
  } else if (std::strcmp(target, "gguf") == 0) {
    run_gguf(p, size);
  } else if (std::strcmp(target, "config") == 0) {
    run_config(p, size);
  } else {
    return false;
  }
  return true;
}

}  // namespace nemo::fuzz
