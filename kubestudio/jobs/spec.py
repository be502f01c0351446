"""The job spec: what a user asks the jobs service to run, checked in full before anything starts.

One spec for both backends (local processes, Kubernetes). :func:`parse_spec` turns a JSON body
into a :class:`JobSpec` or raises :class:`SpecError` naming the field at fault; the SDK builds the
same dataclass and sends :meth:`JobSpec.to_json`. Light on purpose: notebooks import it.
"""

import dataclasses
import re
import shlex
from dataclasses import dataclass, field

from .. import imageref

FRAMEWORKS = ("auto", "python", "pytorch", "tensorflow", "mpi", "trainjob")
FIELDS = (
    "name",
    "project",
    "image",
    "command",
    "script",
    "args",
    "working_dir",
    "nodes",
    "procs_per_node",
    "resources",
    "env",
    "packages",
    "framework",
    "runtime",
    "max_runtime",
    "retries",
    "ttl_after_finished",
)
NAME_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
NAME_MAX = 40  # room for "-<id>-worker-NN" in a 63-character Kubernetes name
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# what the backends set for the ranks; a user's env must not change them
RESERVED_ENV = frozenset(
    {
        "RANK",
        "WORLD_SIZE",
        "LOCAL_RANK",
        "LOCAL_WORLD_SIZE",
        "NODE_RANK",
        "MASTER_ADDR",
        "MASTER_PORT",
        "TF_CONFIG",
        "CUDA_VISIBLE_DEVICES",
        "NVIDIA_VISIBLE_DEVICES",
        "JUPYTERHUB_API_TOKEN",
    }
)
RESERVED_ENV_PREFIXES = ("PET_", "KUBESTUDIO_", "OMPI_", "PMI_")
_CUBE_GPU = re.compile(r"^\s*(\d+)\s*(?:\(\s*([A-Za-z0-9][-A-Za-z0-9_. ]*?)\s*\))?\s*$")
_RESOURCE_RE = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$")
_CPU_RE = re.compile(r"^(\d+(\.\d+)?|\d+m)$")
_MEMORY_RE = re.compile(r"^\d+(\.\d+)?(Ki|Mi|Gi|Ti|K|M|G|T)?$")
_DURATION_RE = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_PACKAGE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-\[\],<>=!~ ;'\"@/:+]*$")


TRIAL_URL_ENV = "KUBESTUDIO_TRIAL_URL"
# A trial's script runs as `python script.py` would (argv, __main__, its folder first on the path),
# with KubeStudio's `nni` shim after the image's own packages when kubestudio is installed there
TRIAL_BOOTSTRAP = """\
import os, runpy, sys
sys.argv = sys.argv[1:]
sys.path[0] = os.path.dirname(os.path.abspath(sys.argv[0]))
try:
    from kubestudio.trialshim import PATH
    sys.path.append(PATH)
except ImportError:
    pass
if os.environ.get("KUBESTUDIO_TRIAL_MODEL_CLASS"):  # a model class: train, evaluate, save
    from kubestudio.trialshim.modelclass import run_file
    run_file(sys.argv[0])
else:
    runpy.run_path(sys.argv[0], run_name="__main__")
"""


class SpecError(ValueError):
    """A job spec that must not run; ``status`` is the HTTP status (400 bad input, 403 not allowed,
    409 the cluster or machine cannot run it now)."""

    def __init__(self, message, status=400):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Gpus:
    count: int = 0
    type: str = None  # e.g. A100: a node label value on Kubernetes, a name match locally
    resource: str = "nvidia.com/gpu"  # MIG: nvidia.com/mig-1g.10gb


@dataclass(frozen=True)
class Resources:
    """Per node (per pod on Kubernetes)."""

    cpu: str = None
    memory: str = None
    gpu: Gpus = field(default_factory=Gpus)


