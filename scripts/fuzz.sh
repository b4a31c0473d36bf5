#!/usr/bin/env bash
# Fuzzes the parsers that read untrusted bytes (issue #13): safetensors, GGUF and config.json natively
# (native-tests/fuzz_driver.cc, a seeded mutation fuzzer built with AddressSanitizer + UBSan), and the
# session-file format with the native snapshot import (scripts/fuzz-session.ts).
#
#   bash scripts/fuzz.sh                     # the CI slice: seed 1, 20,000 cases per native target + 2,000 session cases
#   bash scripts/fuzz.sh --seconds 600       # a longer run: 600 s per target, a time-based seed
#   bash scripts/fuzz.sh --libfuzzer gguf --seconds 600   # libFuzzer (needs clang++), one target
#
# Options: --cases N (per native target; session: FUZZ_SESSION_CASES), --seed N, --seconds S (per target;
# cases unlimited unless --cases), --no-session, --libfuzzer (clang++ -fsanitize=fuzzer; corpus grows in
# $OUT/corpus-<target>), targets (default: safetensors gguf config).
# Seeds and regression inputs: test/fixtures/fuzz/<target>/. A crash writes its input to $OUT/crash-*;
# copy it there (named regress-<what>) once fixed, and every later run replays it first.
# Environment: FUZZ_OUT the build/crash folder (default: one under $TMPDIR per checkout); FUZZ_DRIVER an
# already built driver (scripts/sanitize.sh passes its own); NEMO_BUILD_LOCK a file to flock around compiles.
# Exit status 1 when a case crashed or a build failed.
set -uo pipefail
cd "$(dirname "$0")/.."

cases="" seed="" seconds=0 libfuzzer=0 session=1 targets=()
while (($#)); do
  case "$1" in
    --cases) cases=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --libfuzzer) libfuzzer=1; shift ;;
    --no-session) session=0; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    -*) echo "fuzz: unknown option $1" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
((${#targets[@]})) || targets=(safetensors gguf config)
if [[ "$seconds" == 0 ]]; then cases=${cases:-20000}; seed=${seed:-1}; else cases=${cases:-0}; seed=${seed:-$(date +%s)}; fi

OUT=${FUZZ_OUT:-${TMPDIR:-/tmp}/nemotron-fuzz.$(pwd | cksum | cut -d' ' -f1)}
mkdir -p "$OUT"
SRCS=(native-tests/fuzz_targets.cc csrc/core/json.cc csrc/core/dtype.cc csrc/model/safetensors.cc csrc/model/gguf.cc
      csrc/model/config.cc csrc/model/mapped_file.cc csrc/model/weights.cc)
SAN=(-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer)
locked() {
  if [[ -n "${NEMO_BUILD_LOCK:-}" ]] && command -v flock >/dev/null 2>&1; then flock "$NEMO_BUILD_LOCK" "$@"; else "$@"; fi
}
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

status=0
if ((libfuzzer)); then
  CLANG=${CLANGXX:-$(command -v clang++ || command -v clang++-14 || true)}
  if [[ -z "$CLANG" ]]; then echo "fuzz: --libfuzzer needs clang++ (Debian: apt-get install clang-14)"; exit 2; fi
  for t in "${targets[@]}"; do
    bin="$OUT/libfuzzer-$t"
    locked "$CLANG" -std=c++17 -O1 -g -I csrc -I native-tests "${SAN[@]}" -fsanitize=fuzzer -DNEMO_FUZZ_TARGET="\"$t\"" \
      native-tests/fuzz_libfuzzer.cc "${SRCS[@]}" -pthread -o "$bin" || { echo "fuzz: build of $t FAILED"; exit 1; }
    mkdir -p "$OUT/corpus-$t"
    args=(-artifact_prefix="$OUT/crash-$t-" -timeout=10 -rss_limit_mb=4096)
    ((seconds > 0)) && args+=(-max_total_time="$seconds")
    [[ -n "$cases" && "$cases" != 0 ]] && args+=(-runs="$cases")
    "$bin" "${args[@]}" "$OUT/corpus-$t" "test/fixtures/fuzz/$t" || status=1
  done
  exit $status
fi

DRIVER=${FUZZ_DRIVER:-}
if [[ -z "$DRIVER" ]]; then
  DRIVER="$OUT/fuzz_driver"
  start=$SECONDS
  if ! locked g++ -std=c++17 -O1 -g -I csrc -I native-tests "${SAN[@]}" native-tests/fuzz_driver.cc "${SRCS[@]}" \
      -pthread -o "$DRIVER" 2>"$OUT/build.log"; then
    echo "fuzz: build FAILED (log: $OUT/build.log)"; tail -20 "$OUT/build.log"; exit 1
  fi
  echo "fuzz: built the driver with ASan + UBSan in $((SECONDS - start)) s"
fi
total=0
for t in "${targets[@]}"; do
  out=$("$DRIVER" --target "$t" --corpus "test/fixtures/fuzz/$t" --seed "$seed" --cases "$cases" --seconds "$seconds" \
        --crash-dir "$OUT" 2>"$OUT/$t.log")
  rc=$?
  if ((rc == 0)); then
    echo "$out"
    n=$(sed -E 's/.*\+ ([0-9]+) mutated.*/\1/' <<<"$out"); total=$((total + n))
  else
    echo "fuzz: $t FAILED (exit $rc); the report:"; grep -E 'ERROR|runtime error|CRASH|HANG|#[0-9]+ ' "$OUT/$t.log" | head -30
    status=1
  fi
done
if ((session)); then
  s_cases=${FUZZ_SESSION_CASES:-2000}
  ((seconds > 0)) && s_cases=${FUZZ_SESSION_CASES:-0}
  node --import tsx scripts/fuzz-session.ts --seed "$seed" --cases "$s_cases" --seconds "$seconds" --crash-dir "$OUT" || status=1
fi
if ((status == 0)); then echo "fuzz: PASS ($total native cases)"; else echo "fuzz: FAILED"; fi
exit $status
