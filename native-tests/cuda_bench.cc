// Prefill and decode throughput of the CUDA engine on a model shaped like NVIDIA-Nemotron-Nano-9B-v2
// (architecture.md §1: 56 layers M/*/- = 27/4/25, hidden 4480, vocab 131072; --shape 9b, the default) or
// like the 330M bench model (bench/bench-model.ts ensureTableModel: the 9B's pattern halved, hidden 1024,
// vocab 49152; --shape 330m) with random bf16 weights made on the device (no checkpoint, no Node),
// through the real forward pass (csrc/engine/forward.cc), KV pool and sequence state. Decode is reported
// against a bandwidth roofline measured in the same run: a decode step must read every weight once
// (embeddings aside) plus each sequence's Mamba state (read and written) and KV cache, so roofline
// tokens/s = B · bandwidth / bytes per step. Two bandwidths are measured: streaming 16-byte reads (the
// decode kernels' loads; the `roofline` column) and cudaMemcpy device to device (read + write bytes
// over time; the `vs copy` column, the figure the issue #16 table is stated against).
//
// Decode runs with the decode step as a CUDA graph per batch size (the default) and, for comparison,
// with every kernel launched eagerly (NEMOTRON_CUDA_GRAPHS=0 when the backend is made).
//
// Usage: nemotron_cuda_bench [--shape 9b|330m] [--prompt N] [--steps N] [--dtype bf16|q8_0]
#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "cache/kv_pool.h"
#include "cache/sequence_state.h"
#include "cuda/kernels_cuda.h"
#include "engine/backend.h"
#include "engine/forward.h"

using namespace nemo;

namespace {

void die(const Status& st, const char* what) {
  if (st.ok()) return;
  std::fprintf(stderr, "%s: %s: %s\n", what, status_code_name(st.code()), st.message().c_str());
  std::exit(1);
}
void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) {
    std::fprintf(stderr, "%s: %s\n", what, cudaGetErrorString(err));
    std::exit(1);
  }
}

NemotronHConfig nano9b() {
  NemotronHConfig c;
  c.architecture = "NemotronHForCausalLM";
  c.hybrid_override_pattern = "M-M-M-MM-M-M-M*-M-M-M*-M-M-M-M*-M-M-M-M*-M-MM-M-M-M-M-M-";
  for (char ch : c.hybrid_override_pattern) c.layers.push_back(static_cast<BlockKind>(ch));
  c.vocab_size = 131072;
  c.hidden_size = 4480;
  c.intermediate_size = 15680;
  c.num_attention_heads = 40;
  c.num_key_value_heads = 8;
  c.head_dim = 128;
  c.mamba_num_heads = 128;
  c.mamba_head_dim = 80;
  c.ssm_state_size = 128;
  c.n_groups = 8;
  c.conv_kernel = 4;
  c.chunk_size = 128;
  c.max_position_embeddings = 131072;
  return c;
}

// The 330M bench model's shape (bench/bench-model.ts ensureTableModel).
NemotronHConfig bench330m() {
  NemotronHConfig c = nano9b();
  c.hybrid_override_pattern = "M-M-M-MM-M*-M-M-M*-M-M-MM-M-";
  c.layers.clear();
  for (char ch : c.hybrid_override_pattern) c.layers.push_back(static_cast<BlockKind>(ch));
  c.vocab_size = 49152;
  c.hidden_size = 1024;
  c.intermediate_size = 3584;
  c.num_attention_heads = 8;
  c.num_key_value_heads = 2;
  c.head_dim = 128;
  c.mamba_num_heads = 32;
  c.mamba_head_dim = 64;
  c.ssm_state_size = 128;
  c.n_groups = 8;
  c.max_position_embeddings = 16384;
  return c;
}

