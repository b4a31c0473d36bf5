// config.json -> NemotronHConfig (architecture.md §1). Every message starts with "config.json: " and
// names the field(s) and the value(s) involved.
#include "model/config.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <unordered_set>
#include <utility>

#include "core/json.h"

namespace nemo {
namespace {

// Sizes above this are not a real model and would overflow the derived products.
constexpr int64_t kMaxSize = int64_t{1} << 26;
// Largest Mamba chunk_size accepted (HF and Megatron use 128; the scan is tested for 1 to 256).
constexpr int64_t kMaxChunkSize = 256;

Status invalid(const std::string& what) {
  return Status(StatusCode::kInvalidConfig, "config.json: " + what);
}
Status unsupported(const std::string& what) {
  return Status(StatusCode::kUnsupportedModel, "config.json: " + what);
}

std::string format_number(double d) {
  if (std::isnan(d)) return "NaN";
  if (std::isinf(d)) return d > 0 ? "Infinity" : "-Infinity";
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.17g", d);
  // Prefer the shortest form that round-trips.
  for (int prec = 1; prec <= 17; ++prec) {
    char tmp[32];
    std::snprintf(tmp, sizeof(tmp), "%.*g", prec, d);
    if (std::strtod(tmp, nullptr) == d) return tmp;
  }
  return buf;
}

// A short rendering of a JSON value for messages: 64, "abc", [0, Infinity], an object, ...
std::string describe(const JsonValue& v) {
  switch (v.type()) {
    case JsonValue::Type::kNull: return "null";
    case JsonValue::Type::kBool: return v.bool_value() ? "true" : "false";
    case JsonValue::Type::kNumber:
      return v.is_integer() ? std::to_string(v.int_value()) : format_number(v.number_value());
    case JsonValue::Type::kString: {
      std::string s = v.string_value();
      if (s.size() > 60) s = s.substr(0, 57) + "...";
      return "\"" + s + "\"";
    }
    case JsonValue::Type::kArray: {
      std::string s = "[";
      for (size_t i = 0; i < v.items().size(); ++i) {
        if (i == 6) { s += ", ..."; break; }
        if (i) s += ", ";
        s += describe(v.items()[i]);
      }
      return s + "]";
    }
    case JsonValue::Type::kObject: return "an object";
  }
  return "?";
}

bool json_equal(const JsonValue& a, const JsonValue& b) {
  if (a.type() != b.type()) return false;
  switch (a.type()) {
    case JsonValue::Type::kNull: return true;
    case JsonValue::Type::kBool: return a.bool_value() == b.bool_value();
    case JsonValue::Type::kNumber:
      return a.number_value() == b.number_value() ||
             (std::isnan(a.number_value()) && std::isnan(b.number_value()));
    case JsonValue::Type::kString: return a.string_value() == b.string_value();
    case JsonValue::Type::kArray:
      if (a.items().size() != b.items().size()) return false;
      for (size_t i = 0; i < a.items().size(); ++i)
        if (!json_equal(a.items()[i], b.items()[i])) return false;
      return true;
    case JsonValue::Type::kObject:
      if (a.members().size() != b.members().size()) return false;
      for (size_t i = 0; i < a.members().size(); ++i)
        if (a.members()[i].key != b.members()[i].key ||
            !json_equal(a.members()[i].value, b.members()[i].value))
          return false;
      return true;
  }
  return false;
}

// One config field, looked up under its name and its legacy alias. `value` is null when the field is
// absent or JSON null (HF writes null for unset optional fields); `key` is the name it was found under.
struct Field {
  std::string key;
  const JsonValue* value = nullptr;
};

class Reader {
 public:
  explicit Reader(const JsonValue& root) : root_(root) {}

  Status lookup(const char* key, const char* alias, Field* out) const {
    const JsonValue* a = present(root_.find(key));
    const JsonValue* b = alias ? present(root_.find(alias)) : nullptr;
    out->key = key;
    out->value = a;
    if (a == nullptr && b != nullptr) {
      out->key = alias;
      out->value = b;
    }
    if (a != nullptr && b != nullptr && !json_equal(*a, *b))
      return invalid(std::string("'") + key + "' (" + describe(*a) + ") and its alias '" + alias + "' (" +
                     describe(*b) + ") disagree");
    return Status::Ok();
  }

