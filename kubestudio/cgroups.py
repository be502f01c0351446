"""Containment of a user's processes on the embedded default: one cgroup per job node, serving and
board, with a memory limit (the kernel kills past it, and says so), a limit on the number of
processes, and a stop that kills every process inside, also those that left the process group
(``setsid``, ``nohup ... &``): nothing a user starts outlives its job.

Both kernels' interfaces are handled: cgroup v2 (one hierarchy, ``/sys/fs/cgroup``, what systemd
machines have) and cgroup v1 (one hierarchy per controller: ``pids`` and ``memory``).
:func:`detect` says which one this machine lets the service write; where neither (a service not
run as root, a read-only ``/sys/fs/cgroup``), limits fall back to what a process group allows
(memory sampled, the group killed) and :data:`FALLBACK_NOTE` says so on the spawn page and in the
log.
"""

import errno
import os
import signal
import time

from traitlets import CaselessStrEnum, Integer, Unicode
from traitlets.config import Configurable

ROOT = "/sys/fs/cgroup"
V1_CONTROLLERS = ("pids", "memory")
FALLBACK_NOTE = (
    "no writable cgroups on this machine: memory limits are sampled and a stop kills the process group, "
    "so a process that leaves its group (setsid) outlives its job, and the number of processes is not limited"
)


class Containment(Configurable):
    """How jobs, servings and boards are contained on this machine."""

    mode = CaselessStrEnum(
        ["auto", "v2", "v1", "off"],
        "auto",
        config=True,
        help="""`auto`: cgroup v2 where /sys/fs/cgroup is the unified hierarchy, else cgroup v1's pids and
        memory controllers, else none (limits by process group: see the admin guide). `v2`,
        `v1`: that one, or a clear error when it is not writable. `off`: never cgroups.""",
    )
    root_group = Unicode(
        "kubestudio",
        config=True,
        help="""The cgroup (under each hierarchy's root) that holds ours, one child per job node, serving
        and board. Two hubs on one machine may share it: the children are named by unique ids.""",
    )
    pids_limit = Integer(
        1024,
        config=True,
        help="""Most processes (and threads) one job rank, serving or board may have at once (pids.max);
        0: no limit. A fork past it fails with EAGAIN in the user's program.""",
    )

    def kind(self):
        """ "v2", "v1" or None (no cgroups here or mode off); ValueError when a mode set cannot be had."""
        if self.mode == "off":
            return None
        found = detect()
        if self.mode in ("v1", "v2") and found != self.mode:
            raise ValueError(
                f"Containment.mode is {self.mode}, but this machine "
                f"{'has no writable cgroups' if found is None else f'has cgroup {found}'}"
            )
        return found

    def group(self, name, memory=None, pids=None):
        """The :class:`Group` ``name`` under ``root_group`` (not made yet), or None without cgroups."""
        kind = self.kind()
        if kind is None:
            return None
        limit = self.pids_limit if pids is None else pids
        return Group(kind, f"{self.root_group}/{name}", memory=memory, pids=limit or None)

    def prune(self, prefix, min_age=60.0):
        """Remove the empty groups under ``root_group`` named ``prefix``... and older than ``min_age``
        seconds: left by a service that was killed before it could remove them. A group in use is
        never empty for longer than its start takes (and rmdir refuses a group with processes)."""
        try:
            kind = self.kind()
        except ValueError:
            return []
        if kind is None:
            return []
        removed = []
        first = Group(kind, self.root_group)._members_folder()
        try:
            names = [n for n in os.listdir(first) if n.startswith(prefix) and os.path.isdir(os.path.join(first, n))]
        except FileNotFoundError:
            return []
        for name in names:
            group = Group(kind, f"{self.root_group}/{name}")
            try:
                if time.time() - os.stat(group._members_folder()).st_mtime < min_age or group.processes():
                    continue
                for path in group.folders(every=True).values():
                    if os.path.isdir(path):
                        os.rmdir(path)
                removed.append(name)
            except OSError:
                continue
        return removed

    def remove_at(self, path):
        """Kill what is left in the group at ``path`` (as :attr:`Group.path` recorded it) and remove
        it; nothing without cgroups or without a path."""
        group = self.group_at(path) if path else None
        if group is not None:
            group.remove()

    def group_at(self, path):
        """The :class:`Group` at ``path`` (as :attr:`Group.path` recorded it), or None without cgroups."""
        try:
            kind = self.kind()
        except ValueError:
            return None
        return Group(kind, path) if kind else None


def detect():
    """Which cgroups the service may write: "v2", "v1" or None."""
    if os.geteuid() != 0:
        return None
    if os.path.exists(os.path.join(ROOT, "cgroup.controllers")):
        controllers = _read(os.path.join(ROOT, "cgroup.controllers")).split()
        if {"memory", "pids"} <= set(controllers) and os.access(ROOT, os.W_OK):
            return "v2"
        return None
    if all(os.access(os.path.join(ROOT, c, "cgroup.procs"), os.W_OK) for c in V1_CONTROLLERS):
        return "v1"
    return None


def _read(path):
    with open(path, encoding="ascii") as f:
        return f.read()


def _write(path, text):
    with open(path, "w", encoding="ascii") as f:
        f.write(text)