// Device-to-device cudaMemcpy bandwidth, GB/s of bytes read + written (best of `reps`, after a warm-up).
double copy_bandwidth(size_t bytes, int reps) {
  void *a = nullptr, *b = nullptr;
  check(cudaMalloc(&a, bytes), "cudaMalloc (copy)");
  check(cudaMalloc(&b, bytes), "cudaMalloc (copy)");
  check(cudaMemset(a, 1, bytes), "cudaMemset");
  cudaEvent_t e0, e1;
  check(cudaEventCreate(&e0), "event");
  check(cudaEventCreate(&e1), "event");
  double best = 0;
  for (int r = 0; r <= reps; ++r) {
    check(cudaEventRecord(e0, nullptr), "event");
    check(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, nullptr), "cudaMemcpy");
    check(cudaEventRecord(e1, nullptr), "event");
    check(cudaEventSynchronize(e1), "copy");
    float ms = 0;
    check(cudaEventElapsedTime(&ms, e0, e1), "event");
    if (r > 0 && ms > 0) best = std::max(best, 2.0 * static_cast<double>(bytes) / (ms * 1e6));
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  cudaFree(a);
  cudaFree(b);
  return best;
}

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

struct Model {
  NemotronHConfig cfg;
  ModelWeights w;
  std::vector<void*> allocs;
  size_t matrix_bytes = 0, embedding_bytes = 0, lm_head_bytes = 0;
  int64_t layer_params = 0;  // matrix elements of the layers (2 flops each per token)
};

MatrixView dev_matrix(Model& m, DType dtype, int64_t rows, int64_t cols, uint64_t seed, bool embedding = false) {
  const size_t bytes = cuda::device_matrix_bytes(dtype, rows, cols);
  void* p = nullptr;
  check(cudaMalloc(&p, bytes), "cudaMalloc (weights)");
  m.allocs.push_back(p);
  (embedding ? m.embedding_bytes : m.matrix_bytes) += bytes;
  MatrixView v;
  // Uniform in ±sqrt(3/cols): unit-variance inputs give unit-variance outputs.
  check(cuda::random_matrix(dtype, rows, cols, std::sqrt(3.0f / static_cast<float>(cols)), seed, p, &v, nullptr),
        "random_matrix");
  return v;
}

std::vector<float> host_vec(int64_t n, float lo, float hi, uint64_t seed) {
  std::vector<float> v(static_cast<size_t>(n));
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 7;
  for (float& x : v) {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    x = lo + (hi - lo) * static_cast<float>(s >> 40) / 16777216.0f;
  }
  return v;
}

void make_model(Model& m, DType dtype, bool small) {
  m.cfg = small ? bench330m() : nano9b();
  const NemotronHConfig& c = m.cfg;
  uint64_t seed = 1;
  m.w.embeddings = dev_matrix(m, dtype, c.vocab_size, c.hidden_size, seed++, true);
  m.w.lm_head = dev_matrix(m, dtype, c.vocab_size, c.hidden_size, seed++);
  m.lm_head_bytes = cuda::device_matrix_bytes(dtype, c.vocab_size, c.hidden_size);
  m.w.norm_f = host_vec(c.hidden_size, 0.9f, 1.1f, seed++);
  for (BlockKind kind : c.layers) {
    LayerWeights lw;
    lw.kind = kind;
    lw.norm = host_vec(c.hidden_size, 0.9f, 1.1f, seed++);
    if (kind == BlockKind::kMamba) {
      MambaWeights& mw = lw.mamba;
      mw.in_proj = dev_matrix(m, dtype, c.in_proj_dim(), c.hidden_size, seed++);
      mw.out_proj = dev_matrix(m, dtype, c.hidden_size, c.d_inner(), seed++);
      mw.conv_w = host_vec(c.conv_dim() * c.conv_kernel, -0.5f, 0.5f, seed++);
      mw.conv_b = host_vec(c.conv_dim(), -0.1f, 0.1f, seed++);
      mw.A = host_vec(c.mamba_num_heads, -8.0f, -1.0f, seed++);
      mw.D = host_vec(c.mamba_num_heads, 0.5f, 1.5f, seed++);
      mw.dt_bias = host_vec(c.mamba_num_heads, -6.0f, -2.0f, seed++);
      mw.norm_w = host_vec(c.d_inner(), 0.9f, 1.1f, seed++);
    } else if (kind == BlockKind::kAttention) {
      lw.attn.q_proj = dev_matrix(m, dtype, c.q_dim(), c.hidden_size, seed++);
      lw.attn.k_proj = dev_matrix(m, dtype, c.kv_dim(), c.hidden_size, seed++);
      lw.attn.v_proj = dev_matrix(m, dtype, c.kv_dim(), c.hidden_size, seed++);
      lw.attn.o_proj = dev_matrix(m, dtype, c.hidden_size, c.q_dim(), seed++);
    } else {
      lw.mlp.up_proj = dev_matrix(m, dtype, c.intermediate_size, c.hidden_size, seed++);
      lw.mlp.down_proj = dev_matrix(m, dtype, c.hidden_size, c.intermediate_size, seed++);
    }
    m.w.layers.push_back(std::move(lw));
    m.layer_params += kind == BlockKind::kMamba ? (c.in_proj_dim() + c.d_inner()) * c.hidden_size  // in, out
                      : kind == BlockKind::kAttention ? 2 * (c.q_dim() + c.kv_dim()) * c.hidden_size
                                                      : 2 * c.intermediate_size * c.hidden_size;
  }
  check(cudaDeviceSynchronize(), "random weights");
}

