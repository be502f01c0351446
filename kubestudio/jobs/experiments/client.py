"""Experiments from Python: hyperparameter searches whose trials are jobs.

Inside a server it needs nothing (the server's own token and the hub's address are in its
environment), like :class:`~kubestudio.jobs.JobsClient`::

    from kubestudio.jobs import ExperimentsClient
    experiments = ExperimentsClient()
    experiments.tune(
        objective="projects/mnist/train.py",        # a script, or a Python function
        space={"lr": {"type": "loguniform", "low": 1e-4, "high": 1e-1},
               "bs": {"type": "choice", "values": [32, 64]}},
        metric="val_acc", direction="maximize", max_trials=40, parallel_trials=4,
        resources_per_trial={"gpu": 1},
    )
    experiments.wait("train")
    experiments.best("train")      # {"number", "value", "params", "job"}
"""

import inspect
import textwrap

from ...services.client import ServiceClient, ServiceError
from ..client import JobsClient, free_name
from .spec import ExperimentSpec

FINAL = ("succeeded", "failed", "cancelled")


class ExperimentFailed(ServiceError):
    """:meth:`ExperimentsClient.wait` saw the experiment end otherwise than asked."""

    def __init__(self, experiment):
        super().__init__(
            0,
            f"experiment {experiment['name']} {experiment['status']}: {experiment.get('message') or 'no reason given'}",
        )
        self.experiment = experiment


