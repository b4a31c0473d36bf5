#!/usr/bin/env bash
# The package as a user gets it: build the prebuilt CPU binary (prebuildify) and dist/ (ESM + CommonJS),
# `npm pack`, then install the tarball into a fresh project on a PATH with no compiler, no make and a
# node-gyp that always fails (so only the prebuilt binary can work), and use it: the CLI, `import`,
# `require`, and the types of both entry points. Fails when the tarball is over the size budget.
#
#   bash scripts/pack-check.sh            # or: npm run pack:check
#   PACK_BUDGET_BYTES=...  KEEP=1 (keep the temp folder)  PACK_CHECK_SOURCE=0 (skip the build-from-source install)
#
# Everything is built in a staging copy of the working tree under a temp folder, so the checkout's own
# build/ (used by the tests) is never touched. Compiling the addon takes a few minutes on 2 cores; when
# other processes build in this checkout too, run it under their lock (flock /tmp/nemo-build.lock ...).
# Output lines start with "pack-check:"; test/package.test.ts reads them.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
# Budget for the .tgz (README.md states the measured size: npm run readme:figures; the stripped binary is most of it); 15 MB leaves room
# for more prebuilds (linux-arm64, a CUDA variant) without letting an accident (a model, build/) through.
BUDGET=${PACK_BUDGET_BYTES:-$((15 * 1000 * 1000))}
WORK="$(mktemp -d "${TMPDIR:-/tmp}/nemotron-pack-check.XXXXXX")"
if [[ "${KEEP:-}" == 1 ]]; then echo "pack-check: keeping $WORK"; else trap 'rm -rf "$WORK"' EXIT; fi
say() { echo "pack-check: $*"; }
fail() { echo "pack-check: FAIL: $*" >&2; exit 1; }
now() { date +%s%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (b - a) / 1e9 }'; }
source "$REPO/scripts/clean-install.sh"

# ---- 1. staging copy ----------------------------------------------------------------------------------
STAGE="$WORK/stage"
mkdir -p "$STAGE/scripts"
cd "$REPO"
cp -R package.json binding.gyp CMakeLists.txt csrc cuda third_party lib tsconfig.json tsconfig.build.json tsconfig.cjs.json "$STAGE/"
cp scripts/build-cjs.mjs "$STAGE/scripts/"
for f in README.md LICENSE LICENSE.md NOTICE; do [[ -e "$f" ]] && cp "$f" "$STAGE/"; done
ln -s "$REPO/node_modules" "$STAGE/node_modules" # node-addon-api, node-gyp, prebuildify, typescript
# The published manifest: optionalDependencies on the platform packages under packages/ (the CUDA one),
# which npm skips here where it cannot fetch them (scripts/release-manifest.mjs says why they are added
# at pack time). So this install also proves the CPU package installs alone.
node "$REPO/scripts/release-manifest.mjs" "$STAGE/package.json" | sed 's/^/pack-check: /'

