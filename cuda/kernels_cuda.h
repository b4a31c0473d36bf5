// The CUDA kernels: the names and argument orders of csrc/kernels/kernels.h (see there for shapes and
// semantics), with a cudaStream_t last. Where a CPU kernel takes the ThreadPool, its CUDA twin takes a
// Scratch (device working memory) in the same place. Every pointer is device memory, including
// KvBlocks::table and SsmParams::A/D/dt_bias; weights are MatrixViews in the device layout made by
// upload_matrix (below). Each function only enqueues work on `stream` and returns the launch error
// (cudaSuccess when the work was queued); errors of the work itself show up at the next synchronisation.
//
// Plain C++ header: the backend (.cc, compiled by the host compiler) includes it.
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include <vector>

#include "engine/sampler.h"
#include "kernels/kernels.h"
#include "model/weights.h"

namespace nemo::cuda {

// Device working memory that grows on demand; contents are undefined between calls. Work queued on
// one stream may reuse it from op to op (stream order keeps them apart). Growing frees the old buffer,
// which waits for `stream` (the one stream this scratch serves) to finish with it, not for the whole
// device: a device-wide wait would also wait for, and break the capture of, another backend's stream;
// while frees are deferred (a stream capture is under way, where waiting is not allowed) the old buffer
// is kept until free_retired(), which the caller makes once the work that may read it has finished.
class Scratch {
 public:
  Scratch() = default;
  ~Scratch();
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  cudaError_t get(size_t bytes, void** out, cudaStream_t stream);
  size_t size() const { return size_; }
  void defer_frees(bool on) { defer_ = on; }
  bool has_retired() const { return !retired_.empty(); }
  void free_retired();

