"""Pipelines on the embedded default: a DAG whose tasks are real jobs of its user (local processes
as their account), outputs passed downstream, conditions, retries, rerun from a task, cancel, the
CLI; bad specs refused before anything runs."""

import os
import time

import pytest
import requests

from kubestudio.extensions import cli
from kubestudio.jobs.pipelines.client import PipelinesClient, RunFailed

from .conftest import start_jobs_hub

pytestmark = pytest.mark.e2e

PREPARE = """\
import sys, os
os.makedirs(os.path.dirname(sys.argv[1]), exist_ok=True)
with open(sys.argv[1], "w") as f:
    f.write("\\n".join(str(i) for i in range(10)))
print("prepared", sys.argv[1])
"""
# a small model: the mean of the data times a factor
TRAIN = """\
import sys, os, time
data, out, factor = sys.argv[1], sys.argv[2], float(sys.argv[3])
numbers = [float(x) for x in open(data).read().split()]
os.makedirs(os.path.dirname(out), exist_ok=True)
with open(out, "w") as f:
    f.write(str(factor * sum(numbers) / len(numbers)))
print("trained", out, time.time())
"""
EVALUATE = """\
import sys, os
if os.environ.get("FAIL_UNLESS") and not os.path.exists(os.environ["FAIL_UNLESS"]):
    sys.exit("evaluate: no " + os.environ["FAIL_UNLESS"])
models = [float(open(p).read()) for p in sys.argv[2:]]
os.makedirs(os.path.dirname(sys.argv[1]), exist_ok=True)  # a rerun's own folder
with open(sys.argv[1], "w") as f:
    f.write(str(max(models)))
print("best", max(models))
"""
FLAKY = """\
import os, sys
count = int(open("flaky.count").read()) if os.path.exists("flaky.count") else 0
open("flaky.count", "w").write(str(count + 1))
if count == 0:
    sys.exit("the first attempt fails")
print("second attempt ok")
"""

PIPELINE = {
    "name": "nightly",
    "params": {"factor": 2, "deploy": {"type": "bool", "default": False}},
    "tasks": {
        "prepare": {
            "job": {"script": "p/prepare.py", "args": ["{{outputs.data}}"]},
            "outputs": {"data": "runs/{{run}}/data.txt"},
        },
        "train-a": {
            "depends": ["prepare"],
            "job": {"script": "p/train.py", "args": ["{{tasks.prepare.outputs.data}}", "{{outputs.model}}", "1"]},
            "outputs": {"model": "runs/{{run}}/a.txt"},
        },
        "train-b": {
            "depends": ["prepare"],
            "job": {
                "script": "p/train.py",
                "args": ["{{tasks.prepare.outputs.data}}", "{{outputs.model}}", "{{params.factor}}"],
            },
            "outputs": {"model": "runs/{{run}}/b.txt"},
        },
        "evaluate": {
            "depends": ["train-a", "train-b"],
            "job": {
                "script": "p/evaluate.py",
                "args": ["{{outputs.score}}", "{{tasks.train-a.outputs.model}}", "{{tasks.train-b.outputs.model}}"],
                "env": {"FAIL_UNLESS": "{{params.gate}}"},
            },
            "outputs": {"score": "runs/{{run}}/score.txt"},
        },
        "deploy": {"depends": ["evaluate"], "when": "{{params.deploy}} == true", "job": {"command": "echo deployed"}},
        "alert": {"depends": "evaluate.Failed", "job": {"command": "echo evaluate failed"}},
    },
}


@pytest.fixture(scope="module")
def jobs(tmp_path_factory):
    extra = "c.JobService.max_running_jobs_per_user = 4\nc.JobService.max_running_jobs = 8\n"
    hub = start_jobs_hub(tmp_path_factory.mktemp("pipelines-hub"), extra=extra)
    try:
        yield hub
    finally:
        hub.hub.stop()


def client(jobs, user):
    return PipelinesClient(url=jobs.url, token=jobs.token(user))


def pipeline(gate=""):
    spec = {**PIPELINE, "params": {**PIPELINE["params"], "gate": gate}}
    return spec


