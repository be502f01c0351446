"""The jobs service on the embedded default, against the same work done by hand.

1. local overhead: submit -> first log line of a one-line script through the service (POST
   api/jobs asking for Server-Sent Events: submitted and followed in one request through the
   hub's proxy, as the SDK and ``kubestudio jobs submit`` do),
   against running the same script by hand with the same Python (start -> first line on stdout);
   ``local_added_ms`` is the difference of the medians (goal <= 10 ms, containment on), with
   ``local_overhead_ratio`` beside it; the same for a script whose first line comes after
   ``import torch`` (``local_overhead_ratio_torch_import``);
   ``rank_start_overhead_ms``: what the secure start adds to one rank's start (the user's
   environment through a memory file, the working folder by descriptor, the cgroup made and the
   rank put in it before it runs), against the start before it (``setpriv`` with the user's
   environment and a bash wrapper), both as the same account, medians (goal <= 10 ms);
   ``ranks16_started_s``: a 16-rank job, submit -> the last rank's first statement (goal < 1 s);
2. log follow throughput: a job printing ``--log-mb`` MB, followed from its submit through the SSE
   endpoint until the result event (``log_mb_per_s``, goal >= 20), with the service's CPU.

3. on Kubernetes (the bench in status mode, through the fault proxy's counters): ``--k8s-jobs``
   jobs submitted at once through the service (a real hub, the Kubernetes backend): API requests
   per job by verb (goal: the creates, one log stream per pod and the deletes; no polling),
   the service's CPU per job, submit -> Running p50/p99 (from each record's history), failures;
   then all cancelled, with the requests that took.

Usage: python benchmarks/jobs.py [-n 10] [--log-mb 50] [--k8s-jobs 500]
Writes benchmarks/results/jobs.json.
"""

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time

