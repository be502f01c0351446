"""The jobs service's Kubernetes objects: every kind accepted by the bench's apiserver (the real
CRD schemas: a dry run), the batch Job by kubernetes-validate too; and a 2-node PyTorchJob made by
the builder runs on the bench's operator with the user's workspace, its ranks writing their
RANK and WORLD_SIZE there."""

import json
import os
import sys
import time

import kubernetes_validate

from kubestudio.jobs.spec import parse_spec, replica_names
from kubestudio.jobs.training.backends.base import JobRun
from kubestudio.jobs.training.manifests import KINDS, job_manifest, object_name
from kubestudio.spawner.pods import PodSettings
from kubestudio.spawner.projects import parse_project
from kubestudio.testing.imageshub import ensure_claims

VISION = parse_project(
    "vision",
    {"node_selector": "org=vision", "tolerations": "gpu=true:NoSchedule", "volume_mount": "datasets(pvc):/datasets"},
)


def run_of(body, user="alice", project=VISION, job_id="0123456789ab"):
    spec = parse_spec(body)
    return JobRun(id=job_id, owner=user, slug=user, spec=spec, replicas=replica_names(spec), project=project)


SPECS = {
    "Job": {
        "name": "one",
        "script": "train.py",
        "args": ["--lr", "0.1"],
        "max_runtime": "1h",
        "ttl_after_finished": 600,
    },
    "PyTorchJob": {
        "name": "ddp",
        "script": "train.py",
        "nodes": 2,
        "procs_per_node": 2,
        "resources": {"cpu": 4, "memory": "16Gi", "gpu": "1(A100)"},
        "packages": ["rich"],
    },
    "TFJob": {"name": "tf", "script": "train.py", "nodes": 3, "framework": "tensorflow"},
    "MPIJob": {"name": "hvd", "script": "train.py", "nodes": 2, "procs_per_node": 4, "framework": "mpi"},
    "TrainJob": {
        "name": "tj",
        "script": "train.py",
        "nodes": 2,
        "framework": "trainjob",
        "runtime": "torch-distributed",
    },
}


def test_the_kind_follows_framework_and_nodes():
    for kind, body in SPECS.items():
        assert job_manifest(run_of(body), PodSettings(), "img:1")["kind"] == kind


