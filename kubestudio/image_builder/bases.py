"""Base images made offline on the embedded default, so a first build needs no internet.

A machine without access to Docker Hub or quay.io can still reach Debian's apt mirror (or its
proxy), so a Python base is made from Debian's own packages: ``mmdebstrap`` writes a minimal
root filesystem into a tarball, and the service's own build backend turns it into an image
(``FROM scratch`` + ``ADD rootfs.tar /``) and pushes it to the registry as ``base/python:3.11``.
It runs in the background after the service starts (about a minute), never in the hub's start
path; the images page shows each base as *being prepared*, *ready* or *failed* with the reason.
An image already in the registry is not made again, and one made before on this machine is
copied from the cache (``imagecache``) instead of being made again.
"""

import asyncio
import collections
import contextlib
import hashlib
import json
import os
import re
import shlex
import shutil
import sys
import time
import uuid
from dataclasses import dataclass, field

from ..processgroup import signal_group
from ..registry import RegistryError, RegistryUnreachable
from ..serverimage import (
    DEPS_REPOSITORY,
    deps_dockerfile,
    deps_tag,
    kubestudio_source,
    server_dockerfile,
    server_requirements,
)
from .backends.base import BuildFailed, BuildJob
from .imagecache import ImageCache

PREPARING, READY, FAILED = "preparing", "ready", "failed"
# the embedded hub starts its registry beside the image service: how long a first look waits for it
REGISTRY_START_SECONDS = 30


@dataclass
class BaseImage:
    repository: str  # under the registry host, e.g. base/python
    tag: str
    suite: str  # Debian release of the root filesystem
    packages: list
    description: str = ""
    env: dict = field(default_factory=dict)
    base: str = ""  # a server image: the image (repository:tag, under the registry) it is made from
    server: bool = False  # KubeStudio's local single-user image (kubestudio.serverimage)
    python: str = ""  # a server image: the Python version of its base, which the wheels must suit
    status: str = PREPARING
    message: str = ""
    seconds: float | None = None

    def as_dict(self, registry_host):
        return {
            "image": f"{registry_host}/{self.repository}:{self.tag}",
            "description": self.description,
            "status": self.status,
            "message": self.message,
            "seconds": self.seconds,
        }


def base_from_config(entry):
    """A BaseImage from one ImageBuilder.base_images entry; ValueError names the field at fault."""
    if not isinstance(entry, dict):
        raise ValueError("ImageBuilder.base_images: each entry must be a mapping")
    image = entry.get("image")
    if not isinstance(image, str) or ":" not in image:
        raise ValueError(f"ImageBuilder.base_images.image: expected repository:tag, got {image!r}")
    repository, tag = image.rsplit(":", 1)
    if entry.get("server"):
        base = entry.get("from")
        if not isinstance(base, str) or ":" not in base:
            raise ValueError(
                f"ImageBuilder.base_images.from of {image}: a server image names the image it is made "
                f"from (repository:tag under the registry), got {base!r}"
            )
        python = entry.get("python")
        if not isinstance(python, str) or not re.fullmatch(r"3\.\d+(\.\d+)?", python):
            raise ValueError(
                f"ImageBuilder.base_images.python of {image}: the Python version of the base (e.g. "
                f"'3.11.2'), so the wheels suit it; got {python!r}"
            )
        return BaseImage(
            repository=repository,
            tag=tag,
            suite="",
            packages=[],
            base=base,
            server=True,
            python=python,
            description=str(entry.get("description", "")),
        )
    packages = entry.get("packages") or []
    if not isinstance(packages, list) or not all(isinstance(p, str) and p and not p.startswith("-") for p in packages):
        raise ValueError(f"ImageBuilder.base_images.packages of {image}: expected a list of Debian package names")
    return BaseImage(
        repository=repository,
        tag=tag,
        suite=str(entry.get("suite", "bookworm")),
        packages=packages,
        description=str(entry.get("description", "")),
        env=dict(entry.get("env") or {}),
    )


def rootfs_dockerfile(base):
    lines = ["FROM scratch", "ADD rootfs.tar /"]
    env = {"LANG": "C.UTF-8", "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", **base.env}
    lines += [f"ENV {key}={shlex.quote(str(value))}" for key, value in env.items()]
    lines.append('CMD ["/bin/bash"]')
    return "\n".join(lines) + "\n"


