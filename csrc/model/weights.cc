// load_checkpoint: config.json + model.safetensors (or its shards) -> NemotronHConfig + ModelWeights.
//
// Steps: read and parse config.json; map every weight file and parse its header; normalise the tensor
// names (sanitize); bind each tensor the pattern asks for, checking its shape against the config; then
// reject anything left over. Nothing is written to the caller's structs until every check passed.
#include "model/weights.h"

#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "core/json.h"
#include "core/thread_pool.h"
#include "model/gguf.h"
#include "model/mapped_file.h"
#include "model/safetensors.h"

namespace nemo {
namespace {

std::string join_path(const std::string& dir, const std::string& name) {
  if (dir.empty()) return name;
  if (dir.back() == '/') return dir + name;
  return dir + "/" + name;
}

bool is_regular_file(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
}

Status mismatch(const std::string& what) { return Status(StatusCode::kTensorMismatch, what); }

// Renames applied before binding (mlx-lm `sanitize`, vLLM WeightsMapper): `backbone.` / `model.` prefixes
// go, `embedding.weight` becomes `embeddings.weight`; `lm_head.weight` is already top-level. Returns false
// for tensors that are dropped: the multi-token-prediction head `mtp.*` (Nemotron-3), unused here.
bool normalize_name(const std::string& raw, std::string* out) {
  std::string_view n = raw;
  if (starts_with(n, "backbone.")) {
    n.remove_prefix(9);
  } else if (starts_with(n, "model.")) {
    n.remove_prefix(6);
  }
  if (starts_with(n, "mtp.")) return false;
  if (n == "embedding.weight") n = "embeddings.weight";
  *out = std::string(n);
  return true;
}

// "layers.12.mixer.q_proj.weight" -> 12 and "mixer.q_proj.weight"; false for other names.
bool split_layer_name(const std::string& name, int64_t* layer, std::string* rest) {
  if (!starts_with(name, "layers.")) return false;
  size_t i = 7;
  int64_t v = 0;
  const size_t digits_begin = i;
  while (i < name.size() && name[i] >= '0' && name[i] <= '9') {
    if (v > (int64_t{1} << 40)) return false;
    v = v * 10 + (name[i] - '0');
    ++i;
  }
  if (i == digits_begin || i >= name.size() || name[i] != '.') return false;
  *layer = v;
  *rest = name.substr(i + 1);
  return true;
}

// Which block kind owns a tensor "mixer.<suffix>"; false when no kind does.
bool mixer_tensor_kind(const std::string& rest, BlockKind* kind) {
  // MoE: mixer.gate.*, mixer.experts.* (per expert, or HF's fused 3-D experts.up_proj/down_proj),
  // mixer.shared_experts.*
  if (starts_with(rest, "mixer.gate.") || starts_with(rest, "mixer.experts.") ||
      starts_with(rest, "mixer.shared_experts.")) {
    *kind = BlockKind::kMoe;
    return true;
  }
  static const char* kMamba[] = {"mixer.in_proj.weight", "mixer.conv1d.weight", "mixer.conv1d.bias",
                                 "mixer.A_log",          "mixer.D",             "mixer.dt_bias",
                                 "mixer.norm.weight",    "mixer.out_proj.weight"};
  static const char* kAttn[] = {"mixer.q_proj.weight", "mixer.k_proj.weight", "mixer.v_proj.weight",
                                "mixer.o_proj.weight"};
  static const char* kMlp[] = {"mixer.up_proj.weight", "mixer.down_proj.weight"};
  for (const char* s : kMamba)
    if (rest == s) { *kind = BlockKind::kMamba; return true; }
  for (const char* s : kAttn)
    if (rest == s) { *kind = BlockKind::kAttention; return true; }
  for (const char* s : kMlp)
    if (rest == s) { *kind = BlockKind::kMlp; return true; }
  return false;
}

struct Entry {
  TensorInfo info;   // info.name is the name as stored
  std::string file;  // the file it came from, for messages
  bool used = false;
};

// Reads one weight file's tensors into `entries` (normalised name -> entry).
class TensorTable {
 public:
  std::unordered_map<std::string, Entry> entries;
  std::string prefix;  // "backbone." or "model.": how this checkpoint spells its names, for messages
  std::unordered_map<std::string, std::string> raw_file;  // stored name -> file, across shards

