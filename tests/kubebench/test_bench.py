"""The bench behaves like a cluster: real scheduler, controllers, validation; simulated kubelet."""

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest
import yaml

from kubestudio.testing.wait import wait_for

from .conftest import MISSING_IMAGE

PY = sys.executable


def pod_manifest(name, command, labels=None, **spec):
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"test": name, **(labels or {})}},
        "spec": {
            "containers": [{"name": "main", "image": "python:3.11", "command": command}],
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 2,
            **spec,
        },
    }


def get(bench, path):
    r = bench.api("GET", path)
    r.raise_for_status()
    return r.json()


def phase(bench, name, ns="default"):
    return get(bench, f"/api/v1/namespaces/{ns}/pods/{name}").get("status", {}).get("phase")


def events_for(bench, name, ns="default"):
    items = get(bench, f"/api/v1/namespaces/{ns}/events?fieldSelector=involvedObject.name={name}")["items"]
    return [(e["reason"], e["message"]) for e in items]


def create(bench, manifest, ns="default"):
    kind = manifest["kind"].lower() + "s"
    r = bench.api("POST", f"/api/v1/namespaces/{ns}/{kind}", json=manifest)
    assert r.status_code == 201, r.text
    return r.json()


def test_nodes_registered_ready_with_gpus(bench):
    nodes = {n["metadata"]["name"]: n for n in get(bench, "/api/v1/nodes")["items"]}
    assert set(nodes) == {"cpu-1", "cpu-2", "gpu-a100-1", "gpu-a100-2", "gpu-v100-1"}
    a100 = nodes["gpu-a100-1"]
    assert a100["status"]["allocatable"]["nvidia.com/gpu"] == "1"
    assert a100["metadata"]["labels"]["nvidia.com/gpu.product"] == "NVIDIA-A100-SXM4-80GB"
    assert {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"} in nodes["gpu-v100-1"]["spec"][
        "taints"
    ]
    lease = get(bench, "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/cpu-1")
    assert lease["spec"]["holderIdentity"] == "cpu-1"


def test_process_mode_pod_runs_command_with_env_mounts_and_exit_code(bench):
    script = textwrap.dedent(
        """
        import json, os
        print("pod", os.environ["POD_NAME"], "ip", os.environ["POD_IP"], "node", os.environ["NODE"], flush=True)
        with open("/data/hello.txt", "w") as f:
            f.write("written by " + os.environ["POD_NAME"])
        with open("/dev/termination-log", "w") as f:
            f.write("digest: sha256:abc")
        raise SystemExit(3)
        """
    )
    manifest = pod_manifest("proc-1", [PY, "-c", script])
    manifest["spec"]["containers"][0]["env"] = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
    ]
    manifest["spec"]["containers"][0]["volumeMounts"] = [{"name": "ws", "mountPath": "/data", "subPath": "alice"}]
    manifest["spec"]["volumes"] = [{"name": "ws", "persistentVolumeClaim": {"claimName": "workspace"}}]
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "workspace"},
        "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    r = bench.api("POST", "/api/v1/namespaces/default/persistentvolumeclaims", json=claim)
    assert r.status_code in (201, 409)
    wait_for(
        lambda: (
            get(bench, "/api/v1/namespaces/default/persistentvolumeclaims/workspace")["status"].get("phase") == "Bound"
        ),
        what="claim bound",
    )
    create(bench, manifest)
    wait_for(lambda: phase(bench, "proc-1") == "Failed", what="pod Failed")
    pod = get(bench, "/api/v1/namespaces/default/pods/proc-1")
    state = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert state["exitCode"] == 3 and state["reason"] == "Error"
    assert state["message"] == "digest: sha256:abc"
    ip = pod["status"]["podIP"]
    assert ip.startswith(bench.pod_net_prefix)
    output = bench.pod_log("default", "proc-1")
    assert f"pod proc-1 ip {ip} node {pod['spec']['nodeName']}" in output
    with open(os.path.join(bench.volume_folder("default", "workspace", "alice"), "hello.txt")) as f:
        assert f.read() == "written by proc-1"
    reasons = [r for r, _ in events_for(bench, "proc-1")]
    for reason in ("Scheduled", "Pulling", "Pulled", "Created", "Started"):
        assert reason in reasons

    # the same subPath from a second pod is the same folder
    reader = pod_manifest("proc-2", [PY, "-c", "print(open('/ws/alice/hello.txt').read())"])
    reader["spec"]["containers"][0]["volumeMounts"] = [{"name": "ws", "mountPath": "/ws"}]
    reader["spec"]["volumes"] = manifest["spec"]["volumes"]
    create(bench, reader)
    wait_for(lambda: phase(bench, "proc-2") == "Succeeded", what="reader Succeeded")
    assert bench.pod_log("default", "proc-2").strip() == "written by proc-1"


