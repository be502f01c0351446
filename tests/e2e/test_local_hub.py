"""A real JupyterHub + configurable-http-proxy + jupyterhub-singleuser servers, end to end."""

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time

import pytest
import requests
import yaml

from kubestudio.spawner.storage import user_slug
from kubestudio.testing.localhub import SERVERS_ONLY, LocalHub

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def workspace(hub, user):
    return os.path.join(hub.data_dir, "users", user_slug(user), "mnt")


def token_get(hub, token, path, **kw):
    return requests.get(f"{hub.url}{path}", headers={"Authorization": f"token {token}"}, allow_redirects=False, **kw)


def test_login_puts_user_in_public_project(hub):
    hub.login("dora")
    model = hub.api("GET", "/users/dora").json()
    assert "public" in model["groups"]
    # a configured project keeps its members and properties
    vision = hub.api("GET", "/groups/vision").json()
    assert "vic" in vision["users"]
    assert vision["properties"]["max_gpus"] == 1


@pytest.mark.parametrize("profile", ["cpu-small", "cpu-large", "gpu"])
def test_spawn_each_profile_and_reach_jupyterlab(hub, profile):
    user = "pat"
    hub.create_user(user)
    token = hub.user_token(user)
    r = hub.spawn(user, profile, {"profile": profile})
    assert r.status_code in (201, 202), r.text
    try:
        lab = token_get(hub, token, f"/user/{user}/{profile}/lab")
        assert lab.status_code == 200
        assert "JupyterLab" in lab.text or "jupyterlab" in lab.text.lower()
        env = hub.server_env(user, profile)
        assert env["KUBESTUDIO_PROFILE"] == profile
        assert env["KUBESTUDIO_PROJECT"] == "public"
        assert env["KUBESTUDIO_WORKSPACE"] == workspace(hub, user)
        assert env["KUBESTUDIO_ARCHIVES"] == os.path.join(hub.data_dir, "users", user, "archives")
        assert env["JUPYTERHUB_ROOT_DIR"] == workspace(hub, user)
        if profile == "gpu":
            assert env["CUDA_VISIBLE_DEVICES"] in ("0", "1")
        else:
            assert env["CUDA_VISIBLE_DEVICES"] == ""
    finally:
        hub.stop_server(user, profile)


def code_server_available():
    from kubestudio.hub.config import KubeStudio

    path = os.pathsep.join(KubeStudio().tool_dirs + [os.environ.get("PATH", "")])
    return shutil.which("code-server", path=path) is not None


def test_vscode_profile_serves_vs_code_through_the_proxy(hub):
    if not code_server_available():
        pytest.skip("code-server is not installed (scripts/install-code-server.sh)")
    hub.create_user("val")
    token = hub.user_token("val")
    r = hub.spawn("val", "code", {"profile": "vscode"})
    assert r.status_code in (201, 202), r.text
    try:
        env = hub.server_env("val", "code")
        assert env["KUBESTUDIO_IDE"] == "vscode"
        assert env["JUPYTERHUB_DEFAULT_URL"] == "/vscode/"
        assert env["CODE_WORKINGDIR"] == workspace(hub, "val")
        # jupyter-vscode-proxy starts code-server on first request, behind the hub's auth
        page = requests.get(
            f"{hub.url}/user/val/code/vscode/", headers={"Authorization": f"token {token}"}, timeout=120
        )
        assert page.status_code == 200, page.text[:500]
        assert "vscode-workbench" in page.text or "code-server" in page.text
        assert requests.get(f"{hub.url}/user/val/code/vscode/", allow_redirects=False).status_code in (302, 403)
        # code-server has no login of its own: it listens on a Unix socket, never on a loopback port
        assert env["JUPYTER_VSCODE_PROXY_USE_SOCKET"] == "1"
        code_server = [cmd.split() for _, cmd in hub._descendants() if "--auth none" in cmd]
        assert code_server, "no code-server running"
        argv = code_server[0]
        assert not [a for a in argv if a.startswith("--port")], argv
        assert argv[argv.index("--socket-mode") + 1] == "0600", argv
        # in the server's own TMPDIR (the user's, 0700), not in the machine's /tmp, where
        # jupyter-server-proxy's socket folders were left behind after every stop
        tmp = env["TMPDIR"]
        assert os.path.dirname(tmp) == "/run/kubestudio", tmp
        socket_path = argv[argv.index("--socket") + 1]
        assert socket_path.startswith(tmp + "/") and len(socket_path) < 108, argv
        info = os.stat(tmp)
        assert stat.S_IMODE(info.st_mode) == 0o700
        assert info.st_uid == os.stat(workspace(hub, "val")).st_uid
    finally:
        hub.stop_server("val", "code")
    assert not os.path.exists(tmp), "the server's TMPDIR outlived it"


