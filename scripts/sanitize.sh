#!/usr/bin/env bash
# The native code under AddressSanitizer + UndefinedBehaviorSanitizer (issue #13): builds every csrc/ source
# with -fsanitize=address,undefined (outside build/, which node-gyp owns), then runs
#   1. the native self-tests: loader (corrupt checkpoints), SSD scan, matmul and quantized matmul (--quick);
#   2. the fuzz slice (scripts/fuzz.sh: the parser targets with this build, then the session fuzzer);
#   3. scripts/sanitize-smoke.ts: batched generation, prefix snapshots, evaluate, checkTensors, GGUF, and
#      session save/load through the sanitized addon (node with libasan preloaded; leaks are not checked in
#      node, whose own allocations are never freed at exit).
# Any sanitizer report aborts the program that made it, and fails this script.
#
#   bash scripts/sanitize.sh            # exit status 1 when a build, a test or a sanitizer check failed
# Environment: SANITIZE_OUT the build folder (default: one under $TMPDIR per checkout), JOBS parallel
# compiles (default: the CPU count), NEMO_BUILD_LOCK a file to flock around the compiles (shared machines).
set -uo pipefail
cd "$(dirname "$0")/.."

OUT=${SANITIZE_OUT:-${TMPDIR:-/tmp}/nemotron-sanitize.$(pwd | cksum | cut -d' ' -f1)}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
CXX=${CXX:-g++}
mkdir -p "$OUT/obj"
# A compiler without the sanitizer runtimes (libasan, libubsan) cannot run this: say so loudly, do not fail.
if ! echo 'int main(){return 0;}' | "$CXX" -x c++ -fsanitize=address,undefined - -o "$OUT/probe" >/dev/null 2>&1; then
  echo "sanitize: SKIPPED ($CXX cannot link -fsanitize=address,undefined; Debian: apt-get install g++)"
  exit 0
fi
SAN=(-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)
# NEMOTRON_NO_GRAMMAR: the sanitizer build leaves XGrammar out (csrc/engine/grammar.h stubs), keeping its
# compile time (about a minute of CPU at -O1 on top of the addon) out of this CI step.
FLAGS=(-std=c++17 -O1 -g -fPIC -pthread -Wall -Wno-psabi -DNEMOTRON_NO_GRAMMAR -I csrc -I native-tests "${SAN[@]}")
node_inc="$(node -p "require('path').dirname(process.execPath)")/../include/node"
napi_inc="$(node -p "require('node-addon-api').include_dir")"
NAPI=(-I "$node_inc" -I "$napi_inc" -DNAPI_VERSION=8 -DNAPI_CPP_EXCEPTIONS -DNODE_ADDON_API_DISABLE_DEPRECATED)
LIBASAN=$("$CXX" -print-file-name=libasan.so)
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:allocator_may_return_null=1:strict_string_checks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
status=0
fail() { echo "sanitize: $1 FAILED${2:+ ($2)}"; status=1; }
locked() {
  if [[ -n "${NEMO_BUILD_LOCK:-}" ]] && command -v flock >/dev/null 2>&1; then flock "$NEMO_BUILD_LOCK" "$@"; else "$@"; fi
}

