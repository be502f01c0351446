#!/usr/bin/env bash
# Build the JupyterLab extension (labextension/ -> kubestudio/labextension/, the prebuilt form a
# wheel carries, so no user's image needs Node.js). Offline from the npm registry alone: npm ci
# with the lockfile, TypeScript, and JupyterLab's own builder (jupyter-builder, installed into
# .venv as a build tool). Skipped when the sources did not change; a build of the same sources is
# kept in the cache ($KUBESTUDIO_CACHE, ~/.cache/kubestudio) and reused by a fresh checkout.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[labextension] %s\n' "$*" >&2; }
out=kubestudio/labextension
venv=${VENV:-.venv}

sources_hash() {
  # every input of the build, by name and content
  find labextension -path labextension/node_modules -prune -o -path labextension/lib -prune \
    -o -name tsconfig.tsbuildinfo -prune -o -type f -print | LC_ALL=C sort \
    | while read -r f; do printf '%s\n' "$f"; cat "$f"; done | sha256sum | cut -c1-16
}
hash=$(sources_hash)
if [ -f "$out/.source-hash" ] && [ "$(cat "$out/.source-hash")" = "$hash" ] && [ -f "$out/static/style.js" ]; then
  exit 0
fi
cache="${KUBESTUDIO_CACHE:-$HOME/.cache/kubestudio}/labextension"
if [ -f "$cache/$hash.tar" ]; then
  rm -rf "$out" && mkdir -p "$out" && tar -m -xf "$cache/$hash.tar" -C "$out"
  log "reused the build of these sources ($cache/$hash.tar)"
  exit 0
fi

command -v npm >/dev/null || { log "npm is missing: install Node.js 20 (apt-get install nodejs npm)"; exit 1; }
started=$(date +%s)
if [ ! -x "$venv/bin/jupyter-builder" ]; then
  log "installing JupyterLab's extension builder (jupyter-builder) into $venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "jupyter-builder>=1.3,<2"
fi
log "npm ci (labextension/)"
(cd labextension && npm ci --no-audit --no-fund --loglevel=error)
rm -rf "$out" labextension/lib labextension/tsconfig.tsbuildinfo
log "building (tsc, jupyter-builder build)"
(cd labextension && PATH="$PWD/../$venv/bin:$PATH" npm run --silent build)
[ -f "$out/static/style.js" ] && [ -f "$out/install.json" ] || { log "the build left no $out/static/style.js"; exit 1; }
echo "$hash" > "$out/.source-hash"
mkdir -p "$cache" && tar -cf "$cache/$hash.tar.partial" -C "$out" . && mv "$cache/$hash.tar.partial" "$cache/$hash.tar"
log "built in $(( $(date +%s) - started ))s"
