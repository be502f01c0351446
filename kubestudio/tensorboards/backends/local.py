"""TensorBoard as a local process (the embedded default): one supervised TensorBoard per board
(:mod:`kubestudio.tensorboards.guarded`: it answers only requests carrying the board's secret,
which the service's proxy adds) on a loopback port it picks itself (``--port 0``; the address is read from its first line), with
the flags the Kubernetes pod gets (``--path_prefix`` = the board's public prefix,
``--reload_interval``; never ``--bind_all``). It leads a process group of its own, so stopping a
board stops everything it started (where cgroups are writable, a cgroup of its own: also what left
the group, and the number of its processes limited); its PID and process start time are recorded, so a restarted
service finds a board still running (a reused PID is never taken for it) or knows it is gone.
"""

import asyncio
import os
import re
import secrets
import sys
import time
from dataclasses import dataclass

from tornado.httpclient import AsyncHTTPClient, HTTPClientError
from traitlets import Float, Integer, List, Unicode, default

from ...accounts import AccountError, UserAccounts
from ...cgroups import Containment
from ...launch import start_process
from ...names import RUNTIME_SECRET_ENV, RUNTIME_SECRET_HEADER
from ...processgroup import process_start_time, signal_group
from ...services.livelog import read_tail
from ...spawner.storage import ensure_user_folders, user_folders
from ..logdirs import LogdirError, link_tree, resolve
from .base import BoardBackend, BoardFailed

__all__ = ["BoardFailed", "LocalBoardBackend", "Running"]

LISTENING = re.compile(rb"TensorBoard [^ ]+ at (http://[^ ]+?)/? \(Press CTRL\+C to quit\)")
STDERR_TAIL = 4000
POLL_SECONDS = 0.02  # while TensorBoard starts (well under a second): look often, it is all the user waits for


@dataclass
class Running:
    """Where a board's TensorBoard runs (kept in the board's record to find it again)."""

    pid: int
    started: int  # process start time, against PID reuse
    url: str  # http://127.0.0.1:<port><prefix>
    secret: str = ""  # what TensorBoard asks of every caller (the service's proxy)
    group: str = ""  # its cgroup, when it has one

    @property
    def headers(self):
        return {RUNTIME_SECRET_HEADER: self.secret} if self.secret else {}

    def to_json(self):
        return {"pid": self.pid, "started": self.started, "url": self.url, "secret": self.secret, "group": self.group}

    @classmethod
    def from_json(cls, data):
        return cls(**data) if data and data.get("pid") else None


