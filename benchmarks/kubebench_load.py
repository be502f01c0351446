"""Load on the Kubernetes test bench: N pods created and made Running in responder mode.

Measures create-to-Running for all pods (the real scheduler binds them, the simulated kubelet
starts an HTTP responder on each pod address), then a full list and a watch from the start,
the peak RSS of the whole bench (etcd, apiserver, scheduler, controller-manager, kubelet) and
API requests per second the apiserver served during the run (its own apiserver_request_total,
every client: the load generator, the scheduler, the controllers, the kubelet); the load
generator's own requests are counted by the bench's fault proxy.

Usage: python benchmarks/kubebench_load.py [--pods 1000]
Writes benchmarks/results/kubebench_load.json.
"""

import argparse
import asyncio
import json
import os
import ssl
import sys
import threading
import time

import aiohttp

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from kubestudio.testing.benchresults import write_results  # noqa: E402
from kubestudio.testing.kubebench import Bench  # noqa: E402
from kubestudio.testing.scratch import scratch_folder  # noqa: E402


def rss_mb(pid):
    """Resident memory of ``pid`` and its children, in MB (from /proc)."""
    total = 0
    pids = [pid]
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            pids += [int(p) for p in f.read().split()]
    except OSError:
        pass
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


class RssSampler(threading.Thread):
    def __init__(self, bench):
        super().__init__(daemon=True)
        self.bench = bench
        self.peak = 0.0
        self.by_component = {}
        self.stopped = threading.Event()

    def run(self):
        while not self.stopped.is_set():
            sample = {name: rss_mb(pid) for name, pid in self.bench.pids().items()}
            total = sum(sample.values())
            if total > self.peak:
                self.peak, self.by_component = total, sample
            self.stopped.wait(0.5)


def apiserver_requests(bench):
    """Total requests the apiserver has served, from its own metrics (every client counted)."""
    text = bench.api("GET", "/metrics").text
    total = 0.0
    for line in text.splitlines():
        if line.startswith("apiserver_request_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def pod(i):
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"load-{i:05d}", "labels": {"app": "load", "kubebench.kubestudio.io/mode": "responder"}},
        "spec": {
            "containers": [
                {
                    "name": "main",
                    "image": "kubebench/responder:1",
                    "ports": [{"containerPort": 8888}],
                    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                }
            ],
            "terminationGracePeriodSeconds": 0,
        },
    }


async def run_load(bench, n, concurrency):
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    base = bench.proxy_url  # through the counting proxy
    headers = {"Authorization": f"Bearer {bench.token}"}
    results = {}
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=context, limit=concurrency), headers=headers
    ) as s:
        running = set()
        all_running = asyncio.Event()

        async def watch_running():
            params = {"watch": "1", "labelSelector": "app=load"}
            async with s.get(
                f"{base}/api/v1/namespaces/default/pods",
                params=params,
                timeout=aiohttp.ClientTimeout(total=None, sock_read=None),
            ) as r:
                async for line in r.content:
                    event = json.loads(line)
                    obj = event["object"]
                    if obj.get("status", {}).get("phase") == "Running":
                        running.add(obj["metadata"]["name"])
                        if len(running) >= n:
                            all_running.set()
                            return

        watcher = asyncio.create_task(watch_running())
        await asyncio.sleep(0.5)
        queue = asyncio.Queue()
        for i in range(n):
            queue.put_nowait(i)
        failures = 0

        async def creator():
            nonlocal failures
            while not queue.empty():
                i = queue.get_nowait()
                for attempt in range(5):
                    async with s.post(f"{base}/api/v1/namespaces/default/pods", json=pod(i)) as r:
                        if r.status in (201, 409):
                            break
                        await asyncio.sleep(0.2 * (attempt + 1))
                else:
                    failures += 1

        started = time.perf_counter()
        await asyncio.gather(*[creator() for _ in range(concurrency)])
        results["create_s"] = time.perf_counter() - started
        await asyncio.wait_for(all_running.wait(), timeout=900)
        results["create_to_running_s"] = time.perf_counter() - started
        results["create_failures"] = failures
        watcher.cancel()

        # every pod answers on its own address
        sample = [f"http://127.1.{k // 254}.{k % 254 + 1}:8888/" for k in range(1, min(n, 200) + 1)]
        ok = 0
        for url in sample:
            try:
                async with s.get(url, timeout=aiohttp.ClientTimeout(total=5)) as r:
                    ok += r.status == 200
            except aiohttp.ClientError:
                pass
        results["responders_ok"] = ok
        results["responders_checked"] = len(sample)

        t = time.perf_counter()
        async with s.get(f"{base}/api/v1/namespaces/default/pods", params={"labelSelector": "app=load"}) as r:
            items = (await r.json())["items"]
        results["list_s"] = time.perf_counter() - t
        results["list_items"] = len(items)

        t = time.perf_counter()
        seen = 0
        params = {"watch": "1", "labelSelector": "app=load", "resourceVersion": "0"}
        async with s.get(
            f"{base}/api/v1/namespaces/default/pods",
            params=params,
            timeout=aiohttp.ClientTimeout(total=None, sock_read=30),
        ) as r:
            async for line in r.content:
                if json.loads(line)["type"] == "ADDED":
                    seen += 1
                    if seen >= n:
                        break
        results["watch_initial_s"] = time.perf_counter() - t
        results["watch_events"] = seen
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pods", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=20)
    args = parser.parse_args()
    nodes = [
        {"name": "load", "count": max(args.pods // 200 + 1, 2), "capacity": {"cpu": 64, "memory": "256Gi", "pods": 250}}
    ]
    root = scratch_folder("kubebench-load-")  # removed when the run ends
    bench = Bench(root, nodes=nodes, mode="responder", crds=False)
    t = time.perf_counter()
    bench.start()
    startup_s = time.perf_counter() - t
    sampler = RssSampler(bench)
    sampler.start()
    try:
        bench.counts(reset=True)
        served_before = apiserver_requests(bench)
        started = time.perf_counter()
        results = asyncio.run(run_load(bench, args.pods, args.concurrency))
        elapsed = time.perf_counter() - started
        served = apiserver_requests(bench) - served_before
        counts = bench.counts()
    finally:
        sampler.stopped.set()
        sampler.join()
        bench.stop()
    requests_total = sum(counts.values())
    metrics = {
        "pods": args.pods,
        "create_to_running_s": round(results["create_to_running_s"], 2),
        "create_s": round(results["create_s"], 2),
        "create_failures": results["create_failures"],
        "peak_rss_mb": round(sampler.peak, 1),
        "requests_per_s": round(served / elapsed, 1),
        "apiserver_requests_total": int(served),
        "client_requests_per_s": round(requests_total / elapsed, 1),
        "list_s": round(results["list_s"], 3),
        "list_items": results["list_items"],
        "watch_initial_s": round(results["watch_initial_s"], 3),
        "watch_events": results["watch_events"],
        "responders_ok": results["responders_ok"],
        "responders_checked": results["responders_checked"],
        "bench_startup_s": round(startup_s, 1),
    }
    print(f"{'metric':<28}{'value':>12}")
    for key, value in metrics.items():
        print(f"{key:<28}{value:>12}")
    write_results(
        "kubebench_load",
        metrics,
        kubernetes="1.20.2 (Debian source)",
        peak_rss_by_component_mb={k: round(v, 1) for k, v in sampler.by_component.items()},
        requests_by_verb_resource=counts,
    )


if __name__ == "__main__":
    main()
