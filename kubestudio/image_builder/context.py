"""Build contexts: a folder of the user's own workspace, checked and hashed.

What is checked is what is read. The context is resolved once, component by component, each one
opened with ``O_NOFOLLOW`` relative to the directory already opened (``openat``), so a folder
swapped for a link between the check and the read cannot lead anywhere: a link met on the way is
followed by hand and must stay inside the owner's workspace (``<workspaces_root>/<user slug>``).
Scanning works on that open directory the same way: every file and folder is opened relative to
its parent's descriptor, never by a path, and a link in the context must point inside it.

The digest covers names, modes and contents (less what .dockerignore leaves out), so the same files
always give the same default tag. Local builds run on a snapshot written while hashing: what is
built is what was checked, even if the user changes the folder (or swaps it for a link) meanwhile.
A file that disappears while it is scanned is left out, never an error.
"""

import errno
import hashlib
import os
import posixpath
import re
import stat

from ..quantities import human_bytes
from .spec import MAX_DOCKERFILE, RequestError

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # NONBLOCK: a FIFO never hangs us
MAX_LINKS = 40  # as the kernel's own limit on links followed in one lookup


class OpenedContext:
    """A context folder held open: ``fd`` (a directory descriptor), ``subpath`` (its link-free path
    in the workspace), ``dockerfile`` (the Dockerfile's link-free path in the context) and
    ``dockerfile_text`` (read through the descriptor). Close it (or use ``with``)."""

    def __init__(self, fd, subpath, dockerfile, dockerfile_text):
        self.fd, self.subpath, self.dockerfile, self.dockerfile_text = fd, subpath, dockerfile, dockerfile_text

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _split(path):
    return [p for p in path.replace("\\", "/").split("/") if p not in ("", ".")]


def _walk(root_fd, root_path, parts, field, label, leads_outside):
    """Open the directory ``parts`` below ``root_fd`` -> (fd, link-free parts). Links are followed by
    hand and may not leave the root; ``root_path`` is the root's real path (absolute links into it
    are allowed). The caller owns the returned fd."""
    stack = [os.dup(root_fd)]  # stack[i]: the directory of names[:i]
    names = []
    links = 0
    todo = list(parts)
    try:
        while todo:
            part = todo.pop(0)
            if part == "..":
                if len(stack) == 1:
                    raise RequestError(f"{field}: {label!r} {leads_outside}")
                os.close(stack.pop())
                names.pop()
                continue
            try:
                fd = os.open(part, DIR_FLAGS, dir_fd=stack[-1])
            except OSError as e:
                if e.errno not in (errno.ELOOP, errno.ENOTDIR):
                    if e.errno == errno.ENOENT:
                        raise RequestError(f"{field}: {label!r} is not a folder in your workspace", 404) from None
                    raise RequestError(f"{field}: {label!r} cannot be opened: {e.strerror}") from None
                target = _link_target(part, stack[-1])
                if target is None:
                    raise RequestError(f"{field}: {label!r} is not a folder in your workspace", 404) from None
                links += 1
                if links > MAX_LINKS:
                    raise RequestError(f"{field}: {label!r} has too many links") from None
                if target.startswith("/"):
                    inside = posixpath.relpath(posixpath.normpath(target), root_path)
                    if inside == ".." or inside.startswith("../"):
                        raise RequestError(f"{field}: {label!r} {leads_outside}") from None
                    while len(stack) > 1:
                        os.close(stack.pop())
                    names.clear()
                    todo = _split(inside) + todo
                else:
                    todo = _split(target) + todo
                continue
            stack.append(fd)
            names.append(part)
        return os.dup(stack[-1]), names
    finally:
        for fd in stack:
            os.close(fd)


def _link_target(name, dir_fd):
    """The target of link ``name`` in ``dir_fd``, or None if it is not a link (or is gone)."""
    try:
        return os.readlink(name, dir_fd=dir_fd)
    except OSError:
        return None


