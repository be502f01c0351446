"""WorkspaceSpawner end to end: a real hub and proxy, pods on the bench in process mode."""

import json
import os
import time

import pytest
import requests
import yaml

from kubestudio.testing.imageshub import ensure_claims
from kubestudio.testing.localhub import LocalHub

from .conftest import MISSING_IMAGE
from .storm import leftover_pods, spawn_storm

CATALOG = {
    "profiles": [
        {
            "slug": "cpu",
            "default": True,
            "ide": ["jupyterlab", "vscode"],
            "images": ["kubestudio/notebook:1"],
            "cpu": {"guarantee": "100m", "limit": 1},
            "memory": {"guarantee": "256M", "limit": "1G"},
            "shm": "64M",
        },
        {"slug": "a100", "gpu": {"count": 1, "type": "A100"}, "images": ["kubestudio/notebook-cuda:1"]},
        {"slug": "h100", "gpu": {"count": 1, "type": "H100"}, "images": ["kubestudio/notebook-cuda:1"]},
        {"slug": "broken", "images": [MISSING_IMAGE]},
        {"slug": "own", "custom_images": True, "images": ["kubestudio/notebook:1"]},
    ]
}
PROJECTS = {
    "vision": {
        "users": ["vic"],
        "max_gpus": 1,
        "max_servers": 2,
        "node_selector": "kubestudio.io/pool=gpu",
        "tolerations": "nvidia.com/gpu:NoSchedule",
    }
}
CONFIG = """
import os
c.WorkspaceSpawner.namespace = "default"
c.WorkspaceSpawner.args = ["--ServerApp.allow_root=True"] if os.geteuid() == 0 else []
c.WorkspaceSpawner.gpu_types = {"A100": ["NVIDIA-A100-SXM4-80GB"]}
c.WorkspaceSpawner.image_pull_grace_seconds = 3
c.WorkspaceSpawner.start_timeout = 120
c.WorkspaceSpawner.http_timeout = 90
c.WorkspaceSpawner.delete_grace_period = 2
c.WorkspaceSpawner.extra_labels = {"team": "ml"}
c.WorkspaceSpawner.user_images_prefix = "registry.local:5000/kubestudio/{user_slug}/"
"""


def workspace_hub(bench, root, kubeconfig=None):
    ensure_claims(bench)
    catalog = os.path.join(str(root), "profiles.yaml")
    os.makedirs(str(root), exist_ok=True)
    with open(catalog, "w") as f:
        yaml.safe_dump(CATALOG, f)
    return LocalHub(
        root,
        settings={"spawner": "kubernetes", "profiles_file": catalog, "projects": PROJECTS},
        extra_config=CONFIG,
        env={"KUBECONFIG": kubeconfig or bench.kubeconfig},
    )


@pytest.fixture(scope="module")
def hub(bench, tmp_path_factory):
    local = workspace_hub(bench, tmp_path_factory.mktemp("wshub")).start()
    yield local
    local.stop()


def pod(bench, name):
    r = bench.api("GET", f"/api/v1/namespaces/default/pods/{name}")
    return r.json() if r.status_code == 200 else None


def our_pods(bench):
    items = bench.api("GET", "/api/v1/namespaces/default/pods?labelSelector=kubestudio.io/component%3Dnotebook").json()[
        "items"
    ]
    return {p["metadata"]["name"] for p in items if not p["metadata"].get("deletionTimestamp")}


def with_token(token):
    return {"Authorization": f"token {token}"}


