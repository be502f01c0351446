"""Spawners, profiles, projects and per-user storage."""

from .local import LocalWorkspaceSpawner

__all__ = ["LocalWorkspaceSpawner"]
