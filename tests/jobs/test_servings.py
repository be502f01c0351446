"""Servings on the embedded default, through a real hub: a real scikit-learn model trained here,
served by the runtime (KServe's model server) as a local process and called through the hub with
V1 and V2; Seldon- and Sugar-easy-style classes served unchanged; errors in the user's class
answered without stopping the server; bad specs refused before anything starts; a crash restarted
with the crash in the record; a new version rolled with no failed request; who may call and
manage what; a service restart loses no serving."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import requests

from kubestudio.jobs.client import ServiceError

from .conftest import start_jobs_hub

pytestmark = pytest.mark.e2e

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]

SELDON = '''import os
import joblib


class IrisModel:
    """Seldon's convention: a class in a file of its name, predict(X, features_names), load()."""

    def __init__(self):
        self.model = None

    def load(self):
        self.model = joblib.load(os.path.join(os.path.dirname(__file__), "model.joblib"))

    def predict(self, X, features_names):
        if len(X[0]) != 4:
            raise ValueError(f"expected 4 features, got {len(X[0])}")
        if X[0][0] < 0:
            raise RuntimeError("negative lengths break this model")
        return self.model.predict(X)
'''

SUGAR = '''import os
import joblib


class Sugar:
    """Sugar-easy's convention: load(path), predict(query), destroy(); train/evaluate unused."""

    def train(self, *args):
        raise NotImplementedError

    def evaluate(self, *args):
        raise NotImplementedError

    def load(self, path):
        self.model = joblib.load(os.path.join(path, "model.joblib"))

    def predict(self, query):
        return [int(label) * 10 for label in self.model.predict(query)]

    def destroy(self):
        pass
