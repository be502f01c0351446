"""Process groups: what KubeStudio starts on a machine (servers, base-image tools, bench pods)
leads a group of its own, so it can be stopped with everything it started."""

import os
import signal


def signal_group(pgid, sig=signal.SIGKILL):
    """Send ``sig`` to every process of group ``pgid``; False when the group is gone."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _stats():
    """(pid, the fields of /proc/<pid>/stat after the command's name) of every process: state,
    ppid, pgrp (index 2), ..., start time (index 19), rss in pages (index 21)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                yield int(entry), f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue


def rss_by_group():
    """Resident bytes of every process group on the machine, ``{pgid: bytes}`` (one pass over
    /proc): what a memory limit on a group of processes is measured against."""
    page = os.sysconf("SC_PAGE_SIZE")
    groups = {}
    for _pid, fields in _stats():
        try:
            pgid, rss = int(fields[2]), int(fields[21])
        except (IndexError, ValueError):
            continue
        groups[pgid] = groups.get(pgid, 0) + rss * page
    return groups


def descendants(pid):
    """Every process below ``pid`` (children, theirs, ...), as ``{pid: start time}``: also those
    that left its process group (a daemon in a session of its own). One pass over /proc."""
    parents = {}
    for child, fields in _stats():
        try:
            parents.setdefault(int(fields[1]), []).append((child, int(fields[19])))
        except (IndexError, ValueError):
            continue
    found, todo = {}, [pid]
    while todo:
        for child, started in parents.get(todo.pop(), []):
            if child not in found:
                found[child] = started
                todo.append(child)
    return found


def kill_known(processes, sig=signal.SIGKILL):
    """Send ``sig`` to each of ``{pid: start time}`` that is still that same process."""
    for pid, started in processes.items():
        if process_start_time(pid) == started:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass


def process_uid(pid):
    """The real uid of process ``pid``, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8") as f:
            for line in f:
                if line.startswith("Uid:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def process_start_time(pid):
    """Start time of process ``pid`` (clock ticks since boot), None if there is none."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError, TypeError):
        return None
    if fields[0] == "Z":  # a zombie has ended
        return None
    return int(fields[19])
