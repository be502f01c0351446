"""Who may call what, and the notebook side: the server's own token, the CLI, from_server builds."""

import os
import subprocess
import sys

import pytest
import requests

from kubestudio.testing.imageshub import package_installed

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def setup(images):
    """alice's finished build and her running server's environment."""
    alice = images.client("alice")
    build = alice.build(dockerfile_text=f"FROM {images.registry.base}\nRUN echo alice-build\n", name="mine")
    assert images.wait("alice", build["id"])["status"] == "succeeded"
    images.session("bob")
    images.session("admin")
    r = images.hub.spawn("alice")
    assert r.status_code in (201, 202), r.text
    env = images.hub.server_env("alice")
    assert env and env.get("JUPYTERHUB_API_TOKEN")
    # the server takes its package set at start in the background: from_server diffs against it
    assert images.session("alice").get(f"{images.url}api/servers").json()["servers"][0]["ready"]
    yield build["id"], env
    images.hub.stop_server("alice")


def callers(images, server_env_):
    hub = images.hub
    limited = hub.api("POST", "/users/alice/tokens", json={"scopes": ["read:users:name!user=alice"]}).json()["token"]
    return {
        "owner": images.tokens["alice"],
        "server": server_env_["JUPYTERHUB_API_TOKEN"],
        "other": images.tokens["bob"],
        "admin": images.tokens["admin"],
        "limited": limited,
        "anonymous": None,
    }


# (method, path, expected per caller); {id} is alice's build
MATRIX = [
    ("GET", "api/builds", {"owner": 200, "server": 200, "other": 200, "admin": 200, "limited": 403, "anonymous": 401}),
    (
        "GET",
        "api/builds?user=alice",
        {"owner": 200, "server": 200, "other": 403, "admin": 200, "limited": 403, "anonymous": 401},
    ),
    (
        "GET",
        "api/builds/{id}",
        {"owner": 200, "server": 200, "other": 404, "admin": 200, "limited": 403, "anonymous": 401},
    ),
    (
        "GET",
        "api/builds/{id}/logs",
        {"owner": 200, "server": 200, "other": 404, "admin": 200, "limited": 403, "anonymous": 401},
    ),
    (
        "DELETE",
        "api/builds/{id}",
        {"owner": 409, "server": 409, "other": 404, "admin": 409, "limited": 403, "anonymous": 401},
    ),
    (
        "GET",
        "api/builds/000000000000",
        {"owner": 404, "server": 404, "other": 404, "admin": 404, "limited": 403, "anonymous": 401},
    ),
    ("GET", "api/images", {"owner": 200, "server": 200, "other": 200, "admin": 200, "limited": 403, "anonymous": 401}),
    ("POST", "api/builds", {"owner": 400, "server": 400, "other": 400, "admin": 400, "limited": 403, "anonymous": 401}),
]


def test_authorization_matrix(images, setup):
    build_id, env = setup
    tokens = callers(images, env)
    for method, path, expected in MATRIX:
        for who, token in tokens.items():
            headers = {"Authorization": f"token {token}"} if token else {}
            r = requests.request(method, images.url + path.format(id=build_id), headers=headers, json={})
            assert r.status_code == expected[who], (method, path, who, r.text)
            if r.status_code >= 400:
                assert r.json()["status"] == r.status_code and r.json()["message"], (method, path, who, r.text)
    # what each one sees
    get = lambda who, path: requests.get(images.url + path, headers={"Authorization": f"token {tokens[who]}"}).json()  # noqa: E731
    assert [b["id"] for b in get("owner", "api/builds")["builds"]] == [build_id]
    assert [b["id"] for b in get("server", "api/builds")["builds"]] == [build_id]
    assert get("other", "api/builds") == {"builds": []}
    assert get("other", "api/images") == {"images": []}
    assert build_id in [b["id"] for b in get("admin", "api/builds?user=*")["builds"]]
    assert [i["owner"] for i in get("admin", "api/images?user=alice")["images"]] == ["alice"]


def test_page_needs_login(images):
    r = requests.get(images.url, allow_redirects=False)
    assert r.status_code == 302 and "/hub/api/oauth2/authorize" in r.headers["Location"]


def test_admin_may_push_elsewhere(images, setup):
    admin = images.client("admin")
    build = admin.build(
        dockerfile_text=f"FROM {images.registry.base}\n", repository="base/shared", name="tools", tag="v1"
    )
    assert build["image"] == f"{images.registry.host}/base/shared/tools:v1"
    assert images.wait("admin", build["id"])["status"] == "succeeded"


def test_cli_inside_a_server(images, setup):
    """`kubestudio images build` with nothing but the server's own environment."""
    _, env = setup
    workspace = env["KUBESTUDIO_WORKSPACE"]
    os.makedirs(os.path.join(workspace, "cli-image"), exist_ok=True)
    with open(os.path.join(workspace, "cli-image", "Dockerfile"), "w") as f:
        f.write(f"FROM {images.registry.base}\nRUN echo from-the-cli\n")
    cli = os.path.join(os.path.dirname(sys.executable), "kubestudio")

    def run(*args):
        return subprocess.run([cli, *args], env=env, cwd=workspace, capture_output=True, text=True, timeout=120)

    done = run("images", "build", "cli-image", "--name", "from-cli")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "from-the-cli" in done.stdout and ": succeeded" in done.stdout
    build_id = done.stdout.split("build ", 1)[1].split(":", 1)[0]
    listed = run("images", "list")
    assert "kubestudio/alice/from-cli:" in listed.stdout
    logs = run("images", "logs", build_id)
    assert "from-the-cli" in logs.stdout
    followed = run("images", "logs", build_id, "--follow")
    assert followed.returncode == 0 and ": succeeded" in followed.stdout
    assert run("images", "cancel", build_id).returncode == 2  # finished: the service says 409
    outside = run("images", "build", "/etc", "--name", "x")
    assert outside.returncode == 2 and "is not inside your workspace" in outside.stderr


def test_from_server_builds_image_plus_added_packages(images, setup):
    """The running server's added packages are captured and installed on top of its image."""
    with package_installed("kubestudio-capture-probe", "1.0", images.user_site("alice")):
        client = images.client("alice")
        build = client.build(from_server=True, base=images.registry.base, name="snapshot")
        # without `base`, the server's own image (the profile's, KUBESTUDIO_IMAGE) is the base
        own = client.build(from_server=True, name="snapshot")
        assert own["spec"]["environment"]["base"] == setup[1]["KUBESTUDIO_IMAGE"]
        client.cancel(own["id"])  # that image is not in the test registry
    assert build["captured"]["pip"] == ["kubestudio-capture-probe==1.0"], build["captured"]
    final = images.wait("alice", build["id"])
    assert final["status"] == "succeeded", client.log(build["id"])
    log = client.log(build["id"])
    assert "RUN pip install --no-cache-dir kubestudio-capture-probe==1.0" in log, log
    with pytest.raises(Exception, match="server 'nope' is not running"):
        client.build(from_server="nope", base=images.registry.base)
