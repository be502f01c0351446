"""Image builds through the service: cold build, last-step rebuild, identical request.

A real hub with the image service (buildah, vfs, chroot) pushing to a real local registry with
auth. Each round uses a Dockerfile whose first step is unique, so the cold build shares nothing
but the base image with earlier rounds:

- ``cold``: POST until succeeded (queue, context hash, registry check, bud, push, record);
- ``last_step_rebuild``: the same Dockerfile with only its last RUN changed (layer cache);
- ``identical``: the rebuild's request again: answered from the registry, no builder run;
- ``direct``: the anchor: the same cold Dockerfile with ``buildah bud`` + ``buildah push`` run by
  hand on a fresh storage root, no service at all;
- ``kaniko``: the Kubernetes path on the test bench (process mode: build pods run the kaniko
  executor stand-in): Kubernetes API requests per build by verb, counted by the bench's proxy
  (``kaniko_requests_per_build``; goal: create pod and ConfigMap, delete them, one log stream,
  nothing per second), and what the service asks while idle for 10 s; the same behind the
  registry gate, as the chart runs it (``kaniko_gate_*``: the build's Secret made and deleted
  too), with ``kaniko_gate_build_ratio`` (its build time over the other's);
- ``small_change``: a one-line change in the copied file of a 3-layer image on top of KubeStudio's
  single-user image, on a hub like the README's (its registry behind the gate), against
  ``buildah bud`` + ``buildah push`` by hand of the same change on a warm storage of its own
  (``small_change_rebuild_s``, goal < 15 s; ``small_change_rebuild_ratio``, goal <= 1.2);
- ``flood``: a build prints 50 MB; ten followers (curl) read its whole log as Server-Sent Events
  while another user lists their builds: that listing's p99 (``flood_p99_ms``, goal < 100 ms;
  anchor: the same listing with no followers, ``idle_p99_ms``) and the service's peak RSS
  (``flood_rss_mb``, goal < 300).

Usage: python benchmarks/builds.py [-n 3]. Writes benchmarks/results/builds.json.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import types
import uuid

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from kubestudio.testing.benchresults import result_path, write_results  # noqa: E402
from kubestudio.testing.imageshub import log_flood, percentile, service_rss_mb, start_images_hub  # noqa: E402
from kubestudio.testing.registry import LocalRegistry, buildah_args, push_busybox_base  # noqa: E402

DOCKERFILE = """FROM {base}
RUN echo {nonce} > /nonce.txt && sleep 1
RUN mkdir -p /opt/data && dd if=/dev/urandom of=/opt/data/blob bs=1M count=8 2>/dev/null
COPY app.txt /opt/app.txt
RUN sleep 1 && echo prepared > /opt/prepared.txt
RUN echo {last} > /opt/last.txt
"""


def build_and_wait(images, client, request):
    started = time.perf_counter()
    build = client.build(**request)
    answered = time.perf_counter() - started
    if build["status"] in ("queued", "running"):
        build = images.wait("bench", build["id"], timeout=600)
    return time.perf_counter() - started, answered, build


def direct_build(registry, folder, storage, tag, repository="direct/bench", driver="vfs"):
    image = f"{registry.host}/{repository}:{tag}"
    b = buildah_args(storage, driver)
    started = time.perf_counter()
    subprocess.run(
        b
        + [
            "bud",
            "--isolation",
            "chroot",
            "--layers=true",
            "--tls-verify=false",
            "--authfile",
            registry.auth,
            "-t",
            image,
            folder,
        ],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        b + ["push", "--tls-verify=false", "--authfile", registry.auth, image, f"docker://{image}"],
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


def flood_round(images, client, registry, followers=10):
    text = (
        f"FROM {registry.base}\nRUN /bin/busybox yes {'x' * 79} | /bin/busybox head -c 50000000; echo end-of-output\n"
    )
    rss_idle = service_rss_mb(images.hub.service_pid("kubestudio.image_builder"))
    build = client.build(dockerfile_text=text, name="flood")
    started = time.perf_counter()
    build = images.wait("bench", build["id"], timeout=600)
    assert build["status"] == "succeeded", build
    built = time.perf_counter() - started
    probe = images.session("observer")
    idle = []
    for _ in range(100):
        t0 = time.perf_counter()
        probe.get(f"{images.url}api/builds").raise_for_status()
        idle.append((time.perf_counter() - t0) * 1000)
    flood = log_flood(images, "bench", build["id"], followers=followers)
    result = {
        "flood_build_s": round(built, 2),
        "flood_log_mb": round(min(flood["followers_bytes"]) / 2**20, 1),
        "flood_followers": followers,
        "flood_duration_s": round(flood["duration_s"], 2),
        "flood_requests": len(flood["latencies_ms"]),
        "flood_p50_ms": round(percentile(flood["latencies_ms"], 50), 1),
        "flood_p99_ms": round(percentile(flood["latencies_ms"], 99), 1),
        "flood_service_p50_ms": round(percentile(flood["direct_latencies_ms"], 50), 1),
        "flood_service_p99_ms": round(percentile(flood["direct_latencies_ms"], 99), 1),
        "idle_p99_ms": round(percentile(idle, 99), 1),
        "rss_before_build_mb": round(rss_idle, 1),
        "flood_rss_before_mb": round(flood["rss_mb"][0], 1),
        "flood_rss_mb": round(max(flood["rss_mb"]), 1),
    }
    result["flood_vs_idle_p99_ratio"] = round(result["flood_p99_ms"] / max(result["idle_p99_ms"], 0.1), 2)
    print("flood: " + ", ".join(f"{k} {v}" for k, v in result.items()), flush=True)
    return result


SMALL_CHANGE = """FROM {base}
COPY requirements.txt /opt/app/requirements.txt
RUN mkdir -p /opt/app/data && echo prepared > /opt/app/data/prepared.txt
COPY app.py /opt/app/app.py
"""


def small_change_round(root, n=3, driver="vfs"):
    """A one-line change in the copied file of a 3-layer image on top of the single-user image, on a
    hub like the README's (its own registry behind the gate, servers' image made by the service):
    the service's rebuild against ``buildah bud`` + ``buildah push`` by hand of the same change
    (the same storage ``driver``, the same registry, a warm storage of its own)."""
    from kubestudio.testing.imageshub import ImagesHub
    from kubestudio.testing.localhub import LocalHub

    hub = LocalHub(
        os.path.join(root, "small-change-hub"),
        base_images=True,
        extra_config=f"c.ImageBuilder.build_timeout = 900\nc.BuildahBackend.storage_driver = {driver!r}\n",
    )
    hub.start()
    try:
        images = ImagesHub(hub, registry=None)
        client = images.client("bench")
        base = hub.wait_for_server_image("bench", timeout=900)
        registry_host = base.split("/", 1)[0]
        folder = os.path.join(images.workspace("bench"), "small")
        direct_folder = os.path.join(root, "small-direct")
        for path in (folder, direct_folder):
            os.makedirs(path, exist_ok=True)
            with open(os.path.join(path, "Dockerfile"), "w") as f:
                f.write(SMALL_CHANGE.format(base=base))
            with open(os.path.join(path, "requirements.txt"), "w") as f:
                f.write("numpy\n")

        def write_app(path, version):
            with open(os.path.join(path, "app.py"), "w") as f:
                f.write(f"print('hello')\nVERSION = {version}\n")

        def service_build(version):
            write_app(folder, version)
            seconds, _, build = build_and_wait(images, client, {"context": "small", "name": "small"})
            assert build["status"] == "succeeded", client.log(build["id"])
            return seconds

        # the hub's own registry, through its gate, with the image service's push account
        hubs_registry = types.SimpleNamespace(
            host=registry_host, auth=os.path.join(hub.data_dir, "registry-gate", "push-auth.json")
        )
        storage = os.path.join(root, "small-direct-storage")

        def by_hand(version):
            write_app(direct_folder, version)
            return direct_build(
                hubs_registry, direct_folder, storage, f"v{version}", repository="direct/small", driver=driver
            )

        first = service_build(0)  # pulls the single-user image into the user's storage, pushes every layer
        direct_first = by_hand(0)
        service, direct = [], []
        for i in range(1, n + 1):
            service.append(service_build(i))
            direct.append(by_hand(i))
            print(f"small change {i}: service {service[-1]:.2f} s, buildah by hand {direct[-1]:.2f} s", flush=True)
    finally:
        hub.stop()
    result = {
        "small_change_first_build_s": round(first, 2),
        "small_change_direct_first_s": round(direct_first, 2),
        "small_change_rebuild_s": round(statistics.median(service), 2),
        "small_change_direct_s": round(statistics.median(direct), 2),
        "small_change_rebuild_ratio": round(statistics.median(service) / statistics.median(direct), 3),
    }
    print("small change: " + json.dumps(result), flush=True)
    return result


KANIKO_EXPECTED = {"create configmaps", "create pods", "get pods/log", "delete pods", "delete configmaps"}
KANIKO_GATE_EXTRA = {"create secrets", "delete secrets"}  # the build's own registry account


def kaniko_round(root, registry, n=3):
    """Both ways the chart can run kaniko: build pods with the registry's Secret (``kaniko_*``),
    and behind the registry gate with a Secret of the build's own (``kaniko_gate_*``, the chart's
    default); ``kaniko_gate_build_ratio`` is the gate's build time over the other's."""
    from kubestudio.hub.config import KubeStudio
    from kubestudio.testing.imageshub import TESTING_BIN, start_kaniko_images_hub
    from kubestudio.testing.kubebench import Bench, binaries_present

    if not binaries_present():
        print("kaniko: skipped (the test bench is not built: python -m kubestudio.testing.kubebench build)")
        return {}
    bench = Bench(os.path.join(root, "bench"), mode="process", path_prepend=KubeStudio().tool_dirs + [TESTING_BIN])
    bench.start()
    result = {}
    try:
        for gate in (False, True):
            images = start_kaniko_images_hub(
                os.path.join(root, f"kaniko-hub-{gate}"), bench, registry, kubeconfig=bench.proxy_kubeconfig, gate=gate
            )
            try:
                client = images.client("bench")
                time.sleep(3)  # let the service's start-up requests (client, watches) settle
                bench.counts(reset=True)
                time.sleep(10)
                idle = bench.counts()
                per_build, seconds = [], []
                for i in range(n):
                    bench.counts(reset=True)
                    text = f"FROM {registry.base}\nRUN echo kaniko-{uuid.uuid4().hex} && sleep 2\n"
                    started = time.perf_counter()
                    build = client.build(dockerfile_text=text, name="kaniko-bench")
                    build = images.wait("bench", build["id"], timeout=300)
                    assert build["status"] == "succeeded", client.log(build["id"])
                    seconds.append(time.perf_counter() - started)
                    time.sleep(1)  # the pod and ConfigMap deletions land
                    per_build.append(bench.counts())
            finally:
                images.hub.stop()
            verbs = sorted({k for counts in per_build for k in counts})
            key = "kaniko_gate" if gate else "kaniko"
            result.update(
                {
                    f"{key}_build_s": round(statistics.median(seconds), 2),
                    f"{key}_requests_per_build": {
                        k: round(statistics.mean(c.get(k, 0) for c in per_build), 2) for k in verbs
                    },
                    f"{key}_requests_per_build_total": round(statistics.mean(sum(c.values()) for c in per_build), 2),
                    f"{key}_idle_requests_10s": sum(idle.values()),
                    f"{key}_idle_requests": idle,
                }
            )
    finally:
        bench.stop()
    result["kaniko_gate_build_ratio"] = round(result["kaniko_gate_build_s"] / result["kaniko_build_s"], 2)
    print("kaniko: " + json.dumps(result), flush=True)
    return result


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=3, help="rounds")
    parser.add_argument("--no-kaniko", action="store_true", help="skip the kaniko round on the test bench")
    parser.add_argument(
        "--only-kaniko", action="store_true", help="only the kaniko round (merged into results/builds.json)"
    )
    parser.add_argument("--no-small-change", action="store_true", help="skip the small-change rebuild round")
    parser.add_argument(
        "--storage-driver", default="vfs", help="the small-change round's buildah storage driver (vfs or overlay)"
    )
    parser.add_argument(
        "--only-small-change",
        action="store_true",
        help="only the small-change rebuild on top of the single-user image (merged into results/builds.json)",
    )
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="kubestudio-bench-builds-")
    if args.only_small_change:
        try:
            metrics = small_change_round(root, n=args.n, driver=args.storage_driver)
        finally:
            shutil.rmtree(root, ignore_errors=True)
        save({**previous_metrics(), **metrics}, args.storage_driver)
        return
    registry = LocalRegistry(os.path.join(root, "registry"), user="bench", password="bench-password").start()
    registry.auth = registry.auth_file(os.path.join(root, "auth.json"))
    registry.base = push_busybox_base(registry.host, os.path.join(root, "base-storage"), auth_file=registry.auth)
    if args.only_kaniko:
        try:
            metrics = kaniko_round(root, registry)
        finally:
            registry.stop()
            shutil.rmtree(root, ignore_errors=True)
        save({**previous_metrics(), **metrics})
        return
    images = start_images_hub(
        os.path.join(root, "hub"),
        registry,
        extra="c.ImageBuilder.max_context_bytes = 1 << 20\n"
        "c.ImageBuilder.max_log_bytes = 64 << 20  # the flood's log is really 50 MB\n",
    )
    client = images.client("bench")
    rows = {"cold": [], "last_step_rebuild": [], "identical": [], "direct": []}
    identical_runs = []
    try:
        for i in range(args.n):
            nonce = uuid.uuid4().hex
            folder = images.write_context(
                "bench",
                f"app{i}",
                DOCKERFILE.replace("{nonce}", nonce).replace("{last}", "one"),
                {"app.txt": "application\n"},
            )
            cold, _, build = build_and_wait(images, client, {"context": folder, "name": "bench"})
            assert build["status"] == "succeeded", client.log(build["id"])
            images.write_context(
                "bench",
                folder,
                DOCKERFILE.replace("{nonce}", nonce).replace("{last}", "two"),
                {"app.txt": "application\n"},
            )
            rebuild, _, build = build_and_wait(images, client, {"context": folder, "name": "bench"})
            assert build["status"] == "succeeded", client.log(build["id"])
            runs_before = sum(b["builder_run"] for b in client.builds())
            _, identical, build = build_and_wait(images, client, {"context": folder, "name": "bench"})
            assert build["status"] == "exists", build
            identical_runs.append(sum(b["builder_run"] for b in client.builds()) - runs_before)

            direct_folder = os.path.join(root, f"direct{i}")
            os.makedirs(direct_folder)
            with open(os.path.join(direct_folder, "Dockerfile"), "w") as f:
                f.write(
                    DOCKERFILE.replace("{nonce}", uuid.uuid4().hex).replace("{last}", "one").format(base=registry.base)
                )
            with open(os.path.join(direct_folder, "app.txt"), "w") as f:
                f.write("application\n")
            direct = direct_build(registry, direct_folder, os.path.join(root, f"direct-storage{i}"), f"r{i}")
            for key, value in (
                ("cold", cold),
                ("last_step_rebuild", rebuild),
                ("identical", identical),
                ("direct", direct),
            ):
                rows[key].append(value)
            print(
                f"round {i + 1}: cold {cold:.2f} s, last-step rebuild {rebuild:.2f} s, identical {identical * 1000:.0f} ms, "
                f"direct buildah {direct:.2f} s",
                flush=True,
            )
        flood = flood_round(images, client, registry)
        images.hub.stop()
        if not args.no_kaniko:
            flood.update(kaniko_round(root, registry))
        if not args.no_small_change:
            flood.update(small_change_round(root, n=args.n, driver=args.storage_driver))
    finally:
        images.hub.stop()
        registry.stop()
        shutil.rmtree(root, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in rows.items()}
    save(
        {
            "cold_s": round(med["cold"], 3),
            "last_step_rebuild_s": round(med["last_step_rebuild"], 3),
            "identical_s": round(med["identical"], 4),
            "identical_builder_runs": max(identical_runs),
            "rebuild_ratio": round(med["last_step_rebuild"] / med["cold"], 3),
            "direct_buildah_cold_s": round(med["direct"], 3),
            "cold_vs_direct_ratio": round(med["cold"] / med["direct"], 3),
            "rounds": args.n,
            **flood,
        },
        args.storage_driver,
    )


def previous_metrics():
    try:
        with open(result_path("builds")) as f:
            return json.load(f)["metrics"]
    except (OSError, ValueError, KeyError):
        return {}


def save(metrics, driver="vfs"):
    print()
    print(f"{'metric':<28}{'value':>10}")
    for key, value in metrics.items():
        print(f"{key:<28}{value!s:>10}")
    goals = []
    if "identical_s" in metrics:
        goals += [
            f"identical < 1 s with 0 builder runs: {metrics['identical_s'] < 1 and metrics['identical_builder_runs'] == 0}",
            f"last-step rebuild <= 30% of cold: {metrics['rebuild_ratio'] <= 0.3}",
        ]
    if "flood_p99_ms" in metrics:
        goals += [
            f"flood p99 < 100 ms: {metrics['flood_p99_ms'] < 100}",
            f"flood RSS < 300 MB: {metrics['flood_rss_mb'] < 300}",
        ]
    if "kaniko_requests_per_build" in metrics:
        goals.append(
            "kaniko: only create/delete pod and ConfigMap and one log stream per build: "
            f"{set(metrics['kaniko_requests_per_build']) <= KANIKO_EXPECTED}"
        )
    if "kaniko_gate_requests_per_build" in metrics:
        goals.append(
            "kaniko behind the gate: the same and the build's Secret made and deleted: "
            f"{set(metrics['kaniko_gate_requests_per_build']) <= KANIKO_EXPECTED | KANIKO_GATE_EXTRA}"
        )
    if "small_change_rebuild_s" in metrics:
        goals.append(
            f"small-change rebuild < 15 s: {metrics['small_change_rebuild_s'] < 15}; "
            f"<= 1.2 x buildah by hand: {metrics['small_change_rebuild_ratio'] <= 1.2}"
        )
    print("\ngoals: " + "; ".join(goals))
    write_results(
        "builds",
        metrics,
        buildah=subprocess.run(["buildah", "--version"], capture_output=True, text=True).stdout.strip(),
        storage_driver=driver,
        isolation="sandbox (oci, runc, user + network namespaces)",
    )


if __name__ == "__main__":
    main()
