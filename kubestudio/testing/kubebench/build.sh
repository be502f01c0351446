#!/usr/bin/env bash
# Build the Kubernetes test bench's control plane from Debian's sources, offline.
#
#   build.sh [CACHE_DIR]      default: ${KUBESTUDIO_KUBEBENCH_CACHE:-~/.cache/kubestudio/kubebench}
#
# Produces CACHE_DIR/bin/{kube-apiserver,kube-scheduler,kube-controller-manager,etcd,kubectl}
# and skips everything when they are already there (a stamp records what was built).
# Sources: Debian bookworm's `kubernetes` source package (1.20.2, dependencies vendored),
# Debian's Go 1.19, etcd-server 3.4 and kubernetes-client (kubectl 1.20), unpacked with
# `dpkg -x` into the cache, nothing installed system-wide. Needs apt's Debian repositories.
set -euo pipefail

K8S_DEB_VERSION="1.20.5+really1.20.2-1.1+deb12u1"
STAMP_TEXT="kubernetes $K8S_DEB_VERSION apiserver scheduler controller-manager v2"
OUT=$(realpath -m "${1:-${KUBESTUDIO_KUBEBENCH_CACHE:-$HOME/.cache/kubestudio/kubebench}}")
BIN=$OUT/bin
log() { printf '[kubebench build] %s\n' "$*" >&2; }

if [ -f "$OUT/stamp" ] && [ "$(cat "$OUT/stamp")" = "$STAMP_TEXT" ]; then
  ok=1
  for b in kube-apiserver kube-scheduler kube-controller-manager etcd kubectl; do
    [ -x "$BIN/$b" ] || ok=0
  done
  if [ $ok = 1 ]; then log "cached in $OUT"; exit 0; fi
fi

started=$(date +%s)
W=$OUT/work
rm -rf "$W" "$OUT/stamp"
mkdir -p "$W/apt/lists/partial" "$W/apt/cache/archives/partial" "$BIN"
cd "$W"

# our own apt state, so nothing is installed and the system's lists are untouched
cat > apt/sources.list <<SRC
deb http://deb.debian.org/debian bookworm main
deb-src http://deb.debian.org/debian bookworm main
SRC
APT=(-o "Dir::Etc::SourceList=$W/apt/sources.list" -o Dir::Etc::SourceParts=/nonexistent
     -o "Dir::State::Lists=$W/apt/lists" -o "Dir::Cache=$W/apt/cache"
     -o Debug::NoDropPrivs=1 -o APT::Sandbox::User=root)
log "fetching Debian sources and packages"
apt-get "${APT[@]}" update -qq
apt-get "${APT[@]}" source --download-only -qq "kubernetes=$K8S_DEB_VERSION"
apt-get "${APT[@]}" download -qq golang-1.19-go golang-1.19-src etcd-server rsync libpopt0 \
    golang-github-modern-go-reflect2-dev golang-github-json-iterator-go-dev "kubernetes-client=$K8S_DEB_VERSION"
for f in *.deb; do dpkg -x "$f" root; done
tar xzf kubernetes_1.20.5+really1.20.2.orig.tar.gz
K=$W/kubernetes-1.20.2
V=$K/vendor/github.com

# The one patch: Go >= 1.18 needs reflect2 >= 1.0.2; the vendored copy crashes the apiserver in
# mapiterinit on the first custom resource. Use Debian's newer reflect2 and json-iterator.
rm -rf "$V/modern-go/reflect2" "$V/json-iterator/go"
cp -a root/usr/share/gocode/src/github.com/modern-go/reflect2 "$V/modern-go/reflect2"
cp -a root/usr/share/gocode/src/github.com/json-iterator/go "$V/json-iterator/go"
find "$V/modern-go/reflect2" "$V/json-iterator/go" \( -name '*_test.go' -o -name go.mod -o -name go.sum \) -delete
find "$V/json-iterator/go" -mindepth 1 -type d -exec rm -rf {} +

# the kubernetes build calls rsync; run Debian's from the unpacked tree
mkdir -p "$W/shim"
printf '#!/bin/sh\nLD_LIBRARY_PATH=%s exec %s "$@"\n' "$W/root/usr/lib/x86_64-linux-gnu" "$W/root/usr/bin/rsync" > "$W/shim/rsync"
chmod +x "$W/shim/rsync"

export GOROOT=$W/root/usr/lib/go-1.19 PATH=$W/root/usr/lib/go-1.19/bin:$W/shim:$PATH GOPATH=$W/gopath \
       GOCACHE=$W/gocache GOPROXY=off GOFLAGS=-mod=vendor GO111MODULE=on HOME=$W/home CGO_ENABLED=0 \
       KUBE_BUILD_PLATFORMS=linux/amd64
mkdir -p "$HOME"
log "building kube-apiserver, kube-scheduler, kube-controller-manager (about 5-10 minutes on 2 cores)"
(cd "$K" && make WHAT="cmd/kube-apiserver cmd/kube-scheduler cmd/kube-controller-manager" >"$W/make.log" 2>&1) \
  || { tail -40 "$W/make.log"; exit 1; }
cp "$K"/_output/local/bin/linux/amd64/kube-{apiserver,scheduler,controller-manager} "$BIN/"
cp "$W/root/usr/bin/etcd" "$W/root/usr/bin/kubectl" "$BIN/"
# versions into variables, never through `| head` (under pipefail, head's early exit SIGPIPEs the
# writer and fails the whole build after every binary was made)
apiserver_version=$("$BIN/kube-apiserver" --version)
etcd_version=$("$BIN/etcd" --version)
log "${apiserver_version}; ${etcd_version%%$'\n'*}"
# the sources and Go caches are large; keep only the binaries
rm -rf "$W"
echo "$STAMP_TEXT" > "$OUT/stamp"
log "built in $(( $(date +%s) - started ))s into $BIN"
