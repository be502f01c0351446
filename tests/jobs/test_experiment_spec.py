"""The experiment spec (every refusal names its field) and the search behind it, with real Optuna."""

import math

import pytest

from kubestudio.jobs.experiments.search import Search
from kubestudio.jobs.experiments.spec import parse_experiment
from kubestudio.jobs.spec import SpecError, parse_spec, spec_from_json, user_spec

BASE = {
    "name": "tune",
    "objective": {"metric": "val_acc", "direction": "maximize"},
    "space": {"lr": {"type": "loguniform", "low": 1e-4, "high": 1e-1}},
    "trial": {"script": "train.py"},
}


def spec(**changes):
    return parse_experiment({**BASE, **changes})


def test_both_forms_of_a_space_are_taken():
    parsed = spec(
        space={
            "lr": {"type": "loguniform", "low": 1e-4, "high": 1e-1},
            "bs": {"type": "choice", "values": [16, 32, 64]},
            "layers": {"type": "int", "low": 1, "high": 4, "step": 1},
            # NNI's search-space JSON, unchanged
            "opt": {"_type": "choice", "_value": ["sgd", "adam"]},
            "units": {"_type": "randint", "_value": [8, 64]},
            "drop": {"_type": "quniform", "_value": [0.1, 0.5, 0.1]},
            "wd": {"_type": "qloguniform", "_value": [1e-5, 1e-2, 1e-5]},
            "mom": {"_type": "uniform", "_value": [0.8, 0.99]},
            "noise": {"_type": "normal", "_value": [0, 0.1]},
            "eps": {"_type": "loguniform", "_value": [1e-8, 1e-6]},
        }
    )
    params = parsed.params
    assert params["units"].high == 63  # NNI's randint leaves high out; ours includes it
    assert params["drop"].grid() == [0.1, 0.2, 0.3, 0.4, 0.5]
    assert params["opt"].values == ("sgd", "adam")
    assert parsed.to_json()["space"]["noise"] == {"type": "normal", "mu": 0.0, "sigma": 0.1}
    assert parse_experiment(parsed.to_json()) == parsed  # what is stored reads back the same


