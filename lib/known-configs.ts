/**
 * The config.json fields of NVIDIA's released Nemotron Nano 2 checkpoints that the engine and the
 * memory planner read (architecture.md §1.1), so a service can plan memory before downloading anything:
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

/** The 12B: the same block kinds, 62 layers, hidden 5120, MLP 20480 (architecture.md §1.1). */
export const NEMOTRON_NANO_12B_V2 = Object.freeze({
  ...NEMOTRON_NANO_9B_V2,
  hybrid_override_pattern: 'M-M-M-M*-M-M-M-M*-M-M-M-M*-M-M-M-M*-M-M-M-M*-M-M-M-M*-M-M-M-M-',
  num_hidden_layers: 62,
  hidden_size: 5120,
  intermediate_size: 20480,
});
