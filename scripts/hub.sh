#!/usr/bin/env bash
# Install KubeStudio into this checkout and start the hub on the embedded default
# (local processes, local folders under ./data, no Kubernetes). Extra arguments go to jupyterhub.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/jupyterhub -f jupyterhub_config.py "$@"
