// The CUDA backend: the Backend seam (csrc/engine/backend.h) over device memory and the kernels of
// cuda/ on one stream per engine. Host code only (compiled by nvcc so that scripts/compile-cuda.sh
// checks it with the kernels).
//
// Memory. prepare_weights converts every matrix into the device layout (kernels_cuda.h; a MatrixView
// that already points at device memory is taken as already in it) and uploads the small f32 vectors,
// recording their device copies in the *_dev fields of ModelWeights. Activations, Mamba state and the
// KV pool are cudaMalloc'd (the pool is committed up front: no lazy paging on the device).
//
// Host inputs to ops. The forward pass hands the embedding host token ids and the attention ops host
// block tables (KvBlocks::table). Both go through a pinned staging ring mirrored on the device: the
// values are copied into the ring and one async copy per call moves them to the device ring, in stream
// order before the kernel that reads them. When the ring wraps, the stream is synchronised first, so a
// region is never rewritten while a queued kernel may still read it. A block table that is unchanged
// since its last upload in this lap (every attention layer of a step reads the same one) is reused.
//
// Matmul precision (LoadOptions.precision): 'exact' runs bf16x2 (activations split into two bf16
// terms: within float rounding of the CPU engine, twice the tensor work of a prefill; decode costs the
// same), 'fast' plain bf16 activations. See kernels_cuda.h MatmulPrecision.
//
// Errors. Ops cannot return a Status through the seam; the first CUDA error is kept and handed back by
// take_error() (the forward pass returns it), and host transfers synchronise the stream, so failures of
// queued work surface there too.
#include <cuda_runtime.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "cuda/common.cuh"
#include "cuda/kernels_cuda.h"
#include "engine/backend.h"

namespace nemo {
namespace {

class CudaBackend final : public Backend {
 public:
  CudaBackend(int device, cuda::MatmulPrecision precision) : device_(device), precision_(precision) {}
  ~CudaBackend() override {
    cudaSetDevice(device_);
    if (stream_) cudaStreamSynchronize(stream_);
    for (void* p : weight_allocs_) cudaFree(p);
    for (float* p : pinned_) cudaFreeHost(p);
    if (sink_dev_) cudaFree(sink_dev_);
    if (sink_) munmap(sink_, sink_cap_ * sizeof(float));
    if (ring_host_) cudaFreeHost(ring_host_);
    if (ring_dev_) cudaFree(ring_dev_);
    scratch_.reset();  // before the stream goes
    if (stream_) cudaStreamDestroy(stream_);
  }

  Status init() {
    CUDA_CHECK(cudaSetDevice(device_));
    CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    scratch_ = std::make_unique<cuda::Scratch>();
    return grow_ring(kRingInts);
  }

  const char* name() const override { return "cuda"; }
  int n_threads() const override { return 1; }  // host threads used

