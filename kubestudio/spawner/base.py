"""What every KubeStudio spawner shares: the catalog, the user's projects, the form, the checks.

:class:`WorkspaceSpawnerMixin` goes first in a spawner's bases (``class S(WorkspaceSpawnerMixin,
SomeSpawner)``). A spawner provides :meth:`unavailable` (what cannot start here, with reasons)
and :meth:`check_capacity` (quotas and free resources, without taking anything).
"""

import json

from tornado import web
from traitlets import Unicode, default
from traitlets.config import LoggingConfigurable

from ..services.web import http_error
from .form import FormContext, render_spawn_form
from .profiles import load_catalog_cached
from .projects import user_projects
from .request import SpawnRefused, options_from_formdata, resolve_request
from .storage import user_slug


def refusal(error):
    """A SpawnRefused as the HTTP error JupyterHub shows (JSON for the API, text on the page)."""
    answer = http_error(error.status, str(error))
    answer.jupyterhub_message = str(error)
    return answer


class SpawnFailed(web.HTTPError):
    """A spawn that stopped early; the message is shown on the spawn page and in API errors.

    ``status``: 500 when the server itself broke, 409 when the cluster cannot run it as asked.
    """

    def __init__(self, message, status=500):
        super().__init__(status, message.replace("%", "%%"))
        self.jupyterhub_message = message

    def __str__(self):
        return self.jupyterhub_message


class WorkspaceSpawnerMixin(LoggingConfigurable):
    profiles_file = Unicode(
        "profiles/default.yaml",
        config=True,
        help="""Profile catalog (YAML) offered on the spawn form. Relative paths are resolved
        against the hub's working directory. The file is re-read when it changes.""",
    )

    jupyterlab_url = Unicode("/lab", config=True, help="URL a JupyterLab server opens on (relative to the server).")

    vscode_url = Unicode(
        "/vscode/",
        config=True,
        help="URL a VS Code server opens on; jupyter-vscode-proxy serves VS Code there.",
    )

    images_api_url = Unicode(
        "",
        config=True,
        help="""The image service's image list (…/services/images/api/images). When set, profiles
        with custom_images list the user's built images on the spawn form. configure() sets it.""",
    )

    images_api_token = Unicode(
        "",
        config=True,
        help="""Token the hub uses to read users' image lists from the image service (a hub service
        token with the images admin scope). configure() generates one.""",
    )

    async def built_images(self):
        """(image references the user built, or an error message): shown for custom_images profiles."""
        if not (self.images_api_url and self.images_api_token):
            return [], None
        from urllib.parse import quote

        from tornado.httpclient import AsyncHTTPClient

        url = f"{self.images_api_url}?user={quote(self.user.name, safe='')}"
        try:
            response = await AsyncHTTPClient().fetch(
                url, headers={"Authorization": f"token {self.images_api_token}"}, request_timeout=3
            )
            images = json.loads(response.body)["images"]
        except Exception as e:  # the form must render even when the service is down
            self.log.warning("could not list %s's images from %s: %s", self.user.name, self.images_api_url, e)
            return [], "your built images cannot be listed right now (the image service did not answer)"
        prefix = self.custom_image_prefix()
        return [i["image"] for i in images if not prefix or i["image"].startswith(prefix)], None

    @property
    def catalog(self):
        return load_catalog_cached(self.profiles_file)

    def projects(self):
        return user_projects(self.user.groups)

    def unavailable(self):
        """(profile reasons, IDE reasons): what cannot start here and why."""
        return {}, {}

    def check_capacity(self, request):
        """Refuse (SpawnRefused) a request over quota or beyond free resources; take nothing."""

    user_images_prefix = Unicode(
        "",
        config=True,
        help="""Where each user's own images live, e.g. "registry.example.org/kubestudio/{user_slug}/"
        (the image builder pushes there; configure() sets it). Profiles with `custom_images: true`
        then accept any image under the user's own prefix, and nothing outside it. Empty: no
        custom images.""",
    )

    hub_public_url = Unicode(
        "",
        config=True,
        help="""The hub's address as users' browsers reach it, given to servers as KUBESTUDIO_PUBLIC_URL
        so the `kubestudio` CLI prints links that work (a TensorBoard's URL, never localhost).
        configure() sets the embedded default's bind_url; the Helm chart its public address.""",
    )

    def notebook_links_env(self):
        """Addresses a server's tools print or embed: the hub's public URL, and the URL template
        TensorBoard's %tensorboard magic shows boards at (through the server's own proxy, where
        the server's login guards them)."""
        env = {}
        if self.hub_public_url:
            env["KUBESTUDIO_PUBLIC_URL"] = self.hub_public_url
        server = getattr(self, "server", None)
        if server is not None:
            env["TENSORBOARD_PROXY_URL"] = server.base_url.rstrip("/") + "/proxy/%PORT%/"
        return env

    def custom_image_prefix(self):
        """Where this user's own images live, for profiles with custom_images; None: not offered."""
        if not self.user_images_prefix:
            return None
        return self.user_images_prefix.format(user_slug=user_slug(self.user.name))

    # whether a profile's image choice `image: host` (the hub machine's own Python) can run
    runs_host_image = False

    def runs_here(self):
        """Where a server does not run its profile's image: what it runs instead (for the form)."""
        return None

    image_here = None  # image -> what a server of it runs on this machine (None: the image itself)

    def resolve(self, options):
        profile_reasons, ide_reasons = self.unavailable()
        return resolve_request(
            options,
            self.catalog,
            self.projects(),
            profile_reasons,
            ide_reasons,
            custom_image_prefix=self.custom_image_prefix(),
            host_image=self.runs_host_image,
        )

    @default("options_form")
    def _default_options_form(self):
        return self._render_workspace_form

    async def other_profiles_form(self):
        """HTML of profiles from another source, shown above the catalog's in the same form
        (radio buttons named ``profile``), and whether one of them is preselected."""
        return "", False

    async def prepare_checks(self):
        """Make ready, off the event loop, what the checks of :meth:`unavailable` read (the local
        spawner's GPU ledger, detected with `nvidia-smi`); awaited before the form is drawn."""

    async def _render_workspace_form(self, spawner):
        await self.prepare_checks()
        profile_reasons, ide_reasons = self.unavailable()
        catalog = self.catalog
        other_html, other_selected = await self.other_profiles_form()
        own_images, images_note = [], None
        if catalog and self.custom_image_prefix() and any(p.custom_images for p in catalog.profiles):
            own_images, images_note = await self.built_images()
        context = FormContext(
            profile_unavailable=profile_reasons,
            ide_unavailable=ide_reasons,
            previous=(self.orm_spawner.user_options if self.orm_spawner else None) or {},
            own_images=own_images,
            own_images_note=images_note,
            own_images_prefix=self.custom_image_prefix(),
            runs_here=self.runs_here(),
            image_here=self.image_here,
            other_profiles_html=other_html,
            preselect=not other_selected,
        )
        return render_spawn_form(catalog, self.projects(), context)

    def options_from_form(self, formdata):
        """Check the choice on the form, so a refusal shows on the form with nothing started."""
        request = self.resolve(options_from_formdata(formdata))
        self.check_capacity(request)
        return request.as_options()


__all__ = ["WorkspaceSpawnerMixin", "SpawnFailed", "SpawnRefused", "refusal"]
