#!/usr/bin/env bash
# The CPU package and the optional CUDA package as a user gets them, on a machine with no GPU (CI): packs
#   - nemotron-node with its prebuilt CPU binary (build/Release/nemotron_node.node, stripped, as
#     prebuilds/linux-x64/nemotron-node.glibc.node), dist/ as built, and the published manifest
#     (scripts/release-manifest.mjs: optionalDependencies on @nemotron-node/linux-x64-cuda);
#   - @nemotron-node/linux-x64-cuda with packages/linux-x64-cuda/nemotron_node_cuda.node
#     (scripts/build-cuda-package.sh);
# installs the two tarballs together into a fresh project (a PATH with no compiler, make or python;
# npm_config_node_gyp=/bin/false) and shows: npm placed the CUDA package and nemotron-node resolves its
# binary; device 'auto' loads on the CPU with exactly one log line saying why; device 'cuda' throws
# ERR_DEVICE_UNAVAILABLE; `nemotron-node doctor` reports the binary and the missing GPU; and, as an
# optional dependency, npm skips the CUDA package for another OS, CPU or libc (its os/cpu/libc fields). test/cuda-package.test.ts runs it and reads the
# "cuda-pack-check:" lines. On a machine WITH a GPU the two load checks would not hold: it says so and stops.
#
#   bash scripts/cuda-pack-check.sh         (needs: npm run build:ts, a CPU build in build/, the CUDA binary)
#   CUDA_BINARY=...  CPU_BINARY=...  KEEP=1 (keep the temp folder)
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
CPU_BINARY=${CPU_BINARY:-$REPO/build/Release/nemotron_node.node}
CUDA_BINARY=${CUDA_BINARY:-$REPO/packages/linux-x64-cuda/nemotron_node_cuda.node}
WORK="$(mktemp -d "${TMPDIR:-/tmp}/nemotron-cuda-pack.XXXXXX")"
if [[ "${KEEP:-}" == 1 ]]; then echo "cuda-pack-check: keeping $WORK"; else trap 'rm -rf "$WORK"' EXIT; fi
say() { echo "cuda-pack-check: $*"; }
fail() { echo "cuda-pack-check: FAIL: $*" >&2; exit 1; }
now() { date +%s%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (b - a) / 1e9 }'; }
source "$REPO/scripts/clean-install.sh"
T0=$(now)
[[ -f "$CPU_BINARY" ]] || fail "no CPU binary at $CPU_BINARY (npx node-gyp rebuild)"
[[ -f "$CUDA_BINARY" ]] || fail "no CUDA binary at $CUDA_BINARY (bash scripts/build-cuda-package.sh)"
[[ -f "$REPO/dist/index.js" && -f "$REPO/dist/cjs/index.js" ]] || fail "no dist/ (npm run build:ts)"
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  say "this machine has a GPU: the no-GPU fallback checks do not apply here (scripts/gpu-check.sh covers it)"
  exit 0
fi

# ---- 1. the CPU package -------------------------------------------------------------------------------
CPU="$WORK/cpu"
mkdir -p "$CPU/prebuilds/linux-x64"
cd "$REPO"
cp -R package.json binding.gyp CMakeLists.txt csrc cuda dist "$CPU/"
for f in README.md LICENSE LICENSE.md NOTICE; do [[ -e "$f" ]] && cp "$f" "$CPU/"; done
cp "$CPU_BINARY" "$CPU/prebuilds/linux-x64/nemotron-node.glibc.node"
strip --strip-unneeded "$CPU/prebuilds/linux-x64/nemotron-node.glibc.node"
find "$CPU/dist" -name '*.map' -delete
node "$REPO/scripts/release-manifest.mjs" "$CPU/package.json" >/dev/null
(cd "$CPU" && npm pack --ignore-scripts --json --pack-destination "$WORK" >"$WORK/cpu-pack.json" 2>"$WORK/cpu-pack.log") || { cat "$WORK/cpu-pack.log" >&2; fail "npm pack (CPU package)"; }

