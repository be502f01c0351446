"""Hub services take their settings from a config file of their own: written by configure(),
written again when the hub starts the service (settings made after configure() count), and the
hub's jupyterhub_config.py never executed by a service."""

import json
import os
import subprocess
import sys

import pytest
from traitlets.config import Config

from kubestudio.hub import configure
from kubestudio.image_builder.app import ImageBuilder
from kubestudio.names import IMAGES_BUILD_SCOPE
from kubestudio.services.declare import CONFIG_ENV


def images_entry(c):
    return next(s for s in c.JupyterHub.services if s["name"] == "images")


def test_the_service_gets_its_own_config_file(tmp_path):
    c = Config()
    c.ImageBuilder.max_context_bytes = 1234  # before configure()
    configure(c, data_dir=str(tmp_path / "data"))
    entry = images_entry(c)
    path = str(tmp_path / "data" / "images-service.json")
    assert entry["command"] == [sys.executable, "-m", "kubestudio.image_builder", "--config", path]
    assert not any(k.startswith("KUBESTUDIO_CONFIG") or k == "KUBESTUDIO_SERVICE_MODE" for k in entry["environment"])
    written = json.loads(open(path).read())
    assert written["ImageBuilder"]["max_context_bytes"] == 1234
    assert written["ImageBuilder"]["db_url"].endswith("images.sqlite")  # configure()'s defaults
    assert written["BuildahBackend"]["storage_root"].endswith(os.path.join("buildah", "storage"))
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    assert IMAGES_BUILD_SCOPE in c.JupyterHub.custom_scopes

    # set after configure(): JupyterHub calls the environment's callable when it starts the service
    c.ImageBuilder.max_context_bytes = 4321
    c.BuildahBackend.sandbox = False
    assert entry["environment"][CONFIG_ENV](None) == path
    written = json.loads(open(path).read())
    assert written["ImageBuilder"]["max_context_bytes"] == 4321 and written["BuildahBackend"]["sandbox"] is False

    # and the service reads it, with the command line on top
    app = ImageBuilder()
    app.initialize(["--config", path, "--ImageBuilder.max_builds_per_user=3"])
    assert app.max_context_bytes == 4321 and app.max_builds_per_user == 3
    assert app.db_url == written["ImageBuilder"]["db_url"]


def test_a_service_never_runs_the_hubs_config_file(tmp_path):
    """The service starts with its JSON file only: a jupyterhub_config.py that would fail if run
    (it exits) is not touched."""
    c = Config()
    configure(c, data_dir=str(tmp_path / "data"))
    path = images_entry(c)["command"][-1]
    (tmp_path / "jupyterhub_config.py").write_text("raise SystemExit('the hub config was executed')\n")
    code = (
        "from kubestudio.image_builder.app import ImageBuilder; a = ImageBuilder(); "
        f"a.initialize(['--config', {path!r}]); print(a.registry_host)"
    )
    run = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "KUBESTUDIO_CONFIG_FILE": str(tmp_path / "jupyterhub_config.py")},
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == c.ImageBuilder.registry_host