class BasePreparer:
    """Make the configured base images that the registry lacks, one at a time, in the background."""

    def __init__(
        self,
        bases,
        registry_host,
        registry,
        backend,
        work_dir,
        log,
        mmdebstrap="mmdebstrap",
        cache_dir=None,
        extra_ca_dir=None,
    ):
        self.bases = list(bases)
        self.registry_host = registry_host
        self.registry = registry
        self.backend = backend
        self.work_dir = work_dir
        self.log = log
        self.mmdebstrap = mmdebstrap
        self.cache_dir = cache_dir
        self.extra_ca_dir = extra_ca_dir
        self.images = ImageCache(os.path.join(cache_dir, "images"), registry) if cache_dir else None
        self.task = None

    def extra_cas(self):
        """The machine's own CA certificates (a company proxy's), which the base must trust too."""
        if not self.extra_ca_dir or not os.path.isdir(self.extra_ca_dir):
            return []
        return sorted(os.path.join(self.extra_ca_dir, n) for n in os.listdir(self.extra_ca_dir) if n.endswith(".crt"))

    def status(self):
        return [b.as_dict(self.registry_host) for b in self.bases]

    def start(self):
        if self.bases:
            self.task = asyncio.ensure_future(self._prepare_all())

    async def stop(self):
        if self.task:
            self.task.cancel()
            try:
                await self.task
            except (asyncio.CancelledError, Exception):
                pass

    async def wait_for(self, dockerfile, emit, poll=1.0):
        """Wait while a base image that ``dockerfile`` names is still being prepared (a user's first
        build on a new machine may start before it is); BuildFailed when it could not be."""
        for base in self.bases:
            reference = f"{self.registry_host}/{base.repository}:{base.tag}"
            if reference not in dockerfile:
                continue
            if base.status == PREPARING:
                emit(f"Waiting for the base image {reference}, which this service is making: {base.message}")
            while base.status == PREPARING:
                await asyncio.sleep(poll)
            if base.status == FAILED:
                raise BuildFailed(f"the base image {reference} could not be prepared: {base.message}")

    async def _in_registry(self, base, wait=REGISTRY_START_SECONDS):
        """Whether the registry has ``base``, asking again while nothing answers at its address (it
        may be starting beside this service) for up to ``wait`` seconds."""
        deadline = time.monotonic() + wait
        while True:
            try:
                return bool(await self.registry.exists(base.repository, base.tag))
            except RegistryUnreachable:
                if time.monotonic() >= deadline:
                    raise
            await asyncio.sleep(0.5)

    async def _prepare_all(self):
        for base in self.bases:
            try:
                if await self._in_registry(base):
                    base.status, base.message = READY, "in the registry"
                    continue
            except Exception as e:  # the registry may still be starting: try to make it anyway
                self.log.info("base image %s: registry check failed (%s); preparing it", base.repository, e)
            started = time.monotonic()
            if await self._restore(base):
                base.status, base.message = READY, "copied from this machine's cache of images made before"
                base.seconds = round(time.monotonic() - started, 1)
                self.log.info(
                    "base image %s:%s copied from the cache in %.1f s", base.repository, base.tag, base.seconds
                )
                continue
            base.status, base.message = (
                PREPARING,
                (
                    f"being prepared from {base.base}: JupyterLab, jupyterhub and KubeStudio"
                    if base.server
                    else f"being prepared from Debian {base.suite} packages"
                ),
            )
            self.log.info("base image %s/%s:%s: %s", self.registry_host, base.repository, base.tag, base.message)
            try:
                await self._prepare(base)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                base.status, base.message = FAILED, str(e) or type(e).__name__
                self.log.error("base image %s:%s failed: %s", base.repository, base.tag, base.message)
            else:
                base.status, base.message = READY, "prepared on this machine"
                base.seconds = round(time.monotonic() - started, 1)
                self.log.info("base image %s:%s ready in %.1f s", base.repository, base.tag, base.seconds)
                await self._save(base)

    def content_key(self, base):
        """What ``base`` is made from: the same key, the same image (cache entries are named by it)."""
        if base.server:  # the tag holds a hash of the pins and KubeStudio's files
            return ["server", base.base, base.python, base.tag]
        cas = []
        for path in self.extra_cas():
            with open(path, "rb") as f:
                cas.append(hashlib.sha256(f.read()).hexdigest())
        return ["rootfs", base.suite, sorted(base.packages), cas, rootfs_dockerfile(base)]

    async def _restore(self, base):
        """Push the cached copy of ``base`` into the registry; False when there is none or it fails
        (then it is made as if there were no cache)."""
        if self.images is None:
            return False
        try:
            key = self.content_key(base)
            if not self.images.has(base.repository, base.tag, key):
                return False
            return await self.images.restore(base.repository, base.tag, key)
        except (RegistryError, OSError, ValueError) as e:
            self.log.warning(
                "base image %s:%s: the cached copy could not be used (%s); making it", base.repository, base.tag, e
            )
            return False

    async def _save(self, base):
        """Keep a copy of the image just made for the next registry on this machine (best effort)."""
        if self.images is None:
            return
        started = time.monotonic()
        try:
            if await self.images.save(base.repository, base.tag, self.content_key(base)):
                self.log.info(
                    "base image %s:%s kept in %s in %.1f s",
                    base.repository,
                    base.tag,
                    self.images.folder,
                    time.monotonic() - started,
                )
        except (RegistryError, OSError, ValueError) as e:
            self.log.warning("base image %s:%s could not be kept in the cache: %s", base.repository, base.tag, e)

    async def _debootstrap(self, base, folder):
        # Debian's python marks itself externally managed (PEP 668); in an image the user owns,
        # pip must install into it
        argv = [
            self.mmdebstrap,
            "--variant=apt",
            "--include=" + ",".join(base.packages),
            "--dpkgopt=path-exclude=/usr/share/doc/*",
            "--dpkgopt=path-exclude=/usr/share/man/*",
            "--dpkgopt=path-exclude=/usr/share/locale/*",
            '--customize-hook=rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED',
        ]
        cas = self.extra_cas()
        if cas:
            # pip and apt in the image reach the internet through the same proxy as this machine
            copies = " && ".join(f'cp {shlex.quote(ca)} "$1"/usr/local/share/ca-certificates/' for ca in cas)
            argv.append(
                f'--customize-hook=mkdir -p "$1"/usr/local/share/ca-certificates && {copies} '
                '&& chroot "$1" update-ca-certificates'
            )
        argv += [base.suite, os.path.join(folder, "rootfs.tar")]
        # a group of its own: apt, dpkg and tar below it hold the output pipe, and all must stop
        await self._run(argv, "mmdebstrap")

    def cached_rootfs(self, base):
        """Where the root filesystem of ``base`` is kept for the next hub on this machine."""
        if not self.cache_dir:
            return None
        _, suite, packages, cas, _ = self.content_key(base)
        key = hashlib.sha256(json.dumps([suite, packages, cas]).encode()).hexdigest()[:16]
        return os.path.join(self.cache_dir, f"rootfs-{base.suite}-{key}.tar")

    async def _run(self, argv, what):
        """Run a preparation step in a group of its own; BuildFailed with its last lines."""
        tail = []
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            stdin=asyncio.subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            async for raw in proc.stdout:
                tail = (tail + [raw.decode(errors="replace").rstrip()])[-5:]
            code = await proc.wait()
        except asyncio.CancelledError:
            signal_group(proc.pid)
            await proc.wait()
            raise
        if code != 0:
            raise BuildFailed(f"{what} exited with {code}: {' | '.join(tail)}")

    async def _prepare_server(self, base):
        """KubeStudio's local single-user image, in two steps (``kubestudio.serverimage``): the
        server's packages on the base (made once per set of versions: in the registry or the cache
        already, it is not made again), then KubeStudio's own wheel on that. The hub's pip fetches
        the wheels (its index, proxy and cache), and the builds install them with no network."""
        source = kubestudio_source()
        if source is None:
            raise BuildFailed(
                "KubeStudio was not installed from its source folder: the local single-user image "
                "needs it (run the hub from a checkout, or set ImageBuilder.base_images)"
            )
        deps = BaseImage(
            repository=DEPS_REPOSITORY,
            tag=deps_tag(base.python),
            suite="",
            packages=[],
            base=base.base,
            server=True,
            python=base.python,
        )
        pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
        if not await self._present(deps):
            started = time.monotonic()
            with self._context() as (folder, wheels):
                await self._run(
                    pip
                    + [
                        "download",
                        "--only-binary=:all:",
                        "--python-version",
                        base.python,
                        "--dest",
                        wheels,
                        *server_requirements(),
                    ],
                    "pip download",
                )
                await self._build(
                    deps, folder, deps_dockerfile(f"{self.registry_host}/{base.base}"), {"io.kubestudio.base": "true"}
                )
            self.log.info("base image %s:%s ready in %.1f s", deps.repository, deps.tag, time.monotonic() - started)
            await self._save(deps)
        with self._context() as (folder, wheels):
            await self._run(pip + ["wheel", "--no-deps", "--wheel-dir", wheels, source], "pip wheel (KubeStudio)")
            await self._build(
                base,
                folder,
                server_dockerfile(f"{self.registry_host}/{deps.repository}:{deps.tag}"),
                {"io.kubestudio.base": "true", "io.kubestudio.server": "true"},
            )

    async def _present(self, base):
        """Whether ``base`` is in the registry, or was copied there from the cache just now."""
        try:
            if await self._in_registry(base, wait=0):
                return True
        except RegistryError as e:
            self.log.info("base image %s: registry check failed (%s)", base.repository, e)
        return await self._restore(base)

    @contextlib.contextmanager
    def _context(self):
        """A build context folder of the work dir, with a ``wheels`` folder: (folder, wheels); removed after."""
        folder = os.path.join(self.work_dir, f"base-{uuid.uuid4().hex[:12]}")
        wheels = os.path.join(folder, "wheels")
        os.makedirs(wheels, mode=0o700)
        try:
            yield folder, wheels
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    async def _build(self, base, folder, dockerfile, labels):
        """Build ``base`` from ``dockerfile`` with the context ``folder`` and push it; a failure says
        the build's last lines (there is no build page)."""
        with open(os.path.join(folder, "Dockerfile"), "w", encoding="utf-8") as f:
            f.write(dockerfile)
        job = BuildJob(
            id=f"base{uuid.uuid4().hex[:12]}",
            owner="kubestudio",
            owner_slug="kubestudio",
            image=f"{self.registry_host}/{base.repository}:{base.tag}",
            dockerfile="Dockerfile",
            context_dir=folder,
            dockerfile_text=dockerfile,
            generated=True,
            labels=labels,
            service_build=True,
        )
        tail = collections.deque(maxlen=6)
        try:
            await self.backend.build(job, tail.append)
        except BuildFailed as e:
            raise BuildFailed(f"{e}: {' | '.join(str(line).strip() for line in tail)}") from None

    async def _prepare(self, base):
        if base.server:
            return await self._prepare_server(base)
        cached = self.cached_rootfs(base)
        have_cached = bool(cached) and os.path.exists(cached)
        if not have_cached and not shutil.which(self.mmdebstrap):
            raise BuildFailed(
                f"{self.mmdebstrap} is not installed (apt-get install mmdebstrap); "
                "builds need a base image from a registry instead"
            )
        folder = os.path.join(self.work_dir, f"base-{uuid.uuid4().hex[:12]}")
        os.makedirs(folder, mode=0o700)
        try:
            if have_cached:
                _place(cached, os.path.join(folder, "rootfs.tar"))
            else:
                await self._debootstrap(base, folder)
                if cached:
                    _keep(os.path.join(folder, "rootfs.tar"), cached)
            await self._build(base, folder, rootfs_dockerfile(base), {"io.kubestudio.base": "true"})
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def _place(cached, target):
    try:
        os.link(cached, target)  # same filesystem: no copy
    except OSError:
        shutil.copyfile(cached, target)


def _keep(path, cached):
    """Copy ``path`` to ``cached`` atomically (best effort: a cache that cannot be written is skipped)."""
    try:
        os.makedirs(os.path.dirname(cached), exist_ok=True)
        tmp = f"{cached}.{uuid.uuid4().hex[:8]}.tmp"
        shutil.copyfile(path, tmp)
        os.replace(tmp, cached)
    except OSError:
        pass


def default_base(bases, registry_host):
    """The default base of builds: the local single-user image where the service makes one (an
    image built on it starts a server as it is), else the first configured base image; or None."""
    for base in sorted(bases, key=lambda b: not b.server):
        return f"{registry_host}/{base.repository}:{base.tag}"
    return None


__all__ = ["BasePreparer", "BaseImage", "base_from_config", "default_base"]