  // ---- memory ------------------------------------------------------------------------------------
  Status prepare_weights(ModelWeights* w) override {
    CUDA_CHECK(cudaSetDevice(device_));
    std::unordered_map<const void*, MatrixView> done;  // tied matrices are uploaded once
    auto matrix = [&](MatrixView* m) -> Status {
      if (m->data == nullptr || m->rows == 0) return Status::Ok();
      auto it = done.find(m->data);
      if (it != done.end() && it->second.rows == m->rows && it->second.cols == m->cols) {
        *m = it->second;
        return Status::Ok();
      }
      cudaPointerAttributes attr{};
      if (cudaPointerGetAttributes(&attr, m->data) == cudaSuccess && attr.type == cudaMemoryTypeDevice) {
        return Status::Ok();  // made on the device already (benchmarks), in the device layout
      }
      cudaGetLastError();  // clear a failed query of a host pointer
      const size_t bytes = cuda::device_matrix_bytes(m->dtype, m->rows, m->cols);
      void* dst = nullptr;
      CUDA_CHECK(cudaMalloc(&dst, bytes));
      weight_allocs_.push_back(dst);
      const void* key = m->data;
      MatrixView dev;
      CUDA_CHECK(cuda::upload_matrix(*m, dst, &dev, *scratch_, stream_));
      *m = dev;
      done[key] = dev;
      return Status::Ok();
    };
    auto vec = [&](const std::vector<float>& v, const float** dev) -> Status {
      float* p = nullptr;
      CUDA_CHECK(cudaMalloc(&p, std::max<size_t>(v.size(), 1) * sizeof(float)));
      weight_allocs_.push_back(p);
      if (!v.empty()) {
        CUDA_CHECK(cudaMemcpyAsync(p, v.data(), v.size() * sizeof(float), cudaMemcpyHostToDevice, stream_));
      }
      *dev = p;
      return Status::Ok();
    };
    NEMO_RETURN_IF_ERROR(matrix(&w->embeddings));
    NEMO_RETURN_IF_ERROR(matrix(&w->lm_head));
    NEMO_RETURN_IF_ERROR(vec(w->norm_f, &w->norm_f_dev));
    for (LayerWeights& lw : w->layers) {
      NEMO_RETURN_IF_ERROR(vec(lw.norm, &lw.norm_dev));
      switch (lw.kind) {
        case BlockKind::kMamba: {
          MambaWeights& m = lw.mamba;
          NEMO_RETURN_IF_ERROR(matrix(&m.in_proj));
          NEMO_RETURN_IF_ERROR(matrix(&m.out_proj));
          NEMO_RETURN_IF_ERROR(vec(m.conv_w, &m.conv_w_dev));
          NEMO_RETURN_IF_ERROR(vec(m.conv_b, &m.conv_b_dev));
          NEMO_RETURN_IF_ERROR(vec(m.A, &m.A_dev));
          NEMO_RETURN_IF_ERROR(vec(m.D, &m.D_dev));
          NEMO_RETURN_IF_ERROR(vec(m.dt_bias, &m.dt_bias_dev));
          NEMO_RETURN_IF_ERROR(vec(m.norm_w, &m.norm_w_dev));
          break;
        }
        case BlockKind::kAttention:
          NEMO_RETURN_IF_ERROR(matrix(&lw.attn.q_proj));
          NEMO_RETURN_IF_ERROR(matrix(&lw.attn.k_proj));
          NEMO_RETURN_IF_ERROR(matrix(&lw.attn.v_proj));
          NEMO_RETURN_IF_ERROR(matrix(&lw.attn.o_proj));
          break;
        case BlockKind::kMlp:
          NEMO_RETURN_IF_ERROR(matrix(&lw.mlp.up_proj));
          NEMO_RETURN_IF_ERROR(matrix(&lw.mlp.down_proj));
          break;
      }
    }
    CUDA_CHECK(cudaStreamSynchronize(stream_));
    return Status::Ok();
  }

  float* alloc(size_t n) override {
    cudaSetDevice(device_);
    void* p = nullptr;
    const size_t bytes = std::max<size_t>(n, 1) * sizeof(float);
    if (cudaMalloc(&p, bytes) != cudaSuccess) {
      cudaGetLastError();
      return nullptr;
    }
    if (!record(cudaMemsetAsync(p, 0, bytes, stream_))) {
      cudaFree(p);
      return nullptr;
    }
    return static_cast<float*>(p);
  }
  // Frees wait for the stream: a forward pass without logits returns while its kernels may still
  // read the sequence state being freed.
  void free(float* p) override {
    cudaSetDevice(device_);
    if (!p) return;
    record(cudaStreamSynchronize(stream_));
    bool host = false;
    {
      std::lock_guard<std::mutex> lock(pin_mu_);
      host = pinned_.erase(p) > 0;
    }
    if (host) {
      record(cudaFreeHost(p));
      return;
    }
    record(cudaFree(p));
  }
  void copy(float* dst, const float* src, size_t n) override { copy_bytes(dst, src, n * sizeof(float)); }
  void to_host(float* dst, const float* src, size_t n) override { bytes_to_host(dst, src, n * sizeof(float)); }
  void from_host(float* dst, const float* src, size_t n) override { bytes_from_host(dst, src, n * sizeof(float)); }
  void zero(float* p, size_t n) override {
    cudaSetDevice(device_);
    record(cudaMemsetAsync(p, 0, n * sizeof(float), stream_));
  }
  void* alloc_pool(size_t bytes) override {
    cudaSetDevice(device_);
    void* p = nullptr;
    if (cudaMalloc(&p, std::max<size_t>(bytes, 256)) != cudaSuccess) {
      cudaGetLastError();
      return nullptr;
    }
    return p;
  }
  void free_pool(void* p, size_t) override {
    cudaSetDevice(device_);
    if (!p) return;
    record(cudaStreamSynchronize(stream_));
    record(cudaFree(p));
  }
  void copy_bytes(void* dst, const void* src, size_t n) override {
    cudaSetDevice(device_);
    // Default: either side may be an offloaded (pinned host) Mamba state; UVA tells them apart.
    if (n) record(cudaMemcpyAsync(dst, src, n, cudaMemcpyDefault, stream_));
  }
  void bytes_to_host(void* dst, const void* src, size_t n) override {
    cudaSetDevice(device_);
    if (n && in_sink(dst)) {  // logits kept on the device for sample()
      record(cudaMemcpyAsync(sink_dev_ + (static_cast<float*>(dst) - sink_), src, n, cudaMemcpyDeviceToDevice, stream_));
      return;
    }
    if (n) record(cudaMemcpyAsync(dst, src, n, cudaMemcpyDefault, stream_));
    record(cudaStreamSynchronize(stream_));
  }
  void bytes_from_host(void* dst, const void* src, size_t n) override {
    cudaSetDevice(device_);
    if (n) record(cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, stream_));
    record(cudaStreamSynchronize(stream_));
  }

