#!/usr/bin/env bash
# Install what KubeStudio needs into this checkout: a Python venv (.venv) with the package,
# and configurable-http-proxy (node_modules/). With --test, also the test tools and Debian's
# chromium for the browser tests. Safe to run again: finished steps are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[ "${1:-}" = "--test" ] && want_test=1

log() { printf '[install] %s\n' "$*" >&2; }

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  log "creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi

# the JupyterLab extension, built before the package that carries it (skipped when unchanged)
bash scripts/build-labextension.sh

# everything on one machine: the hub, the single-user servers, boards and servings (pyproject.toml)
extras="[all]"
[ $want_test = 1 ] && extras="[all,test]"
stamp=".venv/.kubestudio-installed${extras}"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  log "installing kubestudio${extras} into .venv"
  # pip compiles every module one file at a time (a minute of a new machine's CI); compileall does
  # the same on every core. Compiled here, not on first import: servers run as users' own
  # accounts, which cannot write .pyc files into .venv and would compile at every start
  # (the lab extension is built above: the package's build hook has nothing to do)
  HATCH_JUPYTER_BUILDER_SKIP_NPM=1 .venv/bin/pip install --quiet --disable-pip-version-check --no-compile -e ".${extras}"
  # (a few files in packages are not Python 3 on purpose, e.g. test data: compileall names them
  # and exits 1; nothing to report)
  .venv/bin/python -m compileall -q -j 0 .venv/lib >/dev/null || true
  touch "$stamp"
fi
# the lab extension as `jupyter labextension develop` links it: the build folder itself, so a
# rebuild is what servers load (pip copied the build of the moment)
labext=.venv/share/jupyter/labextensions/@kubestudio/jupyterlab
if [ "$(readlink "$labext" 2>/dev/null)" != "$PWD/kubestudio/labextension" ]; then
  mkdir -p "$(dirname "$labext")" && rm -rf "$labext" && ln -s "$PWD/kubestudio/labextension" "$labext"
fi

if [ ! -x node_modules/.bin/configurable-http-proxy ]; then
  command -v npm >/dev/null || { log "npm is missing: install Node.js 20 (apt-get install nodejs npm)"; exit 1; }
  log "installing configurable-http-proxy (npm)"
  npm install --no-audit --no-fund --loglevel=error
fi

# image builds: buildah (the embedded default's builder) and a local registry; the tests also
# use skopeo and busybox-static (offline base images)
wanted_debs=""
command -v buildah >/dev/null || wanted_debs="$wanted_debs buildah"
command -v docker-registry >/dev/null || wanted_debs="$wanted_debs docker-registry"
# the build sandbox: RUN steps in their own user, PID and network namespaces
command -v runc >/dev/null || wanted_debs="$wanted_debs runc"
command -v slirp4netns >/dev/null || wanted_debs="$wanted_debs slirp4netns"
# offline base images (base/python:3.11) from Debian's packages
command -v mmdebstrap >/dev/null || wanted_debs="$wanted_debs mmdebstrap"
if [ $want_test = 1 ]; then
  command -v skopeo >/dev/null || wanted_debs="$wanted_debs skopeo"
  [ -x /bin/busybox ] || wanted_debs="$wanted_debs busybox-static"
fi
if [ $want_test = 1 ] && ! command -v chromium >/dev/null; then
  wanted_debs="$wanted_debs chromium"  # the browser tests
fi
# code-server (below) needs ripgrep, and Kerberos headers to build: asked for in the same apt run
if [ "${KUBESTUDIO_SKIP_CODE_SERVER:-0}" != 1 ] && [ ! -x .tools/code-server/node_modules/.bin/code-server ]; then
  command -v rg >/dev/null || wanted_debs="$wanted_debs ripgrep"
  [ -e /usr/include/krb5.h ] || wanted_debs="$wanted_debs libkrb5-dev"
fi
if [ -n "$wanted_debs" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing Debian packages:$wanted_debs"
    bash scripts/apt-install.sh $wanted_debs
  else
    log "missing for image builds (and the browser tests):$wanted_debs (sudo apt-get install$wanted_debs)"
  fi
fi

# VS Code profiles need code-server; without it they are shown disabled with the reason.
if [ "${KUBESTUDIO_SKIP_CODE_SERVER:-0}" != 1 ] && [ ! -x .tools/code-server/node_modules/.bin/code-server ]; then
  log "installing code-server for VS Code profiles (set KUBESTUDIO_SKIP_CODE_SERVER=1 to skip)"
  bash scripts/install-code-server.sh \
    || log "WARNING: code-server could not be installed; VS Code profiles will be shown as unavailable"
fi
