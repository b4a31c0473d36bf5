// Standalone self-test of the checkpoint loader (json, dtype, mapped_file, safetensors, config, weights).
// Built and run by scripts/native-tests.sh (CMake target nemotron_loader_selftest; CI). By hand, from
// the repository root (the loader needs the GGUF reader, the tensor checks and the thread pool too):
//   g++ -std=c++17 -O1 -pthread -I csrc native-tests/loader_selftest.cc csrc/model/*.cc csrc/core/*.cc
//       -o /tmp/loader_selftest && /tmp/loader_selftest test/fixtures/golden/tiny-a
// It loads the tiny golden checkpoint, prints config fields and a few tensor values, then writes corrupt
// copies under /tmp/nemo_loader_selftest/ and checks that each fails with the right code, printing every
// error message. Exit status 0 when every check passed.
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/json.h"
#include "core/status.h"
#include "model/config.h"
#include "model/mapped_file.h"
#include "model/safetensors.h"
#include "model/weights.h"

using namespace nemo;

namespace {

int g_failures = 0;
int g_checks = 0;
const std::string kTmp = "/tmp/nemo_loader_selftest";

void check(bool cond, const std::string& what) {
  ++g_checks;
  if (!cond) {
    ++g_failures;
    std::printf("  FAIL: %s\n", what.c_str());
  }
}

// Expects an error with `code`; prints the message.
void expect_error(const std::string& name, const Status& st, StatusCode code) {
  ++g_checks;
  if (st.ok()) {
    ++g_failures;
    std::printf("  FAIL %-34s expected %s, got OK\n", name.c_str(), status_code_name(code));
    return;
  }
  const bool good = st.code() == code;
  if (!good) ++g_failures;
  std::printf("  %s %-34s %s: %s\n", good ? "ok  " : "FAIL", name.c_str(), status_code_name(st.code()),
              st.message().c_str());
  if (!good) std::printf("       (expected %s)\n", status_code_name(code));
}

void expect_ok(const std::string& name, const Status& st) {
  ++g_checks;
  if (!st.ok()) {
    ++g_failures;
    std::printf("  FAIL %-34s %s: %s\n", name.c_str(), status_code_name(st.code()), st.message().c_str());
  } else {
    std::printf("  ok   %-34s OK\n", name.c_str());
  }
}

// ---- small file helpers ----

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

void make_dir(const std::string& path) { ::mkdir(path.c_str(), 0755); }

void remove_tree(const std::string& path) {
  // Only ever our own scratch folder.
  if (path.rfind(kTmp, 0) != 0) return;
  const std::string cmd = "rm -rf '" + path + "'";
  if (std::system(cmd.c_str()) != 0) std::printf("  (could not remove %s)\n", path.c_str());
}

// ---- a JSON writer for the test's corrupt headers ----

std::string to_json(const JsonValue& v) {
  switch (v.type()) {
    case JsonValue::Type::kNull: return "null";
    case JsonValue::Type::kBool: return v.bool_value() ? "true" : "false";
    case JsonValue::Type::kNumber: {
      if (v.is_integer()) return std::to_string(v.int_value());
      const double d = v.number_value();
      if (std::isnan(d)) return "NaN";
      if (std::isinf(d)) return d > 0 ? "Infinity" : "-Infinity";
      char buf[40];
      std::snprintf(buf, sizeof(buf), "%.17g", d);
      return buf;
    }
    case JsonValue::Type::kString: {
      std::string s = "\"";
      for (char c : v.string_value()) {
        if (c == '"' || c == '\\') {
          s += '\\';
          s += c;
        } else if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          s += buf;
        } else {
          s += c;
        }
      }
      return s + "\"";
    }
    case JsonValue::Type::kArray: {
      std::string s = "[";
      for (size_t i = 0; i < v.items().size(); ++i) s += (i ? "," : "") + to_json(v.items()[i]);
      return s + "]";
    }
    case JsonValue::Type::kObject: {
      std::string s = "{";
      for (size_t i = 0; i < v.members().size(); ++i)
        s += (i ? "," : "") + to_json(JsonValue::make_string(v.members()[i].key)) + ":" +
             to_json(v.members()[i].value);
      return s + "}";
    }
  }
  return "null";
}

JsonValue ints(std::initializer_list<int64_t> xs) {
  JsonValue a = JsonValue::make_array();
  for (int64_t x : xs) a.push_back(JsonValue::make_number(static_cast<double>(x)));
  return a;
}

std::string le64(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  return s;
}

// A safetensors file from a header text and a data section; the header is padded to 8 bytes.
std::string safetensors_bytes(std::string header_text, const std::string& data) {
  while (header_text.size() % 8 != 0) header_text += ' ';
  return le64(header_text.size()) + header_text + data;
}

// The golden checkpoint, split into its header (as a DOM) and data section.
struct Golden {
  std::string dir;
  std::string config_text;
  JsonValue header;
  std::string data;
};

bool load_golden(const std::string& dir, Golden* g) {
  g->dir = dir;
  g->config_text = read_file(dir + "/config.json");
  const std::string st = read_file(dir + "/model.safetensors");
  if (st.size() < 8 || g->config_text.empty()) return false;
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(st[i]);
  if (!parse_json(std::string_view(st).substr(8, n), &g->header).ok()) return false;
  g->data = st.substr(8 + n);
  return true;
}

// Writes a checkpoint folder kTmp/<name> with the given config text and safetensors bytes.
std::string write_case(const std::string& name, const std::string& config_text, const std::string& st_bytes) {
  const std::string dir = kTmp + "/" + name;
  make_dir(dir);
  write_file(dir + "/config.json", config_text);
  write_file(dir + "/model.safetensors", st_bytes);
  return dir;
}

std::string write_case(const std::string& name, const Golden& g, const JsonValue& header,
                       const std::string& data) {
  return write_case(name, g.config_text, safetensors_bytes(to_json(header), data));
}

