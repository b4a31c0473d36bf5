#!/usr/bin/env bash
# The aarch64 (NEON) kernel paths, checked from an x86-64 machine: cross-compiles every csrc/ source
# for aarch64 (a compile check for the whole engine and the N-API layer), links the matmul selftests
# (native-tests/matmul_selftest.cc, matmul_quant_selftest.cc) and runs them under qemu-aarch64 with
# NEMOTRON_CPU_KERNELS=neon and =scalar (each run checks that path: float64 reference, exact decoding,
# bitwise batch invariance over T, batch position and thread count). qemu says nothing about speed.
#
# The optional extensions (FEAT_DotProd, FEAT_I8MM, FEAT_BF16: the kFast SDOT / SMMLA / BFDOT-BFMMLA
# kernels) are checked on two CPU models: `-cpu max` (has all three) and `-cpu cortex-a57` (none), the
# neon runs told which extensions to expect (NEMOTRON_EXPECT_NEON_EXT), and the logs must show the
# variants that ran: all of neon, neon-dotprod, neon-i8mm and bfdot/bfmmla on max, only baseline
# NEON on cortex-a57. A variant the dispatch silently skips fails here.
#
# Needs aarch64-linux-gnu-g++ and qemu-aarch64 (Debian: g++-aarch64-linux-gnu qemu-user); without
# them prints "test-neon: SKIPPED (...)" and exits 0. Exit status 1 when anything fails.
# Environment: AARCH64_CXX, QEMU_AARCH64, AARCH64_SYSROOT override the tools; TEST_NEON_OUT the build
# folder (default: one under $TMPDIR per checkout); NEMO_BUILD_LOCK a file to flock around the compiles (shared machines).
set -uo pipefail
cd "$(dirname "$0")/.."

CXX=${AARCH64_CXX:-aarch64-linux-gnu-g++}
QEMU=${QEMU_AARCH64:-qemu-aarch64}
SYSROOT=${AARCH64_SYSROOT:-/usr/aarch64-linux-gnu}
# Outside build/, which node-gyp rebuild wipes; one folder per checkout.
OUT=${TEST_NEON_OUT:-${TMPDIR:-/tmp}/nemotron-test-neon.$(pwd | cksum | cut -d' ' -f1)}