# ---- build ---------------------------------------------------------------------------------------
start=$SECONDS
compile() {  # src -> obj, only when the source or a header changed
  local f=$1 obj="$OUT/obj/$(echo "${1%.cc}" | tr / _).o"
  if [[ -f "$obj" && "$obj" -nt "$f" && -z "$(find csrc native-tests -name '*.h' -newer "$obj" -print -quit)" ]]; then return 0; fi
  local extra=()
  [[ "$f" == csrc/addon/* ]] && extra=("${NAPI[@]}")
  "$CXX" "${FLAGS[@]}" "${extra[@]}" -c "$f" -o "$obj" 2>"$obj.log" || { echo "FAIL $f"; cat "$obj.log"; return 1; }
}
export -f compile
export OUT CXX
export FLAGS_STR="${FLAGS[*]}" NAPI_STR="${NAPI[*]}"
build() {
  find csrc native-tests -name '*.cc' ! -name '*_selftest.cc' ! -name 'cuda_*' ! -name 'fuzz_libfuzzer.cc' | sort |
    xargs -P "$JOBS" -I{} bash -c 'FLAGS=($FLAGS_STR); NAPI=($NAPI_STR); compile "$@"' _ {}
}
if ! locked bash -c "$(declare -f build compile); $(declare -p JOBS); build" >"$OUT/build.log" 2>&1; then
  fail "build" "log: $OUT/build.log"; grep -A5 FAIL "$OUT/build.log" | head -30; exit 1
fi
O="$OUT/obj"
obj() { for s in "$@"; do echo "$O/$(echo "${s%.cc}" | tr / _).o"; done; }
ENGINE=($(find csrc -name '*.cc' ! -path 'csrc/addon/*' | sort | while read -r s; do obj "$s"; done))
ADDON=($(find csrc/addon -name '*.cc' ! -name 'cuda_*' | sort | while read -r s; do obj "$s"; done))
link() { "$CXX" "${FLAGS[@]}" "$@"; }
{
  link -shared "${ENGINE[@]}" "${ADDON[@]}" -o "$OUT/nemotron_node.node" &&
  link native-tests/fuzz_driver.cc $(obj native-tests/fuzz_targets.cc) "${ENGINE[@]}" -o "$OUT/fuzz_driver" &&
  link native-tests/loader_selftest.cc "${ENGINE[@]}" -o "$OUT/loader_selftest" &&
  link native-tests/ssd_selftest.cc "${ENGINE[@]}" -o "$OUT/ssd_selftest" &&
  link native-tests/matmul_selftest.cc "${ENGINE[@]}" -o "$OUT/matmul_selftest" &&
  link native-tests/matmul_quant_selftest.cc "${ENGINE[@]}" -o "$OUT/matmul_quant_selftest"
} >>"$OUT/build.log" 2>&1 || { fail "link" "log: $OUT/build.log"; tail -30 "$OUT/build.log"; exit 1; }
echo "sanitize: built with ASan + UBSan in $((SECONDS - start)) s ($OUT)"

# ---- 1. native self-tests -------------------------------------------------------------------------
run_test() {  # name, command...
  local name=$1; shift
  local t=$SECONDS
  if "$@" >"$OUT/$name.log" 2>&1; then
    echo "sanitize: $name OK ($((SECONDS - t)) s)"
  else
    fail "$name" "exit $?, log: $OUT/$name.log"
    grep -E 'ERROR: AddressSanitizer|runtime error|FAIL|SUMMARY' "$OUT/$name.log" | head -20
  fi
}
run_test loader_selftest "$OUT/loader_selftest" test/fixtures/golden/tiny-a
run_test ssd_selftest "$OUT/ssd_selftest" --quick
run_test matmul_selftest env NEMOTRON_SELFTEST_LIGHT=1 "$OUT/matmul_selftest" --quick
run_test matmul_quant_selftest env NEMOTRON_SELFTEST_LIGHT=1 "$OUT/matmul_quant_selftest" --quick

# ---- 2 and 3: the fuzz slice and the smoke run, in node with the sanitized addon --------------------
NODE_SAN=(env LD_PRELOAD="$LIBASAN" ASAN_OPTIONS="$ASAN_OPTIONS:detect_leaks=0" NEMOTRON_NODE_BINARY="$OUT/nemotron_node.node")
run_test fuzz env FUZZ_DRIVER="$OUT/fuzz_driver" FUZZ_OUT="$OUT" "${NODE_SAN[@]}" bash scripts/fuzz.sh
grep -h '^fuzz:' "$OUT/fuzz.log" | sed 's/^/sanitize:   /'
run_test smoke "${NODE_SAN[@]}" node --import tsx scripts/sanitize-smoke.ts
grep -h '^smoke:' "$OUT/smoke.log" | sed 's/^/sanitize:   /'
# A report that did not stop its program (it should) still fails the run.
if grep -lE 'ERROR: AddressSanitizer|runtime error:|ERROR: LeakSanitizer' "$OUT"/*.log >/dev/null 2>&1; then
  fail "reports" "$(grep -lE 'ERROR: AddressSanitizer|runtime error:|ERROR: LeakSanitizer' "$OUT"/*.log | tr '\n' ' ')"
fi

if ((status == 0)); then echo "sanitize: PASS"; else echo "sanitize: FAILED"; fi
exit $status
