"""Run a real KubeStudio hub (JupyterHub + configurable-http-proxy) for tests and benchmarks.

``LocalHub`` writes a config that calls :func:`kubestudio.hub.configure` with a data dir of its
own and free loopback ports, starts ``jupyterhub`` as a subprocess, and talks to it over HTTP
with an admin service token. Nothing is mocked: servers are real ``jupyterhub-singleuser``
processes reached through the real proxy.
"""

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import textwrap
import time
from urllib.parse import quote

import requests

from ..processgroup import signal_group
from .accounts import remove_accounts, test_prefix
from .ports import free_port

# a managed service's command line (never a serving's runtime, kubestudio.jobs.serve, which may
# outlive the hub by design)
MANAGED_SERVICE = re.compile(
    r" -m (jupyterhub_idle_culler|kubestudio\.(jobs|tensorboards|image_builder|hub\.registry_gate))( |$)"
)


def _bin(name):
    """An executable next to the running Python (the venv), else on PATH."""
    candidate = os.path.join(os.path.dirname(sys.executable), name)
    return candidate if os.path.exists(candidate) else name


# settings of a hub for tests of servers alone: no images, jobs or boards service, each of which
# costs its start about a second of CPU and the hub a wait (JupyterHub starts them one by one)
SERVERS_ONLY = {"images_service": False, "jobs_service": False, "tensorboards_service": False}


