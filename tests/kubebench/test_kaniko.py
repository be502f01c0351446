"""The kaniko backend on the Kubernetes bench: a pod per build, logs from pods/log, the digest
from the termination message, re-attach after a service restart, the cleaner; as the Helm chart
runs it, behind the registry gate: each build pod pulls and pushes with an account of its own."""

import asyncio
import base64
import json
import os
import signal
import subprocess
import time

import kubernetes_validate
import pytest
import requests

from kubestudio.image_builder.backends.base import BuildJob
from kubestudio.image_builder.backends.kaniko import (
    KanikoBackend,
    build_pod_name,
    kaniko_pod,
)
from kubestudio.spawner.storage import user_slug
from kubestudio.testing.imageshub import follow_to_end, start_kaniko_images_hub
from kubestudio.testing.registry import skopeo_inspect

pytestmark = pytest.mark.e2e

SETTINGS = dict(KanikoBackend().settings(), cache_repo="registry.local:5000/kubestudio/cache")


def job(**kw):
    defaults = dict(
        id="0123456789ab",
        owner="Alice.Smith@example.org",
        owner_slug="alice-smith-example-org---1a2b3c4d",
        image="registry.local:5000/kubestudio/alice/demo:abc",
        dockerfile="Dockerfile",
        context_dir="/unused",
        context_subpath="projects/demo",
        labels={"kubestudio.io/build-id": "0123456789ab"},
    )
    defaults.update(kw)
    return BuildJob(**defaults)


def test_pod_manifest_is_valid_and_minimal(bench):
    for generated in (False, True):
        pod = kaniko_pod(job(generated=generated), SETTINGS)
        kubernetes_validate.validate(pod, "1.30", strict=True)
        r = bench.api("POST", "/api/v1/namespaces/default/pods?dryRun=All", json=pod)
        assert r.status_code == 201, r.text
        spec = pod["spec"]
        container = spec["containers"][0]
        assert spec["automountServiceAccountToken"] is False and spec["restartPolicy"] == "Never"
        # apart from the host: no host paths, no host namespaces, no privileges
        assert not any("hostPath" in v for v in spec["volumes"])
        assert not any(spec.get(k) for k in ("hostNetwork", "hostPID", "hostIPC"))
        assert not (container.get("securityContext") or {}).get("privileged")
        assert not any("TOKEN" in e["name"] or "JUPYTERHUB" in e["name"] for e in container["env"])
        assert container["terminationMessagePath"] == "/dev/termination-log"
        args = container["args"]
        assert "--digest-file=/dev/termination-log" in args and "--snapshot-mode=redo" in args
        assert "--compressed-caching=false" in args and "--cache=true" in args
        # each user's own layer cache: no build reads or poisons another user's layers
        assert "--cache-repo=registry.local:5000/kubestudio/cache/alice-smith-example-org---1a2b3c4d" in args
        assert f"--destination={job().image}" in args and not any("registry-map" in a for a in args)
        assert pod["metadata"]["labels"]["kubestudio.io/component"] == "build"
        assert pod["metadata"]["annotations"]["kubestudio.io/username"] == "Alice.Smith@example.org"
        auth = next(m for m in container["volumeMounts"] if m["name"] == "registry-auth")
        assert auth["mountPath"] == "/kaniko/.docker" and auth["readOnly"]
        if not generated:
            # only the owner's folder of the workspace claim, read-only
            workspace = next(m for m in container["volumeMounts"] if m["name"] == "workspace")
            assert workspace == {
                "name": "workspace",
                "mountPath": "/workspace",
                "readOnly": True,
                "subPath": "alice-smith-example-org---1a2b3c4d",
            }
            assert "--context=dir:///workspace/projects/demo" in args
            # the Dockerfile the service checked, from the ConfigMap, never the workspace's live copy
            assert "--dockerfile=/kubestudio/context/Dockerfile" in args
        else:
            assert "--context=dir:///kubestudio/context" in args
            assert not any(v.get("persistentVolumeClaim") for v in spec["volumes"])


