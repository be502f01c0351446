"""Free loopback ports and address blocks for the test hubs and the Kubernetes test bench.

A port is chosen below the kernel's ephemeral range: one the kernel handed out (``bind(0)``) is
also where the local ends of outgoing connections come from, so between the choice and the bind
by the process that listens on it, any connection the tests or the hub's services open could take
it ("Address already in use"). Below that range only another explicit choice can, and that is
what the claim stops: test processes running side by side (pytest-xdist workers, two test runs
on one machine) and the hubs they start each choose ports, and a port is free to bind for all of
them until the process it was chosen for binds it, seconds later (kubestudio.portclaims).
"""

import random
import socket

from ..portclaims import claim

LOWEST = 15000  # above the conventional ports a hub itself prefers (8081, 10101-10103, ...)


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


def free_port():
    high = ephemeral_low() - 1
    if high > LOWEST:
        for _ in range(400):
            port = random.randint(LOWEST, high)
            if _bindable(port) and claim(port):
                return port
    with socket.socket() as s:  # no room below the ephemeral range: any free port
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