def test_the_jobs_service_is_declared_beside_the_images_service(tmp_path, monkeypatch):
    """Each service its own port and config file; both grant the built-in user and server roles
    their scopes (one role per name); the jobs service gets the local servers' GPUs, also when
    they are set after configure()."""
    from kubestudio.jobs.app import JobService
    from kubestudio.names import JOBS_ADMIN_SCOPE, JOBS_RUN_SCOPE

    monkeypatch.setenv("KUBESTUDIO_PASSWORD", "s3cret")
    c = Config()
    configure(
        c, data_dir=str(tmp_path / "data"), images_url="http://127.0.0.1:10201", jobs_url="http://127.0.0.1:10202"
    )
    entries = {s["name"]: s for s in c.JupyterHub.services if "command" in s and s["name"] in ("images", "jobs")}
    assert entries["images"]["url"] == "http://127.0.0.1:10201" and entries["jobs"]["url"] == "http://127.0.0.1:10202"
    path = str(tmp_path / "data" / "jobs-service.json")
    assert entries["jobs"]["command"] == [sys.executable, "-m", "kubestudio.jobs", "--config", path]
    roles = {}
    for role in c.JupyterHub.load_roles:
        assert role["name"] not in roles, f"role {role['name']} defined twice"
        roles[role["name"]] = role
    assert {IMAGES_BUILD_SCOPE, JOBS_RUN_SCOPE} <= set(roles["user"]["scopes"])
    assert {IMAGES_BUILD_SCOPE, JOBS_RUN_SCOPE} <= set(roles["server"]["scopes"])
    assert roles["kubestudio-jobs-admin"]["scopes"] == [JOBS_ADMIN_SCOPE, "access:services!service=jobs"]
    assert {JOBS_RUN_SCOPE, JOBS_ADMIN_SCOPE} <= set(c.JupyterHub.custom_scopes)

    c.LocalWorkspaceSpawner.gpus = ["0:A100"]  # after configure(), as an admin's jupyterhub_config.py may
    assert entries["jobs"]["environment"][CONFIG_ENV](None) == path
    written = json.loads(open(path).read())
    assert written["LocalJobBackend"]["gpus"] == ["0:A100"]
    assert written["LocalJobBackend"]["data_dir"] == str(tmp_path / "data")
    assert written["JobService"]["stop_jobs_on_exit"] is True
    app = JobService()
    app.initialize(["--config", path])
    assert app.db_url.endswith("jobs.sqlite") and app.stop_jobs_on_exit is True
    # the embedded default's jobs take their image from LocalJobBackend: nothing is worked out for pods
    c.KubeSpawner.image = "registry.example/kubestudio/singleuser:1"
    entries["jobs"]["environment"][CONFIG_ENV](None)
    assert "default_image" not in json.loads(open(path).read()).get("KubernetesJobBackend", {})

    off = Config()
    configure(off, data_dir=str(tmp_path / "off"), jobs_service=False)
    assert "jobs" not in {s["name"] for s in off.JupyterHub.services}


def test_on_kubernetes_boards_run_as_pods_like_the_servers(tmp_path, monkeypatch):
    """spawner="kubernetes" picks the pod backend; the boards' pods get the servers' namespace,
    claims, user and image, also when jupyterhub_config.py sets them after configure()."""
    from kubestudio.tensorboards.app import TensorBoardService
    from kubestudio.tensorboards.backends.kubernetes import KubernetesBoardBackend

    monkeypatch.setenv("KUBESTUDIO_PASSWORD", "s3cret")
    c = Config()
    configure(
        c,
        data_dir=str(tmp_path / "data"),
        spawner="kubernetes",
        images_service=False,
        jobs_service=False,
        tensorboards_url="http://127.0.0.1:10203",
    )
    c.KubeSpawner.image = "registry.example.org/singleuser:1"
    c.WorkspaceSpawner.namespace = "ml"
    c.WorkspaceSpawner.uid = 1234
    entry = next(s for s in c.JupyterHub.services if s["name"] == "tensorboards")
    path = entry["environment"][CONFIG_ENV](None)
    written = json.loads(open(path).read())
    assert written["TensorBoardService"]["backend_class"] == (
        "kubestudio.tensorboards.backends.kubernetes.KubernetesBoardBackend"
    )
    assert "LocalBoardBackend" not in written
    assert {k: written["KubernetesBoardBackend"][k] for k in ("image", "namespace", "uid")} == {
        "image": "registry.example.org/singleuser:1",
        "namespace": "ml",
        "uid": 1234,
    }
    app = TensorBoardService()
    app.initialize(["--config", path])
    assert app.backend_class is KubernetesBoardBackend
    backend = app.backend_class(parent=app)
    assert (backend.image, backend.namespace, backend.uid) == ("registry.example.org/singleuser:1", "ml", 1234)
    roles = {role["name"]: role for role in c.JupyterHub.load_roles}
    assert roles["kubestudio-tensorboards-service"] == {
        "name": "kubestudio-tensorboards-service",
        "scopes": ["read:groups"],
        "services": ["tensorboards"],
    }