@dataclass(frozen=True)
class JobSpec:
    name: str
    command: tuple = ()  # argv; or script (+ args)
    script: str = None  # a Python file, relative to the workspace
    args: tuple = ()
    project: str = "public"
    image: str = None  # None: the caller's server's image, else the project's default
    working_dir: str = ""  # relative to the workspace
    nodes: int = 1
    procs_per_node: int = 1
    resources: Resources = field(default_factory=Resources)
    env: dict = field(default_factory=dict)
    packages: tuple = ()
    framework: str = "auto"
    runtime: str = None  # TrainJob: the (Cluster)TrainingRuntime
    max_runtime: int = None  # seconds
    retries: int = 0
    ttl_after_finished: int = None  # seconds

    @property
    def ranks(self):
        return self.nodes * self.procs_per_node

    @property
    def kind(self):
        """The framework that runs it: ``auto`` picks pytorch for several nodes or processes."""
        if self.framework != "auto":
            return self.framework
        return "pytorch" if self.ranks > 1 else "python"

    def argv(self, python="python", script_path=None):
        """The command each rank runs; ``script_path``: where the script is for the ranks (the
        workspace as they see it + ``script``), since they start in ``working_dir``. An
        experiment's trial runs its script with NNI's trial API on its path too (TRIAL_BOOTSTRAP)."""
        if self.command:
            return list(self.command)
        if TRIAL_URL_ENV in self.env:
            return [python, "-c", TRIAL_BOOTSTRAP, script_path or self.script, *self.args]
        return [python, script_path or self.script, *self.args]

    def to_json(self):
        data = dataclasses.asdict(self)
        data["command"], data["args"], data["packages"] = list(self.command), list(self.args), list(self.packages)
        return {k: v for k, v in data.items() if v not in (None, (), [], {})}

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


def replica_names(spec):
    """The name of each rank, in rank order, as its log prefix and its Kubernetes replica:
    ``master-0`` and ``worker-N`` (PyTorchJob), ``chief-0`` and ``worker-N`` (TFJob),
    ``worker-N`` (MPIJob: the launcher runs no rank), ``node-N`` (TrainJob), ``rank-0`` for one process.
    With several processes per node the local rank follows: ``worker-1:3``."""
    kind = spec.kind
    names = []
    for node in range(spec.nodes):
        if kind == "pytorch":
            base = "master-0" if node == 0 else f"worker-{node - 1}"
        elif kind == "tensorflow":
            base = "chief-0" if node == 0 else f"worker-{node - 1}"
        elif kind == "mpi":
            base = f"worker-{node}"
        elif kind == "trainjob":
            base = f"node-{node}"
        else:  # python: one process
            base = "rank-0"
        for local in range(spec.procs_per_node):
            names.append(base if spec.procs_per_node == 1 else f"{base}:{local}")
    return names


# ------------------------------------------------------------------ checking a request


def _int(value, where, minimum=0, maximum=None):
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise SpecError(f"{where}: must be a whole number, not {value!r}")
    if isinstance(value, str):
        if not value.strip().isdigit():
            raise SpecError(f"{where}: must be a whole number, not {value!r}")
        value = int(value)
    if value < minimum:
        raise SpecError(f"{where}: must be at least {minimum}, not {value}")
    if maximum is not None and value > maximum:
        raise SpecError(f"{where}: at most {maximum} allowed here, not {value}")
    return value


def duration(value, where, maximum=None):
    """Seconds from a number or ``"90s"``, ``"30m"``, ``"2h"``, ``"1d"``."""
    if value is None:
        return None
    if isinstance(value, str):
        match = _DURATION_RE.match(value)
        if not match:
            raise SpecError(f"{where}: must be seconds or a duration like 30m, 2h, 1d, not {value!r}")
        value = int(match[1]) * _SECONDS[match[2]]
    seconds = _int(value, where, minimum=1)
    if maximum is not None and seconds > maximum:
        raise SpecError(f"{where}: at most {maximum} s allowed here, not {seconds}")
    return seconds


def _string(value, where, required=False):
    if value is None or value == "":
        if required:
            raise SpecError(f"{where}: required")
        return None
    if not isinstance(value, str):
        raise SpecError(f"{where}: must be a string, not {type(value).__name__}")
    return value


def _strings(value, where):
    if value is None:
        return ()
    if isinstance(value, str):
        try:
            value = shlex.split(value)
        except ValueError as e:  # an unclosed quote, a trailing backslash
            raise SpecError(f"{where}: cannot be split into words as a shell would: {e}") from None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SpecError(f"{where}: must be a list of strings")
    return tuple(value)


