"""The image service under attack (issue 10): each test replays one attack on a real hub, proxy,
registry and buildah, and fails if the attack works."""

import asyncio
import contextlib
import json
import os
import shutil
import socket
import sqlite3
import stat
import threading
import time

import pytest
import requests

from kubestudio.image_builder.backends.base import BuildFailed, BuildJob
from kubestudio.image_builder.backends.buildah import BuildahBackend
from kubestudio.image_builder.backends.sandbox import host_addresses
from kubestudio.testing.httpstub import answering
from kubestudio.testing.imageshub import follow_to_end, log_flood, percentile
from kubestudio.testing.wait import wait_for

pytestmark = pytest.mark.e2e


def build_contexts(images):
    """Copies in the service's work folder that belong to no queued or running build.

    Another test's build (or a base image being prepared) may still be running beside this one: its
    folder is in use, not leaked."""
    folder = os.path.join(images.hub.data_dir, "build-contexts")
    if not os.path.isdir(folder):
        return []
    with sqlite3.connect(os.path.join(images.hub.data_dir, "images.sqlite")) as db:
        rows = db.execute("SELECT id, extra FROM builds WHERE status IN ('queued', 'running')").fetchall()
    active = {f"build-{build_id}" for build_id, _ in rows}
    active |= {
        os.path.basename((json.loads(extra or "{}").get("job") or {}).get("build_dir") or "") for _, extra in rows
    }
    return sorted(set(os.listdir(folder)) - active)


def test_context_race_never_builds_what_was_not_checked(images, tmp_path):
    """A thread swaps the context folder for a link to a folder outside the workspace every few
    milliseconds while the context is requested again and again."""
    workspace = images.workspace("racer")
    images.write_context("racer", "racea", "FROM {base}\nCOPY . /ctx\nRUN ls /ctx\n", {"inside.txt": "inside\n"})
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "Dockerfile").write_text(f"FROM {images.registry.base}\nCOPY . /ctx\nRUN cat /ctx/OUTSIDE.txt\n")
    (outside / "OUTSIDE.txt").write_text("the outside secret\n")
    s = images.session("racer")
    honest = s.post(f"{images.url}api/builds", json={"context": "racea", "name": "race"}).json()
    assert images.wait("racer", honest["id"])["status"] == "succeeded"

    real, link, parked = (os.path.join(workspace, n) for n in ("racea", "racea", "racea.parked"))
    stop = threading.Event()
    swaps = [0]

    def swap():
        while not stop.is_set():
            os.rename(real, parked)
            os.symlink(outside, link)
            time.sleep(0.002)
            os.unlink(link)
            os.rename(parked, real)
            swaps[0] += 1
            time.sleep(0.001)

    swapper = threading.Thread(target=swap)
    swapper.start()
    answers = []
    try:
        for _ in range(60):
            answers.append(s.post(f"{images.url}api/builds", json={"context": "racea", "name": "race"}))
    finally:
        stop.set()
        swapper.join()
    assert swaps[0] > 20
    statuses = [r.status_code for r in answers]
    assert all(code < 500 for code in statuses), statuses
    refused = [r.json()["message"] for r in answers if r.status_code >= 400]
    assert all(m.startswith("context:") for m in refused), refused
    accepted = [r.json() for r in answers if r.status_code < 400]
    assert accepted and refused  # the race was really run both ways
    # every accepted request is the checked folder's content: the same tag as the honest build
    assert {b["tag"] for b in accepted} == {honest["tag"]}, [b for b in accepted if b["tag"] != honest["tag"]]
    for build in accepted:
        log = images.session("racer").get(f"{images.url}api/builds/{build['id']}/logs").text
        assert "outside secret" not in log
    assert build_contexts(images) == []


