"""Pipelines on the embedded default, against the same jobs submitted by hand.

A ``--chain`` task chain (default 20) and a ``--fanout`` fan-out (default 50: one root, then that
many tasks after it) of trivial tasks (``true``), each a job of the user's:

- ``task_gap_p50_ms``, ``task_gap_p99_ms``: in the chain, one task's job ending (its record's
  ``succeeded``) to the next task's job running (goal p50 <= 100 ms);
- ``pipeline_overhead_ratio``: the chain's run time (submit -> the run succeeded) against the same
  jobs submitted by hand one after another through the jobs API, each waited for (goal <= 1.1);
- ``fanout_ratio``: the fan-out's run time against the root job and then the others submitted at
  once by hand, all waited for.

On Kubernetes (the bench in status mode, each pod ending 1 s after it runs; ``--k8s-tasks``,
default 50, a fan-out after one root): ``requests_per_task`` (the jobs service's API requests over
the run / tasks) against ``requests_per_job`` of as many plain jobs in the same run (the goal: a
task costs what its job costs, nothing per poll), and their ratio; ``argo_requests_per_task``: the
same fan-out as one Argo Workflow (the bench's simulated Argo runs the pods; the service makes the
Workflow and follows it by its one watch). ``--k8s-tasks 0`` skips it.

Usage: python benchmarks/pipelines.py [--chain 20] [--fanout 50] [--k8s-tasks 50]
Writes benchmarks/results/pipelines.json.
"""

import argparse
import os
import statistics
import sys
import time
from datetime import datetime

import requests

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from kubestudio.jobs.pipelines.client import PipelinesClient  # noqa: E402
from kubestudio.testing.benchresults import write_results  # noqa: E402
from kubestudio.testing.localhub import LocalHub  # noqa: E402
from kubestudio.testing.scratch import scratch_folder  # noqa: E402

TASK = {"command": ["true"]}


