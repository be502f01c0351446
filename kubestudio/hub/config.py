"""``configure(c)``: turn a JupyterHub config into a KubeStudio hub.

Used from ``jupyterhub_config.py``::

    from kubestudio.hub import configure
    configure(c)                                   # the embedded default
    configure(c, data_dir="/srv/kubestudio", bind_url="http://0.0.0.0:8000")

Every keyword is a trait of :class:`KubeStudio` and can also be set as ``c.KubeStudio.<name>``
before the call. Settings made on ``c`` after the call win, so an admin can still override any
JupyterHub option (e.g. ``c.JupyterHub.authenticator_class``).
"""

import importlib
import json
import logging
import os
import secrets
import shutil
import sys

import yaml
from traitlets import Bool, Dict, Integer, List, Unicode, default
from traitlets.config import Configurable

from ..accounts import AccountError, UserAccounts, make_traversable
from ..dockerauth import write_auth_file
from ..names import (
    HUB_CLIENT_SERVICE,
    IDLE_CULLER_SERVICE,
    IMAGES_SERVICE,
    JOBS_SERVICE,
    LOCAL_PYTHON_BASE,
    REGISTRY_PREFIX,
    SERVICE_BIND_HOST_ENV,
    TENSORBOARDS_SERVICE,
)
from ..services.secretfile import stored_secret
from ..services.store import private_file, use_wal_for
from ..spawner.profiles import CatalogError, load_catalog
from ..spawner.projects import PUBLIC_PROJECT, ProjectError, parse_project
from .auth import SharedPasswordLogin
from .membership import join_public_project
from .ports import CONVENTIONAL, resolve_ports

# what configure() says while the hub loads its configuration (before JupyterHub's own logging is
# set up): on stderr, each line marked as KubeStudio's
log = logging.getLogger("kubestudio.hub.config")


