// Storage dtypes of weights, and scalar conversions to f32. Activations are always f32 on CPU.
#pragma once
#include <cstdint>
#include <cstring>
#include <cstddef>

namespace nemo {

// Storage types. The block-quantized ones (GGUF's Q8_0, Q4_0, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K) store a row as
// blocks of `dtype_block_elems` values in `dtype_block_bytes` bytes; a row's length must be a multiple.
// F8_E4M3 (ModelOpt FP8 checkpoints, safetensors "F8_E4M3") is a storage type of the loader only: the
// binder converts such matrices to exact BF16 copies (model/weights.cc), so no kernel ever sees it.
enum class DType { F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K, Q6_K, F8_E4M3, Q5_0, Q5_1 };

inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
    case DType::Q8_0: return "Q8_0";
    case DType::Q4_0: return "Q4_0";
    case DType::Q4_K: return "Q4_K";
    case DType::Q5_K: return "Q5_K";
    case DType::Q6_K: return "Q6_K";
    case DType::F8_E4M3: return "F8_E4M3";
    case DType::Q5_0: return "Q5_0";
    case DType::Q5_1: return "Q5_1";
  }
  return "?";
}

inline bool dtype_is_quantized(DType t) {
  return t != DType::F32 && t != DType::F16 && t != DType::BF16 && t != DType::F8_E4M3;
}

// Values per block (1 for the plain float types).
inline int64_t dtype_block_elems(DType t) {
  switch (t) {
    case DType::Q8_0: case DType::Q4_0: case DType::Q5_0: case DType::Q5_1: return 32;
    case DType::Q4_K: case DType::Q5_K: case DType::Q6_K: return 256;
    default: return 1;
  }
}

// Bytes per block (the element size for the plain float types).
inline int64_t dtype_block_bytes(DType t) {
  switch (t) {
    case DType::F32: return 4;
    case DType::F16: case DType::BF16: return 2;
    case DType::Q8_0: return 34;   // f16 scale + 32 int8
    case DType::Q4_0: return 18;   // f16 scale + 16 bytes of nibbles
    case DType::Q4_K: return 144;  // f16 d, f16 dmin, 12 bytes of 6-bit scales/mins, 128 bytes of nibbles
    case DType::Q5_K: return 176;  // as Q4_K plus 32 bytes of high bits
    case DType::Q6_K: return 210;  // 128 low nibbles, 64 high 2-bit, 16 int8 scales, f16 d
    case DType::F8_E4M3: return 1;
    case DType::Q5_0: return 22;   // f16 d, 4 bytes of fifth bits, 16 bytes of nibbles
    case DType::Q5_1: return 24;   // f16 d, f16 m, then as Q5_0
  }
  return 4;
}

// Bytes of one row of n values (n a multiple of the block size).
inline size_t dtype_row_bytes(DType t, int64_t n) {
  return static_cast<size_t>(n / dtype_block_elems(t) * dtype_block_bytes(t));
}

// Element size of the plain float types (F32, F16, BF16, F8_E4M3) only.
inline size_t dtype_size(DType t) { return t == DType::F32 ? 4 : t == DType::F8_E4M3 ? 1 : 2; }

// OCP FP8 E4M3 (no infinities; 0x7f / 0xff are NaN; largest finite 448), as a float. Every E4M3 value is
// exactly a BF16 value too (4 significant bits, exponents 2^-9 .. 2^8).
inline float f8_e4m3_to_f32(uint8_t b) {
  const int sign = b >> 7, e = (b >> 3) & 0xf, m = b & 7;
  float v;
  if (e == 0xf && m == 7) {
    v = __builtin_nanf("");
  } else if (e == 0) {
    v = static_cast<float>(m) * (1.0f / 512.0f);  // subnormal: m * 2^-9
  } else {
    v = (1.0f + static_cast<float>(m) / 8.0f) * static_cast<float>(1 << e) / 128.0f;  // 2^(e-7)
  }
  return sign ? -v : v;
}

inline float bf16_to_f32(uint16_t h) {
  uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// Round-to-nearest-even, as PyTorch does; NaN stays NaN.
inline uint16_t f32_to_bf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

inline float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: renormalise
      exp = 127 - 15 + 1;
      while ((mant & 0x400u) == 0) { mant <<= 1; --exp; }
      mant &= 0x3ffu;
      bits = sign | (exp << 23) | (mant << 13);
    }
  } else if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// IEEE half, round-to-nearest-even; overflow goes to infinity, NaN stays NaN.
inline uint16_t f32_to_f16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t ax = x & 0x7fffffffu;
  if (ax >= 0x7f800000u) return static_cast<uint16_t>(sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u : 0u));
  if (ax >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // >= 65520 rounds to inf
  if (ax < 0x38800000u) {  // below 2^-14: f16 subnormal (or zero), in units of 2^-24
    float v;
    std::memcpy(&v, &ax, 4);
    const float scaled = v * 16777216.0f;  // exact: a power-of-two scale
    uint32_t m = static_cast<uint32_t>(scaled);
    const float frac = scaled - static_cast<float>(m);
    if (frac > 0.5f || (frac == 0.5f && (m & 1u))) ++m;  // nearest, ties to even
    return static_cast<uint16_t>(sign | m);  // m == 0x400 is the smallest normal: still right
  }
  const uint32_t e = (ax >> 23) - 127 + 15;
  const uint32_t mant = ax & 0x7fffffu;
  const uint32_t r = mant + 0xfffu + ((mant >> 13) & 1u);  // a carry out bumps the exponent: right
  return static_cast<uint16_t>(sign | ((e << 10) + (r >> 13)));
}

// Converts n stored values to f32.
void convert_to_f32(float* dst, const void* src, DType dtype, size_t n);

// Index of the first non-finite value (NaN or +-Inf) among elements [begin, end) of an F32, F16 or BF16
// array at `data` (any alignment; read as bits, no float formed), or -1. Other dtypes: -1.
int64_t first_non_finite(const void* data, DType dtype, int64_t begin, int64_t end);

}  // namespace nemo
