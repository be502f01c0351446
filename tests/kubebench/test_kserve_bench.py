"""The bench's simulated KServe controller (RawDeployment), kept honest by KServe's own Python SDK:
``KServeClient.create`` and ``wait_isvc_ready`` work against it unchanged. The predictor runs the
model runtime (``python -m kubestudio.jobs.serve``) as a real process on the bench with a real
scikit-learn model from the workspace claim; a new version rolls the Deployment and Ready waits for
its generation."""

import os
import time

import joblib
import requests

from kubestudio.testing import crds
from kubestudio.testing.imageshub import ensure_claims
from kubestudio.testing.kubebench.bench import default_crds_dir

NS = "default"


def train(folder, depth):
    from sklearn.datasets import load_iris
    from sklearn.tree import DecisionTreeClassifier

    X, y = load_iris(return_X_y=True)
    model = DecisionTreeClassifier(max_depth=depth, random_state=0).fit(X, y)
    os.makedirs(folder, exist_ok=True)
    joblib.dump(model, os.path.join(folder, "model.joblib"))
    return model, X


def inference_service(name, model_path):
    """The InferenceService as a KServe user writes it: the SDK's own models."""
    from kserve import V1beta1InferenceService, V1beta1InferenceServiceSpec, V1beta1PredictorSpec
    from kubernetes import client

    container = client.V1Container(
        name="kserve-container",
        image="kubestudio/notebook:1",
        command=[
            "python",
            "-m",
            "kubestudio.jobs.serve",
            "--model",
            model_path,
            "--name",
            name,
            "--host",
            "0.0.0.0",
            "--port",
            "8080",
        ],
        ports=[client.V1ContainerPort(container_port=8080, protocol="TCP")],
        readiness_probe=client.V1Probe(
            http_get=client.V1HTTPGetAction(path=f"/v1/models/{name}", port=8080), period_seconds=1
        ),
        volume_mounts=[client.V1VolumeMount(name="workspace", mount_path="/mnt/kit", sub_path="kit", read_only=True)],
    )
    volume = client.V1Volume(
        name="workspace",
        persistent_volume_claim=client.V1PersistentVolumeClaimVolumeSource(claim_name="kubestudio-workspace"),
    )
    return V1beta1InferenceService(
        api_version="serving.kserve.io/v1beta1",
        kind="InferenceService",
        metadata=client.V1ObjectMeta(
            name=name, namespace=NS, annotations={"serving.kserve.io/deploymentMode": "RawDeployment"}
        ),
        spec=V1beta1InferenceServiceSpec(
            predictor=V1beta1PredictorSpec(min_replicas=1, max_replicas=1, containers=[container], volumes=[volume])
        ),
    )


def check_against_crd(obj):
    import jsonschema

    schema = crds.schema(os.path.join(default_crds_dir(), "serving.kserve.io_inferenceservices.yaml"), "v1beta1")
    jsonschema.validate(obj, schema)


def predict(bench, name, rows):
    pods = bench.api(
        "GET", f"/api/v1/namespaces/{NS}/pods", params={"labelSelector": f"app=isvc.{name}-predictor"}
    ).json()["items"]
    answers = []
    for pod in pods:
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions") or [])
        if ready and not pod["metadata"].get("deletionTimestamp"):
            try:
                r = requests.post(
                    f"http://{pod['status']['podIP']}:8080/v1/models/{name}:predict",
                    json={"instances": rows},
                    timeout=10,
                )
            except requests.ConnectionError:
                continue  # a pod of the old version going away (its status is a moment behind)
            answers.append(r.json()["predictions"])
    return answers


def test_kserve_sdk_creates_and_waits_for_an_inference_service_on_the_bench(bench, crds):
    from kserve import KServeClient

    ensure_claims(bench)
    workspace = bench.volume_folder(NS, "kubestudio-workspace", "kit")
    v1, X = train(os.path.join(workspace, "models", "v1"), depth=1)
    v2, _ = train(os.path.join(workspace, "models", "v2"), depth=4)
    rows = X[[0, 60, 120]].tolist()
    assert v1.predict(rows).tolist() != v2.predict(rows).tolist()
    body = inference_service("iris-kit", "/mnt/kit/models/v1")
    client = KServeClient(config_file=bench.kubeconfig)
    try:
        client.create(body, namespace=NS)
        client.wait_isvc_ready("iris-kit", namespace=NS, timeout_seconds=120, polling_interval=1)
        isvc = client.get("iris-kit", namespace=NS)
        check_against_crd(isvc)  # what the SDK sent, and the status the controller wrote
        assert isvc["status"]["url"] == "http://iris-kit-predictor.default.svc.cluster.local"
        assert isvc["status"]["observedGeneration"] == 1
        deployment = bench.api("GET", f"/apis/apps/v1/namespaces/{NS}/deployments/iris-kit-predictor").json()
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert labels["serving.kserve.io/inferenceservice"] == "iris-kit" and labels["component"] == "predictor"
        assert bench.api("GET", f"/api/v1/namespaces/{NS}/services/iris-kit-predictor").status_code == 200
        assert predict(bench, "iris-kit", rows) == [v1.predict(rows).tolist()]

        # a new version: Ready again only once the Deployment has rolled to it
        client.replace("iris-kit", inference_service("iris-kit", "/mnt/kit/models/v2"), namespace=NS)
        updated = client.get("iris-kit", namespace=NS)
        assert updated["metadata"]["generation"] == 2
        client.wait_isvc_ready("iris-kit", namespace=NS, timeout_seconds=120, polling_interval=1, expected_generation=2)
        deadline = time.monotonic() + 30
        while predict(bench, "iris-kit", rows) != [v2.predict(rows).tolist()]:  # the old pod goes
            assert time.monotonic() < deadline, predict(bench, "iris-kit", rows)
            time.sleep(0.5)
    finally:
        client.delete("iris-kit", namespace=NS)
    deadline = time.monotonic() + 60
    while bench.api("GET", f"/apis/apps/v1/namespaces/{NS}/deployments/iris-kit-predictor").status_code != 404:
        assert time.monotonic() < deadline  # owned by the InferenceService: collected with it
        time.sleep(0.5)


