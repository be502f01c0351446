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
import tempfile
import time

CLAIM_SECONDS = 600


def shared_folder(name):
    """A folder every process on the machine shares (sticky and world-writable, like /tmp)."""
    path = os.path.join(tempfile.gettempdir(), name)
    try:
        os.mkdir(path)
        os.chmod(path, 0o1777)
    except FileExistsError:
        pass
    return path


def claim_in(folder, key, seconds=CLAIM_SECONDS):
    """Claim ``key`` in ``folder`` for ``seconds``; False when another process holds it. A claim
    older than that is taken over (its process bound what it chose, or is gone)."""
    path = os.path.join(folder, str(key))
    for _ in range(2):
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
            return True
        except FileExistsError:
            try:
                if time.time() - os.stat(path).st_mtime < seconds:
                    return False
                os.unlink(path)  # stale: remove and claim it (O_EXCL settles a race for it)
            except OSError as e:
                if e.errno != errno.ENOENT:
                    return False
        except OSError:
            return True  # no shared folder to write in: the bind check alone decides
    return False


def claim(port):
    """Claim a loopback port chosen for a listener that is not bound yet; False: taken meanwhile."""
    try:
        folder = shared_folder("kubestudio-port-claims")
    except OSError:
        return True
    return claim_in(folder, port)
