#!/usr/bin/env bash
# Build KubeStudio's images with buildah, from a Debian base made here (no Docker Hub needed):
#   images/build.sh [hub|singleuser|all]
# 1. mmdebstrap writes a minimal Debian bookworm root filesystem with Python, Node.js and tini,
#    trusting this machine's own CAs (/usr/local/share/ca-certificates: a company proxy's) with
#    pip, npm and requests pointed at the system store;
# 2. buildah imports it as localhost/kubestudio/base:bookworm (FROM scratch + the tarball);
# 3. buildah builds images/<name>/Dockerfile on it (chroot isolation, as the image service does);
# 4. the images' sizes are printed and written to images/sizes.json.
# Needs root (or a user namespace), buildah and mmdebstrap (apt-get install buildah mmdebstrap).
set -euo pipefail
cd "$(dirname "$0")/.."
which="${1:-all}"
TAG="${KUBESTUDIO_IMAGE_TAG:-$(python3 -c 'import re;print(re.search(r"__version__ = \"(.+)\"", open("kubestudio/__init__.py").read())[1])')}"
export BUILDAH_ISOLATION="${BUILDAH_ISOLATION:-chroot}"  # storage: the machine's containers default (or $STORAGE_DRIVER)
BASE=localhost/kubestudio/base:bookworm
log() { printf '[images] %s\n' "$*" >&2; }

if ! buildah inspect --type image "$BASE" >/dev/null 2>&1; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  log "making the Debian base ($BASE) with mmdebstrap"
  mmdebstrap --variant=apt \
    --include=python3,python3-venv,python3-dev,build-essential,nodejs,npm,git,curl,ca-certificates,tini,ripgrep,libkrb5-dev \
    --dpkgopt=path-exclude=/usr/share/doc/* --dpkgopt=path-exclude=/usr/share/man/* \
    --dpkgopt=path-exclude=/usr/share/locale/* \
    --customize-hook='rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED' \
    --customize-hook='cp /usr/local/share/ca-certificates/*.crt "$1"/usr/local/share/ca-certificates/ 2>/dev/null; chroot "$1" update-ca-certificates' \
    bookworm "$work/rootfs.tar"
  ctr=$(buildah from scratch)
  buildah add "$ctr" "$work/rootfs.tar" / >/dev/null
  ca=/etc/ssl/certs/ca-certificates.crt
  buildah config --env LANG=C.UTF-8 --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env SSL_CERT_FILE=$ca --env PIP_CERT=$ca --env REQUESTS_CA_BUNDLE=$ca --env NODE_EXTRA_CA_CERTS=$ca "$ctr"
  buildah commit --quiet "$ctr" "$BASE" >/dev/null
  buildah rm "$ctr" >/dev/null
fi

names=(hub singleuser)
[ "$which" = all ] || names=("$which")
for name in "${names[@]}"; do
  log "building kubestudio/$name:$TAG"
  started=$(date +%s)
  buildah bud --isolation chroot --layers=false --build-arg "BASE=$BASE" \
    -f "images/$name/Dockerfile" -t "localhost/kubestudio/$name:$TAG" .
  log "kubestudio/$name:$TAG built in $(( $(date +%s) - started )) s"
done
sizes=$(buildah images --format '{{.Name}}:{{.Tag}} {{.Size}}' | grep 'kubestudio/')
printf '%s\n' "$sizes" >&2
printf '%s\n' "$sizes" | python3 -c 'import json,sys; print(json.dumps({l.split()[0]: " ".join(l.split()[1:]) for l in sys.stdin if l.strip()}, indent=2))' \
  > images/sizes.json
