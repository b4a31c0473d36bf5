// GGUF: parse (every field checked against the file size), config from metadata, tensor binding.
// See gguf.h for the format and architecture.md §7 for the `nemotron_h` keys, names and transforms.
#include "model/gguf.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <unordered_set>
#include <utility>

#include "model/mapped_file.h"
#include "model/weights.h"

namespace nemo {

// ---------------------------------------------------------------------------------------------------------
// Names

const char* gguf_value_type_name(GgufValueType t) {
  switch (t) {
    case GgufValueType::kUint8: return "uint8";
    case GgufValueType::kInt8: return "int8";
    case GgufValueType::kUint16: return "uint16";
    case GgufValueType::kInt16: return "int16";
    case GgufValueType::kUint32: return "uint32";
    case GgufValueType::kInt32: return "int32";
    case GgufValueType::kFloat32: return "float32";
    case GgufValueType::kBool: return "bool";
    case GgufValueType::kString: return "string";
    case GgufValueType::kArray: return "array";
    case GgufValueType::kUint64: return "uint64";
    case GgufValueType::kInt64: return "int64";
    case GgufValueType::kFloat64: return "float64";
  }
  return "?";
}

const char* ggml_type_name(uint32_t id) {
  // ggml's type ids, including the ones it has since retired (still defined, never supported here).
  static const char* const kNames[] = {
      "F32",     "F16",     "Q4_0",    "Q4_1",   "Q4_2",   "Q4_3",   "Q5_0",     "Q5_1",
      "Q8_0",    "Q8_1",    "Q2_K",    "Q3_K",   "Q4_K",   "Q5_K",   "Q6_K",     "Q8_K",
      "IQ2_XXS", "IQ2_XS",  "IQ3_XXS", "IQ1_S",  "IQ4_NL", "IQ3_S",  "IQ2_S",    "IQ4_XS",
      "I8",      "I16",     "I32",     "I64",    "F64",    "IQ1_M",  "BF16",     "Q4_0_4_4",
      "Q4_0_4_8", "Q4_0_8_8", "TQ1_0", "TQ2_0",  "IQ4_NL_4_4", "IQ4_NL_4_8", "IQ4_NL_8_8", "MXFP4",
  };
  return id < sizeof(kNames) / sizeof(kNames[0]) ? kNames[id] : "unknown";
}

namespace {

// The ggml types the engine reads, and their DType.
bool supported_ggml_type(uint32_t id, DType* out) {
  switch (id) {
    case 0: *out = DType::F32; return true;
    case 1: *out = DType::F16; return true;
    case 30: *out = DType::BF16; return true;
    case 8: *out = DType::Q8_0; return true;
    case 2: *out = DType::Q4_0; return true;
    case 6: *out = DType::Q5_0; return true;
    case 7: *out = DType::Q5_1; return true;
    case 12: *out = DType::Q4_K; return true;
    case 13: *out = DType::Q5_K; return true;
    case 14: *out = DType::Q6_K; return true;
    default: return false;
  }
}

constexpr const char* kSupportedTypes = "F32, F16, BF16, Q8_0, Q4_0, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K";

// Sizes above this are not a real model and would overflow the derived products (as config.cc).
constexpr int64_t kMaxSize = int64_t{1} << 26;

std::string num(int64_t v) { return std::to_string(v); }

std::string quote(const std::string& s) {
  std::string out = "\"";
  for (char c : s.size() > 80 ? s.substr(0, 77) + "..." : s) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", u);
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

size_t scalar_size(GgufValueType t) {
  switch (t) {
    case GgufValueType::kUint8: case GgufValueType::kInt8: case GgufValueType::kBool: return 1;
    case GgufValueType::kUint16: case GgufValueType::kInt16: return 2;
    case GgufValueType::kUint32: case GgufValueType::kInt32: case GgufValueType::kFloat32: return 4;
    case GgufValueType::kUint64: case GgufValueType::kInt64: case GgufValueType::kFloat64: return 8;
    default: return 0;  // string, array
  }
}

bool valid_value_type(uint32_t t) { return t <= 12; }

// Bounds-checked little-endian cursor over the file's bytes. Every read checks the remaining length.
class Cursor {
 public:
  Cursor(const uint8_t* p, size_t size) : p_(p), size_(size) {}
  size_t pos() const { return pos_; }
  size_t remaining() const { return size_ - pos_; }

  bool u32(uint32_t* v) { return le(v); }
  bool u64(uint64_t* v) { return le(v); }
  bool bytes(size_t n, const uint8_t** out) {
    if (n > remaining()) return false;
    *out = p_ + pos_;
    pos_ += n;
    return true;
  }

 private:
  template <typename T>
  bool le(T* v) {
    if (sizeof(T) > remaining()) return false;
    T x = 0;
    for (size_t i = 0; i < sizeof(T); ++i) x |= static_cast<T>(p_[pos_ + i]) << (8 * i);
    pos_ += sizeof(T);
    *v = x;
    return true;
  }
  const uint8_t* p_;
  size_t size_;
  size_t pos_ = 0;
};

// Decodes one little-endian scalar of type t at p into v (numeric views).
void decode_scalar(GgufValueType t, const uint8_t* p, GgufValue* v) {
  uint64_t raw = 0;
  const size_t n = scalar_size(t);
  for (size_t i = 0; i < n; ++i) raw |= static_cast<uint64_t>(p[i]) << (8 * i);
  v->is_integer = true;
  switch (t) {
    case GgufValueType::kUint8: case GgufValueType::kUint16: case GgufValueType::kUint32:
    case GgufValueType::kBool:
      v->i = static_cast<int64_t>(raw);
      break;
    case GgufValueType::kInt8: v->i = static_cast<int8_t>(raw); break;
    case GgufValueType::kInt16: v->i = static_cast<int16_t>(raw); break;
    case GgufValueType::kInt32: v->i = static_cast<int32_t>(raw); break;
    case GgufValueType::kInt64: v->i = static_cast<int64_t>(raw); break;
    case GgufValueType::kUint64:
      if (raw > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        v->u64_overflow = true;
        v->i = std::numeric_limits<int64_t>::max();
      } else {
        v->i = static_cast<int64_t>(raw);
      }
      v->f = static_cast<double>(raw);
      return;
    case GgufValueType::kFloat32: {
      uint32_t b = static_cast<uint32_t>(raw);
      float f;
      std::memcpy(&f, &b, 4);
      v->is_integer = false;
      v->f = f;
      return;
    }
    case GgufValueType::kFloat64: {
      double d;
      std::memcpy(&d, &raw, 8);
      v->is_integer = false;
      v->f = d;
      return;
    }
    default: break;
  }
  v->f = static_cast<double>(v->i);
}

}  // namespace

bool GgufValue::is_number() const { return type != GgufValueType::kString && type != GgufValueType::kArray; }

int64_t GgufTensor::numel() const {
  int64_t n = 1;
  for (int64_t d : ne) n *= d;
  return n;
}

const GgufValue* GgufFile::find(const std::string& key) const {
  auto it = kv.find(key);
  return it == kv.end() ? nullptr : &it->second;
}

std::string ggml_shape_to_string(const std::vector<int64_t>& ne) {
  std::string s = "{";
  for (size_t i = 0; i < ne.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(ne[i]);
  }
  return s + "}";
}

// ---------------------------------------------------------------------------------------------------------
// Parsing

Status parse_gguf(const uint8_t* bytes, size_t size, const std::string& label, GgufFile* out) {
  auto bad = [&](const std::string& what) { return Status(StatusCode::kInvalidCheckpoint, label + ": " + what); };
  if (out == nullptr) return Status(StatusCode::kInternal, "parse_gguf: out is null");
  if (size < 4 || std::memcmp(bytes, "GGUF", 4) != 0) {
    if (size < 4) return bad("file is " + num(static_cast<int64_t>(size)) + " bytes long; not a GGUF file");
    return bad("not a GGUF file: it does not start with the magic \"GGUF\"");
  }
  Cursor c(bytes, size);
  const uint8_t* skip;
  c.bytes(4, &skip);
  const std::string truncated_header = "the file is truncated: it ends inside the GGUF header";

  GgufFile f;
  if (!c.u32(&f.version)) return bad(truncated_header);
  if (f.version == 0x02000000u || f.version == 0x03000000u)
    return bad("big-endian GGUF (version bytes " + num(f.version >> 24) +
               " stored byte-swapped) is not supported; convert the file to little-endian");
  if (f.version == 1)
    return bad("GGUF version 1 is not supported (it predates 64-bit counts); re-convert the model");
  if (f.version != 2 && f.version != 3)
    return bad("unknown GGUF version " + num(f.version) + " (versions 2 and 3 are read)");
  uint64_t n_tensors = 0, n_kv = 0;
  if (!c.u64(&n_tensors) || !c.u64(&n_kv)) return bad(truncated_header);
  // A metadata entry takes at least 13 bytes (empty key, type, a 1-byte value), a tensor info 28.
  if (n_kv > c.remaining() / 13)
    return bad("metadata count " + std::to_string(n_kv) + " cannot fit in the file's " +
               num(static_cast<int64_t>(size)) + " bytes; the file is corrupt or truncated");
  if (n_tensors > c.remaining() / 28)
    return bad("tensor count " + std::to_string(n_tensors) + " cannot fit in the file's " +
               num(static_cast<int64_t>(size)) + " bytes; the file is corrupt or truncated");

  auto read_string = [&](std::string* s, const std::string& what) -> Status {
    uint64_t len = 0;
    const uint8_t* p = nullptr;
    if (!c.u64(&len)) return bad("the file is truncated: it ends inside " + what);
    if (len > c.remaining())
      return bad(what + " has length " + std::to_string(len) + ", past the end of the file (" +
                 num(static_cast<int64_t>(c.remaining())) + " bytes remain); the file is truncated or corrupt");
    c.bytes(static_cast<size_t>(len), &p);
    s->assign(reinterpret_cast<const char*>(p), static_cast<size_t>(len));
    return Status::Ok();
  };

  // --- metadata ---
  f.keys.reserve(static_cast<size_t>(n_kv));
  for (uint64_t k = 0; k < n_kv; ++k) {
    std::string key;
    NEMO_RETURN_IF_ERROR(read_string(&key, "the key of metadata entry " + std::to_string(k)));
    if (key.empty()) return bad("metadata entry " + std::to_string(k) + " has an empty key");
    const std::string what = "metadata '" + key + "'";
    uint32_t type_id = 0;
    if (!c.u32(&type_id)) return bad("the file is truncated: it ends inside " + what);
    if (!valid_value_type(type_id))
      return bad(what + " has value type " + num(type_id) + ", which GGUF does not define (0 to 12)");
    GgufValue v;
    v.type = static_cast<GgufValueType>(type_id);
    if (v.type == GgufValueType::kString) {
      NEMO_RETURN_IF_ERROR(read_string(&v.s, "the value of " + what));
    } else if (v.type == GgufValueType::kArray) {
      uint32_t et = 0;
      if (!c.u32(&et) || !c.u64(&v.count)) return bad("the file is truncated: it ends inside " + what);
      if (!valid_value_type(et))
        return bad(what + " is an array of value type " + num(et) + ", which GGUF does not define (0 to 12)");
      v.elem_type = static_cast<GgufValueType>(et);
      if (v.elem_type == GgufValueType::kArray)
        return bad(what + " is an array of arrays, which is not supported");
      if (v.elem_type == GgufValueType::kString) {
        if (v.count > c.remaining() / 8)
          return bad(what + " claims " + std::to_string(v.count) +
                     " strings, more than the rest of the file can hold; the file is truncated or corrupt");
        for (uint64_t j = 0; j < v.count; ++j) {
          uint64_t len = 0;
          const uint8_t* p = nullptr;
          if (!c.u64(&len) || len > c.remaining() || !c.bytes(static_cast<size_t>(len), &p))
            return bad(what + ": string " + std::to_string(j) + " of " + std::to_string(v.count) +
                       " runs past the end of the file; the file is truncated or corrupt");
        }
      } else {
        const size_t es = scalar_size(v.elem_type);
        if (v.count > c.remaining() / es)
          return bad(what + " claims " + std::to_string(v.count) + " " + gguf_value_type_name(v.elem_type) +
                     " elements, past the end of the file; the file is truncated or corrupt");
        const uint8_t* p = nullptr;
        c.bytes(static_cast<size_t>(v.count * es), &p);
        v.ints.resize(static_cast<size_t>(v.count));
        v.floats.resize(static_cast<size_t>(v.count));
        for (uint64_t j = 0; j < v.count; ++j) {
          GgufValue e;
          decode_scalar(v.elem_type, p + j * es, &e);
          if (e.type == GgufValueType::kBool && e.i > 1)
            return bad(what + ": bool element " + std::to_string(j) + " is " + num(e.i) + " (must be 0 or 1)");
          v.ints[static_cast<size_t>(j)] = e.i;
          v.floats[static_cast<size_t>(j)] = e.f;
        }
      }
    } else {
      const uint8_t* p = nullptr;
      if (!c.bytes(scalar_size(v.type), &p)) return bad("the file is truncated: it ends inside " + what);
      decode_scalar(v.type, p, &v);
      if (v.type == GgufValueType::kBool && v.i > 1)
        return bad(what + " is a bool with byte value " + num(v.i) + " (must be 0 or 1)");
    }
    if (f.kv.count(key)) return bad("metadata key '" + key + "' appears more than once");
    f.keys.push_back(key);
    f.kv.emplace(key, std::move(v));
  }

  // --- alignment ---
  if (const GgufValue* a = f.find("general.alignment")) {
    if (a->type != GgufValueType::kUint32)
      return bad("metadata 'general.alignment' must be a uint32, found a " + std::string(gguf_value_type_name(a->type)));
    if (a->i == 0 || (a->i & (a->i - 1)) != 0)
      return bad("metadata 'general.alignment' is " + num(a->i) + "; it must be a power of two");
    f.alignment = static_cast<uint64_t>(a->i);
  }

  // --- tensor infos ---
  f.tensors.reserve(static_cast<size_t>(n_tensors));
  std::unordered_set<std::string> names;
  for (uint64_t k = 0; k < n_tensors; ++k) {
    GgufTensor t;
    NEMO_RETURN_IF_ERROR(read_string(&t.name, "the name of tensor " + std::to_string(k)));
    if (t.name.empty()) return bad("tensor " + std::to_string(k) + " has an empty name");
    const std::string what = "tensor '" + t.name + "'";
    if (!names.insert(t.name).second) return bad(what + " appears more than once");
    uint32_t n_dims = 0;
    if (!c.u32(&n_dims)) return bad("the file is truncated: it ends inside the info of " + what);
    if (n_dims < 1 || n_dims > 4) return bad(what + " has " + num(n_dims) + " dimensions (ggml allows 1 to 4)");
    int64_t numel = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      uint64_t ne = 0;
      if (!c.u64(&ne)) return bad("the file is truncated: it ends inside the info of " + what);
      if (ne > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
          (numel > 0 && static_cast<int64_t>(ne) > std::numeric_limits<int64_t>::max() / numel))
        return bad(what + " has dimension " + std::to_string(ne) + ", too large (element count overflows)");
      t.ne.push_back(static_cast<int64_t>(ne));
      numel *= static_cast<int64_t>(ne);
    }
    if (!c.u32(&t.ggml_type) || !c.u64(&t.offset))
      return bad("the file is truncated: it ends inside the info of " + what);
    if (std::strcmp(ggml_type_name(t.ggml_type), "unknown") == 0)
      return bad(what + " has ggml type id " + num(t.ggml_type) + ", which is not a ggml type (supported: " +
                 kSupportedTypes + ")");
    if (t.offset % f.alignment != 0)
      return bad(what + " starts at data offset " + std::to_string(t.offset) + ", not a multiple of the alignment " +
                 std::to_string(f.alignment));
    t.supported = supported_ggml_type(t.ggml_type, &t.dtype);
    if (t.supported) {
      const int64_t blk = dtype_block_elems(t.dtype);
      if (t.ne[0] % blk != 0)
        return bad(what + " is " + dtype_name(t.dtype) + " with an inner dimension of " + num(t.ne[0]) +
                   ", not a multiple of its block size " + num(blk));
      // nbytes = ne0 / blk * block_bytes * (numel / ne0), checked against the file size on the way.
      const uint64_t rows = t.ne[0] == 0 ? 0 : static_cast<uint64_t>(numel / t.ne[0]);
      const uint64_t row_bytes = static_cast<uint64_t>(t.ne[0] / blk) * static_cast<uint64_t>(dtype_block_bytes(t.dtype));
      if (row_bytes != 0 && rows > size / row_bytes)
        return bad(what + " " + ggml_shape_to_string(t.ne) + " of " + dtype_name(t.dtype) +
                   " is larger than the whole file; the file is truncated or corrupt");
      t.nbytes = static_cast<size_t>(rows * row_bytes);
    }
    f.tensors.push_back(std::move(t));
  }

