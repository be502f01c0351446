"""The registry client against a real registry: found, not found, refused credentials, down."""

import asyncio
import base64
import json
import os

import pytest

from kubestudio.registry import RegistryClient, RegistryError
from kubestudio.testing.httpstub import answering
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


def test_an_image_kept_in_the_cache_is_pushed_whole_into_another_registry(registry, tmp_path):
    """The image cache (base images made once per machine): out of one real registry into files,
    every blob checked, then into a second registry that has nothing, where skopeo reads it back."""
    from kubestudio.image_builder.imagecache import ImageCache
    from kubestudio.testing.registry import LocalRegistry, skopeo_inspect

    source = RegistryClient(registry.host, registry.auth, insecure=True)
    cache = ImageCache(str(tmp_path / "images"), source)
    key = ["rootfs", "bookworm", ["busybox-static"]]
    assert not cache.has("base/busybox", "1", key)
    assert run(cache.restore("base/busybox", "1", key)) is False  # nothing kept yet
    assert run(cache.save("base/busybox", "1", key)) is True
    assert cache.has("base/busybox", "1", key) and not cache.has("base/busybox", "1", key + ["other"])
    entry = cache.entry("base/busybox", "1", key)
    assert sorted(os.listdir(entry)) == ["blobs", "manifest", "media-type"]
    blobs = os.listdir(os.path.join(entry, "blobs"))
    assert len(blobs) >= 2 and not [n for n in os.listdir(tmp_path / "images") if n.endswith(".partial")]
    # an image that shares layers with one kept (the single-user image and the image it is made
    # from) keeps one copy of each: linked, not fetched again
    assert run(cache.save("base/busybox", "1", key + ["next"])) is True
    again = cache.entry("base/busybox", "1", key + ["next"])
    assert sorted(os.listdir(os.path.join(again, "blobs"))) == sorted(blobs)
    assert all(
        os.stat(os.path.join(again, "blobs", b)).st_ino == os.stat(os.path.join(entry, "blobs", b)).st_ino
        for b in blobs
    )

    with LocalRegistry(tmp_path / "second", user=REGISTRY_USER, password=REGISTRY_PASSWORD) as second:
        auth = second.auth_file(str(tmp_path / "second-auth.json"))
        target = RegistryClient(second.host, auth, insecure=True)
        assert run(target.exists("base/busybox", "1")) is None
        assert run(ImageCache(cache.folder, target).restore("base/busybox", "1", key)) is True
        # the same image, digest for digest
        assert run(target.exists("base/busybox", "1")) == run(source.exists("base/busybox", "1"))
        inspected = skopeo_inspect(f"{second.host}/base/busybox:1", auth_file=auth)
        assert inspected["Digest"] == run(source.exists("base/busybox", "1"))
        # pushed again: the blobs are there, nothing is uploaded twice, the tag still resolves
        assert run(ImageCache(cache.folder, target).restore("base/busybox", "1", key)) is True


def test_a_blob_that_is_not_what_its_digest_says_is_refused(tmp_path):
    """A registry (or something in between) that sends other bytes than the digest names."""
    import hashlib

    with answering(b"not the layer you asked for") as server:
        client = RegistryClient(f"127.0.0.1:{server.server_port}", "", insecure=True)
        digest = "sha256:" + hashlib.sha256(b"the real layer").hexdigest()
        with pytest.raises(RegistryError, match=f"sent a blob for a/b whose digest is not {digest}"):
            run(client.get_blob("a/b", digest, str(tmp_path / "blob")))
        with pytest.raises(RegistryError, match="unsupported digest"):
            run(client.get_blob("a/b", "md5:abc", str(tmp_path / "blob")))


def test_base_images_wait_for_a_registry_that_is_still_starting(tmp_path):
    """The embedded hub starts its registry beside the image service: the first look for a base
    image asks again until the registry answers, instead of making an image the cache holds."""
    import threading

    from kubestudio.image_builder.bases import BasePreparer, base_from_config
    from kubestudio.registry import RegistryUnreachable
    from kubestudio.testing.registry import LocalRegistry

    late = LocalRegistry(tmp_path / "late", user=REGISTRY_USER, password=REGISTRY_PASSWORD)
    auth = late.auth_file(str(tmp_path / "auth.json"))
    base = base_from_config({"image": "base/python:3.11", "packages": ["python3"]})
    preparer = BasePreparer(
        [base], late.host, RegistryClient(late.host, auth, insecure=True), None, str(tmp_path), None
    )
    with pytest.raises(RegistryUnreachable):
        run(preparer._in_registry(base, wait=0))  # nothing answers yet
    starter = threading.Timer(1.0, late.start)
    starter.start()
    try:
        assert run(preparer._in_registry(base, wait=30)) is False  # it answered: the base is not there
    finally:
        starter.join()
        late.stop()
