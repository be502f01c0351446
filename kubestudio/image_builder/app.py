"""The image service: a JupyterHub managed service at ``/services/images/``.

Started by the hub (``python -m kubestudio.image_builder --config <data_dir>/images-service.json``).
Its settings are traits of :class:`ImageBuilder`, :class:`BuildahBackend` and :class:`KanikoBackend`;
admins set them as ``c.ImageBuilder.*`` etc. in ``jupyterhub_config.py``, and the hub's
``configure(c)`` fills in the defaults and hands the result to the service in that file
(:mod:`kubestudio.image_builder.service` declares what the service reads).
"""

import asyncio
import os

from jupyterhub.utils import url_path_join
from tornado import web
from traitlets import Bool, Integer, List, Type, Unicode, default

from .. import dockerauth
from ..names import IMAGES_SERVICE as SERVICE_NAME
from ..names import REGISTRY_PREFIX
from ..registry import RegistryClient
from ..services.app import ServiceApp
from ..services.events import BulkWriteLimiter
from ..services.store import Store
from ..services.web import (
    HealthHandler,
    OpenAPIHandler,
    oauth_routes,
    oauth_settings,
    service_prefix,
)
from ..spawner.storage import mount_name, user_slug
from . import handlers
from .backends.base import BuildBackend
from .backends.buildah import BuildahBackend
from .backends.sandbox import is_loopback_host
from .bases import BasePreparer, base_from_config, default_base
from .builds import BuildManager
from .capture import ServerCapture
from .models import MIGRATIONS, Base
from .openapi import openapi
from .service import IMAGES


