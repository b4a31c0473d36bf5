// Internal to matmul_quant*.cc (and the test bindings): the 8-bit-activation products (kFast).
#pragma once
#include <cstdint>
#include <cstring>

#include "kernels/kernels.h"

namespace nemo::cpu {

// The 12 packed bytes of Q4_K / Q5_K scales and mins (b + 4) as 16 bytes: sub-block scales sc_0..sc_7,
// then mins m_0..m_7. Bytes 0-3 hold sc_0..3 in their low 6 bits and bits 4-5 of sc_4..7 in their top
// 2 bits; bytes 4-7 the same for the mins; bytes 8-11 the low 4 bits of sc_4..7 (low nibbles) and of
// m_4..7 (high nibbles). Worked on as three little-endian 32-bit words, a byte per sub-block.
inline void k4_unpack(const uint8_t* b, uint32_t out[4]) {
  uint32_t a, m, c;
  std::memcpy(&a, b + 4, 4);
  std::memcpy(&m, b + 8, 4);
  std::memcpy(&c, b + 12, 4);
  out[0] = a & 0x3f3f3f3fu;
  out[1] = (c & 0x0f0f0f0fu) | ((a >> 2) & 0x30303030u);
  out[2] = m & 0x3f3f3f3fu;
  out[3] = ((c >> 4) & 0x0f0f0f0fu) | ((m >> 2) & 0x30303030u);
}

// y = in(x) · W^T with in(x) quantized to 8-bit blocks and integer dot products (matmul_quant_fast.cc
// describes the format and the guarantees). Returns false, computing nothing, when w.dtype has no
// such path; the caller then computes kExact.
bool matmul_quant_fast(float* y, int64_t ldy, const float* x, int64_t ldx, const MatrixView& w,
                       int64_t T, ThreadPool& pool, MatmulInput input);

// For tests: which integer dot product kFast uses now: "vnni512" (vpdpbusd zmm), "avxvnni" (ymm),
// "avx2" (maddubs + madd), "neon" (smull + sadalp), "neon-dotprod" (sdot), "neon-i8mm" (smmla prefill
// tiles, sdot decode) or "scalar"; it follows kernel_isa(), allow_vnni(false) drops the VNNI
// instructions (AVX-512 then uses the ymm AVX2 kernels) and set_neon_ext_mask (core/cpu_features.h)
// the aarch64 extensions. Not for use while kernels run.
const char* quant_dot_path();
// For tests: whether the activation quantizer in use (AVX-512 where available) gives one x row of K
// values (a multiple of block, 32 or 256) the same codes, scales and sums as the scalar one, bitwise.
bool quant_fast_quantizers_agree(const float* x, int64_t K, int64_t block, bool relu2);
void quant_allow_vnni(bool allow);

}  // namespace nemo::cpu