Status load(const std::string& dir) {
  NemotronHConfig c;
  ModelWeights w;
  return load_checkpoint(dir, &c, &w);
}

// config.json text with one field replaced (or removed when value_json is empty).
std::string config_with(const Golden& g, const std::string& key, const std::string& value_json) {
  JsonValue c;
  parse_json(g.config_text, &c);
  if (value_json.empty()) {
    c.erase(key);
  } else {
    JsonValue v;
    if (!parse_json(value_json, &v).ok()) std::printf("  (bad test JSON %s)\n", value_json.c_str());
    c.set(key, std::move(v));
  }
  return to_json(c);
}

Status parse_config_text(const std::string& text) {
  NemotronHConfig c;
  return parse_config(text, &c);
}

// ---- sections ----

void test_json() {
  std::printf("\n== JSON ==\n");
  JsonValue v;
  expect_ok("Infinity/-Infinity/NaN", parse_json("[Infinity, -Infinity, NaN, 1e3, -0.5, 12345678901234567]", &v));
  check(v.items().size() == 6, "6 items");
  check(std::isinf(v.items()[0].number_value()) && v.items()[0].number_value() > 0, "Infinity");
  check(std::isinf(v.items()[1].number_value()) && v.items()[1].number_value() < 0, "-Infinity");
  check(std::isnan(v.items()[2].number_value()), "NaN");
  check(v.items()[3].is_integer() && v.items()[3].int_value() == 1000, "1e3 is the integer 1000");
  check(!v.items()[4].is_integer(), "-0.5 is not an integer");
  check(v.items()[5].int_value() == 12345678901234567LL, "big integer literal stays exact");

  expect_ok("escapes + surrogate pair", parse_json(R"({"a":"x\"\\\/\b\f\n\r\t\u00e9\u20ac\ud83d\ude00","b":{}})", &v));
  check(v.find("a") && v.find("a")->string_value() == "x\"\\/\b\f\n\r\t\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80",
        "escapes decode to UTF-8");
  expect_ok("object keeps order/duplicates", parse_json(R"({"z":1,"a":2,"z":3})", &v));
  check(v.members().size() == 3 && v.members()[0].key == "z" && v.members()[1].key == "a" &&
            v.find("z")->int_value() == 1,
        "order kept, find returns the first");
  std::string deep64(64, '['), deep65(65, '[');
  deep64 += std::string(64, ']');
  deep65 += std::string(65, ']');
  expect_ok("depth 64", parse_json(deep64, &v));
  expect_ok("raw UTF-8 in string", parse_json("\"caf\xC3\xA9\"", &v));

  const JsonValue before = JsonValue::make_string("unchanged");
  struct Bad { const char* name; std::string text; };
  const std::vector<Bad> bads = {
      {"empty input", ""},
      {"depth 65", deep65},
      {"trailing comma", "[1, 2,]"},
      {"trailing comma in object", "{\"a\": 1,}"},
      {"missing colon", "{\"a\" 1}"},
      {"unquoted key", "{a: 1}"},
      {"leading zero", "[01]"},
      {"bare minus", "-"},
      {"1.", "1."},
      {"exponent without digits", "1e+"},
      {"number out of range", "1e400"},
      {"single quotes", "'a'"},
      {"comment", "[1] // x"},
      {"trailing garbage", "{} x"},
      {"unterminated string", "\"abc"},
      {"control char in string", "\"a\tb\""},
      {"bad escape", "\"\\x\""},
      {"short \\u", "\"\\u12\""},
      {"lone high surrogate", "\"\\ud83d\""},
      {"lone low surrogate", "\"\\ude00\""},
      {"high + non-low surrogate", "\"\\ud83d\\u0041\""},
      {"invalid UTF-8", "\"\xC3\x28\""},
      {"overlong UTF-8", "\"\xC0\xAF\""},
      {"nan lowercase", "nan"},
      {"-NaN", "-NaN"},
      {"inf", "[Inf]"},
  };
  for (const Bad& b : bads) {
    JsonValue out = before;
    expect_error(std::string("json: ") + b.name, parse_json(b.text, &out), StatusCode::kInvalidConfig);
    check(out.string_value() == "unchanged", std::string(b.name) + ": output untouched on error");
  }
  expect_error("json: caller-chosen code", parse_json("[", &v, StatusCode::kInvalidCheckpoint),
               StatusCode::kInvalidCheckpoint);
}

void test_dtype() {
  std::printf("\n== dtype ==\n");
  const uint16_t bf[3] = {0x3F80, 0xC000, 0x7F80};  // 1, -2, inf
  const uint16_t hf[4] = {0x3C00, 0xC000, 0x0001, 0x7BFF};  // 1, -2, 2^-24, 65504
  const float f32[2] = {1.5f, -0.25f};
  float out[4];
  convert_to_f32(out, bf, DType::BF16, 3);
  check(out[0] == 1.0f && out[1] == -2.0f && std::isinf(out[2]), "bf16 -> f32");
  convert_to_f32(out, hf, DType::F16, 4);
  check(out[0] == 1.0f && out[1] == -2.0f && out[2] == std::ldexp(1.0f, -24) && out[3] == 65504.0f, "f16 -> f32");
  convert_to_f32(out, f32, DType::F32, 2);
  check(out[0] == 1.5f && out[1] == -0.25f, "f32 -> f32");
  // Unaligned source (odd address).
  unsigned char buf[7] = {0, 0x80, 0x3F, 0x00, 0xC0, 0, 0};
  convert_to_f32(out, buf + 1, DType::BF16, 2);
  check(out[0] == 1.0f && out[1] == -2.0f, "unaligned bf16");
  convert_to_f32(out, nullptr, DType::F32, 0);
  std::printf("  dtype conversions checked\n");
}

