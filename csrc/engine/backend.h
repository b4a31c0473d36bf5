// The backend seam: the forward pass calls every kernel and every state allocation through this
// interface, so the CPU kernels (csrc/kernels) and the CUDA kernels (cuda/) are interchangeable.
// Pointers handed to a backend's ops are its own memory (host for CPU, device for CUDA); weights are
// made resident once by prepare_weights: matrices are rewritten in place (MatrixView), while a device
// backend keeps its own copies of the small f32 vectors and reads them when an op is handed the host
// vector's address (the forward pass always passes host addresses). Op names and argument orders
// mirror csrc/kernels/kernels.h. The memory half of the seam is core/device_memory.h (the cache uses it).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/device_memory.h"
#include "core/status.h"
#include "core/views.h"
#include "engine/sampler.h"
#include "kernels/kernels.h"
#include "model/weights.h"

namespace nemo {

class Backend : public DeviceMemory {
 public:
  virtual const char* name() const = 0;
  virtual int n_threads() const = 0;
  // True when the ops' pointers are host memory the forward pass may read and write directly (the CPU
  // backend).
  virtual bool host_memory() const { return false; }

  // ---- memory ------------------------------------------------------------------------------------
  // alloc, free, copy, ... offload: DeviceMemory (core/device_memory.h).
  virtual Status prepare_weights(ModelWeights* weights) = 0;  // make weights usable by the ops

  // ---- ops (see kernels.h for shapes) --------------------------------------------------------------
  // The activation precision is the backend's (chosen when it is made); `input` selects kRelu2 for
  // the MLP's down projection.
  virtual void matmul(float* y, int64_t ldy, const float* x, int64_t ldx, const MatrixView& w,
                      int64_t T, MatmulInput input) = 0;
  virtual void embedding(float* y, const MatrixView& table, const int32_t* ids, int64_t T) = 0;
  virtual void rmsnorm(float* y, const float* x, const float* w, int64_t T, int64_t C, float eps) = 0;
  virtual void rmsnorm_gated_grouped(float* out, const float* y, const float* z, int64_t ldz,
                                     const float* w, int64_t T, int64_t C, int64_t group_size,
                                     float eps) = 0;
  virtual void conv1d_causal(float* y, const float* x, int64_t ldx, float* conv_state,
                             const float* w, const float* b, int64_t T, int64_t C, int64_t K) = 0;
  virtual void conv1d_step(float* y, const float* x, float* conv_state, const float* w,
                           const float* b, int64_t C, int64_t K) = 0;
  virtual void ssd_chunk_scan(float* y, const float* x, int64_t ldx, const float* dt_raw,
                              int64_t lddt, const float* B, const float* C, int64_t ldbc,
                              float* state, const SsmParams& p, int64_t T,
                              int64_t chunk_size) = 0;
  virtual void ssm_state_update(float* y, const float* x, const float* dt_raw, const float* B,
                                const float* C, float* state, const SsmParams& p) = 0;
  virtual void kv_store(const KvBlocks& kv, int64_t pos, const float* k_rows,
                        const float* v_rows, int64_t ld, int64_t T, int64_t kv_dim) = 0;
  virtual void attention_gqa(float* out, const float* q, int64_t ldq, const KvBlocks& kv,
                             int64_t past, int64_t T, int64_t n_heads, int64_t n_kv_heads,
                             int64_t head_dim) = 0;
  // How this backend's kv_store lays out a K block: channel-major [kv_dim][block_tokens] (the CPU
  // kernels) or token-major like V (the default). The pool's copy and export/import follow it.
  virtual bool kv_k_channel_major() const { return false; }
  virtual void add_inplace(float* y, const float* x, int64_t n) = 0;

