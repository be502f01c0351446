"""The jobs service on the embedded default, against the same work done by hand.

1. local overhead: submit -> first log line of a one-line script through the service (POST
   api/jobs, then its log as Server-Sent Events through the hub's proxy, as the SDK follows it),
   against running the same script by hand with the same Python (start -> first line on stdout);
   ``local_overhead_ratio`` is the ratio of the medians (goal <= 1.2); the same for a script
   whose first line comes after ``import torch`` (``local_overhead_ratio_torch_import``);
2. log follow throughput: a job printing ``--log-mb`` MB, followed from its submit through the SSE
   endpoint until the result event (``log_mb_per_s``, goal >= 20), with the service's CPU.

The Kubernetes part of the issue (500 jobs on the bench: requests per job, submit -> Running)
needs the Kubernetes backend, which this release does not have yet.

Usage: python benchmarks/jobs.py [-n 10] [--log-mb 50]
Writes benchmarks/results/jobs.json.
"""

import argparse
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import requests

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from kubestudio.spawner.storage import ensure_user_folders, user_folders  # noqa: E402
from kubestudio.testing.localhub import LocalHub  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ONE_LINE = "print('hello from the job')\n"
# what a training script starts with: the same comparison where the Python start is not all there is
TORCH_LINE = "import torch\nprint('torch', torch.__version__)\n"


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def events(response):
    """The events of an SSE response, as dicts."""
    data = []
    for raw in response.iter_lines(chunk_size=None, decode_unicode=True):  # as data arrives
        if raw.startswith("data:"):
            data.append(raw[5:].lstrip())
        elif raw == "" and data:
            yield json.loads("\n".join(data))
            data = []


def by_hand(script, cwd, home):
    """As in the user's server: its workspace, its HOME, the hub's Python."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL")}
    env.update(HOME=home, PYTHONUNBUFFERED="1")
    started = time.perf_counter()
    # stderr too, as a job's log has it: the first line is whichever comes first
    proc = subprocess.Popen([sys.executable, script], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    proc.stdout.readline()
    elapsed = time.perf_counter() - started
    proc.wait()
    return elapsed


def through_service(session, url, name, script="one.py"):
    started = time.perf_counter()
    job = session.post(url + "api/jobs", json={"name": name, "script": script}).json()
    with session.get(url + f"api/jobs/{job['id']}/logs", headers={"Accept": "text/event-stream"}, stream=True) as r:
        for event in events(r):
            if event.get("type") == "lines":
                elapsed = time.perf_counter() - started
                break
    while session.get(url + f"api/jobs/{job['id']}").json()["status"] not in ("succeeded", "failed", "cancelled"):
        time.sleep(0.05)
    return elapsed


def follow_throughput(session, url, megabytes):
    line = "x" * 99  # 100 bytes with its newline
    count = megabytes * 1024 * 1024 // 100
    script = f"import sys\nw = sys.stdout.write\nfor i in range({count}):\n    w({line!r} + '\\n')\n"
    return script, count


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=10, help="rounds of the overhead comparison")
    parser.add_argument("--log-mb", type=int, default=50)
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="jobs-bench-")
    extra = f"c.JobService.max_log_bytes = {(args.log_mb + 10) * 1024 * 1024}\nc.JobService.max_running_jobs_per_user = 4\n"
    hub = LocalHub(root, settings={"images_service": False}, extra_config=extra).start()
    try:
        hub.create_user("bench")
        session = requests.Session()
        session.headers["Authorization"] = f"token {hub.user_token('bench')}"
        url = f"{hub.url}/services/jobs/"
        folders = user_folders(hub.data_dir, "bench")
        ensure_user_folders(folders)
        with open(os.path.join(folders.workspace, "one.py"), "w") as f:
            f.write(ONE_LINE)
        through_service(session, url, "warmup")  # the hub's group lookup, the first connection
        by_hand("one.py", folders.workspace, folders.home)
        hand, service = [], []
        for i in range(args.n):  # interleaved, so a slower moment of the machine hits both
            hand.append(by_hand("one.py", folders.workspace, folders.home))
            service.append(through_service(session, url, f"one-{i}"))
        print(f"one-line script, first line: by hand {statistics.median(hand) * 1000:.1f} ms, "
              f"through the service {statistics.median(service) * 1000:.1f} ms", file=sys.stderr)
        torch_hand, torch_service = [], []
        if importlib.util.find_spec("torch") is None:  # not imported here: this process stays small
            print("torch is not installed: no torch-import comparison", file=sys.stderr)
        else:
            with open(os.path.join(folders.workspace, "torch_line.py"), "w") as f:
                f.write(TORCH_LINE)
            by_hand("torch_line.py", folders.workspace, folders.home)  # the page cache, as for the service's runs
            for i in range(max(3, args.n // 3)):
                torch_hand.append(by_hand("torch_line.py", folders.workspace, folders.home))
                torch_service.append(through_service(session, url, f"torch-{i}", "torch_line.py"))

        script, count = follow_throughput(session, url, args.log_mb)
        with open(os.path.join(folders.workspace, "flood.py"), "w") as f:
            f.write(script)
        service_pid = hub.service_pid("kubestudio.jobs")
        cpu_before = cpu_seconds(service_pid)
        started = time.perf_counter()
        job = session.post(url + "api/jobs", json={"name": "flood", "script": "flood.py"}).json()
        received = lines = 0
        with session.get(url + f"api/jobs/{job['id']}/logs", headers={"Accept": "text/event-stream"}, stream=True) as r:
            for event in events(r):
                if event.get("type") == "lines":
                    lines += len(event["lines"])
                    received += sum(len(line) + 1 for line in event["lines"])
                elif event.get("type") == "result":
                    break
        elapsed = time.perf_counter() - started
        cpu = cpu_seconds(service_pid) - cpu_before
        assert lines >= count, f"{lines} lines followed, {count} printed"
    finally:
        hub.stop()

    metrics = {
        "first_line_by_hand_ms": round(statistics.median(hand) * 1000, 1),
        "first_line_service_ms": round(statistics.median(service) * 1000, 1),
        "local_overhead_ratio": round(statistics.median(service) / statistics.median(hand), 2),
        "overhead_rounds": args.n,
        **({"first_line_torch_by_hand_ms": round(statistics.median(torch_hand) * 1000, 1),
            "first_line_torch_service_ms": round(statistics.median(torch_service) * 1000, 1),
            "local_overhead_ratio_torch_import": round(statistics.median(torch_service) / statistics.median(torch_hand), 2)}
           if torch_hand else {}),
        "log_mb": round(received / 2**20, 1),
        "log_lines": lines,
        "log_follow_s": round(elapsed, 2),
        "log_mb_per_s": round(received / 2**20 / elapsed, 1),
        "log_service_cpu_s": round(cpu, 2),
    }
    print(f"\n{'':40}{'value':>12}")
    for key, value in metrics.items():
        print(f"{key:<40}{value:>12}")
    print("\nlocal_overhead_ratio goal <= 1.2; log_mb_per_s goal >= 20")
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "jobs.json"), "w") as f:
        json.dump({"benchmark": "jobs", "metrics": metrics,
                   "environment": {"python": platform.python_version(), "cpus": os.cpu_count(),
                                   "backend": "local (embedded default)"}}, f, indent=2)


if __name__ == "__main__":
    main()
