"""Servings against the model runtime called directly, in one run, on the same sklearn model.

1. latency: V1 predictions of one row through the hub (proxy, jobs service) against the same
   request to the runtime's loopback address (``direct_p50_ms``, ``hub_p50_ms``,
   ``added_p50_ms``, goal <= 5 ms; p99 both ways);
2. throughput: 16 concurrent clients, a few seconds each way in alternating rounds (the median
   round's ``hub_rps_ratio``, goal >= 0.7), and each process's CPU time per request both ways,
   with the ceilings they put on the ratio (this machine's cores shared by client, proxy,
   service and runtime; or the runtime's own core when there are cores to spare);
3. ready: serve -> ready through the service against starting the runtime by hand until it
   answers (``ready_ratio``, goal <= 1.5).

Usage: python benchmarks/serving.py [-n 3] [--requests 300] [--seconds 3] [--load-rounds 5]
Writes benchmarks/results/serving.json.
"""

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import time

import requests

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from kubestudio.names import RUNTIME_SECRET_HEADER  # noqa: E402
from kubestudio.spawner.storage import ensure_user_folders, user_folders  # noqa: E402
from kubestudio.testing.benchresults import write_results  # noqa: E402
from kubestudio.testing.localhub import LocalHub  # noqa: E402
from kubestudio.testing.ports import free_port  # noqa: E402
from kubestudio.testing.scratch import scratch_folder  # noqa: E402

ROW = {"instances": [[5.1, 3.5, 1.4, 0.2]]}


def train(folder):
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    os.makedirs(folder, exist_ok=True)
    joblib.dump(LogisticRegression(max_iter=500).fit(X, y), os.path.join(folder, "model.joblib"))


def until_ready(url, session=None, timeout=120):
    session = session or requests
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if session.post(url, json=ROW, timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.02)
    raise TimeoutError(url)


def by_hand(model, name):
    """Start the runtime on ``model``; seconds until it predicts; the process."""
    port = free_port()
    started = time.perf_counter()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kubestudio.jobs.serve",
            "--model",
            model,
            "--name",
            name,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    until_ready(f"http://127.0.0.1:{port}/v1/models/{name}:predict")
    return time.perf_counter() - started, proc


def load(url, headers, clients, seconds):
    """Requests per second of ``clients`` concurrent callers (one asyncio loop, each caller with
    its own kept-alive connection: the load generator takes as little of the machine as it can)."""
    import asyncio

    import aiohttp

    async def run():
        done = [0]
        deadline = time.monotonic() + seconds
        connector = aiohttp.TCPConnector(limit=clients)
        async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

            async def caller():
                while time.monotonic() < deadline:
                    async with session.post(url, json=ROW) as response:
                        await response.read()
                        if response.status == 200:
                            done[0] += 1

            started = time.perf_counter()
            await asyncio.gather(*[caller() for _ in range(clients)])
            return done[0], time.perf_counter() - started

    return asyncio.run(run())