  // --- data section ---
  const uint64_t header_end = c.pos();
  const uint64_t data_offset = (header_end + f.alignment - 1) / f.alignment * f.alignment;
  f.data_offset = static_cast<size_t>(data_offset);
  std::vector<std::pair<uint64_t, size_t>> ranges;  // (offset, tensor index) of the sized tensors
  for (size_t k = 0; k < f.tensors.size(); ++k) {
    GgufTensor& t = f.tensors[k];
    if (!t.supported) continue;
    const uint64_t avail = data_offset <= size ? size - data_offset : 0;
    if (t.offset > avail || t.nbytes > avail - t.offset)
      return bad("tensor '" + t.name + "' (" + std::to_string(t.nbytes) + " bytes at data offset " +
                 std::to_string(t.offset) + ") runs past the end of the file (the data section holds " +
                 std::to_string(avail) + " bytes); the file is truncated");
    t.data = bytes + data_offset + t.offset;
    ranges.emplace_back(t.offset, k);
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t k = 1; k < ranges.size(); ++k) {
    const GgufTensor& a = f.tensors[ranges[k - 1].second];
    const GgufTensor& b = f.tensors[ranges[k].second];
    if (a.offset + a.nbytes > b.offset && a.nbytes > 0 && b.nbytes > 0)
      return bad("tensors '" + a.name + "' and '" + b.name + "' overlap in the data section");
  }
  *out = std::move(f);
  return Status::Ok();
}

// ---------------------------------------------------------------------------------------------------------
// Config from metadata

namespace {

class Meta {
 public:
  Meta(const GgufFile& f, const std::string& label, const std::string& arch) : f_(f), label_(label), arch_(arch) {}