void test_mapped_file() {
  std::printf("\n== MappedFile ==\n");
  std::shared_ptr<MappedFile> f;
  expect_error("missing file", MappedFile::open(kTmp + "/does-not-exist.bin", &f), StatusCode::kNotFound);
  expect_error("a folder", MappedFile::open(kTmp, &f), StatusCode::kNotFound);
  write_file(kTmp + "/empty.bin", "");
  expect_ok("empty file", MappedFile::open(kTmp + "/empty.bin", &f));
  check(f && f->size() == 0, "empty file has size 0");
  write_file(kTmp + "/five.bin", "hello");
  expect_ok("5-byte file", MappedFile::open(kTmp + "/five.bin", &f));
  check(f && f->size() == 5 && std::memcmp(f->data(), "hello", 5) == 0, "contents mapped");
}

void print_vec(const char* name, const std::vector<float>& v, size_t n) {
  std::printf("  %-28s", name);
  for (size_t i = 0; i < n && i < v.size(); ++i) std::printf(" %.9g", v[i]);
  std::printf("\n");
}

float matrix_at(const MatrixView& m, int64_t r, int64_t c) {
  float f;
  const size_t off = static_cast<size_t>(r * m.cols + c);
  convert_to_f32(&f, static_cast<const unsigned char*>(m.data) + off * dtype_size(m.dtype), m.dtype, 1);
  return f;
}

void test_golden(const std::string& dir) {
  std::printf("\n== golden checkpoint %s ==\n", dir.c_str());
  NemotronHConfig c;
  ModelWeights w;
  const Status st = load_checkpoint(dir, &c, &w);
  expect_ok("load_checkpoint(tiny-a)", st);
  if (!st.ok()) return;
  std::printf("  architecture=%s pattern=%s layers=%lld\n", c.architecture.c_str(),
              c.hybrid_override_pattern.c_str(), static_cast<long long>(c.num_layers()));
  std::printf("  vocab=%lld hidden=%lld intermediate=%lld heads=%lld kv_heads=%lld head_dim=%lld\n",
              (long long)c.vocab_size, (long long)c.hidden_size, (long long)c.intermediate_size,
              (long long)c.num_attention_heads, (long long)c.num_key_value_heads, (long long)c.head_dim);
  std::printf("  mamba_heads=%lld mamba_head_dim=%lld ssm_state=%lld n_groups=%lld conv_kernel=%lld chunk=%lld\n",
              (long long)c.mamba_num_heads, (long long)c.mamba_head_dim, (long long)c.ssm_state_size,
              (long long)c.n_groups, (long long)c.conv_kernel, (long long)c.chunk_size);
  std::printf("  eps=%g time_step_limit=(%g, %g) use_conv_bias=%d tie=%d max_pos=%lld bos=%lld eos=[",
              c.layer_norm_epsilon, c.time_step_limit_min, c.time_step_limit_max, c.use_conv_bias,
              c.tie_word_embeddings, (long long)c.max_position_embeddings, (long long)c.bos_token_id);
  for (size_t i = 0; i < c.eos_token_ids.size(); ++i) std::printf("%s%lld", i ? "," : "", (long long)c.eos_token_ids[i]);
  std::printf("] torch_dtype=%s\n", c.torch_dtype.c_str());
  std::printf("  d_inner=%lld conv_dim=%lld in_proj_dim=%lld q_dim=%lld kv_dim=%lld\n", (long long)c.d_inner(),
              (long long)c.conv_dim(), (long long)c.in_proj_dim(), (long long)c.q_dim(), (long long)c.kv_dim());
  std::printf("  parameter_count=%lld weight_bytes=%lld files=%zu\n", (long long)w.parameter_count,
              (long long)w.weight_bytes, w.files.size());
  check(c.hybrid_override_pattern == "M-M*-M*-" && c.num_layers() == 8, "pattern");
  check(std::isinf(c.time_step_limit_max) && c.time_step_limit_max > 0 && c.time_step_limit_min == 0.0,
        "time_step_limit parsed with Infinity");
  check(c.chunk_size == 16 && c.head_dim == 24 && c.eos_token_ids.size() == 1 && c.eos_token_ids[0] == 5,
        "chunk_size/head_dim/eos");
  check(w.weight_bytes == 553872, "weight_bytes = data section size (553872)");
  check(w.parameter_count == 553872 / 2, "parameter_count = bytes / 2 for BF16");
  check(w.layers.size() == 8 && w.layers[0].kind == BlockKind::kMamba && w.layers[1].kind == BlockKind::kMlp &&
            w.layers[3].kind == BlockKind::kAttention,
        "layer kinds");

  const LayerWeights& L0 = w.layers[0];
  std::printf("  embeddings [%lld, %lld] %s; embeddings[0][0..3] = %.9g %.9g %.9g %.9g\n",
              (long long)w.embeddings.rows, (long long)w.embeddings.cols, dtype_name(w.embeddings.dtype),
              matrix_at(w.embeddings, 0, 0), matrix_at(w.embeddings, 0, 1), matrix_at(w.embeddings, 0, 2),
              matrix_at(w.embeddings, 0, 3));
  std::printf("  lm_head[383][63] = %.9g   layers.3.q_proj[95][63] = %.9g   layers.0.in_proj[455][0] = %.9g\n",
              matrix_at(w.lm_head, 383, 63), matrix_at(w.layers[3].attn.q_proj, 95, 63),
              matrix_at(L0.mamba.in_proj, 455, 0));
  print_vec("layers.0 A = -exp(A_log)", L0.mamba.A, 8);
  print_vec("layers.0 D", L0.mamba.D, 8);
  print_vec("layers.0 dt_bias", L0.mamba.dt_bias, 8);
  print_vec("layers.0 conv_w[0, 0..3]", L0.mamba.conv_w, 4);
  print_vec("layers.0 conv_b[0..3]", L0.mamba.conv_b, 4);
  print_vec("layers.0 mixer.norm[0..3]", L0.mamba.norm_w, 4);
  print_vec("layers.0 norm[0..3]", L0.norm, 4);
  print_vec("norm_f[0..3]", w.norm_f, 4);
  // Expected values read from the file by hand in Python (struct, BF16 -> f32 by << 16); A computed as
  // float32(-exp(A_log)) in double, so it may differ from the f32 exp by an ulp.
  const bool is_tiny_a = dir.size() >= 6 && dir.compare(dir.size() - 6, 6, "tiny-a") == 0;
  if (is_tiny_a) {
    check(matrix_at(w.embeddings, 0, 0) == 0.1728515625f && matrix_at(w.embeddings, 0, 3) == -0.65234375f,
          "embeddings values match Python");
    check(matrix_at(w.lm_head, 383, 63) == -0.337890625f, "lm_head[383][63] matches Python");
    check(matrix_at(w.layers[3].attn.q_proj, 95, 63) == 0.1572265625f, "q_proj value matches Python");
    check(matrix_at(L0.mamba.in_proj, 455, 0) == -0.052978515625f, "in_proj value matches Python");
    const float A_py[8] = {-11.2669649f, -13.804574f, -10.4202394f, -1.07914805f,
                           -12.7671442f, -13.804574f, -13.1724167f, -3.60113835f};
    for (int i = 0; i < 8; ++i)
      check(std::fabs(L0.mamba.A[i] - A_py[i]) <= 2e-6f * std::fabs(A_py[i]), "A matches Python");
    check(L0.mamba.D[1] == 1.2734375f && L0.mamba.dt_bias[2] == -5.0f && L0.mamba.conv_w[3] == -0.03662109375f &&
              L0.mamba.conv_b[2] == -0.01214599609375f && L0.mamba.norm_w[3] == 0.90234375f &&
              L0.norm[3] == 1.0703125f && w.norm_f[3] == 1.078125f,
          "small vectors match Python");
  }
  check(L0.mamba.conv_w.size() == 256 * 4 && L0.mamba.conv_b.size() == 256 && L0.mamba.norm_w.size() == 192,
        "vector sizes");
  for (float a : L0.mamba.A) check(a < 0.0f, "A is negative");

  // Matrices point into the mapping (no copy).
  const uint8_t* base = w.files[0]->data();
  const size_t size = w.files[0]->size();
  const uint8_t* p = static_cast<const uint8_t*>(w.lm_head.data);
  check(p >= base && p < base + size, "lm_head points into the mapping");
  check(w.lm_head.data != w.embeddings.data, "untied lm_head is its own tensor");

  // Everything the loader returns must survive the caller dropping other handles: copy, then destroy.
  ModelWeights moved = std::move(w);
  check(moved.files.size() == 1 && moved.files[0].use_count() == 1, "weights own the mapping");
}

