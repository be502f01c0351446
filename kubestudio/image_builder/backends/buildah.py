"""buildah backend (the embedded default): ``buildah bud`` then ``buildah push``.

Needs no daemon. RUN steps run in the build sandbox (:mod:`.sandbox`): an unprivileged user
namespace, a private PID namespace and a network that reaches the internet but not the host's
loopback. vfs storage by default; layers stay in the storage root between builds, so a rebuild
after a change in the last step reuses every earlier layer.
"""

import asyncio
import os
import re
import shutil
import signal
import tempfile

from traitlets import Bool, Integer, List, Unicode

from ...spawner.imagerun import buildah_command
from .base import BuildBackend, BuildFailed, BuildOutcome, LineSplitter
from .sandbox import Sandbox, SandboxError, check_host, is_sandbox_folder

STEP = re.compile(r"^STEP (\d+)/(\d+):")
# the registry's refusal in buildah's error ("... denied: <why>"): the build's message says it
REFUSED = re.compile(r"\b(?:denied|unauthorized): (.+?)\s*$")
FIXED_CVE_2024_1753 = (1, 35, 1)


def buildah_version(text):
    """(major, minor, patch) of ``buildah --version``'s answer, or None."""
    match = re.search(r"version (\d+)\.(\d+)\.(\d+)", text)
    return tuple(int(n) for n in match.groups()) if match else None


DEFAULT_STORAGE_ROOT = "/var/lib/containers/storage"  # buildah's own defaults for root
BLOB_INFO_CACHE = "/var/lib/containers/cache"  # where containers/image keeps it for root
DEFAULT_RUN_ROOT = "/run/containers/storage"


