"""The jobs service from Python, with the Kubeflow SDKs' verbs.

Inside a server it needs nothing (the server's own token and the hub's address are in its
environment); elsewhere set ``JUPYTERHUB_API_URL`` and ``JUPYTERHUB_API_TOKEN``, or
``KUBESTUDIO_JOBS_URL``.

    from kubestudio.jobs import JobsClient
    jobs = JobsClient()
    jobs.create(name="mnist", script="projects/mnist/train.py", args=["--lr", "0.1"], nodes=2,
                resources={"gpu": "1(A100)"})
    for line in jobs.logs("mnist", follow=True):
        print(line)
    jobs.wait("mnist")

    def train(lr):
        import torch.distributed as dist
        ...
    jobs.train(func=train, func_args={"lr": 0.1}, nodes=2, resources_per_node={"gpu": 1})
"""

import inspect
import json
import os
import re
import textwrap
import time

from ..services.client import ServiceClient, ServiceError
from .spec import JobSpec

FINAL = ("succeeded", "failed", "cancelled")


def free_name(stem, taken, default, prefix, longest):
    """``stem`` made a valid name (lower-case letters, digits and ``-``, starting with a letter:
    ``prefix`` where it does not; at most ``longest`` characters before its number) with a number
    none of ``taken`` has: ``train-1``, ``train-2``..."""
    stem = re.sub(r"[^a-z0-9-]+", "-", stem.lower()).strip("-") or default
    stem = (prefix + stem if not stem[0].isalpha() else stem)[:longest].rstrip("-")
    n = 1
    while f"{stem}-{n}" in taken:
        n += 1
    return f"{stem}-{n}"


class JobFailed(ServiceError):
    """:meth:`JobsClient.wait` saw the job end otherwise than asked; ``job`` is its record."""

    def __init__(self, job):
        super().__init__(0, f"job {job['name']} {job['status']}: {job.get('message') or 'no reason given'}")
        self.job = job


