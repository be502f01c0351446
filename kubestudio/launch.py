"""Starting a user's process from a service that runs as root (the embedded default).

Nothing the user controls reaches a process before it drops privileges. The privileged part of a
start (``setpriv``, which switches to the user's account) runs with :data:`PRIVILEGED_ENV`, a fixed
environment of ours, so a user's ``LD_PRELOAD``, ``GCONV_PATH`` or ``BASH_ENV`` is never read by a
root process. After the switch a ``bash`` of ours (``--noprofile --norc``, the same fixed
environment) does the rest as the user:

1. waits for the service's go (``gate``): the service first puts the process in its cgroup, so
   nothing the user runs starts outside it;
2. reads the user's environment from a memory file (``memfd``, ``NAME=value`` NUL-separated:
   never on a command line, which every account can read in ``/proc``) and exports it;
3. changes into the working folder **by descriptor** (``cwd_fd``, opened and checked by the
   service once): a folder swapped for a link after the check changes nothing, and the change
   happens with the user's rights, never root's;
4. execs the command, or runs it and writes its exit status to ``exit_fd`` (a job's rank: a
   restarted service reads it there).

Without an account (a hub that is not root) the same steps run without ``setpriv``.

On cgroup v1 the process joins its cgroup itself, before ``setpriv`` (a ``sh`` of ours, root, the
fixed environment, writing ``0`` to each hierarchy's ``tasks``): a process moving itself costs
nothing, where a move by pid waits for the kernel's cgroup lock (5-15 ms, on every rank's way to
its first line). There is then no gate. On v2 the service moves the process while it waits at the
gate.
"""

import asyncio
import os
from dataclasses import dataclass, field

from .processgroup import signal_group

BASH = "/bin/bash"
SH = "/bin/sh"
# what a process of ours runs with until it is the user's: the system's tools and a plain locale
PRIVILEGED_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8"}
NONE = "-"

# $1 the environment's descriptor, $2 the working folder's ("-": stay), $3 where the exit status
# goes ("-": exec the command), $4 the gate ("-": none); then the command. Each descriptor is
# closed once used, so the command inherits none of them.
LOADER = r"""e=$1 d=$2 x=$3 g=$4; shift 4
if [ "$g" != - ]; then read -r -u "$g" _; exec {g}<&-; fi
unset PATH LC_ALL
while IFS= read -r -d '' kv; do export -- "$kv"; done <&"$e"
exec {e}<&-
if [ "$d" != - ]; then cd -P "/proc/self/fd/$d" || exit 126; exec {d}<&-; fi
if [ "$x" = - ]; then exec "$@"; fi
"$@"; c=$?; echo $c >&"$x"; exit $c"""


# $1.. the cgroup files to write 0 to, then --, then the command: run as root with the fixed
# environment, before setpriv, so nothing of the user's starts outside the cgroup
JOIN = r"""while [ "$1" != -- ]; do echo 0 > "$1" || { echo "kubestudio: cannot join the cgroup ($1)" >&2; exit 125; }; shift; done
shift
exec "$@"
"""


@dataclass
class Launch:
    """What ``asyncio.create_subprocess_exec`` / ``subprocess.Popen`` is given: ``argv``, ``env``
    (the fixed one) and ``pass_fds``; :meth:`close` once the process started (the child holds its
    own copies of the descriptors)."""

    argv: list
    env: dict
    pass_fds: tuple
    _owned: list = field(default_factory=list)

    def kwargs(self):
        return {"env": self.env, "pass_fds": self.pass_fds}

    def close(self):
        for fd in self._owned:
            try:
                os.close(fd)
            except OSError:
                pass
        self._owned.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def env_file(env):
    """A memory file holding ``env`` (``NAME=value`` NUL-separated), rewound: its descriptor."""
    fd = os.memfd_create("kubestudio-env", 0)
    data = b"".join(f"{name}={value}".encode("utf-8", "surrogateescape") + b"\0" for name, value in env.items())
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def prepare(account, argv, env, cwd_fd=None, exit_fd=None, gate_fd=None, join=None):
    """The :class:`Launch` of ``argv`` as ``account`` (None: as the service itself) with the user's
    ``env`` applied only after the switch; ``cwd_fd``, ``exit_fd``, ``gate_fd``: descriptors the
    caller opened (it closes them), passed on to the child and closed there once used; ``join``:
    cgroup files the process moves itself in with, first of all (:meth:`Group.join_files`)."""
    fd = env_file(env)
    given = [f for f in (cwd_fd, exit_fd, gate_fd) if f is not None]
    loader = [
        BASH,
        "--noprofile",
        "--norc",
        "-c",
        LOADER,
        "kubestudio-launch",
        str(fd),
        *(str(f) if f is not None else NONE for f in (cwd_fd, exit_fd, gate_fd)),
        *argv,
    ]
    if account is not None:
        loader = account.command(loader)
    if join:
        loader = [SH, "-c", JOIN, "kubestudio-join", *join, "--", *loader]
    return Launch(argv=loader, env=dict(PRIVILEGED_ENV), pass_fds=(fd, *given), _owned=[fd])


async def start_process(account, argv, env, group=None, cwd_fd=None, exit_fd=None, **popen):
    """Start ``argv`` as ``account`` (:func:`prepare`) in a session of its own, its cwd ``/`` until
    the loader enters ``cwd_fd``; with ``group`` (a made :class:`~kubestudio.cgroups.Group`) it is
    put there before anything of the user's runs (the loader waits at its gate until then).
    ``popen``: stdout, stderr and the like for ``asyncio.create_subprocess_exec``. The process; on
    a failure to place it, it is killed and the error raised."""
    join = group.join_files() if group is not None else None
    gate, release = os.pipe() if group is not None and not join else (None, None)
    try:
        with prepare(account, argv, env, cwd_fd=cwd_fd, exit_fd=exit_fd, gate_fd=gate, join=join) as launch:
            proc = await asyncio.create_subprocess_exec(
                *launch.argv,
                stdin=asyncio.subprocess.DEVNULL,
                cwd="/",
                start_new_session=True,
                **launch.kwargs(),
                **popen,
            )
        if group is not None and not join:
            try:
                # off the event loop: a move waits for the kernel's cgroup lock
                await asyncio.to_thread(group.add, proc.pid)
            except BaseException:
                signal_group(proc.pid)
                raise
    finally:
        for fd in (gate, release):
            if fd is not None:
                os.close(fd)  # closing ``release`` is the go
    return proc


def open_folder_inside(root, path, where):
    """A descriptor of the folder ``path`` opened by the service, checked to lie inside ``root``
    once open (the descriptor, not the name, is what the process gets: a later swap of a name for
    a link changes nothing). ValueError with ``where`` when it is not a folder inside ``root``."""
    real_root = os.path.realpath(root)
    try:
        fd = os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        raise ValueError(f"{where}: no folder {os.path.relpath(path, root)!r} in your workspace") from None
    real = os.readlink(f"/proc/self/fd/{fd}")
    if real != real_root and not real.startswith(real_root + os.sep):
        os.close(fd)
        raise ValueError(f"{where}: {os.path.relpath(path, root)!r} leads outside your workspace")
    return fd