class _Stderr(logging.StreamHandler):
    """A handler on whatever sys.stderr is when a line is written (not when it was made)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


if not log.handlers:
    _handler = _Stderr()
    _handler.setFormatter(logging.Formatter("[KubeStudio] %(message)s"))
    log.addHandler(_handler)
    log.setLevel(logging.INFO)
    log.propagate = False

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PASSWORD_FILE = "dummy-password"
# the local registry's socket and the credentials of its gate (root only)
REGISTRY_GATE_DIR = "registry-gate"


class KubeStudioConfigError(ValueError):
    """Configuration that must stop the hub."""


class KubeStudio(Configurable):
    """Hub-wide KubeStudio settings."""

    spawner = Unicode(
        "local",
        config=True,
        help="""Where servers run: `local` (the embedded default: local processes and folders) or
        `kubernetes` (WorkspaceSpawner: pods, shared workspace and archives claims).""",
    )

    data_dir = Unicode(
        config=True,
        help="""Folder for the hub's database, cookie secret, generated password and every
        user's files (<data_dir>/users/<slug>/...). Defaults to ./data.""",
    )

    @default("data_dir")
    def _default_data_dir(self):
        return os.path.join(os.getcwd(), "data")

    profiles_file = Unicode(
        config=True,
        help="""Profile catalog (YAML). It is validated when the hub starts; a bad catalog stops
        the hub with the file, the field and the reason. Defaults to profiles/default.yaml.""",
    )

    @default("profiles_file")
    def _default_profiles_file(self):
        return os.path.join(REPO_ROOT, "profiles", "default.yaml")

    projects_file = Unicode(
        "",
        config=True,
        help="""Optional YAML of projects: {projects: {<name>: {users: [...], <group properties>}}}.
        Each project becomes a JupyterHub group whose properties are set from the file at
        every start (members are only added, never removed). Empty: only `public`.""",
    )

    projects = Dict(
        config=True,
        help="""Projects defined in configuration, in the same form as `projects_file`'s
        `projects` mapping; merged over the file.""",
    )

    bind_url = Unicode(
        "http://127.0.0.1:8000",
        config=True,
        help="Public URL the proxy listens on. The embedded default stays on loopback.",
    )

    authenticator_class = Unicode(
        "dummy",
        config=True,
        help="""JupyterHub authenticator (an entry-point name such as `dummy`, `github`,
        `generic-oauth`, `ldapauthenticator`, or an import string). With `dummy`, any username
        logs in with one shared password (see `password_env`).""",
    )

    password_env = Unicode(
        "KUBESTUDIO_PASSWORD",
        config=True,
        help="""Environment variable holding the shared password of the dummy authenticator.
        When it is unset, a password is generated once, kept in <data_dir>/dummy-password and
        printed when the hub starts.""",
    )

    admin_users = List(
        Unicode(),
        ["admin"],
        config=True,
        help="Usernames that are hub admins.",
    )

    proxy_command = List(
        Unicode(),
        config=True,
        help="""configurable-http-proxy command. Defaults to the one `npm install` put in
        node_modules/.bin of the repository, else the one on PATH.""",
    )

    @default("proxy_command")
    def _default_proxy_command(self):
        local = os.path.join(REPO_ROOT, "node_modules", ".bin", "configurable-http-proxy")
        if os.path.exists(local):
            return [local]
        return ["configurable-http-proxy"]

    tool_dirs = List(
        Unicode(),
        config=True,
        help="""Folders where local servers' tools are found, put in front of their PATH
        (LocalWorkspaceSpawner.tool_dirs; the hub's own PATH is left alone). Defaults to
        .tools/code-server/node_modules/.bin when scripts/install-code-server.sh installed
        code-server there, so VS Code profiles work.""",
    )

    @default("tool_dirs")
    def _default_tool_dirs(self):
        code_server = os.path.join(REPO_ROOT, ".tools", "code-server", "node_modules", ".bin")
        return [code_server] if os.path.isdir(code_server) else []

    keep_servers_running = Bool(
        False,
        config=True,
        help="""Leave users' servers running when the hub stops (JupyterHub.cleanup_servers=False) and
        pick them up, with their GPUs, at the next start: for a hub restarted under a service
        manager. Off by default: Ctrl-C on the hub stops everything it started.""",
    )

    hub_db_wal = Bool(
        True,
        config=True,
        help="""Run the hub's SQLite database (<data_dir>/jupyterhub.sqlite) in WAL mode with
        synchronous=NORMAL, as the services' stores are: a commit appends to a log instead of
        syncing the whole file, so a burst of spawns and logins does not queue behind the disk
        (benchmarks/spawn_k8s.py). A power cut may lose the last commits, never corrupt the file.
        Turn it off when the data folder is on a network file system (NFS), where SQLite's WAL
        cannot work.""",
    )

    cull_idle_servers = Bool(
        False,
        config=True,
        help="""Stop servers idle for `cull_timeout` seconds with jupyterhub-idle-culler, run as the hub's
        managed service `idle-culler` (JupyterHub's own culler, as z2jh runs it). Off on the embedded
        default (a workstation's servers stay up); the Helm chart turns it on.""",
    )
    cull_timeout = Integer(3600, config=True, help="Seconds without activity after which a server is stopped.")
    cull_every = Integer(300, config=True, help="Seconds between two looks for idle servers (at most cull_timeout).")
    cull_max_age = Integer(0, config=True, help="Stop servers older than this many seconds even when active; 0: never.")
    cull_users = Bool(False, config=True, help="Also delete users who have been idle (temporary users only).")
    cull_concurrency = Integer(10, config=True, help="Most hub API requests the culler has in flight at once.")

    images_service = Bool(
        True,
        config=True,
        help="""Run the image build service at /services/images/ (build from a workspace folder, a
        Dockerfile, a package list or a running server; its settings are c.ImageBuilder.*).""",
    )

    jobs_service = Bool(
        True,
        config=True,
        help="""Run the jobs service at /services/jobs/ (training jobs from the notebook: local processes
        on the embedded default, Job/PyTorchJob/TFJob/MPIJob/TrainJob on Kubernetes; its settings are
        c.JobService.*).""",
    )

    jobs_url = Unicode(
        "",
        config=True,
        help="""Where the hub starts the jobs service and the proxy reaches it. Empty:
        http://127.0.0.1:<jobs_port>.""",
    )

    jobs_port = Integer(
        0,
        config=True,
        help=f"""Loopback port of the jobs service ($KUBESTUDIO_JOBS_PORT), unless `jobs_url` is set.
        0: {CONVENTIONAL["jobs"]} when free at the first start, else a free port, remembered.""",
    )

    tensorboards_service = Bool(
        True,
        config=True,
        help="""Run the TensorBoard service at /services/tensorboards/ (a board on any log folder of a
        user's workspace or archives, behind the hub's login, stopped when idle; its settings are
        c.TensorBoardService.*).""",
    )
    tensorboards_url = Unicode(
        "",
        config=True,
        help="""Where the hub starts the TensorBoard service and the proxy reaches it. Empty:
        http://127.0.0.1:<tensorboards_port>.""",
    )
    tensorboards_port = Integer(
        0,
        config=True,
        help=f"""Loopback port of the TensorBoard service ($KUBESTUDIO_TENSORBOARDS_PORT), unless
        `tensorboards_url` is set. 0: {CONVENTIONAL["tensorboards"]} when free at the first start,
        else a free port, remembered.""",
    )

    services_bind_host = Unicode(
        "",
        config=True,
        help="""The address the services listen on when it is not the host of their URL: "0.0.0.0"
        in the Helm chart's hub pod (every address of the pod: its IP, which the proxy uses, and
        localhost), or when a URL names a Kubernetes Service, which a process cannot bind. Empty:
        the URL's host.""",
    )

    images_url = Unicode(
        "",
        config=True,
        help="""Where the hub starts the image service and the proxy reaches it. Empty:
        http://127.0.0.1:<images_port>.""",
    )

    hub_port = Integer(
        0,
        config=True,
        help=f"""Loopback port of the hub itself (JupyterHub.hub_port; $KUBESTUDIO_HUB_PORT in the
        embedded default). 0: {CONVENTIONAL["hub"]} when free at the first start, else a free port,
        remembered in <data_dir>/ports.json. A JupyterHub.hub_port set before configure() wins.""",
    )

    proxy_api_port = Integer(
        0,
        config=True,
        help=f"""Loopback port of configurable-http-proxy's REST API ($KUBESTUDIO_PROXY_API_PORT).
        0: {CONVENTIONAL["proxy_api"]} when free at the first start, else a free port, remembered.""",
    )

    images_port = Integer(
        0,
        config=True,
        help=f"""Loopback port of the image service ($KUBESTUDIO_IMAGES_PORT), unless `images_url`
        is set. 0: {CONVENTIONAL["images"]} when free at the first start, else a free port, remembered.""",
    )

    registry = Unicode(
        "",
        config=True,
        help="""Registry for built images, host[:port] (sets ImageBuilder.registry_host and the
        spawner's user_images_prefix). Empty: a local Debian `docker-registry` that the hub runs on
        127.0.0.1:5000 with its data in <data_dir>/registry (the embedded default).""",
    )

    registry_gate_port = Integer(
        0,
        config=True,
        help="""With an external `registry` and kaniko builds (the Helm chart sets it): the port the
        registry gate listens on, at `services_bind_host`, in front of that registry. Each build pod
        then pulls and pushes through the gate with an account of its own, which may read only what
        the build's user may read (their images, the shared bases, their projects') and push only
        the build's repository and that user's layer cache, whatever the Dockerfile says; the gate
        logs in to the registry with ImageBuilder.registry_auth_file, which build pods never see.
        The registry must accept Basic credentials and refuse anonymous reads. 0: no gate (build
        pods get ImageBuilder.registry_auth_file itself, and only the Dockerfile check keeps users'
        images apart).""",
    )

    registry_gate_host = Unicode(
        "",
        config=True,
        help="""host:port at which build pods reach the registry gate (the chart: the hub's Service
        and `registry.gate.port`). Empty: 127.0.0.1:<registry_gate_port>.""",
    )

    local_registry_port = Integer(
        0,
        config=True,
        help=f"""Port of the local registry the embedded default runs when `registry` is empty
        ($KUBESTUDIO_REGISTRY_PORT). 0: {CONVENTIONAL["registry"]} when free at the first start,
        else a free port, remembered (built images are named after it, so it never moves by itself).""",
    )

    _ports = None

    def ports(self, c=None, choose=True):
        """{hub, proxy_api, images, jobs, registry}: the set ports, else the ones chosen and remembered."""
        if self._ports is None:
            configured = {
                "hub": self.hub_port,
                "proxy_api": self.proxy_api_port,
                "images": self.images_port,
                "jobs": self.jobs_port,
                "tensorboards": self.tensorboards_port,
                "registry": self.local_registry_port,
            }
            if c is not None and "hub_port" in c.JupyterHub:
                configured["hub"] = c.JupyterHub.hub_port
            self._ports = resolve_ports(os.path.abspath(self.data_dir), configured, choose=choose)
        return self._ports

    def service_url(self, name=IMAGES_SERVICE):
        """Where the hub starts service ``name`` (images, jobs) and the proxy reaches it."""
        configured = {
            IMAGES_SERVICE: self.images_url,
            JOBS_SERVICE: self.jobs_url,
            TENSORBOARDS_SERVICE: self.tensorboards_url,
        }.get(name)
        return configured or f"http://127.0.0.1:{self.ports()[name]}"

    # --------------------------------------------------------------------------------

    def registry_host(self):
        return self.registry or f"127.0.0.1:{self.ports()['registry']}"

    def registry_gate(self):
        """host:port of the gate in front of an external registry, as build pods reach it; empty
        without one (the embedded default's gate is the registry's own address)."""
        if not (self.registry and self.images_service and self.registry_gate_port):
            return ""
        return self.registry_gate_host or f"127.0.0.1:{self.registry_gate_port}"

    def declared_services(self):
        """The hub services that run, as their packages declare them."""
        names = ["kubestudio.image_builder.service:IMAGES"] if self.images_service else []
        names += ["kubestudio.jobs.service:JOBS"] if self.jobs_service else []
        names += ["kubestudio.tensorboards.service:TENSORBOARDS"] if self.tensorboards_service else []
        declared = []
        for name in names:
            module, _, attribute = name.partition(":")
            declared.append(getattr(importlib.import_module(module), attribute))
        return declared

    def services_config(self, c, data):
        """Each declared service: its defaults, scopes, roles and managed-service entry; the local
        registry; and what the spawners need to offer users their built images."""
        # the spawn form lists a user's built images: the hub reads them with a token of its own
        hub_token, _ = stored_secret(os.path.join(data, "images-hub-token"), lambda: secrets.token_hex(32))
        env = {"PATH": os.environ.get("PATH", "")}
        if self.services_bind_host:
            env[SERVICE_BIND_HOST_ENV] = self.services_bind_host
        for name in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"):
            if name in os.environ:  # a Kubernetes backend talks to the same cluster as the hub
                env[name] = os.environ[name]
        entries, roles, scopes = [], [], {}
        for service in self.declared_services():
            service.store_defaults(c, data)
            service.defaults(self, c, data)
            scopes.update({scope: {"description": text} for scope, text in service.scopes.items()})
            roles += service.roles(self.admin_users)
            entries.append(service.hub_entry(c, data, self.service_url(service.name), env))
        c.JupyterHub.custom_scopes = {**c.JupyterHub.get("custom_scopes", {}), **scopes}
        c.JupyterHub.load_roles = merge_roles(list(c.JupyterHub.get("load_roles", [])) + roles)
        ours = {e["name"] for e in entries} | {HUB_CLIENT_SERVICE}
        services = [{"name": HUB_CLIENT_SERVICE, "api_token": hub_token}]
        services += [s for s in c.JupyterHub.get("services", []) if s.get("name") not in ours]
        if not self.registry and self.images_service:
            registry_config = self.local_registry_config(data)
            if registry_config:
                gate = os.path.join(data, REGISTRY_GATE_DIR)
                services.append(
                    {
                        "name": "registry",
                        "command": [
                            sys.executable,
                            "-m",
                            "kubestudio.hub.registry_gate",
                            "--listen",
                            self.registry_host(),
                            "--socket",
                            os.path.join(gate, "registry.sock"),
                            "--credentials",
                            os.path.join(gate, "credentials.json"),
                            "--grants",
                            self.local_registry_grants(data),
                            "--",
                            "docker-registry",
                            "serve",
                            registry_config,
                        ],
                        "cwd": data,
                        "display": False,
                    }
                )
        if self.registry_gate():
            services.append(self.registry_gate_service(c, data))
        c.JupyterHub.services = services + entries
        if self.images_service:
            self.built_images_config(c, hub_token)

    def idle_culler_config(self, c, data):
        """jupyterhub-idle-culler as a managed service, with exactly the scopes it needs."""
        for name in ("cull_timeout", "cull_every", "cull_concurrency"):
            if getattr(self, name) < 1:
                raise KubeStudioConfigError(f"KubeStudio.{name}: must be at least 1, not {getattr(self, name)}")
        if self.cull_max_age < 0:
            raise KubeStudioConfigError(f"KubeStudio.cull_max_age: must be 0 (never) or more, not {self.cull_max_age}")
        command = [
            sys.executable,
            "-m",
            "jupyterhub_idle_culler",
            f"--timeout={self.cull_timeout}",
            f"--cull-every={min(self.cull_every, self.cull_timeout)}",
            f"--concurrency={self.cull_concurrency}",
        ]
        if self.cull_max_age:
            command.append(f"--max-age={self.cull_max_age}")
        if self.cull_users:
            command.append("--cull-users=true")
        scopes = ["list:users", "read:users:activity", "read:servers", "delete:servers"]
        if self.cull_users:
            scopes.append("admin:users")
        c.JupyterHub.load_roles = merge_roles(
            list(c.JupyterHub.get("load_roles", []))
            + [{"name": IDLE_CULLER_SERVICE, "scopes": scopes, "services": [IDLE_CULLER_SERVICE]}]
        )
        services = [s for s in c.JupyterHub.get("services", []) if s.get("name") != IDLE_CULLER_SERVICE]
        c.JupyterHub.services = services + [
            {"name": IDLE_CULLER_SERVICE, "command": command, "cwd": data, "display": False}
        ]

    def built_images_config(self, c, hub_token):
        """What the spawners need to offer users the images they built."""
        if self.spawner == "local" and "server_image" not in c.LocalWorkspaceSpawner:
            c.LocalWorkspaceSpawner.server_image = f"{c.ImageBuilder.registry_host}/{LOCAL_PYTHON_BASE}"
        if self.spawner == "local":
            self.image_runs_config(c)
        prefix = c.ImageBuilder.get("registry_prefix", REGISTRY_PREFIX)
        images_api = self.service_url(IMAGES_SERVICE).rstrip("/") + f"/services/{IMAGES_SERVICE}/api/images"
        for spawner in ("WorkspaceSpawner", "LocalWorkspaceSpawner"):
            if "user_images_prefix" not in c[spawner]:
                c[spawner].user_images_prefix = (
                    "/".join(p for p in (c.ImageBuilder.registry_host, prefix, "{user_slug}") if p) + "/"
                )
            # both spawn forms list the user's built images, read from the service with the hub's token
            if "images_api_url" not in c[spawner]:
                c[spawner].images_api_url = images_api
            if "images_api_token" not in c[spawner]:
                c[spawner].images_api_token = hub_token

    def image_runs_config(self, c):
        """Servers in images on the embedded default: the local single-user image the image service
        makes (when the hub runs as root: buildah's chroot needs it), pulled with the registry's
        read-only account into a container storage of the hub's own."""
        registry = c.ImageBuilder.registry_host
        data = os.path.abspath(self.data_dir)
        if "local_registry" not in c.LocalWorkspaceSpawner:
            c.LocalWorkspaceSpawner.local_registry = registry
        servers = [b for b in c.ImageBuilder.get("base_images", []) if isinstance(b, dict) and b.get("server")]
        if servers and os.geteuid() == 0 and "local_image" not in c.LocalWorkspaceSpawner:
            c.LocalWorkspaceSpawner.local_image = f"{registry}/{servers[0]['image']}"
            if "start_timeout" not in c.LocalWorkspaceSpawner:
                # the first start on a new machine waits for the image service to make the image
                c.LocalWorkspaceSpawner.start_timeout = 600
        if "storage_root" not in c.ImageRunner:
            c.ImageRunner.storage_root = os.path.join(data, "containers", "storage")
        if "run_root" not in c.ImageRunner:
            c.ImageRunner.run_root = os.path.join(data, "containers", "run")
        # jobs that name an image run in it when servers do
        if "run_images" not in c.LocalJobBackend:
            c.LocalJobBackend.run_images = bool(c.LocalWorkspaceSpawner.get("local_image"))
        if "local_registry" not in c.LocalJobBackend:
            c.LocalJobBackend.local_registry = registry
        # a job that names no image runs where the user's servers run: the same from every door
        if "default_image" not in c.LocalJobBackend and c.LocalWorkspaceSpawner.get("local_image"):
            c.LocalJobBackend.default_image = c.LocalWorkspaceSpawner.local_image
        if "servers_see_workspace_at" not in c.ImageBuilder and c.LocalWorkspaceSpawner.get("local_image"):
            c.ImageBuilder.servers_see_workspace_at = "/mnt/{user}"  # the images page names it as servers see it
        if not self.registry:
            if "tls_verify" not in c.ImageRunner:
                c.ImageRunner.tls_verify = False
            if "auth_file" not in c.ImageRunner:
                c.ImageRunner.auth_file = self.local_registry_auth(data, "pull")

    def local_registry_auth(self, data, role):
        """The Docker auth file of the local registry's ``push`` (the image service) or ``pull``
        (everything else) account; the accounts are made once, with the gate's credentials file."""
        gate = os.path.join(data, REGISTRY_GATE_DIR)
        os.makedirs(gate, mode=0o700, exist_ok=True)
        credentials = {}
        for name in ("push", "pull"):
            password, _ = stored_secret(os.path.join(gate, f"{name}-password"), lambda: secrets.token_urlsafe(24))
            credentials[name] = {"user": f"kubestudio-{name}", "password": password}
        path = os.path.join(gate, "credentials.json")
        fd = os.open(f"{path}.tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(credentials, f)
        os.replace(f"{path}.tmp", path)
        for name, account in credentials.items():
            write_auth_file(
                os.path.join(gate, f"{name}-auth.json"), self.registry_host(), account["user"], account["password"]
            )
        return os.path.join(gate, f"{role}-auth.json")

    def registry_gate_service(self, c, data):
        """The managed service of the gate in front of an external registry (Kubernetes): builds'
        grants only, the registry's credentials from ImageBuilder.registry_auth_file."""
        scheme = "http" if c.ImageBuilder.get("registry_insecure") else "https"
        command = [
            sys.executable,
            "-m",
            "kubestudio.hub.registry_gate",
            "--listen",
            f"{self.services_bind_host or '127.0.0.1'}:{self.registry_gate_port}",
            "--upstream",
            f"{scheme}://{self.registry}",
            "--grants",
            self.local_registry_grants(data),
        ]
        if c.ImageBuilder.get("registry_auth_file"):
            command += ["--upstream-auth", c.ImageBuilder.registry_auth_file]
        return {"name": "registry", "command": command, "cwd": data, "display": False}

    def local_registry_grants(self, data):
        """The gate's grants folder: each build's own account, written by the image service."""
        grants = os.path.join(data, REGISTRY_GATE_DIR, "grants")
        os.makedirs(grants, mode=0o700, exist_ok=True)
        return grants

    def local_registry_config(self, data):
        """Config of the embedded default's registry (Debian docker-registry), or None without it.
        It listens on a Unix socket only root can reach; the gate in front asks for credentials."""
        if not shutil.which("docker-registry"):
            log.warning(
                "docker-registry is not installed (apt-get install docker-registry): "
                "image builds will fail until a registry is configured (KubeStudio.registry)"
            )
            return None
        os.makedirs(os.path.join(data, "registry"), mode=0o700, exist_ok=True)  # the images: root's only
        path = os.path.join(data, "registry.yml")
        with open(path, "w", encoding="utf-8") as f:
            f.write(
                "version: 0.1\n"
                "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
                f"storage:\n  filesystem:\n    rootdirectory: {os.path.join(data, 'registry')}\n"
                "  delete:\n    enabled: true\n"
                f"http:\n  net: unix\n  addr: {os.path.join(data, REGISTRY_GATE_DIR, 'registry.sock')}\n"
            )
        return path

    def secure_data_dir(self, c, data):
        """With one OS account per user: users reach their own folder under <data>/users and
        nothing else of the data folder (no listing, no secrets); the hub's Python and tools are
        reachable by their accounts."""
        try:
            per_user = UserAccounts(config=c).enabled
        except AccountError as e:
            raise KubeStudioConfigError(str(e)) from None
        if not per_user:
            return
        # what the hub and its services write from now on is theirs alone unless handed over (the
        # umask of this process: configure() runs in the hub's)
        os.umask(0o077)
        users = os.path.join(data, "users")
        os.makedirs(users, mode=0o711, exist_ok=True)
        for path in (data, users):
            os.chmod(path, 0o711)  # passable, not listable
        for name in os.listdir(data):
            path = os.path.join(data, name)
            if name != "users" and not os.path.islink(path):
                os.chmod(path, os.stat(path).st_mode & 0o700)
        opened = []
        for path in (data, sys.prefix, sys.base_prefix, os.path.realpath(sys.executable), REPO_ROOT, *self.tool_dirs):
            if os.path.exists(path):
                opened += make_traversable(path)
        if opened:
            log.info("let the users' accounts pass through (o+x, not listable): %s", ", ".join(opened))

    def password(self):
        """The dummy authenticator's password: from the environment, or generated once."""
        from_env = os.environ.get(self.password_env)
        if from_env:
            return from_env, False
        password, _ = stored_secret(os.path.join(self.data_dir, PASSWORD_FILE), lambda: secrets.token_urlsafe(12))
        return password, True

    def load_projects(self):
        """Validated projects from `projects_file` and `projects`, as JupyterHub load_groups."""
        defined = {}
        if self.projects_file:
            try:
                with open(self.projects_file, encoding="utf-8") as f:
                    data = yaml.safe_load(f) or {}
            except (OSError, yaml.YAMLError) as e:
                raise KubeStudioConfigError(f"{self.projects_file}: {e}") from None
            if not isinstance(data, dict) or not isinstance(data.get("projects", {}), dict):
                raise KubeStudioConfigError(f"{self.projects_file}: expected a mapping 'projects: {{name: settings}}'")
            defined.update(data.get("projects") or {})
        defined.update(self.projects)
        groups = {PUBLIC_PROJECT: {"users": []}}
        errors = []
        for name, settings in defined.items():
            settings = dict(settings or {})
            users = settings.pop("users", [])
            if not isinstance(users, list) or not all(isinstance(u, str) for u in users):
                errors.append(f"project {name!r}: users: must be a list of usernames")
                continue
            try:
                parse_project(name, settings)
            except ProjectError as e:
                errors.append(str(e))
                continue
            groups[name] = {"users": users, "properties": settings}
        if errors:
            where = f"{self.projects_file}: " if self.projects_file else ""
            raise KubeStudioConfigError("\n".join(where + e for e in errors))
        return groups

    def apply(self, c):
        """Write the hub configuration into ``c``; raise KubeStudioConfigError on bad settings."""
        from ..spawner.local import LocalWorkspaceSpawner
        from ..spawner.workspace import WorkspaceSpawner

        data = os.path.abspath(self.data_dir)
        try:
            load_catalog(self.profiles_file)
        except CatalogError as e:
            raise KubeStudioConfigError(str(e)) from None
        groups = self.load_projects()

        os.makedirs(self.data_dir, mode=0o700, exist_ok=True)
        if self.spawner == "local":
            self.secure_data_dir(c, data)
        if self.spawner == "local" and "tool_dirs" not in c.LocalWorkspaceSpawner:
            # found there by the spawner and first on its servers' PATH; the hub's own environment
            # stays as it was started
            c.LocalWorkspaceSpawner.tool_dirs = list(self.tool_dirs)

        c.JupyterHub.bind_url = self.bind_url
        ports = self.ports(c)
        c.JupyterHub.hub_port = ports["hub"]
        if "api_url" not in c.ConfigurableHTTPProxy:
            c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{ports['proxy_api']}"
        c.JupyterHub.db_url = f"sqlite:///{os.path.join(data, 'jupyterhub.sqlite')}"
        private_file(os.path.join(data, "jupyterhub.sqlite"))  # sessions and tokens: the hub's account only
        if self.hub_db_wal:
            use_wal_for(os.path.join(data, "jupyterhub.sqlite"))
        c.JupyterHub.cookie_secret_file = os.path.join(data, "jupyterhub_cookie_secret")
        c.ConfigurableHTTPProxy.pid_file = os.path.join(data, "jupyterhub-proxy.pid")
        c.ConfigurableHTTPProxy.command = list(self.proxy_command)
        c.JupyterHub.allow_named_servers = True
        if "cleanup_servers" not in c.JupyterHub:
            c.JupyterHub.cleanup_servers = not self.keep_servers_running
        c.JupyterHub.load_groups = groups

        if self.spawner == "kubernetes":
            c.JupyterHub.spawner_class = WorkspaceSpawner
            c.WorkspaceSpawner.profiles_file = os.path.abspath(self.profiles_file)
            # the shipped example catalog yields to a z2jh admin's own profile_list and settings
            c.WorkspaceSpawner.shipped_catalog = os.path.abspath(self.profiles_file) == os.path.abspath(
                self._default_profiles_file()
            )
        elif self.spawner == "local":
            c.JupyterHub.spawner_class = LocalWorkspaceSpawner
            c.LocalWorkspaceSpawner.data_dir = data
            if "hub_public_url" not in c.LocalWorkspaceSpawner:
                c.LocalWorkspaceSpawner.hub_public_url = self.bind_url
            c.LocalWorkspaceSpawner.profiles_file = os.path.abspath(self.profiles_file)
        else:
            raise KubeStudioConfigError(f"KubeStudio.spawner: must be 'local' or 'kubernetes', not {self.spawner!r}")

        if self.images_service or self.jobs_service or self.tensorboards_service:
            self.services_config(c, data)
        if self.cull_idle_servers:
            self.idle_culler_config(c, data)

        dummy = self.authenticator_class == "dummy"
        # the shared-password login names a bad username instead of blaming the password
        c.JupyterHub.authenticator_class = SharedPasswordLogin if dummy else self.authenticator_class
        c.Authenticator.admin_users = set(self.admin_users)
        c.Authenticator.post_auth_hook = join_public_project
        if dummy:
            password, generated = self.password()
            c.DummyAuthenticator.password = password
            c.Authenticator.allow_all = True
            where = f" (kept in {os.path.join(data, PASSWORD_FILE)})" if generated else f" (from ${self.password_env})"
            log.info(
                "log in at %s with any username and the password %s%s; admin users: %s",
                self.bind_url,
                password,
                where,
                ", ".join(self.admin_users),
            )
        if not shutil.which(c.ConfigurableHTTPProxy.command[0]):
            log.warning("configurable-http-proxy was not found: run `npm install` in the repository")


def merge_roles(roles):
    """One role per name: services that each grant the built-in ``user`` and ``server`` roles
    their scopes share those roles (JupyterHub keeps a single definition per name)."""
    merged = {}
    for role in roles:
        name = role["name"]
        if name not in merged:
            merged[name] = {**role, **{k: list(v) for k, v in role.items() if isinstance(v, list)}}
            continue
        into = merged[name]
        for key, value in role.items():
            if isinstance(value, list):
                into[key] = into.get(key, []) + [v for v in value if v not in into.get(key, [])]
            else:
                into.setdefault(key, value)
    return list(merged.values())


def configure(c, **settings):
    """Configure a KubeStudio hub on JupyterHub config ``c``; keywords are KubeStudio traits.

    A bad profile catalog or project definition stops the hub with a message naming the file,
    the field and the reason.
    """
    studio = KubeStudio(config=c, **settings)
    try:
        studio.apply(c)
    except KubeStudioConfigError as e:
        log.error("configuration error, the hub will not start:\n%s", e)
        raise SystemExit(1) from None
    return studio