  Status add_file(const MappedFile& file, const std::string& file_label) {
    std::vector<TensorInfo> tensors;
    NEMO_RETURN_IF_ERROR(parse_safetensors(file, &tensors));
    for (TensorInfo& t : tensors) {
      auto ins = raw_file.emplace(t.name, file_label);
      if (!ins.second)
        return Status(StatusCode::kInvalidCheckpoint, "tensor '" + t.name + "' is stored twice, in " +
                                                          ins.first->second + " and in " + file_label);
      if (prefix.empty()) {
        if (starts_with(t.name, "backbone.")) prefix = "backbone.";
        else if (starts_with(t.name, "model.")) prefix = "model.";
      }
      std::string norm;
      if (!normalize_name(t.name, &norm)) continue;
      auto it = entries.find(norm);
      if (it != entries.end())
        return mismatch("tensors '" + it->second.info.name + "' and '" + t.name + "' both stand for '" +
                        norm + "'; keep only one of them");
      Entry e;
      e.file = file_label;
      e.info = std::move(t);
      entries.emplace(std::move(norm), std::move(e));
    }
    return Status::Ok();
  }

  // The name a missing tensor would have in this checkpoint.
  std::string display_name(const std::string& norm) const {
    if (norm == "lm_head.weight") return norm;
    return (prefix.empty() ? std::string("backbone.") : prefix) + norm;
  }
};

// Binds expected tensors, checking shapes; counts what it binds.
class Binder {
 public:
  Binder(TensorTable* table, ModelWeights* w) : t_(table), w_(w) {}

  // `note` explains where the expectation comes from, e.g. "layer 3 is 'M'", for missing tensors;
  // `why` explains the expected shape from the config.
  Status find(const std::string& norm, const std::string& note, Entry** out) {
    auto it = t_->entries.find(norm);
    if (it == t_->entries.end())
      return mismatch("missing tensor '" + t_->display_name(norm) + "'" +
                      (note.empty() ? "" : " (" + note + ")"));
    *out = &it->second;
    return Status::Ok();
  }

  Status check_shape(const Entry& e, const std::vector<std::vector<int64_t>>& accepted,
                     const std::string& why) {
    for (const auto& s : accepted)
      if (e.info.shape == s) return Status::Ok();
    std::string expected = shape_to_string(accepted[0]);
    for (size_t i = 1; i < accepted.size(); ++i) expected += " or " + shape_to_string(accepted[i]);
    return mismatch("tensor '" + e.info.name + "' has shape " + shape_to_string(e.info.shape) +
                    ", expected " + expected + " (from config: " + why + ")");
  }

  void count(Entry* e) {
    e->used = true;
    w_->parameter_count += e->info.numel();
    w_->weight_bytes += static_cast<int64_t>(e->info.nbytes);
  }

  Status matrix(const std::string& norm, int64_t rows, int64_t cols, const std::string& why,
                const std::string& note, MatrixView* out) {
    Entry* e = nullptr;
    NEMO_RETURN_IF_ERROR(find(norm, note, &e));
    NEMO_RETURN_IF_ERROR(check_shape(*e, {{rows, cols}}, why));
    if (e->info.dtype == DType::F8_E4M3) return fp8_matrix(norm, e, rows, cols, out);
    out->data = e->info.data;
    out->dtype = e->info.dtype;
    out->rows = rows;
    out->cols = cols;
    count(e);
    return Status::Ok();
  }

  // A small tensor converted to f32; any of the `accepted` shapes (all with the same element count).
  Status vec(const std::string& norm, const std::vector<std::vector<int64_t>>& accepted,
             const std::string& why, const std::string& note, std::vector<float>* out) {
    Entry* e = nullptr;
    NEMO_RETURN_IF_ERROR(find(norm, note, &e));
    NEMO_RETURN_IF_ERROR(check_shape(*e, accepted, why));
    const size_t n = static_cast<size_t>(e->info.numel());
    out->assign(n, 0.0f);
    convert_to_f32(out->data(), e->info.data, e->info.dtype, n);
    count(e);
    if (e->info.dtype == DType::F8_E4M3) {  // an FP8 router: values times their scale, in f32
      std::vector<float> scale;
      const int64_t rows = e->info.shape.empty() ? 1 : e->info.shape[0];
      NEMO_RETURN_IF_ERROR(fp8_scale(norm, *e, rows, &scale));
      const size_t per_row = n / static_cast<size_t>(rows);
      for (size_t i = 0; i < n; ++i) (*out)[i] *= scale.size() == 1 ? scale[0] : scale[i / per_row];
    }
    return Status::Ok();
  }

