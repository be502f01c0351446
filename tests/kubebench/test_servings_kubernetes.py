"""Servings on the bench through a real hub and the jobs service: with KServe an InferenceService
(the bench's simulated KServe, RawDeployment) and without it a Deployment + Service, each running
the model runtime with a real scikit-learn model from the user's workspace on the claim; predictions
through the hub equal the model's; a new version rolls and `wait_ready` waits for it; delete leaves
nothing. Without KServe: two replicas and an autoscaler in the API version the cluster serves, a
rollout with requests running and none failing, a service restart that adopts the objects; with
``use_kserve = "always"`` on a cluster without KServe a clear 409."""

import json
import os
import signal
import threading
import time

import joblib
import pytest
import requests

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
    for path in (
        f"/apis/serving.kserve.io/v1beta1/namespaces/{NS}/inferenceservices",
        f"/apis/apps/v1/namespaces/{NS}/deployments",
        f"/api/v1/namespaces/{NS}/services",
        f"/api/v1/namespaces/{NS}/pods",
    ):
        r = bench.api("GET", path, params={"labelSelector": f"kubestudio.io/serving-id={serving_id}"})
        if r.status_code == 200:
            found += [f"{path.rsplit('/', 1)[1]}/{i['metadata']['name']}" for i in r.json()["items"]]
    return found


def made_name(bench, serving_id, use_kserve):
    """The name of the Service other services call the serving at."""
    r = bench.api(
        "GET", f"/api/v1/namespaces/{NS}/services", params={"labelSelector": f"kubestudio.io/serving-id={serving_id}"}
    ).json()["items"]
    names = [s["metadata"]["name"] for s in r]
    assert len(names) == 1, names
    return names[0]


@pytest.mark.parametrize("use_kserve", ["always", "never"])
def test_a_model_is_served_on_the_cluster_through_the_hub(bench, crds, tmp_path, use_kserve):
    hub = start_k8s_jobs_hub(
        tmp_path / "hub", bench, extra_config=f'c.KubernetesServingBackend.use_kserve = "{use_kserve}"\n'
    )
    try:
        client = hub.client("sera")
        v1, rows = train(os.path.join(hub.workspace("sera"), "models", "v1"), depth=1)
        v2, _ = train(os.path.join(hub.workspace("sera"), "models", "v2"), depth=4)
        assert v1.predict(rows).tolist() != v2.predict(rows).tolist()
        record = client.serve(model="models/v1", name="iris", format="sklearn")
        assert record["backend"] == "kubernetes"
        ready = client.wait_ready("iris", timeout=180)
        assert ready["ready_generation"] == 1
        service = f"{made_name(bench, record['id'], use_kserve)}"
        assert ready["cluster_url"] == f"http://{service}.{NS}.svc.cluster.local"
        made = objects_of(bench, record["id"])
        kind = "inferenceservices" if use_kserve == "always" else "deployments"
        assert any(m.startswith(kind + "/") for m in made), made
        assert client.predict("iris", rows) == v1.predict(rows).tolist()
        assert client.predict("iris", rows, v2=True) == v1.predict(rows).tolist()

        client.update_serving("iris", model="models/v2")
        ready = client.wait_ready("iris", timeout=180)
        assert ready["generation"] == ready["ready_generation"] == 2
        for _ in range(4):  # every pod asked: the new version's, not the old ones the rollout is removing
            assert client.predict("iris", rows) == v2.predict(rows).tolist()
        assert "Registering model: iris" in client.serving_logs("iris") or client.serving_logs("iris")

        client.delete_serving("iris")
        deadline = time.monotonic() + 60
        while objects_of(bench, record["id"]):
            assert time.monotonic() < deadline, objects_of(bench, record["id"])
            time.sleep(0.5)
    finally:
        hub.hub.stop()


def hammer(hub, user, name, rows):
    """Callers predicting until told to stop: (answers, failures, stop)."""
    answers, failures, stop = [], [], threading.Event()

    def call():
        caller = hub.client(user)
        while not stop.is_set():
            try:
                answers.append(json.dumps(caller.predict(name, rows)))
            except Exception as e:
                failures.append(repr(e))

    threads = [threading.Thread(target=call) for _ in range(2)]
    for t in threads:
        t.start()

    def stopped():
        stop.set()
        for t in threads:
            t.join()
        return answers, failures

    return stopped


