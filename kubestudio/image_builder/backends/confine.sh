#!/bin/bash
# Run a command (buildah) with a root folder that holds only what a build needs (see confine.py).
# Runs as root in a mount namespace of its own (unshare --mount --propagation private):
#   confine.sh NEWROOT [--ro PATH | --rw PATH | --ro-at PATH:SOURCE | --rw-at PATH:SOURCE]... -- COMMAND...
# --ro / --rw: the host's PATH at the same place, read-only / writable; --ro-at / --rw-at: the
# host's SOURCE at PATH (the build's own scratch space, a resolv.conf of the sandbox's).
set -euo pipefail
root=$1
shift
# the folders made here lead to the RUN steps' rootfs, which their mapped root (no host uid) must
# pass through: made 0755 whatever the service's umask; the command gets the service's back
service_umask=$(umask)
umask 022
# root's tools (pivot_root) live in sbin, which a hub started with a user's PATH lacks
service_path=$PATH
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin${PATH:+:$PATH}
mount -t tmpfs -o mode=0755,nosuid tmpfs "$root"

bind() {  # bind HOST_PATH INSIDE_PATH ro|rw
  local source=$1 target=$root$2 mode=$3
  if [ -d "$source" ]; then mkdir -p "$target"; else mkdir -p "$(dirname "$target")"; : > "$target"; fi
  mount --rbind "$source" "$target"
  [ "$mode" = rw ] || mount -o remount,bind,ro,nosuid,nodev "$target"
}

# the system's programs and libraries, read-only
for d in /usr /bin /sbin /lib /lib32 /lib64 /libx32; do
  if [ -L "$d" ]; then ln -s "$(readlink "$d")" "$root$d"
  elif [ -d "$d" ]; then bind "$d" "$d" ro; fi
done
# of /etc, what buildah and runc read: names, DNS, TLS roots, containers' policy
mkdir -p "$root/etc"
for f in passwd group nsswitch.conf hosts resolv.conf host.conf gai.conf localtime; do
  if [ -e "/etc/$f" ]; then bind "$(readlink -f "/etc/$f")" "/etc/$f" ro; fi
done
for d in /etc/ssl /etc/ca-certificates /etc/pki; do
  if [ -d "$d" ]; then bind "$d" "$d" ro; fi
done
# the containers' settings, read-only, but for the network folder, where buildah takes a lock
mkdir -p "$root/etc/containers/networks"
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs "$root/etc/containers"
mkdir -p "$root/etc/containers/networks"
for f in /etc/containers/*; do
  [ -e "$f" ] && [ "$f" != /etc/containers/networks ] && bind "$f" "$f" ro
done
# kernel interfaces: processes (the network namespace of RUN steps is named by pid), cgroups for runc
mkdir -p "$root/proc" "$root/sys" "$root/dev" "$root/run" "$root/tmp" "$root/var/tmp"
mount -t proc -o nosuid,nodev,noexec proc "$root/proc"
mount --rbind /sys "$root/sys"
# a /dev of the few devices a build uses, never the machine's disks
mount -t tmpfs -o mode=0755,nosuid tmpfs "$root/dev"
for n in null zero full random urandom tty; do
  : > "$root/dev/$n"
  mount --bind "/dev/$n" "$root/dev/$n"
done
mkdir -p "$root/dev/pts" "$root/dev/shm" "$root/dev/mqueue"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$root/dev/pts"
ln -s pts/ptmx "$root/dev/ptmx"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$root/dev/shm"
ln -s /proc/self/fd "$root/dev/fd"
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs "$root/run"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$root/tmp"

while [ $# -gt 0 ]; do
  case $1 in
    --ro) bind "$2" "$2" ro; shift 2 ;;
    --rw) bind "$2" "$2" rw; shift 2 ;;
    --ro-at) bind "${2#*:}" "${2%%:*}" ro; shift 2 ;;
    --rw-at) bind "${2#*:}" "${2%%:*}" rw; shift 2 ;;
    --) shift; break ;;
    *) echo "confine.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

cd "$root"
mkdir -p .old-root
pivot_root . .old-root
cd /
umount -l /.old-root
rmdir /.old-root
umask "$service_umask"
PATH=$service_path
exec "$@"
