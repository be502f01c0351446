"""Stock KubeSpawner vs WorkspaceSpawner on the same Kubernetes test bench (responder mode).

For each spawner, through an identical real hub (JupyterHub + configurable-http-proxy, same
settings) talking to the bench through its counting proxy:

1. sequential spawns + stops, both hubs up on one bench (each in its own namespace) taking turns
   over ``--rounds`` rounds: Kubernetes API requests per spawn by verb (the bench's proxy counts
   them) and hub CPU seconds per spawn (from /proc); the CPU ratio is the median of the rounds'
   ratios, with its spread (one machine hiccup cannot decide it);
2. a burst of N simultaneous spawns, each spawner on a fresh bench: total time to all ready,
   failures, and p50/p99 latency of ``GET /hub/api/users/<name>`` polled while the burst runs;
   against bare stock KubeSpawner, and against stock KubeSpawner configured to make the very pod
   WorkspaceSpawner makes (STOCK_WORKSPACE: the workspace's volumes, environment and labels), so
   the cost of a larger pod and the cost of our code show apart.

Usage: python benchmarks/spawn_k8s.py [--sequential 10] [--rounds 5] [--burst 200] [--burst 1000]
Writes benchmarks/results/spawn_k8s.json.
"""

import argparse
import json
import os
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests
import yaml

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from kubestudio.testing.benchresults import write_results  # noqa: E402
from kubestudio.testing.kubebench import Bench  # noqa: E402
from kubestudio.testing.localhub import LocalHub  # noqa: E402
from kubestudio.testing.scratch import scratch_folder  # noqa: E402

COMMON = """
c.JupyterHub.concurrent_spawn_limit = 0
c.JupyterHub.active_server_limit = 0
c.JupyterHub.log_level = "WARN"
c.Spawner.start_timeout = 600
c.Spawner.http_timeout = 300
c.KubeSpawner.image = "kubestudio/notebook:1"
c.KubeSpawner.cmd = ["jupyterhub-singleuser"]
c.KubeSpawner.delete_grace_period = 0
c.KubeSpawner.k8s_api_request_timeout = 30
c.KubeSpawner.k8s_api_request_retry_timeout = 120
"""
# stock KubeSpawner configured by hand (as a z2jh admin would) to make the pod WorkspaceSpawner
# makes: the same volumes, mounts, user, resources, environment, labels and annotations. Its pod is
# as large as ours (12 KB against 7.5 KB bare, half of it the managedFields the API server adds),
# and every watcher parses each pod event: the burst compares like with like only against it.
STOCK_WORKSPACE = """
c.JupyterHub.spawner_class = "kubespawner.KubeSpawner"
c.KubeSpawner.volumes = [
    {"name": "workspace", "persistentVolumeClaim": {"claimName": "kubestudio-workspace"}},
    {"name": "archives", "persistentVolumeClaim": {"claimName": "kubestudio-archives"}},
]
c.KubeSpawner.volume_mounts = [
    {"name": "workspace", "mountPath": "/mnt/{username}", "subPath": "{username}"},
    {"name": "archives", "mountPath": "/archives/{username}", "subPath": "{username}"},
]
c.KubeSpawner.working_dir = "/mnt/{username}"
c.KubeSpawner.uid = 1000
c.KubeSpawner.gid = 100
c.KubeSpawner.fs_gid = 100
c.KubeSpawner.cpu_guarantee = 0.01
c.KubeSpawner.mem_guarantee = "16M"
c.KubeSpawner.default_url = "/lab"
c.KubeSpawner.environment = {
    "JUPYTERHUB_ROOT_DIR": "/mnt/{username}",
    "KUBESTUDIO_ARCHIVES": "/archives/{username}",
    "KUBESTUDIO_IDE": "jupyterlab",
    "KUBESTUDIO_IMAGE": "kubestudio/notebook:1",
    "KUBESTUDIO_PROFILE": "cpu",
    "KUBESTUDIO_PROJECT": "public",
    "KUBESTUDIO_USER": "{username}",
    "KUBESTUDIO_USER_SLUG": "{username}",
    "KUBESTUDIO_WORKSPACE": "/mnt/{username}",
    "NVIDIA_VISIBLE_DEVICES": "none",
    "TENSORBOARD_PROXY_URL": "/user/{username}/proxy/%PORT%/",
    **{
        f"K8S_{name}": {"valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": path}}}
        for name, path in (
            ("HOST_IP", "status.hostIP"),
            ("NODE_NAME", "spec.nodeName"),
            ("POD_IP", "status.podIP"),
            ("POD_NAME", "metadata.name"),
            ("POD_NAMESPACE", "metadata.namespace"),
        )
    },
}
c.KubeSpawner.extra_labels = {
    "kubestudio.io/component": "notebook",
    "kubestudio.io/gpus": "0",
    "kubestudio.io/profile": "cpu",
    "kubestudio.io/project": "public",
    "kubestudio.io/user": "{username}",
}
c.KubeSpawner.extra_annotations = {
    "kubestudio.io/project": "public",
    "kubestudio.io/server-name": "",
    "kubestudio.io/username": "{username}",
}
"""
SPAWNERS = {
    "stock": 'c.JupyterHub.spawner_class = "kubespawner.KubeSpawner"\n',
    "stock-workspace": STOCK_WORKSPACE,
    "kubestudio": "",  # configure(spawner="kubernetes") picks WorkspaceSpawner
}
CATALOG = {
    "profiles": [
        {
            "slug": "cpu",
            "default": True,
            "images": ["kubestudio/notebook:1"],
            "cpu": {"guarantee": "10m"},
            "memory": {"guarantee": "16M"},
        }
    ]
}


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


