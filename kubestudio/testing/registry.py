"""A real OCI registry and real base images for tests and benchmarks, made offline.

:class:`LocalRegistry` runs Debian's ``docker-registry`` on a free loopback port (optionally with
htpasswd auth). :func:`push_busybox_base` makes a base image with ``buildah from scratch`` and
Debian's ``busybox-static`` and pushes it, so builds have a ``FROM`` with a shell and no download.
"""

import base64
import json
import os
import shutil
import subprocess
import time

import requests

from ..spawner.imagerun import buildah_command
from .ports import free_port

BUSYBOX = "/bin/busybox"
APPLETS = (
    "sh",
    "ls",
    "cat",
    "echo",
    "sleep",
    "mkdir",
    "cp",
    "rm",
    "touch",
    "env",
    "true",
    "false",
    "test",
    "wc",
    "sed",
)


def tools_missing():
    """Names of the Debian tools the build tests need and this machine lacks."""
    wanted = {
        "docker-registry": "docker-registry",
        "buildah": "buildah",
        "skopeo": "skopeo",
        "busybox": "busybox-static",
    }
    return [pkg for cmd, pkg in wanted.items() if not shutil.which(cmd)]


class LocalRegistry:
    def __init__(self, root, user=None, password=None):
        self.root = str(root)
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.user, self.password = user, password
        self.proc = None

    def start(self, timeout=20):
        os.makedirs(self.root, exist_ok=True)
        auth = ""
        if self.user:
            htpasswd = os.path.join(self.root, "htpasswd")
            import bcrypt  # installed with the test extras

            hashed = bcrypt.hashpw(self.password.encode(), bcrypt.gensalt(rounds=4)).decode()
            with open(htpasswd, "w") as f:
                f.write(f"{self.user}:{hashed}\n")
            auth = f"auth:\n  htpasswd:\n    realm: kubestudio-test\n    path: {htpasswd}\n"
        config = os.path.join(self.root, "config.yml")
        with open(config, "w") as f:
            f.write(
                f"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {self.root}/data\n"
                f"  delete:\n    enabled: true\nhttp:\n  addr: {self.host}\n{auth}"
            )
        self._log = open(os.path.join(self.root, "registry.log"), "ab")
        self.proc = subprocess.Popen(["docker-registry", "serve", config], stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                requests.get(f"http://{self.host}/v2/", timeout=1)
                return self
            except requests.ConnectionError:
                time.sleep(0.1)
        raise TimeoutError(f"docker-registry did not answer on {self.host}")

    def auth_file(self, path, user=None, password=None):
        """Write a Docker config.json with credentials for this registry; returns its path."""
        token = base64.b64encode(f"{user or self.user}:{password or self.password}".encode()).decode()
        with open(path, "w") as f:
            json.dump({"auths": {self.host: {"auth": token}}}, f)
        return path

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
            self._log.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def buildah_args(storage, driver="vfs"):
    return buildah_command("buildah", driver, os.path.join(storage, "storage"), os.path.join(storage, "run"))


def push_busybox_base(registry_host, storage, repository="base/busybox", tag="1", auth_file=None):
    """Make ``<registry>/<repository>:<tag>`` from scratch + busybox-static and push it."""
    b = buildah_args(storage)
    image = f"{registry_host}/{repository}:{tag}"
    run = lambda *args: subprocess.run(b + list(args), check=True, capture_output=True, text=True).stdout.strip()  # noqa: E731
    container = run("from", "scratch")
    try:
        mount = run("mount", container)
        os.makedirs(os.path.join(mount, "bin"), exist_ok=True)
        os.makedirs(os.path.join(mount, "tmp"), exist_ok=True)
        shutil.copy2(BUSYBOX, os.path.join(mount, "bin", "busybox"))
        for applet in APPLETS:
            os.symlink("busybox", os.path.join(mount, "bin", applet))
        # a stand-in `pip` that records what it was asked to install (environment builds run it)
        with open(os.path.join(mount, "bin", "pip"), "w") as f:
            f.write('#!/bin/sh\necho "pip $*" >> /pip-installed.txt\necho "Successfully installed $*"\n')
        os.chmod(os.path.join(mount, "bin", "pip"), 0o755)
        run("config", "--env", "PATH=/bin", "--cmd", "/bin/sh", container)
        run("commit", container, image)
        push = (
            ["push", "--tls-verify=false"]
            + (["--authfile", auth_file] if auth_file else [])
            + [image, f"docker://{image}"]
        )
        run(*push)
    finally:
        subprocess.run(b + ["rm", container], capture_output=True)
    return image


def skopeo_inspect(image, auth_file=None):
    args = (
        ["skopeo", "inspect", "--tls-verify=false"]
        + (["--authfile", auth_file] if auth_file else [])
        + [f"docker://{image}"]
    )
    return json.loads(subprocess.run(args, check=True, capture_output=True, text=True).stdout)
