// Run-time CPU feature detection and the choice of SIMD kernel path.
//
// One binary runs everywhere: SIMD kernels are compiled with per-function target attributes and are
// chosen at run time from what the CPU (and the OS, for the AVX/AVX-512 register state) supports.
//
// The path can be forced down (never up) with the environment variable
//   NEMOTRON_CPU_KERNELS = scalar | avx2 | avx512 | neon   (anything else, or unset: the best available)
// Asking for a path the CPU lacks falls back to the best path it has: on aarch64 "avx2" and "avx512"
// give neon, on x86-64 "neon" gives the best x86 path. "scalar" is honoured everywhere.
#pragma once

namespace nemo {

struct CpuFeatures {
  bool avx2_fma = false;    // AVX2 + FMA3 + F16C, with OS support for the YMM state
  bool avx512f = false;     // AVX-512 F + BW + VL + DQ, with OS support for the ZMM/opmask state
  bool avx512bf16 = false;  // AVX-512 BF16 (vdpbf16ps); implies avx512f here
  bool avx512vnni = false;  // AVX-512 VNNI (vpdpbusd on zmm); implies avx512f here
  bool avxvnni = false;     // AVX-VNNI (vpdpbusd on ymm, VEX encoded); implies avx2_fma here
  bool neon = false;        // aarch64 Advanced SIMD (baseline on aarch64, so true on every aarch64 CPU)
  bool neon_dotprod = false;  // FEAT_DotProd (sdot, HWCAP_ASIMDDP): kFast quantized dot products
  bool neon_i8mm = false;     // FEAT_I8MM (smmla, HWCAP2_I8MM): kFast quantized prefill tiles
  bool neon_bf16 = false;     // FEAT_BF16 (bfdot/bfmmla, HWCAP2_BF16): kFast for BF16 weights
};

// What the CPU supports, detected once (thread-safe). The x86 fields are false on aarch64 and the
// neon fields false on x86-64; all false on other architectures.
const CpuFeatures& cpu_features();

// kNeon only ever comes up on aarch64, kAvx2/kAvx512 only on x86-64.
enum class KernelIsa { kScalar = 0, kAvx2 = 1, kAvx512 = 2, kNeon = 3 };

// The path the kernels use now: the environment override (read once) or a later
// set_kernel_path_override, capped at what the CPU supports.
KernelIsa kernel_isa();

// "scalar", "avx2", "avx512" or "neon".
const char* active_kernel_path();

// The optional aarch64 extensions the kernels may use, as a mask of these bits.
enum NeonExt : unsigned { kNeonDotprod = 1u, kNeonI8mm = 2u, kNeonBf16 = 4u, kNeonAll = 7u };

// Whether the kernels use extension `ext` now: the CPU has it, the path is neon and the test mask
// below allows it. False on x86-64.
bool neon_ext(NeonExt ext);

// For tests: the kernels use only the extensions in `mask` (kNeonAll, the default: all the CPU has),
// so that one run under qemu -cpu max checks every variant against the others. Never adds what the
// CPU lacks. Not meant to be called while kernels run on other threads.
void set_neon_ext_mask(unsigned mask);

// For tests: forces the path by name ("scalar" | "avx2" | "avx512" | "neon"); nullptr, "" or "auto" selects
// the best available (ignoring the environment). Asking for more than the CPU has gives the best it
// has; an unknown name leaves the path unchanged. Returns the name of the path now active.
// Not meant to be called while kernels run on other threads.
const char* set_kernel_path_override(const char* name);

}  // namespace nemo
