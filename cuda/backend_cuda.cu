// The CUDA backend: the Backend seam (csrc/engine/backend.h) over device memory and the kernels of
// cuda/ on one stream per engine. Host code only (compiled by nvcc so that scripts/compile-cuda.sh
// checks it with the kernels).
//
// Memory. prepare_weights converts every matrix into the device layout (kernels_cuda.h; a MatrixView
// that already points at device memory is taken as already in it) and uploads the small f32 vectors
// (norms, conv taps, A, D, dt_bias), keeping their device copies here, keyed by the host vector's
// address: the forward pass hands the ops host addresses, and dev() turns them into this backend's
// copies (an address it did not upload is device memory already). Activations, Mamba state and the
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
// same), 'fast' plain bf16 activations. See kernels_cuda.h MmaPrecision.
//
// Decode steps as CUDA graphs (issue #6). forward() brackets each pass with begin_step/end_step; a
// pure decode pass (one token per item) is captured on the stream instead of launched, and end_step
// replays it: the graph instantiated for this batch size (the exact number of rows is the key; no
// padding) gets the new capture's arguments by cudaGraphExecUpdate, then one cudaGraphLaunch. The
// pass is captured again every step, so every pointer and size in it is the current one (the states
// of the sequences in the batch, staging offsets, scratch, split counts that grow with the context);
// only the topology must repeat for the update to succeed. Inside a capture nothing may wait for the
// stream or touch host memory in stream order, so:
//   - staged ids and block tables are written to the pinned ring and copied to the device by end_step,
//     before the launch (begin_step makes room first: a wrap waits for the stream);
//   - to_host into host memory is captured as a copy into a device readback buffer; end_step copies
//     it out after the launch and waits, as an eager to_host would (logits_sink rows stay on-device);
//   - buffers replaced while capturing (scratch, ring, readback growth) are kept until the graph ran;
//   - other threads' transfers and frees on the stream wait for the step (stream_mu_).
// What invalidates a graph, and what happens then:
//   - another topology for the same batch size (another number of logits rows, hence copies; another
//     kernel choice): the update fails and the graph is instantiated anew;
//   - a failed capture (a launch error or a forbidden call inside it): the pass never ran, so it is
//     the step's error, and this backend launches eagerly from then on;
//   - the backend going away: its graphs are destroyed before its stream.
// NEMOTRON_CUDA_GRAPHS=0 (read when the backend is made) launches every pass eagerly (A/B checks).
//
// Errors. Ops cannot return a Status through the seam; the first CUDA error is kept and handed back by
// take_error() (the forward pass returns it), and host transfers synchronise the stream, so failures of
// queued work surface there too.
#include <cuda_runtime.h>
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
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

std::atomic<int64_t> g_graph_launches{0}, g_graph_instantiations{0}, g_graph_updates{0};

class CudaBackend final : public Backend {
 public:
  CudaBackend(int device, cuda::MmaPrecision precision) : device_(device), precision_(precision) {}
  ~CudaBackend() override {
    cudaSetDevice(device_);
    if (stream_) cudaStreamSynchronize(stream_);
    for (auto& [rows, exec] : graphs_) cudaGraphExecDestroy(exec);
    free_retired();
    if (readback_dev_) cudaFree(readback_dev_);
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
    const char* graphs = std::getenv("NEMOTRON_CUDA_GRAPHS");
    graphs_enabled_ = !(graphs && std::strcmp(graphs, "0") == 0);
    return grow_ring(kRingInts);
  }

  const char* name() const override { return "cuda"; }
  int n_threads() const override { return 1; }  // host threads used

