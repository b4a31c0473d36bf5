#include "core/json.h"

#include <charconv>
#include <cmath>
#include <limits>
#include <utility>

namespace nemo {

// ---- JsonValue ----------------------------------------------------------------------------------

static void set_integer_from_double(double d, bool* has_int, int64_t* out) {
  // 2^53: every integer up to here is exactly representable, so the int64 view is unambiguous.
  constexpr double kExactLimit = 9007199254740992.0;
  if (std::isfinite(d) && std::floor(d) == d && std::fabs(d) <= kExactLimit) {
    *has_int = true;
    *out = static_cast<int64_t>(d);
  } else {
    *has_int = false;
    *out = 0;
  }
}

JsonValue JsonValue::make_bool(bool b) {
  JsonValue v;
  v.type_ = Type::kBool;
  v.bool_ = b;
  return v;
}

JsonValue JsonValue::make_number(double d) {
  JsonValue v;
  v.type_ = Type::kNumber;
  v.number_ = d;
  set_integer_from_double(d, &v.has_int_, &v.int_);
  return v;
}

JsonValue JsonValue::make_string(std::string s) {
  JsonValue v;
  v.type_ = Type::kString;
  v.string_ = std::move(s);
  return v;
}

JsonValue JsonValue::make_array() {
  JsonValue v;
  v.type_ = Type::kArray;
  return v;
}

JsonValue JsonValue::make_object() {
  JsonValue v;
  v.type_ = Type::kObject;
  return v;
}

const char* JsonValue::type_name() const {
  switch (type_) {
    case Type::kNull: return "null";
    case Type::kBool: return "boolean";
    case Type::kNumber: return "number";
    case Type::kString: return "string";
    case Type::kArray: return "array";
    case Type::kObject: return "object";
  }
  return "?";
}

const std::string& JsonValue::string_value() const {
  static const std::string kEmpty;
  return type_ == Type::kString ? string_ : kEmpty;
}

size_t JsonValue::size() const {
  if (type_ == Type::kArray) return items_.size();
  if (type_ == Type::kObject) return members_.size();
  return 0;
}

const JsonValue* JsonValue::find(std::string_view key) const {
  if (type_ != Type::kObject) return nullptr;
  for (const JsonMember& m : members_)
    if (m.key == key) return &m.value;
  return nullptr;
}

JsonValue* JsonValue::find(std::string_view key) {
  return const_cast<JsonValue*>(static_cast<const JsonValue*>(this)->find(key));
}

void JsonValue::push_back(JsonValue v) {
  if (type_ == Type::kArray) items_.push_back(std::move(v));
}

void JsonValue::set(std::string key, JsonValue v) {
  if (type_ != Type::kObject) return;
  if (JsonValue* existing = find(key)) {
    *existing = std::move(v);
    return;
  }
  members_.push_back(JsonMember{std::move(key), std::move(v)});
}

bool JsonValue::erase(std::string_view key) {
  if (type_ != Type::kObject) return false;
  size_t kept = 0;
  for (size_t i = 0; i < members_.size(); ++i) {
    if (members_[i].key == key) continue;
    if (kept != i) members_[kept] = std::move(members_[i]);
    ++kept;
  }
  const bool removed = kept != members_.size();
  members_.resize(kept);
  return removed;
}

// ---- Parser -------------------------------------------------------------------------------------

class JsonParser {
 public:
  JsonParser(std::string_view text, StatusCode code) : text_(text), code_(code) {}

  Status parse(JsonValue* out) {
    // A UTF-8 byte-order mark is tolerated (some editors write one); it is not part of the value.
    if (text_.size() >= 3 && static_cast<unsigned char>(text_[0]) == 0xEF &&
        static_cast<unsigned char>(text_[1]) == 0xBB && static_cast<unsigned char>(text_[2]) == 0xBF)
      pos_ = 3;
    skip_ws();
    if (pos_ >= text_.size()) return error("the text is empty (expected a JSON value)");
    JsonValue v;
    if (!parse_value(&v, 0)) return status_;
    skip_ws();
    if (pos_ < text_.size()) return error("unexpected " + describe_here() + " after the JSON value");
    *out = std::move(v);
    return Status::Ok();
  }

 private:
  std::string_view text_;
  StatusCode code_;
  size_t pos_ = 0;
  Status status_;

  Status error(const std::string& what) { return error_at(pos_, what); }

