// Device working memory (Scratch) and the weight upload into the device layout (kernels_cuda.h).
//
// Upload: rows are copied in chunks of at most kChunkBytes as stored (bf16, f16, f32 or Q8_0 blocks)
// into a device staging buffer, and a kernel writes them in the device layout (permuted 64-blocks,
// zero padding, Q8_0 scales split off). The other block-quantized types are dequantized on the host
// by convert_to_f32 (the CPU engine's own dequantizer) and staged as f32.
#include <algorithm>
#include <cstring>
#include <map>
#include <mutex>
#include <utility>
#include <vector>

#include "cuda/common.cuh"
#include "cuda/kernels_cuda.h"
#include "cuda/layout.cuh"

namespace nemo::cuda {

Scratch::~Scratch() {
  free_retired();
  if (p_) cudaFree(p_);
}

void Scratch::free_retired() {
  for (void* p : retired_) cudaFree(p);
  retired_.clear();
}

cudaError_t Scratch::get(size_t bytes, void** out, cudaStream_t stream) {
  if (bytes > size_) {
    if (p_ && defer_) {
      retired_.push_back(p_);  // captured launches read it when the graph runs
      p_ = nullptr;
      size_ = 0;
    } else if (p_) {
      CUDA_TRY(cudaStreamSynchronize(stream));  // queued work on this stream may still read the old buffer
      CUDA_TRY(cudaFree(p_));
      p_ = nullptr;
      size_ = 0;
    }
    const size_t want = std::max<size_t>(bytes + bytes / 4, 1 << 20);  // some headroom
    CUDA_TRY(cudaMalloc(&p_, want));
    size_ = want;
  }
  *out = p_;
  return cudaSuccess;
}

cudaError_t allow_dynamic_smem(const void* kernel, size_t smem) {
  int device = 0;
  CUDA_TRY(cudaGetDevice(&device));
  static std::mutex mu;
  static std::map<std::pair<const void*, int>, size_t> allowed;  // (kernel, device) -> bytes set
  std::lock_guard<std::mutex> lock(mu);
  size_t& have = allowed[{kernel, device}];
  if (smem <= have) return cudaSuccess;
  CUDA_TRY(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  have = smem;
  return cudaSuccess;
}

int64_t padded_cols(int64_t cols) { return round_up(std::max<int64_t>(cols, 1), kKBlock); }

DType device_dtype(DType host_dtype) {
  return host_dtype == DType::Q8_0 || host_dtype == DType::F8_E4M3 ? host_dtype : DType::BF16;
}

size_t device_matrix_bytes(DType host_dtype, int64_t rows, int64_t cols) {
  const int64_t Kp = padded_cols(cols);
  if (device_dtype(host_dtype) == DType::Q8_0) {
    return static_cast<size_t>(round_up(rows * Kp, 16) + (Kp / 32) * round_up(rows, 8) * 2);
  }
  if (device_dtype(host_dtype) == DType::F8_E4M3) return static_cast<size_t>(round_up(rows * Kp, 16));
  return static_cast<size_t>(rows * Kp * 2);
}

namespace {

constexpr size_t kChunkBytes = size_t{64} << 20;

template <typename S> __device__ __forceinline__ float stored_to_f32(const S* p, int64_t i);
template <> __device__ __forceinline__ float stored_to_f32<float>(const float* p, int64_t i) { return p[i]; }
template <> __device__ __forceinline__ float stored_to_f32<__half>(const __half* p, int64_t i) { return __half2float(p[i]); }
template <> __device__ __forceinline__ float stored_to_f32<__nv_bfloat16>(const __nv_bfloat16* p, int64_t i) {
  return __bfloat162float(p[i]);
}

// rows [R, K] as stored -> bf16 device layout rows [R, Kp] (one thread per 8 positions).
template <typename S>
__global__ void k_layout_plain(__nv_bfloat16* __restrict__ dst, const S* __restrict__ src, int64_t R, int64_t K,
                               int64_t Kp) {
  const int64_t per_row = Kp / 8, total = R * per_row;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / per_row, d0 = (i % per_row) * 8;
    const S* row = src + r * K;
#pragma unroll
    for (int e = 0; e < 8; ++e) {
      const int64_t k = perm_logical(d0 + e);
      // bf16 -> bf16 is a plain copy; f32 and f16 round once.
      dst[r * Kp + d0 + e] = __float2bfloat16_rn(k < K ? stored_to_f32<S>(row, k) : 0.0f);
    }
  }
}

// Q8_0 blocks (34 bytes: f16 d, int8 qs[32]) of rows [r0, r0 + R) -> quants in the permuted order and
// scales [Kp/32][Np]. One thread per (row, block).
__global__ void k_layout_q8(int8_t* __restrict__ q, __half* __restrict__ scales, const uint8_t* __restrict__ src,
                            int64_t r0, int64_t R, int64_t K, int64_t Kp, int64_t Np) {
  const int64_t nb = K / 32, total = R * nb;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / nb, b = i % nb;
    const uint8_t* blk = src + (r * nb + b) * 34;
    const uint16_t dbits = static_cast<uint16_t>(blk[0] | (blk[1] << 8));
    scales[b * Np + r0 + r] = __ushort_as_half(dbits);
    int8_t* row = q + (r0 + r) * Kp;
    for (int s = 0; s < 32; ++s) row[perm_position(32 * b + s)] = static_cast<int8_t>(blk[2 + s]);
  }
}

// E4M3 bytes [R, K] -> rows r0.. of the device layout (Q8_0's byte order, no scales; padding stays 0).
__global__ void k_layout_f8(uint8_t* __restrict__ dst, const uint8_t* __restrict__ src, int64_t r0, int64_t R,
                            int64_t K, int64_t Kp) {
  const int64_t total = R * K;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / K, k = i - r * K;
    dst[(r0 + r) * Kp + perm_position(k)] = src[i];
  }
}

