"""Spawners, profiles, projects and per-user storage.

The spawners are imported when first used (``kubestudio.spawner.WorkspaceSpawner``): the hub
services import this package's light modules (projects, storage, requests) and must not pay for
KubeSpawner and the Kubernetes client at every start.
"""

__all__ = ["LocalWorkspaceSpawner", "WorkspaceSpawner"]


def __getattr__(name):
    if name == "LocalWorkspaceSpawner":
        from .local import LocalWorkspaceSpawner

        return LocalWorkspaceSpawner
    if name == "WorkspaceSpawner":
        from .workspace import WorkspaceSpawner

        return WorkspaceSpawner
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