class LocalHub:
    def __init__(
        self, root, settings=None, extra_config="", password="test-password", env=None, base_images=False, pre_config=""
    ):
        self.root = str(root)
        self.data_dir = os.path.join(self.root, "data")
        self.settings = dict(settings or {})
        self.extra_config = extra_config
        # config set before configure(), as the Helm chart's file sets the registry's (configure()
        # reads it, e.g. for the registry gate's command)
        self.pre_config = pre_config
        self.password = password
        self.env = dict(env or {})
        # making the offline Python base takes a minute of CPU, the local single-user image two
        # more: only for the tests that build on them (True: both; "python": the base alone, so
        # servers run on the hub's Python)
        self.base_images = base_images
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.hub_port = free_port()
        self.proxy_api_port = free_port()
        self.images_url = f"http://127.0.0.1:{free_port()}"
        self.jobs_url = f"http://127.0.0.1:{free_port()}"
        self.tensorboards_url = f"http://127.0.0.1:{free_port()}"
        self.local_registry_port = free_port()
        self.token = secrets.token_hex(16)
        # the OS accounts of this hub's users (when it runs as root), removed when it stops for good
        self.account_prefix = test_prefix()
        self.config_file = os.path.join(self.root, "jupyterhub_config.py")
        self.log_file = os.path.join(self.root, "hub.log")
        self.proc = None
        self._started = set()  # server PIDs seen through the API, killed at stop if still there
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"token {self.token}"

    # ------------------------------------------------------------------ process

    def write_config(self):
        settings = {
            "data_dir": self.data_dir,
            "bind_url": self.url,
            "images_url": self.images_url,
            "jobs_url": self.jobs_url,
            "tensorboards_url": self.tensorboards_url,
            "local_registry_port": self.local_registry_port,
            "hub_port": self.hub_port,
            "proxy_api_port": self.proxy_api_port,
            **self.settings,
        }
        config = textwrap.dedent(
            f"""
            import json
            from kubestudio.hub import configure
            {
                ""
                if self.base_images is True
                else "c.ImageBuilder.base_images = []"
                if not self.base_images
                else "from kubestudio.image_builder.service import local_base_images; "
                "c.ImageBuilder.base_images = local_base_images(server=False)"
            }
            configure(c, **json.loads({json.dumps(json.dumps(settings))}))
            c.JupyterHub.services = list(c.JupyterHub.get("services", [])) + [{{"name": "test-admin", "api_token": "{
                self.token
            }"}}]
            c.JupyterHub.load_roles = list(c.JupyterHub.get("load_roles", [])) + [{{"name": "admin", "services": ["test-admin"]}}]
            c.JupyterHub.log_level = "DEBUG"
            c.UserAccounts.prefix = "{self.account_prefix}"
            """
        )
        with open(self.config_file, "w") as f:
            f.write(textwrap.dedent(self.pre_config) + "\n" + config + "\n" + textwrap.dedent(self.extra_config))

    def start(self, timeout=60):
        os.makedirs(self.root, exist_ok=True)
        self.write_config()
        # the PATH the tests run with, as is: the hub must find its own tools without help
        env = dict(os.environ, KUBESTUDIO_PASSWORD=self.password, **self.env)
        self._log = open(self.log_file, "ab")
        self.proc = subprocess.Popen(
            [_bin("jupyterhub"), "-f", self.config_file],
            cwd=self.root,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"hub exited with {self.proc.returncode}:\n{self.log_tail()}")
                try:
                    if self.http.get(f"{self.url}/hub/api/", timeout=2).status_code == 200:
                        return self
                except (requests.ConnectionError, requests.Timeout):
                    pass  # not listening yet, or a busy machine: ask again until the deadline
                time.sleep(0.2)
            raise TimeoutError(f"hub did not answer in {timeout}s:\n{self.log_tail()}")
        except BaseException:
            # a hub that did not start leaves nothing running (its proxy and services included,
            # also when the hub itself died); self.proc stays, for the caller to read its exit
            if self.proc.poll() is None:
                signal_group(self.proc.pid, signal.SIGTERM)
                try:
                    self.proc.wait(20)
                except subprocess.TimeoutExpired:
                    pass
            signal_group(self.proc.pid)
            raise

    def stop(self, stop_servers=True):
        """Stop the hub; by default stop every server first (the hub leaves them running)."""
        if self.proc is None:
            return
        if stop_servers and self.proc.poll() is None:
            try:
                self.stop_all_servers()
            except requests.RequestException:
                pass
        # the hub's managed services (the idle culler, KubeStudio's services) run in sessions of
        # their own: one the hub failed to stop in time must not outlive it
        services = [pid for pid, cmd in self._descendants() if MANAGED_SERVICE.search(cmd)]
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None
        self._log.close()
        # a service may still be stopping what it runs (boards, jobs): it gets the time to finish
        from . import processes

        deadline = time.monotonic() + 30
        while True:
            alive = processes.ours()
            left = [p for p in services if (alive is None or p in alive) and os.path.exists(f"/proc/{p}")]
            if not left or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        processes.kill_all((pid, None) for pid in left)
        if stop_servers:
            self.kill_leftover_servers()
            remove_accounts(self.account_prefix)
            # the TMPDIRs of servers the hub left running (keep_servers_running), their owners gone
            from ..spawner.local import prune_private_tmps

            prune_private_tmps(min_age=0)

    def kill_leftover_servers(self):
        """Kill what this hub started and left behind: its proxy (JupyterHub starts it in a session
        of its own) and any process it started that is still running inside its data dir."""
        pids = set(self._started)
        try:
            with open(os.path.join(self.data_dir, "jupyterhub-proxy.pid")) as f:
                pids.add(int(f.read().strip()))
        except (OSError, ValueError):
            pass
        from .processes import ours

        alive = ours()  # this run's processes: never a reused PID of someone else's
        for pid in pids if alive is None else pids & alive:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._started.clear()

    def _descendants(self):
        from .processes import descendants

        return descendants(self.proc.pid) if self.proc is not None else []

    def server_pid(self, user, server=""):
        """PID of this hub's running server ``user``/``server``, from the hub's own record of it."""
        r = self.api("GET", f"/users/{quote(user, safe='')}")
        if r.status_code == 404:
            return None
        r.raise_for_status()
        model = r.json().get("servers", {}).get(server)
        pid = (model or {}).get("state", {}).get("pid")
        if pid:
            self._started.add(pid)
        return pid or None

    def server_env(self, user, server=""):
        """Environment of this hub's running server ``user``/``server`` (None when not running)."""
        pid = self.server_pid(user, server)
        return _environ(pid) if pid else None

    def service_pid(self, module):
        """PID of this hub's managed service ``python -m <module>`` (a child of the hub)."""
        for pid, cmdline in self._descendants():
            args = cmdline.split()
            if any(a == "-m" and b == module for a, b in zip(args, args[1:])):
                return pid
        return None

    def ports(self):
        """The internal ports the hub uses (what KubeStudio chose and remembered, or was given)."""
        from ..hub.ports import read_ports

        return read_ports(self.data_dir)

    def log_tail(self, lines=80):
        try:
            with open(self.log_file, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except FileNotFoundError:
            return ""

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ------------------------------------------------------------------ hub API

    def api(self, method, path, **kwargs):
        kwargs.setdefault("timeout", 30)
        return self.http.request(method, f"{self.url}/hub/api{path}", **kwargs)

    def create_user(self, name):
        r = self.api("POST", f"/users/{quote(name, safe='')}")
        if r.status_code not in (201, 409):
            r.raise_for_status()
        return name

    def user_token(self, name):
        r = self.api("POST", f"/users/{quote(name, safe='')}/tokens", json={"note": "test"})
        r.raise_for_status()
        return r.json()["token"]

    def server_path(self, user, server=""):
        path = f"/users/{quote(user, safe='')}/server"
        return path + (f"s/{quote(server, safe='')}" if server else "")

    def spawn(self, user, server="", options=None, wait=True, timeout=90):
        """Start a server through the REST API; returns the response of the start request."""
        r = self.api("POST", self.server_path(user, server), json=options or {})
        if r.status_code >= 400 or not wait:
            return r
        self.wait_ready(user, server, timeout)
        self.server_pid(user, server)  # remembered: stop() kills it if the test leaves it behind
        return r

    def server_model(self, user, server=""):
        r = self.api("GET", f"/users/{quote(user, safe='')}")
        r.raise_for_status()
        return r.json().get("servers", {}).get(server)

    def wait_ready(self, user, server="", timeout=90):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            model = self.server_model(user, server)
            if model and model.get("ready"):
                return model
            if model is None:
                raise RuntimeError(f"server {user}/{server} stopped while starting:\n{self.log_tail()}")
            time.sleep(0.1)
        raise TimeoutError(f"server {user}/{server} not ready in {timeout}s:\n{self.log_tail()}")

    def wait_for_server_image(self, user, timeout=600):
        """The local single-user image's reference once the image service has made it (base_images=True),
        asked as ``user`` (any user may list the bases)."""
        headers = {"Authorization": f"token {self.user_token(user)}"}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            bases = requests.get(f"{self.url}/services/images/api/bases", headers=headers, timeout=30).json()
            bases = bases.get("bases", bases) if isinstance(bases, dict) else bases
            server = [b for b in bases if "/kubestudio/singleuser:" in b["image"]]
            assert server, f"the image service makes no single-user image: {bases}"
            if server[0]["status"] == "failed":
                raise AssertionError(f"the local single-user image failed: {server[0]['message']}")
            if server[0]["status"] == "ready":
                return server[0]["image"]
            time.sleep(3)
        raise TimeoutError(f"the local single-user image is not ready after {timeout} s")

    def progress_events(self, user, server="", timeout=120):
        """The events of a starting server's progress stream (what its spawn page shows), up to
        the one that says it is ready or failed."""
        path = f"{self.server_path(user, server)}/progress"
        events = []
        with self.api("GET", path, stream=True, timeout=timeout) as stream:
            for line in stream.iter_lines(decode_unicode=True):
                if line.startswith("data:"):
                    events.append(json.loads(line[5:]))
                    if events[-1].get("failed") or events[-1].get("ready"):
                        break
        return events

    def stop_server(self, user, server="", timeout=60):
        r = self.api("DELETE", self.server_path(user, server))
        if r.status_code not in (202, 204, 400, 404):
            r.raise_for_status()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.server_model(user, server) is None:
                return
            time.sleep(0.1)
        raise TimeoutError(f"server {user}/{server} did not stop")

    def stop_all_servers(self):
        r = self.api("GET", "/users")
        r.raise_for_status()
        for user in r.json():
            for server in user.get("servers", {}):
                self.stop_server(user["name"], server)

    # ------------------------------------------------------------------ browser-like login

    def login(self, username, password=None):
        """A requests session logged in through the hub's login form."""
        session = requests.Session()
        session.get(f"{self.url}/hub/login").raise_for_status()
        r = session.post(
            f"{self.url}/hub/login?next=",
            data={"username": username, "password": password or self.password, "_xsrf": session.cookies.get("_xsrf")},
        )
        r.raise_for_status()
        if "/hub/login" in r.url:
            raise RuntimeError(f"login of {username} failed")
        return session


def browser_login(page, hub, username):
    """Log ``username`` in through the hub's login form in a Playwright page (any hub with
    ``url`` and the shared ``password``)."""
    page.goto(f"{hub.url}/hub/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", hub.password)
    page.click("#login_submit")


def _environ(pid):
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)
