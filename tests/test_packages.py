"""KubeStudio's packages import each other one way only: the service kit and the shared modules
at the bottom, services and spawners above them, the hub's configuration on top. Every import is
counted, also those inside functions (where a cycle once hid)."""

import ast
import json
import os
import subprocess
import sys

import pytest

import kubestudio

ROOT = os.path.dirname(os.path.abspath(kubestudio.__file__))
# what each package may import (besides itself); anything else is a layering error
ALLOWED = {
    "names": set(),
    "imageref": set(),
    "dockerauth": set(),
    "processgroup": set(),
    "quantities": set(),
    "kubespawner_api": set(),  # KubeSpawner's private API, every use of it (imported lazily)
    "slugs": {"kubespawner_api"},
    "portclaims": set(),  # ports chosen, not yet bound, claimed machine-wide (the hub's, the tests')
    "fdpath": set(),  # root's operations in users' folders, by descriptor
    "accounts": {"slugs", "fdpath"},
    "cgroups": set(),  # containment of users' processes
    "launch": {"processgroup"},  # starting a user's process from root (env after the drop, cwd by descriptor)
    "serverimage": set(),  # the local single-user image: made by image_builder, run by spawner
    "registry": {"dockerauth"},
    "registry_grants": set(),  # a build's own account at the registry gate: written by image_builder, read by hub
    "kube": {"names"},
    "services": {"names", "quantities"},
    "spawner": {
        "kubespawner_api",
        "names",
        "imageref",
        "kube",
        "services",
        "processgroup",
        "quantities",
        "slugs",
        "accounts",
        "fdpath",
        "launch",
        "cgroups",
    },
    "image_builder": {
        "names",
        "imageref",
        "dockerauth",
        "registry",
        "kube",
        "services",
        "processgroup",
        "spawner",
        "quantities",
        "slugs",
        "serverimage",
        "registry_grants",
    },
    "jobs": {
        "names",
        "imageref",
        "registry",
        "kube",
        "services",
        "processgroup",
        "spawner",
        "quantities",
        "slugs",
        "accounts",
        "launch",
        "cgroups",
        "fdpath",  # a pipeline's cache and output values: users' files read by descriptor
    },
    "tensorboards": {
        "names",
        "kube",
        "services",
        "spawner",
        "processgroup",
        "quantities",
        "slugs",
        "accounts",
        "launch",
        "cgroups",
    },
    "extensions": {
        "names",
        "services",
        "jobs.client",
        "jobs.spec",
        "jobs.experiments.client",
        "jobs.experiments.spec",
        "jobs.pipelines.client",
        "pipelines",
        "tensorboards.client",
    },  # the SDKs are the CLI's too
    "trial": set(),  # what a trial imports: the standard library only
    "trialshim": {"trial"},  # NNI's API and the model-class runner, over kubestudio.trial
    "pipelines": {"jobs.pipelines.spec"},  # the Python DSL: compiles, and checks as the service does
    "hub": {
        "names",
        "services",
        "spawner",
        "image_builder.service",
        "jobs.service",
        "tensorboards.service",
        "processgroup",
        "accounts",
        "dockerauth",
        "portclaims",
        "registry_grants",
    },
}


def unit(path):
    """The package (or top-level module) a file belongs to."""
    rel = os.path.relpath(path, ROOT)
    return rel.split(os.sep)[0].removesuffix(".py")


