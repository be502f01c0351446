"""Know exactly which processes a test run started, and find any it left behind.

The test process moves itself into a control group of its own (cgroup v2, else the v1 ``pids``
hierarchy). Whatever it starts, directly or through a hub, a proxy, a service or a server,
lands in that group and stays there when the process in between exits or daemonizes (a
server left running by a stopped hub, a proxy in a session of its own). "What did we start?" is
the group's member list: nothing else on the machine (another hub, another test run) is ever
looked at, and exit statuses stay with their parents (nothing is reaped behind their back).
"""

import os
import signal
import time


def _cgroup_roots():
    """(mount point, path of our own cgroup under it) for cgroup2, then for the v1 pids controller."""
    mounts = {}
    with open("/proc/self/mounts") as f:
        for line in f:
            _dev, where, fstype, options, *_ = line.split()
            if fstype == "cgroup2":
                mounts.setdefault("v2", where)
            elif fstype == "cgroup" and "pids" in options.split(","):
                mounts.setdefault("pids", where)
    own = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _num, controllers, path = line.rstrip("\n").split(":", 2)
            if controllers == "":
                own["v2"] = path
            elif "pids" in controllers.split(","):
                own["pids"] = path
    return [(mounts[k], own.get(k, "/")) for k in ("v2", "pids") if k in mounts]


class RunGroup:
    """The control group holding this test run's processes."""

    def __init__(self):
        self.path = None
        self.parent = None
        for mount, own in _cgroup_roots():
            parent = os.path.join(mount, own.lstrip("/"))
            path = os.path.join(parent, f"kubestudio-tests-{os.getpid()}")
            try:
                os.makedirs(path, exist_ok=True)
                with open(os.path.join(path, "cgroup.procs"), "w") as f:
                    f.write(str(os.getpid()))
            except OSError:
                try:
                    os.rmdir(path)
                except OSError:
                    pass
                continue
            self.path, self.parent = path, parent
            break

    @property
    def active(self):
        return self.path is not None

    def members(self):
        """PIDs in the group, but for the test process itself."""
        if not self.path:
            return []
        try:
            with open(os.path.join(self.path, "cgroup.procs")) as f:
                pids = [int(line) for line in f if line.strip()]
        except OSError:
            return []
        return [pid for pid in pids if pid != os.getpid()]

    def close(self):
        """Leave the group and remove it (the caller killed what was left)."""
        if not self.path:
            return
        try:
            with open(os.path.join(self.parent, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))
            os.rmdir(self.path)
        except OSError:
            pass
        self.path = None


_group = None


def track_this_run():
    """Put this process (and so everything it starts from now on) in a group of its own."""
    global _group
    if _group is None:
        _group = RunGroup()
    return _group


def command_line(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return None


def _stat(pid):
    """(ppid, state) of ``pid``, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode(errors="replace")
    except OSError:
        return None
    # the command name is in parentheses and may hold spaces: split after the last ')'
    fields = raw[raw.rindex(")") + 2 :].split()
    return int(fields[1]), fields[0]


def descendants(pid):
    """[(pid, command line)] of the live processes below ``pid`` (children, their children...)."""
    tree = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            info = _stat(int(entry))
            if info and info[1] != "Z":
                tree.setdefault(info[0], []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in tree.get(todo.pop(), ()):
            todo.append(child)
            found.append((child, command_line(child) or ""))
    return found


def ours():
    """PIDs this test run started that are still running; None when the run is not tracked."""
    group = _group
    if group is None or not group.active:
        return None
    return {pid for pid in group.members() if (_stat(pid) or (0, "Z"))[1] != "Z"}


def _touches(pid, folder):
    """The process works in ``folder`` or runs something from it."""
    try:
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        cwd = ""
    return cwd == folder or cwd.startswith(folder + os.sep) or folder in (command_line(pid) or "")


def leftovers(grace=5.0, within=None):
    """[(pid, command line)] of this run's processes still alive after ``grace`` seconds (those on
    their way out get the time to go); with ``within``, only those working in or running from
    that folder."""
    deadline = time.monotonic() + grace
    while True:
        left = [(pid, command_line(pid) or "?") for pid in sorted(ours() or ())]
        if within:
            left = [(pid, cmd) for pid, cmd in left if _touches(pid, os.path.realpath(within))]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.2)


def kill_all(processes):
    for pid, _ in processes:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