# ---- 2. the CUDA package ------------------------------------------------------------------------------
GPU_PKG="$WORK/cuda"
mkdir -p "$GPU_PKG"
cp "$REPO"/packages/linux-x64-cuda/{package.json,index.js,index.d.ts,README.md} "$GPU_PKG/"
cp "$CUDA_BINARY" "$GPU_PKG/nemotron_node_cuda.node"
if [[ -f "$REPO/packages/linux-x64-cuda/build-info.json" ]]; then
  node -e '
    const fs = require("fs");
    const [pkgFile, infoFile] = process.argv.slice(1);
    const pkg = JSON.parse(fs.readFileSync(pkgFile, "utf8"));
    const info = JSON.parse(fs.readFileSync(infoFile, "utf8"));
    pkg.nemotronNode.cudaArchitectures = info.cudaArchitectures;
    pkg.nemotronNode.cudaRuntime = `${info.nvcc} (linked statically)`;
    fs.writeFileSync(pkgFile, JSON.stringify(pkg, null, 2) + "\n");
    console.log(`cuda-pack-check: CUDA binary built for ${info.cudaArchitectures} with nvcc ${info.nvcc} in ${info.buildSeconds} s`);
  ' "$GPU_PKG/package.json" "$REPO/packages/linux-x64-cuda/build-info.json"
fi
(cd "$GPU_PKG" && npm pack --json --pack-destination "$WORK" >"$WORK/cuda-pack.json" 2>"$WORK/cuda-pack.log") || { cat "$WORK/cuda-pack.log" >&2; fail "npm pack (CUDA package)"; }
T1=$(now)
read -r CPU_TGZ CPU_SIZE CPU_UNPACKED < <(node -e 'const [p] = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")); console.log(p.filename, p.size, p.unpackedSize)' "$WORK/cpu-pack.json")
read -r CUDA_TGZ CUDA_SIZE CUDA_UNPACKED CUDA_FILES < <(node -e 'const [p] = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")); console.log(p.filename, p.size, p.unpackedSize, p.files.map((f) => f.path).sort().join(","))' "$WORK/cuda-pack.json")
say "cpu tarball $CPU_TGZ $CPU_SIZE bytes packed, $CPU_UNPACKED unpacked"
say "cuda tarball $(basename "$CUDA_TGZ") $CUDA_SIZE bytes packed, $CUDA_UNPACKED unpacked, files $CUDA_FILES"
CPU_TGZ="$WORK/$CPU_TGZ"
CUDA_TGZ="$WORK/$(basename "$CUDA_TGZ")"
[[ "$CUDA_FILES" == "README.md,index.d.ts,index.js,nemotron_node_cuda.node,package.json" ]] || fail "unexpected CUDA package contents: $CUDA_FILES"
tar -xzOf "$CPU_TGZ" package/package.json | node -e '
  const p = JSON.parse(require("fs").readFileSync(0, "utf8"));
  if (!p.optionalDependencies || !p.optionalDependencies["@nemotron-node/linux-x64-cuda"]) { console.error("no optionalDependencies"); process.exit(1); }
  if ((p.files || []).some((f) => f.startsWith("packages"))) { console.error("the CPU package carries packages/"); process.exit(1); }
  console.log("cuda-pack-check: cpu package.json optionalDependencies " + JSON.stringify(p.optionalDependencies));' || fail "the CPU package's manifest"
tar -tzf "$CPU_TGZ" | grep -q 'nemotron_node_cuda.node' && fail "the CPU package carries a CUDA binary"

# ---- 3. install both into a fresh project, without a compiler -------------------------------------------
clean_install_project "$WORK" cuda-pack-check-app NEMOTRON_NODE_CACHE="$WORK/cache"  # scripts/clean-install.sh
t0=$(now)
clean_npm_install "$WORK/install.log" "$CPU_TGZ" "$CUDA_TGZ" || fail "npm install of the two tarballs failed"
t1=$(now)
[[ -f node_modules/@nemotron-node/linux-x64-cuda/nemotron_node_cuda.node ]] || fail "npm did not install the CUDA package"
[[ ! -e node_modules/nemotron-node/build ]] || fail "the install compiled the CPU addon"
say "install of both tarballs $(secs "$t0" "$t1") s: node_modules/nemotron-node (prebuilt CPU binary) and node_modules/@nemotron-node/linux-x64-cuda"

