// NemotronHConfig: the fields of a Hugging Face config.json that the forward pass needs, under their
// HF names, plus the sizes derived from them (architecture.md §1).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"

namespace nemo {

enum class BlockKind : char { kMamba = 'M', kAttention = '*', kMlp = '-', kMoe = 'E' };

struct NemotronHConfig {
  std::string architecture;          // "NemotronHForCausalLM"
  std::string hybrid_override_pattern;
  std::vector<BlockKind> layers;     // one per pattern character
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;     // MLP width
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;
  int64_t head_dim = 0;              // also accepted as attention_head_dim
  int64_t mamba_num_heads = 0;
  int64_t mamba_head_dim = 0;
  int64_t ssm_state_size = 0;
  int64_t n_groups = 0;              // also mamba_n_groups
  int64_t conv_kernel = 0;           // also mamba_d_conv
  int64_t chunk_size = 128;          // also mamba_chunk_size
  double layer_norm_epsilon = 1e-5;  // also rms_norm_eps
  double time_step_limit_min = 0.0;  // time_step_limit[0] (also mamba_dt_limit)
  double time_step_limit_max = 1.0 / 0.0;
  bool use_conv_bias = true;
  bool tie_word_embeddings = false;
  int64_t max_position_embeddings = 0;
  int64_t bos_token_id = -1;
  std::vector<int64_t> eos_token_ids;
  std::string torch_dtype;

  // Mixture-of-experts blocks ('E', Nemotron-3; HF NemotronHMoE / NemotronHTopkRouter). Used only when
  // the pattern has an 'E'.
  int64_t n_routed_experts = 0;
  int64_t num_experts_per_tok = 0;                    // top-k
  int64_t moe_intermediate_size = 0;                  // each routed expert's width
  int64_t moe_shared_expert_intermediate_size = 0;    // the shared expert's width (0: no shared expert)
  int64_t n_group = 1;                                // expert groups for group-limited routing
  int64_t topk_group = 1;                             // groups kept per token
  bool norm_topk_prob = true;                         // renormalise the top-k weights to sum 1
  double routed_scaling_factor = 1.0;                 // applied to the routed weights
  bool has_shared_expert() const { return moe_shared_expert_intermediate_size > 0; }

  // Derived (architecture.md §1.2).
  int64_t d_inner() const { return mamba_num_heads * mamba_head_dim; }
  int64_t conv_dim() const { return d_inner() + 2 * n_groups * ssm_state_size; }
  int64_t in_proj_dim() const { return d_inner() + conv_dim() + mamba_num_heads; }
  int64_t q_dim() const { return num_attention_heads * head_dim; }
  int64_t kv_dim() const { return num_key_value_heads * head_dim; }
  int64_t num_layers() const { return static_cast<int64_t>(layers.size()); }
  // One Mamba layer's state per sequence, in f32 values (architecture.md §4): the conv window [K-1,
  // conv_dim] (at least one value, so that K = 1 still has a buffer) and the SSM state [H, P, N].
  int64_t conv_state_floats() const {
    const int64_t n = (conv_kernel - 1) * conv_dim();
    return n > 0 ? n : 1;
  }
  int64_t ssm_state_floats() const { return mamba_num_heads * mamba_head_dim * ssm_state_size; }
};

// "Mamba-2", "attention", "MLP", "MoE" (error messages).
const char* block_kind_name(BlockKind kind);

// Parses config.json text (which may hold the bare JSON tokens Infinity/NaN, as HF writes them).
// Accepts the legacy key aliases and the newer `layers_block_type` list; rejects other architectures,
// unknown block kinds and MoE features not implemented (latent MoE projections, non-sigmoid routing)
// with kUnsupportedModel; inconsistent sizes with kInvalidConfig.
Status parse_config(const std::string& json_text, NemotronHConfig* out);

}  // namespace nemo
