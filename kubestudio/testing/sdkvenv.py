"""Upstream SDKs (Kubeflow's, Katib's, Argo's Hera) in venvs of their own, made once per machine.

They pin what the product must not (``kubernetes<36``) and clash with each other, so each lives in
``~/.cache/kubestudio/sdk-venvs/<name>``; a marker file records what was installed, so a changed
requirement list makes the venv again.
"""

import os
import shutil
import subprocess
import sys

ROOT = os.path.join(os.path.expanduser("~"), ".cache", "kubestudio", "sdk-venvs")


class SDKUnavailable(RuntimeError):
    """pip could not install the SDK (its message says why)."""


def sdk_python(name, requirements, timeout=600):
    """The python of the venv ``name`` holding ``requirements`` (a list of pip specifiers)."""
    venv = os.path.join(ROOT, name)
    python = os.path.join(venv, "bin", "python")
    marker = os.path.join(venv, ".installed")
    wanted = " ".join(requirements)
    if os.path.exists(marker) and open(marker).read() == wanted:
        return python
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    run = subprocess.run(
        [python, "-m", "pip", "install", "-q", "--disable-pip-version-check", *requirements],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if run.returncode != 0:
        raise SDKUnavailable(f"{wanted} could not be installed: {run.stderr[-1500:]}")
    with open(marker, "w") as f:
        f.write(wanted)
    return python