def write_scripts(jobs, user):
    for name, text in (("prepare", PREPARE), ("train", TRAIN), ("evaluate", EVALUATE)):
        jobs.write(user, f"p/{name}.py", text)


def ended(pipelines, run, timeout=120):
    try:
        return pipelines.wait(run, timeout=timeout)
    except RunFailed as e:
        return e.run


def test_a_dag_runs_its_tasks_as_jobs_passing_outputs_downstream(jobs):
    write_scripts(jobs, "paula")
    pipelines = client(jobs, "paula")
    run = pipelines.run(pipeline(), params={"factor": 3, "deploy": "true"})
    assert run["status"] == "running" and run["params"] == {"factor": 3, "deploy": True, "gate": ""}
    done = ended(pipelines, run)
    tasks = {t["name"]: t for t in done["tasks"]}
    assert done["status"] == "succeeded", (done["message"], done["tasks"])
    assert done["message"] == "5 tasks succeeded, 1 skipped"
    assert {n: t["status"] for n, t in tasks.items()} == {
        "prepare": "succeeded",
        "train-a": "succeeded",
        "train-b": "succeeded",
        "evaluate": "succeeded",
        "deploy": "succeeded",
        "alert": "skipped",
    }
    assert "its depends (evaluate.Failed) did not hold" in tasks["alert"]["message"]
    rid = run["id"]
    assert tasks["evaluate"]["outputs"] == {"score": f"runs/{rid}/score.txt"}
    workspace = jobs.workspace("paula")
    # mean of 0..9 is 4.5: a's factor 1, b's the run's parameter 3
    assert open(os.path.join(workspace, f"runs/{rid}/a.txt")).read() == "4.5"
    assert open(os.path.join(workspace, f"runs/{rid}/score.txt")).read() == "13.5"
    # each task is one of the user's jobs, named after the pipeline, the run and the task
    records = {j["name"]: j for j in jobs.client("paula").list()}
    job = records[f"nightly-{rid[:6]}-evaluate"]
    assert job["status"] == "succeeded" and job["id"] == tasks["evaluate"]["job"]
    # the two trainings ran side by side, after prepare and before evaluate
    started = {n: t["started"] for n, t in tasks.items()}
    assert started["prepare"] < started["train-a"] < started["evaluate"]
    assert started["prepare"] < started["train-b"] < started["evaluate"]
    assert "best 13.5" in pipelines.logs(run, "evaluate")
    assert "deployed" in pipelines.logs(run, "deploy")
    assert [r["id"] for r in pipelines.list(pipeline="nightly")][0] == rid


def test_a_failed_task_is_rerun_with_what_depends_on_it_and_the_rest_kept(jobs):
    write_scripts(jobs, "rita")
    pipelines = client(jobs, "rita")
    run = pipelines.run(pipeline(gate="gate.ok"))
    failed = ended(pipelines, run)
    tasks = {t["name"]: t for t in failed["tasks"]}
    assert failed["status"] == "failed" and failed["message"].startswith("evaluate failed: its job failed"), failed
    assert tasks["alert"]["status"] == "succeeded" and tasks["deploy"]["status"] == "skipped"
    jobs.write("rita", "gate.ok", "yes")
    again = pipelines.rerun(run)  # from what did not succeed: evaluate (and alert, deploy after it)
    assert again["rerun_of"] == run["id"]
    done = ended(pipelines, again)
    redone = {t["name"]: t for t in done["tasks"]}
    assert done["status"] == "succeeded", (done["message"], done["tasks"])
    for name in ("prepare", "train-a", "train-b"):  # kept: same job, same outputs
        assert redone[name]["reused_from"] == run["id"] and redone[name]["job"] == tasks[name]["job"]
    assert redone["evaluate"]["job"] != tasks["evaluate"]["job"]
    # the kept outputs are the first run's: evaluate read them there and wrote its own
    assert redone["evaluate"]["outputs"] == {"score": f"runs/{again['id']}/score.txt"}
    assert redone["alert"]["status"] == "skipped"
    # from a named task: only it and what follows run again
    third = ended(pipelines, pipelines.rerun(again, from_task="train-b"))
    states = {t["name"]: (t["status"], t["reused_from"]) for t in third["tasks"]}
    assert states["prepare"] == ("succeeded", run["id"]) and states["train-a"] == ("succeeded", run["id"])
    assert states["train-b"] == ("succeeded", None) and states["evaluate"] == ("succeeded", None)
    with pytest.raises(Exception, match="from: 'nope' is not a task"):
        pipelines.rerun(third, from_task="nope")


