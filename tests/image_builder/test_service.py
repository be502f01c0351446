"""The image service end to end: real hub, real registry (with auth), real buildah, skopeo."""

import base64
import os
import signal
import threading
import time

import pytest
import requests

from kubestudio.services.livelog import FLUSH_SECONDS as LOG_FLUSH_SECONDS
from kubestudio.testing.imageshub import follow_to_end
from kubestudio.testing.registry import skopeo_inspect

from ..conftest import REGISTRY_PASSWORD

pytestmark = pytest.mark.e2e

DOCKERFILE = """FROM {base}
LABEL org.example.team="vision"
RUN echo built > /built.txt
COPY data.txt /data.txt
RUN cat /data.txt
"""


def test_build_from_workspace_folder_then_exists(images):
    images.write_context("alice", "proj", DOCKERFILE, {"data.txt": "hello from alice\n"})
    client = images.client("alice")
    build = client.build(context="proj", name="demo")
    assert build["status"] in ("queued", "running") and build["tag"] and build["steps"] == 5
    assert build["image"] == f"{images.registry.host}/kubestudio/alice/demo:{build['tag']}"
    # the build runs on the snapshot taken while the request was checked, not on the live folder
    with open(os.path.join(images.workspace("alice"), "proj", "data.txt"), "w") as f:
        f.write("tampered after the request\n")
    lines, final = follow_to_end(client, build["id"])
    assert final["status"] == "succeeded", "\n".join(lines)
    assert any(line.startswith("STEP 1/") for line in lines) and "hello from alice" in lines
    assert not any("tampered" in line for line in lines)
    assert final["digest"].startswith("sha256:") and final["size"] > 0 and final["step"] == final["steps"]

    seen = skopeo_inspect(final["image"], auth_file=images.registry.auth)
    assert seen["Digest"] == final["digest"]
    assert seen["Labels"]["org.example.team"] == "vision"
    assert seen["Labels"]["kubestudio.io/build-id"] == build["id"]
    assert seen["Labels"]["kubestudio.io/user"] == "alice"

    mine = client.images()
    assert [i["image"] for i in mine] == [final["image"]] and mine[0]["build_id"] == build["id"]
    assert "hello from alice" in client.log(build["id"])  # the stored log, as plain text

    # the identical request (the same files again): answered from the registry, no builder run, at once
    images.write_context("alice", "proj", DOCKERFILE, {"data.txt": "hello from alice\n"})
    runs_before = sum(b["builder_run"] for b in client.builds())
    started = time.monotonic()
    again = client.build(context="proj", name="demo")
    assert time.monotonic() - started < 1.0
    assert again["status"] == "exists" and again["builder_run"] is False and again["digest"] == final["digest"]
    assert sum(b["builder_run"] for b in client.builds()) == runs_before

    # a change in a context file is a new content hash: a new tag and a real build
    images.write_context("alice", "proj", DOCKERFILE, {"data.txt": "changed\n"})
    changed = client.build(context="proj", name="demo")
    assert changed["tag"] != build["tag"] and changed["status"] in ("queued", "running")
    assert images.wait("alice", changed["id"])["status"] == "succeeded"
    # snapshots and generated build folders are removed when their builds end
    assert os.listdir(os.path.join(images.hub.data_dir, "build-contexts")) == []