def test_run_steps_cannot_touch_the_host(images):
    """RUN as root in the build: no host processes to see or signal, no hub on the loopback, yet
    the internet is reachable (pip install works)."""
    hub_pid = images.hub.proc.pid
    service_pid = images.hub.service_pid("kubestudio.image_builder")
    outside_ip = socket.gethostbyname("pypi.org")
    text = f"""FROM {images.registry.base}
RUN echo procs=$(ls /proc | /bin/busybox grep -c '^[0-9]') && cat /proc/self/uid_map
RUN kill -0 {hub_pid}; echo kill-hub=$?; kill -0 {service_pid}; echo kill-service=$?; kill -TERM {hub_pid} {service_pid}; true
RUN printf 'GET /services/images/api/health HTTP/1.0\\r\\n\\r\\n' | /bin/busybox nc -w 3 127.0.0.1 {images.hub.port}; echo fetch-hub=$?
RUN echo | /bin/busybox nc -w 10 {outside_ip} 443 && echo outbound=ok || echo outbound=failed
"""
    client = images.client("mallory")
    lines, final = follow_to_end(client, client.build(dockerfile_text=text, name="escape")["id"])
    log = "\n".join(lines)
    assert final["status"] == "succeeded", log
    procs = int(next(line for line in lines if line.startswith("procs="))[len("procs=") :])
    assert procs < 10, log  # its own PID namespace: a handful of processes, not the machine's
    uid_map = next(line.split() for line in lines if line.split()[:1] == ["0"] and len(line.split()) == 3)
    assert uid_map[1] != "0", log  # root in the build is an unprivileged uid on the host
    assert "kill-hub=1" in lines and "kill-service=1" in lines, log
    assert (
        "fetch-hub=1" in lines and '"status": "ok"' not in log and not any(line.startswith("HTTP/") for line in lines)
    ), log
    assert "outbound=ok" in lines, log
    # the hub and the service are alive and answering
    assert images.hub.proc.poll() is None
    assert images.hub.service_pid("kubestudio.image_builder") == service_pid
    assert requests.get(f"{images.url}api/health", timeout=5).json() == {"status": "ok"}


def test_add_url_is_fetched_in_the_sandbox_network_never_the_hosts(images):
    """Issue 27: buildah fetches an ADD <url> itself, outside any RUN container: it runs in the
    build sandbox's network, where the host's loopback (the hub, its services), the machine's own
    addresses and the private and link-local ranges are out of reach; the internet and the
    registry are not."""
    with contextlib.ExitStack() as stack:
        servers = [
            stack.enter_context(answering(b"the machine's own secret\n", address))
            for address in ["127.0.0.1", *host_addresses()]
        ]
        targets = [
            f"http://127.0.0.1:{images.hub.port}/hub/api",
            f"http://127.0.0.1:{images.hub.port}/services/images/api/health",
            "http://169.254.169.254/latest/meta-data/",
            *[f"http://{s.server_address[0]}:{s.server_address[1]}/secret" for s in servers],
        ]
        client = images.client("mallory")
        for url in targets:
            lines, final = follow_to_end(
                client,
                client.build(dockerfile_text=f"FROM {images.registry.base}\nADD {url} /got\n", name="fetch")["id"],
            )
            log = "\n".join(lines)
            assert final["status"] == "failed", (url, log)
            assert "own secret" not in log and '"status": "ok"' not in log and '"version"' not in log, (url, log)
        # the internet is still there, and the registry (FROM) too
        lines, final = follow_to_end(
            client,
            client.build(
                dockerfile_text=f"FROM {images.registry.base}\nADD https://pypi.org/simple/six/ /six.html\nRUN grep -c six- /six.html\n",
                name="fetch",
            )["id"],
        )
        assert final["status"] == "succeeded", "\n".join(lines)


CVE_2024_1753 = """FROM {base} AS l
RUN ln -s / /rootdir
FROM {base}
RUN --mount=type=bind,from=l,source=/rootdir,target=/h,rw ls /h; cat /h/tmp/{marker}; touch /h/tmp/{marker}-written; echo end
"""