  // ---- optional: sampling on the device (and DeviceMemory::offload, Mamba state in host memory) ----
  // The defaults say "not supported", so a backend without them (the CPU's) keeps the host paths.
  //
  // A host address range of rows·vocab floats that forward() may be handed as its logits_host: the
  // backend keeps what to_host writes there in its own memory (nothing is written to the range, which
  // may not even be mapped) for sample() to read. nullptr: not supported, copy the logits and sample
  // on the host.
  virtual float* logits_sink(int64_t rows, int64_t vocab) { return nullptr; }
  // One token per row of the sink (rows[i] samples row i) with sample_token's semantics and counter-
  // based draws; only the ids (and log-probs for rows that want them; logprobs may be null) come back.
  virtual Status sample(const std::vector<SampleSpec>& rows, int32_t* tokens, float* logprobs) {
    return Status(StatusCode::kInternal, std::string(name()) + " backend: no device sampling");
  }

  // ---- mixture of experts --------------------------------------------------------------------------
  // A whole MoE block (forward.cc moe_block) as one op, routing included (a device backend must not hand
  // the routing to the host inside a captured decode step): out[R, H] = shared(u) + Σ_k w_k ·
  // down_k(relu(up_k(u))²) over each row's top_k experts (kernels.h moe_route), the routed terms added in
  // ascending expert id; u is [R, H]; I = moe_intermediate_size, S = the shared expert's width (0: none).
  // acc [R, H] and tmp [R, >= S] are workspace the op may use. Batch invariant like matmul. Returns the
  // number of routed experts whose weights were read, or -1 when the host does not know (a device
  // backend; at most min(E, R·K)). has_moe() false: the backend has no MoE kernels.
  virtual bool has_moe() const { return false; }
  virtual int64_t moe(float* out, float* acc, float* tmp, const float* u, int64_t R, const MoeWeights& w,
                      const cpu::MoeRouting& p, int64_t H, int64_t I, int64_t S) {
    return 0;
  }

  // ---- optional: step hooks ----------------------------------------------------------------------
  // forward() brackets every pass with begin_step/end_step (always both). kDecode: every item is one
  // token; a device backend may record the pass's launches and replay them as one graph (the CUDA
  // backend, per batch size), so between the two calls an op must not depend on the host seeing its
  // result (to_host may complete only at end_step). Errors surface through take_error. No-ops here.
  enum class StepKind { kPrefill, kDecode };
  virtual void begin_step(StepKind kind, int64_t rows) {}
  virtual void end_step() {}

  // The first failure of an op or transfer since the last call (a device backend's launch, execution
  // and out-of-memory errors), cleared by the call. CPU ops cannot fail.
  virtual Status take_error() { return Status::Ok(); }
};

// n_threads <= 0 means one per hardware thread. prepare_weights applies `weights` (place_weights,
// model/weights.h) on the backend's thread pool.
std::unique_ptr<Backend> make_cpu_backend(int n_threads,
                                          cpu::MatmulPrecision precision = cpu::MatmulPrecision::kExact,
                                          WeightsPlacement weights = WeightsPlacement::kMmap);

// The CUDA backend (cuda/backend_cuda.cu), linked only into builds with NEMOTRON_CUDA defined.
// nullptr with *status set when the device is missing or unsuitable (compute capability < 8.0).
// kExact maps to bf16x2 tensor-core products (within float rounding of the f32 CPU engine), kFast to
// plain bf16 activations.
std::unique_ptr<Backend> make_cuda_backend(int device, cpu::MatmulPrecision precision, Status* status);

// Decode steps run as CUDA graphs (unless NEMOTRON_CUDA_GRAPHS=0 when the backend is made): counters
// over all CUDA backends of the process, for checks that graphs were used. Linked with the CUDA backend.
struct CudaGraphStats {
  int64_t launches = 0;        // decode steps replayed as a graph
  int64_t instantiations = 0;  // graphs built (first use of a batch size, or a changed topology)
  int64_t updates = 0;         // steps that reused an instantiated graph with new arguments
};
CudaGraphStats cuda_graph_stats();

}  // namespace nemo