void test_safetensors_corruption(const Golden& g) {
  std::printf("\n== corrupt safetensors ==\n");
  const std::string good = safetensors_bytes(to_json(g.header), g.data);
  const uint64_t data_size = g.data.size();

  expect_error("truncated (5 bytes)", load(write_case("truncated", g.config_text, good.substr(0, 5))),
               StatusCode::kInvalidCheckpoint);
  {
    std::string b = good;
    const std::string len = le64(1ull << 40);
    b.replace(0, 8, len);
    expect_error("header length past EOF", load(write_case("header_past_eof", g.config_text, b)),
                 StatusCode::kInvalidCheckpoint);
  }
  expect_error("truncated inside header", load(write_case("truncated_header", g.config_text, good.substr(0, 100))),
               StatusCode::kInvalidCheckpoint);
  expect_error("header is bad JSON",
               load(write_case("bad_json", g.config_text, safetensors_bytes("{\"a\": [1, 2,}", g.data))),
               StatusCode::kInvalidCheckpoint);
  expect_error("header is an array",
               load(write_case("header_array", g.config_text, safetensors_bytes("[1, 2]", g.data))),
               StatusCode::kInvalidCheckpoint);
  {
    // A sparse file: the header length fits in the file but is over the 100 MB limit.
    const std::string path = kTmp + "/huge.safetensors";
    write_file(path, le64(kSafetensorsMaxHeaderBytes + 8));
    if (::truncate(path.c_str(), static_cast<off_t>(kSafetensorsMaxHeaderBytes + 16)) == 0) {
      std::shared_ptr<MappedFile> f;
      std::vector<TensorInfo> t;
      expect_ok("map sparse 100 MB file", MappedFile::open(path, &f));
      if (f) expect_error("header larger than 100 MB", parse_safetensors(*f, &t), StatusCode::kInvalidCheckpoint);
    }
    ::unlink(path.c_str());
  }

  auto with_entry = [&](const std::string& tensor, const char* key, JsonValue v) {
    JsonValue h = g.header;
    h.find(tensor)->set(key, std::move(v));
    return h;
  };
  const std::string lm = "lm_head.weight";
  expect_error("offsets past the data section",
               load(write_case("offsets_out_of_range", g,
                               with_entry(lm, "data_offsets", ints({504720, (int64_t)data_size + 2})), g.data)),
               StatusCode::kInvalidCheckpoint);
  expect_error("offsets end < begin",
               load(write_case("offsets_reversed", g, with_entry(lm, "data_offsets", ints({553872, 504720})), g.data)),
               StatusCode::kInvalidCheckpoint);
  {
    JsonValue offs = JsonValue::make_array();
    offs.push_back(JsonValue::make_number(504720.5));
    offs.push_back(JsonValue::make_number(553872));
    expect_error("offsets not integers",
                 load(write_case("offsets_float", g, with_entry(lm, "data_offsets", offs), g.data)),
                 StatusCode::kInvalidCheckpoint);
    expect_error("offsets wrong length",
                 load(write_case("offsets_3", g, with_entry(lm, "data_offsets", ints({1, 2, 3})), g.data)),
                 StatusCode::kInvalidCheckpoint);
  }
  // D (16 bytes at 49168) moved onto A_log's bytes (16 bytes at 49152).
  expect_error("overlapping tensors",
               load(write_case("overlap", g,
                               with_entry("backbone.layers.0.mixer.D", "data_offsets", ints({49160, 49176})), g.data)),
               StatusCode::kInvalidCheckpoint);
  expect_error("nbytes != shape * dtype",
               load(write_case("nbytes", g, with_entry("backbone.layers.0.mixer.in_proj.weight", "shape", ints({455, 64})),
                               g.data)),
               StatusCode::kInvalidCheckpoint);
  expect_error("unsupported dtype I8",
               load(write_case("dtype_i8", g,
                               with_entry("backbone.layers.0.mixer.A_log", "dtype", JsonValue::make_string("I8")), g.data)),
               StatusCode::kInvalidCheckpoint);
  expect_error("dtype not a string",
               load(write_case("dtype_num", g,
                               with_entry("backbone.layers.0.mixer.A_log", "dtype", JsonValue::make_number(3)), g.data)),
               StatusCode::kInvalidCheckpoint);
  expect_error("negative shape",
               load(write_case("shape_neg", g, with_entry("backbone.norm_f.weight", "shape", ints({-64})), g.data)),
               StatusCode::kInvalidCheckpoint);
  {
    JsonValue h = g.header;
    h.members().push_back(JsonMember{"backbone.norm_f.weight", *g.header.find("backbone.norm_f.weight")});
    expect_error("duplicate tensor name", load(write_case("duplicate", g, h, g.data)), StatusCode::kInvalidCheckpoint);
  }
  {
    JsonValue h = g.header;
    h.set("backbone.layers.0.mixer.A_log", JsonValue::make_string("oops"));
    expect_error("tensor entry not an object", load(write_case("entry_string", g, h, g.data)),
                 StatusCode::kInvalidCheckpoint);
  }
  {
    // Header with only __metadata__ parses to zero tensors; the loader then misses the embeddings.
    std::vector<TensorInfo> t;
    const std::string b = safetensors_bytes("{\"__metadata__\":{\"format\":\"pt\"}}", "");
    expect_ok("metadata-only header parses",
              parse_safetensors(reinterpret_cast<const uint8_t*>(b.data()), b.size(), "meta.safetensors", &t));
    check(t.empty(), "no tensors");
  }
}

