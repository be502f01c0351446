"""Experiments on the embedded default against the same search in one Python process.

``--trials`` trials (default 50) of an objective that takes ``--objective-ms`` (default 50 ms),
``--parallel`` (default 4) at a time, with TPE and a fixed seed:

- through the jobs service: every trial a job of the user's (a process as their account, its
  parameters as arguments, its value reported over HTTP with ``kubestudio.trial.report``);
- by hand: ``optuna.create_study(...).optimize(objective, n_trials, n_jobs=parallel)`` in one
  process, the same objective called as a function (the anchor: no process start, no service).

Reported: ``trial_overhead_ms`` (median of each trial's time from its start by the service to its
result recorded, less the objective's own time; goal <= 150 ms, the process start included),
``study_ratio`` (wall time through the service / by hand), ``service_cpu_s_per_trial`` (the jobs
service's CPU over the experiment / trials), both studies' best values.

On Kubernetes (the bench in status mode, ``--k8s-trials`` trials, default 200, ``--k8s-parallel``
at a time; each pod ends 1 s after it runs, and this script reports for it as its process would,
with the token and parameters in its environment): ``requests_per_trial`` (the jobs service's
requests to the API over the experiment / trials, by verb and in all) against the anchor in the
same run, ``requests_per_job`` of as many plain jobs (the goal: a trial costs what its job costs,
nothing per poll), and ``requests_ratio``. ``--k8s-trials 0`` skips it.

Usage: python benchmarks/experiments.py [--trials 50] [--parallel 4] [--objective-ms 50] [--k8s-trials 200]
Writes benchmarks/results/experiments.json.
"""

import argparse
import json
import os
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import requests

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import optuna  # noqa: E402

from kubestudio.jobs.experiments.client import ExperimentsClient  # noqa: E402
from kubestudio.spawner.storage import ensure_user_folders, user_folders  # noqa: E402
from kubestudio.testing.benchresults import write_results  # noqa: E402
from kubestudio.testing.localhub import LocalHub  # noqa: E402
from kubestudio.testing.scratch import scratch_folder  # noqa: E402
from kubestudio.testing.servicehub import hand_over  # noqa: E402

SPACE = {"x": {"type": "uniform", "low": -5, "high": 5}, "y": {"type": "uniform", "low": -5, "high": 5}}

TRIAL = """\
import argparse, time
from kubestudio import trial
parser = argparse.ArgumentParser()
parser.add_argument("--x", type=float)
parser.add_argument("--y", type=float)
args = parser.parse_args()
time.sleep({seconds})
trial.report(score=-(args.x - 1) ** 2 - (args.y + 2) ** 2)
"""


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def by_hand(trials, parallel, seconds, seed):
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def objective(t):
        x, y = t.suggest_float("x", -5, 5), t.suggest_float("y", -5, 5)
        time.sleep(seconds)
        return -((x - 1) ** 2) - (y + 2) ** 2

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    started = time.perf_counter()
    study.optimize(objective, n_trials=trials, n_jobs=parallel)
    return time.perf_counter() - started, study.best_value


def through_service(hub, trials, parallel, seconds, seed):
    folders = user_folders(hub.data_dir, "bench")
    ensure_user_folders(folders)
    with open(os.path.join(folders.workspace, "objective.py"), "w") as f:
        f.write(TRIAL.format(seconds=seconds))
    hand_over(folders.workspace)
    client = ExperimentsClient(url=f"{hub.url}/services/jobs/", token=hub.user_token("bench"))
    spec = {
        "objective": {"metric": "score"},
        "space": SPACE,
        "algorithm": "tpe",
        "seed": seed,
        "max_trials": parallel,
        "parallel_trials": parallel,
        "trial": {"script": "objective.py"},
    }
    client.wait(client.create({**spec, "name": "warmup"})["id"], timeout=300)  # the user's environment, first
    service = hub.service_pid("kubestudio.jobs")
    cpu = cpu_seconds(service)
    started = time.perf_counter()
    experiment = client.create({**spec, "name": "bench", "max_trials": trials})
    done = client.wait(experiment["id"], timeout=1800, interval=0.2)
    wall = time.perf_counter() - started
    cpu = cpu_seconds(service) - cpu
    added = []
    for trial in client.trials(experiment["id"]):
        took = datetime.fromisoformat(trial["finished"]) - datetime.fromisoformat(trial["started"])
        added.append(took.total_seconds() - seconds)
    return wall, cpu, added, done


