"""Run a real KubeStudio hub (JupyterHub + configurable-http-proxy) for tests and benchmarks.

``LocalHub`` writes a config that calls :func:`kubestudio.hub.configure` with a data dir of its
own and free loopback ports, starts ``jupyterhub`` as a subprocess, and talks to it over HTTP
with an admin service token. Nothing is mocked: servers are real ``jupyterhub-singleuser``
processes reached through the real proxy.
"""

import json
import os
import secrets
import signal
import subprocess
import sys
import textwrap
import time
from urllib.parse import quote

import requests

from .ports import free_port


def _bin(name):
    """An executable next to the running Python (the venv), else on PATH."""
    candidate = os.path.join(os.path.dirname(sys.executable), name)
    return candidate if os.path.exists(candidate) else name


class LocalHub:
    def __init__(self, root, settings=None, extra_config="", password="test-password", env=None):
        self.root = str(root)
        self.data_dir = os.path.join(self.root, "data")
        self.settings = dict(settings or {})
        self.extra_config = extra_config
        self.password = password
        self.env = dict(env or {})
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.hub_port = free_port()
        self.proxy_api_port = free_port()
        self.images_url = f"http://127.0.0.1:{free_port()}"
        self.local_registry_port = free_port()
        self.token = secrets.token_hex(16)
        self.config_file = os.path.join(self.root, "jupyterhub_config.py")
        self.log_file = os.path.join(self.root, "hub.log")
        self.proc = None
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"token {self.token}"

    # ------------------------------------------------------------------ process

    def write_config(self):
        settings = {"data_dir": self.data_dir, "bind_url": self.url, "images_url": self.images_url,
                    "local_registry_port": self.local_registry_port, **self.settings}
        config = textwrap.dedent(
            f"""
            import json
            from kubestudio.hub import configure
            configure(c, **json.loads({json.dumps(json.dumps(settings))}))
            c.JupyterHub.hub_port = {self.hub_port}
            c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{self.proxy_api_port}"
            c.JupyterHub.services = list(c.JupyterHub.get("services", [])) + [{{"name": "test-admin", "api_token": "{self.token}"}}]
            c.JupyterHub.load_roles = list(c.JupyterHub.get("load_roles", [])) + [{{"name": "admin", "services": ["test-admin"]}}]
            c.JupyterHub.log_level = "DEBUG"
            """
        )
        with open(self.config_file, "w") as f:
            f.write(config + "\n" + textwrap.dedent(self.extra_config))

    def start(self, timeout=60):
        os.makedirs(self.root, exist_ok=True)
        self.write_config()
        env = dict(os.environ, KUBESTUDIO_PASSWORD=self.password, **self.env)
        venv_bin = os.path.dirname(sys.executable)
        env["PATH"] = venv_bin + os.pathsep + env.get("PATH", "")
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
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"hub exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if self.http.get(f"{self.url}/hub/api/", timeout=2).status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"hub did not answer in {timeout}s:\n{self.log_tail()}")

    def stop(self, stop_servers=True):
        """Stop the hub; by default stop every server first (the hub leaves them running)."""
        if self.proc is None:
            return
        if stop_servers and self.proc.poll() is None:
            try:
                self.stop_all_servers()
            except requests.RequestException:
                pass
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None
        self._log.close()
        if stop_servers:
            self.kill_leftover_servers()

    def kill_leftover_servers(self):
        """Kill any process still running inside this hub's data dir (a safety net)."""
        for pid in server_pids(self.data_dir):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

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


def service_pid(data_dir, module):
    """PID of the hub-managed service ``python -m <module>`` of this hub (its cwd is the data dir)."""
    data_dir = os.path.realpath(data_dir)
    for pid in server_pids(data_dir):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if module.encode() in argv and os.readlink(f"/proc/{pid}/cwd") == data_dir:
            return pid
    return None


def server_pids(data_dir):
    """PIDs of processes whose working directory is inside ``data_dir`` (from /proc)."""
    data_dir = os.path.realpath(data_dir)
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cwd = os.readlink(f"/proc/{entry}/cwd")
        except OSError:
            continue
        if cwd == data_dir or cwd.startswith(data_dir + os.sep):
            pids.append(int(entry))
    return pids


def server_env(user, server=""):
    """Environment of the running single-user server of ``user``/``server`` (from /proc)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                raw = f.read()
        except OSError:
            continue
        env = dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)
        if env.get("JUPYTERHUB_USER") == user and env.get("JUPYTERHUB_SERVER_NAME", "") == server:
            if env.get("KUBESTUDIO_WORKSPACE"):
                return env
    return None
