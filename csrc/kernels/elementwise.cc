// Embedding lookup and the small elementwise ops.
#include <cstring>

#include "kernels/kernels.h"

namespace nemo::cpu {

void embedding(float* y, const MatrixView& table, const int32_t* ids, int64_t T) {
  const int64_t C = table.cols;
  // Row bytes of any storage type (block-quantized tables too: C is then a multiple of the block size,
  // and convert_to_f32 dequantizes the row's blocks).
  const size_t row_bytes = dtype_row_bytes(table.dtype, C);
  for (int64_t t = 0; t < T; ++t) {
    const char* row = static_cast<const char*>(table.data) + static_cast<size_t>(ids[t]) * row_bytes;
    convert_to_f32(y + t * C, row, table.dtype, static_cast<size_t>(C));
  }
}

void relu2(float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float r = x[i] > 0.0f ? x[i] : 0.0f;
    x[i] = r * r;
  }
}

void add_inplace(float* y, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}

}  // namespace nemo::cpu
