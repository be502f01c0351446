"""Root's file operations in folders a user can change, by descriptor.

A user owns the folders below ``<data_dir>/users/<slug>/`` and may replace any of them with a
link at any moment. Root (the hub, a service) must never ``chmod``, ``chown``, ``mkdir`` or
``chdir`` by such a path: between its check and its use the name may lead elsewhere (another
user's workspace, the hub's data). Here a folder is opened once, its last part with
``O_NOFOLLOW | O_DIRECTORY`` relative to its parent's descriptor, and everything after works on
that descriptor (``fchown``, ``fchmod``, ``dir_fd=``), or walks below it with ``os.fwalk``, which
never follows a link either.

The parent of such a folder is named by the hub (``<data_dir>/users/<slug>``: its own parent is
root's, which no user can write), so it is opened by path.
"""

import errno
import os
import stat

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def open_dir(path, mode=0o700, create=True, replace_link=True):
    """A descriptor of the folder ``path`` (made with ``mode`` when missing and ``create``), its last
    part never followed if it is a link: with ``replace_link`` a link there is removed (the link, not
    what it leads to) and a fresh folder made in its place, else NotADirectoryError."""
    parent, name = os.path.split(os.path.abspath(path))
    parent_fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return open_child(parent_fd, name, mode, create, replace_link)
    finally:
        os.close(parent_fd)


def open_child(parent_fd, name, mode=0o700, create=True, replace_link=True):
    """:func:`open_dir` of ``name`` inside the folder open as ``parent_fd``."""
    for _ in range(3):  # a user racing us gets a few tries, then the error
        try:
            return os.open(name, DIR_FLAGS, dir_fd=parent_fd)
        except FileNotFoundError:
            if not create:
                raise
            try:
                os.mkdir(name, mode, dir_fd=parent_fd)
            except FileExistsError:
                pass
        except OSError as e:
            if e.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
            info = _lstat(parent_fd, name)
            if info is None or not stat.S_ISLNK(info.st_mode) or not replace_link:
                raise NotADirectoryError(f"{name!r} is not a folder") from e
            os.unlink(name, dir_fd=parent_fd)
    return os.open(name, DIR_FLAGS, dir_fd=parent_fd)


def _lstat(parent_fd, name):
    try:
        return os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def chown_tree(fd, uid, gid):
    """Give everything below the folder open as ``fd`` to ``uid``:``gid`` (links themselves, never
    what they lead to), then the folder itself."""
    for _root, dirs, files, root_fd in os.fwalk(".", dir_fd=fd, follow_symlinks=False):
        for name in dirs + files:
            try:
                os.chown(name, uid, gid, dir_fd=root_fd, follow_symlinks=False)
            except FileNotFoundError:
                pass  # removed meanwhile
    os.fchown(fd, uid, gid)


def symlink_in(parent_fd, name, target):
    """A link ``name`` -> ``target`` in the folder open as ``parent_fd``, unless something is there."""
    try:
        os.symlink(target, name, dir_fd=parent_fd)
    except FileExistsError:
        pass


class NotHashable(Exception):
    """A path :func:`digest` will not vouch for (a link on the way, too big, not a file or folder)."""


FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # NONBLOCK: a FIFO never hangs us


def digest(root, relative, limit=4 << 30):
    """The SHA-256 (hex) of the file or folder ``relative`` under the folder ``root`` (a folder:
    its names, kinds and files' contents, in order; a link inside it counts as its target's text,
    never followed), or None when nothing is there. Each part of ``relative`` is opened with
    ``O_NOFOLLOW`` below the one before, so a link the user put on the way is refused
    (NotHashable), as is more than ``limit`` bytes in all."""
    import hashlib

    parts, fds = _open_parents(root, relative)
    if fds is None:
        return None
    try:
        total = hashlib.sha256()
        budget = [limit]
        if not parts:
            _digest_folder(fds[-1], total, budget)
            return total.hexdigest()
        info = _lstat(fds[-1], parts[-1])
        if info is None:
            return None
        if stat.S_ISDIR(info.st_mode):
            fd = os.open(parts[-1], DIR_FLAGS, dir_fd=fds[-1])
            try:
                _digest_folder(fd, total, budget)
            finally:
                os.close(fd)
        elif stat.S_ISREG(info.st_mode):
            total.update(b"file\0")
            _digest_file(fds[-1], parts[-1], total, budget)
        else:
            raise NotHashable(f"{relative!r} is a link or not a file or folder")
        return total.hexdigest()
    finally:
        for fd in fds:
            os.close(fd)


