"""Experiments on the embedded default: real Optuna in the jobs service, every trial a real job of
its user (a local process as their account), reports over HTTP with the trial's own token."""

import json
import math
import os

import pytest
import requests

from kubestudio.extensions import cli
from kubestudio.jobs.experiments.client import ExperimentFailed, ExperimentsClient
from kubestudio.processgroup import process_start_time
from kubestudio.testing.wait import wait_for

from .conftest import start_jobs_hub

pytestmark = pytest.mark.e2e

# the SDK: parameters as arguments and from trial.params(), intermediate and final reports, a NaN
QUADRATIC = """\
import argparse, math
from kubestudio import trial
parser = argparse.ArgumentParser()
parser.add_argument("--x", type=float)
parser.add_argument("--kind")
args = parser.parse_args()
assert trial.params() == {"x": args.x, "kind": args.kind}, (trial.params(), args)
trial.report(0, score=math.nan)  # refused, said on stderr; the trial goes on
for step in range(1, 3):
    trial.report(step, score=-(args.x - 2) ** 2 - 1.0 / step)
trial.report(score=-(args.x - 2) ** 2 + (0.5 if args.kind == "b" else 0), other=1.5)
print("done", args.x, args.kind)
"""

# a script written for NNI (cube-studio's experiments), unchanged
NNI_SCRIPT = """\
import nni
params = nni.get_next_parameter()
for i in range(3):
    nni.report_intermediate_result(params["lr"] * i)
nni.report_final_result({"default": params["lr"] * 10, "loss": 0.5})
print("nni trial", nni.get_sequence_id(), "of", nni.get_experiment_id())
"""

# Katib's StdOut convention: nothing but a printed line
STDOUT_SCRIPT = """\
import sys
x = float(sys.argv[1].split("=")[1])
print(f"epoch 1: loss={x * x + 1:.4f} acc=0.5")
print(f"epoch 2: loss={x * x:.4f} acc=0.6")
"""

SILENT_SCRIPT = "print('trained, and said nothing of it')\n"

# reports at each step; a trial told to stop stops
PRUNED_SCRIPT = """\
import sys, time
from kubestudio import trial
q = trial.params()["q"]
for step in range(6):
    if trial.report(step, acc=q * (step + 1)):
        print("told to stop at step", step)
        sys.exit(0)
    time.sleep(0.2)
"""


@pytest.fixture(scope="module")
def jobs(tmp_path_factory):
    extra = "c.JobService.max_running_jobs_per_user = 4\nc.JobService.max_running_jobs = 8\n"
    hub = start_jobs_hub(tmp_path_factory.mktemp("experiments-hub"), extra=extra)
    try:
        yield hub
    finally:
        hub.hub.stop()


def client(jobs, user):
    return ExperimentsClient(url=jobs.url, token=jobs.token(user))


def run(jobs, user, body, status="succeeded", timeout=240):
    experiments = client(jobs, user)
    created = experiments.create(body)
    assert created["status"] == "running", created
    try:
        return experiments.wait(created["id"], status=status, timeout=timeout)
    except ExperimentFailed as e:
        return e.experiment


