// The device layout of weight rows and of the bf16 copy of the activations that matmul feeds the
// tensor cores (kernels_cuda.h describes it; matmul.cu explains why).
//
// The MMA m16n8k16 (bf16) fragments give lane (g = lane / 4, q = lane % 4) the k-slots {2q, 2q+1} and
// {2q+8, 2q+9} of a 16-wide k-step, for operand A (rows g, g+8) and operand B (column g). Within each
// 64-value block (four k-steps j = 0..3) of a row we store value k = 16j + s at position
//     16·q + 4·j + r,   q = (s & 7) >> 1,  r = (s & 1) + 2·(s >> 3)
// so the 32 bytes at 16q hold exactly lane q's slots for all four k-steps: words (4-byte pairs)
// 2j and 2j+1 are the {2q, 2q+1} and {2q+8, 2q+9} halves of step j. One 16-byte load then feeds two
// k-steps, from global memory (decode) or shared memory (prefill) alike.
#pragma once
#include <cstdint>
#include <cstring>

namespace nemo::cuda {

constexpr int kKBlock = 64;  // values per permuted block (4 MMA k-steps)

__host__ __device__ __forceinline__ int64_t perm_position(int64_t k) {
  const int64_t base = k & ~int64_t{63};
  const int64_t j = (k >> 4) & 3, s = k & 15;
  return base + 16 * ((s & 7) >> 1) + 4 * j + (s & 1) + 2 * (s >> 3);
}

__host__ __device__ __forceinline__ int64_t perm_logical(int64_t d) {
  const int64_t base = d & ~int64_t{63};
  const int64_t q = (d >> 4) & 3, j = (d >> 2) & 3, r = d & 3;
  return base + 16 * j + 2 * q + (r & 1) + 8 * (r >> 1);
}

// OCP E4M3 byte (ModelOpt FP8) -> the bits of the same value as bf16, exact (4 significant bits,
// exponents 2^-9 .. 2^8 are all bf16 normals): normals move exponent and mantissa under f32's (bias
// 127 - 7 = 120 added) and keep the upper half; subnormals m·2^-9 go through an exact float product;
// 0x7f / 0xff (NaN) give a quiet NaN. Host and device, so a CPU check can compare all 256 bytes.
__host__ __device__ __forceinline__ uint32_t e4m3_to_bf16_bits(uint32_t b) {
  const uint32_t mag = b & 0x7fu;
  const float sub = static_cast<float>(mag) * 0.001953125f;  // 2^-9, exact
  uint32_t bits;
#if defined(__CUDA_ARCH__)
  bits = mag >= 8u ? (mag << 20) + (120u << 23) : __float_as_uint(sub);
#else
  if (mag >= 8u) {
    bits = (mag << 20) + (120u << 23);
  } else {
    std::memcpy(&bits, &sub, 4);
  }
#endif
  const uint32_t v = mag == 0x7fu ? 0x7fc0u : (bits >> 16);
  return v | ((b & 0x80u) << 8);
}

}  // namespace nemo::cuda
