# Sourced by scripts/pack-check.sh and scripts/cuda-pack-check.sh: a fresh project that installs packed
# tarballs the way a user without a compiler does. Needs say() and fail() from the sourcing script.
#
#   clean_install_project <work dir> <app name> [VAR=value ...]
#       NOCC = <work>/nocc-bin: node, npm, npx, sh, bash and env only (no cc, c++, g++, clang, make,
#       python: checked); CLEAN_ENV = an `env -i` prefix with that PATH, HOME, TMPDIR, the extra
#       VAR=value pairs and what reaching the registry may need (proxies, CA certificates, npm's registry
#       and cache, LANG), nothing inherited from an outer `npm run`; APP = <work>/app with a private
#       package.json named <app name>; the current folder becomes APP.
#   clean_npm_install <log> <tarball>...
#       npm install of the tarballs into APP under CLEAN_ENV with npm_config_node_gyp=/bin/false and
#       npm_config_build_from_source=false; the log on failure.
clean_install_project() {
  local work=$1 name=$2
  shift 2
  APP="$work/app"
  NOCC="$work/nocc-bin"
  mkdir -p "$APP" "$NOCC"
  local tool v
  for tool in node npm npx sh bash env; do ln -s "$(command -v "$tool")" "$NOCC/$tool"; done
  local cc_found
  cc_found=$(PATH="$NOCC" bash -c 'for t in cc gcc c++ g++ clang make python3 node-gyp; do command -v $t; done' || true)
  [[ -z "$cc_found" ]] || fail "the install PATH still has: $cc_found"
  CLEAN_ENV=(env -i HOME="$HOME" PATH="$NOCC" TMPDIR="${TMPDIR:-/tmp}" "$@")
  for v in NODE_EXTRA_CA_CERTS HTTP_PROXY HTTPS_PROXY NO_PROXY http_proxy https_proxy no_proxy npm_config_registry npm_config_cache LANG; do
    if [[ -n "${!v:-}" ]]; then CLEAN_ENV+=("$v=${!v}"); fi
  done
  echo "{ \"name\": \"$name\", \"version\": \"1.0.0\", \"private\": true }" >"$APP/package.json"
  cd "$APP"
}

clean_npm_install() {
  local log=$1
  shift
  "${CLEAN_ENV[@]}" npm_config_node_gyp=/bin/false npm_config_build_from_source=false \
    npm install --no-audit --no-fund --no-update-notifier --prefer-offline "$@" >"$log" 2>&1 || { cat "$log" >&2; return 1; }
}
