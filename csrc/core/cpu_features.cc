#include "core/cpu_features.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#endif
#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#endif

namespace nemo {
namespace {

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
// F16C is CPUID.1:ECX bit 29 (not every compiler's __builtin_cpu_supports knows "f16c"). It uses the
// AVX register state, whose OS support the "avx2" check below covers.
bool has_f16c() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
  return (c >> 29) & 1u;
}
#endif

CpuFeatures detect() {
  CpuFeatures f;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  // libgcc / compiler-rt check CPUID and XGETBV (OS-enabled register state) for these.
  __builtin_cpu_init();
  f.avx2_fma = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && has_f16c();
  f.avx512f = f.avx2_fma && __builtin_cpu_supports("avx512f") &&
              __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
              __builtin_cpu_supports("avx512dq");
  f.avx512bf16 = f.avx512f && __builtin_cpu_supports("avx512bf16");
  f.avx512vnni = f.avx512f && __builtin_cpu_supports("avx512vnni");
  f.avxvnni = f.avx2_fma && __builtin_cpu_supports("avxvnni");
#elif defined(__aarch64__)
  f.neon = true;  // Advanced SIMD is part of the aarch64 base ABI
#if defined(__linux__)
  // Bit values from the kernel's asm/hwcap.h, spelled out for older libc headers.
  const unsigned long hw = getauxval(AT_HWCAP), hw2 = getauxval(AT_HWCAP2);
  f.neon_dotprod = (hw >> 20) & 1u;  // HWCAP_ASIMDDP
  f.neon_i8mm = (hw2 >> 13) & 1u;    // HWCAP2_I8MM
  f.neon_bf16 = (hw2 >> 14) & 1u;    // HWCAP2_BF16
#else  // not Linux (e.g. macOS): what the compiler was told to assume
#if defined(__ARM_FEATURE_DOTPROD)
  f.neon_dotprod = true;
#endif
#if defined(__ARM_FEATURE_MATMUL_INT8)
  f.neon_i8mm = true;
#endif
#if defined(__ARM_FEATURE_BF16_VECTOR_ARITHMETIC)
  f.neon_bf16 = true;
#endif
#endif
#endif
  return f;
}

KernelIsa best_path(const CpuFeatures& f) {
  if (f.neon) return KernelIsa::kNeon;
  if (f.avx512f) return KernelIsa::kAvx512;
  if (f.avx2_fma) return KernelIsa::kAvx2;
  return KernelIsa::kScalar;
}

// Maps `want` to this architecture and caps it at what the CPU supports: on aarch64 every vector path
// means neon; on x86-64 neon means the best x86 path. Scalar stays scalar everywhere.
KernelIsa cap(KernelIsa want) {
  const KernelIsa best = best_path(cpu_features());
  if (want == KernelIsa::kScalar) return want;
  if (best == KernelIsa::kNeon || want == KernelIsa::kNeon) return best;
  return static_cast<int>(want) > static_cast<int>(best) ? best : want;
}

// Returns false for an unknown name; nullptr/""/"auto" mean the best path.
bool parse(const char* name, KernelIsa* out) {
  if (name == nullptr || name[0] == '\0' || std::strcmp(name, "auto") == 0) {
    *out = best_path(cpu_features());
    return true;
  }
  if (std::strcmp(name, "scalar") == 0) { *out = KernelIsa::kScalar; return true; }
  if (std::strcmp(name, "avx2") == 0) { *out = cap(KernelIsa::kAvx2); return true; }
  if (std::strcmp(name, "avx512") == 0) { *out = cap(KernelIsa::kAvx512); return true; }
  if (std::strcmp(name, "neon") == 0) { *out = cap(KernelIsa::kNeon); return true; }
  return false;
}

KernelIsa initial_path() {
  KernelIsa p = best_path(cpu_features());
  parse(std::getenv("NEMOTRON_CPU_KERNELS"), &p);  // an unknown value keeps the best path
  return p;
}

std::atomic<int>& path_state() {
  static std::atomic<int> state{static_cast<int>(initial_path())};
  return state;
}

const char* path_name(KernelIsa p) {
  switch (p) {
    case KernelIsa::kScalar: return "scalar";
    case KernelIsa::kAvx2: return "avx2";
    case KernelIsa::kAvx512: return "avx512";
    case KernelIsa::kNeon: return "neon";
  }
  return "scalar";
}

std::atomic<unsigned> g_neon_mask{kNeonAll};

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures features = detect();
  return features;
}

KernelIsa kernel_isa() {
  return static_cast<KernelIsa>(path_state().load(std::memory_order_relaxed));
}

const char* active_kernel_path() { return path_name(kernel_isa()); }

bool neon_ext(NeonExt ext) {
  if (kernel_isa() != KernelIsa::kNeon || !(g_neon_mask.load(std::memory_order_relaxed) & ext)) return false;
  const CpuFeatures& f = cpu_features();
  switch (ext) {
    case kNeonDotprod: return f.neon_dotprod;
    case kNeonI8mm: return f.neon_i8mm;
    case kNeonBf16: return f.neon_bf16;
    default: return false;
  }
}

void set_neon_ext_mask(unsigned mask) { g_neon_mask.store(mask & kNeonAll, std::memory_order_relaxed); }

const char* set_kernel_path_override(const char* name) {
  KernelIsa p;
  if (parse(name, &p)) path_state().store(static_cast<int>(p), std::memory_order_relaxed);
  return active_kernel_path();
}

}  // namespace nemo