  Status invalid(const std::string& what) const {
    return Status(StatusCode::kInvalidConfig, label_ + ": GGUF metadata: " + what);
  }
  Status unsupported(const std::string& what) const {
    return Status(StatusCode::kUnsupportedModel, label_ + ": GGUF metadata: " + what);
  }
  std::string key(const std::string& k) const { return arch_ + "." + k; }
  const GgufValue* find(const std::string& k) const { return f_.find(key(k)); }

  // A non-negative integer scalar `<arch>.k` in [min, kMaxSize]; absent: required -> error, else false.
  Status integer(const std::string& k, bool required, int64_t min, int64_t* out, bool* found = nullptr) const {
    const GgufValue* v = find(k);
    if (found) *found = v != nullptr;
    if (v == nullptr) return required ? invalid("missing key '" + key(k) + "'") : Status::Ok();
    if (!v->is_number() || !v->is_integer || v->type == GgufValueType::kBool)
      return invalid("'" + key(k) + "' must be an integer, found a " + describe(*v));
    return range(key(k), v->i, min, out);
  }

  // A per-layer integer: an array of n_layers integers, or one integer for every layer.
  Status per_layer(const std::string& k, int64_t n_layers, std::vector<int64_t>* out) const {
    const GgufValue* v = find(k);
    if (v == nullptr) return invalid("missing key '" + key(k) + "'");
    if (v->type == GgufValueType::kArray) {
      if (v->elem_type == GgufValueType::kString || v->elem_type == GgufValueType::kFloat32 ||
          v->elem_type == GgufValueType::kFloat64 || v->elem_type == GgufValueType::kBool)
        return invalid("'" + key(k) + "' must be an integer or an array of integers, found an array of " +
                       gguf_value_type_name(v->elem_type));
      if (static_cast<int64_t>(v->count) != n_layers)
        return invalid("'" + key(k) + "' has " + std::to_string(v->count) + " entries but " + key("block_count") +
                       " is " + num(n_layers));
      out->resize(static_cast<size_t>(n_layers));
      for (int64_t i = 0; i < n_layers; ++i)
        NEMO_RETURN_IF_ERROR(range(key(k) + "[" + num(i) + "]", v->ints[static_cast<size_t>(i)], 0,
                                   &(*out)[static_cast<size_t>(i)]));
      return Status::Ok();
    }
    int64_t x = 0;
    NEMO_RETURN_IF_ERROR(integer(k, true, 0, &x));
    out->assign(static_cast<size_t>(n_layers), x);
    return Status::Ok();
  }

