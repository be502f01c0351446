#!/usr/bin/env bash
# Install what the tests need and run them. Extra arguments go to pytest (e.g. -k profiles).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh --test
export PATH="$PWD/.venv/bin:$PWD/node_modules/.bin:$PATH"
if [ -z "${KUBESTUDIO_TEST_KUBECONFIG:-}" ]; then
  # the Kubernetes test bench's control plane, built from Debian's sources (cached after the first time)
  .venv/bin/python -m kubestudio.testing.kubebench build
fi
exec .venv/bin/python -m pytest "$@"
