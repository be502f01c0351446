"""The jobs service as users meet it: who may call what, the notebook side (the server's own token
and the `kubestudio jobs` CLI), GPUs shared with servers, restarts, and the OpenAPI fuzz."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import requests

from kubestudio.processgroup import process_start_time
from kubestudio.services.client import ServiceError
from kubestudio.testing.fuzz import schemathesis
from kubestudio.testing.localhub import _environ
from kubestudio.testing.wait import wait_for

from .conftest import start_jobs_hub

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def setup(jobs):
    """alice's finished job and her running server's environment."""
    alice = jobs.client("alice")
    jobs.write("alice", "hi.py", "print('hi from alice')\n")
    job = alice.create(name="hi", script="hi.py")
    alice.wait("hi", timeout=60)
    jobs.token("bob")
    jobs.token("admin")
    r = jobs.hub.spawn("alice")
    assert r.status_code in (201, 202), r.text
    env = jobs.hub.server_env("alice")
    assert env and env.get("JUPYTERHUB_API_TOKEN")
    yield job["id"], env
    jobs.hub.stop_server("alice")


def callers(jobs, env):
    limited = jobs.hub.api("POST", "/users/alice/tokens", json={"scopes": ["read:users:name!user=alice"]}).json()[
        "token"
    ]
    return {
        "owner": jobs.token("alice"),
        "server": env["JUPYTERHUB_API_TOKEN"],
        "other": jobs.token("bob"),
        "admin": jobs.token("admin"),
        "limited": limited,
        "anonymous": None,
    }


# (method, path, body, expected per caller); {id} is alice's finished job
MATRIX = [
    (
        "GET",
        "api/jobs",
        None,
        {"owner": 200, "server": 200, "other": 200, "admin": 200, "limited": 403, "anonymous": 401},
    ),
    (
        "GET",
        "api/jobs?user=alice",
        None,
        {"owner": 200, "server": 200, "other": 403, "admin": 200, "limited": 403, "anonymous": 401},
    ),
    (
        "GET",
        "api/jobs/{id}",
        None,
        {"owner": 200, "server": 200, "other": 404, "admin": 200, "limited": 403, "anonymous": 401},
    ),
    (
        "GET",
        "api/jobs/{id}/logs",
        None,
        {"owner": 200, "server": 200, "other": 404, "admin": 200, "limited": 403, "anonymous": 401},
    ),
    (
        "GET",
        "api/jobs/{id}/events",
        None,
        {"owner": 200, "server": 200, "other": 404, "admin": 200, "limited": 403, "anonymous": 401},
    ),
    (
        "DELETE",
        "api/jobs/{id}",
        None,
        {"owner": 200, "server": 200, "other": 404, "admin": 200, "limited": 403, "anonymous": 401},
    ),
    (
        "POST",
        "api/jobs/{id}/rerun",
        {"bogus": 1},
        {"owner": 400, "server": 400, "other": 404, "admin": 400, "limited": 403, "anonymous": 401},
    ),
    # by name, as the CLI and the SDK take jobs: the caller's own job of that name
    (
        "GET",
        "api/jobs/hi/logs",
        None,
        {"owner": 200, "server": 200, "other": 404, "admin": 404, "limited": 403, "anonymous": 401},
    ),
    (
        "GET",
        "api/jobs/hi",
        None,
        {"owner": 200, "server": 200, "other": 404, "admin": 404, "limited": 403, "anonymous": 401},
    ),
    (
        "GET",
        "api/jobs/000000000000",
        None,
        {"owner": 404, "server": 404, "other": 404, "admin": 404, "limited": 403, "anonymous": 401},
    ),
    (
        "POST",
        "api/jobs",
        {},
        {"owner": 400, "server": 400, "other": 400, "admin": 400, "limited": 403, "anonymous": 401},
    ),
    (
        "GET",
        "api/runtimes",
        None,
        {"owner": 200, "server": 200, "other": 200, "admin": 200, "limited": 403, "anonymous": 401},
    ),
    (
        "GET",
        "api/limits",
        None,
        {"owner": 200, "server": 200, "other": 200, "admin": 200, "limited": 403, "anonymous": 401},
    ),
    (
        "GET",
        "api/experiments",
        None,
        {"owner": 200, "server": 200, "other": 200, "admin": 200, "limited": 403, "anonymous": 401},
    ),
    (
        "POST",
        "api/experiments",
        {"name": "x"},
        {"owner": 400, "server": 400, "other": 400, "admin": 400, "limited": 403, "anonymous": 401},
    ),
    (
        "GET",
        "api/experiments/000000000000/trials",
        None,
        {"owner": 404, "server": 404, "other": 404, "admin": 404, "limited": 403, "anonymous": 401},
    ),
    # a trial's report takes the trial's own token alone: a hub token is not one
    (
        "POST",
        "api/experiments/000000000000/trials/0/report",
        {"metrics": {"acc": 1}},
        {"owner": 401, "server": 401, "other": 401, "admin": 401, "limited": 401, "anonymous": 401},
    ),
    (
        "POST",
        "api/experiments/000000000000/katib/exp-000000000000-abcdefgh/report",
        {"metrics": {"acc": 1}},
        {"owner": 401, "server": 401, "other": 401, "admin": 401, "limited": 401, "anonymous": 401},
    ),
    (
        "GET",
        "api/experiments/000000000000/trials/0/log",
        None,
        {"owner": 404, "server": 404, "other": 404, "admin": 404, "limited": 403, "anonymous": 401},
    ),
    (
        "GET",
        "api/pipelines/runs",
        None,
        {"owner": 200, "server": 200, "other": 200, "admin": 200, "limited": 403, "anonymous": 401},
    ),
    (
        "POST",
        "api/pipelines/runs",
        {"spec": {"name": "x"}},
        {"owner": 400, "server": 400, "other": 400, "admin": 400, "limited": 403, "anonymous": 401},
    ),
    (
        "GET",
        "api/pipelines/runs/000000000000",
        None,
        {"owner": 404, "server": 404, "other": 404, "admin": 404, "limited": 403, "anonymous": 401},
    ),
    (
        "POST",
        "api/pipelines/runs/000000000000/rerun",
        {},
        {"owner": 404, "server": 404, "other": 404, "admin": 404, "limited": 403, "anonymous": 401},
    ),
    (
        "GET",
        "api/pipelines/runs/000000000000/tasks/a/log",
        None,
        {"owner": 404, "server": 404, "other": 404, "admin": 404, "limited": 403, "anonymous": 401},
    ),
    (
        "POST",
        "api/pipelines/export",
        {"spec": {"name": "p", "tasks": {"a": {"job": {"command": "true"}}}}},
        {"owner": 409, "server": 409, "other": 409, "admin": 409, "limited": 403, "anonymous": 401},
    ),
    (
        "GET",
        "api/pipelines/schedules",
        None,
        {"owner": 200, "server": 200, "other": 200, "admin": 200, "limited": 403, "anonymous": 401},
    ),
    (
        "DELETE",
        "api/pipelines/schedules/nightly",
        None,
        {"owner": 404, "server": 404, "other": 404, "admin": 404, "limited": 403, "anonymous": 401},
    ),
]


def test_authorization_matrix(jobs, setup):
    job_id, env = setup
    tokens = callers(jobs, env)
    for method, path, body, expected in MATRIX:
        for who, token in tokens.items():
            headers = {"Authorization": f"token {token}"} if token else {}
            r = requests.request(method, jobs.url + path.format(id=job_id), headers=headers, json=body)
            assert r.status_code == expected[who], (method, path, who, r.text)
            if r.status_code >= 400:
                assert r.json()["status"] == r.status_code and r.json()["message"], (method, path, who, r.text)
    get = lambda who, path: requests.get(jobs.url + path, headers={"Authorization": f"token {tokens[who]}"}).json()  # noqa: E731
    assert [j["id"] for j in get("owner", "api/jobs")["jobs"]] == [job_id]
    assert [j["id"] for j in get("server", "api/jobs")["jobs"]] == [job_id]
    assert get("other", "api/jobs") == {"jobs": []}
    assert job_id in [j["id"] for j in get("admin", "api/jobs?user=*")["jobs"]]
    assert get("owner", f"api/jobs/{job_id}")["status"] == "succeeded"  # DELETE of a finished job changed nothing


def test_submit_and_follow_in_one_request(jobs):
    """What `kubestudio jobs submit` does: POST api/jobs asking for Server-Sent Events answers 201
    with the record first, then the job's log from its start, then the result; a bad spec is still
    a JSON 400 naming the field, before any stream."""
    carol = jobs.client("carol")
    jobs.write("carol", "two.py", "print('first line')\nprint('second line')\n")
    job, lines = carol.create(name="followed", script="two.py", follow=True)
    assert job["name"] == "followed" and job["status"] in ("queued", "starting", "running")
    lines = list(lines)
    assert "[rank-0] first line" in lines and "[rank-0] second line" in lines, lines
    assert lines.index("[rank-0] first line") < lines.index("[rank-0] second line")
    assert lines[-1] == "--- succeeded" or lines[-1].startswith("--- succeeded:"), lines
    r = requests.post(
        jobs.url + "api/jobs",
        json={"name": "followed-2", "script": "two.py"},
        headers={"Authorization": f"token {jobs.token('carol')}", "Accept": "text/event-stream"},
        stream=True,
    )
    assert r.status_code == 201 and r.headers["Content-Type"].startswith("text/event-stream")
    assert r.headers["Location"].endswith(
        "api/jobs/"
        + json.loads(next(line for line in r.iter_lines(decode_unicode=True) if line.startswith("data:"))[5:])["job"][
            "id"
        ]
    )
    r.close()
    bad = requests.post(
        jobs.url + "api/jobs",
        json={"name": "x", "script": "two.py", "nodes": 0},
        headers={"Authorization": f"token {jobs.token('carol')}", "Accept": "text/event-stream"},
    )
    assert bad.status_code == 400 and "nodes" in bad.json()["message"], bad.text


def test_page_needs_login(jobs):
    r = requests.get(jobs.url, allow_redirects=False)
    assert r.status_code == 302 and "/hub/api/oauth2/authorize" in r.headers["Location"]


def test_sdk_and_cli_inside_a_server(jobs, setup):
    """The SDK and `kubestudio jobs` with nothing but the server's own environment."""
    _, env = setup
    workspace = env["KUBESTUDIO_WORKSPACE"]
    with open(os.path.join(workspace, "train.py"), "w") as f:
        f.write("import os, sys\nprint('rank', os.environ['RANK'], 'args', *sys.argv[1:])\n")
    sdk = subprocess.run(
        [
            sys.executable,
            "-c",
            "from kubestudio.jobs import JobsClient\n"
            "c = JobsClient()\nj = c.create(name='from-sdk', script='train.py')\n"
            "print(c.wait(j['id'])['status'])",
        ],
        env=env,
        cwd=workspace,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert sdk.returncode == 0 and sdk.stdout.strip() == "succeeded", sdk.stdout + sdk.stderr
    cli = os.path.join(os.path.dirname(sys.executable), "kubestudio")

    def run(*args):
        return subprocess.run([cli, *args], env=env, cwd=workspace, capture_output=True, text=True, timeout=120)

    done = run("jobs", "submit", "train.py", "--nodes", "2", "--", "--lr", "0.1")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[master-0] rank 0 args --lr 0.1" in done.stdout and "[worker-0] rank 1 args --lr 0.1" in done.stdout
    name = re.search(r"job (train-\d+) ", done.stdout).group(1)
    assert ": succeeded" in done.stdout.splitlines()[-1]
    listed = run("jobs", "list")
    assert name in listed.stdout and "from-sdk" in listed.stdout
    assert "[master-0] rank 0" in run("jobs", "logs", name).stdout
    again = run("jobs", "rerun", name, "--", "--lr", "0.2")
    assert again.returncode == 0 and "[worker-0] rank 1 args --lr 0.2" in again.stdout, again.stdout + again.stderr
    assert run("jobs", "cancel", name).returncode == 0
    outside = run("jobs", "submit", "/etc/hostname")
    assert outside.returncode == 2 and "is not inside your workspace" in outside.stderr
    gpus = run("jobs", "submit", "train.py", "--gpus", "1(H100)", "--detach")
    assert gpus.returncode == 2 and "resources.gpu: this machine has no GPU of type H100 (HTTP 409)" in gpus.stderr


def test_serve_and_predict_from_a_servers_terminal(jobs, setup):
    """`kubestudio serve` and `kubestudio predict` with nothing but the server's own environment."""
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.tree import DecisionTreeClassifier

    _, env = setup
    workspace = env["KUBESTUDIO_WORKSPACE"]
    X, y = load_iris(return_X_y=True)
    model = DecisionTreeClassifier(random_state=0).fit(X, y)
    os.makedirs(os.path.join(workspace, "models", "tree"), exist_ok=True)
    joblib.dump(model, os.path.join(workspace, "models", "tree", "model.joblib"))
    cli = os.path.join(os.path.dirname(sys.executable), "kubestudio")

    def run(*args, stdin=None):
        return subprocess.run(
            [cli, *args], env=env, cwd=workspace, capture_output=True, text=True, timeout=180, input=stdin
        )

    served = run("serve", "models/tree")
    assert served.returncode == 0, served.stdout + served.stderr
    assert served.stdout.strip().endswith("/services/jobs/serve/alice/tree/")
    rows = X[[0, 60, 120]].tolist()
    predicted = run("predict", "tree", json.dumps({"instances": rows}))
    assert predicted.returncode == 0, predicted.stderr
    assert json.loads(predicted.stdout) == {"predictions": model.predict(rows).tolist()}
    v2 = {"inputs": [{"name": "x", "shape": [3, 4], "datatype": "FP64", "data": sum(rows, [])}]}
    predicted = run("predict", "tree", "--v2", stdin=json.dumps(v2))
    assert json.loads(predicted.stdout)["outputs"][0]["data"] == model.predict(rows).tolist()
    listed = run("serve", "--list")
    assert re.match(r"tree\s+ready\s+v1\s+2 requests", listed.stdout), listed.stdout
    # the flag after the name, the request after the flag: the same call
    predicted = run("predict", "tree", "--v2", json.dumps(v2))
    assert predicted.returncode == 0, predicted.stderr
    assert json.loads(predicted.stdout)["outputs"][0]["data"] == model.predict(rows).tolist()
    # what the model server said reaches the terminal, not just "Bad Request"
    wrong = run("predict", "tree", json.dumps({"instances": [[5.1]]}))
    assert wrong.returncode == 2 and "expecting 4 features" in wrong.stderr and "(HTTP 400)" in wrong.stderr, (
        wrong.stderr
    )
    bad = run("predict", "tree", "{nope")
    assert bad.returncode == 2 and "the request is not JSON" in bad.stderr
    missing = run("serve", "models/none")
    assert (
        missing.returncode == 2
        and "model: no file or folder 'models/none' in your workspace (HTTP 404)" in missing.stderr
    )
    assert run("serve", "--delete", "tree").returncode == 0
    assert "tree" not in run("serve", "--list").stdout


def test_a_gpu_is_never_given_to_a_server_and_a_job_at_once(jobs):
    """The ledger the local servers use: a job waits while servers hold the GPUs, says why, and
    starts with the one a stopped server freed; the server never sees the job's GPU."""
    hub = jobs.hub
    jobs.token("gus")
    first = hub.spawn("gus", "one", options={"profile": "gpu", "gpus": "1"})
    assert first.status_code in (201, 202), first.text
    server_gpus = hub.server_env("gus", "one")["CUDA_VISIBLE_DEVICES"]
    client = jobs.client("gus")
    jobs.write("gus", "gpu.py", "import os\nprint('gpus', os.environ['CUDA_VISIBLE_DEVICES'])\n")
    client.create(name="two-gpus", script="gpu.py", resources={"gpu": 2})
    deadline = time.monotonic() + 30
    while "not enough free GPUs" not in client.get("two-gpus")["message"]:
        assert time.monotonic() < deadline, client.get("two-gpus")
        time.sleep(0.3)
    waiting = client.get("two-gpus")
    assert waiting["status"] == "queued" and waiting["message"].startswith(
        "waiting: gpus: not enough free GPUs: 2 asked, 1 free"
    )
    one = client.create(name="one-gpu", script="gpu.py", resources={"gpu": "1(A100)"})
    # two-gpus keeps its place while it waits; one-gpu fits in the free GPU meanwhile (backfill)
    hub.stop_server("gus", "one")
    client.wait("two-gpus", timeout=60)
    assert "[rank-0] gpus 0,1" in client.logs("two-gpus").splitlines()
    client.wait(one["id"], timeout=60)
    # while a job holds a GPU, a server asking for both cannot start
    jobs.write("gus", "hold.py", "import time\nprint('holding', flush=True)\ntime.sleep(60)\n")
    client.create(name="hold", script="hold.py", resources={"gpu": 1})
    client.wait("hold", status="running", timeout=60)
    refused = hub.spawn("gus", "two", options={"profile": "gpu", "gpus": "2"}, wait=False)
    assert refused.status_code == 409 and "not enough free GPUs: 2 asked, 1 free" in refused.json()["message"]
    third = hub.spawn("gus", "three", options={"profile": "gpu", "gpus": "1"})
    assert third.status_code in (201, 202), third.text
    held = client.get("hold")["refs"]["gpus"]
    assert server_gpus and hub.server_env("gus", "three")["CUDA_VISIBLE_DEVICES"] not in held
    client.delete("hold")
    hub.stop_server("gus", "three")


def test_restart_resumes_running_jobs_and_loses_nothing(tmp_path):
    """The service is killed (-9) while a job runs: the ranks run on, the next start follows them
    to their end with the whole log; a job that ended meanwhile is read from its exit files."""
    restarting = start_jobs_hub(tmp_path / "hub", settings={"keep_servers_running": True})
    hub = restarting.hub
    try:
        client = restarting.client("rex")
        restarting.write(
            "rex",
            "slow.py",
            "import time, sys\nprint('before', flush=True)\n"
            "time.sleep(float(sys.argv[1]))\nprint('after', flush=True)\n",
        )
        client.create(name="slow", script="slow.py", args=["6"], nodes=2)
        client.create(name="quick", script="slow.py", args=["0.5"])  # waits behind slow (one job per user)
        client.wait("slow", status="running", timeout=60)
        ranks = [p for p, _ in client.get("slow")["refs"]["pids"].values()]
        service = hub.service_pid("kubestudio.jobs")
        os.kill(service, signal.SIGKILL)
        wait_for(lambda: process_start_time(service) is None, timeout=20, interval=0.05, what="the killed service gone")
        assert all(process_start_time(p) for p in ranks), "the ranks must outlive the service"
        # JupyterHub does not restart a managed service that died: the hub restarts with it
        hub.stop(stop_servers=False)
        hub.start()
        done = client.wait("slow", timeout=60)
        log = client.logs("slow").splitlines()
        assert "[master-0] before" in log and "[master-0] after" in log and "[worker-0] after" in log
        assert [e["status"] for e in done["history"]][-1] == "succeeded"
        assert client.wait("quick", timeout=60)["status"] == "succeeded"
    finally:
        hub.stop()


def test_hub_stop_stops_running_jobs(tmp_path):
    """Ctrl-C on the hub (keep_servers_running off, the default): nothing of a job is left running,
    and the record says why it ended. The same hub runs no servings (serving_backend_class None):
    jobs work, and a serve request is a 409 that says why."""
    stopping = start_jobs_hub(tmp_path / "hub", extra="c.JobService.serving_backend_class = None\n")
    hub = stopping.hub
    client = stopping.client("sid")
    stopping.write("sid", "sleep.py", "import time\nprint('zzz', flush=True)\ntime.sleep(120)\n")
    client.create(name="sleepy", script="sleep.py", nodes=2)
    client.wait("sleepy", status="running", timeout=60)
    ranks = [p for p, _ in client.get("sleepy")["refs"]["pids"].values()]
    deadline = time.monotonic() + 30
    while "[master-0] zzz" not in client.logs("sleepy"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    hub.stop()
    assert all(process_start_time(p) is None for p in ranks)
    hub.start()
    try:
        job = stopping.client("sid").get("sleepy")
        assert job["status"] == "cancelled" and job["message"] == "stopped with the hub"
        assert "[master-0] zzz" in stopping.client("sid").logs("sleepy")
        with pytest.raises(ServiceError) as refused:
            stopping.client("sid").servings()
        assert refused.value.status == 409 and "JobService.serving_backend_class" in str(refused.value)
    finally:
        hub.stop()


def test_openapi_document_and_schemathesis_finds_no_server_error(jobs, tmp_path):
    doc = requests.get(f"{jobs.url}api/openapi.json", timeout=10).json()
    assert doc["servers"] == [{"url": "/services/jobs"}]
    assert set(doc["paths"]) == {
        "/api/jobs",
        "/api/jobs/{job_id}",
        "/api/jobs/{job_id}/logs",
        "/api/jobs/{job_id}/events",
        "/api/jobs/{job_id}/rerun",
        "/api/runtimes",
        "/api/limits",
        "/api/experiments",
        "/api/experiments/{experiment_id}",
        "/api/experiments/{experiment_id}/trials",
        "/api/experiments/{experiment_id}/trials/{number}/report",
        "/api/experiments/{experiment_id}/trials/{number}/log",
        "/api/experiments/{experiment_id}/katib/{trial_name}/report",
        "/api/pipelines/runs",
        "/api/pipelines/runs/{run_id}",
        "/api/pipelines/runs/{run_id}/rerun",
        "/api/pipelines/runs/{run_id}/tasks/{task}/log",
        "/api/pipelines/export",
        "/api/pipelines/schedules",
        "/api/pipelines/schedules/{schedule}",
        "/api/servings",
        "/api/servings/{serving_id}",
        "/api/servings/{serving_id}/logs",
        "/api/health",
        "/api/openapi.json",
    }
    jobs.write("fuzzer", "t.py", "print('fuzz')\n")
    pid = jobs.hub.service_pid("kubestudio.jobs")
    direct = _environ(pid)["JUPYTERHUB_SERVICE_URL"].rstrip("/") + "/services/jobs"
    tested, _ = schemathesis(f"{jobs.url}api/openapi.json", direct, jobs.token("fuzzer"), tmp_path)
    assert {
        "POST /api/jobs",
        "GET /api/jobs/{job_id}/logs",
        "DELETE /api/jobs/{job_id}",
        "POST /api/servings",
        "PUT /api/servings/{serving_id}",
        "POST /api/pipelines/runs",
    } <= tested
    # whatever the fuzzer submitted has ended or is cancelled: nothing of it keeps running
    from kubestudio.jobs.pipelines.client import PipelinesClient

    pipelines = PipelinesClient(url=jobs.url, token=jobs.token("fuzzer"))
    for schedule in pipelines.schedules():
        pipelines.unschedule(schedule["id"])
    for run in pipelines.list():
        pipelines.cancel(run["id"])
    fuzzer = jobs.client("fuzzer")
    for job in fuzzer.list():
        fuzzer.delete(job["id"])
