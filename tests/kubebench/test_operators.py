"""The bench's simulated Kubeflow operators (Training Operator v1, Trainer v2) do what the real
ones document: pods and headless Services by name and label, the environment, status conditions,
run policies; and the upstream SDK (kubeflow-training's TrainingClient) works against them."""

import json
import os
import subprocess
import sys
import time

import pytest
import yaml

from kubestudio.testing.kubebench.bench import default_crds_dir
from kubestudio.testing.sdkvenv import SDKUnavailable, sdk_python

NS = "operators"
SDK_VERSION = "1.9.4"


def container(command, name="pytorch", port=None):
    c = {"name": name, "image": "kubestudio/train:1", "command": command}
    if port:
        c["ports"] = [{"name": "pytorchjob-port", "containerPort": port}]
    return c


def printenv(*names):
    return [
        sys.executable,
        "-c",
        "import os, json; print(json.dumps({k: os.environ.get(k) for k in %r}))" % (list(names),),
    ]


def replica(command, replicas=1, policy="Never", name="pytorch"):
    return {
        "replicas": replicas,
        "restartPolicy": policy,
        "template": {"spec": {"containers": [container(command, name)]}},
    }


def create(bench, plural, body, group="kubeflow.org/v1"):
    r = bench.api("POST", f"/apis/{group}/namespaces/{NS}/{plural}", json=body)
    assert r.status_code == 201, r.text
    return r.json()


