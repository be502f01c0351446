"""The embedded default's internal ports, so two hubs can run side by side on one machine.

Besides its public URL, a hub on one machine listens on six loopback ports: the hub itself
(JupyterHub's 8081), the proxy's REST API (8001), the image service (10101), the jobs service
(10102), the TensorBoard service (10103) and the local registry (5000). Each can be set; one left at 0 is chosen at the first start (the conventional
port when it is free, else any free one) and remembered in ``<data_dir>/ports.json``, so a
second hub with a data folder of its own never collides with the first (also when both start at
the same moment: a new choice is claimed machine-wide, kubestudio.portclaims), and a restart keeps
the same ports (images are named after the registry's address, so its port must not move).
"""

import json
import os
import socket

from ..names import CONVENTIONAL_PORTS
from ..portclaims import claim

CONVENTIONAL = CONVENTIONAL_PORTS
PORTS_FILE = "ports.json"
# a remembered port that is busy at start is only chosen again where moving it would break
# something: images carry the registry's address; a leftover proxy on its API port is stopped
# by JupyterHub itself (pid file) before a new one starts
STICKY = {"registry", "proxy_api"}


def port_is_free(port, host="127.0.0.1"):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def any_free_port(host="127.0.0.1"):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def read_ports(data_dir):
    try:
        with open(os.path.join(data_dir, PORTS_FILE), encoding="utf-8") as f:
            saved = json.load(f)
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in saved.items() if k in CONVENTIONAL and isinstance(v, int) and 0 < v < 65536}


def resolve_ports(data_dir, configured, choose=True):
    """{name: port} for every internal endpoint of the hub in ``data_dir``.

    ``configured`` maps names to ports set by the admin (0 or missing: choose). With
    ``choose=False`` nothing is probed or written: a hub service reads what the hub chose.
    """
    saved = read_ports(data_dir)
    ports = {}
    taken = set()
    for name, conventional in CONVENTIONAL.items():
        port = int(configured.get(name) or 0)
        if not port:
            port = saved.get(name, 0)
            if port and choose and name not in STICKY and not port_is_free(port):
                port = 0
        if not port and choose:
            # a new choice is claimed machine-wide: another hub starting at the same moment sees
            # the port free too, until this hub's listener binds it
            port = (
                conventional if conventional not in taken and port_is_free(conventional) and claim(conventional) else 0
            )
            while not port or port in taken:
                port = any_free_port()
                if not claim(port):
                    port = 0
        ports[name] = port or conventional
        taken.add(ports[name])
    if choose and ports != saved:
        os.makedirs(data_dir, exist_ok=True)
        path = os.path.join(data_dir, PORTS_FILE)
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            json.dump(ports, f, indent=2)
        os.replace(path + ".tmp", path)
    return ports