def test_vscode_profile_disabled_without_code_server(tmp_path):
    local = LocalHub(
        tmp_path,
        settings=SERVERS_ONLY,
        extra_config='c.LocalWorkspaceSpawner.vscode_executables = ["no-such-code-server"]\n',
    )
    local.start()
    try:
        session = local.login("val")
        form = session.get(f"{local.url}/hub/spawn").text
        assert "Unavailable: no-such-code-server is not installed on this machine" in form
        r = local.spawn("val", "", {"profile": "vscode"})
        assert r.status_code == 409
        assert (
            r.json()["message"]
            == "ide: VS Code cannot start here: no-such-code-server is not installed on this machine"
        )
        assert local.server_model("val", "") is None
        r = local.spawn("val", "", {"profile": "cpu-small", "ide": "vscode"})
        assert r.status_code == 409
    finally:
        local.stop()


def test_files_land_in_workspace_and_archives_and_stay_private(hub):
    for user in ("alice", "bob"):
        hub.create_user(user)
        assert hub.spawn(user).status_code in (201, 202)
    alice, bob = hub.user_token("alice"), hub.user_token("bob")
    try:
        body = {"type": "file", "format": "text", "content": "hello from alice"}
        r = requests.put(
            f"{hub.url}/user/alice/api/contents/hello.txt", json=body, headers={"Authorization": f"token {alice}"}
        )
        assert r.status_code == 201, r.text
        with open(os.path.join(workspace(hub, "alice"), "hello.txt")) as f:
            assert f.read() == "hello from alice"
        # the archives folder is reachable from the workspace root
        r = requests.put(
            f"{hub.url}/user/alice/api/contents/archives/old-run.txt",
            json={**body, "content": "archived"},
            headers={"Authorization": f"token {alice}"},
        )
        assert r.status_code == 201, r.text
        with open(os.path.join(hub.data_dir, "users", "alice", "archives", "old-run.txt")) as f:
            assert f.read() == "archived"

        # bob cannot read alice's server, and his own server does not show her files
        r = token_get(hub, bob, "/user/alice/api/contents/hello.txt")
        assert r.status_code == 403
        listing = token_get(hub, bob, "/user/bob/api/contents").json()
        assert "hello.txt" not in [item["name"] for item in listing["content"]]
        r = token_get(hub, bob, "/user/bob/api/contents/..%2Falice%2Fmnt%2Fhello.txt")
        assert r.status_code in (400, 403, 404)
        # without any credentials: redirected to log in, never the file
        r = requests.get(f"{hub.url}/user/alice/api/contents/hello.txt", allow_redirects=False)
        assert r.status_code in (302, 403)
    finally:
        hub.stop_server("alice")
        hub.stop_server("bob")


