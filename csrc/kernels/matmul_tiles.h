// Internal to the matmul files: the one tile driver of every SIMD matmul path (matmul.cc,
// matmul_neon.cc, matmul_quant.cc, matmul_quant_fast.cc, matmul_quant_neon.cc), and the block
// constants of the quantized types. Each path supplies only its register-tile kernels (per ISA) and a
// small source object that says where x rows and W rows are; the loop nest over T tiles, row groups,
// L2 blocks, K slices and token groups lives here, once.
//
// What a path provides:
//  * TileKernels<XRow>: tile[t] (t tokens x nr W rows, prefill) and stream[t] (t tokens x
//    stream_rows[t] W rows, decode, with prefetch). A tile computes
//      out[i * rows + j] = sum over the K range [head, kn) of x_i · W_j
//    for xr[i] (XRow: a prepared x row pointer, or a quantized row) and wr[j] (the W row's address
//    for the slice's first K index). Paths without K slices get head = 0 and kn = the row's blocks.
//  * A source (Src) with
//      void prepare(int64_t t0, int64_t t1)   make x rows [t0, t1) ready (x tile of prefill, or all
//                                             of T for decode); may use the pool
//      XRow x_row(int64_t t, int64_t k0) const  token t's row (absolute index) at K slice start k0
//      const uint8_t* w_row(int64_t n, int64_t k0) const  W row n at K slice start k0
//  * A TileWalk: N, the K extent and slice, the first slice's head, the x tile (tokens), the L2
//    block (row groups) and the task-size terms (row_group_grain of matmul_paths.h).
//
// The order of the arithmetic is the kernels' business: the driver only decides which (token, W row)
// pairs are computed together and adds the K-slice sums left to right (y = s_0, y += s_1, ...: in y
// for prefill, in a local array for decode), which is what the batch-invariance contract of
// matmul.cc asks. Tasks split W rows (and prefill's T tiles), never K.
#pragma once
#include <algorithm>
#include <cstdint>

#include "core/dtype.h"
#include "kernels/matmul_paths.h"

