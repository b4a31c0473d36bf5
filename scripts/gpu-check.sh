#!/usr/bin/env bash
# The first run on a GPU machine (issue #16): everything that must be proven on a GPU, in one call, in well
# under 8 minutes on a fresh machine (one build for this machine's GPU only):
#   1. every CUDA kernel against its CPU kernel on random inputs, max relative error
#      (native-tests/cuda_kernels_check.cc: the one kernel parity harness; test/gpu.test.ts runs the whole
#      model on the device)
#   2. the golden models' logits on CUDA against the float64 reference logits stored in the repo
#      (test/fixtures/golden/*.reference-f64.json), in both matmul precisions, decode = prefill =
#      chunked = batched on the device, snapshot state offload to host memory and restore, and decode
#      steps as CUDA graphs bitwise equal to eager launches (NEMOTRON_CUDA_GRAPHS=0) at batch 1, 3 and 8
#      (native-tests/cuda_golden_check.cc)
#   3. the load-time self-check on the GPU against the CPU backend, both precisions, with its figures:
#      natively (native-tests/cuda_selfcheck.cc: lib/selfcheck.ts's script on the Engine API, golden
#      tiny-long checkpoint; needs no Node) and, with Node, as the library runs it at load plus a small
#      decode benchmark: `nemotron-node doctor --require-gpu`
#   4. the GPU test suite (vitest: test/gpu.test.ts, test/selfcheck.test.ts; none of it may be skipped)
#   5. a throughput table: prefill and decode of the 330M bench model's shape and of the Nano-9B-v2 layer
#      stack at bf16 (random weights made on the device), decode against the measured read and copy
#      bandwidth rooflines, graphs and eager (native-tests/cuda_bench.cc)
# and ends with a summary table. Exit status 1 when a check failed (the benchmarks only fail on errors).
#
# Steps 3-4 need Node and this repository's node_modules (npm ci): the CUDA addon is built with cmake-js
# in the same build tree as the C++ checks (one build of the engine), and serves as the CPU reference too
# (NEMOTRON_NODE_BINARY: it carries the CPU backend). Without node_modules, the C++ checks are built with
# CMake alone and steps 3-4 are reported as NOT RUN (which fails the run).
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

WITH_NODE=0
if command -v node >/dev/null 2>&1 && [ -x node_modules/.bin/cmake-js ] && [ -x node_modules/.bin/vitest ]; then WITH_NODE=1; fi
step "build (NEMOTRON_CUDA=ON, CUDA architectures $ARCH, $JOBS jobs, $([ $WITH_NODE = 1 ] && echo 'cmake-js: addon + C++ checks' || echo 'CMake: C++ checks only, no node_modules'))"
t=$SECONDS
build_ok=1
CHECKS="nemotron_cuda_kernels_check nemotron_cuda_golden_check nemotron_cuda_selfcheck nemotron_cuda_bench"
if [ $WITH_NODE = 1 ]; then
  {
    npx --no-install cmake-js compile -O "$BUILD" -p "$JOBS" -T nemotron_node_cuda --CDNEMOTRON_CUDA=ON "--CDCMAKE_CUDA_ARCHITECTURES=$ARCH" &&
    cmake --build "$BUILD" -j "$JOBS" --target $CHECKS &&
    { [ -f dist/index.js ] || npm run build:ts; }
  } > "$LOGS/build.log" 2>&1 || build_ok=0
else
  {
    cmake -S . -B "$BUILD" -DNEMOTRON_CUDA=ON -DCMAKE_BUILD_TYPE=Release "-DCMAKE_CUDA_ARCHITECTURES=$ARCH" &&
    cmake --build "$BUILD" -j "$JOBS" --target $CHECKS
  } > "$LOGS/build.log" 2>&1 || build_ok=0
fi
build_s=$(elapsed $t)
tail -n 3 "$LOGS/build.log"
if [ $build_ok -eq 0 ]; then
  echo "BUILD FAILED (log: $LOGS/build.log)"
  grep -E "error" "$LOGS/build.log" | head -n 20
  exit 1