  Status number(const std::string& full_key, double* out, bool* found) const {
    const GgufValue* v = f_.find(full_key);
    *found = v != nullptr;
    if (v == nullptr) return Status::Ok();
    if (!v->is_number() || v->type == GgufValueType::kBool)
      return invalid("'" + full_key + "' must be a number, found a " + describe(*v));
    *out = v->f;
    return Status::Ok();
  }

  static std::string describe(const GgufValue& v) {
    if (v.type == GgufValueType::kArray)
      return std::string("array of ") + std::to_string(v.count) + " " + gguf_value_type_name(v.elem_type);
    if (v.type == GgufValueType::kString) return "string " + quote(v.s);
    return gguf_value_type_name(v.type);
  }

 private:
  Status range(const std::string& name, int64_t v, int64_t min, int64_t* out) const {
    if (v < min) return invalid("'" + name + "' is " + num(v) + "; it must be " + (min == 1 ? "positive" : ">= " + num(min)));
    if (v > kMaxSize)
      return invalid("'" + name + "' is " + num(v) + ", implausibly large (limit " + num(kMaxSize) + ")");
    *out = v;
    return Status::Ok();
  }

  const GgufFile& f_;
  const std::string& label_;
  std::string arch_;
};

// One value shared by every layer of a kind (the engine runs uniform layers): the values of `v` at the
// layers where `use[i]`, which must all be equal.
Status uniform(const Meta& m, const std::string& k, const std::vector<int64_t>& v, const std::vector<bool>& use,
               const char* kind, int64_t* out) {
  bool set = false;
  for (size_t i = 0; i < v.size(); ++i) {
    if (!use[i]) continue;
    if (set && v[i] != *out)
      return m.unsupported("'" + m.key(k) + "' differs across " + kind + " layers (" + num(*out) + " and " +
                           num(v[i]) + " at layer " + num(static_cast<int64_t>(i)) +
                           "); layers of one kind must have the same size");
    *out = v[i];
    set = true;
  }
  return Status::Ok();
}

const GgufTensor* find_tensor(const GgufFile& f, const std::string& name) {
  for (const GgufTensor& t : f.tensors)
    if (t.name == name) return &t;
  return nullptr;
}

}  // namespace

Status gguf_config(const GgufFile& file, const std::string& label, NemotronHConfig* out) {
  if (out == nullptr) return Status(StatusCode::kInternal, "gguf_config: out is null");
  const GgufValue* arch_v = file.find("general.architecture");
  if (arch_v == nullptr)
    return Status(StatusCode::kInvalidConfig, label + ": GGUF metadata: missing key 'general.architecture'");
  if (arch_v->type != GgufValueType::kString)
    return Status(StatusCode::kInvalidConfig, label + ": GGUF metadata: 'general.architecture' must be a string, found a " +
                                                  Meta::describe(*arch_v));
  const std::string& arch = arch_v->s;
  if (arch != "nemotron_h" && arch != "nemotron_h_moe") {
    std::string why = "general.architecture is " + quote(arch) +
                      "; only \"nemotron_h\" (Nemotron-H / Nemotron Nano 2) and \"nemotron_h_moe\" (Nemotron-3) "
                      "are supported";
    return Status(StatusCode::kUnsupportedModel, label + ": " + why);
  }
  const bool moe_arch = arch == "nemotron_h_moe";
  const Meta m(file, label, arch);
  NemotronHConfig c;
  c.architecture = "NemotronHForCausalLM";

  // --- layers ---
  int64_t n_layers = 0;
  NEMO_RETURN_IF_ERROR(m.integer("block_count", true, 1, &n_layers));
  if (n_layers > 4096) return m.invalid("'" + m.key("block_count") + "' is " + num(n_layers) + ", implausibly many layers");
  std::vector<int64_t> ff, kvh, qh;
  NEMO_RETURN_IF_ERROR(m.per_layer("feed_forward_length", n_layers, &ff));
  NEMO_RETURN_IF_ERROR(m.per_layer("attention.head_count_kv", n_layers, &kvh));
  // Multi-token-prediction blocks (the converter appends them after the model's layers and counts them
  // in block_count): plain decoding does not run them, so they are dropped, as llama.cpp does.
  int64_t nextn = 0;
  NEMO_RETURN_IF_ERROR(m.integer("nextn_predict_layers", false, 0, &nextn));
  if (nextn >= n_layers)
    return m.invalid("'" + m.key("nextn_predict_layers") + "' (" + num(nextn) + ") leaves no layers of the " +
                     num(n_layers) + " in block_count");
  n_layers -= nextn;
  ff.resize(static_cast<size_t>(n_layers));
  kvh.resize(static_cast<size_t>(n_layers));
  std::vector<bool> is_m(n_layers), is_a(n_layers), is_f(n_layers), is_e(n_layers);
  for (int64_t i = 0; i < n_layers; ++i) {
    const size_t k = static_cast<size_t>(i);
    // As llama.cpp: recurrent when neither attention heads nor an FFN; attention when no FFN; the FFN
    // layers of nemotron_h_moe are all mixture-of-experts blocks.
    const BlockKind ffn = moe_arch ? BlockKind::kMoe : BlockKind::kMlp;
    BlockKind kind = kvh[k] == 0 && ff[k] == 0 ? BlockKind::kMamba : ff[k] == 0 ? BlockKind::kAttention : ffn;
    is_e[k] = kind == BlockKind::kMoe;
    c.layers.push_back(kind);
    c.hybrid_override_pattern += static_cast<char>(kind);
    is_m[k] = kind == BlockKind::kMamba;
    is_a[k] = kind == BlockKind::kAttention;
    is_f[k] = kind == BlockKind::kMlp;
  }
  const bool has_m = std::find(is_m.begin(), is_m.end(), true) != is_m.end();
  const bool has_a = std::find(is_a.begin(), is_a.end(), true) != is_a.end();
  const bool has_e = std::find(is_e.begin(), is_e.end(), true) != is_e.end();

  // --- sizes ---
  NEMO_RETURN_IF_ERROR(m.integer("embedding_length", true, 1, &c.hidden_size));
  NEMO_RETURN_IF_ERROR(uniform(m, "feed_forward_length", ff, is_f, "MLP", &c.intermediate_size));
  NEMO_RETURN_IF_ERROR(uniform(m, "attention.head_count_kv", kvh, is_a, "attention", &c.num_key_value_heads));
  if (has_a) {
    NEMO_RETURN_IF_ERROR(m.per_layer("attention.head_count", n_layers, &qh));
    NEMO_RETURN_IF_ERROR(uniform(m, "attention.head_count", qh, is_a, "attention", &c.num_attention_heads));
    if (c.num_attention_heads < 1) return m.invalid("'" + m.key("attention.head_count") + "' is 0 on an attention layer");
    bool kl_found = false, vl_found = false;
    int64_t vl = 0;
    NEMO_RETURN_IF_ERROR(m.integer("attention.key_length", false, 1, &c.head_dim, &kl_found));
    NEMO_RETURN_IF_ERROR(m.integer("attention.value_length", false, 1, &vl, &vl_found));
    if (!kl_found) {
      if (c.hidden_size % c.num_attention_heads != 0)
        return m.invalid("no '" + m.key("attention.key_length") + "', and embedding_length " + num(c.hidden_size) +
                         " is not divisible by head_count " + num(c.num_attention_heads));
      c.head_dim = c.hidden_size / c.num_attention_heads;
    }
    if (vl_found && vl != c.head_dim)
      return m.unsupported("'" + m.key("attention.value_length") + "' (" + num(vl) + ") differs from key_length (" +
                           num(c.head_dim) + ")");
    if (c.num_attention_heads % c.num_key_value_heads != 0)
      return m.invalid("head_count (" + num(c.num_attention_heads) + ") is not divisible by head_count_kv (" +
                       num(c.num_key_value_heads) + ")");
  }
  if (has_m) {
    int64_t inner = 0;
    NEMO_RETURN_IF_ERROR(m.integer("ssm.conv_kernel", true, 1, &c.conv_kernel));
    NEMO_RETURN_IF_ERROR(m.integer("ssm.state_size", true, 1, &c.ssm_state_size));
    NEMO_RETURN_IF_ERROR(m.integer("ssm.group_count", true, 1, &c.n_groups));
    NEMO_RETURN_IF_ERROR(m.integer("ssm.inner_size", true, 1, &inner));
    NEMO_RETURN_IF_ERROR(m.integer("ssm.time_step_rank", true, 1, &c.mamba_num_heads));
    if (inner % c.mamba_num_heads != 0)
      return m.invalid("'" + m.key("ssm.inner_size") + "' (" + num(inner) + ") is not divisible by '" +
                       m.key("ssm.time_step_rank") + "' (" + num(c.mamba_num_heads) + ", the number of SSM heads)");
    c.mamba_head_dim = inner / c.mamba_num_heads;
    if (c.mamba_num_heads % c.n_groups != 0)
      return m.invalid("the SSM head count ('" + m.key("ssm.time_step_rank") + "' = " + num(c.mamba_num_heads) +
                       ") is not divisible by '" + m.key("ssm.group_count") + "' (" + num(c.n_groups) + ")");
  }
  if (has_e) {
    // llama.cpp's keys (LLM_KV_EXPERT_*), as convert_hf_to_gguf.py's NemotronHModel writes them.
    NEMO_RETURN_IF_ERROR(m.integer("expert_count", true, 1, &c.n_routed_experts));
    NEMO_RETURN_IF_ERROR(m.integer("expert_used_count", true, 1, &c.num_experts_per_tok));
    bool eff_found = false;
    NEMO_RETURN_IF_ERROR(m.integer("expert_feed_forward_length", false, 1, &c.moe_intermediate_size, &eff_found));
    if (!eff_found) NEMO_RETURN_IF_ERROR(uniform(m, "feed_forward_length", ff, is_e, "MoE", &c.moe_intermediate_size));
    int64_t n_shared = 1;
    NEMO_RETURN_IF_ERROR(m.integer("expert_shared_count", false, 0, &n_shared));
    // one shared MLP, expert_shared_feed_forward_length wide, however many it counts (as HF and llama.cpp)
    if (n_shared >= 1)
      NEMO_RETURN_IF_ERROR(m.integer("expert_shared_feed_forward_length", true, 1,
                                     &c.moe_shared_expert_intermediate_size));
    NEMO_RETURN_IF_ERROR(m.integer("expert_group_count", false, 1, &c.n_group));
    bool gu_found = false;
    NEMO_RETURN_IF_ERROR(m.integer("expert_group_used_count", false, 1, &c.topk_group, &gu_found));
    if (!gu_found) c.topk_group = c.n_group;  // no group limit recorded: every group may be used
    if (const GgufValue* v = m.find("expert_weights_norm")) {
      if (v->type != GgufValueType::kBool) return m.invalid("'" + m.key("expert_weights_norm") + "' must be a bool");
      c.norm_topk_prob = v->i != 0;
    } else {
      c.norm_topk_prob = false;  // llama.cpp's default when the key is absent
    }
    double scale = 0.0;
    bool scale_found = false;
    NEMO_RETURN_IF_ERROR(m.number(m.key("expert_weights_scale"), &scale, &scale_found));
    c.routed_scaling_factor = scale_found && scale != 0.0 ? scale : 1.0;  // llama.cpp: 0 means no scaling
    if (!std::isfinite(c.routed_scaling_factor) || c.routed_scaling_factor < 0.0)
      return m.invalid("'" + m.key("expert_weights_scale") + "' must be a finite non-negative number");
    if (const GgufValue* v = m.find("expert_gating_func"); v != nullptr && !(v->is_number() && v->i == 2))
      return m.unsupported("'" + m.key("expert_gating_func") + "' is not 2 (sigmoid); Nemotron-H routes by sigmoid");
    if (const GgufValue* v = m.find("moe_latent_size"); v != nullptr && !(v->is_number() && v->i == 0))
      return m.unsupported("'" + m.key("moe_latent_size") +
                           "' is set: latent MoE projections (ffn_latent_down/up, Nemotron-3 Super) are not supported");
    const int64_t E = c.n_routed_experts, per = E / std::max<int64_t>(c.n_group, 1);
    if (c.num_experts_per_tok > E || E % c.n_group != 0 || c.topk_group > c.n_group ||
        (c.n_group > 1 && per < 2) || c.num_experts_per_tok > c.topk_group * per)
      return m.invalid("expert_count " + num(E) + ", expert_used_count " + num(c.num_experts_per_tok) +
                       ", expert_group_count " + num(c.n_group) + " and expert_group_used_count " +
                       num(c.topk_group) + " are inconsistent");
  }
  c.chunk_size = 128;  // GGUF stores none; it only changes how the scan is cut, not the model

  double eps = 0.0;
  bool eps_found = false;
  NEMO_RETURN_IF_ERROR(m.number(m.key("attention.layer_norm_rms_epsilon"), &eps, &eps_found));
  if (!eps_found) NEMO_RETURN_IF_ERROR(m.number(m.key("attention.layer_norm_epsilon"), &eps, &eps_found));
  if (!eps_found) return m.invalid("missing key '" + m.key("attention.layer_norm_rms_epsilon") + "'");
  if (!(eps > 0.0) || !std::isfinite(eps))
    return m.invalid("'" + m.key("attention.layer_norm_rms_epsilon") + "' must be a positive finite number");
  c.layer_norm_epsilon = eps;

  // --- vocabulary: the tokenizer's token list, else <arch>.vocab_size, else token_embd's rows ---
  const GgufTensor* embd = find_tensor(file, "token_embd.weight");
  if (const GgufValue* toks = file.find("tokenizer.ggml.tokens")) {
    if (toks->type != GgufValueType::kArray || toks->elem_type != GgufValueType::kString)
      return m.invalid("'tokenizer.ggml.tokens' must be an array of strings, found a " + Meta::describe(*toks));
    if (toks->count < 1 || static_cast<int64_t>(toks->count) > kMaxSize)
      return m.invalid("'tokenizer.ggml.tokens' has " + std::to_string(toks->count) + " tokens");
    c.vocab_size = static_cast<int64_t>(toks->count);
  } else {
    bool found = false;
    NEMO_RETURN_IF_ERROR(m.integer("vocab_size", false, 1, &c.vocab_size, &found));
    if (!found) {
      if (embd == nullptr || embd->ne.size() != 2 || embd->ne[1] < 1 || embd->ne[1] > kMaxSize)
        return m.invalid("no 'tokenizer.ggml.tokens' or '" + m.key("vocab_size") +
                         "', and no 2-D token_embd.weight to take the vocabulary size from");
      c.vocab_size = embd->ne[1];
    }
  }

  // --- the rest ---
  NEMO_RETURN_IF_ERROR(m.integer("context_length", false, 1, &c.max_position_embeddings));
  auto token_id = [&](const char* k, int64_t* out) -> Status {
    const GgufValue* v = file.find(k);
    if (v == nullptr) return Status::Ok();
    if (!v->is_number() || !v->is_integer || v->i < 0)
      return m.invalid(std::string("'") + k + "' must be a non-negative integer");
    // An end/begin token the vocabulary does not hold could never be sampled or fed (issue #13).
    if (v->u64_overflow || v->i >= c.vocab_size)
      return m.invalid(std::string("'") + k + "' is " + std::to_string(v->i) + ", outside the vocabulary of " +
                       std::to_string(c.vocab_size) + " tokens");
    *out = v->i;
    return Status::Ok();
  };
  int64_t eos = -1, eot = -1;
  NEMO_RETURN_IF_ERROR(token_id("tokenizer.ggml.bos_token_id", &c.bos_token_id));
  NEMO_RETURN_IF_ERROR(token_id("tokenizer.ggml.eos_token_id", &eos));
  NEMO_RETURN_IF_ERROR(token_id("tokenizer.ggml.eot_token_id", &eot));
  if (eos >= 0) c.eos_token_ids.push_back(eos);
  if (eot >= 0 && eot != eos) c.eos_token_ids.push_back(eot);

  c.tie_word_embeddings = find_tensor(file, "output.weight") == nullptr;
  c.use_conv_bias = false;
  for (const GgufTensor& t : file.tensors) {
    const std::string suffix = ".ssm_conv1d.bias";
    if (t.name.size() > suffix.size() && t.name.compare(t.name.size() - suffix.size(), suffix.size(), suffix) == 0)
      c.use_conv_bias = true;
  }
  if (!has_m) c.use_conv_bias = true;

  // torch_dtype: the file type llama.cpp records, else the embedding's storage type.
  if (const GgufValue* ft = file.find("general.file_type"); ft != nullptr && ft->is_number()) {
    switch (ft->i) {
      case 0: c.torch_dtype = "float32"; break;
      case 1: c.torch_dtype = "float16"; break;
      case 32: c.torch_dtype = "bfloat16"; break;
      case 2: c.torch_dtype = "Q4_0"; break;
      case 7: c.torch_dtype = "Q8_0"; break;
      case 8: c.torch_dtype = "Q5_0"; break;
      case 9: c.torch_dtype = "Q5_1"; break;
      case 14: c.torch_dtype = "Q4_K_S"; break;
      case 15: c.torch_dtype = "Q4_K_M"; break;
      case 16: c.torch_dtype = "Q5_K_S"; break;
      case 17: c.torch_dtype = "Q5_K_M"; break;
      case 18: c.torch_dtype = "Q6_K"; break;
      default: break;
    }
  }
  if (c.torch_dtype.empty() && embd != nullptr && embd->supported) c.torch_dtype = dtype_name(embd->dtype);

  *out = std::move(c);
  return Status::Ok();
}

// ---------------------------------------------------------------------------------------------------------
// Binding

namespace {

Status mismatch(const std::string& what) { return Status(StatusCode::kTensorMismatch, what); }

class GgufBinder {
 public:
  GgufBinder(const GgufFile& f, const std::string& label, ModelWeights* w) : label_(label), w_(w) {
    for (const GgufTensor& t : f.tensors) by_name_.emplace(t.name, &t);
  }

