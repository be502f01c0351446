"""The interface every build backend implements (like BinderHub's build executors)."""

from dataclasses import dataclass, field

from traitlets.config import LoggingConfigurable

from ...services.livelog import LineSplitter  # noqa: F401 (the backends import it from here)


class BuildFailed(Exception):
    """The build ran and failed; the message says why (shown to the user)."""


@dataclass
class BuildJob:
    """Everything a backend needs to build and push one image."""

    id: str
    owner: str
    owner_slug: str
    image: str  # full reference, host/path/name:tag
    dockerfile: str  # path relative to the context
    context_dir: str  # local folder (the service's view) holding the context
    context_subpath: str | None = None  # the context inside the owner's workspace (None: generated)
    dockerfile_text: str = ""  # the Dockerfile's text (always set; generated kinds have no context files)
    generated: bool = False  # context_dir is a folder the service wrote (text kinds)
    labels: dict = field(default_factory=dict)
    project: str = ""
    report_ref: object = None  # callable(ref): the backend says where the build runs (pid, pod name)
    readable: list = field(default_factory=list)  # patterns of our repositories the build may pull
    auth_file: str = ""  # the build's own registry account (grants.BuildGrant); empty: the backend's
    service_build: bool = False  # the service's own (a base image): its storage, its registry account

    def set_ref(self, ref):
        if self.report_ref is not None:
            self.report_ref(ref)


class StepCounter:
    """Progress through the Dockerfile's steps, from the builder's log lines.

    The backend's ``step_of(line)`` says which lines start a step (``(n, total)``, or
    ``("next", None)`` for builders that do not number them); the user's Dockerfile sets the
    count: steps a builder adds on its own (buildah counts a LABEL step per --label) never show
    as "7 of 5". The build record and the log stream both count with this.
    """

    def __init__(self, step_of, total, step=0):
        self.step_of, self.total, self.step = step_of, total, step

    def feed(self, line):
        """Whether ``line`` starts a step (then :attr:`step` is its number)."""
        found = self.step_of(line)
        if found is None:
            return False
        number = self.step + 1 if found[0] == "next" else found[0]
        self.step = min(number, self.total) if self.total else number
        return True


@dataclass
class BuildOutcome:
    digest: str


class BuildBackend(LoggingConfigurable):
    """Build ``job`` and push it, calling ``emit(line)`` for each log line.

    :meth:`build` returns a :class:`BuildOutcome` or raises :class:`BuildFailed`; when its task is
    cancelled (cancel, timeout, shutdown) it stops the builder before re-raising.
    """

    name = "base"
    # True: the backend builds from local files, so the service hands it a private snapshot of a
    # workspace context, taken while it is checked and hashed
    snapshot_context = False

    async def start(self):
        """Background work the backend needs (e.g. a cleaner); called once at service start."""

    async def stop(self):
        pass

    async def build(self, job, emit):
        raise NotImplementedError

    async def recover(self, job, record, emit):
        """A build was running when the service stopped: re-attach and return its outcome, or
        raise BuildFailed with the reason it cannot be finished."""
        raise BuildFailed("interrupted: the image service restarted while this build was running")

    def repositories(self, job):
        """Repositories of our registry (paths) the build pushes to and reads besides its image's
        own, e.g. a layer cache: its grant at the registry gate allows them."""
        return []

    def step_of(self, line):
        """(step, total or None) when a log line announces a Dockerfile step (1-based), else None."""
        return None
