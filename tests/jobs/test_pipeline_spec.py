"""The pipeline spec: what a run needs is checked before it starts, every error naming its field;
Argo's depends expressions and when comparisons read as Argo reads them."""

import re

import pytest

from kubestudio.jobs.pipelines.spec import evaluate_depends, evaluate_when, parse_pipeline
from kubestudio.jobs.spec import SpecError

GOOD = """
name: nightly
params:
  threshold: {type: number, default: 0.8}
  epochs: 3
  deploy: {type: bool, default: false}
parallelism: 2
tasks:
  prepare:
    job: {script: prep.py, args: ["--out", "{{outputs.data}}"]}
    outputs: {data: "runs/{{run}}/data.csv"}
  train:
    depends: [prepare]
    job: {script: train.py, args: ["--data", "{{tasks.prepare.outputs.data}}", "--epochs", "{{params.epochs}}"]}
    outputs: {model: "runs/{{run}}/model"}
    retries: 2
    timeout: 30m
  evaluate:
    depends: [train]
    job: {script: eval.py, args: ["{{tasks.train.outputs.model}}", "{{tasks.prepare.outputs.data}}"]}
  notify:
    depends: "evaluate.Failed || train.Failed"
    job: {command: "echo failed"}
  deploy:
    depends: [evaluate]
    when: "{{params.deploy}} == true"
    job: {command: "echo deploy"}
"""


def test_a_good_spec_reads_whole():
    spec = parse_pipeline(GOOD)
    assert spec.name == "nightly" and spec.parallelism == 2
    assert [(p.name, p.type, p.default) for p in spec.params] == [
        ("threshold", "number", 0.8),
        ("epochs", "int", 3),
        ("deploy", "bool", False),
    ]
    assert spec.order() == ["prepare", "train", "evaluate", "notify", "deploy"]
    assert spec.tasks["train"].retries == 2 and spec.tasks["train"].timeout == 1800
    assert spec.tasks["notify"].depends == ("evaluate", "train")
    assert spec.downstream("train") == {"train", "evaluate", "notify", "deploy"}
    assert spec.upstream("evaluate") == {"train", "prepare"}
    assert spec.resolve_params({"epochs": "5", "deploy": "true"}) == {"threshold": 0.8, "epochs": 5, "deploy": True}
    assert {t.cache for t in spec.tasks.values()} == {"off"}  # the cache is asked for, never assumed


def test_experiment_and_serve_tasks_and_their_results():
    import yaml

    body = yaml.safe_load(GOOD)
    body["cache"] = "auto"
    body["tasks"]["tune"] = {
        "depends": ["prepare"],
        "experiment": {"objective": {"metric": "acc"}, "space": {"lr": {"type": "uniform", "low": 0, "high": 1}}},
    }
    body["tasks"]["train"]["depends"] = ["prepare", "tune"]
    body["tasks"]["train"]["job"]["args"] += ["--lr", "{{tasks.tune.best.params.lr}}"]
    body["tasks"]["deploy"] = {
        "depends": ["evaluate"],
        "when": "{{tasks.tune.best.value}} > {{params.threshold}}",
        "serve": {"name": "nightly", "model": "{{tasks.train.outputs.model}}"},
    }
    spec = parse_pipeline(body)
    assert {n: (t.kind, t.cache) for n, t in spec.tasks.items()} == {
        "prepare": ("job", "auto"),
        "train": ("job", "auto"),
        "evaluate": ("job", "auto"),
        "notify": ("job", "auto"),
        "deploy": ("serve", "off"),  # the pipeline's cache is its jobs' default
        "tune": ("experiment", "off"),
    }
    body["tasks"]["train"]["job"]["args"][-1] = "{{tasks.tune.best.params.momentum}}"
    with pytest.raises(SpecError, match=re.escape("best.params.P with P one of lr")):
        parse_pipeline(body)
    long = {"name": "p", "tasks": {"a-very-long-name": {"experiment": {"space": {}}}}}
    with pytest.raises(SpecError, match="an experiment task's name is at most 15 characters"):
        parse_pipeline(long)


def test_cache_is_the_pipelines_default_a_task_may_turn_off():
    import yaml

    body = yaml.safe_load(GOOD)
    body["cache"] = "auto"
    body["tasks"]["deploy"]["cache"] = "off"
    body["tasks"]["train"]["inputs"] = ["data/{{params.epochs}}/", "labels.csv"]
    spec = parse_pipeline(body)
    assert {n: t.cache for n, t in spec.tasks.items()} == {
        "prepare": "auto",
        "train": "auto",
        "evaluate": "auto",
        "notify": "auto",
        "deploy": "off",
    }
    assert spec.tasks["train"].inputs == ("data/{{params.epochs}}", "labels.csv")