__device__ __forceinline__ uint64_t mix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

__global__ void k_random_bf16(__nv_bfloat16* dst, int64_t R, int64_t K, int64_t Kp, float scale, uint64_t seed) {
  const int64_t total = R * Kp;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t k = perm_logical(i % Kp);
    const float u = static_cast<float>(mix64(seed ^ (static_cast<uint64_t>(i) * 0x2545F4914F6CDD1Dull)) >> 40) *
                    (1.0f / 16777216.0f);
    dst[i] = __float2bfloat16_rn(k < K ? scale * (2.0f * u - 1.0f) : 0.0f);
  }
}

__global__ void k_random_q8(int8_t* q, __half* scales, int64_t R, int64_t K, int64_t Kp, int64_t Np, float scale,
                            uint64_t seed) {
  const int64_t total = R * Kp;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / Kp, k = perm_logical(i % Kp);
    const int v = static_cast<int>(mix64(seed ^ (static_cast<uint64_t>(i) * 0x2545F4914F6CDD1Dull)) % 255) - 127;
    q[i] = static_cast<int8_t>(k < K ? v : 0);
    if (k % 32 == 0) scales[(k / 32) * Np + r] = __float2half_rn(k < K ? scale / 127.0f : 0.0f);
  }
}

__global__ void k_read(const uint4* __restrict__ p, int64_t n, uint32_t* sink) {
  uint32_t acc = 0;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n; i += 4 * stride) {
    uint4 v[4];
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      const int64_t j = i + u * stride;
      v[u] = make_uint4(0, 0, 0, 0);
      if (j < n) {
        asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];\n"
                     : "=r"(v[u].x), "=r"(v[u].y), "=r"(v[u].z), "=r"(v[u].w)
                     : "l"(p + j));
      }
    }
#pragma unroll
    for (int u = 0; u < 4; ++u) acc ^= v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
  }
  if (acc == 0x9E3779B9u) *sink = acc;  // keeps the loads; practically never true
}

}  // namespace