  // An integer field. Absent: required -> error, else *out keeps its default. Present: must be an
  // integer in [min_value, kMaxSize].
  Status read_int(const char* key, const char* alias, bool required, int64_t min_value, int64_t* out,
                  bool* found = nullptr) const {
    Field f;
    NEMO_RETURN_IF_ERROR(lookup(key, alias, &f));
    if (found) *found = f.value != nullptr;
    if (f.value == nullptr) {
      if (required) return missing(key, alias);
      return Status::Ok();
    }
    if (!f.value->is_integer())
      return invalid("field '" + f.key + "' must be an integer, found " + type_and_value(*f.value));
    const int64_t v = f.value->int_value();
    if (v < min_value)
      return invalid("field '" + f.key + "' is " + std::to_string(v) + "; it must be " +
                     (min_value == 1 ? std::string("positive") : ">= " + std::to_string(min_value)));
    if (v > kMaxSize)
      return invalid("field '" + f.key + "' is " + std::to_string(v) + ", implausibly large (limit " +
                     std::to_string(kMaxSize) + ")");
    *out = v;
    return Status::Ok();
  }

  Status read_bool(const char* key, bool* out) const {
    Field f;
    NEMO_RETURN_IF_ERROR(lookup(key, nullptr, &f));
    if (f.value == nullptr) return Status::Ok();
    if (!f.value->is_bool())
      return invalid("field '" + f.key + "' must be true or false, found " + type_and_value(*f.value));
    *out = f.value->bool_value();
    return Status::Ok();
  }

  static Status missing(const char* key, const char* alias) {
    std::string msg = std::string("missing required field '") + key + "'";
    if (alias) msg += std::string(" (or its alias '") + alias + "')";
    return invalid(msg);
  }

  static std::string type_and_value(const JsonValue& v) {
    if (v.is_object()) return "an object";
    return std::string(v.type_name()) + " " + describe(v);
  }