def test_retries_timeouts_and_cancel(jobs):
    jobs.write("tom", "flaky.py", FLAKY)
    pipelines = client(jobs, "tom")
    spec = {
        "name": "flaky",
        "tasks": {
            "flaky": {"job": {"script": "flaky.py"}, "retries": 1},
            "slow": {"depends": ["flaky"], "job": {"command": "sleep 60"}, "timeout": "3s"},
        },
    }
    done = ended(pipelines, pipelines.run(spec))
    tasks = {t["name"]: t for t in done["tasks"]}
    assert tasks["flaky"]["status"] == "succeeded" and tasks["flaky"]["attempts"] == 2, tasks
    assert "second attempt ok" in pipelines.logs(done, "flaky")
    assert tasks["slow"]["status"] == "failed" and "max_runtime" in tasks["slow"]["message"], tasks["slow"]
    # a cancel stops the running task's job and what had not started
    spec = {
        "name": "long",
        "tasks": {"a": {"job": {"command": "sleep 60"}}, "b": {"depends": ["a"], "job": {"command": "true"}}},
    }
    run = pipelines.run(spec)
    deadline = time.monotonic() + 60
    while pipelines.get(run)["tasks"][0]["status"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    cancelled = pipelines.cancel(run)
    assert cancelled["status"] == "cancelled" and cancelled["message"] == "cancelled by tom"
    assert [t["status"] for t in cancelled["tasks"]] == ["cancelled", "cancelled"]
    job = jobs.client("tom").get(cancelled["tasks"][0]["job"])
    assert job["status"] == "cancelled", job
    pipelines.cancel(run, forget=True)
    with pytest.raises(Exception, match="no pipeline run"):
        pipelines.get(run)


@pytest.mark.parametrize(
    "body, status, said",
    [
        (
            {"spec": {"name": "p", "tasks": {"a": {"job": {"script": "missing.py"}}}}},
            400,
            "tasks.a.job: script: no file 'missing.py'",
        ),
        (
            {"spec": {"name": "p", "tasks": {"a": {"depends": ["a"], "job": {"command": "true"}}}}},
            400,
            "tasks.a.depends: a task cannot depend on itself",
        ),
        (
            {"spec": {"name": "p", "tasks": {"a": {"job": {"command": "true", "project": "vision"}}}}},
            403,
            "tasks.a.job: project: you are not a member of project 'vision'",
        ),
        (
            {"spec": {"name": "p", "tasks": {"s": {"serve": {"name": "m", "model": "m.joblib", "project": "vision"}}}}},
            403,
            "tasks.s.serve: project: you are not a member of project 'vision'",
        ),
        ({"spec": "name: p\ntasks: [oops", "params": {}}, 400, "the pipeline is not valid YAML"),
        (
            {
                "spec": {"name": "p", "params": {"n": 1}, "tasks": {"a": {"job": {"command": "true"}}}},
                "params": {"n": "x"},
            },
            400,
            "params.n: must be a int",
        ),
        ({"pipeline": {}}, 400, "pipeline: unknown field (expected spec, params)"),
    ],
)
def test_bad_pipelines_are_refused_before_anything_runs(jobs, body, status, said):
    r = requests.post(
        f"{jobs.url}api/pipelines/runs", json=body, headers={"Authorization": f"token {jobs.token('ivan')}"}, timeout=30
    )
    assert r.status_code == status and said in r.json()["message"] and r.json()["status"] == status, r.text
    assert client(jobs, "ivan").list() == [] and jobs.client("ivan").list() == []


def test_the_cli_runs_a_pipeline_from_a_yaml_file(jobs, tmp_path, capsys):
    import io

    import yaml

    write_scripts(jobs, "cleo")
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(pipeline()))
    out = io.StringIO()
    saved = dict(os.environ)
    os.environ.update({"KUBESTUDIO_JOBS_URL": jobs.url, "JUPYTERHUB_API_TOKEN": jobs.token("cleo")})
    try:
        assert cli.main(["pipelines", "run", str(path), "-p", "factor=5"], out=out) == 0, out.getvalue()
        run_id = out.getvalue().split()[1]
        assert cli.main(["pipelines", "show", run_id], out=out) == 0
        assert cli.main(["pipelines", "logs", run_id, "train-b"], out=out) == 0
        # an Argo Workflow carries the pods a cluster's jobs would have: not from this machine
        assert cli.main(["pipelines", "export", str(path), "--argo"], out=out) == 2
        said = capsys.readouterr().err
        assert "this hub runs its jobs on this machine (HTTP 409)" in said, said
    finally:
        os.environ.clear()
        os.environ.update(saved)
    text = out.getvalue()
    assert "evaluate: succeeded" in text and f"run {run_id} of nightly: succeeded" in text, text
    assert "alert              skipped" in text and "trained runs/" in text, text