struct Result {
  std::string what;
  double tokens_per_s = 0, ms = 0, roofline = 0;
};

class Runner {
 public:
  Runner(const Model& m, const char* precision, int64_t prompt, int64_t max_seqs, bool graphs = true)
      : m_(m), prompt_(prompt) {
    Status st;
    setenv("NEMOTRON_CUDA_GRAPHS", graphs ? "1" : "0", 1);  // read when the backend is made
    be_ = make_cuda_backend(0,
                            std::string(precision) == "bf16" ? cpu::MatmulPrecision::kFast : cpu::MatmulPrecision::kExact,
                            &st);
    die(st, "make_cuda_backend");
    w_ = m.w;  // the device matrices are shared; small vectors get this backend's copies
    die(be_->prepare_weights(&w_), "prepare_weights");
    int64_t n_attn = 0;
    for (BlockKind k : m.cfg.layers) n_attn += k == BlockKind::kAttention;
    ctx_ = prompt + 256;
    pool_ = std::make_unique<KvPool>(be_.get(), be_->kv_k_channel_major(), n_attn, m.cfg.kv_dim(),
                                     (ctx_ + KvPool::kBlockTokens - 1) / KvPool::kBlockTokens * max_seqs, DType::F16);
    die(pool_->init(), "KvPool");
    ws_ = std::make_unique<Workspace>(be_.get(), m.cfg, prompt * max_seqs);
    die(ws_->init(), "Workspace");
    for (int64_t i = 0; i < max_seqs; ++i) {
      seqs_.push_back(std::make_unique<SequenceState>(be_.get(), pool_.get(), m.cfg, ctx_));
      die(seqs_.back()->init(), "SequenceState");
    }
    tokens_.resize(static_cast<size_t>(prompt));
    for (int64_t i = 0; i < prompt; ++i) tokens_[i] = static_cast<int32_t>((i * 7919 + 13) % m.cfg.vocab_size);
    logits_.resize(static_cast<size_t>(max_seqs * m.cfg.vocab_size));
  }

  // Prefill `batch` fresh sequences of `prompt` tokens in one forward pass: seconds.
  double prefill(int64_t batch) {
    std::vector<BatchItem> items;
    for (int64_t i = 0; i < batch; ++i) {
      seqs_[i]->reset();
      die(seqs_[i]->reserve(prompt_), "reserve");
      items.push_back(BatchItem{seqs_[i].get(), tokens_.data(), prompt_, Logits::kLast});
    }
    const double t0 = now_s();
    die(forward(*be_, m_.cfg, w_, *ws_, items, logits_.data()), "forward (prefill)");  // ends with a sync
    return now_s() - t0;
  }