def test_gpus_never_shared_and_freed_on_stop(hub):
    for user in ("gina", "gus", "gwen"):
        hub.create_user(user)
    try:
        assert hub.spawn("gina", "", {"profile": "gpu", "gpus": 1}).status_code in (201, 202)
        assert hub.spawn("gus", "", {"profile": "gpu", "gpus": 1}).status_code in (201, 202)
        held = {hub.server_env("gina")["CUDA_VISIBLE_DEVICES"], hub.server_env("gus")["CUDA_VISIBLE_DEVICES"]}
        assert held == {"0", "1"}
        r = hub.spawn("gwen", "", {"profile": "gpu", "gpus": 1})
        assert r.status_code == 409
        assert r.json()["message"] == (
            "gpus: not enough free GPUs: 1 asked, 0 free of 2; stop a server or a job, or ask for fewer GPUs"
        )
        assert hub.server_model("gwen") is None
        gina_gpu = hub.server_env("gina")["CUDA_VISIBLE_DEVICES"]
        hub.stop_server("gina")
        assert hub.spawn("gwen", "", {"profile": "gpu", "gpus": 1}).status_code in (201, 202)
        assert hub.server_env("gwen")["CUDA_VISIBLE_DEVICES"] == gina_gpu
    finally:
        for user in ("gina", "gus", "gwen"):
            hub.stop_server(user)


@pytest.mark.parametrize(
    "options, status, message",
    [
        ({"profile": "nope"}, 400, "profile: unknown profile 'nope' (available: cpu-small, cpu-large, gpu, vscode)"),
        ({"project": "vision"}, 403, "project: you are not a member of project 'vision'"),
        ({"profile": "gpu", "gpus": 4}, 400, "gpus: profile 'gpu' offers 1 or 2 GPUs, not 4"),
        ({"profile": "cpu-small", "colour": "red"}, 400, "colour: unknown option"),
    ],
)
def test_api_refusals_are_json_4xx_and_start_nothing(hub, options, status, message):
    hub.create_user("rita")
    r = hub.spawn("rita", "", options)
    assert r.status_code == status, r.text
    assert r.json() == {"status": status, "message": r.json()["message"]}
    assert message in r.json()["message"]
    assert hub.server_model("rita") is None
    assert hub.server_env("rita") is None


def spawn_form(session, hub, user, server, data):
    xsrf = session.cookies.get("_xsrf")
    return session.post(f"{hub.url}/hub/spawn/{user}/{server}", data={**data, "_xsrf": xsrf})


def form_error(page):
    match = re.search(r'class="spawn-error-msg alert alert-danger">(.*?)</p>', page, re.S)
    return re.sub(r"\s+", " ", match.group(1)).strip() if match else None


def test_form_refusals_show_on_the_form(hub):
    session = hub.login("vic")
    form = session.get(f"{hub.url}/hub/spawn/vic/first")
    assert 'value="vision"' in form.text and "Vision" in form.text
    try:
        r = spawn_form(session, hub, "vic", "first", {"profile": "cpu-small", "project": "vision"})
        assert "/spawn-pending/" in r.url
        hub.wait_ready("vic", "first")
        # max_servers: 1 in vision
        r = spawn_form(session, hub, "vic", "second", {"profile": "cpu-small", "project": "vision"})
        assert r.status_code == 200 and "/hub/spawn/" in r.url
        assert (
            "project: &#39;vision&#39; allows 1 running server per user and you have 1; stop one first"
            in form_error(r.text)
        )
        assert hub.server_model("vic", "second") is None
        # public has no such limit
        r = spawn_form(session, hub, "vic", "second", {"profile": "cpu-small", "project": "public"})
        assert "/spawn-pending/" in r.url
        hub.wait_ready("vic", "second")
        # a GPU count the profile does not offer
        r = spawn_form(session, hub, "vic", "third", {"profile": "gpu", "project": "public", "gpus-gpu": "3"})
        assert "gpus: profile &#39;gpu&#39; offers 1 or 2 GPUs, not 3" in form_error(r.text)
        # unknown profile
        r = spawn_form(session, hub, "vic", "third", {"profile": "mega", "project": "public"})
        assert "profile: unknown profile &#39;mega&#39;" in form_error(r.text)
        assert hub.server_model("vic", "third") is None
    finally:
        hub.stop_server("vic", "first")
        hub.stop_server("vic", "second")


