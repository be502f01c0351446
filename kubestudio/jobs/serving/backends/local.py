"""Servings as local processes (the embedded default): the model runtime
(``python -m kubestudio.jobs.serve``) on a free loopback port, in the hub's Python environment as
local servers and jobs run, with the user's GPUs from the ledger they share. It leads a process
group (and, where cgroups are writable, a cgroup with the serving's memory limit) of its own; its
PID and process start time are recorded, so a restarted service finds it still running (a reused
PID is never taken for it). The runtime's output goes to one log per serving, a line marking each
start.

The runtime answers only the jobs service: every request must carry the runtime's own secret (made
at each start, kept in the serving's record, given to the runtime in its environment after the
switch to the owner's account), which the service's proxy adds after it checked the caller with
the hub. Another user's process that finds the port gets 403.
"""

import asyncio
import os
import secrets
import signal
import sys
import time
from dataclasses import dataclass

from tornado.httpclient import AsyncHTTPClient, HTTPClientError
from traitlets import Float, Unicode, default

from ....cgroups import Containment
from ....launch import start_process
from ....names import RUNTIME_SECRET_ENV, RUNTIME_SECRET_HEADER
from ....processgroup import process_start_time, signal_group
from ....quantities import parse_bytes
from ....services.livelog import read_tail
from ....spawner.gpus import JOB, Allocation
from ....spawner.storage import ensure_user_folders, mount_name
from ...spec import SpecError
from ...training.backends.local import LocalJobBackend, free_port
from ..formats import LOAD_FAILED, ModelError, detect_format
from .base import ServingBackend, ServingFailed

LOG_TAIL = 8000
POLL_SECONDS = 0.05


@dataclass
class LocalRuntime:
    pid: int
    started: int  # process start time, against PID reuse
    port: int
    generation: int
    secret: str = ""  # what the runtime asks of every caller (the service's proxy)
    group: str = ""  # its cgroup, when it has one

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    @property
    def headers(self):
        return {RUNTIME_SECRET_HEADER: self.secret} if self.secret else {}

    def to_json(self):
        # no cluster_url: the runtime answers the hub's proxy alone (other callers lack its secret)
        return {
            "pid": self.pid,
            "started": self.started,
            "port": self.port,
            "generation": self.generation,
            "secret": self.secret,
            "group": self.group,
        }

    @classmethod
    def from_json(cls, data):
        if not data or not data.get("pid"):
            return None
        return cls(
            data["pid"],
            data["started"],
            data["port"],
            data["generation"],
            data.get("secret", ""),
            data.get("group", ""),
        )