def test_a_bind_mount_that_leaves_the_build_finds_nothing_of_the_hosts(images, registry, tmp_path):
    """Issue 27, CVE-2024-1753 (unfixed in Debian bookworm's buildah 1.28): a RUN step that bind-mounts
    a stage's link to / gets buildah's own /. The service refuses the spelling at once; and buildah
    runs with a root of its own (the sandbox's confinement), so even an unrefused one finds none of the
    host's folders: run here through the backend itself, as the service runs it, without the parse."""
    marker = f"ks-cve-{os.getpid()}-{time.monotonic_ns()}"
    host_file = os.path.join("/tmp", marker)
    with open(host_file, "w") as f:
        f.write("the host's own file\n")
    os.chmod(host_file, 0o644)  # readable by anyone, the build's unprivileged uid too
    text = CVE_2024_1753.format(base=registry.base, marker=marker)
    try:
        r = images.session("mallory").post(f"{images.url}api/builds", json={"dockerfile_text": text, "name": "cve"})
        assert r.status_code == 400 and "CVE-2024-1753" in r.json()["message"], r.text
        # the service said at its start what keeps builds from the host
        assert "is affected by CVE-2024-1753" in images.hub.log_tail(
            100000
        ) and "buildah runs confined to a root of its own" in images.hub.log_tail(100000)
        context = tmp_path / "context"
        context.mkdir()
        (context / "Dockerfile").write_text(text)
        backend = BuildahBackend(
            storage_root=str(tmp_path / "storage"),
            run_root=str(tmp_path / "run"),
            auth_file=registry.auth,
            tls_verify=False,
            loopback_registries=[registry.host],
        )
        job = BuildJob(
            id="cve1",
            owner="mallory",
            owner_slug="mallory",
            image=f"{registry.host}/kubestudio/mallory/cve:1",
            dockerfile="Dockerfile",
            context_dir=str(context),
            dockerfile_text=text,
        )
        lines = []
        try:
            asyncio.run(backend.build(job, lines.append))
        except BuildFailed:
            pass  # whether buildah ends well or not, what matters is what the step saw and wrote
        log = "\n".join(lines)
        assert "end" in lines, log  # the step ran, with its mount
        assert "the host's own file" not in log, log
        listing = set(log.split())
        assert "usr" in listing, log  # it listed a root: buildah's own, not the machine's
        assert not listing & {"work", "root", "home", "srv", "boot"}, log
        assert not os.path.exists(host_file + "-written")
    finally:
        os.unlink(host_file)
        if os.path.exists(host_file + "-written"):
            os.unlink(host_file + "-written")


def test_private_images_of_others_cannot_be_built_from(images):
    bob = images.client("bob")
    secret = bob.build(
        dockerfile_text=f"FROM {images.registry.base}\nRUN echo bob-secret > /secret.txt\n",
        name="secretimg",
        tag="latest",
    )
    secret_image = images.wait("bob", secret["id"])["image"]
    assert secret_image == f"{images.registry.host}/kubestudio/bob/secretimg:latest"
    host, port = images.registry.host.split(":")
    alias = secret_image.replace(host, "localhost" if host == "127.0.0.1" else "127.0.0.1", 1)
    s = images.session("alice")
    attempts = {
        "line 1": f"FROM {secret_image}\nRUN cat /secret.txt\n",
        "line 2": f"FROM {images.registry.base} AS one\nFROM {alias}\n",
        "line 3": f"FROM {images.registry.base} AS one\nFROM {images.registry.base}\nCOPY --from={secret_image} /secret.txt /s\n",
        "line 3 ": f"ARG BASE={secret_image}\nFROM {images.registry.base}\nFROM $BASE\n",
        "line 2 ": f"FROM {images.registry.base}\nRUN --mount=type=cache,from={secret_image},target=/b cat /b/secret.txt\n",
    }
    for line, text in attempts.items():
        r = s.post(f"{images.url}api/builds", json={"dockerfile_text": text, "name": "stolen"})
        assert r.status_code == 403, (text, r.text)
        message = r.json()["message"]
        assert f"Dockerfile: {line.strip()}: you may not build from" in message and "bob" in message, message
    r = s.post(f"{images.url}api/builds", json={"dockerfile_text": "ARG X\nFROM $X\n", "name": "stolen"})
    assert r.status_code == 400 and "$X has no default value" in r.json()["message"]
    assert not any(b["name"] == "stolen" for b in images.client("alice").builds())
    # bob builds on his own image; alice on the shared bases and her own
    mine = bob.build(dockerfile_text=f"FROM {secret_image}\nRUN cat /secret.txt\n", name="mine")
    assert images.wait("bob", mine["id"])["status"] == "succeeded"
    own = s.post(
        f"{images.url}api/builds",
        json={"dockerfile_text": f"FROM {images.registry.base}\nRUN echo a\n", "name": "own", "tag": "v1"},
    ).json()
    own_image = images.wait("alice", own["id"])["image"]
    again = s.post(
        f"{images.url}api/builds", json={"dockerfile_text": f"FROM {own_image}\nRUN echo b\n", "name": "own2"}
    )
    assert again.status_code == 202, again.text