def test_form_gpu_quota_of_project(hub):
    session = hub.login("vic")
    r = spawn_form(session, hub, "vic", "big", {"profile": "gpu", "project": "vision", "gpus-gpu": "2"})
    assert "gpus: project &#39;vision&#39; allows 1 GPU per user; you hold 0 and asked for 2" in form_error(r.text)
    assert hub.server_model("vic", "big") is None


def test_named_servers_share_the_workspace(hub):
    hub.create_user("nora")
    token = hub.user_token("nora")
    try:
        hub.spawn("nora", "one")
        hub.spawn("nora", "two")
        r = requests.put(
            f"{hub.url}/user/nora/one/api/contents/shared.txt",
            json={"type": "file", "format": "text", "content": "same folder"},
            headers={"Authorization": f"token {token}"},
        )
        assert r.status_code == 201
        seen = token_get(hub, token, "/user/nora/two/api/contents/shared.txt").json()
        assert seen["content"] == "same folder"
    finally:
        hub.stop_server("nora", "one")
        hub.stop_server("nora", "two")


@pytest.mark.parametrize("name", ["first.last", "someone@example.org", "ünïcödé", "x" * 200])
def test_tricky_usernames_get_folders_inside_data_dir(hub, name):
    hub.create_user(name)
    try:
        assert hub.spawn(name).status_code in (201, 202)
        env = hub.server_env(name)
        users_dir = os.path.realpath(os.path.join(hub.data_dir, "users"))
        for key in ("KUBESTUDIO_WORKSPACE", "KUBESTUDIO_ARCHIVES", "HOME"):
            assert os.path.commonpath([os.path.realpath(env[key]), users_dir]) == users_dir
        assert env["KUBESTUDIO_WORKSPACE"] == workspace(hub, name)
        assert os.path.isdir(env["KUBESTUDIO_WORKSPACE"])
        assert os.listdir(os.path.join(hub.data_dir, "users")).count(user_slug(name)) == 1
    finally:
        hub.stop_server(name)
    # the same name maps to the same folder on the next start
    assert hub.spawn(name).status_code in (201, 202)
    assert hub.server_env(name)["KUBESTUDIO_WORKSPACE"] == workspace(hub, name)
    hub.stop_server(name)


def test_restart_recovers_gpu_allocations(tmp_path):
    local = LocalHub(
        tmp_path,
        settings={**SERVERS_ONLY, "keep_servers_running": True},
        extra_config='c.LocalWorkspaceSpawner.gpus = ["0", "1"]\n',
    )
    local.start()
    try:
        local.create_user("rex")
        local.create_user("ray")
        local.spawn("rex", "", {"profile": "gpu", "gpus": 1})
        rex_gpu = local.server_env("rex")["CUDA_VISIBLE_DEVICES"]
        rex_pid = local.server_pid("rex")
        # the hub goes down; the server keeps running (keep_servers_running)
        local.stop(stop_servers=False)
        assert os.path.exists(f"/proc/{rex_pid}")
        local.start()
        assert local.server_model("rex", "")["ready"]
        r = local.spawn("ray", "", {"profile": "gpu", "gpus": 2})
        assert r.status_code == 409, r.text
        assert "1 free of 2" in r.json()["message"]
        assert local.spawn("ray", "", {"profile": "gpu", "gpus": 1}).status_code in (201, 202)
        assert local.server_env("ray")["CUDA_VISIBLE_DEVICES"] != rex_gpu
    finally:
        local.stop()


def test_server_that_died_while_hub_was_down_frees_its_gpus(tmp_path):
    local = LocalHub(
        tmp_path,
        settings={**SERVERS_ONLY, "keep_servers_running": True},
        extra_config='c.LocalWorkspaceSpawner.gpus = ["0"]\n',
    )
    local.start()
    try:
        local.create_user("dan")
        local.spawn("dan", "", {"profile": "gpu", "gpus": 1})
        local.stop(stop_servers=False)
        local.kill_leftover_servers()
        time.sleep(0.5)
        local.start()
        local.create_user("eve")
        assert local.spawn("eve", "", {"profile": "gpu", "gpus": 1}).status_code in (201, 202)
        assert local.server_env("eve")["CUDA_VISIBLE_DEVICES"] == "0"
    finally:
        local.stop()