def report_for_pods(bench, stop, reported):
    """Play each trial pod's process: as a pod appears, post its report (what its script would
    send) with the token and parameters in its environment. Runs until ``stop`` is set."""
    headers = {"Authorization": f"Bearer {bench.token}"}
    pool = ThreadPoolExecutor(8)

    def report(env):
        params = json.loads(env["KUBESTUDIO_TRIAL_PARAMS"])
        body = {"metrics": {"score": -((params["x"] - 1) ** 2) - (params["y"] + 2) ** 2}}
        token = {"Authorization": f"Bearer {env['KUBESTUDIO_TRIAL_TOKEN']}"}
        r = requests.post(env["KUBESTUDIO_TRIAL_URL"], json=body, headers=token, timeout=30)
        reported.append(r.status_code)

    url = bench.server + "/api/v1/pods?watch=1&labelSelector=kubestudio.io%2Fcomponent%3Dtrain"
    while not stop.is_set():
        try:
            with requests.get(url, headers=headers, verify=False, stream=True, timeout=(10, 5)) as r:
                for line in r.iter_lines():
                    event = json.loads(line)
                    if event["type"] != "ADDED":
                        continue
                    env = {e["name"]: e.get("value") for e in event["object"]["spec"]["containers"][0].get("env", [])}
                    if "KUBESTUDIO_TRIAL_TOKEN" in env:
                        pool.submit(report, env)
        except requests.RequestException:
            continue  # the read timeout: look at stop, watch again
    pool.shutdown(wait=True)


