"""KubeSpawner's pod reflector with our pods indexed by owner, so a quota check reads one user's
pods in a project instead of scanning every pod the hub watches (a burst of N spawns was N x N).
"""

from kubespawner.spawner import PodReflector
from traitlets import observe

from ..names import LABEL_USER, PROJECT_ANNOTATION


def owner_of(pod):
    """(user slug, project) of a workspace pod of ours; None for any other pod."""
    metadata = pod.get("metadata") or {}
    user = (metadata.get("labels") or {}).get(LABEL_USER)
    if not user:
        return None
    return user, (metadata.get("annotations") or {}).get(PROJECT_ANNOTATION)


class PodsByOwner(dict):
    """``namespace/name -> pod``, as the reflector keeps it, plus :attr:`owned`:
    ``(user slug, project) -> {key: pod}`` kept current on every change the reflector makes
    (``[key] = pod`` for added or modified pods, ``pop(key)`` for deleted ones)."""

    def __init__(self, items=()):
        super().__init__()
        self.owned = {}
        for key, pod in dict(items).items():
            self[key] = pod

    def __setitem__(self, key, pod):
        self._unindex(key)
        super().__setitem__(key, pod)
        owner = owner_of(pod)
        if owner:
            self.owned.setdefault(owner, {})[key] = pod

    def __delitem__(self, key):
        self._unindex(key)
        super().__delitem__(key)

    def pop(self, key, *default):
        self._unindex(key)
        return super().pop(key, *default)

    def update(self, *args, **kwargs):
        for key, pod in dict(*args, **kwargs).items():
            self[key] = pod

    def setdefault(self, key, default=None):
        if key not in self:
            self[key] = default
        return self[key]

    def popitem(self):
        key = next(reversed(self))
        return key, self.pop(key)

    def clear(self):
        super().clear()
        self.owned.clear()

    def _unindex(self, key):
        old = self.get(key)
        owner = owner_of(old) if old is not None else None
        bucket = self.owned.get(owner) if owner else None
        if bucket is not None:
            bucket.pop(key, None)
            if not bucket:
                del self.owned[owner]


class OwnedPodReflector(PodReflector):
    """KubeSpawner's PodReflector whose pods are a :class:`PodsByOwner` (a full re-list replaces
    the dict; the new one is indexed once)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # every pod KubeStudio made for a user (servers, training jobs, builds), whatever labels the
        # spawner passes: KubeSpawner writes its own managed-by over ours, so the user label it is
        self.label_selector = LABEL_USER

    @observe("resources")
    def _index_pods(self, change):
        if not isinstance(change.new, PodsByOwner):
            self.resources = PodsByOwner(change.new)
