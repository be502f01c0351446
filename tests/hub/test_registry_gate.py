"""The local registry's gate with a build's grant (issue 27): the real gate in front of the real
registry (Debian docker-registry), as the hub runs them. What a build may pull or push is decided
by the repository each request names, whatever the Dockerfile said."""

import hashlib
import json
import os
import shutil
import subprocess
import sys

import pytest
import requests

from kubestudio.registry_grants import remove_grant, write_grant
from kubestudio.testing.ports import free_port
from kubestudio.testing.wait import wait_for

pytestmark = pytest.mark.skipif(not shutil.which("docker-registry"), reason="needs docker-registry")

PUSH = ("kubestudio-push", "push-secret")
PULL = ("kubestudio-pull", "pull-secret")
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture(scope="module")
def gate(tmp_path_factory):
    root = tmp_path_factory.mktemp("gate")
    socket_path, grants = str(root / "registry.sock"), str(root / "grants")
    (root / "credentials.json").write_text(
        json.dumps({"push": {"user": PUSH[0], "password": PUSH[1]}, "pull": {"user": PULL[0], "password": PULL[1]}})
    )
    (root / "registry.yml").write_text(
        f"version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n"
        f"    rootdirectory: {root / 'data'}\n  delete:\n    enabled: true\nhttp:\n  net: unix\n  addr: {socket_path}\n"
    )
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kubestudio.hub.registry_gate",
            "--listen",
            f"127.0.0.1:{port}",
            "--socket",
            socket_path,
            "--credentials",
            str(root / "credentials.json"),
            "--grants",
            grants,
            "--",
            "docker-registry",
            "serve",
            str(root / "registry.yml"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(url, auth=PULL), timeout=30, what="the gate and its registry")
        images = {
            repo: push_image(url, repo, "v1", f"{repo} data".encode())
            for repo in ("kubestudio/jack/private", "kubestudio/ivy/own", "base/python")
        }
        yield url, grants, images
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def _answers(url, auth):
    try:
        return requests.get(f"{url}/v2/", auth=auth, timeout=2).status_code == 200
    except requests.ConnectionError:
        return False