def imported_units(path):
    """(unit, dotted module) of every kubestudio import in a file, at any depth."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    package = ["kubestudio"] + os.path.relpath(os.path.dirname(path), ROOT).split(os.sep)
    package = [p for p in package if p != "."]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names = [f"{module}.{a.name}" for a in node.names] if node.level and not node.module else [module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "kubestudio" and len(parts) > 1:
                found.append((parts[1], ".".join(parts[1:])))
    return found


def sources():
    for folder, _, files in os.walk(ROOT):
        if "testing" in os.path.relpath(folder, ROOT).split(os.sep) or "__pycache__" in folder:
            continue
        for name in files:
            if name.endswith(".py"):
                yield os.path.join(folder, name)


def test_packages_import_one_way_only():
    errors = []
    for path in sources():
        own = unit(path)
        if own not in ALLOWED:
            continue
        for target, module in imported_units(path):
            if target == own or target == "__init__":
                continue
            allowed = ALLOWED[own]
            if target in allowed or any(module == a or module.startswith(a + ".") for a in allowed):
                continue
            errors.append(f"{os.path.relpath(path, ROOT)} imports kubestudio.{module}")
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize(
    "module",
    [
        "kubestudio.names",
        "kubestudio.imageref",
        "kubestudio.kube",
        "kubestudio.services.web",
        "kubestudio.services.store",
        "kubestudio.services.declare",
        "kubestudio.image_builder.service",
        "kubestudio.image_builder.app",
        "kubestudio.spawner",
        "kubestudio.hub",
        "kubestudio.jobs",
        "kubestudio.jobs.service",
        "kubestudio.jobs.app",
        "kubestudio.jobs.training",
        "kubestudio.jobs.training.backends.local",
        "kubestudio.jobs.serving",
        "kubestudio.jobs.serving.backends.local",
        "kubestudio.jobs.serving.runtime",
        "kubestudio.tensorboards",
        "kubestudio.tensorboards.service",
        "kubestudio.tensorboards.app",
        "kubestudio.services.client",
        "kubestudio.quantities",
        "kubestudio.slugs",
        "kubestudio.accounts",
        "kubestudio.hub.registry_gate",
        "kubestudio.portclaims",
        "kubestudio.launch",
        "kubestudio.cgroups",
        "kubestudio.fdpath",
    ],
)
def test_each_package_imports_alone(module):
    run = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]


def test_services_start_without_kubespawner_or_the_kubernetes_client():
    """A hub service's start pays for what it uses: the image and jobs services on the embedded
    default never import KubeSpawner or the Kubernetes client (seconds at every start), nor does
    a notebook importing the jobs SDK."""
    check = (
        "import sys, kubestudio.image_builder.app, kubestudio.jobs.app, kubestudio.jobs; "
        "heavy = sorted(m for m in ('kubespawner', 'kubernetes_asyncio', 'kubernetes') if m in sys.modules); "
        "assert not heavy, heavy"
    )
    run = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]


RUNTIME_MODULES = ("kubestudio.jobs.serve", "kubestudio.jobs.serving.runtime")


@pytest.mark.parametrize("importer", ["kubestudio.hub, kubestudio.spawner", "kubestudio.jobs.app"])
def test_the_hub_and_the_jobs_service_never_import_the_model_runtime(importer):
    """What the hub and the jobs service load stays theirs: the model runtime (kubestudio.jobs.serve,
    KServe) and TensorBoard are imported only by the processes that run them (issue 29: the runtime
    can become an install extra)."""
    code = f"import json, sys, {importer}\nprint(json.dumps(sorted(sys.modules)))\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    loaded = json.loads(done.stdout)
    assert importer.split(",")[0] in loaded
    unwanted = [m for m in loaded if m.split(".")[0] in ("kserve", "tensorboard", "torch") or m in RUNTIME_MODULES]
    assert unwanted == []


def jobs_part(path):
    """training, serving, or core: the part of the jobs service a file belongs to."""
    rel = os.path.relpath(path, os.path.join(ROOT, "jobs")).split(os.sep)
    return rel[0] if len(rel) > 1 and rel[0] in ("training", "serving") else "core"


def test_the_jobs_parts_import_one_way():
    """Inside the jobs service: training never imports serving (a serving backend works beside a
    jobs backend, not the other way round); the shared core imports neither part, except the app
    that wires them (and the API document, which lists serving's formats); the model runtime
    imports nothing of the service but the formats it shares."""
    errors = []
    for path in sources():
        if unit(path) != "jobs":
            continue
        part, name = jobs_part(path), os.path.relpath(path, ROOT)
        for _, module in imported_units(path):
            if not module.startswith("jobs."):
                continue
            target = module.split(".")[1]
            if part == "training" and target == "serving":
                errors.append(f"{name} imports kubestudio.{module}")
            if part == "core" and target in ("training", "serving") and name not in CORE_WIRING:
                errors.append(f"{name} imports kubestudio.{module}")
            if name == os.path.join("jobs", "serving", "runtime.py") and module != "jobs.serving.formats":
                errors.append(f"{name} imports kubestudio.{module}")
    assert not errors, "\n".join(errors)


CORE_WIRING = {os.path.join("jobs", n) for n in ("app.py", "openapi.py", "serve.py")} | {
    os.path.join("jobs", "backends", n) for n in ("local.py", "kubernetes.py")
}
