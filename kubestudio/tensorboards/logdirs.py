"""The log folders a board shows: checked inside the user's workspace or archives, compared in
one board through a tree of links (so TensorBoard's fast loader reads them as runs; never
``--logdir_spec``), and the key that makes the same request give the same board.

A folder is named as in the notebook: relative to the workspace (``runs/exp1``), or by its path
in the server (``/mnt/<user>/runs/exp1``, ``/archives/<user>/old/exp0``). Errors name the field
(``logdirs[1]: ...``).
"""

import hashlib
import json
import os
import re

MAX_LOGDIRS = 20


class LogdirError(ValueError):
    """A folder that cannot be shown; the message names the field. ``status`` is the HTTP code."""

    def __init__(self, message, status=400):
        super().__init__(message)
        self.status = status


def _inside(root, path, lexical=False):
    where = os.path.normpath if lexical else os.path.realpath
    real_root = where(root)
    real = where(path)
    return real if real == real_root or real.startswith(real_root + os.sep) else None


def resolve(logdirs, folders, mounts, lexical=False):
    """``[(link name, real folder)]`` for the requested folders.

    ``folders``: where the user's workspace and archives are for whatever runs TensorBoard (their
    ``workspace`` and ``archives`` attributes: folders on this machine for a local process, the
    mount paths for a pod); ``mounts``: (workspace path, archives path) as the user's server shows
    them. ``lexical``: the folders are not on this machine, so paths are checked by their text
    (no ``..`` out of the workspace) and not for existence.
    """
    if isinstance(logdirs, str):
        logdirs = [logdirs]
    if not isinstance(logdirs, list) or not logdirs:
        raise LogdirError("logdirs: give one folder or a list of folders (relative to your workspace)")
    if len(logdirs) > MAX_LOGDIRS:
        raise LogdirError(f"logdirs: at most {MAX_LOGDIRS} folders in one board, not {len(logdirs)}")
    workspace_mount, archives_mount = (m.rstrip("/") for m in mounts)
    resolved, names = [], set()
    for i, logdir in enumerate(logdirs):
        field = f"logdirs[{i}]"
        if not isinstance(logdir, str) or not logdir.strip():
            raise LogdirError(f"{field}: must be a folder path, not {logdir!r}")
        text = logdir.strip()
        if text == archives_mount or text.startswith(archives_mount + "/"):
            root, relative, where = folders.archives, text[len(archives_mount) :].lstrip("/"), "archives"
        elif text == workspace_mount or text.startswith(workspace_mount + "/"):
            root, relative, where = folders.workspace, text[len(workspace_mount) :].lstrip("/"), "workspace"
        elif text.startswith("/"):
            raise LogdirError(
                f"{field}: {text!r} is outside your workspace ({workspace_mount}) and archives ({archives_mount})"
            )
        else:
            root, relative, where = folders.workspace, text, "workspace"
        real = _inside(root, os.path.join(root, relative), lexical)
        if real is None:
            raise LogdirError(f"{field}: {text!r} leads outside your {where}")
        if not lexical and not os.path.isdir(real):
            raise LogdirError(f"{field}: no folder {relative or '.'!r} in your {where}", 404)
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", relative.strip("/")) or where
        if where == "archives":
            name = f"archives_{name}" if relative else "archives"
        base, n = name, 2
        while name in names:
            name, n = f"{base}_{n}", n + 1
        names.add(name)
        resolved.append((name, real))
    return resolved


def board_key(owner, resolved, options=None):
    """The same user, folders and options give the same key (the same board)."""
    text = json.dumps(
        {"owner": owner, "logdirs": sorted(real for _, real in resolved), "options": options or {}}, sort_keys=True
    )
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def link_tree(folder, resolved):
    """Make ``folder`` hold one link per log folder (the runs TensorBoard shows), and nothing else."""
    os.makedirs(folder, mode=0o700, exist_ok=True)
    wanted = dict(resolved)
    for entry in os.listdir(folder):
        path = os.path.join(folder, entry)
        if entry not in wanted or not os.path.islink(path) or os.readlink(path) != wanted[entry]:
            if os.path.islink(path) or os.path.isfile(path):
                os.unlink(path)
    for name, real in resolved:
        path = os.path.join(folder, name)
        if not os.path.islink(path):
            os.symlink(real, path)
    return folder