def test_a_restart_mid_run_goes_on_with_no_task_run_twice(tmp_path):
    """The service is killed (-9) while a task runs: the next start follows that task's job to its
    end and starts the tasks after it, each once."""
    from kubestudio.processgroup import process_start_time
    from kubestudio.testing.wait import wait_for

    restarting = start_jobs_hub(tmp_path / "hub", settings={"keep_servers_running": True})
    hub = restarting.hub
    try:
        pipelines = client(restarting, "rex")
        spec = {
            "name": "survive",
            "tasks": {
                "first": {"job": {"command": "sleep 4"}},
                "second": {"depends": ["first"], "job": {"command": "echo second"}},
            },
        }
        run = pipelines.run(spec)
        wait_for(lambda: pipelines.get(run)["tasks"][0]["job"], timeout=60, what="first's job submitted")
        job = pipelines.get(run)["tasks"][0]["job"]
        jobs = restarting.client("rex")
        wait_for(lambda: jobs.get(job)["status"] == "running", timeout=60, what="first's job running")
        service = hub.service_pid("kubestudio.jobs")
        os.kill(service, 9)
        wait_for(lambda: process_start_time(service) is None, timeout=20, interval=0.05, what="the killed service gone")
        hub.stop(stop_servers=False)
        hub.start()
        done = ended(pipelines, run, timeout=120)
        assert done["status"] == "succeeded", done
        names = sorted(j["name"] for j in jobs.list())
        assert names == [f"survive-{run['id'][:6]}-first", f"survive-{run['id'][:6]}-second"]
        assert "second" in pipelines.logs(run, "second")
    finally:
        hub.stop()


def test_a_schedule_fires_on_time_and_stops_when_removed(jobs):
    """Every two seconds (cron's sixth field), one run at a time, each told the time it is for."""
    from datetime import datetime

    from kubestudio.testing.wait import wait_for

    pipelines = client(jobs, "sky")
    spec = {
        "name": "tick",
        "schedule": {"cron": "* * * * * */2", "max_active_runs": 1},
        "tasks": {"say": {"job": {"command": ["echo", "for {{scheduled}}"]}}},
    }
    made = pipelines.schedule(spec)
    assert made["pipeline"] == "tick" and made["cron"] == "* * * * * */2" and made["next_fire"]
    wait_for(
        lambda: sum(1 for r in pipelines.list(pipeline="tick") if r["status"] == "succeeded") >= 3,
        timeout=60,
        what="three scheduled runs",
    )
    assert pipelines.unschedule("tick")["deleted"] is True
    time.sleep(1)  # a run the last round started ends
    runs = [pipelines.get(r["id"]) for r in pipelines.list(pipeline="tick")]
    assert all(r["schedule"] == made["id"] for r in runs)
    times = sorted(datetime.fromisoformat(r["scheduled_for"]) for r in runs)
    assert all((b - a).total_seconds() % 2 == 0 and b > a for a, b in zip(times, times[1:])), times
    assert all(t.second % 2 == 0 for t in times)
    first = min(runs, key=lambda r: r["scheduled_for"])
    assert f"for {datetime.fromisoformat(first['scheduled_for']):%Y-%m-%dT%H:%M:%S}Z" in pipelines.logs(first, "say")
    count = len(runs)
    time.sleep(3)
    assert len(pipelines.list(pipeline="tick")) == count  # removed: no more runs
    assert pipelines.schedules() == []
    with pytest.raises(Exception, match="schedule: the pipeline has none"):
        pipelines.schedule({"name": "never", "tasks": {"a": {"job": {"command": "true"}}}})


