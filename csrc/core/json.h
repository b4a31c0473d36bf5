// A small, strict JSON reader into a DOM. It is used for config.json, the safetensors header and
// model.safetensors.index.json, so it only has to be correct and explain itself, not be fast.
//
// Accepted beyond RFC 8259: the bare tokens `Infinity`, `-Infinity` and `NaN` as numbers (Python's
// json module writes them, e.g. "time_step_limit": [0.0, Infinity]) and a leading UTF-8 byte-order mark.
// Everything else is strict: no comments, no trailing commas, no single quotes, no control characters
// inside strings, strings must be valid UTF-8, lone UTF-16 surrogates in \u escapes are rejected.
// Objects keep their members in document order, duplicates included (callers that care, such as the
// safetensors reader, report them); find() returns the first member with the key.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace nemo {

// Arrays and objects nested deeper than this are rejected (keeps the recursive parser's stack bounded).
constexpr int kJsonMaxDepth = 64;

struct JsonMember;

class JsonValue {
 public:
  enum class Type : uint8_t { kNull, kBool, kNumber, kString, kArray, kObject };

  JsonValue() = default;  // null
  static JsonValue make_null() { return JsonValue(); }
  static JsonValue make_bool(bool b);
  static JsonValue make_number(double d);
  static JsonValue make_string(std::string s);
  static JsonValue make_array();
  static JsonValue make_object();

  Type type() const { return type_; }
  bool is_null() const { return type_ == Type::kNull; }
  bool is_bool() const { return type_ == Type::kBool; }
  bool is_number() const { return type_ == Type::kNumber; }
  bool is_string() const { return type_ == Type::kString; }
  bool is_array() const { return type_ == Type::kArray; }
  bool is_object() const { return type_ == Type::kObject; }
  // "null", "boolean", "number", "string", "array", "object": for error messages.
  const char* type_name() const;

  // Accessors: each returns a neutral value (false, 0, "", empty) when the type does not match.
  bool bool_value() const { return type_ == Type::kBool && bool_; }
  double number_value() const { return type_ == Type::kNumber ? number_ : 0.0; }
  // True for a number that is exactly an int64: an integer literal in range, or a number whose value
  // is integral and within +-2^53 (so 4096.0 and 1e3 count, 0.5 and 1e300 do not).
  bool is_integer() const { return type_ == Type::kNumber && has_int_; }
  int64_t int_value() const { return has_int_ ? int_ : 0; }
  const std::string& string_value() const;

  const std::vector<JsonValue>& items() const { return items_; }   // array elements
  std::vector<JsonValue>& items() { return items_; }
  const std::vector<JsonMember>& members() const { return members_; }  // object members, in order
  std::vector<JsonMember>& members() { return members_; }
  size_t size() const;  // elements of an array, members of an object, 0 otherwise

  // Object lookup: the first member named `key`, or nullptr (also when this is not an object).
  const JsonValue* find(std::string_view key) const;
  JsonValue* find(std::string_view key);

  // Builders (used by tests and tools). push_back on a non-array and set on a non-object do nothing.
  void push_back(JsonValue v);
  void set(std::string key, JsonValue v);  // replaces the first member named key, or appends
  bool erase(std::string_view key);        // removes every member named key; true if any was removed

 private:
  friend class JsonParser;
  Type type_ = Type::kNull;
  bool bool_ = false;
  bool has_int_ = false;
  double number_ = 0.0;
  int64_t int_ = 0;
  std::string string_;
  std::vector<JsonValue> items_;
  std::vector<JsonMember> members_;
};

struct JsonMember {
  std::string key;
  JsonValue value;
};

// Parses the whole of `text` (trailing non-whitespace is an error) into *out. On failure *out is left
// unchanged and the Status carries `error_code` and a message such as
//   "invalid JSON at byte 57 (line 3, column 12): expected ',' or '}' after an object member"
// Callers prefix the message with the file it came from.
Status parse_json(std::string_view text, JsonValue* out,
                  StatusCode error_code = StatusCode::kInvalidConfig);

}  // namespace nemo
