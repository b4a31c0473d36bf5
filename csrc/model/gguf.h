// GGUF reader and loader for llama.cpp's `nemotron_h` models (architecture.md §7).
//
// File layout (GGUF v2 and v3, little-endian; v1 used 32-bit counts and is not read):
//   "GGUF" | u32 version | u64 tensor_count | u64 kv_count
//   kv_count x  { string key | u32 value_type | value }
//   tensor_count x { string name | u32 n_dims | n_dims x u64 ne | u32 ggml_type | u64 offset }
//   padding to `general.alignment` (default 32) | data section (tensor offsets are relative to it,
//   each a multiple of the alignment)
// where a string is u64 length + bytes (no terminator), and a value is a scalar of its type, a string,
// or an array: u32 element type | u64 count | the elements.
//
// ggml shapes list the innermost dimension first: a tensor {ne0, ne1} holds ne1 rows of ne0 values, so
// a {in, out} weight is PyTorch's [out, in] row-major matrix as it is.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/dtype.h"
#include "core/status.h"
#include "model/config.h"

namespace nemo {

class MappedFile;
struct ModelWeights;

// GGUF metadata value types, with their on-disk ids.
enum class GgufValueType : uint32_t {
  kUint8 = 0, kInt8 = 1, kUint16 = 2, kInt16 = 3, kUint32 = 4, kInt32 = 5, kFloat32 = 6, kBool = 7,
  kString = 8, kArray = 9, kUint64 = 10, kInt64 = 11, kFloat64 = 12,
};

const char* gguf_value_type_name(GgufValueType t);

// One metadata value. Scalars keep both an integer and a floating view; arrays of numbers or bools
// keep their elements as numbers, arrays of strings only their count (the tokenizer's strings are read
// by lib/gguf/reader.ts, the engine needs none of them); nested arrays only their count.
struct GgufValue {
  GgufValueType type = GgufValueType::kUint8;
  bool is_integer = false;         // an integer type, or bool
  int64_t i = 0;                   // integer types and bool; u64 values above INT64_MAX saturate
  bool u64_overflow = false;       // a u64 above INT64_MAX
  double f = 0.0;                  // every numeric type (and bool as 0/1)
  std::string s;                   // kString
  GgufValueType elem_type = GgufValueType::kUint8;  // kArray
  uint64_t count = 0;              // kArray: number of elements
  std::vector<int64_t> ints;       // kArray of integer or bool elements
  std::vector<double> floats;      // kArray of numeric elements (integers too)

  bool is_number() const;  // an integer, float or bool scalar
};

// A tensor as described by its info record. `data`/`nbytes` are set for the types the engine reads
// (`supported`); for other ggml types only the name, type id and shape are known.
struct GgufTensor {
  std::string name;
  uint32_t ggml_type = 0;
  bool supported = false;      // F32, F16, BF16, Q8_0, Q4_0, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K
  DType dtype = DType::F32;    // valid when supported
  std::vector<int64_t> ne;     // ggml order: ne[0] is the innermost (contiguous) dimension
  uint64_t offset = 0;         // relative to the data section
  const void* data = nullptr;  // inside the file's bytes (aligned to the file's alignment)
  size_t nbytes = 0;

  int64_t numel() const;
};

struct GgufFile {
  uint32_t version = 0;
  uint64_t alignment = 32;
  size_t data_offset = 0;  // where the data section starts in the file
  std::vector<std::string> keys;  // metadata keys in file order
  std::unordered_map<std::string, GgufValue> kv;
  std::vector<GgufTensor> tensors;  // in file order

  const GgufValue* find(const std::string& key) const;
};

// "Q4_1" for ggml type id 3, and so on; "unknown" for ids ggml does not define.
const char* ggml_type_name(uint32_t id);

// "{64, 456}": ggml shapes in messages.
std::string ggml_shape_to_string(const std::vector<int64_t>& ne);

// Parses a GGUF file held in `bytes[0, size)`; `label` (usually its path) starts every error message.
// Everything is checked against the size, with kInvalidCheckpoint: magic, version (2 or 3; a
// byte-swapped version is reported as a big-endian file), counts that cannot fit, strings and arrays
// running past the end, unknown value types, duplicate keys, `general.alignment` (a u32 power of two),
// tensor names (non-empty, unique), 1 to 4 dimensions, element counts, a type id ggml does not define,
// an inner dimension that is not a multiple of the type's block, unaligned offsets, tensors running
// past the end or overlapping. Tensors of defined but unsupported types are listed unsized (the loader
// rejects them by name). On error *out is unchanged.
Status parse_gguf(const uint8_t* bytes, size_t size, const std::string& label, GgufFile* out);

// Builds the model config from the metadata of a `nemotron_h` file (architecture.md §7): layer kinds
// from the per-layer arrays (recurrent: head_count_kv == 0 and feed_forward_length == 0; attention:
// head_count_kv > 0; MLP otherwise), head_dim = key_length, mamba_num_heads = ssm.time_step_rank,
// mamba_head_dim = ssm.inner_size / time_step_rank, vocab from tokenizer.ggml.tokens (else
// <arch>.vocab_size, else token_embd's rows), chunk_size 128. Another general.architecture gives
// kUnsupportedModel naming it; missing or inconsistent metadata gives kInvalidConfig naming the key.
// tie_word_embeddings and use_conv_bias are left for the loader (they depend on the tensors present).
Status gguf_config(const GgufFile& file, const std::string& label, NemotronHConfig* out);

// Loads a `.gguf` file: maps it, parses it, builds the config and binds every tensor (matrices as views
// into the mapping in their stored type; small vectors converted to f32, ssm_a already holding
// A = -exp(A_log)). Tensor problems are reported as the safetensors path does: kTensorMismatch naming
// the tensor with its ggml shape and the expected one; a tensor of an unsupported ggml type gives
// kInvalidCheckpoint naming the tensor and the type.
Status load_gguf(const std::string& path, NemotronHConfig* config, ModelWeights* weights);

}  // namespace nemo
