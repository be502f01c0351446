"""The TensorBoard service's Kubernetes backend on the bench, through a real hub: a board is a
pod + Service running real TensorBoard on real event files in the user's workspace (mounted
read-only), reached through the hub's proxy; the pod's settings (flags, labels, probe, no token,
non-root, project scheduling, resources within the admin's limits); why a board waits; an image
that cannot be pulled; a pod that dies starts again on the next visit; stop leaves nothing; a
service restart finds the running board again."""

import os
import signal
import subprocess
import time

import kubernetes_validate
import pytest
import requests

from kubestudio.spawner.storage import user_slug
from kubestudio.testing.imageshub import ensure_claims
from kubestudio.testing.localhub import LocalHub
from kubestudio.testing.servicehub import BoardsHub

from ..tensorboards.events import write_scalars
from .conftest import MISSING_IMAGE

pytestmark = pytest.mark.e2e

NS = "default"
IMAGE = "kubestudio/notebook:1"


class K8sBoardsHub(BoardsHub):
    """A hub whose boards run on the bench: the users' workspaces are the bench's claim."""

    def __init__(self, hub, bench):
        super().__init__(hub)
        self.bench = bench

    def workspace(self, user):
        path = self.bench.volume_folder(NS, "kubestudio-workspace", user_slug(user))
        os.makedirs(path, exist_ok=True)
        return path

    def get(self, path, user, headers=None, **kwargs):
        headers = {"Authorization": f"token {self.token(user)}", **(headers or {})}
        return requests.get(self.hub.url + path, headers=headers, timeout=30, allow_redirects=False, **kwargs)

    def wait_status(self, user, board_id, status, timeout=90):
        client = self.client(user)
        deadline = time.monotonic() + timeout
        while True:
            record = client.get(board_id)
            if record["status"] == status:
                return record
            assert time.monotonic() < deadline, record
            time.sleep(0.3)

    def wait_runs(self, url, user, count, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            r = self.get(url + "data/runs", user)
            if r.status_code == 200 and len(r.json()) >= count:
                return r.json()
            assert time.monotonic() < deadline, (r.status_code, r.text[:300])
            time.sleep(0.3)

    def pod(self, board_id):
        r = self.bench.api("GET", f"/api/v1/namespaces/{NS}/pods/tensorboard-{board_id}")
        return r.json() if r.status_code == 200 else None

    def board_service(self, board_id):
        r = self.bench.api("GET", f"/api/v1/namespaces/{NS}/services/tensorboard-{board_id}")
        return r.json() if r.status_code == 200 else None

    def wait_gone(self, board_id, timeout=60):
        deadline = time.monotonic() + timeout
        while self.pod(board_id) or self.board_service(board_id):
            assert time.monotonic() < deadline, "the board's pod or Service is still there"
            time.sleep(0.3)


def start_hub(root, bench, keep=False):
    ensure_claims(bench)
    extra = f"""
c.TensorBoardService.backend_class = "kubestudio.tensorboards.backends.kubernetes.KubernetesBoardBackend"
c.KubernetesBoardBackend.kubeconfig = {bench.proxy_kubeconfig!r}
c.KubernetesBoardBackend.image = {IMAGE!r}
c.KubernetesBoardBackend.allowed_images = ["registry.invalid/kubestudio/*"]
c.KubernetesBoardBackend.max_memory = "4Gi"
c.KubernetesBoardBackend.image_pull_grace_seconds = 2
c.KubernetesBoardBackend.reload_interval = 1
# the claims as the hub's pod mounts them (the Helm chart's /srv/workspaces): folders are checked
c.KubernetesBoardBackend.workspaces_view = {bench.volume_folder(NS, "kubestudio-workspace")!r}
c.KubernetesBoardBackend.archives_view = {bench.volume_folder(NS, "kubestudio-archives")!r}
"""
    settings = {
        "images_service": False,
        "jobs_service": False,
        "keep_servers_running": keep,
        "projects": {"vision": {"users": ["vic"], "node_selector": {"kubestudio.io/no-such-pool": "x"}}},
    }
    return K8sBoardsHub(LocalHub(root, settings=settings, extra_config=extra).start(), bench)


@pytest.fixture(scope="module")
def k8s(bench, tmp_path_factory):
    boards = start_hub(tmp_path_factory.mktemp("k8s-boards-hub"), bench)
    try:
        yield boards
    finally:
        boards.hub.stop()


def test_a_board_is_a_pod_and_service_running_tensorboard_on_the_workspace(k8s):
    for run, values in (("exp1", (1.0, 0.5)), ("exp2", (3.0,))):
        write_scalars(os.path.join(k8s.workspace("tina"), "runs", run), values=values)
    client = k8s.client("tina")
    board = client.open_board(["runs/exp1", "/mnt/tina/runs/exp2"], name="two runs")
    assert board["status"] == "starting"
    running = k8s.wait_status("tina", board["id"], "running")
    prefix = f"/services/tensorboards/b/{board['id']}"
    assert running["url"] == prefix + "/"
    # real TensorBoard, through the hub's proxy, on the folders compared in one board (it answers
    # before its first load of the events ends)
    runs = k8s.wait_runs(running["url"], "tina", 2)
    assert sorted(runs) == ["runs_exp1", "runs_exp2"]
    scalars = k8s.get(
        running["url"] + "data/plugin/scalars/scalars", "tina", params={"run": "runs_exp1", "tag": "loss"}
    )
    assert [(step, value) for _, step, value in scalars.json()] == [(0, 1.0), (1, 0.5)]
    # the same request gives the same board back
    assert client.open_board(["runs/exp1", "runs/exp2"])["id"] == board["id"]

    pod, service = k8s.pod(board["id"]), k8s.board_service(board["id"])
    kubernetes_validate.validate(pod, "1.30.0", strict=True)
    spec = pod["spec"]
    container = spec["containers"][0]
    script = container["command"][2]
    assert container["image"] == IMAGE and container["command"][:2] == ["sh", "-c"]
    assert (
        f"--logdir /tmp/logdir --host 0.0.0.0 --port 6006 --path_prefix {prefix} --reload_interval 1" in script
    ) and "--bind_all" not in script
    assert "ln -sfn /mnt/tina/runs/exp1 /tmp/logdir/runs_exp1" in script
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/mnt/tina"]["readOnly"] and mounts["/archives/tina"]["readOnly"]
    assert mounts["/mnt/tina"]["subPath"] == "tina"
    assert container["readinessProbe"]["httpGet"] == {"path": prefix + "/data/runs", "port": 6006, "scheme": "HTTP"}
    security = container["securityContext"]
    assert security["runAsNonRoot"] and security["runAsUser"] == 1000 and security["readOnlyRootFilesystem"]
    assert not security["allowPrivilegeEscalation"] and security["capabilities"] == {"drop": ["ALL"]}
    assert spec["automountServiceAccountToken"] is False
    assert container["resources"] == {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "2Gi"}}
    labels = pod["metadata"]["labels"]
    assert labels == {
        "app.kubernetes.io/managed-by": "kubestudio",
        "kubestudio.io/component": "tensorboard",
        "kubestudio.io/user": "tina",
        "kubestudio.io/project": "public",
        "kubestudio.io/board-id": board["id"],
    }
    assert service["spec"]["selector"] == {
        "kubestudio.io/board-id": board["id"],
        "kubestudio.io/component": "tensorboard",
    }
    assert service["spec"]["ports"][0]["port"] == 6006
    assert "TensorBoard" in client.logs(board["id"])  # the pod's own log
    # the workspace is there to read, and cannot be written to (the mount is read-only)
    kubectl = [k8s.bench.kubectl_bin, "--kubeconfig", k8s.bench.kubeconfig, "exec", f"tensorboard-{board['id']}", "--"]
    read = subprocess.run([*kubectl, "ls", "/mnt/tina/runs"], capture_output=True, text=True, timeout=60)
    assert read.returncode == 0 and read.stdout.split() == ["exp1", "exp2"], read
    write = subprocess.run([*kubectl, "touch", "/mnt/tina/runs/scribble"], capture_output=True, text=True, timeout=60)
    assert write.returncode != 0 and "Read-only file system" in write.stderr, write
    assert not os.path.exists(os.path.join(k8s.workspace("tina"), "runs", "scribble"))

    client.stop(board["id"])
    assert not [b for b in client.list() if b["id"] == board["id"]]
    k8s.wait_gone(board["id"])