def relative_path(value, where):
    """A path inside the workspace, as given (checked again against the real folder later)."""
    value = _string(value, where) or ""
    if value.startswith("/") or any(part == ".." for part in value.split("/")):
        raise SpecError(f"{where}: must be a path inside your workspace (relative, no '..'), not {value!r}")
    return value.strip("/")


def parse_gpus(value, where="resources.gpu"):
    """A GPU request: a count, cube-studio's ``"1(A100)"``, or ``{count, type, resource}``."""
    if value in (None, "", 0):
        return Gpus()
    if isinstance(value, bool):
        raise SpecError(f"{where}: must be a count, 'N(TYPE)' like 1(A100), or a mapping")
    if isinstance(value, int):
        value = {"count": value}
    elif isinstance(value, str):
        match = _CUBE_GPU.match(value)
        if not match:
            raise SpecError(f"{where}: must be a count, 'N(TYPE)' like 1(A100), or a mapping, not {value!r}")
        value = {"count": int(match[1]), **({"type": match[2]} if match[2] else {})}
    if not isinstance(value, dict):
        raise SpecError(f"{where}: must be a count, 'N(TYPE)' like 1(A100), or a mapping")
    unknown = sorted(set(value) - {"count", "type", "resource"})
    if unknown:
        raise SpecError(f"{where}.{unknown[0]}: unknown field (expected count, type, resource)")
    count = _int(value.get("count", 0), f"{where}.count")
    gpu_type = _string(value.get("type"), f"{where}.type")
    resource = _string(value.get("resource"), f"{where}.resource") or "nvidia.com/gpu"
    if not _RESOURCE_RE.match(resource):
        raise SpecError(
            f"{where}.resource: must be an extended resource like nvidia.com/gpu or "
            f"nvidia.com/mig-1g.10gb, not {resource!r}"
        )
    return Gpus(count=count, type=gpu_type, resource=resource)


def parse_resources(value):
    if value is None:
        return Resources()
    if not isinstance(value, dict):
        raise SpecError("resources: must be a mapping with cpu, memory and gpu (per node)")
    unknown = sorted(set(value) - {"cpu", "memory", "gpu"})
    if unknown:
        raise SpecError(f"resources.{unknown[0]}: unknown field (expected cpu, memory, gpu)")
    cpu = value.get("cpu")
    if cpu is not None:
        cpu = str(cpu) if isinstance(cpu, (int, float)) and not isinstance(cpu, bool) else cpu
        if not isinstance(cpu, str) or not _CPU_RE.match(cpu) or float(cpu.rstrip("m") or 0) <= 0:
            raise SpecError(f"resources.cpu: must be cores like 2, 0.5 or 500m, not {value.get('cpu')!r}")
    memory = value.get("memory")
    if memory is not None:
        memory = str(memory) if isinstance(memory, int) and not isinstance(memory, bool) else memory
        if not isinstance(memory, str) or not _MEMORY_RE.match(memory):
            raise SpecError(f"resources.memory: must be a size like 4Gi or 512Mi, not {value.get('memory')!r}")
    return Resources(cpu=cpu, memory=memory, gpu=parse_gpus(value.get("gpu")))


def parse_env(value):
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SpecError("env: must be a mapping of NAME: value")
    env = {}
    for name, item in value.items():
        if not ENV_NAME_RE.match(name):
            raise SpecError(f"env.{name}: not a valid variable name")
        if is_service_env(name):
            raise SpecError(f"env.{name}: set by the jobs service for each rank; choose another name")
        if isinstance(item, bool) or not isinstance(item, (str, int, float)):
            raise SpecError(f"env.{name}: must be a string or a number")
        env[name] = str(item)
    return env


def parse_packages(value):
    packages = _strings(value, "packages") if not isinstance(value, str) else tuple(value.split())
    for i, requirement in enumerate(packages):
        if requirement.startswith("-") or not _PACKAGE_RE.match(requirement):
            raise SpecError(
                f"packages[{i}]: must be a pip requirement like numpy==2.1 (no options), not {requirement!r}"
            )
    return packages


