"""GPU workstation mode: find the machine's GPUs and hand them out to servers and jobs.

:class:`GpuLedger` is the one place that knows which server or job holds which GPU. It also
counts servers and GPUs per user and project, so quota checks and GPU allocation happen in one
step under one lock (no other spawn or job can slip in between the check and the reservation).
With a ``path`` the ledger lives in a file that the hub's spawners and the jobs service share
(an exclusive ``flock`` around each read-check-write), so a GPU is never given to a server and a
job at once.
"""

import contextlib
import fcntl
import json
import logging
import os
import re
import subprocess
from dataclasses import asdict, dataclass

from .request import SpawnRefused, check_gpu_quota, check_quota

log = logging.getLogger(__name__)

_NVIDIA_SMI_LINE = re.compile(r"^GPU (?P<index>\d+): (?P<name>.+?)(?: \(UUID: (?P<uuid>[^)]+)\))?$")


@dataclass(frozen=True)
class Gpu:
    id: str  # what goes into CUDA_VISIBLE_DEVICES
    name: str = ""
    uuid: str = ""

    def matches(self, gpu_type):
        """A profile's GPU type (e.g. ``A100``) matches a GPU whose name contains it."""
        return not gpu_type or gpu_type.lower() in self.name.lower()


def parse_nvidia_smi_list(text):
    """Parse ``nvidia-smi -L`` output (``GPU 0: NVIDIA A100-SXM4-80GB (UUID: GPU-...)``)."""
    gpus = []
    for line in text.splitlines():
        match = _NVIDIA_SMI_LINE.match(line.strip())
        if match:
            gpus.append(Gpu(id=match["index"], name=match["name"], uuid=match["uuid"] or ""))
    return gpus


def detect_gpus(command=("nvidia-smi", "-L"), timeout=20):
    """The GPUs ``nvidia-smi -L`` lists; none when it is missing or fails."""
    try:
        out = subprocess.run(list(command), capture_output=True, text=True, timeout=timeout, check=True).stdout
    except FileNotFoundError:
        log.info("No GPUs: %s is not installed", command[0])
        return []
    except (subprocess.SubprocessError, OSError) as e:
        log.warning("No GPUs: %s failed: %s", " ".join(command), e)
        return []
    return parse_nvidia_smi_list(out)


def gpus_from_config(items):
    """GPUs from configuration: ``"0"``, ``"0:A100"`` or ``{"id": "0", "name": "A100"}``."""
    gpus = []
    for item in items:
        if isinstance(item, dict):
            if "id" not in item:
                raise ValueError(f"GPU entry {item!r}: needs an 'id'")
            gpus.append(Gpu(id=str(item["id"]), name=str(item.get("name", "")), uuid=str(item.get("uuid", ""))))
        else:
            gpu_id, _, name = str(item).partition(":")
            if not gpu_id:
                raise ValueError(f"GPU entry {item!r}: needs an id before ':'")
            gpus.append(Gpu(id=gpu_id, name=name))
    ids = [g.id for g in gpus]
    if len(set(ids)) != len(ids):
        raise ValueError(f"GPU ids must be unique, got {ids}")
    return gpus


SERVER, JOB = "server", "job"
LEDGER_FILE = "gpu-ledger.json"


def ledger_path(data_dir):
    """The GPU ledger the hub's local servers and the jobs service share, in the hub's data folder."""
    return os.path.join(data_dir, LEDGER_FILE)


@dataclass(frozen=True)
class Allocation:
    user: str
    server: str  # the server's name; for a job, the job's id
    project: str
    gpus: tuple = ()  # GPU ids
    kind: str = SERVER  # SERVER or JOB