  // ---- ops ---------------------------------------------------------------------------------------
  void matmul(float* y, int64_t ldy, const float* x, int64_t ldx, const MatrixView& w, int64_t T,
              cpu::MatmulInput input) override {
    // kRelu2: relu² is applied by the product as it converts x (matmul.cu); x is left as it is.
    record(cuda::matmul(y, ldy, x, ldx, w, T, *scratch_, stream_, precision_, input));
  }
  void embedding(float* y, const MatrixView& table, const int32_t* ids, int64_t T) override {
    const int32_t* dev_ids = stage(ids, static_cast<size_t>(T));
    if (dev_ids) record(cuda::embedding(y, table, dev_ids, T, stream_));
  }
  void rmsnorm(float* y, const float* x, const float* w, int64_t T, int64_t C, float eps) override {
    record(cuda::rmsnorm(y, x, w, T, C, eps, stream_));
  }
  void rmsnorm_gated_grouped(float* out, const float* y, const float* z, int64_t ldz, const float* w, int64_t T,
                             int64_t C, int64_t group_size, float eps) override {
    record(cuda::rmsnorm_gated_grouped(out, y, z, ldz, w, T, C, group_size, eps, stream_));
  }
  void conv1d_causal(float* y, const float* x, int64_t ldx, float* conv_state, const float* w, const float* b,
                     int64_t T, int64_t C, int64_t K) override {
    record(cuda::conv1d_causal(y, x, ldx, conv_state, w, b, T, C, K, stream_));
  }
  void conv1d_step(float* y, const float* x, float* conv_state, const float* w, const float* b, int64_t C,
                   int64_t K) override {
    record(cuda::conv1d_step(y, x, conv_state, w, b, C, K, stream_));
  }
  void ssd_chunk_scan(float* y, const float* x, int64_t ldx, const float* dt_raw, int64_t lddt, const float* B,
                      const float* C, int64_t ldbc, float* state, const cpu::SsmParams& p, int64_t T,
                      int64_t chunk_size) override {
    record(cuda::ssd_chunk_scan(y, x, ldx, dt_raw, lddt, B, C, ldbc, state, p, T, chunk_size, *scratch_, stream_));
  }
  void ssm_state_update(float* y, const float* x, const float* dt_raw, const float* B, const float* C, float* state,
                        const cpu::SsmParams& p) override {
    record(cuda::ssm_state_update(y, x, dt_raw, B, C, state, p, stream_));
  }
  void kv_store(const cpu::KvBlocks& kv, int64_t pos, const float* k_rows, const float* v_rows, int64_t ld,
                int64_t T, int64_t kv_dim) override {
    cpu::KvBlocks dkv = kv;
    dkv.table = stage_table(kv.table, static_cast<size_t>(ceil_blocks(pos + T, kv.block_tokens)));
    if (dkv.table) record(cuda::kv_store(dkv, pos, k_rows, v_rows, ld, T, kv_dim, stream_));
  }
  void attention_gqa(float* out, const float* q, int64_t ldq, const cpu::KvBlocks& kv, int64_t past, int64_t T,
                     int64_t n_heads, int64_t n_kv_heads, int64_t head_dim) override {
    cpu::KvBlocks dkv = kv;
    dkv.table = stage_table(kv.table, static_cast<size_t>(ceil_blocks(past + T, kv.block_tokens)));
    if (dkv.table) {
      record(cuda::attention_gqa(out, q, ldq, dkv, past, T, n_heads, n_kv_heads, head_dim, *scratch_, stream_));
    }
  }
  void relu2(float* x, int64_t n) override { record(cuda::relu2(x, n, stream_)); }
  void add_inplace(float* y, const float* x, int64_t n) override { record(cuda::add_inplace(y, x, n, stream_)); }