missing=()
command -v "$CXX" >/dev/null 2>&1 || missing+=("$CXX")
command -v "$QEMU" >/dev/null 2>&1 || missing+=("$QEMU")
if ((${#missing[@]})); then
  echo "test-neon: SKIPPED (${missing[*]} not found)"
  exit 0
fi

locked() {
  if [[ -n "${NEMO_BUILD_LOCK:-}" ]] && command -v flock >/dev/null 2>&1; then
    flock "$NEMO_BUILD_LOCK" "$@"
  else
    "$@"
  fi
}

mkdir -p "$OUT/obj"
# csrc/engine/grammar.cc includes the vendored XGrammar headers (its sources are not cross-compiled here).
FLAGS=(-std=c++17 -O2 -Wall -Wno-psabi -pthread -I csrc -I third_party/xgrammar/include -I third_party/xgrammar/3rdparty/dlpack/include)
# The N-API layer needs Node's and node-addon-api's headers (plain C/C++ headers, any architecture).
NAPI_FLAGS=()
if command -v node >/dev/null 2>&1; then
  node_inc="$(node -p "require('path').dirname(process.execPath)")/../include/node"
  napi_inc="$(node -p "require('node-addon-api').include_dir" 2>/dev/null || true)"
  if [[ -f "$node_inc/node_api.h" && -n "$napi_inc" && -f "$napi_inc/napi.h" ]]; then
    NAPI_FLAGS=(-I "$node_inc" -I "$napi_inc" -DNAPI_VERSION=8 -DNAPI_CPP_EXCEPTIONS
                -DNODE_ADDON_API_DISABLE_DEPRECATED)
  fi
fi

# ---- compile check: every csrc/ source but the CUDA addon's (it needs the CUDA headers) -------------
compile_all() {
  local fails=0 skipped=0 n=0 f obj
  : >"$OUT/compile.log"
  while read -r f; do
    n=$((n + 1))
    if [[ "$f" == csrc/addon/* && ${#NAPI_FLAGS[@]} -eq 0 ]]; then
      skipped=$((skipped + 1))
      continue
    fi
    obj="$OUT/obj/$(echo "${f%.cc}" | tr / _).o"
    echo "$f" >>"$OUT/compile.log"
    if ! "$CXX" "${FLAGS[@]}" "${NAPI_FLAGS[@]}" -c "$f" -o "$obj" >>"$OUT/compile.log" 2>&1; then
      echo "  FAIL: $f" >>"$OUT/compile.log"
      fails=$((fails + 1))
    fi
  done < <(find csrc -name '*.cc' ! -name 'cuda_*' | sort)
  echo "$n $fails $skipped"
}

read -r n_src n_fail n_skip < <(locked bash -c "$(declare -p CXX FLAGS NAPI_FLAGS OUT); \
  $(declare -f compile_all); compile_all")
status=0
warnings=$(grep -c 'warning:' "$OUT/compile.log" || true)
if ((n_fail > 0)); then
  echo "test-neon: compile  FAILED: $n_fail of $n_src sources (log: $OUT/compile.log)"
  grep -A3 -E 'error|FAIL' "$OUT/compile.log" | head -40
  status=1
else
  note=""
  ((n_skip > 0)) && note=", $n_skip N-API sources skipped (no Node headers)"
  echo "test-neon: compile  $((n_src - n_skip))/$n_src sources OK for aarch64, $warnings warnings$note"
fi
((warnings > 0)) && grep -B1 -A2 'warning:' "$OUT/compile.log" | head -20

# ---- selftests ---------------------------------------------------------------------------------------
O="$OUT/obj"
KERNEL_OBJS=("$O/csrc_kernels_matmul.o" "$O/csrc_kernels_matmul_quant.o" "$O/csrc_kernels_matmul_quant_fast.o" "$O/csrc_kernels_matmul_neon.o"
             "$O/csrc_kernels_matmul_quant_neon.o" "$O/csrc_core_dtype.o" "$O/csrc_core_thread_pool.o"
             "$O/csrc_core_cpu_features.o")
tests=(matmul_selftest matmul_quant_selftest)
link_tests() {  # prints the tests that failed to build
  local t
  for t in "${tests[@]}"; do
    rm -f "$OUT/$t"
    "$CXX" "${FLAGS[@]}" "native-tests/$t.cc" "${KERNEL_OBJS[@]}" -o "$OUT/$t" \
      >>"$OUT/compile.log" 2>&1 || echo "$t"
  done
}
for t in $(locked bash -c "$(declare -p CXX FLAGS KERNEL_OBJS OUT tests); \
    $(declare -f link_tests); link_tests"); do
  echo "test-neon: build    FAILED: $t (log: $OUT/compile.log)"
  tail -20 "$OUT/compile.log"
  status=1
done

# -cpu max: every feature qemu emulates (dotprod, i8mm, bf16, ...), so detection sees them;
# cortex-a57: an armv8.0 core without any of them, so the baseline NEON kernels run.
cpus=$("$QEMU" -cpu help 2>/dev/null || true)  # (not piped into grep -q: pipefail, SIGPIPE)
for model in max cortex-a57; do
  if ! grep -qw "$model" <<<"$cpus"; then
    echo "test-neon: FAILED: $QEMU has no -cpu $model (the NEON extension variants need it)"
    status=1
  fi
done
# Runs: "cpu-model path": both paths on max, the neon path again on cortex-a57.
runs=("max neon" "max scalar" "cortex-a57 neon")
pass=0 fail=0
for t in "${tests[@]}"; do
  [[ -x "$OUT/$t" ]] || continue
  for run in "${runs[@]}"; do
    read -r model path <<<"$run"
    grep -qw "$model" <<<"$cpus" || continue
    expect=none
    [[ $model == max ]] && expect=dotprod,i8mm,bf16
    log="$OUT/$t.$model.$path.log"
    start=$SECONDS
    NEMOTRON_SELFTEST_LIGHT=1 NEMOTRON_CPU_KERNELS=$path NEMOTRON_EXPECT_NEON_EXT=$expect \
      "$QEMU" -L "$SYSROOT" -cpu "$model" "$OUT/$t" --quick >"$log" 2>&1
    rc=$?
    last=$(grep -E '^(PASS|FAILED)' "$log" | tail -1)
    # Which kFast variants ran (neon path only): the lines the selftests print for them.
    missing=""
    if [[ $path == neon ]]; then
      if [[ $t == matmul_quant_selftest ]]; then
        want="kFast aarch64 variants checked: neon neon neon"
        [[ $model == max ]] && want="kFast aarch64 variants checked: neon neon-dotprod neon-i8mm"
        grep -qxF "$want" "$log" || missing="$want"
      else
        want="neon   kFast == kExact: "
        [[ $model == max ]] && want="neon   kFast BF16 (bfdot/bfmmla): "
        grep -qF "$want" "$log" || missing="$want"
      fi
    fi
    if ((rc == 0)) && [[ -z $missing ]]; then
      pass=$((pass + 1))
      printf 'test-neon: %-22s %-10s %-6s %s (wall %ds under qemu)\n' "$t" "$model" "$path" "$last" \
        $((SECONDS - start))
    else
      fail=$((fail + 1))
      printf 'test-neon: %-22s %-10s %-6s FAILED (exit %d) %s\n' "$t" "$model" "$path" "$rc" "$last"
      [[ -n $missing ]] && echo "  missing from $log: '$missing'"
      grep -E 'FAIL' "$log" | head -15
      status=1
    fi
  done
done
for model in max cortex-a57; do
  grep -h '^CPU:' "$OUT/matmul_selftest.$model.neon.log" 2>/dev/null | sed "s/^/test-neon: qemu -cpu $model /"
  grep -h -E '^  kFast neon|kFast BF16|kFast == kExact' "$OUT"/matmul*_selftest."$model".neon.log 2>/dev/null |
    sed "s/^ */test-neon: qemu -cpu $model /"
done

if ((status == 0)); then
  echo "test-neon: PASS ($pass selftest runs)"
else
  echo "test-neon: FAILED ($fail of $((pass + fail)) selftest runs failed, or the build did)"
fi
exit $status