def test_a_search_runs_its_trials_as_jobs_and_keeps_the_best(jobs):
    jobs.write("ada", "tune/quadratic.py", QUADRATIC)
    spec = {
        "name": "quad",
        "objective": {"metric": "score", "direction": "maximize"},
        "space": {"x": {"type": "uniform", "low": -5, "high": 5}, "kind": {"type": "choice", "values": ["a", "b"]}},
        "algorithm": "tpe",
        "seed": 1,
        "max_trials": 6,
        "parallel_trials": 3,
        "trial": {"script": "tune/quadratic.py"},
    }
    done = run(jobs, "ada", spec)
    failed = [
        (t["message"], t["job"] and jobs.client("ada").logs(t["job"]))
        for t in client(jobs, "ada").trials("quad")
        if t["state"] != "complete"
    ]
    assert done["status"] == "succeeded" and done["trials"] == {"complete": 6}, failed
    experiments = client(jobs, "ada")
    trials = experiments.trials("quad")
    assert [t["number"] for t in trials] == list(range(6))
    for t in trials:
        expected = -((t["params"]["x"] - 2) ** 2) + (0.5 if t["params"]["kind"] == "b" else 0)
        assert math.isclose(t["value"], expected), t  # the final report, not the last intermediate one
        assert t["intermediate"] == {
            "1": pytest.approx(-((t["params"]["x"] - 2) ** 2) - 1),
            "2": pytest.approx(-((t["params"]["x"] - 2) ** 2) - 0.5),
        }
        assert t["metrics"]["other"] == 1.5
    best = max(trials, key=lambda t: t["value"])
    assert done["best"]["number"] == best["number"] and done["best"]["params"] == best["params"]
    assert "best: trial" in done["message"]

    # each trial is an ordinary job of the user's, named after the experiment
    job = jobs.client("ada").get(f"quad-t{best['number']}")
    assert job["status"] == "succeeded" and job["owner"] == "ada"
    assert job["spec"]["env"]["KUBESTUDIO_TRIAL_TOKEN"] == "(hidden)"  # never shown, even to its owner
    assert f"--x={best['params']['x']!r}" in job["spec"]["args"]
    log = jobs.client("ada").logs(job["id"])
    assert "report not recorded: metrics.score: nan is not a finite number" in log, log
    assert "done" in log

    # the CLI's table, best first
    out = _cli(jobs, "ada", "experiments", "show", "quad")
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("trial "))
    rows = [line.split()[0] for line in lines[header + 1 :]]
    assert rows[0] == str(best["number"]), out

    # only the trial's own token reports, and only while it runs
    url = f"{jobs.url}api/experiments/{done['id']}/trials/0/report"
    for headers, status in (
        ({}, 401),
        ({"Authorization": "Bearer not-the-token"}, 403),
        ({"Authorization": f"token {jobs.token('ada')}"}, 401),  # a hub token is not a trial's
    ):
        r = requests.post(url, json={"metrics": {"score": 1}}, headers=headers, timeout=10)
        assert r.status_code == status and r.json()["status"] == status, r.text

    # another user sees none of it; the owner forgets it and its trials' jobs
    assert (
        requests.get(
            f"{jobs.url}api/experiments/quad", headers={"Authorization": f"token {jobs.token('bob')}"}, timeout=10
        ).status_code
        == 404
    )
    assert requests.get(f"{jobs.url}api/experiments/{done['id']}", timeout=10).status_code == 401
    assert experiments.delete("quad", forget=True)["forgotten"] is True
    assert experiments.list() == [] and not [j for j in jobs.client("ada").list() if j["name"].startswith("quad-t")]


def test_an_nni_script_and_a_printed_metric_run_unchanged(jobs):
    jobs.write("nia", "nni_trial.py", NNI_SCRIPT)
    jobs.write("nia", "stdout_trial.py", STDOUT_SCRIPT)
    nni = run(
        jobs,
        "nia",
        {
            "name": "nni",
            "objective": {"metric": "accuracy"},
            "space": {"lr": {"_type": "choice", "_value": [0.1, 0.2]}},
            "algorithm": "grid",
            "max_trials": 2,
            "parallel_trials": 2,
            "trial": {"script": "nni_trial.py"},
        },
    )
    assert nni["status"] == "succeeded" and nni["best"]["value"] == pytest.approx(2.0), nni
    trials = client(jobs, "nia").trials("nni")
    assert sorted(t["intermediate"]["2"] for t in trials) == [pytest.approx(0.2), pytest.approx(0.4)]
    assert all(t["metrics"]["loss"] == 0.5 for t in trials)
    assert "nni trial 0 of nni" in client(jobs, "nia").logs("nni", 0) + client(jobs, "nia").logs("nni", 1)

    printed = run(
        jobs,
        "nia",
        {
            "name": "printed",
            "objective": {"metric": "loss", "direction": "minimize", "goal": 0.0},
            "space": {"x": {"type": "choice", "values": [3, 1, 2]}},
            "algorithm": "grid",
            "max_trials": 3,
            "trial": {"script": "stdout_trial.py"},
        },
    )
    assert printed["status"] == "succeeded", printed
    values = sorted(t["value"] for t in client(jobs, "nia").trials("printed"))
    assert values == [1.0, 4.0, 9.0]  # the last loss= each printed
    assert printed["best"]["params"] == {"x": 1}


def test_trials_that_report_nothing_fail_and_end_the_experiment(jobs):
    jobs.write("sid", "silent.py", SILENT_SCRIPT)
    failed = run(
        jobs,
        "sid",
        {
            "name": "silent",
            "objective": {"metric": "val_acc"},
            "space": {"lr": {"type": "uniform", "low": 0, "high": 1}},
            "max_trials": 5,
            "max_failed_trials": 2,
            "trial": {"script": "silent.py"},
        },
        status="failed",
    )
    assert failed["status"] == "failed" and "2 trials failed (max_failed_trials is 2)" in failed["message"], failed
    trials = client(jobs, "sid").trials("silent")
    assert len(trials) == 2 and all("reported no val_acc" in t["message"] for t in trials), trials


