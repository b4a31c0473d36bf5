// ModelWeights: every tensor of a Nemotron-H checkpoint, bound by name and checked against the config.
// Large matrices stay where they are stored (memory-mapped, in their stored dtype); the small per-channel
// vectors (norm weights, conv taps, A_log, D, dt_bias) are converted to f32 copies at load, because every
// kernel reads them in f32 and they are a few KB per layer.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/status.h"
#include "core/views.h"
#include "model/config.h"

namespace nemo {

// The small f32 vectors are host memory; a device backend keeps its own copies (backend.h).
struct MambaWeights {
  MatrixView in_proj;          // [in_proj_dim = d_inner + conv_dim + n_heads, hidden]
  std::vector<float> conv_w;   // [conv_dim, conv_kernel]  (HF [conv_dim, 1, K] squeezed)
  std::vector<float> conv_b;   // [conv_dim]  (zeros when use_conv_bias is false)
  std::vector<float> A;        // [n_heads]  = -exp(A_log), negative
  std::vector<float> D;        // [n_heads]
  std::vector<float> dt_bias;  // [n_heads]
  std::vector<float> norm_w;   // [d_inner]  gated grouped RMSNorm weight
  MatrixView out_proj;         // [hidden, d_inner]
};

struct AttentionWeights {
  MatrixView q_proj;  // [n_heads * head_dim, hidden]
  MatrixView k_proj;  // [n_kv_heads * head_dim, hidden]
  MatrixView v_proj;  // [n_kv_heads * head_dim, hidden]
  MatrixView o_proj;  // [hidden, n_heads * head_dim]
};

struct MlpWeights {
  MatrixView up_proj;    // [intermediate, hidden]
  MatrixView down_proj;  // [hidden, intermediate]
};

// Mixture of experts ('E', HF NemotronHMoE). Each routed expert is a relu² MLP like MlpWeights, viewed
// in place: from per-expert safetensors tensors, or as [E] consecutive slices of a GGUF 3-D tensor.
struct MoeWeights {
  std::vector<float> router_w;          // [n_routed_experts, hidden] f32 copy (HF computes the router in f32)
  MatrixView router;                    // views router_w (F32)
  std::vector<float> score_bias;        // [n_routed_experts] e_score_correction_bias (selection only)
  std::vector<MatrixView> up;           // per expert [moe_intermediate_size, hidden]
  std::vector<MatrixView> down;         // per expert [hidden, moe_intermediate_size]
  MatrixView shared_up;                 // [moe_shared_expert_intermediate_size, hidden] (rows 0: none)
  MatrixView shared_down;               // [hidden, moe_shared_expert_intermediate_size]
};

struct LayerWeights {
  BlockKind kind;
  std::vector<float> norm;  // [hidden]  the block's pre-norm
  MambaWeights mamba;       // valid when kind == kMamba
  AttentionWeights attn;    // valid when kind == kAttention
  MlpWeights mlp;           // valid when kind == kMlp
  MoeWeights moe;           // valid when kind == kMoe
};

class MappedFile;

struct ModelWeights {
  MatrixView embeddings;           // [vocab, hidden]
  std::vector<LayerWeights> layers;
  std::vector<float> norm_f;       // [hidden]
  MatrixView lm_head;              // [vocab, hidden]  (= embeddings when tied)
  int64_t parameter_count = 0;     // elements over all tensors
  int64_t weight_bytes = 0;        // bytes of all tensors as stored
  std::vector<std::shared_ptr<MappedFile>> files;  // keeps the mappings alive
  // Converted copies the views point into (FP8 values as BF16, their per-row scales); moving the
  // ModelWeights keeps them where they are.
  std::vector<std::vector<uint16_t>> owned_bf16;
  std::vector<std::vector<float>> owned_f32;
  bool has_scaled_matrices = false;  // some MatrixView carries an FP8 scale (CPU backend only)
};

// Where the large matrices live once loaded (LoadOptions.weights; lib/model.ts resolves 'auto').
//   kMmap    in the memory-mapped files (page-cache pages, 4 KiB each unless the kernel has huge
//            pages for read-only file mappings), asked for huge pages and read-ahead (madvise);
//   kMemory  copied at load into anonymous memory aligned to 2 MiB and advised MADV_HUGEPAGE
//            (transparent huge pages: 512x the TLB reach), the files unmapped afterwards.
// Results are bitwise the same either way: every matrix keeps its address modulo 4 KiB, which is all
// the kernels' alignment handling looks at.
enum class WeightsPlacement { kMmap, kMemory };

class ThreadPool;

// Every large matrix of `weights` (embeddings, lm_head when not tied, each layer's projections), in a
// fixed order: the pointers that placement moves. Tied lm_head appears once (as embeddings).
std::vector<MatrixView*> weight_matrices(ModelWeights* weights);

// Applies `placement` to loaded weights: for kMemory copies, per file, the byte range that holds its
// matrices (from the 4 KiB page of the first to the end of the last) into MappedFile::anonymous memory,
// in parallel on `pool`, rebinds every matrix into the copy and releases the file mapping; for kMmap
// advises the file mappings (MappedFile::advise_file). `copied_bytes` (optional) gets the bytes copied.
Status place_weights(ModelWeights* weights, WeightsPlacement placement, ThreadPool& pool,
                     int64_t* copied_bytes = nullptr);

// Loads a Hugging Face checkpoint folder: config.json, and model.safetensors or the shards listed in
// model.safetensors.index.json. Accepts the `backbone.` and `model.` prefixes and
// `embedding.weight` for `embeddings.weight`. Every tensor's name, shape and dtype is checked before
// anything is computed; the first problem found is returned with the tensor's name, the expected and
// the actual shape. A path to a regular file ending in `.gguf` is loaded as a llama.cpp GGUF of
// architecture `nemotron_h` instead (model/gguf.h, load_gguf).
Status load_checkpoint(const std::string& dir, NemotronHConfig* config, ModelWeights* weights);

}  // namespace nemo
