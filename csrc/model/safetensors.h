// Safetensors reader: the 8-byte little-endian header length, the JSON header, and the tensors it
// describes, as views into the file's bytes (no copies). Format:
//   [u64 N][N bytes of JSON {"name": {"dtype": "BF16", "shape": [..], "data_offsets": [begin, end]}, ...,
//    "__metadata__": {...}}][data section; offsets are relative to its start]
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/status.h"

namespace nemo {

class MappedFile;

struct TensorInfo {
  std::string name;            // exactly as stored in the header
  DType dtype = DType::F32;
  std::vector<int64_t> shape;  // PyTorch order, outermost first; [] is a scalar
  const void* data = nullptr;  // first byte, inside the file's bytes; no alignment is promised
  size_t nbytes = 0;           // = numel() * dtype_size(dtype)

  int64_t numel() const;
};

// "[456, 64]": shapes in error messages.
std::string shape_to_string(const std::vector<int64_t>& shape);

// Largest header accepted (the reference implementation's limit too); a bigger one means corruption.
constexpr uint64_t kSafetensorsMaxHeaderBytes = 100000000;

// Parses the safetensors file held in `bytes[0, size)`; `label` (usually its path) starts every error
// message. Tensors are returned in header order, `__metadata__` is skipped. Everything is validated,
// with kInvalidCheckpoint: file shorter than 8 bytes, header length past the end, header larger than
// kSafetensorsMaxHeaderBytes, header not JSON or not an object, a tensor entry without a string dtype,
// an integer shape or integer [begin, end] data_offsets, end < begin, end past the data section,
// nbytes != product(shape) * dtype size, overlapping tensors, duplicate names, and dtypes other than
// F32/F16/BF16. On error *out is unchanged.
Status parse_safetensors(const uint8_t* bytes, size_t size, const std::string& label,
                         std::vector<TensorInfo>* out);

// The same for a mapped file, labelled with its path. The TensorInfo pointers are valid while the
// mapping lives.
Status parse_safetensors(const MappedFile& file, std::vector<TensorInfo>* out);

}  // namespace nemo
