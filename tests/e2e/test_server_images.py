"""Servers that really run in their image on the embedded default (the hub run as root): the image
service makes KubeStudio's local single-user image, servers run inside it (buildah, chroot
isolation) as their user's account with the user's folders at /mnt/<user> and /archives/<user>; a
user's built image runs as it is; `image: host` runs on the hub's Python; stopping a server removes
its working container, and a hub restart keeps servers in images running."""

import os
import pwd
import re
import subprocess
import textwrap
import time

import pytest
import requests

from kubestudio.spawner.imagerun import ImageRunner
from kubestudio.testing.doors import run_in_terminal
from kubestudio.testing.localhub import LocalHub
from kubestudio.testing.wheels import tiny_wheel

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="servers in images need a hub run as root (buildah)")

DONE = "echo END-$((6*7))"

CATALOG = textwrap.dedent("""\
    profiles:
      - slug: cpu-small
        display_name: "CPU · small"
        default: true
        custom_images: true
        images:
          - {name: scipy, display_name: "SciPy (Kubernetes)", image: quay.io/jupyter/scipy-notebook:python-3.12}
          - {name: host, display_name: "This machine's Python", image: host}
        cpu: {limit: 2}
        memory: {limit: 4G}
      - slug: gpu
        display_name: "GPU"
        gpu: {count: 1, type: A100}
        cpu: {limit: 2}
        memory: {limit: 4G}
    """)


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    root = tmp_path_factory.mktemp("server-images")
    catalog = root / "profiles.yaml"
    catalog.write_text(CATALOG)
    local = LocalHub(
        root / "hub",
        settings={"keep_servers_running": True, "profiles_file": str(catalog)},
        base_images=True,
        extra_config='c.LocalWorkspaceSpawner.gpus = ["0:A100", "1:A100"]\n',
    )
    local.start()
    try:
        local.create_user("alice")
        local.create_user("bob")
        local.wait_for_server_image("alice")
        yield local
    finally:
        local.stop()
    # every working container went with its server
    assert containers(local) == [], containers(local)


def images_api(hub, user="alice"):
    session = requests.Session()
    session.headers["Authorization"] = f"token {hub.user_token(user)}"
    return session, f"{hub.url}/services/images/api"


def spawner_buildah(hub):
    """buildah on the hub's container storage (where servers' working containers are)."""
    storage = os.path.join(hub.data_dir, "containers")
    return ImageRunner(
        storage_root=os.path.join(storage, "storage"), run_root=os.path.join(storage, "run")
    ).global_args()


def containers(hub):
    if not os.path.isdir(os.path.join(hub.data_dir, "containers", "storage")):
        return []
    return subprocess.run(
        [*spawner_buildah(hub), "containers", "--quiet"], capture_output=True, text=True
    ).stdout.split()


def terminal(hub, user, command, server="", timeout=90):
    path = f"/user/{user}/" + (f"{server}/" if server else "")
    out = run_in_terminal(f"{hub.url}{path}", hub.user_token(user), f"{command}; {DONE}", "END-42", timeout=timeout)
    return out.split(DONE, 1)[-1]


def test_a_server_runs_in_the_local_image_as_its_user_with_their_folders(hub):
    hub.spawn("alice", timeout=300)
    model = hub.server_model("alice")
    image = model["state"]["kubestudio"]["image"]
    assert "/kubestudio/singleuser:" in image, model
    out = terminal(
        hub,
        "alice",
        "python3 -c 'import sys, jupyterlab; print(\"PY\", sys.executable, jupyterlab.__file__)'; "
        "grep PRETTY /etc/os-release; id -un; echo HOME=$HOME; pwd; echo W > /mnt/alice/in-image.txt; "
        "ls -d /archives/alice; ls /tmp/*/data 2>&1 | head -1; echo IMG=$KUBESTUDIO_IMAGE; "
        "echo A > /archives/alice/note.txt; echo LINK=$(cat /mnt/alice/archives/note.txt)",
    )
    # the image's own Python and JupyterLab, not the hub's environment
    assert "PY /usr/bin/python3 /usr/local/lib/python3.11/dist-packages/jupyterlab" in out, out
    assert "Debian GNU/Linux 12" in out, out
    assert hub.account_prefix + "alice" in out, out
    assert "HOME=/home/alice" in out and "/mnt/alice" in out and "/archives/alice" in out, out
    assert f"IMG={image}" in out, out
    # the workspace's archives link works in the image as on the machine
    assert "LINK=A" in out, out
    # what it wrote is in alice's workspace on the machine, owned by her account
    written = os.path.join(hub.data_dir, "users", "alice", "mnt", "in-image.txt")
    assert open(written).read() == "W\n"
    assert os.stat(written).st_uid == pwd.getpwnam(hub.account_prefix + "alice").pw_uid
    # the hub's folders are not in the image's root filesystem at all
    assert "No such file or directory" in out, out
    # the server's token is in no command line that `ps` shows every user
    token = model["state"].get("api_token") or ""
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    assert not token or token.encode() not in f.read()
            except OSError:
                pass


