"""The Helm chart with real Helm (helm-python-sdk: Helm v4 in process), in one run:

1. render time and object count, default values and every feature on (medians of --renders);
   the anchor is a one-Deployment chart rendered the same way (``render_*_ratio``);
2. install -> hub Ready on the bench (``install_ready_s``: ``helm install`` until the hub's and
   the proxy's Deployments are available, their pods really running JupyterHub and
   configurable-http-proxy in the bench's process mode, the hub's readiness probe on
   /hub/health); the same with their pods in status mode (``install_objects_ready_s``: Helm, the
   API server, scheduler and controllers only), against the one-Deployment chart installed and
   waited for the same way (``install_objects_ready_ratio``).

Usage: python benchmarks/helm.py [--renders 20] [--installs 3]
Writes benchmarks/results/helm.json.
"""

import argparse
import os
import statistics
import sys
import time

import yaml

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import helm_python as helm  # noqa: E402

from kubestudio.hub.config import KubeStudio  # noqa: E402
from kubestudio.testing.benchresults import write_results  # noqa: E402
from kubestudio.testing.kubebench import Bench  # noqa: E402
from kubestudio.testing.kubebench.kubelet import MODE_LABEL  # noqa: E402
from kubestudio.testing.scratch import scratch_folder  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
CHART = os.path.join(os.path.dirname(HERE), "helm", "kubestudio")
STATUS = {MODE_LABEL: "status"}
PROCESS = {MODE_LABEL: "process"}

with open(os.path.join(CHART, "ci", "full-values.yaml"), encoding="utf-8") as f:
    FULL = yaml.safe_load(f)  # every feature on (the tests' values too)


def anchor_chart(folder):
    """A one-Deployment chart: what any chart costs Helm and the cluster at the least."""
    os.makedirs(os.path.join(folder, "templates"))
    with open(os.path.join(folder, "Chart.yaml"), "w") as f:
        f.write("apiVersion: v2\nname: anchor\nversion: 0.1.0\n")
    with open(os.path.join(folder, "values.yaml"), "w") as f:
        f.write("{}\n")
    with open(os.path.join(folder, "templates", "deployment.yaml"), "w") as f:
        f.write(
            yaml.safe_dump(
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "metadata": {"name": "anchor"},
                    "spec": {
                        "replicas": 1,
                        "selector": {"matchLabels": {"app": "anchor"}},
                        "template": {
                            "metadata": {"labels": {"app": "anchor", **STATUS}},
                            "spec": {"containers": [{"name": "c", "image": "anchor:1"}]},
                        },
                    },
                }
            )
        )
    return folder


def render_ms(chart_path, values, rounds):
    times, count = [], 0
    for _ in range(rounds):
        started = time.perf_counter()
        with helm.Chart.load(chart_path) as chart:
            out = chart.render(values, name="bench", namespace="studio")
        times.append((time.perf_counter() - started) * 1000)
        count = sum(
            1 for path, text in out.items() if not path.endswith("NOTES.txt") for obj in yaml.safe_load_all(text) if obj
        )
    return statistics.median(times), count


def available(bench, ns, names):
    items = bench.api("GET", f"/apis/apps/v1/namespaces/{ns}/deployments").json()["items"]
    return set(names) <= {
        d["metadata"]["name"] for d in items if (d.get("status") or {}).get("availableReplicas", 0) >= 1
    }


def install_ready_s(bench, chart_path, values, deployments, ns):
    bench.api("POST", "/api/v1/namespaces", json={"metadata": {"name": ns}})
    with helm.Config(namespace=ns, kubeconfig_path=bench.kubeconfig) as cfg:
        started = time.perf_counter()
        cfg.install(chart_path, "bench", values, timeout=120)
        while not available(bench, ns, deployments):
            if time.perf_counter() - started > 120:
                raise TimeoutError(f"{deployments} not available in {ns}")
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
        cfg.uninstall("bench")
    bench.api("DELETE", f"/api/v1/namespaces/{ns}")
    return elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--renders", type=int, default=20)
    parser.add_argument("--installs", type=int, default=3)
    args = parser.parse_args()
    root = scratch_folder("helm-bench-")  # removed when the run ends
    anchor = anchor_chart(os.path.join(root, "anchor"))
    default_ms, default_objects = render_ms(CHART, {}, args.renders)
    full_ms, full_objects = render_ms(CHART, FULL, args.renders)
    anchor_ms, _ = render_ms(anchor, {}, args.renders)

    # the bench's process-mode "image" is this checkout: the hub's tools first on PATH
    bench = Bench(os.path.join(root, "bench"), mode="status", path_prepend=KubeStudio().tool_dirs)
    bench.start()
    ours, bare, real = [], [], []
    deployments = ["bench-kubestudio-hub", "bench-kubestudio-proxy"]
    try:
        for i in range(args.installs):  # interleaved
            bare.append(install_ready_s(bench, anchor, {}, ["anchor"], f"anchor-{i}"))
            ours.append(
                install_ready_s(
                    bench, CHART, {"hub": {"labels": STATUS}, "proxy": {"labels": STATUS}}, deployments, f"studio-{i}"
                )
            )
            real.append(
                install_ready_s(
                    bench,
                    CHART,
                    {"hub": {"labels": PROCESS}, "proxy": {"labels": PROCESS}, "cull": {"enabled": False}},
                    deployments,
                    f"real-{i}",
                )
            )
    finally:
        bench.stop()
    metrics = {
        "render_default_ms": round(default_ms, 1),
        "render_full_ms": round(full_ms, 1),
        "render_anchor_ms": round(anchor_ms, 1),
        "render_default_ratio": round(default_ms / anchor_ms, 2),
        "render_full_ratio": round(full_ms / anchor_ms, 2),
        "objects_default": default_objects,
        "objects_full": full_objects,
        "install_ready_s": round(statistics.median(real), 2),
        "install_objects_ready_s": round(statistics.median(ours), 2),
        "install_objects_ready_anchor_s": round(statistics.median(bare), 2),
        "install_objects_ready_ratio": round(statistics.median(ours) / statistics.median(bare), 2),
    }
    print(f"\n{'':26}{'value':>10}")
    for key, value in metrics.items():
        print(f"{key:<26}{value!s:>10}")
    write_results("helm", metrics, helm=helm.helm_sdk_version(), cluster="kubebench 1.20")


if __name__ == "__main__":
    main()
