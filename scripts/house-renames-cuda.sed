# Issue #17: inside cuda/ (namespace nemo::cuda) the unqualified CUDA MatmulPrecision is MmaPrecision;
# cpu::MatmulPrecision (the model-wide choice, kernels.h) keeps its name.
s/\(^\|[^:A-Za-z0-9_]\)MatmulPrecision\b/\1MmaPrecision/g