def test_identical_requests_in_flight_join_one_build(images):
    text = "FROM {base}\nRUN echo joined-%s && sleep 2\n".format(base=images.registry.base) % time.time()
    s = images.session("bob")
    answers = []

    def post():
        answers.append(s.post(f"{images.url}api/builds", json={"dockerfile_text": text, "name": "joined"}))

    threads = [threading.Thread(target=post) for _ in range(2)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    bodies = [a.json() for a in answers]
    assert sorted(a.status_code for a in answers) == [200, 202], bodies
    assert bodies[0]["id"] == bodies[1]["id"]
    assert any(b.get("joined") for b in bodies)
    # the raw event stream: replay, keepalive comments while the step sleeps, a final result event
    raw = s.get(
        f"{images.url}api/builds/{bodies[0]['id']}/logs",
        headers={"Accept": "text/event-stream"},
        stream=True,
        timeout=60,
    )
    assert raw.headers["Content-Type"] == "text/event-stream"
    received = [line for line in raw.iter_lines(decode_unicode=True) if line]
    assert received[0] == ": replaying the log from the start"
    assert ": keepalive" in received  # keepalive_seconds = 1, the step sleeps 2 s
    assert received[-1].startswith('data: {"type": "result"') and '"status": "succeeded"' in received[-1]
    assert images.wait("bob", bodies[0]["id"])["status"] == "succeeded"
    assert sum(1 for b in images.client("bob").builds() if b["name"] == "joined") == 1


def test_failing_run_fails_with_the_log(images):
    client = images.client("carol")
    build = client.build(
        dockerfile_text=f"FROM {images.registry.base}\nRUN echo before-the-failure && exit 3\n", name="broken"
    )
    final = images.wait("carol", build["id"])
    assert final["status"] == "failed" and "buildah exited with" in final["message"]
    log = client.log(build["id"])
    assert "before-the-failure" in log and "Build failed:" in log


def test_cancel_mid_build_and_queue_position(images):
    client = images.client("dave")
    slow = client.build(
        dockerfile_text=f"FROM {images.registry.base}\nRUN echo long-step-started && sleep 120\n",
        name="slow",
        tag="one",
    )
    second = client.build(dockerfile_text=f"FROM {images.registry.base}\nRUN echo second\n", name="slow", tag="two")
    # one build per user at a time: the second waits, with its place in the queue
    assert second["status"] == "queued" and second["queue_position"] == 1
    images.wait_for_line("dave", slow["id"], "long-step-started")
    started = time.monotonic()
    cancelled = client.cancel(slow["id"])
    assert cancelled["status"] == "cancelled" and "cancelled by dave" in cancelled["message"]
    assert time.monotonic() - started < 15
    with pytest.raises(Exception, match="already finished"):
        client.cancel(slow["id"])
    # the queued one starts now; cancel it too, whatever stage it is at
    client.cancel(second["id"])
    assert images.wait("dave", second["id"])["status"] == "cancelled"


BAD = [
    ({"context": "../alice"}, 400, "context: '../alice' must stay inside your workspace"),
    ({"context": "/etc"}, 400, "not an absolute path"),
    ({"context": "escape"}, 400, "leads outside your workspace"),
    ({"context": "linked"}, 400, "context: secret-link is a link to outside the build context"),
    ({"context": "typo"}, 400, "Dockerfile: line 2: unknown instruction 'RNU' (did you mean RUN?)"),
    ({"context": "big"}, 413, "context: larger than the limit of 64.0 KiB"),
    ({"context": "ok", "name": "Bad Name"}, 400, "name: 'Bad Name' is not a valid image name"),
    ({"context": "ok", "tag": "-x"}, 400, "tag: '-x' is not a valid tag"),
    ({"context": "ok", "repository": "base/python"}, 403, "repository: only admins"),
    ({"context": "ok", "project": "vision"}, 403, "project: project image namespaces are not enabled"),
    ({"dockerfile_text": "RUN echo\n"}, 400, "must be FROM"),
    ({"environment": {"base": "python:3", "pip": ["x && rm -rf /"]}}, 400, "environment.pip:"),
    ({}, 400, "give exactly one of"),
]


def test_bad_input_is_refused_with_the_field(images):
    s = images.session("erin")
    ws = images.workspace("erin")
    images.write_context("erin", "ok", "FROM {base}\n")
    images.write_context("erin", "typo", "FROM {base}\nRNU echo\n")
    images.write_context("erin", "big", "FROM {base}\n", {"blob.bin": "x" * 70000})
    images.write_context("erin", "linked", "FROM {base}\n")
    os.symlink("/etc/passwd", os.path.join(ws, "linked", "secret-link"))
    os.symlink("/etc", os.path.join(ws, "escape"))
    for body, status, message in BAD:
        r = s.post(f"{images.url}api/builds", json=body)
        assert r.status_code == status, (body, r.text)
        assert r.json() == {"status": status, "message": r.json()["message"]} and message in r.json()["message"], (
            body,
            r.text,
        )
    r = s.post(f"{images.url}api/builds", data="{not json")
    assert r.status_code == 400 and "not valid JSON" in r.json()["message"]
    assert images.client("erin").builds() == []  # nothing was queued


def test_credentials_never_shown(images):
    client = images.client("frank")
    build = client.build(
        dockerfile_text=f"FROM {images.registry.base}\nRUN echo leak-{REGISTRY_PASSWORD}-end\n", name="leak"
    )
    final = images.wait("frank", build["id"])
    assert final["status"] == "succeeded"
    log = client.log(build["id"])
    assert "leak-***-end" in log
    encoded = base64.b64encode(f"builder:{REGISTRY_PASSWORD}".encode()).decode()
    s = images.session("frank")
    for path in ("api/builds", f"api/builds/{build['id']}", "api/images", f"api/builds/{build['id']}/logs"):
        text = s.get(images.url + path).text
        assert REGISTRY_PASSWORD not in text.replace(f"echo leak-{REGISTRY_PASSWORD}", "") and encoded not in text


def test_restart_mid_build_marks_it_failed_with_the_reason(images):
    client = images.client("gina")
    build = client.build(
        dockerfile_text=f"FROM {images.registry.base}\nRUN echo restart-me && sleep 120\n", name="restart"
    )
    images.wait_for_line("gina", build["id"], "restart-me")
    # one build per user at a time: this one waits in the queue across the restart
    queued = client.build(
        dockerfile_text=f"FROM {images.registry.base}\nRUN echo queued-across-restart\n", name="restart"
    )
    assert queued["status"] == "queued"
    time.sleep(LOG_FLUSH_SECONDS + 0.5)  # running logs are saved every LOG_FLUSH_SECONDS
    pid = images.hub.service_pid("kubestudio.image_builder")
    assert pid
    os.kill(pid, signal.SIGKILL)  # a crash; the hub starts the service again
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            record = images.session("gina").get(f"{images.url}api/builds/{build['id']}").json()
            if record.get("status") == "failed":
                break
        except (requests.ConnectionError, ValueError):
            pass
        time.sleep(0.5)
    assert record["status"] == "failed" and "the image service restarted" in record["message"]
    assert "restart-me" in client.log(build["id"])  # the log up to the crash was kept
    # the queued build was queued again and runs; the orphaned builder was stopped
    assert images.wait("gina", queued["id"])["status"] == "succeeded"
    assert "queued-across-restart" in client.log(queued["id"])
