/**
 * The config.json fields of NVIDIA's released Nemotron Nano 2 checkpoints that the engine and the
 * memory planner read (docs/architecture.md §1.1), so a service can plan memory before downloading anything:
 * `planMemory(NEMOTRON_NANO_9B_V2, { contextLength: 131072, maxSequences: 8 })`.
 */
export const NEMOTRON_NANO_9B_V2 = Object.freeze({
  architectures: ['NemotronHForCausalLM'],
  model_type: 'nemotron_h',
  hybrid_override_pattern: 'M-M-M-MM-M-M-M*-M-M-M*-M-M-M-M*-M-M-M-M*-M-MM-M-M-M-M-M-',
  num_hidden_layers: 56,
  hidden_size: 4480,
  intermediate_size: 15680,
  num_attention_heads: 40,
  num_key_value_heads: 8,
  head_dim: 128,
  mamba_num_heads: 128,
  mamba_head_dim: 80,
  ssm_state_size: 128,
  n_groups: 8,
  conv_kernel: 4,
  chunk_size: 128,
  vocab_size: 131072,
  tie_word_embeddings: false,
  use_conv_bias: true,
  max_position_embeddings: 131072,
  torch_dtype: 'bfloat16',
});

/** The 12B: the same block kinds, 62 layers, hidden 5120, MLP 20480 (docs/architecture.md §1.1). */
export const NEMOTRON_NANO_12B_V2 = Object.freeze({
  ...NEMOTRON_NANO_9B_V2,
  hybrid_override_pattern: 'M-M-M-M*-M-M-M-M*-M-M-M-M*-M-M-M-M*-M-M-M-M*-M-M-M-M*-M-M-M-M-',
  num_hidden_layers: 62,
  hidden_size: 5120,
  intermediate_size: 20480,
});

/**
 * Nemotron 3 Nano 30B-A3B (nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-BF16): 52 layers, 23 Mamba-2, 23 MoE ('E')
 * and 6 attention; 128 routed experts of width 1856, 6 per token, one shared expert of width 3712, sigmoid
 * routing scaled by 2.5. Values as in the released config.json (several independent copies agree);
 * mamba_ssm_cache_dtype "float32" there is what the engine keeps anyway.
 */
export const NEMOTRON_3_NANO_30B_A3B = Object.freeze({
  architectures: ['NemotronHForCausalLM'],
  model_type: 'nemotron_h',
  hybrid_override_pattern: 'MEMEM*EMEMEM*EMEMEM*EMEMEM*EMEMEM*EMEMEMEM*EMEMEMEME',
  num_hidden_layers: 52,
  hidden_size: 2688,
  intermediate_size: 1856,
  num_attention_heads: 32,
  num_key_value_heads: 2,
  head_dim: 128,
  mamba_num_heads: 64,
  mamba_head_dim: 64,
  ssm_state_size: 128,
  n_groups: 8,
  conv_kernel: 4,
  chunk_size: 128,
  n_routed_experts: 128,
  num_experts_per_tok: 6,
  moe_intermediate_size: 1856,
  moe_shared_expert_intermediate_size: 3712,
  n_shared_experts: 1,
  n_group: 1,
  topk_group: 1,
  norm_topk_prob: true,
  routed_scaling_factor: 2.5,
  vocab_size: 131072,
  tie_word_embeddings: false,
  use_conv_bias: true,
  max_position_embeddings: 262144,
  mamba_ssm_cache_dtype: 'float32',
  torch_dtype: 'bfloat16',
});

/**
 * Nemotron-H 4B (nvidia/Nemotron-H-4B-Instruct-128K and its base, Nemotron-H-4B-Base-8K): the dense
 * Nemotron-H pruned and distilled from the 8B — 52 layers (24 Mamba-2, 24 MLP, 4 attention), hidden 3072,
 * 112 Mamba heads of 64, MLP 12288, 32 query / 8 KV heads of 128. Sources: NVIDIA Megatron-Bridge,
 * src/megatron/bridge/models/nemotronh/nemotron_h_provider.py, class NemotronHModelProvider4B
 * (hybrid_override_pattern, num_layers, hidden_size, mamba_num_heads, kv_channels, mamba_state_dim,
 * ffn_hidden_size, num_attention_heads; num_query_groups 8, mamba_num_groups 8 and mamba_head_dim 64 from
 * its NemotronHModelProvider base), with the fields it leaves to Hugging Face's NemotronHConfig defaults
 * (vocab_size 131072, conv_kernel 4, chunk_size 128); max_position_embeddings is the Instruct-128K
 * model card's 128K context.
 */
export const NEMOTRON_H_4B = Object.freeze({
  architectures: ['NemotronHForCausalLM'],
  model_type: 'nemotron_h',
  hybrid_override_pattern: 'M-M-M-M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M-',
  num_hidden_layers: 52,
  hidden_size: 3072,
  intermediate_size: 12288,
  num_attention_heads: 32,
  num_key_value_heads: 8,
  head_dim: 128,
  mamba_num_heads: 112,
  mamba_head_dim: 64,
  ssm_state_size: 128,
  n_groups: 8,
  conv_kernel: 4,
  chunk_size: 128,
  vocab_size: 131072,
  tie_word_embeddings: false,
  use_conv_bias: true,
  max_position_embeddings: 131072,
  torch_dtype: 'bfloat16',
});
