"""Free loopback ports for the test hubs and the Kubernetes test bench."""

import socket


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
