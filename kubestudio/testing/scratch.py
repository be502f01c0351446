"""Scratch folders of benchmarks and dry runs: made fresh, removed when the process ends."""

import atexit
import os
import shutil
import sys
import tempfile


def mounts_under(folder):
    """Mount points at or below ``folder`` in this process's mount namespace."""
    folder = os.path.realpath(folder)
    found = []
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        for line in f:
            point = line.split()[4].encode().decode("unicode_escape")  # \040 for a space, as fstab writes it
            if point == folder or point.startswith(folder + os.sep):
                found.append(point)
    return found


def remove_unless_mounted(folder):
    """Remove ``folder``, unless something is still mounted inside it: removing would then reach
    through the mount into what it shows (that folder is left, with a line saying why)."""
    if not os.path.isdir(folder):
        return
    mounted = mounts_under(folder)
    if mounted:
        print(f"left {folder}: still mounted there: {', '.join(mounted)}", file=sys.stderr)
        return
    shutil.rmtree(folder, ignore_errors=True)


def scratch_folder(prefix):
    """A new folder in the system's temporary folder, removed when the process exits
    (:func:`remove_unless_mounted`): a benchmark leaves nothing in /tmp."""
    folder = tempfile.mkdtemp(prefix=prefix)
    atexit.register(remove_unless_mounted, folder)
    return folder
