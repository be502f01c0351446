"""Ports chosen but not yet bound, claimed machine-wide.

A process that picks a free port for another process to listen on (a hub choosing its internal
ports, a test choosing a hub's) leaves a window, until that process binds it, in which the port
looks free to everyone else too: two hubs starting at once on one machine (two test runs, two
newcomers) both took the registry's 5000. So a choice is also claimed: a file named after the
port, made with ``O_EXCL`` in a folder every process on the machine shares. No other chooser takes
a claimed port for ``CLAIM_SECONDS``, by which time its listener holds it (and a bind check sees
that). Only new choices are claimed; a port a hub remembers is its own.
"""

import errno
import os
import stat
import tempfile
import time

CLAIM_SECONDS = 600


def shared_folder(name):
    """A folder every process on the machine shares (sticky and world-writable, like /tmp), opened
    as a descriptor; None when what is there cannot be trusted: a link, or a folder another account
    owns or that others may write without the sticky bit (a user who planted it could have root
    make or remove files where they choose)."""
    path = os.path.join(tempfile.gettempdir(), name)
    try:
        os.mkdir(path, 0o700)
        os.chmod(path, 0o1777)
    except FileExistsError:
        pass
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return None
    info = os.fstat(fd)
    if info.st_uid not in (0, os.geteuid()) or (info.st_mode & stat.S_IWOTH and not info.st_mode & stat.S_ISVTX):
        os.close(fd)
        return None
    return fd


def claim_in(folder_fd, key, seconds=CLAIM_SECONDS):
    """Claim ``key`` in the folder ``folder_fd`` for ``seconds``; False when another process holds
    it. A claim older than that is taken over (its process bound what it chose, or is gone)."""
    name = str(key)
    for _ in range(2):
        try:
            os.close(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=folder_fd))
            return True
        except FileExistsError:
            try:
                if time.time() - os.stat(name, dir_fd=folder_fd, follow_symlinks=False).st_mtime < seconds:
                    return False
                os.unlink(name, dir_fd=folder_fd)  # stale: remove and claim it (O_EXCL settles a race for it)
            except OSError as e:
                if e.errno != errno.ENOENT:
                    return False
        except OSError:
            return True  # cannot write there: the bind check alone decides
    return False


def claim(port):
    """Claim a loopback port chosen for a listener that is not bound yet; False: taken meanwhile."""
    folder = shared_folder("kubestudio-port-claims")
    if folder is None:
        return True  # no trustworthy shared folder: the bind check alone decides
    try:
        return claim_in(folder, port)
    finally:
        os.close(folder)