def test_pip_in_an_image_server_goes_to_the_users_home(hub):
    hub.spawn("alice", timeout=300)
    hub.spawn("bob", timeout=300)
    wheel_dir = os.path.join(hub.data_dir, "users", "alice", "mnt")
    name = "kst_image_probe"
    _tiny_wheel(wheel_dir, name)
    out = terminal(
        hub,
        "alice",
        f"pip install --no-index --no-deps /mnt/alice/{name}-0.1-py3-none-any.whl 2>&1; "
        f"python3 -c 'import {name}; print(\"AT\", {name}.__file__)'; "
        "tensorboard --version && echo TB-OK",
    )
    assert f"AT /home/alice/.local/lib/python3.11/site-packages/{name}.py" in out, out
    # the hub's own dependencies do not leak into the image: no pip warning about them
    assert "Successfully installed" in out and "requires" not in out, out
    assert "TB-OK" in out, out  # %tensorboard and `tensorboard` work in the image, as the user guide says
    out = terminal(hub, "bob", f"python3 -c 'import {name}' 2>&1 | tail -1")
    assert "ModuleNotFoundError" in out, out


def built(session, api, body, timeout=300):
    """The record of a build asked for with ``body``, once it succeeded."""
    build = session.post(f"{api}/builds", json=body, timeout=60)
    assert build.status_code in (200, 201, 202), build.text
    deadline = time.monotonic() + timeout
    while (status := session.get(f"{api}/builds/{build.json()['id']}", timeout=30).json())["status"] not in (
        "succeeded",
        "failed",
        "cancelled",
        "exists",
    ):
        assert time.monotonic() < deadline, status
        time.sleep(1)
    assert status["status"] == "succeeded", status
    return status


def test_a_users_built_image_runs_as_it_is(hub):
    server_image = hub.wait_for_server_image("alice")
    session, api = images_api(hub)
    # builds start from the single-user image unless told otherwise: what they make starts a server
    assert session.get(f"{api}/bases", timeout=30).json()["default"] == server_image
    # the images page names the workspace as servers see it, never the hub's own folders
    page = hub.login("alice").get(f"{hub.url}/services/images/", timeout=60)
    assert page.status_code == 200 and '<code id="workspace">/mnt/alice</code>' in page.text, page.text[:2000]
    assert hub.data_dir not in page.text
    context = os.path.join(hub.data_dir, "users", "alice", "mnt", "ctx")
    out = terminal(
        hub,
        "alice",
        "mkdir -p ctx && printf 'FROM %s\\nRUN echo only-in-this-image > /opt/marker.txt\\n' "
        f"{server_image} > ctx/Dockerfile && cat ctx/Dockerfile",
    )
    assert os.path.exists(os.path.join(context, "Dockerfile")), out
    status = built(session, api, {"name": "marked", "tag": "v1", "context": "ctx"})
    r = hub.spawn("alice", server="built", options={"image": status["image"]}, timeout=300)
    assert r.status_code in (201, 202), r.text
    assert hub.server_model("alice", "built")["state"]["kubestudio"]["image"] == status["image"]
    out = terminal(hub, "alice", "cat /opt/marker.txt; id -un", server="built")
    assert "only-in-this-image" in out and hub.account_prefix + "alice" in out, out
    before = len(containers(hub))
    hub.stop_server("alice", "built")
    deadline = time.monotonic() + 30
    while len(containers(hub)) >= before:
        assert time.monotonic() < deadline, containers(hub)
        time.sleep(0.5)
    # an image with no Jupyter server in it (the plain Python base a Dockerfile may start from): the
    # start fails at once, saying why and what to do, not "see the hub log"
    base = server_image.split("/", 1)[0] + "/base/python:3.11"
    status = built(session, api, {"name": "plain", "tag": "v1", "dockerfile_text": f"FROM {base}\nLABEL plain=yes\n"})
    plain = status["image"]
    r = hub.spawn("alice", server="plain", options={"image": plain}, wait=False)
    if r.status_code == 500:  # failed within the hub's own wait
        message = r.json()["message"]
    else:  # what the spawn page shows
        assert r.status_code == 202, r.text
        message = hub.progress_events("alice", "plain", timeout=300)[-1]["message"]
    assert (
        f"image {plain} cannot start a server: it has no jupyterhub-singleuser. Build it FROM "
        f"KubeStudio's single-user image ({server_image}" in message
    ), message


