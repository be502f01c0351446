"""What lets test processes run side by side on one machine (pytest-xdist workers, two test runs):
ports chosen by one are never handed to another before it binds them, and every Kubernetes test
bench gets loopback addresses of its own."""

import os
import time

from kubestudio.portclaims import claim_in as reserve
from kubestudio.testing.kubebench.bench import claim_address_block
from kubestudio.testing.kubebench.kubelet import PodIPs
from kubestudio.testing.kubebench.network import ServiceNetwork, address_octets
from kubestudio.testing.ports import free_port


def test_a_reserved_port_is_not_chosen_again_until_its_claim_is_stale(tmp_path):
    folder = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert reserve(folder, 20001) is True
        assert reserve(folder, 20001) is False  # another process's choice, not yet bound
        old = time.time() - 3600
        os.utime(os.path.join(tmp_path, "20001"), (old, old))
        assert reserve(folder, 20001, seconds=600) is True  # stale: its process bound it or is gone
    finally:
        os.close(folder)


def test_a_planted_shared_folder_is_not_trusted(tmp_path, monkeypatch):
    """A user who made the shared folder first (a link elsewhere, or a folder of theirs that others
    may write without the sticky bit) gets no file made or removed by root through it."""
    import tempfile

    from kubestudio.portclaims import claim, shared_folder

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    target = tmp_path / "elsewhere"
    target.mkdir()
    (tmp_path / "kubestudio-port-claims").symlink_to(target)
    assert shared_folder("kubestudio-port-claims") is None
    assert claim(20002) is True and os.listdir(target) == []  # the bind check alone decides
    loose = tmp_path / "loose"
    loose.mkdir()
    os.chmod(loose, 0o777)
    assert shared_folder("loose") is None


def test_free_ports_differ_and_are_reserved():
    ports = {free_port() for _ in range(50)}
    assert len(ports) == 50
    assert all(reserve_taken(port) for port in ports)


def reserve_taken(port):
    import tempfile

    return os.path.exists(os.path.join(tempfile.gettempdir(), "kubestudio-port-claims", str(port)))


def test_benches_side_by_side_get_address_blocks_of_their_own():
    first_lock, first = claim_address_block()
    second_lock, second = claim_address_block()  # held by another open file: as another process's bench
    try:
        assert first != second
        pods_1, services_1 = address_octets(first)
        pods_2, services_2 = address_octets(second)
        assert len({pods_1, services_1, pods_2, services_2}) == 4
        assert PodIPs(pods_1).take() != PodIPs(pods_2).take()
        assert PodIPs(pods_2).take().startswith(f"127.{pods_2}.")
        net = ServiceNetwork(lambda: [], services_2)
        assert next(net._free).startswith(f"127.{services_2}.")
    finally:
        second_lock.close()
    # a block still held is never handed out; the one given back is free again
    again_lock, again = claim_address_block()
    again_lock.close()
    first_lock.close()
    assert again != first
    assert address_octets(0) == (1, 2)  # the first bench on a machine: pods on 127.1, Services on 127.2