def test_behind_the_gate_a_pod_gets_its_builds_own_account_and_reads_every_name_through_it(bench):
    settings = dict(
        SETTINGS,
        registry_gate="kubestudio-hub:10104",
        registry_hosts=["registry.local:5000", "registry.kube-system.svc:5000", "kubestudio-hub:10104"],
    )
    pod = kaniko_pod(job(), settings)
    kubernetes_validate.validate(pod, "1.30", strict=True)
    assert bench.api("POST", "/api/v1/namespaces/default/pods?dryRun=All", json=pod).status_code == 201
    args = pod["spec"]["containers"][0]["args"]
    assert "--destination=kubestudio-hub:10104/kubestudio/alice/demo:abc" in args
    assert "--registry-map=registry.local:5000=kubestudio-hub:10104" in args
    assert "--registry-map=registry.kube-system.svc:5000=kubestudio-hub:10104" in args
    assert "--skip-default-registry-fallback" in args and "--insecure-registry=kubestudio-hub:10104" in args
    assert "--cache-repo=kubestudio-hub:10104/kubestudio/cache/alice-smith-example-org---1a2b3c4d" in args
    auth = next(v for v in pod["spec"]["volumes"] if v["name"] == "registry-auth")
    assert auth["secret"]["secretName"] == build_pod_name(job().id)  # the build's own, not the admin's
    assert KanikoBackend().repositories(job()) == []  # no registry: no cache of ours to grant


@pytest.fixture(scope="module")
def kaniko_images(bench, registry, tmp_path_factory):
    # as the chart runs it: the gate in front of the registry; the early Dockerfile check off, so
    # what a build may pull is the gate's decision alone
    images = start_kaniko_images_hub(
        tmp_path_factory.mktemp("kaniko-hub"),
        bench,
        registry,
        gate=True,
        extra="c.ImageBuilder.check_image_references = False\n",
    )
    yield images
    images.hub.stop()


def build_pods(bench):
    r = bench.api("GET", "/api/v1/namespaces/default/pods?labelSelector=kubestudio.io/component%3Dbuild")
    return [p["metadata"]["name"] for p in r.json()["items"]]


def test_build_in_a_pod_from_the_workspace(kaniko_images, bench, registry):
    images = kaniko_images
    images.write_context(
        "kim",
        "proj",
        "FROM {base}\nRUN echo kaniko-step-one\nCOPY note.txt /note.txt\n",
        {"note.txt": "from kim's workspace\n"},
    )
    client = images.client("kim")
    build = client.build(context="proj", name="kaniko-demo")
    assert build["backend"] == "kaniko"
    lines, final = follow_to_end(client, build["id"])
    log = "\n".join(lines)
    assert final["status"] == "succeeded", log
    assert f"Build pod default/{build_pod_name(build['id'])} created" in log
    assert "kaniko-step-one" in log and "INFO[0000] RUN echo kaniko-step-one" in log
    assert final["step"] == final["steps"] == 3
    seen = skopeo_inspect(final["image"], auth_file=registry.auth)
    assert seen["Digest"] == final["digest"]  # the digest came from the pod's termination message
    assert seen["Labels"]["kubestudio.io/build-id"] == build["id"]
    assert build_pod_name(build["id"]) not in build_pods(bench)  # deleted once the result was stored
    # its registry account went with it
    assert bench.api("GET", f"/api/v1/namespaces/default/secrets/{build_pod_name(build['id'])}").status_code == 404