def test_jupyter_workspace_pod_files_and_named_servers(bench, hub):
    for user in ("alice", "bob"):
        hub.create_user(user)
    alice, bob = hub.user_token("alice"), hub.user_token("bob")
    try:
        r = hub.spawn("alice", "", {"profile": "cpu"}, timeout=120)
        assert r.status_code in (201, 202), r.text
        manifest = pod(bench, "jupyter-alice")
        assert manifest["spec"]["nodeName"]
        labels = manifest["metadata"]["labels"]
        assert labels["kubestudio.io/user"] == "alice" and labels["team"] == "ml"  # merged, not replaced
        mounts = {m["mountPath"]: m for m in manifest["spec"]["containers"][0]["volumeMounts"]}
        assert mounts["/mnt/alice"]["subPath"] == "alice" and "/dev/shm" in mounts
        lab = requests.get(f"{hub.url}/user/alice/lab", headers=with_token(alice))
        assert lab.status_code == 200 and "jupyterlab" in lab.text.lower()
        # the lab extension in a pod: loaded, and its bridge answers with what this hub runs
        assert "@kubestudio/jupyterlab" in lab.text
        services = requests.get(f"{hub.url}/user/alice/api/kubestudio/services", headers=with_token(alice)).json()
        assert services["user"] == "alice" and set(services["services"]) == {"images", "jobs", "tensorboards"}, services
        items = requests.get(f"{hub.url}/user/alice/api/kubestudio/items", headers=with_token(alice))
        assert items.status_code == 200 and items.json()["items"] == [], items.text

        body = {"type": "file", "format": "text", "content": "from alice's pod"}
        r = requests.put(f"{hub.url}/user/alice/api/contents/notes.txt", json=body, headers=with_token(alice))
        assert r.status_code == 201, r.text
        with open(os.path.join(bench.volume_folder("default", "kubestudio-workspace", "alice"), "notes.txt")) as f:
            assert f.read() == "from alice's pod"

        # a second (named) server of alice sees the same workspace
        assert hub.spawn("alice", "second", {"profile": "cpu"}, timeout=120).status_code in (201, 202)
        assert pod(bench, "jupyter-alice--second") is not None
        seen = requests.get(f"{hub.url}/user/alice/second/api/contents/notes.txt", headers=with_token(alice)).json()
        assert seen["content"] == "from alice's pod"

        # bob: his own folder, no access to alice's server
        assert hub.spawn("bob", "", {"profile": "cpu"}, timeout=120).status_code in (201, 202)
        listing = requests.get(f"{hub.url}/user/bob/api/contents", headers=with_token(bob)).json()
        assert "notes.txt" not in [i["name"] for i in listing["content"]]
        assert (
            requests.get(
                f"{hub.url}/user/alice/api/contents/notes.txt", headers=with_token(bob), allow_redirects=False
            ).status_code
            == 403
        )
    finally:
        for user, server in (("alice", ""), ("alice", "second"), ("bob", "")):
            hub.stop_server(user, server)
    assert not {"jupyter-alice", "jupyter-alice--second", "jupyter-bob"} & our_pods(bench)


def test_vscode_workspace(bench, hub):
    from .test_process_tools import code_server_available

    if not code_server_available():
        pytest.skip("code-server is not installed (scripts/install-code-server.sh)")
    hub.create_user("cody")
    token = hub.user_token("cody")
    try:
        assert hub.spawn("cody", "code", {"profile": "cpu", "ide": "vscode"}, timeout=120).status_code in (201, 202)
        env = {e["name"]: e.get("value") for e in pod(bench, "jupyter-cody--code")["spec"]["containers"][0]["env"]}
        assert env["JUPYTERHUB_DEFAULT_URL"] == "/vscode/" and env["CODE_WORKINGDIR"] == "/mnt/cody"
        page = requests.get(f"{hub.url}/user/cody/code/vscode/", headers=with_token(token), timeout=120)
        assert page.status_code == 200 and ("vscode-workbench" in page.text or "code-server" in page.text)
    finally:
        hub.stop_server("cody", "code")


