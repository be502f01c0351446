"""Users on one machine kept apart (the embedded default run as root): each user's server, terminal,
jobs and TensorBoards run under an OS account of their own; nobody reads another's files or the
hub's data; only the image service pushes to the local registry; each user's pip packages are
their own; and all of it holds after the hub restarts with servers running."""

import base64
import io
import json
import os
import pwd
import subprocess
import tarfile
import time

import pytest
import requests

from kubestudio.accounts import COMMENT
from kubestudio.testing.doors import run_in_terminal
from kubestudio.testing.localhub import LocalHub
from kubestudio.testing.servicehub import BoardsHub, JobsHub
from kubestudio.testing.wheels import tiny_wheel

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="accounts of their own need a hub run as root")

DONE = "echo END-$((6*7))"  # the terminal echoes the command; only its output has END-42


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    # the image service's early Dockerfile check off: every build below goes to buildah, and what it
    # may pull is the registry gate's decision alone (test_no_spelling_...)
    local = LocalHub(
        tmp_path_factory.mktemp("isolation"),
        settings={"keep_servers_running": True},
        extra_config="c.ImageBuilder.check_image_references = False\n"
        # a user's builds side by side (the attempts on another's image)
        "c.ImageBuilder.max_builds_per_user = 4\nc.ImageBuilder.max_concurrent_builds = 4\n",
    )
    local.start()
    try:
        for user in ("alice", "bob"):
            local.create_user(user)
            local.spawn(user)
        yield local
    finally:
        local.stop()
    # the accounts it made went with it
    assert not [e for e in pwd.getpwall() if e.pw_name.startswith(local.account_prefix)]


def terminal(hub, user, command, timeout=90):
    """What ``command`` printed in a JupyterLab terminal of ``user``'s server."""
    out = run_in_terminal(
        f"{hub.url}/user/{user}/", hub.user_token(user), f"{command}; {DONE}", "END-42", timeout=timeout
    )
    return out.split(DONE, 1)[-1]


def account(hub, user):
    return pwd.getpwnam(hub.account_prefix + user)


def test_each_server_runs_as_its_users_account_which_alone_owns_their_files(hub):
    for user, other in (("alice", "bob"), ("bob", "alice")):
        entry = account(hub, user)
        assert entry.pw_gecos == COMMENT.format(user) and entry.pw_shell == "/usr/sbin/nologin"
        out = terminal(
            hub,
            user,
            f"id -un; echo only-{user} > mine.txt; cat ../../{other}/mnt/mine.txt; "
            f"ls ../../{other}/mnt; echo HOME=$HOME",
        )
        assert f"{hub.account_prefix}{user}\r\n" in out, out
        assert f"../../{other}/mnt/mine.txt: Permission denied" in out, out
        assert f"'../../{other}/mnt': Permission denied" in out, out
        assert f"HOME={hub.data_dir}/users/{user}/home" in out, out
    folders = os.path.join(hub.data_dir, "users", "alice")
    for name in ("mnt", "archives", "home"):
        info = os.stat(os.path.join(folders, name))
        assert (info.st_uid, oct(info.st_mode & 0o777)) == (account(hub, "alice").pw_uid, "0o700")
    with open(os.path.join(folders, "mnt", "mine.txt")) as f:
        assert f.read() == "only-alice\n"


def test_the_hubs_data_and_secrets_are_root_only(hub):
    data = hub.data_dir
    secrets = [
        "jupyterhub_cookie_secret",
        "jupyterhub.sqlite",
        "images-hub-token",
        "registry-gate/credentials.json",
        "registry-gate/push-auth.json",
        "registry-gate/pull-password",
        "jobs-service.json",
        "registry.yml",
    ]
    for path in secrets:
        assert os.path.exists(os.path.join(data, path)), path
    out = terminal(
        hub,
        "bob",
        f"ls {data}; " + "; ".join(f"cat {data}/{p}" for p in secrets) + f"; ls {data}/registry; ls {data}/users",
    )
    assert f"cannot open directory '{data}': Permission denied" in out, out
    for path in secrets:
        assert f"{data}/{path}: Permission denied" in out, out
    assert f"cannot open directory '{data}/registry': Permission denied" in out, out
    assert f"cannot open directory '{data}/users': Permission denied" in out, out