def test_a_build_pod_reads_another_users_image_under_no_name(kaniko_images, bench, registry):
    """Issue 27 on Kubernetes: whatever the Dockerfile says, a build pod pulls with its build's
    account, through the gate, which refuses another user's private image; the pod never holds
    the registry's own credentials."""
    images = kaniko_images
    gate = f"127.0.0.1:{images.hub.settings['registry_gate_port']}"
    jack = f"kubestudio/{user_slug('jack')}/private"
    subprocess.run(
        [
            "skopeo",
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            "--authfile",
            registry.auth,
            f"docker://{registry.base}",
            f"docker://{registry.host}/{jack}:v1",
        ],
        check=True,
        timeout=120,
    )
    client = images.client("kim")
    seen_secret = {}
    for spelling in (f"{registry.host}/{jack}:v1", f"{gate}/{jack}:v1"):
        build = client.build(dockerfile_text=f"FROM {spelling}\nRUN echo jack-base-ran\n", name="steal")
        name = build_pod_name(build["id"])
        deadline = time.monotonic() + 60
        while not seen_secret.get(spelling) and time.monotonic() < deadline:
            r = bench.api("GET", f"/api/v1/namespaces/default/secrets/{name}")
            if r.status_code == 200:
                seen_secret[spelling] = json.loads(base64.b64decode(r.json()["data"][".dockerconfigjson"]))
            time.sleep(0.1)
        final = images.wait("kim", build["id"])
        log = client.log(build["id"])
        assert final["status"] == "failed", log
        assert "the registry refused this build" in final["message"] and "may not read " + jack in final["message"]
        assert "jack-base-ran" not in log.replace("RUN echo jack-base-ran", "")
        with pytest.raises(subprocess.CalledProcessError):
            skopeo_inspect(final["image"], auth_file=registry.auth)
    # the pod's credentials: the build's account, for the gate's address only
    for config in seen_secret.values():
        assert set(config["auths"]) == {gate}
        user = base64.b64decode(config["auths"][gate]["auth"]).decode().split(":")[0]
        assert user.startswith("build-")
    assert seen_secret, "no build secret was seen while the builds ran"
    # kim's own build through the same gate lands in the registry, as the servers pull it
    ok = client.build(dockerfile_text=f"FROM {registry.base}\nRUN echo kims-own\n", name="own")
    final = images.wait("kim", ok["id"])
    assert final["status"] == "succeeded", client.log(ok["id"])
    assert final["image"].startswith(registry.host + "/")
    assert skopeo_inspect(final["image"], auth_file=registry.auth)["Digest"] == final["digest"]


def test_text_build_and_failure_reason(kaniko_images, bench):
    client = kaniko_images.client("kim")
    ok = client.build(dockerfile_text=f"FROM {kaniko_images.registry.base}\nRUN echo from-a-configmap\n", name="text")
    assert kaniko_images.wait("kim", ok["id"])["status"] == "succeeded"
    assert "from-a-configmap" in client.log(ok["id"])
    bad = client.build(
        dockerfile_text=f"FROM {kaniko_images.registry.base}\nRUN echo about-to-fail && exit 4\n", name="text"
    )
    final = kaniko_images.wait("kim", bad["id"])
    assert final["status"] == "failed" and "kaniko exited with 1" in final["message"]
    assert "about-to-fail" in client.log(bad["id"])
    r = bench.api("GET", f"/api/v1/namespaces/default/configmaps/{build_pod_name(bad['id'])}")
    assert r.status_code == 404  # the Dockerfile's ConfigMap went with the pod


def test_service_restart_reattaches_to_the_pod(kaniko_images, bench):
    images = kaniko_images
    client = images.client("lee")
    build = client.build(
        dockerfile_text=f"FROM {images.registry.base}\nRUN echo before-restart && sleep 6 && echo after-restart\n",
        name="reattach",
    )
    images.wait_for_line("lee", build["id"], "before-restart")
    os.kill(images.hub.service_pid("kubestudio.image_builder"), signal.SIGKILL)
    deadline = time.monotonic() + 120
    record = {}
    while time.monotonic() < deadline:
        try:
            record = images.session("lee").get(f"{images.url}api/builds/{build['id']}").json()
            if record.get("status") in ("succeeded", "failed"):
                break
        except (requests.ConnectionError, ValueError):
            pass
        time.sleep(0.5)
    log = client.log(build["id"])
    assert record["status"] == "succeeded", (record, log)
    assert "Re-attached to build pod" in log and "after-restart" in log
    assert build_pod_name(build["id"]) not in build_pods(bench)


def test_cleaner_removes_old_unfollowed_pods(bench):
    async def scenario():
        backend = KanikoBackend(
            kubeconfig=bench.kubeconfig,
            pod_max_age_seconds=0,
            executor_command=["sleep", "60"],
            cleanup_interval_seconds=3600,
        )
        await backend.start()
        try:
            old, live = job(id="00000000aaaa", generated=True), job(id="00000000bbbb", generated=True)
            for j in (old, live):
                await backend.core.create_namespaced_pod("default", kaniko_pod(j, backend.settings()))
            backend.followed.add(build_pod_name(live.id))
            await asyncio.sleep(1.1)
            removed = await backend.clean()
            assert build_pod_name(old.id) in removed and build_pod_name(live.id) not in removed
            backend.followed.clear()
            await backend._delete(build_pod_name(live.id))
        finally:
            await backend.stop()

    asyncio.run(scenario())
