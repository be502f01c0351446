"""GPU workstation mode: find the machine's GPUs and hand them out to servers.

:class:`ServerLedger` is the one place that knows which server holds which GPU. It also counts
servers per user and project, so quota checks and GPU allocation happen in one synchronous step
(no other spawn can slip in between the check and the reservation).
"""

import logging
import re
import subprocess
from dataclasses import dataclass

from .request import SpawnRefused, check_quota

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
        out = subprocess.run(
            list(command), capture_output=True, text=True, timeout=timeout, check=True
        ).stdout
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


@dataclass(frozen=True)
class Allocation:
    user: str
    server: str
    project: str
    gpus: tuple = ()  # GPU ids


class ServerLedger:
    """Running servers on this machine and the GPUs each one holds."""

    def __init__(self, gpus):
        self.gpus = list(gpus)
        self._allocations = {}  # key -> Allocation

    @staticmethod
    def key(user, server):
        return f"{user}/{server}"

    def allocations(self):
        return dict(self._allocations)

    def held_gpu_ids(self):
        return {g for a in self._allocations.values() for g in a.gpus}

    def free_gpus(self, gpu_type=None):
        held = self.held_gpu_ids()
        return [g for g in self.gpus if g.id not in held and g.matches(gpu_type)]

    def missing_reason(self, gpu_type=None):
        """Why no server can get a GPU (of this type) here, or None when this machine has one."""
        if any(g.matches(gpu_type) for g in self.gpus):
            return None
        kind = f" of type {gpu_type}" if gpu_type else ""
        return f"this machine has no GPU{kind}"

    def usage(self, user, project):
        """(servers, gpus) that ``user`` holds in ``project``."""
        mine = [a for a in self._allocations.values() if a.user == user and a.project == project]
        return len(mine), sum(len(a.gpus) for a in mine)

    def reserve(self, user, server, project, gpu_count=0, gpu_type=None, dry_run=False):
        """Check the project's quotas and take ``gpu_count`` free GPUs, or raise SpawnRefused.

        ``project`` is a :class:`~kubestudio.spawner.projects.Project`. With ``dry_run`` every
        check runs but nothing is taken.
        """
        key = self.key(user, server)
        if key in self._allocations:
            raise SpawnRefused(f"server {server or '(default)'} of {user} is already running", status=409)
        servers, gpus = self.usage(user, project.name)
        check_quota(project, gpu_count, servers_in_use=servers, gpus_in_use=gpus)
        chosen = ()
        if gpu_count:
            missing = self.missing_reason(gpu_type)
            if missing:
                raise SpawnRefused(f"gpus: {missing}", status=409)
            matching = [g for g in self.gpus if g.matches(gpu_type)]
            free = self.free_gpus(gpu_type)
            kind = f" of type {gpu_type}" if gpu_type else ""
            if len(free) < gpu_count:
                raise SpawnRefused(
                    f"gpus: not enough free GPUs{kind}: {gpu_count} asked, {len(free)} free of "
                    f"{len(matching)}; stop a server or ask for fewer GPUs",
                    status=409,
                )
            chosen = tuple(g.id for g in free[:gpu_count])
        allocation = Allocation(user=user, server=server, project=project.name, gpus=chosen)
        if not dry_run:
            self._allocations[key] = allocation
        return allocation

    def restore(self, allocation):
        """Record a server that was running before the hub restarted."""
        key = self.key(allocation.user, allocation.server)
        clash = self.held_gpu_ids() & set(allocation.gpus)
        if clash:
            log.warning("GPUs %s of %s are also held by another server", sorted(clash), key)
        unknown = set(allocation.gpus) - {g.id for g in self.gpus}
        if unknown:
            log.warning("%s holds GPUs %s that this machine no longer lists", key, sorted(unknown))
        self._allocations[key] = allocation

    def release(self, user, server):
        return self._allocations.pop(self.key(user, server), None)
