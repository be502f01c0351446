"""Spawners, profiles, projects and per-user storage."""

from .local import LocalWorkspaceSpawner
from .workspace import WorkspaceSpawner

__all__ = ["LocalWorkspaceSpawner", "WorkspaceSpawner"]