 private:
  static const JsonValue* present(const JsonValue* v) { return (v == nullptr || v->is_null()) ? nullptr : v; }
  const JsonValue& root_;
};

// An activation field: absent means the HF default, which is what the engine runs.
Status check_activation(const Reader& r, const char* key, std::initializer_list<const char*> allowed) {
  Field f;
  NEMO_RETURN_IF_ERROR(r.lookup(key, nullptr, &f));
  if (f.value == nullptr) return Status::Ok();
  std::string names;
  for (const char* a : allowed) {
    if (f.value->is_string() && f.value->string_value() == a) return Status::Ok();
    names += std::string(names.empty() ? "\"" : ", \"") + a + "\"";
  }
  return unsupported(std::string("field '") + key + "' is " + Reader::type_and_value(*f.value) +
                     "; this engine implements " + names + " only");
}

std::string char_for_message(char c) {
  const unsigned char u = static_cast<unsigned char>(c);
  if (u >= 0x20 && u < 0x7f) return std::string("'") + c + "'";
  char buf[8];
  std::snprintf(buf, sizeof(buf), "0x%02x", u);
  return std::string("byte ") + buf;
}

// Validates the pattern characters: M, * and - only.
Status check_pattern(const std::string& pattern) {
  if (pattern.empty()) return invalid("hybrid_override_pattern is empty; the model needs at least one layer");
  for (size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c == 'M' || c == '*' || c == '-' || c == 'E') continue;
    return unsupported("hybrid_override_pattern has unknown block kind " + char_for_message(c) +
                       " at position " + std::to_string(i) +
                       " (supported: 'M' Mamba-2, '*' attention, '-' MLP, 'E' mixture of experts)");
  }
  return Status::Ok();
}

// The newer HF form: "layers_block_type": ["mamba", "mlp", "attention", ...] -> "M-*...".
Status pattern_from_block_types(const JsonValue& list, std::string* out) {
  if (!list.is_array())
    return invalid(std::string("field 'layers_block_type' must be an array of strings, found ") +
                   Reader::type_and_value(list));
  std::string p;
  for (size_t i = 0; i < list.items().size(); ++i) {
    const JsonValue& e = list.items()[i];
    if (!e.is_string())
      return invalid("layers_block_type[" + std::to_string(i) + "] must be a string, found " +
                     Reader::type_and_value(e));
    const std::string& s = e.string_value();
    if (s == "mamba" || s == "linear_attention") {
      p += 'M';
    } else if (s == "attention" || s == "full_attention") {
      p += '*';
    } else if (s == "mlp") {
      p += '-';
    } else if (s == "moe") {
      p += 'E';
    } else {
      return unsupported("layers_block_type[" + std::to_string(i) + "] is \"" + s +
                         "\", an unknown block kind (supported: mamba/linear_attention, "
                         "attention/full_attention, mlp, moe)");
    }
  }
  *out = std::move(p);
  return Status::Ok();
}

// The MoE fields (HF NemotronHConfig: n_routed_experts, num_experts_per_tok, moe_intermediate_size,
// moe_shared_expert_intermediate_size, n_shared_experts, n_group, topk_group, norm_topk_prob,
// routed_scaling_factor, moe_latent_size). Required sizes only when the pattern has an 'E'; present
// fields are always checked.
Status read_moe(const Reader& r, bool has_moe, NemotronHConfig* c) {
  NEMO_RETURN_IF_ERROR(r.read_int("n_routed_experts", nullptr, has_moe, 1, &c->n_routed_experts));
  NEMO_RETURN_IF_ERROR(r.read_int("num_experts_per_tok", nullptr, has_moe, 1, &c->num_experts_per_tok));
  NEMO_RETURN_IF_ERROR(r.read_int("moe_intermediate_size", nullptr, has_moe, 1, &c->moe_intermediate_size));
  // HF's NemotronHMoE builds one shared expert, moe_shared_expert_intermediate_size wide, whatever
  // n_shared_experts says (Megatron's shared width already counts them all); 0 here means none.
  int64_t n_shared = 1;
  NEMO_RETURN_IF_ERROR(r.read_int("n_shared_experts", nullptr, false, 0, &n_shared));
  // 0 (a shared expert of no width) is accepted as no shared expert
  NEMO_RETURN_IF_ERROR(r.read_int("moe_shared_expert_intermediate_size", nullptr, has_moe && n_shared > 0, 0,
                                  &c->moe_shared_expert_intermediate_size));
  if (n_shared == 0) c->moe_shared_expert_intermediate_size = 0;
  NEMO_RETURN_IF_ERROR(r.read_int("n_group", nullptr, false, 1, &c->n_group));
  NEMO_RETURN_IF_ERROR(r.read_int("topk_group", nullptr, false, 1, &c->topk_group));
  NEMO_RETURN_IF_ERROR(r.read_bool("norm_topk_prob", &c->norm_topk_prob));
  Field sf;
  NEMO_RETURN_IF_ERROR(r.lookup("routed_scaling_factor", nullptr, &sf));
  if (sf.value != nullptr) {
    if (!sf.value->is_number() || !std::isfinite(sf.value->number_value()) || sf.value->number_value() <= 0.0)
      return invalid("field 'routed_scaling_factor' must be a positive finite number, found " +
                     Reader::type_and_value(*sf.value));
    c->routed_scaling_factor = sf.value->number_value();
  }
  Field latent;
  NEMO_RETURN_IF_ERROR(r.lookup("moe_latent_size", nullptr, &latent));
  if (latent.value != nullptr)
    return unsupported("field 'moe_latent_size' is " + Reader::type_and_value(*latent.value) +
                       ": latent MoE projections (fc1_latent_proj / fc2_latent_proj, Nemotron-3 Super) are not "
                       "supported");
  Field scoring;
  NEMO_RETURN_IF_ERROR(r.lookup("scoring_func", nullptr, &scoring));
  if (scoring.value != nullptr && !(scoring.value->is_string() && scoring.value->string_value() == "sigmoid"))
    return unsupported("field 'scoring_func' is " + Reader::type_and_value(*scoring.value) +
                       "; Nemotron-H MoE routing is \"sigmoid\" only");
  if (!has_moe) return Status::Ok();
  const std::string E = std::to_string(c->n_routed_experts);
  if (c->num_experts_per_tok > c->n_routed_experts)
    return invalid("num_experts_per_tok (" + std::to_string(c->num_experts_per_tok) +
                   ") is larger than n_routed_experts (" + E + ")");
  if (c->n_routed_experts % c->n_group != 0)
    return invalid("n_routed_experts (" + E + ") is not divisible by n_group (" + std::to_string(c->n_group) + ")");
  if (c->topk_group > c->n_group)
    return invalid("topk_group (" + std::to_string(c->topk_group) + ") is larger than n_group (" +
                   std::to_string(c->n_group) + ")");
  const int64_t per_group = c->n_routed_experts / c->n_group;
  if (c->n_group > 1 && per_group < 2)
    return invalid("n_group (" + std::to_string(c->n_group) + ") leaves " + std::to_string(per_group) +
                   " expert per group; group scores are the sum of each group's top 2 experts");
  if (c->num_experts_per_tok > c->topk_group * per_group)
    return invalid("num_experts_per_tok (" + std::to_string(c->num_experts_per_tok) + ") is larger than the " +
                   std::to_string(c->topk_group * per_group) + " experts of the topk_group (" +
                   std::to_string(c->topk_group) + ") groups a token may use");
  return Status::Ok();
}

}  // namespace

