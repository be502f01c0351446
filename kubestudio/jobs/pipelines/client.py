"""Pipelines from Python: runs of DAGs whose tasks are jobs.

Inside a server it needs nothing (the server's own token and the hub's address are in its
environment), like :class:`~kubestudio.jobs.JobsClient`::

    from kubestudio.jobs.pipelines.client import PipelinesClient
    pipelines = PipelinesClient()
    run = pipelines.run("projects/mnist/pipeline.yaml", params={"epochs": 5})
    pipelines.wait(run)
    pipelines.logs(run, "train")
    pipelines.rerun(run, from_task="evaluate")   # keeps prepare and train's results
"""

import os

import yaml

from ...services.client import ServiceClient, ServiceError

FINAL = ("succeeded", "failed", "cancelled")


class RunFailed(ServiceError):
    """:meth:`PipelinesClient.wait` saw the run end otherwise than asked."""

    def __init__(self, run):
        super().__init__(0, f"run {run['id']} of {run['pipeline']} {run['status']}: {run.get('message') or ''}")
        self.run = run


class PipelinesClient(ServiceClient):
    service = "jobs"
    url_variable = "KUBESTUDIO_JOBS_URL"
    label = "the jobs service"

    def run(self, spec, params=None):
        """Start a run: ``spec`` a mapping, YAML text, the path of a YAML file, or a ``@pipeline``
        (:mod:`kubestudio.pipelines`); ``params``
        override the pipeline's defaults. Its record (with every task pending or running)."""
        return self._call("POST", "api/pipelines/runs", json=self._body(spec, params)).json()

    def schedule(self, spec, params=None):
        """Run a pipeline on its ``schedule`` (cron, timezone, catchup, start, max_active_runs,
        depends_on_past), replacing a schedule of the same name; its record (``next_fire``)."""
        return self._call("POST", "api/pipelines/schedules", json=self._body(spec, params)).json()

    def export_argo(self, spec, params=None):
        """``{"workflow": ..., "cron_workflow": ... (with a schedule)}``: the Argo objects that run
        the pipeline as this hub's jobs would run, for ``argo submit``."""
        return self._call("POST", "api/pipelines/export", json=self._body(spec, params)).json()

    def schedules(self):
        return self._call("GET", "api/pipelines/schedules").json()["schedules"]

    def unschedule(self, name):
        """Stop the schedule of pipeline ``name`` (or the schedule's id); its runs stay."""
        return self._call("DELETE", f"api/pipelines/schedules/{name}").json()

    def _body(self, spec, params):
        if hasattr(spec, "compile"):  # a @pipeline of kubestudio.pipelines
            spec = spec.compile()
        if isinstance(spec, str) and "\n" not in spec and spec.endswith((".yaml", ".yml", ".json")):
            with open(os.path.expanduser(spec), encoding="utf-8") as f:
                spec = yaml.safe_load(f)
        elif isinstance(spec, str):
            spec = yaml.safe_load(spec)
        image = os.environ.get("KUBESTUDIO_JOB_IMAGE") or os.environ.get("KUBESTUDIO_IMAGE")
        if image and isinstance(spec, dict) and isinstance(spec.get("tasks"), dict):
            # inside a server, as a job from there: each task runs in the server's image
            for task in spec["tasks"].values():
                if isinstance(task, dict) and isinstance(task.get("job"), dict) and not task["job"].get("image"):
                    task["job"] = {**task["job"], "image": image}
        return {"spec": spec, "params": params or {}}

    def get(self, run):
        """A run's record: status, message, params and each task's status, job, outputs."""
        return self._call("GET", f"api/pipelines/runs/{self._ref(run)}").json()

    def list(self, pipeline=None):
        """Your runs, newest first (of one pipeline when named), their tasks counted by state."""
        params = {"pipeline": pipeline} if pipeline else {}
        return self._call("GET", "api/pipelines/runs", params=params).json()["runs"]

    runs = list

    def logs(self, run, task):
        """The log of a task's job (its last attempt's)."""
        return self._call("GET", f"api/pipelines/runs/{self._ref(run)}/tasks/{task}/log").text

    def rerun(self, run, from_task=None):
        """A new run from ``from_task`` (default: the tasks that did not succeed), keeping what is upstream."""
        body = {"from": from_task} if from_task else {}
        return self._call("POST", f"api/pipelines/runs/{self._ref(run)}/rerun", json=body).json()

    def cancel(self, run, forget=False):
        """Cancel a run and its tasks' jobs; ``forget`` also removes its records."""
        params = {"forget": "1"} if forget else {}
        return self._call("DELETE", f"api/pipelines/runs/{self._ref(run)}", params=params).json()

    def wait(self, run, status="succeeded", timeout=3600, interval=1.0):
        """Wait until the run reaches ``status``; its record. One that ends otherwise raises
        :class:`RunFailed`; TimeoutError after ``timeout`` seconds."""
        wanted = (status,) if isinstance(status, str) else tuple(status)
        return self._wait_for(
            lambda: self.get(run), wanted, FINAL, RunFailed, timeout, interval, lambda r: f"run {r['id']}"
        )

    @staticmethod
    def _ref(run):
        return run["id"] if isinstance(run, dict) else str(run)


def tasks_table(run):
    """A run's tasks as rows of text, in the pipeline's order."""
    rows = []
    for t in run["tasks"]:
        kept = f" (kept from {t['reused_from']})" if t.get("reused_from") else ""
        outputs = " ".join(f"{k}={v}" for k, v in (t.get("outputs") or {}).items())
        rows.append(f"{t['name']:<18} {t['status']:<10} {t['attempts']:>2} {outputs}{kept} {t['message']}".rstrip())
    return rows
