"""The registry client against a real registry: found, not found, refused credentials, down."""

import asyncio
import base64
import json

import pytest

from kubestudio.registry import RegistryClient, RegistryError
from kubestudio.testing.ports import free_port

from ..conftest import REGISTRY_PASSWORD, REGISTRY_USER


def run(coro):
    return asyncio.run(coro)


def test_exists_and_size(registry):
    client = RegistryClient(registry.host, registry.auth, insecure=True)
    digest = run(client.exists("base/busybox", "1"))
    assert digest.startswith("sha256:")
    assert run(client.image_size("base/busybox", "1")) > 500_000  # busybox-static
    assert run(client.exists("base/busybox", "no-such-tag")) is None
    assert run(client.exists("nobody/nothing", "1")) is None


def test_refused_credentials_never_shown(registry, tmp_path):
    wrong = tmp_path / "wrong.json"
    token = base64.b64encode(f"{REGISTRY_USER}:not-the-password".encode()).decode()
    wrong.write_text(json.dumps({"auths": {registry.host: {"auth": token}}}))
    with pytest.raises(RegistryError) as e:
        run(RegistryClient(registry.host, str(wrong), insecure=True).exists("base/busybox", "1"))
    assert f"registry {registry.host} refused the configured credentials for base/busybox (HTTP 401)" == str(e.value)
    with pytest.raises(RegistryError, match="refused anonymous access"):
        run(RegistryClient(registry.host, "", insecure=True).exists("base/busybox", "1"))
    assert REGISTRY_PASSWORD not in str(e.value) and token not in str(e.value)


def test_registry_down_or_auth_file_broken(tmp_path):
    port = free_port()
    with pytest.raises(RegistryError, match=f"registry 127.0.0.1:{port} is not reachable"):
        run(RegistryClient(f"127.0.0.1:{port}", "", insecure=True).exists("a/b", "1"))
    broken = tmp_path / "auth.json"
    broken.write_text("{not json")
    with pytest.raises(RegistryError, match="credentials file .* cannot be read: JSONDecodeError"):
        run(RegistryClient(f"127.0.0.1:{port}", str(broken), insecure=True).exists("a/b", "1"))
