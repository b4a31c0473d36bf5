# Issue #17 (the house, C++/CUDA side): the mechanical renames, for branches cut before it.
# Apply with scripts/house-renames.sh (it runs this file over csrc/ cuda/ native-tests/ scripts/ and
# the build files, and house-renames-cuda.sed over cuda/ only). Every rename here leaves a compile error
# where it is missed: the old names no longer exist.
#
# The shared views moved from namespace nemo::cpu (csrc/kernels/kernels.h) and nemo (model/weights.h)
# to namespace nemo in csrc/core/views.h: MatrixView, MatmulInput, SsmParams, KvBlocks.
s/\bcpu::MatmulInput\b/MatmulInput/g
s/\bcpu::SsmParams\b/SsmParams/g
s/\bcpu::KvBlocks\b/KvBlocks/g
# The CUDA matmul's own precision enum (kBf16, kBf16x2) is no longer a second MatmulPrecision.
s/\bcuda::MatmulPrecision\b/cuda::MmaPrecision/g
# Files that moved.
s#cuda/addon_cuda\.cc#csrc/addon/cuda_addon.cc#g
s#csrc/kernels/matmul_selftest\.cc#native-tests/matmul_selftest.cc#g
s#csrc/kernels/matmul_quant_selftest\.cc#native-tests/matmul_quant_selftest.cc#g
s#csrc/kernels/ssd_selftest\.cc#native-tests/ssd_selftest.cc#g
s#csrc/model/loader_selftest\.cc#native-tests/loader_selftest.cc#g