  Status find(const std::string& name, const std::string& note, const GgufTensor** out) {
    auto it = by_name_.find(name);
    if (it == by_name_.end())
      return mismatch(label_ + ": missing tensor '" + name + "'" + (note.empty() ? "" : " (" + note + ")"));
    if (!it->second->supported) return unsupported_type(*it->second);
    *out = it->second;
    return Status::Ok();
  }

  Status unsupported_type(const GgufTensor& t) const {
    return Status(StatusCode::kInvalidCheckpoint,
                  label_ + ": tensor '" + t.name + "' has ggml type " + ggml_type_name(t.ggml_type) + " (id " +
                      num(t.ggml_type) + "), which this engine does not read (supported: " + kSupportedTypes + ")");
  }

  Status check_shape(const GgufTensor& t, const std::vector<std::vector<int64_t>>& accepted, const std::string& why) {
    for (const auto& s : accepted)
      if (t.ne == s) return Status::Ok();
    std::string expected = ggml_shape_to_string(accepted[0]);
    for (size_t i = 1; i < accepted.size(); ++i) expected += " or " + ggml_shape_to_string(accepted[i]);
    return mismatch(label_ + ": tensor '" + t.name + "' has ggml shape " + ggml_shape_to_string(t.ne) +
                    ", expected " + expected + " (ggml order, innermost first; from metadata: " + why + ")");
  }

