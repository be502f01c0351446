"""The TensorBoard service against TensorBoard run by hand, in one run, on the same event files.

1. launch: open a board through the service (POST, then its URL through the hub until TensorBoard
   answers) against starting ``tensorboard`` by hand on the same folder until it answers
   (``launch_ratio``, goal <= 1.2);
2. proxy: ``data/plugin/scalars/scalars`` through the hub and the service against the same
   request to the same TensorBoard at its loopback address (``proxy_added_p50_ms``, goal < 5 ms;
   ``hub_proxy_alone_p50_ms`` is what the hub's own proxy adds to any request);
3. memory: 20 boards open at once, the resident memory of their TensorBoards per board
   (``rss_mb_per_board``).

Usage: python benchmarks/tensorboards.py [-n 5] [--boards 20]
Writes benchmarks/results/tensorboards.json.
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
from kubestudio.processgroup import rss_by_group  # noqa: E402
from kubestudio.spawner.storage import ensure_user_folders, user_folders  # noqa: E402
from kubestudio.testing.benchresults import write_results  # noqa: E402
from kubestudio.testing.localhub import LocalHub  # noqa: E402
from kubestudio.testing.ports import free_port  # noqa: E402
from kubestudio.testing.scratch import scratch_folder  # noqa: E402


def write_events(folder, steps=200):
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(folder)
    for step in range(steps):
        writer.add_scalar("loss", 1.0 / (step + 1), step)
    writer.close()


def until_answers(get, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            r = get()
            if r.status_code == 200 and r.headers.get("Content-Type", "").startswith("application/json"):
                return r
        except requests.RequestException:
            pass
        time.sleep(0.02)
    raise TimeoutError("no answer")


def by_hand(logdir):
    """Start tensorboard on ``logdir``; seconds until its runs list answers; the process."""
    port = free_port()
    started = time.perf_counter()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tensorboard.main",
            "--logdir",
            logdir,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--reload_interval",
            "30",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    until_answers(lambda: requests.get(f"http://127.0.0.1:{port}/data/runs", timeout=5))
    return time.perf_counter() - started, proc, port


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=5, help="rounds of the launch comparison")
    parser.add_argument("--requests", type=int, default=200, help="scalar requests per side")
    parser.add_argument("--boards", type=int, default=20)
    args = parser.parse_args()
    root = scratch_folder("tb-bench-")  # removed when the run ends
    extra = f"c.TensorBoardService.max_boards_per_user = {args.boards + args.n + 5}\n"
    hub = LocalHub(root, settings={"images_service": False, "jobs_service": False}, extra_config=extra).start()
    try:
        hub.create_user("bench")
        session = requests.Session()
        session.headers["Authorization"] = f"token {hub.user_token('bench')}"
        api = f"{hub.url}/services/tensorboards/api/boards"
        folders = user_folders(hub.data_dir, "bench")
        ensure_user_folders(folders)
        for i in range(args.n + args.boards):
            write_events(os.path.join(folders.workspace, "runs", f"exp{i}"))
        # 1. launch, interleaved rounds on fresh folders (no board is reused)
        hand, service = [], []
        for i in range(args.n):
            elapsed, proc, _ = by_hand(os.path.join(folders.workspace, "runs", f"exp{i}"))
            hand.append(elapsed)
            os.killpg(proc.pid, 9)
            proc.wait()
            started = time.perf_counter()
            board = session.post(api, json={"logdirs": [f"runs/exp{i}"]}).json()
            until_answers(lambda: session.get(hub.url + board["url"] + "data/runs", timeout=5))
            service.append(time.perf_counter() - started)
            session.delete(f"{api}/{board['id']}")
        # 2. the proxy: the same scalar request to the same TensorBoard, through the hub and the
        # service, and straight to its loopback address
        board = session.post(api, json={"logdirs": ["runs/exp0"]}).json()
        until_answers(lambda: session.get(hub.url + board["url"] + "data/runs", timeout=5))
        with sqlite3.connect(os.path.join(hub.data_dir, "tensorboards.sqlite")) as db:
            (refs,) = db.execute("select refs from boards where id = ?", (board["id"],)).fetchone()
        direct = json.loads(refs)["url"]
        params = {"run": "runs_exp0", "tag": "loss"}
        through, straight = [], []
        plain = requests.Session()
        # the board's TensorBoard answers only callers with its secret (the service's proxy); so does this one
        if json.loads(refs).get("secret"):
            plain.headers[RUNTIME_SECRET_HEADER] = json.loads(refs)["secret"]
        for _ in range(10):  # TensorBoard's first answers load the data
            plain.get(f"{direct}/data/plugin/scalars/scalars", params=params)
        for _ in range(args.requests):  # interleaved
            t = time.perf_counter()
            assert session.get(hub.url + board["url"] + "data/plugin/scalars/scalars", params=params).status_code == 200
            through.append(time.perf_counter() - t)
            t = time.perf_counter()
            assert plain.get(f"{direct}/data/plugin/scalars/scalars", params=params).status_code == 200
            straight.append(time.perf_counter() - t)
        # the hub's proxy alone (CHP to the service, nothing proxied further): part of any request
        hub_only = []
        for _ in range(args.requests):
            t = time.perf_counter()
            session.get(f"{hub.url}/services/tensorboards/api/health")
            hub_only.append(time.perf_counter() - t)
        # 3. memory: boards open at once
        opened = [session.post(api, json={"logdirs": [f"runs/exp{args.n + i}"]}).json() for i in range(args.boards)]
        for b in opened:
            until_answers(lambda b=b: session.get(hub.url + b["url"] + "data/runs", timeout=5))
        groups = rss_by_group()
        # each board's TensorBoard leads a process group; its PID is in the service's store
        with sqlite3.connect(os.path.join(hub.data_dir, "tensorboards.sqlite")) as db:
            board_pids = [
                json.loads(refs).get("pid")
                for (refs,) in db.execute("select refs from boards where status = 'running'")
            ]
        rss = [groups[pid] for pid in board_pids if pid in groups]
    finally:
        hub.stop()

    p50 = lambda values: statistics.median(values) * 1000  # noqa: E731
    metrics = {
        "launch_by_hand_s": round(statistics.median(hand), 2),
        "launch_service_s": round(statistics.median(service), 2),
        "launch_ratio": round(statistics.median(service) / statistics.median(hand), 2),
        "scalars_direct_p50_ms": round(p50(straight), 2),
        "scalars_through_hub_p50_ms": round(p50(through), 2),
        "proxy_added_p50_ms": round(p50(through) - p50(straight), 2),
        "hub_proxy_alone_p50_ms": round(p50(hub_only), 2),
        "boards_open": len(rss),
        "rss_mb_per_board": round(statistics.mean(rss) / 2**20, 1) if rss else None,
    }
    print(f"\n{'':34}{'value':>10}")
    for key, value in metrics.items():
        print(f"{key:<34}{value!s:>10}")
    print("\nlaunch_ratio goal <= 1.2; proxy_added_p50_ms goal < 5")
    write_results("tensorboards", metrics, backend="local (embedded default)")


if __name__ == "__main__":
    main()
