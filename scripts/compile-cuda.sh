#!/usr/bin/env bash
# Compiles every cuda/*.cu with nvcc for one architecture (sm_80, -O2) into a temporary folder and fails
# on the first error: a quick check that the CUDA backend builds, for CI machines without a GPU.
# The real build is CMake's (CMakeLists.txt, NEMOTRON_CUDA=ON); scripts/gpu-check.sh runs it on a GPU.
# cuda/ is CUDA and plain C++ only: the CUDA addon's Node-API code is csrc/addon/cuda_addon.cc (CMake).
# Usage: scripts/compile-cuda.sh            (NVCC=/path/to/nvcc to pick a compiler, JOBS=n in parallel)
set -euo pipefail
cd "$(dirname "$0")/.."

NVCC="${NVCC:-nvcc}"
if ! command -v "$NVCC" >/dev/null 2>&1; then
  echo "compile-cuda: $NVCC not found" >&2
  exit 1
fi
JOBS="${JOBS:-$(nproc 2>/dev/null || echo 2)}"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

files=(cuda/*.cu)
echo "compile-cuda: $("$NVCC" --version | tail -n 1)"
echo "compile-cuda: ${#files[@]} files, sm_80, -O2, $JOBS at a time"
start=$SECONDS
printf '%s\n' "${files[@]}" | xargs -P "$JOBS" -I{} sh -c '
  f="$1"; out="$2"; nvcc="$3"
  if "$nvcc" -std=c++17 -O2 -arch=sm_80 -Icsrc -I. -Xcompiler -Wall,-Wno-unknown-pragmas \
       -c "$f" -o "$out/$(basename "$f" .cu).o" 2>"$out/$(basename "$f" .cu).log"; then
    echo "  ok   $f"
  else
    echo "  FAIL $f"; cat "$out/$(basename "$f" .cu).log"; exit 1
  fi' _ {} "$out" "$NVCC" || true
n=$(ls "$out"/*.o 2>/dev/null | wc -l)
if [ "$n" -ne "${#files[@]}" ]; then
  echo "compile-cuda: $n of ${#files[@]} compiled" >&2
  exit 1
fi
echo "compile-cuda: $n of ${#files[@]} .cu files compiled in $((SECONDS - start)) s"