def test_dockerignored_dockerfile_and_failed_requests_leave_no_copies(images):
    images.write_context("leaky", "leak", "FROM {base}\nRUN echo from-sub\n")
    sub = os.path.join(images.workspace("leaky"), "leak", "sub")
    os.makedirs(sub)
    shutil.move(os.path.join(images.workspace("leaky"), "leak", "Dockerfile"), os.path.join(sub, "Dockerfile"))
    with open(os.path.join(images.workspace("leaky"), "leak", ".dockerignore"), "w") as f:
        f.write("sub\n")
    s = images.session("leaky")
    r = s.post(f"{images.url}api/builds", json={"context": "leak", "dockerfile": "sub/Dockerfile", "name": "leak"})
    assert r.status_code == 202, r.text
    assert images.wait("leaky", r.json()["id"])["status"] == "succeeded"
    with open(os.path.join(images.workspace("leaky"), "leak", "big.bin"), "wb") as f:
        f.write(b"0" * 100_000)  # over the test hub's 64 KiB context limit
    for _ in range(5):
        r = s.post(f"{images.url}api/builds", json={"context": "leak", "dockerfile": "sub/Dockerfile"})
        assert r.status_code == 413 and r.json()["message"].startswith("context: larger than")
    assert build_contexts(images) == []


def test_files_vanishing_while_scanned_are_never_a_500(images):
    folder = os.path.join(images.workspace("flicker"), images.write_context("flicker", "churn", "FROM {base}\n"))
    stop = threading.Event()

    def churn():
        i = 0
        while not stop.is_set():
            path = os.path.join(folder, f"f{i % 50}.txt")
            with open(path, "w") as f:
                f.write("x" * 100)
            if i % 2:
                os.unlink(path)
            i += 1

    t = threading.Thread(target=churn)
    t.start()
    try:
        codes = [
            images.session("flicker").post(f"{images.url}api/builds", json={"context": "churn"}).status_code
            for _ in range(30)
        ]
    finally:
        stop.set()
        t.join()
    assert all(code < 500 for code in codes), codes