def test_a_trial_worse_than_the_median_is_stopped_early(jobs):
    jobs.write("pat", "pruned.py", PRUNED_SCRIPT)
    done = run(
        jobs,
        "pat",
        {
            "name": "prune",
            "objective": {"metric": "acc"},
            "space": {"q": {"type": "choice", "values": [1.0, 0.5, 0.2, 0.1]}},
            "algorithm": "grid",
            "seed": 0,  # the grid's order: q = 0.2, 1.0, 0.5, 0.1
            "early_stopping": "median",
            "max_trials": 4,
            "trial": {"script": "pruned.py"},
        },
    )
    trials = {t["params"]["q"]: t for t in client(jobs, "pat").trials("prune")}
    assert trials[0.2]["state"] == "complete" and trials[1.0]["state"] == "complete", trials
    assert trials[0.5]["state"] == "pruned" and trials[0.1]["state"] == "pruned", trials
    assert "stopped early" in trials[0.1]["message"]
    assert len(trials[0.1]["intermediate"]) < 6  # it did not run to its end
    assert done["best"]["params"] == {"q": 1.0} and done["trials"] == {"complete": 2, "pruned": 2}


@pytest.mark.parametrize(
    "body, status, said",
    [
        ({"space": {"lr": {"type": "uniform", "low": 2, "high": 1}}}, 400, "space.lr.low: must be less than high"),
        ({"trial": {"script": "missing.py"}}, 400, "script: no file 'missing.py' in your workspace"),
        ({"trial": {"script": "t.py", "project": "vision"}}, 403, "project: you are not a member of project 'vision'"),
        ({"trial": {"script": "t.py", "args": ["${nope}"]}}, 400, "trial.args: ${nope} is not a parameter"),
        ({"backend": "katib"}, 409, "backend: this hub's jobs run where Katib's Experiment"),
        ({"backend": "optuna"}, 400, "backend: one of kubestudio, katib, auto, not 'optuna'"),
    ],
)
def test_bad_experiments_are_refused_before_any_trial_runs(jobs, body, status, said):
    jobs.write("ivy", "t.py", "print('x')\n")
    spec = {
        "name": "bad",
        "objective": {"metric": "acc"},
        "space": {"lr": {"type": "uniform", "low": 0, "high": 1}},
        "trial": {"script": "t.py"},
        **body,
    }
    r = requests.post(
        f"{jobs.url}api/experiments", json=spec, headers={"Authorization": f"token {jobs.token('ivy')}"}, timeout=30
    )
    assert r.status_code == status and said in r.json()["message"] and r.json()["status"] == status, r.text
    assert client(jobs, "ivy").list() == [] and jobs.client("ivy").list() == []


def _cli(jobs, user, *argv):
    """The kubestudio command as a terminal of the user's server runs it (the service's address
    and the user's token in its environment)."""
    import io

    out = io.StringIO()
    saved = dict(os.environ)
    os.environ.update({"KUBESTUDIO_JOBS_URL": jobs.url, "JUPYTERHUB_API_TOKEN": jobs.token(user)})
    try:
        code = cli.main(list(argv), out=out)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    assert code == 0, out.getvalue()
    return out.getvalue()


def test_the_cli_runs_an_experiment_from_a_yaml_file(jobs, tmp_path):
    jobs.write("cy", "exp/stdout_trial.py", STDOUT_SCRIPT)
    spec = {
        "objective": {"metric": "loss", "direction": "minimize"},
        "space": {"x": {"type": "choice", "values": [2, 1]}},
        "algorithm": "grid",
        "max_trials": 2,
        "parallel_trials": 2,
        "trial": {"script": "stdout_trial.py"},  # beside the file
    }
    path = os.path.join(jobs.workspace("cy"), "exp", "search.yaml")
    with open(path, "w") as f:
        json.dump(spec, f)  # JSON is YAML
    saved = os.getcwd()
    os.chdir(jobs.workspace("cy"))
    try:
        os.environ["KUBESTUDIO_WORKSPACE"] = jobs.workspace("cy")
        out = _cli(jobs, "cy", "experiments", "run", "exp/search.yaml")
    finally:
        os.environ.pop("KUBESTUDIO_WORKSPACE", None)
        os.chdir(saved)
    assert "experiment search (" in out and "trial 0: complete" in out and "best: trial" in out, out
    listing = _cli(jobs, "cy", "experiments", "list")
    assert listing.startswith("search") and "succeeded" in listing