def test_gpu_quota_refused_before_create(bench, hub):
    hub.create_user("vic")
    try:
        r = hub.spawn("vic", "gpu1", {"profile": "a100", "project": "vision"}, timeout=120)
        assert r.status_code in (201, 202), r.text
        placed = pod(bench, "jupyter-vic--gpu1")
        assert placed["spec"]["nodeName"].startswith("gpu-a100")
        r = hub.spawn("vic", "gpu2", {"profile": "a100", "project": "vision"})
        assert r.status_code == 403
        assert r.json()["message"] == "gpus: project 'vision' allows 1 GPU per user; you hold 1 and asked for 1"
        assert pod(bench, "jupyter-vic--gpu2") is None
    finally:
        hub.stop_server("vic", "gpu1")


def test_a_training_jobs_gpus_count_when_a_server_starts(bench, hub):
    """The project's max_gpus counts servers and jobs together: a job pod of vic's holding the
    project's one GPU (made by the jobs service's builder) stops vic's GPU server."""
    from kubestudio.jobs.spec import parse_spec, replica_names
    from kubestudio.jobs.training.backends.base import JobRun
    from kubestudio.jobs.training.manifests import job_manifest
    from kubestudio.spawner.pods import PodSettings
    from kubestudio.spawner.projects import parse_project

    hub.create_user("vic")
    spec = parse_spec(
        {"name": "holds-gpu", "command": ["sleep", "120"], "resources": {"gpu": "1(A100)"}, "project": "vision"}
    )
    run = JobRun(
        id="00000000a100",
        owner="vic",
        slug="vic",
        spec=spec,
        replicas=replica_names(spec),
        project=parse_project("vision", PROJECTS["vision"]),
    )
    job = job_manifest(run, PodSettings(gpu_types={"A100": ["NVIDIA-A100-SXM4-80GB"]}), "kubestudio/train:1")
    r = bench.api("POST", "/apis/batch/v1/namespaces/default/jobs", json=job)
    assert r.status_code == 201, r.text
    try:
        deadline = time.monotonic() + 60
        while not bench.api(
            "GET", "/api/v1/namespaces/default/pods?labelSelector=kubestudio.io/job-id%3D00000000a100"
        ).json()["items"]:
            assert time.monotonic() < deadline
            time.sleep(0.3)
        time.sleep(1)  # the hub's pod watch sees it
        r = hub.spawn("vic", "gpu3", {"profile": "a100", "project": "vision"})
        assert r.status_code == 403, r.text
        assert r.json()["message"] == "gpus: project 'vision' allows 1 GPU per user; you hold 1 and asked for 1"
        assert pod(bench, "jupyter-vic--gpu3") is None
    finally:
        bench.api(
            "DELETE",
            f"/apis/batch/v1/namespaces/default/jobs/{job['metadata']['name']}",
            json={"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Foreground"},
        )


def spawn_failure(hub, user, options):
    """The failure message of a spawn, whether it fails within the API call or after it."""
    r = hub.spawn(user, "", options, wait=False)
    if r.status_code >= 400:
        assert r.status_code == 409, r.text
        return r.json()["message"], []
    assert r.status_code in (201, 202), r.text
    events = hub.progress_events(user)
    assert events[-1].get("failed"), events
    return events[-1]["message"], events


def test_gpu_type_no_node_has_fails_fast_with_plain_words(bench, hub):
    hub.create_user("hana")
    started = time.monotonic()
    message, _ = spawn_failure(hub, "hana", {"profile": "h100"})
    assert "No node has GPUs of type H100 (nvidia.com/gpu.product) for project public" in message
    assert time.monotonic() - started < 30  # start_timeout is 120
    time.sleep(1)
    assert hub.server_model("hana") is None
    assert "jupyter-hana" not in our_pods(bench)


def test_missing_image_fails_fast(bench, hub):
    hub.create_user("ivan")
    started = time.monotonic()
    message, events = spawn_failure(hub, "ivan", {"profile": "broken"})
    assert f"Image {MISSING_IMAGE} could not be pulled for 3 s" in message
    assert time.monotonic() - started < 40
    time.sleep(1)
    assert "jupyter-ivan" not in our_pods(bench)