def checked_name(body, fields, what):
    """The ``name`` of a spec ``body`` (a JSON object with only ``fields``), checked: a valid
    Kubernetes name part; SpecError naming the field otherwise."""
    if not isinstance(body, dict):
        raise SpecError(f"the {what} spec must be a JSON object")
    unknown = sorted(set(body) - set(fields))
    if unknown:
        raise SpecError(f"{unknown[0]}: unknown field (expected one of: {', '.join(fields)})")
    name = _string(body.get("name"), "name", required=True)
    if len(name) > NAME_MAX or not NAME_RE.match(name):
        raise SpecError(
            f"name: lower-case letters, digits and '-', starting with a letter, at most {NAME_MAX} "
            f"characters, not {name!r}"
        )
    return name


def is_service_env(name):
    """Whether an environment variable is one the jobs service sets (never the user)."""
    return name in RESERVED_ENV or name.startswith(RESERVED_ENV_PREFIXES)


def parse_spec(body, limits=None, service_env=None):
    """A :class:`JobSpec` from a JSON object, or :class:`SpecError` naming the first bad field.

    ``limits``: ``{"max_nodes", "max_procs_per_node", "max_runtime", "max_retries"}`` of the service.
    ``service_env``: variables the service itself gives the job (an experiment's trial), added to
    the user's ``env`` after it is checked; the user cannot set them.
    """
    limits = limits or {}
    name = checked_name(body, FIELDS, "job")
    command = _strings(body.get("command"), "command")
    script = _string(body.get("script"), "script")
    args = _strings(body.get("args"), "args")
    if bool(command) == bool(script):
        raise SpecError(
            "command: give either command (the program and its arguments) or script (a Python file "
            "in your workspace), not both"
            if command
            else "command: give either command or script (a Python file in your workspace)"
        )
    if command and args:
        raise SpecError("args: only with script; put a command's arguments in command")
    if script is not None:
        script = relative_path(script, "script")
        if not script:
            raise SpecError("script: required")
    framework = _string(body.get("framework"), "framework") or "auto"
    if framework not in FRAMEWORKS:
        raise SpecError(f"framework: must be one of {', '.join(FRAMEWORKS)}, not {framework!r}")
    runtime = _string(body.get("runtime"), "runtime")
    if framework == "trainjob" and not runtime:
        raise SpecError("runtime: a TrainJob needs the name of a training runtime (GET api/runtimes lists them)")
    if runtime and framework != "trainjob":
        raise SpecError("runtime: only with framework trainjob")
    nodes = _int(body.get("nodes", 1), "nodes", minimum=1, maximum=limits.get("max_nodes"))
    procs = _int(body.get("procs_per_node", 1), "procs_per_node", minimum=1, maximum=limits.get("max_procs_per_node"))
    if framework == "python" and nodes * procs > 1:
        raise SpecError("framework: python runs one process; use pytorch, tensorflow or mpi for several")
    image = _string(body.get("image"), "image")
    if image and not imageref.is_valid(image):
        raise SpecError(f"image: not a valid image reference: {image!r}")
    project = _string(body.get("project"), "project") or "public"
    return JobSpec(
        name=name,
        command=command,
        script=script,
        args=args,
        project=project,
        image=image,
        working_dir=relative_path(body.get("working_dir"), "working_dir"),
        nodes=nodes,
        procs_per_node=procs,
        resources=parse_resources(body.get("resources")),
        env={**parse_env(body.get("env")), **(service_env or {})},
        packages=parse_packages(body.get("packages")),
        framework=framework,
        runtime=runtime,
        max_runtime=duration(body.get("max_runtime"), "max_runtime", limits.get("max_runtime")),
        retries=_int(body.get("retries", 0), "retries", maximum=limits.get("max_retries", 10)),
        ttl_after_finished=duration(body.get("ttl_after_finished"), "ttl_after_finished"),
    )


def spec_from_json(data):
    """A stored spec (what :meth:`JobSpec.to_json` wrote) back as a :class:`JobSpec`; the
    variables the service gave it stay (only the service stores them)."""
    env = data.get("env") or {}
    service_env = {k: v for k, v in env.items() if is_service_env(k)}
    return parse_spec({**data, "env": {k: v for k, v in env.items() if k not in service_env}}, service_env=service_env)


def user_spec(data):
    """A stored spec as its user could send it again (a rerun): without the service's variables."""
    env = {k: v for k, v in (data.get("env") or {}).items() if not is_service_env(k)}
    return {**{k: v for k, v in data.items() if k != "env"}, **({"env": env} if env else {})}