SERVER_IMAGE_CATALOG = """\
profiles:
  - slug: small
    display_name: Small
    images:
      - {name: base, display_name: Base, image: registry.example.org/small:1}
  - slug: torch
    display_name: Torch
    default: true
    images:
      - {name: torch, display_name: Torch, image: registry.example.org/torch:2}
      - {name: other, display_name: Other, image: registry.example.org/other:3}
  - slug: plain
    display_name: Plain
"""


@pytest.mark.parametrize(
    "case",
    [
        "shipped",
        "shipped+image",
        "catalog",
        "catalog+image",
        "no-images",
        "profile_list",
        "profile_list-no-override",
        "callable",
        "jobs-own",
    ],
)
def test_on_kubernetes_a_job_or_board_from_the_page_runs_in_the_image_a_server_gets(tmp_path, monkeypatch, case):
    """The jobs and boards services get the image a server starts with when its user picks nothing,
    as WorkspaceSpawner decides it, also for settings made after configure()."""
    from kubespawner import KubeSpawner

    from kubestudio.hub.config import KubeStudio
    from kubestudio.spawner.profiles import load_catalog

    monkeypatch.setenv("KUBESTUDIO_PASSWORD", "s3cret")
    catalog = tmp_path / "profiles.yaml"
    catalog.write_text(
        SERVER_IMAGE_CATALOG if case != "no-images" else "profiles:\n  - {slug: plain, display_name: Plain}\n"
    )
    c = Config()
    settings = {} if case.startswith("shipped") else {"profiles_file": str(catalog)}
    configure(
        c,
        data_dir=str(tmp_path / "data"),
        spawner="kubernetes",
        images_service=False,
        jobs_url="http://127.0.0.1:10202",
        tensorboards_url="http://127.0.0.1:10203",
        **settings,
    )
    shipped = load_catalog(KubeStudio().profiles_file).default.images[0].image
    expected = {
        "shipped": shipped,
        "shipped+image": "registry.example.org/admin:1",  # the shipped catalog yields to the admin's image
        "catalog": "registry.example.org/torch:2",  # the default profile's first image
        "catalog+image": "registry.example.org/torch:2",  # an admin's own catalog decides
        "no-images": "registry.example.org/admin:1",
        "profile_list": "registry.example.org/listed:2",
        "profile_list-no-override": "registry.example.org/admin:1",
        "callable": "registry.example.org/admin:1",
        "jobs-own": "registry.example.org/jobs:9",
    }[case]
    if case.endswith("+image") or case in ("no-images", "profile_list-no-override", "callable", "jobs-own"):
        c.WorkspaceSpawner.image = "registry.example.org/admin:1"
    if case.startswith("profile_list"):
        override = {"kubespawner_override": {"image": "registry.example.org/listed:2"}}
        c.KubeSpawner.profile_list = [
            {"display_name": "One", "slug": "one"},
            {"display_name": "Two", "slug": "two", "default": True, **(override if case == "profile_list" else {})},
        ]
    if case == "callable":
        c.KubeSpawner.profile_list = lambda spawner: []
    if case == "jobs-own":
        c.KubernetesJobBackend.default_image = c.KubernetesBoardBackend.image = "registry.example.org/jobs:9"
    services = {s["name"]: s for s in c.JupyterHub.services}
    jobs = json.loads(open(services["jobs"]["environment"][CONFIG_ENV](None)).read())
    boards = json.loads(open(services["tensorboards"]["environment"][CONFIG_ENV](None)).read())
    assert jobs["KubernetesJobBackend"]["default_image"] == expected
    assert boards["KubernetesBoardBackend"]["image"] == expected
    assert KubeSpawner.class_traits()["image"].default_value not in (expected, shipped)
