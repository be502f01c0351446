"""LocalWorkspaceSpawner: the embedded default, with no Kubernetes.

Each server is a local ``jupyterhub-singleuser`` process rooted at the user's workspace folder
(``<data_dir>/users/<slug>/mnt``, playing ``/mnt/<user>``) with the archives folder
(``.../archives``, playing ``/archives/<user>``) linked inside it. On a GPU workstation each
server gets the GPUs its profile asks for through ``CUDA_VISIBLE_DEVICES``; no GPU is given to
two running servers, and allocations survive a hub restart (they are part of the spawner state).

When the hub runs as root, each user's server runs under the user's own OS account
(:mod:`kubestudio.accounts`), which owns the user's folders (mode 0700). A hub that is not root
runs every server as its own account: users are then kept apart by the hub's login only, and the
spawn page says so.
"""

import asyncio
import hashlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import time

from jupyterhub.spawner import LocalProcessSpawner
from tornado.httpclient import AsyncHTTPClient, HTTPClientError
from traitlets import Bool, Integer, List, Unicode, default

from ..accounts import AccountError, UserAccounts
from ..cgroups import Containment
from ..fdpath import open_child
from ..processgroup import descendants, kill_known, process_uid, signal_group
from .base import SpawnFailed, WorkspaceSpawnerMixin, refusal
from .gpus import SERVER, Allocation, GpuLedger, detect_gpus, gpus_from_config, ledger_path
from .imagerun import ImageRunError, ImageRunner, inside_env, runner_env, user_mounts, write_env_file
from .request import HOST_IMAGE, SpawnRefused
from .storage import ensure_user_folders, mount_name, user_folders, user_slug
from .userenv import BASE_SITE_ENV, base_site_packages, ensure_user_env

# the servers' private TMPDIRs (root's, short: Unix sockets live there)
RUNTIME_ROOT = "/run/kubestudio"


def prune_private_tmps(min_age=60.0):
    """Remove the private TMPDIRs whose owner's account is gone (a server its hub never stopped,
    the accounts removed since): nobody can use them any more."""
    try:
        names = os.listdir(RUNTIME_ROOT)
    except OSError:
        return
    for name in names:
        path = os.path.join(RUNTIME_ROOT, name)
        try:
            info = os.lstat(path)
            pwd.getpwuid(info.st_uid)
            continue  # its owner still exists
        except KeyError:
            if time.time() - info.st_mtime < min_age:
                continue
        except OSError:
            continue
        shutil.rmtree(path, ignore_errors=True)


# The directory of the hub's own Python (its venv's bin): servers run jupyterhub-singleuser and the
# `kubestudio` CLI from there whatever PATH the hub was started with.
HUB_BIN = os.path.dirname(sys.executable)

# JupyterLab terminals are login shells, and a login shell's /etc/profile resets PATH: run the
# login files first, then put the server's own tools back in front and go on as an interactive
# shell (which reads ~/.bashrc), so `python`, `pip` and `kubestudio` are the server's.
LOGIN_SHELL = ["/bin/bash", "-l", "-c", 'export PATH="$KUBESTUDIO_SERVER_PATH${PATH:+:$PATH}"; exec /bin/bash -i']


def singleuser_command():
    """jupyterhub-singleuser of the hub's own environment, else the one on PATH."""
    beside = os.path.join(HUB_BIN, "jupyterhub-singleuser")
    return [beside] if os.access(beside, os.X_OK) else ["jupyterhub-singleuser"]


# what a server in an image runs (the image's own jupyterhub-singleuser, on its PATH)
IMAGE_SINGLEUSER = ["jupyterhub-singleuser"]


