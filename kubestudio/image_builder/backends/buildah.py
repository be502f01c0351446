"""buildah backend (the embedded default): ``buildah bud`` then ``buildah push``.

Runs with chroot isolation and vfs storage by default, which need no daemon and no privileges
beyond the service's own; layers stay in the storage root between builds, so a rebuild after a
change in the last step reuses every earlier layer.
"""

import asyncio
import os
import re
import signal
import tempfile

from traitlets import Bool, Integer, List, Unicode

from .base import BuildBackend, BuildFailed, BuildOutcome

STEP = re.compile(r"^STEP (\d+)/(\d+):")


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
    storage_driver = Unicode(
        "vfs", config=True, help="Storage driver: `vfs` (works everywhere) or `overlay` (faster, needs kernel support)."
    )
    isolation = Unicode("chroot", config=True, help="RUN isolation: `chroot` (no daemon, no user namespaces), `oci` or `rootless`.")
    auth_file = Unicode(
        "",
        config=True,
        help="Docker config.json with registry credentials for pulls and pushes (set from ImageBuilder.registry_auth_file).",
    )
    tls_verify = Bool(True, config=True, help="Verify the registry's TLS certificate (false for a plain-http registry).")
    layers = Bool(True, config=True, help="Cache intermediate layers (`--layers`), so unchanged steps are not run again.")
    extra_args = List(Unicode(), config=True, help="More arguments for `buildah bud`, e.g. ['--jobs', '2'].")
    stop_grace_seconds = Integer(5, config=True, help="Seconds between SIGTERM and SIGKILL when a build is cancelled.")

    def _global_args(self):
        args = [self.buildah, "--storage-driver", self.storage_driver]
        if self.storage_root:
            args += ["--root", self.storage_root]
        if self.run_root:
            args += ["--runroot", self.run_root]
        return args

    def _auth_args(self):
        args = [f"--tls-verify={'true' if self.tls_verify else 'false'}"]
        if self.auth_file:
            args += ["--authfile", self.auth_file]
        return args

    async def build(self, job, emit):
        bud = self._global_args() + ["bud", "--isolation", self.isolation, "--layers=" + str(self.layers).lower()]
        bud += self._auth_args() + ["-f", os.path.join(job.context_dir, job.dockerfile), "-t", job.image]
        for key, value in sorted(job.labels.items()):
            bud += ["--label", f"{key}={value}"]
        bud += list(self.extra_args) + [job.context_dir]
        code = await self._run(bud, emit, job)
        if code != 0:
            raise BuildFailed(f"the build failed (buildah exited with {code}); see the build log")
        with tempfile.TemporaryDirectory(prefix="kubestudio-push-") as tmp:
            digest_file = os.path.join(tmp, "digest")
            emit(f"Pushing {job.image}")
            push = self._global_args() + ["push"] + self._auth_args() + ["--digestfile", digest_file,
                                                                        job.image, f"docker://{job.image}"]
            code = await self._run(push, emit, job)
            if code != 0:
                raise BuildFailed(f"the push to the registry failed (buildah exited with {code}); see the build log")
            with open(digest_file) as f:
                digest = f.read().strip()
        return BuildOutcome(digest=digest)

    async def _run(self, argv, emit, job):
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            stdin=asyncio.subprocess.DEVNULL, start_new_session=True,
            env={**os.environ, "BUILDAH_ISOLATION": self.isolation},
        )
        job.set_ref(f"pid:{proc.pid}")
        try:
            async for raw in proc.stdout:
                emit(raw.decode(errors="replace").rstrip("\r\n"))
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
        ref = record.get("backend_ref", "")
        if ref.startswith("pid:"):
            pid = int(ref[4:])
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    ours = b"buildah" in f.read()
                if ours:
                    os.killpg(pid, signal.SIGKILL)
                    emit(f"Stopped the builder left running (process group {pid})")
            except (OSError, ProcessLookupError):
                pass
        raise BuildFailed("interrupted: the image service restarted while this build was running; start it again")

    def step_of(self, line):
        match = STEP.match(line)
        return (int(match.group(1)), int(match.group(2))) if match else None
