"""The embedded default's internal ports: chosen free, remembered, never shared by two hubs."""

import json
import socket

from traitlets.config import Config

from kubestudio.hub import configure
from kubestudio.hub.ports import CONVENTIONAL, resolve_ports


def hold(port):
    s = socket.socket()
    s.bind(("127.0.0.1", port))
    s.listen()
    return s


def test_chosen_once_then_remembered(tmp_path):
    first = resolve_ports(str(tmp_path), {})
    assert set(first) == set(CONVENTIONAL) and len(set(first.values())) == len(CONVENTIONAL)
    assert json.loads((tmp_path / "ports.json").read_text()) == first
    assert resolve_ports(str(tmp_path), {}) == first


def test_busy_conventional_port_gives_another(tmp_path):
    with hold(0) as s:
        busy = s.getsockname()[1]
        ports = resolve_ports(str(tmp_path / "a"), {"hub": busy})  # set: used as given
        assert ports["hub"] == busy
        (tmp_path / "b").mkdir()
        (tmp_path / "b" / "ports.json").write_text(json.dumps({"hub": busy, "images": busy, "registry": busy}))
        ports = resolve_ports(str(tmp_path / "b"), {})
        # a remembered port that is busy moves, but the registry's never does (images carry it)
        assert ports["images"] != busy and ports["registry"] == busy


def test_a_hub_service_reads_without_choosing(tmp_path):
    assert resolve_ports(str(tmp_path), {}, choose=False) == CONVENTIONAL
    assert not (tmp_path / "ports.json").exists()


def test_configure_wires_every_port(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBESTUDIO_PASSWORD", "pw")
    c = Config()
    configure(
        c,
        data_dir=str(tmp_path / "one"),
        hub_port=18081,
        proxy_api_port=18001,
        images_port=18101,
        local_registry_port=15000,
    )
    assert c.JupyterHub.hub_port == 18081
    assert c.ConfigurableHTTPProxy.api_url == "http://127.0.0.1:18001"
    images = next(s for s in c.JupyterHub.services if s["name"] == "images")
    assert images["url"] == "http://127.0.0.1:18101"
    assert c.ImageBuilder.registry_host == "127.0.0.1:15000"
    assert c.LocalWorkspaceSpawner.user_images_prefix == "127.0.0.1:15000/kubestudio/{user_slug}/"
    assert c.LocalWorkspaceSpawner.server_image == "127.0.0.1:15000/base/python:3.11"


def test_two_hubs_choosing_at_the_same_moment_never_share_a_port(tmp_path):
    """Neither has bound anything yet (both start at once): the first's choices are claimed
    machine-wide, so the second chooses others (kubestudio.portclaims)."""
    first = resolve_ports(str(tmp_path / "first"), {})
    second = resolve_ports(str(tmp_path / "second"), {})
    assert set(first.values()).isdisjoint(second.values()), (first, second)
    # a hub's own remembered ports stay its own (its claim does not move them)
    assert resolve_ports(str(tmp_path / "first"), {}) == first