@pytest.mark.parametrize(
    "changes, said",
    [
        (
            {"space": {"lr": {"type": "gaussian", "low": 0, "high": 1}}},
            "space.lr.type: unknown distribution 'gaussian'",
        ),
        (
            {"space": {"lr": {"_type": "lognormal", "_value": [0, 1]}}},
            "space.lr._type: unknown distribution 'lognormal'",
        ),
        ({"space": {"lr": {"type": "uniform", "low": 1, "high": 1}}}, "space.lr.low: must be less than high (1 >= 1)"),
        (
            {"space": {"lr": {"type": "loguniform", "low": 0, "high": 1}}},
            "space.lr.low: a loguniform range must be above 0",
        ),
        ({"space": {"bs": {"type": "choice", "values": []}}}, "space.bs.values: a choice needs at least one value"),
        ({"space": {"bs": {"_type": "choice", "_value": []}}}, "space.bs._value: a choice needs at least one value"),
        ({"space": {"bs": {"type": "choice", "values": [1, 1]}}}, "space.bs.values: each value once"),
        ({"space": {"n": {"type": "int", "low": 1, "high": 4.5}}}, "space.n.high: an int range takes whole numbers"),
        ({"space": {"x": {"type": "uniform", "low": 0, "high": math.inf}}}, "space.x.high: must be a finite number"),
        ({"space": {"x": {"type": "quniform", "low": 0, "high": 1}}}, "space.x.step: quniform needs a step"),
        ({"space": {"1x": {"type": "uniform", "low": 0, "high": 1}}}, "space.1x: a parameter name is letters"),
        ({"space": {}}, "space: a mapping of parameter name"),
        ({"objective": {"metric": "acc", "direction": "up"}}, "objective.direction: maximize or minimize, not 'up'"),
        ({"objective": {"direction": "maximize"}}, "objective.metric: required"),
        ({"algorithm": "bayes"}, "algorithm: one of tpe, random, grid, cmaes, qmc, not 'bayes'"),
        ({"early_stopping": "asha"}, "early_stopping: one of none, median, hyperband"),
        ({"parallel_trials": 20, "max_trials": 10}, "parallel_trials: at most 16 allowed here"),
        ({"parallel_trials": 5, "max_trials": 3}, "parallel_trials: 5 is more than max_trials (3)"),
        ({"algorithm": "grid"}, "space.lr: the grid algorithm needs a step or a choice for every parameter"),
        (
            {
                "algorithm": "grid",
                "max_trials": 1,
                "space": {
                    "a": {"type": "int", "low": 0, "high": 99},
                    "b": {"type": "int", "low": 0, "high": 99},
                },
            },
            "space: the grid has 10000 points, more than 1000 times max_trials (1)",
        ),
        (
            {"trial": {"script": "train.py", "args": ["--lr", "${learning_rate}"]}},
            "trial.args: ${learning_rate} is not a parameter of the space (lr)",
        ),
        ({"trial": {"script": "train.py", "name": "x"}}, "trial.name: trials are named after the experiment"),
        ({"trial": {"script": "train.py", "gpus": 1}}, "trial.gpus: unknown field"),
        ({"trial": {"script": "train.py", "nodes": 0}}, "trial.nodes: must be at least 1"),
        (
            {"trial": {"script": "train.py", "env": {"KUBESTUDIO_TRIAL_TOKEN": "x"}}},
            "trial.env.KUBESTUDIO_TRIAL_TOKEN: set by the jobs service",
        ),
        ({"trial": "train.py"}, "trial: the job spec of every trial"),
        ({"name": "a-name-that-is-far-too-long-for-trials"}, "name: at most 35 characters"),
        ({"max_trials": 0}, "max_trials: must be at least 1"),
        # Sugar-easy's model class as the trial
        (
            {"trial": {"model_class": "m.py:M", "script": "t.py", "train_dataset": "d"}},
            "trial.script: a model_class trial runs the class",
        ),
        (
            {"trial": {"model_class": "MyModel", "train_dataset": "d"}},
            "trial.model_class: a Python file of your workspace and its class",
        ),
        (
            {"trial": {"model_class": "../m.py:M", "train_dataset": "d"}},
            "trial.model_class: must be a path inside your workspace",
        ),
        ({"trial": {"model_class": "m.py:M"}}, "trial.train_dataset: required with model_class"),
        (
            {"trial": {"model_class": "m.py:M", "train_dataset": "d", "trainparams": {"lr": [1, 2]}}},
            "trial.trainparams.lr: also in space",
        ),
        (
            {"trial": {"model_class": "m.py:M", "train_dataset": "d", "trainparams": {"n": []}}},
            "space.n.values: a choice needs at least one value",
        ),
        ({"colour": "blue"}, "colour: unknown field"),
    ],
)
def test_bad_input_is_refused_naming_the_field(changes, said):
    with pytest.raises(SpecError) as refused:
        spec(**changes)
    assert said in str(refused.value), str(refused.value)


def test_a_trial_gets_its_parameters_as_arguments_or_in_its_placeholders():
    plain = spec(space={"lr": {"type": "uniform", "low": 0, "high": 1}, "bs": {"type": "choice", "values": [32, 64]}})
    assert plain.trial_job(3, {"lr": 0.01, "bs": 32}) == {
        "script": "train.py",
        "args": ["--lr=0.01", "--bs=32"],
        "name": "tune-t3",
    }
    placed = spec(trial={"command": ["python", "t.py", "--rate", "${lr}"], "env": {"LR": "${lr}"}})
    assert placed.trial_job(0, {"lr": 1e-05}) == {
        "command": ["python", "t.py", "--rate", "1e-05"],
        "env": {"LR": "1e-05"},
        "name": "tune-t0",
    }