def jobs_api(hub, user="alice"):
    session = requests.Session()
    session.headers["Authorization"] = f"token {hub.user_token(user)}"
    return session, f"{hub.url}/services/jobs/api/jobs"


def run_job(hub, body, user="alice", timeout=300):
    session, api = jobs_api(hub, user)
    r = session.post(api, json=body, timeout=60)
    assert r.status_code == 201, r.text
    job = r.json()
    deadline = time.monotonic() + timeout
    while (job := session.get(f"{api}/{job['id']}", timeout=30).json())["status"] not in (
        "succeeded",
        "failed",
        "cancelled",
    ):
        assert time.monotonic() < deadline, job
        time.sleep(0.5)
    return job, session.get(f"{api}/{job['id']}/logs", timeout=30).text


def test_a_job_naming_an_image_runs_in_it_as_its_owner(hub):
    image = hub.wait_for_server_image("alice")
    workspace = os.path.join(hub.data_dir, "users", "alice", "mnt")
    with open(os.path.join(workspace, "ranks.py"), "w") as f:
        f.write(
            "import os, sys\n"
            "rank = os.environ['RANK']\n"
            "open(f'rank-{rank}.txt', 'w').write(os.environ['WORLD_SIZE'])\n"
            "print('PY', sys.executable, os.getcwd(), os.environ['HOME'], os.environ['KUBESTUDIO_WORKSPACE'])\n"
        )
    owner = os.stat(workspace)
    os.chown(os.path.join(workspace, "ranks.py"), owner.st_uid, owner.st_gid)
    job, log = run_job(hub, {"name": "ranks", "script": "ranks.py", "procs_per_node": 2, "image": image})
    assert job["status"] == "succeeded", (job, log)
    assert job["image"] == image
    assert "PY /usr/bin/python3 /mnt/alice /home/alice /mnt/alice" in log, log
    for rank in (0, 1):
        written = os.path.join(workspace, f"rank-{rank}.txt")
        assert open(written).read() == "2"
        assert os.stat(written).st_uid == pwd.getpwnam(hub.account_prefix + "alice").pw_uid
    job, log = run_job(
        hub, {"name": "fails", "command": ["sh", "-c", "id -un; grep PRETTY /etc/os-release; exit 3"], "image": image}
    )
    assert job["status"] == "failed" and "exit code 3" in job["message"], (job, log)
    assert hub.account_prefix + "alice" in log and "Debian GNU/Linux 12" in log, log
    assert "exit status" not in log, log  # buildah's own words on the exit are not the job's
    # no working container of a job is left
    assert not [name for name in _container_names(hub) if name.startswith("ksjob-")], _container_names(hub)
    # an image from elsewhere is refused before anything runs
    session, api = jobs_api(hub)
    r = session.post(api, json={"name": "remote", "command": ["true"], "image": "quay.io/jupyter/base-notebook:x"})
    assert r.status_code == 409 and r.json()["message"].startswith(
        "image: quay.io/jupyter/base-notebook:x is not in this hub's registry"
    ), r.text
    # packages on top of the image: installed as alice into her home, once per image and list
    name, data = tiny_wheel("ksdemo_job")
    with open(os.path.join(workspace, name), "wb") as f:
        f.write(data)
    os.chown(os.path.join(workspace, name), owner.st_uid, owner.st_gid)
    body = {
        "name": "pkgs",
        "image": image,
        "packages": [f"ksdemo_job @ file:///mnt/alice/{name}"],
        "command": ["python3", "-c", "import ksdemo_job; print('VALUE', ksdemo_job.VALUE, ksdemo_job.__file__)"],
    }
    job, log = run_job(hub, body)
    assert job["status"] == "succeeded", (job, log)
    assert "VALUE 42 /home/alice/.kubestudio/job-packages/" in log and "Successfully installed" in log, log
    job, log = run_job(hub, {**body, "name": "pkgs-again"})
    assert job["status"] == "succeeded" and "VALUE 42" in log and "Successfully installed" not in log, (job, log)
    # a job that names no image (as the jobs page sends it) runs where the servers run: the same
    # image and paths as from the terminal
    job, log = run_job(hub, {"name": "no-image", "command": ["sh", "-c", "echo AT $(pwd) $HOME; command -v python"]})
    assert job["status"] == "succeeded" and job["image"] == image, (job, log)
    assert "AT /mnt/alice /home/alice" in log and "/usr/local/bin/python" in log, log


