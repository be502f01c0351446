"""The bench's simulated Argo Workflows runs what Argo documents for DAGs, kept honest by Argo's
Python SDK, Hera: Workflows Hera builds run on the bench to the phases Argo gives them (depends
expressions, retries, when, omitted branches, deadlines, cron), and their status parses with
Hera's models."""

import json
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import pytest

from kubestudio.testing.sdkvenv import SDKUnavailable, sdk_python

NS = "argo-sdk"
HERA_VERSION = "7.1.0"
ARGO = "/apis/argoproj.io/v1alpha1"

# each Workflow built with Hera, printed as the JSON Argo's API takes; argv[1]: the pods' python
BUILD = r"""
import json, sys
from hera.workflows import DAG, Container, Parameter, RetryStrategy, Task, Workflow

py = sys.argv[1]
built = []
with Workflow(name="hera-dag", entrypoint="main", arguments=[Parameter(name="deploy", value="true")]) as w:
    ok = Container(name="ok", image="python:3.11", command=[py, "-c", "print('ok {{workflow.name}}')"])
    fail = Container(
        name="fail", image="python:3.11", command=[py, "-c", "import sys; sys.exit(3)"],
        retry_strategy=RetryStrategy(limit=1),
    )
    with DAG(name="main"):
        a = ok(name="a")
        b = fail(name="b")
        Task(name="c", template=ok, depends="b.Failed")
        d = Task(name="d", template=ok, when="{{workflow.parameters.deploy}} == false")
        a >> b
        a >> d
built.append(w.to_dict())
# Argo's dag-continue-on-fail, without continueOn: G is omitted after E failed, so the DAG fails
with Workflow(name="hera-omitted", entrypoint="flow") as w:
    hello = Container(name="hello", image="python:3.11", command=[py, "-c", "print('hello')"])
    broken = Container(name="broken", image="python:3.11", command=[py, "-c", "import sys; sys.exit(1)"])
    with DAG(name="flow"):
        A = hello(name="A")
        B = broken(name="B")
        C = hello(name="C")
        D = Task(name="D", template=hello, depends="B.Failed && C")
        E = broken(name="E")
        F = hello(name="F")
        G = Task(name="G", template=hello, depends="E && F")
        A >> [B, C, E, F]
built.append(w.to_dict())
with Workflow(name="hera-deadline", entrypoint="slow", active_deadline_seconds=2) as w:
    Container(name="slow", image="python:3.11", command=[py, "-c", "import time; time.sleep(60)"])
built.append(w.to_dict())
print(json.dumps(built))
"""

# the Workflows as the bench left them, read with Hera's models: each node's phase, by its task
PARSE = r"""
import json, sys
from hera.workflows.models import Workflow

out = {}
for obj in json.load(sys.stdin):
    wf = Workflow.model_validate(obj)
    nodes = {n.display_name: (n.type, n.phase, n.message or "") for n in wf.status.nodes.values()}
    out[wf.metadata.name] = {"phase": wf.status.phase, "message": wf.status.message or "", "nodes": nodes}
print(json.dumps(out))
"""


def hera_python():
    try:
        return sdk_python(f"hera-workflows-{HERA_VERSION}", [f"hera-workflows=={HERA_VERSION}"])
    except SDKUnavailable as e:
        pytest.fail(str(e))