import requests

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from kubestudio.spawner.storage import ensure_user_folders, user_folders  # noqa: E402
from kubestudio.testing.benchresults import result_path, write_results  # noqa: E402
from kubestudio.testing.localhub import LocalHub  # noqa: E402
from kubestudio.testing.scratch import scratch_folder  # noqa: E402

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
    proc = subprocess.Popen(
        [sys.executable, script], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    proc.stdout.readline()
    elapsed = time.perf_counter() - started
    proc.wait()
    return elapsed


def through_service(session, url, name, script="one.py"):
    """Submitted and followed in one request, as the SDK's ``create(follow=True)`` and
    ``kubestudio jobs submit`` do."""
    started = time.perf_counter()
    with session.post(
        url + "api/jobs", json={"name": name, "script": script}, headers={"Accept": "text/event-stream"}, stream=True
    ) as r:
        for event in events(r):
            if event.get("type") == "job":
                job = event["job"]
            elif event.get("type") == "lines":
                elapsed = time.perf_counter() - started
                break
    while session.get(url + f"api/jobs/{job['id']}").json()["status"] not in ("succeeded", "failed", "cancelled"):
        time.sleep(0.05)
    return elapsed


def rank_start(account, folders, contained, rounds=30):
    """Median seconds from spawning a rank to its first output: the secure start of
    :mod:`kubestudio.launch` (``start_process``) in a fresh cgroup (``contained``), or the start
    before it (setpriv handed the user's environment, a bash wrapper writing the exit status)."""
    import asyncio

    from kubestudio.cgroups import Containment
    from kubestudio.launch import open_folder_inside, start_process

    loop = asyncio.new_event_loop()

    env = {"PATH": os.environ.get("PATH", os.defpath), "HOME": folders.home, "RANK": "0", "PYTHONUNBUFFERED": "1"}
    containment = Containment()
    times = []
    for i in range(rounds):
        exit_r, exit_w = os.pipe()
        out_r, out_w = os.pipe()
        started = time.perf_counter()
        if contained:
            group = containment.group(f"bench-rank-{os.getpid()}-{i}")
            if group is not None:
                group.create()
            cwd_fd = open_folder_inside(folders.workspace, folders.workspace, "working_dir")

            async def start(group=group, cwd_fd=cwd_fd):
                # the product's own start (joining the cgroup as it does), timed from its call
                begun = time.perf_counter()
                proc = await start_process(
                    account, ["printf", "x"], env, group=group, cwd_fd=cwd_fd, exit_fd=exit_w, stdout=out_w
                )
                return begun, proc

            started, proc = loop.run_until_complete(start())
            os.close(cwd_fd)
        else:
            wrapper = ["/bin/bash", "-c", '"$@"; code=$?; echo $code >&$0; exit $code', str(exit_w), "printf", "x"]
            proc = subprocess.Popen(
                account.command(wrapper),
                stdout=out_w,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=folders.workspace,
                start_new_session=True,
                pass_fds=(exit_w,),
            )
        os.close(out_w)
        os.read(out_r, 1)
        times.append(time.perf_counter() - started)
        if contained:
            loop.run_until_complete(proc.wait())
        else:
            proc.wait()
        for fd in (out_r, exit_r, exit_w):
            os.close(fd)
        if contained and group is not None:
            group.remove()
        # ranks start as jobs come, not back to back: a cgroup move right after another one is
        # cheaper (the kernel's cgroup lock is still in its slow mode), which would flatter it
        time.sleep(0.1)
    loop.close()
    return statistics.median(times)


SIXTEEN = "import sys, time\nprint('started', repr(time.time()), flush=True)\n"


def sixteen_ranks(session, url, name):
    """Submit -> the last of 16 ranks' first statement, in seconds (each rank prints the time)."""
    started = time.time()
    job = session.post(url + "api/jobs", json={"name": name, "script": "sixteen.py", "procs_per_node": 16}).json()
    while session.get(url + f"api/jobs/{job['id']}").json()["status"] not in ("succeeded", "failed", "cancelled"):
        time.sleep(0.1)
    log = session.get(url + f"api/jobs/{job['id']}/logs").text
    stamps = [float(line.rsplit(" ", 1)[1]) for line in log.splitlines() if "started " in line]
    assert len(stamps) == 16, log[-2000:]
    return max(stamps) - started


def follow_throughput(session, url, megabytes):
    line = "x" * 99  # 100 bytes with its newline
    count = megabytes * 1024 * 1024 // 100
    script = f"import sys\nw = sys.stdout.write\nfor i in range({count}):\n    w({line!r} + '\\n')\n"
    return script, count


def kubernetes_burst(root, count, users=10):
    """``count`` one-node jobs submitted at once through the service to the bench; the metrics."""
    from concurrent.futures import ThreadPoolExecutor

    from kubestudio.testing.imageshub import ensure_claims
    from kubestudio.testing.kubebench import Bench

    nodes = [
        {"name": "node", "count": max(count // 200 + 1, 3), "capacity": {"cpu": 64, "memory": "512Gi", "pods": 250}}
    ]
    bench = Bench(os.path.join(root, "bench"), nodes=nodes, mode="status", events=True).start()
    hub = None
    try:
        ensure_claims(bench)
        extra = f"""
c.JobService.backend_class = "kubestudio.jobs.training.backends.kubernetes.KubernetesJobBackend"
c.JobService.max_running_jobs = {count}
c.JobService.max_running_jobs_per_user = {count}
c.KubernetesJobBackend.kubeconfig = {bench.proxy_kubeconfig!r}
c.KubernetesJobBackend.default_image = "kubestudio/notebook:1"
"""
        hub = LocalHub(os.path.join(root, "k8s-hub"), settings={"images_service": False}, extra_config=extra).start()
        url = f"{hub.url}/services/jobs/"
        sessions = []
        for i in range(users):
            hub.create_user(f"user{i}")
            session = requests.Session()
            session.headers["Authorization"] = f"token {hub.user_token(f'user{i}')}"
            sessions.append(session)
        # one job first: the service's first look at the hub and the cluster is not the burst's
        warm = sessions[0].post(url + "api/jobs", json={"name": "warmup", "command": ["python", "-c", "1"]}).json()
        deadline = time.monotonic() + 60
        while sessions[0].get(url + f"api/jobs/{warm['id']}").json()["status"] != "running":
            assert time.monotonic() < deadline, "the warm-up job did not run"
            time.sleep(0.2)
        sessions[0].delete(url + f"api/jobs/{warm['id']}")
        time.sleep(2)
        counters = bench.proxy_url + "/_kubebench/counts"
        requests.delete(counters, verify=False, timeout=10)
        pid = hub.service_pid("kubestudio.jobs")
        cpu_before = cpu_seconds(pid)

        def submit(i):
            session = sessions[i % users]
            r = session.post(url + "api/jobs", json={"name": f"burst-{i}", "command": ["python", "train.py"]})
            return r.status_code, r.json()

        started = time.perf_counter()
        with ThreadPoolExecutor(32) as pool:
            answers = list(pool.map(submit, range(count)))
        submit_s = time.perf_counter() - started
        refused = [body for status, body in answers if status != 201]
        ids = [body["id"] for status, body in answers if status == 201]
        deadline = time.monotonic() + 600
        while True:
            states = {}
            for session in sessions:
                for job in session.get(url + "api/jobs").json()["jobs"]:
                    if job["name"].startswith("burst-"):
                        states[job["id"]] = job
            running = [j for j in states.values() if j["status"] == "running"]
            failed = [j for j in states.values() if j["status"] in ("failed", "cancelled")]
            if len(running) + len(failed) >= len(ids) or time.monotonic() > deadline:
                break
            time.sleep(1)
        all_running_s = time.perf_counter() - started
        cpu = cpu_seconds(pid) - cpu_before
        counts = requests.get(counters, verify=False, timeout=10).json()

        def when(text):
            from datetime import datetime

            return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()

        latencies = []
        for job in running:
            submitted = when(job["history"][0]["at"])
            ran = next(when(e["at"]) for e in job["history"] if e["status"] == "running")
            latencies.append(ran - submitted)
        latencies.sort()
        # then all of them cancelled, through the service: foreground deletes, nothing left
        requests.delete(counters, verify=False, timeout=10)
        cancel_started = time.perf_counter()
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda i: sessions[i % users].delete(url + f"api/jobs/{ids[i]}"), range(len(ids))))
        cancel_s = time.perf_counter() - cancel_started
        cancel_counts = requests.get(counters, verify=False, timeout=10).json()
        hub.stop()
        hub = None
        anchor = direct_burst(bench, count)
    finally:
        if hub is not None:
            hub.stop()
        bench.stop()

    def per_job(table):
        return {key: round(value / max(len(ids), 1), 2) for key, value in sorted(table.items())}

    return {
        "k8s_jobs": count,
        "k8s_submit_s": round(submit_s, 2),
        "k8s_all_running_s": round(all_running_s, 2),
        "requests_per_job": per_job(counts),
        "requests_per_job_total": round(sum(counts.values()) / max(len(ids), 1), 2),
        "cancel_requests_per_job": per_job(cancel_counts),
        "cancel_all_s": round(cancel_s, 2),
        "cpu_s_per_job": round(cpu / max(len(ids), 1), 4),
        "submit_running_p50_s": round(latencies[len(latencies) // 2], 2) if latencies else None,
        "submit_running_p99_s": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 2)
        if latencies
        else None,
        "burst_failures": len(refused) + len(failed) + (len(ids) - len(running) - len(failed)),
        **anchor,
        "submit_running_p99_ratio": round(
            latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] / anchor["direct_submit_running_p99_s"], 2
        )
        if latencies
        else None,
    }


def direct_burst(bench, count):
    """The anchor: the same number of batch Jobs created straight through the API (no service),
    create -> pod Running seen by one watch."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    headers = {"Authorization": f"Bearer {bench.token}"}
    running = {}
    stop = threading.Event()

    def watch():
        url = bench.server + "/api/v1/namespaces/default/pods?watch=1&labelSelector=anchor%3D1"
        with requests.get(url, headers=headers, verify=False, stream=True, timeout=(10, 900)) as r:
            for line in r.iter_lines():
                if stop.is_set():
                    return
                pod = json.loads(line)["object"]
                name = (pod["metadata"].get("labels") or {}).get("job-name")
                if (pod.get("status") or {}).get("phase") == "Running" and name not in running:
                    running[name] = time.perf_counter()
                    if len(running) >= count:
                        return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    time.sleep(1)
    created = {}

    def create(i):
        name = f"direct-{i}"
        body = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": name, "labels": {"anchor": "1"}},
            "spec": {
                "backoffLimit": 0,
                "template": {
                    "metadata": {"labels": {"anchor": "1"}},
                    "spec": {
                        "restartPolicy": "Never",
                        "automountServiceAccountToken": False,
                        "containers": [
                            {"name": "job", "image": "kubestudio/notebook:1", "command": ["python", "train.py"]}
                        ],
                    },
                },
            },
        }
        created[name] = time.perf_counter()
        r = requests.post(
            bench.server + "/apis/batch/v1/namespaces/default/jobs",
            json=body,
            headers=headers,
            verify=False,
            timeout=60,
        )
        return r.status_code

    started = time.perf_counter()
    with ThreadPoolExecutor(32) as pool:
        statuses = list(pool.map(create, range(count)))
    create_s = time.perf_counter() - started
    deadline = time.monotonic() + 600
    while len(running) < count and time.monotonic() < deadline:
        time.sleep(0.5)
    all_running = time.perf_counter() - started
    stop.set()
    latencies = sorted(running[name] - created[name] for name in running)
    requests.delete(
        bench.server + "/apis/batch/v1/namespaces/default/jobs?labelSelector=anchor%3D1",
        headers=headers,
        verify=False,
        timeout=60,
        json={"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"},
    )
    return {
        "direct_create_s": round(create_s, 2),
        "direct_all_running_s": round(all_running, 2),
        "direct_submit_running_p50_s": round(latencies[len(latencies) // 2], 2),
        "direct_submit_running_p99_s": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 2),
        "direct_failures": sum(1 for s in statuses if s != 201) + count - len(running),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=10, help="rounds of the overhead comparison")
    parser.add_argument("--log-mb", type=int, default=50)
    parser.add_argument("--k8s-jobs", type=int, default=500, help="jobs of the Kubernetes burst (0: skip it)")
    parser.add_argument("--only-k8s", action="store_true", help="only the Kubernetes burst")
    args = parser.parse_args()
    root = scratch_folder("jobs-bench-")  # removed when the run ends
    if args.only_k8s:
        report(kubernetes_burst(root, args.k8s_jobs), merge=True)
        return
    extra = (
        f"c.JobService.max_log_bytes = {(args.log_mb + 10) * 1024 * 1024}\nc.JobService.max_running_jobs_per_user = 4\n"
    )
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
        print(
            f"one-line script, first line: by hand {statistics.median(hand) * 1000:.1f} ms, "
            f"through the service {statistics.median(service) * 1000:.1f} ms",
            file=sys.stderr,
        )
        with open(os.path.join(folders.workspace, "sixteen.py"), "w") as f:
            f.write(SIXTEEN)
        sixteen = [sixteen_ranks(session, url, f"sixteen-{i}") for i in range(3)]
        rank_starts = {}
        if os.geteuid() == 0:
            from kubestudio.accounts import UserAccounts

            account = UserAccounts(prefix=hub.account_prefix).account("bench", folders.home)
            rank_start(account, folders, True, rounds=3)  # the page cache
            rank_starts = {
                "secure": rank_start(account, folders, True, args.n * 2),
                "before": rank_start(account, folders, False, args.n * 2),
            }
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

    metrics = {}
    if args.k8s_jobs:
        metrics.update(kubernetes_burst(root, args.k8s_jobs))
    metrics.update(
        {
            "first_line_by_hand_ms": round(statistics.median(hand) * 1000, 1),
            "first_line_service_ms": round(statistics.median(service) * 1000, 1),
            "local_added_ms": round((statistics.median(service) - statistics.median(hand)) * 1000, 1),
            "local_overhead_ratio": round(statistics.median(service) / statistics.median(hand), 2),
            "overhead_rounds": args.n,
            "ranks16_started_s": round(statistics.median(sixteen), 3),
            **(
                {
                    "rank_start_ms": round(rank_starts["secure"] * 1000, 2),
                    "rank_start_before_ms": round(rank_starts["before"] * 1000, 2),
                    "rank_start_overhead_ms": round((rank_starts["secure"] - rank_starts["before"]) * 1000, 2),
                }
                if rank_starts
                else {}
            ),
            **(
                {
                    "first_line_torch_by_hand_ms": round(statistics.median(torch_hand) * 1000, 1),
                    "first_line_torch_service_ms": round(statistics.median(torch_service) * 1000, 1),
                    "local_overhead_ratio_torch_import": round(
                        statistics.median(torch_service) / statistics.median(torch_hand), 2
                    ),
                }
                if torch_hand
                else {}
            ),
            "log_mb": round(received / 2**20, 1),
            "log_lines": lines,
            "log_follow_s": round(elapsed, 2),
            "log_mb_per_s": round(received / 2**20 / elapsed, 1),
            "log_service_cpu_s": round(cpu, 2),
        }
    )
    report(metrics)


def report(metrics, merge=False):
    path = result_path("jobs")
    if merge and os.path.exists(path):  # only one part was run: the other figures stay
        with open(path) as f:
            metrics = {**json.load(f)["metrics"], **metrics}
    print(f"\n{'':40}{'value':>12}")
    for key, value in metrics.items():
        print(f"{key:<40}{json.dumps(value) if isinstance(value, dict) else value!s:>12}")
    print(
        "\nlocal_added_ms goal <= 10; rank_start_overhead_ms goal <= 10; ranks16_started_s goal < 1; log_mb_per_s goal >= 20; requests_per_job: the creates, "
        "one log stream per pod and the deletes, no polling; burst_failures goal 0"
    )
    write_results("jobs", metrics, path=path, backends="local (embedded default); kubernetes (bench, status mode)")


if __name__ == "__main__":
    main()