def test_a_schedule_catches_up_what_it_missed_while_the_service_was_down(tmp_path):
    from datetime import datetime

    from kubestudio.testing.wait import wait_for

    restarting = start_jobs_hub(tmp_path / "hub", settings={"keep_servers_running": True})
    hub = restarting.hub
    try:
        pipelines = client(restarting, "cat")
        spec = {
            "name": "nightly",
            "schedule": {"cron": "* * * * * */2", "catchup": True, "max_active_runs": 4},
            "tasks": {"say": {"job": {"command": ["echo", "{{scheduled}}"]}}},
        }
        pipelines.schedule(spec)
        wait_for(lambda: len(pipelines.list(pipeline="nightly")) >= 1, timeout=30, what="a first scheduled run")
        hub.stop(stop_servers=False)
        down = time.time()
        time.sleep(7)
        hub.start()
        wait_for(
            lambda: (
                sum(
                    1
                    for r in pipelines.list(pipeline="nightly")
                    if r["status"] == "succeeded" and datetime.fromisoformat(r["scheduled_for"]).timestamp() > down + 1
                )
                >= 3
            ),
            timeout=60,
            what="the missed runs made up for",
        )
        pipelines.unschedule("nightly")
        times = sorted(datetime.fromisoformat(pipelines.get(r["id"])["scheduled_for"]) for r in pipelines.list())
        # every two seconds, none missed and none twice, across the time the service was down
        assert all((b - a).total_seconds() == 2 for a, b in zip(times, times[1:])), times
    finally:
        hub.stop()


def test_a_python_pipeline_runs_as_it_compiles(jobs):
    """@task functions wired by a @pipeline: each ran as a job of its own, an output written by
    one read by the next, a param given at run time."""
    from kubestudio.pipelines import Output, pipeline, task

    @task()
    def prepare(rows: int, data: Output):
        with open(data, "w") as f:
            f.write("\n".join(str(i) for i in range(rows)))

    @task(retries=1)
    def total(data: str, result: Output, scale: int = 1):
        numbers = [int(x) for x in open(data).read().split()]
        with open(result, "w") as f:
            f.write(str(sum(numbers) * scale))
        print("total", sum(numbers) * scale)

    @pipeline(name="sums", params={"rows": 3})
    def sums(rows):
        p = prepare(rows=rows)
        total(data=p.outputs["data"], scale=10)

    pipelines = client(jobs, "dora")
    done = ended(pipelines, pipelines.run(sums, params={"rows": 5}))
    assert done["status"] == "succeeded", done
    assert "total 100" in pipelines.logs(done, "total")  # (0+1+2+3+4) * 10
    result = next(t for t in done["tasks"] if t["name"] == "total")["outputs"]["result"]
    assert result == f"runs/{done['id']}/total/result"
    assert open(os.path.join(jobs.workspace("dora"), result)).read() == "100"


