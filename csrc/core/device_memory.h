// DeviceMemory: the memory half of the backend seam (engine/backend.h derives from it). The cache
// (csrc/cache: KV pool, sequence state, snapshots) allocates, copies and moves its buffers through this
// interface alone, so it sits below the engine in the include order (scripts/check-includes.mjs) and
// works the same on host memory (the CPU backend) and device memory (the CUDA backend).
#pragma once
#include <cstddef>

namespace nemo {

class DeviceMemory {
 public:
  virtual ~DeviceMemory() = default;

  virtual float* alloc(size_t n_floats) = 0;                  // zero-filled; nullptr when out of memory
  virtual void free(float* p) = 0;
  virtual void copy(float* dst, const float* src, size_t n_floats) = 0;       // within the backend
  virtual void to_host(float* host_dst, const float* src, size_t n_floats) = 0;
  virtual void from_host(float* dst, const float* host_src, size_t n_floats) = 0;
  virtual void zero(float* p, size_t n_floats) = 0;
  // A large region (the KV pool) whose pages may be committed only when first written; contents
  // undefined. nullptr when it cannot be reserved.
  virtual void* alloc_pool(size_t bytes) = 0;
  virtual void free_pool(void* p, size_t bytes) = 0;
  virtual void copy_bytes(void* dst, const void* src, size_t bytes) = 0;
  virtual void bytes_to_host(void* host_dst, const void* src, size_t bytes) = 0;
  virtual void bytes_from_host(void* dst, const void* host_src, size_t bytes) = 0;

  // Optional. Moves n floats at p (from alloc) to host memory and returns where they are now: a pointer
  // that copy, to_host and free accept in place of p (p itself is freed). p when it is in host memory
  // already; nullptr when not supported or out of host memory (p unchanged).
  virtual float* offload(float* p, size_t n) { return nullptr; }
};

}  // namespace nemo
