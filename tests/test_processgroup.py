"""What a process started, also what left its process group, found and stopped (the bench's
kubelet ends a container's processes this way, as a cgroup would)."""

import os
import subprocess
import sys
import time

from kubestudio.processgroup import descendants, kill_known, process_start_time

# a parent that starts a child in a session of its own (as JupyterHub starts its services)
PARENT = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
print(child.pid, flush=True)
time.sleep(60)
"""


def test_a_child_in_its_own_session_is_found_and_stopped():
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        child = int(parent.stdout.readline())
        assert os.getpgid(child) != os.getpgid(parent.pid)  # out of the parent's group
        tree = descendants(parent.pid)
        assert tree == {child: process_start_time(child)}
        kill_known(tree)
        deadline = time.monotonic() + 10
        while process_start_time(child) is not None:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        # a pid now gone, or reused by another process, is left alone
        kill_known({child: tree[child]})
        kill_known({os.getpid(): 1})  # not this process: its start time differs
    finally:
        parent.kill()
        parent.wait()