SLOW_SCRIPT = """\
import time
from kubestudio import trial
x = trial.params()["x"]
trial.report(0, score=x)
time.sleep(4)
trial.report(score=x * 10)
print("ran", trial.number(), flush=True)
"""


def test_a_restart_mid_experiment_loses_no_trial_and_runs_none_twice(tmp_path):
    """The service is killed (-9) while two trials run: the next start makes the study again from
    the store, follows the running trials to their end and starts the rest, each exactly once."""
    restarting = start_jobs_hub(
        tmp_path / "hub",
        settings={"keep_servers_running": True},
        extra="c.JobService.max_running_jobs_per_user = 4\n",
    )
    hub = restarting.hub
    try:
        restarting.write("rex", "slow.py", SLOW_SCRIPT)
        experiments = client(restarting, "rex")
        created = experiments.create(
            {
                "name": "slow",
                "objective": {"metric": "score"},
                "space": {"x": {"type": "choice", "values": [1, 2, 3, 4]}},
                "algorithm": "grid",
                "max_trials": 4,
                "parallel_trials": 2,
                "trial": {"script": "slow.py"},
            }
        )
        wait_for(
            lambda: sum(1 for t in experiments.trials("slow") if t["state"] == "running") == 2,
            timeout=60,
            what="two trials running",
        )
        service = hub.service_pid("kubestudio.jobs")
        os.kill(service, 9)
        wait_for(lambda: process_start_time(service) is None, timeout=20, interval=0.05, what="the killed service gone")
        hub.stop(stop_servers=False)
        hub.start()
        done = experiments.wait(created["id"], timeout=180)
        assert done["status"] == "succeeded" and done["trials"] == {"complete": 4}, experiments.trials("slow")
        trials = experiments.trials("slow")
        assert sorted(t["params"]["x"] for t in trials) == [1, 2, 3, 4]  # every point once
        assert sorted(t["value"] for t in trials) == [10.0, 20.0, 30.0, 40.0]
        names = sorted(j["name"] for j in restarting.client("rex").list())
        assert names == ["slow-t0", "slow-t1", "slow-t2", "slow-t3"]  # no trial ran twice
        assert done["best"]["params"] == {"x": 4}
    finally:
        hub.stop()


IRIS_CLASS = """\
import csv, os
import joblib
from sklearn.linear_model import LogisticRegression


def read(path):
    with open(path) as f:
        rows = [[float(v) for v in row] for row in csv.reader(f)]
    return [r[:4] for r in rows], [int(r[4]) for r in rows]


class IrisModel:
    # Sugar-easy's model class: train, evaluate, save for the trials; load, predict to serve

    def train(self, dataset_path, C=1.0, max_iter=100):
        X, y = read(dataset_path)
        self.model = LogisticRegression(C=C, max_iter=max_iter).fit(X, y)

    def evaluate(self, dataset_path):
        X, y = read(dataset_path)
        return {"accuracy": float(self.model.score(X, y))}

    def save(self, path):
        joblib.dump(self.model, os.path.join(path, "model.joblib"))

    def load(self, path):
        self.model = joblib.load(os.path.join(path, "model.joblib"))

    def predict(self, query):
        return self.model.predict(query).tolist()
"""


