"""The TensorBoard service through a real hub: open a board on real event files, read its runs
and a scalar series through the hub's proxy, the same request gives the same board, who may see
what, the starting page, and idle culling with a transparent restart."""

import os
import re
import time

import pytest
import requests

from kubestudio.testing.localhub import LocalHub
from kubestudio.testing.servicehub import BoardsHub as ServiceHub

from .events import write_scalars

CONFIG = """
c.TensorBoardService.max_boards_per_user = 3
c.TensorBoardService.idle_timeout = 4
c.TensorBoardService.cull_every = 1
"""


class BoardsHub(ServiceHub):
    """The hub's TensorBoard service, its users, and reading boards through the hub."""

    def get(self, path, user=None, headers=None, **kwargs):
        headers = {**({"Authorization": f"token {self.token(user)}"} if user else {}), **(headers or {})}
        return requests.get(self.hub.url + path, headers=headers, timeout=30, allow_redirects=False, **kwargs)

    def wait_running(self, board, user, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            r = self.get(board["url"] + "data/runs", user)
            if r.status_code == 200:
                return r.json()
            assert time.monotonic() < deadline, (r.status_code, r.text[:300])
            time.sleep(0.3)


@pytest.fixture(scope="module")
def boards(tmp_path_factory):
    hub = LocalHub(
        tmp_path_factory.mktemp("tb-hub"),
        settings={"images_service": False, "jobs_service": False},
        extra_config=CONFIG,
    ).start()
    try:
        yield BoardsHub(hub)
    finally:
        hub.stop()


def test_a_board_shows_the_runs_and_scalars_written(boards):
    workspace = boards.workspace("tess")
    write_scalars(os.path.join(workspace, "runs", "exp1"), values=(1.0, 0.5, 0.25))
    write_scalars(os.path.join(workspace, "runs", "exp2"), values=(2.0, 1.5))
    client = boards.client("tess")
    board = client.open_board(["runs/exp1", "runs/exp2"], name="mnist")
    assert board["url"] == f"/services/tensorboards/b/{board['id']}/" and board["name"] == "mnist"
    assert sorted(boards.wait_running(board, "tess")) == ["runs_exp1", "runs_exp2"]
    series = boards.get(
        board["url"] + "data/plugin/scalars/scalars", "tess", params={"run": "runs_exp2", "tag": "loss"}
    ).json()
    assert [(step, value) for _, step, value in series] == [(0, 2.0), (1, 1.5)]
    page = boards.get(board["url"], "tess")
    assert page.status_code == 200 and "<tf-tensorboard" in page.text or "tensorboard" in page.text.lower()
    # the fonts the page asks for at the root (url(/font-roboto/...)) are there, not a 404
    fonts = sorted(set(re.findall(r"url\((/font-roboto/[A-Za-z0-9_-]+\.woff2)\)", page.text)))
    assert fonts, page.text[:500]
    font = requests.get(boards.hub.url + fonts[0], timeout=30)
    assert font.status_code == 200 and font.headers["Content-Type"] == "font/woff2" and len(font.content) > 100
    assert requests.get(boards.hub.url + "/font-roboto/nothing.woff2", timeout=30).status_code == 404
    # the same folders, named otherwise, are the same board
    again = client.open_board([f"{workspace}/runs/exp2", "runs/exp1"])
    assert again["id"] == board["id"] and again["status"] == "running"
    assert client.get(board["id"])["logdirs"] == ["runs/exp1", "runs/exp2"]
    assert "TensorBoard" in client.logs(board["id"])


def test_bad_folders_and_too_many_boards(boards):
    workspace = boards.workspace("bert")
    client = boards.client("bert")
    for logdir, status, message in [
        ("nope", 404, "logdirs[0]: no folder 'nope' in your workspace"),
        ("../x", 400, "logdirs[0]: '../x' leads outside your workspace"),
        ("/etc", 400, "is outside your workspace"),
    ]:
        r = requests.post(
            boards.url + "api/boards",
            json={"logdirs": [logdir]},
            headers={"Authorization": f"token {boards.token('bert')}"},
            timeout=30,
        )
        assert r.status_code == status and message in r.json()["message"], r.text
    for i in range(3):
        os.makedirs(os.path.join(workspace, f"run{i}"), exist_ok=True)
        client.open_board(f"run{i}")
    os.makedirs(os.path.join(workspace, "run3"), exist_ok=True)
    r = requests.post(
        boards.url + "api/boards",
        json={"logdirs": ["run3"]},
        headers={"Authorization": f"token {boards.token('bert')}"},
        timeout=30,
    )
    assert r.status_code == 409 and "you have 3 boards open" in r.json()["message"]
    for record in client.list():
        client.stop(record["id"])
    assert client.list() == []


def test_only_the_owner_reaches_a_board(boards):
    write_scalars(os.path.join(boards.workspace("olga"), "runs", "a"))
    board = boards.client("olga").open_board("runs/a")
    boards.wait_running(board, "olga")
    assert boards.get(board["url"] + "data/runs", "mallory").status_code == 404
    assert boards.get(f"/services/tensorboards/api/boards/{board['id']}", "mallory").status_code == 404
    assert boards.get(board["url"] + "data/runs").status_code in (401, 302)  # anonymous
    navigated = boards.get(board["url"], headers={"Sec-Fetch-Mode": "navigate"})
    assert navigated.status_code == 302 and "/hub/" in navigated.headers["Location"]  # to the login
    boards.client("olga").stop(board["id"])


def test_an_idle_board_stops_and_its_url_starts_it_again(boards):
    write_scalars(os.path.join(boards.workspace("ivy"), "runs", "b"))
    client = boards.client("ivy")
    board = client.open_board("runs/b")
    boards.wait_running(board, "ivy")
    deadline = time.monotonic() + 30
    while client.get(board["id"])["status"] != "stopped":
        assert time.monotonic() < deadline, client.get(board["id"])
        time.sleep(0.5)
    assert "without use" in client.get(board["id"])["message"]
    starting = boards.get(board["url"], "ivy", headers={"Accept": "text/html"})
    assert starting.status_code == 200 and "Starting TensorBoard" in starting.text
    assert sorted(boards.wait_running(board, "ivy")) == ["runs_b"]
    assert client.get(board["id"])["status"] == "running"


def test_sdk_cli_and_the_tensorboard_magic_inside_a_server(boards):
    """With nothing but a server's environment: the CLI prints the board's URL through the hub
    (never localhost:6006), the SDK opens the same board, and %tensorboard's proxy URL is the
    server's own."""
    import subprocess
    import sys

    boards.token("sam")  # the user exists
    r = boards.hub.spawn("sam")
    assert r.status_code in (201, 202), r.text
    try:
        env = boards.hub.server_env("sam")
        assert env["TENSORBOARD_PROXY_URL"] == "/user/sam/proxy/%PORT%/"
        assert env["KUBESTUDIO_PUBLIC_URL"] == boards.hub.url
        workspace = env["KUBESTUDIO_WORKSPACE"]
        write_scalars(os.path.join(workspace, "runs", "cli"))
        boards.hand_over("sam")
        cli = os.path.join(os.path.dirname(sys.executable), "kubestudio")

        def run(*args):
            return subprocess.run([cli, *args], env=env, cwd=workspace, capture_output=True, text=True, timeout=120)

        opened = run("tensorboard", "open", "runs/cli")
        assert opened.returncode == 0, opened.stdout + opened.stderr
        url = opened.stdout.strip()
        assert url.startswith(f"{boards.hub.url}/services/tensorboards/b/") and url.endswith("/"), url
        board_id = url.rstrip("/").rsplit("/", 1)[1]
        assert sorted(boards.wait_running({"url": url[len(boards.hub.url) :]}, "sam")) == ["runs_cli"]
        sdk = subprocess.run(
            [
                sys.executable,
                "-c",
                "from kubestudio.tensorboards import TensorBoardsClient\nprint(TensorBoardsClient().open('runs/cli'))",
            ],
            env=env,
            cwd=workspace,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert sdk.stdout.strip() == url, sdk.stdout + sdk.stderr
        listed = run("tensorboard", "list")
        assert "runs/cli" in listed.stdout and url in listed.stdout
        missing = run("tensorboard", "open", "runs/none")
        assert missing.returncode == 2 and "no folder 'runs/none' in your workspace (HTTP 404)" in missing.stderr
        assert run("tensorboard", "stop", board_id).returncode == 0
        assert boards.client("sam").list() == []
    finally:
        boards.hub.stop_server("sam")


def test_authorization_matrix(boards):
    """owner, another user, admin, anonymous, a token the owner granted (and one without the
    service's scope) on the API and on the proxied board."""
    write_scalars(os.path.join(boards.workspace("mona"), "runs", "m"))
    board = boards.client("mona").open_board("runs/m")
    boards.wait_running(board, "mona")
    hub = boards.hub
    granted = hub.api(
        "POST",
        "/users/mona/tokens",
        json={"scopes": ["access:services!service=tensorboards", "custom:kubestudio:tensorboards:use!user=mona"]},
    ).json()["token"]
    limited = hub.api("POST", "/users/mona/tokens", json={"scopes": ["read:users:name!user=mona"]}).json()["token"]
    callers = {
        "owner": boards.token("mona"),
        "other": boards.token("nick"),
        "admin": boards.token("admin"),
        "granted": granted,
        "limited": limited,
        "anonymous": None,
    }
    api = f"/services/tensorboards/api/boards/{board['id']}"
    data = board["url"] + "data/runs"
    expected = {  # (the board's record, its TensorBoard)
        "owner": (200, 200),
        "granted": (200, 200),
        "other": (404, 404),
        "admin": (200, 404),
        "limited": (403, 403),
        "anonymous": (401, 401),
    }
    seen = {}
    for who, token in callers.items():
        headers = {"Authorization": f"token {token}"} if token else {}
        seen[who] = (
            requests.get(hub.url + api, headers=headers, timeout=30, allow_redirects=False).status_code,
            requests.get(hub.url + data, headers=headers, timeout=30, allow_redirects=False).status_code,
        )
    assert seen == expected
    boards.client("mona").stop(board["id"])


def test_openapi_document_and_schemathesis_finds_no_server_error(boards, tmp_path):
    from kubestudio.testing.fuzz import schemathesis
    from kubestudio.testing.localhub import _environ

    doc = requests.get(f"{boards.url}api/openapi.json", timeout=10).json()
    assert set(doc["paths"]) == {
        "/api/boards",
        "/api/boards/{board_id}",
        "/api/boards/{board_id}/logs",
        "/api/health",
        "/api/openapi.json",
    }
    os.makedirs(os.path.join(boards.workspace("fuzzer"), "runs"), exist_ok=True)
    pid = boards.hub.service_pid("kubestudio.tensorboards")
    direct = _environ(pid)["JUPYTERHUB_SERVICE_URL"].rstrip("/") + "/services/tensorboards"
    tested, _ = schemathesis(f"{boards.url}api/openapi.json", direct, boards.token("fuzzer"), tmp_path)
    assert {"POST /api/boards", "DELETE /api/boards/{board_id}"} <= tested
    fuzzer = boards.client("fuzzer")
    for board in fuzzer.list():
        fuzzer.stop(board["id"])
