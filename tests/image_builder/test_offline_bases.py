"""The embedded default makes its own Python base image offline (Debian packages via mmdebstrap),
so a newcomer's first *Packages* and *Running server* builds succeed with no image registry on
the internet."""

import os
import shutil
import time

import pytest

from kubestudio.testing.imageshub import package_installed, start_images_hub
from kubestudio.testing.localhub import browser_login

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def based(tmp_path_factory, registry):
    if not shutil.which("mmdebstrap"):
        pytest.fail("mmdebstrap is not installed: scripts/install.sh installs it")
    # the Python base alone: these servers run on the hub's Python (servers in the local
    # single-user image are tests/e2e/test_server_images.py)
    images = start_images_hub(tmp_path_factory.mktemp("bases-hub"), registry, base_images="python")
    yield images
    images.hub.stop()


def wait_base_ready(client, timeout=600):
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        bases = client.bases()
        seen.append(bases[0]["status"])
        if bases[0]["status"] != "preparing":
            return bases[0], seen
        time.sleep(1)
    raise TimeoutError(f"base image still being prepared after {timeout}s")


def test_python_base_is_prepared_in_the_background_and_listed(based):
    client = based.client("nina")
    # the hub and the service answered before the base was ready: it is not in the start path
    first = client.bases()
    assert [b["image"] for b in first] == [f"{based.registry.host}/base/python:3.11"]
    base, seen = wait_base_ready(client)
    assert base["status"] == "ready", base
    page = based.session("nina").get(based.url).text
    assert "base/python:3.11" in page


def test_first_packages_build_uses_the_offline_base(based):
    client = based.client("nina")
    wait_base_ready(client)
    # no base given: the service's own base; pip comes from the base's Debian python3-pip
    build = client.build(environment={"pip": ["nothing==0.0.3"]}, name="first-packages")
    assert build["spec"]["environment"]["base"].endswith("/base/python:3.11")
    final = based.wait("nina", build["id"], timeout=300)
    log = client.log(build["id"])
    assert final["status"] == "succeeded", log
    assert "Successfully installed nothing-0.0.3" in log, log


def test_running_server_build_on_the_embedded_default(based):
    """A local server runs no image: its build starts from the base that matches its Python."""
    client = based.client("nina")
    wait_base_ready(client)
    assert based.hub.spawn("nina").status_code in (201, 202)
    # the page's server list: it answers once the server has taken its package set at start
    servers = based.session("nina").get(f"{based.url}api/servers").json()["servers"]
    assert servers == [{"name": "", "ready": True, "adds": {"pip": [], "conda": []}, "note": ""}]
    try:
        with package_installed("nothing", "0.0.3", based.user_site("nina")):
            build = client.build(from_server="", name="my-server")  # "" is the default server
    finally:
        based.hub.stop_server("nina")
    assert build["captured"]["pip"] == ["nothing==0.0.3"], build["captured"]
    assert build["spec"]["environment"]["base"].endswith("/base/python:3.11")
    final = based.wait("nina", build["id"], timeout=300)
    assert final["status"] == "succeeded", client.log(build["id"])


@pytest.mark.browser
def test_images_page_steps_servers_delete_and_start(based, page, tmp_path):
    """The page: steps counted from the user's Dockerfile, an *exists* answer without a step bar,
    the Running server choice lists my servers with what they add, images can be deleted and
    started as a server; base images are listed with their state."""
    client = based.client("paula")
    wait_base_ready(client)
    browser_login(page, based.hub, "paula")
    page.wait_for_url("**/hub/**")
    page.goto(based.url)
    page.wait_for_selector("text=Build an image")
    page.wait_for_selector("#bases-section:not([hidden])")
    assert "base/python:3.11" in page.inner_text("#bases") and "ready" in page.inner_text("#bases")
    # the workspace as it really is on this machine
    assert page.inner_text("#workspace") == based.workspace("paula")

    # a 2-line Dockerfile is 2 steps, though buildah adds LABEL steps of its own
    page.click("button[data-kind=dockerfile_text]")
    assert page.get_attribute("#name", "placeholder") == "custom"
    page.fill("#dockerfile_text", f"FROM {based.registry.base}\nRUN echo two-steps\n")
    page.fill("#name", "two-steps")
    page.click("#build-button")
    page.wait_for_function(
        "document.getElementById('current-status').textContent.startsWith('succeeded')", timeout=120000
    )
    assert page.inner_text("#steps") == "2" and page.inner_text("#step") == "2"
    # the same content again: already in the registry, no step bar over an empty log
    page.click("#build-button")
    page.wait_for_function("document.getElementById('current-status').textContent.startsWith('exists')")
    assert page.is_hidden("#progress-box") and page.is_hidden("#log")
    assert "nothing was built" in page.inner_text("#current-message")

    # Running server: a list of my servers and what a build would add
    assert based.hub.spawn("paula", "lab2").status_code in (201, 202)
    try:
        page.click("button[data-kind=from_server]")
        page.wait_for_selector("#from_server option[value=lab2]", state="attached")
        page.select_option("#from_server", "lab2")
        page.wait_for_function("document.getElementById('server-adds').textContent.length > 0")
        assert "Nothing added since the server started" in page.inner_text("#server-adds")
        page.screenshot(path=os.path.join(tmp_path, "images-page-running-server.png"), full_page=True)
    finally:
        based.hub.stop_server("paula", "lab2")

    # start a server with the image, then delete it
    page.wait_for_selector("#images a.start-server")
    href = page.get_attribute("#images a.start-server", "href")
    assert "/hub/spawn/paula/two-steps?image=" in href
    page.screenshot(path=os.path.join(tmp_path, "images-page.png"), full_page=True)
    page.click("#images a.start-server")
    page.wait_for_url("**/user/paula/two-steps/**", timeout=120000)
    model = based.hub.server_model("paula", "two-steps")
    assert model["user_options"]["image"].endswith(
        "/paula/two-steps:" + model["user_options"]["image"].rsplit(":", 1)[1]
    )
    based.hub.stop_server("paula", "two-steps")
    page.goto(based.url)
    page.wait_for_selector("#images button.delete-image")
    page.on("dialog", lambda dialog: dialog.accept())
    page.click("#images button.delete-image")
    page.wait_for_function("document.getElementById('images').textContent.includes('No images yet')")
    assert client.images() == []
    assert {b["status"] for b in client.builds() if b["name"] == "two-steps"} == {"deleted"}


def test_a_second_hub_copies_the_base_made_before_from_the_cache(based, tmp_path):
    """Made once per machine: a hub with a registry of its own gets the base copied from the cache
    (the compressed layers as they are, digest for digest), not made again."""
    from kubestudio.testing.registry import LocalRegistry

    from ..conftest import REGISTRY_PASSWORD, REGISTRY_USER

    base, _ = wait_base_ready(based.client("nina"))
    assert base["status"] == "ready"
    with LocalRegistry(tmp_path / "registry", user=REGISTRY_USER, password=REGISTRY_PASSWORD) as second:
        second.auth = second.auth_file(str(tmp_path / "auth.json"))
        images = start_images_hub(tmp_path / "second-hub", second, base_images="python")
        try:
            copied, _ = wait_base_ready(images.client("nina"), timeout=120)
        finally:
            images.hub.stop()
        assert copied["status"] == "ready", copied
        assert copied["message"] == "copied from this machine's cache of images made before", copied
        assert copied["image"] == f"{second.host}/base/python:3.11"
        assert copied["seconds"] < 60
        assert "copied from the cache" in images.hub.log_tail(400)
