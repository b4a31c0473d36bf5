#!/usr/bin/env bash
# The CUDA backend on a GPU machine, with CMake alone (no Node, no npm): builds the engine's C++ checks
# for the GPU of this machine and runs, in one go (well under 8 minutes on a fresh machine):
#   1. every CUDA kernel against its CPU kernel on random inputs, max relative error
#      (native-tests/cuda_kernels_check.cc)
#   2. the golden models' logits on CUDA against the float64 reference logits stored in the repo
#      (test/fixtures/golden/*.reference-f64.json), in both matmul precisions, plus decode = prefill =
#      chunked = batched on the device, and decode steps as CUDA graphs bitwise equal to eager launches
#      (NEMOTRON_CUDA_GRAPHS=0) at batch 1, 3 and 8 (native-tests/cuda_golden_check.cc)
#   3. prefill and decode tokens/s of a Nano-9B-v2-shaped model with random bf16 weights made in device
#      memory, at batch 1 and 8, decode as a fraction of a bandwidth roofline measured in the same run,
#      with the decode step as a CUDA graph and launched eagerly (native-tests/cuda_bench.cc)
# and ends with a short table. Exit status 1 when a check failed (the benchmark only fails on errors).
#
# Usage: scripts/gpu-check.sh [build dir]          (default build-cuda/gpu-check)
# Environment: CUDA_ARCH (CMAKE_CUDA_ARCHITECTURES; default: this machine's GPU), JOBS (build jobs).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BUILD=${1:-build-cuda/gpu-check}
LOGS="$BUILD/logs"
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 4)}
START=$SECONDS
mkdir -p "$LOGS"

step() { printf '\n==== %s ====\n' "$*"; }
elapsed() { echo $(( SECONDS - $1 )); }

step "machine"
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,compute_cap,memory.total,driver_version --format=csv,noheader || true
else
  echo "nvidia-smi not found"
fi
nvcc --version | tail -n 1 || { echo "nvcc not found: install the CUDA toolkit"; exit 2; }
cmake --version | head -n 1

# Architectures: only this machine's GPU (a quarter of the compile time of the release list).
ARCH=${CUDA_ARCH:-}
if [ -z "$ARCH" ]; then
  cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n 1 | tr -d ' .')
  if [ -n "$cap" ]; then ARCH="${cap}-real"; else ARCH="80-real;86-real;89-real;90-real;90-virtual"; fi
fi

step "build (CMake, NEMOTRON_CUDA=ON, CUDA architectures $ARCH, $JOBS jobs)"
t=$SECONDS
build_ok=1
{
  cmake -S . -B "$BUILD" -DNEMOTRON_CUDA=ON -DCMAKE_BUILD_TYPE=Release "-DCMAKE_CUDA_ARCHITECTURES=$ARCH" &&
  cmake --build "$BUILD" -j "$JOBS" --target nemotron_cuda_kernels_check nemotron_cuda_golden_check nemotron_cuda_bench
} > "$LOGS/build.log" 2>&1 || build_ok=0
build_s=$(elapsed $t)
tail -n 3 "$LOGS/build.log"
if [ $build_ok -eq 0 ]; then
  echo "BUILD FAILED (log: $LOGS/build.log)"
  grep -E "error" "$LOGS/build.log" | head -n 20
  exit 1
fi
echo "built in ${build_s} s"

run_step() {  # name, timeout seconds, command...
  local name=$1 limit=$2
  shift 2
  local t0=$SECONDS rc=0
  timeout "$limit" "$@" 2>&1 | tee "$LOGS/$name.log"
  rc=${PIPESTATUS[0]}
  echo "$rc $(( SECONDS - t0 ))" > "$LOGS/$name.rc"
}

step "1. CUDA kernels vs CPU kernels"
run_step kernels 180 "$BUILD/nemotron_cuda_kernels_check"

step "2. golden logits on CUDA vs the float64 reference"
run_step golden 120 "$BUILD/nemotron_cuda_golden_check" "$ROOT"

step "3. prefill / decode throughput, 9B-shaped random bf16 model"
run_step bench 240 "$BUILD/nemotron_cuda_bench"

# ---- summary --------------------------------------------------------------------------------------
status() {  # name -> "PASS|FAIL (rc) seconds"
  read -r rc s < "$LOGS/$1.rc"
  case $rc in
    0) echo "PASS ${s}s" ;;
    124) echo "TIMEOUT ${s}s" ;;
    *) echo "FAIL(rc=$rc) ${s}s" ;;
  esac
}
worst() {  # the largest relative error among the kernel lines (numbers before "(tol")
  grep -oE '[0-9.]+e[-+][0-9]+  \(tol' "$LOGS/kernels.log" | awk '{ if ($1 + 0 > m) m = $1 + 0 } END { printf "%.2e", m }'
}
step "summary"
printf '%-44s %s\n' "build (arch $ARCH)" "ok ${build_s}s"
printf '%-44s %s   %s checks, %s failed, worst rel err %s\n' "kernel parity vs CPU" "$(status kernels)" \
  "$(grep -cE 'PASS|FAIL' "$LOGS/kernels.log")" "$(grep -c ' FAIL' "$LOGS/kernels.log")" "$(worst)"
printf '%-44s %s   %s checks, %s failed\n' "golden logits + decode/chunked/batched" "$(status golden)" \
  "$(grep -cE 'PASS|FAIL' "$LOGS/golden.log")" "$(grep -c ' FAIL' "$LOGS/golden.log")"
grep -E 'prompt logits vs float64' "$LOGS/golden.log" | sed 's/^ */    /'
grep -E 'graphs = eager' "$LOGS/golden.log" | sed 's/^ */    /'
printf '%-44s %s\n' "benchmark" "$(status bench)"
sed -n '/^run /,/^roofline/p' "$LOGS/bench.log" | sed 's/^/    /'
grep -E '^(cuda graphs|graphs speedup)' "$LOGS/bench.log" | sed 's/^/    /'
echo "total $(elapsed $START) s; logs in $LOGS"

fail=0
for s in kernels golden bench; do
  read -r rc _ < "$LOGS/$s.rc"
  [ "$rc" -eq 0 ] || fail=1
done
exit $fail