def push_image(url, repository, tag, content, auth=PUSH):
    """A one-layer image pushed with ``auth``: its layer's digest."""
    digests = []
    for blob in (content, b"{}"):
        digest = "sha256:" + hashlib.sha256(blob).hexdigest()
        start = requests.post(f"{url}/v2/{repository}/blobs/uploads/", auth=auth, timeout=10)
        assert start.status_code == 202, start.text
        location = start.headers["Location"]
        location = location if location.startswith("http") else url + location
        done = requests.put(
            location,
            params={"digest": digest},
            data=blob,
            auth=auth,
            timeout=10,
            headers={"Content-Type": "application/octet-stream"},
        )
        assert done.status_code == 201, done.text
        digests.append((digest, len(blob)))
    (layer, layer_size), (config, config_size) = digests
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": layer_size}],
    }
    r = requests.put(
        f"{url}/v2/{repository}/manifests/{tag}",
        data=json.dumps(manifest),
        auth=auth,
        timeout=10,
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert r.status_code == 201, r.text
    return layer


def test_a_builds_grant_reads_only_what_its_user_may_and_pushes_only_its_repository(gate):
    url, grants, images = gate
    build = ("build-ivy1", "the-build-password")
    write_grant(grants, *build, read=["kubestudio/ivy/*", "base/*"], push=["kubestudio/ivy/new"], ttl=60)
    accept = {"Accept": OCI_MANIFEST}

    def call(method, path, auth=build, **kwargs):
        return requests.request(method, url + path, auth=auth, timeout=10, **kwargs)

    assert call("GET", "/v2/").status_code == 200
    for repo in ("kubestudio/ivy/own", "base/python"):
        assert call("GET", f"/v2/{repo}/manifests/v1", headers=accept).status_code == 200, repo
        assert call("GET", f"/v2/{repo}/blobs/{images[repo]}").content == f"{repo} data".encode()
    jack = "kubestudio/jack/private"
    refusals = [
        call("GET", f"/v2/{jack}/manifests/v1", headers=accept),
        call("HEAD", f"/v2/{jack}/manifests/v1", headers=accept),
        call("GET", f"/v2/{jack}/blobs/{images[jack]}"),
        call("GET", f"/v2/{jack}/tags/list"),
        call("GET", "/v2/_catalog"),
        # spellings the registry would decode or route to jack's repository
        call("GET", "/v2/kubestudio%2Fjack%2Fprivate/manifests/v1", headers=accept),
        call("GET", "/v2/kubestudio/ivy/../jack/private/manifests/v1", headers=accept),
        call("GET", "/v2/kubestudio/ivy/own/../../jack/private/manifests/v1", headers=accept),
        call("GET", "/v2//kubestudio/jack/private/manifests/v1", headers=accept),
        # writes anywhere but its own repository, deletes, and a mount of jack's layer into its own
        call("POST", f"/v2/{jack}/blobs/uploads/"),
        call("POST", "/v2/kubestudio/ivy/own/blobs/uploads/"),
        call("POST", "/v2/kubestudio/ivy/new/blobs/uploads/", params={"mount": images[jack], "from": jack}),
        call("DELETE", f"/v2/kubestudio/ivy/new/manifests/{images[jack]}"),
        call("PUT", f"/v2/{jack}/manifests/v2", data="{}", headers={"Content-Type": OCI_MANIFEST}),
    ]
    for r in refusals:
        assert r.status_code == 403, (r.request.method, r.request.url, r.status_code, r.text)
        if r.request.method != "HEAD":
            assert r.json()["errors"][0]["code"] == "DENIED"
        assert b"jack data" not in r.content
    assert "may not read kubestudio/jack/private" in refusals[0].json()["errors"][0]["message"]
    assert "may push only to its own repository" in refusals[9].json()["errors"][0]["message"]
    # its own repository: a whole push works, and a layer it may read can be mounted
    push_image(url, "kubestudio/ivy/new", "v1", b"ivy's new layer", auth=build)
    mounted = call(
        "POST", "/v2/kubestudio/ivy/new/blobs/uploads/", params={"mount": images["base/python"], "from": "base/python"}
    )
    assert mounted.status_code == 201, mounted.text
    # a wrong password, another build's name, an odd name, an expired or removed grant: 401
    for auth in (
        ("build-ivy1", "guess"),
        ("build-ivy2", "the-build-password"),
        ("build-../grants/x", "x"),
        ("kubestudio-push", "the-build-password"),
    ):
        assert call("GET", "/v2/base/python/manifests/v1", auth=auth, headers=accept).status_code == 401, auth
    write_grant(grants, "build-old", "pw", read=["*"], push=[], ttl=-1)
    assert call("GET", "/v2/base/python/manifests/v1", auth=("build-old", "pw"), headers=accept).status_code == 401
    remove_grant(grants, "build-ivy1")
    assert call("GET", "/v2/base/python/manifests/v1", headers=accept).status_code == 401
    # the grants hold a hash, never the password
    write_grant(grants, "build-ivy3", "plain-password", read=[], push=[], ttl=60)
    assert "plain-password" not in open(os.path.join(grants, "build-ivy3.json")).read()
    assert oct(os.stat(os.path.join(grants, "build-ivy3.json")).st_mode & 0o777) == "0o600"


def test_the_hubs_own_accounts_keep_their_rights(gate):
    url, _, images = gate
    jack = "kubestudio/jack/private"
    assert (
        requests.get(f"{url}/v2/{jack}/blobs/{images[jack]}", auth=PULL, timeout=10).content
        == b"kubestudio/jack/private data"
    )
    assert requests.post(f"{url}/v2/{jack}/blobs/uploads/", auth=PULL, timeout=10).status_code == 403
    assert requests.get(f"{url}/v2/_catalog", auth=PULL, timeout=10).status_code == 200
    assert requests.get(f"{url}/v2/", timeout=10).status_code == 401
    push_image(url, "kubestudio/anyone/else", "v1", b"x")  # the push account writes anywhere


def test_a_client_trying_tls_first_is_turned_away_at_once(gate):
    """containers/image (buildah, skopeo) tries TLS first on a registry it may reach over plain
    HTTP; the gate closes such a connection at once, so the client falls back now, not after its
    10 s handshake timeout, on every pull and push."""
    import socket
    import ssl
    import time

    url, _, _ = gate
    host, port = url.removeprefix("http://").split(":")
    started = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            context.wrap_socket(raw, server_hostname=host)
    assert time.monotonic() - started < 2
    # the plain-HTTP request after it is answered as before
    assert _answers(url, auth=PULL)
    if shutil.which("skopeo"):
        creds = f"{PULL[0]}:{PULL[1]}"
        started = time.monotonic()
        run = subprocess.run(
            [
                "skopeo",
                "inspect",
                "--raw",
                "--tls-verify=false",
                "--creds",
                creds,
                f"docker://{host}:{port}/base/python:v1",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert run.returncode == 0, run.stderr
        assert time.monotonic() - started < 5, "skopeo waited for a TLS handshake the gate never finishes"


@pytest.fixture(scope="module")
def upstream_gate(tmp_path_factory):
    """The gate as the chart runs it: in front of a registry of its own (TCP, htpasswd), with the
    upstream's credentials in a Docker config file and builds' grants only."""
    from kubestudio.testing.registry import LocalRegistry

    root = tmp_path_factory.mktemp("upstream-gate")
    registry = LocalRegistry(root / "registry", user="admin-push", password="upstream-secret").start()
    upstream_auth = registry.auth_file(str(root / "upstream.json"))
    grants, port = str(root / "grants"), free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kubestudio.hub.registry_gate",
            "--listen",
            f"127.0.0.1:{port}",
            "--upstream",
            f"http://{registry.host}",
            "--upstream-auth",
            upstream_auth,
            "--grants",
            grants,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _status(url) == 401, timeout=30, what="the gate")
        upstream = f"http://{registry.host}"
        admin = (registry.user, registry.password)
        images = {
            repo: push_image(upstream, repo, "v1", f"{repo} data".encode(), auth=admin)
            for repo in ("kubestudio/jack/private", "base/python")
        }
        yield url, grants, images, upstream, admin
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        registry.stop()


def _status(url):
    try:
        return requests.get(f"{url}/v2/", timeout=2).status_code
    except requests.ConnectionError:
        return None


def test_in_front_of_another_registry_a_build_reads_and_pushes_only_what_its_grant_says(upstream_gate):
    """Kubernetes: kaniko's build pods reach the admin's registry only through the gate, with the
    build's own account; the gate logs in to the registry with the admin's credentials, which the
    build never sees."""
    url, grants, images, upstream, admin = upstream_gate
    build = ("build-kim1", "kims-build-password")
    write_grant(grants, *build, read=["kubestudio/kim/*", "base/*"], push=["kubestudio/kim/demo"], ttl=60)
    accept = {"Accept": OCI_MANIFEST}
    base = "base/python"
    assert requests.get(f"{url}/v2/{base}/blobs/{images[base]}", auth=build, timeout=10).content == b"base/python data"
    jack = "kubestudio/jack/private"
    for r in (
        requests.get(f"{url}/v2/{jack}/manifests/v1", auth=build, headers=accept, timeout=10),
        requests.get(f"{url}/v2/{jack}/blobs/{images[jack]}", auth=build, timeout=10),
        requests.post(f"{url}/v2/kubestudio/jack/private/blobs/uploads/", auth=build, timeout=10),
    ):
        assert r.status_code == 403, (r.request.url, r.text)
        assert b"jack data" not in r.content
    # the admin's credentials are the upstream's, not the gate's: nobody logs in to the gate with them
    assert requests.get(f"{url}/v2/{base}/manifests/v1", auth=admin, headers=accept, timeout=10).status_code == 401
    assert requests.get(f"{url}/v2/", timeout=10).status_code == 401
    # an upload's next URL leads back through the gate, and the image lands in the registry
    start = requests.post(f"{url}/v2/kubestudio/kim/demo/blobs/uploads/", auth=build, timeout=10)
    assert start.status_code == 202, start.text
    assert start.headers["Location"].startswith("/v2/kubestudio/kim/demo/blobs/uploads/"), start.headers["Location"]
    layer = push_image(url, "kubestudio/kim/demo", "v1", b"kim's layer", auth=build)
    landed = requests.get(f"{upstream}/v2/kubestudio/kim/demo/blobs/{layer}", auth=admin, timeout=10)
    assert landed.content == b"kim's layer"
    assert "kims-build-password" not in open(os.path.join(grants, "build-kim1.json")).read()


def test_the_gate_says_which_upstream_credentials_are_missing(tmp_path):
    auth = tmp_path / "auth.json"
    auth.write_text(json.dumps({"auths": {"other.example:5000": {"auth": "dTpw"}}}))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "kubestudio.hub.registry_gate",
            "--listen",
            "127.0.0.1:1",
            "--upstream",
            "http://registry.example:5000",
            "--upstream-auth",
            str(auth),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2 and "has no credentials for registry.example:5000" in done.stderr
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "kubestudio.hub.registry_gate",
            "--listen",
            "127.0.0.1:1",
            "--upstream",
            "ftp://registry.example/x",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2 and "give http(s)://HOST[:PORT]" in done.stderr
