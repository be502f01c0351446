"""Processes that run inside an image's root filesystem on the embedded default, with no container
engine: ``buildah from`` makes a working container of the image (pulled from the registry once,
with read-only credentials), ``buildah run --isolation chroot`` runs the process in its root
filesystem as the user's account, with the user's folders bind-mounted where pods have them
(``/mnt/<user>``, ``/archives/<user>``) and the host's network (the hub's proxy reaches the server on
loopback, as it reaches a local process).

What chroot isolation gives and what it does not: the process sees the image's files, Python and
packages, and only the folders mounted into it; it shares the machine's process list, network and
devices (so GPUs are there as on the host, chosen with ``CUDA_VISIBLE_DEVICES``). Users are kept
apart by their accounts, as for processes on the host.

The process's environment (the server's API token among it) goes through a file only the user
can read, never on a command line that ``ps`` shows every user.
"""

import asyncio
import glob
import os
import re
import shlex
import signal

from traitlets import Bool, Integer, List, Unicode
from traitlets.config import Configurable

from ..processgroup import signal_group
from .userenv import BASE_SITE_ENV

# environment of the machine's that means nothing inside an image
HOST_ONLY_ENV = (
    "PATH",
    "PYTHONPATH",
    "VIRTUAL_ENV",
    "CONDA_ROOT",
    "CONDA_DEFAULT_ENV",
    "JUPYTER_CONFIG_PATH",
    "JUPYTER_PATH",
    BASE_SITE_ENV,
    "SHELL",
)
# where the environment file is mounted inside the container
ENV_FILE = "/run/kubestudio-env"
# sources the environment file (values are shell-quoted), then becomes the process
ENTRY = ["/bin/sh", "-c", 'set -a; . "$0"; set +a; exec "$@"', ENV_FILE]


def buildah_command(buildah, storage_driver, storage_root="", run_root=""):
    """buildah with its storage options: the start of every buildah command of KubeStudio (the
    image builds' and the servers')."""
    args = [buildah, "--storage-driver", storage_driver]
    if storage_root:
        args += ["--root", storage_root]
    if run_root:
        args += ["--runroot", run_root]
    return args


class ImageRunError(Exception):
    """The image cannot be made ready or run; the message says why (buildah's own words).
    ``missing``: a command the image lacks."""

    def __init__(self, message, missing=None):
        super().__init__(message)
        self.missing = missing


