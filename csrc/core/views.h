// The views every layer passes around: a weight matrix in its stored dtype (MatrixView), what a matmul
// reads from its activations (MatmulInput), the SSM parameters of a Mamba layer (SsmParams) and one
// sequence's paged KV cache of one attention layer (KvBlocks). Plain structs over pointers that the
// model (csrc/model), the CPU kernels (csrc/kernels, namespace cpu), the CUDA kernels (cuda/, namespace
// cuda), the cache and the engine all read; they live here, at the bottom of the include order
// (scripts/check-includes.mjs), so that no layer has to include a higher one to name them. Whose memory
// a pointer is (host or device) is the caller's business: see kernels.h and cuda/kernels_cuda.h.
#pragma once
#include <cstdint>

#include "core/dtype.h"

namespace nemo {

// A read-only row-major matrix [rows, cols] in its stored dtype (PyTorch [out, in] layout).
struct MatrixView {
  const void* data = nullptr;
  DType dtype = DType::F32;
  int64_t rows = 0;
  int64_t cols = 0;
  // FP8 checkpoints (ModelOpt E4M3): the stored values times weight_scale are the weights. The values
  // are kept as an exact BF16 copy and the scale is applied to the product's output (y[t, n] *= scale,
  // or row_scales[n] for a per-output-channel scale), which is the same product. The forward pass applies
  // it (forward.cc mm); the kernels never see a scale.
  float scale = 1.0f;
  const float* row_scales = nullptr;  // [rows], or nullptr
  bool scaled() const { return scale != 1.0f || row_scales != nullptr; }
};

// kRelu2: the product reads relu(x)² instead of x (the MLP's activation fused into the down
// projection, saving a pass over the [T, intermediate] activations). x itself is not modified.
enum class MatmulInput { kPlain = 0, kRelu2 = 1 };

// A Mamba-2 layer's SSM parameters (kernels.h ssd_chunk_scan, ssm_state_update).
struct SsmParams {
  int64_t n_heads;      // H
  int64_t head_dim;     // P
  int64_t n_groups;     // G   (head h reads group h / (H / G))
  int64_t state_size;   // N
  float dt_min, dt_max; // time_step_limit clamp applied after softplus
  const float* A;       // [H] negative (= -exp(A_log))
  const float* D;       // [H]
  const float* dt_bias; // [H]
};

// One attention layer's K and V for one sequence, in a paged pool: position p lives in block
// table[p / block_tokens], row p % block_tokens. A block of a layer holds block_tokens positions of
// kv_dim = Hkv*Dh values in `dtype` (F16 or F32), K and V in separate storage: k + block * block_stride.
// Inside a block (CPU kernels): V is token-major [block_tokens][kv_dim]; K is channel-major
// [kv_dim][block_tokens] (value c of position r at c * block_tokens + r), so a kv head's K is one
// [Dh][block_tokens] tile and q·K over consecutive keys is vertical FMAs. Same bytes per block either
// way. cuda/ keeps K token-major (Backend::kv_k_channel_major says which); export/import convert.
struct KvBlocks {
  void* k;
  void* v;
  const int32_t* table;
  int64_t block_tokens;
  int64_t block_stride;  // elements per block (block_tokens * Hkv * Dh)
  DType dtype;
};

}  // namespace nemo