class GpuLedger:
    """Servers and jobs on this machine and the GPUs each one holds.

    Without ``path`` the ledger is this process's alone. With it, every change happens under an
    exclusive lock on ``<path>.lock`` and reads the file first, so several processes (the hub, the
    jobs service) see each other's servers and jobs.
    """

    def __init__(self, gpus, path=None):
        self.gpus = list(gpus)
        self.path = path
        self._allocations = {}  # key -> Allocation

    @staticmethod
    def key(user, server, kind=SERVER):
        return f"{user}/{server}" if kind == SERVER else f"job:{server}"

    # ---------------------------------------------------------------- the shared file

    @contextlib.contextmanager
    def _locked(self, write=False):
        if not self.path:
            yield
            return
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._allocations = self._read()
            yield
            if write:
                self._write()
        finally:
            os.close(fd)  # closing drops the lock

    def _read(self):
        try:
            with open(self.path, encoding="utf-8") as f:
                items = json.load(f)
        except FileNotFoundError:
            return {}
        except ValueError:
            log.error("GPU ledger %s is not valid JSON; starting from an empty one", self.path)
            return {}
        allocations = {}
        for item in items:
            allocation = Allocation(**{**item, "gpus": tuple(item.get("gpus", ()))})
            allocations[self.key(allocation.user, allocation.server, allocation.kind)] = allocation
        return allocations

    def _write(self):
        tmp = f"{self.path}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump([asdict(a) for a in self._allocations.values()], f)
        os.replace(tmp, self.path)

    # ---------------------------------------------------------------- reading

    def allocations(self):
        with self._locked():
            return dict(self._allocations)

    def held_gpu_ids(self):
        with self._locked():
            return self._held()

    def _held(self):
        return {g for a in self._allocations.values() for g in a.gpus}

    def free_gpus(self, gpu_type=None):
        with self._locked():
            return self._free(gpu_type)

    def _free(self, gpu_type=None):
        held = self._held()
        return [g for g in self.gpus if g.id not in held and g.matches(gpu_type)]

    def missing_reason(self, gpu_type=None):
        """Why no server or job can get a GPU (of this type) here, or None when this machine has one."""
        if any(g.matches(gpu_type) for g in self.gpus):
            return None
        kind = f" of type {gpu_type}" if gpu_type else ""
        return f"this machine has no GPU{kind}"

    def usage(self, user, project):
        """(servers, gpus) that ``user`` holds in ``project``: GPUs of servers and jobs together."""
        with self._locked():
            return self._usage(user, project)

    def _usage(self, user, project):
        mine = [a for a in self._allocations.values() if a.user == user and a.project == project]
        return sum(1 for a in mine if a.kind == SERVER), sum(len(a.gpus) for a in mine)

    # ---------------------------------------------------------------- changing

    def reserve(self, user, server, project, gpu_count=0, gpu_type=None, dry_run=False, kind=SERVER):
        """Check the project's quotas and take ``gpu_count`` free GPUs, or raise SpawnRefused.

        ``project`` is a :class:`~kubestudio.spawner.projects.Project`. For a server the project's
        server limit counts too; for a job (``kind=JOB``, ``server`` = the job's id) only GPUs.
        With ``dry_run`` every check runs but nothing is taken.
        """
        key = self.key(user, server, kind)
        with self._locked(write=not dry_run):
            if key in self._allocations:
                what = f"server {server or '(default)'} of {user}" if kind == SERVER else f"job {server}"
                raise SpawnRefused(f"{what} is already running", status=409)
            servers, gpus = self._usage(user, project.name)
            if kind == SERVER:
                check_quota(project, gpu_count, servers_in_use=servers, gpus_in_use=gpus)
            else:
                check_gpu_quota(project, gpu_count, gpus_in_use=gpus)
            chosen = ()
            if gpu_count:
                missing = self.missing_reason(gpu_type)
                if missing:
                    raise SpawnRefused(f"gpus: {missing}", status=409)
                matching = [g for g in self.gpus if g.matches(gpu_type)]
                free = self._free(gpu_type)
                kind_words = f" of type {gpu_type}" if gpu_type else ""
                if len(free) < gpu_count:
                    raise SpawnRefused(
                        f"gpus: not enough free GPUs{kind_words}: {gpu_count} asked, {len(free)} free of "
                        f"{len(matching)}; stop a server or a job, or ask for fewer GPUs",
                        status=409,
                    )
                chosen = tuple(g.id for g in free[:gpu_count])
            allocation = Allocation(user=user, server=server, project=project.name, gpus=chosen, kind=kind)
            if not dry_run:
                self._allocations[key] = allocation
            return allocation

    def restore(self, allocation):
        """Record a server or job that was running before the hub or service restarted."""
        key = self.key(allocation.user, allocation.server, allocation.kind)
        with self._locked(write=True):
            others = {g for k, a in self._allocations.items() if k != key for g in a.gpus}
            clash = others & set(allocation.gpus)
            if clash:
                log.warning("GPUs %s of %s are also held by another server or job", sorted(clash), key)
            unknown = set(allocation.gpus) - {g.id for g in self.gpus}
            if unknown:
                log.warning("%s holds GPUs %s that this machine no longer lists", key, sorted(unknown))
            self._allocations[key] = allocation

    def release(self, user, server, kind=SERVER):
        with self._locked(write=True):
            return self._allocations.pop(self.key(user, server, kind), None)

    def forget(self, kind, keep=()):
        """Drop every allocation of ``kind`` except the keys in ``keep``: what a process that just
        started does for what it owns (servers or jobs that ended while it was down), before it
        restores the ones still running."""
        with self._locked(write=True):
            for key in [k for k, a in self._allocations.items() if a.kind == kind and k not in keep]:
                del self._allocations[key]
