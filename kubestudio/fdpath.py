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