  void count(const GgufTensor& t) {
    used_.insert(t.name);
    w_->parameter_count += t.numel();
    w_->weight_bytes += static_cast<int64_t>(t.nbytes);
  }

  // A [rows, cols] matrix stored as ggml {cols, rows}.
  Status matrix(const std::string& name, int64_t rows, int64_t cols, const std::string& why, const std::string& note,
                MatrixView* out) {
    const GgufTensor* t = nullptr;
    NEMO_RETURN_IF_ERROR(find(name, note, &t));
    NEMO_RETURN_IF_ERROR(check_shape(*t, {{cols, rows}}, why));
    out->data = t->data;
    out->dtype = t->dtype;
    out->rows = rows;
    out->cols = cols;
    count(*t);
    return Status::Ok();
  }

  // A small tensor converted to f32 (row-major in ggml order, which is its flattened order).
  Status vec(const std::string& name, const std::vector<std::vector<int64_t>>& accepted, const std::string& why,
             const std::string& note, std::vector<float>* out) {
    const GgufTensor* t = nullptr;
    NEMO_RETURN_IF_ERROR(find(name, note, &t));
    NEMO_RETURN_IF_ERROR(check_shape(*t, accepted, why));
    if (dtype_is_quantized(t->dtype))
      return mismatch(label_ + ": tensor '" + name + "' is stored as " + dtype_name(t->dtype) +
                      "; per-channel vectors must be F32, F16 or BF16 (llama.cpp keeps them F32)");
    const size_t n = static_cast<size_t>(t->numel());
    out->assign(n, 0.0f);
    convert_to_f32(out->data(), t->data, t->dtype, n);
    count(*t);
    return Status::Ok();
  }