void test_binding_errors(const Golden& g) {
  std::printf("\n== tensor binding ==\n");
  const std::string in_proj = "backbone.layers.0.mixer.in_proj.weight";
  {
    JsonValue h = g.header;
    h.find(in_proj)->set("shape", ints({64, 456}));  // same bytes, transposed
    expect_error("wrong shape (transposed in_proj)", load(write_case("wrong_shape", g, h, g.data)),
                 StatusCode::kTensorMismatch);
  }
  {
    JsonValue h = g.header;
    h.find("backbone.layers.3.mixer.q_proj.weight")->set("shape", ints({48, 128}));
    expect_error("wrong shape (q_proj)", load(write_case("wrong_shape_q", g, h, g.data)), StatusCode::kTensorMismatch);
  }
  {
    JsonValue h = g.header;
    h.erase("backbone.layers.2.mixer.in_proj.weight");
    expect_error("missing tensor", load(write_case("missing", g, h, g.data)), StatusCode::kTensorMismatch);
  }
  {
    JsonValue h = g.header;
    h.erase("lm_head.weight");
    expect_error("missing lm_head (untied)", load(write_case("missing_lm_head", g, h, g.data)),
                 StatusCode::kTensorMismatch);
    const std::string dir = write_case("tied", config_with(g, "tie_word_embeddings", "true"),
                                       safetensors_bytes(to_json(h), g.data));
    NemotronHConfig c;
    ModelWeights w;
    expect_ok("tied, lm_head absent", load_checkpoint(dir, &c, &w));
    check(w.lm_head.data == w.embeddings.data && w.lm_head.rows == 384, "tied lm_head = embeddings");
  }
  // Extra tensors: appended data so nothing overlaps.
  auto add_tensor = [&](JsonValue h, const std::string& name, std::initializer_list<int64_t> shape, int64_t nbytes,
                        std::string* data) {
    JsonValue e = JsonValue::make_object();
    e.set("dtype", JsonValue::make_string("BF16"));
    e.set("shape", ints(shape));
    e.set("data_offsets", ints({(int64_t)data->size(), (int64_t)data->size() + nbytes}));
    data->append(static_cast<size_t>(nbytes), '\0');
    h.set(name, std::move(e));
    return h;
  };
  {
    std::string data = g.data;
    JsonValue h = add_tensor(g.header, "backbone.layers.1.mixer.q_proj.weight", {96, 64}, 96 * 64 * 2, &data);
    expect_error("q_proj on an MLP layer", load(write_case("extra_q_on_mlp", g, h, data)), StatusCode::kTensorMismatch);
  }
  {
    std::string data = g.data;
    JsonValue h = add_tensor(g.header, "backbone.layers.0.mixer.gate_proj.weight", {4, 4}, 32, &data);
    expect_error("extra tensor in a layer", load(write_case("extra_gate", g, h, data)), StatusCode::kTensorMismatch);
  }
  {
    std::string data = g.data;
    JsonValue h = add_tensor(g.header, "backbone.layers.8.norm.weight", {64}, 128, &data);
    expect_error("extra layer past the pattern", load(write_case("extra_layer", g, h, data)),
                 StatusCode::kTensorMismatch);
  }
  {
    std::string data = g.data;
    JsonValue h = add_tensor(g.header, "backbone.rotary_emb.inv_freq", {12}, 24, &data);
    h = add_tensor(h, "backbone.extra2", {2}, 4, &data);
    expect_error("extra top-level tensors", load(write_case("extra_top", g, h, data)), StatusCode::kTensorMismatch);
  }
  expect_error("conv1d.bias with use_conv_bias=false",
               load(write_case("no_conv_bias", config_with(g, "use_conv_bias", "false"),
                               safetensors_bytes(to_json(g.header), g.data))),
               StatusCode::kTensorMismatch);
  {
    // use_conv_bias=false and no bias tensors: loads, conv_b all zero.
    JsonValue h = g.header;
    for (int i : {0, 2, 5}) h.erase("backbone.layers." + std::to_string(i) + ".mixer.conv1d.bias");
    const std::string dir = write_case("no_conv_bias_ok", config_with(g, "use_conv_bias", "false"),
                                       safetensors_bytes(to_json(h), g.data));
    NemotronHConfig c;
    ModelWeights w;
    expect_ok("use_conv_bias=false, no bias", load_checkpoint(dir, &c, &w));
    check(w.layers.size() == 8 && w.layers[0].mamba.conv_b.size() == 256 && w.layers[0].mamba.conv_b[0] == 0.0f,
          "conv_b zeros");
  }
  {
    // Pattern and weights disagree: layer 1 declared '*' but holds MLP tensors.
    const std::string dir = write_case("pattern_disagrees", config_with(g, "hybrid_override_pattern", "\"M*M*-M*-\""),
                                       safetensors_bytes(to_json(g.header), g.data));
    expect_error("pattern says '*', weights say '-'", load(dir), StatusCode::kTensorMismatch);
  }
  {
    // Config sizes disagree with the weights.
    const std::string dir = write_case("config_hidden", config_with(g, "intermediate_size", "128"),
                                       safetensors_bytes(to_json(g.header), g.data));
    expect_error("intermediate_size disagrees", load(dir), StatusCode::kTensorMismatch);
  }
}