def hera(python, script, *args, stdin=None):
    run = subprocess.run(
        [python, "-W", "ignore", "-c", script, *args], input=stdin, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    return json.loads(run.stdout)


def wait_done(bench, ns, name, timeout=90):
    deadline = time.monotonic() + timeout
    while True:
        wf = bench.api("GET", f"{ARGO}/namespaces/{ns}/workflows/{name}").json()
        if (wf.get("status") or {}).get("phase") in ("Succeeded", "Failed", "Error"):
            return wf
        assert time.monotonic() < deadline, json.dumps(wf.get("status"), indent=1)[:3000] + bench.log_tail("operators")
        time.sleep(0.5)


def test_hera_workflows_run_to_the_phases_argo_gives_them(bench, ns):
    python = hera_python()
    built = hera(python, BUILD, sys.executable)
    for body in built:
        r = bench.api("POST", f"{ARGO}/namespaces/{ns}/workflows", json=body)
        assert r.status_code == 201, r.text[:2000]
    done = [wait_done(bench, ns, body["metadata"]["name"]) for body in built]
    parsed = hera(python, PARSE, stdin=json.dumps(done))
    for wf in parsed.values():
        wf["nodes"] = {name: tuple(node) for name, node in wf["nodes"].items()}

    dag = parsed["hera-dag"]
    assert dag["phase"] == "Succeeded", dag  # b failed, but c handled it and d was skipped: the leaves decide
    nodes = dag["nodes"]
    assert nodes["a"] == ("Pod", "Succeeded", "")
    assert nodes["b"][:2] == ("Retry", "Failed") and nodes["b(0)"][:2] == nodes["b(1)"][:2] == ("Pod", "Failed")
    assert nodes["b(1)"][2] == "Error (exit code 3)"
    assert nodes["c"] == ("Pod", "Succeeded", "")
    assert nodes["d"] == ("Skipped", "Skipped", "when 'true == false' evaluated false")
    assert nodes["hera-dag"][:2] == ("DAG", "Succeeded")

    omitted = parsed["hera-omitted"]
    assert omitted["phase"] == "Failed", omitted
    phases = {name: node[1] for name, node in omitted["nodes"].items() if name != "hera-omitted"}
    assert phases == {
        "A": "Succeeded",
        "B": "Failed",
        "C": "Succeeded",
        "D": "Succeeded",
        "E": "Failed",
        "F": "Succeeded",
        "G": "Omitted",
    }
    assert omitted["nodes"]["G"] == ("Skipped", "Omitted", "omitted: depends condition not met")

    deadline = parsed["hera-deadline"]
    assert deadline["phase"] == "Failed" and deadline["message"] == "Max duration limit exceeded", deadline

    # the pods were Argo's: named <workflow>-<template>-<hash>, labelled, owned by their Workflow
    pods = bench.api(
        "GET", f"/api/v1/namespaces/{ns}/pods", params={"labelSelector": "workflows.argoproj.io/workflow=hera-dag"}
    )
    names = sorted(p["metadata"]["name"] for p in pods.json()["items"])
    assert len(names) == 4 and all(n.startswith(("hera-dag-ok-", "hera-dag-fail-")) for n in names), names
    ok_pod = next(
        p
        for p in pods.json()["items"]
        if p["metadata"]["annotations"]["workflows.argoproj.io/node-name"] == "hera-dag.a"
    )
    assert ok_pod["spec"]["containers"][0]["name"] == "main"
    assert bench.pod_log(ns, ok_pod["metadata"]["name"]) == "ok hera-dag\n"
    assert done[0]["metadata"]["labels"]["workflows.argoproj.io/completed"] == "true"
    # deleting the Workflow removes its pods (the garbage collector, through their owner)
    bench.api("DELETE", f"{ARGO}/namespaces/{ns}/workflows/hera-dag")
    deadline_at = time.monotonic() + 60
    while bench.api(
        "GET", f"/api/v1/namespaces/{ns}/pods", params={"labelSelector": "workflows.argoproj.io/workflow=hera-dag"}
    ).json()["items"]:
        assert time.monotonic() < deadline_at
        time.sleep(0.5)


def test_a_cron_workflow_starts_a_workflow_when_its_time_comes(bench, ns):
    """Argo reads status.lastScheduledTime: one a minute and a half ago makes the next minute due."""
    python = hera_python()
    script = r"""
import json, sys
from hera.workflows import Container, CronWorkflow
with CronWorkflow(name="hera-cron", entrypoint="tick", schedule="* * * * *", timezone="Europe/Paris") as w:
    Container(name="tick", image="python:3.11", command=[sys.argv[1], "-c", "print('tick')"])
print(json.dumps(w.to_dict()))
"""
    body = hera(python, script, sys.executable)
    past = datetime.now(timezone.utc) - timedelta(seconds=90)
    body["status"] = {"lastScheduledTime": past.strftime("%Y-%m-%dT%H:%M:%SZ")}
    r = bench.api("POST", f"{ARGO}/namespaces/{ns}/cronworkflows", json=body)
    assert r.status_code == 201, r.text[:2000]
    deadline = time.monotonic() + 30
    while True:
        listed = bench.api(
            "GET",
            f"{ARGO}/namespaces/{ns}/workflows",
            params={"labelSelector": "workflows.argoproj.io/cron-workflow=hera-cron"},
        ).json()["items"]
        if listed:
            break
        assert time.monotonic() < deadline, bench.log_tail("operators")
        time.sleep(0.5)
    done = wait_done(bench, ns, listed[0]["metadata"]["name"])
    assert done["status"]["phase"] == "Succeeded"
    cron = bench.api("GET", f"{ARGO}/namespaces/{ns}/cronworkflows/hera-cron").json()
    assert cron["status"]["lastScheduledTime"] > body["status"]["lastScheduledTime"]
    bench.api("DELETE", f"{ARGO}/namespaces/{ns}/cronworkflows/hera-cron")
