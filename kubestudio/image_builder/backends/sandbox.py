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

buildah itself runs in that network namespace too (:meth:`Sandbox.enter_args`), confined to a
root folder of its own (CVE-2024-1753, see :data:`CONFINE`): what it fetches
for the Dockerfile (``ADD <url>``, which it does on its own, outside any RUN container) can reach
neither the host's loopback nor, by the namespace's routes, the private, link-local and shared
ranges (``blocked_networks``: a cloud's metadata service, the cluster's pods). The registry it
needs on the host's loopback is forwarded in, address by address (:mod:`.netfwd`); the machine's
DNS servers stay reachable.

The holder of the namespaces is a ``sleep`` in its own process group; :class:`Sandbox` starts it,
slirp4netns and the forwarder, and stops them all when the build ends.
"""

import asyncio
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile

from ...processgroup import signal_group
from .netfwd import serve_unix

# buildah 1.28 (Debian bookworm's) follows a link in a stage's files when it bind-mounts them into a
# RUN step (RUN --mount=type=bind,from=...: CVE-2024-1753), which gives the step the host's /: so
# buildah itself runs with a root of its own, where / holds nothing of the host worth reading or
# writing (the script's header says what it holds)
CONFINE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "confine.sh")
SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")


class SandboxError(Exception):
    """The sandbox cannot run on this machine; the message says what is missing."""


def missing_tools(runtime):
    """Commands the sandbox needs that this machine lacks."""
    return [tool for tool in ("unshare", "slirp4netns", runtime) if not shutil.which(tool)]


def check_host(runtime):
    """Raise SandboxError when builds cannot be sandboxed here."""
    if os.geteuid() != 0:
        raise SandboxError(
            "the build sandbox needs the image service to run as root (it maps build users "
            "to an unused uid range); run the hub as root, or set BuildahBackend.sandbox = False "
            "to let RUN steps run with the service's own rights"
        )
    missing = missing_tools(runtime)
    if missing:
        packages = " ".join(missing)
        raise SandboxError(f"the build sandbox needs {', '.join(missing)} (apt-get install {packages})")


def nameservers(resolv_conf="/etc/resolv.conf"):
    """The machine's DNS servers (addresses), as resolv.conf lists them."""
    try:
        with open(resolv_conf, encoding="utf-8") as f:
            servers = [line.split()[1] for line in f if line.startswith("nameserver") and len(line.split()) > 1]
    except OSError:
        return []
    found = []
    for server in servers:
        try:
            found.append(ipaddress.ip_address(server.split("%")[0]))
        except ValueError:
            pass
    return found


def loopback_resolver(resolv_conf="/etc/resolv.conf"):
    """Whether the machine's DNS server is on its loopback (unreachable from the sandbox)."""
    return any(server.is_loopback for server in nameservers(resolv_conf))