def test_injected_faults_leave_no_orphans(bench, tmp_path):
    hub = workspace_hub(bench, tmp_path, kubeconfig=bench.proxy_kubeconfig).start()
    try:
        outcome = spawn_storm(
            hub,
            bench,
            [f"storm{i}" for i in range(5)],
            {"profile": "cpu"},
            rules=[{"verb": "create", "resource": "pods", "rate": 0.2, "error": 500}],
            drop_watch_after_s=5,
        )
        assert set(outcome.values()) <= {"ready", "failed cleanly"}, outcome
    finally:
        hub.stop()
    assert leftover_pods(bench, "kubestudio.io/component%3Dnotebook", "jupyter-storm") == [], "orphan pods"


def test_no_free_gpu_is_said_in_plain_words_while_waiting(bench, hub):
    users = ["gia", "gil", "gus"]
    for user in users:
        hub.create_user(user)
    try:
        for user in users[:2]:
            assert hub.spawn(user, "", {"profile": "a100"}, timeout=120).status_code in (201, 202)
        r = hub.spawn("gus", "", {"profile": "a100"}, wait=False)
        assert r.status_code in (201, 202), r.text
        wanted = "No free GPU of type A100 for project public right now; 2 in use of 2. Waiting for one to be freed"
        seen = []
        deadline = time.monotonic() + 60
        with hub.api("GET", "/users/gus/server/progress", stream=True, timeout=90) as stream:
            for line in stream.iter_lines(decode_unicode=True):
                if line.startswith("data:"):
                    seen.append(json.loads(line[5:])["message"])
                    if wanted in seen[-1] or time.monotonic() > deadline:
                        break
        assert any(wanted in m for m in seen), seen
        assert pod(bench, "jupyter-gus")["status"]["phase"] == "Pending"
    finally:
        for user in users:
            hub.stop_server(user)


def test_project_namespaces(bench, tmp_path):
    bench.api(
        "POST", "/api/v1/namespaces", json={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "vision"}}
    )
    for name in ("kubestudio-workspace", "kubestudio-archives"):
        bench.api(
            "POST",
            "/api/v1/namespaces/vision/persistentvolumeclaims",
            json={
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": name},
                "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}},
            },
        )
    local = workspace_hub(bench, tmp_path)
    local.extra_config += "c.WorkspaceSpawner.project_namespaces = True\n"
    local.start()
    try:
        local.create_user("vic")
        token = local.user_token("vic")
        r = local.spawn("vic", "", {"profile": "cpu", "project": "vision"}, timeout=120)
        assert r.status_code in (201, 202), r.text
        placed = bench.api("GET", "/api/v1/namespaces/vision/pods/jupyter-vic").json()
        assert placed["status"]["phase"] == "Running"
        assert requests.get(f"{local.url}/user/vic/api/status", headers=with_token(token)).status_code == 200
        # public gets its own namespace too, where no claim exists yet: said at once, plainly
        local.create_user("pam")
        message, _ = spawn_failure(local, "pam", {"profile": "cpu"})
        assert (
            message
            == "The volume claim kubestudio-workspace does not exist in namespace public; ask an admin to create it"
        )
    finally:
        local.stop()
    assert bench.api("GET", "/api/v1/namespaces/vision/pods/jupyter-vic").status_code == 404


def test_custom_image_from_the_users_own_prefix(bench, hub):
    hub.create_user("cara")
    mine = "registry.local:5000/kubestudio/cara/trainer:0.3"
    try:
        r = hub.spawn("cara", "", {"profile": "own", "image": mine}, timeout=120)
        assert r.status_code in (201, 202), r.text
        assert pod(bench, "jupyter-cara")["spec"]["containers"][0]["image"] == mine
    finally:
        hub.stop_server("cara")
    r = hub.spawn("cara", "", {"profile": "own", "image": "registry.local:5000/kubestudio/bob/trainer:0.3"})
    assert r.status_code == 400
    assert "or one of your images under registry.local:5000/kubestudio/cara/" in r.json()["message"]