  // `steps` decode steps of `batch` sequences (one token each, one forward pass per step): seconds per step.
  double decode(int64_t batch, int steps) {
    std::vector<double> times;
    for (int s = 0; s < steps; ++s) {
      std::vector<BatchItem> items;
      for (int64_t i = 0; i < batch; ++i) {
        die(seqs_[i]->reserve(1), "reserve");
        items.push_back(BatchItem{seqs_[i].get(), &tokens_[s % tokens_.size()], 1, Logits::kLast});
      }
      const double t0 = now_s();
      die(forward(*be_, m_.cfg, w_, *ws_, items, logits_.data()), "forward (decode)");
      times.push_back(now_s() - t0);
    }
    std::sort(times.begin(), times.end());
    return times[times.size() / 2];  // median
  }

  bool finite_logits(int64_t rows) const {
    for (size_t i = 0; i < static_cast<size_t>(rows * m_.cfg.vocab_size); ++i) {
      if (!std::isfinite(logits_[i])) return false;
    }
    return true;
  }

 private:
  const Model& m_;
  int64_t prompt_, ctx_ = 0;
  std::unique_ptr<Backend> be_;
  ModelWeights w_;
  std::unique_ptr<KvPool> pool_;
  std::unique_ptr<Workspace> ws_;
  std::vector<std::unique_ptr<SequenceState>> seqs_;
  std::vector<int32_t> tokens_;
  std::vector<float> logits_;
};

}  // namespace

