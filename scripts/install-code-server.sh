#!/usr/bin/env bash
# Install code-server (VS Code in the browser) into .tools/code-server for VS Code profiles,
# without internet beyond the npm registry and Debian's apt.
#
# code-server's own install downloads ripgrep from GitHub and prebuilt native modules from
# GitHub/nodejs.org; both fail offline. So: install its packages without scripts, give
# @vscode/ripgrep Debian's rg, and build every native module from source against the local
# Node.js headers. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION="${CODE_SERVER_VERSION:-4.100.3}"   # the 4.100 line runs on Node 20
PREFIX="$PWD/.tools/code-server"
log() { printf '[code-server] %s\n' "$*" >&2; }

# one build per machine: other checkouts of the same version copy it from the cache
CACHE="${KUBESTUDIO_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kubestudio}/code-server-$VERSION-node$(node -p 'process.versions.modules')"

works() { [ -x "$1/node_modules/.bin/code-server" ] && "$1/node_modules/.bin/code-server" --version >/dev/null 2>&1; }

if works "$PREFIX"; then
  exit 0
fi
if works "$CACHE"; then
  log "copying code-server $VERSION from $CACHE"
  rm -rf "$PREFIX"; mkdir -p "$(dirname "$PREFIX")"
  cp -a "$CACHE" "$PREFIX"
  works "$PREFIX" && exit 0
  log "the cached copy does not run here; building it again"
fi

node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" = 20 ] || { log "code-server $VERSION needs Node.js 20, found $(node --version)"; exit 1; }

if ! command -v rg >/dev/null || [ ! -e /usr/include/krb5.h ]; then
  if [ "$(id -u)" = 0 ]; then
    log "installing Debian ripgrep and libkrb5-dev"
    bash scripts/apt-install.sh ripgrep libkrb5-dev
  else
    log "needs Debian packages ripgrep and libkrb5-dev: sudo apt-get install ripgrep libkrb5-dev"; exit 1
  fi
fi

NODEDIR="$(dirname "$(dirname "$(command -v node)")")"
[ -e "$NODEDIR/include/node/node.h" ] || { log "Node.js headers not found under $NODEDIR/include/node"; exit 1; }
export npm_config_nodedir="$NODEDIR" npm_config_build_from_source=true npm_config_yes=true
export npm_config_unsafe_perm=true npm_config_audit=false npm_config_fund=false

rm -rf "$PREFIX"
mkdir -p "$PREFIX"
log "fetching code-server $VERSION (npm, no install scripts)"
npm install --prefix "$PREFIX" --ignore-scripts --loglevel=error "code-server@$VERSION"
VSCODE="$PREFIX/node_modules/code-server/lib/vscode"
(cd "$VSCODE" && npm install --omit=dev --ignore-scripts --loglevel=error)
mkdir -p "$VSCODE/node_modules/@vscode/ripgrep/bin"
ln -sf "$(command -v rg)" "$VSCODE/node_modules/@vscode/ripgrep/bin/rg"
log "building native modules from source (a few minutes)"
(cd "$VSCODE" && npm rebuild --loglevel=error)
(cd "$PREFIX" && npm rebuild --loglevel=error)
# what the build must have produced: a missing one means VS Code starts half-broken
for module in @vscode/spdlog node-pty kerberos; do
  # -print -quit rather than `| grep -q .`: grep's early exit would SIGPIPE find under pipefail
  [ -n "$(find "$VSCODE/node_modules/$module" -name '*.node' -path '*Release*' -print -quit)" ] \
    || { log "native module $module was not built"; exit 1; }
done
"$PREFIX/node_modules/.bin/code-server" --version
# keep a copy for the next checkout on this machine (best effort)
if mkdir -p "$(dirname "$CACHE")" 2>/dev/null; then
  rm -rf "$CACHE.tmp" && cp -a "$PREFIX" "$CACHE.tmp" && rm -rf "$CACHE" && mv "$CACHE.tmp" "$CACHE" \
    || log "could not keep a copy in $CACHE (the next checkout builds again)"
fi