class JobsClient(ServiceClient):
    service = "jobs"
    url_variable = "KUBESTUDIO_JOBS_URL"
    label = "the jobs service"

    def create(self, spec=None, follow=False, **fields):
        """Submit a job: a :class:`~kubestudio.jobs.spec.JobSpec`, a dict, or the spec's fields as
        keywords (name, script or command, args, nodes, procs_per_node, resources, env, packages,
        framework, runtime, max_runtime, retries, project, image, working_dir). The record; with
        ``follow``, ``(record, lines)``: the job submitted and its log followed in one request,
        ``lines`` as :meth:`logs` with ``follow`` gives them."""
        body = spec.to_json() if isinstance(spec, JobSpec) else dict(spec or {})
        body.update(fields)
        image = os.environ.get("KUBESTUDIO_JOB_IMAGE") or os.environ.get("KUBESTUDIO_IMAGE")
        if not body.get("image") and image:
            body["image"] = image  # inside a server: the job runs in the server's image (or on its Python)
        if not follow:
            return self._call("POST", "api/jobs", json=body).json()
        events = self._events("api/jobs", method="POST", json=body)
        first = next(events)
        return first["job"], self._lines(events)

    def train(
        self,
        func,
        func_args=None,
        name=None,
        nodes=1,
        procs_per_node=1,
        resources_per_node=None,
        packages=None,
        framework="auto",
        **fields,
    ):
        """Run the Python function ``func`` (shipped as its source, as the Kubeflow SDK does) on
        every rank, called with ``func_args`` as keywords. It must import what it uses inside."""
        source = textwrap.dedent(inspect.getsource(func))
        call = f"{func.__name__}(**json.loads({json.dumps(json.dumps(func_args or {}))}))"
        command = ["python", "-c", f"import json\n{source}\n{call}\n"]
        if not name:
            # a notebook cell runs again and again: each run is a job of its own, and says its name
            name = self.free_name(func.__name__)
            print(f"job {name}: {func.__name__} on {nodes} x {procs_per_node} ranks", flush=True)
        body = {
            "name": name,
            "command": command,
            "nodes": nodes,
            "procs_per_node": procs_per_node,
            "framework": framework,
            **fields,
        }
        if resources_per_node:
            body["resources"] = resources_per_node
        if packages:
            body["packages"] = list(packages)
        return self.create(body)

    def free_name(self, stem):
        """``stem`` (a script's or function's name) made a valid job name, with a number none of
        your jobs has yet: ``train-1``, ``train-2``..."""
        return free_name(stem, {job["name"] for job in self.list()}, "job", "j-", 32)

    def list(self, user=None):
        params = {"user": user} if user else {}
        return self._call("GET", "api/jobs", params=params).json()["jobs"]

    def get(self, job):
        """A job's record, by name or id."""
        return self._call("GET", f"api/jobs/{self._id(job)}").json()

    def delete(self, job, forget=False):
        """Cancel a job (nothing happens to a finished one); ``forget`` also removes its record."""
        params = {"forget": "1"} if forget else {}
        return self._call("DELETE", f"api/jobs/{self._id(job)}", params=params).json()

    cancel = delete

    def rerun(self, job, **changes):
        """Submit a copy of the job with ``changes`` (args, name, env, ...); the new record."""
        return self._call("POST", f"api/jobs/{self._id(job)}/rerun", json=changes).json()

    def runtimes(self):
        return self._call("GET", "api/runtimes").json()["runtimes"]

    def limits(self):
        """What one of your jobs may hold: ``{"projects": {name: {"max_gpus"}}, "machine_gpus":
        {type: count} or None}``."""
        return self._call("GET", "api/limits").json()

    def events(self, job):
        return self._call("GET", f"api/jobs/{self._id(job)}/events").json()["events"]

    def logs(self, job, follow=False):
        """Every rank's log (``[worker-1] ...``). Without ``follow``: the text so far. With it: a
        generator of lines until the job ends, with a ``--- status: why`` line whenever its status
        changes (while it waits, it says why)."""
        job_id = self._id(job)
        if not follow:
            return self._call("GET", f"api/jobs/{job_id}/logs").text
        return self._follow(job_id)

    def _follow(self, job_id):
        return self._lines(self._events(f"api/jobs/{job_id}/logs"))

    @staticmethod
    def _lines(events):
        for event in events:
            if event.get("type") == "lines":
                yield from event["lines"]
            elif event.get("type") == "status":
                yield f"--- {event['status']}" + (f": {event['message']}" if event.get("message") else "")
            elif event.get("type") == "result":
                yield f"--- {event['status']}" + (f": {event['message']}" if event.get("message") else "")
                return

    def wait(self, job, status="succeeded", timeout=600, interval=1.0):
        """Wait until the job reaches ``status`` (a name or a tuple of them); its record. A job that
        ends otherwise raises :class:`JobFailed`; TimeoutError after ``timeout`` seconds."""
        wanted = (status,) if isinstance(status, str) else tuple(status)
        found = {}

        def fetch():
            found["id"] = found.get("id") or self._id(job)
            return self.get(found["id"])

        return self._wait_for(fetch, wanted, FINAL, JobFailed, timeout, interval, lambda r: f"job {r['name']}")

    # ------------------------------------------------------------------ servings

    @property
    def _owners(self):  # serving name -> owner, for the URLs (outside a server, where no JUPYTERHUB_USER says it)
        return self.__dict__.setdefault("_serving_owners", {})

    def serve(self, model=None, name=None, spec=None, **fields):
        """Serve a model from your workspace: ``model`` a file or folder (``models/iris``), ``name``
        its name in URLs (default: the folder's), and the spec's other fields as keywords
        (``format``, ``model_class`` for ``class``, ``resources``, ``replicas``, ``env``,
        ``packages``, ``project``, ``image``), or ``from_job="resnet-a", path="output"``: the output
        folder of a job that succeeded, or ``experiment="tune", trial="best"`` (or a trial's
        number): what that trial of a model-class experiment saved, with its class. The record;
        :meth:`wait_ready` waits for it."""
        if "experiment" in fields:
            model, fields["model_class"], experiment = self._experiment_model(
                fields.pop("experiment"), fields.pop("trial", "best")
            )
            name = name or experiment
        body = dict(spec or {})
        if model is not None:
            body["model"] = model
        if fields.get("from_job") and not name and "name" not in body:
            name = fields["from_job"]
        if "model_class" in fields:
            fields["class"] = fields.pop("model_class")
        body.update(fields)
        if name or "name" not in body:
            stem = os.path.splitext(os.path.basename(str(body.get("model", "")).rstrip("/")))[0]
            body["name"] = name or "".join(c if c.isalnum() else "-" for c in stem.lower()).strip("-")[:40] or "model"
        if not body.get("image") and os.environ.get("KUBESTUDIO_IMAGE"):
            body["image"] = os.environ["KUBESTUDIO_IMAGE"]
        return self._call("POST", "api/servings", json=body).json()

    def _experiment_model(self, experiment, trial="best"):
        """(folder, class, experiment name) of what a model-class experiment's trial saved."""
        from .experiments.spec import experiment_from_json

        record = self._call("GET", f"api/experiments/{experiment}").json()
        model = experiment_from_json(record["spec"]).model
        if model is None:
            raise ServiceError(
                400, f"experiment {experiment}: its trials are scripts, not a model_class; serve a file they saved"
            )
        if trial == "best":
            if not record.get("best"):
                raise ServiceError(409, f"experiment {experiment} has no best trial yet ({record['message']})")
            trial = record["best"]["number"]
        return model.save_folder(record["name"], int(trial)), model.serving_class, record["name"]

    def update_serving(self, name, **fields):
        """A new version of a serving (e.g. ``model="models/iris-v2"``): the old one answers until
        the new one is ready. The record (its ``generation`` is one more)."""
        record = self.serving(name)
        body = {**record["spec"], **({"class": fields.pop("model_class")} if "model_class" in fields else {}), **fields}
        body = {k: v for k, v in body.items() if v is not None}
        return self._call("PUT", f"api/servings/{record['id']}", json=body).json()

    def servings(self, user=None):
        params = {"user": user} if user else {}
        return self._call("GET", "api/servings", params=params).json()["servings"]

    def serving(self, name):
        """A serving's record, by name or id."""
        if isinstance(name, dict):
            name = name["id"]
        for record in self.servings():
            if name in (record["name"], record["id"]):
                return self._call("GET", f"api/servings/{record['id']}").json()
        raise ServiceError(404, f"no serving named {name!r}")

    def serving_logs(self, name):
        return self._call("GET", f"api/servings/{self.serving(name)['id']}/logs").text

    def delete_serving(self, name):
        self._call("DELETE", f"api/servings/{self.serving(name)['id']}")

    def wait_ready(self, name, timeout=300, interval=0.2):
        """Wait until the serving answers with its latest version (never an older one); its record.
        A model that cannot load raises :class:`ServiceError` with the reason."""
        deadline = time.monotonic() + timeout
        record = self.serving(name)
        while True:
            if record["ready"]:
                return record
            if record["status"] == "failed":
                raise ServiceError(409, f"serving {record['name']} failed: {record['message']}")
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"serving {record['name']} is still {record['status']} after {timeout} s"
                    + (f" ({record['message']})" if record.get("message") else "")
                )
            time.sleep(interval)
            record = self._call("GET", f"api/servings/{record['id']}").json()

    def predict(self, name, instances, owner=None, v2=False):
        """Predictions of a serving for ``instances`` (a list of rows). ``v2``: through the Open
        Inference Protocol (one FP64/INT64 tensor) instead of KServe's V1; ``owner``: another user's
        serving you may call."""
        url = self.predict_url(name, owner, v2)
        if not v2:
            return self._call("POST", url, json={"instances": instances}).json()["predictions"]
        import numpy as np

        array = np.asarray(instances)
        datatype = "INT64" if array.dtype.kind in "iu" else "FP64" if array.dtype.kind == "f" else "BYTES"
        body = {
            "inputs": [
                {"name": "input-0", "shape": list(array.shape), "datatype": datatype, "data": array.flatten().tolist()}
            ]
        }
        output = self._call("POST", url, json=body).json()["outputs"][0]
        return np.asarray(output["data"]).reshape(output["shape"]).tolist()

    def predict_url(self, name, owner=None, v2=False):
        """The path (under the service) a serving's predictions are asked at."""
        owner = owner or os.environ.get("JUPYTERHUB_USER") or self._owners.get(name)
        if not owner:
            owner = self._owners[name] = self.serving(name)["owner"]
        return (
            f"serve/{owner}/{name}/v2/models/{name}/infer" if v2 else f"serve/{owner}/{name}/v1/models/{name}:predict"
        )

    def _id(self, job):
        """A job's id from its name (your jobs' names are unique), its id, or its record."""
        if isinstance(job, dict):
            return job["id"]
        for record in self.list():
            if job in (record["name"], record["id"]):
                return record["id"]
        raise ServiceError(404, f"no job named {job!r}")