SELDON = """import os
import joblib


class IrisModel:
    def load(self):
        self.model = joblib.load(os.path.join(os.path.dirname(__file__), "model.joblib"))

    def predict(self, X, features_names):
        return self.model.predict(X)
"""


def wait_ready(bench, name, generation=1, timeout=120):
    deadline = time.monotonic() + timeout
    while True:
        isvc = bench.api("GET", f"/apis/serving.kserve.io/v1beta1/namespaces/{NS}/inferenceservices/{name}").json()
        status = isvc.get("status") or {}
        if (
            any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions") or [])
            and status.get("observedGeneration", 0) >= generation
        ):
            return isvc
        assert time.monotonic() < deadline, status
        time.sleep(0.3)


def test_the_services_inference_services_run_on_the_bench(bench, crds):
    """What the jobs service's builder makes runs: a plain model from the claim (storageUri
    pvc://, mounted read-only at /mnt/models) and a Seldon-style class from the workspace."""
    from kubestudio.jobs.serving.backends.base import ServingRun
    from kubestudio.jobs.serving.manifests import inference_service
    from kubestudio.jobs.serving.spec import parse_serve_spec
    from kubestudio.spawner.pods import PodSettings
    from kubestudio.spawner.projects import Project

    ensure_claims(bench)
    workspace = bench.volume_folder(NS, "kubestudio-workspace", "kai")
    model, X = train(os.path.join(workspace, "models", "plain"), depth=3)
    train(os.path.join(workspace, "models", "seldon"), depth=3)
    with open(os.path.join(workspace, "models", "seldon", "IrisModel.py"), "w") as f:
        f.write(SELDON)
    rows = X[[0, 60, 120]].tolist()
    settings = PodSettings(namespace=NS)
    made = []
    try:
        for name, body, path, fmt in (
            ("plain", {"name": "plain", "model": "models/plain"}, "/mnt/kai/models/plain", "sklearn"),
            (
                "seldon",
                {"name": "seldon", "model": "models/seldon", "class": "IrisModel"},
                "/mnt/kai/models/seldon",
                "custom",
            ),
        ):
            spec = parse_serve_spec(body)
            run = ServingRun("abcdef012345", "kai", spec, path, fmt, 1, project=Project(name="public"))
            isvc = inference_service(run, "kubestudio/notebook:1", settings)
            r = bench.api("POST", f"/apis/serving.kserve.io/v1beta1/namespaces/{NS}/inferenceservices", json=isvc)
            assert r.status_code == 201, r.text
            made.append(isvc["metadata"]["name"])
            ready = wait_ready(bench, isvc["metadata"]["name"])
            check_against_crd(ready)
            pods = bench.api(
                "GET",
                f"/api/v1/namespaces/{NS}/pods",
                params={"labelSelector": f"serving.kserve.io/inferenceservice={isvc['metadata']['name']}"},
            ).json()["items"]
            pod = next(p for p in pods if not p["metadata"].get("deletionTimestamp"))
            r = requests.post(
                f"http://{pod['status']['podIP']}:8080/v1/models/{name}:predict", json={"instances": rows}, timeout=10
            )
            assert r.json()["predictions"] == model.predict(rows).tolist(), r.text
            mounts = {m["mountPath"]: m for m in pod["spec"]["containers"][0]["volumeMounts"]}
            if fmt == "sklearn":
                assert mounts["/mnt/models"]["readOnly"] and mounts["/mnt/models"]["subPath"] == "kai/models/plain"
            else:
                assert mounts["/mnt/kai"]["readOnly"]
    finally:
        for name in made:
            bench.api("DELETE", f"/apis/serving.kserve.io/v1beta1/namespaces/{NS}/inferenceservices/{name}")