cudaError_t read_bandwidth(size_t bytes, int reps, double* gb_per_s, cudaStream_t stream) {
  int dev = 0, sms = 0;
  CUDA_TRY(cudaGetDevice(&dev));
  CUDA_TRY(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  void* buf = nullptr;
  CUDA_TRY(cudaMalloc(&buf, bytes + 16));
  cudaError_t err = cudaMemsetAsync(buf, 1, bytes + 16, stream);
  cudaEvent_t a = nullptr, b = nullptr;
  if (err == cudaSuccess) err = cudaEventCreate(&a);
  if (err == cudaSuccess) err = cudaEventCreate(&b);
  double best = 0.0;
  const int64_t n = static_cast<int64_t>(bytes / 16);
  for (int r = 0; err == cudaSuccess && r <= reps; ++r) {  // pass 0 warms up
    cudaEventRecord(a, stream);
    k_read<<<static_cast<unsigned>(sms * 8), 512, 0, stream>>>(static_cast<const uint4*>(buf), n,
                                                               static_cast<uint32_t*>(buf) + bytes / 4);
    cudaEventRecord(b, stream);
    err = cudaEventSynchronize(b);
    float ms = 0.0f;
    if (err == cudaSuccess) err = cudaEventElapsedTime(&ms, a, b);
    if (err == cudaSuccess && r > 0 && ms > 0) best = std::max(best, static_cast<double>(n) * 16 / (ms * 1e6));
  }
  if (a) cudaEventDestroy(a);
  if (b) cudaEventDestroy(b);
  cudaFree(buf);
  *gb_per_s = best;
  return err;
}

cudaError_t upload_matrix(const MatrixView& host, void* dst, MatrixView* dev, Scratch& scratch, cudaStream_t stream) {
  const int64_t N = host.rows, K = host.cols, Kp = padded_cols(K), Np = round_up(N, 8);
  const DType ddt = device_dtype(host.dtype);
  CUDA_TRY(cudaMemsetAsync(dst, 0, device_matrix_bytes(host.dtype, N, K), stream));
  *dev = MatrixView{dst, ddt, N, K};
  if (N == 0 || K == 0) return cudaStreamSynchronize(stream);
  if (ddt == DType::Q8_0 && K % 32 != 0) return cudaErrorInvalidValue;

  const bool plain = host.dtype == DType::F32 || host.dtype == DType::F16 || host.dtype == DType::BF16 ||
                     host.dtype == DType::F8_E4M3;  // F8: bytes as stored
  const bool q8 = host.dtype == DType::Q8_0;
  // Bytes of one staged row, and rows per chunk.
  const size_t row_bytes = plain ? static_cast<size_t>(K) * dtype_size(host.dtype)
                           : q8  ? dtype_row_bytes(DType::Q8_0, K)
                                 : static_cast<size_t>(K) * 4;  // dequantized on the host to f32
  const size_t src_row_bytes = plain ? row_bytes : dtype_row_bytes(host.dtype, K);
  const int64_t rows_per_chunk = std::max<int64_t>(1, static_cast<int64_t>(kChunkBytes / std::max<size_t>(row_bytes, 1)));
  void* staging = nullptr;
  CUDA_TRY(scratch.get(static_cast<size_t>(std::min(rows_per_chunk, N)) * row_bytes, &staging, stream));
  std::vector<float> deq;
  const uint8_t* src = static_cast<const uint8_t*>(host.data);
  for (int64_t r0 = 0; r0 < N; r0 += rows_per_chunk) {
    const int64_t R = std::min(rows_per_chunk, N - r0);
    const uint8_t* chunk = src + static_cast<size_t>(r0) * src_row_bytes;
    if (plain || q8) {
      // Pageable source: the copy returns once the bytes are staged by the driver.
      CUDA_TRY(cudaMemcpyAsync(staging, chunk, static_cast<size_t>(R) * row_bytes, cudaMemcpyHostToDevice, stream));
    } else {
      deq.resize(static_cast<size_t>(R * K));
      for (int64_t r = 0; r < R; ++r) {
        convert_to_f32(deq.data() + r * K, chunk + static_cast<size_t>(r) * src_row_bytes, host.dtype,
                       static_cast<size_t>(K));
      }
      CUDA_TRY(cudaMemcpyAsync(staging, deq.data(), deq.size() * 4, cudaMemcpyHostToDevice, stream));
      CUDA_TRY(cudaStreamSynchronize(stream));  // deq is reused by the next chunk
    }
    if (q8) {
      int8_t* qd = static_cast<int8_t*>(dst);
      __half* sc = reinterpret_cast<__half*>(static_cast<uint8_t*>(dst) + round_up(N * Kp, 16));
      k_layout_q8<<<grid_for(R * (K / 32), 256), 256, 0, stream>>>(qd, sc, static_cast<const uint8_t*>(staging), r0,
                                                                  R, K, Kp, Np);
    } else if (host.dtype == DType::F8_E4M3) {
      k_layout_f8<<<grid_for(R * K, 256), 256, 0, stream>>>(static_cast<uint8_t*>(dst),
                                                            static_cast<const uint8_t*>(staging), r0, R, K, Kp);
    } else {
      __nv_bfloat16* out = static_cast<__nv_bfloat16*>(dst) + r0 * Kp;
      const unsigned grid = grid_for(R * Kp / 8, 256);
      if (host.dtype == DType::BF16) {
        k_layout_plain<__nv_bfloat16><<<grid, 256, 0, stream>>>(out, static_cast<const __nv_bfloat16*>(staging), R, K, Kp);
      } else if (host.dtype == DType::F16) {
        k_layout_plain<__half><<<grid, 256, 0, stream>>>(out, static_cast<const __half*>(staging), R, K, Kp);
      } else {
        k_layout_plain<float><<<grid, 256, 0, stream>>>(out, static_cast<const float*>(staging), R, K, Kp);
      }
    }
    CUDA_TRY(cudaGetLastError());
  }
  return cudaStreamSynchronize(stream);
}

cudaError_t random_matrix(DType dtype, int64_t rows, int64_t cols, float scale, uint64_t seed, void* dst,
                          MatrixView* dev, cudaStream_t stream) {
  const int64_t Kp = padded_cols(cols), Np = round_up(rows, 8);
  const DType ddt = device_dtype(dtype);
  CUDA_TRY(cudaMemsetAsync(dst, 0, device_matrix_bytes(dtype, rows, cols), stream));
  if (ddt == DType::Q8_0) {
    if (cols % 32 != 0) return cudaErrorInvalidValue;
    k_random_q8<<<grid_for(rows * Kp, 256), 256, 0, stream>>>(
        static_cast<int8_t*>(dst), reinterpret_cast<__half*>(static_cast<uint8_t*>(dst) + round_up(rows * Kp, 16)),
        rows, cols, Kp, Np, scale, seed);
  } else {
    k_random_bf16<<<grid_for(rows * Kp, 256), 256, 0, stream>>>(static_cast<__nv_bfloat16*>(dst), rows, cols, Kp,
                                                               scale, seed);
  }
  CUDA_TRY(cudaGetLastError());
  *dev = MatrixView{dst, ddt, rows, cols};
  return cudaSuccess;
}

cudaError_t read_matrix_row(const MatrixView& dev, int64_t row, float* host_out, cudaStream_t stream) {
  const int64_t K = dev.cols, Kp = padded_cols(K), N = dev.rows, Np = round_up(N, 8);
  if (dev.dtype == DType::BF16) {
    std::vector<uint16_t> raw(static_cast<size_t>(Kp));
    CUDA_TRY(cudaMemcpyAsync(raw.data(), static_cast<const uint16_t*>(dev.data) + row * Kp, Kp * 2,
                             cudaMemcpyDeviceToHost, stream));
    CUDA_TRY(cudaStreamSynchronize(stream));
    for (int64_t k = 0; k < K; ++k) host_out[k] = bf16_to_f32(raw[perm_position(k)]);
    return cudaSuccess;
  }
  if (dev.dtype == DType::F8_E4M3) {  // the stored value (the scale is the caller's)
    std::vector<uint8_t> raw(static_cast<size_t>(Kp));
    CUDA_TRY(cudaMemcpyAsync(raw.data(), static_cast<const uint8_t*>(dev.data) + row * Kp, Kp, cudaMemcpyDeviceToHost,
                             stream));
    CUDA_TRY(cudaStreamSynchronize(stream));
    for (int64_t k = 0; k < K; ++k) host_out[k] = f8_e4m3_to_f32(raw[perm_position(k)]);
    return cudaSuccess;
  }
  if (dev.dtype != DType::Q8_0) return cudaErrorInvalidValue;
  std::vector<int8_t> raw(static_cast<size_t>(Kp));
  std::vector<uint16_t> sc(static_cast<size_t>(Kp / 32));
  CUDA_TRY(cudaMemcpyAsync(raw.data(), static_cast<const int8_t*>(dev.data) + row * Kp, Kp, cudaMemcpyDeviceToHost,
                           stream));
  const uint16_t* scales = reinterpret_cast<const uint16_t*>(static_cast<const uint8_t*>(dev.data) + round_up(N * Kp, 16));
  for (int64_t b = 0; b < Kp / 32; ++b) {
    CUDA_TRY(cudaMemcpyAsync(&sc[b], scales + b * Np + row, 2, cudaMemcpyDeviceToHost, stream));
  }
  CUDA_TRY(cudaStreamSynchronize(stream));
  for (int64_t k = 0; k < K; ++k) host_out[k] = static_cast<float>(raw[perm_position(k)]) * f16_to_f32(sc[k / 32]);
  return cudaSuccess;
}

}  // namespace nemo::cuda
