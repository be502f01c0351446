"""The jobs service on the embedded default: real hub, real service, ranks as real processes."""

import json
import os
import time

import pytest
import requests

from kubestudio.jobs import JobFailed
from kubestudio.processgroup import process_start_time
from kubestudio.services.client import ServiceError
from kubestudio.testing.wait import wait_for

ALL_REDUCE = """
import json, os
import torch
import torch.distributed as dist

dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
tensor = torch.tensor([float(rank + 1)])
dist.all_reduce(tensor)
with open(f"out/rank-{rank}.json", "w") as f:
    json.dump({"rank": rank, "world": world, "sum": tensor.item(), "local_rank": int(os.environ["LOCAL_RANK"]),
               "pet_nnodes": os.environ["PET_NNODES"], "cuda": os.environ["CUDA_VISIBLE_DEVICES"]}, f)
print(f"rank {rank}/{world}: sum {tensor.item()}")
dist.destroy_process_group()
"""


def lines_of(client, job):
    return client.logs(job).splitlines()


def test_two_nodes_all_reduce_with_real_torch_distributed(jobs):
    pytest.importorskip("torch")
    client = jobs.client("tina")
    jobs.write("tina", "dist/train.py", ALL_REDUCE)
    os.makedirs(os.path.join(jobs.workspace("tina"), "dist", "out"), exist_ok=True)
    job = client.create(name="allreduce", script="dist/train.py", working_dir="dist", nodes=2, framework="pytorch")
    assert job["status"] == "queued" and job["kind"] == "pytorch"
    done = client.wait("allreduce", timeout=180)
    assert done["exit"] == {
        "master-0": {"code": 0, "reason": "Completed"},
        "worker-0": {"code": 0, "reason": "Completed"},
    }
    results = [json.load(open(os.path.join(jobs.workspace("tina"), "dist", "out", f"rank-{r}.json"))) for r in (0, 1)]
    assert [r["sum"] for r in results] == [3.0, 3.0]  # 1 + 2, all-reduced over gloo
    assert [(r["rank"], r["world"], r["local_rank"], r["pet_nnodes"]) for r in results] == [
        (0, 2, 0, "2"),
        (1, 2, 0, "2"),
    ]
    assert all(r["cuda"] == "" for r in results)  # no GPU asked: none visible
    log = lines_of(client, "allreduce")
    assert "[master-0] rank 0/2: sum 3.0" in log and "[worker-0] rank 1/2: sum 3.0" in log
    assert [e["status"] for e in done["history"]] == ["queued", "starting", "running", "succeeded"]


def test_ranks_get_the_operators_environment(jobs):
    client = jobs.client("erin")
    jobs.write(
        "erin",
        "env.py",
        "import os, json, sys\nkeys = ['RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'NODE_RANK', "
        "'MASTER_ADDR', 'PET_NPROC_PER_NODE', 'PET_NODE_RANK', 'KUBESTUDIO_JOB', 'HOME', 'LR']\n"
        "print(json.dumps({k: os.environ.get(k) for k in keys} | {'args': sys.argv[1:], "
        "'token': 'JUPYTERHUB_API_TOKEN' in os.environ, 'cwd': os.getcwd()}))\n",
    )
    client.create(name="env", script="env.py", args=["--lr", "0.1"], nodes=2, procs_per_node=2, env={"LR": "0.1"})
    client.wait("env", timeout=120)
    seen = {}
    for line in lines_of(client, "env"):
        replica, _, text = line.partition(" ")
        seen[replica.strip("[]")] = json.loads(text)
    assert sorted(seen) == ["master-0:0", "master-0:1", "worker-0:0", "worker-0:1"]
    assert {name: (v["RANK"], v["LOCAL_RANK"], v["NODE_RANK"]) for name, v in seen.items()} == {
        "master-0:0": ("0", "0", "0"),
        "master-0:1": ("1", "1", "0"),
        "worker-0:0": ("2", "0", "1"),
        "worker-0:1": ("3", "1", "1"),
    }
    first = seen["master-0:0"]
    assert first["WORLD_SIZE"] == "4" and first["MASTER_ADDR"] == "127.0.0.1" and first["PET_NPROC_PER_NODE"] == "2"
    assert first["KUBESTUDIO_JOB"] == "env" and first["LR"] == "0.1" and first["args"] == ["--lr", "0.1"]
    assert first["token"] is False  # the service's token never reaches user code
    assert os.path.realpath(first["cwd"]) == os.path.realpath(jobs.workspace("erin"))


