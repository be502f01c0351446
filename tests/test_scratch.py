"""Benchmarks' scratch folders: removed when the run ends, never through a mount left inside."""

import os
import subprocess
import sys

from kubestudio.testing.scratch import remove_unless_mounted

CHECK = """
import os, subprocess, sys
from kubestudio.testing.scratch import scratch_folder
folder = scratch_folder("kubestudio-scratch-test-")
print(folder, flush=True)
os.makedirs(os.path.join(folder, "a", "b"))
if sys.argv[1] == "mounted":
    os.makedirs(os.path.join(folder, "mnt"))
    subprocess.run(["mount", "-t", "tmpfs", "none", os.path.join(folder, "mnt")], check=True)
    open(os.path.join(folder, "mnt", "data"), "w").close()
"""


def run(mode):
    # a mount namespace of its own: the tmpfs is gone with the process, whatever happens here
    argv = ["unshare", "--mount", "--propagation", "private", sys.executable, "-c", CHECK, mode]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True)
    return done.stdout.strip(), done.stderr


def test_a_scratch_folder_is_removed_when_the_process_ends():
    folder, _ = run("plain")
    assert folder.startswith("/") and not os.path.exists(folder)


def test_a_folder_with_a_mount_inside_is_left_as_it_is():
    folder, said = run("mounted")
    try:
        assert os.path.isdir(os.path.join(folder, "a", "b")) and os.path.isdir(os.path.join(folder, "mnt"))
        assert f"left {folder}: still mounted there: {folder}/mnt" in said
    finally:
        remove_unless_mounted(folder)  # the mount went with its namespace: now it goes
    assert not os.path.exists(folder)