def test_kubectl_create_get_describe_logs_delete(bench):
    manifest = pod_manifest(
        "kubectl-pod", [PY, "-c", "import time; print('hello from kubectl-pod', flush=True); time.sleep(600)"]
    )
    manifest["spec"]["restartPolicy"] = "Always"
    path = os.path.join(bench.root, "kubectl-pod.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(manifest, f)

    watch = subprocess.Popen(
        [
            bench.kubectl_bin,
            "--kubeconfig",
            bench.kubeconfig,
            "get",
            "pods",
            "-l",
            "test=kubectl-pod",
            "--watch",
            "--no-headers",
            "-o",
            "custom-columns=NAME:.metadata.name,PHASE:.status.phase",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    time.sleep(1)
    out = bench.kubectl("create", "-f", path)
    assert "pod/kubectl-pod created" in out.stdout
    seen = []
    try:
        for line in watch.stdout:
            seen.append(line.split()[-1])
            if seen[-1] == "Running":
                break
    finally:
        watch.kill()
    assert seen[0] == "Pending" and seen[-1] == "Running", seen

    assert bench.kubectl("get", "pods", "-l", "test=kubectl-pod", "-o", "name").stdout.strip() == "pod/kubectl-pod"
    obj = json.loads(bench.kubectl("get", "pod", "kubectl-pod", "-o", "json").stdout)
    assert obj["status"]["phase"] == "Running" and obj["spec"]["nodeName"]
    described = bench.kubectl("describe", "pod", "kubectl-pod").stdout
    assert "Status:       Running" in described and "Started container main" in described
    logs = wait_for(lambda: bench.kubectl("logs", "kubectl-pod").stdout, what="kubectl logs")
    assert "hello from kubectl-pod" in logs
    assert "deleted" in bench.kubectl("delete", "pod", "kubectl-pod", "--wait=true", timeout=60).stdout
    assert "NotFound" in bench.kubectl("get", "pod", "kubectl-pod", check=False).stderr
    assert "No resources found" in bench.kubectl("get", "pytorchjobs").stderr


def test_two_gpus_on_one_gpu_nodes_stay_pending_with_scheduler_event(bench):
    manifest = pod_manifest("greedy", [PY, "-c", "pass"])
    manifest["spec"]["containers"][0]["resources"] = {"limits": {"nvidia.com/gpu": "2"}}
    create(bench, manifest)
    message = wait_for(
        lambda: next((m for r, m in events_for(bench, "greedy") if r == "FailedScheduling"), None),
        what="FailedScheduling",
    )
    assert "Insufficient nvidia.com/gpu" in message
    assert phase(bench, "greedy") == "Pending"


def test_unmatched_node_selector_stays_pending(bench):
    create(bench, pod_manifest("nowhere", [PY, "-c", "pass"], nodeSelector={"org": "nobody"}))
    message = wait_for(
        lambda: next((m for r, m in events_for(bench, "nowhere") if r == "FailedScheduling"), None),
        what="FailedScheduling",
    )
    assert "node selector" in message or "node affinity" in message
    assert phase(bench, "nowhere") == "Pending"


def test_missing_image_goes_to_image_pull_backoff(bench):
    manifest = pod_manifest("noimage", [PY, "-c", "pass"])
    manifest["spec"]["containers"][0]["image"] = MISSING_IMAGE

    def waiting_reason():
        statuses = (
            get(bench, "/api/v1/namespaces/default/pods/noimage").get("status", {}).get("containerStatuses") or []
        )
        return statuses[0]["state"].get("waiting", {}).get("reason") if statuses else None

    create(bench, manifest)
    wait_for(lambda: waiting_reason() == "ImagePullBackOff", what="ImagePullBackOff")
    reasons = [m for r, m in events_for(bench, "noimage") if r == "Failed"]
    assert "Error: ErrImagePull" in reasons and "Error: ImagePullBackOff" in reasons


def job_manifest(name, code, backoff_limit=0):
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": backoff_limit,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "main",
                            "image": "python:3.11",
                            "command": [PY, "-c", f"print('job {name}'); raise SystemExit({code})"],
                        }
                    ],
                }
            },
        },
    }


