// libFuzzer entry point for one target, chosen at compile time with -DNEMO_FUZZ_TARGET="gguf" (and so on).
// Built by `scripts/fuzz.sh --libfuzzer` with clang++ -fsanitize=fuzzer,address,undefined; the seeded
// driver (fuzz_driver.cc) is what CI runs, without needing clang.
#include <cstddef>
#include <cstdint>

#include "fuzz_targets.h"

#ifndef NEMO_FUZZ_TARGET
#error "define NEMO_FUZZ_TARGET, e.g. -DNEMO_FUZZ_TARGET=\"gguf\""
#endif

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  nemo::fuzz::run_target(NEMO_FUZZ_TARGET, data, size);
  return 0;
}
