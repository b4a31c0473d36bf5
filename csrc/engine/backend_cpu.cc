// The CPU backend: host memory and the kernels of csrc/kernels on a persistent thread pool.
#include <sys/mman.h>

#include <cstdlib>
#include <cstring>
#include <new>
#include <thread>

#include "engine/backend.h"

namespace nemo {
namespace {

class CpuBackend final : public Backend {
 public:
  CpuBackend(int n_threads, cpu::MatmulPrecision precision, WeightsPlacement placement)
      : pool_(n_threads), precision_(precision), placement_(placement) {}

  const char* name() const override { return "cpu"; }
  bool host_memory() const override { return true; }
  int n_threads() const override { return pool_.size(); }

  // Host memory: the mapped files, or (WeightsPlacement::kMemory) a huge-page copy made here.
  Status prepare_weights(ModelWeights* w) override { return place_weights(w, placement_, pool_); }

  float* alloc(size_t n) override {
    const size_t bytes = ((n * sizeof(float) + 63) / 64) * 64;
    void* p = std::aligned_alloc(64, bytes == 0 ? 64 : bytes);
    if (p) std::memset(p, 0, bytes == 0 ? 64 : bytes);
    return static_cast<float*>(p);
  }
  void free(float* p) override { std::free(p); }
  void copy(float* dst, const float* src, size_t n) override { std::memmove(dst, src, n * 4); }
  void to_host(float* dst, const float* src, size_t n) override { std::memcpy(dst, src, n * 4); }
  void from_host(float* dst, const float* src, size_t n) override { std::memcpy(dst, src, n * 4); }
  void zero(float* p, size_t n) override { std::memset(p, 0, n * 4); }
  void* alloc_pool(size_t bytes) override {
    // Anonymous mapping: pages are committed on first write, so a pool planned for the whole context
    // costs memory only as sequences fill it.
    void* p = mmap(nullptr, bytes == 0 ? 4096 : bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return p == MAP_FAILED ? nullptr : p;
  }
  void free_pool(void* p, size_t bytes) override {
    if (p) munmap(p, bytes == 0 ? 4096 : bytes);
  }
  void copy_bytes(void* dst, const void* src, size_t n) override { std::memmove(dst, src, n); }
  void bytes_to_host(void* dst, const void* src, size_t n) override { std::memcpy(dst, src, n); }
  void bytes_from_host(void* dst, const void* src, size_t n) override { std::memcpy(dst, src, n); }

  void matmul(float* y, int64_t ldy, const float* x, int64_t ldx, const MatrixView& w, int64_t T,
              MatmulInput input) override {
    cpu::matmul(y, ldy, x, ldx, w, T, pool_, precision_, input);
  }
  bool has_moe() const override { return true; }
  int64_t moe(float* out, float* /*acc*/, float* /*tmp*/, const float* u, int64_t R, const MoeWeights& w,
              const cpu::MoeRouting& p, int64_t H, int64_t I, int64_t S) override {
    const cpu::MoeMatrices m{w.router, w.score_bias.data(), w.up.data(), w.down.data(), w.shared_up, w.shared_down};
    return cpu::moe_forward(out, u, R, m, p, H, I, S, moe_scratch_, pool_, precision_);
  }
  void embedding(float* y, const MatrixView& table, const int32_t* ids, int64_t T) override {
    cpu::embedding(y, table, ids, T);
  }
  void rmsnorm(float* y, const float* x, const float* w, int64_t T, int64_t C, float eps) override {
    cpu::rmsnorm(y, x, w, T, C, eps);
  }
  void rmsnorm_gated_grouped(float* out, const float* y, const float* z, int64_t ldz, const float* w,
                             int64_t T, int64_t C, int64_t group_size, float eps) override {
    cpu::rmsnorm_gated_grouped(out, y, z, ldz, w, T, C, group_size, eps);
  }
  void conv1d_causal(float* y, const float* x, int64_t ldx, float* conv_state, const float* w,
                     const float* b, int64_t T, int64_t C, int64_t K) override {
    cpu::conv1d_causal(y, x, ldx, conv_state, w, b, T, C, K);
  }
  void conv1d_step(float* y, const float* x, float* conv_state, const float* w, const float* b,
                   int64_t C, int64_t K) override {
    cpu::conv1d_step(y, x, conv_state, w, b, C, K);
  }
  void ssd_chunk_scan(float* y, const float* x, int64_t ldx, const float* dt_raw, int64_t lddt,
                      const float* B, const float* C, int64_t ldbc, float* state,
                      const SsmParams& p, int64_t T, int64_t chunk_size) override {
    cpu::ssd_chunk_scan(y, x, ldx, dt_raw, lddt, B, C, ldbc, state, p, T, chunk_size, pool_);
  }
  void ssm_state_update(float* y, const float* x, const float* dt_raw, const float* B,
                        const float* C, float* state, const SsmParams& p) override {
    cpu::ssm_state_update(y, x, dt_raw, B, C, state, p, pool_);
  }
  void kv_store(const KvBlocks& kv, int64_t pos, const float* k_rows, const float* v_rows,
                int64_t ld, int64_t T, int64_t kv_dim) override {
    cpu::kv_store(kv, pos, k_rows, v_rows, ld, T, kv_dim);
  }
  bool kv_k_channel_major() const override { return true; }  // see kernels.h, KvBlocks
  void attention_gqa(float* out, const float* q, int64_t ldq, const KvBlocks& kv, int64_t past,
                     int64_t T, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim) override {
    cpu::attention_gqa(out, q, ldq, kv, past, T, n_heads, n_kv_heads, head_dim, pool_);
  }
  void add_inplace(float* y, const float* x, int64_t n) override { cpu::add_inplace(y, x, n); }

 private:
  ThreadPool pool_;
  cpu::MatmulPrecision precision_;
  cpu::MoeScratch moe_scratch_;
  WeightsPlacement placement_;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(int n_threads, cpu::MatmulPrecision precision,
                                          WeightsPlacement weights) {
  if (n_threads <= 0) {
    n_threads = static_cast<int>(std::thread::hardware_concurrency());
    if (n_threads <= 0) n_threads = 1;
  }
  return std::make_unique<CpuBackend>(n_threads, precision, weights);
}

}  // namespace nemo