def test_a_cached_task_reuses_an_earlier_result_until_what_it_reads_changes(jobs):
    """cache: auto: a second run takes every task from the first; a param changes only the tasks
    that use it (and what reads their outputs); an edited script, a changed input, a removed output
    run a task again; cache: off always runs."""
    write_scripts(jobs, "cora")
    jobs.write("cora", "p/labels.txt", "a b c")
    pipelines = client(jobs, "cora")
    spec = {**pipeline(), "cache": "auto"}
    spec["tasks"] = {n: dict(t) for n, t in spec["tasks"].items()}
    spec["tasks"]["prepare"]["inputs"] = ["p/labels.txt"]
    spec["tasks"]["deploy"]["cache"] = "off"

    def states(run):
        done = ended(pipelines, run)
        assert done["status"] == "succeeded", (done["message"], done["tasks"])
        return done, {t["name"]: t for t in done["tasks"]}

    first, one = states(pipelines.run(spec, params={"deploy": True}))
    assert not any(t["cached"] for t in one.values())
    second, two = states(pipelines.run(spec, params={"deploy": True}))
    for name in ("prepare", "train-a", "train-b", "evaluate"):
        assert two[name]["cached"] and two[name]["reused_from"] == first["id"], two[name]
        assert two[name]["job"] == one[name]["job"] and two[name]["outputs"] == one[name]["outputs"]
        assert f"run {first['id']}" in two[name]["message"]
    assert not two["deploy"]["cached"] and two["deploy"]["job"] != one["deploy"]["job"]  # cache: off
    assert "deployed" in pipelines.logs(second, "deploy")
    assert "best 9.0" in pipelines.logs(second, "evaluate")  # a cached task's log is its first run's
    # a param only train-b uses: it and evaluate (which reads its output) run, the rest is taken
    third, three = states(pipelines.run(spec, params={"factor": 4}))
    assert {n for n, t in three.items() if t["cached"]} == {"prepare", "train-a"}
    workspace = jobs.workspace("cora")
    assert open(os.path.join(workspace, three["evaluate"]["outputs"]["score"])).read() == "18.0"
    # an edited script runs both trainings again; they wrote what they wrote before, so evaluate
    # is taken again (its key is what it reads, not who wrote it)
    jobs.write("cora", "p/train.py", TRAIN + "# tuned\n")
    _, four = states(pipelines.run(spec, params={"factor": 4}))
    assert {n for n, t in four.items() if t["cached"]} == {"prepare", "evaluate"}
    # a changed input runs the task that names it
    jobs.write("cora", "p/labels.txt", "a b c d")
    _, five = states(pipelines.run(spec, params={"factor": 4}))
    assert {n for n, t in five.items() if t["cached"]} == {"train-a", "train-b", "evaluate"}
    # an output removed since: the task that made it runs again
    os.remove(os.path.join(workspace, five["train-a"]["outputs"]["model"]))
    sixth, six = states(pipelines.run(spec, params={"factor": 4}))
    assert {n for n, t in six.items() if t["cached"]} == {"prepare", "train-b", "evaluate"}
    assert open(os.path.join(workspace, six["train-a"]["outputs"]["model"])).read() == "4.5"
    # a rerun from a task runs it (and what follows), cache or not
    again = ended(pipelines, pipelines.rerun(sixth, from_task="train-b"))
    redone = {t["name"]: t for t in again["tasks"]}
    assert not redone["train-b"]["cached"] and redone["train-b"]["job"] != six["train-b"]["job"]
    assert redone["prepare"]["reused_from"] and not redone["prepare"]["cached"]  # kept, as reruns keep