def test_servers_in_images_get_their_own_gpus_from_the_ledger(hub):
    for user in ("alice", "bob"):
        r = hub.spawn(user, server="gpu", options={"profile": "gpu"}, timeout=300)
        assert r.status_code in (201, 202), r.text
    seen = {}
    for user in ("alice", "bob"):
        assert hub.server_model(user, "gpu")["state"]["kubestudio"]["image"]
        out = terminal(hub, user, "echo CVD=[$CUDA_VISIBLE_DEVICES]", server="gpu")
        # the value printed, not the command typed (its echo holds "CVD=[$CUDA..."), wherever a
        # busy terminal split or redrew the echo
        printed = re.findall(r"CVD=\[([^\]$]*)\]", out)
        seen[user] = printed[-1] if printed else out
    assert sorted(seen.values()) == ["0", "1"], seen
    # no third: the ledger has no free GPU, and says so
    r = hub.spawn("alice", server="gpu2", options={"profile": "gpu"}, wait=False)
    assert r.status_code == 409 and "GPU" in r.json()["message"], r.text
    for user in ("alice", "bob"):
        hub.stop_server(user, "gpu")
    # their GPUs are free again
    r = hub.spawn("alice", server="gpu2", options={"profile": "gpu"}, timeout=300)
    assert r.status_code in (201, 202), r.text
    hub.stop_server("alice", "gpu2")


def test_image_host_runs_on_the_hubs_own_python(hub):
    r = hub.spawn("bob", server="host", options={"image": "host"}, timeout=120)
    assert r.status_code in (201, 202), r.text
    assert not hub.server_model("bob", "host")["state"].get("kubestudio", {}).get("image")
    out = terminal(hub, "bob", "python -c 'import sys; print(\"PY\", sys.prefix)'; pwd", server="host")
    assert "PY " + os.path.join(hub.data_dir, "users", "bob", "home", ".venvs") in out, out
    hub.stop_server("bob", "host")


def test_servers_in_images_keep_running_across_a_hub_restart(hub):
    hub.spawn("alice", timeout=300)
    pid = hub.server_pid("alice")
    hub.stop(stop_servers=False)
    hub.start()
    assert hub.server_pid("alice") == pid
    out = terminal(hub, "alice", "cat /mnt/alice/in-image.txt; id -un")
    assert "W" in out and hub.account_prefix + "alice" in out, out
    # stopping it after the restart still removes its working container
    hub.stop_server("alice")
    deadline = time.monotonic() + 30
    while any(name == "ks-alice-server" for name in _container_names(hub)):
        assert time.monotonic() < deadline, _container_names(hub)
        time.sleep(0.5)


def _container_names(hub):
    return subprocess.run(
        [*spawner_buildah(hub), "containers", "--format", "{{.ContainerName}}"], capture_output=True, text=True
    ).stdout.split()


def _tiny_wheel(folder, name):
    """A tiny wheel of ``name`` in ``folder``, owned as the folder is (the user's)."""
    file, data = tiny_wheel(name)
    path = os.path.join(folder, file)
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, 0o644)
    owner = os.stat(folder)
    os.chown(path, owner.st_uid, owner.st_gid)
