"""The image page in a real browser: log in, start a build, watch the log arrive and the result."""

import os
import signal
import time

import pytest
import requests

from kubestudio.testing.localhub import browser_login

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


def test_build_from_the_page(images, page, tmp_path):
    images.hub.create_user("painter")
    browser_login(page, images.hub, "painter")
    page.wait_for_url("**/hub/**")
    # the hub's header links to the service
    page.goto(f"{images.hub.url}/hub/home")
    assert page.locator("a[href$='/services/images/']").count() >= 1

    page.goto(images.url)  # OAuth with the hub, then the page
    page.wait_for_selector("text=Build an image")
    page.click("button[data-kind=dockerfile_text]")
    page.fill(
        "#dockerfile_text",
        f"FROM {images.registry.base}\nRUN echo first-line && sleep 2 && echo second-line\nRUN echo third-step\n",
    )
    page.fill("#name", "from-the-page")
    page.click("#build-button")
    page.wait_for_selector("#current:not([hidden])")
    page.wait_for_function("document.getElementById('log').textContent.includes('first-line')", timeout=60000)
    page.wait_for_function(
        "document.getElementById('current-status').textContent.startsWith('succeeded')", timeout=90000
    )
    log = page.inner_text("#log")
    assert "second-line" in log and "third-step" in log
    assert page.eval_on_selector("#progress", "p => p.value === p.max && p.max > 1")
    # the build's own link starts a server named after it, in this image (not the bare spawn page)
    start = page.get_attribute("#current-start", "href")
    assert "/hub/spawn/painter/from-the-page?image=" in start and page.is_visible("#current-start"), start
    page.wait_for_function("document.getElementById('images').textContent.includes('from-the-page')", timeout=15000)
    page.screenshot(path=os.path.join(tmp_path, "images-page.png"), full_page=True)

    # the service restarts (a crash): the page's login cookie still works afterwards
    os.kill(images.hub.service_pid("kubestudio.image_builder"), signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        time.sleep(0.3)
        try:
            if requests.get(f"{images.url}api/health", timeout=2).status_code == 200:
                break
        except requests.ConnectionError:
            pass
    # a bad request shows the service's message next to the form, and nothing is queued
    page.click("button[data-kind=context]")
    page.fill("#context", "../elsewhere")
    page.click("#build-button")
    page.wait_for_function(
        "document.getElementById('form-error').textContent.includes('must stay inside your workspace')"
    )


def test_a_very_long_username_keeps_the_header_in_one_line(images, page, tmp_path):
    name = "l" * 300
    images.hub.create_user(name)
    browser_login(page, images.hub, name)
    page.wait_for_url("**/hub/**")
    page.goto(images.url)
    page.wait_for_selector("text=Build an image")
    header = page.locator("header").bounding_box()
    assert header["height"] < 60, header  # one line
    who = page.locator("header .who").bounding_box()
    assert who["x"] + who["width"] <= 1280
    assert page.locator("header a", has_text="Start a server").is_visible()
    page.screenshot(path=os.path.join(tmp_path, "long-username.png"))