def test_replicas_autoscaler_rollout_under_load_and_restart_on_the_cluster(bench, crds, tmp_path):
    hub = start_k8s_jobs_hub(
        tmp_path / "hub", bench, keep=True, extra_config='c.KubernetesServingBackend.use_kserve = "never"\n'
    )
    try:
        client = hub.client("roy")
        v1, rows = train(os.path.join(hub.workspace("roy"), "models", "v1"), depth=1)
        v2, _ = train(os.path.join(hub.workspace("roy"), "models", "v2"), depth=4)
        record = client.serve(
            model="models/v1", name="iris", format="sklearn", replicas={"min": 2, "max": 3}, resources={"cpu": "100m"}
        )
        client.wait_ready("iris", timeout=180)
        # the bench's control plane (1.20) serves autoscaling/v2beta2 only: the autoscaler is made in it
        autoscaling = (
            "autoscaling/v2" if bench.api("GET", "/apis/autoscaling/v2").status_code == 200 else "autoscaling/v2beta2"
        )
        hpas = bench.api(
            "GET",
            f"/apis/{autoscaling}/namespaces/{NS}/horizontalpodautoscalers",
            params={"labelSelector": f"kubestudio.io/serving-id={record['id']}"},
        ).json()["items"]
        assert [(h["spec"]["minReplicas"], h["spec"]["maxReplicas"]) for h in hpas] == [(2, 3)]
        pods = bench.api(
            "GET", f"/api/v1/namespaces/{NS}/pods", params={"labelSelector": f"kubestudio.io/serving-id={record['id']}"}
        ).json()["items"]
        assert len(pods) == 2, [p["metadata"]["name"] for p in pods]
        assert client.predict("iris", rows) == v1.predict(rows).tolist()

        # a new version rolls pod by pod while callers keep asking: none fails
        stopped = hammer(hub, "roy", "iris", rows)
        try:
            client.update_serving("iris", model="models/v2")
            assert client.wait_ready("iris", timeout=180)["ready_generation"] == 2
            # from here on, the new version's pods answer (the old ones are going)
            assert client.predict("iris", rows) == v2.predict(rows).tolist()
        finally:
            answers, failures = stopped()
        assert not failures, failures[:3]
        assert set(answers) <= {json.dumps(v1.predict(rows).tolist()), json.dumps(v2.predict(rows).tolist())}
        assert answers[-1] == json.dumps(v2.predict(rows).tolist())

        # the service dies and comes back: it adopts the Deployment, it does not make a new one
        deployment = bench.api(
            "GET",
            f"/apis/apps/v1/namespaces/{NS}/deployments",
            params={"labelSelector": f"kubestudio.io/serving-id={record['id']}"},
        ).json()["items"]
        assert len(deployment) == 1
        os.kill(hub.hub.service_pid("kubestudio.jobs"), signal.SIGKILL)
        hub.hub.stop(stop_servers=False)
        hub.hub.start()
        again = client.wait_ready("iris", timeout=120)
        assert again["generation"] == again["ready_generation"] == 2 and again["restarts"] == 0
        assert client.predict("iris", rows) == v2.predict(rows).tolist()
        after = bench.api(
            "GET",
            f"/apis/apps/v1/namespaces/{NS}/deployments",
            params={"labelSelector": f"kubestudio.io/serving-id={record['id']}"},
        ).json()["items"]
        assert [d["metadata"]["uid"] for d in after] == [deployment[0]["metadata"]["uid"]]

        client.delete_serving("iris")
        deadline = time.monotonic() + 60
        while (
            objects_of(bench, record["id"])
            or bench.api(
                "GET",
                f"/apis/{autoscaling}/namespaces/{NS}/horizontalpodautoscalers",
                params={"labelSelector": f"kubestudio.io/serving-id={record['id']}"},
            ).json()["items"]
        ):
            assert time.monotonic() < deadline, objects_of(bench, record["id"])
            time.sleep(0.5)
    finally:
        hub.hub.stop()


def test_kserve_always_on_a_cluster_without_kserve_is_a_409(bench, crds, tmp_path):
    crd_path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/inferenceservices.serving.kserve.io"
    crd = bench.api("GET", crd_path).json()
    crd = {k: crd[k] for k in ("apiVersion", "kind", "spec")} | {"metadata": {"name": crd["metadata"]["name"]}}
    hub = start_k8s_jobs_hub(tmp_path / "hub", bench, extra_config='c.KubernetesServingBackend.use_kserve = "always"\n')
    assert bench.api("DELETE", crd_path).ok
    try:
        deadline = time.monotonic() + 30
        while bench.api("GET", f"/apis/serving.kserve.io/v1beta1/namespaces/{NS}/inferenceservices").status_code != 404:
            assert time.monotonic() < deadline
            time.sleep(0.5)
        client = hub.client("kay")
        train(os.path.join(hub.workspace("kay"), "models", "v1"), depth=1)
        r = requests.post(
            hub.url + "api/servings",
            headers={"Authorization": f"token {hub.token('kay')}"},
            json={"name": "iris", "model": "models/v1"},
        )
        assert r.status_code == 409, r.text
        assert r.json() == {
            "status": 409,
            "message": (
                "kserve: this cluster has no KServe (no inferenceservices in serving.kserve.io/v1beta1), and "
                "KubernetesServingBackend.use_kserve is 'always'"
            ),
        }
        assert client.servings() == []
    finally:
        hub.hub.stop()
        r = bench.api("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=crd)
        assert r.status_code in (201, 409), r.text
        deadline = time.monotonic() + 30
        while bench.api("GET", f"/apis/serving.kserve.io/v1beta1/namespaces/{NS}/inferenceservices").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.5)