def test_what_every_pod_gets():
    manifest = job_manifest(
        run_of(SPECS["PyTorchJob"]), PodSettings(gpu_types={"A100": ["NVIDIA-A100-SXM4-80GB"]}), "img:1"
    )
    assert manifest["metadata"]["name"] == "ddp-012345"
    master = manifest["spec"]["pytorchReplicaSpecs"]["Master"]["template"]
    assert (
        manifest["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] == 1 and manifest["spec"]["nprocPerNode"] == "2"
    )
    pod, main = master["spec"], master["spec"]["containers"][0]
    assert pod["automountServiceAccountToken"] is False and pod["nodeSelector"] == {"org": "vision"}
    assert pod["tolerations"] == [{"key": "gpu", "operator": "Equal", "value": "true", "effect": "NoSchedule"}]
    assert pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0][
        "matchExpressions"
    ][0]["values"] == ["NVIDIA-A100-SXM4-80GB"]
    assert {(m["mountPath"], m.get("subPath")) for m in main["volumeMounts"]} == {
        ("/mnt/alice", "alice"),
        ("/archives/alice", "alice"),
        ("/datasets", None),
    }
    assert main["resources"] == {
        "requests": {"cpu": "4", "memory": "16Gi"},
        "limits": {"nvidia.com/gpu": "1", "cpu": "4", "memory": "16Gi"},
    }
    assert main["command"][:2] == ["sh", "-c"] and "pip install" in main["command"][2] and "torchrun" in main["command"]
    assert "/mnt/alice/train.py" in main["command"] and main["workingDir"] == "/mnt/alice"
    assert main["securityContext"]["allowPrivilegeEscalation"] is False
    assert master["metadata"]["labels"]["kubestudio.io/component"] == "train"
    cpu_only = job_manifest(run_of(SPECS["Job"]), PodSettings(), "img:1")["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "NVIDIA_VISIBLE_DEVICES", "value": "none"} in cpu_only["env"]
    assert (
        object_name(run_of(SPECS["Job"]).__class__(**{**run_of(SPECS["Job"]).__dict__, "attempt": 2}))
        == "one-012345-a2"
    )


def test_the_batch_job_is_valid_kubernetes():
    manifest = job_manifest(run_of(SPECS["Job"]), PodSettings(), "img:1")
    kubernetes_validate.validate(manifest, "1.30.0", strict=True)
    assert manifest["spec"]["activeDeadlineSeconds"] == 3600 and manifest["spec"]["ttlSecondsAfterFinished"] == 600


def test_the_apiserver_accepts_every_kind(bench, crds):
    ensure_claims(bench)
    for kind, body in SPECS.items():
        manifest = job_manifest(run_of(body, job_id=f"{len(kind):012x}"), PodSettings(), "img:1")
        api_version, plural, _ = KINDS[kind]
        prefix = "/apis/" + api_version
        r = bench.api("POST", f"{prefix}/namespaces/default/{plural}?dryRun=All&fieldValidation=Strict", json=manifest)
        assert r.status_code == 201, (kind, r.text)


# the master waits for every rank, as a real job's rendezvous does: the job succeeds when the master
# ends, and a worker still starting on a busy machine would be cleaned up before it wrote its file
RANKS = """import json, os, time
with open(f"ranks/{os.environ['RANK']}.json", "w") as f:
    json.dump({k: os.environ[k] for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "KUBESTUDIO_JOB")}, f)
print("rank", os.environ["RANK"], "wrote its file", flush=True)
deadline = time.monotonic() + 60
while os.environ["RANK"] == "0" and time.monotonic() < deadline and \\
        len(os.listdir("ranks")) < int(os.environ["WORLD_SIZE"]):
    time.sleep(0.1)
"""


def test_a_pytorchjob_from_the_builder_runs_on_the_bench(bench, crds):
    ensure_claims(bench)
    workspace = bench.volume_folder("default", "kubestudio-workspace", "carol")
    os.makedirs(os.path.join(workspace, "ranks"), exist_ok=True)
    with open(os.path.join(workspace, "ranks.py"), "w") as f:
        f.write(RANKS)
    run = run_of(
        {"name": "ranks", "script": "ranks.py", "nodes": 2, "framework": "pytorch"},
        user="carol",
        project=parse_project("public", {}),
    )
    manifest = job_manifest(run, PodSettings(uid=os.getuid(), gid=os.getgid()), "kubestudio/notebook:1")
    for replica in manifest["spec"]["pytorchReplicaSpecs"].values():  # the bench runs the hub's Python
        replica["template"]["spec"]["containers"][0]["command"][0] = sys.executable
    r = bench.api("POST", "/apis/kubeflow.org/v1/namespaces/default/pytorchjobs", json=manifest)
    assert r.status_code == 201, r.text
    name = manifest["metadata"]["name"]
    deadline = time.monotonic() + 90
    while True:
        status = (
            bench.api("GET", f"/apis/kubeflow.org/v1/namespaces/default/pytorchjobs/{name}").json().get("status") or {}
        )
        done = [
            c["type"]
            for c in status.get("conditions") or []
            if c["type"] in ("Succeeded", "Failed") and c["status"] == "True"
        ]
        if done:
            break
        assert time.monotonic() < deadline, status
        time.sleep(0.5)
    assert done == ["Succeeded"], status
    seen = [json.load(open(os.path.join(workspace, "ranks", f"{rank}.json"))) for rank in (0, 1)]
    assert seen == [
        {"RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": f"{name}-master-0", "KUBESTUDIO_JOB": "ranks"},
        {"RANK": "1", "WORLD_SIZE": "2", "MASTER_ADDR": f"{name}-master-0", "KUBESTUDIO_JOB": "ranks"},
    ]
    assert "rank 1 wrote its file" in bench.pod_log("default", f"{name}-worker-0")
    r = bench.api(
        "DELETE",
        f"/apis/kubeflow.org/v1/namespaces/default/pytorchjobs/{name}",
        json={"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Foreground"},
    )
    assert r.status_code == 200
