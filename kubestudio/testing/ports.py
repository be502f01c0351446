"""Free loopback ports and address blocks for the test hubs and the Kubernetes test bench.

A port is chosen below the kernel's ephemeral range: one the kernel handed out (``bind(0)``) is
also where the local ends of outgoing connections come from, so between the choice and the bind
by the process that listens on it, any connection the tests or the hub's services open could take
it ("Address already in use"). Below that range only another explicit choice can, and that is
what the reservation stops: test processes running side by side (pytest-xdist workers, two test
runs on one machine) each choose ports, and a port is free to bind for all of them until the
process it was chosen for binds it, seconds later. So a choice is also recorded, machine-wide, as
a file made with ``O_EXCL`` in a shared folder; no other test process takes that port for
``RESERVED_SECONDS``, by which time its listener holds it (and the bind check keeps it).
"""

import errno
import os
import random
import socket
import tempfile
import time

LOWEST = 15000  # above the conventional ports a hub itself prefers (8081, 10101-10103, ...)
RESERVED_SECONDS = 600


def ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def shared_folder(name):
    """A folder every test process on the machine shares (sticky and world-writable, like /tmp)."""
    path = os.path.join(tempfile.gettempdir(), name)
    try:
        os.mkdir(path)
        os.chmod(path, 0o1777)
    except FileExistsError:
        pass
    return path


def reserve(folder, key, seconds=RESERVED_SECONDS):
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


def free_port():
    high = ephemeral_low() - 1
    if high > LOWEST:
        folder = shared_folder("kubestudio-test-ports")
        for _ in range(400):
            port = random.randint(LOWEST, high)
            if _bindable(port) and reserve(folder, port):
                return port
    with socket.socket() as s:  # no room below the ephemeral range: any free port
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