def when(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def at(job, status):
    return next(when(e["at"]) for e in job["history"] if e["status"] == status)


def chain_spec(n):
    tasks = {"t0": {"job": TASK}}
    for i in range(1, n):
        tasks[f"t{i}"] = {"depends": [f"t{i - 1}"], "job": TASK}
    return {"name": "chain", "tasks": tasks}


def fanout_spec(n):
    tasks = {"root": {"job": TASK}}
    for i in range(n):
        tasks[f"f{i}"] = {"depends": ["root"], "job": TASK}
    return {"name": "fanout", "tasks": tasks}


def by_hand(session, url, names, waves):
    """Submit each wave's jobs at once, wait for them all, then the next wave; the wall time."""
    started = time.perf_counter()
    for wave in waves:
        ids = [session.post(url + "api/jobs", json={"name": names(i), **TASK}).json()["id"] for i in wave]
        pending = set(ids)
        while pending:
            for job_id in list(pending):
                if session.get(url + f"api/jobs/{job_id}").json()["status"] in ("succeeded", "failed", "cancelled"):
                    pending.discard(job_id)
            if pending:
                time.sleep(0.01)
    return time.perf_counter() - started


def through_pipeline(pipelines, session, url, spec):
    started = time.perf_counter()
    run = pipelines.run(spec)
    done = pipelines.wait(run, timeout=1800, interval=0.01)
    wall = time.perf_counter() - started
    jobs = {t["name"]: session.get(url + f"api/jobs/{t['job']}").json() for t in done["tasks"] if t["job"]}
    return wall, jobs


def on_kubernetes(root, tasks):
    """API requests per task of a pipeline run on the bench, and per job of as many plain jobs."""
    from kubestudio.testing.imageshub import ensure_claims
    from kubestudio.testing.kubebench import Bench

    nodes = [{"name": "node", "count": 2, "capacity": {"cpu": 64, "memory": "512Gi", "pods": 250}}]
    bench = Bench(os.path.join(root, "bench"), nodes=nodes, mode="status", status_exit_after=1).start()
    hub = None
    try:
        ensure_claims(bench)
        extra = f"""
c.JobService.backend_class = "kubestudio.jobs.training.backends.kubernetes.KubernetesJobBackend"
c.JobService.max_running_jobs_per_user = {tasks + 1}
c.JobService.max_running_jobs = {tasks + 1}
c.KubernetesJobBackend.kubeconfig = {bench.proxy_kubeconfig!r}
c.KubernetesJobBackend.default_image = "kubestudio/notebook:1"
"""
        hub = LocalHub(os.path.join(root, "k8s-hub"), settings={"images_service": False}, extra_config=extra).start()
        hub.create_user("bench")
        url = f"{hub.url}/services/jobs/"
        session = requests.Session()
        session.headers["Authorization"] = f"token {hub.user_token('bench')}"
        pipelines = PipelinesClient(url=url, token=hub.user_token("bench"))
        through_pipeline(pipelines, session, url, chain_spec(2))  # the service's first look at the cluster
        time.sleep(2)
        bench.counts(reset=True)
        run_s, _ = through_pipeline(pipelines, session, url, {**fanout_spec(tasks - 1), "backend": "kubestudio"})
        time.sleep(2)  # the last jobs' deletions
        per_run = bench.counts()
        bench.counts(reset=True)
        argo_s, _ = through_pipeline(pipelines, session, url, {**fanout_spec(tasks - 1), "backend": "argo"})
        time.sleep(2)
        per_argo = bench.counts()
        bench.counts(reset=True)
        jobs_s = by_hand(session, url, lambda i: f"plain-{i}", [[0], list(range(1, tasks))])
        time.sleep(2)
        per_jobs = bench.counts()
    finally:
        if hub is not None:
            hub.stop()
        bench.stop()

    def per(table):
        return {key: round(value / tasks, 2) for key, value in sorted(table.items())}

    per_task, per_job = sum(per_run.values()) / tasks, sum(per_jobs.values()) / tasks
    per_argo_task = sum(per_argo.values()) / tasks
    return {
        "k8s_tasks": tasks,
        "k8s_run_s": round(run_s, 1),
        "k8s_argo_run_s": round(argo_s, 1),
        "argo_requests_per_task": round(per_argo_task, 2),
        "argo_requests_per_task_by_verb": per(per_argo),
        "k8s_plain_jobs_s": round(jobs_s, 1),
        "requests_per_task": round(per_task, 2),
        "requests_per_task_by_verb": per(per_run),
        "requests_per_job": round(per_job, 2),
        "requests_per_job_by_verb": per(per_jobs),
        "requests_ratio": round(per_task / per_job, 3) if per_job else None,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chain", type=int, default=20)
    parser.add_argument("--fanout", type=int, default=50)
    parser.add_argument("--k8s-tasks", type=int, default=50)
    args = parser.parse_args()
    root = scratch_folder("pipelines-bench-")
    extra = f"c.JobService.max_running_jobs_per_user = {args.fanout}\nc.JobService.max_running_jobs = {args.fanout}\n"
    hub = LocalHub(root, settings={"images_service": False}, extra_config=extra).start()
    try:
        hub.create_user("bench")
        url = f"{hub.url}/services/jobs/"
        session = requests.Session()
        session.headers["Authorization"] = f"token {hub.user_token('bench')}"
        pipelines = PipelinesClient(url=url, token=hub.user_token("bench"))
        through_pipeline(pipelines, session, url, chain_spec(2))  # the user's environment, first
        by_hand(session, url, lambda i: f"warm-{i}", [[0]])
        chain_wall, chain_jobs = through_pipeline(pipelines, session, url, chain_spec(args.chain))
        hand_chain = by_hand(session, url, lambda i: f"hand-{i}", [[i] for i in range(args.chain)])
        gaps = [
            at(chain_jobs[f"t{i}"], "running") - at(chain_jobs[f"t{i - 1}"], "succeeded") for i in range(1, args.chain)
        ]
        fan_wall, _ = through_pipeline(pipelines, session, url, fanout_spec(args.fanout))
        hand_fan = by_hand(session, url, lambda i: f"fan-{i}", [[0], list(range(1, args.fanout + 1))])
    finally:
        hub.stop()
    k8s = on_kubernetes(scratch_folder("pipelines-k8s-bench-"), args.k8s_tasks) if args.k8s_tasks else {}
    gaps.sort()
    metrics = {
        "chain_tasks": args.chain,
        "fanout_tasks": args.fanout + 1,
        "task_gap_p50_ms": round(statistics.median(gaps) * 1000, 1),
        "task_gap_p99_ms": round(gaps[min(len(gaps) - 1, int(len(gaps) * 0.99))] * 1000, 1),
        "chain_s": round(chain_wall, 2),
        "chain_by_hand_s": round(hand_chain, 2),
        "pipeline_overhead_ratio": round(chain_wall / hand_chain, 3),
        "fanout_s": round(fan_wall, 2),
        "fanout_by_hand_s": round(hand_fan, 2),
        "fanout_ratio": round(fan_wall / hand_fan, 3),
        **k8s,
    }
    print(f"\n{'':28}{'value':>12}")
    for key, value in metrics.items():
        print(f"{key:<28}{value!s:>12}")
    print(
        "\ntask_gap_p50_ms goal <= 100; pipeline_overhead_ratio goal <= 1.1; requests_per_task: its job's, nothing per poll"
    )
    write_results("pipelines", metrics, backend="local (embedded default), tasks as processes of the user's account")


if __name__ == "__main__":
    main()
