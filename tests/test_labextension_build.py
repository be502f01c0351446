"""The JupyterLab extension as it is shipped: its frontend unit tests (jest, JupyterLab's test
tooling), the wheel that carries its prebuilt form (no Node.js in a user's image), and the light
notebook-side install."""

import os
import re
import shutil
import subprocess
import sys
import zipfile

import pytest

import kubestudio

SOURCE = os.path.dirname(os.path.dirname(os.path.abspath(kubestudio.__file__)))
LABEXTENSION = os.path.join(SOURCE, "labextension")
SHARE = "share/jupyter/labextensions/@kubestudio/jupyterlab/"
# the notebook side's own dependencies: what a single-user server has already
LIGHT = {"jupyter-server", "pyyaml", "requests", "tornado", "traitlets"}


def node_modules():
    """labextension/node_modules as its lockfile says (a checkout whose build came from the cache
    has none yet)."""
    if not shutil.which("npm"):
        pytest.skip("npm is not installed (scripts/install.sh needs it to build the lab extension)")
    if not os.path.exists(os.path.join(LABEXTENSION, "node_modules", ".package-lock.json")):
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=LABEXTENSION,
            check=True,
            capture_output=True,
            timeout=600,
        )


def test_the_frontend_unit_tests_pass():
    node_modules()
    run = subprocess.run(
        ["npx", "jest", "--ci"], cwd=LABEXTENSION, capture_output=True, text=True, timeout=600, env=dict(os.environ)
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    assert re.search(r"Tests:\s+\d+ passed, \d+ total", run.stderr), run.stderr[-2000:]
    assert "failed" not in run.stderr.split("Tests:")[1].splitlines()[0]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    folder = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check", "-q", "-w", folder, SOURCE],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (path,) = folder.glob("kubestudio-*.whl")
    return path


def test_the_wheel_carries_the_prebuilt_lab_extension(wheel):
    with zipfile.ZipFile(wheel) as whl:
        names = whl.namelist()
        data = [n.split(".data/data/", 1)[1] for n in names if ".data/data/" in n]
        metadata = whl.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    for wanted in ("package.json", "install.json", "schemas/@kubestudio/jupyterlab/plugin.json", "static/style.js"):
        assert SHARE + wanted in data, sorted(data)
    assert any(re.match(re.escape(SHARE) + r"static/remoteEntry\.[0-9a-f]+\.js$", n) for n in data)
    assert "etc/jupyter/jupyter_server_config.d/kubestudio.json" in data
    # without extras it asks for nothing a server lacks; the hub and the runtimes are extras
    required = set()
    extras = {}
    for line in metadata.splitlines():
        if line.startswith("Requires-Dist:"):
            requirement = line.split(":", 1)[1].strip()
            name = re.split(r"[\s;<>=!~\[(]", requirement, maxsplit=1)[0].lower().replace("_", "-")
            marker = re.search(r"extra == ['\"]([a-z]+)['\"]", requirement)
            if marker:
                extras.setdefault(marker.group(1), set()).add(name)
            else:
                required.add(name)
    assert required == LIGHT
    assert {"jupyterhub", "jupyterhub-kubespawner", "sqlalchemy", "kubernetes", "optuna"} <= extras["hub"]
    assert {"kserve", "scikit-learn"} <= extras["serving"] and extras["boards"] == {"tensorboard"}
    assert {"jupyterlab", "jupyter-vscode-proxy"} <= extras["workspace"]
    assert extras["all"] >= extras["hub"] | extras["serving"] | extras["boards"] | extras["workspace"]


def test_the_notebook_side_imports_only_what_a_server_has():
    """The SDKs, the CLI, the server extension and its bridge load none of the extras' packages."""
    heavy = (
        "jupyterhub",
        "kubespawner",
        "sqlalchemy",
        "alembic",
        "kubernetes",
        "kserve",
        "sklearn",
        "tensorboard",
        "optuna",
        "numpy",
    )
    code = (
        "import sys, kubestudio.extensions.server, kubestudio.extensions.bridge, kubestudio.extensions.cli, "
        "kubestudio.jobs, kubestudio.tensorboards, kubestudio.trial, kubestudio.trialshim.nni\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {heavy!r}))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert run.stdout.strip() == "[]"
