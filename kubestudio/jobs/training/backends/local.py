"""Jobs as local processes (the embedded default): ``nodes x procs_per_node`` ranks in the user's
workspace, with the environment the Kubeflow operators give their pods, GPUs from the ledger the
local servers use, logs and exit status in files.

Each rank is started by :mod:`kubestudio.launch` (the user's environment applied only after the
switch to their account, the working folder entered by descriptor), leads a process group of its
own, sends its output straight to the rank's log file and writes its exit status to a file when it
ends: a service that restarted while the job ran finds its ranks again (PID and process start
time, so a reused PID is never taken for a rank) and reads their exit status. Where cgroups are
writable (:mod:`kubestudio.cgroups`) each node's ranks run in a cgroup of their own: its memory
limit is the kernel's, its processes are limited in number, and when the job ends, fails or is
cancelled every process in it is killed, also those that left the group with ``setsid``.

A job that names an image of the hub's registry runs inside it, as local servers do
(:mod:`kubestudio.spawner.imagerun`): one working container per rank, the user's folders at
/mnt/<user> and /archives/<user>, removed when the attempt ends.
"""

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import sys
import time
from dataclasses import dataclass, field

from traitlets import Bool, Float, List, Unicode, default

from ....accounts import AccountError, UserAccounts
from ....cgroups import Containment
from ....launch import open_folder_inside, start_process
from ....processgroup import process_start_time, rss_by_group, signal_group
from ....quantities import parse_bytes
from ....services.livelog import LineSplitter
from ....spawner.gpus import JOB, Allocation, GpuLedger, detect_gpus, gpus_from_config, ledger_path
from ....spawner.imagerun import ImageRunError, ImageRunner, inside_env, runner_env, user_mounts, write_env_file
from ....spawner.request import HOST_IMAGE
from ....spawner.storage import ensure_user_folders, mount_name, user_folders
from ....spawner.userenv import base_site_packages, ensure_user_env, is_ready, layered_env, site_packages, user_env_path
from ...spec import SpecError
from ..packagelayer import install_script, layer_folder
from .base import JobBackend, Outcome

MAX_LINE = 64 * 1024  # a longer line is handed on in pieces, never fatal
READ_BYTES = 256 * 1024
BRISK_SECONDS = 0.002  # a read of an open log at its end is a few microseconds
MEMORY_CHECK_SECONDS = 0.25
LOCAL_RUNTIME = "torch-distributed"
BUILDAH_EXIT = re.compile(r"^(subprocess exited (with status \d+|on \w+)|Error: exit status \d+)\r?$")


@dataclass
class RankPlan:
    """How a job's ranks start (:meth:`LocalJobBackend.run`): shared by every rank of the attempt."""

    env: dict  # every rank's environment before its own variables (RANK, WORLD_SIZE, ...)
    port: int  # the rendezvous port of rank 0
    gpus_per_node: list  # the GPU ids each node's ranks see, or None
    account: object  # the owner's OS account, or None (the service's own)
    folders: object  # the owner's folders
    groups: list  # one cgroup per node (empty without containment)
    image: str = None  # the image the ranks run in; None: the hub's Python
    argv: list = field(default_factory=list)
    cwd_fd: int = None  # the working folder, opened once (on the hub's Python)
    runner: object = None  # in an image: the ImageRunner, the mount name, the working folder inside
    mount: str = ""
    workdir: str = ""


@dataclass
class Rank:
    replica: str
    log_path: str
    exit_path: str
    pid: int = None
    started: int = None  # the process's start time (clock ticks since boot), against PID reuse
    proc: object = None  # the asyncio process, when this service started it
    offset: int = 0
    lines: LineSplitter = field(default_factory=lambda: LineSplitter(MAX_LINE))  # the log's bytes -> lines
    log: object = None  # the log file, open while the rank is followed
    result: dict = None

    def alive(self):
        if self.proc is not None:
            return self.proc.returncode is None
        return process_start_time(self.pid) == self.started

    def ended(self):
        """The rank's exit ({"code", "reason"}) once it ended, else None."""
        if self.result is None and os.path.exists(self.exit_path):
            try:
                with open(self.exit_path, encoding="utf-8") as f:
                    text = f.read().strip()
            except OSError:
                text = ""
            if text.isdigit():  # else being written
                self.result = exit_of(int(text))
        if self.result is None and not self.alive():
            if self.proc is not None and self.proc.returncode is not None and self.proc.returncode < 0:
                self.result = exit_of(128 - self.proc.returncode)  # the wrapper itself was killed
            else:
                self.result = {"code": -1, "reason": "the rank ended without an exit status (killed with its wrapper)"}
        return self.result