def test_a_model_class_trial_takes_its_trainparams_lists_as_the_space():
    parsed = parse_experiment(
        {
            **BASE,
            "space": {},
            "trial": {
                "model_class": "models/m.py:MyModel",
                "train_dataset": "data/train",
                "trainparams": {"lr": [0.1, 0.01], "epochs": 3},
                "resources": {"gpu": 1},
            },
        }
    )
    assert [p.name for p in parsed.space] == ["lr"] and parsed.model.fixed == {"epochs": 3}
    assert parsed.model.validate_dataset == "data/train"  # none given: the training set
    job = parsed.trial_job(2, {"lr": 0.1})
    assert job == {"resources": {"gpu": 1}, "script": "models/m.py", "name": "tune-t2"}  # no --lr=: train() gets it
    assert (
        parsed.model.save_folder("tune", 2) == "experiments/tune/trial-2" and parsed.model.serving_class == "m:MyModel"
    )
    assert parse_experiment(parsed.to_json()) == parsed


def test_the_service_gives_a_trial_variables_the_user_cannot():
    """A trial's token and parameters ride in its job's env: kept when the job is read back from
    the store, left out when the user reruns it, refused when the user sends them."""
    service_env = {"KUBESTUDIO_TRIAL_TOKEN": "secret", "KUBESTUDIO_TRIAL_URL": "http://x/report"}
    job = parse_spec({"name": "t", "script": "train.py", "env": {"A": "1"}}, service_env=service_env)
    assert job.env == {"A": "1", **service_env}
    assert spec_from_json(job.to_json()) == job
    assert user_spec(job.to_json())["env"] == {"A": "1"}
    assert job.argv("python3", "/mnt/u/train.py")[:2] == ["python3", "-c"]  # the NNI shim's bootstrap
    with pytest.raises(SpecError, match="env.KUBESTUDIO_TRIAL_TOKEN: set by the jobs service"):
        parse_spec({"name": "t", "script": "train.py", "env": service_env})


def objective(values):
    """A bumpy function of lr and layers with one narrow peak at lr=0.01, layers=3."""
    return (
        -((math.log10(values["lr"]) + 2) ** 2) - 0.3 * (values["layers"] - 3) ** 2 + 0.05 * math.sin(values["lr"] * 500)
    )


def best_after(algorithm, trials=30, seed=7):
    search = Search(
        spec(
            algorithm=algorithm,
            seed=seed,
            max_trials=trials,
            space={
                "lr": {"type": "loguniform", "low": 1e-6, "high": 1.0},
                "layers": {"type": "int", "low": 1, "high": 8},
            },
        )
    )
    best = -math.inf
    for number in range(trials):
        _, values = search.ask(number)
        value = objective(values)
        search.tell(number, "complete", value)
        best = max(best, value)
    return best


def test_tpe_beats_random_in_a_seeded_run():
    assert best_after("tpe") > best_after("random")


def test_a_study_made_again_from_the_store_goes_on_where_it_was():
    parsed = spec(early_stopping="median", max_trials=10, seed=3)
    search = Search(parsed)
    stored = []
    for number in range(4):
        raw, values = search.ask(number)
        for step in range(3):
            search.report(number, step, values["lr"] * (step + 1))
        search.tell(number, "complete", values["lr"] * 3)
        stored.append(
            {
                "number": number,
                "raw": raw,
                "state": "complete",
                "value": values["lr"] * 3,
                "intermediate": {str(s): values["lr"] * (s + 1) for s in range(3)},
            }
        )
    raw, _ = search.ask(4)
    stored.append({"number": 4, "raw": raw, "state": "running", "intermediate": {"0": 0.0}})
    again = Search(parsed, stored)
    assert len(again.study.trials) == 5 and list(again.live) == [4]
    assert again.study.trials[-1].params == raw  # the running trial keeps its parameters
    assert again.report(4, 1, 0.0) is True  # far below the others' median at step 1: stopped
    assert again.report(4, 1, 0.0) is False  # the same step again is not counted twice