def is_loopback_host(host):
    """Whether a registry's host name or address is this machine's loopback."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


FOLDER_PREFIX = "kubestudio-sandbox-"


def is_sandbox_folder(path):
    """Whether ``path`` names a sandbox's folder (what a build's record may ask to remove)."""
    return (
        bool(path)
        and os.path.dirname(path) == tempfile.gettempdir()
        and os.path.basename(path).startswith(FOLDER_PREFIX)
        and not os.path.islink(path)
    )


def system_tool(name):
    """``name`` on PATH, else in sbin (``ip``, ``pivot_root``: a hub started with a user's PATH,
    /usr/bin:/bin, lacks sbin). The name as is when found nowhere."""
    return shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), *SBIN])) or name


def host_addresses():
    """This machine's own IPv4 addresses but loopback (a service bound to all of them answers
    there as on the loopback)."""
    try:
        out = subprocess.run(
            [system_tool("ip"), "-j", "-4", "addr", "show"], capture_output=True, text=True, timeout=10
        ).stdout
        found = {info["local"] for link in json.loads(out or "[]") for info in link.get("addr_info", [])}
    except (OSError, ValueError, subprocess.SubprocessError, KeyError):
        return []
    return sorted(a for a in found if not ipaddress.ip_address(a).is_loopback)


def routes(blocked, servers, own=()):
    """``ip -batch`` lines of the namespace: each blocked range and each of the machine's own
    addresses unreachable, save the DNS servers (reached through slirp4netns' gateway, whatever
    range they are in)."""
    lines = [f"route add unreachable {net}" for net in blocked]
    lines += [f"route add unreachable {address}/32" for address in own if ipaddress.ip_address(address) not in servers]
    for server in servers:
        if (
            server.version == 4
            and not server.is_loopback
            and any(server in ipaddress.ip_network(net) for net in blocked)
        ):
            lines.append(f"route add {server}/32 via {Sandbox.SLIRP_GATEWAY}")
    return lines


class Sandbox:
    """Namespaces for one build: ``async with Sandbox(...) as box: box.buildah_args()``."""

    SLIRP_DNS = "10.0.2.3"  # slirp4netns' built-in DNS forwarder
    SLIRP_GATEWAY = "10.0.2.2"

    def __init__(self, uid_base, id_count, runtime="runc", ready_timeout=10.0, forwards=(), blocked_networks=()):
        self.uid_base = uid_base
        self.id_count = id_count
        self.runtime = runtime
        self.ready_timeout = ready_timeout
        # (host, port) of the host's loopback reachable inside, one per port: inside, every loopback
        # name of the registry (127.0.0.1, localhost) is 127.0.0.1
        self.forwards = sorted({port: (host, port) for host, port in forwards}.values())
        self.blocked_networks = list(blocked_networks)
        self.holder = None
        self.slirp = None
        self.forwarder = None
        self._servers = []
        self._folder = None

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
            "unshare",
            "--net",
            "--",
            "sleep",
            "infinity",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        pid = self.holder.pid
        await self._wait_unshared(pid)
        read_fd, write_fd = os.pipe()
        try:
            self.slirp = await asyncio.create_subprocess_exec(
                "slirp4netns",
                "--configure",
                "--mtu=65520",
                "--disable-host-loopback",
                f"--ready-fd={write_fd}",
                str(pid),
                "tap0",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                pass_fds=(write_fd,),
                start_new_session=True,
            )
            os.close(write_fd)
            write_fd = None
            ready = await asyncio.wait_for(
                asyncio.get_running_loop().run_in_executor(None, os.read, read_fd, 1), self.ready_timeout
            )
        finally:
            os.close(read_fd)
            if write_fd is not None:
                os.close(write_fd)
        if ready != b"1":
            err = (await self.slirp.stderr.read()).decode(errors="replace").strip()
            raise SandboxError(f"slirp4netns could not give the build sandbox a network: {err or 'no reason given'}")
        self._folder = tempfile.mkdtemp(prefix=FOLDER_PREFIX)  # 0700: root's alone
        if self.blocked_networks:
            await self._route()
        if self.forwards:
            await self._forward()

    def _in_namespace(self):
        return ["nsenter", f"--net=/proc/{self.holder.pid}/ns/net", "--"]

    async def _route(self):
        own = await asyncio.to_thread(host_addresses)
        batch = "\n".join(routes(self.blocked_networks, nameservers(), own)) + "\n"
        proc = await asyncio.create_subprocess_exec(
            *self._in_namespace(),
            system_tool("ip"),
            "-batch",
            "-",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await proc.communicate(batch.encode())
        if proc.returncode != 0:
            raise SandboxError(f"the build sandbox's routes could not be set: {out.decode(errors='replace').strip()}")

    async def _forward(self):
        """The registry's loopback addresses inside the namespace (see :mod:`.netfwd`)."""
        pairs = []
        for i, (host, port) in enumerate(self.forwards):
            path = os.path.join(self._folder, f"forward-{i}.sock")
            self._servers.append(await serve_unix(path, host, port))
            pairs.append(f"127.0.0.1:{port}={path}")
        self.forwarder = await asyncio.create_subprocess_exec(
            *self._in_namespace(),
            sys.executable,
            "-m",
            "kubestudio.image_builder.backends.netfwd",
            *pairs,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            line = await asyncio.wait_for(self.forwarder.stdout.readline(), self.ready_timeout)
        except asyncio.TimeoutError:
            line = b""
        if line.strip() != b"ready":
            rest = b"" if self.forwarder.returncode is None else await self.forwarder.stdout.read()
            raise SandboxError(
                "the build sandbox could not reach the registry: "
                f"{(line + rest).decode(errors='replace').strip() or 'the forwarder did not start'}"
            )

    def enter_args(self, readable=(), writable=(), writable_at=()):
        """The start of a command that runs in the sandbox's network (buildah itself), confined to a
        root of its own (:data:`CONFINE`) holding the system's programs read-only, a private /tmp
        and /var/tmp, and of the host's folders only ``readable`` (read-only), ``writable``, and
        ``writable_at`` ((path inside, host folder) pairs)."""
        new_root = os.path.join(self._folder, "root")
        scratch = os.path.join(self._folder, "var-tmp")
        os.makedirs(new_root, exist_ok=True)
        os.makedirs(scratch, exist_ok=True)
        os.chmod(scratch, 0o1777)  # as the host's /var/tmp: RUN steps' mapped root reaches its rootfs there
        binds = [arg for path in readable for arg in ("--ro", path)]
        binds += [arg for path in writable for arg in ("--rw", path)]
        binds += ["--rw-at", f"/var/tmp:{scratch}"]
        binds += [arg for inside, host in writable_at for arg in ("--rw-at", f"{inside}:{host}")]
        if loopback_resolver():
            # the machine's DNS server listens on its loopback, which the namespace has not: the
            # build's resolv.conf names slirp4netns' server
            path = os.path.join(self._folder, "resolv.conf")
            with open(path, "w", encoding="utf-8") as f:
                f.write(f"nameserver {self.SLIRP_DNS}\n")
            binds += ["--ro-at", f"/etc/resolv.conf:{path}"]
        return [
            *self._in_namespace(),
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--",
            "bash",
            CONFINE,
            new_root,
            *binds,
            "--",
        ]

    @property
    def folder(self):
        return self._folder or ""

    def pids(self):
        """The process groups of the sandbox (for the build's record: recover() kills them)."""
        return [p.pid for p in (self.holder, self.slirp, self.forwarder) if p is not None]

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
        args = [
            "--isolation",
            "oci",
            "--runtime",
            self.runtime,
            "--network",
            f"ns:/proc/{pid}/ns/net",
            "--userns-uid-map",
            mapping,
            "--userns-gid-map",
            mapping,
            "--volume",
            "/sys:/sys:ro",
        ]
        if loopback_resolver():
            args += ["--dns", self.SLIRP_DNS]
        return args

    async def close(self):
        for proc in (self.forwarder, self.slirp, self.holder):
            if proc is None or proc.returncode is not None:
                continue
            signal_group(proc.pid, signal.SIGKILL)
            await proc.wait()
        self.forwarder = self.slirp = self.holder = None
        for server in self._servers:
            server.close()
        self._servers = []
        if self._folder:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None