fi
echo "built in ${build_s} s"
case $BUILD in /*) BUILD_ABS=$BUILD ;; *) BUILD_ABS=$ROOT/$BUILD ;; esac
ADDON="$BUILD_ABS/Release/nemotron_node_cuda.node"
NODE_ENV_VARS=(env NEMOTRON_NODE_CUDA_BINARY="$ADDON" NEMOTRON_NODE_BINARY="$ADDON" NEMOTRON_NODE_CACHE="$BUILD_ABS/cache")

run_step() {  # name, timeout seconds, command...
  local name=$1 limit=$2
  shift 2
  local t0=$SECONDS rc=0
  timeout "$limit" "$@" 2>&1 | tee "$LOGS/$name.log"
  rc=${PIPESTATUS[0]}
  echo "$rc $(( SECONDS - t0 ))" > "$LOGS/$name.rc"
}

not_run() {  # name, why
  echo "NOT RUN: $2" | tee "$LOGS/$1.log"
  echo "125 0" > "$LOGS/$1.rc"
}

step "1. CUDA kernels vs CPU kernels"
run_step kernels 180 "$BUILD/nemotron_cuda_kernels_check"

step "2. golden logits on CUDA vs the float64 reference; decode/chunked/batched; snapshot offload + restore; graphs = eager"
run_step golden 120 "$BUILD/nemotron_cuda_golden_check" "$ROOT"

step "3a. self-check (native): the tiny model on the GPU vs the CPU engine"
run_step selfcheck 60 "$BUILD/nemotron_cuda_selfcheck" --model "$ROOT/test/fixtures/golden/tiny-long" --device cuda

step "3b. self-check as loadModel runs it, and a decode benchmark: nemotron-node doctor"
if [ $WITH_NODE = 1 ]; then
  run_step doctor 120 "${NODE_ENV_VARS[@]}" node dist/cli.js doctor --require-gpu
else
  not_run doctor "no node_modules (npm ci) for the Node addon"
fi

step "4. GPU test suite (vitest test/gpu.test.ts test/selfcheck.test.ts)"
if [ $WITH_NODE = 1 ]; then
  run_step vitest 240 "${NODE_ENV_VARS[@]}" npx --no-install vitest run test/gpu.test.ts test/selfcheck.test.ts
else
  not_run vitest "no node_modules (npm ci) for vitest"
fi

step "5a. prefill / decode throughput, 330M bench model shape, random bf16"
run_step bench330m 120 "$BUILD/nemotron_cuda_bench" --shape 330m

step "5b. prefill / decode throughput, Nano-9B-v2 layer stack, random bf16"
run_step bench 240 "$BUILD/nemotron_cuda_bench" --shape 9b

# ---- summary --------------------------------------------------------------------------------------
status() {  # name -> "PASS|FAIL (rc) seconds"
  read -r rc s < "$LOGS/$1.rc"
  case $rc in
    0) echo "PASS ${s}s" ;;
    124) echo "TIMEOUT ${s}s" ;;
    125) echo "NOT RUN" ;;
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
printf '%-44s %s   %s checks, %s failed\n' "golden logits, offload, graphs = eager" "$(status golden)" \
  "$(grep -cE 'PASS|FAIL' "$LOGS/golden.log")" "$(grep -c ' FAIL' "$LOGS/golden.log")"
grep -E 'prompt logits vs float64' "$LOGS/golden.log" | sed 's/^ */    /'
grep -E 'offload|graphs = eager' "$LOGS/golden.log" | sed 's/^ */    /'
printf '%-44s %s\n' "self-check (native, GPU vs CPU engine)" "$(status selfcheck)"
grep -E '^  (exact|fast) |^self-check' "$LOGS/selfcheck.log" | sed 's/^ */    /'
printf '%-44s %s\n' "self-check (loadModel's) + doctor" "$(status doctor)"
grep -E '^(device [0-9]|driver|cuda  |self-check| +(exact|fast) |bench)' "$LOGS/doctor.log" | sed 's/^/    /'
vitest_tests=$(sed 's/\x1b\[[0-9;]*m//g' "$LOGS/vitest.log" | grep -E '^ +Tests ' | tr -s ' ')
printf '%-44s %s  %s\n' "GPU test suite (vitest)" "$(status vitest)" "$vitest_tests"
vitest_skipped=0
if echo "$vitest_tests" | grep -q skipped; then
  vitest_skipped=1
  echo "    (a GPU test was skipped: the CUDA addon did not see the GPU)"
fi
for b in bench330m bench; do
  printf '%-44s %s\n' "benchmark ($([ $b = bench ] && echo 'Nano-9B-v2 stack' || echo '330M bench model'), bf16)" "$(status $b)"
  grep -E '^measured (read|copy) bandwidth' "$LOGS/$b.log" | sed 's/^/    /'
  sed -n '/^run /,/^roofline/p' "$LOGS/$b.log" | sed 's/^/    /'
  grep -E '^(cuda graphs|graphs speedup)' "$LOGS/$b.log" | sed 's/^/    /'
done
echo "total $(elapsed $START) s; logs in $LOGS"

fail=$vitest_skipped
for s in kernels golden selfcheck doctor vitest bench330m bench; do
  read -r rc _ < "$LOGS/$s.rc"
  [ "$rc" -eq 0 ] || fail=1
done
exit $fail