def test_no_gpus_shows_gpu_profile_disabled(tmp_path):
    local = LocalHub(tmp_path, settings=SERVERS_ONLY, extra_config="c.LocalWorkspaceSpawner.gpus = []\n")
    local.start()
    try:
        session = local.login("nobody")
        form = session.get(f"{local.url}/hub/spawn").text
        card = re.search(r'data-slug="gpu".*?</label>\s*(?=<label class="ks-profile|</fieldset>)', form, re.S).group(0)
        assert "Unavailable: this machine has no GPU" in card
        r = local.spawn("nobody", "", {"profile": "gpu"})
        assert r.status_code == 409
        assert r.json()["message"] == "profile: 'gpu' cannot start here: this machine has no GPU"
    finally:
        local.stop()


def test_bad_catalog_stops_the_hub_with_file_path_reason(tmp_path):
    catalog = yaml.safe_load(open(os.path.join(REPO, "profiles", "default.yaml")))
    catalog["profiles"][2]["gpu"]["count"] = -1
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(catalog))
    local = LocalHub(tmp_path, settings={"profiles_file": str(bad)})
    with pytest.raises(RuntimeError) as e:
        local.start(timeout=30)
    assert f"{bad}: profiles[2].gpu.count: must be an integer >= 0" in str(e.value)
    assert local.proc.returncode == 1


def test_bad_project_stops_the_hub(tmp_path):
    local = LocalHub(tmp_path, settings={"projects": {"vision": {"volume_mount": "data(nfs):/data"}}})
    with pytest.raises(RuntimeError) as e:
        local.start(timeout=30)
    assert "project 'vision': volume_mount entry 'data(nfs):/data': unknown volume kind 'nfs'" in str(e.value)