def test_a_sugar_easy_model_class_is_tuned_and_its_best_trial_served(jobs):
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    rows = [",".join(str(v) for v in [*x, label]) for x, label in zip(X.tolist(), y.tolist())]
    jobs.write("sue", "iris/train.csv", "\n".join(rows[0::2]) + "\n")
    jobs.write("sue", "iris/val.csv", "\n".join(rows[1::2]) + "\n")
    jobs.write("sue", "iris/iris_model.py", IRIS_CLASS)
    done = run(
        jobs,
        "sue",
        {
            "name": "iris",
            "objective": {"metric": "accuracy"},
            "algorithm": "grid",
            "max_trials": 2,
            "parallel_trials": 2,
            "trial": {
                "model_class": "iris/iris_model.py:IrisModel",
                "train_dataset": "iris/train.csv",
                "validate_dataset": "iris/val.csv",
                "trainparams": {"C": [0.0001, 1.0], "max_iter": 300},  # a list: searched; one value: passed
            },
        },
    )
    assert done["status"] == "succeeded", client(jobs, "sue").trials("iris")
    best = done["best"]
    assert best["params"] == {"C": 1.0} and best["value"] > 0.9, best
    assert best["model"] == f"experiments/iris/trial-{best['number']}" and best["model_class"] == "iris_model:IrisModel"
    saved = os.path.join(jobs.workspace("sue"), best["model"])
    assert sorted(os.listdir(saved)) == ["iris_model.py", "model.joblib"]
    assert os.stat(os.path.join(saved, "model.joblib")).st_uid == os.stat(jobs.workspace("sue")).st_uid  # the user's
    log = jobs.client("sue").logs(best["job"])
    assert """train('iris/train.csv', **{"max_iter": 300, "C": 1.0})""" in log, log

    # served as it was saved: the servings part takes the experiment's best trial
    sdk = jobs.client("sue")
    serving = sdk.serve(experiment="iris", trial="best")
    assert serving["name"] == "iris" and serving["spec"]["class"] == "iris_model:IrisModel", serving
    sdk.wait_ready("iris", timeout=120)
    assert sdk.predict("iris", [[5.1, 3.5, 1.4, 0.2]]) == [0]
    sdk.delete_serving("iris")


COUNTING = """\
import time
from kubestudio import trial
x = trial.params()["x"]
time.sleep(float(trial.params().get("wait", 0)))
trial.report(score=x)
"""


def test_a_goal_a_cancel_and_a_time_limit_end_an_experiment(jobs):
    """The goal reached ends it with the rest cancelled; its owner's cancel, and max_runtime, stop
    the running trials with it; nothing is left running."""
    from kubestudio.jobs.experiments.spec import parse_experiment

    jobs.write("gil", "count.py", COUNTING)
    experiments = client(jobs, "gil")
    base = {
        "objective": {"metric": "score"},
        "algorithm": "grid",
    }
    # the goal: x = 5 is enough; the grid's order puts it first (seed 3: 5, 1, 3, 2), so the
    # experiment ends with one trial complete and no other started
    goal = parse_experiment(
        {
            **base,
            "name": "goal",
            "objective": {"metric": "score", "goal": 5},
            "space": {"x": {"type": "choice", "values": [1, 2, 3, 5]}},
            "seed": 3,
            "max_trials": 4,
            "trial": {"script": "count.py"},
        }
    )
    done = experiments.wait(experiments.create(goal)["id"], timeout=120)  # an ExperimentSpec, as the SDK takes it
    assert done["status"] == "succeeded" and done["message"].startswith("reached the goal: trial"), done
    assert done["best"]["value"] == 5.0 and done["trials"] == {"complete": 1}, done

    # cancel: two trials that would run for a minute are stopped with it
    slow = {**base, "space": {"x": {"type": "choice", "values": [1, 2]}, "wait": {"type": "choice", "values": [60]}}}
    slow["trial"] = {"script": "count.py"}
    running = experiments.create({**slow, "name": "cancelled", "max_trials": 2, "parallel_trials": 2})
    wait_for(lambda: sum(1 for t in experiments.trials("cancelled") if t["state"] == "running") == 2, timeout=60)
    cancelled = experiments.delete("cancelled")
    assert cancelled["status"] == "cancelled" and cancelled["message"] == "cancelled by gil", cancelled
    trials = experiments.trials("cancelled")
    assert {t["state"] for t in trials} == {"cancelled"} and len(trials) == 2, trials
    assert all(t["message"] == "its experiment ended: cancelled by gil" for t in trials), trials
    jobs_of = lambda name: [j for j in jobs.client("gil").list() if j["name"].startswith(f"{name}-t")]  # noqa: E731
    wait_for(
        lambda: all(j["status"] == "cancelled" for j in jobs_of("cancelled")), timeout=30, what="its jobs cancelled"
    )
    assert experiments.get(running["id"])["status"] == "cancelled"  # answered as it is, again

    # max_runtime: the whole experiment's time limit
    limited = experiments.create({**slow, "name": "limited", "max_trials": 2, "max_runtime": 3})
    ended = experiments.wait(limited["id"], status=("failed", "succeeded"), timeout=60)
    assert ended["status"] == "failed" and ended["message"] == "stopped after max_runtime (3 s)", ended
    wait_for(lambda: all(j["status"] == "cancelled" for j in jobs_of("limited")), timeout=30, what="its jobs cancelled")
