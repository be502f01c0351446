"""Fixtures shared by every test folder."""

import os
import shutil

import pytest

from kubestudio.testing.registry import LocalRegistry, push_busybox_base, tools_missing

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture
def page(tmp_path):
    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian chromium is not installed (scripts/install.sh --test installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        yield context.new_page()
        browser.close()


REGISTRY_USER = "builder"
REGISTRY_PASSWORD = "s3cret-registry-pass"


@pytest.fixture(scope="session")
def build_tools():
    missing = tools_missing()
    if missing:
        pytest.fail(f"the build tests need Debian packages {', '.join(missing)}: run scripts/test.sh (it installs them)")


@pytest.fixture(scope="module")
def registry(tmp_path_factory, build_tools):
    root = tmp_path_factory.mktemp("registry")
    reg = LocalRegistry(root / "registry", user=REGISTRY_USER, password=REGISTRY_PASSWORD).start()
    reg.auth = reg.auth_file(str(root / "auth.json"))
    reg.base = push_busybox_base(reg.host, str(root / "base-storage"), auth_file=reg.auth)
    yield reg
    reg.stop()