class ImageBuilder(ServiceApp):
    name = "kubestudio-images"
    description = "KubeStudio image build service"

    backend_class = Type(
        BuildahBackend,
        klass=BuildBackend,
        config=True,
        help="""How images are built: kubestudio.image_builder.backends.buildah.BuildahBackend (the
        embedded default) or kubestudio.image_builder.backends.kaniko.KanikoBackend (a pod per build
        on Kubernetes).""",
    )
    registry_host = Unicode(
        "127.0.0.1:5000",
        config=True,
        help="Registry images are pushed to, as host[:port] (e.g. registry.example.org).",
    )
    registry_prefix = Unicode(
        REGISTRY_PREFIX,
        config=True,
        help="""Path under the registry for KubeStudio images. A user's images go to
        <registry_host>/<registry_prefix>/<user slug>/<name>:<tag>.""",
    )
    registry_insecure = Bool(
        False,
        config=True,
        help="The registry speaks plain HTTP (a loopback or in-cluster registry without TLS).",
    )
    registry_auth_file = Unicode(
        "",
        config=True,
        help="""Docker config.json with the registry credentials, used for the "already built?"
        check and by the builders. Its secrets never appear in logs, records or API answers.""",
    )
    registry_grants_dir = Unicode(
        "",
        config=True,
        help="""The registry gate's grants folder (the embedded default sets it): each build then pulls
        and pushes with an account of its own that the gate allows to read only what the build's
        user may read and to push only the build's repository, whatever the Dockerfile says. Empty:
        builds use `registry_auth_file`, and only the Dockerfile check keeps users' images apart
        (give the registry per-user credentials of its own then).""",
    )
    check_image_references = Bool(
        True,
        config=True,
        help="""Refuse at once (403 naming the line) a Dockerfile that plainly names an image of our
        registry its user may not read. An early, clear answer, not the boundary: the Dockerfile is
        parsed by us, not by the builder. Where `registry_grants_dir` is set (the embedded default),
        what a build pulls is decided by the registry gate whatever the Dockerfile says, and this
        check may be turned off (e.g. for Dockerfiles whose FROM names an ARG without a default).""",
    )
    registry_aliases = List(
        Unicode(),
        config=True,
        help="""Other names of the same registry (e.g. its in-cluster Service name), so a Dockerfile
        cannot reach another user's image by spelling the host differently.""",
    )
    base_repositories = List(
        Unicode(),
        ["base/*"],
        config=True,
        help="""Repositories of our registry that every user may build FROM, as patterns on the path
        after the host (fnmatch: `base/*`, `kubestudio/shared/*`). Besides these, a user may build
        from their own images, their projects' images and any other registry's images; another
        user's image is refused (403 naming the Dockerfile line). The base_images the service makes
        are under base/ by default.""",
    )
    max_concurrent_builds = Integer(2, config=True, help="Builds that may run at once, for all users together.")
    max_builds_per_user = Integer(
        1, config=True, help="Builds one user may have running at once; more wait in the queue."
    )
    build_timeout = Integer(3600, config=True, help="Seconds a build may run before it is stopped and marked failed.")
    max_log_bytes = Integer(
        10 * 1024 * 1024,
        config=True,
        help="""Largest log kept per build (characters). Past it, lines are left out, except the last
        100, which close the log after a note saying how many were left out; the build goes on.""",
    )
    max_context_bytes = Integer(
        200 * 1024 * 1024, config=True, help="Largest build context (sum of the files in the folder), in bytes."
    )
    workspaces_root = Unicode(
        "",
        config=True,
        help="""Folder holding every user's workspace as <workspaces_root>/<user slug>/ (the service's
        view of /mnt/<user>). The embedded hub sets <data_dir>/users/*/mnt through `workspace_pattern`.""",
    )
    workspace_pattern = Unicode(
        "{root}/{user_slug}",
        config=True,
        help="How a user's workspace folder is found under workspaces_root, e.g. {root}/{user_slug}/mnt.",
    )
    allow_project_namespaces = Bool(
        False,
        config=True,
        help="""Let members of a project push to <registry_prefix>/projects/<project>/ by giving
        `project` in the request (shared project images).""",
    )

    work_dir = Unicode(
        config=True,
        help="""Folder for build contexts in flight: snapshots of workspace folders (local builds) and
        generated Dockerfiles. Each is removed when its build ends. Defaults to ./build-contexts in
        the service's working folder (the hub's data_dir for the embedded hub).""",
    )

    @default("work_dir")
    def _default_work_dir(self):
        return os.path.abspath("build-contexts")

    base_images = List(
        config=True,
        help="""Base images the service makes itself from Debian packages when the registry lacks them
        (needs `mmdebstrap`; local builds only), e.g. [{"image": "base/python:3.11", "suite":
        "bookworm", "packages": ["python3", "python3-pip", "python3-venv", "ca-certificates"],
        "description": "Debian 12, Python 3.11, pip"}]. Pushed under registry_host; made in the
        background after the service starts; the first one is the default base of `environment`
        builds and of `from_server` builds of servers that run no image. The embedded hub sets one.""",
    )
    base_cache_dir = Unicode(
        config=True,
        help="""Folder where the root filesystems of `base_images`, and the base images once made (their
        compressed layers and manifest, under `images/`, the newest two per image), are kept, so another
        hub (or this one with a new registry) on the same machine gets its base images in seconds: copied
        into its registry, not made again. Empty: no cache. Defaults to ~/.cache/kubestudio/base-rootfs.""",
    )

    @default("base_cache_dir")
    def _default_base_cache_dir(self):
        cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        return os.path.join(cache, "kubestudio", "base-rootfs")

    base_extra_ca_dir = Unicode(
        "/usr/local/share/ca-certificates",
        config=True,
        help="""Folder of this machine's own CA certificates (*.crt, e.g. a company proxy's) that the
        `base_images` trust as well, so pip and apt inside builds reach the internet the way this
        machine does. Empty: only Debian's CA certificates.""",
    )

    keepalive_seconds = Integer(15, config=True, help="Seconds between keepalive comments on log event streams.")
    proxy_url = Unicode(
        "http://127.0.0.1:8000",
        config=True,
        help="""The hub's public URL (the proxy), used to reach users' servers for `from_server`
        builds. configure() sets the hub's bind_url.""",
    )

    store_name = IMAGES.store

    # ------------------------------------------------------------------

    def secrets(self):
        """Strings that must never be shown: registry passwords and their base64 forms."""
        return dockerauth.secrets(self.registry_auth_file)

    def workspace_of(self, slug):
        return self.workspace_pattern.format(root=self.workspaces_root, user_slug=slug)

    servers_see_workspace_at = Unicode(
        "",
        config=True,
        help="""Where servers see a user's workspace, e.g. /mnt/{user}: the images page names it so
        (users never see the hub's own folders). configure() sets it when local servers run in
        images. Empty: /mnt/{user} on Kubernetes, the folder itself for local builds (servers on the
        hub's Python see it there).""",
    )

    def workspace_label(self, user):
        """The user's workspace as the page names it: as their servers see it."""
        if self.servers_see_workspace_at:
            return self.servers_see_workspace_at.format(user=mount_name(user))
        if self.backend.snapshot_context:
            return self.workspace_of(user_slug(user))
        return f"/mnt/{user}"

    def make_backend(self):
        backend = self.backend_class(parent=self, log=self.log)
        if isinstance(backend, BuildahBackend):
            if not backend.auth_file:
                backend.auth_file = self.registry_auth_file
            if not backend.loopback_registries:
                # reached from the build sandbox's network through a forward of their own
                backend.loopback_registries = [
                    h
                    for h in [self.registry_host, *self.registry_aliases]
                    if is_loopback_host(h.rpartition(":")[0] or h)
                ]
            if self.registry_insecure:
                backend.tls_verify = False
        elif self.registry_insecure and hasattr(backend, "insecure_registry"):
            backend.insecure_registry = True
        return backend

    def make_app(self):
        prefix = service_prefix(SERVICE_NAME)
        self.store = Store(self.db_url, Base, migrations=MIGRATIONS, version_table="kubestudio_images_version")
        registry = RegistryClient(self.registry_host, self.registry_auth_file, insecure=self.registry_insecure)
        self.backend = self.make_backend()
        capture = ServerCapture(
            self.proxy_url, os.environ.get("JUPYTERHUB_API_URL", ""), os.environ.get("JUPYTERHUB_API_TOKEN", "")
        )
        bases = [base_from_config(entry) for entry in self.base_images]
        self.bases = BasePreparer(
            bases if self.backend.snapshot_context else [],
            self.registry_host,
            registry,
            self.backend,
            self.work_dir,
            self.log,
            cache_dir=self.base_cache_dir,
            extra_ca_dir=self.base_extra_ca_dir,
        )
        self.manager = BuildManager(
            self,
            self.store,
            self.backend,
            registry,
            self.log,
            capture=capture.capture,
            default_base=default_base(bases, self.registry_host),
        )
        self.manager.wait_for_bases = self.bases.wait_for
        api = url_path_join(prefix, "api")
        routes = oauth_routes(prefix) + [
            (prefix, handlers.IndexHandler),
            (url_path_join(api, "builds"), handlers.BuildsHandler),
            (url_path_join(api, "builds", r"([0-9a-f]{1,32})"), handlers.BuildHandler),
            (url_path_join(api, "builds", r"([0-9a-f]{1,32})", "logs"), handlers.BuildLogsHandler),
            (url_path_join(api, "images"), handlers.ImageListHandler),
            (url_path_join(api, "bases"), handlers.BaseListHandler),
            (url_path_join(api, "servers"), handlers.ServerListHandler),
            (url_path_join(api, "health"), HealthHandler),
            (url_path_join(api, "openapi.json"), OpenAPIHandler),
        ]
        settings = oauth_settings(
            SERVICE_NAME,
            prefix,
            cookie_secret_file=self.cookie_secret_file,
            manager=self.manager,
            bases=self.bases,
            workspace_label=self.workspace_label,
            capture=capture,
            keepalive_seconds=self.keepalive_seconds,
            bulk_writes=BulkWriteLimiter(),
            openapi=openapi,
            registry_display=f"{self.registry_host}/{self.registry_prefix}".rstrip("/"),
            static_path=os.path.join(os.path.dirname(__file__), "static"),
            static_url_prefix=url_path_join(prefix, "static/"),
        )
        return web.Application(routes, **settings)

    async def started(self):
        await self.manager.start()
        self.bases.start()
        self.log.info("image service: backend %s, registry %s", self.backend.name, self.registry_host)

    async def stopping(self):
        for live in list(self.manager.live.values()):
            if live.task:
                live.task.cancel()
        await asyncio.sleep(0.2)
        await self.bases.stop()
        await self.manager.stop()
        await self.backend.stop()


def main(argv=None):
    app = ImageBuilder()
    app.initialize(argv)
    app.start()