def on_kubernetes(root, trials, parallel, seed):
    """requests per trial of an experiment on the bench, and per job of as many plain jobs."""
    from kubestudio.testing.imageshub import ensure_claims
    from kubestudio.testing.kubebench import Bench

    nodes = [{"name": "node", "count": 2, "capacity": {"cpu": 64, "memory": "512Gi", "pods": 250}}]
    bench = Bench(os.path.join(root, "bench"), nodes=nodes, mode="status", status_exit_after=1).start()
    hub, stop, reported = None, threading.Event(), []
    reporter = threading.Thread(target=report_for_pods, args=(bench, stop, reported), daemon=True)
    try:
        ensure_claims(bench)
        extra = f"""
c.JobService.backend_class = "kubestudio.jobs.training.backends.kubernetes.KubernetesJobBackend"
c.JobService.max_running_jobs_per_user = {parallel}
c.KubernetesJobBackend.kubeconfig = {bench.proxy_kubeconfig!r}
c.KubernetesJobBackend.default_image = "kubestudio/notebook:1"
"""
        hub = LocalHub(os.path.join(root, "k8s-hub"), settings={"images_service": False}, extra_config=extra).start()
        hub.create_user("bench")
        reporter.start()
        url = f"{hub.url}/services/jobs/"
        client = ExperimentsClient(url=url, token=hub.user_token("bench"))
        session = requests.Session()
        session.headers["Authorization"] = f"token {hub.user_token('bench')}"
        spec = {
            "objective": {"metric": "score"},
            "space": SPACE,
            "algorithm": "tpe",
            "seed": seed,
            "parallel_trials": parallel,
            "trial": {"command": ["python", "objective.py"]},
        }
        # a first experiment: the service's first look at the hub and the cluster is not measured
        client.wait(client.create({**spec, "name": "warmup", "max_trials": parallel})["id"], timeout=300)
        bench.counts(reset=True)
        started = time.perf_counter()
        experiment = client.create({**spec, "name": "bench", "max_trials": trials})
        done = client.wait(experiment["id"], timeout=1800, interval=1)
        experiment_s = time.perf_counter() - started
        time.sleep(2)  # the last jobs' deletions
        per_experiment = bench.counts()
        bench.counts(reset=True)
        complete = done["trials"].get("complete", 0)
        # the anchor: as many plain jobs, the same number at a time (the queue holds the rest)
        started = time.perf_counter()
        ids = [
            session.post(url + "api/jobs", json={"name": f"plain-{i}", "command": ["python", "t.py"]}).json()["id"]
            for i in range(trials)
        ]
        deadline = time.monotonic() + 1800
        while True:
            states = [j["status"] for j in session.get(url + "api/jobs").json()["jobs"] if j["id"] in ids]
            if all(s in ("succeeded", "failed", "cancelled") for s in states) or time.monotonic() > deadline:
                break
            time.sleep(1)
        jobs_s = time.perf_counter() - started
        time.sleep(2)
        per_jobs = bench.counts()
        succeeded = states.count("succeeded")
    finally:
        stop.set()
        if hub is not None:
            hub.stop()
        bench.stop()

    def per(table, n):
        return {key: round(value / max(n, 1), 2) for key, value in sorted(table.items())}

    per_trial = sum(per_experiment.values()) / max(trials, 1)
    per_job = sum(per_jobs.values()) / max(trials, 1)
    return {
        "k8s_trials": trials,
        "k8s_parallel": parallel,
        "k8s_trials_complete": complete,
        "k8s_experiment_s": round(experiment_s, 1),
        "requests_per_trial": round(per_trial, 2),
        "requests_per_trial_by_verb": per(per_experiment, trials),
        "requests_per_job": round(per_job, 2),
        "requests_per_job_by_verb": per(per_jobs, trials),
        "requests_ratio": round(per_trial / per_job, 3) if per_job else None,
        "k8s_plain_jobs_succeeded": succeeded,
        "k8s_plain_jobs_s": round(jobs_s, 1),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--objective-ms", type=float, default=50)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--k8s-trials", type=int, default=200)
    parser.add_argument("--k8s-parallel", type=int, default=10)
    args = parser.parse_args()
    seconds = args.objective_ms / 1000
    root = scratch_folder("experiments-bench-")
    extra = (
        f"c.JobService.max_running_jobs_per_user = {args.parallel}\nc.JobService.max_running_jobs = {args.parallel}\n"
    )
    hub = LocalHub(root, settings={"images_service": False}, extra_config=extra).start()
    try:
        hub.create_user("bench")
        wall, cpu, added, done = through_service(hub, args.trials, args.parallel, seconds, args.seed)
    finally:
        hub.stop()
    hand_wall, hand_best = by_hand(args.trials, args.parallel, seconds, args.seed)
    k8s = {}
    if args.k8s_trials:
        k8s = on_kubernetes(scratch_folder("experiments-k8s-bench-"), args.k8s_trials, args.k8s_parallel, args.seed)
    metrics = {
        "trials": args.trials,
        "parallel": args.parallel,
        "objective_ms": args.objective_ms,
        "trial_overhead_ms": round(statistics.median(added) * 1000, 1),
        "trial_overhead_ms_p90": round(sorted(added)[int(len(added) * 0.9) - 1] * 1000, 1),
        "service_wall_s": round(wall, 2),
        "by_hand_wall_s": round(hand_wall, 2),
        "study_ratio": round(wall / hand_wall, 2),
        "service_cpu_s_per_trial": round(cpu / args.trials, 4),
        "service_best": round(done["best"]["value"], 4),
        "by_hand_best": round(hand_best, 4),
        **k8s,
    }
    print(f"\n{'':34}{'value':>12}")
    for key, value in metrics.items():
        print(f"{key:<34}{value!s:>12}")
    print("\ntrial_overhead_ms goal <= 150 (a trial's process start included); study_ratio: reported")
    print(
        "requests_per_trial goal: what its job costs (requests_per_job of plain jobs, the same run), nothing per poll"
    )
    write_results(
        "experiments",
        metrics,
        optuna=optuna.__version__,
        backend="local (embedded default), trials as processes of the user's account",
    )


if __name__ == "__main__":
    main()