@pytest.mark.parametrize(
    "change, said",
    [
        (
            {"tasks.prepare.depends": ["deploy"]},
            "tasks.prepare.depends: a cycle (prepare depends on deploy -> evaluate -> train -> prepare)",
        ),
        ({"tasks.train.depends": ["nope"]}, "tasks.train.depends: 'nope' is not a task of this pipeline"),
        ({"tasks.notify.depends": "evaluate.Failed ||"}, "tasks.notify.depends: the expression ends too soon"),
        ({"tasks.notify.depends": "evaluate.Broken"}, "tasks.notify.depends: evaluate.Broken is not one of Argo's"),
        ({"tasks.notify.depends": "(evaluate"}, "tasks.notify.depends: the expression ends too soon"),
        (
            {"tasks.evaluate.job": {"script": "e.py", "args": ["{{tasks.train.outputs.weights}}"]}},
            "tasks.evaluate.job: {{tasks.train.outputs.weights}}: task 'train' declares no output 'weights'",
        ),
        (
            {"tasks.prepare.job": {"script": "p.py", "args": ["{{tasks.train.outputs.model}}"]}},
            "tasks.prepare.job: {{tasks.train.outputs.model}}: 'prepare' does not depend on 'train'",
        ),
        (
            {"tasks.train.job": {"script": "t.py", "args": ["{{params.lr}}"]}},
            "tasks.train.job: {{params.lr}}: the pipeline has no parameter 'lr'",
        ),
        (
            {"tasks.train.job": {"script": "t.py", "args": ["{{secrets.x}}"]}},
            "tasks.train.job: {{secrets.x}} is not something a pipeline fills in",
        ),
        (
            {"tasks.train.outputs": {"model": "/etc/passwd"}},
            "tasks.train.outputs.model: must be a path inside your workspace",
        ),
        ({"tasks.train.retries": 99}, "tasks.train.retries: at most 10 allowed here, not 99"),
        ({"tasks.train.timeout": "soon"}, "tasks.train.timeout: must be seconds or a duration"),
        (
            {"tasks.train.job": {"name": "x", "script": "t.py"}},
            "tasks.train.job.name: a task's job is named by the pipeline",
        ),
        ({"tasks.train.image": "x"}, "tasks.train.image: unknown field"),
        ({"tasks.deploy.when": "deploy please"}, "tasks.deploy.when: a comparison such as"),
        ({"params.epochs": {"type": "float"}}, "params.epochs.type: one of string, int, number, bool"),
        ({"params.epochs": {"type": "int", "default": 2.5}}, "params.epochs.default: must be a whole number"),
        ({"name": "a-very-long-pipeline-name"}, "name: at most 12 characters"),
        ({"tasks.Train-X": {"job": {"script": "t.py"}}}, "tasks.Train-X: a task's name is lower-case letters"),
        ({"parallelism": 0}, "parallelism: must be at least 1"),
        ({"cache": "always"}, "cache: auto (reuse a matching earlier result) or off, not 'always'"),
        (
            {"tasks.train.experiment": {"space": {}}},
            "tasks.train: one of job, experiment or serve, not job and experiment",
        ),
        (
            {"tasks.deploy": {"depends": ["evaluate"]}},
            "tasks.deploy: one of job, experiment or serve (what the task runs)",
        ),
        ({"tasks.deploy": {"serve": {"model": "m"}}}, "tasks.deploy.serve.name: the serving to make or update"),
        (
            {"tasks.deploy": {"serve": {"name": "m", "model": "x"}, "outputs": {"a": "b"}}},
            "tasks.deploy.outputs: a serve task writes no files",
        ),
        (
            {"tasks.deploy": {"experiment": {"name": "x", "space": {}}}},
            "tasks.deploy.experiment.name: a task's experiment is named by the pipeline",
        ),
        (
            {"tasks.deploy": {"depends": ["evaluate"], "experiment": {"space": {}}, "cache": "auto"}},
            "tasks.deploy.cache: only a job task is cached",
        ),
        (
            {"tasks.evaluate.job": {"script": "e.py", "args": ["{{tasks.train.best.value}}"]}},
            "tasks.evaluate.job: {{tasks.train.best.value}}: task 'train' is not an experiment",
        ),
        (
            {"tasks.evaluate.job": {"script": "e.py", "args": ["{{tasks.train.outputs.model.text}}"]}},
            "tasks.evaluate.job: {{tasks.train.outputs.model.text}}: an output is its path, or .value",
        ),
        ({"tasks.train.cache": True}, "tasks.train.cache: auto (reuse a matching earlier result) or off"),
        ({"tasks.train.inputs": "data/"}, "tasks.train.inputs: a list of at most 20 paths in your workspace"),
        ({"tasks.train.inputs": ["../x"]}, "tasks.train.inputs[0]: must be a path inside your workspace"),
        (
            {"tasks.train.inputs": ["{{tasks.deploy.outputs.x}}"]},
            "tasks.train.inputs[0]: {{tasks.deploy.outputs.x}}: 'train' does not depend on 'deploy'",
        ),
    ],
)
def test_bad_specs_name_their_field(change, said):
    import yaml

    body = yaml.safe_load(GOOD)
    for path, value in change.items():
        target = body
        *parents, last = path.split(".")
        for part in parents:
            target = target[part]
        target[last] = value
    with pytest.raises(SpecError, match=re.escape(said)):
        parse_pipeline(body)