def test_only_the_image_service_pushes_to_the_local_registry(hub, tmp_path):
    registry = f"127.0.0.1:{hub.local_registry_port}"
    # the image service builds and pushes alice's image through the gate with its own account
    workspace = os.path.join(hub.data_dir, "users", "alice", "mnt")
    out = terminal(
        hub,
        "alice",
        "mkdir -p ctx && echo alice-data > ctx/hello.txt && "
        "printf 'FROM scratch\\nCOPY hello.txt /hello.txt\\n' > ctx/Dockerfile",
    )
    assert os.path.exists(os.path.join(workspace, "ctx", "Dockerfile")), out
    images = requests.Session()
    images.headers["Authorization"] = f"token {hub.user_token('alice')}"
    api = f"{hub.url}/services/images/api"
    build = images.post(f"{api}/builds", json={"name": "hello", "tag": "v1", "context": "ctx"}, timeout=60)
    assert build.status_code in (200, 201, 202), build.text
    build_id = build.json()["id"]
    deadline = time.monotonic() + 240
    while (status := images.get(f"{api}/builds/{build_id}", timeout=30).json())["status"] not in (
        "succeeded",
        "failed",
        "cancelled",
        "exists",
    ):
        assert time.monotonic() < deadline, status
        time.sleep(1)
    assert status["status"] == "succeeded", status
    image = status["image"]
    repository, tag = image.split("/", 1)[1].rsplit(":", 1)
    assert image.startswith(registry + "/")

    # nobody else may write: plain HTTP from bob's terminal, with no credentials and with made-up ones
    upload = f"http://{registry}/v2/{repository}/blobs/uploads/"
    manifest = f"http://{registry}/v2/{repository}/manifests/{tag}"
    out = terminal(
        hub,
        "bob",
        f"curl -s -o /dev/null -w 'anon=%{{http_code}}\\n' -X POST {upload}; "
        f"curl -s -o /dev/null -w 'guess=%{{http_code}}\\n' -u kubestudio-push:guess -X POST {upload}; "
        f"curl -s -o /dev/null -w 'put=%{{http_code}}\\n' -X PUT -d '{{}}' {manifest}; "
        f"curl -s -o /dev/null -w 'get=%{{http_code}}\\n' {manifest}",
    )
    for line in ("anon=401", "guess=401", "put=401", "get=401"):
        assert line in out, out
    # skopeo and buildah (run as root here: more than a user could) without the push account
    pull_auth = os.path.join(hub.data_dir, "registry-gate", "pull-auth.json")
    storage = ["--root", str(tmp_path / "storage"), "--runroot", str(tmp_path / "run"), "--storage-driver", "vfs"]
    scratch = subprocess.run(["buildah", *storage, "from", "scratch"], capture_output=True, text=True, check=True)
    container = scratch.stdout.strip()
    try:
        subprocess.run(["buildah", *storage, "commit", container, "bob-image"], capture_output=True, check=True)
        target = f"docker://{registry}/{repository}:{tag}"
        for argv in (
            ["buildah", *storage, "push", "--tls-verify=false", "bob-image", target],
            ["buildah", *storage, "push", "--tls-verify=false", "--authfile", pull_auth, "bob-image", target],
            ["skopeo", "copy", "--dest-tls-verify=false", f"oci-archive:{_oci_archive(storage, tmp_path)}", target],
            [
                "skopeo",
                "copy",
                "--dest-tls-verify=false",
                "--dest-authfile",
                pull_auth,
                f"oci-archive:{tmp_path / 'bob.tar'}",
                target,
            ],
        ):
            pushed = subprocess.run(argv, capture_output=True, text=True, timeout=120)
            assert pushed.returncode != 0, argv
            assert "unauthorized" in pushed.stderr.lower() or "denied" in pushed.stderr.lower(), pushed.stderr
    finally:
        subprocess.run(["buildah", *storage, "rm", container], capture_output=True)
        subprocess.run(["buildah", *storage, "rmi", "--all", "--force"], capture_output=True)
    # the pull account reads, the image is still alice's
    with open(pull_auth) as f:
        auth = json.load(f)["auths"][registry]["auth"]
    user, _, password = base64.b64decode(auth).decode().partition(":")
    got = requests.get(
        manifest, auth=(user, password), timeout=30, headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}
    )
    assert got.status_code == 200, got.text
    layer = got.json()["layers"][0]["digest"]
    blob = requests.get(f"http://{registry}/v2/{repository}/blobs/{layer}", auth=(user, password), timeout=30)
    assert blob.status_code == 200
    assert b"alice-data" in subprocess.run(["tar", "-xzO"], input=blob.content, capture_output=True).stdout