Status parse_config(const std::string& json_text, NemotronHConfig* out) {
  if (out == nullptr) return Status(StatusCode::kInternal, "parse_config: out is null");
  JsonValue root;
  Status st = parse_json(json_text, &root, StatusCode::kInvalidConfig);
  if (!st.ok()) return invalid(st.message());
  if (!root.is_object())
    return invalid(std::string("the top level is a JSON ") + root.type_name() + ", expected an object");
  {
    std::unordered_set<std::string> keys;
    for (const JsonMember& m : root.members())
      if (!keys.insert(m.key).second) return invalid("key '" + m.key + "' appears more than once");
  }
  const Reader r(root);
  NemotronHConfig c;

  // --- architecture ---
  Field arch;
  NEMO_RETURN_IF_ERROR(r.lookup("architectures", nullptr, &arch));
  if (arch.value != nullptr) {
    if (!arch.value->is_array())
      return invalid("field 'architectures' must be an array of strings, found " +
                     Reader::type_and_value(*arch.value));
    bool ok = false;
    for (const JsonValue& a : arch.value->items()) {
      if (!a.is_string())
        return invalid("field 'architectures' must be an array of strings, found " + describe(*arch.value));
      if (a.string_value() == "NemotronHForCausalLM") ok = true;
    }
    if (!ok)
      return unsupported("architectures is " + describe(*arch.value) +
                         "; only NemotronHForCausalLM (Nemotron-H / Nemotron Nano 2) is supported");
    // A config naming our class but another model_type was edited or converted wrongly: refuse it too.
    Field mt;
    NEMO_RETURN_IF_ERROR(r.lookup("model_type", nullptr, &mt));
    if (mt.value != nullptr && (!mt.value->is_string() || mt.value->string_value() != "nemotron_h"))
      return unsupported("model_type is " + describe(*mt.value) +
                         "; NemotronHForCausalLM checkpoints have model_type \"nemotron_h\"");
  } else {
    // No architectures list: accept the model_type HF would map to NemotronHForCausalLM.
    Field mt;
    NEMO_RETURN_IF_ERROR(r.lookup("model_type", nullptr, &mt));
    if (mt.value == nullptr) return Reader::missing("architectures", nullptr);
    if (!mt.value->is_string() || mt.value->string_value() != "nemotron_h")
      return unsupported("no 'architectures' and model_type is " + describe(*mt.value) +
                         "; only NemotronHForCausalLM (model_type \"nemotron_h\") is supported");
  }
  c.architecture = "NemotronHForCausalLM";

  // --- layer pattern ---
  Field pat, blocks;
  NEMO_RETURN_IF_ERROR(r.lookup("hybrid_override_pattern", nullptr, &pat));
  NEMO_RETURN_IF_ERROR(r.lookup("layers_block_type", nullptr, &blocks));
  if (pat.value != nullptr) {
    if (!pat.value->is_string())
      return invalid("field 'hybrid_override_pattern' must be a string, found " +
                     Reader::type_and_value(*pat.value));
    c.hybrid_override_pattern = pat.value->string_value();
    NEMO_RETURN_IF_ERROR(check_pattern(c.hybrid_override_pattern));
    if (blocks.value != nullptr) {
      std::string from_blocks;
      NEMO_RETURN_IF_ERROR(pattern_from_block_types(*blocks.value, &from_blocks));
      if (from_blocks != c.hybrid_override_pattern)
        return invalid("hybrid_override_pattern \"" + c.hybrid_override_pattern +
                       "\" and layers_block_type (as a pattern \"" + from_blocks + "\") disagree");
    }
  } else if (blocks.value != nullptr) {
    NEMO_RETURN_IF_ERROR(pattern_from_block_types(*blocks.value, &c.hybrid_override_pattern));
    NEMO_RETURN_IF_ERROR(check_pattern(c.hybrid_override_pattern));
  } else {
    return invalid("missing required field 'hybrid_override_pattern' (or 'layers_block_type')");
  }
  for (char ch : c.hybrid_override_pattern) c.layers.push_back(static_cast<BlockKind>(ch));
  const std::string& p = c.hybrid_override_pattern;
  const bool has_mamba = p.find('M') != std::string::npos;
  const bool has_attn = p.find('*') != std::string::npos;
  const bool has_mlp = p.find('-') != std::string::npos;
  const bool has_moe = p.find('E') != std::string::npos;

  Field nl;
  NEMO_RETURN_IF_ERROR(r.lookup("num_hidden_layers", nullptr, &nl));
  if (nl.value != nullptr) {
    if (!nl.value->is_integer())
      return invalid("field 'num_hidden_layers' must be an integer, found " +
                     Reader::type_and_value(*nl.value));
    if (nl.value->int_value() != static_cast<int64_t>(p.size()))
      return invalid("num_hidden_layers is " + std::to_string(nl.value->int_value()) +
                     " but hybrid_override_pattern \"" + p + "\" has " + std::to_string(p.size()) +
                     " layers");
  }

  // --- sizes ---
  // A field is required when a block kind in the pattern uses it; a present field is always checked.
  NEMO_RETURN_IF_ERROR(r.read_int("vocab_size", nullptr, true, 1, &c.vocab_size));
  NEMO_RETURN_IF_ERROR(r.read_int("hidden_size", nullptr, true, 1, &c.hidden_size));
  NEMO_RETURN_IF_ERROR(r.read_int("intermediate_size", nullptr, has_mlp, 1, &c.intermediate_size));
  NEMO_RETURN_IF_ERROR(r.read_int("num_attention_heads", nullptr, has_attn, 1, &c.num_attention_heads));
  bool kv_found = false;
  NEMO_RETURN_IF_ERROR(
      r.read_int("num_key_value_heads", nullptr, false, 1, &c.num_key_value_heads, &kv_found));
  if (!kv_found) c.num_key_value_heads = c.num_attention_heads;  // HF convention: absent = no GQA
  bool hd_found = false;
  NEMO_RETURN_IF_ERROR(r.read_int("head_dim", "attention_head_dim", false, 1, &c.head_dim, &hd_found));
  if (!hd_found && c.num_attention_heads > 0) {
    if (c.hidden_size % c.num_attention_heads != 0)
      return invalid("no head_dim (or attention_head_dim) given, and hidden_size " +
                     std::to_string(c.hidden_size) + " is not divisible by num_attention_heads " +
                     std::to_string(c.num_attention_heads));
    c.head_dim = c.hidden_size / c.num_attention_heads;
  }
  NEMO_RETURN_IF_ERROR(r.read_int("mamba_num_heads", nullptr, has_mamba, 1, &c.mamba_num_heads));
  NEMO_RETURN_IF_ERROR(r.read_int("mamba_head_dim", nullptr, has_mamba, 1, &c.mamba_head_dim));
  NEMO_RETURN_IF_ERROR(r.read_int("ssm_state_size", nullptr, has_mamba, 1, &c.ssm_state_size));
  NEMO_RETURN_IF_ERROR(r.read_int("n_groups", "mamba_n_groups", has_mamba, 1, &c.n_groups));
  NEMO_RETURN_IF_ERROR(r.read_int("conv_kernel", "mamba_d_conv", has_mamba, 1, &c.conv_kernel));
  NEMO_RETURN_IF_ERROR(r.read_int("chunk_size", "mamba_chunk_size", false, 1, &c.chunk_size));
  // The scan's chunk only sets rounding; sizes beyond those its tests cover (test/ssd-kernels.test.ts)
  // would also make its per-chunk products (chunk² floats per group) unbounded.
  if (c.chunk_size > kMaxChunkSize)
    return invalid("field 'chunk_size' is " + std::to_string(c.chunk_size) +
                   "; the SSD scan handles chunks of 1 to " + std::to_string(kMaxChunkSize) + " tokens");
  NEMO_RETURN_IF_ERROR(
      r.read_int("max_position_embeddings", nullptr, false, 1, &c.max_position_embeddings));

  // --- floats ---
  Field eps;
  NEMO_RETURN_IF_ERROR(r.lookup("layer_norm_epsilon", "rms_norm_eps", &eps));
  if (eps.value != nullptr) {
    if (!eps.value->is_number())
      return invalid("field '" + eps.key + "' must be a number, found " + Reader::type_and_value(*eps.value));
    const double e = eps.value->number_value();
    if (!(e > 0.0) || !std::isfinite(e))
      return invalid("field '" + eps.key + "' is " + describe(*eps.value) +
                     "; it must be a positive finite number");
    c.layer_norm_epsilon = e;
  }
  Field tsl;
  NEMO_RETURN_IF_ERROR(r.lookup("time_step_limit", "mamba_dt_limit", &tsl));
  if (tsl.value != nullptr) {
    const JsonValue& v = *tsl.value;
    if (!v.is_array() || v.size() != 2 || !v.items()[0].is_number() || !v.items()[1].is_number())
      return invalid("field '" + tsl.key + "' must be [min, max] numbers, found " +
                     Reader::type_and_value(v));
    const double lo = v.items()[0].number_value(), hi = v.items()[1].number_value();
    if (std::isnan(lo) || std::isnan(hi) || lo < 0.0 || lo > hi)
      return invalid("field '" + tsl.key + "' is " + describe(v) +
                     "; it must be [min, max] with 0 <= min <= max (max may be Infinity)");
    c.time_step_limit_min = lo;
    c.time_step_limit_max = hi;
  }

  // --- flags, tokens, dtype ---
  NEMO_RETURN_IF_ERROR(r.read_bool("use_conv_bias", &c.use_conv_bias));
  NEMO_RETURN_IF_ERROR(r.read_bool("tie_word_embeddings", &c.tie_word_embeddings));
  Field bos;
  NEMO_RETURN_IF_ERROR(r.lookup("bos_token_id", nullptr, &bos));
  if (bos.value != nullptr) {
    if (!bos.value->is_integer() || bos.value->int_value() < 0)
      return invalid("field 'bos_token_id' must be a non-negative integer, found " +
                     Reader::type_and_value(*bos.value));
    c.bos_token_id = bos.value->int_value();
  }
  Field eos;
  NEMO_RETURN_IF_ERROR(r.lookup("eos_token_id", nullptr, &eos));
  if (eos.value != nullptr) {
    const char* what = "field 'eos_token_id' must be a non-negative integer or a list of them, found ";
    if (eos.value->is_array()) {
      for (const JsonValue& e : eos.value->items()) {
        if (!e.is_integer() || e.int_value() < 0) return invalid(what + Reader::type_and_value(*eos.value));
        c.eos_token_ids.push_back(e.int_value());
      }
    } else if (eos.value->is_integer() && eos.value->int_value() >= 0) {
      c.eos_token_ids.push_back(eos.value->int_value());
    } else {
      return invalid(what + Reader::type_and_value(*eos.value));
    }
  }
  Field dt;
  NEMO_RETURN_IF_ERROR(r.lookup("torch_dtype", "dtype", &dt));  // transformers >= 4.56 writes "dtype"
  if (dt.value != nullptr) {
    if (!dt.value->is_string())
      return invalid("field '" + dt.key + "' must be a string, found " + Reader::type_and_value(*dt.value));
    c.torch_dtype = dt.value->string_value();
  }

  // --- token ids the vocabulary must hold (an id beyond it could never be fed or sampled) ---
  if (c.bos_token_id >= c.vocab_size)
    return invalid("field 'bos_token_id' is " + std::to_string(c.bos_token_id) +
                   ", outside the vocabulary (vocab_size " + std::to_string(c.vocab_size) + ")");
  for (int64_t id : c.eos_token_ids)
    if (id >= c.vocab_size)
      return invalid("field 'eos_token_id' holds " + std::to_string(id) +
                     ", outside the vocabulary (vocab_size " + std::to_string(c.vocab_size) + ")");

  // --- what the forward pass implements: relu² MLPs, SiLU Mamba gates, no projection biases ---
  NEMO_RETURN_IF_ERROR(check_activation(r, "mlp_hidden_act", {"relu2"}));
  NEMO_RETURN_IF_ERROR(check_activation(r, "mamba_hidden_act", {"silu", "swish"}));
  for (const char* key : {"attention_bias", "mlp_bias", "use_bias", "mamba_proj_bias"}) {
    bool on = false;
    NEMO_RETURN_IF_ERROR(r.read_bool(key, &on));
    if (on)
      return unsupported(std::string("field '") + key +
                         "' is true: this engine runs no biases on those projections (none of NVIDIA's "
                         "Nemotron-H checkpoints has them)");
  }

  // --- quantization: ModelOpt FP8 (E4M3 weights with scales) only ---
  Field quant;
  NEMO_RETURN_IF_ERROR(r.lookup("quantization_config", nullptr, &quant));
  if (quant.value != nullptr) {
    if (!quant.value->is_object())
      return invalid("field 'quantization_config' must be an object, found " + Reader::type_and_value(*quant.value));
    const JsonValue* method = quant.value->find("quant_method");
    const JsonValue* algo = quant.value->find("quant_algo");
    const bool modelopt = method != nullptr && method->is_string() && method->string_value() == "modelopt";
    const bool fp8 = algo != nullptr && algo->is_string() && algo->string_value() == "FP8";
    if (!modelopt || !fp8)
      return unsupported("quantization_config has quant_method " + (method ? describe(*method) : std::string("(none)")) +
                         " and quant_algo " + (algo ? describe(*algo) : std::string("(none)")) +
                         "; this engine reads ModelOpt FP8 (\"modelopt\", \"FP8\") checkpoints only (or GGUF files)");
  }

  // --- mixture of experts (HF NemotronHMoE); see read_moe ---
  NEMO_RETURN_IF_ERROR(read_moe(r, has_moe, &c));

  // --- consistency ---
  if (has_mamba && c.mamba_num_heads % c.n_groups != 0)
    return invalid("mamba_num_heads (" + std::to_string(c.mamba_num_heads) +
                   ") is not divisible by n_groups (" + std::to_string(c.n_groups) + ")");
  if (has_attn && c.num_attention_heads % c.num_key_value_heads != 0)
    return invalid("num_attention_heads (" + std::to_string(c.num_attention_heads) +
                   ") is not divisible by num_key_value_heads (" +
                   std::to_string(c.num_key_value_heads) + ")");
  if (has_attn && c.head_dim <= 0)
    return invalid("head_dim must be positive, found " + std::to_string(c.head_dim));

  *out = std::move(c);
  return Status::Ok();
}

const char* block_kind_name(BlockKind k) {
  switch (k) {
    case BlockKind::kMamba: return "Mamba-2";
    case BlockKind::kAttention: return "attention";
    case BlockKind::kMlp: return "MLP";
    case BlockKind::kMoe: return "MoE";
  }
  return "?";
}

}  // namespace nemo
