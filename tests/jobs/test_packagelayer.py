"""A job's packages on top of its image's Python (jobs.packagelayer): the shell step both backends
run, here with this machine's Python and a real wheel, no index."""

import os
import subprocess
import sys

from kubestudio.jobs.training.packagelayer import install_script, layer_folder
from kubestudio.testing.wheels import tiny_wheel


def run_step(folder, packages, env=None):
    """The step, then what Python sees of the package: (exit code, output)."""
    script = install_script(folder, packages, python=sys.executable) + ' && exec "$@"'
    done = subprocess.run(
        [
            "sh",
            "-c",
            script,
            "--",
            sys.executable,
            "-c",
            "import ksdemo_layer; print('VALUE', ksdemo_layer.VALUE, ksdemo_layer.__file__)",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )
    return done.returncode, done.stdout + done.stderr


def test_installed_once_per_image_and_list_and_found_first(tmp_path):
    name, data = tiny_wheel("ksdemo_layer")
    (tmp_path / name).write_bytes(data)
    packages = [f"ksdemo_layer @ file://{tmp_path / name}"]
    folder = layer_folder(str(tmp_path / "home"), "registry/img:1", packages)
    assert folder.startswith(f"{tmp_path}/home/.kubestudio/job-packages/")
    assert layer_folder(str(tmp_path / "home"), "registry/img:2", packages) != folder  # another image's Python
    code, out = run_step(folder, packages)
    assert code == 0 and f"VALUE 42 {folder}/ksdemo_layer.py" in out and "Successfully installed" in out, out
    code, out = run_step(folder, packages, env={"PYTHONPATH": "/elsewhere"})  # kept: nothing installed again
    assert code == 0 and "VALUE 42" in out and "Successfully installed" not in out, out
    assert sorted(os.listdir(os.path.dirname(folder))) == [os.path.basename(folder)]  # no half-made folder left


def test_ranks_installing_at_once_keep_one_folder(tmp_path):
    name, data = tiny_wheel("ksdemo_layer")
    (tmp_path / name).write_bytes(data)
    packages = [f"ksdemo_layer @ file://{tmp_path / name}"]
    folder = layer_folder(str(tmp_path), "img", packages)
    script = install_script(folder, packages, python=sys.executable)
    ranks = [
        subprocess.Popen(
            ["sh", "-c", script],
            env={**os.environ, "HOSTNAME": f"rank{i}"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for i in range(3)
    ]
    assert [p.wait(timeout=120) for p in ranks] == [0, 0, 0]
    assert os.listdir(os.path.dirname(folder)) == [os.path.basename(folder)]
    assert os.path.isfile(os.path.join(folder, "ksdemo_layer.py"))


def test_a_failed_install_fails_the_step_and_keeps_nothing(tmp_path):
    packages = [f"ksdemo_missing @ file://{tmp_path}/no-such.whl"]
    folder = layer_folder(str(tmp_path), "img", packages)
    code, out = run_step(folder, packages)
    assert code != 0 and "no-such.whl" in out, out
    assert os.listdir(os.path.dirname(folder)) == []  # neither the folder nor a half-made one
