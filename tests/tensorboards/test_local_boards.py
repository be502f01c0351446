"""The folders a board shows (checked, linked, keyed) and real TensorBoard run by the local
backend on real event files."""

import asyncio
import json
import os

import pytest
import requests
from traitlets.config import Config

from kubestudio.names import RUNTIME_SECRET_HEADER
from kubestudio.processgroup import process_start_time
from kubestudio.spawner.storage import ensure_user_folders, user_folders
from kubestudio.tensorboards.backends.local import BoardFailed, LocalBoardBackend, Running
from kubestudio.tensorboards.logdirs import LogdirError, board_key, link_tree, resolve
from kubestudio.testing.wait import wait_for

from .events import write_scalars

MOUNTS = ("/mnt/alice", "/archives/alice")
# these tests are about TensorBoard; running it as the owner's account is tests/e2e/test_isolation.py's
SHARED = Config({"UserAccounts": {"mode": "shared"}})


@pytest.fixture
def folders(tmp_path):
    found = user_folders(str(tmp_path / "data"), "alice")
    ensure_user_folders(found)
    return found


def test_folders_are_checked_and_named(folders, tmp_path):
    os.makedirs(os.path.join(folders.workspace, "runs", "exp1"))
    os.makedirs(os.path.join(folders.workspace, "runs", "exp2"))
    os.makedirs(os.path.join(folders.archives, "old"))
    found = resolve(["runs/exp1", "/mnt/alice/runs/exp2", "/archives/alice/old"], folders, MOUNTS)
    assert [name for name, _ in found] == ["runs_exp1", "runs_exp2", "archives_old"]
    assert found[0][1] == os.path.realpath(os.path.join(folders.workspace, "runs", "exp1"))
    os.symlink("/etc", os.path.join(folders.workspace, "out"))
    bad = {
        "../x": ("logdirs[0]: '../x' leads outside your workspace", 400),
        "/etc": ("logdirs[0]: '/etc' is outside your workspace (/mnt/alice) and archives (/archives/alice)", 400),
        "out": ("logdirs[0]: 'out' leads outside your workspace", 400),
        "runs/nope": ("logdirs[0]: no folder 'runs/nope' in your workspace", 404),
        "/mnt/alice/../bob": ("logdirs[0]: '/mnt/alice/../bob' leads outside your workspace", 400),
    }
    for logdir, (message, status) in bad.items():
        with pytest.raises(LogdirError) as e:
            resolve([logdir], folders, MOUNTS)
        assert (str(e.value), e.value.status) == (message, status)
    with pytest.raises(LogdirError, match=r"logdirs: give one folder"):
        resolve([], folders, MOUNTS)
    # the same folders, however named, are the same board
    same = resolve(["/mnt/alice/runs/exp2", "runs/exp1"], folders, MOUNTS)
    assert board_key("alice", found[:2]) == board_key("alice", same)
    assert board_key("alice", found[:2]) != board_key("bob", same)
    tree = link_tree(str(tmp_path / "tree"), found)
    assert sorted(os.listdir(tree)) == ["archives_old", "runs_exp1", "runs_exp2"]
    link_tree(tree, found[:1])  # fewer folders: the others' links go
    assert os.listdir(tree) == ["runs_exp1"]


def test_tensorboard_serves_the_runs_and_scalars_written(folders, tmp_path):
    for run in ("exp1", "exp2"):
        write_scalars(os.path.join(folders.workspace, "runs", run), values=(1.0, 0.5) if run == "exp1" else (3.0,))
    found = resolve(["runs/exp1", "runs/exp2"], folders, MOUNTS)
    backend = LocalBoardBackend(work_dir=str(tmp_path / "boards"), data_dir=str(tmp_path / "data"), config=SHARED)
    prefix = "/services/tensorboards/b/b1/"

    async def go():
        running = await backend.start("b1", "alice", found, prefix)
        assert sorted(os.listdir(os.path.join(backend.folder("b1"), "logdir"))) == ["runs_exp1", "runs_exp2"]
        try:
            assert running.url.startswith("http://127.0.0.1:") and running.url.endswith("/services/tensorboards/b/b1")
            assert backend.alive(running)
            # TensorBoard answers the service's proxy alone (it sends the board's secret); anyone else: 403
            refused = requests.get(running.url + "/data/runs", timeout=10)
            assert refused.status_code == 403 and "TensorBoard service" in refused.json()["message"]
            wrong = requests.get(running.url + "/data/runs", timeout=10, headers={RUNTIME_SECRET_HEADER: "guess"})
            assert wrong.status_code == 403
            runs = requests.get(running.url + "/data/runs", timeout=10, headers=running.headers).json()
            scalars = requests.get(
                running.url + "/data/plugin/scalars/scalars",
                headers=running.headers,
                params={"run": "runs_exp1", "tag": "loss"},
                timeout=10,
            ).json()
            again = Running.from_json(json.loads(json.dumps(running.to_json())))  # as a restart reads it
            assert backend.alive(again)
        finally:
            await backend.stop("b1", running)
        return running, runs, scalars

    running, runs, scalars = asyncio.run(go())
    assert sorted(runs) == ["runs_exp1", "runs_exp2"]
    assert [(step, value) for _, step, value in scalars] == [(0, 1.0), (1, 0.5)]
    # stop() kills the group; the board is gone once its process is reaped (not merely signalled)
    wait_for(
        lambda: not backend.alive(running) and process_start_time(running.pid) is None,
        timeout=10,
        interval=0.05,
        what="the stopped TensorBoard's process to be gone",
    )
    assert "TensorBoard" in backend.stderr("b1")


def test_a_tensorboard_that_cannot_start_fails_with_its_stderr(tmp_path):
    backend = LocalBoardBackend(
        work_dir=str(tmp_path / "boards"),
        data_dir=str(tmp_path / "data"),
        config=SHARED,
        tensorboard_command=["python3", "-c", "import sys; sys.exit('no such plugin: demo')"],
    )
    with pytest.raises(BoardFailed, match=r"TensorBoard exited with code 1: no such plugin: demo"):
        asyncio.run(backend.start("b2", "alice", [], "/services/tensorboards/b/b2/"))