def wait_condition(bench, plural, name, wanted, group="kubeflow.org/v1", timeout=90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        obj = bench.api("GET", f"/apis/{group}/namespaces/{NS}/{plural}/{name}").json()
        for c in (obj.get("status") or {}).get("conditions") or []:
            if c["type"] in wanted and c["status"] == "True":
                return obj, c["type"]
        time.sleep(0.3)
    raise AssertionError(f"{plural}/{name} never reached {wanted}: {json.dumps(obj.get('status'))}")


def pods_of(bench, name):
    items = bench.api(
        "GET", f"/api/v1/namespaces/{NS}/pods?labelSelector=training.kubeflow.org/job-name%3D{name}"
    ).json()["items"]
    return {p["metadata"]["name"]: p for p in items}


def logs(bench, pod, timeout=30):
    """The JSON line a pod printed last. A TFJob (an MPIJob) succeeds with its chief (launcher): a
    worker may print after that, on a loaded machine, so its line is waited for."""
    deadline = time.monotonic() + timeout
    while not (text := bench.pod_log(NS, pod).strip()):
        assert time.monotonic() < deadline, f"{pod} printed nothing in {timeout} s"
        time.sleep(0.3)
    return json.loads(text.splitlines()[-1])


def test_pytorchjob_pods_services_env_and_status(bench, ns):
    env = printenv(
        "MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK", "PET_NNODES", "PET_NODE_RANK", "PET_NPROC_PER_NODE"
    )
    job = {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": "ptj"},
        "spec": {
            "nprocPerNode": "2",
            "pytorchReplicaSpecs": {"Master": replica(env), "Worker": replica(env, replicas=2)},
        },
    }
    create(bench, "pytorchjobs", job)
    done, outcome = wait_condition(bench, "pytorchjobs", "ptj", {"Succeeded", "Failed"})
    assert outcome == "Succeeded", done["status"]
    types = [c["type"] for c in done["status"]["conditions"]]
    assert types[:1] == ["Created"] and "Succeeded" in types
    assert done["status"]["replicaStatuses"]["Master"]["succeeded"] == 1 and done["status"]["completionTime"]
    pods = pods_of(bench, "ptj")
    assert sorted(pods) == ["ptj-master-0", "ptj-worker-0", "ptj-worker-1"]
    labels = pods["ptj-master-0"]["metadata"]["labels"]
    assert (
        labels["training.kubeflow.org/replica-type"] == "master"
        and labels["training.kubeflow.org/job-role"] == "master"
    )
    assert pods["ptj-worker-1"]["metadata"]["labels"]["training.kubeflow.org/replica-index"] == "1"
    assert pods["ptj-worker-1"]["metadata"]["ownerReferences"][0]["kind"] == "PyTorchJob"
    master, worker1 = logs(bench, "ptj-master-0"), logs(bench, "ptj-worker-1")
    assert master == {
        "MASTER_ADDR": "ptj-master-0",
        "MASTER_PORT": "23456",
        "WORLD_SIZE": "6",
        "RANK": "0",
        "PET_NNODES": "3",
        "PET_NODE_RANK": "0",
        "PET_NPROC_PER_NODE": "2",
    }
    assert worker1["RANK"] == "2" and worker1["PET_NODE_RANK"] == "2"
    services = bench.api("GET", f"/api/v1/namespaces/{NS}/services").json()["items"]
    ours = {s["metadata"]["name"]: s for s in services if s["metadata"]["name"].startswith("ptj-")}
    assert set(ours) == {"ptj-master-0", "ptj-worker-0", "ptj-worker-1"}
    assert ours["ptj-master-0"]["spec"]["clusterIP"] == "None"

    # deleting the job with foreground propagation leaves nothing behind
    r = bench.api(
        "DELETE",
        f"/apis/kubeflow.org/v1/namespaces/{NS}/pytorchjobs/ptj",
        json={"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Foreground"},
    )
    assert r.status_code == 200
    deadline = time.monotonic() + 60
    while pods_of(bench, "ptj") or any(
        s["metadata"]["name"].startswith("ptj-")
        for s in bench.api("GET", f"/api/v1/namespaces/{NS}/services").json()["items"]
    ):
        assert time.monotonic() < deadline, "pods or Services outlived their PyTorchJob"
        time.sleep(0.5)


def test_a_failed_worker_fails_the_job_and_clean_pod_policy_applies(bench, ns):
    fail = [sys.executable, "-c", "import sys; print('oops'); sys.exit(3)"]
    sleep = [sys.executable, "-c", "import time; time.sleep(120)"]
    job = {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": "ptj-fail"},
        "spec": {
            "runPolicy": {"cleanPodPolicy": "Running"},
            "pytorchReplicaSpecs": {"Master": replica(sleep), "Worker": replica(fail)},
        },
    }
    create(bench, "pytorchjobs", job)
    done, outcome = wait_condition(bench, "pytorchjobs", "ptj-fail", {"Succeeded", "Failed"})
    assert outcome == "Failed"
    failed = next(c for c in done["status"]["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "PyTorchJobFailed" and "1 Worker replica(s) failed" in failed["message"]
    deadline = time.monotonic() + 30
    while "ptj-fail-master-0" in pods_of(bench, "ptj-fail"):  # the running master is cleaned up
        assert time.monotonic() < deadline
        time.sleep(0.3)
    assert "ptj-fail-worker-0" in pods_of(bench, "ptj-fail")  # the failed one stays, for its log


def test_active_deadline_and_ttl(bench, ns):
    sleep = [sys.executable, "-c", "import time; time.sleep(120)"]
    job = {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": "ptj-deadline"},
        "spec": {
            "runPolicy": {"activeDeadlineSeconds": 3, "ttlSecondsAfterFinished": 2, "cleanPodPolicy": "All"},
            "pytorchReplicaSpecs": {"Master": replica(sleep)},
        },
    }
    create(bench, "pytorchjobs", job)
    done, outcome = wait_condition(bench, "pytorchjobs", "ptj-deadline", {"Failed"}, timeout=30)
    assert next(c for c in done["status"]["conditions"] if c["type"] == "Failed")["reason"] == "DeadlineExceeded"
    deadline = time.monotonic() + 30
    while bench.api("GET", f"/apis/kubeflow.org/v1/namespaces/{NS}/pytorchjobs/ptj-deadline").status_code != 404:
        assert time.monotonic() < deadline, "ttlSecondsAfterFinished did not remove the job"
        time.sleep(0.5)


def test_tfjob_gets_tf_config(bench, ns):
    env = printenv("TF_CONFIG")
    job = {
        "apiVersion": "kubeflow.org/v1",
        "kind": "TFJob",
        "metadata": {"name": "tfj"},
        "spec": {
            "tfReplicaSpecs": {
                "Chief": replica(env, name="tensorflow"),
                "Worker": replica(env, replicas=2, name="tensorflow"),
            }
        },
    }
    create(bench, "tfjobs", job)
    _, outcome = wait_condition(bench, "tfjobs", "tfj", {"Succeeded", "Failed"})
    assert outcome == "Succeeded"
    config = json.loads(logs(bench, "tfj-worker-1")["TF_CONFIG"])
    assert config["task"] == {"type": "worker", "index": 1}
    assert config["cluster"]["chief"] == [f"tfj-chief-0.{NS}.svc:2222"] and len(config["cluster"]["worker"]) == 2


def test_mpijob_launcher_reads_the_hostfile(bench, ns):
    launcher = [sys.executable, "-c", "import os; print(open(os.environ['OMPI_MCA_orte_default_hostfile']).read())"]
    sleep = [sys.executable, "-c", "import time; time.sleep(120)"]
    job = {
        "apiVersion": "kubeflow.org/v1",
        "kind": "MPIJob",
        "metadata": {"name": "mpij"},
        "spec": {
            "slotsPerWorker": 2,
            "runPolicy": {"cleanPodPolicy": "Running"},
            "mpiReplicaSpecs": {
                "Launcher": replica(launcher, name="mpi"),
                "Worker": replica(sleep, replicas=2, name="mpi"),
            },
        },
    }
    create(bench, "mpijobs", job)
    _, outcome = wait_condition(bench, "mpijobs", "mpij", {"Succeeded", "Failed"})
    assert outcome == "Succeeded"
    assert bench.pod_log(NS, "mpij-launcher-0").split() == [
        f"mpij-worker-0.{NS}.svc",
        "slots=2",
        f"mpij-worker-1.{NS}.svc",
        "slots=2",
    ]


def test_trainjob_from_the_torch_distributed_runtime(bench, ns):
    with open(os.path.join(default_crds_dir(), "runtimes", "torch_distributed.yaml")) as f:
        runtime = yaml.safe_load(f)
    r = bench.api("POST", "/apis/trainer.kubeflow.org/v1alpha1/clustertrainingruntimes", json=runtime)
    assert r.status_code in (201, 409), r.text
    env = printenv("PET_NNODES", "PET_NPROC_PER_NODE", "PET_NODE_RANK", "PET_MASTER_ADDR", "SEED")
    trainjob = {
        "apiVersion": "trainer.kubeflow.org/v1alpha1",
        "kind": "TrainJob",
        "metadata": {"name": "tj"},
        "spec": {
            "runtimeRef": {"name": "torch-distributed"},
            "trainer": {"numNodes": 2, "numProcPerNode": 1, "command": env, "env": [{"name": "SEED", "value": "7"}]},
        },
    }
    create(bench, "trainjobs", trainjob, group="trainer.kubeflow.org/v1alpha1")
    done, outcome = wait_condition(
        bench, "trainjobs", "tj", {"Complete", "Failed"}, group="trainer.kubeflow.org/v1alpha1"
    )
    assert outcome == "Complete", done["status"]
    pods = bench.api("GET", f"/api/v1/namespaces/{NS}/pods?labelSelector=jobset.sigs.k8s.io/jobset-name%3Dtj").json()[
        "items"
    ]
    seen = sorted((logs(bench, p["metadata"]["name"]) for p in pods), key=lambda e: e["PET_NODE_RANK"])
    assert [e["PET_NODE_RANK"] for e in seen] == ["0", "1"]
    assert seen[0]["PET_NNODES"] == "2" and seen[0]["PET_MASTER_ADDR"] == "tj-node-0-0.tj" and seen[0]["SEED"] == "7"


SDK_SCRIPT = r"""
import json, sys
from kubeflow.training import TrainingClient, models
from kubernetes.client import V1PodTemplateSpec, V1PodSpec, V1Container, V1ObjectMeta

namespace, python = sys.argv[1], sys.argv[2]
command = [python, "-c", "import os; print('rank', os.environ['RANK'], 'of', os.environ['WORLD_SIZE'])"]
def spec():
    return models.KubeflowOrgV1ReplicaSpec(replicas=1, restart_policy="OnFailure", template=V1PodTemplateSpec(
        metadata=V1ObjectMeta(), spec=V1PodSpec(containers=[V1Container(name="pytorch", image="kubestudio/train:1", command=command)])))
job = models.KubeflowOrgV1PyTorchJob(
    api_version="kubeflow.org/v1", kind="PyTorchJob", metadata=V1ObjectMeta(name="sdk-job", namespace=namespace),
    spec=models.KubeflowOrgV1PyTorchJobSpec(run_policy=models.KubeflowOrgV1RunPolicy(clean_pod_policy="None"),
                                            pytorch_replica_specs={"Master": spec(), "Worker": spec()}))
client = TrainingClient(namespace=namespace)
client.create_job(job)
client.wait_for_job_conditions("sdk-job", job_kind="PyTorchJob", polling_interval=1, wait_timeout=120)
print("SUCCEEDED", client.is_job_succeeded("sdk-job", job_kind="PyTorchJob"))
logs, _ = client.get_job_logs("sdk-job", job_kind="PyTorchJob", is_master=False)
print("LOGS", json.dumps(logs, sort_keys=True))
print("PODS", sorted(client.get_job_pod_names("sdk-job")))
client.delete_job("sdk-job", job_kind="PyTorchJob")
"""


def training_python():
    """The upstream SDK in a venv of its own (it pins kubernetes<36, which the product must not)."""
    try:
        return sdk_python(f"kubeflow-training-{SDK_VERSION}", [f"kubeflow-training=={SDK_VERSION}"])
    except SDKUnavailable as e:
        pytest.skip(str(e))


def test_upstream_training_client_works_unchanged(bench, ns):
    python = training_python()
    run = subprocess.run(
        [python, "-W", "ignore", "-c", SDK_SCRIPT, NS, sys.executable],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "KUBECONFIG": bench.kubeconfig},
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = dict(
        line.split(" ", 1) for line in run.stdout.splitlines() if line.split(" ", 1)[0] in ("SUCCEEDED", "LOGS", "PODS")
    )
    assert out["SUCCEEDED"] == "True"
    logs = json.loads(out["LOGS"])
    assert logs == {"sdk-job-master-0": "rank 0 of 2\n", "sdk-job-worker-0": "rank 1 of 2\n"}, logs
    assert out["PODS"] == "['sdk-job-master-0', 'sdk-job-worker-0']"