namespace nemo::cpu {

// Quantized block sizes: elements (kBE) and bytes (kBB) per block (layouts in core/dtype.cc).
template <DType DT>
constexpr int64_t kBE = DT == DType::Q8_0 || DT == DType::Q4_0 || DT == DType::Q5_0 || DT == DType::Q5_1 ? 32 : 256;
template <DType DT>
constexpr int64_t kBB = DT == DType::Q8_0   ? 34
                        : DT == DType::Q4_0 ? 18
                        : DT == DType::Q5_0 ? 22
                        : DT == DType::Q5_1 ? 24
                        : DT == DType::Q4_K ? 144
                        : DT == DType::Q5_K ? 176
                                            : 210;

constexpr int kMaxTileT = 8;     // tokens per tile call, at most
constexpr int kMaxTileRows = 16;  // W rows per tile call, at most

template <class XRow>
using TileFn = void (*)(const XRow* xr, const uint8_t* const* wr, int64_t head, int64_t kn, float* out);

template <class XRow>
struct TileKernels {
  int tr;     // prefill: tokens per register tile (tile[1..tr])
  int nr;     // prefill: W rows per register tile
  int small;  // batches of at most this many tokens stream (stream[1..small])
  TileFn<XRow> tile[kMaxTileT + 1];
  TileFn<XRow> stream[kMaxTileT + 1];
  int stream_rows[kMaxTileT + 1];  // W rows of stream[t]
};

struct TileWalk {
  int64_t N = 0;          // W rows
  int64_t ks = 0;         // K extent of a row in the tiles' units (virtual elements, or blocks)
  int64_t kc = 0;         // K slice (>= ks: one slice)
  int64_t head = 0;       // first K index read in slice 0 (alignment shift), else 0
  int64_t tb = 1;         // prefill: tokens per x tile
  int64_t gpb = 1;        // prefill: row groups per L2 block
  int64_t row_bytes = 0;  // task size: W bytes per row ...
  int64_t work = 0;       // ... plus this many "bytes" per row and token
  int64_t grain(int64_t rows, int64_t T) const { return row_group_grain(rows, row_bytes, work * T); }
};

template <class XRow, class Src>
void run_tiles(float* y, int64_t ldy, int64_t T, const TileKernels<XRow>& ks, const TileWalk& wk,
               Src& src, ThreadPool& pool) {
  const int64_t N = wk.N, Ks = wk.ks, kc = wk.kc;
  if (T <= ks.small) {
    // Decode: every task streams its W rows once over all K slices, all T tokens in one tile.
    src.prepare(0, T);
    const TileFn<XRow> fn = ks.stream[T];
    const int rows = ks.stream_rows[T];
    const int64_t groups = (N + rows - 1) / rows;
    pool.parallel_for(groups, wk.grain(rows, T), [&](int64_t g0, int64_t g1) {
      XRow xr[kMaxTileT];
      const uint8_t* wr[kMaxTileRows];
      float out[kMaxTileT * kMaxTileRows], sum[kMaxTileT * kMaxTileRows];
      const int64_t f_end = T * rows;
      for (int64_t g = g0; g < g1; ++g) {
        const int64_t n0 = g * rows;
        const int64_t nr = std::min<int64_t>(rows, N - n0);
        for (int64_t k0 = 0; k0 < Ks; k0 += kc) {
          const int64_t kn = std::min(kc, Ks - k0);
          for (int64_t i = 0; i < T; ++i) xr[i] = src.x_row(i, k0);
          for (int j = 0; j < rows; ++j) wr[j] = src.w_row(std::min(n0 + j, N - 1), k0);  // N tail
          if (k0 == 0) {
            fn(xr, wr, wk.head, kn, sum);
          } else {
            fn(xr, wr, 0, kn, out);
            for (int64_t f = 0; f < f_end; ++f) sum[f] += out[f];
          }
        }
        for (int64_t i = 0; i < T; ++i)
          for (int64_t j = 0; j < nr; ++j) y[i * ldy + n0 + j] = sum[i * rows + j];
      }
    });
    return;
  }

  // Prefill: T tiles of tb tokens, each prepared just before use; within a tile each task owns a
  // range of W row groups and walks them in L2 blocks of gpb groups, K slices, and groups of tr
  // tokens, so the W block slice is reused from cache and the tr x rows from L1.
  const int TR = ks.tr, NR = ks.nr;
  const int64_t groups = (N + NR - 1) / NR;
  const int64_t gpb = std::max<int64_t>(1, wk.gpb);
  for (int64_t tt0 = 0; tt0 < T; tt0 += wk.tb) {
    const int64_t tt1 = std::min(T, tt0 + wk.tb);
    src.prepare(tt0, tt1);
    pool.parallel_for(groups, wk.grain(NR, tt1 - tt0), [&](int64_t g0, int64_t g1) {
      XRow xr[kMaxTileT];
      const uint8_t* wr[kMaxTileRows];
      float out[kMaxTileT * kMaxTileRows];
      for (int64_t b0 = g0; b0 < g1; b0 += gpb) {
        const int64_t b1 = std::min(g1, b0 + gpb);
        for (int64_t k0 = 0; k0 < Ks; k0 += kc) {
          const int64_t kn = std::min(kc, Ks - k0);
          const int64_t head = k0 == 0 ? wk.head : 0;
          for (int64_t t0 = tt0; t0 < tt1; t0 += TR) {
            const int64_t tr = std::min<int64_t>(TR, tt1 - t0);  // T tail: a smaller tile
            for (int64_t i = 0; i < tr; ++i) xr[i] = src.x_row(t0 + i, k0);
            const TileFn<XRow> fn = ks.tile[tr];
            for (int64_t g = b0; g < b1; ++g) {
              const int64_t n0 = g * NR;
              const int64_t nr = std::min<int64_t>(NR, N - n0);
              for (int j = 0; j < NR; ++j) wr[j] = src.w_row(std::min(n0 + j, N - 1), k0);  // N tail
              fn(xr, wr, head, kn, out);
              for (int64_t i = 0; i < tr; ++i) {
                float* yr = y + (t0 + i) * ldy + n0;
                const float* o = out + i * NR;
                if (k0 == 0) {
                  for (int64_t j = 0; j < nr; ++j) yr[j] = o[j];
                } else {
                  for (int64_t j = 0; j < nr; ++j) yr[j] += o[j];
                }
              }
            }
          }
        }
      }
    });
  }
}

}  // namespace nemo::cpu