def namespace_for(bench, kind):
    """A fresh namespace per spawner, so neither hub's reflectors see the other's pods and events."""
    name = f"bench-{kind}"
    bench.api("POST", "/api/v1/namespaces", json={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    for claim in ("kubestudio-workspace", "kubestudio-archives"):
        bench.api(
            "POST",
            f"/api/v1/namespaces/{name}/persistentvolumeclaims",
            json={
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": claim},
                "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "10Gi"}}},
            },
        )
    return name


def hub_for(kind, bench, root):
    namespace = namespace_for(bench, kind)
    catalog = os.path.join(root, "profiles.yaml")
    os.makedirs(root, exist_ok=True)
    with open(catalog, "w") as f:
        yaml.safe_dump(CATALOG, f)
    settings = {"spawner": "kubernetes", "profiles_file": catalog}
    return LocalHub(
        root,
        settings=settings,
        extra_config=COMMON + SPAWNERS[kind] + f'c.KubeSpawner.namespace = "{namespace}"\n',
        env={"KUBECONFIG": bench.proxy_kubeconfig},
    )


def warm_up(hub):
    """One spawn so reflectors and clients exist, as on a running hub."""
    hub.create_user("warmup")
    hub.spawn("warmup", timeout=120)
    hub.stop_server("warmup")


def sequential(hub, bench, n, prefix="seq"):
    users = [f"{prefix}{i}" for i in range(n)]
    for user in users:
        hub.create_user(user)
    bench.counts(reset=True)
    cpu_before = cpu_seconds(hub.proc.pid)
    started = time.perf_counter()
    for user in users:
        r = hub.spawn(user, timeout=120)
        r.raise_for_status()
        hub.stop_server(user)
    elapsed = time.perf_counter() - started
    cpu = cpu_seconds(hub.proc.pid) - cpu_before
    counts = bench.counts()
    by_verb = {}
    for key, value in counts.items():
        verb, resource = key.split(" ", 1)
        if resource.startswith(("pods", "persistentvolumeclaims", "services", "secrets", "events", "namespaces")):
            by_verb[key] = round(value / n, 2)
    # watches are long-lived streams opened once per reflector, not per spawn
    per_spawn = sum(v for k, v in by_verb.items() if not k.startswith("watch "))
    return {
        "requests_per_spawn": round(per_spawn, 2),
        "requests_by_verb": by_verb,
        "cpu_s_per_spawn": round(cpu / n, 4),
        "spawn_and_stop_s": round(elapsed / n, 3),
    }


def active_users(hub):
    """Every user with an active server (the users API pages by 200)."""
    models, offset = {}, 0
    while True:
        r = hub.api(
            "GET",
            f"/users?state=active&limit=200&offset={offset}",
            timeout=120,
            headers={"Accept": "application/jupyterhub-pagination+json"},
        )
        page = r.json()
        for user in page["items"]:
            models[user["name"]] = user
        if not page["_pagination"].get("next"):
            return models
        offset = page["_pagination"]["next"]["offset"]


def burst(hub, n):
    users = [f"burst{i}" for i in range(n)]
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(hub.create_user, users))
    latencies = []
    stop = threading.Event()
    session = requests.Session()
    session.headers["Authorization"] = f"token {hub.token}"

    def poll():
        i = 0
        while not stop.is_set():
            t = time.perf_counter()
            try:
                session.get(f"{hub.url}/hub/api/users/{users[i % n]}", timeout=30)
                latencies.append((time.perf_counter() - t) * 1000)
            except requests.RequestException:
                latencies.append(30_000)
            i += 1
            time.sleep(0.05)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    started = time.perf_counter()
    failures = 0

    def start(user):
        r = hub.api("POST", hub.server_path(user), json={}, timeout=120)
        return r.status_code in (201, 202)

    with ThreadPoolExecutor(64) as pool:
        accepted = list(pool.map(start, users))
    failures += accepted.count(False)
    pending = {u for u, ok in zip(users, accepted) if ok}
    deadline = time.monotonic() + 900
    while pending and time.monotonic() < deadline:
        models = active_users(hub)
        done = set()
        for user in pending:
            server = models.get(user, {}).get("servers", {}).get("")
            if server and server.get("ready"):
                done.add(user)
            elif not server:
                # accepted (pending servers are active), so no longer active means it failed
                done.add(user)
                failures += 1
        pending -= done
        time.sleep(0.5)
    total = time.perf_counter() - started
    failures += len(pending)
    stop.set()
    poller.join()
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(lambda u: hub.api("DELETE", hub.server_path(u), timeout=120), users))
    ordered = sorted(latencies)
    return {
        "spawns": n,
        "total_s": round(total, 2),
        "failures": failures,
        "p50_ms": round(statistics.median(ordered), 1),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 1),
        "polls": len(ordered),
    }


