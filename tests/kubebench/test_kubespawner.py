"""Stock KubeSpawner, unmodified, under a real JupyterHub + proxy, spawning on the bench."""

import time

import requests

from kubestudio.testing.localhub import SERVERS_ONLY, LocalHub

from .storm import leftover_pods, spawn_storm

KUBESPAWNER_CONFIG = """
import os
c.JupyterHub.spawner_class = "kubespawner.KubeSpawner"
c.KubeSpawner.namespace = "default"
c.KubeSpawner.image = "quay.io/jupyterhub/k8s-singleuser-sample:4.1.0"
c.KubeSpawner.cmd = ["jupyterhub-singleuser"]
c.KubeSpawner.args = ["--ServerApp.allow_root=True"] if os.geteuid() == 0 else []
c.KubeSpawner.start_timeout = 90
c.KubeSpawner.http_timeout = 60
c.KubeSpawner.delete_grace_period = 2
c.KubeSpawner.extra_labels = {"kubebench.kubestudio.io/mode": "process"}
"""


def stock_hub(root, kubeconfig):
    return LocalHub(root, settings=SERVERS_ONLY, extra_config=KUBESPAWNER_CONFIG, env={"KUBECONFIG": kubeconfig})


def user_pods(bench):
    items = bench.api("GET", "/api/v1/namespaces/default/pods?labelSelector=component%3Dsingleuser-server").json()[
        "items"
    ]
    return [p["metadata"]["name"] for p in items]


def test_stock_kubespawner_spawns_reaches_and_stops(bench, tmp_path):
    hub = stock_hub(tmp_path, bench.kubeconfig).start()
    try:
        hub.create_user("kate")
        token = hub.user_token("kate")
        r = hub.spawn("kate", timeout=120)
        assert r.status_code in (201, 202), r.text
        pod = bench.api("GET", "/api/v1/namespaces/default/pods/jupyter-kate").json()
        assert pod["spec"]["nodeName"]  # bound by the real scheduler
        assert pod["status"]["phase"] == "Running" and pod["status"]["podIP"].startswith(bench.pod_net_prefix)
        page = requests.get(f"{hub.url}/user/kate/api/status", headers={"Authorization": f"token {token}"})
        assert page.status_code == 200 and "started" in page.json()
        hub.stop_server("kate")
        deadline = time.monotonic() + 60
        while "jupyter-kate" in user_pods(bench) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert "jupyter-kate" not in user_pods(bench)
    finally:
        hub.stop()


def test_stock_kubespawner_with_injected_pod_create_errors_leaves_no_orphans(bench, tmp_path):
    hub = stock_hub(tmp_path, bench.proxy_kubeconfig).start()
    users = [f"flaky{i}" for i in range(6)]
    try:
        outcome = spawn_storm(
            hub, bench, users, timeout=120, rules=[{"verb": "create", "resource": "pods", "rate": 0.2, "error": 500}]
        )
        assert set(outcome.values()) <= {"ready", "failed cleanly"}, outcome
        assert bench.counts().get("create pods", 0) >= len(users)
    finally:
        hub.stop()
    assert leftover_pods(bench, "component%3Dsingleuser-server", "jupyter-flaky") == [], "orphan pods left"
