"""Projects: JupyterHub groups whose ``properties`` decide scheduling, mounts and quotas.

Group properties understood (all optional)::

    display_name:  "Vision team"
    description:   "..."
    node_selector: "org=vision,zone=a"          # or a mapping {"org": "vision"}
    tolerations:   "gpu=true:NoSchedule"         # or a list of Kubernetes toleration objects
    volume_mount:  "kubeflow-user-workspace(pvc):/mnt/;data/aidata(hostpath):/aidata;4G(memory):/dev/shm"
    max_gpus:      4        # GPUs one user may hold at once in this project
    max_servers:   2        # servers one user may run at once in this project
    profiles:      [cpu, gpu-a100]   # profiles allowed in this project (default: all)

``volume_mount`` uses cube-studio's syntax: ``source(kind):/mount/path`` entries separated by
``;`` or ``,`` where kind is ``pvc``, ``hostpath``, ``memory``, ``configmap`` or ``secret``.
Every user is in the ``public`` project. Parse errors name the project, the entry and the reason.
"""

import difflib
import re
from dataclasses import dataclass, field

from ..quantities import parse_bytes

PUBLIC_PROJECT = "public"
VOLUME_KINDS = ("pvc", "hostpath", "memory", "configmap", "secret")
TOLERATION_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")

# DNS-1123 subdomain, the rule for PVC, ConfigMap and Secret names
_OBJECT_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# label keys: optional DNS prefix + '/' + name
_LABEL_NAME_RE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
_LABEL_PREFIX_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_VOLUME_RE = re.compile(r"^(?P<source>[^()]+)\((?P<kind>[A-Za-z]+)\):(?P<path>.+)$")

_PROPERTY_KEYS = {
    "display_name",
    "description",
    "node_selector",
    "tolerations",
    "volume_mount",
    "max_gpus",
    "max_servers",
    "profiles",
}


class ProjectError(ValueError):
    """A project whose settings cannot be used."""

    def __init__(self, project, message):
        self.project = project
        super().__init__(f"project {project!r}: {message}")


@dataclass(frozen=True)
class VolumeMount:
    kind: str  # one of VOLUME_KINDS
    source: str  # claim/configmap/secret name, host path, or "" for memory
    mount_path: str
    size: int = None  # bytes, for memory volumes

    def __str__(self):
        source = self.source if self.kind != "memory" else str(self.size)
        return f"{source}({self.kind}):{self.mount_path}"


@dataclass(frozen=True)
class Project:
    name: str
    display_name: str = ""
    description: str = ""
    node_selector: dict = field(default_factory=dict)
    tolerations: tuple = ()
    volume_mounts: tuple = ()
    max_gpus: int = None
    max_servers: int = None
    profiles: tuple = None  # None: every profile

    @property
    def label(self):
        return self.display_name or self.name

    def allows_profile(self, slug):
        return self.profiles is None or slug in self.profiles


def _check_label_key(key):
    prefix, _, name = key.rpartition("/")
    if not name or len(name) > 63 or not _LABEL_NAME_RE.match(name):
        return False
    if prefix and (len(prefix) > 253 or not _LABEL_PREFIX_RE.match(prefix)):
        return False
    return True


def _check_label_value(value):
    return len(value) <= 63 and bool(_LABEL_NAME_RE.match(value))


def parse_node_selector(value):
    """``"k=v,k2=v2"`` or a mapping -> dict of label key to value."""
    if value is None or value == "":
        return {}
    if isinstance(value, dict):
        pairs = list(value.items())
    elif isinstance(value, str):
        pairs = []
        for entry in re.split(r"[,;]", value):
            entry = entry.strip()
            if not entry:
                continue
            if "=" not in entry:
                raise ValueError(f"node_selector entry {entry!r}: expected key=value")
            key, _, val = entry.partition("=")
            pairs.append((key.strip(), val.strip()))
    else:
        raise ValueError("node_selector: must be 'key=value,...' or a mapping")
    selector = {}
    for key, val in pairs:
        if not isinstance(key, str) or not _check_label_key(key):
            raise ValueError(f"node_selector entry {key!r}: not a valid label key")
        if not isinstance(val, str) or not _check_label_value(val):
            raise ValueError(f"node_selector entry {key}={val!r}: not a valid label value")
        selector[key] = val
    return selector