def job_condition(bench, name):
    conditions = get(bench, f"/apis/batch/v1/namespaces/default/jobs/{name}").get("status", {}).get("conditions") or []
    return next((c["type"] for c in conditions if c["status"] == "True"), None)


def test_job_completes_and_job_fails_after_backoff_limit_and_gc_removes_pods(bench):
    for name, code, limit in (("job-ok", 0, 0), ("job-bad", 1, 1)):
        r = bench.api("POST", "/apis/batch/v1/namespaces/default/jobs", json=job_manifest(name, code, limit))
        assert r.status_code == 201, r.text
    assert wait_for(lambda: job_condition(bench, "job-ok"), what="job-ok finished") == "Complete"
    assert wait_for(lambda: job_condition(bench, "job-bad"), timeout=90, what="job-bad finished") == "Failed"
    bad_pods = get(bench, "/api/v1/namespaces/default/pods?labelSelector=job-name=job-bad")["items"]
    assert len(bad_pods) == 2  # the first try and one retry (backoffLimit 1)
    assert all(p["status"]["phase"] == "Failed" for p in bad_pods)

    r = bench.api("DELETE", "/apis/batch/v1/namespaces/default/jobs/job-ok", json={"propagationPolicy": "Background"})
    assert r.status_code == 200
    wait_for(
        lambda: not get(bench, "/api/v1/namespaces/default/pods?labelSelector=job-name=job-ok")["items"],
        what="garbage collector removed the job's pods",
    )