def test_project_scheduling_resources_and_images_within_the_admins_limits(k8s):
    os.makedirs(os.path.join(k8s.workspace("vic"), "runs"), exist_ok=True)
    escape = os.path.join(k8s.workspace("vic"), "escape")
    if not os.path.islink(escape):
        os.symlink(k8s.workspace("tina"), escape)  # a link out of the workspace, to another user's
    headers = {"Authorization": f"token {k8s.token('vic')}"}
    api = k8s.url + "api/boards"
    refused = [
        ({"logdirs": "runs", "project": "secret"}, 403, "project: you are not a member of project 'secret'"),
        (
            {"logdirs": "runs", "image": "docker.io/evil/miner:1"},
            403,
            "image: 'docker.io/evil/miner:1' is not an image boards may use (allowed: registry.invalid/kubestudio/*; "
            "KubernetesBoardBackend.allowed_images)",
        ),
        (
            {"logdirs": "runs", "resources": {"memory": "64Gi"}},
            403,
            "resources.memory: 64Gi is more than a board may have (4Gi)",
        ),
        ({"logdirs": "runs", "resources": {"gpu": 1}}, 400, "resources.gpu: unknown (expected cpu, memory)"),
        (
            {"logdirs": "runs", "resources": {"cpu": "lots"}},
            400,
            "resources.cpu: 'lots' is not a positive quantity (e.g. 1 or 500m)",
        ),
        ({"logdirs": "/mnt/vic/../tina"}, 400, "logdirs[0]: '/mnt/vic/../tina' leads outside your workspace"),
        ({"logdirs": "runs/nope"}, 404, "logdirs[0]: no folder 'runs/nope' in your workspace"),
        ({"logdirs": "escape"}, 400, "logdirs[0]: '/mnt/vic/escape' leads outside your workspace"),
        ({"logdirs": "/archives/vic/old"}, 404, "logdirs[0]: no folder 'old' in your archives"),
    ]
    for body, status, message in refused:
        r = requests.post(api, json=body, headers=headers, timeout=30)
        assert (r.status_code, r.json()["message"]) == (status, message), body
    assert not k8s.client("vic").list()

    # the project's node selector: no node has it, so the board says it waits for a node
    board = k8s.client("vic").open_board("runs")
    r = requests.post(
        api,
        json={"logdirs": "runs", "project": "vision", "resources": {"cpu": 1, "memory": "1Gi"}},
        headers=headers,
        timeout=30,
    )
    assert r.status_code == 201, r.text
    waiting = r.json()
    assert waiting["id"] != board["id"] and waiting["options"] == {
        "project": "vision",
        "resources": {"cpu": "1", "memory": "1Gi"},
    }
    deadline = time.monotonic() + 60
    while "waiting for a node" not in k8s.client("vic").get(waiting["id"])["message"]:
        assert time.monotonic() < deadline, k8s.client("vic").get(waiting["id"])
        time.sleep(0.3)
    assert k8s.client("vic").get(waiting["id"])["message"].startswith("starting TensorBoard: waiting for a node: 0/")
    pod = k8s.pod(waiting["id"])
    assert pod["spec"]["nodeSelector"] == {"kubestudio.io/no-such-pool": "x"}
    assert pod["metadata"]["labels"]["kubestudio.io/project"] == "vision"
    assert pod["spec"]["containers"][0]["resources"] == {
        "requests": {"cpu": "1", "memory": "1Gi"},
        "limits": {"cpu": "1", "memory": "1Gi"},
    }
    k8s.client("vic").stop(waiting["id"])
    k8s.wait_gone(waiting["id"])
    k8s.wait_status("vic", board["id"], "running")
    k8s.client("vic").stop(board["id"])
    k8s.wait_gone(board["id"])