def _parse_toleration_string(entry):
    # kubectl taint syntax: key[=value]:Effect, or key:Effect, or key (any effect)
    key_value, sep, effect = entry.partition(":")
    key, eq, val = key_value.partition("=")
    toleration = {"key": key.strip()}
    if eq:
        toleration.update(operator="Equal", value=val.strip())
    else:
        toleration["operator"] = "Exists"
    if sep:
        toleration["effect"] = effect.strip()
    return toleration


def _check_toleration(t, where):
    allowed = {"key", "operator", "value", "effect", "tolerationSeconds"}
    unknown = set(t) - allowed
    if unknown:
        raise ValueError(f"{where}: unknown field {sorted(unknown)[0]!r}")
    operator = t.get("operator", "Equal")
    if operator not in ("Equal", "Exists"):
        raise ValueError(f"{where}: operator must be Equal or Exists, not {operator!r}")
    key = t.get("key", "")
    if key and not _check_label_key(key):
        raise ValueError(f"{where}: not a valid key {key!r}")
    if not key and operator != "Exists":
        raise ValueError(f"{where}: an empty key needs operator Exists")
    if operator == "Exists" and t.get("value"):
        raise ValueError(f"{where}: operator Exists takes no value")
    effect = t.get("effect")
    if effect and effect not in TOLERATION_EFFECTS:
        raise ValueError(f"{where}: effect must be one of {', '.join(TOLERATION_EFFECTS)}, not {effect!r}")
    seconds = t.get("tolerationSeconds")
    if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, int)):
        raise ValueError(f"{where}: tolerationSeconds must be an integer")
    if seconds is not None and effect != "NoExecute":
        raise ValueError(f"{where}: tolerationSeconds only applies to effect NoExecute")
    return {k: v for k, v in t.items() if v is not None}


def parse_tolerations(value):
    """``"key=value:NoSchedule,key2:NoExecute"`` or a list of toleration mappings."""
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        entries = [e.strip() for e in re.split(r"[,;]", value) if e.strip()]
        raw = [(_parse_toleration_string(e), f"tolerations entry {e!r}") for e in entries]
    elif isinstance(value, list):
        raw = []
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                raise ValueError(f"tolerations[{i}]: must be a mapping")
            raw.append((dict(item), f"tolerations[{i}]"))
    else:
        raise ValueError("tolerations: must be 'key=value:Effect,...' or a list of mappings")
    return tuple(_check_toleration(t, where) for t, where in raw)


def _check_mount_path(path, where):
    if not path.startswith("/"):
        raise ValueError(f"{where}: mount path must be absolute, not {path!r}")
    if ".." in path.split("/"):
        raise ValueError(f"{where}: mount path must not contain '..'")
    normalized = "/" + "/".join(p for p in path.split("/") if p)
    if normalized == "/":
        raise ValueError(f"{where}: cannot mount over /")
    return normalized


def parse_volume_mounts(value):
    """Parse cube-studio ``volume_mount`` syntax into :class:`VolumeMount` tuples."""
    if value is None or value == "":
        return ()
    if isinstance(value, list):
        entries = [str(e).strip() for e in value]
    elif isinstance(value, str):
        entries = [e.strip() for e in re.split(r"[;,]", value)]
    else:
        raise ValueError("volume_mount: must be a string like 'name(pvc):/path;...' or a list")
    mounts = []
    paths = {}
    for entry in entries:
        if not entry:
            continue
        where = f"volume_mount entry {entry!r}"
        match = _VOLUME_RE.match(entry)
        if not match:
            raise ValueError(f"{where}: expected source(kind):/mount/path")
        source = match["source"].strip()
        kind = match["kind"].lower()
        if kind not in VOLUME_KINDS:
            raise ValueError(
                f"{where}: unknown volume kind {match['kind']!r} (expected one of: {', '.join(VOLUME_KINDS)})"
            )
        mount_path = _check_mount_path(match["path"].strip(), where)
        size = None
        if kind == "memory":
            try:
                size = parse_bytes(source)
            except ValueError as e:
                raise ValueError(f"{where}: memory size {e}") from None
            source = ""
        elif kind == "hostpath":
            # cube-studio writes host paths relative to /, e.g. data/aidata(hostpath):/aidata
            parts = [p for p in source.split("/") if p]
            if not parts or ".." in parts:
                raise ValueError(f"{where}: host path must name a folder and not contain '..'")
            source = "/" + "/".join(parts)
        elif not _OBJECT_NAME_RE.match(source) or len(source) > 253:
            raise ValueError(f"{where}: {source!r} is not a valid {kind} name")
        if mount_path in paths:
            raise ValueError(f"{where}: mount path {mount_path} is already used by {paths[mount_path]!r}")
        paths[mount_path] = entry
        mounts.append(VolumeMount(kind=kind, source=source, mount_path=mount_path, size=size))
    return tuple(mounts)


