"""Fixtures shared by every test folder."""

import os
import shutil

import pytest

from kubestudio.testing import processes
from kubestudio.testing.registry import LocalRegistry, push_busybox_base, tools_missing

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="session", autouse=True)
def nothing_left_running():
    """Fail the run when a test left a process of its own running (a hub, proxy, server, service).

    The run's processes are kept in a control group of their own, so this looks only at what
    this run started; other hubs and test runs on the machine are never touched.
    """
    group = processes.track_this_run()
    if not group.active:
        import warnings

        warnings.warn("no writable cgroup here: leftover processes are not checked")
    yield
    left = processes.leftovers(grace=10)
    processes.kill_all(left)
    group.close()
    if left:
        listing = "\n".join(f"  {pid}: {cmd[:200]}" for pid, cmd in left)
        pytest.fail(f"the tests left {len(left)} processes running (now killed):\n{listing}", pytrace=False)


@pytest.fixture(autouse=True)
def keep_umask():
    """configure() called in this process (tests/hub) sets a hub's umask, 077 when users get
    accounts of their own: files the next tests write for a user must not inherit it."""
    umask = os.umask(0o022)
    os.umask(umask)
    yield
    os.umask(umask)


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