@pytest.mark.parametrize(
    "spec, status, words",
    [
        ({"name": "x", "script": "t.py", "bogus": 1}, 400, "bogus: unknown field"),
        ({"name": "Bad_Name", "script": "t.py"}, 400, "name: lower-case letters"),
        ({"name": "x"}, 400, "command: give either command or script"),
        ({"name": "x", "script": "../outside.py"}, 400, "script: must be a path inside your workspace"),
        ({"name": "x", "script": "link/secret.py"}, 400, "script: 'link/secret.py' leads outside your workspace"),
        ({"name": "x", "script": "missing.py"}, 400, "script: no file 'missing.py' in your workspace"),
        ({"name": "x", "script": "t.py", "working_dir": "nope"}, 400, "working_dir: no folder 'nope'"),
        ({"name": "x", "script": "t.py", "env": {"RANK": "3"}}, 400, "env.RANK: set by the jobs service"),
        (
            {"name": "x", "script": "t.py", "resources": {"gpu": "1(H100)"}},
            409,
            "resources.gpu: this machine has no GPU of type H100",
        ),
        (
            {"name": "x", "script": "t.py", "nodes": 2, "resources": {"gpu": 2}},
            409,
            "4 GPUs asked (2 per node x 2 nodes), this machine has 2",
        ),
        (
            {"name": "x", "script": "t.py", "project": "vision", "resources": {"gpu": 2}},
            403,
            "project 'vision' allows 1 per user",
        ),
        ({"name": "x", "script": "t.py", "project": "nope"}, 403, "project: you are not a member of project 'nope'"),
        (
            {"name": "x", "script": "t.py", "framework": "trainjob", "runtime": "deepspeed"},
            409,
            "runtime: this machine runs TrainJobs with the 'torch-distributed' runtime",
        ),
        (
            {"name": "x", "script": "t.py", "packages": ["--index-url=http://evil"]},
            400,
            "packages[0]: must be a pip requirement",
        ),
        ({"name": "x", "script": "t.py", "max_runtime": "soon"}, 400, "max_runtime: must be seconds or a duration"),
        ({"name": "x", "script": "t.py", "nodes": 99}, 400, "nodes: at most 16"),
    ],
)
def test_bad_input_is_refused_naming_the_field_and_nothing_runs(jobs, tmp_path, spec, status, words):
    jobs.write("vic", "t.py", "print('hi')\n")
    outside = tmp_path / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "secret.py").write_text("print('outside')\n")
    link = os.path.join(jobs.workspace("vic"), "link")
    if not os.path.lexists(link):
        os.symlink(outside, link)
    r = requests.post(jobs.url + "api/jobs", json=spec, headers={"Authorization": f"token {jobs.token('vic')}"})
    assert r.status_code == status, r.text
    assert r.json()["status"] == status and words in r.json()["message"], r.json()
    assert jobs.client("vic").list() == []


def test_limits_say_what_a_job_may_hold_before_a_refusal(jobs):
    """What the lab's job dialog shows: each of the caller's projects' GPU quota and the machine's
    GPUs by type, the same figures the refusals above name."""
    assert jobs.client("vic").limits() == {
        "projects": {"public": {"max_gpus": None}, "vision": {"max_gpus": 1}},
        "machine_gpus": {"NVIDIA A100": 2},
    }
    assert jobs.client("nora").limits()["projects"] == {"public": {"max_gpus": None}}