  bool used(const std::string& name) const { return used_.count(name) != 0; }
  const std::unordered_map<std::string, const GgufTensor*>& all() const { return by_name_; }

 private:
  const std::string& label_;
  ModelWeights* w_;
  std::unordered_map<std::string, const GgufTensor*> by_name_;
  std::unordered_set<std::string> used_;
};

// E consecutive [rows, cols] matrices of a ggml {cols, rows, E} tensor (llama.cpp's *_exps), viewed in place.
Status expert_slices(GgufBinder* b, const std::string& name, int64_t E, int64_t rows, int64_t cols,
                     const std::string& why, const std::string& note, std::vector<MatrixView>* out) {
  const GgufTensor* t = nullptr;
  NEMO_RETURN_IF_ERROR(b->find(name, note, &t));
  NEMO_RETURN_IF_ERROR(b->check_shape(*t, {{cols, rows, E}}, why));
  const size_t stride = dtype_row_bytes(t->dtype, cols) * static_cast<size_t>(rows);
  out->resize(static_cast<size_t>(E));
  for (int64_t e = 0; e < E; ++e)
    (*out)[static_cast<size_t>(e)] =
        MatrixView{static_cast<const uint8_t*>(t->data) + static_cast<size_t>(e) * stride, t->dtype, rows, cols};
  b->count(*t);
  return Status::Ok();
}

Status bind_layer(GgufBinder* b, const NemotronHConfig& c, int64_t i, LayerWeights* L) {
  const std::string pre = "blk." + num(i) + ".";
  const BlockKind kind = c.layers[static_cast<size_t>(i)];
  const std::string note = "layer " + num(i) + " is '" + std::string(1, static_cast<char>(kind)) + "' (" +
                           block_kind_name(kind) + ") by head_count_kv/feed_forward_length";
  const int64_t H = c.hidden_size;
  const std::string sH = "embedding_length = " + num(H);
  L->kind = kind;
  NEMO_RETURN_IF_ERROR(b->vec(pre + "attn_norm.weight", {{H}}, sH, note, &L->norm));
  switch (kind) {
    case BlockKind::kMamba: {
      MambaWeights& w = L->mamba;
      const int64_t di = c.d_inner(), cd = c.conv_dim(), nh = c.mamba_num_heads, K = c.conv_kernel, g = c.n_groups;
      const std::string s_di = "ssm.inner_size = " + num(di);
      const std::string s_cd = "conv_dim = inner_size + 2 * group_count * state_size = " + num(di) + " + 2 * " +
                               num(g) + " * " + num(c.ssm_state_size) + " = " + num(cd);
      const std::string s_nh = "ssm.time_step_rank = " + num(nh);
      NEMO_RETURN_IF_ERROR(b->matrix(pre + "ssm_in.weight", c.in_proj_dim(), H,
                                     sH + ", inner_size + conv_dim + time_step_rank = " + num(c.in_proj_dim()), note,
                                     &w.in_proj));
      // {K, conv_dim}: conv_dim rows of K taps, which is HF's [conv_dim, 1, K] squeezed.
      NEMO_RETURN_IF_ERROR(b->vec(pre + "ssm_conv1d.weight", {{K, cd}, {K, 1, cd}}, "ssm.conv_kernel = " + num(K) + ", " + s_cd,
                                  note, &w.conv_w));
      if (c.use_conv_bias) {
        NEMO_RETURN_IF_ERROR(b->vec(pre + "ssm_conv1d.bias", {{cd}}, s_cd, note, &w.conv_b));
      } else {
        w.conv_b.assign(static_cast<size_t>(cd), 0.0f);
      }
      NEMO_RETURN_IF_ERROR(b->vec(pre + "ssm_dt.bias", {{nh}, {1, nh}}, s_nh, note, &w.dt_bias));
      // Stored as A = -exp(A_log) already (the converter's transform).
      NEMO_RETURN_IF_ERROR(b->vec(pre + "ssm_a", {{1, nh}, {nh}}, s_nh, note, &w.A));
      NEMO_RETURN_IF_ERROR(b->vec(pre + "ssm_d", {{1, nh}, {nh}}, s_nh, note, &w.D));
      // {d_inner / n_group, n_group}: group-major, which flattens to HF's [d_inner].
      NEMO_RETURN_IF_ERROR(b->vec(pre + "ssm_norm.weight", {{di / g, g}, {di}},
                                  s_di + ", ssm.group_count = " + num(g), note, &w.norm_w));
      NEMO_RETURN_IF_ERROR(b->matrix(pre + "ssm_out.weight", H, di, sH + ", " + s_di, note, &w.out_proj));
      break;
    }
    case BlockKind::kAttention: {
      AttentionWeights& a = L->attn;
      const std::string s_q = "head_count * key_length = " + num(c.num_attention_heads) + " * " + num(c.head_dim) +
                              " = " + num(c.q_dim());
      const std::string s_kv = "head_count_kv * key_length = " + num(c.num_key_value_heads) + " * " + num(c.head_dim) +
                               " = " + num(c.kv_dim());
      NEMO_RETURN_IF_ERROR(b->matrix(pre + "attn_q.weight", c.q_dim(), H, sH + ", " + s_q, note, &a.q_proj));
      NEMO_RETURN_IF_ERROR(b->matrix(pre + "attn_k.weight", c.kv_dim(), H, sH + ", " + s_kv, note, &a.k_proj));
      NEMO_RETURN_IF_ERROR(b->matrix(pre + "attn_v.weight", c.kv_dim(), H, sH + ", " + s_kv, note, &a.v_proj));
      NEMO_RETURN_IF_ERROR(b->matrix(pre + "attn_output.weight", H, c.q_dim(), s_q + ", " + sH, note, &a.o_proj));
      break;
    }
    case BlockKind::kMlp: {
      MlpWeights& p = L->mlp;
      const std::string sI = "feed_forward_length = " + num(c.intermediate_size);
      NEMO_RETURN_IF_ERROR(b->matrix(pre + "ffn_up.weight", c.intermediate_size, H, sH + ", " + sI, note, &p.up_proj));
      NEMO_RETURN_IF_ERROR(b->matrix(pre + "ffn_down.weight", H, c.intermediate_size, sI + ", " + sH, note, &p.down_proj));
      break;
    }
    case BlockKind::kMoe: {
      MoeWeights& w = L->moe;
      const int64_t E = c.n_routed_experts, I = c.moe_intermediate_size, S = c.moe_shared_expert_intermediate_size;
      const std::string sE = "expert_count = " + num(E), sI = "expert_feed_forward_length = " + num(I);
      NEMO_RETURN_IF_ERROR(b->vec(pre + "ffn_gate_inp.weight", {{H, E}}, sH + ", " + sE, note, &w.router_w));
      w.router = MatrixView{w.router_w.data(), DType::F32, E, H};
      NEMO_RETURN_IF_ERROR(b->vec(pre + "exp_probs_b.bias", {{E}}, sE, note, &w.score_bias));
      NEMO_RETURN_IF_ERROR(expert_slices(b, pre + "ffn_up_exps.weight", E, I, H, sH + ", " + sI + ", " + sE, note, &w.up));
      NEMO_RETURN_IF_ERROR(expert_slices(b, pre + "ffn_down_exps.weight", E, H, I, sI + ", " + sH + ", " + sE, note, &w.down));
      if (c.has_shared_expert()) {
        const std::string sS = "expert_shared_feed_forward_length = " + num(S);
        NEMO_RETURN_IF_ERROR(b->matrix(pre + "ffn_up_shexp.weight", S, H, sH + ", " + sS, note, &w.shared_up));
        NEMO_RETURN_IF_ERROR(b->matrix(pre + "ffn_down_shexp.weight", H, S, sS + ", " + sH, note, &w.shared_down));
      }
      break;
    }
  }
  return Status::Ok();
}

// Why a left-over tensor is unexpected.
std::string extra_reason(const NemotronHConfig& c, const std::string& name) {
  if (name.compare(0, 4, "blk.") == 0) {
    size_t i = 4;
    int64_t layer = 0;
    while (i < name.size() && name[i] >= '0' && name[i] <= '9' && layer < (int64_t{1} << 40))
      layer = layer * 10 + (name[i++] - '0');
    if (i > 4 && i < name.size() && name[i] == '.') {
      if (layer >= c.num_layers()) return "block_count is " + num(c.num_layers());
      const BlockKind k = c.layers[static_cast<size_t>(layer)];
      return "layer " + num(layer) + " is '" + std::string(1, static_cast<char>(k)) + "' (" + block_kind_name(k) +
             ") by head_count_kv/feed_forward_length, which has no such tensor";
    }
  }
  return "not part of a nemotron_h / nemotron_h_moe model";
}

// A tensor of a multi-token-prediction block (blk.N with N past the layers the model runs; see
// nextn_predict_layers in gguf_config), which plain decoding ignores.
bool mtp_tensor(const GgufFile& f, const NemotronHConfig& c, const std::string& name) {
  const GgufValue* v = f.find("general.architecture");
  if (v == nullptr) return false;
  const GgufValue* n = f.find(v->s + ".nextn_predict_layers");
  if (n == nullptr || !n->is_number() || n->i <= 0 || name.compare(0, 4, "blk.") != 0) return false;
  size_t i = 4;
  int64_t layer = 0;
  while (i < name.size() && name[i] >= '0' && name[i] <= '9' && layer < (int64_t{1} << 40))
    layer = layer * 10 + (name[i++] - '0');
  return i > 4 && i < name.size() && name[i] == '.' && layer >= c.num_layers() && layer < c.num_layers() + n->i;
}

}  // namespace

Status load_gguf(const std::string& path, NemotronHConfig* config, ModelWeights* weights) {
  if (config == nullptr || weights == nullptr) return Status(StatusCode::kInternal, "load_gguf: config or weights is null");
  std::shared_ptr<MappedFile> file;
  NEMO_RETURN_IF_ERROR(MappedFile::open(path, &file));
  GgufFile g;
  NEMO_RETURN_IF_ERROR(parse_gguf(file->data(), file->size(), path, &g));
  NemotronHConfig cfg;
  NEMO_RETURN_IF_ERROR(gguf_config(g, path, &cfg));

  ModelWeights w;
  GgufBinder b(g, path, &w);
  const int64_t H = cfg.hidden_size, V = cfg.vocab_size;
  const std::string sHV = "embedding_length = " + num(H) + ", vocabulary = " + num(V) + " tokens";
  NEMO_RETURN_IF_ERROR(b.matrix("token_embd.weight", V, H, sHV, "", &w.embeddings));
  w.layers.resize(static_cast<size_t>(cfg.num_layers()));
  for (int64_t i = 0; i < cfg.num_layers(); ++i)
    NEMO_RETURN_IF_ERROR(bind_layer(&b, cfg, i, &w.layers[static_cast<size_t>(i)]));
  NEMO_RETURN_IF_ERROR(b.vec("output_norm.weight", {{H}}, "embedding_length = " + num(H), "", &w.norm_f));
  if (cfg.tie_word_embeddings) {
    w.lm_head = w.embeddings;  // no output.weight: llama.cpp uses token_embd, as HF ties them
  } else {
    NEMO_RETURN_IF_ERROR(b.matrix("output.weight", V, H, sHV, "", &w.lm_head));
  }

  // Anything left over is an error (a tensor of an unsupported type first: it names the real problem).
  std::vector<std::string> extras;
  for (const auto& kv : b.all())
    if (!b.used(kv.first) && !mtp_tensor(g, cfg, kv.first)) extras.push_back(kv.first);
  if (!extras.empty()) {
    std::sort(extras.begin(), extras.end());
    for (const std::string& e : extras)
      if (!b.all().at(e)->supported) return b.unsupported_type(*b.all().at(e));
    std::string msg = path + ": unexpected tensor '" + extras[0] + "' (" + extra_reason(cfg, extras[0]) + ")";
    if (extras.size() > 1) msg += " and " + num(static_cast<int64_t>(extras.size() - 1)) + " more";
    return mismatch(msg);
  }

  w.files.push_back(std::move(file));
  *config = std::move(cfg);
  *weights = std::move(w);
  return Status::Ok();
}

}  // namespace nemo
