"""What kubespawner-style tests need from the bench's kubelet (issue 12): exec, ConfigMap and
Secret items mounted as single files, readiness probes, and Services reachable by name. Each is
driven through the real apiserver with the clients users have: kubectl and the ``kubernetes``
Python client, unchanged."""

import base64
import sys
import textwrap
import uuid

import pytest

from .test_bench import get, pod_manifest, wait_for

PY = sys.executable


def create(bench, path, body):
    r = bench.api("POST", path, json=body)
    assert r.status_code == 201, r.text
    return r.json()


def pod(bench, name):
    return get(bench, f"/api/v1/namespaces/default/pods/{name}")


def ready(bench, name):
    conditions = {c["type"]: c["status"] for c in pod(bench, name)["status"].get("conditions") or []}
    return conditions.get("Ready") == "True"


def running(bench, name):
    return pod(bench, name)["status"].get("phase") == "Running"


def delete(bench, *paths):
    for path in paths:
        bench.api("DELETE", path, json={"gracePeriodSeconds": 0})


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def test_configmap_and_secret_items_mount_as_single_files(bench):
    name = unique("files")
    create(
        bench,
        "/api/v1/namespaces/default/configmaps",
        {"metadata": {"name": name}, "data": {"jupyter_server_config.json": '{"ServerApp": {"x": 1}}', "other": "o"}},
    )
    create(
        bench,
        "/api/v1/namespaces/default/secrets",
        {"metadata": {"name": name}, "data": {"token": base64.b64encode(b"s3cret").decode()}},
    )
    script = (
        "import os; print(open('/etc/jupyter/jupyter_server_config.json').read()); "
        "print(open('/etc/creds/token').read()); print(os.path.isfile('/etc/jupyter/jupyter_server_config.json'))"
    )
    manifest = pod_manifest(
        name,
        [PY, "-c", script],
        volumes=[
            {"name": "config", "configMap": {"name": name}},
            {"name": "creds", "secret": {"secretName": name, "items": [{"key": "token", "path": "token"}]}},
        ],
    )
    manifest["spec"]["containers"][0]["volumeMounts"] = [
        {
            "name": "config",
            "mountPath": "/etc/jupyter/jupyter_server_config.json",
            "subPath": "jupyter_server_config.json",
        },
        {"name": "creds", "mountPath": "/etc/creds/token", "subPath": "token"},
    ]
    create(bench, "/api/v1/namespaces/default/pods", manifest)
    try:
        wait_for(lambda: pod(bench, name)["status"].get("phase") in ("Succeeded", "Failed"), what="pod ends")
        log = bench.pod_log("default", name)
        assert pod(bench, name)["status"]["phase"] == "Succeeded", log
        assert '{"ServerApp": {"x": 1}}' in log and "s3cret" in log
        assert log.rstrip().endswith("True")  # a file, not a folder
    finally:
        delete(
            bench,
            f"/api/v1/namespaces/default/pods/{name}",
            f"/api/v1/namespaces/default/configmaps/{name}",
            f"/api/v1/namespaces/default/secrets/{name}",
        )


def server_script(delay):
    return ["sh", "-c", f"sleep {delay}; exec {PY} -m http.server 8000 --bind 0.0.0.0"]


@pytest.mark.parametrize(
    "handler",
    [
        {"httpGet": {"path": "/", "port": "web"}},
        {"tcpSocket": {"port": 8000}},
        {"exec": {"command": ["sh", "-c", "test -f started"]}},
    ],
)
def test_readiness_probe_decides_ready(bench, handler):
    name = unique("probe")
    delay = 3
    command = server_script(delay)
    if "exec" in handler:  # ready once the container has written a file in its working folder
        command = ["sh", "-c", f"sleep {delay}; touch started; exec sleep 600"]
    manifest = pod_manifest(name, command)
    container = manifest["spec"]["containers"][0]
    container["ports"] = [{"name": "web", "containerPort": 8000}]
    container["readinessProbe"] = {**handler, "periodSeconds": 1, "failureThreshold": 1}
    create(bench, "/api/v1/namespaces/default/pods", manifest)
    try:
        wait_for(lambda: running(bench, name), what="running")
        assert not ready(bench, name)  # running, but the probe has not passed yet
        wait_for(lambda: ready(bench, name), timeout=30, what="ready")
        events = get(bench, f"/api/v1/namespaces/default/events?fieldSelector=involvedObject.name%3D{name}")["items"]
        unhealthy = [e["message"] for e in events if e["reason"] == "Unhealthy"]
        assert unhealthy and all(m.startswith("Readiness probe failed: ") for m in unhealthy), unhealthy
    finally:
        delete(bench, f"/api/v1/namespaces/default/pods/{name}")