  // ---- device sampling, offloaded state ------------------------------------------------------------
  // The sink is a PROT_NONE reservation (no memory; a stray host write faults loudly); its rows live in
  // sink_dev_. Both grow to the largest request and are kept.
  float* logits_sink(int64_t rows, int64_t vocab) override {
    cudaSetDevice(device_);
    const size_t n = static_cast<size_t>(std::max<int64_t>(rows, 1) * vocab);
    if (n > sink_cap_) {
      record(cudaStreamSynchronize(stream_));
      if (sink_) munmap(sink_, sink_cap_ * sizeof(float));
      if (sink_dev_) cudaFree(sink_dev_);
      sink_ = nullptr;
      sink_dev_ = nullptr;
      sink_cap_ = 0;
      void* h = mmap(nullptr, n * sizeof(float), PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
      if (h == MAP_FAILED) return nullptr;
      if (cudaMalloc(&sink_dev_, n * sizeof(float)) != cudaSuccess) {
        cudaGetLastError();
        munmap(h, n * sizeof(float));
        sink_dev_ = nullptr;
        return nullptr;
      }
      sink_ = static_cast<float*>(h);
      sink_cap_ = n;
    }
    sink_vocab_ = vocab;
    return sink_;
  }
  Status sample(const std::vector<SampleSpec>& rows, int32_t* tokens, float* logprobs) override {
    cudaSetDevice(device_);
    if (!sink_dev_ || rows.size() * static_cast<size_t>(sink_vocab_) > sink_cap_) {
      return Status(StatusCode::kInternal, "sample: no logits_sink() for these rows");
    }
    Status st = take_error();  // a failed forward must not be sampled
    if (!st.ok()) return st;
    CUDA_CHECK(cuda::sample(tokens, logprobs, sink_dev_, sink_vocab_, sink_vocab_, rows, *scratch_, stream_));
    return Status::Ok();
  }
  float* offload(float* p, size_t n) override {
    cudaSetDevice(device_);
    if (!p) return nullptr;
    {
      std::lock_guard<std::mutex> lock(pin_mu_);
      if (pinned_.count(p)) return p;
    }
    void* h = nullptr;
    if (cudaMallocHost(&h, std::max<size_t>(n, 1) * sizeof(float)) != cudaSuccess) {
      cudaGetLastError();
      return nullptr;
    }
    if (!record(cudaMemcpyAsync(h, p, n * sizeof(float), cudaMemcpyDeviceToHost, stream_)) ||
        !record(cudaStreamSynchronize(stream_))) {
      cudaFreeHost(h);
      return nullptr;
    }
    record(cudaFree(p));
    std::lock_guard<std::mutex> lock(pin_mu_);
    pinned_.insert(static_cast<float*>(h));
    return static_cast<float*>(h);
  }

  Status take_error() override {
    std::lock_guard<std::mutex> lock(err_mu_);
    Status s = error_;
    error_ = Status::Ok();
    return s;
  }

 private:
  static constexpr size_t kRingInts = size_t{1} << 20;  // 4 MiB of ids and block tables per lap

  static int64_t ceil_blocks(int64_t positions, int64_t block_tokens) {
    return (positions + block_tokens - 1) / block_tokens;
  }

  // Keeps the first error; true when `err` is success.
  bool record(cudaError_t err) {
    if (err == cudaSuccess) return true;
    cudaGetLastError();  // clear a non-sticky error
    std::lock_guard<std::mutex> lock(err_mu_);
    if (error_.ok()) error_ = cuda::cuda_status(err, "the CUDA backend", __FILE__, __LINE__);
    return false;
  }

  Status grow_ring(size_t n) {
    if (ring_host_) cudaFreeHost(ring_host_);
    if (ring_dev_) cudaFree(ring_dev_);
    ring_host_ = nullptr;
    ring_dev_ = nullptr;
    CUDA_CHECK(cudaMallocHost(&ring_host_, n * sizeof(int32_t)));
    CUDA_CHECK(cudaMalloc(&ring_dev_, n * sizeof(int32_t)));
    ring_cap_ = n;
    ring_off_ = 0;
    ++lap_;
    tables_.clear();
    return Status::Ok();
  }

  // n ints from host memory to device memory, in stream order. nullptr (error recorded) on failure.
  const int32_t* stage(const int32_t* src, size_t n) {
    cudaSetDevice(device_);
    const size_t need = (std::max<size_t>(n, 1) + 31) / 32 * 32;  // 128-byte aligned slots
    if (ring_off_ + need > ring_cap_) {
      if (!record(cudaStreamSynchronize(stream_))) return nullptr;  // every queued reader is done
      if (need > ring_cap_) {
        const Status st = grow_ring(need * 2);
        if (!st.ok()) {
          std::lock_guard<std::mutex> lock(err_mu_);
          if (error_.ok()) error_ = st;
          return nullptr;
        }
      }
      ring_off_ = 0;
      ++lap_;
      tables_.clear();
    }
    int32_t* h = ring_host_ + ring_off_;
    int32_t* d = ring_dev_ + ring_off_;
    if (n) std::memcpy(h, src, n * sizeof(int32_t));
    if (n && !record(cudaMemcpyAsync(d, h, n * sizeof(int32_t), cudaMemcpyHostToDevice, stream_))) return nullptr;
    ring_off_ += need;
    return d;
  }

  // A block table (host) on the device; reused while unchanged within the lap.
  const int32_t* stage_table(const int32_t* table, size_t n) {
    auto it = tables_.find(table);
    if (it != tables_.end() && it->second.n >= n &&
        std::memcmp(ring_host_ + it->second.off, table, n * sizeof(int32_t)) == 0) {
      return ring_dev_ + it->second.off;
    }
    const uint64_t lap = lap_;
    const int32_t* d = stage(table, n);
    if (!d) return nullptr;
    if (lap_ != lap) tables_.clear();
    tables_[table] = Staged{static_cast<size_t>(d - ring_dev_), n};
    return d;
  }

  bool in_sink(const void* p) const {
    const float* f = static_cast<const float*>(p);
    return sink_ && f >= sink_ && f < sink_ + sink_cap_;
  }

  struct Staged {
    size_t off;
    size_t n;
  };

  int device_;
  cuda::MatmulPrecision precision_;
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<cuda::Scratch> scratch_;
  std::vector<void*> weight_allocs_;
  int32_t* ring_host_ = nullptr;
  int32_t* ring_dev_ = nullptr;
  size_t ring_cap_ = 0, ring_off_ = 0;
  uint64_t lap_ = 0;
  std::unordered_map<const int32_t*, Staged> tables_;
  std::mutex err_mu_;
  Status error_;
  std::mutex pin_mu_;
  std::unordered_set<float*> pinned_;  // offloaded Mamba states (host memory), under pin_mu_
  float* sink_ = nullptr;              // logits_sink's reservation ...
  float* sink_dev_ = nullptr;          // ... and where its rows are
  size_t sink_cap_ = 0;
  int64_t sink_vocab_ = 0;
};

}  // namespace

std::unique_ptr<Backend> make_cuda_backend(int device, cpu::MatmulPrecision matmul_precision, Status* status) {
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess || count == 0) {
    cudaGetLastError();
    *status = Status(StatusCode::kInvalidArgument,
                     std::string("no CUDA device is available") +
                         (err != cudaSuccess ? std::string(" (") + cudaGetErrorName(err) + ": " + cudaGetErrorString(err) + ")"
                                             : std::string()));
    return nullptr;
  }
  if (device < 0 || device >= count) {
    *status = Status(StatusCode::kInvalidArgument, "CUDA device " + std::to_string(device) + " does not exist (" +
                                                       std::to_string(count) + " found)");
    return nullptr;
  }
  cudaDeviceProp prop{};
  err = cudaGetDeviceProperties(&prop, device);
  if (err != cudaSuccess) {
    *status = cuda::cuda_status(err, "cudaGetDeviceProperties", __FILE__, __LINE__);
    return nullptr;
  }
  if (prop.major < 8) {
    *status = Status(StatusCode::kInvalidArgument,
                     "CUDA device " + std::to_string(device) + " (" + prop.name + ") has compute capability " +
                         std::to_string(prop.major) + "." + std::to_string(prop.minor) +
                         "; the CUDA backend needs 8.0 or newer (bf16 tensor cores)");
    return nullptr;
  }
  const cuda::MatmulPrecision precision = matmul_precision == cpu::MatmulPrecision::kExact
                                               ? cuda::MatmulPrecision::kBf16x2
                                               : cuda::MatmulPrecision::kBf16;
  auto be = std::make_unique<CudaBackend>(device, precision);
  Status st = be->init();
  if (!st.ok()) {
    *status = st;
    return nullptr;
  }
  *status = Status::Ok();
  return be;
}

}  // namespace nemo