def _oci_archive(storage, tmp_path):
    path = tmp_path / "bob.tar"
    subprocess.run(["buildah", *storage, "push", "bob-image", f"oci-archive:{path}"], capture_output=True, check=True)
    return path


def build(hub, user, timeout=240, **body):
    """Ask the image service for a build of ``user``'s and wait for its end: (record, log), or the
    4xx answer ({"status": 400 or 403, "message"}) and "" when the service's early check refuses it."""
    return finished(hub, user, submitted(hub, user, **body), timeout)


def submitted(hub, user, **body):
    """The id of a build of ``user``'s just asked for, or the service's 4xx answer."""
    r = requests.post(
        f"{hub.url}/services/images/api/builds",
        json=body,
        timeout=60,
        headers={"Authorization": f"token {hub.user_token(user)}"},
    )
    if r.status_code in (400, 403):
        return r.json()
    assert r.status_code in (200, 201, 202), r.text
    return r.json()["id"]


def finished(hub, user, build_id, timeout=240):
    """(record, log) of a build once it ended; a 4xx answer from ``submitted`` as it is, with ""."""
    if isinstance(build_id, dict):
        return build_id, ""
    s = requests.Session()
    s.headers["Authorization"] = f"token {hub.user_token(user)}"
    api = f"{hub.url}/services/images/api"
    deadline = time.monotonic() + timeout
    while (record := s.get(f"{api}/builds/{build_id}", timeout=30).json())["status"] not in (
        "succeeded",
        "failed",
        "cancelled",
        "exists",
    ):
        assert time.monotonic() < deadline, record
        time.sleep(0.5)
    return record, s.get(f"{api}/builds/{build_id}/logs", timeout=30).text


def image_holds(hub, image, text):
    """Whether any layer of ``image`` (read with the hub's pull account) holds ``text``."""
    with open(os.path.join(hub.data_dir, "registry-gate", "pull-auth.json")) as f:
        auth = next(iter(json.load(f)["auths"].values()))["auth"]
    user, _, password = base64.b64decode(auth).decode().partition(":")
    host, path = image.split("/", 1)
    repository, tag = path.rsplit(":", 1)
    manifest = requests.get(
        f"http://{host}/v2/{repository}/manifests/{tag}",
        auth=(user, password),
        timeout=30,
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
    ).json()
    for layer in manifest["layers"]:
        blob = requests.get(f"http://{host}/v2/{repository}/blobs/{layer['digest']}", auth=(user, password), timeout=60)
        with tarfile.open(fileobj=io.BytesIO(blob.content), mode="r:*") as tar:
            for member in tar.getmembers():
                if member.isfile() and text.encode() in tar.extractfile(member).read():
                    return True
    return False


