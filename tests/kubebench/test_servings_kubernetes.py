"""Servings on the bench through a real hub and the jobs service: with KServe an InferenceService
(the bench's simulated KServe, RawDeployment) and without it a Deployment + Service, each running
the model runtime with a real scikit-learn model from the user's workspace on the claim; predictions
through the hub equal the model's; a new version rolls and `wait_ready` waits for it; delete leaves
nothing."""

import os
import time

import joblib
import pytest

from .test_jobs_kubernetes import NS, start_k8s_jobs_hub

pytestmark = pytest.mark.e2e


def train(folder, depth):
    from sklearn.datasets import load_iris
    from sklearn.tree import DecisionTreeClassifier

    X, y = load_iris(return_X_y=True)
    model = DecisionTreeClassifier(max_depth=depth, random_state=0).fit(X, y)
    os.makedirs(folder, exist_ok=True)
    joblib.dump(model, os.path.join(folder, "model.joblib"))
    return model, X[[0, 60, 120, 70]].tolist()


def objects_of(bench, serving_id):
    found = []
    for path in (f"/apis/serving.kserve.io/v1beta1/namespaces/{NS}/inferenceservices",
                 f"/apis/apps/v1/namespaces/{NS}/deployments", f"/api/v1/namespaces/{NS}/services",
                 f"/api/v1/namespaces/{NS}/pods"):
        r = bench.api("GET", path, params={"labelSelector": f"kubestudio.io/serving-id={serving_id}"})
        if r.status_code == 200:
            found += [f"{path.rsplit('/', 1)[1]}/{i['metadata']['name']}" for i in r.json()["items"]]
    return found


def made_name(bench, serving_id, use_kserve):
    """The name of the Service other services call the serving at."""
    r = bench.api("GET", f"/api/v1/namespaces/{NS}/services",
                  params={"labelSelector": f"kubestudio.io/serving-id={serving_id}"}).json()["items"]
    names = [s["metadata"]["name"] for s in r]
    assert len(names) == 1, names
    return names[0]


def until_predicts(client, name, rows, expected, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        got = client.predict(name, rows)
        if got == expected:
            return
        assert time.monotonic() < deadline, got
        time.sleep(0.3)


@pytest.mark.parametrize("use_kserve", ["always", "never"])
def test_a_model_is_served_on_the_cluster_through_the_hub(bench, crds, tmp_path, use_kserve):
    hub = start_k8s_jobs_hub(tmp_path / "hub", bench,
                             extra_config=f'c.KubernetesServingBackend.use_kserve = "{use_kserve}"\n')
    try:
        client = hub.client("sera")
        v1, rows = train(os.path.join(hub.workspace("sera"), "models", "v1"), depth=1)
        v2, _ = train(os.path.join(hub.workspace("sera"), "models", "v2"), depth=4)
        assert v1.predict(rows).tolist() != v2.predict(rows).tolist()
        record = client.serve(model="models/v1", name="iris", format="sklearn")
        assert record["backend"] == "kubernetes"
        ready = client.wait_ready("iris", timeout=180)
        assert ready["ready_generation"] == 1
        service = (f"{made_name(bench, record['id'], use_kserve)}")
        assert ready["cluster_url"] == f"http://{service}.{NS}.svc.cluster.local"
        made = objects_of(bench, record["id"])
        kind = "inferenceservices" if use_kserve == "always" else "deployments"
        assert any(m.startswith(kind + "/") for m in made), made
        assert client.predict("iris", rows) == v1.predict(rows).tolist()
        assert client.predict("iris", rows, v2=True) == v1.predict(rows).tolist()

        client.update_serving("iris", model="models/v2")
        ready = client.wait_ready("iris", timeout=180)
        assert ready["generation"] == ready["ready_generation"] == 2
        until_predicts(client, "iris", rows, v2.predict(rows).tolist())  # old pods leave within moments
        assert "Registering model: iris" in client.serving_logs("iris") or client.serving_logs("iris")

        client.delete_serving("iris")
        deadline = time.monotonic() + 60
        while objects_of(bench, record["id"]):
            assert time.monotonic() < deadline, objects_of(bench, record["id"])
            time.sleep(0.5)
    finally:
        hub.hub.stop()