class BuildahBackend(BuildBackend):
    name = "buildah"
    snapshot_context = True

    buildah = Unicode("buildah", config=True, help="The buildah executable.")
    storage_root = Unicode(
        "",
        config=True,
        help="""buildah's storage root (--root): the layer cache kept between builds. Empty: buildah's
        default (/var/lib/containers/storage for root).""",
    )
    run_root = Unicode("", config=True, help="buildah's run root (--runroot). Empty: buildah's default.")
    storage_per_user = Bool(
        True,
        config=True,
        help="""Each user's builds keep a storage of their own (<storage_root>/users/<user slug>, the
        run root likewise): a build finds only the images its own user pulled or built there, so a
        local image or a short name never gives it another user's (buildah uses a local image
        without asking the registry). The service's own builds (the base images) keep storage_root.
        False: one storage for everyone (only where every user is trusted).""",
    )
    storage_driver = Unicode(
        "vfs", config=True, help="Storage driver: `vfs` (works everywhere) or `overlay` (faster, needs kernel support)."
    )
    sandbox = Bool(
        True,
        config=True,
        help="""Run RUN steps in the build sandbox: their own user namespace (container root is an
        unused host uid from `sandbox_uid_base`), PID and mount namespaces (buildah's `oci`
        isolation with `runtime`), and a network namespace whose only way out is slirp4netns
        without the host's loopback, so a Dockerfile can neither signal the hub's processes nor
        call the hub, proxy or services, yet `pip install` works. Needs root, unshare,
        slirp4netns and the runtime. False: buildah's own `isolation` with the service's rights
        (only for a machine where every user is trusted).""",
    )
    sandbox_uid_base = Integer(
        1_000_000_000,
        config=True,
        help="""First host uid (and gid) of the build sandbox's user namespace: uid 0 in a build is
        this uid on the host. The range [base, base + sandbox_id_count) must not belong to anyone.""",
    )
    sandbox_id_count = Integer(65536, config=True, help="Number of uids and gids mapped into the build sandbox.")
    sandbox_blocked_networks = List(
        Unicode(),
        ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "100.64.0.0/10", "0.0.0.0/8"],
        config=True,
        help="""Address ranges a sandboxed build cannot reach, neither from RUN steps nor through
        buildah's own fetches (`ADD <url>`, its pulls and its push): by default the private,
        link-local (a cloud's metadata service) and shared ranges, so a Dockerfile cannot call the
        machine's neighbours or the cluster. The machine's DNS servers stay reachable. Remove a
        range to let builds use a package mirror or a registry inside it (loopback registries are
        `loopback_registries`).""",
    )
    loopback_registries = List(
        Unicode(),
        config=True,
        help="""host:port of registries on this machine's loopback that builds pull from and push to
        (ImageBuilder sets its own registry's names): in the sandbox, where buildah runs with no
        access to the host's loopback, these addresses alone are forwarded to the host.""",
    )
    runtime = Unicode(
        "runc",
        config=True,
        help="""OCI runtime of sandboxed RUN steps: `runc` (works with cgroup v1, v2 and hybrid
        hosts) or `crun` (cgroup v2 only).""",
    )
    isolation = Unicode(
        "chroot",
        config=True,
        help="RUN isolation when `sandbox` is False: `chroot` (no daemon, no user namespaces), `oci` or `rootless`.",
    )
    max_line = Integer(
        16 * 1024, config=True, help="Longest log line, in characters; longer output lines are cut into pieces."
    )
    auth_file = Unicode(
        "",
        config=True,
        help="Docker config.json with registry credentials for pulls and pushes (set from ImageBuilder.registry_auth_file).",
    )
    tls_verify = Bool(
        True, config=True, help="Verify the registry's TLS certificate (false for a plain-http registry)."
    )
    layers = Bool(
        True, config=True, help="Cache intermediate layers (`--layers`), so unchanged steps are not run again."
    )
    extra_args = List(Unicode(), config=True, help="More arguments for `buildah bud`, e.g. ['--jobs', '2'].")
    stop_grace_seconds = Integer(5, config=True, help="Seconds between SIGTERM and SIGKILL when a build is cancelled.")

    def _roots(self, job=None):
        """(storage root, run root) of ``job``'s builds: its user's own, or the service's."""
        # always named: a confined buildah (the sandbox) sees only the folders it is given
        storage_root, run_root = self.storage_root or DEFAULT_STORAGE_ROOT, self.run_root or DEFAULT_RUN_ROOT
        if self.storage_per_user and job is not None and not job.service_build:
            storage_root = os.path.join(storage_root, "users", job.owner_slug)
            run_root = os.path.join(run_root, "users", job.owner_slug)
        return storage_root, run_root

    def _blob_info_cache(self, job):
        """The folder of containers/image's blob-info cache for ``job``'s builds, kept per user
        beside their storage: what was pulled from where and which compressed blob holds which
        layer. With it a push mounts the base's layers from the repository they came from and skips
        the layers the registry already has, instead of compressing and sending every layer again."""
        base = self.storage_root or DEFAULT_STORAGE_ROOT
        if self.storage_per_user and job is not None and not job.service_build:
            return os.path.join(base, "blob-info", "users", job.owner_slug)
        return os.path.join(base, "blob-info", "service")

    def _global_args(self, job=None):
        return buildah_command(self.buildah, self.storage_driver, *self._roots(job))

    def _auth_args(self, job):
        args = [f"--tls-verify={'true' if self.tls_verify else 'false'}"]
        auth_file = job.auth_file or self.auth_file  # the build's own account where the gate gives one
        if auth_file:
            args += ["--authfile", auth_file]
        return args

    async def start(self):
        if self.sandbox:
            try:
                check_host(self.runtime)
            except SandboxError as e:
                raise BuildFailed(str(e)) from None
        await self._say_mitigations()

    async def _say_mitigations(self):
        """Log whether this buildah is one CVE-2024-1753 affects, and what keeps builds from the host."""
        try:
            proc = await asyncio.create_subprocess_exec(
                self.buildah, "--version", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
            )
            out, _ = await proc.communicate()
        except OSError:
            return  # not installed: builds fail with that reason
        version = buildah_version(out.decode(errors="replace"))
        if version is None or version >= FIXED_CVE_2024_1753:
            self.log.info("buildah %s: not affected by CVE-2024-1753", ".".join(map(str, version or ())) or "?")
        elif self.sandbox:
            self.log.warning(
                "buildah %s is affected by CVE-2024-1753 (a RUN bind mount from a stage can reach "
                "buildah's own files); in force: buildah runs confined to a root of its own in the build "
                "sandbox, and RUN --mount=type=bind with from= or rw is refused",
                ".".join(map(str, version)),
            )
        else:
            self.log.error(
                "buildah %s is affected by CVE-2024-1753 and BuildahBackend.sandbox is off: a build can "
                "read and write the host's files through a RUN bind mount (only RUN --mount=type=bind "
                "with from= or rw is refused); turn the sandbox on",
                ".".join(map(str, version)),
            )

    async def build(self, job, emit):
        if not self.sandbox:
            await self._bud(job, emit, ["--isolation", self.isolation])
        else:
            forwards = [
                (host, int(port))
                for host, _, port in (r.rpartition(":") for r in self.loopback_registries)
                if port.isdigit()
            ]
            try:
                async with Sandbox(
                    self.sandbox_uid_base,
                    self.sandbox_id_count,
                    self.runtime,
                    forwards=forwards,
                    blocked_networks=self.sandbox_blocked_networks,
                ) as box:
                    # buildah itself in the sandbox's network, with a root of its own: what it fetches
                    # never reaches the host, and what it mounts holds nothing of the host's
                    writable = self._roots(job)
                    for folder in writable:
                        os.makedirs(folder, mode=0o700, exist_ok=True)
                    cache = self._blob_info_cache(job)
                    os.makedirs(cache, mode=0o700, exist_ok=True)
                    auth = [f for f in (job.auth_file or self.auth_file,) if f]
                    at_cache = [(BLOB_INFO_CACHE, cache)]
                    await self._bud(
                        job,
                        emit,
                        box.buildah_args(),
                        groups=box.pids(),
                        folder=box.folder,
                        prefix=box.enter_args([job.context_dir] + auth, writable, writable_at=at_cache),
                    )
                    # the push too, in the sandbox's network and with the same cache as the pull
                    with tempfile.TemporaryDirectory(prefix="kubestudio-push-") as tmp:
                        return await self._push(
                            job,
                            emit,
                            tmp,
                            groups=box.pids(),
                            folder=box.folder,
                            prefix=box.enter_args(auth, [*writable, tmp], writable_at=at_cache),
                        )
            except SandboxError as e:
                raise BuildFailed(str(e)) from None
        with tempfile.TemporaryDirectory(prefix="kubestudio-push-") as tmp:
            return await self._push(job, emit, tmp)

    async def _bud(self, job, emit, isolation_args, groups=(), prefix=(), folder=""):
        # the service's own images are made once, not edited step by step: one commit at the end
        # rather than one per step (with vfs, each commit is a copy of the whole tree)
        layers = self.layers and not job.service_build
        bud = list(prefix) + self._global_args(job) + ["bud"] + isolation_args + ["--layers=" + str(layers).lower()]
        bud += self._auth_args(job) + ["-f", os.path.join(job.context_dir, job.dockerfile), "-t", job.image]
        for key, value in sorted(job.labels.items()):
            bud += ["--label", f"{key}={value}"]
        bud += list(self.extra_args) + [job.context_dir]
        refused = []

        def watch(line):
            match = REFUSED.search(line)
            if match:
                refused.append(match.group(1).rstrip("\"' "))
            emit(line)

        code = await self._run(bud, watch, job, groups, folder)
        if code != 0 and refused:
            raise BuildFailed(f"the registry refused a pull of this build: {refused[-1]}")
        if code != 0:
            raise BuildFailed(f"the build failed (buildah exited with {code}); see the build log")

    async def _push(self, job, emit, tmp, groups=(), prefix=(), folder=""):
        digest_file = os.path.join(tmp, "digest")
        emit(f"Pushing {job.image}")
        push = (
            list(prefix)
            + self._global_args(job)
            + ["push"]
            + self._auth_args(job)
            + ["--digestfile", digest_file, job.image, f"docker://{job.image}"]
        )
        code = await self._run(push, emit, job, groups, folder)
        if code != 0:
            raise BuildFailed(f"the push to the registry failed (buildah exited with {code}); see the build log")
        with open(digest_file) as f:
            return BuildOutcome(digest=f.read().strip())

    async def _run(self, argv, emit, job, groups=(), folder=""):
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            stdin=asyncio.subprocess.DEVNULL,
            start_new_session=True,
            # BUILDAH_ISOLATION would override --isolation: never inherit one from the environment
            env={k: v for k, v in os.environ.items() if k != "BUILDAH_ISOLATION"},
        )
        # every process group of the build, so recover() can stop what a crash left behind
        ref = "pid:" + ",".join(str(pid) for pid in [proc.pid, *groups])
        if folder:
            ref += f";dir:{folder}"  # the sandbox's own folder, for recover() to remove
        job.set_ref(ref)
        lines = LineSplitter(self.max_line)
        try:
            while chunk := await proc.stdout.read(1 << 16):
                for line in lines.feed(chunk):
                    emit(line)
            for line in lines.close():
                emit(line)
            return await proc.wait()
        except asyncio.CancelledError:
            await self._stop(proc)
            raise

    async def _stop(self, proc):
        if proc.returncode is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), self.stop_grace_seconds)
            except asyncio.TimeoutError:
                os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
        except ProcessLookupError:
            pass

    async def recover(self, job, record, emit):
        """A local build cannot be re-attached: stop what is left of it and say why it failed."""
        ref, _, folder = record.get("backend_ref", "").partition(";dir:")
        if is_sandbox_folder(folder):
            shutil.rmtree(folder, ignore_errors=True)
        if ref.startswith("pid:"):
            for pid in (int(p) for p in ref[4:].split(",") if p.isdigit()):
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        command = f.read()
                    if any(word in command for word in (b"buildah", b"slirp4netns", b"sleep\0infinity", b"netfwd")):
                        os.killpg(pid, signal.SIGKILL)
                        emit(f"Stopped what the build left running (process group {pid})")
                except (OSError, ProcessLookupError):
                    pass
        raise BuildFailed("interrupted: the image service restarted while this build was running; start it again")

    def step_of(self, line):
        match = STEP.match(line)
        return (int(match.group(1)), int(match.group(2))) if match else None