def exit_of(code):
    """{"code", "reason"} from a shell's exit status (128 + N: killed by signal N)."""
    if code > 128 and code - 128 in signal.Signals._value2member_map_:
        name = signal.Signals(code - 128).name
        why = " (out of memory?)" if code - 128 == signal.SIGKILL else ""
        return {"code": code, "reason": f"killed by {name}{why}"}
    if code == 127:
        return {"code": code, "reason": "exit code 127 (command not found)"}
    return {"code": code, "reason": "Completed" if code == 0 else f"exit code {code}"}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_env(spec, replicas, rank, port, gpus_per_node):
    """The environment of rank ``rank``: what torchrun, the Training Operator, Trainer, TFJob and
    MPI give a process, for ranks that all run on this machine."""
    nodes, per_node = spec.nodes, spec.procs_per_node
    node, local = divmod(rank, per_node)
    env = {
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
        "WORLD_SIZE": str(spec.ranks),
        "RANK": str(rank),
        "LOCAL_RANK": str(local),
        "LOCAL_WORLD_SIZE": str(per_node),
        "NODE_RANK": str(node),
        "PET_NNODES": str(nodes),
        "PET_NPROC_PER_NODE": str(per_node),
        "PET_NODE_RANK": str(node),
        "PET_MASTER_ADDR": "127.0.0.1",
        "PET_MASTER_PORT": str(port),
        "OMPI_COMM_WORLD_RANK": str(rank),
        "OMPI_COMM_WORLD_SIZE": str(spec.ranks),
        "OMPI_COMM_WORLD_LOCAL_RANK": str(local),
        "PMI_RANK": str(rank),
        "PMI_SIZE": str(spec.ranks),
        "KUBESTUDIO_REPLICA": replicas[rank],
        # an empty value hides every GPU from a rank that has none
        "CUDA_VISIBLE_DEVICES": ",".join(gpus_per_node[node]) if gpus_per_node else "",
    }
    if spec.kind == "tensorflow":
        cluster = {"chief": [f"127.0.0.1:{port}"]}
        workers = [f"127.0.0.1:{port + 1 + i}" for i in range(spec.ranks - 1)]
        if workers:
            cluster["worker"] = workers
        task = {"type": "chief", "index": 0} if rank == 0 else {"type": "worker", "index": rank - 1}
        env["TF_CONFIG"] = json.dumps({"cluster": cluster, "task": task})
    return env


