// The non-finite weight scan behind the `checkTensors` load option (tensor_check.h).
#include "model/tensor_check.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

#include "core/dtype.h"
#include "core/thread_pool.h"
#include "model/config.h"
#include "model/weights.h"

namespace nemo {
namespace {

// One tensor to scan: `count` values (plain types) or blocks (quantized types) at `data`.
struct Item {
  std::string name;
  const uint8_t* data;
  DType dtype;
  int64_t count;
};

// Values (or blocks) per unit of work: big enough that the pool's overhead vanishes, small enough that
// a 9B checkpoint spreads over every thread.
constexpr int64_t kSlice = int64_t{1} << 20;

bool f16_finite(uint16_t h) { return (h & 0x7c00u) != 0x7c00u; }

// Index of the first non-finite value (or block) in [begin, end) of `t`, or -1.
int64_t first_bad(const Item& t, int64_t begin, int64_t end) {
  const uint8_t* p = t.data;
  switch (t.dtype) {
    case DType::F32:
    case DType::F16:
    case DType::BF16:
      return first_non_finite(p, t.dtype, begin, end);
    default: {
      // Quantized blocks: the integer parts are finite by construction; the f16 scales may not be.
      const int64_t bb = dtype_block_bytes(t.dtype);
      int offsets[2] = {0, -1};
      if (t.dtype == DType::Q4_K || t.dtype == DType::Q5_K || t.dtype == DType::Q5_1) offsets[1] = 2;  // d, dmin / m
      if (t.dtype == DType::Q6_K) offsets[0] = 208;                           // d comes last
      for (int64_t i = begin; i < end; ++i) {
        for (int o : offsets) {
          if (o < 0) continue;
          uint16_t h;
          std::memcpy(&h, p + i * bb + o, 2);
          if (!f16_finite(h)) return i;
        }
      }
      return -1;
    }
  }
}

float value_at(const Item& t, int64_t i) {
  const uint8_t* p = t.data;
  uint16_t h;
  switch (t.dtype) {
    case DType::F32: { float f; std::memcpy(&f, p + 4 * i, 4); return f; }
    case DType::F16: std::memcpy(&h, p + 2 * i, 2); return f16_to_f32(h);
    case DType::BF16: std::memcpy(&h, p + 2 * i, 2); return bf16_to_f32(h);
    default: return 0.0f;
  }
}

void add_matrix(std::vector<Item>* items, const std::string& name, const MatrixView& m) {
  if (m.data == nullptr) return;
  const int64_t per_row = dtype_is_quantized(m.dtype) ? m.cols / dtype_block_elems(m.dtype) : m.cols;
  items->push_back({name, static_cast<const uint8_t*>(m.data), m.dtype, per_row * m.rows});
}

void add_vector(std::vector<Item>* items, const std::string& name, const std::vector<float>& v) {
  if (v.empty()) return;
  items->push_back({name, reinterpret_cast<const uint8_t*>(v.data()), DType::F32, static_cast<int64_t>(v.size())});
}

// Every tensor under its checkpoint name (without the `backbone.` prefix), in checkpoint order.
std::vector<Item> list_tensors(const NemotronHConfig& c, const ModelWeights& w) {
  std::vector<Item> items;
  add_matrix(&items, "embeddings.weight", w.embeddings);
  for (size_t i = 0; i < w.layers.size(); ++i) {
    const LayerWeights& l = w.layers[i];
    const std::string pre = "layers." + std::to_string(i) + ".";
    add_vector(&items, pre + "norm.weight", l.norm);
    switch (l.kind) {
      case BlockKind::kMamba:
        add_matrix(&items, pre + "mixer.in_proj.weight", l.mamba.in_proj);
        add_vector(&items, pre + "mixer.conv1d.weight", l.mamba.conv_w);
        if (c.use_conv_bias) add_vector(&items, pre + "mixer.conv1d.bias", l.mamba.conv_b);
        add_vector(&items, pre + "mixer.A_log", l.mamba.A);  // A = -exp(A_log): non-finite iff A_log is NaN or +Inf
        add_vector(&items, pre + "mixer.D", l.mamba.D);
        add_vector(&items, pre + "mixer.dt_bias", l.mamba.dt_bias);
        add_vector(&items, pre + "mixer.norm.weight", l.mamba.norm_w);
        add_matrix(&items, pre + "mixer.out_proj.weight", l.mamba.out_proj);
        break;
      case BlockKind::kAttention:
        add_matrix(&items, pre + "mixer.q_proj.weight", l.attn.q_proj);
        add_matrix(&items, pre + "mixer.k_proj.weight", l.attn.k_proj);
        add_matrix(&items, pre + "mixer.v_proj.weight", l.attn.v_proj);
        add_matrix(&items, pre + "mixer.o_proj.weight", l.attn.o_proj);
        break;
      case BlockKind::kMlp:
        add_matrix(&items, pre + "mixer.up_proj.weight", l.mlp.up_proj);
        add_matrix(&items, pre + "mixer.down_proj.weight", l.mlp.down_proj);
        break;
      case BlockKind::kMoe:
        add_vector(&items, pre + "mixer.gate.weight", l.moe.router_w);
        add_vector(&items, pre + "mixer.gate.e_score_correction_bias", l.moe.score_bias);
        for (size_t e = 0; e < l.moe.up.size(); ++e) {
          const std::string ep = pre + "mixer.experts." + std::to_string(e) + ".";
          add_matrix(&items, ep + "up_proj.weight", l.moe.up[e]);
          add_matrix(&items, ep + "down_proj.weight", l.moe.down[e]);
        }
        add_matrix(&items, pre + "mixer.shared_experts.up_proj.weight", l.moe.shared_up);
        add_matrix(&items, pre + "mixer.shared_experts.down_proj.weight", l.moe.shared_down);
        break;
    }
  }
  add_vector(&items, "norm_f.weight", w.norm_f);
  if (w.lm_head.data != w.embeddings.data) add_matrix(&items, "lm_head.weight", w.lm_head);
  return items;
}

}  // namespace

Status check_tensors_finite(const NemotronHConfig& config, const ModelWeights& weights, int n_threads) {
  const std::vector<Item> items = list_tensors(config, weights);
  struct Slice {
    size_t item;
    int64_t begin, end;
  };
  std::vector<Slice> slices;
  for (size_t i = 0; i < items.size(); ++i)
    for (int64_t b = 0; b < items[i].count; b += kSlice) slices.push_back({i, b, std::min(items[i].count, b + kSlice)});
  // The first bad slice in checkpoint order wins; slices after a known bad one are skipped.
  std::atomic<int64_t> first_slice{static_cast<int64_t>(slices.size())};
  std::vector<int64_t> bad_at(slices.size(), -1);
  const int threads = n_threads > 0 ? n_threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  ThreadPool pool(threads);
  pool.parallel_for(static_cast<int64_t>(slices.size()), 1, [&](int64_t begin, int64_t end) {
    for (int64_t s = begin; s < end; ++s) {
      if (s > first_slice.load(std::memory_order_relaxed)) return;
      const Slice& sl = slices[s];
      const int64_t at = first_bad(items[sl.item], sl.begin, sl.end);
      if (at < 0) continue;
      bad_at[s] = at;
      int64_t cur = first_slice.load();
      while (s < cur && !first_slice.compare_exchange_weak(cur, s)) {}
    }
  });
  const int64_t s = first_slice.load();
  if (s == static_cast<int64_t>(slices.size())) return Status::Ok();
  const Item& t = items[slices[s].item];
  const int64_t at = bad_at[s];
  std::string what;
  if (dtype_is_quantized(t.dtype)) {
    what = "a non-finite (NaN or Inf) scale in block " + std::to_string(at);
  } else {
    const float v = value_at(t, at);
    what = std::string(v != v ? "NaN" : v > 0 ? "+Inf" : "-Inf") + " at element " + std::to_string(at);
  }
  return Status(StatusCode::kInvalidCheckpoint,
                "checkTensors: tensor '" + t.name + "' (" + dtype_name(t.dtype) + ") holds " + what +
                    "; the checkpoint is corrupt or was saved after a diverged training step");
}

Status check_checkpoint_finite(const std::string& path, int n_threads) {
  NemotronHConfig config;
  ModelWeights weights;
  NEMO_RETURN_IF_ERROR(load_checkpoint(path, &config, &weights));
  return check_tensors_finite(config, weights, n_threads);
}

}  // namespace nemo
