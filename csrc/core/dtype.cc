#include "core/dtype.h"

namespace nemo {
namespace {

// Block-quantized types (GGUF / ggml layouts). Every field is read with memcpy or byte loads: blocks of
// 34, 18, 22, 24, 144, 176 or 210 bytes sit at any alignment.
//
//   Q8_0  34 bytes / 32 values: f16 d, int8 qs[32];                 v[j] = qs[j] * d
//   Q4_0  18 bytes / 32 values: f16 d, uint8 qs[16];                v[j] = ((qs[j] & 15) - 8) * d,
//                                                                   v[j + 16] = ((qs[j] >> 4) - 8) * d
//   Q5_0  22 bytes / 32 values: f16 d, uint8 qh[4], uint8 qs[16]. Bit j of the little-endian word qh
//        is the fifth bit (16) of value j; values j and j + 16 take the low / high nibble of qs[j].
//                                                                   v[j] = (q_j - 16) * d
//   Q5_1  24 bytes / 32 values: f16 d, f16 m, then qh and qs as Q5_0. v[j] = q_j * d + m
//   Q4_K 144 bytes / 256 values: f16 d, f16 dmin, uint8 scales[12], uint8 qs[128]. Eight sub-blocks of
//        32 values with 6-bit scale sc_s and min m_s (k4 packing, see scale_min_k4); sub-blocks 2g and
//        2g+1 share qs[32g .. 32g+31]: low nibbles are values 64g + l, high nibbles 64g + 32 + l.
//        v = (d * sc_s) * q - (dmin * m_s)
//   Q5_K 176 bytes / 256 values: as Q4_K with uint8 qh[32] between scales and qs: bit 2g of qh[l] is
//        the fifth bit of value 64g + l, bit 2g+1 that of value 64g + 32 + l.
//   Q6_K 210 bytes / 256 values: uint8 ql[128], uint8 qh[64], int8 scales[16], f16 d. Two halves of
//        128 values; in half h, for l < 32 and s < 4, value 128h + 32s + l is
//        q = (ql[64h + l + 32(s&1)] >> 4(s>>1) & 15) | (qh[32h + l] >> 2s & 3) << 4, minus 32,
//        times d * scales[8h + 2s + l/16].
//
// The f32 values are those of ggml's dequantize_row_*: (d * sc) and (dmin * m) are exact in f32 (an
// 11-bit f16 significand times a 6- or 8-bit integer), and so is q * (d * sc) for the 4- and 5-bit
// types; each value then takes at most one rounding. Q5_1's q * d is exact too (16 bits), so q * d + m
// rounds once, with or without a fused multiply-add.

inline float load_f16(const unsigned char* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return f16_to_f32(h);
}

// ggml's get_scale_min_k4: the 6-bit scale and min of sub-block j (0..7) from the 12 packed bytes.
inline void scale_min_k4(int j, const unsigned char* s, int* sc, int* m) {
  if (j < 4) {
    *sc = s[j] & 63;
    *m = s[j + 4] & 63;
  } else {
    *sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
    *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

void dequant_q8_0(float* y, const unsigned char* b) {
  const float d = load_f16(b);
  for (int j = 0; j < 32; ++j) y[j] = static_cast<float>(static_cast<int8_t>(b[2 + j])) * d;
}

void dequant_q4_0(float* y, const unsigned char* b) {
  const float d = load_f16(b);
  for (int j = 0; j < 16; ++j) {
    y[j] = static_cast<float>((b[2 + j] & 0xF) - 8) * d;
    y[j + 16] = static_cast<float>((b[2 + j] >> 4) - 8) * d;
  }
}

// Q5_0 and (with_min) Q5_1: the 5-bit codes of one block, then d * (q - 16) or d * q + m.
void dequant_q5(float* y, const unsigned char* b, bool with_min) {
  const float d = load_f16(b);
  const float m = with_min ? load_f16(b + 2) : 0.0f;
  const unsigned char* p = b + (with_min ? 4 : 2);
  uint32_t qh;
  std::memcpy(&qh, p, 4);
  const unsigned char* qs = p + 4;
  for (int j = 0; j < 16; ++j) {
    const int q0 = (qs[j] & 0xF) | static_cast<int>((qh >> j) & 1u) << 4;
    const int q1 = (qs[j] >> 4) | static_cast<int>((qh >> (j + 16)) & 1u) << 4;
    if (with_min) {
      y[j] = static_cast<float>(q0) * d + m;
      y[j + 16] = static_cast<float>(q1) * d + m;
    } else {
      y[j] = static_cast<float>(q0 - 16) * d;
      y[j + 16] = static_cast<float>(q1 - 16) * d;
    }
  }
}

// Q4_K and (five) Q5_K: qs at b + 16 (Q4_K) or b + 48 (Q5_K), Q5_K's qh at b + 16.
void dequant_qk(float* y, const unsigned char* b, bool five) {
  const float d = load_f16(b), dmin = load_f16(b + 2);
  const unsigned char* scales = b + 4;
  const unsigned char* qh = b + 16;
  const unsigned char* qs = b + (five ? 48 : 16);
  for (int g = 0; g < 4; ++g) {
    for (int half = 0; half < 2; ++half) {
      const int s = 2 * g + half;
      int sc, m;
      scale_min_k4(s, scales, &sc, &m);
      const float ds = d * static_cast<float>(sc), dm = dmin * static_cast<float>(m);
      for (int l = 0; l < 32; ++l) {
        int q = half == 0 ? (qs[32 * g + l] & 0xF) : (qs[32 * g + l] >> 4);
        if (five) q |= ((qh[l] >> s) & 1) << 4;
        y[64 * g + 32 * half + l] = ds * static_cast<float>(q) - dm;
      }
    }
  }
}

void dequant_q6_k(float* y, const unsigned char* b) {
  const unsigned char* ql = b;
  const unsigned char* qh = b + 128;
  const unsigned char* scales = b + 192;
  const float d = load_f16(b + 208);
  for (int h = 0; h < 2; ++h) {
    for (int s = 0; s < 4; ++s) {
      for (int l = 0; l < 32; ++l) {
        const int lo = (ql[64 * h + l + 32 * (s & 1)] >> (4 * (s >> 1))) & 0xF;
        const int hi = (qh[32 * h + l] >> (2 * s)) & 3;
        const int q = (lo | (hi << 4)) - 32;
        const float ds = d * static_cast<float>(static_cast<int8_t>(scales[8 * h + 2 * s + l / 16]));
        y[128 * h + 32 * s + l] = ds * static_cast<float>(q);
      }
    }
  }
}

}  // namespace

// Stored weights come straight from a mapping whose tensors need not be aligned to their element size
// (safetensors only promises byte offsets), so every element is read with memcpy, which compilers turn
// into a plain unaligned load.
void convert_to_f32(float* dst, const void* src, DType dtype, size_t n) {
  if (n == 0) return;
  const unsigned char* p = static_cast<const unsigned char*>(src);
  switch (dtype) {
    case DType::F32:
      std::memcpy(dst, p, n * sizeof(float));
      return;
    case DType::BF16:
      for (size_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        dst[i] = bf16_to_f32(h);
      }
      return;
    case DType::F16:
      for (size_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        dst[i] = f16_to_f32(h);
      }
      return;
    case DType::F8_E4M3:
      for (size_t i = 0; i < n; ++i) dst[i] = f8_e4m3_to_f32(p[i]);
      return;
    case DType::Q8_0:
    case DType::Q4_0:
    case DType::Q4_K:
    case DType::Q5_K:
    case DType::Q6_K:
    case DType::Q5_0:
    case DType::Q5_1:
      break;
  }
  // Quantized: n is a multiple of the block size (whole blocks only).
  const size_t be = static_cast<size_t>(dtype_block_elems(dtype));
  const size_t bb = static_cast<size_t>(dtype_block_bytes(dtype));
  for (size_t i = 0; i < n / be; ++i, dst += be, p += bb) {
    switch (dtype) {
      case DType::Q8_0: dequant_q8_0(dst, p); break;
      case DType::Q4_0: dequant_q4_0(dst, p); break;
      case DType::Q4_K: dequant_qk(dst, p, false); break;
      case DType::Q5_K: dequant_qk(dst, p, true); break;
      case DType::Q6_K: dequant_q6_k(dst, p); break;
      case DType::Q5_0: dequant_q5(dst, p, false); break;
      case DType::Q5_1: dequant_q5(dst, p, true); break;
      default: return;
    }
  }
}

namespace {
template <typename Bits>
int64_t first_all_ones(const uint8_t* p, Bits exponent, int64_t begin, int64_t end) {
  for (int64_t i = begin; i < end; ++i) {
    Bits b;
    std::memcpy(&b, p + sizeof(Bits) * i, sizeof(Bits));
    if ((b & exponent) == exponent) return i;
  }
  return -1;
}
}  // namespace

int64_t first_non_finite(const void* data, DType dtype, int64_t begin, int64_t end) {
  const uint8_t* p = static_cast<const uint8_t*>(data);
  switch (dtype) {
    case DType::F32: return first_all_ones<uint32_t>(p, 0x7f800000u, begin, end);
    case DType::F16: return first_all_ones<uint16_t>(p, 0x7c00u, begin, end);
    case DType::BF16: return first_all_ones<uint16_t>(p, 0x7f80u, begin, end);
    default: return -1;
  }
}

}  // namespace nemo
