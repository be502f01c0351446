"""A user's own Python environment (kubestudio.spawner.userenv) and how processes are started as a
user's account (kubestudio.accounts.Account.command)."""

import os
import subprocess
import threading

import pytest

from kubestudio.accounts import Account
from kubestudio.spawner.userenv import LAYER_PTH, base_site_packages, is_ready, layered_env, site_packages

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="changing accounts needs root")


def test_a_prepared_environment_is_ready_and_prepared_again_when_its_layer_moved(tmp_path):
    env = str(tmp_path / "env")
    assert not is_ready(env, base_site_packages())
    layered_env(env, base_site_packages())
    assert is_ready(env, base_site_packages())
    # the hub moved (another site-packages): the layer is out of date, and rewritten
    assert not is_ready(env, str(tmp_path / "elsewhere"))
    layered_env(env, str(tmp_path / "elsewhere"))
    with open(os.path.join(site_packages(env), LAYER_PTH)) as f:
        assert str(tmp_path / "elsewhere") in f.read()
    # what the layer gives: the hub's packages importable from the user's Python
    layered_env(env, base_site_packages())
    probe = subprocess.run(
        [os.path.join(env, "bin", "python"), "-c", "import traitlets; print(traitlets.__file__)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.startswith(base_site_packages())


def test_what_the_user_planted_in_their_environment_neither_stalls_nor_fools_the_check(tmp_path):
    env = str(tmp_path / "env")
    layered_env(env, base_site_packages())
    layer = os.path.join(site_packages(env), LAYER_PTH)
    text = open(layer).read()
    # a FIFO: a blocking read would wait for a writer forever
    os.remove(layer)
    os.mkfifo(layer)
    answer = []
    checker = threading.Thread(target=lambda: answer.append(is_ready(env, base_site_packages())), daemon=True)
    checker.start()
    checker.join(5)
    assert answer == [False], "the check stalled on a FIFO"
    # a link to a file with the right text is not the environment's own file
    os.remove(layer)
    target = tmp_path / "elsewhere.pth"
    target.write_text(text)
    os.symlink(target, layer)
    assert not is_ready(env, base_site_packages())
    # a longer file that starts with the right text is not it either
    os.remove(layer)
    with open(layer, "w") as f:
        f.write(text + "import os\n")
    assert not is_ready(env, base_site_packages())
    layered_env(env, base_site_packages())  # put right again
    assert is_ready(env, base_site_packages())


@root_only
def test_a_command_runs_with_the_accounts_ids_groups_and_no_capabilities():
    nobody = Account("nobody", 65534, 65534, (100,))
    status = subprocess.run(
        nobody.command(["cat", "/proc/self/status"]), capture_output=True, text=True, check=True
    ).stdout
    fields = dict(line.split(":", 1) for line in status.splitlines())
    assert fields["Uid"].split() == ["65534"] * 4
    assert fields["Gid"].split() == ["65534"] * 4
    assert fields["Groups"].split() == ["100"]
    assert int(fields["CapEff"], 16) == 0 and int(fields["CapPrm"], 16) == 0
    # no extra groups: none kept from the service
    alone = Account("nobody", 65534, 65534)
    status = subprocess.run(
        alone.command(["cat", "/proc/self/status"]), capture_output=True, text=True, check=True
    ).stdout
    assert dict(line.split(":", 1) for line in status.splitlines())["Groups"].split() == []


@root_only
def test_a_missing_program_is_a_clear_failure_not_a_service_error():
    nobody = Account("nobody", 65534, 65534)
    result = subprocess.run(nobody.command(["/nonexistent/tool"]), capture_output=True, text=True)
    assert result.returncode != 0
    assert "/nonexistent/tool" in result.stderr