def open_context(workspace, context, dockerfile="Dockerfile"):
    """The context folder ``context`` of ``workspace``, opened and checked; RequestError on a bad path."""
    if not isinstance(context, str) or os.path.isabs(context) or context.startswith("~"):
        raise RequestError(f"context: {context!r} must be a folder relative to your workspace, not an absolute path")
    parts = _split(context)
    if ".." in parts:
        raise RequestError(f"context: {context!r} must stay inside your workspace ('..' is not allowed)")
    if os.path.isabs(dockerfile) or ".." in _split(dockerfile):
        raise RequestError(f"dockerfile: {dockerfile!r} must be a path inside the context")
    root = os.path.realpath(workspace)  # the workspace itself is the admin's path, not the user's
    try:
        root_fd = os.open(root, DIR_FLAGS)
    except OSError:
        raise RequestError("context: your workspace does not exist yet (start a server once)", 404) from None
    try:
        fd, names = _walk(root_fd, root, parts, "context", context, "is a link that leads outside your workspace")
    finally:
        os.close(root_fd)
    try:
        path, text = _read_dockerfile(fd, dockerfile, context)
    except BaseException:
        os.close(fd)
        raise
    return OpenedContext(fd, "/".join(names) or ".", path, text)


def _read_dockerfile(context_fd, dockerfile, context):
    """(link-free path in the context, text) of the Dockerfile, read through descriptors."""
    parts = _split(dockerfile) or ["Dockerfile"]
    missing = RequestError(f"dockerfile: there is no {dockerfile!r} in {context!r}", 404)
    outside = "is a link that leads outside the context"
    for _ in range(MAX_LINKS):
        try:
            folder_fd, names = _walk(context_fd, "/", parts[:-1], "dockerfile", dockerfile, outside)
        except RequestError as e:
            raise missing if e.status == 404 else e from None
        try:
            try:
                fd = os.open(parts[-1], FILE_FLAGS, dir_fd=folder_fd)
            except OSError as e:
                target = _link_target(parts[-1], folder_fd) if e.errno == errno.ELOOP else None
                if target is None:
                    raise missing from None
                if target.startswith("/"):
                    raise RequestError(f"dockerfile: {dockerfile!r} {outside}") from None
                parts = _split(posixpath.normpath("/".join(names + [target])))
                if not parts or parts[0] == "..":
                    raise RequestError(f"dockerfile: {dockerfile!r} {outside}") from None
                continue
        finally:
            os.close(folder_fd)
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise missing
            data = f.read(MAX_DOCKERFILE + 1)
        if len(data) > MAX_DOCKERFILE:
            raise RequestError(f"dockerfile: {dockerfile!r} is longer than {MAX_DOCKERFILE // 1024} KiB", 413)
        return "/".join(names + [parts[-1]]), data.decode("utf-8", errors="replace")
    raise RequestError(f"dockerfile: {dockerfile!r} has too many links")


def read_dockerignore(folder_fd):
    """Patterns of the context's .dockerignore as [(negated, compiled pattern)] (Docker's syntax)."""
    try:
        fd = os.open(".dockerignore", FILE_FLAGS, dir_fd=folder_fd)
    except OSError:
        return []  # none, or a link (never followed)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            return []
        text = f.read(MAX_DOCKERFILE).decode("utf-8", errors="replace")
    patterns = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
        if pattern not in ("", "."):
            patterns.append((negated, _pattern_regex(pattern)))
    return patterns


def _ignored(rel, patterns):
    """Whether ``rel`` is left out by the patterns (the last matching one decides, as in Docker)."""
    if rel in ("Dockerfile", ".dockerignore"):
        return False  # always sent, as Docker does
    parts = rel.split("/")
    candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    excluded = False
    for negated, regex in patterns:
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


def scan_context(context, max_bytes, snapshot=None, dockerfile=None):
    """(digest, total bytes, file count) of a context, honouring its .dockerignore.

    ``context`` is an :class:`OpenedContext` (or a folder path, opened here). With ``snapshot`` (a
    new folder), the files are also copied there as they are hashed, so the build uses exactly what
    was checked. ``dockerfile`` ((path, text), default the opened context's): the Dockerfile that
    was read and checked is what the snapshot holds at that path. A link that points outside the
    context is refused (RequestError), as is a context over ``max_bytes`` (413).
    """
    if isinstance(context, OpenedContext):
        fd, owned = context.fd, False
        if dockerfile is None:
            dockerfile = (context.dockerfile, context.dockerfile_text)
    else:
        fd, owned = os.open(context, DIR_FLAGS), True
    try:
        scan = _Scan(max_bytes, snapshot, dockerfile, read_dockerignore(fd))
        if snapshot:
            os.makedirs(snapshot, mode=0o700)
        scan.folder(fd, "")
        if dockerfile is not None:
            scan.add_dockerfile(*dockerfile)
    finally:
        if owned:
            os.close(fd)
    return scan.hash.hexdigest(), scan.total, scan.files


