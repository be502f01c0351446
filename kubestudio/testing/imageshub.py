"""A real hub with the image service, a real registry and real buildah, for tests and benchmarks."""

import base64
import contextlib
import os
import shutil
import subprocess
import sysconfig
import textwrap
import time

import requests

from ..extensions.client import ImagesClient
from ..spawner.storage import user_folders
from ..spawner.userenv import site_packages, user_env_path
from .localhub import LocalHub, _environ
from .ports import free_port


class ImagesHub:
    """A real hub with the image service, a real registry (with auth) and real buildah."""

    def __init__(self, hub, registry):
        self.hub, self.registry = hub, registry
        self.url = f"{hub.url}/services/images/"
        self.tokens = {}

    def session(self, user):
        if user not in self.tokens:
            self.hub.create_user(user)
            self.tokens[user] = self.hub.user_token(user)
        s = requests.Session()
        s.headers["Authorization"] = f"token {self.tokens[user]}"
        return s

    def client(self, user):
        self.session(user)
        return ImagesClient(url=self.url, token=self.tokens[user])

    def workspace(self, user):
        path = user_folders(self.hub.data_dir, user).workspace
        os.makedirs(path, exist_ok=True)
        return path

    def user_site(self, user):
        """The site-packages of the user's own environment, where their local server's pip installs."""
        folders = user_folders(self.hub.data_dir, user)
        return site_packages(user_env_path(folders.home))

    def write_context(self, user, folder, dockerfile, files=None):
        path = os.path.join(self.workspace(user), folder)
        os.makedirs(path, exist_ok=True)
        with open(os.path.join(path, "Dockerfile"), "w") as f:
            f.write(dockerfile.format(base=self.registry.base))
        for name, content in (files or {}).items():
            with open(os.path.join(path, name), "w") as f:
                f.write(content)
        return folder

    def wait(self, user, build_id, statuses=("succeeded", "failed", "cancelled", "exists"), timeout=120):
        s = self.session(user)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            build = s.get(f"{self.url}api/builds/{build_id}").json()
            if build["status"] in statuses:
                return build
            time.sleep(0.2)
        raise TimeoutError(f"build {build_id} still {build['status']}")

    def wait_for_line(self, user, build_id, text, timeout=60):
        s = self.session(user)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = s.get(f"{self.url}api/builds/{build_id}/logs").text
            if text in log:
                return log
            time.sleep(0.3)
        raise TimeoutError(f"{text!r} not in the log of {build_id}:\n{log}")


def follow_to_end(client, build_id):
    """(log lines, final record) of a build, following it live until it ends."""
    lines, final = [], None
    for item in client.follow(build_id):
        if isinstance(item, dict):
            final = item
        else:
            lines.append(item)
    return lines, final


def start_images_hub(root, registry, extra="", settings=None, env=None, base_images=False):
    """Start a LocalHub whose image service pushes to ``registry`` (a LocalRegistry with auth)."""
    registry_config = textwrap.dedent(f"""
        c.ImageBuilder.registry_insecure = True
        c.ImageBuilder.registry_auth_file = {registry.auth!r}
        """)
    base = textwrap.dedent("""
        c.ImageBuilder.max_context_bytes = 64 * 1024
        c.ImageBuilder.max_concurrent_builds = 2
        c.ImageBuilder.max_builds_per_user = 1
        c.ImageBuilder.build_timeout = 180
        c.ImageBuilder.keepalive_seconds = 1
        """)
    hub = LocalHub(
        root,
        settings={"registry": registry.host, **(settings or {})},
        env=env,
        extra_config=base + textwrap.dedent(extra),
        base_images=base_images,
        pre_config=registry_config,
    )
    hub.start()
    images = ImagesHub(hub, registry)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the hub starts the service; wait until it answers
        try:
            if requests.get(f"{images.url}api/health", timeout=2).status_code == 200:
                return images
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    hub.stop()
    raise TimeoutError(f"the image service did not start:\n{hub.log_tail()}")