class ImageRunner(Configurable):
    """Runs processes inside images with buildah's chroot isolation (the embedded default)."""

    buildah = Unicode("buildah", config=True, help="The buildah executable.")
    storage_root = Unicode(
        "",
        config=True,
        help="""Container storage of the images servers run (--root): pulled images and each
        server's working container. Defaults to <data_dir>/containers/storage (root's only).""",
    )
    run_root = Unicode("", config=True, help="buildah's run root (--runroot). Defaults to <data_dir>/containers/run.")
    storage_driver = Unicode(
        "overlay",
        config=True,
        help="""Storage driver: `overlay` makes a server's working container in milliseconds; `vfs`
        copies the whole image for each (seconds), for a kernel or filesystem without overlay.""",
    )
    auth_file = Unicode(
        "",
        config=True,
        help="""Docker config.json with credentials to pull images (the local registry's read-only
        account on the embedded default).""",
    )
    tls_verify = Bool(
        True, config=True, help="Verify the registry's TLS certificate (false for a plain-http registry)."
    )
    gpu_files = List(
        Unicode(),
        [
            "/usr/bin/nvidia-smi",
            "/usr/lib/x86_64-linux-gnu/libcuda.so*",
            "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so*",
            "/usr/lib/x86_64-linux-gnu/libnvidia-ptxjitcompiler.so*",
            "/usr/lib/aarch64-linux-gnu/libcuda.so*",
            "/usr/lib/aarch64-linux-gnu/libnvidia-ml.so*",
        ],
        config=True,
        help="""Host files (globs) mounted read-only at the same path into a process that was given
        GPUs: the NVIDIA driver's user-space libraries and nvidia-smi, which an image cannot carry
        (they must match the host's kernel driver). The devices themselves are the host's /dev.""",
    )
    pull_timeout = Integer(600, config=True, help="Seconds a pull of an image may take.")

    def global_args(self):
        return buildah_command(self.buildah, self.storage_driver, self.storage_root, self.run_root)

    async def _buildah(self, *args, timeout=60):
        return await self._run([*self.global_args(), *args], timeout)

    @staticmethod
    async def _run(argv, timeout=60):
        """(exit code, stdout, stderr) of ``argv``, killed with its group on a timeout or a cancel."""
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            signal_group(proc.pid, signal.SIGKILL)
            await proc.wait()
            raise
        return proc.returncode, out.decode(errors="replace").strip(), err.decode(errors="replace").strip()

    async def working_container(self, image, name):
        """A fresh working container ``name`` of ``image`` (pulled when this storage lacks it); one
        left by an earlier run of the same name is removed first."""
        await self.remove(name)
        args = ["from", "--pull=missing", f"--tls-verify={'true' if self.tls_verify else 'false'}", "--name", name]
        if self.auth_file:
            args += ["--authfile", self.auth_file]
        try:
            code, out, err = await self._buildah(*args, image, timeout=self.pull_timeout)
        except asyncio.TimeoutError:
            raise ImageRunError(f"image {image}: not pulled within {self.pull_timeout} s") from None
        if code != 0:
            raise ImageRunError(f"image {image}: {_last_words(err or out)}")
        return name

    async def remove(self, name):
        """Remove the working container ``name`` (its writable layer); nothing when there is none."""
        await self._buildah("rm", name)

    async def add_account(self, container, account, home, needs=()):
        """The account's name in the container's /etc/passwd and /etc/group (so `id`, `whoami` and a
        shell prompt name it). Written by a shell inside the root filesystem, never by the hub
        through a path of the image: an image's /etc/passwd may be a link out of it. ``needs``:
        commands the image must have on its PATH (ImageRunError names the first one missing)."""
        passwd = f"{account.name}:x:{account.uid}:{account.gid}::{home}:/bin/bash"
        group = f"{account.name}:x:{account.gid}:"
        script = (
            'grep -q "^$2:" /etc/passwd || echo "$0" >> /etc/passwd; '
            'grep -q "^$2:" /etc/group || echo "$1" >> /etc/group; shift 2; '
            'for c in "$@"; do command -v "$c" >/dev/null || { echo "MISSING $c"; exit 3; }; done'
        )
        code, out, err = await self._run(
            self.command(container, ["/bin/sh", "-c", script, passwd, group, account.name, *needs])
        )
        missing = re.search(r"^MISSING (\S+)$", out, re.M)
        if code == 3 and missing:
            raise ImageRunError(f"the image has no {missing.group(1)}", missing=missing.group(1))
        if code:
            raise ImageRunError(f"cannot run a shell in the image ({_last_words(err or out)})")

    def command(self, container, argv, account=None, mounts=(), workdir=None, env_file=None, gpus=False):
        """The command line that runs ``argv`` in ``container``: as ``account`` (uid:gid; root when
        None), with ``mounts`` ((host path, container path, read_only) triples), in ``workdir``, with
        the environment of ``env_file`` (written by :func:`write_env_file`)."""
        args = [*self.global_args(), "run", "--isolation", "chroot", "--network", "host", "--terminal=false"]
        if account is not None:
            args += ["--user", f"{account.uid}:{account.gid}"]
        all_mounts = list(mounts)
        if gpus:
            all_mounts += [(path, path, True) for pattern in self.gpu_files for path in sorted(glob.glob(pattern))]
        if env_file:
            all_mounts.append((env_file, ENV_FILE, True))
        for source, target, read_only in all_mounts:
            args += ["--volume", f"{source}:{target}:{'ro' if read_only else 'rw'}"]
        if workdir:
            args += ["--workingdir", workdir]
        args += [container, "--"]
        return args + (ENTRY if env_file else []) + list(argv)


def user_mounts(folders, mount):
    """The bind mounts of a user's process in an image: the workspace at /mnt/<mount>, the archives
    at /archives/<mount> (and at /mnt/archives, where the workspace's relative ``archives`` link
    lands), the home folder at /home/<mount>. ``folders`` is a UserFolders."""
    mounts = [
        (folders.workspace, f"/mnt/{mount}", False),
        (folders.archives, f"/archives/{mount}", False),
        (folders.home, f"/home/{mount}", False),
    ]
    if mount != "archives":
        mounts.append((folders.archives, "/mnt/archives", False))
    return mounts


def inside_env(env, mount, image):
    """``env`` (a process's environment on the machine) as the same process in ``image`` gets it:
    without what names the machine's own tools, with the user's folders as the image sees them."""
    inside = {k: v for k, v in env.items() if k not in HOST_ONLY_ENV}
    inside.update(
        {
            "HOME": f"/home/{mount}",
            "KUBESTUDIO_WORKSPACE": f"/mnt/{mount}",
            "KUBESTUDIO_ARCHIVES": f"/archives/{mount}",
            "KUBESTUDIO_IMAGE": image,
            "KUBESTUDIO_IMAGE_RUN": "1",
        }
    )
    return inside


def runner_env():
    """buildah's own environment: nothing of the process's (its token stays in the file)."""
    return {k: os.environ[k] for k in ("PATH", "LANG", "LC_ALL", "TMPDIR") if k in os.environ}


def write_env_file(path, env, account=None, extra=()):
    """``env`` as a file that ``sh`` sources (values quoted), then the ``extra`` lines as they are
    (e.g. a PATH built on the image's own); readable by ``account`` only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        for key, value in sorted(env.items()):
            if key.isidentifier():
                f.write(f"{key}={shlex.quote(str(value))}\n")
        for line in extra:
            f.write(line + "\n")
    if account is not None:
        os.chown(path, account.uid, account.gid)
    return path


def _last_words(text):
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "buildah failed without a message"
