#!/usr/bin/env bash
# Builds the binary of the optional package @nemotron-node/linux-x64-cuda (packages/linux-x64-cuda): the
# CUDA addon (cmake-js, NEMOTRON_CUDA=ON, the CUDA runtime linked statically), stripped, into
# packages/linux-x64-cuda/nemotron_node_cuda.node, with packages/linux-x64-cuda/build-info.json (the
# architectures, nvcc version and build time; scripts/cuda-pack-check.sh puts them into the packed
# package.json). Fails when the binary would need anything beyond the NVIDIA driver (libcudart.so, ...).
#
#   bash scripts/build-cuda-package.sh
#   CUDA_ARCHS="80-real;86-real;89-real;90-real;90-virtual" (the default: sm 80, 86, 89, 90 + PTX 90)
#   BUILD_DIR=build-cuda/package  JOBS=n
set -euo pipefail
cd "$(dirname "$0")/.."
ARCHS=${CUDA_ARCHS:-"80-real;86-real;89-real;90-real;90-virtual"}
BUILD_DIR=${BUILD_DIR:-build-cuda/package}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
PKG=packages/linux-x64-cuda
say() { echo "build-cuda-package: $*"; }
command -v nvcc >/dev/null 2>&1 || { say "nvcc not found: install the CUDA toolkit"; exit 1; }
NVCC_VERSION=$(nvcc --version | sed -n 's/.*release \([0-9.]*\).*/\1/p' | head -n 1)
say "nvcc $NVCC_VERSION, architectures $ARCHS, $JOBS jobs, into $BUILD_DIR"
mkdir -p "$BUILD_DIR"
start=$SECONDS
npx --no-install cmake-js compile -O "$BUILD_DIR" -p "$JOBS" -T nemotron_node_cuda \
  --CDNEMOTRON_CUDA=ON "--CDCMAKE_CUDA_ARCHITECTURES=$ARCHS" >"$BUILD_DIR.log" 2>&1 \
  || { tail -n 40 "$BUILD_DIR.log"; say "FAIL: the build failed (log: $BUILD_DIR.log)"; exit 1; }
secs=$((SECONDS - start))
cp "$BUILD_DIR/Release/nemotron_node_cuda.node" "$PKG/nemotron_node_cuda.node"
strip --strip-unneeded "$PKG/nemotron_node_cuda.node"
needed=$(readelf -d "$PKG/nemotron_node_cuda.node" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p' | tr '\n' ' ')
say "dynamic dependencies: $needed"
for lib in $needed; do
  case $lib in
    libc.so.*|libm.so.*|libstdc++.so.*|libgcc_s.so.*|libpthread.so.*|libdl.so.*|librt.so.*|ld-linux*) ;;
    *) say "FAIL: the binary needs $lib (only the system C/C++ libraries are allowed; the CUDA runtime must be static)"; exit 1 ;;
  esac
done
size=$(stat -c %s "$PKG/nemotron_node_cuda.node")
node -e '
  const [file, archs, nvcc, secs, size] = process.argv.slice(1);
  require("fs").writeFileSync(file, JSON.stringify({ cudaArchitectures: archs, nvcc, buildSeconds: +secs, bytes: +size, builtAt: new Date().toISOString() }, null, 1) + "\n");
' "$PKG/build-info.json" "$ARCHS" "$NVCC_VERSION" "$secs" "$size"
say "built in ${secs} s: $PKG/nemotron_node_cuda.node ($size bytes, stripped; libcudart linked statically)"