def test_params_at_run_time_are_checked():
    spec = parse_pipeline(GOOD)
    with pytest.raises(SpecError, match=re.escape("params.epochs: must be a int, not 'many'")):
        spec.resolve_params({"epochs": "many"})
    with pytest.raises(SpecError, match=re.escape("params.lr: the pipeline has no such parameter")):
        spec.resolve_params({"lr": 1})
    required = parse_pipeline(
        {"name": "p", "params": {"x": {"type": "int"}}, "tasks": {"a": {"job": {"command": "true"}}}}
    )
    with pytest.raises(SpecError, match=re.escape("params.x: required")):
        required.resolve_params({})


@pytest.mark.parametrize(
    "expression, states, result",
    [
        ("a", {"a": "succeeded"}, True),
        ("a.Succeeded && b.Succeeded", {"a": "succeeded", "b": "failed"}, False),
        ("a.Failed || b.Failed", {"a": "succeeded", "b": "failed"}, True),
        ("!a.Failed", {"a": "skipped"}, True),
        ("(a.Succeeded || a.Skipped) && !b.Completed", {"a": "skipped", "b": "skipped"}, True),
        ("a.Completed", {"a": "failed"}, True),
        ("a.Omitted", {"a": "skipped"}, True),
    ],
)
def test_argo_depends(expression, states, result):
    assert evaluate_depends(expression, states) is result


def test_when_compares_numbers_as_numbers_and_text_as_text():
    context = {"params.threshold": 0.8, "params.mode": "fast"}
    assert evaluate_when("{{params.threshold}} > 0.5", context, "w") is True
    assert evaluate_when("{{params.threshold}} >= 10", context, "w") is False
    assert evaluate_when("{{params.mode}} == 'fast'", context, "w") is True
    with pytest.raises(SpecError, match=re.escape("w: cannot compare 'fast' < 3.0")):
        evaluate_when("{{params.mode}} < 3", context, "w")


@pytest.mark.parametrize(
    "schedule, said",
    [
        ({"cron": "61 * * * *"}, "schedule.cron: a cron expression such as '0 2 * * *'"),
        ({"cron": "0 2 * * *", "timezone": "Mars/Olympus"}, "schedule.timezone: a time zone such as UTC"),
        ({"cron": "0 2 * * *", "every": "day"}, "schedule.every: unknown field"),
        ({"cron": "0 2 * * *", "start": "yesterday"}, "schedule.start: a date and time such as 2026-12-01T00:00"),
        ({"cron": "0 2 * * *", "catchup": "yes"}, "schedule.catchup: true or false"),
        ({"cron": "0 2 * * *", "max_active_runs": 0}, "schedule.max_active_runs: must be at least 1"),
    ],
)
def test_bad_schedules_name_their_field(schedule, said):
    body = {"name": "p", "schedule": schedule, "tasks": {"a": {"job": {"command": "true"}}}}
    with pytest.raises(SpecError, match=re.escape(said)):
        parse_pipeline(body)


def test_a_schedule_fires_in_its_time_zone():
    from datetime import datetime, timezone

    spec = parse_pipeline(
        {
            "name": "p",
            "schedule": {"cron": "0 2 * * *", "timezone": "Europe/Paris", "start": "2026-12-01T00:00"},
            "tasks": {"a": {"job": {"command": ["echo", "{{scheduled}}"]}}},
        }
    )
    after = datetime(2026, 12, 7, 0, 0, tzinfo=timezone.utc)
    # 02:00 in Paris is 01:00 UTC in winter
    assert spec.schedule.next_after(after) == datetime(2026, 12, 7, 1, 0, tzinfo=timezone.utc)
    assert spec.schedule.start.isoformat() == "2026-12-01T00:00:00+01:00"


@pytest.mark.parametrize(
    "schedule, task, refused",
    [
        ({"cron": "0 2 * * *"}, {"job": {"command": "true"}}, None),
        ({"cron": "0 2 * * * */30"}, {"job": {"command": "true"}}, "schedule.cron: Argo's cron takes five fields"),
        ({"cron": "0 2 * * *", "catchup": True}, {"job": {"command": "true"}}, "schedule.catchup"),
        ({"cron": "0 2 * * *", "depends_on_past": True}, {"job": {"command": "true"}}, "schedule.depends_on_past"),
        ({"cron": "0 2 * * *", "max_active_runs": 2}, {"job": {"command": "true"}}, "schedule.max_active_runs"),
        ({"cron": "0 2 * * *"}, {"job": {"command": "echo {{ scheduled }}"}}, "tasks.a: {{scheduled}}"),
    ],
)
def test_a_schedule_is_an_argo_cron_workflow_only_as_written(schedule, task, refused):
    from kubestudio.jobs.pipelines.argo import ArgoRefused, check_schedule_fits

    spec = parse_pipeline({"name": "p", "schedule": schedule, "tasks": {"a": task}})
    if refused is None:
        check_schedule_fits(spec)
    else:
        with pytest.raises(ArgoRefused, match=re.escape(refused)):
            check_schedule_fits(spec)
