"""The JupyterLab extension's cost to the people who use it, in one run against its anchors.

1. load: navigation to ``lab`` until the file browser has rendered, in a real browser (Debian
   chromium), with the extension and without it (disabled in the same server's page config),
   alternating, median of ``-n`` each (``load_ratio``, goal <= 1.10);
2. idle: the browser's requests to the extension's handlers per minute with the KubeStudio panel
   open and 10 items listed, nothing changing (``idle_requests_per_min``, goal <= 2), and the
   requests the server's shared poll makes to the hub services meanwhile;
3. install: a fresh virtualenv with ``pip install kubestudio`` (no extras) against one with
   ``kubestudio[all]`` (``light_install_mb``, ``full_install_mb``), and what the light install adds
   to a virtualenv that has JupyterLab already (``added_to_a_server_mb``).

Usage: python benchmarks/labextension.py [-n 5] [--idle-seconds 60] [--skip-install]
Writes benchmarks/results/labextension.json.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import requests

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from kubestudio.testing.benchresults import write_results  # noqa: E402
from kubestudio.testing.localhub import LocalHub, browser_login  # noqa: E402
from kubestudio.testing.scratch import scratch_folder  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.dirname(HERE)
CHROMIUM = "/usr/bin/chromium"
USER = "bench"
EXTENSION = "@kubestudio/jupyterlab"


def folder_mb(path):
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                pass
    return round(total / 2**20, 1)


def venv_with(root, name, *requirements):
    """A fresh virtualenv under ``root`` with ``requirements`` installed; its size in MiB."""
    venv = os.path.join(root, name)
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    pip(os.path.join(venv, "bin", "python"), "install", *requirements)
    return venv, folder_mb(venv)


def pip(python, *args):
    """pip, quiet unless it fails (then its output is printed)."""
    done = subprocess.run(
        [python, "-m", "pip", "-q", "--disable-pip-version-check", *args], capture_output=True, text=True
    )
    if done.returncode:
        print(done.stdout[-3000:], done.stderr[-3000:], file=sys.stderr)
        done.check_returncode()


def install_sizes(root):
    wheels = os.path.join(root, "wheels")
    pip(sys.executable, "wheel", "--no-deps", "-w", wheels, SOURCE)
    wheel = os.path.join(wheels, os.listdir(wheels)[0])
    _, light = venv_with(root, "light", wheel)
    _, full = venv_with(root, "full", wheel + "[all]")
    server, before = venv_with(root, "server", "jupyterlab")
    pip(os.path.join(server, "bin", "python"), "install", wheel)
    return {
        "light_install_mb": light,
        "full_install_mb": full,
        "added_to_a_server_mb": round(folder_mb(server) - before, 1),
    }


def page_config(hub):
    """The server's page config file (lab extensions disabled there are not loaded)."""
    env = hub.server_env(USER)
    config = env.get("JUPYTER_CONFIG_DIR") or os.path.join(env["HOME"], ".jupyter")
    return os.path.join(config, "labconfig", "page_config.json")


def set_extension(hub, enabled):
    path = page_config(hub)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump({"disabledExtensions": {} if enabled else {EXTENSION: True}}, f)
    os.chmod(path, 0o644)


def load_seconds(browser, state, url):
    context = browser.new_context(storage_state=state, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    started = time.perf_counter()
    page.goto(url + "lab?reset")
    page.wait_for_selector(".jp-DirListing-content .jp-DirListing-item", timeout=120_000)
    took = time.perf_counter() - started
    context.close()
    return took


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=5, help="page loads each way")
    parser.add_argument("--idle-seconds", type=float, default=60)
    parser.add_argument("--skip-install", action="store_true", help="leave out the install sizes (minutes)")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    root = scratch_folder("labextension-bench-")
    hub = LocalHub(os.path.join(root, "hub")).start()
    metrics = {}
    try:
        hub.create_user(USER)
        hub.spawn(USER, timeout=120)
        server = f"{hub.url}/user/{USER}/"
        http = requests.Session()
        http.headers["Authorization"] = f"token {hub.user_token(USER)}"
        r = http.put(
            server + "api/contents/hello.py", json={"type": "file", "format": "text", "content": "print('hi')\n"}
        )
        r.raise_for_status()
        for _ in range(10):  # ten items in the panel
            http.post(server + "api/kubestudio/actions/job", json={"path": "hello.py"}).raise_for_status()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            items = http.get(server + "api/kubestudio/items").json()["items"]
            if len(items) == 10 and not any(i["changing"] for i in items):
                break
            time.sleep(0.5)

        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=CHROMIUM,
                args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
            )
            context = browser.new_context()
            page = context.new_page()
            browser_login(page, hub, USER)
            page.wait_for_load_state()
            page.goto(server + "lab")  # the server's login, and a first load that warms both caches
            page.wait_for_selector(".jp-DirListing-content .jp-DirListing-item", timeout=120_000)
            state = context.storage_state()
            context.close()

            loads = {True: [], False: []}
            for _ in range(args.n):
                for enabled in (False, True):
                    set_extension(hub, enabled)
                    loads[enabled].append(load_seconds(browser, state, server))
            set_extension(hub, True)

            # idle: the panel open with its ten items, nothing changing
            context = browser.new_context(storage_state=state, viewport={"width": 1280, "height": 900})
            page = context.new_page()
            seen = []
            page.on("request", lambda request: seen.append((time.monotonic(), request.url)))
            page.goto(server + "lab?reset")
            page.locator("li[data-id='kubestudio-sidebar']").click()
            page.wait_for_selector("#kubestudio-sidebar .ks-Item", timeout=60_000)
            assert page.locator("#kubestudio-sidebar section[data-kind='job'] .ks-Item").count() == 10
            page.wait_for_timeout(5000)  # the first listing, and what JupyterLab itself loads at start
            since = time.monotonic()
            polls_before = service_requests(http, server)
            page.wait_for_timeout(args.idle_seconds * 1000)  # (not time.sleep: events are read meanwhile)
            polls = service_requests(http, server) - polls_before
            ours = [url for at, url in seen if at >= since and "/api/kubestudio/" in url]
            context.close()
            browser.close()
        minutes = args.idle_seconds / 60
        metrics.update(
            {
                "load_without_s": round(statistics.median(loads[False]), 3),
                "load_with_s": round(statistics.median(loads[True]), 3),
                "load_ratio": round(statistics.median(loads[True]) / statistics.median(loads[False]), 3),
                "idle_requests_per_min": round(len(ours) / minutes, 2),
                "server_requests_to_the_hub_per_min": round(polls / minutes, 1),
            }
        )
    finally:
        hub.stop()
    if not args.skip_install:
        metrics.update(install_sizes(os.path.join(root, "installs")))
    print(f"\n{'':36}{'value':>10}")
    for key, value in metrics.items():
        print(f"{key:<36}{value!s:>10}")
    print("\nload_ratio goal <= 1.10; idle_requests_per_min goal <= 2")
    write_results(
        "labextension",
        metrics,
        browser="Debian chromium (headless)",
        loads_each_way=args.n,
        idle_seconds=args.idle_seconds,
    )


def service_requests(http, server):
    """The requests the server's bridge has made to the hub services so far."""
    return http.get(server + "api/kubestudio/services").json()["service_requests"]


if __name__ == "__main__":
    main()