@contextlib.contextmanager
def package_installed(name, version, site=None):
    """Make pip see ``name==version`` installed in ``site`` (a bare dist-info, no code; default: this
    environment), as if a user had pip-installed it in a running server; removed on exit."""
    site = site or sysconfig.get_paths()["purelib"]
    probe = os.path.join(site, f"{name.replace('-', '_')}-{version}.dist-info")
    os.makedirs(probe)
    try:
        with open(os.path.join(probe, "METADATA"), "w") as f:
            f.write(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        open(os.path.join(probe, "RECORD"), "w").close()
        yield
    finally:
        shutil.rmtree(probe)


def service_rss_mb(pid):
    """Resident memory of a process, in MiB (from /proc)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def log_flood(images, owner, build_id, followers=10, prober="observer", interval=0.05):
    """``followers`` clients (curl processes, so no client-side GIL skews the timings) read the whole
    log of ``build_id`` as Server-Sent Events, while another user lists their builds over and over.

    Returns the prober's latencies (ms) through the proxy and straight to the service, the
    service's RSS samples (MiB) and what each follower read.
    """
    pid = images.hub.service_pid("kubestudio.image_builder")
    images.session(owner)
    probe = images.session(prober)
    url = f"{images.url}api/builds/{build_id}/logs"
    # curl counts what it read itself (-w): no reader thread here competes with the prober for the GIL
    procs = [
        subprocess.Popen(
            [
                "curl",
                "-sS",
                "-N",
                "--max-time",
                "600",
                "-H",
                "Accept: text/event-stream",
                "-H",
                f"Authorization: token {images.tokens[owner]}",
                "-o",
                "/dev/null",
                "-w",
                "%{size_download}",
                url,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for _ in range(followers)
    ]
    # the same listing straight from the service's own port too: what the service adds, without the proxy
    service_url = _environ(pid)["JUPYTERHUB_SERVICE_URL"].rstrip("/")
    direct_url = f"{service_url}/services/images/api/builds"
    latencies, direct, rss = [], [], [service_rss_mb(pid)]
    started = time.perf_counter()
    try:
        while any(p.poll() is None for p in procs):
            for url, into in ((f"{images.url}api/builds", latencies), (direct_url, direct)):
                t0 = time.perf_counter()
                probe.get(url, timeout=60).raise_for_status()
                into.append((time.perf_counter() - t0) * 1000)
            rss.append(service_rss_mb(pid))
            time.sleep(interval)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
    counted = [int(p.stdout.read().strip() or 0) for p in procs]
    return {
        "latencies_ms": latencies,
        "direct_latencies_ms": direct,
        "rss_mb": rss,
        "followers_bytes": counted,
        "duration_s": time.perf_counter() - started,
    }


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))] if ordered else 0.0


TESTING_BIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bin")  # the kaniko executor stand-in


def ensure_claims(bench, names=("kubestudio-workspace", "kubestudio-archives")):
    """The shared workspace and archives claims in the bench's default namespace."""
    for name in names:
        claim = {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": name},
            "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "10Gi"}}},
        }
        r = bench.api("POST", "/api/v1/namespaces/default/persistentvolumeclaims", json=claim)
        assert r.status_code in (201, 409), r.text


def registry_secret(bench, registry, name="kubestudio-registry"):
    """The registry's credentials as a dockerconfigjson Secret (what kaniko pods mount)."""
    with open(registry.auth) as f:
        data = base64.b64encode(f.read().encode()).decode()
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/dockerconfigjson",
        "metadata": {"name": name},
        "data": {".dockerconfigjson": data},
    }
    r = bench.api("POST", "/api/v1/namespaces/default/secrets", json=secret)
    assert r.status_code in (201, 409), r.text


def start_kaniko_images_hub(root, bench, registry, kubeconfig=None, gate=False, extra=""):
    """An images hub whose builds run as kaniko pods on the bench (``kubeconfig``: e.g. the bench's
    counting proxy); with ``gate``, as the Helm chart runs it: the registry gate in front of
    ``registry``, each build pod with its own account."""
    from ..spawner.storage import user_slug

    ensure_claims(bench)
    registry_secret(bench, registry)
    workspaces = bench.volume_folder("default", "kubestudio-workspace")
    os.makedirs(workspaces, exist_ok=True)
    settings = {"registry_gate_port": free_port()} if gate else {}
    images = start_images_hub(
        root,
        registry,
        settings=settings,
        extra=f"""
        c.ImageBuilder.backend_class = "kubestudio.image_builder.backends.kaniko.KanikoBackend"
        c.ImageBuilder.workspaces_root = {workspaces!r}
        c.ImageBuilder.workspace_pattern = "{{root}}/{{user_slug}}"
        c.KanikoBackend.kubeconfig = {(kubeconfig or bench.kubeconfig)!r}
        c.KanikoBackend.executor_command = ["kaniko-executor"]
        c.KanikoBackend.resources = {{"requests": {{"cpu": "100m", "memory": "128Mi"}}}}
        """
        + textwrap.dedent(extra),
    )

    def workspace(user):
        path = os.path.join(workspaces, user_slug(user))
        os.makedirs(path, exist_ok=True)
        return path

    images.workspace = workspace
    return images