def test_name_clash_is_409_until_the_old_job_is_forgotten(jobs):
    client = jobs.client("nora")
    jobs.write("nora", "t.py", "print('once')\n")
    first = client.create(name="same", script="t.py")
    client.wait("same")
    with pytest.raises(ServiceError) as e:
        client.create(name="same", script="t.py")
    assert e.value.status == 409 and "name: you already have a job named 'same'" in str(e.value)
    assert client.delete("same", forget=True)["forgotten"] is True
    assert client.create(name="same", script="t.py")["id"] != first["id"]


def test_a_failing_rank_fails_the_job_and_stops_the_others(jobs):
    client = jobs.client("fay")
    jobs.write(
        "fay",
        "fail.py",
        "import os, sys, time\nif os.environ['RANK'] == '1':\n    print('bad input', flush=True)\n"
        "    sys.exit(3)\nprint('waiting', flush=True)\ntime.sleep(60)\n",
    )
    client.create(name="fail", script="fail.py", nodes=2)
    with pytest.raises(JobFailed) as e:
        client.wait("fail", timeout=60)
    job = e.value.job
    assert job["status"] == "failed" and job["message"] == "worker-0 failed: exit code 3"
    assert job["exit"]["worker-0"] == {"code": 3, "reason": "exit code 3"}
    assert job["exit"]["master-0"]["code"] != 0  # stopped, not left running
    assert "[worker-0] bad input" in lines_of(client, "fail")
    pids = [pid for pid, _ in job["refs"]["pids"].values()]
    assert all(process_start_time(pid) is None for pid in pids)


def test_memory_per_node_is_a_limit_as_on_kubernetes(jobs):
    """A node's ranks (and what they start) together past resources.memory are killed: OOMKilled."""
    client = jobs.client("hugo")
    jobs.write(
        "hugo",
        "hog.py",
        "import subprocess, sys, time\nblocks = []\nprint('growing', flush=True)\n"
        "for _ in range(100):\n    blocks.append(bytearray(8 * 1024 * 1024))\n    time.sleep(0.02)\n"
        "print('survived', flush=True)\n",
    )
    jobs.write("hugo", "small.py", "blocks = [bytearray(8 * 1024 * 1024) for _ in range(4)]\nprint('fits')\n")
    client.create(name="hog", script="hog.py", resources={"memory": "200Mi"})
    with pytest.raises(JobFailed) as e:
        client.wait("hog", timeout=60)
    job = e.value.job
    assert job["message"] == "rank-0 failed: OOMKilled (memory limit 200Mi per node)", job
    assert job["exit"]["rank-0"]["code"] == 137
    assert "[rank-0] survived" not in lines_of(client, "hog")
    assert client.create(name="small", script="small.py", resources={"memory": "200Mi"})
    assert client.wait("small", timeout=60)["status"] == "succeeded"


def test_cancel_stops_every_process_the_job_started(jobs):
    client = jobs.client("cal")
    jobs.write(
        "cal",
        "spawn.py",
        "import subprocess, time, os\n"
        "child = subprocess.Popen(['sleep', '300'])\nopen(f'child-{os.environ[\"RANK\"]}', 'w').write(str(child.pid))\n"
        "print('started', child.pid, flush=True)\ntime.sleep(300)\n",
    )
    client.create(name="long", script="spawn.py", nodes=2)
    client.wait("long", status="running", timeout=60)
    deadline = time.monotonic() + 30
    while not all(os.path.exists(os.path.join(jobs.workspace("cal"), f"child-{r}")) for r in (0, 1)):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    children = [int(open(os.path.join(jobs.workspace("cal"), f"child-{r}")).read()) for r in (0, 1)]
    job = client.delete("long")
    assert job["status"] == "cancelled" and job["message"] == "cancelled by cal"
    assert client.delete("long")["status"] == "cancelled"  # idempotent
    for pid in children + [pid for pid, _ in job["refs"]["pids"].values()]:
        wait_for(
            lambda: process_start_time(pid) is None,
            timeout=15,
            interval=0.05,
            what=f"process {pid} of the cancelled job gone",
        )
    assert "[master-0] started" in " ".join(lines_of(client, "long"))