void test_name_variants(const Golden& g, const NemotronHConfig& ref_c, int64_t ref_params) {
  std::printf("\n== name variants, dtypes, shards ==\n");
  (void)ref_c;
  {
    // model. prefix, embedding.weight, conv1d [C, K], an mtp.* tensor, A_log stored as F32.
    JsonValue h = JsonValue::make_object();
    std::string data = g.data;
    for (const JsonMember& m : g.header.members()) {
      std::string name = m.key;
      JsonValue e = m.value;
      if (name.rfind("backbone.", 0) == 0) name = "model." + name.substr(9);
      if (name == "model.embeddings.weight") name = "model.embedding.weight";
      if (name.find("conv1d.weight") != std::string::npos) e.set("shape", ints({256, 4}));
      if (name == "model.layers.0.mixer.A_log") {
        // Re-store as F32 at the end of the data section.
        const JsonValue* offs = m.value.find("data_offsets");
        const size_t begin = static_cast<size_t>(offs->items()[0].int_value());
        std::string f32;
        for (int i = 0; i < 8; ++i) {
          uint16_t b;
          std::memcpy(&b, g.data.data() + begin + 2 * i, 2);
          const float f = bf16_to_f32(b);
          f32.append(reinterpret_cast<const char*>(&f), 4);
        }
        e.set("dtype", JsonValue::make_string("F32"));
        e.set("data_offsets", ints({(int64_t)data.size(), (int64_t)data.size() + 32}));
        data += f32;
      }
      h.members().push_back(JsonMember{name, e});
    }
    JsonValue mtp = JsonValue::make_object();
    mtp.set("dtype", JsonValue::make_string("BF16"));
    mtp.set("shape", ints({2}));
    mtp.set("data_offsets", ints({(int64_t)data.size(), (int64_t)data.size() + 4}));
    data.append(4, '\0');
    h.set("mtp.layers.0.norm.weight", mtp);
    NemotronHConfig c;
    ModelWeights w, ref;
    NemotronHConfig rc;
    load_checkpoint(g.dir, &rc, &ref);
    expect_ok("model. prefix / embedding / [C,K] / mtp / F32",
              load_checkpoint(write_case("variants", g, h, data), &c, &w));
    if (!w.layers.empty()) {
      check(w.layers[0].mamba.A == ref.layers[0].mamba.A, "F32 A_log gives the same A");
      check(w.layers[0].mamba.conv_w == ref.layers[0].mamba.conv_w, "[C,K] conv weight == [C,1,K]");
      check(w.parameter_count == ref_params, "mtp tensor not counted");
    }
    // A missing tensor in a model.-prefixed checkpoint is named with model.
    h.erase("model.norm_f.weight");
    expect_error("missing, model. prefix", load(write_case("variants_missing", g, h, data)), StatusCode::kTensorMismatch);
    // Both spellings of the embeddings present.
    JsonValue h2 = g.header;
    std::string data2 = g.data;
    JsonValue emb = *g.header.find("backbone.embeddings.weight");
    emb.set("data_offsets", ints({(int64_t)data2.size(), (int64_t)data2.size() + 49152}));
    data2.append(49152, '\0');
    h2.set("backbone.embedding.weight", emb);
    expect_error("embedding + embeddings", load(write_case("two_embeddings", g, h2, data2)), StatusCode::kTensorMismatch);
  }
  {
    // Two shards + index.
    const std::string dir = kTmp + "/sharded";
    make_dir(dir);
    write_file(dir + "/config.json", g.config_text);
    JsonValue h1 = JsonValue::make_object(), h2 = JsonValue::make_object();
    JsonValue wm = JsonValue::make_object();
    for (const JsonMember& m : g.header.members()) {
      if (m.key == "__metadata__") continue;
      const bool second = m.key.find("layers.5") != std::string::npos || m.key.find("layers.6") != std::string::npos ||
                          m.key.find("layers.7") != std::string::npos || m.key.find("norm_f") != std::string::npos ||
                          m.key == "lm_head.weight";
      (second ? h2 : h1).set(m.key, m.value);
      wm.set(m.key, JsonValue::make_string(second ? "model-00002-of-00002.safetensors" : "model-00001-of-00002.safetensors"));
    }
    write_file(dir + "/model-00001-of-00002.safetensors", safetensors_bytes(to_json(h1), g.data));
    write_file(dir + "/model-00002-of-00002.safetensors", safetensors_bytes(to_json(h2), g.data));
    JsonValue index = JsonValue::make_object();
    JsonValue meta = JsonValue::make_object();
    meta.set("total_size", JsonValue::make_number(553872));
    index.set("metadata", meta);
    index.set("weight_map", wm);
    write_file(dir + "/model.safetensors.index.json", to_json(index));
    NemotronHConfig c;
    ModelWeights w;
    expect_ok("sharded checkpoint", load_checkpoint(dir, &c, &w));
    check(w.files.size() == 2 && w.parameter_count == ref_params, "two files, same parameter count");

    ::unlink((dir + "/model-00002-of-00002.safetensors").c_str());
    expect_error("missing shard", load(dir), StatusCode::kNotFound);
    // Index naming a tensor in the wrong shard.
    write_file(dir + "/model-00002-of-00002.safetensors", safetensors_bytes(to_json(h2), g.data));
    index.find("weight_map")->set("lm_head.weight", JsonValue::make_string("model-00001-of-00002.safetensors"));
    write_file(dir + "/model.safetensors.index.json", to_json(index));
    expect_error("index names the wrong shard", load(dir), StatusCode::kTensorMismatch);
    write_file(dir + "/model.safetensors.index.json", "{\"metadata\": {}}");
    expect_error("index without weight_map", load(dir), StatusCode::kInvalidCheckpoint);
    write_file(dir + "/model.safetensors.index.json", "{\"weight_map\": {\"a\": \"../x.safetensors\"}}");
    expect_error("index escapes the folder", load(dir), StatusCode::kInvalidCheckpoint);
    // Same tensor in both shards.
    write_file(dir + "/model-00002-of-00002.safetensors", safetensors_bytes(to_json(h1), g.data));
    index.find("weight_map")->set("lm_head.weight", JsonValue::make_string("model-00002-of-00002.safetensors"));
    write_file(dir + "/model.safetensors.index.json", to_json(index));
    expect_error("tensor stored in two shards", load(dir), StatusCode::kInvalidCheckpoint);
  }
}