def exists(root, relative):
    """Whether the file or folder ``relative`` is under ``root``, its parts opened as
    :func:`digest` opens them (a link on the way, or at the end, raises NotHashable); nothing is
    read."""
    parts, fds = _open_parents(root, relative)
    if fds is None:
        return False
    try:
        if not parts:
            return True
        info = _lstat(fds[-1], parts[-1])
        if info is None:
            return False
        if not (stat.S_ISDIR(info.st_mode) or stat.S_ISREG(info.st_mode)):
            raise NotHashable(f"{relative!r} is a link or not a file or folder")
        return True
    finally:
        for fd in fds:
            os.close(fd)


def read_text(root, relative, limit=4096):
    """The text of the file ``relative`` under ``root`` (at most ``limit`` bytes, surrounding
    blanks stripped), opened as :func:`digest` opens it; None when it is not there."""
    parts, fds = _open_parents(root, relative)
    if fds is None or not parts:
        return None
    try:
        fd = _open_file(fds[-1], parts[-1], relative)
        if fd is None:
            return None
        try:
            data = os.read(fd, limit + 1)
        finally:
            os.close(fd)
        if len(data) > limit:
            raise NotHashable(f"{relative!r} holds more than {limit} bytes")
        return data.decode(errors="replace").strip()
    finally:
        for fd in fds:
            os.close(fd)


def _open_parents(root, relative):
    """(the parts of ``relative``, descriptors of ``root`` and each folder on the way to its last
    part), each opened ``O_NOFOLLOW`` in the one before; (parts, None) when one is missing."""
    parts = [p for p in relative.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise NotHashable(f"{relative!r} leaves the folder")
    fds = [os.open(root, DIR_FLAGS)]
    for part in parts[:-1]:
        try:
            fds.append(os.open(part, DIR_FLAGS, dir_fd=fds[-1]))
        except (FileNotFoundError, OSError) as e:
            for fd in fds:
                os.close(fd)
            if isinstance(e, FileNotFoundError):
                return parts, None
            if e.errno in (errno.ELOOP, errno.ENOTDIR):
                raise NotHashable(f"{relative!r}: {part!r} is a link or not a folder") from None
            raise
    return parts, fds


def _open_file(dir_fd, name, shown):
    """A descriptor of the regular file ``name`` in ``dir_fd``, opened ``O_NOFOLLOW`` (a FIFO
    never blocks the open), or None when it is not there; NotHashable (naming ``shown``) when it
    is a link or not a regular file."""
    try:
        fd = os.open(name, FILE_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise NotHashable(f"{shown!r} is a link") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise NotHashable(f"{shown!r} is not a regular file")
    return fd


def _digest_file(dir_fd, name, total, budget):
    fd = _open_file(dir_fd, name, name)
    if fd is None:
        raise NotHashable(f"{name!r} went away while it was read")
    try:
        while chunk := os.read(fd, 1 << 20):
            budget[0] -= len(chunk)
            if budget[0] < 0:
                raise NotHashable("more data than the cache hashes")
            total.update(chunk)
    finally:
        os.close(fd)


def _digest_folder(fd, total, budget):
    total.update(b"folder\0")
    for root, dirs, files, root_fd in os.fwalk(".", dir_fd=fd, follow_symlinks=False):
        dirs.sort()
        for name in sorted(dirs + files):
            info = _lstat(root_fd, name)
            if info is None:
                continue
            path = f"{root}/{name}".encode(errors="surrogateescape")
            if stat.S_ISDIR(info.st_mode):
                total.update(b"dir\0" + path + b"\0")
            elif stat.S_ISLNK(info.st_mode):
                target = os.readlink(name, dir_fd=root_fd).encode(errors="surrogateescape")
                total.update(b"link\0" + path + b"\0" + target + b"\0")
            elif stat.S_ISREG(info.st_mode):
                total.update(b"file\0" + path + b"\0" + str(info.st_size).encode() + b"\0")
                _digest_file(root_fd, name, total, budget)