  // The weight_scale of an FP8 tensor `<name>.weight` (`<name>.weight_scale`: one value, or one per row),
  // as f32. Its `<name>.input_scale` (the activation scale of FP8 matmuls) is accepted and not used: the
  // engine keeps activations unquantized.
  Status fp8_scale(const std::string& norm, const Entry& e, int64_t rows, std::vector<float>* out) {
    const std::string suffix = ".weight";
    if (norm.size() <= suffix.size() || norm.compare(norm.size() - suffix.size(), suffix.size(), suffix) != 0)
      return mismatch("tensor '" + e.info.name + "' is F8_E4M3 but not a '.weight': no scale can apply to it");
    const std::string base = norm.substr(0, norm.size() - suffix.size());
    Entry* s = nullptr;
    NEMO_RETURN_IF_ERROR(find(base + ".weight_scale", "tensor '" + e.info.name + "' is F8_E4M3 (ModelOpt FP8)", &s));
    NEMO_RETURN_IF_ERROR(check_shape(*s, {{}, {1}, {rows}, {rows, 1}},
                                     "one scale for the tensor, or one per its " + std::to_string(rows) + " rows"));
    if (s->info.dtype == DType::F8_E4M3) return mismatch("tensor '" + s->info.name + "' (a scale) is F8_E4M3");
    out->assign(static_cast<size_t>(s->info.numel()), 0.0f);
    convert_to_f32(out->data(), s->info.data, s->info.dtype, out->size());
    for (float v : *out)
      if (!std::isfinite(v) || v <= 0.0f)
        return mismatch("tensor '" + s->info.name + "' holds " + std::to_string(v) + "; FP8 scales are positive");
    count(s);
    auto in = t_->entries.find(base + ".input_scale");
    if (in != t_->entries.end()) in->second.used = true;
    return Status::Ok();
  }

  // An FP8 matrix: an exact BF16 copy of its E4M3 values, with its scale applied to the product's output.
  Status fp8_matrix(const std::string& norm, Entry* e, int64_t rows, int64_t cols, MatrixView* out) {
    std::vector<float> scale;
    NEMO_RETURN_IF_ERROR(fp8_scale(norm, *e, rows, &scale));
    std::vector<uint16_t> copy(static_cast<size_t>(rows * cols));
    const uint8_t* p = static_cast<const uint8_t*>(e->info.data);
    for (size_t i = 0; i < copy.size(); ++i) copy[i] = f32_to_bf16(f8_e4m3_to_f32(p[i]));  // exact
    w_->owned_bf16.push_back(std::move(copy));
    out->data = w_->owned_bf16.back().data();
    out->dtype = DType::BF16;
    out->rows = rows;
    out->cols = cols;
    if (scale.size() == 1) {
      out->scale = scale[0];
    } else {
      w_->owned_f32.push_back(std::move(scale));
      out->row_scales = w_->owned_f32.back().data();
    }
    w_->has_scaled_matrices = true;
    count(e);
    return Status::Ok();
  }

