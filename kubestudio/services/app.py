"""The base of a hub service's application: its settings from its own config file, its log at
INFO unless configured, and the serve loop (listen where JupyterHub said, stop on SIGTERM)."""

import asyncio
import logging
import os
import signal

from traitlets import Unicode, default
from traitlets.config import Application

from .declare import store_files
from .web import service_url_parts


class ServiceApp(Application):
    config_file = Unicode(
        "",
        config=True,
        help="""The service's own config file (JSON or Python), written by the hub's configure() into
        the data folder and passed as --config. Command-line values win over it.""",
    )

    # the name of the service's store: <store_name>.sqlite and <store_name>_cookie_secret in its
    # working folder by default (the hub runs each service in its data_dir and says so in the file)
    store_name = "service"
    db_url = Unicode(
        config=True,
        help="""SQLAlchemy URL of the service's store (its builds, jobs or boards). Defaults to SQLite
        in the service's working folder: the hub's data_dir, as <name>.sqlite (images, jobs,
        tensorboards).""",
    )

    @default("db_url")
    def _default_db_url(self):
        return store_files(self.store_name, os.getcwd())[0]

    cookie_secret_file = Unicode(
        config=True,
        help="""File with the secret that signs the service's login cookie (made once, mode 0600), so
        its pages stay logged in across restarts. Defaults to <name>_cookie_secret in the service's
        working folder (the hub's data_dir).""",
    )

    @default("cookie_secret_file")
    def _default_cookie_secret_file(self):
        return store_files(self.store_name, os.getcwd())[1]

    aliases = {"config": "ServiceApp.config_file", "db-url": "ServiceApp.db_url"}

    @default("log_level")
    def _default_log_level(self):
        return logging.INFO  # lifecycle lines in the hub's log; Application.log_level changes it

    def initialize(self, argv=None):
        super().initialize(argv)
        if self.config_file:
            self.load_config_file(self.config_file)  # traitlets keeps the command line's values on top

    def make_app(self):
        """The tornado Application (routes and settings)."""
        raise NotImplementedError

    async def started(self):
        """After the app is made, before it listens (start managers, backends)."""

    async def stopping(self):
        """After it stopped listening (stop managers, backends)."""

    async def serve(self):
        app = self.make_app()
        await self.started()
        host, port = service_url_parts()
        server = app.listen(port, address=host, xheaders=True)
        self.log.info("%s on http://%s:%s", self.name, host, port)
        stopped = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopped.set)
        await stopped.wait()
        server.stop()
        await self.stopping()

    def start(self):
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self.serve())
            self._cancel_leftovers(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            loop.close()

    def _cancel_leftovers(self, loop, grace_seconds=5.0):
        """Cancel what still runs after stopping (open connections, streams) and wait for it a
        little: a task that will not end must not keep the service alive after the hub asked it to
        stop (asyncio.run would wait for it forever); it is named in the log."""
        tasks = [task for task in asyncio.all_tasks(loop) if not task.done()]
        for task in tasks:
            task.cancel()
        if not tasks:
            return
        _, pending = loop.run_until_complete(asyncio.wait(tasks, timeout=grace_seconds))
        for task in pending:
            frames = task.get_stack(limit=3)
            where = " <- ".join(
                f"{f.f_code.co_name} ({f.f_code.co_filename.rsplit('/', 1)[-1]}:{f.f_lineno})" for f in frames
            )
            self.log.warning("%s: a task did not stop when cancelled: %s", self.name, where or task)
