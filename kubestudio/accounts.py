"""One OS account per hub user on the embedded default.

When the hub runs as root (the embedded default's usual case), everything started for a user
(servers, VS Code, local jobs and servings, TensorBoards) runs under that user's own system account,
created on first use: ``useradd --system``, no login shell, no password, named after the user's safe
slug. The user's folders belong to it with mode 0700, so two users cannot read each other's files,
and the hub's own files (database, secrets, tokens, registry) stay root's.

The hub and each service read the same ``c.UserAccounts`` settings (the services get them in their
config file), and every process is started as the account (:meth:`Account.command`, or
:meth:`Account.popen_kwargs` for JupyterHub's spawner): its uid, gid and groups, and nothing else. Where accounts are off (a hub that is not
root, or ``mode = "shared"``) :meth:`UserAccounts.account` answers None and processes run as the hub.
"""

import asyncio
import hashlib
import os
import pwd
import shutil
import stat
import subprocess
import threading
from dataclasses import dataclass

from traitlets import CaselessStrEnum, Dict, List, Unicode
from traitlets.config import Configurable

from .fdpath import chown_tree, open_dir
from .slugs import safe_slug

# useradd's limit on a name's length; longer ones are cut and made unique with a hash
MAX_NAME = 32
COMMENT = "KubeStudio user {}"
SBIN = ("/usr/sbin", "/sbin")
# util-linux, an essential package of Debian (every machine has it)
SETPRIV = "/usr/bin/setpriv"
_lock = threading.Lock()


class AccountError(Exception):
    """A user's account cannot be made or used; the message says why and what to set."""


@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    gid: int
    groups: tuple = ()

    def popen_kwargs(self):
        """What subprocess.Popen / asyncio.create_subprocess_exec need to run a process as this account
        (JupyterHub's local spawner takes these)."""
        return {"user": self.uid, "group": self.gid, "extra_groups": list(self.groups)}

    def command(self, argv):
        """``argv`` run as this account through util-linux's ``setpriv``: the account changes after
        ``exec``, so Python starts the child with vfork. With :meth:`popen_kwargs` it must fork the
        whole service first (~5 ms for a service of 100 MB, on each job rank, pip step, board)."""
        groups = f"--groups={','.join(str(g) for g in self.groups)}" if self.groups else "--clear-groups"
        return [SETPRIV, f"--reuid={self.uid}", f"--regid={self.gid}", groups, "--", *argv]

    def own(self, *paths):
        """Make ``paths`` (created when missing) this account's, mode 0700; what they hold is handed
        over too when they belonged to someone else (files from before accounts were on). By
        descriptor (:mod:`kubestudio.fdpath`): a folder the user replaced with a link is replaced
        by a fresh folder (the link's target is left alone), never chmod-ed or chown-ed."""
        for path in paths:
            fd = open_dir(path)
            try:
                self._own_open(fd)
            finally:
                os.close(fd)

    def _own_open(self, fd):
        info = os.fstat(fd)
        if (info.st_uid, info.st_gid) != (self.uid, self.gid):
            chown_tree(fd, self.uid, self.gid)
        if stat.S_IMODE(info.st_mode) != 0o700:
            os.fchmod(fd, 0o700)

    def own_inside(self, path, *passable):
        """Make ``path`` this account's inside folders of the service's that it may only pass
        through (0711: not listable), e.g. a job's venv in the jobs service's run folder."""
        for folder in passable:
            os.chmod(folder, 0o711)
        self.own(path)


def _account(entry):
    groups = tuple(g for g in os.getgrouplist(entry.pw_name, entry.pw_gid) if g != entry.pw_gid)
    return Account(entry.pw_name, entry.pw_uid, entry.pw_gid, groups)


