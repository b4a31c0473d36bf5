#!/usr/bin/env bash
# The native self-check (native-tests/cuda_selfcheck.cc: the script of lib/selfcheck.ts on the Engine C++
# API) where there is no GPU: built in an existing CUDA build tree (default build-cuda/package, from
# scripts/build-cuda-package.sh: only this program is compiled and linked), then run CPU against CPU. It
# must pass as it is and fail (exit status 1, not 2) with each perturbation of the "device" side.
#   bash scripts/cuda-selfcheck-cpu.sh [build dir]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build-cuda/package}
say() { echo "cuda-selfcheck-cpu: $*"; }
cmake --build "$BUILD" --target nemotron_cuda_selfcheck >/dev/null
BIN="$BUILD/nemotron_cuda_selfcheck"
"$BIN" --device cpu --perturb none | sed 's/^/  /' || { say "FAIL: CPU against CPU did not pass"; exit 1; }
for p in logprob token; do
  rc=0
  "$BIN" --device cpu --perturb "$p" >"$BUILD/selfcheck-$p.log" 2>&1 || rc=$?
  [[ $rc == 1 ]] || { cat "$BUILD/selfcheck-$p.log"; say "FAIL: --perturb $p gave exit status $rc, not 1 (a failed check)"; exit 1; }
  say "--perturb $p fails as it must: $(grep -c FAIL "$BUILD/selfcheck-$p.log") failed lines ($(grep FAIL "$BUILD/selfcheck-$p.log" | grep -v '^self-check' | sed 's/  */ /g' | cut -c1-60 | paste -sd ';' -))"
done
say "OK"