int main(int argc, char** argv) {
  int64_t prompt = 512;
  int steps = 32;
  DType dtype = DType::BF16;
  bool small = false;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i], v = argv[i + 1];
    if (a == "--shape") small = v == "330m";
    else if (a == "--prompt") prompt = std::atoll(v.c_str());
    else if (a == "--steps") steps = std::atoi(v.c_str());
    else if (a == "--dtype") dtype = v == "q8_0" ? DType::Q8_0 : DType::BF16;
  }
  check(cudaSetDevice(0), "cudaSetDevice");
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
  std::printf("device: %s, sm_%d%d, %d SMs, %.1f GiB\n", prop.name, prop.major, prop.minor, prop.multiProcessorCount,
              static_cast<double>(prop.totalGlobalMem) / (1 << 30));

  double bw = 0;
  check(cuda::read_bandwidth(size_t{4} << 30, 5, &bw, nullptr), "read_bandwidth");
  std::printf("measured read bandwidth: %.0f GB/s (streaming 16-byte loads over 4 GiB, best of 5)\n", bw);
  const double copy_bw = copy_bandwidth(size_t{2} << 30, 5);
  std::printf("measured copy bandwidth: %.0f GB/s (cudaMemcpy device to device of 2 GiB, read + write bytes, best of 5)\n", copy_bw);

  const double t_make = now_s();
  Model m;
  make_model(m, dtype, small);
  const NemotronHConfig& c = m.cfg;
  int64_t n_mamba = 0, n_attn = 0;
  for (BlockKind k : c.layers) {
    n_mamba += k == BlockKind::kMamba;
    n_attn += k == BlockKind::kAttention;
  }
  std::printf("model: %s shape, random %s weights made on the device in %.1f s: %.2f GiB of matrices "
              "(+ %.2f GiB embeddings)\n",
              small ? "330M bench model" : "Nano-9B-v2", dtype_name(dtype), now_s() - t_make, static_cast<double>(m.matrix_bytes) / (1 << 30),
              static_cast<double>(m.embedding_bytes) / (1 << 30));

  // Bytes a decode step must move, per step and per sequence (at context ~ prompt + steps).
  const double ssm_bytes = static_cast<double>(c.ssm_state_floats()) * 4;
  const double conv_bytes = static_cast<double>(c.conv_state_floats()) * 4;
  const double kv_bytes = static_cast<double>(n_attn) * static_cast<double>(prompt + steps / 2) * c.kv_dim() * 2 * 2;
  const double per_seq = static_cast<double>(n_mamba) * 2 * (ssm_bytes + conv_bytes) + kv_bytes;
  auto roofline = [&](int64_t B) { return static_cast<double>(B) * bw * 1e9 / (static_cast<double>(m.matrix_bytes) + B * per_seq); };

  std::vector<Result> rows;
  bool finite = true;
  // Decode steps as CUDA graphs (with the prefill rows), then the same decode with every kernel launched
  // eagerly; g0..g2: the graph counters before, between and after.
  const CudaGraphStats g0 = cuda_graph_stats();
  CudaGraphStats g1;
  for (bool graphs : {true, false}) {
    for (const char* precision : {"bf16", "bf16x2"}) {
      Runner r(m, precision, prompt, 8, graphs);
      r.prefill(1);  // warm-up: first launches, scratch growth
      r.decode(1, 2);
      for (int64_t B : {int64_t{1}, int64_t{8}}) {
        const double s = r.prefill(B);
        if (graphs) {
          rows.push_back({std::string("prefill ") + precision + " batch " + std::to_string(B) + " x " +
                              std::to_string(prompt),
                          static_cast<double>(B * prompt) / s, s * 1e3, 0});
          finite = finite && r.finite_logits(B);
        }
        const double step = r.decode(B, steps);
        rows.push_back({std::string("decode  ") + precision + " batch " + std::to_string(B) +
                            (graphs ? " graphs" : " eager"),
                        static_cast<double>(B) / step, step * 1e3, roofline(B)});
        finite = finite && r.finite_logits(B);
      }
    }
    if (graphs) g1 = cuda_graph_stats();
  }
  const CudaGraphStats g2 = cuda_graph_stats();
  unsetenv("NEMOTRON_CUDA_GRAPHS");

  std::printf("\n%-34s %12s %10s %12s %9s %9s\n", "run", "tokens/s", "ms", "roofline", "fraction", "vs copy");
  for (const Result& r : rows) {
    if (r.roofline > 0) {
      // The same roofline with the copy bandwidth in place of the read bandwidth.
      const double copy_roof = r.roofline * copy_bw / bw;
      std::printf("%-34s %12.1f %10.2f %12.1f %8.1f%% %8.1f%%\n", r.what.c_str(), r.tokens_per_s, r.ms, r.roofline,
                  100.0 * r.tokens_per_s / r.roofline, 100.0 * r.tokens_per_s / copy_roof);
    } else {
      const double tflops = 2.0 * static_cast<double>(m.layer_params) * r.tokens_per_s / 1e12;
      std::printf("%-34s %12.1f %10.2f %12s %9s  (~%.0f TFLOP/s in the matmuls)\n", r.what.c_str(), r.tokens_per_s,
                  r.ms, "-", "-", tflops);
    }
  }
  std::printf("roofline: %.0f GB/s read (%.0f GB/s copy); a decode step reads %.2f GiB of weights + %.1f MiB per sequence "
              "(Mamba state read+write, KV at %lld tokens)\n",
              bw, copy_bw, static_cast<double>(m.matrix_bytes) / (1 << 30), per_seq / (1 << 20),
              static_cast<long long>(prompt + steps / 2));
  std::printf("cuda graphs: %lld decode steps replayed, %lld graphs built, %lld updated in place (graphs on); "
              "%lld replayed with NEMOTRON_CUDA_GRAPHS=0\n",
              static_cast<long long>(g1.launches - g0.launches), static_cast<long long>(g1.instantiations - g0.instantiations),
              static_cast<long long>(g1.updates - g0.updates), static_cast<long long>(g2.launches - g1.launches));
  for (const char* precision : {"bf16", "bf16x2"}) {
    for (int64_t B : {int64_t{1}, int64_t{8}}) {
      const std::string key = std::string("decode  ") + precision + " batch " + std::to_string(B);
      double on = 0, off = 0;
      for (const Result& r : rows) {
        if (r.what == key + " graphs") on = r.tokens_per_s;
        if (r.what == key + " eager") off = r.tokens_per_s;
      }
      std::printf("graphs speedup %-8s batch %lld: %.2fx (%.1f vs %.1f tokens/s)\n", precision,
                  static_cast<long long>(B), off > 0 ? on / off : 0.0, on, off);
    }
  }
  std::printf("logits finite: %s (random weights: values are meaningless, only the speed is)\n", finite ? "yes" : "NO");
  for (void* p : m.allocs) cudaFree(p);
  return 0;
}