 private:
  TensorTable* t_;
  ModelWeights* w_;
};

std::string num(int64_t v) { return std::to_string(v); }

// Layer i's kind as the pattern says, against the kinds of the mixer tensors stored for layer i.
Status check_layer_kind(const TensorTable& table, int64_t i, BlockKind kind,
                        const std::unordered_map<int64_t, std::vector<std::string>>& by_layer) {
  auto it = by_layer.find(i);
  if (it == by_layer.end()) return Status::Ok();
  for (const std::string& norm : it->second) {
    int64_t layer = 0;
    std::string rest;
    BlockKind stored;
    if (!split_layer_name(norm, &layer, &rest) || !mixer_tensor_kind(rest, &stored)) continue;
    if (stored != kind)
      return mismatch("layer " + num(i) + " is '" + std::string(1, static_cast<char>(kind)) + "' (" +
                      block_kind_name(kind) + ") in hybrid_override_pattern, but the checkpoint has '" +
                      table.entries.at(norm).info.name + "', a tensor of a '" +
                      std::string(1, static_cast<char>(stored)) + "' (" + block_kind_name(stored) +
                      ") layer: the pattern and the weights disagree");
  }
  return Status::Ok();
}

Status bind_layer(Binder* b, const NemotronHConfig& c, int64_t i, LayerWeights* L) {
  const std::string pre = "layers." + num(i) + ".";
  const char k = static_cast<char>(c.layers[static_cast<size_t>(i)]);
  const std::string note = "layer " + num(i) + " is '" + std::string(1, k) + "'";
  const std::string H = num(c.hidden_size);
  L->kind = c.layers[static_cast<size_t>(i)];
  NEMO_RETURN_IF_ERROR(b->vec(pre + "norm.weight", {{c.hidden_size}}, "hidden_size = " + H, note, &L->norm));

  switch (L->kind) {
    case BlockKind::kMamba: {
      MambaWeights& m = L->mamba;
      const int64_t di = c.d_inner(), cd = c.conv_dim(), nh = c.mamba_num_heads, K = c.conv_kernel;
      const std::string s_di = "d_inner = mamba_num_heads * mamba_head_dim = " + num(nh) + " * " +
                               num(c.mamba_head_dim) + " = " + num(di);
      const std::string s_cd = "conv_dim = d_inner + 2 * n_groups * ssm_state_size = " + num(di) + " + 2 * " +
                               num(c.n_groups) + " * " + num(c.ssm_state_size) + " = " + num(cd);
      const std::string s_in = "d_inner + conv_dim + mamba_num_heads = " + num(di) + " + " + num(cd) +
                               " + " + num(nh) + " = " + num(c.in_proj_dim()) + ", hidden_size = " + H;
      NEMO_RETURN_IF_ERROR(
          b->matrix(pre + "mixer.in_proj.weight", c.in_proj_dim(), c.hidden_size, s_in, note, &m.in_proj));
      NEMO_RETURN_IF_ERROR(b->vec(pre + "mixer.conv1d.weight", {{cd, 1, K}, {cd, K}},
                                  s_cd + ", conv_kernel = " + num(K), note, &m.conv_w));
      if (c.use_conv_bias) {
        NEMO_RETURN_IF_ERROR(b->vec(pre + "mixer.conv1d.bias", {{cd}}, s_cd, note + ", use_conv_bias is true",
                                    &m.conv_b));
      } else {
        m.conv_b.assign(static_cast<size_t>(cd), 0.0f);
      }
      const std::string s_nh = "mamba_num_heads = " + num(nh);
      NEMO_RETURN_IF_ERROR(b->vec(pre + "mixer.A_log", {{nh}}, s_nh, note, &m.A));
      for (float& a : m.A) a = -std::exp(a);  // A = -exp(A_log), in f32 as the reference does
      NEMO_RETURN_IF_ERROR(b->vec(pre + "mixer.D", {{nh}}, s_nh, note, &m.D));
      NEMO_RETURN_IF_ERROR(b->vec(pre + "mixer.dt_bias", {{nh}}, s_nh, note, &m.dt_bias));
      NEMO_RETURN_IF_ERROR(b->vec(pre + "mixer.norm.weight", {{di}}, s_di, note, &m.norm_w));
      NEMO_RETURN_IF_ERROR(b->matrix(pre + "mixer.out_proj.weight", c.hidden_size, di,
                                     "hidden_size = " + H + ", " + s_di, note, &m.out_proj));
      break;
    }
    case BlockKind::kAttention: {
      AttentionWeights& a = L->attn;
      const std::string s_q = "num_attention_heads * head_dim = " + num(c.num_attention_heads) + " * " +
                              num(c.head_dim) + " = " + num(c.q_dim());
      const std::string s_kv = "num_key_value_heads * head_dim = " + num(c.num_key_value_heads) + " * " +
                               num(c.head_dim) + " = " + num(c.kv_dim());
      NEMO_RETURN_IF_ERROR(b->matrix(pre + "mixer.q_proj.weight", c.q_dim(), c.hidden_size,
                                     s_q + ", hidden_size = " + H, note, &a.q_proj));
      NEMO_RETURN_IF_ERROR(b->matrix(pre + "mixer.k_proj.weight", c.kv_dim(), c.hidden_size,
                                     s_kv + ", hidden_size = " + H, note, &a.k_proj));
      NEMO_RETURN_IF_ERROR(b->matrix(pre + "mixer.v_proj.weight", c.kv_dim(), c.hidden_size,
                                     s_kv + ", hidden_size = " + H, note, &a.v_proj));
      NEMO_RETURN_IF_ERROR(b->matrix(pre + "mixer.o_proj.weight", c.hidden_size, c.q_dim(),
                                     "hidden_size = " + H + ", " + s_q, note, &a.o_proj));
      break;
    }
    case BlockKind::kMlp: {
      MlpWeights& p = L->mlp;
      const std::string I = num(c.intermediate_size);
      NEMO_RETURN_IF_ERROR(b->matrix(pre + "mixer.up_proj.weight", c.intermediate_size, c.hidden_size,
                                     "intermediate_size = " + I + ", hidden_size = " + H, note, &p.up_proj));
      NEMO_RETURN_IF_ERROR(b->matrix(pre + "mixer.down_proj.weight", c.hidden_size, c.intermediate_size,
                                     "hidden_size = " + H + ", intermediate_size = " + I, note,
                                     &p.down_proj));
      break;
    }
    case BlockKind::kMoe: {
      MoeWeights& m = L->moe;
      const int64_t E = c.n_routed_experts, I = c.moe_intermediate_size, S = c.moe_shared_expert_intermediate_size;
      const std::string sE = "n_routed_experts = " + num(E), sI = "moe_intermediate_size = " + num(I);
      NEMO_RETURN_IF_ERROR(b->vec(pre + "mixer.gate.weight", {{E, c.hidden_size}}, sE + ", hidden_size = " + H, note,
                                  &m.router_w));
      m.router = MatrixView{m.router_w.data(), DType::F32, E, c.hidden_size};
      NEMO_RETURN_IF_ERROR(b->vec(pre + "mixer.gate.e_score_correction_bias", {{E}}, sE, note, &m.score_bias));
      m.up.resize(static_cast<size_t>(E));
      m.down.resize(static_cast<size_t>(E));
      Entry* fused = nullptr;
      if (b->find(pre + "mixer.experts.up_proj", note, &fused).ok()) {
        // transformers >= 5 saves the experts fused: experts.up_proj [E, I, H], experts.down_proj [E, H, I].
        Entry* fd = nullptr;
        NEMO_RETURN_IF_ERROR(b->find(pre + "mixer.experts.down_proj", note, &fd));
        NEMO_RETURN_IF_ERROR(b->check_shape(*fused, {{E, I, c.hidden_size}}, sE + ", " + sI + ", hidden_size = " + H));
        NEMO_RETURN_IF_ERROR(b->check_shape(*fd, {{E, c.hidden_size, I}}, sE + ", hidden_size = " + H + ", " + sI));
        if (fused->info.dtype == DType::F8_E4M3 || fd->info.dtype == DType::F8_E4M3)
          return Status(StatusCode::kUnsupportedModel,
                        "tensor '" + fused->info.name + "': fused FP8 experts are not supported (per-expert FP8 tensors are)");
        const size_t es = dtype_size(fused->info.dtype);
        for (int64_t e = 0; e < E; ++e) {
          m.up[e] = MatrixView{static_cast<const uint8_t*>(fused->info.data) + e * I * c.hidden_size * es,
                               fused->info.dtype, I, c.hidden_size};
          m.down[e] = MatrixView{static_cast<const uint8_t*>(fd->info.data) + e * I * c.hidden_size * es,
                                 fd->info.dtype, c.hidden_size, I};
        }
        b->count(fused);
        b->count(fd);
      } else {
        for (int64_t e = 0; e < E; ++e) {
          const std::string ep = pre + "mixer.experts." + num(e) + ".";
          NEMO_RETURN_IF_ERROR(b->matrix(ep + "up_proj.weight", I, c.hidden_size, sI + ", hidden_size = " + H,
                                         note + ", " + sE, &m.up[e]));
          NEMO_RETURN_IF_ERROR(b->matrix(ep + "down_proj.weight", c.hidden_size, I, "hidden_size = " + H + ", " + sI,
                                         note + ", " + sE, &m.down[e]));
        }
      }
      if (c.has_shared_expert()) {
        const std::string sS = "moe_shared_expert_intermediate_size = " + num(S);
        NEMO_RETURN_IF_ERROR(b->matrix(pre + "mixer.shared_experts.up_proj.weight", S, c.hidden_size,
                                       sS + ", hidden_size = " + H, note, &m.shared_up));
        NEMO_RETURN_IF_ERROR(b->matrix(pre + "mixer.shared_experts.down_proj.weight", c.hidden_size, S,
                                       "hidden_size = " + H + ", " + sS, note, &m.shared_down));
      }
      break;
    }
  }
  return Status::Ok();
}

// Why a left-over tensor is unexpected, for the message.
std::string extra_reason(const NemotronHConfig& c, const std::string& norm) {
  int64_t layer = 0;
  std::string rest;
  if (split_layer_name(norm, &layer, &rest)) {
    if (layer >= c.num_layers())
      return "the config has " + num(c.num_layers()) + " layers (hybrid_override_pattern \"" +
             c.hybrid_override_pattern + "\")";
    const BlockKind kind = c.layers[static_cast<size_t>(layer)];
    if (rest == "mixer.conv1d.bias" && kind == BlockKind::kMamba && !c.use_conv_bias)
      return "use_conv_bias is false";
    if (kind == BlockKind::kMoe && starts_with(rest, "mixer.shared_experts.") && !c.has_shared_expert())
      return "n_shared_experts is 0";
    if (kind == BlockKind::kMoe && starts_with(rest, "mixer.experts."))
      return "layer " + num(layer) + " is 'E' with n_routed_experts = " + num(c.n_routed_experts);
    return "layer " + num(layer) + " is '" + std::string(1, static_cast<char>(kind)) + "' (" +
           block_kind_name(kind) + "), which has no such tensor";
  }
  return "not part of a Nemotron-H checkpoint";
}

// Maps the weight files of `dir` into `table` and `files`.
Status map_weight_files(const std::string& dir, TensorTable* table,
                        std::vector<std::shared_ptr<MappedFile>>* files) {
  const std::string single = join_path(dir, "model.safetensors");
  const std::string index_path = join_path(dir, "model.safetensors.index.json");
  if (is_regular_file(single)) {
    std::shared_ptr<MappedFile> f;
    NEMO_RETURN_IF_ERROR(MappedFile::open(single, &f));
    NEMO_RETURN_IF_ERROR(table->add_file(*f, "model.safetensors"));
    files->push_back(std::move(f));
    return Status::Ok();
  }
  if (!is_regular_file(index_path))
    return Status(StatusCode::kNotFound,
                  "no weights in " + dir + ": looked for model.safetensors and model.safetensors.index.json");

  std::shared_ptr<MappedFile> index_file;
  NEMO_RETURN_IF_ERROR(MappedFile::open(index_path, &index_file));
  auto bad_index = [](const std::string& what) {
    return Status(StatusCode::kInvalidCheckpoint, "model.safetensors.index.json: " + what);
  };
  JsonValue index;
  const std::string_view index_text(reinterpret_cast<const char*>(index_file->data()), index_file->size());
  Status st = parse_json(index_text, &index, StatusCode::kInvalidCheckpoint);
  if (!st.ok()) return bad_index(st.message());
  const JsonValue* wm = index.find("weight_map");
  if (wm == nullptr || !wm->is_object())
    return bad_index("expected an object with a \"weight_map\" object (tensor name -> shard file)");

  std::vector<std::string> shards;  // in order of first mention
  std::unordered_map<std::string, std::vector<std::string>> listed;  // shard -> tensor names
  for (const JsonMember& m : wm->members()) {
    if (!m.value.is_string() || m.value.string_value().empty())
      return bad_index("weight_map['" + m.key + "'] must be a file name");
    const std::string& shard = m.value.string_value();
    if (shard[0] == '/' || shard.find("..") != std::string::npos)
      return bad_index("weight_map['" + m.key + "'] is \"" + shard +
                       "\"; shard files must lie inside the folder");
    auto it = listed.find(shard);
    if (it == listed.end()) {
      shards.push_back(shard);
      it = listed.emplace(shard, std::vector<std::string>()).first;
    }
    it->second.push_back(m.key);
  }
  if (shards.empty()) return bad_index("weight_map is empty");

  for (const std::string& shard : shards) {
    const std::string path = join_path(dir, shard);
    if (!is_regular_file(path))
      return Status(StatusCode::kNotFound,
                    "shard '" + shard + "' listed in model.safetensors.index.json is missing from " + dir);
    std::shared_ptr<MappedFile> f;
    NEMO_RETURN_IF_ERROR(MappedFile::open(path, &f));
    NEMO_RETURN_IF_ERROR(table->add_file(*f, shard));
    files->push_back(std::move(f));
  }
  // Every tensor the index lists must be in the shard it names.
  for (const std::string& shard : shards) {
    for (const std::string& name : listed[shard]) {
      auto it = table->raw_file.find(name);
      if (it == table->raw_file.end())
        return mismatch("model.safetensors.index.json lists tensor '" + name + "' in " + shard +
                        ", but no weight file holds it");
      if (it->second != shard)
        return mismatch("model.safetensors.index.json lists tensor '" + name + "' in " + shard +
                        ", but it is stored in " + it->second);
    }
  }
  return Status::Ok();
}

}  // namespace

Status load_checkpoint(const std::string& dir, NemotronHConfig* config, ModelWeights* weights) {
  if (config == nullptr || weights == nullptr)
    return Status(StatusCode::kInternal, "load_checkpoint: config or weights is null");
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0)
    return Status(StatusCode::kNotFound, "checkpoint folder not found: " + dir);
  // A llama.cpp GGUF file (architecture nemotron_h) is loaded by model/gguf.cc.
  if (S_ISREG(st.st_mode) && dir.size() > 5 && dir.compare(dir.size() - 5, 5, ".gguf") == 0)
    return load_gguf(dir, config, weights);
  if (!S_ISDIR(st.st_mode))
    return Status(StatusCode::kNotFound,
                  dir + " is not a folder (expected a checkpoint folder with config.json, or a .gguf file)");