class LocalServingBackend(ServingBackend):
    name = "local"
    job_backend_class = LocalJobBackend  # its users' folders, accounts, environment and GPU ledger
    rolls_itself = False  # a new version is a second runtime beside the first; the manager stops the old one
    outlives_the_service = False  # the runtimes stop with the service unless the hub keeps servers running

    python = Unicode(
        sys.executable, config=True, help="Python that runs the model runtime (the hub's own environment)."
    )
    start_timeout = Float(120, config=True, help="Seconds a runtime may take to load its model and answer.")
    work_dir = Unicode(config=True, help="Folder of the servings' logs and installed requirements.")

    @default("work_dir")
    def _default_work_dir(self):
        return os.path.join(self.jobs.data_dir, "servings")

    # ------------------------------------------------------------------ checking

    def model_path(self, owner, model):
        """The model's real path (a file or folder inside the user's workspace or archives), or
        SpecError. Named relative to the workspace, by its path on this machine, or as a server on
        Kubernetes shows it (/mnt/<user>/..., /archives/<user>/...)."""
        folders = self.jobs.folders(owner)
        ensure_user_folders(folders)
        text = model.strip()
        name = mount_name(owner)
        roots = (
            (folders.archives, folders.archives, "archives"),
            (f"/archives/{name}", folders.archives, "archives"),
            (folders.workspace, folders.workspace, "workspace"),
            (f"/mnt/{name}", folders.workspace, "workspace"),
        )
        for prefix, root, where in roots:
            if text == prefix or text.startswith(prefix + "/"):
                relative = text[len(prefix) :].lstrip("/")
                break
        else:
            if text.startswith("/"):
                raise SpecError(f"model: {text!r} is outside your workspace and archives")
            root, relative, where = folders.workspace, text, "workspace"
        real_root = os.path.realpath(root)
        path = os.path.realpath(os.path.join(real_root, relative))
        if path != real_root and not path.startswith(real_root + os.sep):
            raise SpecError(f"model: {text!r} leads outside your {where}")
        if not os.path.exists(path):
            raise SpecError(f"model: no file or folder {relative!r} in your {where}", 404)
        return path

    async def check(self, owner, spec):
        """(real model path, format) of a spec, or SpecError naming the field; nothing is started."""
        if spec.max_replicas > 1:
            raise SpecError("replicas: this machine runs one replica of a serving (more are for Kubernetes)")
        path = self.model_path(owner, spec.model)
        try:
            found = detect_format(path, spec.model_class) if spec.format == "auto" else spec.format
        except ModelError as e:
            raise SpecError(str(e)) from None
        if found == "custom":
            folder = path if os.path.isdir(path) else os.path.dirname(path)
            module, _, cls = spec.model_class.rpartition(":")
            file = (module or cls).replace(".", os.sep) + ".py"
            if not os.path.isfile(os.path.join(folder, file)):
                raise SpecError(f"class: no file {file!r} beside the model for the class {cls!r}")
        gpu = spec.resources.gpu
        if gpu.count:
            missing = self.jobs.ledger.missing_reason(gpu.type)
            if missing:
                raise SpecError(f"resources.gpu: {missing}", 409)
        return path, found

    # ------------------------------------------------------------------ GPUs

    def reserve(self, serving_id, owner, project, spec):
        gpu = spec.resources.gpu
        if not gpu.count:
            return []
        return list(self.jobs.ledger.reserve(owner, serving_id, project, gpu.count, gpu.type, kind=JOB).gpus)

    def restore(self, serving_id, owner, project, gpus):
        if gpus:
            self.jobs.ledger.restore(
                Allocation(user=owner, server=serving_id, project=project, gpus=tuple(gpus), kind=JOB)
            )

    def release(self, serving_id, owner):
        self.jobs.ledger.release(owner, serving_id, kind=JOB)

    # ------------------------------------------------------------------ running

    def log_path(self, serving_id):
        return os.path.join(self.work_dir, serving_id, "runtime.log")

    def log_tail(self, serving_id, size=LOG_TAIL):
        return read_tail(self.log_path(serving_id), size)

    async def logs(self, serving_id, size=LOG_TAIL):
        return self.log_tail(serving_id, size)

    def last_lines(self, serving_id, count=3):
        lines = [line for line in self.log_tail(serving_id).splitlines() if line.strip()]
        return " | ".join(lines[-count:]) or "no output"

    async def launch(self, run):
        """Start the runtime of ``run``; a :class:`LocalRuntime` once it answers ready, else
        :class:`ServingFailed` with the end of its log."""
        serving_id, owner, spec, generation = run.id, run.owner, run.spec, run.generation
        folder = os.path.join(self.work_dir, serving_id)
        os.makedirs(folder, mode=0o700, exist_ok=True)
        folders = self.jobs.folders(owner)
        account = await self.jobs.account_for(owner)
        if account is not None:
            # the runtime runs as the owner: it passes through the service's folders to the packages
            # it installs; its log stays the service's (written through the descriptor it is given)
            account.own_inside(os.path.join(folder, "packages"), self.work_dir, folder)
        port = free_port()
        secret = secrets.token_urlsafe(32)
        argv = [
            self.python,
            "-m",
            "kubestudio.jobs.serve",
            "--model",
            run.path,
            "--name",
            spec.name,
            "--format",
            run.model_format,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--packages-dir",
            os.path.join(folder, "packages"),
        ]
        if spec.model_class:
            argv += ["--class", spec.model_class]
        for package in spec.packages:
            argv += ["--package", package]
        env = {k: os.environ[k] for k in self.jobs.env_keep if k in os.environ}
        env.update(
            {
                "HOME": folders.home,
                "PYTHONUNBUFFERED": "1",
                "KUBESTUDIO_USER": owner,
                "KUBESTUDIO_WORKSPACE": folders.workspace,
                "KUBESTUDIO_ARCHIVES": folders.archives,
                "KUBESTUDIO_SERVING": spec.name,
                "CUDA_VISIBLE_DEVICES": ",".join(run.gpus),
            }
        )
        env.update(spec.env)
        env[RUNTIME_SECRET_ENV] = secret
        memory = parse_bytes(spec.resources.memory) if spec.resources.memory else None
        try:
            group = Containment(config=self.config).group(f"serving-{serving_id}-{generation}", memory=memory)
            if group is not None:
                group.create()
        except (ValueError, OSError) as e:
            raise ServingFailed(f"cannot contain the runtime: {e} (Containment.mode)") from None
        model_folder = run.path if os.path.isdir(run.path) else os.path.dirname(run.path)
        try:
            cwd_fd = os.open(model_folder, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            raise ServingFailed(f"model: cannot open its folder: {e}") from None
        try:
            with open(self.log_path(serving_id), "ab") as log:
                log.write(
                    f"--- {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} starting version {generation}\n".encode()
                )
                log.flush()
                proc = await start_process(
                    account, argv, env, group=group, cwd_fd=cwd_fd, stdout=log, stderr=asyncio.subprocess.STDOUT
                )
        finally:
            os.close(cwd_fd)
        runtime = LocalRuntime(
            proc.pid, process_start_time(proc.pid), port, generation, secret, group.path if group is not None else ""
        )
        asyncio.ensure_future(proc.wait())  # reaped when it ends; alive() reads /proc
        try:
            await self._wait_ready(serving_id, runtime, proc, spec.name)
        except BaseException:
            await self.stop(runtime, grace=0)
            raise
        return runtime

    async def _wait_ready(self, serving_id, runtime, proc, name):
        client = AsyncHTTPClient()
        deadline = time.monotonic() + self.start_timeout
        while True:
            if proc.returncode is not None:
                raise ServingFailed(
                    f"the model runtime exited with code {proc.returncode}: {self.last_lines(serving_id)}",
                    load_error=proc.returncode == LOAD_FAILED,
                )
            try:
                response = await client.fetch(
                    f"{runtime.url}/v1/models/{name}", request_timeout=5, headers=runtime.headers
                )
                if response.code == 200:
                    return
            except (HTTPClientError, OSError):
                pass
            if time.monotonic() > deadline:
                raise ServingFailed(
                    f"the model runtime did not answer in {self.start_timeout:g} s: {self.last_lines(serving_id)}"
                )
            await asyncio.sleep(POLL_SECONDS)

    def from_refs(self, refs):
        return LocalRuntime.from_json(refs)

    def alive(self, runtime):
        return runtime is not None and process_start_time(runtime.pid) == runtime.started

    async def stop(self, runtime, grace=5.0):
        """Stop a runtime and what it started (SIGTERM, then SIGKILL after ``grace``; then whatever is
        left in its cgroup, also what left its process group); idempotent."""
        if runtime is None:
            return
        if self.alive(runtime):
            signal_group(runtime.pid, signal.SIGTERM)
            deadline = time.monotonic() + grace
            while self.alive(runtime) and time.monotonic() < deadline:
                await asyncio.sleep(POLL_SECONDS)
            signal_group(runtime.pid)
        await asyncio.to_thread(Containment(config=self.config).remove_at, runtime.group)