  Status error_at(size_t at, const std::string& what) {
    size_t line = 1, col = 1;
    for (size_t i = 0; i < at && i < text_.size(); ++i) {
      if (text_[i] == '\n') {
        ++line;
        col = 1;
      } else {
        ++col;
      }
    }
    status_ = Status(code_, "invalid JSON at byte " + std::to_string(at) + " (line " +
                                std::to_string(line) + ", column " + std::to_string(col) + "): " + what);
    return status_;
  }

  bool fail(const std::string& what) {
    error(what);
    return false;
  }
  bool fail_at(size_t at, const std::string& what) {
    error_at(at, what);
    return false;
  }

  // "end of input", "character 'x'" or "byte 0x01" for the byte at pos_.
  std::string describe_here() const {
    if (pos_ >= text_.size()) return "end of input";
    const unsigned char c = static_cast<unsigned char>(text_[pos_]);
    if (c >= 0x20 && c < 0x7f) return std::string("character '") + static_cast<char>(c) + "'";
    static const char* kHex = "0123456789abcdef";
    return std::string("byte 0x") + kHex[c >> 4] + kHex[c & 15];
  }

  void skip_ws() {
    while (pos_ < text_.size()) {
      const char c = text_[pos_];
      if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
        ++pos_;
      } else {
        break;
      }
    }
  }

  bool consume_literal(std::string_view lit) {
    if (text_.substr(pos_, lit.size()) == lit) {
      pos_ += lit.size();
      return true;
    }
    return false;
  }

  bool parse_value(JsonValue* out, int depth) {
    if (pos_ >= text_.size()) return fail("unexpected end of input (expected a JSON value)");
    const char c = text_[pos_];
    switch (c) {
      case '{': return parse_object(out, depth + 1);
      case '[': return parse_array(out, depth + 1);
      case '"': {
        std::string s;
        if (!parse_string(&s)) return false;
        *out = JsonValue::make_string(std::move(s));
        return true;
      }
      case 't':
        if (consume_literal("true")) { *out = JsonValue::make_bool(true); return true; }
        break;
      case 'f':
        if (consume_literal("false")) { *out = JsonValue::make_bool(false); return true; }
        break;
      case 'n':
        if (consume_literal("null")) { *out = JsonValue(); return true; }
        break;
      case 'N':
        if (consume_literal("NaN")) {
          *out = JsonValue::make_number(std::numeric_limits<double>::quiet_NaN());
          return true;
        }
        break;
      case 'I':
        if (consume_literal("Infinity")) {
          *out = JsonValue::make_number(std::numeric_limits<double>::infinity());
          return true;
        }
        break;
      default:
        if (c == '-' || (c >= '0' && c <= '9')) return parse_number(out);
        break;
    }
    return fail("unexpected " + describe_here() + " (expected a JSON value)");
  }

