#include "model/safetensors.h"

#include <algorithm>
#include <limits>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "core/json.h"
#include "model/mapped_file.h"

namespace nemo {

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string shape_to_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

static bool parse_dtype(const std::string& s, DType* out) {
  if (s == "F32") { *out = DType::F32; return true; }
  if (s == "F16") { *out = DType::F16; return true; }
  if (s == "BF16") { *out = DType::BF16; return true; }
  if (s == "F8_E4M3") { *out = DType::F8_E4M3; return true; }  // ModelOpt FP8, read in place
  return false;
}

Status parse_safetensors(const uint8_t* bytes, size_t size, const std::string& label,
                         std::vector<TensorInfo>* out) {
  auto bad = [&](const std::string& what) {
    return Status(StatusCode::kInvalidCheckpoint, label + ": " + what);
  };
  if (out == nullptr) return Status(StatusCode::kInternal, "parse_safetensors: out is null");
  if (size < 8)
    return bad("file is " + std::to_string(size) +
               " bytes long; a safetensors file starts with an 8-byte header length");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | bytes[i];  // little-endian
  if (header_len > size - 8)
    return bad("header length " + std::to_string(header_len) + " runs past the end of the file (only " +
               std::to_string(size - 8) +
               " bytes follow the 8-byte length); the file is truncated or not safetensors");
  if (header_len > kSafetensorsMaxHeaderBytes)
    return bad("header length " + std::to_string(header_len) + " is larger than the " +
               std::to_string(kSafetensorsMaxHeaderBytes) + "-byte limit; the file is corrupt");
  const std::string_view header_text(reinterpret_cast<const char*>(bytes + 8), header_len);
  const uint8_t* data_start = bytes + 8 + header_len;
  const uint64_t data_size = size - 8 - header_len;

  JsonValue header;
  Status st = parse_json(header_text, &header, StatusCode::kInvalidCheckpoint);
  if (!st.ok()) return bad("header is not valid JSON: " + st.message());
  if (!header.is_object())
    return bad(std::string("header is a JSON ") + header.type_name() + ", expected an object of tensors");

  std::vector<TensorInfo> tensors;
  tensors.reserve(header.size());
  std::vector<std::pair<uint64_t, uint64_t>> ranges;  // [begin, end) per tensor, same order
  std::unordered_map<std::string_view, size_t> seen;
  for (const JsonMember& m : header.members()) {
    if (m.key == "__metadata__") continue;
    const std::string t = "tensor '" + m.key + "'";
    if (!seen.emplace(m.key, tensors.size()).second)
      return bad(t + " appears more than once in the header");
    const JsonValue& e = m.value;
    if (!e.is_object())
      return bad(t + ": entry is a JSON " + e.type_name() +
                 ", expected an object with dtype, shape and data_offsets");

    TensorInfo info;
    info.name = m.key;
    const JsonValue* dtype = e.find("dtype");
    if (dtype == nullptr || !dtype->is_string())
      return bad(t + ": 'dtype' must be a string such as \"BF16\"" +
                 (dtype ? std::string(", found a ") + dtype->type_name() : std::string(", it is missing")));
    if (!parse_dtype(dtype->string_value(), &info.dtype))
      return bad(t + " has dtype " + dtype->string_value() +
                 "; only F32, F16, BF16 and F8_E4M3 are supported");

    const JsonValue* shape = e.find("shape");
    if (shape == nullptr || !shape->is_array())
      return bad(t + ": 'shape' must be an array of non-negative integers" +
                 (shape ? std::string(", found a ") + shape->type_name() : std::string(", it is missing")));
    // numel * element size must fit in the file, so track it in u64 and stop at the first overflow.
    uint64_t numel = 1;
    bool overflow = false;
    for (const JsonValue& d : shape->items()) {
      if (!d.is_integer() || d.int_value() < 0)
        return bad(t + ": 'shape' must be an array of non-negative integers");
      const uint64_t dim = static_cast<uint64_t>(d.int_value());
      if (dim != 0 && numel > std::numeric_limits<uint64_t>::max() / dim) overflow = true;
      numel *= dim;
      info.shape.push_back(d.int_value());
    }
    if (numel == 0) overflow = false;

    const JsonValue* offs = e.find("data_offsets");
    const bool offsets_ok = offs != nullptr && offs->is_array() && offs->size() == 2 &&
                            offs->items()[0].is_integer() && offs->items()[1].is_integer() &&
                            offs->items()[0].int_value() >= 0 && offs->items()[1].int_value() >= 0;
    if (!offsets_ok)
      return bad(t + ": 'data_offsets' must be [begin, end] with non-negative integers");
    const uint64_t begin = static_cast<uint64_t>(offs->items()[0].int_value());
    const uint64_t end = static_cast<uint64_t>(offs->items()[1].int_value());
    if (end < begin)
      return bad(t + ": data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                 "] end before they begin");
    if (end > data_size)
      return bad(t + ": data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                 "] run past the end of the data section (" + std::to_string(data_size) + " bytes)");
    const uint64_t elt = dtype_size(info.dtype);
    if (overflow || numel > std::numeric_limits<uint64_t>::max() / elt || numel * elt != end - begin)
      return bad(t + " holds " + std::to_string(end - begin) + " bytes but shape " +
                 shape_to_string(info.shape) + " of " + dtype_name(info.dtype) + " needs " +
                 (overflow ? std::string("more than 2^64") : std::to_string(numel * elt)));
    info.data = data_start + begin;
    info.nbytes = static_cast<size_t>(end - begin);
    tensors.push_back(std::move(info));
    ranges.emplace_back(begin, end);
  }

  // Overlaps: sort the non-empty ranges by begin; each must start at or after the previous end.
  std::vector<size_t> order;
  for (size_t i = 0; i < ranges.size(); ++i)
    if (ranges[i].second > ranges[i].first) order.push_back(i);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return ranges[a] < ranges[b]; });
  for (size_t k = 1; k < order.size(); ++k) {
    const size_t a = order[k - 1], b = order[k];
    if (ranges[b].first < ranges[a].second)
      return bad("tensors '" + tensors[a].name + "' [" + std::to_string(ranges[a].first) + ", " +
                 std::to_string(ranges[a].second) + ") and '" + tensors[b].name + "' [" +
                 std::to_string(ranges[b].first) + ", " + std::to_string(ranges[b].second) +
                 ") overlap in the data section");
  }

  *out = std::move(tensors);
  return Status::Ok();
}

Status parse_safetensors(const MappedFile& file, std::vector<TensorInfo>* out) {
  return parse_safetensors(file.data(), file.size(), file.path(), out);
}

}  // namespace nemo