void test_config(const Golden& g) {
  std::printf("\n== config.json ==\n");
  NemotronHConfig c;
  expect_ok("golden config", parse_config(g.config_text, &c));
  check(std::isinf(c.time_step_limit_max), "Infinity parsed in time_step_limit");

  struct Case { const char* name; std::string text; StatusCode code; };
  const StatusCode kIC = StatusCode::kInvalidConfig, kUM = StatusCode::kUnsupportedModel;
  const std::vector<Case> cases = {
      {"'E' in pattern without n_routed_experts", config_with(g, "hybrid_override_pattern", "\"M-ME*-M*\""), kIC},
      {"unknown pattern char", config_with(g, "hybrid_override_pattern", "\"M-M|*-M*\""), kUM},
      {"other architecture", config_with(g, "architectures", "[\"LlamaForCausalLM\"]"), kUM},
      {"architectures not a list", config_with(g, "architectures", "\"NemotronHForCausalLM\""), kIC},
      {"num_hidden_layers != pattern", config_with(g, "num_hidden_layers", "9"), kIC},
      {"missing hidden_size", config_with(g, "hidden_size", ""), kIC},
      {"missing pattern", config_with(g, "hybrid_override_pattern", ""), kIC},
      {"hidden_size is a string", config_with(g, "hidden_size", "\"64\""), kIC},
      {"hidden_size is 64.5", config_with(g, "hidden_size", "64.5"), kIC},
      {"vocab_size is 0", config_with(g, "vocab_size", "0"), kIC},
      {"vocab_size is negative", config_with(g, "vocab_size", "-5"), kIC},
      {"hidden_size huge", config_with(g, "hidden_size", "1000000000000"), kIC},
      {"n_groups does not divide heads", config_with(g, "n_groups", "3"), kIC},
      {"kv heads do not divide heads", config_with(g, "num_key_value_heads", "3"), kIC},
      {"conv_kernel is 0", config_with(g, "conv_kernel", "0"), kIC},
      {"chunk_size is 0", config_with(g, "chunk_size", "0"), kIC},
      {"eps disagrees with alias", config_with(g, "rms_norm_eps", "1e-6"), kIC},
      {"time_step_limit NaN", config_with(g, "time_step_limit", "[0.0, NaN]"), kIC},
      {"time_step_limit reversed", config_with(g, "time_step_limit", "[0.1, 0.01]"), kIC},
      {"time_step_limit 3 items", config_with(g, "time_step_limit", "[0, 1, 2]"), kIC},
      {"use_conv_bias is a string", config_with(g, "use_conv_bias", "\"yes\""), kIC},
      {"eos_token_id list with string", config_with(g, "eos_token_id", "[2, \"x\"]"), kIC},
      {"layers_block_type with moe disagrees with the pattern",
       config_with(g, "layers_block_type", "[\"mamba\",\"mlp\",\"mamba\",\"attention\",\"moe\",\"mamba\",\"attention\",\"mlp\"]"),
       kIC},
      {"layers_block_type disagrees",
       config_with(g, "layers_block_type", "[\"mamba\",\"mlp\",\"mamba\",\"mlp\",\"mlp\",\"mamba\",\"attention\",\"mlp\"]"),
       kIC},
      {"config not an object", "[1, 2]", kIC},
      {"config bad JSON", "{\"hidden_size\": 64,,}", kIC},
      {"duplicate key", "{\"hidden_size\": 64, \"hidden_size\": 64}", kIC},
      {"empty config", "", kIC},
  };
  for (const Case& k : cases) expect_error("config: " + std::string(k.name), parse_config_text(k.text), k.code);

  // Accepted variants.
  {
    JsonValue j;
    parse_json(g.config_text, &j);
    j.erase("hybrid_override_pattern");
    j.erase("n_groups");
    j.erase("conv_kernel");
    j.erase("chunk_size");
    j.erase("head_dim");
    j.erase("time_step_limit");
    j.erase("layer_norm_epsilon");
    j.erase("torch_dtype");
    JsonValue lbt;
    parse_json(R"(["mamba","mlp","linear_attention","full_attention","mlp","mamba","attention","mlp"])", &lbt);
    j.set("layers_block_type", lbt);
    j.set("mamba_n_groups", JsonValue::make_number(2));
    j.set("mamba_d_conv", JsonValue::make_number(4));
    j.set("attention_head_dim", JsonValue::make_number(24));
    JsonValue dtl;
    parse_json("[0.001, 0.1]", &dtl);
    j.set("mamba_dt_limit", dtl);
    j.set("dtype", JsonValue::make_string("bfloat16"));
    JsonValue eos;
    parse_json("[2, 11]", &eos);
    j.set("eos_token_id", eos);
    NemotronHConfig v;
    expect_ok("aliases + layers_block_type", parse_config(to_json(j), &v));
    check(v.hybrid_override_pattern == "M-M*-M*-" && v.n_groups == 2 && v.conv_kernel == 4 && v.chunk_size == 128 &&
              v.head_dim == 24 && v.time_step_limit_min == 0.001 && v.time_step_limit_max == 0.1 &&
              v.layer_norm_epsilon == 1e-5 && v.torch_dtype == "bfloat16" && v.eos_token_ids.size() == 2,
          "aliases and defaults applied");
    j.erase("attention_head_dim");
    expect_ok("head_dim default", parse_config(to_json(j), &v));
    check(v.head_dim == 16, "head_dim defaults to hidden/heads = 64/4");
    j.set("rms_norm_eps", JsonValue::make_number(1e-5));  // equal to layer_norm_epsilon default? (absent there)
    j.erase("architectures");
    expect_ok("no architectures, model_type nemotron_h", parse_config(to_json(j), &v));
    j.set("model_type", JsonValue::make_string("mamba2"));
    expect_error("config: no architectures, model_type mamba2", parse_config(to_json(j), &v), kUM);
    j.erase("model_type");
    expect_error("config: no architectures, no model_type", parse_config(to_json(j), &v), kIC);
  }
  // Errors leave the output untouched.
  NemotronHConfig untouched;
  untouched.hidden_size = 77;
  parse_config("[", &untouched);
  check(untouched.hidden_size == 77, "config output untouched on error");
}