'''


# an admin lets otto's own tokens call olga's servings: a role with the filtered scope
OTTO_CALLS_OLGA = """
c.JupyterHub.load_roles.append({"name": "otto-calls-olga", "users": ["otto"],
                                "scopes": ["custom:kubestudio:serve:predict!user=olga", "access:services!service=jobs"]})
"""


def train(folder, stump=False):
    """A real model on iris; ``stump``: a one-split tree, whose predictions differ."""
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.tree import DecisionTreeClassifier

    X, y = load_iris(return_X_y=True)
    model = (DecisionTreeClassifier(max_depth=1, random_state=0) if stump else LogisticRegression(max_iter=500)).fit(
        X, y
    )
    os.makedirs(folder, exist_ok=True)
    joblib.dump(model, os.path.join(folder, "model.joblib"))
    return model


@pytest.fixture(scope="module")
def serving_hub(tmp_path_factory):
    hub = start_jobs_hub(tmp_path_factory.mktemp("serving-hub"), extra=OTTO_CALLS_OLGA)
    try:
        yield hub
    finally:
        hub.hub.stop()


def runtime_pids(hub, serving_id):
    """The model runtimes of one serving of this hub (their command names its folder)."""
    marker = os.path.join(hub.hub.data_dir, "servings", serving_id)
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    argv = f.read().decode(errors="replace").split("\0")
            except OSError:
                continue
            if "kubestudio.jobs.serve" in argv and any(a.startswith(marker) for a in argv):
                found.append(int(entry))
    return sorted(found)


def call(hub, user, path, body=None, token=None, method="POST"):
    token = token if token is not None else hub.token(user)
    headers = {"Authorization": f"token {token}"} if token else {}
    return requests.request(method, hub.url + path, json=body, headers=headers, timeout=60)


def runtime_port(workspace, name):
    """The loopback port of the model runtime serving ``name`` from ``workspace`` (its command line)."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().decode(errors="replace").split("\0")
        except OSError:
            continue
        if "kubestudio.jobs.serve" in argv and name in argv and any(a.startswith(workspace) for a in argv):
            return int(argv[argv.index("--port") + 1])
    raise AssertionError(f"no runtime of {name} from {workspace}")


def test_an_sklearn_model_answers_v1_and_v2_like_the_model_itself(serving_hub):
    client = serving_hub.client("sam")
    model = train(os.path.join(serving_hub.workspace("sam"), "models", "iris"))
    record = client.serve(model="models/iris")
    assert record["name"] == "iris" and record["format"] == "sklearn" and record["status"] == "starting"
    assert record["url"] == "/services/jobs/serve/sam/iris/"
    ready = client.wait_ready("iris", timeout=120)
    assert ready["ready"] and ready["generation"] == ready["ready_generation"] == 1
    # the runtime answers the hub's proxy alone: no address to call it by, and its port refuses others
    assert ready["cluster_url"] is None
    port = runtime_port(serving_hub.workspace("sam"), "iris")
    direct = requests.post(f"http://127.0.0.1:{port}/v1/models/iris:predict", json={"instances": ROWS}, timeout=30)
    assert direct.status_code == 403 and "through the hub" in direct.json()["message"], direct.text
    expected = model.predict(ROWS).tolist()
    assert client.predict("iris", ROWS) == expected
    assert client.predict("iris", ROWS, v2=True) == expected
    # KServe's own paths, as any KServe client calls them
    r = call(serving_hub, "sam", "serve/sam/iris/v1/models/iris", method="GET")
    assert r.status_code == 200 and r.json() == {"name": "iris", "ready": True}
    assert call(serving_hub, "sam", "serve/sam/iris/v2/health/ready", method="GET").status_code == 200
    # a body that does not say it is JSON (requests' data=, curl -d's form type) is JSON all the same,
    # on both protocols, as KServe's and the Open Inference Protocol's clients send it
    v2_body = {"inputs": [{"name": "x", "shape": [len(ROWS), 4], "datatype": "FP64", "data": sum(ROWS, [])}]}
    for content_type in (None, "application/x-www-form-urlencoded"):
        headers = {"Authorization": f"token {serving_hub.token('sam')}"}
        if content_type:
            headers["Content-Type"] = content_type
        r = requests.post(
            serving_hub.url + "serve/sam/iris/v1/models/iris:predict",
            data=json.dumps({"instances": ROWS}),
            headers=headers,
            timeout=60,
        )
        assert r.status_code == 200 and r.json() == {"predictions": expected}, (content_type, r.text)
        r = requests.post(
            serving_hub.url + "serve/sam/iris/v2/models/iris/infer",
            data=json.dumps(v2_body),
            headers=headers,
            timeout=60,
        )
        assert r.status_code == 200 and r.json()["outputs"][0]["data"] == expected, (content_type, r.text)
    # V2 model metadata: what the model says of its inputs and outputs
    metadata = call(serving_hub, "sam", "serve/sam/iris/v2/models/iris", method="GET").json()
    assert metadata["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}], metadata
    assert metadata["outputs"] == [{"name": "output-0", "datatype": "INT64", "shape": [-1]}], metadata
    # bad input: a 400 with the model's own words, and the server keeps serving
    bad = call(serving_hub, "sam", "serve/sam/iris/v1/models/iris:predict", {"instances": [[1.0, 2.0]]})
    assert bad.status_code == 400 and "expecting 4 features" in bad.json()["error"], bad.text
    with pytest.raises(ServiceError, match="ValueError: X has 2 features, but .* is expecting 4 features") as refused:
        client.predict("iris", [[1.0, 2.0]])  # the SDK says the model's words too
    assert refused.value.status == 400
    assert client.predict("iris", ROWS[:1]) == expected[:1]
    assert client.serving("iris")["requests"] >= 5
    assert "starting version 1" in client.serving_logs("iris")


def test_seldon_and_sugar_easy_classes_are_served_unchanged(serving_hub):
    client = serving_hub.client("cleo")
    workspace = serving_hub.workspace("cleo")
    model = train(os.path.join(workspace, "models", "seldon"))
    train(os.path.join(workspace, "models", "sugar"))
    serving_hub.write("cleo", "models/seldon/IrisModel.py", SELDON)
    serving_hub.write("cleo", "models/sugar/sugar.py", SUGAR)
    client.serve(model="models/seldon", name="seldon", model_class="IrisModel")
    client.serve(model="/mnt/cleo/models/sugar", name="sugar", model_class="sugar:Sugar")
    expected = model.predict(ROWS).tolist()
    client.wait_ready("seldon", timeout=120)
    client.wait_ready("sugar", timeout=120)
    assert client.predict("seldon", ROWS) == expected
    assert client.predict("seldon", ROWS, v2=True) == expected
    assert client.predict("sugar", ROWS) == [label * 10 for label in expected]
    # the user's exceptions: 400 for bad input, 500 otherwise, the last line of each; still serving
    r = call(serving_hub, "cleo", "serve/cleo/seldon/v1/models/seldon:predict", {"instances": [[1.0]]})
    assert (r.status_code, r.json()["error"]) == (400, "ValueError: expected 4 features, got 1")
    r = call(serving_hub, "cleo", "serve/cleo/seldon/v1/models/seldon:predict", {"instances": [[-1, 1, 1, 1]]})
    assert (r.status_code, r.json()["error"]) == (500, "RuntimeError: negative lengths break this model")
    assert client.predict("seldon", ROWS[:1]) == expected[:1]


TORCH_MODEL = """import torch


class Doubler(torch.nn.Module):
    def forward(self, x):
        return x * 2 + 1
"""

HELPER_PACKAGE = {
    "setup.py": "from setuptools import setup\nsetup(name='kshelper', version='1.0', py_modules=['kshelper'])\n",
    "kshelper.py": "def scale(rows):\n    return [[v * 100 for v in row] for row in rows]\n",
}

NEEDS_HELPER = """import kshelper


class Scaled:
    def predict(self, query):
        return kshelper.scale(query)
"""


def ledger_servers(hub):
    with open(os.path.join(hub.hub.data_dir, "gpu-ledger.json")) as f:
        return json.dumps(json.load(f))


def test_pytorch_models_requirements_and_gpus(serving_hub):
    """A TorchScript model; a class whose requirements.txt names a package (installed for the
    serving alone); a GPU from the ledger the servers share, in the runtime's CUDA_VISIBLE_DEVICES."""
    import importlib.util

    import torch

    client = serving_hub.client("tess")
    workspace = serving_hub.workspace("tess")
    os.makedirs(os.path.join(workspace, "models", "doubler"), exist_ok=True)
    namespace = {}
    exec(TORCH_MODEL, namespace)
    torch.jit.trace(namespace["Doubler"](), torch.ones(1, 2)).save(
        os.path.join(workspace, "models", "doubler", "model.pt")
    )
    serving_hub.hand_over("tess")
    record = client.serve(model="models/doubler", resources={"gpu": 1})
    assert record["format"] == "pytorch"
    client.wait_ready("doubler", timeout=120)
    assert client.predict("doubler", [[1.0, 2.0], [3.0, 4.0]]) == [[3.0, 5.0], [7.0, 9.0]]
    [pid] = runtime_pids(serving_hub, record["id"])
    with open(f"/proc/{pid}/environ", "rb") as f:
        environ = dict(item.split(b"=", 1) for item in f.read().split(b"\0") if b"=" in item)
    assert environ[b"CUDA_VISIBLE_DEVICES"] in (b"0", b"1")
    assert record["id"] in ledger_servers(serving_hub)

    for name, text in HELPER_PACKAGE.items():
        serving_hub.write("tess", f"models/scaled/kshelper-src/{name}", text)
    serving_hub.write("tess", "models/scaled/scaled.py", NEEDS_HELPER)
    serving_hub.write("tess", "models/scaled/requirements.txt", "./kshelper-src\n")
    client.serve(model="models/scaled", model_class="scaled:Scaled")
    client.wait_ready("scaled", timeout=180)
    assert client.predict("scaled", [[1, 2]]) == [[100, 200]]
    assert "installing requirements.txt" in client.serving_logs("scaled")
    assert importlib.util.find_spec("kshelper") is None  # never into the hub's environment
    client.delete_serving("doubler")
    client.delete_serving("scaled")
    assert record["id"] not in ledger_servers(serving_hub)  # its GPU is free again


def test_bad_specs_are_refused_before_anything_starts(serving_hub):
    client = serving_hub.client("bea")
    workspace = serving_hub.workspace("bea")
    train(os.path.join(workspace, "models", "ok"))
    serving_hub.write("bea", "notes/readme.txt", "not a model\n")  # (hands over the model too)
    serving_hub.write("bea", "models/noclass/Thing.py", "class Thing:\n    pass\n")
    cases = [
        ({"name": "x", "model": "../../etc"}, 400, "model: '../../etc' leads outside your workspace"),
        ({"name": "x", "model": "/etc/passwd"}, 400, "model: '/etc/passwd' is outside your workspace and archives"),
        ({"name": "x", "model": "models/missing"}, 404, "model: no file or folder 'models/missing' in your workspace"),
        (
            {"name": "x", "model": "notes/readme.txt"},
            400,
            "model: 'readme.txt' is not a model file (expected .joblib, .pkl, .pt or .pth)",
        ),
        (
            {"name": "x", "model": "models/ok", "format": "custom"},
            400,
            "class: a custom model needs its class: MyModel (defined in MyModel.py beside the model) or module:Class",
        ),
        (
            {"name": "x", "model": "models/ok", "class": "Nope"},
            400,
            "class: no file 'Nope.py' beside the model for the class 'Nope'",
        ),
        (
            {"name": "Bad_Name", "model": "models/ok"},
            400,
            "name: lower-case letters, digits and '-', starting with a letter, at most 40 characters, not 'Bad_Name'",
        ),
        (
            {"name": "x", "model": "models/ok", "replicas": 2},
            400,
            "replicas: this machine runs one replica of a serving (more are for Kubernetes)",
        ),
        (
            {"name": "x", "model": "models/ok", "project": "secret"},
            403,
            "project: you are not a member of project 'secret'",
        ),
        (
            {"name": "x", "model": "models/ok", "resources": {"gpu": 3}},
            409,
            "resources.gpu: not enough free GPUs: 3 asked, 2 free of 2; stop a server or a job, or ask for fewer GPUs",
        ),
        ({"name": "x", "model": "models/ok", "bogus": 1}, 400, None),
    ]
    for body, status, message in cases:
        r = call(serving_hub, "bea", "api/servings", body)
        assert r.status_code == status, (body, r.text)
        if message:
            assert r.json()["message"] == message, body
    assert client.servings() == []
    # a class with no predict() fails to load: failed with the reason, and no restarts
    client.serve(model="models/noclass", name="noclass", model_class="Thing")
    with pytest.raises(ServiceError, match=r"serving noclass failed: .*class: Thing has no predict\(\) method"):
        client.wait_ready("noclass", timeout=60)
    # "failed" (not "restarting") is the load-error path, which waits for a new spec instead of
    # relaunching: no restart was counted, and none is while the next requests are answered
    failed = client.serving("noclass")
    assert (failed["status"], failed["restarts"]) == ("failed", 0)
    # the name is taken until it is deleted
    r = call(serving_hub, "bea", "api/servings", {"name": "noclass", "model": "models/ok"})
    assert r.status_code == 409 and r.json()["message"].startswith("name: you already serve 'noclass'")
    again = client.serving("noclass")
    assert (again["status"], again["restarts"], again["updated"]) == ("failed", 0, failed["updated"])
    client.delete_serving("noclass")
    assert client.servings() == []
    # a huge request body is refused before it reaches the model
    client.serve(model="models/ok", name="ok")
    client.wait_ready("ok", timeout=120)
    huge = b'{"instances": [' + b"[1,2,3,4]," * 2_000_000 + b"[1,2,3,4]]}"
    r = requests.post(
        serving_hub.url + "serve/bea/ok/v1/models/ok:predict",
        data=huge,
        headers={"Authorization": f"token {serving_hub.token('bea')}"},
        timeout=60,
    )
    assert r.status_code == 413 and "larger than 16 MiB" in r.json()["message"]
    r = call(serving_hub, "bea", "serve/bea/ok/v1/models/ok:predict", None)
    assert r.status_code == 400
    client.delete_serving("ok")


def test_who_may_call_and_manage_a_serving(serving_hub):
    owner = serving_hub.client("olga")
    train(os.path.join(serving_hub.workspace("olga"), "models", "iris"))
    record = owner.serve(model="models/iris")
    owner.wait_ready("iris", timeout=120)
    serving_hub.token("otto")
    hub = serving_hub.hub
    granted = hub.api(
        "POST",
        "/users/olga/tokens",
        json={"scopes": ["custom:kubestudio:serve:predict!user=olga", "access:services!service=jobs"]},
    ).json()["token"]
    other = serving_hub.token("pia")
    predict = "serve/olga/iris/v1/models/iris:predict"
    body = {"instances": ROWS[:1]}
    expect = {"owner": 200, "granted": 200, "otto": 200, "other": 404, "anonymous": 401}
    tokens = {
        "owner": serving_hub.token("olga"),
        "granted": granted,
        "otto": hub.user_token("otto"),
        "other": other,
        "anonymous": "",
    }
    for who, token in tokens.items():
        r = call(serving_hub, None, predict, body, token=token)
        assert r.status_code == expect[who], (who, r.text)
    # managing is the owner's (and admins'): others see nothing
    for who, token, status in (("owner", tokens["owner"], 200), ("other", other, 404), ("granted", granted, 403)):
        r = call(serving_hub, None, f"api/servings/{record['id']}", token=token, method="GET")
        assert r.status_code == status, (who, r.text)
    owner.delete_serving("iris")
    r = call(serving_hub, None, predict, body, token=tokens["owner"])
    assert r.status_code == 404


def test_a_crash_is_restarted_and_a_new_version_rolls_without_a_failed_request(serving_hub):
    client = serving_hub.client("rolf")
    workspace = serving_hub.workspace("rolf")
    v1 = train(os.path.join(workspace, "models", "v1"))
    v2 = train(os.path.join(workspace, "models", "v2"), stump=True)  # a different model: other predictions
    rows = ROWS * 4
    assert v1.predict(rows).tolist() != v2.predict(rows).tolist()
    client.serve(model="models/v1", name="iris")
    client.wait_ready("iris", timeout=120)
    record = client.serving("iris")

    # the runtime dies: the record says so, and it is started again
    [runtime_pid] = runtime_pids(serving_hub, record["id"])
    os.kill(runtime_pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while client.serving("iris")["restarts"] < 1:
        assert time.monotonic() < deadline, client.serving("iris")
        time.sleep(0.1)
    assert "the model runtime stopped" in client.serving("iris")["message"] or client.serving("iris")["ready"]
    client.wait_ready("iris", timeout=120)
    assert client.predict("iris", rows) == v1.predict(rows).tolist()

    # a new version: requests during the roll all succeed, each from v1 or v2
    answers, failures, stop = [], [], threading.Event()

    def hammer():
        caller = serving_hub.client("rolf")
        while not stop.is_set():
            try:
                answers.append(caller.predict("iris", rows, owner="rolf"))
            except Exception as e:
                failures.append(repr(e))

    threads = [threading.Thread(target=hammer) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        updated = client.update_serving("iris", model="models/v2")
        assert updated["generation"] == 2 and not updated["ready"]
        ready = client.wait_ready("iris", timeout=120)
        assert ready["ready_generation"] == 2
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not failures, failures[:3]
    assert answers[-1] == v2.predict(rows).tolist()
    assert {json.dumps(a) for a in answers} <= {
        json.dumps(v1.predict(rows).tolist()),
        json.dumps(v2.predict(rows).tolist()),
    }
    deadline = time.monotonic() + 10
    while len(runtime_pids(serving_hub, record["id"])) != 1:  # v1 is gone
        assert time.monotonic() < deadline, runtime_pids(serving_hub, record["id"])
        time.sleep(0.1)


def test_a_service_restart_loses_no_serving(tmp_path):
    restarting = start_jobs_hub(tmp_path / "hub", settings={"keep_servers_running": True})
    hub = restarting.hub
    client = restarting.client("rhea")
    try:
        model = train(os.path.join(restarting.workspace("rhea"), "models", "iris"))
        client.serve(model="models/iris")
        serving_id = client.wait_ready("iris", timeout=120)["id"]
        before = runtime_pids(restarting, serving_id)
        assert len(before) == 1
        os.kill(hub.service_pid("kubestudio.jobs"), signal.SIGKILL)
        hub.stop(stop_servers=False)
        hub.start()
        record = client.wait_ready("iris", timeout=120)
        assert record["generation"] == 1
        assert client.predict("iris", ROWS) == model.predict(ROWS).tolist()
        # the runtime that ran on is adopted, not started twice
        assert runtime_pids(restarting, serving_id) == before
    finally:
        client.delete_serving("iris")  # the hub keeps servings running when it stops: stop it here
        hub.stop()


TRAIN_SCRIPT = """import os
import joblib
from sklearn.datasets import load_iris
from sklearn.tree import DecisionTreeClassifier

X, y = load_iris(return_X_y=True)
os.makedirs("output", exist_ok=True)
joblib.dump(DecisionTreeClassifier(random_state=0).fit(X, y), "output/model.joblib")
print("saved")
"""


def test_a_finished_jobs_output_is_served_by_naming_the_job(serving_hub):
    from sklearn.datasets import load_iris
    from sklearn.tree import DecisionTreeClassifier

    client = serving_hub.client("finn")
    serving_hub.write("finn", "exp/train.py", TRAIN_SCRIPT)
    client.create(name="trainer", script="exp/train.py", working_dir="exp")
    r = call(serving_hub, "finn", "api/servings", {"from_job": "trainer", "path": "output"})
    assert r.status_code in (201, 409), r.text  # 409 while the job still runs
    if r.status_code == 409:
        assert r.json()["message"].startswith("from_job: job 'trainer' is ")
    client.wait("trainer", timeout=120)
    if r.status_code == 409:
        record = client.serve(from_job="trainer", path="output")
    else:
        record = r.json()
    assert record["name"] == "trainer" and record["spec"]["model"] == "exp/output"
    client.wait_ready("trainer", timeout=120)
    X, y = load_iris(return_X_y=True)
    expected = DecisionTreeClassifier(random_state=0).fit(X, y).predict(X[:5]).tolist()
    assert client.predict("trainer", X[:5].tolist()) == expected
    missing = call(serving_hub, "finn", "api/servings", {"from_job": "nope", "name": "x"})
    assert (missing.status_code, missing.json()["message"]) == (404, "from_job: you have no job 'nope'")
    client.delete_serving("trainer")


def test_checking_a_local_serving_loads_no_kubernetes_client(tmp_path):
    """The service checks a spec on its event loop: a first serve once imported the Kubernetes
    client there (1.3 s during which no request of anyone was answered)."""
    code = f"""
import asyncio, os, sys
from kubestudio.jobs.training.backends.local import LocalJobBackend
from kubestudio.jobs.serving.backends.local import LocalServingBackend
from kubestudio.jobs.serving.spec import parse_serve_spec
jobs = LocalJobBackend(data_dir={str(tmp_path)!r})
servings = LocalServingBackend(jobs)
model = os.path.join(jobs.folders("alice").workspace, "models", "iris")
os.makedirs(model)
open(os.path.join(model, "model.joblib"), "wb").close()
print(asyncio.run(servings.check("alice", parse_serve_spec({{"name": "iris", "model": "/mnt/alice/models/iris"}}, {{}}))))
print(sorted(m for m in ("kubespawner", "kubernetes", "kubernetes_asyncio", "sklearn") if m in sys.modules))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    checked, loaded = out.stdout.splitlines()
    assert checked.endswith("'sklearn')") and "models/iris" in checked
    assert loaded == "[]"