class LocalJobBackend(JobBackend):
    name = "local"
    serving_backend = "kubestudio.jobs.serving.backends.local.LocalServingBackend"
    # the ranks run the hub's own Python environment, as local servers do
    runs_image = False

    data_dir = Unicode(
        config=True,
        help="""The hub's data folder: users' workspaces (<data_dir>/users/<slug>/mnt) and the GPU
        ledger the local servers share. configure() sets it; defaults to ./data.""",
    )

    @default("data_dir")
    def _default_data_dir(self):
        return os.path.abspath("data")

    work_dir = Unicode(
        config=True,
        help="""Folder for running jobs' files: one log and one exit file per rank, and the virtual
        environment of a job with `packages`. A job's folder is removed once its log is stored.
        Defaults to <data_dir>/jobs.""",
    )

    @default("work_dir")
    def _default_work_dir(self):
        return os.path.join(self.data_dir, "jobs")

    python = Unicode(
        sys.executable,
        config=True,
        help="""Python that runs a job's `script` (and makes the virtual environment of `packages`):
        the hub's own environment, the one local servers run.""",
    )
    gpus = List(
        None,
        allow_none=True,
        config=True,
        help="""GPUs of this machine, as LocalWorkspaceSpawner.gpus (configure() copies it): ids as they
        go into CUDA_VISIBLE_DEVICES, optionally with a name, e.g. ["0:A100"]. None runs
        `gpu_detect_command`.""",
    )
    gpu_detect_command = List(
        ["nvidia-smi", "-L"], config=True, help="Command that lists the GPUs when `gpus` is None."
    )
    env_keep = List(
        [
            "PATH",
            "LANG",
            "LC_ALL",
            "TZ",
            "http_proxy",
            "https_proxy",
            "no_proxy",
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "NO_PROXY",
            "SSL_CERT_FILE",
            "SSL_CERT_DIR",
            "REQUESTS_CA_BUNDLE",
            "PIP_INDEX_URL",
            "PIP_EXTRA_INDEX_URL",
            "PIP_TRUSTED_HOST",
        ],
        config=True,
        help="""Variables of the service's environment that ranks get too (the network and locale
        settings pip and Python need). Nothing else is passed on: never the service's token.""",
    )
    run_images = Bool(
        False,
        config=True,
        help="""Run a job that names an image of the hub's registry inside that image (buildah, chroot
        isolation, as local servers run; ImageRunner's settings), as the owner's account with their
        folders at /mnt/<user> and /archives/<user>. configure() turns it on when local servers run
        in images. Off: every job runs on the hub's Python, whatever image it names.""",
    )
    local_registry = Unicode(
        "",
        config=True,
        help="Host[:port] of the hub's own registry: the images a job may run in when `run_images` is on.",
    )
    default_image = Unicode(
        "",
        config=True,
        help="""Image of a job that names none (one submitted from the jobs page, or from outside a
        server) when `run_images` is on: the one the user's servers run unless they choose another,
        so a job behaves the same from the page, the terminal and the notebook. configure() sets
        KubeStudio's local single-user image. Empty: such a job runs on the hub's Python.""",
    )
    poll_seconds = Float(
        0.1,
        config=True,
        help="""How often the log and exit files of running ranks are read while they are quiet (every
        10 ms while lines come, and in a job's first seconds).""",
    )

    _ledger = None
    _env_locks = {}  # a user's home -> the lock held while their environment is made (one per process)

    @property
    def ledger(self):
        if self._ledger is None:
            machine = detect_gpus(self.gpu_detect_command) if self.gpus is None else gpus_from_config(self.gpus)
            self._ledger = GpuLedger(machine, path=ledger_path(self.data_dir))
        return self._ledger

    def gpu_capacity(self):
        capacity = {}
        for gpu in self.ledger.gpus:
            capacity[gpu.name or "GPU"] = capacity.get(gpu.name or "GPU", 0) + 1
        return capacity

    async def start(self):
        os.makedirs(self.work_dir, mode=0o700, exist_ok=True)
        # empty cgroups of jobs and servings whose service was killed before it removed them
        for prefix in ("job-", "serving-"):
            await asyncio.to_thread(self.containment.prune, prefix)

    def restore_gpus(self, runs):
        """After a restart: the GPUs of jobs still running, and nothing else of ours, are held."""
        self.ledger.forget(JOB, keep={self.ledger.key(r.owner, r.id, JOB) for r in runs if r.refs.get("gpus")})
        for run in runs:
            if run.refs.get("gpus"):
                self.ledger.restore(
                    Allocation(
                        user=run.owner, server=run.id, project=run.project.name, gpus=tuple(run.refs["gpus"]), kind=JOB
                    )
                )

    # ------------------------------------------------------------------ checks

    async def runtimes(self):
        # a TrainJob runs here as its torch-distributed runtime would run it: torchrun's environment
        return [
            {
                "name": LOCAL_RUNTIME,
                "framework": "torch",
                "scope": "local",
                "description": "ranks as local processes with the PET_* environment of Trainer's torch runtime",
            }
        ]

    def folders(self, owner):
        return user_folders(self.data_dir, owner)

    reads_workspaces = True

    async def workspace_digests(self, owner, paths):
        from .... import fdpath

        root = self.folders(owner).workspace

        def hash_all():
            return {path: fdpath.digest(root, path) for path in paths}

        return await asyncio.get_running_loop().run_in_executor(None, hash_all)

    async def workspace_has(self, owner, paths):
        from .... import fdpath

        root = self.folders(owner).workspace
        return await asyncio.get_running_loop().run_in_executor(
            None, lambda: {path: fdpath.exists(root, path) for path in paths}
        )

    async def workspace_text(self, owner, path, limit=4096):
        from .... import fdpath

        root = self.folders(owner).workspace
        return await asyncio.get_running_loop().run_in_executor(None, fdpath.read_text, root, path, limit)

    def _inside(self, root, relative, where, want_dir):
        """The real path of ``relative`` under ``root``, refused if it leaves it or is missing."""
        real_root = os.path.realpath(root)
        path = os.path.realpath(os.path.join(real_root, relative))
        if path != real_root and not path.startswith(real_root + os.sep):
            raise SpecError(f"{where}: {relative!r} leads outside your workspace")
        if want_dir and not os.path.isdir(path):
            raise SpecError(f"{where}: no folder {relative!r} in your workspace")
        if not want_dir and not os.path.isfile(path):
            raise SpecError(f"{where}: no file {relative!r} in your workspace")
        return path

    def job_image(self, spec):
        """The image the job runs in, None for the hub's own Python; SpecError for an image that
        cannot run here."""
        image = spec.image or self.default_image
        if not self.run_images or not image or image == HOST_IMAGE:
            return None
        if not (self.local_registry and image.startswith(self.local_registry + "/")):
            raise SpecError(
                f"image: {image} is not in this hub's registry ({self.local_registry or 'none'}): jobs here "
                f"run in its images (yours, or KubeStudio's single-user image), or on the hub's Python "
                f"with image {HOST_IMAGE!r}",
                409,
            )
        return image

    def image_of(self, run):
        return self.job_image(run.spec) or ""

    async def check(self, run):
        spec = run.spec
        self.job_image(spec)
        if spec.kind == "trainjob" and spec.runtime != LOCAL_RUNTIME:
            raise SpecError(
                f"runtime: this machine runs TrainJobs with the {LOCAL_RUNTIME!r} runtime, not {spec.runtime!r}", 409
            )
        folders = self.folders(run.owner)
        ensure_user_folders(folders)
        cwd = self._inside(folders.workspace, spec.working_dir, "working_dir", want_dir=True)
        if spec.script:
            # a script is named relative to the workspace (as the notebook's file browser shows it)
            self._inside(folders.workspace, spec.script, "script", want_dir=False)
        gpu = spec.resources.gpu
        if gpu.count:
            missing = self.ledger.missing_reason(gpu.type)
            if missing:
                raise SpecError(f"resources.gpu: {missing}", 409)
            matching = [g for g in self.ledger.gpus if g.matches(gpu.type)]
            if gpu.count * spec.nodes > len(matching):
                raise SpecError(
                    f"resources.gpu: {gpu.count * spec.nodes} GPUs asked ({gpu.count} per node x "
                    f"{spec.nodes} nodes), this machine has {len(matching)}",
                    409,
                )
        return cwd

    # ------------------------------------------------------------------ GPUs

    def reserve(self, run):
        gpu = run.spec.resources.gpu
        total = gpu.count * run.spec.nodes
        if not total:  # a job without GPUs holds nothing the ledger counts
            run.refs["gpus"] = []
            return
        allocation = self.ledger.reserve(run.owner, run.id, run.project, total, gpu.type, kind=JOB)
        run.refs["gpus"] = list(allocation.gpus)

    def release(self, run):
        if run.refs.get("gpus"):
            self.ledger.release(run.owner, run.id, kind=JOB)

    # ------------------------------------------------------------------ running

    def _dir(self, run):
        return os.path.join(self.work_dir, run.id)

    def _ranks(self, run):
        folder = os.path.join(self._dir(run), f"attempt-{run.attempt}")
        return [
            Rank(
                replica=name,
                log_path=os.path.join(folder, f"rank-{i}.log"),
                exit_path=os.path.join(folder, f"rank-{i}.exit"),
            )
            for i, name in enumerate(run.replicas)
        ]

    async def account_for(self, owner):
        """The owner's OS account (made on first use, owning their folders), or None when processes
        run as the service's own account."""
        try:
            return await UserAccounts(config=self.config).account_owning(owner, self.folders(owner))
        except AccountError as e:
            raise SpecError(str(e), 409) from None

    async def run(self, run):
        spec = run.spec
        cwd = await self.check(run)
        ranks = self._ranks(run)
        os.makedirs(os.path.dirname(ranks[0].log_path), mode=0o700, exist_ok=True)
        account = await self.account_for(run.owner)
        image = self.job_image(spec)
        if image and account is None:
            return Outcome("failed", "image: jobs run in images only with per-user accounts (a hub run as root)")
        python = "python3" if image else await self._packages(run, account)
        if isinstance(python, Outcome):
            return python
        folders = self.folders(run.owner)
        plan = RankPlan(
            env=self._job_env(run, folders, python),
            port=free_port(),
            gpus_per_node=self._gpus_per_node(run),
            account=account,
            folders=folders,
            groups=self._groups(run),
            image=image,
        )
        script = self._inside(folders.workspace, spec.script, "script", want_dir=False) if spec.script else None
        if image:
            script = await self._into_image(run, plan, cwd, script, len(ranks))
            if isinstance(script, Outcome):
                return script
        plan.argv = spec.argv(python, script)
        refused = self._open_places(run, plan, cwd)
        if refused is not None:
            return refused
        try:
            for i, rank in enumerate(ranks):
                await self._start_rank(run, plan, i, rank)
                run.refs["pids"] = {r.replica: [r.pid, r.started] for r in ranks if r.pid}
            run.refs.update(port=plan.port)
            if run.on_refs:
                run.on_refs(dict(run.refs))
            if run.on_status:
                count = f"{len(ranks)} {'rank' if len(ranks) == 1 else 'ranks'}"
                run.on_status("running", f"{count} running on this machine")
        except BaseException:
            # a rank that started before the failure (or the cancel) must not run on alone
            self._kill(ranks)
            self._remove_groups(run)
            await self._remove_containers(run)
            raise
        finally:
            if plan.cwd_fd is not None:
                os.close(plan.cwd_fd)
        # from here the ranks run on their own: a cancelled wait (the service stopping) leaves them
        # running for the next start to resume; the manager calls cancel() to stop them
        outcome = await self._follow(run, ranks)
        self._remove_groups(run)  # what the ranks left running (a daemon, `sleep &`) ends with the job
        await self._remove_containers(run)
        return outcome

    def _job_env(self, run, folders, python):
        """What every rank's environment starts from: the kept variables of the service's, the
        job's Python first on PATH, the user's folders and the job's names, then the spec's env."""
        env = {k: os.environ[k] for k in self.env_keep if k in os.environ}
        bin_dir = os.path.dirname(python)
        env["PATH"] = os.pathsep.join(
            [bin_dir] + [d for d in env.get("PATH", os.defpath).split(os.pathsep) if d and d != bin_dir]
        )
        env.update(
            {
                "HOME": folders.home,
                "PYTHONUNBUFFERED": "1",  # lines reach the log as they are printed
                "KUBESTUDIO_USER": run.owner,
                "KUBESTUDIO_USER_SLUG": run.slug,
                "KUBESTUDIO_WORKSPACE": folders.workspace,
                "KUBESTUDIO_ARCHIVES": folders.archives,
                "KUBESTUDIO_PROJECT": run.project.name,
                "KUBESTUDIO_JOB": run.spec.name,
                "KUBESTUDIO_JOB_ID": run.id,
            }
        )
        env.update(run.spec.env)
        return env

    @staticmethod
    def _gpus_per_node(run):
        """The GPU ids each node's ranks see (the job's held GPUs, in order), or None without GPUs."""
        held = list(run.refs.get("gpus") or [])
        per_node = run.spec.resources.gpu.count
        return [held[n * per_node : (n + 1) * per_node] for n in range(run.spec.nodes)] if per_node else None

    async def _into_image(self, run, plan, cwd, script, rank_count):
        """Ready the image's working containers (one per rank, the owner's account added, the
        spec's packages layered in) and set the plan's paths as the container sees them; the
        script's path inside, or the Outcome that ends the job."""
        spec, folders = run.spec, plan.folders
        plan.mount = mount = mount_name(run.owner)
        inside = f"/mnt/{mount}"
        workspace = os.path.realpath(folders.workspace)
        script = script and os.path.join(inside, os.path.relpath(script, workspace))
        plan.workdir = os.path.normpath(os.path.join(inside, os.path.relpath(cwd, workspace)))
        plan.env = {**inside_env(plan.env, mount, plan.image), **spec.env}
        run.refs["containers"] = [f"ksjob-{run.id}-{run.attempt}-{i}" for i in range(rank_count)]
        if run.on_refs:
            run.on_refs(dict(run.refs))
        plan.runner = runner = ImageRunner(config=self.config)
        try:
            for name in run.refs["containers"]:
                await runner.working_container(plan.image, name)
                await runner.add_account(name, plan.account, f"/home/{mount}")
        except ImageRunError as e:
            await self._remove_containers(run)
            return Outcome("failed", f"image: {e}")
        if spec.packages:
            folder = layer_folder(f"/home/{mount}", plan.image, spec.packages)
            outcome = await self._packages_in_image(
                run, runner, plan.account, folders, mount, plan.workdir, plan.env, folder
            )
            if outcome is not None:
                await self._remove_containers(run)
                return outcome
            previous = plan.env.get("PYTHONPATH")
            plan.env["PYTHONPATH"] = folder + (f":{previous}" if previous else "")
        return script

    def _open_places(self, run, plan, cwd):
        """Open the working folder (by descriptor, on the hub's Python) and make the nodes'
        cgroups; the Outcome that ends the job when either cannot be done, else None."""
        try:
            plan.cwd_fd = None if plan.image else open_folder_inside(plan.folders.workspace, cwd, "working_dir")
        except ValueError as e:
            return Outcome("failed", str(e))
        try:
            for group in plan.groups:
                group.create()
        except OSError as e:
            if plan.cwd_fd is not None:
                os.close(plan.cwd_fd)
                plan.cwd_fd = None
            return Outcome("failed", f"cannot make the job's cgroup {group.path}: {e} (Containment.mode)")
        return None

    async def _start_rank(self, run, plan, i, rank):
        """Start rank ``i`` (its environment, its exit file, its node's cgroup, its log)."""
        spec = run.spec
        env = {**plan.env, **rank_env(spec, run.replicas, i, plan.port, plan.gpus_per_node)}
        exit_fd = os.open(rank.exit_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            command = plan.argv
            if plan.image:
                env_file = write_env_file(
                    os.path.join(os.path.dirname(rank.log_path), f"rank-{i}.env"), env, plan.account
                )
                command = plan.runner.command(
                    run.refs["containers"][i],
                    plan.argv,
                    plan.account,
                    user_mounts(plan.folders, plan.mount),
                    workdir=plan.workdir,
                    env_file=env_file,
                    gpus=bool(plan.gpus_per_node),
                )
                env = runner_env()
            # in an image, buildah starts as root and runs the rank as the account itself; every
            # process of the rank starts inside its node's cgroup
            with open(rank.log_path, "ab") as log:
                rank.proc = await start_process(
                    None if plan.image else plan.account,
                    command,
                    env,
                    group=plan.groups[i // spec.procs_per_node] if plan.groups else None,
                    cwd_fd=plan.cwd_fd,
                    exit_fd=exit_fd,
                    stdout=log,
                    stderr=asyncio.subprocess.STDOUT,
                )
        finally:
            os.close(exit_fd)
        rank.pid, rank.started = rank.proc.pid, process_start_time(rank.proc.pid)

    async def _remove_containers(self, run):
        """The working containers of the attempt's ranks in an image (their writable layers)."""
        if run.refs.get("containers"):
            runner = ImageRunner(config=self.config)
            for name in run.refs["containers"]:
                await runner.remove(name)

    async def resume(self, run):
        ranks = self._ranks(run)
        pids = run.refs.get("pids") or {}
        for rank in ranks:
            rank.pid, rank.started = pids.get(rank.replica) or [None, None]
        if not pids or not os.path.exists(os.path.dirname(ranks[0].log_path)):
            await self._remove_containers(run)
            return Outcome("failed", "the job's ranks were lost while the jobs service was down (no record of them)")
        outcome = await self._follow(run, ranks)
        self._remove_groups(run)
        await self._remove_containers(run)
        return outcome

    async def cancel(self, run):
        ranks = self._ranks(run)
        pids = run.refs.get("pids") or {}
        for rank in ranks:
            rank.pid, rank.started = pids.get(rank.replica) or [None, None]
        self._kill(ranks)
        self._remove_groups(run)
        await self._remove_containers(run)

    def forget(self, run):
        shutil.rmtree(self._dir(run), ignore_errors=True)

    @property
    def containment(self):
        return Containment(config=self.config)

    def _groups(self, run):
        """The cgroups of the attempt's nodes (none without cgroups), memory limited per node as a pod's
        is, and the number of processes per rank."""
        spec = run.spec
        memory = parse_bytes(spec.resources.memory) if spec.resources.memory else None
        containment = self.containment
        try:
            names = [f"job-{run.id}-{run.attempt}-node-{n}" for n in range(spec.nodes)]
            return [
                g
                for g in (
                    containment.group(name, memory=memory, pids=containment.pids_limit * spec.procs_per_node)
                    for name in names
                )
                if g is not None
            ]
        except ValueError as e:
            raise SpecError(str(e), 409) from None

    def _remove_groups(self, run):
        try:
            groups = self._groups(run)
        except SpecError:
            return
        for group in groups:
            try:
                group.remove()
            except OSError as e:
                self.log.warning("cannot remove the cgroup %s: %s", group, e)

    def _keep_memory_limit(self, ranks, per_node, limit, memory):
        """``resources.memory`` is per node, as a pod's limit is: a node's ranks together may hold
        that much resident memory; past it they are killed, as the kernel's cgroup would (exit 137,
        OOMKilled)."""
        usage = rss_by_group()
        for first in range(0, len(ranks), per_node):
            node = [r for r in ranks[first : first + per_node] if r.pid and r.result is None]
            if node and sum(usage.get(r.pid, 0) for r in node) > limit:
                for rank in node:
                    rank.result = {"code": 137, "reason": f"OOMKilled (memory limit {memory} per node)"}
                self._kill(node)

    def _kill(self, ranks):
        for rank in ranks:
            if rank.pid and (
                rank.proc is not None
                and rank.proc.returncode is None
                or rank.proc is None
                and process_start_time(rank.pid) == rank.started
            ):
                signal_group(rank.pid, signal.SIGKILL)

    async def _follow(self, run, ranks):
        """Read every rank's log as it grows; when a rank fails the others are stopped (as the
        operators do); the outcome once all have ended."""
        failed = None
        # look often while lines come (and just after the start), then settle to poll_seconds
        brisk_until = time.monotonic() + 2
        memory = run.spec.resources.memory
        groups = self._groups(run)
        # with cgroups the kernel keeps the limit; without, resident memory is sampled
        limit = parse_bytes(memory) if memory and not groups else None
        checked = 0.0
        try:
            while True:
                if self._read_logs(run, ranks):
                    brisk_until = time.monotonic() + 1
                if limit and time.monotonic() - checked >= MEMORY_CHECK_SECONDS:
                    checked = time.monotonic()
                    self._keep_memory_limit(ranks, run.spec.procs_per_node, limit, memory)
                for i, rank in enumerate(ranks):
                    result = rank.ended()
                    if (
                        result
                        and result["code"] != 0
                        and groups
                        and "OOMKilled" not in result["reason"]
                        and groups[i // run.spec.procs_per_node].oom_kills()
                    ):
                        result.update(code=137, reason=f"OOMKilled (memory limit {memory} per node)")
                    if result and result["code"] != 0 and failed is None:
                        failed = rank
                        self._kill([r for r in ranks if r is not rank])
                if all(r.ended() for r in ranks):
                    break
                await asyncio.sleep(BRISK_SECONDS if time.monotonic() < brisk_until else self.poll_seconds)
            self._read_logs(run, ranks, final=True)
        except asyncio.CancelledError:
            self._read_logs(run, ranks, final=True)  # what the ranks wrote up to a cancel stays in the log
            raise
        finally:
            for rank in ranks:
                if rank.log is not None:
                    rank.log.close()
                    rank.log = None
        exits = {r.replica: r.result for r in ranks}
        if failed is None:
            return Outcome("succeeded", "", exits)
        return Outcome("failed", f"{failed.replica} failed: {failed.result['reason']}", exits)

    def _read_logs(self, run, ranks, final=False):
        """Hand on what the ranks wrote since the last look; whether there was anything."""
        got = False
        for rank in ranks:
            if rank.log is None:
                try:
                    rank.log = open(rank.log_path, "rb")
                except FileNotFoundError:
                    continue
                rank.log.seek(rank.offset)
            data = rank.log.read(READ_BYTES)
            while data:
                got = True
                rank.offset += len(data)
                self._hand_on(run, rank, rank.lines.feed(data))
                data = rank.log.read(READ_BYTES) if final or len(data) == READ_BYTES else b""
            if final:
                self._hand_on(run, rank, rank.lines.close())
        return got

    @staticmethod
    def _hand_on(run, rank, lines):
        """One hand-over for a whole read's lines (a flood of lines is thousands per read)."""
        if lines and run.refs.get("containers"):
            # buildah's own words on the rank's exit (the exit status says it already)
            lines = [line for line in lines if not BUILDAH_EXIT.match(line)]
        if lines:
            run.on_lines(rank.replica, lines)

    async def _packages(self, run, account):
        """The Python of the job: the owner's own environment (the one their servers run, with what
        they installed), and with `packages` a virtual environment on top of it where pip installed
        them, made as the owner; the install's output goes to the log as [setup]."""
        python = self.python
        if python == sys.executable:
            home = self.folders(run.owner).home
            ready = user_env_path(home)
            if is_ready(ready, base_site_packages()):  # the usual case: no thread on the start's way
                python = os.path.join(ready, "bin", "python")
            else:
                # a new user's first jobs start together (an experiment's parallel trials): one
                # makes the environment, the others wait for it rather than make it at the same time
                lock = self._env_locks.setdefault(home, asyncio.Lock())
                try:
                    async with lock:
                        python = os.path.join(await asyncio.to_thread(ensure_user_env, home, account), "python")
                except OSError as e:
                    return Outcome("failed", str(e))
        if not run.spec.packages:
            return python
        venv = os.path.join(self._dir(run), "venv")
        if account is not None and not os.path.exists(venv):
            # the run's folder stays the service's; the owner may only pass through it to their venv
            account.own_inside(venv, self.work_dir, self._dir(run))
        steps = [
            [
                os.path.join(venv, "bin", "python"),
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--no-input",
                *run.spec.packages,
            ]
        ]
        if python == self.python:  # an admin's own Python: a plain environment on top of it
            steps.insert(0, [python, "-m", "venv", "--system-site-packages", venv])
        elif not os.path.exists(os.path.join(venv, "bin", "python")):
            # on top of the owner's environment, which is on top of the hub's
            run.on_lines("setup", [f"$ python -m venv {venv} (over your environment)"])
            try:
                await asyncio.to_thread(
                    layered_env, venv, site_packages(os.path.dirname(os.path.dirname(python))), account
                )
            except OSError as e:
                return Outcome("failed", f"packages: {e}")
        env = {k: os.environ[k] for k in self.env_keep if k in os.environ}
        for argv in steps:
            if os.path.exists(os.path.join(venv, "bin", "python")) and argv[1:3] == ["-m", "venv"]:
                continue
            run.on_lines("setup", ["$ " + " ".join(argv[2:] if argv[1:3] == ["-m", "pip"] else argv[1:])])
            code = await self._setup_step(run, account, argv, env)
            if code != 0:
                return Outcome(
                    "failed",
                    f"packages: installing {' '.join(run.spec.packages)} failed "
                    f"(pip exit code {code}); see the log's [setup] lines",
                )
        return os.path.join(venv, "bin", "python")

    async def _packages_in_image(self, run, runner, account, folders, mount, workdir, env, folder):
        """The job's packages on its image's Python (``packagelayer``): pip, as the owner in the
        first rank's working container, into ``folder`` of their home unless a job did before. None
        when done, else the failed Outcome."""
        packages = run.spec.packages
        run.on_lines("setup", [f"$ pip install --target {folder} {' '.join(packages)} (unless done before)"])
        env_file = write_env_file(os.path.join(self._dir(run), "setup.env"), env, account)
        argv = runner.command(
            run.refs["containers"][0],
            ["sh", "-c", install_script(folder, packages)],
            account,
            user_mounts(folders, mount),
            workdir=workdir,
            env_file=env_file,
        )
        code = await self._setup_step(run, None, argv, runner_env())
        if code != 0:
            return Outcome(
                "failed",
                f"packages: installing {' '.join(packages)} failed (exit code {code}); see the log's [setup] lines",
            )
        return None

    async def _setup_step(self, run, account, argv, env):
        """Run a step before the ranks (as ``account``), its output to the log as [setup]; its exit code."""
        proc = await start_process(account, argv, env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        try:
            while True:
                line = await proc.stdout.readline()
                if not line:
                    break
                run.on_lines("setup", [line.decode("utf-8", errors="replace").rstrip()[:MAX_LINE]])
            return await proc.wait()
        except asyncio.CancelledError:
            signal_group(proc.pid)
            raise