void test_folder_errors(const Golden& g) {
  std::printf("\n== folder ==\n");
  expect_error("folder does not exist", load(kTmp + "/no-such-folder"), StatusCode::kNotFound);
  write_file(kTmp + "/plain-file", "x");
  expect_error("path is a file", load(kTmp + "/plain-file"), StatusCode::kNotFound);
  make_dir(kTmp + "/no_config");
  write_file(kTmp + "/no_config/model.safetensors", safetensors_bytes(to_json(g.header), g.data));
  expect_error("missing config.json", load(kTmp + "/no_config"), StatusCode::kNotFound);
  make_dir(kTmp + "/no_weights");
  write_file(kTmp + "/no_weights/config.json", g.config_text);
  expect_error("no weight files", load(kTmp + "/no_weights"), StatusCode::kNotFound);
  make_dir(kTmp + "/config_bad");
  write_file(kTmp + "/config_bad/config.json", "{\n  \"hidden_size\": 64\n  \"vocab_size\": 1\n}");
  expect_error("config.json bad JSON", load(kTmp + "/config_bad"), StatusCode::kInvalidConfig);
  {
    NemotronHConfig c;
    c.hidden_size = 5;
    ModelWeights w;
    w.parameter_count = 9;
    load_checkpoint(kTmp + "/no_weights", &c, &w);
    check(c.hidden_size == 5 && w.parameter_count == 9, "outputs untouched on error");
  }
}

}  // namespace

int main(int argc, char** argv) {
  const std::string golden_dir = argc > 1 ? argv[1] : "test/fixtures/golden/tiny-a";
  remove_tree(kTmp);
  make_dir(kTmp);

  test_json();
  test_dtype();
  test_mapped_file();

  Golden g;
  if (!load_golden(golden_dir, &g)) {
    std::printf("cannot read the golden checkpoint in %s\n", golden_dir.c_str());
    return 2;
  }
  test_golden(golden_dir);
  NemotronHConfig ref_c;
  ModelWeights ref_w;
  load_checkpoint(golden_dir, &ref_c, &ref_w);
  test_config(g);
  test_safetensors_corruption(g);
  test_binding_errors(g);
  test_name_variants(g, ref_c, ref_w.parameter_count);
  test_folder_errors(g);

  // Every mapping of a scratch file was released (on the error paths too); only the golden one is held.
  {
    std::ifstream maps("/proc/self/maps");
    std::string line;
    int held = 0;
    while (std::getline(maps, line))
      if (line.find(kTmp) != std::string::npos) ++held;
    check(held == 0, "no scratch file is still mapped");
  }

  remove_tree(kTmp);
  std::printf("\n%d checks, %d failed\n", g_checks, g_failures);
  return g_failures == 0 ? 0 : 1;
}