def test_services_resolve_by_name_and_forward_to_ready_endpoints(bench):
    web, client, svc, workers = unique("web"), unique("client"), unique("svc"), unique("workers")
    server = pod_manifest(web, server_script(0), labels={"app": web}, hostname="w0", subdomain=workers)
    server["spec"]["containers"][0]["ports"] = [{"name": "http", "containerPort": 8000}]
    server["spec"]["containers"][0]["readinessProbe"] = {"tcpSocket": {"port": 8000}, "periodSeconds": 1}
    create(bench, "/api/v1/namespaces/default/pods", server)
    create(
        bench,
        "/api/v1/namespaces/default/services",
        {
            "metadata": {"name": svc},
            "spec": {"selector": {"app": web}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
        },
    )
    create(
        bench,
        "/api/v1/namespaces/default/services",
        {
            "metadata": {"name": workers},
            "spec": {"clusterIP": "None", "selector": {"app": web}, "ports": [{"port": 8000}]},
        },
    )
    script = textwrap.dedent(f"""
        import time, urllib.request
        for url in ["http://{svc}/", "http://{svc}.default.svc.cluster.local/", "http://w0.{workers}:8000/"]:
            for _ in range(100):
                try:
                    print(url, urllib.request.urlopen(url, timeout=2).status, flush=True)
                    break
                except OSError as e:
                    last = e
                    time.sleep(0.3)
            else:
                raise SystemExit(f"{{url}}: {{last}}")
    """)
    create(bench, "/api/v1/namespaces/default/pods", pod_manifest(client, [PY, "-c", script]))
    try:
        wait_for(
            lambda: pod(bench, client)["status"].get("phase") in ("Succeeded", "Failed"), timeout=90, what="client ends"
        )
        log = bench.pod_log("default", client)
        assert pod(bench, client)["status"]["phase"] == "Succeeded", log
        assert f"http://{svc}/ 200" in log and f"http://w0.{workers}:8000/ 200" in log
    finally:
        delete(
            bench,
            f"/api/v1/namespaces/default/pods/{web}",
            f"/api/v1/namespaces/default/pods/{client}",
            f"/api/v1/namespaces/default/services/{svc}",
            f"/api/v1/namespaces/default/services/{workers}",
        )


@pytest.fixture
def sleeper(bench):
    name = unique("sleeper")
    manifest = pod_manifest(name, ["sleep", "600"], volumes=[{"name": "work", "emptyDir": {}}])
    container = manifest["spec"]["containers"][0]
    container["env"] = [{"name": "GREETING", "value": "hello from the pod"}]
    container["workingDir"] = "/work"
    container["volumeMounts"] = [{"name": "work", "mountPath": "/scratch"}]
    create(bench, "/api/v1/namespaces/default/pods", manifest)
    wait_for(lambda: running(bench, name), what="running")
    yield name
    delete(bench, f"/api/v1/namespaces/default/pods/{name}")


def test_exec_with_the_python_client(bench, sleeper):
    from kubernetes import client, config
    from kubernetes.stream import stream

    api = client.CoreV1Api(config.new_client_from_config(bench.kubeconfig))
    ws = stream(
        api.connect_get_namespaced_pod_exec,
        sleeper,
        "default",
        command=["sh", "-c", "echo $GREETING; echo out > file.txt; cat /work/file.txt; echo oops >&2; exit 3"],
        stdout=True,
        stderr=True,
        stdin=False,
        tty=False,
        _preload_content=False,
    )
    ws.run_forever(timeout=30)
    assert ws.read_stdout() == "hello from the pod\nout\n"
    assert ws.read_stderr() == "oops\n"
    assert ws.returncode == 3
    # stdin goes to the command
    ws = stream(
        api.connect_get_namespaced_pod_exec,
        sleeper,
        "default",
        command=["cat"],
        stdout=True,
        stderr=True,
        stdin=True,
        tty=False,
        _preload_content=False,
    )
    ws.write_stdin("typed in\n")
    ws.update(timeout=5)
    out = ""
    for _ in range(50):
        ws.update(timeout=0.2)
        out += ws.read_stdout() if ws.peek_stdout() else ""
        if out:
            break
    ws.close()
    assert out == "typed in\n"
    # the plain call returns the output
    assert (
        stream(
            api.connect_get_namespaced_pod_exec,
            sleeper,
            "default",
            command=["sh", "-c", "echo $GREETING"],
            stdout=True,
            stderr=True,
            stdin=False,
            tty=False,
        )
        == "hello from the pod\n"
    )


def test_exec_with_kubectl(bench, sleeper):
    result = bench.kubectl("exec", sleeper, "--", "sh", "-c", "echo $GREETING; echo oops >&2; exit 4", check=False)
    assert result.stdout == "hello from the pod\n"
    assert "oops" in result.stderr
    assert result.returncode == 4
    typed = bench.kubectl("exec", "-i", sleeper, "--", "cat", input="from stdin\n")
    assert typed.stdout == "from stdin\n" and typed.returncode == 0


RESTARTING = textwrap.dedent("""
    import os, sys
    count = os.path.join(os.environ["WORK"], "runs")
    n = int(open(count).read()) if os.path.exists(count) else 0
    open(count, "w").write(str(n + 1))
    print("run", n, flush=True)
    sys.exit(1 if n < 2 else 0)
""")


def test_logs_of_a_restarting_container_run_by_run(bench):
    """kube.PodLogs follows every run of a container that fails twice and is restarted
    (restartPolicy OnFailure); one that joins after the end reads the run before the last with
    `previous` (as the real kubelet keeps it) and the last run."""
    import asyncio
    import logging

    from kubestudio import kube
    from kubestudio.services.livelog import LineSplitter

    name = f"restarts-{uuid.uuid4().hex[:6]}"
    manifest = pod_manifest(
        name, [sys.executable, "-c", RESTARTING], volumes=[{"name": "work", "emptyDir": {}}], restartPolicy="OnFailure"
    )
    container = manifest["spec"]["containers"][0]
    container["volumeMounts"] = [{"name": "work", "mountPath": "/scratch"}]
    container["env"] = [{"name": "WORK", "value": "/scratch"}]

    async def follow():
        from kubernetes_asyncio import client

        api = await kube.load_client(bench.kubeconfig)
        core = client.CoreV1Api(api)
        seen, late = [], []
        logs = kube.PodLogs(
            core, "default", lambda pod, lines: seen.extend(lines), logging.getLogger("test"), LineSplitter
        )
        pods = kube.Reflector(
            core.list_namespaced_pod,
            "default",
            f"test={name}",
            logging.getLogger("test"),
            on_change=lambda _, pod: logs.update(pod),
            raw=True,
        )
        await pods.start()
        try:
            await core.create_namespaced_pod("default", manifest)
            await pods.wait_for(name, lambda p: p is not None and p["status"].get("phase") == "Succeeded", timeout=60)
            await logs.wait(timeout=10)
            joined = kube.PodLogs(
                core, "default", lambda pod, lines: late.extend(lines), logging.getLogger("test"), LineSplitter
            )
            joined.update(pods.get(name))
            await joined.wait(timeout=10)
            return seen, late, pods.get(name)["status"]["containerStatuses"][0]["restartCount"]
        finally:
            await logs.stop()
            await pods.stop()
            await core.delete_namespaced_pod(name, "default", grace_period_seconds=0)
            await api.close()

    seen, late, restarts = asyncio.run(follow())
    assert restarts == 2
    assert seen == ["run 0", "run 1", "run 2"]
    assert late == ["run 1", "run 2"]