ML_PREPARE = """\
import os, sys
import numpy as np
from sklearn.datasets import load_iris
from sklearn.model_selection import train_test_split
X, y = load_iris(return_X_y=True)
parts = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
os.makedirs(sys.argv[1], exist_ok=True)
for name, part in zip(("X_train", "X_test", "y_train", "y_test"), parts):
    np.save(os.path.join(sys.argv[1], name + ".npy"), part)
print("prepared", len(parts[0]), "rows to train on")
"""
ML_TUNE = """\
import sys
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from kubestudio import trial
data = sys.argv[1]
C = trial.params()["C"]
X, y = np.load(data + "/X_train.npy"), np.load(data + "/y_train.npy")
trial.report(acc=float(cross_val_score(LogisticRegression(C=C, max_iter=500), X, y, cv=3).mean()))
"""
ML_TRAIN = """\
import os, sys
import joblib
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier
data, out, kind, C = sys.argv[1:5]
X, y = np.load(data + "/X_train.npy"), np.load(data + "/y_train.npy")
model = LogisticRegression(C=float(C), max_iter=500) if kind == "logistic" else DecisionTreeClassifier(max_depth=1)
os.makedirs(out, exist_ok=True)
joblib.dump(model.fit(X, y), os.path.join(out, "model.joblib"))
print("trained", kind, "C =", C)
"""
ML_EVALUATE = """\
import os, shutil, sys
import joblib
import numpy as np
data, best, accuracy, *models = sys.argv[1:]
X, y = np.load(data + "/X_test.npy"), np.load(data + "/y_test.npy")
scores = {m: float((joblib.load(m + "/model.joblib").predict(X) == y).mean()) for m in models}
winner = max(scores, key=scores.get)
shutil.copytree(winner, best)
open(accuracy, "w").write(f"{scores[winner]:.4f}")
print("scores", scores, "best", winner)
"""
ML_PIPELINE = {
    "name": "iris",
    "params": {"threshold": 0.8},
    "cache": "auto",  # the jobs of a run again are taken from the first; the experiment and the serve run
    "tasks": {
        "prepare": {
            "job": {"script": "ml/prepare.py", "args": ["{{outputs.data}}"]},
            "outputs": {"data": "ml/{{run}}/data"},
        },
        "tune": {
            "depends": ["prepare"],
            "experiment": {
                "objective": {"metric": "acc"},
                "space": {"C": {"type": "choice", "values": [0.01, 1.0]}},
                "algorithm": "grid",
                "max_trials": 2,
                "parallel_trials": 2,
                "trial": {"script": "ml/tune.py", "args": ["{{tasks.prepare.outputs.data}}"]},
            },
        },
        "train-a": {
            "depends": ["tune"],
            "job": {
                "script": "ml/train.py",
                "args": [
                    "{{tasks.prepare.outputs.data}}",
                    "{{outputs.model}}",
                    "logistic",
                    "{{tasks.tune.best.params.C}}",
                ],
            },
            "outputs": {"model": "ml/{{run}}/logistic"},
        },
        "train-b": {
            "depends": ["prepare"],
            "job": {
                "script": "ml/train.py",
                "args": ["{{tasks.prepare.outputs.data}}", "{{outputs.model}}", "stump", "0"],
            },
            "outputs": {"model": "ml/{{run}}/stump"},
        },
        "evaluate": {
            "depends": ["train-a", "train-b"],
            "job": {
                "script": "ml/evaluate.py",
                "args": [
                    "{{tasks.prepare.outputs.data}}",
                    "{{outputs.best}}",
                    "{{outputs.accuracy}}",
                    "{{tasks.train-a.outputs.model}}",
                    "{{tasks.train-b.outputs.model}}",
                ],
            },
            "outputs": {"best": "ml/{{run}}/best", "accuracy": "ml/{{run}}/accuracy.txt"},
        },
        "serve": {
            "depends": ["evaluate"],
            "when": "{{tasks.evaluate.outputs.accuracy.value}} > {{params.threshold}}",
            "serve": {"name": "iris", "model": "{{tasks.evaluate.outputs.best}}"},
        },
    },
}