def _quota(properties, key):
    value = properties.get(key)
    if value is None:
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{key}: must be an integer >= 0, not {value!r}")
    return value


def parse_project(name, properties=None):
    """Build a :class:`Project` from a group's name and properties.

    Raises :class:`ProjectError` naming the project, the entry and the reason.
    """
    properties = properties or {}
    if not isinstance(properties, dict):
        raise ProjectError(name, "properties must be a mapping")
    try:
        unknown = sorted(set(properties) - _PROPERTY_KEYS)
        # unknown keys are allowed (groups may carry other settings), but catch typos of ours
        for key in unknown:
            close = difflib.get_close_matches(key, sorted(_PROPERTY_KEYS), n=1, cutoff=0.85)
            if close:
                raise ValueError(f"{key}: unknown setting, did you mean {close[0]!r}?")
        profiles = properties.get("profiles")
        if profiles is not None:
            if isinstance(profiles, str):
                profiles = [p.strip() for p in profiles.split(",") if p.strip()]
            if not isinstance(profiles, list) or not all(isinstance(p, str) for p in profiles):
                raise ValueError("profiles: must be a list of profile slugs")
            profiles = tuple(profiles)
        for key in ("display_name", "description"):
            if not isinstance(properties.get(key, ""), str):
                raise ValueError(f"{key}: must be a string")
        return Project(
            name=name,
            display_name=properties.get("display_name", ""),
            description=properties.get("description", ""),
            node_selector=parse_node_selector(properties.get("node_selector")),
            tolerations=parse_tolerations(properties.get("tolerations")),
            volume_mounts=parse_volume_mounts(properties.get("volume_mount")),
            max_gpus=_quota(properties, "max_gpus"),
            max_servers=_quota(properties, "max_servers"),
            profiles=profiles,
        )
    except ValueError as e:
        raise ProjectError(name, str(e)) from None


def user_projects(groups):
    """Projects a user may spawn in, from their JupyterHub groups.

    ``groups`` is an iterable of objects with ``name`` and ``properties`` (JupyterHub's
    ``orm.Group``). Returns ``{name: Project or ProjectError}`` with ``public`` always present,
    so a project with broken settings is shown with its reason instead of hiding it.
    """
    projects = {}
    for group in groups:
        try:
            projects[group.name] = parse_project(group.name, group.properties)
        except ProjectError as e:
            projects[group.name] = e
    projects.setdefault(PUBLIC_PROJECT, Project(name=PUBLIC_PROJECT, display_name="Public"))
    # public first, then the rest by name
    return dict(sorted(projects.items(), key=lambda kv: (kv[0] != PUBLIC_PROJECT, kv[0])))


async def hub_projects(hub, identity):
    """``{name: Project or ProjectError}`` of a caller's groups, as a hub service sees them through
    the hub's API (``hub``: :class:`~kubestudio.services.hubapi.HubAPI`); ``public`` always."""
    projects = {}
    for name in sorted(set(identity.get("groups") or []) | {PUBLIC_PROJECT}):
        properties = await hub.group_properties(name)
        if properties is None and name != PUBLIC_PROJECT:
            continue
        try:
            projects[name] = parse_project(name, properties or {})
        except ProjectError as e:
            projects[name] = e
    return projects
