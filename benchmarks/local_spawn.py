"""Spawn-to-ready of the embedded default against a bare jupyterhub-singleuser start.

Three things are timed, interleaved so machine noise hits them alike:

- ``kubestudio``: POST /hub/api/users/<u>/server through a real hub with LocalWorkspaceSpawner
  until the hub reports the server ready (quota and GPU checks, folders, env, the process, the
  hub's own wait for the server and the proxy route);
- ``bare``: the same ``jupyterhub-singleuser`` started by hand with the environment a hub would
  give it, until its ``api`` answers (the floor: nothing but the server itself);
- ``stock``: JupyterHub's own SimpleLocalProcessSpawner through an identical hub (the anchor:
  what JupyterHub alone costs on top of the bare server).

Run as root, KubeStudio's servers run under each user's own OS account and Python environment
(the bare server and the stock spawner run as root): a user's first spawn, which makes both, is
reported on its own.

Run as root, a fourth is timed (``image``, skipped with --no-image): the same spawn through a hub
whose servers run inside KubeStudio's local single-user image (buildah, chroot isolation), against
the same bare server (``image_spawn_ratio``, goal <= 1.5). The image is made by that hub's image
service first (its time is reported), and the first start pulls it into the spawner's storage.

Usage: python benchmarks/local_spawn.py [-n 7] [--no-image]
Writes benchmarks/results/local_spawn.json.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

import requests

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from kubestudio.testing.benchresults import write_results  # noqa: E402
from kubestudio.testing.localhub import LocalHub  # noqa: E402
from kubestudio.testing.ports import free_port  # noqa: E402
from kubestudio.testing.scratch import scratch_folder  # noqa: E402


def time_hub_spawn(hub, user, options):
    start = time.perf_counter()
    r = hub.api("POST", hub.server_path(user), json=options)
    r.raise_for_status()
    while True:
        model = hub.server_model(user)
        if model and model.get("ready"):
            elapsed = time.perf_counter() - start
            break
        if model is None:
            raise RuntimeError(f"{user}'s server stopped while starting:\n{hub.log_tail()}")
        time.sleep(0.01)
    hub.stop_server(user)
    return elapsed


def wait_for_local_image(hub, timeout=900):
    """Seconds the hub's image service took to make the local single-user image (after the base)."""
    session = requests.Session()
    session.headers["Authorization"] = f"token {hub.user_token('bench')}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        bases = session.get(f"{hub.url}/services/images/api/bases", timeout=30).json()
        bases = bases.get("bases", bases) if isinstance(bases, dict) else bases
        server = [b for b in bases if "/kubestudio/singleuser:" in b["image"]][0]
        if server["status"] == "failed":
            raise RuntimeError(f"the local single-user image failed: {server['message']}")
        if server["status"] == "ready":
            return server["seconds"]
        time.sleep(2)
    raise TimeoutError("the local single-user image was not made in time")


