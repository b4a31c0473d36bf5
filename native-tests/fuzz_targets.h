// The parsers fuzzed by native-tests/fuzz_driver.cc (a seeded mutation fuzzer, run in CI by
// scripts/fuzz.sh) and, with clang, by libFuzzer (native-tests/fuzz_libfuzzer.cc). One target per parser
// that reads untrusted bytes: a safetensors file, a GGUF file, a config.json. (The session-file format is
// parsed in TypeScript: scripts/fuzz-session.ts fuzzes it together with the native snapshot import.)
#pragma once
#include <cstddef>
#include <cstdint>

namespace nemo::fuzz {

// The target names, in order: "safetensors", "gguf", "config".
extern const char* const kTargets[3];

// Runs `target` on data[0, size). Returns false for an unknown target name. Any crash, sanitizer
// report or hang here is a bug; a typed error Status is the expected outcome for most inputs.
bool run_target(const char* target, const uint8_t* data, size_t size);

}  // namespace nemo::fuzz
