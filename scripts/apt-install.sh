#!/usr/bin/env bash
# Install Debian packages as root, safely beside another install on the same machine.
#
#   apt-install.sh PACKAGE...
#
# Two checkouts installing at once (two CI runs, a hub and a test run) would otherwise race for
# apt's locks, and apt-get gives up at once when it finds them taken ("Could not get lock"):
# our own installs wait in turn on one lock file, and apt waits for anyone else's dpkg.
set -euo pipefail
[ $# -gt 0 ] || exit 0
LOCK=/var/lock/kubestudio-apt.lock
APT=(apt-get -o DPkg::Lock::Timeout=600 -qq)
(
  flock -w 900 9 || { echo "[apt-install] waited 15 minutes for $LOCK; giving up" >&2; exit 1; }
  missing=()
  for package in "$@"; do
    # another install may have added it while we waited
    [ "$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)" = "install ok installed" ] || missing+=("$package")
  done
  [ ${#missing[@]} -gt 0 ] || exit 0
  "${APT[@]}" update
  DEBIAN_FRONTEND=noninteractive "${APT[@]}" install -y "${missing[@]}" >/dev/null
) 9>"$LOCK"