def test_an_image_that_cannot_be_pulled_fails_with_the_reason(k8s):
    os.makedirs(os.path.join(k8s.workspace("ivan"), "runs"), exist_ok=True)
    client = k8s.client("ivan")
    r = requests.post(
        k8s.url + "api/boards",
        json={"logdirs": "runs", "image": MISSING_IMAGE},
        headers={"Authorization": f"token {k8s.token('ivan')}"},
        timeout=30,
    )
    assert r.status_code == 201, r.text
    failed = k8s.wait_status("ivan", r.json()["id"], "failed", timeout=60)
    assert failed["message"].startswith("the image of TensorBoard cannot be pulled: "), failed
    assert "ImagePullBackOff" in failed["message"] or "ErrImagePull" in failed["message"]
    k8s.wait_gone(failed["id"])  # nothing is left of a board that failed
    client.stop(failed["id"])


def test_a_board_whose_pod_died_starts_again_on_the_next_visit(k8s):
    write_scalars(os.path.join(k8s.workspace("dora"), "runs", "a"), values=(1.0,))
    client = k8s.client("dora")
    board = client.open_board("runs/a")
    running = k8s.wait_status("dora", board["id"], "running")
    uid = k8s.pod(board["id"])["metadata"]["uid"]
    assert k8s.bench.api("DELETE", f"/api/v1/namespaces/{NS}/pods/tensorboard-{board['id']}").ok
    deadline = time.monotonic() + 60
    while (k8s.pod(board["id"]) or {}).get("metadata", {}).get("uid") == uid:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    # the next visit finds it gone, shows the starting page, and starts it again
    page = k8s.get(running["url"], "dora", headers={"Accept": "text/html", "Sec-Fetch-Mode": "navigate"})
    assert page.status_code in (200, 503) and "Starting" in page.text, page.text[:300]
    assert k8s.wait_runs(running["url"], "dora", 1, timeout=90) == ["runs_a"]
    assert k8s.pod(board["id"])["metadata"]["uid"] != uid
    client.stop(board["id"])
    k8s.wait_gone(board["id"])


def test_a_service_restart_finds_the_running_board_again(bench, tmp_path):
    restarting = start_hub(tmp_path / "hub", bench, keep=True)
    hub = restarting.hub
    try:
        write_scalars(os.path.join(restarting.workspace("rita"), "runs", "a"), values=(1.0,))
        client = restarting.client("rita")
        board = client.open_board("runs/a")
        restarting.wait_status("rita", board["id"], "running")
        uid = restarting.pod(board["id"])["metadata"]["uid"]
        os.kill(hub.service_pid("kubestudio.tensorboards"), signal.SIGKILL)
        hub.stop(stop_servers=False)
        hub.start()
        again = client.get(board["id"])
        assert again["status"] == "running", again
        assert restarting.wait_runs(again["url"], "rita", 1) == ["runs_a"]
        assert restarting.pod(board["id"])["metadata"]["uid"] == uid  # the same pod, not a new one
        client.stop(board["id"])
        restarting.wait_gone(board["id"])
    finally:
        hub.stop()
