#!/usr/bin/env bash
# Builds and runs the native self-tests (native-tests/*_selftest.cc; CMake targets nemotron_*_selftest
# over nemotron_base = csrc/core + csrc/model + csrc/kernels, no XGrammar, no Node): matmul on every SIMD
# path this CPU has (and batch invariance), quantized matmul, the SSD scan (each --quick: checks only, no
# benchmarks) and the checkpoint loader on the tiny golden checkpoint. CI runs it (.ci/run); prints the
# build and run times. Fails when a build fails or a self-test exits non-zero.
#
#   bash scripts/native-tests.sh            BUILD_DIR=build-native (kept: a rebuild is incremental)  JOBS=n
#   (benchmarks: build-native/nemotron_matmul_selftest --bench, etc.; see each driver's header)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build-native}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
say() { echo "native-tests: $*"; }
command -v cmake >/dev/null 2>&1 || { say "cmake not found"; exit 1; }
tests=(matmul_selftest matmul_quant_selftest ssd_selftest loader_selftest)
start=$SECONDS
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DNEMOTRON_CUDA=OFF >"$BUILD_DIR.log" 2>&1 &&
  cmake --build "$BUILD_DIR" -j "$JOBS" --target "${tests[@]/#/nemotron_}" >>"$BUILD_DIR.log" 2>&1 ||
  { tail -n 40 "$BUILD_DIR.log"; say "FAIL: the build failed (log: $BUILD_DIR.log)"; exit 1; }
say "built ${#tests[@]} self-tests in $((SECONDS - start)) s ($BUILD_DIR)"
status=0
for t in "${tests[@]}"; do
  args=(--quick)
  [[ $t == loader_selftest ]] && args=(test/fixtures/golden/tiny-a)
  t0=$SECONDS
  if "$BUILD_DIR/nemotron_$t" "${args[@]}" >"$BUILD_DIR/$t.log" 2>&1; then
    say "$t OK ($((SECONDS - t0)) s)"
  else
    say "$t FAILED (exit $?, log: $BUILD_DIR/$t.log)"
    grep -iE 'fail|error' "$BUILD_DIR/$t.log" | head -20
    status=1
  fi
done
((status == 0)) && say "PASS in $((SECONDS - start)) s" || say "FAILED"
exit $status