def test_embedded_default_config_prints_generated_password(tmp_path):
    """jupyterhub_config.py of the repo: password generated once, printed, kept."""
    env = dict(os.environ, KUBESTUDIO_DATA_DIR=str(tmp_path / "data"))
    env.pop("KUBESTUDIO_PASSWORD", None)
    code = (
        "import runpy; from traitlets.config import Config; c = Config(); "
        f"runpy.run_path({os.path.join(REPO, 'jupyterhub_config.py')!r}, init_globals={{'c': c}}); "
        "print(c.JupyterHub.bind_url, c.JupyterHub.spawner_class.__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["http://127.0.0.1:8000", "LocalWorkspaceSpawner"]
    password = (tmp_path / "data" / "dummy-password").read_text().strip()
    assert len(password) >= 12 and password in out.stderr
    assert oct((tmp_path / "data" / "dummy-password").stat().st_mode & 0o777) == "0o600"
    again = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert password in again.stderr


def test_server_that_dies_while_starting_fails_fast_with_reason(tmp_path):
    local = LocalHub(
        tmp_path,
        settings=SERVERS_ONLY,
        extra_config='import sys\nc.LocalWorkspaceSpawner.cmd = [sys.executable, "-c", "import sys; sys.exit(3)"]\n',
    )
    local.start()
    try:
        local.create_user("fay")
        started = time.monotonic()
        r = local.spawn("fay", "", {"profile": "cpu-small"}, wait=False)
        assert r.status_code in (201, 202, 500), r.text
        events = []
        with local.api("GET", "/users/fay/server/progress", stream=True) as stream:
            for line in stream.iter_lines(decode_unicode=True):
                if line.startswith("data:"):
                    events.append(json.loads(line[5:]))
                    if events[-1].get("failed") or events[-1].get("ready"):
                        break
        assert events[-1].get("failed"), events
        assert "JupyterLab exited with code 3 while starting" in events[-1]["message"]
        # far sooner than the 30 s http_timeout JupyterHub would otherwise wait
        assert time.monotonic() - started < 15
        assert local.server_model("fay", "") is None
    finally:
        local.stop()


@pytest.mark.parametrize(
    "username, message",
    [
        ("../../etc", "username: &#39;../../etc&#39; cannot be a username: it may not contain &#39;/&#39;"),
        (" ", "username: enter a username"),
        ("..", "username: &#39;..&#39; cannot be a username: it may not be only dots"),
    ],
)
def test_login_with_an_impossible_username_says_so(hub, username, message):
    session = requests.Session()
    session.get(f"{hub.url}/hub/login").raise_for_status()
    r = session.post(
        f"{hub.url}/hub/login?next=",
        data={"username": username, "password": hub.password, "_xsrf": session.cookies.get("_xsrf")},
    )
    assert r.status_code == 400
    assert message in r.text, r.text[-2000:]
    assert "Invalid username or password" not in r.text
    # a wrong password is still just that
    r = session.post(
        f"{hub.url}/hub/login?next=",
        data={"username": "valid-name", "password": "wrong", "_xsrf": session.cookies.get("_xsrf")},
    )
    assert r.status_code == 403 and "Invalid username or password" in r.text


def test_missing_singleuser_command_is_a_readable_reason(tmp_path):
    local = LocalHub(
        tmp_path,
        settings=SERVERS_ONLY,
        extra_config='c.LocalWorkspaceSpawner.cmd = ["/nonexistent/jupyterhub-singleuser"]\n',
    )
    local.start()
    try:
        local.create_user("nora")
        r = local.spawn("nora")
        assert r.status_code == 500, r.text
        assert r.json()["message"] == (
            "JupyterLab could not start: /nonexistent/jupyterhub-singleuser was not found on this machine "
            "(install KubeStudio with scripts/install.sh, or set LocalWorkspaceSpawner.cmd)"
        )
    finally:
        local.stop()


def test_servers_run_the_hubs_singleuser_whatever_the_hubs_path(tmp_path):
    """The hub started with only the system PATH (no venv on it) still starts servers."""
    local = LocalHub(tmp_path, env={"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"})
    local.start()
    try:
        local.create_user("pia")
        assert local.spawn("pia").status_code in (201, 202)
        env = local.server_env("pia")
        # the user's own environment (over the hub's), then the hub's tools
        own, hubs = env["PATH"].split(os.pathsep)[:2]
        assert own == os.path.join(local.data_dir, "users", "pia", "home", ".venvs", "hub-python3.11", "bin")
        assert hubs == os.path.dirname(sys.executable)
        assert env["KUBESTUDIO_IMAGE"].endswith("/base/python:3.11")
        local.stop_server("pia")
    finally:
        local.stop()


def test_idle_culler_stops_an_idle_server_and_spares_a_busy_one(tmp_path):
    """jupyterhub-idle-culler, run by the hub from configure(), stops a server nobody uses after
    cull_timeout; a server whose user keeps working stays."""
    settings = {
        **SERVERS_ONLY,
        "cull_idle_servers": True,
        "cull_timeout": 6,
        "cull_every": 1,
    }
    extra = "c.JupyterHub.last_activity_interval = 1\n"  # the proxy's activity reaches the hub at once
    hub = LocalHub(tmp_path / "hub", settings=settings, extra_config=extra).start()
    try:
        for user in ("idle", "busy"):
            hub.create_user(user)
            hub.spawn(user)
        token = hub.user_token("busy")
        deadline = time.monotonic() + 40
        while hub.server_model("idle") is not None:
            assert time.monotonic() < deadline, hub.log_tail()
            # busy works in JupyterLab meanwhile: its requests pass the proxy
            assert token_get(hub, token, "/user/busy/api/status").status_code == 200
            time.sleep(0.5)
        assert hub.server_model("busy") is not None and hub.server_model("busy")["ready"]
        with open(hub.log_file) as f:
            log = f.read()
        assert "Culling server idle" in log and "Culling server busy" not in log
    finally:
        hub.stop()
