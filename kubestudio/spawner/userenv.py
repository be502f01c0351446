"""Each user's own Python environment on the embedded default, layered on the hub's.

A local server runs the hub's Python, but ``pip install`` in it must never reach the hub's own
environment (or another user's). Each user gets a virtual environment in their home folder whose
site-packages come first and whose ``.pth`` adds the hub's site-packages after them: everything the
hub has is importable, what the user installs goes to (and shadows from) their own folder. The
server, its kernels, its terminals' ``python``/``pip`` and the user's local jobs run from it.

``KUBESTUDIO_BASE_SITE_PACKAGES`` tells the server extension which packages are the base's, so a
``from_server`` image build captures exactly the user's additions.
"""

import json
import os
import stat
import subprocess
import sys
import sysconfig

BASE_SITE_ENV = "KUBESTUDIO_BASE_SITE_PACKAGES"
LAYER_PTH = "_kubestudio_base.pth"

PIP_SCRIPT = """#!{python}
# pip of this environment (the hub's pip, installing here)
import sys
from pip._internal.cli.main import main
sys.exit(main())
"""


CODE_SERVER_DEFAULTS = {
    # the workspace is the user's own folder: no "do you trust the authors" prompt
    "security.workspace.trust.enabled": False,
    "workbench.startupEditor": "none",
}


def write_code_server_defaults(home):
    """Give code-server sensible user settings once; never overwrite the user's own."""
    settings_dir = os.path.join(home, ".local", "share", "code-server", "User")
    path = os.path.join(settings_dir, "settings.json")
    if not os.path.exists(path):
        os.makedirs(settings_dir, exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(CODE_SERVER_DEFAULTS, f, indent=2)


def base_site_packages():
    """The hub's own site-packages (what a user's environment is layered on)."""
    return sysconfig.get_paths()["purelib"]


def user_env_path(home):
    version = ".".join(str(n) for n in sys.version_info[:2])
    return os.path.join(home, ".venvs", f"hub-python{version}")


def site_packages(env):
    return os.path.join(env, "lib", f"python{sys.version_info[0]}.{sys.version_info[1]}", "site-packages")


def layered_env(path, over, account=None, code_server_defaults_home=None):
    """Make the environment ``path`` layered over the site-packages ``over`` (when missing; the
    layer is rewritten if the hub moved); its bin folder. It runs as ``account``: nothing is written
    into a user's folder by root, where a link the user planted could send the write elsewhere."""
    if is_ready(path, over) and not code_server_defaults_home:
        return os.path.join(path, "bin")
    argv = [sys.executable, "-m", "kubestudio.spawner.userenv", path, over]
    if code_server_defaults_home:
        argv += ["--code-server-defaults", code_server_defaults_home]
    from ..launch import PRIVILEGED_ENV, prepare  # here: this module also runs as the user's own script

    # a fixed environment: never the hub's or service's own (its API token), which a process of
    # the user's could read in /proc while this one runs as them
    with prepare(account, argv, PRIVILEGED_ENV) as launch:
        result = subprocess.run(launch.argv, capture_output=True, text=True, timeout=120, cwd="/", **launch.kwargs())
    if result.returncode:
        raise OSError(
            f"could not prepare the Python environment {path}: {(result.stderr or result.stdout).strip()[-500:]}"
        )
    return os.path.join(path, "bin")


def ensure_user_env(home, account=None, code_server_defaults=False):
    """The user's own environment over the hub's packages (and, for VS Code, its default settings);
    its bin folder."""
    return layered_env(user_env_path(home), base_site_packages(), account, home if code_server_defaults else None)


def _layer_files(path, over):
    """What the environment ``path`` holds beyond a bare venv: its layer and its pip scripts."""
    python = os.path.join(path, "bin", "python")
    files = {os.path.join(site_packages(path), LAYER_PTH): f"import site; site.addsitedir({over!r})\n"}
    for script in ("pip", "pip3"):
        files[os.path.join(path, "bin", script)] = PIP_SCRIPT.format(python=python)
    return files


def is_ready(path, over):
    """Whether the environment ``path`` is there with its layer over ``over``, read without following
    links and without blocking (the folder is the user's: a FIFO or a link there must not stall or
    mislead the service). Then nothing needs writing, and no process needs starting."""
    if not os.path.isfile(os.path.join(path, "bin", "python")):
        return False
    for name, text in _layer_files(path, over).items():
        expected = text.encode("utf-8")
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            return False
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode) or os.read(fd, len(expected) + 1) != expected:
                return False
        finally:
            os.close(fd)
    return True


def _prepare(path, over):
    python = os.path.join(path, "bin", "python")
    if not os.path.exists(python):
        # no pip of its own: the hub's pip (through the layer) installs here
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", path], check=True)
    for name, text in _layer_files(path, over).items():
        if _read(name) != text:
            with open(name, "w", encoding="utf-8") as f:
                f.write(text)
            if not name.endswith(".pth"):
                os.chmod(name, 0o755)


def _read(path):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError:
        return None


if __name__ == "__main__":
    _prepare(sys.argv[1], sys.argv[2])
    if sys.argv[3:4] == ["--code-server-defaults"]:
        write_code_server_defaults(sys.argv[4])
