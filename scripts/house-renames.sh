#!/usr/bin/env bash
# Applies issue #17's mechanical renames (scripts/house-renames.sed, house-renames-cuda.sed) to a branch
# cut before it: run from the repository root, then build; what sed cannot do is a compile error (the
# removed *_dev fields of ModelWeights, Backend::relu2, KvPool's new k_channel_major argument; see
# house-renames.sed's header).
set -euo pipefail
cd "$(dirname "$0")/.."
files=$(git ls-files csrc cuda native-tests scripts bench test lib CMakeLists.txt binding.gyp README.md .ci |
        grep -E '\.(cc|cu|cuh|h|inc|sh|ts|mjs|txt|gyp|md)$|^\.ci/' | grep -v '^scripts/house-renames')
sed -i -f scripts/house-renames.sed $files
cuda_files=$(git ls-files cuda)
sed -i -f scripts/house-renames-cuda.sed $cuda_files
echo "house-renames: applied to $(echo "$files" | wc -w) files"
