"""What the service gives Katib (pure builders): the Experiment of a spec, the parameters of each
kind of space, what Katib cannot run refused with the field, the DB manager's messages, and the
reading of Katib's Trials and Experiments. The bench runs them against a simulated Katib that
Katib's own SDK checks (tests/kubebench/test_katib.py, test_jobs_kubernetes.py)."""

import json
import re

import pytest

from kubestudio.jobs.experiments import katib
from kubestudio.jobs.experiments.spec import parse_experiment

JOB = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "x-t0-abc123", "labels": {"a": "b"}}, "spec": {}}


def spec(**fields):
    body = {
        "name": "tune",
        "objective": {"metric": "acc", "goal": 0.9},
        "space": {
            "lr": {"type": "loguniform", "low": 1e-4, "high": 1e-1},
            "drop": {"_type": "quniform", "_value": [0.1, 0.5, 0.1]},
            "layers": {"type": "int", "low": 1, "high": 7, "step": 2},
            "opt": {"type": "choice", "values": ["adam", "sgd"]},
            "bs": {"type": "choice", "values": [16, 32]},
        },
        "trial": {"script": "t.py"},
        "algorithm": "qmc",
        "seed": 7,
        "max_trials": 12,
        "parallel_trials": 3,
        "max_failed_trials": 2,
        **fields,
    }
    return parse_experiment(body)


def test_the_experiment_carries_the_search_the_template_and_the_push_collector():
    manifest = katib.experiment_manifest(spec(), "0123456789ab", "team", "Job", JOB, {"l": "v"})
    assert manifest["metadata"] == {
        "name": "exp-0123456789ab",
        "namespace": "team",
        "labels": {"l": "v"},
        "annotations": {"kubestudio.io/experiment-name": "tune"},
    }
    body = manifest["spec"]
    assert body["objective"] == {"type": "maximize", "objectiveMetricName": "acc", "goal": 0.9}
    assert body["algorithm"] == {
        "algorithmName": "sobol",
        "algorithmSettings": [{"name": "random_state", "value": "7"}],
    }
    # Katib fails an experiment when MORE than maxFailedTrialCount failed; ours at max_failed_trials
    assert body["maxFailedTrialCount"] == 1 and body["maxTrialCount"] == 12 and body["parallelTrialCount"] == 3
    assert "earlyStopping" not in body
    assert body["metricsCollectorSpec"] == {"collector": {"kind": "Push"}}
    assert {p["name"]: p for p in body["parameters"]} == {
        "lr": {
            "name": "lr",
            "parameterType": "double",
            "feasibleSpace": {"min": "0.0001", "max": "0.1", "distribution": "logUniform"},
        },
        "drop": {
            "name": "drop",
            "parameterType": "double",
            "feasibleSpace": {"min": "0.1", "max": "0.5", "step": "0.1", "distribution": "uniform"},
        },
        "layers": {"name": "layers", "parameterType": "int", "feasibleSpace": {"min": "1", "max": "7", "step": "2"}},
        "opt": {"name": "opt", "parameterType": "categorical", "feasibleSpace": {"list": ["adam", "sgd"]}},
        "bs": {"name": "bs", "parameterType": "discrete", "feasibleSpace": {"list": ["16", "32"]}},
    }
    template = body["trialTemplate"]
    assert template["primaryContainerName"] == "job"
    assert template["successCondition"] == 'status.conditions.#(type=="Complete")#|#(status=="True")#'
    assert template["trialParameters"][-1] == {"name": "kubestudioTrialName", "reference": "${trialSpec.Name}"}
    # Katib names the trial's job after the trial: only labels and annotations are kept
    assert template["trialSpec"]["metadata"] == {"labels": {"a": "b"}}


def test_the_trials_parameters_are_json_once_katib_fills_them_in():
    text = katib.params_template(spec().space)
    filled = re.sub(
        r"\$\{trialParameters\.(\w+)\}",
        lambda m: {"lr": "0.001", "drop": "0.3", "layers": "5", "opt": "sgd", "bs": "32"}[m.group(1)],
        text,
    )
    assert json.loads(filled) == {"lr": 0.001, "drop": 0.3, "layers": 5, "opt": "sgd", "bs": 32}


@pytest.mark.parametrize(
    "fields, kind, said",
    [
        ({"space": {"x": {"type": "normal", "mu": 0, "sigma": 1}}}, "Job", "space.x: Katib has no normal"),
        ({"early_stopping": "median"}, "Job", "early_stopping: Katib stops trials early only with its StdOut"),
        ({}, "TrainJob", "trial: Katib runs Jobs, PyTorchJobs, TFJobs and MPIJobs here, not a TrainJob"),
    ],
)
def test_what_katib_cannot_run_is_refused_naming_the_field(fields, kind, said):
    with pytest.raises(katib.KatibRefused, match=re.escape(said)):
        katib.check_spec(spec(**fields), kind)


def test_the_db_managers_messages_read_back():
    request = katib.report_request("exp-1-abc", {"acc": 0.91, "loss": 1e-05}, stamp="2026-12-07T10:00:00Z")
    assert katib.read_report_request(request) == (
        "exp-1-abc",
        [("2026-12-07T10:00:00Z", "acc", "0.91"), ("2026-12-07T10:00:00Z", "loss", "1e-05")],
    )
    assert katib.read_get_request(katib.get_request("exp-1-abc", "acc")) == ("exp-1-abc", "acc")
    entries = [("t", "acc", "0.5")] * 200  # long enough for lengths of two bytes
    assert katib.read_get_reply(katib.get_reply(entries)) == entries
    with pytest.raises(ValueError, match="truncated"):
        katib.pb_fields(request[:-3])


def test_katibs_trials_and_experiments_read_as_ours():
    space = spec().params

    def trial(*conditions, metrics=()):
        return {
            "spec": {"parameterAssignments": [{"name": "bs", "value": "32"}, {"name": "opt", "value": "adam"}]},
            "status": {
                "conditions": [{"type": c, "status": "True", "message": f"{c}!"} for c in conditions],
                "observation": {"metrics": [{"name": n, "latest": v} for n, v in metrics]},
            },
        }

    assert katib.assignments(trial(), space) == {"bs": 32, "opt": "adam"}
    assert katib.trial_state(trial("Created", "Running"), "acc") == ("running", None, "")
    assert katib.trial_state(trial("Succeeded", metrics=[("acc", "0.8")]), "acc") == ("complete", 0.8, "")
    assert katib.trial_state(trial("Succeeded"), "acc") == ("failed", None, "reported no acc")
    assert katib.trial_state(trial("MetricsUnavailable"), "acc")[:2] == ("failed", None)
    assert katib.trial_state(trial("Failed"), "acc") == ("failed", None, "its job failed: Failed!")
    assert katib.trial_state(trial("EarlyStopped"), "acc")[0] == "pruned"
    assert katib.trial_state(trial("Killed"), "acc")[0] == "cancelled"
    assert katib.experiment_outcome({"status": {}}) == (False, None, "")
    done = {"status": {"conditions": [{"type": "Succeeded", "status": "True", "message": "goal reached"}]}}
    assert katib.experiment_outcome(done) == (True, True, "goal reached")
