"""What a jobs backend does, whichever runs the ranks (local processes, Kubernetes objects).

The :class:`~kubestudio.jobs.training.manager.JobManager` owns the record, the queue, retries, the time
limit and the log; a backend only launches one attempt of a job, says how it ended, and cleans
up. Backends are swappable (``JobService.backend_class``) and share the settings on this base.
"""

from dataclasses import dataclass, field
from typing import Callable

from traitlets.config import LoggingConfigurable

from ...spec import JobSpec


@dataclass
class Outcome:
    """How an attempt ended: ``succeeded`` or ``failed``, in plain words, with each replica's exit."""

    status: str
    message: str = ""
    exits: dict = field(default_factory=dict)  # replica -> {"code": int, "reason": str}


@dataclass
class JobRun:
    """One attempt of a job, as a backend sees it."""

    id: str
    owner: str
    slug: str  # the owner's safe slug: folders and Kubernetes names
    spec: JobSpec
    replicas: list  # replica name of each rank, in rank order
    project: object  # kubestudio.spawner.projects.Project
    image: str = ""
    attempt: int = 0
    refs: dict = field(default_factory=dict)  # what the backend made (persisted by the manager)
    on_lines: Callable = None  # on_lines(replica, [text, ...]): lines of a rank's output
    on_refs: Callable = None  # on_refs(refs): save what was made, so a restart can find it
    on_status: Callable = None  # on_status(status, message): running, or why it waits


class JobBackend(LoggingConfigurable):
    name = "base"
    # import path of the ServingBackend that runs servings beside this one (the default of
    # JobService.serving_backend_class); None: this backend serves no models
    serving_backend = None

    async def start(self):
        """Before the first job (watches, discovery)."""

    async def stop(self):
        """When the service stops."""

    async def runtimes(self):
        """Training runtimes a TrainJob may name: [{"name", "framework", "scope"}]."""
        return []

    def image_of(self, run):
        """The image the job runs in, for its record ("" where the backend runs no images)."""
        return run.spec.image or ""

    def gpu_capacity(self):
        """The GPUs one job could hold at most here, by type name (``{"NVIDIA A100": 4}``); None
        where the backend cannot tell (a cluster's nodes come and go: the project's quota is the
        limit there)."""
        return None

    async def check(self, run):
        """Refuse what this backend can never run (SpecError naming the field); nothing is made."""

    # Where the jobs service reads its users' workspaces (the embedded default), a pipeline's
    # ``cache: auto`` keys a task by its inputs' content; elsewhere it cannot.
    reads_workspaces = False

    async def workspace_digests(self, owner, paths):
        """{path: SHA-256 of that file or folder in ``owner``'s workspace, None when missing}; a
        path a link leads through, or too big to hash, raises fdpath.NotHashable."""
        raise NotImplementedError

    async def workspace_has(self, owner, paths):
        """{path: whether that file or folder is in ``owner``'s workspace}, nothing read; a path
        a link leads through raises fdpath.NotHashable."""
        raise NotImplementedError

    async def workspace_text(self, owner, path, limit=4096):
        """The text of the file ``path`` in ``owner``'s workspace (None when missing); raises
        fdpath.NotHashable for a link on the way or more than ``limit`` bytes."""
        raise NotImplementedError

    def reserve(self, run):
        """Take what the attempt holds while it runs (GPUs); raise SpawnRefused when it must wait."""

    def release(self, run):
        """Give back what :meth:`reserve` took."""

    async def run(self, run):
        """Launch the attempt and wait for its end; an :class:`Outcome`."""
        raise NotImplementedError

    async def resume(self, run):
        """After a restart: follow an attempt launched before (``run.refs``) to its end; an
        :class:`Outcome` (failed with the reason when it cannot be followed)."""
        raise NotImplementedError

    async def cancel(self, run):
        """Stop the attempt and remove everything it made; idempotent."""
        raise NotImplementedError