  // ---- memory ------------------------------------------------------------------------------------
  // The device copy of a small weight vector prepare_weights uploaded, found by the host vector's
  // address; any other pointer is returned as it is (device memory already: tests, benchmarks).
  const float* dev(const float* p) const {
    auto it = vectors_.find(p);
    return it == vectors_.end() ? p : it->second;
  }
  SsmParams dev(const SsmParams& p) const {
    SsmParams d = p;
    d.A = dev(p.A);
    d.D = dev(p.D);
    d.dt_bias = dev(p.dt_bias);
    return d;
  }

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
      // FP8 (ModelOpt E4M3): the values go up as exact BF16, the scale stays with the view (matmul.cu
      // applies it), per-row scales as a device array.
      dev.scale = m->scale;
      if (m->row_scales) {
        float* rs = nullptr;
        CUDA_CHECK(cudaMalloc(&rs, static_cast<size_t>(m->rows) * sizeof(float)));
        weight_allocs_.push_back(rs);
        CUDA_CHECK(cudaMemcpy(rs, m->row_scales, static_cast<size_t>(m->rows) * sizeof(float), cudaMemcpyHostToDevice));
        dev.row_scales = rs;
      }
      *m = dev;
      done[key] = dev;
      return Status::Ok();
    };
    auto vec = [&](const std::vector<float>& v) -> Status {
      if (v.empty()) return Status::Ok();
      float* p = nullptr;
      CUDA_CHECK(cudaMalloc(&p, v.size() * sizeof(float)));
      weight_allocs_.push_back(p);
      CUDA_CHECK(cudaMemcpyAsync(p, v.data(), v.size() * sizeof(float), cudaMemcpyHostToDevice, stream_));
      vectors_[v.data()] = p;
      return Status::Ok();
    };
    NEMO_RETURN_IF_ERROR(matrix(&w->embeddings));
    NEMO_RETURN_IF_ERROR(matrix(&w->lm_head));
    NEMO_RETURN_IF_ERROR(vec(w->norm_f));
    for (LayerWeights& lw : w->layers) {
      NEMO_RETURN_IF_ERROR(vec(lw.norm));
      switch (lw.kind) {
        case BlockKind::kMamba: {
          MambaWeights& m = lw.mamba;
          NEMO_RETURN_IF_ERROR(matrix(&m.in_proj));
          NEMO_RETURN_IF_ERROR(matrix(&m.out_proj));
          for (const std::vector<float>* v : {&m.conv_w, &m.conv_b, &m.A, &m.D, &m.dt_bias, &m.norm_w}) {
            NEMO_RETURN_IF_ERROR(vec(*v));
          }
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
        case BlockKind::kMoe:
          NEMO_RETURN_IF_ERROR(prepare_moe(&lw.moe, matrix, vec));
          break;
      }
    }
    CUDA_CHECK(cudaStreamSynchronize(stream_));
    return Status::Ok();
  }

  float* alloc(size_t n) override {
    std::lock_guard<std::recursive_mutex> guard(stream_mu_);
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
    std::lock_guard<std::recursive_mutex> guard(stream_mu_);
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
    std::lock_guard<std::recursive_mutex> guard(stream_mu_);
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
    std::lock_guard<std::recursive_mutex> guard(stream_mu_);
    cudaSetDevice(device_);
    if (!p) return;
    record(cudaStreamSynchronize(stream_));
    record(cudaFree(p));
  }
  void copy_bytes(void* dst, const void* src, size_t n) override {
    std::lock_guard<std::recursive_mutex> guard(stream_mu_);
    cudaSetDevice(device_);
    // Default: either side may be an offloaded (pinned host) Mamba state; UVA tells them apart.
    if (n) record(cudaMemcpyAsync(dst, src, n, cudaMemcpyDefault, stream_));
  }
  void bytes_to_host(void* dst, const void* src, size_t n) override {
    std::lock_guard<std::recursive_mutex> guard(stream_mu_);
    cudaSetDevice(device_);
    if (n && in_sink(dst)) {  // logits kept on the device for sample()
      record(cudaMemcpyAsync(sink_dev_ + (static_cast<float*>(dst) - sink_), src, n, cudaMemcpyDeviceToDevice, stream_));
      return;
    }
    if (capturing_) {  // into the readback buffer now, to the host after the launch (end_step)
      if (n) capture_readback(dst, src, n);
      return;
    }
    if (n) record(cudaMemcpyAsync(dst, src, n, cudaMemcpyDefault, stream_));
    record(cudaStreamSynchronize(stream_));
  }
  void bytes_from_host(void* dst, const void* src, size_t n) override {
    std::lock_guard<std::recursive_mutex> guard(stream_mu_);
    cudaSetDevice(device_);
    if (n) record(cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, stream_));
    record(cudaStreamSynchronize(stream_));
  }

  // ---- ops ---------------------------------------------------------------------------------------
  void matmul(float* y, int64_t ldy, const float* x, int64_t ldx, const MatrixView& w, int64_t T,
              MatmulInput input) override {
    // kRelu2: relu² is applied by the product as it converts x (matmul.cu); x is left as it is.
    record(cuda::matmul(y, ldy, x, ldx, w, T, *scratch_, stream_, precision_, input));
  }
  void embedding(float* y, const MatrixView& table, const int32_t* ids, int64_t T) override {
    const int32_t* dev_ids = stage(ids, static_cast<size_t>(T));
    if (dev_ids) record(cuda::embedding(y, table, dev_ids, T, stream_));
  }
  void rmsnorm(float* y, const float* x, const float* w, int64_t T, int64_t C, float eps) override {
    record(cuda::rmsnorm(y, x, dev(w), T, C, eps, stream_));
  }
  void rmsnorm_gated_grouped(float* out, const float* y, const float* z, int64_t ldz, const float* w, int64_t T,
                             int64_t C, int64_t group_size, float eps) override {
    record(cuda::rmsnorm_gated_grouped(out, y, z, ldz, dev(w), T, C, group_size, eps, stream_));
  }
  void conv1d_causal(float* y, const float* x, int64_t ldx, float* conv_state, const float* w, const float* b,
                     int64_t T, int64_t C, int64_t K) override {
    record(cuda::conv1d_causal(y, x, ldx, conv_state, dev(w), dev(b), T, C, K, stream_));
  }
  void conv1d_step(float* y, const float* x, float* conv_state, const float* w, const float* b, int64_t C,
                   int64_t K) override {
    record(cuda::conv1d_step(y, x, conv_state, dev(w), dev(b), C, K, stream_));
  }
  void ssd_chunk_scan(float* y, const float* x, int64_t ldx, const float* dt_raw, int64_t lddt, const float* B,
                      const float* C, int64_t ldbc, float* state, const SsmParams& p, int64_t T,
                      int64_t chunk_size) override {
    record(cuda::ssd_chunk_scan(y, x, ldx, dt_raw, lddt, B, C, ldbc, state, dev(p), T, chunk_size, *scratch_,
                                stream_));
  }
  void ssm_state_update(float* y, const float* x, const float* dt_raw, const float* B, const float* C, float* state,
                        const SsmParams& p) override {
    record(cuda::ssm_state_update(y, x, dt_raw, B, C, state, dev(p), stream_));
  }
  void kv_store(const KvBlocks& kv, int64_t pos, const float* k_rows, const float* v_rows, int64_t ld,
                int64_t T, int64_t kv_dim) override {
    KvBlocks dkv = kv;
    dkv.table = stage_table(kv.table, static_cast<size_t>(ceil_blocks(pos + T, kv.block_tokens)));
    if (dkv.table) record(cuda::kv_store(dkv, pos, k_rows, v_rows, ld, T, kv_dim, stream_));
  }
  void attention_gqa(float* out, const float* q, int64_t ldq, const KvBlocks& kv, int64_t past, int64_t T,
                     int64_t n_heads, int64_t n_kv_heads, int64_t head_dim) override {
    KvBlocks dkv = kv;
    dkv.table = stage_table(kv.table, static_cast<size_t>(ceil_blocks(past + T, kv.block_tokens)));
    if (dkv.table) {
      record(cuda::attention_gqa(out, q, ldq, dkv, past, T, n_heads, n_kv_heads, head_dim, *scratch_, stream_));
    }
  }
  // MoE: routing and the chosen experts on the device (cuda/moe.cu, from the layer prepare_moe made) into
  // acc, the shared expert by the dense matmul through tmp, then out = shared + routed (forward.cc's sum).
  bool has_moe() const override { return true; }
  int64_t moe(float* out, float* acc, float* tmp, const float* u, int64_t R, const MoeWeights& w,
              const cpu::MoeRouting& p, int64_t H, int64_t I, int64_t S) override {
    auto it = moe_layers_.find(w.router_w.data());
    if (it == moe_layers_.end()) {
      record(cudaErrorInvalidValue);  // prepare_weights did not see this layer
      return -1;
    }
    record(cuda::moe_routed(acc, u, R, *it->second, p, H, I, *scratch_, stream_));
    if (S > 0) {
      matmul(tmp, S, u, H, w.shared_up, R, MatmulInput::kPlain);
      matmul(out, H, tmp, S, w.shared_down, R, MatmulInput::kRelu2);
      add_inplace(out, acc, R * H);
    } else {
      copy(out, acc, static_cast<size_t>(R * H));
    }
    return -1;
  }
  void add_inplace(float* y, const float* x, int64_t n) override { record(cuda::add_inplace(y, x, n, stream_)); }

  // ---- device sampling, offloaded state ------------------------------------------------------------
  // The sink is a PROT_NONE reservation (no memory; a stray host write faults loudly); its rows live in
  // sink_dev_. Both grow to the largest request and are kept.
  float* logits_sink(int64_t rows, int64_t vocab) override {
    std::lock_guard<std::recursive_mutex> guard(stream_mu_);
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
    std::lock_guard<std::recursive_mutex> guard(stream_mu_);
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
    std::lock_guard<std::recursive_mutex> guard(stream_mu_);
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

  // ---- decode steps as graphs (see the top of this file) ------------------------------------------
  void begin_step(StepKind kind, int64_t rows) override {
    if (kind != StepKind::kDecode || !graphs_enabled_ || rows <= 0) return;
    stream_mu_.lock();  // held until end_step: other threads' stream work waits for the step
    cudaSetDevice(device_);
    if (ring_off_ > ring_cap_ / 2) {  // a wrap inside the capture would have to wait: wrap now
      if (!record(cudaStreamSynchronize(stream_))) {
        stream_mu_.unlock();
        return;
      }
      ring_off_ = 0;
      ++lap_;
      tables_.clear();
    }
    uploads_.clear();
    readbacks_.clear();
    readback_off_ = 0;
    if (cudaStreamBeginCapture(stream_, cudaStreamCaptureModeRelaxed) != cudaSuccess) {
      cudaGetLastError();
      graphs_enabled_ = false;  // capture unsupported here: launch eagerly from now on
      stream_mu_.unlock();
      return;
    }
    scratch_->defer_frees(true);
    capturing_ = true;
    step_rows_ = rows;
  }

  void end_step() override {
    if (!capturing_) return;
    capturing_ = false;
    scratch_->defer_frees(false);
    cudaGraph_t graph = nullptr;
    const cudaError_t cap = cudaStreamEndCapture(stream_, &graph);
    cudaGraphExec_t exec = nullptr;
    if (cap == cudaSuccess && graph) exec = instantiate(graph);
    if (graph) cudaGraphDestroy(graph);
    if (!exec) {
      // Nothing of the pass ran: the step fails, and later passes are launched eagerly.
      record(cap != cudaSuccess ? cap : cudaErrorStreamCaptureInvalidated);
      graphs_enabled_ = false;
      tables_.clear();  // tables staged in the capture were never uploaded
    } else {
      for (const Upload& u : uploads_) {
        record(cudaMemcpyAsync(u.dev, u.host, u.n * sizeof(int32_t), cudaMemcpyHostToDevice, stream_));
      }
      if (record(cudaGraphLaunch(exec, stream_))) g_graph_launches.fetch_add(1, std::memory_order_relaxed);
      for (const Readback& r : readbacks_) record(cudaMemcpyAsync(r.host, r.dev, r.n, cudaMemcpyDeviceToHost, stream_));
      if (!readbacks_.empty()) record(cudaStreamSynchronize(stream_));
    }
    if (scratch_->has_retired() || !retired_.empty() || !retired_host_.empty()) {
      record(cudaStreamSynchronize(stream_));  // the graph read them
      free_retired();
    }
    uploads_.clear();
    readbacks_.clear();
    stream_mu_.unlock();
  }

  Status take_error() override {
    std::lock_guard<std::mutex> lock(err_mu_);
    Status s = error_;
    error_ = Status::Ok();
    return s;
  }

 private:
  static constexpr size_t kRingInts = size_t{1} << 20;  // 4 MiB of ids and block tables per lap

  // The executable graph for this step's batch size, updated to `graph` (or built when there is none
  // or the topology changed). nullptr (error recorded) when it cannot be built.
  cudaGraphExec_t instantiate(cudaGraph_t graph) {
    auto it = graphs_.find(step_rows_);
    if (it != graphs_.end()) {
      cudaGraphExecUpdateResultInfo info{};
      if (cudaGraphExecUpdate(it->second, graph, &info) == cudaSuccess) {
        g_graph_updates.fetch_add(1, std::memory_order_relaxed);
        return it->second;
      }
      cudaGetLastError();  // cudaErrorGraphExecUpdateFailure: another topology, build it anew
      cudaGraphExecDestroy(it->second);
      graphs_.erase(it);
    }
    cudaGraphExec_t exec = nullptr;
    if (!record(cudaGraphInstantiate(&exec, graph, 0))) return nullptr;
    g_graph_instantiations.fetch_add(1, std::memory_order_relaxed);
    graphs_[step_rows_] = exec;
    return exec;
  }

  // During a capture: a device -> host copy goes to the readback buffer; end_step finishes it.
  void capture_readback(void* host, const void* src, size_t n) {
    size_t at = (readback_off_ + 255) / 256 * 256;
    if (at + n > readback_cap_) {  // a new buffer; earlier copies of this step keep the old one
      const size_t cap = std::max({n, 2 * readback_cap_, size_t{1} << 20});
      void* p = nullptr;
      if (!record(cudaMalloc(&p, cap))) return;
      if (readback_dev_) retired_.push_back(readback_dev_);
      readback_dev_ = static_cast<char*>(p);
      readback_cap_ = cap;
      at = 0;
    }
    if (!record(cudaMemcpyAsync(readback_dev_ + at, src, n, cudaMemcpyDeviceToDevice, stream_))) return;
    readbacks_.push_back(Readback{host, readback_dev_ + at, n});
    readback_off_ = at + n;
  }

  // Buffers replaced during a capture; the caller has waited for the graph that read them.
  void free_retired() {
    scratch_->free_retired();
    for (void* p : retired_) cudaFree(p);
    for (void* p : retired_host_) cudaFreeHost(p);
    retired_.clear();
    retired_host_.clear();
  }

  // An MoE layer's weights on the device: every expert's matrices (matrix()), the shared expert, the
  // router and bias as f32 vectors (the router is not rounded to bf16: routing is computed in f32),
  // and the tables of the experts' device addresses that cuda::moe_routed reads.
  template <typename MatrixFn, typename VecFn>
  Status prepare_moe(MoeWeights* m, MatrixFn& matrix, VecFn& vec) {
    const size_t E = m->up.size();
    if (E == 0 || m->down.size() != E) return Status(StatusCode::kInvalidArgument, "MoE layer without experts");
    for (MatrixView& v : m->up) NEMO_RETURN_IF_ERROR(matrix(&v));
    for (MatrixView& v : m->down) NEMO_RETURN_IF_ERROR(matrix(&v));
    NEMO_RETURN_IF_ERROR(matrix(&m->shared_up));
    NEMO_RETURN_IF_ERROR(matrix(&m->shared_down));
    auto layer = std::make_unique<cuda::MoeLayerDev>();
    layer->up_dtype = m->up[0].dtype;
    layer->down_dtype = m->down[0].dtype;
    std::vector<const void*> table(2 * E);
    for (size_t e = 0; e < E; ++e) {
      if (m->up[e].dtype != layer->up_dtype || m->down[e].dtype != layer->down_dtype) {
        return Status(StatusCode::kUnsupportedModel,
                      "MoE experts of one layer stored in different types: the CUDA backend needs one type for "
                      "all up and one for all down projections of a layer");
      }
      table[e] = m->up[e].data;
      table[E + e] = m->down[e].data;
    }
    void* dtable = nullptr;
    CUDA_CHECK(cudaMalloc(&dtable, table.size() * sizeof(void*)));
    weight_allocs_.push_back(dtable);
    CUDA_CHECK(cudaMemcpyAsync(dtable, table.data(), table.size() * sizeof(void*), cudaMemcpyHostToDevice, stream_));
    CUDA_CHECK(cudaStreamSynchronize(stream_));  // `table` goes out of scope
    layer->up = static_cast<const void* const*>(dtable);
    layer->down = static_cast<const void* const*>(dtable) + E;
    if (m->router_w.empty() || m->score_bias.empty()) return Status(StatusCode::kInvalidArgument, "MoE layer without a router");
    NEMO_RETURN_IF_ERROR(vec(m->router_w));
    NEMO_RETURN_IF_ERROR(vec(m->score_bias));
    layer->router = dev(m->router_w.data());
    layer->bias = dev(m->score_bias.data());
    moe_layers_[m->router_w.data()] = std::move(layer);  // keyed like vectors_: the host router's address
    return Status::Ok();
  }

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
    if (capturing_) {  // captured launches and pending uploads still refer to the old ring
      if (ring_host_) retired_host_.push_back(ring_host_);
      if (ring_dev_) retired_.push_back(ring_dev_);
    } else {
      if (ring_host_) cudaFreeHost(ring_host_);
      if (ring_dev_) cudaFree(ring_dev_);
    }
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
      // Eagerly: wait until every queued reader is done, then wrap. Capturing (no waiting): continue
      // in a new ring; the old one is freed after the graph ran.
      if (!capturing_ && !record(cudaStreamSynchronize(stream_))) return nullptr;
      if (capturing_ || need > ring_cap_) {
        const Status st = grow_ring(std::max(need * 2, capturing_ ? ring_cap_ : size_t{0}));
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
    if (capturing_) {  // copied by end_step before the launch; consecutive slots in one copy
      if (!uploads_.empty() && uploads_.back().host + uploads_.back().n <= h && uploads_.back().host >= ring_host_ &&
          uploads_.back().host < h) {
        uploads_.back().n = static_cast<size_t>(h - uploads_.back().host) + n;
      } else {
        uploads_.push_back(Upload{d, h, n});
      }
    } else if (n && !record(cudaMemcpyAsync(d, h, n * sizeof(int32_t), cudaMemcpyHostToDevice, stream_))) {
      return nullptr;
    }
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
  struct Upload {  // ring slots written during a capture
    int32_t* dev;
    const int32_t* host;
    size_t n;
  };
  struct Readback {  // device -> host copies of a captured step
    void* host;
    const char* dev;
    size_t n;
  };

  int device_;
  cuda::MmaPrecision precision_;
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<cuda::Scratch> scratch_;
  std::vector<void*> weight_allocs_;
  std::unordered_map<const float*, std::unique_ptr<cuda::MoeLayerDev>> moe_layers_;  // by MoeWeights::router_w.data()
  int32_t* ring_host_ = nullptr;
  int32_t* ring_dev_ = nullptr;
  size_t ring_cap_ = 0, ring_off_ = 0;
  uint64_t lap_ = 0;
  std::unordered_map<const int32_t*, Staged> tables_;
  std::mutex err_mu_;
  Status error_;
  std::mutex pin_mu_;
  std::unordered_map<const float*, const float*> vectors_;  // host weight vector -> device copy
  std::unordered_set<float*> pinned_;  // offloaded Mamba states (host memory), under pin_mu_
  // Decode graphs (top of the file). stream_mu_ guards the stream against other threads' transfers
  // and frees while a step is captured (begin_step to end_step); the capturing thread re-enters it.
  std::recursive_mutex stream_mu_;
  bool graphs_enabled_ = true;
  bool capturing_ = false;
  int64_t step_rows_ = 0;
  std::unordered_map<int64_t, cudaGraphExec_t> graphs_;  // by batch size (rows of the pass)
  std::vector<Upload> uploads_;
  std::vector<Readback> readbacks_;
  char* readback_dev_ = nullptr;
  size_t readback_cap_ = 0, readback_off_ = 0;
  std::vector<void*> retired_, retired_host_;  // device / pinned buffers replaced during a capture
  float* sink_ = nullptr;              // logits_sink's reservation ...
  float* sink_dev_ = nullptr;          // ... and where its rows are
  size_t sink_cap_ = 0;
  int64_t sink_vocab_ = 0;
};

}  // namespace

CudaGraphStats cuda_graph_stats() {
  CudaGraphStats s;
  s.launches = g_graph_launches.load(std::memory_order_relaxed);
  s.instantiations = g_graph_instantiations.load(std::memory_order_relaxed);
  s.updates = g_graph_updates.load(std::memory_order_relaxed);
  return s;
}

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
  const cuda::MmaPrecision precision = matmul_precision == cpu::MatmulPrecision::kExact
                                               ? cuda::MmaPrecision::kBf16x2
                                               : cuda::MmaPrecision::kBf16;
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