  // --- config.json ---
  const std::string config_path = join_path(dir, "config.json");
  if (!is_regular_file(config_path)) return Status(StatusCode::kNotFound, "no config.json in " + dir);
  NemotronHConfig cfg;
  {
    std::shared_ptr<MappedFile> cf;
    NEMO_RETURN_IF_ERROR(MappedFile::open(config_path, &cf));
    const std::string text(reinterpret_cast<const char*>(cf->data()), cf->size());
    NEMO_RETURN_IF_ERROR(parse_config(text, &cfg));
  }

  // --- weight files ---
  ModelWeights w;
  TensorTable table;
  NEMO_RETURN_IF_ERROR(map_weight_files(dir, &table, &w.files));

  std::unordered_map<int64_t, std::vector<std::string>> by_layer;
  for (const auto& kv : table.entries) {
    int64_t layer = 0;
    std::string rest;
    if (split_layer_name(kv.first, &layer, &rest)) by_layer[layer].push_back(kv.first);
  }
  for (auto& kv : by_layer) std::sort(kv.second.begin(), kv.second.end());

  // --- bind, in model order ---
  Binder b(&table, &w);
  const std::string H = num(cfg.hidden_size), V = num(cfg.vocab_size);
  NEMO_RETURN_IF_ERROR(b.matrix("embeddings.weight", cfg.vocab_size, cfg.hidden_size,
                                "vocab_size = " + V + ", hidden_size = " + H, "", &w.embeddings));
  w.layers.resize(static_cast<size_t>(cfg.num_layers()));
  for (int64_t i = 0; i < cfg.num_layers(); ++i) {
    NEMO_RETURN_IF_ERROR(check_layer_kind(table, i, cfg.layers[static_cast<size_t>(i)], by_layer));
    NEMO_RETURN_IF_ERROR(bind_layer(&b, cfg, i, &w.layers[static_cast<size_t>(i)]));
  }
  NEMO_RETURN_IF_ERROR(b.vec("norm_f.weight", {{cfg.hidden_size}}, "hidden_size = " + H, "", &w.norm_f));
  if (cfg.tie_word_embeddings) {
    // Tied: the output projection is the embedding matrix. A stored copy is accepted if its shape fits,
    // and ignored (HF ties it to the embeddings on load too).
    auto it = table.entries.find("lm_head.weight");
    if (it != table.entries.end()) {
      NEMO_RETURN_IF_ERROR(b.check_shape(it->second, {{cfg.vocab_size, cfg.hidden_size}},
                                         "vocab_size = " + V + ", hidden_size = " + H));
      it->second.used = true;
    }
    w.lm_head = w.embeddings;
  } else {
    NEMO_RETURN_IF_ERROR(b.matrix("lm_head.weight", cfg.vocab_size, cfg.hidden_size,
                                  "vocab_size = " + V + ", hidden_size = " + H,
                                  "tie_word_embeddings is false", &w.lm_head));
  }