class _Scan:
    def __init__(self, max_bytes, snapshot, dockerfile, patterns):
        self.max_bytes, self.snapshot = max_bytes, snapshot
        self.skip = dockerfile[0] if dockerfile else None  # written from the checked text instead
        self.hash = hashlib.sha256()
        self.total = self.files = 0
        self.patterns = patterns
        # with a "!" pattern, an ignored folder may still hold a file that is sent: walk into it
        self.negations = any(negated for negated, _ in patterns)

    def folder(self, fd, rel_dir):
        try:
            entries = sorted(os.scandir(fd), key=lambda e: e.name)
        except OSError:
            return  # removed while we scan: nothing to send
        for entry in entries:
            rel = f"{rel_dir}{entry.name}"
            if rel == self.skip:
                continue
            try:
                st = os.lstat(entry.name, dir_fd=fd)
            except OSError:
                continue
            if stat.S_ISLNK(st.st_mode):
                if not _ignored(rel, self.patterns):
                    self.link(fd, entry.name, rel)
            elif stat.S_ISDIR(st.st_mode):
                if _ignored(rel, self.patterns) and not self.negations:
                    continue
                try:
                    sub = os.open(entry.name, DIR_FLAGS, dir_fd=fd)
                except OSError as e:
                    if e.errno in (errno.ELOOP, errno.ENOTDIR):  # swapped for a link meanwhile
                        self.link(fd, entry.name, rel)
                    continue
                try:
                    self.folder(sub, rel + "/")
                finally:
                    os.close(sub)
            elif stat.S_ISREG(st.st_mode) and not _ignored(rel, self.patterns):
                self.file(fd, entry.name, rel)

    def link(self, fd, name, rel):
        target = _link_target(name, fd)
        if target is None:
            return
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(rel), target))
        if target.startswith("/") or resolved == ".." or resolved.startswith("../"):
            raise RequestError(f"context: {rel} is a link to outside the build context")
        self.hash.update(f"L {rel} {target}\0".encode())
        if self.snapshot:
            path = self._target(rel)
            os.symlink(target, path)

    def file(self, fd, name, rel):
        try:
            file_fd = os.open(name, FILE_FLAGS, dir_fd=fd)
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ELOOP, errno.ENXIO):
                return  # removed, or swapped for a link or a socket, since it was listed
            raise RequestError(f"context: {rel} cannot be read: {e.strerror}") from None
        with os.fdopen(file_fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                return
            target = self._target(rel) if self.snapshot else None
            out = open(target, "wb") if target else None
            digest, size = hashlib.sha256(), 0
            try:
                while chunk := f.read(1 << 20):
                    size += len(chunk)
                    self._count(len(chunk))
                    digest.update(chunk)
                    if out:
                        out.write(chunk)
            finally:
                if out:
                    out.close()
                    os.chmod(target, st.st_mode & 0o777)
        self.files += 1
        self.hash.update(f"F {rel} {st.st_mode & 0o777:o} {size} {digest.hexdigest()}\0".encode())

    def add_dockerfile(self, rel, text):
        data = text.encode()
        self._count(len(data))
        self.files += 1
        self.hash.update(f"F {rel} 644 {len(data)} {hashlib.sha256(data).hexdigest()}\0".encode())
        if self.snapshot:
            with open(self._target(rel), "wb") as out:
                out.write(data)

    def _count(self, size):
        self.total += size
        if self.total > self.max_bytes:
            raise RequestError(
                f"context: larger than the limit of {human_bytes(self.max_bytes)} "
                f"(leave data out of the build folder, or list it in .dockerignore)",
                413,
            )

    def _target(self, rel):
        path = os.path.join(self.snapshot, rel)
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        return path
