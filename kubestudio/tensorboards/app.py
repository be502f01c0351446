"""The TensorBoard service: a JupyterHub managed service at ``/services/tensorboards/``.

Started by the hub (``python -m kubestudio.tensorboards --config <data_dir>/tensorboards-service.json``).
Its settings are traits of :class:`TensorBoardService` and of its backend
(:class:`LocalBoardBackend` on the embedded default), set as ``c.TensorBoardService.*`` in
``jupyterhub_config.py`` and handed over by ``configure(c)``.
"""

import os

from jupyterhub.utils import url_path_join
from tornado import web
from traitlets import Bool, Integer, Type, Unicode, default

from ..names import TENSORBOARDS_SERVICE as SERVICE_NAME
from ..services.app import ServiceApp
from ..services.hubapi import HubAPI
from ..services.proxy import UpstreamPool
from ..services.store import Store
from ..services.web import HealthHandler, OpenAPIHandler, oauth_routes, oauth_settings, service_prefix
from . import handlers
from .backends.base import BoardBackend
from .backends.local import LocalBoardBackend
from .manager import BoardManager
from .models import MIGRATIONS, VERSION_TABLE, Base
from .openapi import openapi
from .service import TENSORBOARDS


class TensorBoardService(ServiceApp):
    name = "kubestudio-tensorboards"
    description = "KubeStudio TensorBoard service"

    backend_class = Type(
        LocalBoardBackend,
        klass=BoardBackend,
        config=True,
        help="""What runs boards: kubestudio.tensorboards.backends.local.LocalBoardBackend (a local
        process, the embedded default) or kubestudio.tensorboards.backends.kubernetes.KubernetesBoardBackend
        (a pod + Service per board; configure() picks it with spawner="kubernetes").""",
    )
    data_dir = Unicode(config=True, help="The hub's data folder: where users' workspaces and archives are.")

    @default("data_dir")
    def _default_data_dir(self):
        return os.path.abspath(".")

    idle_timeout = Integer(
        3600, config=True, help="Seconds without a request after which a board is stopped (its record kept); 0: never."
    )
    max_age = Integer(0, config=True, help="Seconds after which a running board is stopped even when used; 0: never.")
    cull_every = Integer(60, config=True, help="Seconds between two looks for idle boards.")
    max_boards_per_user = Integer(5, config=True, help="Boards one user may have open at once (starting or running).")
    stop_boards_on_exit = Bool(
        True, config=True, help="Stop running boards when the service stops (Ctrl-C on the hub leaves nothing running)."
    )

    store_name = TENSORBOARDS.store

    def make_app(self):
        prefix = service_prefix(SERVICE_NAME)
        self.upstream = UpstreamPool()  # to the backends the service forwards to; closed when it stops
        self.store = Store(self.db_url, Base, migrations=MIGRATIONS, version_table=VERSION_TABLE)
        self.backend = self.backend_class(parent=self, log=self.log)
        hub = HubAPI(os.environ.get("JUPYTERHUB_API_URL", ""), os.environ.get("JUPYTERHUB_API_TOKEN", ""))
        self.manager = BoardManager(self, self.store, self.backend, SERVICE_NAME, self.log, hub=hub)
        api = url_path_join(prefix, "api")
        board = url_path_join(api, "boards", r"([0-9a-f]{1,32})")
        routes = oauth_routes(prefix) + [
            (prefix, handlers.IndexHandler),
            (url_path_join(api, "boards"), handlers.BoardsHandler),
            (board, handlers.BoardHandler),
            (url_path_join(board, "logs"), handlers.BoardLogsHandler),
            (url_path_join(api, "health"), HealthHandler),
            (url_path_join(api, "openapi.json"), OpenAPIHandler),
            (url_path_join(prefix, "b", r"([0-9a-f]{1,32})") + r"/?(.*)", handlers.ProxyHandler),
        ]
        settings = oauth_settings(
            SERVICE_NAME,
            prefix,
            cookie_secret_file=self.cookie_secret_file,
            manager=self.manager,
            openapi=openapi,
            upstream=self.upstream,
        )
        return web.Application(routes, **settings)

    async def started(self):
        await self.manager.start()
        self.log.info("TensorBoard service: backend %s", self.backend.name)

    async def stopping(self):
        await self.manager.stop(self.stop_boards_on_exit)
        await self.upstream.close()


def main(argv=None):
    app = TensorBoardService()
    app.initialize(argv)
    app.start()
