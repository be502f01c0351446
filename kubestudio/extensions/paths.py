"""Paths as the hub services want them, from a terminal's or a file browser's path.

The services take a path relative to the user's workspace (``/mnt/<user>``), or an archives path
as it is; the CLI and the JupyterLab extension both turn what the user pointed at into that here,
so the same folder means the same thing from every door.
"""

import os


class PathRefused(ValueError):
    """A path outside what the services may be given; the message says why."""


def _inside(real, root):
    return real == root or real.startswith(root + os.sep)


def workspace_relative(path, what="the build context"):
    """``path`` (absolute, or relative to the current folder) relative to the user's workspace
    ($KUBESTUDIO_WORKSPACE); a relative path is taken as relative to the workspace where that
    variable is not set."""
    workspace = os.environ.get("KUBESTUDIO_WORKSPACE")
    if workspace:
        workspace = os.path.realpath(workspace)
        real = os.path.realpath(os.path.abspath(path))
        if _inside(real, workspace):
            return os.path.relpath(real, workspace)
        raise PathRefused(f"{path} is not inside your workspace {workspace}: {what} must be there")
    if not os.path.isabs(path):
        return path  # taken as relative to the workspace already
    raise PathRefused(f"{path}: give the folder relative to your workspace (KUBESTUDIO_WORKSPACE is not set)")


def user_path(path, what="a log folder"):
    """A path as the services want it: relative to the workspace, or an archives path as it is."""
    archives = os.environ.get("KUBESTUDIO_ARCHIVES")
    if archives:
        real, root = os.path.realpath(os.path.abspath(path)), os.path.realpath(archives)
        if _inside(real, root):
            return real
    return workspace_relative(path, what)
