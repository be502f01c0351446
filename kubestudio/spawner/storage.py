"""Per-user folders of the embedded default: ``<data_dir>/users/<slug>/{mnt,archives,home}``.

The folder name is KubeSpawner's ``safe`` slug of the username (valid names unchanged, others
hashed), so no part of a path ever comes from raw input and one name always maps to one folder.
"""

import os
import re
from dataclasses import dataclass

from ..fdpath import open_child, open_dir, symlink_in
from ..slugs import safe_slug

ARCHIVES_LINK = "archives"
_SAFE_PATH_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,62}$")


def user_slug(username):
    """KubeSpawner's safe slug: ``alice`` stays ``alice``, ``a.b@x`` becomes ``a-b-x---<hash>``."""
    return safe_slug(username)


def mount_name(username):
    """The folder name under /mnt and /archives: the username when it is a safe path part."""
    if _SAFE_PATH_PART.match(username) and username not in (".", ".."):
        return username
    return user_slug(username)


@dataclass(frozen=True)
class UserFolders:
    root: str
    workspace: str  # plays /mnt/<user>
    archives: str  # plays /archives/<user>
    home: str  # dotfiles, kept out of the workspace


def user_folders(data_dir, username):
    users_dir = os.path.join(os.path.abspath(data_dir), "users")
    root = os.path.join(users_dir, user_slug(username))
    # the slug alphabet has no '/' or '.', so this cannot fail; keep the promise checked anyway
    if os.path.dirname(root) != users_dir:
        raise ValueError(f"user folder for {username!r} would leave {users_dir}")
    return UserFolders(
        root=root,
        workspace=os.path.join(root, "mnt"),
        archives=os.path.join(root, "archives"),
        home=os.path.join(root, "home"),
    )


def ensure_user_folders(folders):
    """Create the folders (owner-only) and link the archives into the workspace.

    The link ``<workspace>/archives -> ../archives`` makes the archives reachable from a
    JupyterLab rooted at the workspace. A file the user made with that name is left alone. Made
    by descriptor (:mod:`kubestudio.fdpath`): a folder the user replaced with a link is replaced by
    a fresh one, so root never makes anything where such a link leads.
    """
    os.makedirs(os.path.dirname(folders.root), mode=0o711, exist_ok=True)
    root_fd = open_dir(folders.root)
    try:
        opened = {}
        try:
            for path in (folders.workspace, folders.archives, folders.home):
                opened[path] = open_child(root_fd, os.path.basename(path))
            symlink_in(opened[folders.workspace], ARCHIVES_LINK, os.path.relpath(folders.archives, folders.workspace))
        finally:
            for fd in opened.values():
                os.close(fd)
    finally:
        os.close(root_fd)