# ---- 2. prebuild (prebuildify --napi --strip --tag-libc -> prebuilds/linux-x64/nemotron-node.glibc.node) ----
cd "$STAGE"
t0=$(now)
JOBS=max npx --no-install prebuildify --napi --strip --tag-libc >"$WORK/prebuild.log" 2>&1 || { tail -40 "$WORK/prebuild.log" >&2; fail "prebuildify failed"; }
t1=$(now)
shopt -s nullglob
bins=(prebuilds/*/*.node)
[[ ${#bins[@]} -ge 1 ]] || fail "prebuildify wrote no prebuilds/*/*.node"
stripped() {
  if ! command -v readelf >/dev/null; then echo 'strip state unknown'
  elif [[ "$(readelf -S "$1")" == *.symtab* ]]; then echo 'not stripped'
  else echo stripped; fi
}
for b in "${bins[@]}"; do
  say "prebuild $b ($(stat -c %s "$b") bytes, $(stripped "$b"), built in $(secs "$t0" "$t1") s)"
done
rm -rf build # the tarball must not depend on it (and `files` leaves it out anyway)

# ---- 3. npm pack (runs `prepare`: dist/ ESM and dist/cjs) ----------------------------------------------
npm pack --json --pack-destination "$WORK" >"$WORK/pack.json" 2>"$WORK/pack.log" || { cat "$WORK/pack.log" >&2; fail "npm pack failed"; }
# stdout has the `prepare` script's output, then the JSON report: keep the JSON.
node -e '
  const t = require("fs").readFileSync(process.argv[1], "utf8");
  const at = t.search(/^\[\s*$/m);
  require("fs").writeFileSync(process.argv[1], t.slice(at));' "$WORK/pack.json"
read -r TGZ SIZE UNPACKED NFILES < <(node -e '
  const [p] = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  console.log(p.filename, p.size, p.unpackedSize, p.entryCount);' "$WORK/pack.json")
TGZ="$WORK/$TGZ"
[[ -f "$TGZ" ]] || fail "no tarball at $TGZ"
node -e '
  const [p] = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  const files = p.files.map((f) => f.path);
  const must = ["package.json", "binding.gyp", "dist/index.js", "dist/index.d.ts", "dist/cli.js", "dist/cjs/index.js",
    "dist/cjs/index.d.ts", "dist/cjs/package.json", "csrc/addon/addon.cc", "csrc/engine/forward.cc", "third_party/xgrammar/cpp/grammar_matcher.cc", "third_party/xgrammar/LICENSE"];
  const missing = must.filter((f) => !files.includes(f));
  if (!files.some((f) => /^prebuilds\/linux-x64\/.*\.node$/.test(f))) missing.push("prebuilds/linux-x64/*.node");
  const banned = files.filter((f) => /^(lib|test|bench|build|node_modules|examples|scripts|docs)\//.test(f) || f.endsWith(".map") || f.endsWith(".tgz"));
  if (missing.length || banned.length) {
    console.error("missing: " + missing.join(", ") + "; should not be there: " + banned.join(", "));
    process.exit(1);
  }' "$WORK/pack.json" || fail "tarball contents"
say "contents ok: dist (ESM + .d.ts), dist/cjs (CommonJS + .d.ts), prebuilds/linux-x64, csrc + binding.gyp; no lib, test, build or source maps"
say "tarball $(basename "$TGZ") $SIZE bytes packed ($(awk -v s="$SIZE" 'BEGIN { printf "%.2f", s / 1e6 }') MB), $UNPACKED bytes unpacked, $NFILES files; budget $BUDGET bytes"
(( SIZE <= BUDGET )) || fail "the tarball ($SIZE bytes) is over the budget of $BUDGET bytes"
# The README's figures come from here: README_FIGURES=write (npm run readme:figures) writes them, =check fails when stale.
node "$REPO/scripts/readme-figures.mjs" --pack-json "$WORK/pack.json" --binary "$STAGE/${bins[0]}" --readme "$REPO/README.md" ${README_FIGURES:+--$README_FIGURES} | sed 's/^readme-figures:/pack-check: readme-figures:/' \
  || fail "README figures (README_FIGURES=${README_FIGURES:-})"

# ---- 4. install into a fresh project, with no way to compile -------------------------------------------
# node, npm and a shell only on PATH; a clean environment (nothing inherited from an outer `npm run`/`npm
# test`), keeping only what reaching the registry may need (scripts/clean-install.sh).
clean_install_project "$WORK" pack-check-app
say "install environment: PATH has only node, npm, npx, sh, bash, env (no compiler, make or python); npm_config_node_gyp=/bin/false; npm_config_build_from_source=false"
t0=$(now)
clean_npm_install "$WORK/install.log" "$TGZ" || fail "npm install of the tarball failed (without a compiler)"
t1=$(now)
PKG="$APP/node_modules/nemotron-node"
[[ ! -e "$PKG/build" ]] || fail "the install built the addon from source ($PKG/build exists)"
say "install $(secs "$t0" "$t1") s (prebuilt binary: nothing compiled, no build/ folder)"

# ---- 5. use it -------------------------------------------------------------------------------------------
export NEMOTRON_NODE_CACHE="$WORK/cache"
run() { "${CLEAN_ENV[@]}" NEMOTRON_NODE_CACHE="$NEMOTRON_NODE_CACHE" "$@"; }
out=$(run ./node_modules/.bin/nemotron-node generate --max-tokens 8 "Hello" 2>"$WORK/cli.err") || { cat "$WORK/cli.err" >&2; fail "the CLI failed"; }
grep -q "finish: " "$WORK/cli.err" || { cat "$WORK/cli.err" >&2; fail "the CLI printed no summary"; }
say "cli: nemotron-node generate made the default tiny model and wrote ${#out} characters"

run node -e '
  const path = require("node:path");
  const dir = path.join(process.env.NEMOTRON_NODE_CACHE, "tiny-default-v1");
  (async () => {
    const cjs = require("nemotron-node");
    const esm = await import("nemotron-node");
    const binary = require.resolve("nemotron-node").includes(path.join("dist", "cjs")) ? "dist/cjs" : "?";
    const texts = [];
    for (const [name, lib] of [["import", esm], ["require", cjs]]) {
      const model = await lib.loadModel(dir, { threads: 1 });
      const r = await model.generate({ prompt: "Once upon a time", maxTokens: 12 });
      await model.close();
      if (r.usage.completionTokens < 1) throw new Error(name + ": no tokens");
      texts.push(r.tokens.join(","));
      console.log("pack-check: " + name + " ok: " + r.usage.completionTokens + " tokens, finish " + r.finishReason + ", " + lib.planMemory.name + "/" + lib.NemotronError.name + " exported");
    }
    if (texts[0] !== texts[1]) throw new Error("import and require generated different tokens");
    console.log("pack-check: import and require agree token for token (require resolves to " + binary + ")");
  })().catch((e) => { console.error(e); process.exit(1); });
' || fail "import/require of the installed package"

# Types of both entry points, checked as a TypeScript user would (module nodenext).
cat >"$APP/check.mts" <<'EOF'
import { loadModel, planMemory, type GenerateResult, type NemotronModel } from 'nemotron-node';
const m: Promise<NemotronModel> = loadModel('x');
const r: GenerateResult | undefined = undefined;
const total: number = planMemory({ hybridOverridePattern: 'M*', hiddenSize: 8, vocabSize: 8 }, { contextLength: 1, maxSequences: 1 }).total;
void m; void r; void total;
EOF
cat >"$APP/check.cts" <<'EOF'
import nemotron = require('nemotron-node');
const m: Promise<nemotron.NemotronModel> = nemotron.loadModel('x');
const e: nemotron.NemotronErrorCode = 'ERR_MODEL_NOT_FOUND';
void m; void e;
EOF
node "$REPO/node_modules/typescript/bin/tsc" --noEmit --strict --skipLibCheck --module nodenext --moduleResolution nodenext \
  --target es2022 --typeRoots "$REPO/node_modules/@types" --types node check.mts check.cts \
  || fail "TypeScript could not type the installed package"
say "types ok: import (dist/index.d.ts) and require (dist/cjs/index.d.ts) under module nodenext"
# ---- 6. the fallback: where no prebuild fits, the install script builds from source -------------------
if [[ "${PACK_CHECK_SOURCE:-1}" == 1 ]]; then
  SRC_APP="$WORK/app-source"
  mkdir -p "$SRC_APP"
  echo '{ "name": "pack-check-source-app", "version": "1.0.0", "private": true }' >"$SRC_APP/package.json"
  cd "$SRC_APP"
  t0=$(now)
  # The normal PATH (a compiler, make, python3, npm's own node-gyp); the tarball's prebuild is refused.
  env -u npm_config_node_gyp npm_config_build_from_source=true JOBS=max \
    npm install --no-audit --no-fund --no-update-notifier --prefer-offline --foreground-scripts "$TGZ" >"$WORK/install-source.log" 2>&1 \
    || { tail -40 "$WORK/install-source.log" >&2; fail "npm install with npm_config_build_from_source=true failed"; }
  t1=$(now)
  [[ -f node_modules/nemotron-node/build/Release/nemotron_node.node ]] || fail "the source install did not build build/Release/nemotron_node.node"
  NEMOTRON_NODE_CACHE="$WORK/cache" node -e '
    const { loadModel } = require("nemotron-node");
    const dir = require("node:path").join(process.env.NEMOTRON_NODE_CACHE, "tiny-default-v1");
    loadModel(dir, { threads: 1 }).then(async (m) => {
      const r = await m.generate({ prompt: "Once upon a time", maxTokens: 4 });
      await m.close();
      if (r.usage.completionTokens < 1) throw new Error("no tokens");
    }).catch((e) => { console.error(e); process.exit(1); });' || fail "the package built from source does not run"
  say "source fallback: npm_config_build_from_source=true compiled build/Release/nemotron_node.node during install ($(secs "$t0" "$t1") s) and it runs"
fi
say "OK"
