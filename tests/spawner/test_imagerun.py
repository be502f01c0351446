"""The command lines that run a process inside an image (kubestudio.spawner.imagerun), the choice of
image for a local server and a local job, and the environment file. The runs themselves are in
tests/e2e/test_server_images.py (real buildah, real images)."""

import os
import subprocess

import pytest

from kubestudio.accounts import Account
from kubestudio.jobs.spec import SpecError, parse_spec
from kubestudio.jobs.training.backends.local import LocalJobBackend
from kubestudio.spawner.imagerun import ENV_FILE, ImageRunner, user_mounts, write_env_file
from kubestudio.spawner.storage import user_folders

ALICE = Account("ks-alice", 1234, 1235)


def test_the_command_runs_as_the_account_with_the_users_folders_and_the_environment_file(tmp_path):
    runner = ImageRunner(storage_root=str(tmp_path / "s"), run_root=str(tmp_path / "r"))
    folders = user_folders(str(tmp_path / "data"), "alice")
    argv = runner.command(
        "ks-alice-server",
        ["jupyterhub-singleuser", "--debug"],
        ALICE,
        user_mounts(folders, "alice"),
        workdir="/mnt/alice",
        env_file=str(tmp_path / "env"),
    )
    assert argv[:6] == ["buildah", "--storage-driver", "overlay", "--root", str(tmp_path / "s"), "--runroot"]
    run = argv.index("run")
    assert argv[run : run + 6] == ["run", "--isolation", "chroot", "--network", "host", "--terminal=false"]
    assert argv[argv.index("--user") + 1] == "1234:1235"
    volumes = [argv[i + 1] for i, a in enumerate(argv) if a == "--volume"]
    assert volumes == [
        f"{folders.workspace}:/mnt/alice:rw",
        f"{folders.archives}:/archives/alice:rw",
        f"{folders.home}:/home/alice:rw",
        f"{folders.archives}:/mnt/archives:rw",
        f"{tmp_path / 'env'}:{ENV_FILE}:ro",
    ]
    assert argv[argv.index("--workingdir") + 1] == "/mnt/alice"
    # the container, then the entry that reads the environment file, then the command
    tail = argv[argv.index("ks-alice-server") :]
    assert tail[1] == "--" and tail[-2:] == ["jupyterhub-singleuser", "--debug"] and ENV_FILE in tail


def test_a_user_named_archives_gets_no_second_mount_over_their_workspace(tmp_path):
    mounts = user_mounts(user_folders(str(tmp_path), "archives"), "archives")
    assert [target for _, target, _ in mounts] == ["/mnt/archives", "/archives/archives", "/home/archives"]


def test_gpu_runs_get_the_drivers_user_space_files(tmp_path):
    (tmp_path / "libcuda.so.1").write_text("")
    (tmp_path / "nvidia-smi").write_text("")
    runner = ImageRunner(gpu_files=[str(tmp_path / "libcuda.so*"), str(tmp_path / "nvidia-smi"), "/nonexistent/x"])
    with_gpus = runner.command("c", ["true"], gpus=True)
    without = runner.command("c", ["true"])
    assert f"{tmp_path / 'libcuda.so.1'}:{tmp_path / 'libcuda.so.1'}:ro" in with_gpus
    assert f"{tmp_path / 'nvidia-smi'}:{tmp_path / 'nvidia-smi'}:ro" in with_gpus
    assert "--volume" not in without


def test_the_environment_file_is_the_accounts_alone_and_sh_reads_it_back_exactly(tmp_path):
    env = {"TOKEN": "a b'c\"$HOME`x`", "EMPTY": "", "not-a-name": "skipped"}
    path = write_env_file(str(tmp_path / "env"), env, extra=['PATH="/extra:$PATH"'])
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    out = subprocess.run(
        ["/bin/sh", "-c", 'set -a; . "$0"; set +a; printf "%s|%s|%s" "$TOKEN" "$EMPTY" "$PATH"', path],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
        check=True,
    ).stdout
    assert out == "a b'c\"$HOME`x`||/extra:/usr/bin:/bin"
    # a link planted where the file goes is not followed
    os.remove(path)
    os.symlink(tmp_path / "elsewhere", path)
    with pytest.raises(OSError):
        write_env_file(path, env)
    assert not (tmp_path / "elsewhere").exists()


SERVERS_IMAGE = "127.0.0.1:5000/kubestudio/singleuser:1"


@pytest.mark.parametrize(
    "image, packages, expected",
    [
        (None, [], SERVERS_IMAGE),  # none named (the jobs page): where servers run
        ("host", [], None),
        ("127.0.0.1:5000/kubestudio/alice/mine:v1", [], "127.0.0.1:5000/kubestudio/alice/mine:v1"),
        ("quay.io/jupyter/base-notebook:x", [], "image: quay.io/jupyter/base-notebook:x is not in this hub's registry"),
        # packages go on top of any image (jobs.packagelayer)
        ("127.0.0.1:5000/kubestudio/alice/mine:v1", ["numpy"], "127.0.0.1:5000/kubestudio/alice/mine:v1"),
    ],
)
def test_which_image_a_local_job_runs_in(image, packages, expected):
    backend = LocalJobBackend(run_images=True, local_registry="127.0.0.1:5000", default_image=SERVERS_IMAGE)
    body = {"name": "j", "command": ["true"], "packages": packages, **({"image": image} if image else {})}
    spec = parse_spec(body, {})
    if expected is None or not expected.startswith(("image:", "packages:")):
        assert backend.job_image(spec) == expected
    else:
        with pytest.raises(SpecError) as e:
            backend.job_image(spec)
        assert str(e.value).startswith(expected) and e.value.status == 409
    # with image runs off (a hub that is not root), every job runs on the hub's Python
    assert LocalJobBackend(run_images=False, local_registry="127.0.0.1:5000").job_image(spec) is None


def test_which_image_a_local_server_runs_in():
    from kubestudio.spawner.local import LocalWorkspaceSpawner
    from kubestudio.spawner.profiles import parse_catalog
    from kubestudio.spawner.projects import user_projects
    from kubestudio.spawner.request import SpawnRefused, resolve_request

    catalog = parse_catalog(
        {
            "profiles": [
                {
                    "slug": "cpu",
                    "default": True,
                    "ide": ["jupyterlab", "vscode"],
                    "custom_images": True,
                    "images": [
                        {"name": "scipy", "image": "quay.io/jupyter/scipy-notebook:x"},
                        {"name": "host", "image": "host"},
                    ],
                }
            ]
        }
    )
    projects = user_projects([])
    prefix = "127.0.0.1:5000/kubestudio/alice/"
    local = "127.0.0.1:5000/kubestudio/singleuser:1"
    spawner = LocalWorkspaceSpawner(local_image=local, local_registry="127.0.0.1:5000")

    def runs(**options):
        request = resolve_request(options, catalog, projects, custom_image_prefix=prefix, host_image=True)
        return spawner.image_to_run(request)

    assert runs() == local  # a Kubernetes image: the local single-user image here
    assert runs(image="host") is None
    assert runs(image=prefix + "mine:v1") == prefix + "mine:v1"
    assert runs(ide="vscode") is None  # code-server is the machine's
    assert (
        LocalWorkspaceSpawner(local_image="").image_to_run(resolve_request({}, catalog, projects, host_image=True))
        is None
    )
    # `host` means nothing on Kubernetes: refused with the field
    with pytest.raises(SpawnRefused) as e:
        resolve_request({"image": "host"}, catalog, projects)
    assert str(e.value).startswith("image: 'host' runs on the hub machine's own Python") and e.value.status == 409
