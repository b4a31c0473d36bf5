#include "core/dtype.h"

namespace nemo {

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
  }
}

}  // namespace nemo
