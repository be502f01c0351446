"""Build contexts: a folder of the user's own workspace, checked and hashed.

No path comes from raw input unchecked: the context must be a relative path that stays inside the
owner's workspace (``<workspaces_root>/<user slug>``) after every symlink is resolved, and no file
in it may be a symlink that points outside. The digest covers names, modes and contents (less
what .dockerignore leaves out), so the same files always give the same default tag. Local builds
run on a snapshot taken while hashing: what is built is what was checked, even if the user
changes the folder (or swaps it for a link) meanwhile.
"""

import hashlib
import os
import re
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


def read_dockerignore(folder):
    """Patterns of the context's .dockerignore as [(negated, pattern)] (Docker's syntax)."""
    path = os.path.join(folder, ".dockerignore")
    if not os.path.isfile(path) or os.path.islink(path):
        return []
    patterns = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            negated = line.startswith("!")
            pattern = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
            if pattern not in ("", "."):
                patterns.append((negated, pattern))
    return patterns


def _ignored(rel, patterns):
    """Whether ``rel`` is left out by the patterns (the last matching one decides, as in Docker)."""
    if rel in ("Dockerfile", ".dockerignore"):
        return False  # always sent, as Docker does
    parts = rel.split("/")
    candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    excluded = False
    for negated, pattern in patterns:
        regex = _pattern_regex(pattern)
        if any(regex.match(c) for c in candidates):
            excluded = not negated
    return excluded


def _pattern_regex(pattern):
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out + "$")


def scan_context(folder, max_bytes, snapshot=None):
    """(digest, total bytes, file count) of a context, honouring its .dockerignore.

    With ``snapshot`` (a new folder), the files are also copied there as they are hashed, so the
    build uses exactly what was checked: no file opened follows a link, and a link that points
    outside the context is refused (RequestError), as is a context over ``max_bytes`` (413).
    """
    h = hashlib.sha256()
    total = files = 0
    root = os.path.realpath(folder)
    patterns = read_dockerignore(root)
    if snapshot:
        os.makedirs(snapshot, mode=0o700)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, root)
        if rel_dir != "." and _ignored(rel_dir, patterns) and not any(negated for negated, _ in patterns):
            dirnames[:] = []
            continue
        for name in sorted(filenames) + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            if _ignored(rel, patterns):
                continue
            st = os.lstat(path)
            target = os.path.join(snapshot, rel) if snapshot else None
            if target:
                os.makedirs(os.path.dirname(target), exist_ok=True)
            if stat.S_ISLNK(st.st_mode):
                if not _inside(os.path.realpath(path), root):
                    raise RequestError(f"context: {rel} is a link to outside the build context")
                link = os.readlink(path)
                h.update(f"L {rel} {link}\0".encode())
                if target:
                    os.symlink(link, target)
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            total += st.st_size
            files += 1
            if total > max_bytes:
                raise RequestError(f"context: larger than the limit of {_human(max_bytes)} "
                                   f"(leave data out of the build folder, or list it in .dockerignore)", 413)
            h.update(f"F {rel} {st.st_mode & 0o777:o} {st.st_size}\0".encode())
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            except OSError as e:
                raise RequestError(f"context: {rel} cannot be read: {e.strerror}") from None
            with os.fdopen(fd, "rb") as f:
                out = open(target, "wb") if target else None
                try:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        h.update(chunk)
                        if out:
                            out.write(chunk)
                finally:
                    if out:
                        out.close()
                        os.chmod(target, st.st_mode & 0o777)
    return h.hexdigest(), total, files


def _inside(path, root):
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _human(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