class UserAccounts(Configurable):
    """Which OS account runs each hub user's processes on the embedded default."""

    mode = CaselessStrEnum(
        ["auto", "per-user", "shared"],
        "auto",
        config=True,
        help="""`auto` (the default): one OS account per hub user when the hub runs as root, else every
        process runs as the hub's own account. `per-user`: the same, but a hub that is not root refuses
        to start servers instead of sharing its account. `shared`: every process runs as the hub's
        account (users are kept apart by the hub's login only: any user can read any other's files).""",
    )

    prefix = Unicode(
        "ks-",
        config=True,
        help="""Start of the accounts' names: `ks-` + the user's safe slug (e.g. ks-alice). Two hubs on one
        machine should use different prefixes.""",
    )

    map = Dict(
        value_trait=Unicode(),
        config=True,
        help="""Hub usernames run as existing OS accounts instead of made ones, e.g. {"alice": "alice"} on a
        workstation where the team already has accounts. The account must exist; it is never created.""",
    )

    useradd = List(
        Unicode(),
        ["useradd"],
        config=True,
        help="The command that creates accounts (given --system, --no-create-home, --home-dir, --shell, --comment, --user-group, name).",
    )

    @property
    def enabled(self):
        """Whether users get accounts of their own (else processes run as the hub)."""
        if self.mode == "shared":
            return False
        if os.geteuid() != 0:
            if self.mode == "per-user":
                raise AccountError(
                    "UserAccounts.mode is per-user, but the hub does not run as root: it cannot "
                    "run processes as other accounts (run it as root, or set mode to auto or shared)"
                )
            return False
        return True

    def os_name(self, username):
        """The account made for ``username``: prefix + safe slug, at most 32 characters."""
        name = self.prefix + safe_slug(username).lower()
        if len(name) > MAX_NAME:
            digest = hashlib.sha256(username.encode()).hexdigest()[:8]
            name = f"{name[: MAX_NAME - 9].rstrip('-')}-{digest}"
        return name

    def account(self, username, home):
        """The account that runs ``username``'s processes (made on first use with ``home`` as its
        home), or None when accounts are off. Blocking (it may run useradd)."""
        if not self.enabled:
            return None
        if username in self.map:
            name = self.map[username]
            try:
                return _account(pwd.getpwnam(name))
            except KeyError:
                raise AccountError(
                    f"UserAccounts.map: {username!r} is mapped to the OS account {name!r}, "
                    "which does not exist on this machine"
                ) from None
        name = self.os_name(username)
        with _lock:
            entry = self._existing(name, username)
            if entry is None:
                self._create(name, username, home)
                entry = self._existing(name, username)
        if entry is None:
            raise AccountError(f"the OS account {name!r} for {username!r} was not found after useradd")
        if entry.pw_uid == 0:
            raise AccountError(f"the OS account {name!r} for {username!r} is root's uid: refusing to use it")
        return _account(entry)

    def _known(self, username):
        """The account of ``username`` when it exists already (a local lookup, no thread on a job's
        way to its start), else None; :meth:`account` decides everything else."""
        if not self.enabled or username in self.map:
            return None
        try:
            entry = self._existing(self.os_name(username), username)
        except AccountError:
            return None  # account() says it
        return _account(entry) if entry is not None and entry.pw_uid != 0 else None

    async def account_owning(self, username, folders):
        """The account of ``username`` (made on first use) owning the user's folders (root,
        workspace, archives, home of a :class:`~kubestudio.spawner.storage.UserFolders`), or None
        when accounts are off."""
        account = self._known(username)
        if account is None:  # accounts off, to be made, or mapped: off the event loop (useradd)
            account = await asyncio.to_thread(self.account, username, folders.home)
        if account is not None:
            account.own(folders.root, folders.workspace, folders.archives, folders.home)
        return account

    @staticmethod
    def _existing(name, username):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            return None
        if entry.pw_gecos != COMMENT.format(username):
            raise AccountError(
                f"the OS account {name!r} exists but was not made by KubeStudio for {username!r} "
                f"(its comment is {entry.pw_gecos!r}): map the user to it with UserAccounts.map, "
                "or give UserAccounts.prefix another value"
            )
        return entry

    def _create(self, name, username, home):
        argv = [
            root_tool(self.useradd[0]),
            *self.useradd[1:],
            "--system",
            "--no-create-home",
            "--home-dir",
            home,
            "--shell",
            "/usr/sbin/nologin",
            "--comment",
            COMMENT.format(username),
            "--user-group",
            name,
        ]
        try:
            result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        except FileNotFoundError:
            raise AccountError(
                f"cannot make the OS account {name!r}: {argv[0]} is not installed (Debian: apt-get install passwd)"
            ) from None
        # 9: made meanwhile by another process of the hub (a service starting the user's first job)
        if result.returncode not in (0, 9):
            raise AccountError(
                f"cannot make the OS account {name!r} for {username!r}: "
                f"{(result.stderr or result.stdout).strip() or f'exit code {result.returncode}'}"
            )


def root_tool(name):
    """``name`` on PATH, else in sbin: root's tools (useradd, userdel) live there, and a hub started
    with a user's PATH (/usr/bin:/bin) lacks it. The name as is when found nowhere."""
    return shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), *SBIN])) or name


def make_traversable(path):
    """Let other accounts pass through ``path`` and its parents (o+x, never o+r: nothing becomes
    listable); the folders changed, for the hub's log."""
    changed = []
    path = os.path.abspath(path)
    while True:
        mode = stat.S_IMODE(os.stat(path).st_mode)
        if not mode & stat.S_IXOTH:
            os.chmod(path, mode | stat.S_IXOTH)
            changed.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            return changed
        path = parent