def test_max_runtime_and_retries(jobs):
    client = jobs.client("rita")
    jobs.write(
        "rita",
        "flaky.py",
        "import os, sys\nmarker = 'tried-once'\nif not os.path.exists(marker):\n"
        "    open(marker, 'w').close()\n    print('first attempt fails')\n    sys.exit(1)\nprint('second attempt works')\n",
    )
    client.create(name="flaky", script="flaky.py", retries=2)
    job = client.wait("flaky", timeout=60)
    assert job["attempt"] == 1
    log = lines_of(client, "flaky")
    assert "[rank-0] first attempt fails" in log and "[rank-0] second attempt works" in log
    assert any("attempt 1 failed: rank-0 failed: exit code 1; retrying" in line for line in log)

    jobs.write("rita", "slow.py", "import time\nprint('working', flush=True)\ntime.sleep(120)\n")
    started = time.monotonic()
    client.create(name="slow", script="slow.py", max_runtime=2)
    with pytest.raises(JobFailed) as e:
        client.wait("slow", timeout=60)
    assert e.value.job["message"] == "stopped after max_runtime (2 s)"
    assert time.monotonic() - started < 20


def test_jobs_over_the_per_user_limit_wait_in_a_fair_queue(jobs):
    client = jobs.client("quinn")
    jobs.write("quinn", "nap.py", "import time, sys\ntime.sleep(float(sys.argv[1]))\nprint('done')\n")
    client.create(name="first", script="nap.py", args=["3"])
    second = client.create(name="second", script="nap.py", args=["0"])
    assert second["status"] == "queued" and second["queue_position"] == 1
    client.wait("first", timeout=60)
    done = client.wait("second", timeout=60)
    assert done["started"] >= client.get("first")["finished"]


def test_follow_says_why_a_job_waits_then_streams_its_lines(jobs):
    client = jobs.client("will")
    jobs.write(
        "will", "nap.py", "import time, sys\nprint('start', flush=True)\ntime.sleep(float(sys.argv[1]))\nprint('end')\n"
    )
    client.create(name="blocker", script="nap.py", args=["2"])
    client.create(name="follower", script="nap.py", args=["0"])
    lines = list(client.logs("follower", follow=True))
    assert lines[0] == "--- queued"
    assert "[rank-0] start" in lines and "[rank-0] end" in lines and lines[-1] == "--- succeeded"


def test_sdk_train_ships_a_function(jobs):
    client = jobs.client("sam")

    def greet(who, times):
        import os

        for _ in range(times):
            print(f"hello {who} from rank {os.environ['RANK']}")

    first = client.train(func=greet, func_args={"who": "kubeflow", "times": 2}, nodes=2, framework="pytorch")
    assert first["name"] == "greet-1"
    client.wait("greet-1", timeout=60)
    log = lines_of(client, "greet-1")
    assert log.count("[master-0] hello kubeflow from rank 0") == 2 and "[worker-0] hello kubeflow from rank 1" in log
    # the same cell run again: a job of its own, named so, never "you already have a job named ..."
    again = client.train(func=greet, func_args={"who": "again", "times": 1})
    assert again["name"] == "greet-2"
    assert client.wait("greet-2", timeout=60)["status"] == "succeeded"
    # a name given is the name used
    assert client.train(func=greet, func_args={"who": "x", "times": 1}, name="mine")["name"] == "mine"
    client.wait("mine", timeout=60)


def test_rerun_copies_the_job_with_new_args(jobs):
    client = jobs.client("ravi")
    jobs.write("ravi", "echo.py", "import sys\nprint('args', *sys.argv[1:])\n")
    client.create(name="echo", script="echo.py", args=["a"])
    client.wait("echo")
    copy = client.rerun("echo", args=["b", "c"])
    assert copy["name"] == "echo-r2" and copy["spec"]["args"] == ["b", "c"]
    client.wait("echo-r2")
    assert "[rank-0] args b c" in lines_of(client, "echo-r2")
    with pytest.raises(ServiceError) as e:
        client.rerun("echo", image_pull_secret="x")
    assert e.value.status == 400 and "image_pull_secret: cannot be changed on a rerun" in str(e.value)