  bool parse_object(JsonValue* out, int depth) {
    if (depth > kJsonMaxDepth)
      return fail("arrays/objects nested deeper than " + std::to_string(kJsonMaxDepth) + " levels");
    ++pos_;  // '{'
    JsonValue obj = JsonValue::make_object();
    skip_ws();
    if (pos_ < text_.size() && text_[pos_] == '}') {
      ++pos_;
      *out = std::move(obj);
      return true;
    }
    for (;;) {
      skip_ws();
      if (pos_ >= text_.size() || text_[pos_] != '"')
        return fail("expected a string key in an object, found " + describe_here());
      std::string key;
      if (!parse_string(&key)) return false;
      skip_ws();
      if (pos_ >= text_.size() || text_[pos_] != ':')
        return fail("expected ':' after the object key \"" + key + "\", found " + describe_here());
      ++pos_;
      skip_ws();
      JsonValue value;
      if (!parse_value(&value, depth)) return false;
      obj.members_.push_back(JsonMember{std::move(key), std::move(value)});
      skip_ws();
      if (pos_ >= text_.size()) return fail("unexpected end of input inside an object (expected ',' or '}')");
      if (text_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (text_[pos_] == '}') {
        ++pos_;
        break;
      }
      return fail("expected ',' or '}' after an object member, found " + describe_here());
    }
    *out = std::move(obj);
    return true;
  }

  bool parse_array(JsonValue* out, int depth) {
    if (depth > kJsonMaxDepth)
      return fail("arrays/objects nested deeper than " + std::to_string(kJsonMaxDepth) + " levels");
    ++pos_;  // '['
    JsonValue arr = JsonValue::make_array();
    skip_ws();
    if (pos_ < text_.size() && text_[pos_] == ']') {
      ++pos_;
      *out = std::move(arr);
      return true;
    }
    for (;;) {
      skip_ws();
      JsonValue value;
      if (!parse_value(&value, depth)) return false;
      arr.items_.push_back(std::move(value));
      skip_ws();
      if (pos_ >= text_.size()) return fail("unexpected end of input inside an array (expected ',' or ']')");
      if (text_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (text_[pos_] == ']') {
        ++pos_;
        break;
      }
      return fail("expected ',' or ']' after an array element, found " + describe_here());
    }
    *out = std::move(arr);
    return true;
  }

  static bool is_digit(char c) { return c >= '0' && c <= '9'; }

  bool parse_number(JsonValue* out) {
    const size_t start = pos_;
    bool integral = true;
    if (text_[pos_] == '-') {
      ++pos_;
      if (consume_literal("Infinity")) {
        *out = JsonValue::make_number(-std::numeric_limits<double>::infinity());
        return true;
      }
    }
    if (pos_ >= text_.size() || !is_digit(text_[pos_]))
      return fail("expected a digit in a number, found " + describe_here());
    if (text_[pos_] == '0') {
      ++pos_;
      if (pos_ < text_.size() && is_digit(text_[pos_]))
        return fail_at(start, "numbers may not have leading zeros");
    } else {
      while (pos_ < text_.size() && is_digit(text_[pos_])) ++pos_;
    }
    if (pos_ < text_.size() && text_[pos_] == '.') {
      integral = false;
      ++pos_;
      if (pos_ >= text_.size() || !is_digit(text_[pos_]))
        return fail("expected a digit after the decimal point, found " + describe_here());
      while (pos_ < text_.size() && is_digit(text_[pos_])) ++pos_;
    }
    if (pos_ < text_.size() && (text_[pos_] == 'e' || text_[pos_] == 'E')) {
      integral = false;
      ++pos_;
      if (pos_ < text_.size() && (text_[pos_] == '+' || text_[pos_] == '-')) ++pos_;
      if (pos_ >= text_.size() || !is_digit(text_[pos_]))
        return fail("expected a digit in the exponent, found " + describe_here());
      while (pos_ < text_.size() && is_digit(text_[pos_])) ++pos_;
    }
    const char* first = text_.data() + start;
    const char* last = text_.data() + pos_;
    double d = 0.0;
    // from_chars is locale-independent (strtod would follow LC_NUMERIC, which a host may change).
    const std::from_chars_result r = std::from_chars(first, last, d);
    if (r.ec != std::errc() || r.ptr != last)
      return fail_at(start, "number '" + std::string(first, last) + "' is out of the range of a double");
    JsonValue v = JsonValue::make_number(d);
    if (integral) {
      int64_t i = 0;
      const std::from_chars_result ri = std::from_chars(first, last, i);
      if (ri.ec == std::errc() && ri.ptr == last) {
        v.has_int_ = true;  // exact, even beyond 2^53
        v.int_ = i;
      } else {
        v.has_int_ = false;  // an integer literal too large for int64
        v.int_ = 0;
      }
    }
    *out = std::move(v);
    return true;
  }

  static void append_utf8(std::string* s, uint32_t cp) {
    if (cp < 0x80) {
      s->push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      s->push_back(static_cast<char>(0xC0 | (cp >> 6)));
      s->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      s->push_back(static_cast<char>(0xE0 | (cp >> 12)));
      s->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      s->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
      s->push_back(static_cast<char>(0xF0 | (cp >> 18)));
      s->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
      s->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      s->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  }

  // Reads the four hex digits after "\u" (pos_ at the first digit).
  bool parse_hex4(uint32_t* out) {
    if (pos_ + 4 > text_.size()) return fail("unexpected end of input in a \\u escape");
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = text_[pos_ + i];
      v <<= 4;
      if (c >= '0' && c <= '9') {
        v |= static_cast<uint32_t>(c - '0');
      } else if (c >= 'a' && c <= 'f') {
        v |= static_cast<uint32_t>(c - 'a' + 10);
      } else if (c >= 'A' && c <= 'F') {
        v |= static_cast<uint32_t>(c - 'A' + 10);
      } else {
        pos_ += i;
        return fail("expected 4 hex digits in a \\u escape, found " + describe_here());
      }
    }
    pos_ += 4;
    *out = v;
    return true;
  }

  // Validates one UTF-8 sequence starting at pos_ (a byte >= 0x80), copies it, advances.
  bool copy_utf8_sequence(std::string* s) {
    const size_t start = pos_;
    const unsigned char c0 = static_cast<unsigned char>(text_[pos_]);
    int len;
    uint32_t cp;
    if (c0 >= 0xC2 && c0 <= 0xDF) {
      len = 2;
      cp = c0 & 0x1F;
    } else if (c0 >= 0xE0 && c0 <= 0xEF) {
      len = 3;
      cp = c0 & 0x0F;
    } else if (c0 >= 0xF0 && c0 <= 0xF4) {
      len = 4;
      cp = c0 & 0x07;
    } else {
      return fail("invalid UTF-8 in a string (" + describe_here() + ")");
    }
    if (start + len > text_.size()) return fail("truncated UTF-8 sequence at the end of input");
    for (int i = 1; i < len; ++i) {
      const unsigned char ci = static_cast<unsigned char>(text_[start + i]);
      if ((ci & 0xC0) != 0x80) {
        pos_ = start + i;
        return fail("invalid UTF-8 in a string (" + describe_here() + " is not a continuation byte)");
      }
      cp = (cp << 6) | (ci & 0x3F);
    }
    const bool overlong = (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000);
    if (overlong || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
      return fail("invalid UTF-8 in a string (overlong form, surrogate or code point past U+10FFFF)");
    s->append(text_.data() + start, static_cast<size_t>(len));
    pos_ = start + len;
    return true;
  }

  bool parse_string(std::string* out) {
    const size_t open = pos_;
    ++pos_;  // opening quote
    std::string s;
    for (;;) {
      if (pos_ >= text_.size()) return fail_at(open, "unterminated string");
      const unsigned char c = static_cast<unsigned char>(text_[pos_]);
      if (c == '"') {
        ++pos_;
        break;
      }
      if (c < 0x20) return fail("unescaped control character (" + describe_here() + ") in a string");
      if (c >= 0x80) {
        if (!copy_utf8_sequence(&s)) return false;
        continue;
      }
      if (c != '\\') {
        s.push_back(static_cast<char>(c));
        ++pos_;
        continue;
      }
      ++pos_;  // backslash
      if (pos_ >= text_.size()) return fail_at(open, "unterminated string");
      const char e = text_[pos_];
      switch (e) {
        case '"': s.push_back('"'); ++pos_; break;
        case '\\': s.push_back('\\'); ++pos_; break;
        case '/': s.push_back('/'); ++pos_; break;
        case 'b': s.push_back('\b'); ++pos_; break;
        case 'f': s.push_back('\f'); ++pos_; break;
        case 'n': s.push_back('\n'); ++pos_; break;
        case 'r': s.push_back('\r'); ++pos_; break;
        case 't': s.push_back('\t'); ++pos_; break;
        case 'u': {
          const size_t esc = pos_ - 1;
          ++pos_;
          uint32_t cp = 0;
          if (!parse_hex4(&cp)) return false;
          if (cp >= 0xDC00 && cp <= 0xDFFF)
            return fail_at(esc, "lone low surrogate \\u" + hex4(cp) + " in a string");
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (text_.substr(pos_, 2) != "\\u")
              return fail_at(esc, "high surrogate \\u" + hex4(cp) + " is not followed by a low surrogate");
            pos_ += 2;
            uint32_t lo = 0;
            if (!parse_hex4(&lo)) return false;
            if (lo < 0xDC00 || lo > 0xDFFF)
              return fail_at(esc, "high surrogate \\u" + hex4(cp) + " is followed by \\u" + hex4(lo) +
                                      ", not a low surrogate");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          }
          append_utf8(&s, cp);
          break;
        }
        default:
          return fail("invalid escape '\\" + std::string(1, e) + "' in a string");
      }
    }
    *out = std::move(s);
    return true;
  }

  static std::string hex4(uint32_t v) {
    static const char* kHex = "0123456789ABCDEF";
    std::string s(4, '0');
    for (int i = 3; i >= 0; --i) {
      s[i] = kHex[v & 15];
      v >>= 4;
    }
    return s;
  }
};

Status parse_json(std::string_view text, JsonValue* out, StatusCode error_code) {
  if (out == nullptr) return Status(StatusCode::kInternal, "parse_json: out is null");
  JsonParser parser(text, error_code);
  return parser.parse(out);
}

}  // namespace nemo
