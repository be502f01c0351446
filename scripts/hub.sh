#!/usr/bin/env bash
# Install KubeStudio into this checkout and start the hub on the embedded default
# (local processes, local folders under ./data, no Kubernetes). Extra arguments go to jupyterhub.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
# the hub, its services and its servers use this checkout's Python and proxy, whatever PATH says
export PATH="$PWD/.venv/bin:$PWD/node_modules/.bin:$PATH"
exec .venv/bin/jupyterhub -f jupyterhub_config.py "$@"
