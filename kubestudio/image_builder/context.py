"""Build contexts: a folder of the user's own workspace, checked and hashed.

No path comes from raw input unchecked: the context must be a relative path that stays inside the
owner's workspace (``<workspaces_root>/<user slug>``) after every symlink is resolved, and no file
in it may be a symlink that points outside. The digest covers names, modes and contents, so the
same files always give the same default tag.
"""

import hashlib
import os
import stat

from .spec import RequestError


def resolve_context(workspace, context, dockerfile="Dockerfile"):
    """(absolute context folder, Dockerfile path relative to it); RequestError on a bad path."""
    if os.path.isabs(context) or context.startswith("~"):
        raise RequestError(f"context: {context!r} must be a folder relative to your workspace, not an absolute path")
    parts = [p for p in context.replace("\\", "/").split("/") if p not in ("", ".")]
    if ".." in parts:
        raise RequestError(f"context: {context!r} must stay inside your workspace ('..' is not allowed)")
    root = os.path.realpath(workspace)
    if not os.path.isdir(root):
        raise RequestError("context: your workspace does not exist yet (start a server once)", 404)
    folder = os.path.realpath(os.path.join(root, *parts))
    if not _inside(folder, root):
        raise RequestError(f"context: {context!r} is a link that leads outside your workspace")
    if not os.path.isdir(folder):
        raise RequestError(f"context: {context!r} is not a folder in your workspace", 404)
    if os.path.isabs(dockerfile) or ".." in dockerfile.replace("\\", "/").split("/"):
        raise RequestError(f"dockerfile: {dockerfile!r} must be a path inside the context")
    path = os.path.realpath(os.path.join(folder, dockerfile))
    if not _inside(path, folder):
        raise RequestError(f"dockerfile: {dockerfile!r} is a link that leads outside the context")
    if not os.path.isfile(path):
        raise RequestError(f"dockerfile: there is no {dockerfile!r} in {context!r}", 404)
    return folder, os.path.relpath(path, folder)


def scan_context(folder, max_bytes):
    """(digest, total bytes, file count) of a context; RequestError if too big or a link leaves it."""
    h = hashlib.sha256()
    total = files = 0
    root = os.path.realpath(folder)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames) + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                target = os.path.realpath(path)
                if not _inside(target, root):
                    raise RequestError(f"context: {rel} is a link to outside the build context")
                h.update(f"L {rel} {os.readlink(path)}\0".encode())
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            total += st.st_size
            files += 1
            if total > max_bytes:
                raise RequestError(f"context: larger than the limit of {_human(max_bytes)} "
                                   f"(leave data out of the build folder, or use .dockerignore)", 413)
            h.update(f"F {rel} {st.st_mode & 0o777:o} {st.st_size}\0".encode())
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest(), total, files


def _inside(path, root):
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _human(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
