"""The build manager with its real store, queue and registry client, and a backend that only
waits: timeouts, limits across users, failures of the registry check, restarts of the store."""

import asyncio
import logging

import pytest
from traitlets import Float

from kubestudio.image_builder.app import ImageBuilder
from kubestudio.image_builder.backends.base import BuildBackend, BuildOutcome
from kubestudio.image_builder.builds import BuildManager
from kubestudio.image_builder.models import Base
from kubestudio.image_builder.spec import RequestError
from kubestudio.registry import RegistryClient
from kubestudio.services.store import Store
from kubestudio.testing.ports import free_port

DIGEST = "sha256:" + "0" * 64


class WaitingBackend(BuildBackend):
    """Takes `seconds` per build and records the order builds started in."""

    name = "waiting"
    seconds = Float(0.3)

    def __init__(self, **kw):
        super().__init__(**kw)
        self.started = []

    async def build(self, job, emit):
        self.started.append(job.owner)
        emit(f"STEP 1/1: RUN {job.id}")
        await asyncio.sleep(self.seconds)
        return BuildOutcome(digest=DIGEST)

    def step_of(self, line):
        return (1, 1) if line.startswith("STEP") else None


def manager(tmp_path, registry_host, **settings):
    config = ImageBuilder(
        registry_host=registry_host, registry_insecure=True, db_url=f"sqlite:///{tmp_path}/b.sqlite", **settings
    )
    backend = WaitingBackend()
    store = Store(config.db_url, Base)
    return BuildManager(config, store, backend, RegistryClient(registry_host, insecure=True), logging.getLogger("t"))


async def wait_all(m, timeout=20):
    for _ in range(int(timeout / 0.05)):
        if not m.live:
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(list(m.live))


def text(n):
    return {"dockerfile_text": f"FROM busybox\nRUN echo {n}\n", "tag": f"t{n}"}


async def test_limits_and_fairness_across_users(tmp_path, registry):
    m = manager(tmp_path, registry.host, max_concurrent_builds=1, max_builds_per_user=1)
    await m.start()
    for i in range(3):
        await m.submit({"name": "alice"}, text(f"a{i}"), False)
    status, bob = await m.submit({"name": "bob"}, text("b0"), False)
    assert status == 202 and bob["queue_position"] == 1  # ahead of alice's second and third
    await wait_all(m)
    assert m.backend.started == ["alice", "bob", "alice", "alice"]
    # steps are the user's Dockerfile's (FROM + RUN), whatever the builder counts
    assert all(b["status"] == "succeeded" and b["step"] == b["steps"] == 2 for b in m.list())
    await m.stop()


async def test_timeout_fails_the_build(tmp_path, registry):
    m = manager(tmp_path, registry.host, build_timeout=1)
    m.backend.seconds = 5
    await m.start()
    _, build = await m.submit({"name": "alice"}, text("slow"), False)
    await wait_all(m)
    done = m.get(build["id"])
    assert done["status"] == "failed" and done["message"] == "timed out after 1 s (ImageBuilder.build_timeout)"
    await m.stop()


async def test_registry_down_fails_the_request_with_the_reason(tmp_path):
    port = free_port()
    m = manager(tmp_path, f"127.0.0.1:{port}")
    await m.start()
    status, build = await m.submit({"name": "alice"}, {"dockerfile_text": "FROM busybox\n"}, False)
    assert status == 202 and build["status"] == "failed" and build["builder_run"] is False
    assert build["message"].startswith(f"registry 127.0.0.1:{port} is not reachable")
    await m.stop()


async def test_records_survive_a_new_manager(tmp_path, registry):
    m = manager(tmp_path, registry.host)
    await m.start()
    _, build = await m.submit({"name": "alice"}, text("kept"), False)
    await wait_all(m)
    await m.stop()
    again = manager(tmp_path, registry.host)
    await again.start()
    kept = again.get(build["id"])
    assert kept["status"] == "succeeded" and kept["digest"] == DIGEST
    assert f"RUN {build['id']}" in "".join([t async for t in again.log_text(build["id"])])
    await again.stop()


async def test_project_namespaces_for_members_only(tmp_path, registry):
    m = manager(tmp_path, registry.host, allow_project_namespaces=True)
    await m.start()
    _, build = await m.submit(
        {"name": "vic", "groups": ["public", "vision"]}, {**text("p"), "project": "vision"}, False
    )
    assert build["image"] == f"{registry.host}/kubestudio/projects/vision/custom:tp"
    with pytest.raises(RequestError) as refused:
        await m.submit({"name": "eve", "groups": ["public"]}, {**text("q"), "project": "vision"}, False)
    assert refused.value.status == 403 and str(refused.value) == "project: you are not a member of project 'vision'"
    await wait_all(m)
    await m.stop()
