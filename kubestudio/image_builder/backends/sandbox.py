"""The build sandbox: user and network namespaces a local build's RUN steps are confined to.

buildah's ``chroot`` isolation runs RUN steps as root in the host's PID and network namespaces:
a Dockerfile could signal the hub, list every process and call services on the loopback. With the
sandbox, each build gets

- a **user namespace** mapping the container's uids 0..N-1 to an unused host range (root in the
  build is an unprivileged uid on the host, with no rights over the hub's processes or files);
- a **network namespace** with its own loopback and outbound access through ``slirp4netns``
  (``--disable-host-loopback``: the host's 127.0.0.1, where the hub, proxy API, services and
  registry listen, cannot be reached, while ``pip install`` can reach the internet);
- and buildah's ``oci`` isolation runs every RUN step in a container with its own PID and mount
  namespaces, joined to the network namespace above.

A user namespace cannot mount a sysfs for a network namespace it does not own, so RUN steps see
the host's ``/sys`` read-only, as rootless Podman's containers on a shared network do.

The holder of the namespaces is a ``sleep`` in its own process group; :class:`Sandbox` starts it
and slirp4netns, and stops both when the build ends.
"""

import asyncio
import ipaddress
import os
import shutil
import signal

from ...processgroup import signal_group


class SandboxError(Exception):
    """The sandbox cannot run on this machine; the message says what is missing."""


def missing_tools(runtime):
    """Commands the sandbox needs that this machine lacks."""
    return [tool for tool in ("unshare", "slirp4netns", runtime) if not shutil.which(tool)]


def check_host(runtime):
    """Raise SandboxError when builds cannot be sandboxed here."""
    if os.geteuid() != 0:
        raise SandboxError("the build sandbox needs the image service to run as root (it maps build users "
                           "to an unused uid range); run the hub as root, or set BuildahBackend.sandbox = False "
                           "to let RUN steps run with the service's own rights")
    missing = missing_tools(runtime)
    if missing:
        packages = " ".join(missing)
        raise SandboxError(f"the build sandbox needs {', '.join(missing)} (apt-get install {packages})")


def loopback_resolver(resolv_conf="/etc/resolv.conf"):
    """Whether the machine's DNS server is on its loopback (unreachable from the sandbox)."""
    try:
        with open(resolv_conf, encoding="utf-8") as f:
            servers = [line.split()[1] for line in f if line.startswith("nameserver") and len(line.split()) > 1]
    except OSError:
        return False
    try:
        return any(ipaddress.ip_address(s.split("%")[0]).is_loopback for s in servers)
    except ValueError:
        return False


class Sandbox:
    """Namespaces for one build: ``async with Sandbox(...) as box: box.buildah_args()``."""

    SLIRP_DNS = "10.0.2.3"  # slirp4netns' built-in DNS forwarder

    def __init__(self, uid_base, id_count, runtime="runc", ready_timeout=10.0):
        self.uid_base = uid_base
        self.id_count = id_count
        self.runtime = runtime
        self.ready_timeout = ready_timeout
        self.holder = None
        self.slirp = None

    async def __aenter__(self):
        try:
            await self._start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc):
        await self.close()

    async def _start(self):
        # `unshare` execs sleep in a new network namespace; it leads its own group so a crash of
        # the service cannot leave it behind unnoticed (recover() kills the group)
        self.holder = await asyncio.create_subprocess_exec(
            "unshare", "--net", "--", "sleep", "infinity",
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE, start_new_session=True)
        pid = self.holder.pid
        await self._wait_unshared(pid)
        read_fd, write_fd = os.pipe()
        try:
            self.slirp = await asyncio.create_subprocess_exec(
                "slirp4netns", "--configure", "--mtu=65520", "--disable-host-loopback",
                f"--ready-fd={write_fd}", str(pid), "tap0",
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE, pass_fds=(write_fd,), start_new_session=True)
            os.close(write_fd)
            write_fd = None
            ready = await asyncio.wait_for(asyncio.get_running_loop().run_in_executor(None, os.read, read_fd, 1),
                                           self.ready_timeout)
        finally:
            os.close(read_fd)
            if write_fd is not None:
                os.close(write_fd)
        if ready != b"1":
            err = (await self.slirp.stderr.read()).decode(errors="replace").strip()
            raise SandboxError(f"slirp4netns could not give the build sandbox a network: {err or 'no reason given'}")

    async def _wait_unshared(self, pid):
        own = os.readlink("/proc/self/ns/net")
        for _ in range(int(self.ready_timeout / 0.005)):
            if self.holder.returncode is not None:
                err = (await self.holder.stderr.read()).decode(errors="replace").strip()
                raise SandboxError(f"unshare could not make the build's namespaces: {err}")
            try:
                if os.readlink(f"/proc/{pid}/ns/net") != own:
                    return
            except OSError:
                pass
            await asyncio.sleep(0.005)
        raise SandboxError("unshare did not make the build's namespaces in time")

    def buildah_args(self):
        """Arguments of ``buildah bud`` that put every RUN step in this sandbox."""
        pid = self.holder.pid
        mapping = f"0:{self.uid_base}:{self.id_count}"
        args = ["--isolation", "oci", "--runtime", self.runtime, "--network", f"ns:/proc/{pid}/ns/net",
                "--userns-uid-map", mapping, "--userns-gid-map", mapping, "--volume", "/sys:/sys:ro"]
        if loopback_resolver():
            args += ["--dns", self.SLIRP_DNS]
        return args

    async def close(self):
        for proc in (self.slirp, self.holder):
            if proc is None or proc.returncode is not None:
                continue
            signal_group(proc.pid, signal.SIGKILL)
            await proc.wait()
        self.slirp = self.holder = None
