// Run-time CPU feature detection and the choice of SIMD kernel path.
//
// One binary runs everywhere: SIMD kernels are compiled with per-function target attributes and are
// chosen at run time from what the CPU (and the OS, for the AVX/AVX-512 register state) supports.
//
// The path can be forced down (never up) with the environment variable
//   NEMOTRON_CPU_KERNELS = scalar | avx2 | avx512      (anything else, or unset: the best available)
// Asking for a path the CPU lacks falls back to the best path it has.
#pragma once

namespace nemo {

struct CpuFeatures {
  bool avx2_fma = false;    // AVX2 + FMA3 + F16C, with OS support for the YMM state
  bool avx512f = false;     // AVX-512 F + BW + VL + DQ, with OS support for the ZMM/opmask state
  bool avx512bf16 = false;  // AVX-512 BF16 (vdpbf16ps); implies avx512f here
  bool avx512vnni = false;  // AVX-512 VNNI (vpdpbusd on zmm); implies avx512f here
  bool avxvnni = false;     // AVX-VNNI (vpdpbusd on ymm, VEX encoded); implies avx2_fma here
};

// What the CPU supports, detected once (thread-safe). All false on non-x86 builds.
const CpuFeatures& cpu_features();

enum class KernelIsa { kScalar = 0, kAvx2 = 1, kAvx512 = 2 };

// The path the kernels use now: the environment override (read once) or a later
// set_kernel_path_override, capped at what the CPU supports.
KernelIsa kernel_isa();

// "scalar", "avx2" or "avx512".
const char* active_kernel_path();

// For tests: forces the path by name ("scalar" | "avx2" | "avx512"); nullptr, "" or "auto" selects
// the best available (ignoring the environment). Asking for more than the CPU has gives the best it
// has; an unknown name leaves the path unchanged. Returns the name of the path now active.
// Not meant to be called while kernels run on other threads.
const char* set_kernel_path_override(const char* name);

}  // namespace nemo