  // --- anything left over is an error (reported in a stable order) ---
  // Activation and KV-cache scales of FP8 checkpoints (input_scale, k_scale, v_scale): the engine keeps
  // activations and the KV cache unquantized, so they have no use here.
  auto quant_scale = [](const std::string& n) {
    for (const char* s : {".input_scale", ".k_scale", ".v_scale"}) {
      const size_t l = std::char_traits<char>::length(s);
      if (n.size() > l && n.compare(n.size() - l, l, s) == 0) return true;
    }
    return false;
  };
  std::vector<std::string> extras;
  for (const auto& kv : table.entries)
    if (!kv.second.used && !quant_scale(kv.first)) extras.push_back(kv.first);
  if (!extras.empty()) {
    std::sort(extras.begin(), extras.end());
    const Entry& e = table.entries.at(extras[0]);
    std::string msg = "unexpected tensor '" + e.info.name + "' (" + extra_reason(cfg, extras[0]) + ")";
    if (extras.size() > 1) msg += " and " + num(static_cast<int64_t>(extras.size() - 1)) + " more";
    return mismatch(msg);
  }

  *config = std::move(cfg);
  *weights = std::move(w);
  return Status::Ok();
}

std::vector<MatrixView*> weight_matrices(ModelWeights* w) {
  std::vector<MatrixView*> out;
  out.push_back(&w->embeddings);
  if (w->lm_head.data != w->embeddings.data) out.push_back(&w->lm_head);
  for (LayerWeights& l : w->layers) {
    switch (l.kind) {
      case BlockKind::kMamba:
        out.push_back(&l.mamba.in_proj);
        out.push_back(&l.mamba.out_proj);
        break;
      case BlockKind::kAttention:
        out.push_back(&l.attn.q_proj);
        out.push_back(&l.attn.k_proj);
        out.push_back(&l.attn.v_proj);
        out.push_back(&l.attn.o_proj);
        break;
      case BlockKind::kMlp:
        out.push_back(&l.mlp.up_proj);
        out.push_back(&l.mlp.down_proj);
        break;
      case BlockKind::kMoe:  // the router is an f32 copy already; experts and the shared expert are views
        for (MatrixView& m : l.moe.up) out.push_back(&m);
        for (MatrixView& m : l.moe.down) out.push_back(&m);
        if (l.moe.shared_up.rows > 0) {
          out.push_back(&l.moe.shared_up);
          out.push_back(&l.moe.shared_down);
        }
        break;
    }
  }
  return out;
}