def test_pytorchjob_schema_enforced_by_apiserver(bench, crds):
    assert "pytorchjobs.kubeflow.org" in crds
    job = {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": {"name": "no-replicas"}, "spec": {}}
    r = bench.api("POST", "/apis/kubeflow.org/v1/namespaces/default/pytorchjobs", json=job)
    assert r.status_code == 422, r.text
    assert "pytorchReplicaSpecs" in r.json()["message"]
    good = {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": "ok"},
        "spec": {
            "pytorchReplicaSpecs": {
                "Master": {
                    "replicas": 1,
                    "template": {"spec": {"containers": [{"name": "pytorch", "image": "pytorch/pytorch:2.4.0"}]}},
                }
            }
        },
    }
    r = bench.api("POST", "/apis/kubeflow.org/v1/namespaces/default/pytorchjobs", json=good)
    assert r.status_code == 201, r.text
    assert "ok" in bench.kubectl("get", "pytorchjobs").stdout


def test_every_shared_crd_installed(crds):
    for name in (
        "pytorchjobs.kubeflow.org",
        "tfjobs.kubeflow.org",
        "mpijobs.kubeflow.org",
        "trainjobs.trainer.kubeflow.org",
        "inferenceservices.serving.kserve.io",
    ):
        assert name in crds, name


def test_graceful_deletion_kills_the_process(bench):
    marker = os.path.join(bench.root, "graceful.txt")
    script = textwrap.dedent(f"""
        import signal, sys, time
        def bye(*a):
            open({marker!r}, "w").write("got SIGTERM")
            sys.exit(0)
        signal.signal(signal.SIGTERM, bye)
        print("ready", flush=True)
        time.sleep(600)
    """)
    create(bench, pod_manifest("graceful", [PY, "-c", script]))
    wait_for(
        lambda: "ready" in (bench.pod_log("default", "graceful") if phase(bench, "graceful") == "Running" else ""),
        what="process up",
    )
    bench.api("DELETE", "/api/v1/namespaces/default/pods/graceful")
    wait_for(lambda: bench.api("GET", "/api/v1/namespaces/default/pods/graceful").status_code == 404, what="pod gone")
    with open(marker) as f:
        assert f.read() == "got SIGTERM"
    assert "Killing" in [r for r, _ in events_for(bench, "graceful")]


def test_fault_proxy_counts_and_injects(bench):
    bench.counts(reset=True)
    bench.kubectl("get", "pods", through_proxy=True)
    bench.kubectl("get", "nodes", through_proxy=True)
    counts = bench.counts()
    assert counts.get("list pods") == 1 and counts.get("list nodes") == 1
    bench.set_faults(rules=[{"verb": "list", "resource": "pods", "rate": 1.0, "error": 500}])
    try:
        out = bench.kubectl("get", "pods", through_proxy=True, check=False)
        assert out.returncode != 0 and "kubebench injected fault" in out.stderr
        bench.set_faults(rules=[{"verb": "list", "resource": "pods", "rate": 1.0, "error": 429, "retry_after": 1}])
        import requests

        r = requests.get(
            f"{bench.proxy_url}/api/v1/namespaces/default/pods",
            headers={"Authorization": f"Bearer {bench.token}"},
            verify=False,
        )
        assert r.status_code == 429 and r.headers["Retry-After"] == "1"
        bench.set_faults(rules=[{"verb": "get", "resource": "nodes", "rate": 1.0, "error": "reset"}])
        with pytest.raises(requests.ConnectionError):
            requests.get(
                f"{bench.proxy_url}/api/v1/nodes/cpu-1",
                headers={"Authorization": f"Bearer {bench.token}"},
                verify=False,
            )
        # dropped watches: the stream ends after the set time
        bench.set_faults(drop_watch_after_s=1)
        started = time.monotonic()
        with pytest.raises((requests.ConnectionError, requests.exceptions.ChunkedEncodingError)):
            with requests.get(
                f"{bench.proxy_url}/api/v1/namespaces/default/pods?watch=1",
                headers={"Authorization": f"Bearer {bench.token}"},
                stream=True,
                timeout=30,
                verify=False,
            ) as w:
                for _ in w.iter_lines():
                    pass
                raise requests.ConnectionError("stream ended")
        assert time.monotonic() - started < 10
    finally:
        bench.set_faults()
    assert bench.kubectl("get", "pods", through_proxy=True).returncode == 0


def test_kubeconfig_loads_in_every_client(bench):
    import asyncio

    import kubernetes
    import kubernetes_asyncio

    api = kubernetes.client.CoreV1Api(kubernetes.config.new_client_from_config(config_file=bench.kubeconfig))
    assert len(api.list_node().items) == 5

    async def with_asyncio():
        client = await kubernetes_asyncio.config.new_client_from_config(config_file=bench.kubeconfig)
        async with client:
            nodes = await kubernetes_asyncio.client.CoreV1Api(client).list_node()
            return len(nodes.items)

    assert asyncio.run(with_asyncio()) == 5
    version = bench.kubectl("version", "-o", "json").stdout
    assert json.loads(version)["serverVersion"]["gitVersion"].startswith("v1.20.2")


def test_responder_and_status_modes(bench):
    import requests

    responder = pod_manifest("answer", [], labels={"kubebench.kubestudio.io/mode": "responder"})
    responder["spec"]["containers"][0]["ports"] = [{"containerPort": 9000}]
    del responder["spec"]["containers"][0]["command"]
    create(bench, responder)
    quiet = pod_manifest("quiet", [], labels={"kubebench.kubestudio.io/mode": "status"})
    del quiet["spec"]["containers"][0]["command"]
    create(bench, quiet)
    wait_for(lambda: phase(bench, "answer") == "Running" and phase(bench, "quiet") == "Running", what="both Running")
    ip = get(bench, "/api/v1/namespaces/default/pods/answer")["status"]["podIP"]
    r = requests.get(f"http://{ip}:9000/anything", timeout=5)
    assert r.status_code == 200 and r.json() == {"pod": "answer", "namespace": "default"}
    quiet_ip = get(bench, "/api/v1/namespaces/default/pods/quiet")["status"]["podIP"]
    assert quiet_ip.startswith(bench.pod_net_prefix) and quiet_ip != ip
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://{quiet_ip}:9000/", timeout=2)
    for name in ("answer", "quiet"):
        bench.api("DELETE", f"/api/v1/namespaces/default/pods/{name}")
    wait_for(lambda: bench.api("GET", "/api/v1/namespaces/default/pods/answer").status_code == 404, what="deleted")
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://{ip}:9000/", timeout=2)


def test_kubectl_logs_follow_and_tail(bench):
    script = "import time\nfor i in range(4):\n    print('line', i, flush=True)\n    time.sleep(0.3)\n"
    create(bench, pod_manifest("chatty", [PY, "-c", script]))
    wait_for(lambda: phase(bench, "chatty") in ("Running", "Succeeded"), what="started")
    followed = bench.kubectl("logs", "-f", "chatty", timeout=30).stdout
    assert followed.splitlines() == ["line 0", "line 1", "line 2", "line 3"]
    assert bench.kubectl("logs", "chatty", "--tail=1").stdout.strip() == "line 3"