def test_no_spelling_of_a_dockerfile_reads_another_users_image(hub):
    """Issue 27: what a build pulls is decided by the registry gate with the build's own account,
    not by the service's parse of the Dockerfile; and each user's builds keep their own storage."""
    secret = f"bob-secret-{os.getpid()}-{time.monotonic_ns()}"
    terminal(
        hub,
        "bob",
        f"mkdir -p private && echo {secret} > private/secret.txt && "
        "printf 'FROM scratch\\nCOPY secret.txt /secret.txt\\n' > private/Dockerfile",
    )
    record, _ = build(hub, "bob", name="private", tag="v1", context="private")
    assert record["status"] == "succeeded", record
    image = record["image"]
    assert image_holds(hub, image, secret)  # what the attempts below must never reach
    host, path = image.split("/", 1)
    port = host.rsplit(":", 1)[1]
    refused = "may not read kubestudio/bob/private"
    anonymous = "needs the hub's credentials"  # a host spelling with no credentials of the build's
    attempts = {  # name: (Dockerfile, what the build's message says: the registry's refusal, or None)
        **{
            f"a continuation ended by U+{ord(space):04X}": (
                f"FROM scratch\nLABEL a=b \\{space}\nCOPY --from={image} /secret.txt /s\n",
                refused,
            )
            for space in ("\u00a0", "\u2003", "\u3000")
        },
        "a heredoc buildah 1.28 does not know": (
            f"FROM scratch\nLABEL a=b <<EOT\nCOPY --from={image} /secret.txt /s\nEOT\n",
            refused,
        ),
        # buildah 1.28 fails this one in its own parse, before any pull
        "an escape directive": (f"# escape=`\nFROM scratch\nLABEL a=b `\nCOPY --from={image} /secret.txt /s\n", None),
        "a short name": (f"FROM {path}\n", None),
        "docker.io's name": (f"FROM docker.io/{path}\n", None),
        "localhost": (f"FROM localhost:{port}/{path}\n", refused),
        "LOCALHOST": (f"FROM LOCALHOST:{port}/{path}\n", anonymous),
        "a digest": (f"FROM {host}/{path.split(':')[0]}@{record['digest']}\n", refused),
        "--platform": (f"FROM --platform=linux/amd64 {image}\n", refused),
        "a plain FROM": (f"FROM {image}\nRUN cat /secret.txt\n", refused),
        "COPY --from": (f"FROM scratch\nCOPY --from={image} /secret.txt /s\n", refused),
        # (scratch has no `true`: whether buildah pulls before it fails is its own business)
        "RUN --mount=type=cache,from=": (f"FROM scratch\nRUN --mount=type=cache,from={image},target=/b true\n", None),
    }
    # all asked for at once (the hub runs a user's builds side by side): each still fails alone
    asked = {
        name: submitted(hub, "alice", name=f"stolen{i}", dockerfile_text=text)
        for i, (name, (text, _)) in enumerate(attempts.items())
    }
    for name, (text, says) in attempts.items():
        record, log = finished(hub, "alice", asked[name], timeout=300)
        assert secret not in json.dumps(record) + log, name
        if record["status"] in (400, 403):  # refused at once by the service's parse, saying why
            assert record["status"] == 400 or "bob" in record["message"], (name, record)
            continue
        assert record["status"] == "failed", (name, record, log[-2000:])
        if says:
            assert says in record["message"], (name, record["message"], log[-2000:])
    # ONBUILD: a parent of alice's own, whose trigger runs in the build on top of it
    parent, _ = build(
        hub,
        "alice",
        name="parent",
        tag="v1",
        dockerfile_text=f"FROM scratch\nLABEL parent=yes\nONBUILD COPY --from={image} /secret.txt /s\n",
    )
    if parent["status"] in (400, 403):
        assert "bob" in parent["message"], parent  # the early check saw it
    else:
        assert parent["status"] == "succeeded", parent
        child, log = build(hub, "alice", name="child", dockerfile_text=f"FROM {parent['image']}\n")
        assert secret not in log, log
        if child["status"] == "succeeded":  # buildah keeps no ONBUILD in an OCI image: nothing ran
            assert not image_holds(hub, child["image"], secret), child
        else:
            assert refused in child["message"], (child, log[-2000:])
    # bob still builds on his own image, alice on her own
    record, log = build(hub, "bob", name="mine", dockerfile_text=f"FROM scratch\nCOPY --from={image} /secret.txt /s\n")
    assert record["status"] == "succeeded", (record, log[-2000:])
    own, _ = build(hub, "alice", name="own", tag="v1", dockerfile_text="FROM scratch\nLABEL mine=yes\n")
    assert own["status"] == "succeeded", own
    again, log = build(hub, "alice", name="own2", dockerfile_text=f"FROM {own['image']}\nLABEL again=yes\n")
    assert again["status"] == "succeeded", (again, log[-2000:])
    # each user's builds have a storage of their own; the grants went with their builds
    storage = os.path.join(hub.data_dir, "buildah", "storage", "users")
    assert sorted(os.listdir(storage)) == ["alice", "bob"]
    assert os.listdir(os.path.join(hub.data_dir, "registry-gate", "grants")) == []


