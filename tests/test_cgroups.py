"""Containment of users' processes (kubestudio.cgroups): on this machine's real cgroups (v1 here, v2
where the machine has it), and the files a v2 group is made of, checked on a folder laid out as
cgroup2's."""

import os
import subprocess
import sys
import time

import pytest

from kubestudio.cgroups import Containment, Group, detect
from kubestudio.testing.wait import wait_for

real = pytest.mark.skipif(detect() is None, reason="no writable cgroups here (run as root on a machine with them)")


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@real
def test_a_group_holds_a_process_and_everything_it_starts_and_kills_them_all():
    name = f"test-{os.getpid()}-{time.monotonic_ns()}"
    group = Containment().group(name, memory=64 * 2**20, pids=16).create()
    try:
        gate, release = os.pipe()
        # waits for the go (as kubestudio.launch does), then leaves its process group and session
        proc = subprocess.Popen(
            [
                "/bin/bash",
                "-c",
                f"read -u {gate} _; setsid -f sleep 300; "
                'python3 -c "x = bytearray(256 * 2**20)"; echo "exit $?"; sleep 300',
            ],
            pass_fds=(gate,),
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        os.close(gate)
        group.add(proc.pid)
        os.close(release)
        assert proc.stdout.readline().strip() == "exit 137"  # the kernel's OOM kill, at the group's limit
        assert group.oom_kills() == 1
        # bash (which execs its last command, sleep) and the escaped sleep
        wait_for(lambda: len(group.processes()) == 2, timeout=5, what="two processes in the group")
        members = group.processes()
        assert proc.pid in members
        assert group.kill() and group.processes() == []
        proc.wait(timeout=10)
        wait_for(lambda: not any(_alive(p) for p in members), timeout=5, what="every member to be gone")
        # the number of processes is the kernel's too
        limited = subprocess.run(
            [
                sys.executable,
                "-c",
                "import subprocess\nps = []\ntry:\n    for _ in range(40):\n"
                "        ps.append(subprocess.Popen(['sleep', '30']))\nexcept OSError:\n    pass\n"
                "print(len(ps))\nfor p in ps: p.kill()\n",
            ],
            capture_output=True,
            text=True,
            preexec_fn=lambda: group.add(os.getpid()),
        )
        assert int(limited.stdout) < 16, limited
    finally:
        group.remove()
    assert all(not os.path.exists(folder) for folder in group.folders(every=True).values())


@real
def test_prune_removes_only_empty_groups_older_than_it_is_told(tmp_path):
    containment = Containment()
    stale = containment.group(f"prunetest-{os.getpid()}-old").create()
    fresh = containment.group(f"prunetest-{os.getpid()}-new").create()
    busy = containment.group(f"prunetest-{os.getpid()}-busy").create()
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        busy.add(sleeper.pid)
        old = time.time() - 3600
        for group in (stale, busy):
            for folder in group.folders().values():
                os.utime(folder, (old, old))
        assert containment.prune(f"prunetest-{os.getpid()}-") == [f"prunetest-{os.getpid()}-old"]
        assert os.path.exists(next(iter(fresh.folders().values())))
        assert busy.processes() == [sleeper.pid]
    finally:
        sleeper.kill()
        sleeper.wait()
        for group in (stale, fresh, busy):
            group.remove()


def test_a_v2_group_gets_its_controllers_and_limits_from_its_parents(tmp_path):
    # a folder laid out as cgroup2's root, with cgroup.kill (Linux 5.14+)
    (tmp_path / "cgroup.subtree_control").write_text("cpu")
    group = Group("v2", "kubestudio/job-1-1-node-0", memory=100 * 2**20, pids=64, root=str(tmp_path))
    (tmp_path / "kubestudio").mkdir()
    (tmp_path / "kubestudio" / "cgroup.subtree_control").write_text("")
    group.create()
    folder = tmp_path / "kubestudio" / "job-1-1-node-0"
    assert (tmp_path / "cgroup.subtree_control").read_text() == "+memory +pids"
    assert (tmp_path / "kubestudio" / "cgroup.subtree_control").read_text() == "+memory +pids"
    assert (folder / "memory.max").read_text() == str(100 * 2**20)
    assert (folder / "memory.swap.max").read_text() == "0"
    assert (folder / "pids.max").read_text() == "64"
    (folder / "memory.events").write_text("low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\n")
    assert group.oom_kills() == 1
    (folder / "cgroup.procs").write_text("")
    (folder / "cgroup.kill").write_text("")
    assert group.kill()
    assert (folder / "cgroup.kill").read_text() == "1"


def test_a_mode_that_this_machine_cannot_have_is_a_clear_error(monkeypatch):
    monkeypatch.setattr("kubestudio.cgroups.detect", lambda: None)
    with pytest.raises(ValueError, match="Containment.mode is v2, but this machine has no writable cgroups"):
        Containment(mode="v2").group("x")
    assert Containment().group("x") is None  # auto: none, limits by process group
    assert Containment(mode="off").group("x") is None