def test_an_ml_pipeline_tunes_trains_evaluates_and_serves_the_winner(jobs):
    """prepare -> tune (an experiment) -> train-a with its best C, train-b beside it -> evaluate
    -> serve when the accuracy read from evaluate's output beats a param: a serving that answers
    as the winning model does; run again, the serving gets a new version; a threshold too high
    skips the serve."""
    import joblib
    import numpy as np

    for name, text in (("prepare", ML_PREPARE), ("tune", ML_TUNE), ("train", ML_TRAIN), ("evaluate", ML_EVALUATE)):
        jobs.write("sally", f"ml/{name}.py", text)
    pipelines = client(jobs, "sally")
    done = ended(pipelines, pipelines.run(ML_PIPELINE), timeout=300)
    tasks = {t["name"]: t for t in done["tasks"]}
    assert done["status"] == "succeeded", (done["message"], done["tasks"])
    # the experiment's best C reached train-a's arguments
    best_c = tasks["tune"]["outputs"]["best.params.C"]
    assert best_c in ("0.01", "1.0") and float(tasks["tune"]["outputs"]["best.value"]) > 0.5
    assert f"trained logistic C = {best_c}" in pipelines.logs(done, "train-a")
    assert "trial 0: complete" in pipelines.logs(done, "tune") and "trial 1: complete" in pipelines.logs(done, "tune")
    workspace = jobs.workspace("sally")
    accuracy = open(os.path.join(workspace, tasks["evaluate"]["outputs"]["accuracy"])).read()
    assert float(accuracy) > 0.8
    assert tasks["serve"]["status"] == "succeeded" and tasks["serve"]["outputs"]["version"] == "1", tasks["serve"]
    assert tasks["serve"]["message"] == "iris version 1 answers"
    # the serving answers as the winning model does
    model = joblib.load(os.path.join(workspace, tasks["evaluate"]["outputs"]["best"], "model.joblib"))
    data = os.path.join(workspace, tasks["prepare"]["outputs"]["data"])
    rows = np.load(os.path.join(data, "X_test.npy"))[:5].tolist()
    assert jobs.client("sally").predict("iris", rows) == model.predict(rows).tolist()
    # again: the jobs come from the cache, the experiment runs again (the same best C, so train-a
    # is taken too), and the same serving gets a new version, ready before the task ends
    again = ended(pipelines, pipelines.run(ML_PIPELINE), timeout=300)
    second = {t["name"]: t for t in again["tasks"]}
    assert {n for n, t in second.items() if t["cached"]} == {"prepare", "train-a", "train-b", "evaluate"}
    assert second["tune"]["job"] != tasks["tune"]["job"]
    serve = second["serve"]
    assert again["status"] == "succeeded" and serve["outputs"]["version"] == "2", again["tasks"]
    assert jobs.client("sally").serving("iris")["ready_generation"] == 2
    # too high a bar: evaluate's accuracy is read, compared, and the serve is skipped
    high = ended(pipelines, pipelines.run(ML_PIPELINE, params={"threshold": 1.5}), timeout=300)
    skipped = {t["name"]: t for t in high["tasks"]}["serve"]
    assert high["status"] == "succeeded" and skipped["status"] == "skipped", high["tasks"]
    assert f"when '{ML_PIPELINE['tasks']['serve']['when']}' was false" in skipped["message"]


def test_a_link_to_another_users_file_is_neither_read_nor_hashed(jobs):
    """mallory plants a link to victor's file as her task's output: its .value is refused and,
    named as an input, the task runs uncached, saying why; victor cannot see or cancel her run."""
    jobs.write("victor", "secret.txt", "0.99\n")
    secret = os.path.join(jobs.workspace("victor"), "secret.txt")
    mallory = client(jobs, "mallory")
    spec = {
        "name": "steal",
        "tasks": {
            "a": {"job": {"command": ["sh", "-c", f"ln -sf {secret} {{{{outputs.x}}}}"]}, "outputs": {"x": "loot"}},
            "b": {"depends": ["a"], "when": "{{tasks.a.outputs.x.value}} > 0.5", "job": {"command": "true"}},
            "c": {"depends": ["a"], "cache": "auto", "inputs": ["loot"], "job": {"command": "true"}},
        },
    }
    done = ended(mallory, mallory.run(spec))
    tasks = {t["name"]: t for t in done["tasks"]}
    assert tasks["b"]["status"] == "failed" and tasks["b"]["message"] == "{{tasks.a.outputs.x.value}}: 'loot' is a link"
    assert tasks["c"]["status"] == "succeeded" and not tasks["c"]["cache_key"]
    assert tasks["c"]["message"] == "not cached: 'loot' is a link or not a file or folder"
    victor = client(jobs, "victor")
    with pytest.raises(Exception, match="no pipeline run"):
        victor.get(done["id"])
    with pytest.raises(Exception, match="no pipeline run"):
        victor.cancel(done["id"])