class LocalBoardBackend(BoardBackend):
    """Boards as local processes on this machine (the embedded default)."""

    name = "local"

    tensorboard_command = List(
        Unicode(),
        config=True,
        help="""TensorBoard's command. Default: this Python's `-m kubestudio.tensorboards.guarded`, the
        `tensorboard` package's program answering only the service's proxy. Another command gets the
        board's secret in $KUBESTUDIO_RUNTIME_SECRET and must refuse requests without it in the
        X-KubeStudio-Runtime-Secret header, or any process on the machine reads the board.""",
    )

    @default("tensorboard_command")
    def _default_command(self):
        return [sys.executable, "-m", "kubestudio.tensorboards.guarded"]

    reload_interval = Integer(
        30, config=True, help="TensorBoard's --reload_interval: seconds between looks for new events."
    )
    start_timeout = Float(60, config=True, help="Seconds TensorBoard may take to answer before the board fails.")
    work_dir = Unicode(config=True, help="Where boards' link trees and TensorBoard's stderr are kept.")
    data_dir = Unicode(config=True, help="The hub's data folder (users' folders); the service's own by default.")

    @default("data_dir")
    def _default_data_dir(self):
        return self.parent.data_dir if self.parent is not None else os.path.abspath("data")

    @default("work_dir")
    def _default_work_dir(self):
        return os.path.abspath("tensorboards")

    async def connect(self):
        """Empty cgroups of boards whose service was killed before it removed them go."""
        await asyncio.to_thread(Containment(config=self.config).prune, "board-")

    def resolve(self, owner, logdirs):
        """The folders of ``owner``'s request as ``[(run name, folder on this machine)]``."""
        folders = user_folders(self.data_dir, owner)
        ensure_user_folders(folders)
        return resolve(logdirs, folders, (folders.workspace, folders.archives))

    def check_options(self, options):
        for field in ("image", "resources"):
            if field in options:
                raise LogdirError(
                    f"{field}: boards on this machine run the hub's own TensorBoard; an image and "
                    "resources per board are for the Kubernetes backend"
                )

    def from_refs(self, refs):
        return Running.from_json(refs)

    def folder(self, board_id):
        return os.path.join(self.work_dir, board_id)

    def stderr_path(self, board_id):
        return os.path.join(self.folder(board_id), "tensorboard.log")

    def stderr(self, board_id):
        """What TensorBoard wrote to stderr (its own log), the last part."""
        return read_tail(self.stderr_path(board_id), STDERR_TAIL)

    async def start(self, board_id, owner, resolved, prefix, options=None, project=None, progress=None):
        """Start TensorBoard on the ``resolved`` folders (through the board's link tree) under
        ``prefix``; a :class:`Running` once it answers, else :class:`BoardFailed`."""
        os.makedirs(self.folder(board_id), mode=0o700, exist_ok=True)
        tree = link_tree(os.path.join(self.folder(board_id), "logdir"), resolved)
        folders = user_folders(self.data_dir, owner)
        try:
            account = await UserAccounts(config=self.config).account_owning(owner, folders)
        except AccountError as e:
            raise BoardFailed(str(e)) from None
        # never the service's own environment: its hub token must not reach a process of the user's
        env = {k: os.environ[k] for k in ("PATH", "LANG", "LC_ALL", "TZ") if k in os.environ}
        env["HOME"] = folders.home
        if account is not None:
            # TensorBoard runs as the owner: it passes through the service's folders (not listable)
            # to the board's link tree, which only the owner's group may read
            os.chmod(self.work_dir, 0o711)
            for path in (self.folder(board_id), tree):
                os.chown(path, 0, account.gid)
                os.chmod(path, 0o750)
            env["USER"] = account.name
        secret = secrets.token_urlsafe(32)
        env[RUNTIME_SECRET_ENV] = secret
        argv = [
            *self.tensorboard_command,
            "--logdir",
            tree,
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--path_prefix",
            prefix.rstrip("/"),
            "--reload_interval",
            str(self.reload_interval),
        ]
        try:
            group = Containment(config=self.config).group(f"board-{board_id}")
            if group is not None:
                group.create()
        except (ValueError, OSError) as e:
            raise BoardFailed(f"cannot contain TensorBoard: {e} (Containment.mode)") from None
        with open(self.stderr_path(board_id), "wb") as err:
            proc = await start_process(account, argv, env, group=group, stdout=asyncio.subprocess.DEVNULL, stderr=err)
        running = None
        try:
            deadline = time.monotonic() + self.start_timeout
            while running is None:
                if proc.returncode is not None:
                    raise BoardFailed(f"TensorBoard exited with code {proc.returncode}: {self._tail(board_id)}")
                with open(self.stderr_path(board_id), "rb") as f:
                    match = LISTENING.search(f.read())
                if match:
                    running = Running(
                        pid=proc.pid,
                        started=process_start_time(proc.pid),
                        url=match.group(1).decode().rstrip("/"),
                        secret=secret,
                        group=group.path if group is not None else "",
                    )
                elif time.monotonic() > deadline:
                    raise BoardFailed(f"TensorBoard did not start in {self.start_timeout:g} s: {self._tail(board_id)}")
                else:
                    await asyncio.sleep(POLL_SECONDS)
            await self._wait_answers(running, proc, board_id, deadline)
        except BaseException:
            signal_group(proc.pid)
            Containment(config=self.config).remove_at(group.path if group is not None else "")
            raise
        asyncio.ensure_future(proc.wait())  # reaped when it ends; alive() reads /proc
        return running

    async def _wait_answers(self, running, proc, board_id, deadline):
        client = AsyncHTTPClient()
        while True:
            try:
                await client.fetch(running.url + "/data/runs", request_timeout=5, headers=running.headers)
                return
            except (HTTPClientError, OSError):
                pass
            if proc.returncode is not None:
                raise BoardFailed(f"TensorBoard exited with code {proc.returncode}: {self._tail(board_id)}")
            if time.monotonic() > deadline:
                raise BoardFailed(f"TensorBoard did not answer in {self.start_timeout:g} s: {self._tail(board_id)}")
            await asyncio.sleep(POLL_SECONDS)

    def _tail(self, board_id, lines=5):
        text = self.stderr(board_id).strip().splitlines()
        return " | ".join(text[-lines:]) or "no output"

    def alive(self, running):
        """Whether the TensorBoard recorded in ``running`` still runs (after a restart too)."""
        return running is not None and process_start_time(running.pid) == running.started

    def why_stopped(self, board_id, running):
        return self.stderr(board_id)[-500:].strip() or "no output"

    async def stop(self, board_id, running):
        """Stop a board's TensorBoard and what it started (all of its cgroup); idempotent."""
        if self.alive(running):
            signal_group(running.pid)
        if running is not None:
            await asyncio.to_thread(Containment(config=self.config).remove_at, running.group)

    async def logs(self, board_id, running):
        return self.stderr(board_id)