def interleaved(root, nodes, n, rounds):
    """Hub CPU per spawn, stock and ours taking turns on one bench (each in its own namespace), so
    a slower moment of the machine hits both: the ratio of each round, its median and spread."""
    bench = Bench(os.path.join(root, "bench-cpu"), nodes=nodes, mode="responder", crds=False, events=True)
    bench.start()
    hubs = {}
    try:
        for kind in ("stock", "kubestudio"):
            hubs[kind] = hub_for(kind, bench, os.path.join(root, f"cpu-{kind}")).start()
            warm_up(hubs[kind])
        per_round = max(1, n // rounds)
        rows = {"stock": [], "kubestudio": []}
        for r in range(rounds):
            order = ("stock", "kubestudio") if r % 2 == 0 else ("kubestudio", "stock")
            for kind in order:
                rows[kind].append(sequential(hubs[kind], bench, per_round, prefix=f"r{r}-"))
        ratios = [o["cpu_s_per_spawn"] / s["cpu_s_per_spawn"] for s, o in zip(rows["stock"], rows["kubestudio"])]
        summary = {}
        for kind, results in rows.items():
            summary[kind] = {
                "cpu_s_per_spawn": round(statistics.median(r["cpu_s_per_spawn"] for r in results), 4),
                "requests_per_spawn": round(statistics.median(r["requests_per_spawn"] for r in results), 2),
                "spawn_and_stop_s": round(statistics.median(r["spawn_and_stop_s"] for r in results), 3),
                "requests_by_verb": results[-1]["requests_by_verb"],
            }
        return summary, ratios
    finally:
        for hub in hubs.values():
            hub.stop()
        bench.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sequential", type=int, default=10)
    parser.add_argument("--burst", type=int, action="append", help="burst sizes (default: 200)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds for the CPU comparison")
    args = parser.parse_args()
    bursts = args.burst or [200]
    nodes = [
        {
            "name": "node",
            "count": max(max(bursts) // 100 + 1, 3),
            "capacity": {"cpu": 64, "memory": "512Gi", "pods": 250},
        }
    ]
    root = scratch_folder("spawn-k8s-")  # removed when the run ends
    print(
        f"interleaved CPU rounds: {args.rounds} x {max(1, args.sequential // args.rounds)} spawns each...",
        file=sys.stderr,
    )
    cpu, ratios = interleaved(root, nodes, args.sequential, args.rounds)
    results = {}
    for kind in ("stock", "stock-workspace", "kubestudio"):
        # a fresh bench for each spawner: neither inherits the other's etcd history or kubelet state
        bench = Bench(os.path.join(root, f"bench-{kind}"), nodes=nodes, mode="responder", crds=False, events=True)
        bench.start()
        try:
            hub = hub_for(kind, bench, os.path.join(root, kind)).start()
            try:
                results[kind] = {"sequential": cpu[kind]} if kind in cpu else {}
                warm_up(hub)
                for size in bursts:
                    print(f"{kind}: burst of {size}...", file=sys.stderr)
                    results[kind][f"burst_{size}"] = burst(hub, size)
            finally:
                hub.stop()
            print(json.dumps({kind: results[kind]}, indent=1), file=sys.stderr)
        finally:
            bench.stop()

    stock, ours = results["stock"], results["kubestudio"]
    biggest = f"burst_{max(bursts)}"
    metrics = {
        "stock_requests_per_spawn": stock["sequential"]["requests_per_spawn"],
        "ours_requests_per_spawn": ours["sequential"]["requests_per_spawn"],
        "stock_cpu_s_per_spawn": stock["sequential"]["cpu_s_per_spawn"],
        "ours_cpu_s_per_spawn": ours["sequential"]["cpu_s_per_spawn"],
        "cpu_ratio": round(statistics.median(ratios), 3),
        "cpu_ratio_min": round(min(ratios), 3),
        "cpu_ratio_max": round(max(ratios), 3),
        "cpu_rounds": len(ratios),
        "burst_spawns": max(bursts),
        "burst_failures": ours[biggest]["failures"],
        "burst_total_s": ours[biggest]["total_s"],
        "burst_p50_ms": ours[biggest]["p50_ms"],
        "burst_p99_ms": ours[biggest]["p99_ms"],
        "stock_burst_failures": stock[biggest]["failures"],
        "stock_burst_total_s": stock[biggest]["total_s"],
        "stock_burst_p99_ms": stock[biggest]["p99_ms"],
        # stock KubeSpawner making the same pod as ours (STOCK_WORKSPACE): like with like
        "stock_workspace_burst_failures": results["stock-workspace"][biggest]["failures"],
        "stock_workspace_burst_total_s": results["stock-workspace"][biggest]["total_s"],
        "stock_workspace_burst_p99_ms": results["stock-workspace"][biggest]["p99_ms"],
        "burst_total_ratio": round(ours[biggest]["total_s"] / stock[biggest]["total_s"], 3),
        "burst_total_ratio_same_pod": round(
            ours[biggest]["total_s"] / results["stock-workspace"][biggest]["total_s"], 3
        ),
        "burst_p99_ratio_same_pod": round(ours[biggest]["p99_ms"] / results["stock-workspace"][biggest]["p99_ms"], 3),
    }
    print(f"\n{'':34}{'stock KubeSpawner':>20}{'WorkspaceSpawner':>20}{'stock, same pod':>20}")
    rows = [
        ("API requests per spawn (no watches)", "requests_per_spawn", "sequential"),
        ("hub CPU s per spawn", "cpu_s_per_spawn", "sequential"),
        ("spawn + stop s", "spawn_and_stop_s", "sequential"),
    ]
    for label, key, group in rows:
        print(f"{label:<34}{stock[group][key]:>20}{ours[group][key]:>20}")
    for size in bursts:
        for key in ("total_s", "failures", "p50_ms", "p99_ms"):
            same = results["stock-workspace"][f"burst_{size}"][key]
            print(
                f"{f'burst {size}: {key}':<34}{stock[f'burst_{size}'][key]:>20}{ours[f'burst_{size}'][key]:>20}{same:>20}"
            )
    print("\nrequests by verb per spawn:")
    for kind in ("stock", "kubestudio"):
        print(f"  {kind}: {results[kind]['sequential']['requests_by_verb']}")
    print(
        f"\ncpu ratio (ours/stock), median of {len(ratios)} interleaved rounds: {metrics['cpu_ratio']} "
        f"(spread {metrics['cpu_ratio_min']}-{metrics['cpu_ratio_max']}; goal <= 1.1)"
    )
    write_results("spawn_k8s", metrics, kubernetes="1.20.2 bench, responder mode", details=results)


if __name__ == "__main__":
    main()