 private:
  void* p_ = nullptr;
  size_t size_ = 0;
  bool defer_ = false;
  std::vector<void*> retired_;
};

// ---- weights on the device ----------------------------------------------------------------------
// Device layout of a weight matrix [rows, cols] (what matmul and embedding read):
//   BF16  rows of Kp = round_up(cols, 64) bf16. Within each 64-value block of a row the values are
//         stored in tensor-core fragment order (matmul.cu: logical k = 16j + s of the block is at
//         16·((s&7)>>1) + 4j + (s&1) + 2·(s>>3)), zero padded to Kp.
//   Q8_0  rows of Kp int8 quants in the same order, then the block scales as f16 [Kp/32][Np]
//         (Np = round_up(rows, 8); scale of row n, block b at b·Np + n), 16-byte aligned.
//   F8_E4M3  rows of Kp E4M3 bytes in the Q8_0 order, no block scales (ModelOpt FP8: 1 byte per
//         value on the device; the tensor scale stays in the MatrixView, matmul applies it to y).
// F32 and F16 weights are converted to BF16 at upload (one rounding per weight); Q8_0 stays Q8_0 (its
// int8 quants are exact in bf16, the f16 scale is applied in f32); the other block-quantized types
// (Q4_0, Q4_K, Q5_K, Q6_K) are dequantized to f32 by the CPU code (convert_to_f32) and rounded to BF16.
int64_t padded_cols(int64_t cols);
DType device_dtype(DType host_dtype);
size_t device_matrix_bytes(DType host_dtype, int64_t rows, int64_t cols);

// Converts `host` (host memory, any storage dtype) into the device layout at `dst`
// (device_matrix_bytes bytes) and describes it in *dev. Synchronous: returns when `dst` is complete.
cudaError_t upload_matrix(const MatrixView& host, void* dst, MatrixView* dev, Scratch& scratch,
                          cudaStream_t stream);

// A random matrix made on the device in the device layout (benchmarks): BF16 values uniform in
// [-scale, scale] (Q8_0: random quants, scale/127 per block), deterministic in `seed`.
cudaError_t random_matrix(DType dtype, int64_t rows, int64_t cols, float scale, uint64_t seed, void* dst,
                          MatrixView* dev, cudaStream_t stream);

// Row `row` of a device matrix as f32 (cols values), read back (tests).
cudaError_t read_matrix_row(const MatrixView& dev, int64_t row, float* host_out, cudaStream_t stream);

// Device memory read bandwidth in GB/s (1e9 bytes/s): the best of `reps` passes of streaming 16-byte
// loads (the matmul's decode loads) over `bytes` of device memory: the decode roofline.
cudaError_t read_bandwidth(size_t bytes, int reps, double* gb_per_s, cudaStream_t stream);

// ---- dense ----------------------------------------------------------------------------------------
// How matmul feeds x to the tensor cores. kBf16: x rounded to bf16 (the model's own activation
// precision; fastest). kBf16x2: x = hi + lo as two bf16 terms (~16 significant bits), every product
// taken twice: within float rounding of the f32 CPU engine, twice the tensor work, same weight traffic.
enum class MmaPrecision { kBf16, kBf16x2 };

// y[T, N] = x[T, Kin] · W[N, Kin]^T on the tensor cores (bf16 in, f32 accumulation). Batch invariant:
// y[t, n] is bitwise the same for any T and any position of row t in the batch (the decode and prefill
// kernels share one reduction order; matmul.cu). input kRelu2: the product reads relu(x)² (x itself is
// not modified), applied where x is converted to bf16.
cudaError_t matmul(float* y, int64_t ldy, const float* x, int64_t ldx, const MatrixView& w, int64_t T,
                   Scratch& scratch, cudaStream_t stream, MmaPrecision precision = MmaPrecision::kBf16,
                   MatmulInput input = MatmulInput::kPlain);

// FP8 tensor cores (issue #19). With precision kBf16 and F8_E4M3 weights, on a device of compute
// capability >= 8.9 running a binary built for sm_89+ (CMake's default list has 89-real and 90-real),
// matmul takes the E4M3 × E4M3 MMAs (mma.m16n8k32, f32 accumulation) instead of widening the weights to
// bf16: each token row of x (after relu², for kRelu2) is quantized with its own dynamic scale
// s[t] = amax_k |x[t, k]| / 448 to x̂ = E4M3(x / s[t]) (round to nearest even, saturating at ±448), and
// y[t, n] = (Σ_k x̂·ŵ) · s[t] · w_scale[n]. Per-token scales keep it batch invariant and deterministic
// (same fixed reduction order as the bf16 path). Numerics: x carries 4 significant bits instead of bf16's
// 8 (relative rounding up to 2^-4 per value, ~1e-2 relative on y for random signs; values of at
// most 2^-10 · s[t] become zero), and the tensor cores' FP8 accumulation may keep fewer than f32's
// 24 bits inside one MMA. kBf16x2 ("exact") never takes it. The checkpoint's static input_scale is not
// used: the dynamic per-token scale needs no plumbing and uses the whole E4M3 range of every row.
// set_fp8_mma_enabled(false) turns the path off process-wide (tests of the widening path);
// fp8_mma_active() says whether matmul would take it on the current device.
void set_fp8_mma_enabled(bool on);
bool fp8_mma_active();

// y[t, :] = table[ids[t], :] as f32; ids is DEVICE memory.
cudaError_t embedding(float* y, const MatrixView& table, const int32_t* ids, int64_t T, cudaStream_t stream);

// ---- norms ----------------------------------------------------------------------------------------
cudaError_t rmsnorm(float* y, const float* x, const float* w, int64_t T, int64_t C, float eps,
                    cudaStream_t stream);
cudaError_t rmsnorm_gated_grouped(float* out, const float* y, const float* z, int64_t ldz, const float* w,
                                  int64_t T, int64_t C, int64_t group_size, float eps, cudaStream_t stream);

// ---- Mamba-2 --------------------------------------------------------------------------------------
cudaError_t conv1d_causal(float* y, const float* x, int64_t ldx, float* conv_state, const float* w,
                          const float* b, int64_t T, int64_t C, int64_t K, cudaStream_t stream);
cudaError_t conv1d_step(float* y, const float* x, float* conv_state, const float* w, const float* b,
                        int64_t C, int64_t K, cudaStream_t stream);
cudaError_t ssd_chunk_scan(float* y, const float* x, int64_t ldx, const float* dt_raw, int64_t lddt,
                           const float* B, const float* C, int64_t ldbc, float* state,
                           const SsmParams& p, int64_t T, int64_t chunk_size, Scratch& scratch,
                           cudaStream_t stream);
cudaError_t ssm_state_update(float* y, const float* x, const float* dt_raw, const float* B, const float* C,
                             float* state, const SsmParams& p, cudaStream_t stream);

// ---- attention ------------------------------------------------------------------------------------
cudaError_t kv_store(const KvBlocks& kv, int64_t pos, const float* k_rows, const float* v_rows,
                     int64_t ld, int64_t T, int64_t kv_dim, cudaStream_t stream);
// Prompts (T·Hq/Hkv > 8 query rows per kv head): a tiled flash-style kernel, one CTA per 64 query rows
// and kv head. Decode: a paged split-context kernel (flash-decoding) and an ordered merge.
cudaError_t attention_gqa(float* out, const float* q, int64_t ldq, const KvBlocks& kv, int64_t past,
                          int64_t T, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim,
                          Scratch& scratch, cudaStream_t stream);

// ---- MLP and elementwise --------------------------------------------------------------------------
cudaError_t relu2(float* x, int64_t n, cudaStream_t stream);
cudaError_t add_inplace(float* y, const float* x, int64_t n, cudaStream_t stream);

// ---- mixture of experts (moe.cu) ------------------------------------------------------------------
// One MoE layer's routed experts on the device, made by the backend's prepare_weights: every expert's
// matrices uploaded in the device layout above (all up matrices of a layer one dtype, all down matrices
// one dtype: BF16 or Q8_0), tables of their device addresses, and the router as an f32 matrix.
struct MoeLayerDev {
  const void* const* up = nullptr;    // DEVICE array [E]: expert e's up matrix [I, H]
  const void* const* down = nullptr;  // DEVICE array [E]: expert e's down matrix [H, I]
  DType up_dtype = DType::BF16;
  DType down_dtype = DType::BF16;
  const float* router = nullptr;      // DEVICE [E, H] f32 (not rounded: the routing is computed in f32)
  const float* bias = nullptr;        // DEVICE [E] e_score_correction_bias
};

// cpu::moe_route on the device: ids, weights [T, top_k] and logits [T, ld] are DEVICE memory. The same
// f32 operations in the same order (expf for exp), ties toward the lower index: equal to the CPU's ids
// and weights up to expf's rounding. n_experts <= 2048, top_k <= 32.
cudaError_t moe_route(int32_t* ids, float* weights, const float* logits, int64_t ld, const float* bias, int64_t T,
                      const cpu::MoeRouting& p, cudaStream_t stream);

// Where moe_routed left this call's routing (scratch memory, valid until the scratch is next used): tests.
struct MoeRouteOut {
  const int32_t* ids = nullptr;    // [T, top_k]
  const float* weights = nullptr;  // [T, top_k]
  const float* logits = nullptr;   // [T, n_experts]
};

// The routed half of an MoE block, all on the stream (no host synchronisation: decode steps stay
// capturable): router logits of u [T, H] (f32), routing, and acc[T, H] = Σ_k w_k · down_k(relu(up_k(u))²)
// over each row's top_k experts, added in ascending expert id from +0 (forward.cc's CPU order). Only the
// chosen experts are read, each once per call. Batch invariant: a row's acc does not depend on T or on
// the other rows (moe.cu). I = moe_intermediate_size.
cudaError_t moe_routed(float* acc, const float* u, int64_t T, const MoeLayerDev& w, const cpu::MoeRouting& p,
                       int64_t H, int64_t I, Scratch& scratch, cudaStream_t stream, MoeRouteOut* route_out = nullptr);

// ---- sampling -------------------------------------------------------------------------------------
// sample_token (csrc/engine/sampler.h) for specs.size() rows of device logits (row i at logits + i·ld):
// the same semantics and counter-based draw, one CTA per row (sampling.cu). Writes the ids to
// tokens_host and, for rows with want_logprob, log p(token) under the raw logits to logprobs_host
// (nullable). Synchronous: returns when the ids are on the host.
cudaError_t sample(int32_t* tokens_host, float* logprobs_host, const float* logits, int64_t ld, int64_t vocab,
                   const std::vector<SampleSpec>& specs, Scratch& scratch, cudaStream_t stream);

}  // namespace nemo::cuda