Status place_weights(ModelWeights* w, WeightsPlacement placement, ThreadPool& pool, int64_t* copied_bytes) {
  if (copied_bytes != nullptr) *copied_bytes = 0;
  std::vector<MatrixView*> mats = weight_matrices(w);
  const bool tied = w->lm_head.data == w->embeddings.data;
  auto bytes_of = [](const MatrixView& m) {
    return static_cast<size_t>(m.rows) * dtype_row_bytes(m.dtype, static_cast<size_t>(m.cols));
  };
  for (std::shared_ptr<MappedFile>& file : w->files) {
    if (file == nullptr || file->is_anonymous() || file->size() == 0) continue;
    const uint8_t* fb = file->data();
    const uint8_t* fe = fb + file->size();
    // The range of this file that holds matrices.
    size_t lo = file->size(), hi = 0;
    std::vector<MatrixView*> here;
    for (MatrixView* m : mats) {
      const uint8_t* p = static_cast<const uint8_t*>(m->data);
      if (p == nullptr || p < fb || p >= fe) continue;
      here.push_back(m);
      lo = std::min(lo, static_cast<size_t>(p - fb));
      hi = std::max(hi, std::min(file->size(), static_cast<size_t>(p - fb) + bytes_of(*m)));
    }
    if (here.empty()) continue;
    lo = lo / 4096 * 4096;  // keeps every matrix's address modulo 4 KiB (see WeightsPlacement)
    if (placement == WeightsPlacement::kMmap) {
      file->advise_file(lo, hi - lo);
      continue;
    }
    const size_t n = hi - lo;
    std::shared_ptr<MappedFile> copy;
    NEMO_RETURN_IF_ERROR(MappedFile::anonymous(file->path() + " (in memory)", n, &copy));
    uint8_t* dst = copy->writable_data();
    const uint8_t* src = fb + lo;
    // 8 MiB per task: each thread first-touches (and so places) the huge pages it writes.
    constexpr size_t kChunk = size_t{8} << 20;
    const int64_t chunks = static_cast<int64_t>((n + kChunk - 1) / kChunk);
    pool.parallel_for(chunks, 1, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        const size_t off = static_cast<size_t>(c) * kChunk;
        std::memcpy(dst + off, src + off, std::min(kChunk, n - off));
      }
    });
    copy->seal();
    for (MatrixView* m : here) m->data = dst + (static_cast<const uint8_t*>(m->data) - src);
    if (copied_bytes != nullptr) *copied_bytes += static_cast<int64_t>(n);
    file = std::move(copy);  // the file mapping goes with its last reference
  }
  if (tied) w->lm_head = w->embeddings;
  return Status::Ok();
}

}  // namespace nemo