class Group:
    """One cgroup (in the v1 hierarchies it needs, or once in v2): made with :meth:`create`, a
    process put in with :meth:`add` (its children follow), emptied with :meth:`kill`, removed with
    :meth:`remove`.

    On v1 a process is moved into as few hierarchies as the limits need (``pids`` always: it lists
    the members and limits their number; ``memory`` only with a memory limit), and it moves itself
    (:meth:`join_files`), which is free; a move by pid waits for the kernel's cgroup lock, a few
    milliseconds on a busy machine, on a rank's way to its first line. v1's kill needs no freezer: every member is killed until none is left (a fork
    in between is caught by the next round, and ``pids.max`` bounds them).
    """

    def __init__(self, kind, path, memory=None, pids=None, root=ROOT):
        self.kind, self.path, self.memory, self.pids, self.root = kind, path.strip("/"), memory, pids, root
        self.controllers = ("pids", "memory") if memory else ("pids",)

    def __repr__(self):
        return f"Group({self.kind}:{self.path})"

    def folders(self, every=False):
        """{controller: folder} (v2: {None: folder}); ``every``: in each v1 hierarchy it may be in."""
        if self.kind == "v2":
            return {None: os.path.join(self.root, self.path)}
        return {c: os.path.join(self.root, c, self.path) for c in (V1_CONTROLLERS if every else self.controllers)}

    def create(self):
        """Make the cgroup (and its parents) with its limits; idempotent."""
        if self.kind == "v2":
            self._enable_v2_controllers()
        for controller, folder in self.folders().items():
            os.makedirs(folder, exist_ok=True)
            if controller in ("memory", None) and self.memory:
                _write(
                    os.path.join(folder, "memory.max" if controller is None else "memory.limit_in_bytes"),
                    str(int(self.memory)),
                )
                if controller is None:
                    _swallow(_write, os.path.join(folder, "memory.swap.max"), "0")
            if controller in ("pids", None) and self.pids:
                _write(os.path.join(folder, "pids.max"), str(int(self.pids)))
        return self

    def _enable_v2_controllers(self):
        # a v2 child gets a controller only when every parent hands it down (subtree_control)
        parts = self.path.split("/")[:-1]
        folder = self.root
        for part in [None, *parts]:
            if part is not None:
                folder = os.path.join(folder, part)
                os.makedirs(folder, exist_ok=True)
            enabled = _read(os.path.join(folder, "cgroup.subtree_control")).split()
            missing = [c for c in ("memory", "pids") if c not in enabled]
            if missing:
                _write(os.path.join(folder, "cgroup.subtree_control"), " ".join(f"+{c}" for c in missing))

    def join_files(self):
        """Files a new process writes ``0`` to, to move itself in (v1's ``tasks``), or None (v2).

        A process moving its own (single) thread takes no global lock: the kernel skips the
        threadgroup lock for the current task, whose wait (one RCU grace period) is what a move of
        another process by pid costs, 5-15 ms. v2 moves whole processes only (``cgroup.procs``),
        so there the service moves the process (:meth:`add`)."""
        if self.kind != "v1":
            return None
        return [os.path.join(folder, "tasks") for folder in self.folders().values()]

    def add(self, pid):
        """Move process ``pid`` into the cgroup (in every hierarchy it needs)."""
        for folder in self.folders().values():
            _write(os.path.join(folder, "cgroup.procs"), str(pid))

    def _members_folder(self):
        return os.path.join(self.root, self.path) if self.kind == "v2" else os.path.join(self.root, "pids", self.path)

    def processes(self):
        """PIDs in the cgroup now (none when it is gone)."""
        try:
            return [int(p) for p in _read(os.path.join(self._members_folder(), "cgroup.procs")).split()]
        except FileNotFoundError:
            return []

    def oom_kills(self):
        """How many processes the kernel killed for the memory limit."""
        if self.kind == "v2":
            path = os.path.join(self.root, self.path, "memory.events")
        else:
            path = os.path.join(self.root, "memory", self.path, "memory.oom_control")
        try:
            text = _read(path)
        except FileNotFoundError:
            return 0
        for line in text.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == "oom_kill":
                return int(parts[1])
        return 0

    def kill(self, timeout=5.0):
        """Kill every process inside (v2: all at once with cgroup.kill, else frozen first); True once
        empty."""
        folder = os.path.join(self.root, self.path)
        kill_file = os.path.join(folder, "cgroup.kill")
        frozen = False
        if self.kind == "v2":
            if os.path.exists(kill_file):
                _swallow(_write, kill_file, "1")
            else:
                frozen = True
                _swallow(_write, os.path.join(folder, "cgroup.freeze"), "1")
        deadline = time.monotonic() + timeout
        while True:
            pids = self.processes()
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if frozen:
                _swallow(_write, os.path.join(folder, "cgroup.freeze"), "0")  # killed frozen processes die once thawed
            if not pids:
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)

    def remove(self):
        """Kill what is left and remove the cgroup (the parents stay: other hubs' groups share them)."""
        self.kill()
        for folder in self.folders(every=True).values():
            for _ in range(100):
                try:
                    os.rmdir(folder)
                    break
                except FileNotFoundError:
                    break
                except OSError as e:
                    if e.errno != errno.EBUSY:
                        raise
                    time.sleep(0.01)  # the last processes are still being reaped


def _swallow(action, *args):
    try:
        action(*args)
    except OSError:
        pass
