"""What a serving backend does, whichever runs the model runtime (a local process, Kubernetes
objects).

The :class:`~kubestudio.jobs.serving.manager.ServingManager` owns the record, supervision,
restarts and rolling versions; a backend checks a spec against what it can run, starts one version
of a serving's runtime (:meth:`ServingBackend.launch`, given a :class:`ServingRun`), says whether
it still runs, and stops it. Backends are swappable (``JobService.serving_backend_class``), each
beside the jobs backend whose folders, GPUs or cluster client it shares.

What :meth:`ServingBackend.launch` returns, a *runtime*, is the backend's own object with:

- ``url``: where the service's proxy sends a request now (None while no replica is ready);
- ``headers``: what the runtime asks of its caller (a local runtime's secret), may be empty;
- ``generation``: the serving's version it runs;
- ``to_json()``: what the record keeps, so :meth:`ServingBackend.from_refs` finds it again after
  the service restarts.
"""

from dataclasses import dataclass, field

from traitlets.config import LoggingConfigurable

from ...training.backends.base import JobBackend


class ServingFailed(Exception):
    """The runtime did not start or stopped; ``load_error``: the model itself cannot load (no use
    starting it again until the spec changes)."""

    def __init__(self, message, load_error=False):
        super().__init__(message)
        self.load_error = load_error


@dataclass
class ServingRun:
    """One version of a serving, as a backend starts it."""

    id: str
    owner: str
    spec: object  # kubestudio.jobs.serving.spec.ServeSpec
    path: str  # the model's path, as :meth:`ServingBackend.check` gave it
    model_format: str  # sklearn, pytorch or custom
    generation: int  # the serving's version this runtime serves
    gpus: list = field(default_factory=list)  # the GPUs :meth:`ServingBackend.reserve` took
    project: object = None  # kubestudio.spawner.projects.Project: where it is scheduled


class ServingBackend(LoggingConfigurable):
    name = "base"
    # the jobs backend this one works beside (JobService.backend_class must be one)
    job_backend_class = JobBackend
    # True: a new version replaces the old one by itself (a cluster's rollout); False: the manager
    # stops the old runtime once the new one is ready
    rolls_itself = False
    # True: runtimes stay up when the service stops, and its next start adopts them
    outlives_the_service = False

    def __init__(self, jobs, **kwargs):
        if not isinstance(jobs, self.job_backend_class):
            raise TypeError(
                f"JobService.serving_backend_class: {type(self).__name__} works beside a "
                f"{self.job_backend_class.__name__}, and the jobs backend is a {type(jobs).__name__}"
            )
        self.jobs = jobs  # the jobs backend: users' folders, the GPU ledger, the cluster client
        super().__init__(**kwargs)

    async def connect(self):
        """Before the first serving is started or adopted (watches)."""

    async def close(self):
        """When the service stops."""

    async def check(self, owner, spec):
        """``(model path, format)`` of a spec, or SpecError naming the field; nothing is started."""
        raise NotImplementedError

    def reserve(self, serving_id, owner, project, spec):
        """Take the GPUs the serving holds while it exists: their ids (SpawnRefused when none are
        free)."""
        return []

    def restore(self, serving_id, owner, project, gpus):
        """After a restart: hold again the GPUs :meth:`reserve` took before."""

    def release(self, serving_id, owner):
        """Give back what :meth:`reserve` took."""

    async def launch(self, run):
        """Start ``run`` (a :class:`ServingRun`); its runtime once it answers ready, else
        :class:`ServingFailed` saying why."""
        raise NotImplementedError

    def from_refs(self, refs):
        """The runtime a record's ``to_json()`` describes (None for none)."""
        raise NotImplementedError

    def alive(self, runtime):
        """Whether ``runtime`` still runs (cheap: called every half second per serving)."""
        raise NotImplementedError

    async def stop(self, runtime):
        """Stop ``runtime`` and remove what it made; idempotent, None does nothing."""
        raise NotImplementedError

    async def logs(self, serving_id, size=None):
        """The end of the runtime's log (``size`` characters at most, where the backend can cut)."""
        return ""

    def last_lines(self, serving_id, count=3):
        """Why the runtime stopped, in a line: the end of its log."""
        return "no output"