class LocalWorkspaceSpawner(WorkspaceSpawnerMixin, LocalProcessSpawner):
    """Spawn KubeStudio workspaces as local processes (the embedded default)."""

    data_dir = Unicode(
        config=True,
        help="""Folder holding every user's files: <data_dir>/users/<user slug>/{mnt,archives,home}.
        Defaults to ./data under the hub's working directory.""",
    )

    @default("data_dir")
    def _default_data_dir(self):
        return os.path.join(os.getcwd(), "data")

    gpus = List(
        None,
        allow_none=True,
        config=True,
        help="""GPUs of this machine, instead of asking nvidia-smi: a list of ids as they go into
        CUDA_VISIBLE_DEVICES, optionally with a model name used to match a profile's GPU type,
        e.g. ["0:A100", "1:A100"] or [{"id": "0", "name": "NVIDIA A100"}]. None (the default)
        runs `gpu_detect_command`; [] means this machine has no GPUs to hand out.""",
    )

    gpu_detect_command = List(
        ["nvidia-smi", "-L"],
        config=True,
        help="Command that lists the GPUs when `gpus` is None (output of `nvidia-smi -L`).",
    )

    tool_dirs = List(
        Unicode(),
        config=True,
        help="""Folders searched first for the servers' tools (code-server) and put in front of the
        servers' PATH (KubeStudio.tool_dirs sets it).""",
    )

    vscode_executables = List(
        ["code-server", "openvscode-server"],
        config=True,
        help="""VS Code servers jupyter-vscode-proxy can run, in order of preference. VS Code
        profiles are shown disabled when none is found (in `tool_dirs`, then on the hub's PATH).""",
    )

    @default("cmd")
    def _default_cmd(self):
        return singleuser_command()

    @default("popen_kwargs")
    def _default_popen_kwargs(self):
        # a server never reads the hub's terminal (it would answer Jupyter's "Shut down?" prompt)
        return {"stdin": subprocess.DEVNULL}

    server_image = Unicode(
        "",
        config=True,
        help="""An image holding what local servers really run (the hub's Python), given to servers as
        KUBESTUDIO_IMAGE: the base their "running server" image builds add packages to.
        configure() sets the embedded default's own base image (<registry>/base/python:3.11).""",
    )

    start_timeout = Integer(
        120,
        config=True,
        help="Seconds to wait for a local server to answer before giving up.",
    )

    local_image = Unicode(
        "",
        config=True,
        help="""The image local servers run unless their profile says `image: host`: KubeStudio's local
        single-user image (the offline Debian base with JupyterLab, jupyterhub and KubeStudio's
        server extension), which configure() sets when the hub runs as root and its image service
        makes that image. A server runs inside the image's root filesystem (buildah, chroot
        isolation; see ImageRunner) with the user's folders at /mnt/<user> and /archives/<user>.
        Empty: every server runs on the hub's own Python.""",
    )

    local_registry = Unicode(
        "",
        config=True,
        help="""Host[:port] of the hub's own registry. A profile image or a user's built image from it
        runs as it is; an image from elsewhere (e.g. quay.io, for Kubernetes) runs as `local_image`
        unless `run_remote_images` is set.""",
    )

    run_remote_images = Bool(
        False,
        config=True,
        help="""Pull a profile's image from its own registry and run it (the machine must reach that
        registry, and the image must have jupyterhub-singleuser). False: such profiles run
        `local_image` here, and their image on Kubernetes.""",
    )

    image_wait_timeout = Integer(
        900,
        config=True,
        help="""Seconds a start waits for `local_image` while the image service is still making it (a
        few minutes on a new machine).""",
    )

    # ------------------------------------------------------------------ shared state

    @property
    def accounts(self):
        return UserAccounts(parent=self)

    runs_host_image = True

    @property
    def image_runner(self):
        return ImageRunner(parent=self)

    # one ledger per data dir in this hub process, kept on the class as kubespawner keeps its
    # reflectors: every spawner of the hub shares it (and, through its file, the jobs service)
    _ledgers = {}

    async def ensure_ledger(self):
        """The GPU ledger, made on first use with the GPUs detected off the event loop (`nvidia-smi
        -L` may take seconds); the hub's async paths await this before they use :attr:`ledger`."""
        key = os.path.abspath(self.data_dir)
        if key not in self._ledgers:
            machine_gpus = await asyncio.to_thread(self._machine_gpus)
            if key not in self._ledgers:  # another spawner's detection may have finished first
                self._make_ledger(key, machine_gpus)
        return self._ledgers[key]

    async def prepare_checks(self):
        await self.ensure_ledger()

    def _machine_gpus(self):
        return detect_gpus(self.gpu_detect_command) if self.gpus is None else gpus_from_config(self.gpus)

    @property
    def ledger(self):
        """The GPU ledger; synchronous callers (JupyterHub's load_state, the form's checks) find
        it made by :meth:`ensure_ledger`, else it is made here."""
        key = os.path.abspath(self.data_dir)
        if key not in self._ledgers:
            self._make_ledger(key, self._machine_gpus())
        return self._ledgers[key]

    def _make_ledger(self, key, machine_gpus):
        if machine_gpus:
            self.log.info("GPU workstation mode: %s", ", ".join(f"{g.id} ({g.name or 'GPU'})" for g in machine_gpus))
        ledger = GpuLedger(machine_gpus, path=ledger_path(key))
        # servers that ended while the hub was down let their GPUs go; load_state restores the ones
        # still running, the jobs service its jobs
        ledger.forget(SERVER)
        self._ledgers[key] = ledger

    @property
    def folders(self):
        return user_folders(self.data_dir, self.user.name)

    def vscode_executable(self):
        """The name of the VS Code server to run (as jupyter-vscode-proxy takes it: found on the
        server's PATH, which starts with `tool_dirs`), or None when none is installed."""
        path = os.pathsep.join([*self.tool_dirs, os.environ.get("PATH", os.defpath)])
        for name in self.vscode_executables:
            if shutil.which(name, path=path):
                return name
        return None

    def unavailable(self):
        """(profile reasons, IDE reasons) for what this machine cannot start."""
        ide_reasons = {}
        if not self.vscode_executable():
            names = " or ".join(self.vscode_executables)
            ide_reasons["vscode"] = f"{names} is not installed on this machine"
        profile_reasons = {}
        for profile in self.catalog.profiles:
            missing = self.ledger.missing_reason(profile.gpu_type) if min(profile.gpu_counts) else None
            if missing:
                profile_reasons[profile.slug] = missing
        return profile_reasons, ide_reasons

    def runs_here(self):
        version = ".".join(str(n) for n in sys.version_info[:2])
        if self.local_image:
            text = (
                f"On this machine servers run in KubeStudio's single-user image ({self.local_image}: "
                f"Debian 12, Python 3.11, JupyterLab), with your files at /mnt and /archives; a profile's "
                f"image from another registry applies on Kubernetes. Your own built images run as they are. "
                f"VS Code, and images named host, run on the hub's own Python {version}."
            )
        else:
            text = (
                f"On this machine every server runs the hub's own Python {version} environment, not the "
                f"image; the image applies when the hub runs on Kubernetes."
            )
        try:
            per_user = self.accounts.enabled
        except AccountError:
            per_user = True  # start() says why it cannot
        if not per_user:
            text += (
                " All servers run as one OS account (the hub's): any user of this hub can read the "
                "others' files from a terminal. Run the hub as root to give every user an account of "
                "their own."
            )
        try:
            contained = Containment(config=self.config).kind()
        except ValueError:
            contained = None
        if contained is None:
            text += (
                " Jobs, servings and boards here have no cgroups: their memory is sampled, a stop kills "
                "their process group (a process that left it with setsid outlives its job), and the "
                "number of their processes is not limited."
            )
        return text

    def check_capacity(self, request):
        self.ledger.reserve(
            self.user.name, self.name, request.project, request.gpus, request.profile.gpu_type, dry_run=True
        )

    # ------------------------------------------------------------------ lifecycle

    _allocation = None
    _account = None
    _configured_popen_kwargs = None
    _configured_cmd = None
    _env_bin = None
    _request = None
    _events = ()
    _image = None  # the image the server runs in; None: the hub's own Python
    _container = None  # its working container
    _tmp = None  # the private TMPDIR of a server on the hub's Python

    def _progress(self, percent, message):
        self._events.append({"progress": percent, "message": message})

    @default("apply_user_options")
    def _default_apply_user_options(self):
        return LocalWorkspaceSpawner._check_and_reserve

    async def _check_and_reserve(self, user_options):
        """Check the request and reserve quota and GPUs (JupyterHub's apply_user_options).

        Runs before start, also for API spawns that never saw the form; a refusal becomes an
        HTTP error with the message naming the field at fault. JupyterHub stops (and so
        releases) the server if anything later fails. The ledger's file lock (shared with the
        jobs service) is taken off the event loop.
        """
        self._events = []
        ledger = await self.ensure_ledger()
        try:
            request = self.resolve(user_options)
            self._progress(10, f"Checking quotas of project {request.project.name}")
            allocation = await asyncio.to_thread(
                ledger.reserve, self.user.name, self.name, request.project, request.gpus, request.profile.gpu_type
            )
        except SpawnRefused as e:
            raise refusal(e) from None
        self._request = request
        self._allocation = allocation

    def image_here(self, image):
        """What a server of the profile's ``image`` runs on this machine (the spawn form's label);
        None when it runs that image itself."""
        version = ".".join(str(n) for n in sys.version_info[:2])
        if image == HOST_IMAGE:
            return None
        if not self.local_image:
            return f"the hub's Python {version}"
        if self.run_remote_images or (self.local_registry and image.startswith(self.local_registry + "/")):
            return None
        return "KubeStudio's single-user image (Python 3.11, JupyterLab)"

    def image_to_run(self, request):
        """The image the server of ``request`` runs in, or None for the hub's own Python."""
        if not self.local_image or request.ide == "vscode":  # code-server is the machine's, not the image's
            return None
        choice = request.image
        if choice is None:
            return self.local_image
        if choice.image == HOST_IMAGE:
            return None
        if self.run_remote_images or (self.local_registry and choice.image.startswith(self.local_registry + "/")):
            return choice.image
        return self.local_image

    async def start(self):
        if self._allocation is None:
            # JupyterHub < 5.3 has no apply_user_options hook
            await self._check_and_reserve(self.user_options)
        request, allocation = self._request, self._allocation
        profile = request.profile
        folders = self.folders
        self._progress(30, "Preparing your workspace")
        ensure_user_folders(folders)
        try:
            self._account = await self.accounts.account_owning(self.user.name, folders)
        except AccountError as e:
            raise SpawnFailed(str(e)) from None
        self._image = self.image_to_run(request) if self._account else None
        if self._configured_popen_kwargs is None:
            self._configured_popen_kwargs = dict(self.popen_kwargs)
            self._configured_cmd = list(self.cmd)
        self.mem_limit = profile.mem_limit
        self.mem_guarantee = profile.mem_guarantee
        self.cpu_limit = profile.cpu_limit
        self.cpu_guarantee = profile.cpu_guarantee
        self.default_url = self.vscode_url if request.ide == "vscode" else self.jupyterlab_url
        try:
            return await self._start(request, allocation, profile, folders)
        except BaseException:
            # JupyterHub calls stop() after a failed start only while a process runs: a working
            # container made before the failure is removed here, or it outlives the hub
            if self._container and (self.proc is None or self.proc.poll() is not None):
                await self.image_runner.remove(self._container)
                self._container = None
            raise

    async def _start(self, request, allocation, profile, folders):
        if self._image:
            await self._prepare_image(allocation)
        else:
            try:
                self._env_bin = await asyncio.to_thread(
                    ensure_user_env, folders.home, self._account, code_server_defaults=request.ide == "vscode"
                )
            except OSError as e:
                raise SpawnFailed(str(e)) from None
            self._tmp = await asyncio.to_thread(self._make_private_tmp)
            self.notebook_dir = folders.workspace
            self.cmd = list(self._configured_cmd)
            if self._configured_cmd == singleuser_command():
                # the hub's jupyterhub-singleuser, run by the user's Python: kernels and pip are theirs
                self.cmd = [os.path.join(self._env_bin, "python"), "-m", "jupyterhub.singleuser"]
            self.popen_kwargs = {
                **self._configured_popen_kwargs,
                **(self._account.popen_kwargs() if self._account else {}),
            }
        gpus = f" with GPU {', '.join(allocation.gpus)}" if allocation.gpus else ""
        ide = "VS Code" if request.ide == "vscode" else "JupyterLab"
        where = f" in {self._image}" if self._image else ""
        self._progress(50, f"Starting {ide} ({profile.display_name}){gpus}{where}")
        try:
            ip, port = await super().start()
        except FileNotFoundError as e:
            raise SpawnFailed(
                f"{ide} could not start: {e.filename or self.cmd[0]} was not found on this machine "
                f"(install KubeStudio with scripts/install.sh, or set LocalWorkspaceSpawner.cmd)"
            ) from None
        await self._wait_until_answering(ip, port, ide)
        return ip, port

    # ------------------------------------------------------------------ servers in images

    def _container_name(self):
        return f"ks-{user_slug(self.user.name)}-{self.name or 'server'}"

    def _private_tmp(self):
        # short and root's: a Unix socket's path must fit in 108 bytes (jupyter-server-proxy puts
        # code-server's in TMPDIR), which a folder under data_dir may not
        key = hashlib.sha256(f"{os.path.abspath(self.data_dir)}\0{self._container_name()}".encode()).hexdigest()
        return os.path.join(RUNTIME_ROOT, key[:16])

    def _make_private_tmp(self):
        """The server's own TMPDIR (/run/kubestudio/<key>), 0700 and the user's, gone when the server
        stops: as a pod's /tmp is its own. A shared /tmp shows every account the names of the others'
        files, and keeps whatever a server leaves there (jupyter-server-proxy's socket folders) for
        good. None (the machine's /tmp) for a hub that is not root: /run is root's."""
        if os.geteuid() != 0:
            return None
        os.makedirs(RUNTIME_ROOT, exist_ok=True)
        prune_private_tmps()
        parent = os.open(RUNTIME_ROOT, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            info = os.fstat(parent)
            if info.st_uid != 0:
                self.log.warning("%s is not root's: servers use the machine's /tmp", RUNTIME_ROOT)
                return None
            os.fchmod(parent, 0o711)  # each user passes through to their own folder
            path = self._private_tmp()
            fd = open_child(parent, os.path.basename(path), 0o700)  # /run/kubestudio is root's: no swap
        finally:
            os.close(parent)
        try:
            if self._account is not None:
                os.fchown(fd, self._account.uid, self._account.gid)
            os.fchmod(fd, 0o700)
        finally:
            os.close(fd)
        return path

    def _remove_private_tmp(self):
        # rmtree works by descriptor and never follows a link the user left inside
        shutil.rmtree(self._private_tmp(), ignore_errors=True)

    def _env_file(self):
        folder = os.path.join(self.data_dir, "containers", "env")
        os.makedirs(folder, mode=0o700, exist_ok=True)
        return os.path.join(folder, f"{self._container_name()}.env")

    async def _prepare_image(self, allocation):
        """A working container of the server's image (pulled on first use; the local image waited
        for while the image service makes it), and the command that runs the server in it."""
        image, runner = self._image, self.image_runner
        name = self._container_name()
        waiting = image == self.local_image
        # JupyterHub gives up on the start after start_timeout: say why before that
        deadline = time.monotonic() + (min(self.image_wait_timeout, self.start_timeout - 15) if waiting else 0)
        self._progress(40, f"Preparing image {image}")
        while True:
            try:
                self._container = await runner.working_container(image, name)
                break
            except ImageRunError as e:
                missing = "manifest unknown" in str(e) or "not found" in str(e)
                if waiting and missing and time.monotonic() >= deadline:
                    raise SpawnFailed(
                        f"image: KubeStudio's single-user image {image} is not ready: the image service "
                        "is still making it, or could not (the images page says which)"
                    ) from None
                if not (waiting and missing):
                    raise SpawnFailed(f"image: {e}") from None
                self._progress(
                    40,
                    f"Waiting for KubeStudio's single-user image: the image service is still making "
                    f"it ({image}; a few minutes on a new machine)",
                )
                await asyncio.sleep(3)
        folders, mount = self.folders, mount_name(self.user.name)
        account = self._account
        try:
            await runner.add_account(self._container, account, f"/home/{mount}", needs=IMAGE_SINGLEUSER[:1])
        except ImageRunError as e:
            if e.missing:  # an image built on a plain Python base: it has no Jupyter server to start
                raise SpawnFailed(
                    f"image {image} cannot start a server: it has no {e.missing}. Build it FROM "
                    f"KubeStudio's single-user image ({self.local_image or 'kubestudio/singleuser'}, "
                    "the images page's default base), or add jupyterhub and jupyterlab to it"
                ) from None
            raise SpawnFailed(f"image {image}: {e}") from None
        self.notebook_dir = f"/mnt/{mount}"
        self.cmd = runner.command(
            self._container,
            IMAGE_SINGLEUSER,
            account,
            user_mounts(folders, mount),
            workdir=f"/mnt/{mount}",
            env_file=self._env_file(),
            gpus=bool(allocation.gpus),
        )
        # buildah starts as root and runs the server as the account
        self.popen_kwargs = dict(self._configured_popen_kwargs)

    def _image_env(self, env):
        """The server's environment inside the image: the user's paths as pods have them."""
        mount = mount_name(self.user.name)
        inside = inside_env(env, mount, self._image)
        # a user's `pip install` goes to ~/.local (the image's site-packages are root's)
        inside["KUBESTUDIO_SERVER_PATH"] = f"/home/{mount}/.local/bin"
        write_env_file(self._env_file(), inside, self._account, extra=['PATH="$KUBESTUDIO_SERVER_PATH:$PATH"'])
        return runner_env()

    async def _stop_in_image(self):
        """Ask the server inside to stop (buildah kills its process at once when signalled itself)
        and wait for it; stop() then removes the working container."""
        if self.pid and await self.poll() is None and self._account is not None:
            inside = {
                pid: started for pid, started in descendants(self.pid).items() if process_uid(pid) == self._account.uid
            }
            kill_known(inside, signal.SIGTERM)
            for _ in range(50):
                if await self.poll() is not None:
                    break
                await asyncio.sleep(0.1)

    async def _wait_until_answering(self, ip, port, ide):
        """Poll the new server every 50 ms until it answers, or fail at once if it exits.

        JupyterHub's own readiness check backs off exponentially (0.2 s, 0.4 s, ... up to 5 s),
        which adds up to seconds to every local start; polling our own child process is cheap.
        A server that dies while starting is reported now instead of after http_timeout.
        """
        url = f"http://{ip}:{port}{self.server.base_url if self.server else '/'}api"
        client = AsyncHTTPClient()
        deadline = time.monotonic() + self.http_timeout
        while time.monotonic() < deadline:
            code = self.proc.poll() if self.proc is not None else None
            if code is not None:
                raise SpawnFailed(f"{ide} exited with code {code} while starting; the hub log shows its output")
            try:
                await client.fetch(url, request_timeout=2, follow_redirects=False, raise_error=False)
                return
            except (OSError, HTTPClientError):
                pass  # not listening yet, or too slow to answer
            await asyncio.sleep(0.05)
        # let JupyterHub's own check report the timeout

    async def stop(self, now=False):
        """Stop the server, then whatever it started (code-server, its extension host, kernels):
        the server leads a process group of its own, and nothing of it outlives it."""
        # only a server that is running now: an old PID may belong to someone else by now
        pgid = self.pid if self.pid and await self.poll() is None else 0
        if self._container and not now:
            await self._stop_in_image()
        await super().stop(now=now)
        if pgid and signal_group(pgid, signal.SIGTERM):
            for _ in range(20):
                await asyncio.sleep(0.1)
                if not signal_group(pgid, 0):
                    break
            else:
                signal_group(pgid, signal.SIGKILL)
        if self._container:
            await self.image_runner.remove(self._container)
            self._container = None
        elif not self._image:
            await asyncio.to_thread(self._remove_private_tmp)
            self._tmp = None
        if self._allocation is not None:
            # the GPUs go back here, off the event loop (the ledger's file lock); clear_state
            # releases what a server that never stopped through here still holds
            await asyncio.to_thread(self.ledger.release, self.user.name, self.name)
            self._allocation = None

    def get_args(self):
        args = super().get_args()
        if os.geteuid() == 0 and self._account is None:
            # a root hub whose users share its account (UserAccounts.mode = shared)
            args.append("--ServerApp.allow_root=True")
        args.append("--ServerApp.terminado_settings=" + json.dumps({"shell_command": LOGIN_SHELL}))
        return args

    async def progress(self):
        sent = 0
        while True:
            events = self._events
            while sent < len(events):
                yield events[sent]
                sent += 1
            if not self._spawn_pending:
                break
            await asyncio.sleep(0.25)

    def make_preexec_fn(self, name):
        workspace = self.folders.workspace

        def preexec():
            # no setuid: the embedded default runs servers as the hub's own user
            os.chdir(workspace)

        return preexec

    def user_env(self, env):
        env["USER"] = self._account.name if self._account else self.user.name
        env["HOME"] = self.folders.home
        env.setdefault("SHELL", "/bin/bash")
        return env

    def get_env(self):
        env = super().get_env()
        folders = self.folders
        env["KUBESTUDIO_USER"] = self.user.name
        env["KUBESTUDIO_USER_SLUG"] = user_slug(self.user.name)
        env["KUBESTUDIO_WORKSPACE"] = folders.workspace
        env["KUBESTUDIO_ARCHIVES"] = folders.archives
        # the server's own tools first: the user's Python and pip, then the hub's jupyter and the
        # kubestudio CLI
        tools = [d for d in (self._env_bin, HUB_BIN, *self.tool_dirs) if d]
        env["KUBESTUDIO_SERVER_PATH"] = os.pathsep.join(tools)
        inherited = [d for d in env.get("PATH", os.defpath).split(os.pathsep) if d and d not in tools]
        env["PATH"] = os.pathsep.join(tools + inherited)
        if self._env_bin:
            env["VIRTUAL_ENV"] = os.path.dirname(self._env_bin)
            env[BASE_SITE_ENV] = base_site_packages()
            # the hub's Jupyter extensions, lab extensions and settings (found under sys.prefix,
            # which is the user's environment now)
            env["JUPYTER_CONFIG_PATH"] = os.path.join(sys.prefix, "etc", "jupyter")
            env["JUPYTER_PATH"] = os.path.join(sys.prefix, "share", "jupyter")
        if self._request is not None:
            env["KUBESTUDIO_PROJECT"] = self._request.project.name
            env["KUBESTUDIO_PROFILE"] = self._request.profile.slug
            env["KUBESTUDIO_IDE"] = self._request.ide
            if self._request.image:
                # chosen on the form, not run here: kept for the record and for Kubernetes
                env["KUBESTUDIO_REQUESTED_IMAGE"] = self._request.image.image
        if self.server_image:
            # what the server really runs, as an image: the base of its from_server builds
            env["KUBESTUDIO_IMAGE"] = self.server_image
        if not self._image:
            # a job submitted from this server runs on the hub's Python too, as the server does
            env["KUBESTUDIO_JOB_IMAGE"] = HOST_IMAGE
        if self._request is not None and self._request.ide == "vscode":
            env["CODE_WORKINGDIR"] = folders.workspace
            env["CODE_EXECUTABLE"] = self.vscode_executable() or "code-server"
            # code-server has no login of its own here (--auth none): it listens on a Unix socket
            # (mode 0600, in a 0700 folder of the user's) that the server's proxy alone reaches,
            # never on a loopback port that every account on the machine can call
            env["JUPYTER_VSCODE_PROXY_USE_SOCKET"] = "1"
        env.update(self.notebook_links_env())
        if self._tmp:
            env["TMPDIR"] = self._tmp
        if self._allocation is not None:
            # an empty value hides every GPU from a server that asked for none
            env["CUDA_VISIBLE_DEVICES"] = ",".join(self._allocation.gpus)
        if self._image:
            return self._image_env(env)
        return env

    async def move_certs(self, paths):
        return paths

    # ------------------------------------------------------------------ state across restarts

    def get_state(self):
        state = super().get_state()
        if self._allocation is not None and self.pid:
            state["kubestudio"] = {
                "project": self._allocation.project,
                "gpus": list(self._allocation.gpus),
                "options": self._request.as_options() if self._request else {},
            }
            if self._container:
                state["kubestudio"].update(image=self._image, container=self._container)
        return state

    def load_state(self, state):
        super().load_state(state)
        saved = state.get("kubestudio")
        if saved and self.pid:
            allocation = Allocation(
                user=self.user.name,
                server=self.name,
                project=saved.get("project", ""),
                gpus=tuple(saved.get("gpus", ())),
            )
            self.ledger.restore(allocation)
            self._allocation = allocation
            self._image, self._container = saved.get("image"), saved.get("container")
            if self._container:
                try:
                    self._account = self.accounts.account(self.user.name, self.folders.home)
                except AccountError as e:
                    self.log.warning("%s: %s", self._log_name, e)
            try:
                self._request = self.resolve(saved.get("options", {}))
            except SpawnRefused as e:
                # the catalog or the user's projects changed while the server ran; keep it running
                self.log.warning("%s: saved options no longer valid: %s", self._log_name, e)

    def clear_state(self):
        super().clear_state()
        if self._allocation is not None:
            self.ledger.release(self.user.name, self.name)
        self._allocation = None
        self._request = None
        self._image = None