# ---- 4. no GPU here: 'auto' falls back with one line, 'cuda' is ERR_DEVICE_UNAVAILABLE -------------------
"${CLEAN_ENV[@]}" node -e '
  const path = require("node:path");
  (async () => {
    const lib = require("nemotron-node");
    const { makeTinyModel } = lib;
    const dir = path.join(process.env.NEMOTRON_NODE_CACHE, "tiny");
    await makeTinyModel(dir, { seed: 1, pattern: "M*-", hiddenSize: 64 });
    const lines = [];
    const warn = console.warn;
    console.warn = (...a) => lines.push(a.join(" "));
    for (let i = 0; i < 2; i++) {
      const m = await lib.loadModel(dir, { threads: 1, device: "auto" });
      if (m.info.backend !== "cpu") throw new Error("auto: backend " + m.info.backend);
      const r = await m.generate({ prompt: "Hello", maxTokens: 3 });
      if (r.usage.completionTokens < 1) throw new Error("auto: no tokens");
      await m.close();
    }
    console.warn = warn;
    if (lines.length !== 1) throw new Error("expected one log line, got " + JSON.stringify(lines));
    const pkgBinary = require.resolve("@nemotron-node/linux-x64-cuda/nemotron_node_cuda.node");
    if (!lines[0].includes(pkgBinary)) throw new Error("the log line does not name the CUDA package binary " + pkgBinary + ": " + lines[0]);
    console.log("cuda-pack-check: auto log line: " + lines[0]);
    let code;
    try {
      await lib.loadModel(dir, { threads: 1, device: "cuda" });
    } catch (e) {
      code = e.code;
      console.log("cuda-pack-check: cuda error: " + e.name + " " + e.code + ": " + e.message);
    }
    if (code !== "ERR_DEVICE_UNAVAILABLE") throw new Error("device cuda: expected ERR_DEVICE_UNAVAILABLE, got " + code);
  })().catch((e) => { console.error(e); process.exit(1); });
' || fail "the fallback checks"
say "auto: CPU with exactly one log line naming the CUDA package binary; cuda: ERR_DEVICE_UNAVAILABLE"

out=$("${CLEAN_ENV[@]}" ./node_modules/.bin/nemotron-node doctor --no-bench 2>&1) || { echo "$out" >&2; fail "nemotron-node doctor failed"; }
echo "$out" | sed 's/^/cuda-pack-check: doctor| /'
echo "$out" | grep -q "linux-x64-cuda/nemotron_node_cuda.node" || fail "doctor does not name the CUDA package binary"

# ---- 5. the platform fields: as an optional dependency (how nemotron-node lists it), npm installs the CUDA
# package on Linux x64 glibc only. Shown with npm's --os/--cpu/--libc overrides on an app that lists the
# tarball as an optional dependency.
OTHER="$WORK/other"
mkdir -p "$OTHER"
plat=""
for flags in "" "--cpu=arm64" "--os=darwin" "--libc=musl"; do
  rm -rf "$OTHER/node_modules" "$OTHER/package-lock.json"
  echo "{ \"name\": \"other\", \"version\": \"1.0.0\", \"private\": true, \"optionalDependencies\": { \"@nemotron-node/linux-x64-cuda\": \"file:$CUDA_TGZ\" } }" >"$OTHER/package.json"
  # shellcheck disable=SC2086
  (cd "$OTHER" && "${CLEAN_ENV[@]}" npm install --no-audit --no-fund --no-update-notifier --ignore-scripts $flags >"$WORK/other.log" 2>&1) || { cat "$WORK/other.log" >&2; fail "npm install ${flags:-(this platform)}"; }
  if [[ -f "$OTHER/node_modules/@nemotron-node/linux-x64-cuda/package.json" ]]; then got=installed; else got=skipped; fi
  want=skipped; [[ -z "$flags" ]] && want=installed
  [[ "$got" == "$want" ]] || fail "npm install ${flags:-(linux x64 glibc)}: the CUDA package was $got"
  plat+="${flags:-linux-x64-glibc}: $got; "
done
say "platform: as an optional dependency the CUDA package is $plat(os/cpu/libc honoured)"
say "OK in $(secs "$T0" "$(now)") s (packing $(secs "$T0" "$T1") s)"
