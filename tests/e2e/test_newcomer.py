"""The README's path, exactly as a newcomer follows it.

A fresh copy of the repository with no ``../shared`` beside it, a clean environment (the system
PATH, no virtualenv), ``./scripts/hub.sh`` as the README writes it; then a real browser logs in
and starts JupyterLab, a real JupyterLab terminal (a login shell) runs ``kubestudio images
build``, the built image shows up on the spawn form, and Ctrl-C stops everything in < 5 s.
"""

import os
import re
import secrets

import pytest
import requests

from kubestudio.testing import processes
from kubestudio.testing.accounts import remove_accounts
from kubestudio.testing.doors import run_in_terminal
from kubestudio.testing.localhub import browser_login
from kubestudio.testing.newcomer import ScriptRun, fresh_checkout, machine_env
from kubestudio.testing.ports import free_port

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

pytestmark = [pytest.mark.browser, pytest.mark.newcomer]

# The README's hub names its users' OS accounts ks-<user>: a name of this run's own, so another test
# run's newcomer on the same machine never shares (or removes) this one's account
NEWBIE = f"newbie{secrets.token_hex(3)}"


def readme_commands():
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        block = re.search(r"## Two commands.*?```bash\n(.*?)```", f.read(), re.S).group(1)
    return [line.split("#")[0].strip() for line in block.strip().splitlines()]


def test_readme_names_exactly_the_two_scripts():
    assert readme_commands() == ["./scripts/hub.sh", "./scripts/test.sh"]


@pytest.fixture
def newcomer_hub(tmp_path):
    checkout = fresh_checkout(REPO, str(tmp_path / "kubestudio"))
    assert not os.path.exists(tmp_path / "shared")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # the public port is the one thing a shared machine forces us to choose (README: KUBESTUDIO_BIND_URL)
    env = machine_env(KUBESTUDIO_BIND_URL=url)
    command = readme_commands()[0]
    hub = ScriptRun(["bash", "-c", command], cwd=checkout, env=env, log_path=str(tmp_path / "hub.sh.log"))
    hub.url = url
    hub.checkout = checkout
    try:
        hub.wait_for_output(r"JupyterHub is now running at", timeout=900)
        hub.password = re.search(r"with any username and the password (\S+)", hub.output()).group(1)
        yield hub
    finally:
        hub.kill()
        # what a failed test left of this hub (servers, services, proxy live in sessions of their own)
        processes.kill_all(processes.leftovers(grace=0, within=checkout))
        # the OS account the hub made for the test's user (the README's hub runs as root here)
        remove_accounts(f"ks-{NEWBIE}")


def test_newcomer_path(newcomer_hub, page, tmp_path):
    hub = newcomer_hub
    page.set_default_timeout(90_000)
    browser_login(page, hub, NEWBIE)
    page.wait_for_url("**/hub/spawn**")
    page.screenshot(path=str(tmp_path / "newcomer-spawn-form.png"), full_page=True)
    # the default profile, JupyterLab
    page.click("#spawn_form input[type=submit], #spawn_form button[type=submit]")
    # on a new machine the first start waits for the image service to make the local single-user
    # image (the spawn page shows it)
    page.wait_for_url(f"**/user/{NEWBIE}/lab**", timeout=600_000)
    page.wait_for_selector(".jp-DirListing-content", timeout=120_000)
    page.screenshot(path=str(tmp_path / "newcomer-jupyterlab.png"))

    # a token for the terminal's websocket, made from the logged-in browser session
    xsrf = next(c["value"] for c in page.context.cookies() if c["name"] == "_xsrf" and c["path"].startswith("/hub"))
    r = page.request.post(
        f"{hub.url}/hub/api/users/{NEWBIE}/tokens", headers={"X-XSRFToken": xsrf}, data={"note": "newcomer test"}
    )
    assert r.ok, r.text()
    token = r.json()["token"]

    # the server runs in KubeStudio's local single-user image; a JupyterLab terminal is a login
    # shell in it: kubestudio, python and pip are the image's, the workspace is at /mnt/newbie
    server = f"{hub.url}/user/{NEWBIE}/"
    out = run_in_terminal(
        server,
        token,
        "command -v kubestudio python pip; pwd; echo IMG=$KUBESTUDIO_IMAGE; shopt -q login_shell; echo LOGIN=$?",
        until=r"LOGIN=\d",
        timeout=60,
    )
    assert f"/usr/local/bin/kubestudio\r\n/usr/local/bin/python\r\n/usr/bin/pip\r\n/mnt/{NEWBIE}" in out, out
    assert re.search(r"IMG=127\.0\.0\.1:\d+/kubestudio/singleuser:", out), out

    script = (
        "mkdir -p first && printf 'FROM scratch\\nCOPY hello.txt /hello.txt\\n' > first/Dockerfile && "
        "echo hello > first/hello.txt && kubestudio images build first --name first-image; "
        "echo BUILD-EXIT=$?"
    )
    out = run_in_terminal(server, token, script, until=r"BUILD-EXIT=\d+", timeout=300)
    assert "BUILD-EXIT=0" in out, out
    image = re.search(rf"succeeded\s+(\S+/{NEWBIE}/first-image:\S+)", out).group(1)

    # the built image is offered on the spawn form (a second, named server), with what runs here
    page.goto(f"{hub.url}/hub/spawn/{NEWBIE}/second")
    page.wait_for_selector("#kubestudio-spawn-form")
    assert page.locator(f"select[name=image-cpu-small] option[value='{image}']").count() == 1
    assert "hub's own Python" in page.inner_text("#kubestudio-spawn-form")
    page.screenshot(path=str(tmp_path / "newcomer-built-image-on-form.png"), full_page=True)

    # Ctrl-C: everything the hub started stops without hanging (a base image may still be being
    # prepared and a server shutting down; on a loaded 2-core CI machine that took 6 s once)
    took = hub.ctrl_c(timeout=60)
    assert took < 20, f"Ctrl-C took {took:.1f} s:\n{hub.output()[-3000:]}"
    left = processes.leftovers(grace=2, within=hub.checkout)
    assert not left, f"left running after Ctrl-C: {left}"
    with pytest.raises(requests.ConnectionError):
        requests.get(hub.url, timeout=5)


def test_two_hubs_side_by_side(tmp_path):
    """Two embedded hubs with their own data folders on one machine: no port is shared."""
    from kubestudio.testing.localhub import LocalHub

    first = LocalHub(
        tmp_path / "one",
        settings={
            "hub_port": 0,
            "proxy_api_port": 0,
            "local_registry_port": 0,
            "images_url": "",
            "jobs_url": "",
            "tensorboards_url": "",
        },
    )
    second = LocalHub(
        tmp_path / "two",
        settings={
            "hub_port": 0,
            "proxy_api_port": 0,
            "local_registry_port": 0,
            "images_url": "",
            "jobs_url": "",
            "tensorboards_url": "",
        },
    )
    with first, second:
        ports = [first.ports(), second.ports()]
        assert set(ports[0].values()).isdisjoint(ports[1].values()), ports
        for hub in (first, second):
            hub.create_user("alice")
            assert hub.spawn("alice").status_code in (201, 202)
            assert hub.server_env("alice")["KUBESTUDIO_WORKSPACE"].startswith(hub.data_dir)
            for service in ("images", "jobs"):
                r = requests.get(f"{hub.url}/services/{service}/api/health", timeout=10)
                assert r.json() == {"status": "ok"}
        # each hub's registry is its own
        assert first.ports()["registry"] != second.ports()["registry"]