def cpu_seconds(pid):
    """CPU time (user + system) a process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU milliseconds per request of each process named, summed over the rounds measured."""

    def __init__(self, pids):
        self.pids = pids
        self.used = dict.fromkeys(pids, 0.0)
        self.requests = 0

    def measure(self, run):
        before = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        done, seconds = run()
        for name, pid in self.pids.items():
            self.used[name] += cpu_seconds(pid) - before[name]
        self.requests += done
        return done / seconds

    def per_request_ms(self):
        return {name: round(used * 1000 / max(self.requests, 1), 3) for name, used in self.used.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=3, help="rounds of the ready comparison")
    parser.add_argument("--requests", type=int, default=300, help="latency requests per side")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds of load per side and round")
    parser.add_argument("--load-rounds", type=int, default=5, help="alternating rounds of load, each way")
    args = parser.parse_args()
    root = scratch_folder("serving-bench-")  # removed when the run ends
    hub = LocalHub(root, settings={"images_service": False, "tensorboards_service": False}).start()
    try:
        hub.create_user("bench")
        headers = {"Authorization": f"token {hub.user_token('bench')}"}
        session = requests.Session()
        session.headers.update(headers)
        api = f"{hub.url}/services/jobs/api/servings"
        folders = user_folders(hub.data_dir, "bench")
        ensure_user_folders(folders)
        train(os.path.join(folders.workspace, "models", "iris"))
        # 3. ready, interleaved: by hand, then through the service (a new serving each round)
        hand, service = [], []
        for i in range(args.n):
            elapsed, proc = by_hand(os.path.join(folders.workspace, "models", "iris"), "iris")
            hand.append(elapsed)
            os.killpg(proc.pid, 9)
            proc.wait()
            started = time.perf_counter()
            record = session.post(api, json={"name": f"r{i}", "model": "models/iris"}).json()
            until_ready(f"{hub.url}{record['url']}v1/models/r{i}:predict", session)
            service.append(time.perf_counter() - started)
            session.delete(f"{api}/{record['id']}")
        # 1 and 2: one serving, through the hub and straight to its runtime
        record = session.post(api, json={"name": "iris", "model": "models/iris"}).json()
        through_url = f"{hub.url}{record['url']}v1/models/iris:predict"
        until_ready(through_url, session)
        with sqlite3.connect(os.path.join(hub.data_dir, "jobs.sqlite")) as db:
            (refs,) = db.execute("select refs from servings where id = ?", (record["id"],)).fetchone()
        runtime = json.loads(refs)["runtime"]
        direct_url = f"http://127.0.0.1:{runtime['port']}/v1/models/iris:predict"
        # the runtime answers only callers with its secret (the service's proxy); so does this one
        direct_headers = {RUNTIME_SECRET_HEADER: runtime["secret"]} if runtime.get("secret") else {}
        plain = requests.Session()
        plain.headers.update(direct_headers)
        for _ in range(20):
            plain.post(direct_url, json=ROW)
            session.post(through_url, json=ROW)
        through, straight = [], []
        for _ in range(args.requests):  # interleaved
            t = time.perf_counter()
            assert session.post(through_url, json=ROW).status_code == 200
            through.append(time.perf_counter() - t)
            t = time.perf_counter()
            assert plain.post(direct_url, json=ROW).status_code == 200
            straight.append(time.perf_counter() - t)
        # alternating rounds: the machine's other load drifts; each round's ratio is from
        # neighbouring seconds, and the median round is reported
        # and where the CPU goes: each process's CPU time per request, both ways
        runtime_pid = json.loads(refs)["runtime"]["pid"]
        with open(os.path.join(hub.data_dir, "jupyterhub-proxy.pid")) as f:
            proxy_pid = int(f.read().strip())
        direct_meter = CpuMeter({"runtime": runtime_pid, "client": os.getpid()})
        hub_meter = CpuMeter(
            {
                "runtime": runtime_pid,
                "jobs_service": hub.service_pid("kubestudio.jobs"),
                "proxy": proxy_pid,
                "client": os.getpid(),
            }
        )
        direct_rounds, hub_rounds = [], []
        for _ in range(args.load_rounds):
            direct_rounds.append(
                direct_meter.measure(lambda: load(direct_url, direct_headers, args.clients, args.seconds))
            )
            hub_rounds.append(hub_meter.measure(lambda: load(through_url, headers, args.clients, args.seconds)))
        ratios = [h / d for h, d in zip(hub_rounds, direct_rounds)]
    finally:
        hub.stop()

    def pct(values, q):
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    metrics = {
        "direct_p50_ms": round(pct(straight, 0.5), 2),
        "hub_p50_ms": round(pct(through, 0.5), 2),
        "added_p50_ms": round(pct(through, 0.5) - pct(straight, 0.5), 2),
        "direct_p99_ms": round(pct(straight, 0.99), 2),
        "hub_p99_ms": round(pct(through, 0.99), 2),
        "direct_rps": round(statistics.median(direct_rounds), 1),
        "hub_rps": round(statistics.median(hub_rounds), 1),
        "hub_rps_ratio": round(statistics.median(ratios), 2),
        "hub_rps_ratio_min": round(min(ratios), 2),
        "hub_rps_ratio_max": round(max(ratios), 2),
        **{f"direct_cpu_ms_per_request_{k}": v for k, v in direct_meter.per_request_ms().items()},
        **{f"hub_cpu_ms_per_request_{k}": v for k, v in hub_meter.per_request_ms().items()},
        # the ratio's ceilings from the CPU costs: all processes sharing this machine's cores, and
        # (with cores to spare, as on a cluster) the runtime's single core alone
        "hub_rps_ratio_ceiling_this_machine": round(
            min(
                1.0, os.cpu_count() * 1000 / sum(hub_meter.per_request_ms().values()) / statistics.median(direct_rounds)
            ),
            2,
        ),
        "hub_rps_ratio_ceiling_spare_cores": round(
            direct_meter.per_request_ms()["runtime"] / hub_meter.per_request_ms()["runtime"], 2
        ),
        "ready_by_hand_s": round(statistics.median(hand), 2),
        "ready_service_s": round(statistics.median(service), 2),
        "ready_ratio": round(statistics.median(service) / statistics.median(hand), 2),
    }
    print(f"\n{'':24}{'value':>10}")
    for key, value in metrics.items():
        print(f"{key:<24}{value!s:>10}")
    print("\nadded_p50_ms goal <= 5; hub_rps_ratio goal >= 0.7; ready_ratio goal <= 1.5")
    write_results("serving", metrics, clients=args.clients, backend="local (embedded default)")


if __name__ == "__main__":
    main()