def time_bare_singleuser(hub, user, token, workdir):
    port = free_port()
    prefix = f"/user/{user}/"
    env = dict(
        os.environ,
        JUPYTERHUB_API_TOKEN=token,
        JUPYTERHUB_API_URL=f"http://127.0.0.1:{hub.hub_port}/hub/api",
        JUPYTERHUB_BASE_URL="/",
        JUPYTERHUB_CLIENT_ID=f"jupyterhub-user-{user}",
        JUPYTERHUB_USER=user,
        JUPYTERHUB_SERVER_NAME="",
        JUPYTERHUB_SERVICE_PREFIX=prefix,
        JUPYTERHUB_SERVICE_URL=f"http://127.0.0.1:{port}{prefix}",
        JUPYTERHUB_OAUTH_CALLBACK_URL=f"{prefix}oauth_callback",
        JUPYTERHUB_HOST="",
        JUPYTERHUB_ROOT_DIR=workdir,
        HOME=workdir,
    )
    command = [os.path.join(os.path.dirname(sys.executable), "jupyterhub-singleuser")]
    if os.geteuid() == 0:
        command.append("--ServerApp.allow_root=True")
    start = time.perf_counter()
    proc = subprocess.Popen(command, env=env, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}{prefix}api"
    try:
        while True:
            try:
                if requests.get(url, timeout=1).status_code == 200:
                    return time.perf_counter() - start
            except requests.ConnectionError:
                pass
            if proc.poll() is not None:
                raise RuntimeError("bare jupyterhub-singleuser exited")
            time.sleep(0.01)
    finally:
        proc.terminate()
        proc.wait(20)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=7, help="spawns of each kind (>= 5)")
    parser.add_argument("--no-image", action="store_true", help="skip the spawns inside the local image")
    args = parser.parse_args()
    with_image = os.geteuid() == 0 and not args.no_image

    root = scratch_folder("kubestudio-bench-")  # removed when the run ends
    ours = LocalHub(os.path.join(root, "kubestudio"), extra_config="c.LocalWorkspaceSpawner.gpus = []\n")
    stock = LocalHub(
        os.path.join(root, "stock"),
        extra_config=f"""
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = "{root}/stock-homes/{{username}}"
c.Spawner.args = ["--ServerApp.allow_root=True"] if __import__("os").geteuid() == 0 else []
""",
    )
    imaged = (
        LocalHub(os.path.join(root, "image"), extra_config="c.LocalWorkspaceSpawner.gpus = []\n", base_images=True)
        if with_image
        else None
    )
    times = {"kubestudio": [], "bare": [], "stock": [], "image": []}
    image_made_s = first_image_spawn = None
    try:
        ours.start()
        stock.start()
        ours.create_user("bench")
        stock.create_user("bench")
        if imaged:
            imaged.start()
            imaged.create_user("bench")
            image_made_s = wait_for_local_image(imaged)
            first_image_spawn = time_hub_spawn(imaged, "bench", {"profile": "cpu-small"})
        token = ours.user_token("bench")
        bare_dir = os.path.join(root, "bare")
        os.makedirs(bare_dir)
        # a user's first spawn also makes their OS account (a hub run as root) and their own Python
        # environment: reported apart, then one untimed round warms the page cache for all three
        first_spawn = time_hub_spawn(ours, "bench", {"profile": "cpu-small"})
        time_hub_spawn(stock, "bench", {})
        time_bare_singleuser(ours, "bench", token, bare_dir)
        for i in range(args.n):
            times["bare"].append(time_bare_singleuser(ours, "bench", token, bare_dir))
            times["kubestudio"].append(time_hub_spawn(ours, "bench", {"profile": "cpu-small"}))
            times["stock"].append(time_hub_spawn(stock, "bench", {}))
            if imaged:
                times["image"].append(time_hub_spawn(imaged, "bench", {"profile": "cpu-small"}))
            print(
                f"round {i + 1}/{args.n}: bare {times['bare'][-1]:.2f}s  "
                f"kubestudio {times['kubestudio'][-1]:.2f}s  stock {times['stock'][-1]:.2f}s"
                + (f"  image {times['image'][-1]:.2f}s" if imaged else ""),
                file=sys.stderr,
            )
    finally:
        ours.stop()
        stock.stop()
        if imaged:
            imaged.stop()

    median = {k: statistics.median(v) for k, v in times.items() if v}
    metrics = {
        "n": args.n,
        "spawn_ready_s_median": round(median["kubestudio"], 3),
        "bare_singleuser_s_median": round(median["bare"], 3),
        "ratio": round(median["kubestudio"] / median["bare"], 3),
        "stock_spawner_s_median": round(median["stock"], 3),
        "ratio_vs_stock": round(median["kubestudio"] / median["stock"], 3),
        "first_spawn_s": round(first_spawn, 3),
        "per_user_accounts": os.geteuid() == 0,
        "spawn_ready_s_min": round(min(times["kubestudio"]), 3),
        "spawn_ready_s_max": round(max(times["kubestudio"]), 3),
    }
    if imaged:
        metrics.update(
            {
                "image_spawn_ready_s_median": round(median["image"], 3),
                "image_spawn_ratio": round(median["image"] / median["bare"], 3),
                "image_first_spawn_s": round(first_image_spawn, 3),
                "local_image_made_s": image_made_s,
            }
        )
    print(f"\n{'what':<38}{'median s':>10}{'min s':>8}{'max s':>8}")
    for label, key in (
        ("bare jupyterhub-singleuser", "bare"),
        ("JupyterHub SimpleLocalProcessSpawner", "stock"),
        ("KubeStudio LocalWorkspaceSpawner", "kubestudio"),
        ("KubeStudio, server in the local image", "image"),
    ):
        if key not in median:
            continue
        print(f"{label:<38}{median[key]:>10.3f}{min(times[key]):>8.3f}{max(times[key]):>8.3f}")
    print(
        f"\nratio vs bare: {metrics['ratio']:.3f} (goal <= 1.2); ratio vs stock spawner: {metrics['ratio_vs_stock']:.3f}"
    )
    print(
        f"a user's first spawn (its OS account: {metrics['per_user_accounts']}, its own Python environment): "
        f"{first_spawn:.3f} s"
    )
    if imaged:
        print(
            f"in the local image: ratio vs bare {metrics['image_spawn_ratio']:.3f} (goal <= 1.5); the image made "
            f"in {image_made_s} s by the image service; the first start (pulls it) {first_image_spawn:.3f} s"
        )
    return write_results(
        "local_spawn",
        metrics,
        jupyterhub=__import__("jupyterhub").__version__,
        goal="ratio <= 1.2; image_spawn_ratio <= 1.5",
    )


if __name__ == "__main__":
    main()