def test_pip_installs_go_to_the_users_own_environment(hub):
    name, data = tiny_wheel("ksdemo_alice")
    with open(os.path.join(hub.data_dir, "users", "alice", "mnt", name), "wb") as f:
        f.write(data)
    out = terminal(
        hub,
        "alice",
        f"pip install --no-index --no-deps {name} 2>&1 | tail -1; "
        "python -c 'import ksdemo_alice; print(\"value\", ksdemo_alice.VALUE, ksdemo_alice.__file__)'",
    )
    assert "Successfully installed ksdemo-alice-0.1" in out, out
    assert f"value 42 {hub.data_dir}/users/alice/home/.venvs/" in out, out
    # never in the hub's environment, never seen by bob
    import sysconfig

    assert not os.path.exists(os.path.join(sysconfig.get_paths()["purelib"], "ksdemo_alice.py"))
    out = terminal(hub, "bob", "python -c 'import ksdemo_alice'; pip list 2>/dev/null | grep -c ksdemo")
    assert "No module named 'ksdemo_alice'" in out and "\r\n0\r\n" in out, out
    # a from_server build would add exactly what alice installed
    env = requests.get(
        f"{hub.url}/user/alice/api/kubestudio/environment",
        headers={"Authorization": f"token {hub.user_token('alice')}"},
        timeout=60,
    ).json()
    added = sorted(set(env["current"]["pip"]) - set(env["baseline"]["pip"]))
    assert [a.lower().replace("_", "-") for a in added] == ["ksdemo-alice==0.1"], added


def test_a_job_and_a_board_run_as_their_owner(hub):
    jobs = JobsHub(hub)
    jobs._tokens["alice"] = hub.user_token("alice")
    jobs.write(
        "alice",
        "whoami.py",
        "import os, pwd\nprint('uid', pwd.getpwuid(os.getuid()).pw_name)\n"
        "open('job-output.txt', 'w').write('written by the job')\n",
    )
    client = jobs.client("alice")
    client.create(name="whoami", script="whoami.py")
    done = client.wait("whoami", timeout=120)
    assert done["status"] == "succeeded", done
    assert f"uid {hub.account_prefix}alice" in client.logs("whoami")
    output = os.path.join(jobs.workspace("alice"), "job-output.txt")
    assert os.stat(output).st_uid == account(hub, "alice").pw_uid

    boards = BoardsHub(hub)
    boards._tokens["alice"] = hub.user_token("alice")
    terminal(hub, "alice", "mkdir -p runs/one")
    board = boards.client("alice").open_board("runs/one")
    try:
        deadline = time.monotonic() + 60
        while (
            requests.get(
                hub.url + board["url"] + "data/runs",
                timeout=30,
                headers={"Authorization": f"token {hub.user_token('alice')}"},
            ).status_code
            != 200
        ):
            assert time.monotonic() < deadline
            time.sleep(0.3)
        pids = [p for p in os.listdir("/proc") if p.isdigit() and _is_tensorboard_of(p, board["id"])]
        assert pids and all(_uid(p) == account(hub, "alice").pw_uid for p in pids)
    finally:
        boards.client("alice").stop(board["id"])


def _is_tensorboard_of(pid, board_id):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
    except OSError:
        return False
    return b"tensorboard" in cmdline and board_id.encode() in cmdline


def _uid(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("Uid:")).split()[1])


def test_after_a_hub_restart_everything_still_holds(hub):
    pid = hub.server_pid("alice")
    hub.stop(stop_servers=False)
    hub.start()
    assert hub.server_pid("alice") == pid and _uid(str(pid)) == account(hub, "alice").pw_uid
    out = terminal(hub, "bob", f"id -un; cat ../../alice/mnt/mine.txt; ls {hub.data_dir}")
    assert f"{hub.account_prefix}bob\r\n" in out and "Permission denied" in out, out
    hub.stop_server("bob")
    hub.spawn("bob")
    out = terminal(hub, "bob", "id -un; python -c 'import ksdemo_alice'")
    assert f"{hub.account_prefix}bob\r\n" in out and "No module named" in out, out


def test_a_hub_whose_users_share_its_account_says_so(tmp_path):
    local = LocalHub(
        tmp_path,
        settings={"images_service": False, "jobs_service": False, "tensorboards_service": False},
        extra_config='c.UserAccounts.mode = "shared"\nc.Containment.mode = "off"\n',
    )
    local.start()
    try:
        page = local.login("sue").get(f"{local.url}/hub/spawn", timeout=30)
        assert "All servers run as one OS account" in page.text, page.text[-3000:]
        # and what is enforced without cgroups
        assert "Jobs, servings and boards here have no cgroups" in page.text, page.text[-3000:]
        local.spawn("sue")
        out = terminal(local, "sue", "id -un")
        assert "\rroot\r\nEND-42" in out, out
        assert not [e for e in pwd.getpwall() if e.pw_name.startswith(local.account_prefix)]
    finally:
        local.stop()