class ExperimentsClient(ServiceClient):
    service = "jobs"
    url_variable = "KUBESTUDIO_JOBS_URL"
    label = "the jobs service"

    def create(self, spec=None, **fields):
        """Run an experiment: a spec (a dict, or an :class:`ExperimentSpec` made with
        ``parse_experiment``) or its fields as keywords (name, objective, space, algorithm, seed,
        early_stopping, max_trials, parallel_trials, max_failed_trials, max_runtime, trial). Its
        record."""
        body = spec.to_json() if isinstance(spec, ExperimentSpec) else dict(spec or {})
        body.update(fields)
        return self._call("POST", "api/experiments", json=body).json()

    def tune(
        self,
        objective,
        space,
        metric,
        direction="maximize",
        name=None,
        max_trials=10,
        parallel_trials=1,
        resources_per_trial=None,
        goal=None,
        algorithm="tpe",
        early_stopping="none",
        packages=None,
        **fields,
    ):
        """Search ``space`` for the parameters that make ``metric`` best. ``objective``: a script in
        your workspace (it gets the parameters as ``--name=value`` arguments and through
        :func:`kubestudio.trial.params`), or a Python function called with the parameters as
        keywords that returns the metric's value (shipped as its source, like
        :meth:`JobsClient.train`: it must import what it uses inside). Other ``fields`` go to the
        spec (seed, max_failed_trials, max_runtime, ...)."""
        if callable(objective):
            source = textwrap.dedent(inspect.getsource(objective))
            call = (
                "from kubestudio import trial\n"
                f"value = {objective.__name__}(**trial.params())\n"
                f"trial.report(**{{{metric!r}: value}})\n"
            )
            trial = {"command": ["python", "-c", f"{source}\n{call}"]}
            stem = objective.__name__
        else:
            trial = {"script": str(objective)}
            stem = str(objective).rsplit("/", 1)[-1].rsplit(".", 1)[0]
        if resources_per_trial:
            trial["resources"] = resources_per_trial
        if packages:
            trial["packages"] = list(packages)
        body = {
            "name": name or self.free_name(stem),
            "objective": {"metric": metric, "direction": direction, **({"goal": goal} if goal is not None else {})},
            "space": space,
            "algorithm": algorithm,
            "early_stopping": early_stopping,
            "max_trials": max_trials,
            "parallel_trials": parallel_trials,
            "trial": trial,
            **fields,
        }
        if not name:
            print(f"experiment {body['name']}: {max_trials} trials of {stem}, {parallel_trials} at a time", flush=True)
        return self.create(body)

    def free_name(self, stem):
        """``stem`` made a valid experiment name, with a number none of your experiments has yet
        (short enough for its trials' ``-t<number>``)."""
        return free_name(stem, {e["name"] for e in self.list()}, "experiment", "x-", 28)

    def list(self, user=None):
        params = {"user": user} if user else {}
        return self._call("GET", "api/experiments", params=params).json()["experiments"]

    def get(self, experiment):
        """An experiment's record, by name or id: status, message, counts of trials, best."""
        return self._call("GET", f"api/experiments/{self._ref(experiment)}").json()

    def trials(self, experiment):
        """Every trial as a dict (number, params, state, value, intermediate, metrics, job, ...),
        in order; :meth:`to_dataframe` makes a pandas DataFrame of them."""
        return self._call("GET", f"api/experiments/{self._ref(experiment)}/trials").json()["trials"]

    def to_dataframe(self, experiment):
        import pandas  # only here: the SDK does not need it

        rows = []
        for t in self.trials(experiment):
            rows.append(
                {
                    "number": t["number"],
                    "state": t["state"],
                    "value": t["value"],
                    **{f"params_{k}": v for k, v in t["params"].items()},
                }
            )
        return pandas.DataFrame(rows)

    def best(self, experiment):
        """The best trial so far: ``{"number", "value", "params", "job"}``, or None."""
        return self.get(experiment).get("best")

    def delete(self, experiment, forget=False):
        """Cancel an experiment and its running trials; ``forget`` also removes its records."""
        params = {"forget": "1"} if forget else {}
        return self._call("DELETE", f"api/experiments/{self._ref(experiment)}", params=params).json()

    cancel = delete

    def logs(self, experiment, trial, follow=False):
        """The log of trial number ``trial`` (its job's log; ``follow`` as JobsClient.logs)."""
        for row in self.trials(experiment):
            if row["number"] == int(trial):
                if row.get("katib_trial"):  # Katib made it: its pods' log, as the cluster has it
                    return self._call("GET", f"api/experiments/{self._ref(experiment)}/trials/{int(trial)}/log").text
                if not row["job"]:
                    raise ServiceError(404, f"trial {trial} has no job ({row['message'] or row['state']})")
                return self._jobs().logs(row["job"], follow=follow)
        raise ServiceError(404, f"experiment {experiment} has no trial {trial}")

    def _jobs(self):
        return JobsClient(url=self.url, token=self.token, hub_api_url=self.hub_api_url)

    def wait(self, experiment, status="succeeded", timeout=3600, interval=2.0):
        """Wait until the experiment reaches ``status``; its record. One that ends otherwise raises
        :class:`ExperimentFailed`; TimeoutError after ``timeout`` seconds."""
        wanted = (status,) if isinstance(status, str) else tuple(status)
        return self._wait_for(
            lambda: self.get(experiment),
            wanted,
            FINAL,
            ExperimentFailed,
            timeout,
            interval,
            lambda r: f"experiment {r['name']}",
        )

    @staticmethod
    def _ref(experiment):
        if isinstance(experiment, dict):
            return experiment["id"]
        return str(experiment)


def trials_table(trials, direction="maximize"):
    """Trials as rows of text, best first (finished ones by value; then the rest by number)."""
    done = [t for t in trials if t["value"] is not None and t["state"] == "complete"]
    done.sort(key=lambda t: t["value"], reverse=direction == "maximize")
    rest = sorted((t for t in trials if t not in done), key=lambda t: t["number"])
    rows = []
    for t in done + rest:
        value = "" if t["value"] is None else f"{t['value']:.6g}"
        params = " ".join(f"{k}={f'{v:.6g}' if isinstance(v, float) else v}" for k, v in t["params"].items())
        rows.append((str(t["number"]), t["state"], value, params, t["message"] or ""))
    return rows
