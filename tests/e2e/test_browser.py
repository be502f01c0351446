"""A real browser (Debian chromium via playwright) logs in, picks a profile and gets JupyterLab."""

import pytest

from kubestudio.testing.localhub import browser_login

pytestmark = pytest.mark.browser


def test_login_pick_profile_and_see_jupyterlab(hub, page, tmp_path):
    browser_login(page, hub, "browser-user")
    page.wait_for_url("**/hub/spawn**")

    # the form: GPU profile is there; VS Code-only profile disabled unless code-server exists
    form = page.locator("#kubestudio-spawn-form")
    form.wait_for()
    assert form.locator("label.ks-profile").count() == 4
    page.screenshot(path=str(tmp_path / "spawn-form.png"), full_page=True)

    page.click("label.ks-profile[data-slug=cpu-large]")
    assert page.is_checked("input[name=profile][value=cpu-large]")
    page.click("#spawn_form input[type=submit], #spawn_form button[type=submit]")

    page.wait_for_url("**/user/browser-user/lab**", timeout=90_000)
    page.wait_for_selector("#jp-main-dock-panel", timeout=90_000)
    page.wait_for_selector(".jp-DirListing-content", timeout=60_000)
    shot = tmp_path / "jupyterlab.png"
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000
    # the file browser shows the workspace root with the archives link in it
    assert page.locator(".jp-DirListing-item[title^='Name: archives']").count() == 1
    hub.stop_server("browser-user")


def test_vs_code_profile_opens_vs_code(hub, page, tmp_path):
    from .test_local_hub import code_server_available

    if not code_server_available():
        pytest.skip("code-server is not installed (scripts/install-code-server.sh)")
    browser_login(page, hub, "coder")
    page.wait_for_url("**/hub/spawn**")
    page.click("label.ks-profile[data-slug=vscode]")
    page.click("#spawn_form input[type=submit], #spawn_form button[type=submit]")
    page.wait_for_url("**/user/coder/vscode/**", timeout=90_000)
    page.wait_for_selector(".monaco-workbench", timeout=120_000)
    # the explorer opens the user's workspace, with the archives link in it
    page.wait_for_selector(".explorer-folders-view .monaco-list-row[aria-label^='archives']", timeout=60_000)
    page.screenshot(path=str(tmp_path / "vscode.png"))
    hub.stop_server("coder")