def test_hostile_input_is_a_4xx_naming_the_field(images):
    s = images.session("fuzz")
    url = f"{images.url}api/builds"
    cases = [
        (b'{"context": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 400, "nested"),
        (json.dumps({"dockerfile_text": "x" * (2 << 20)}).encode(), 413, "larger than"),
        (b'{"context": "a\\ud800b"}', 400, "context: must not contain unpaired surrogate"),
        (b'{"dockerfile_text": "FROM busybox\\n\\udc00"}', 400, "dockerfile_text: must not contain unpaired"),
        (
            b'{"dockerfile_text": "FROM busybox\\n", "labels": {"team": "a\\u0000b"}}',
            400,
            "labels.team: must not contain NUL",
        ),
        (
            b'{"dockerfile_text": "FROM busybox\\n", "labels": {"kubestudio.io/user": "bob"}}',
            400,
            "labels.kubestudio.io/user: reserved",
        ),
        (b'{"dockerfile_text": "FROM busybox\\n", "labels": {"kubestudio.io/build-id": "x"}}', 400, "reserved"),
        (b'{"dockerfile_text": "FROM busybox\\n", "labels": {"a": "line\\nbreak"}}', 400, "labels.a: must be one line"),
    ]
    for body, status, message in cases:
        r = s.post(url, data=body, headers={"Content-Type": "application/json"})
        assert r.status_code == status and message in r.json()["message"], (body[:80], r.status_code, r.text[:300])
        assert r.json()["status"] == status


def test_a_line_longer_than_64_kib_is_split_not_fatal(images):
    client = images.client("verbose")
    text = f"FROM {images.registry.base}\nRUN /bin/busybox printf '%0200000d' 0; echo; echo after-the-long-line\n"
    lines, final = follow_to_end(client, client.build(dockerfile_text=text, name="longline")["id"])
    assert final["status"] == "succeeded", "\n".join(lines)[-2000:]
    pieces = [line for line in lines if line and set(line) == {"0"}]
    assert sum(len(p) for p in pieces) == 200000 and max(len(p) for p in pieces) <= 16 * 1024
    assert "after-the-long-line" in lines


def test_answers_hold_no_server_paths_and_tokens_never_reach_the_log(images):
    client = images.client("paths")
    build = client.build(dockerfile_text=f"FROM {images.registry.base}\nRUN true\n", name="paths")
    images.wait("paths", build["id"])
    for answer in (build, client.get(build["id"]), *client.builds()):
        text = json.dumps(answer)
        assert "build_dir" not in text and '"job"' not in text and images.hub.data_dir not in text, text
    token = images.tokens["paths"]
    r = requests.get(f"{images.url}api/builds?token={token}")
    assert r.status_code in (401, 403)

    def logged():
        with open(images.hub.log_file, errors="replace") as f:
            log = f.read()
        return log if "api/builds?token=***" in log else None

    log = wait_for(logged, timeout=20, interval=0.1, what="the request in the hub's log, its token masked")
    assert token not in log


def test_store_files_are_private(images):
    data = images.hub.data_dir
    for name in ("images.sqlite", "images.sqlite-wal", "images.sqlite-shm", "jupyterhub.sqlite"):
        path = os.path.join(data, name)
        if name.endswith(("-wal", "-shm")) and not os.path.exists(path):
            continue
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, name


def test_a_50_mb_log_is_capped_and_its_followers_stall_no_one(images):
    """A build prints 50 MB; ten followers read its log while another user lists builds."""
    client = images.client("flood")
    line = "x" * 79
    text = (
        f"FROM {images.registry.base}\n"
        f"RUN /bin/busybox yes {line} | /bin/busybox head -c 50000000; echo end-of-output\n"
    )
    build = client.build(dockerfile_text=text, name="flood")
    final = images.wait("flood", build["id"], timeout=600)
    assert final["status"] == "succeeded", final
    log = client.log(build["id"])
    assert 10 * 2**20 <= len(log) < 10 * 2**20 + 100_000  # the cap, the note, the last lines
    assert "--- the log reached its limit of 10.0 MiB here (ImageBuilder.max_log_bytes)" in log
    assert "lines were left out; the last 100: ---" in log and "end-of-output" in log.splitlines()[-40:]
    assert log.splitlines()[-1] == "Storing signatures"  # what came after the cut is kept at the end

    flood = log_flood(images, "flood", build["id"], followers=10)
    assert all(n > 10 * 2**20 for n in flood["followers_bytes"]), flood["followers_bytes"]
    p99 = percentile(flood["latencies_ms"], 99)
    # the benchmark holds the goal (p99 < 100 ms); here a loaded 2-core CI machine must stay far from
    # the seconds the old service took
    assert p99 < 1000, sorted(flood["latencies_ms"])[-5:]
    assert max(flood["rss_mb"]) < 300, flood["rss_mb"]
