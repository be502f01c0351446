"""The kit every KubeStudio hub service is built from.

- :mod:`.web`: handlers (identity from JupyterHub, scopes, checked JSON bodies, JSON errors
  through :func:`~.web.http_error`), pages behind the hub's login, health, OpenAPI, 404s;
- :mod:`.events`: Server-Sent Events and turns for bulk writers;
- :mod:`.store`: the SQL store with its schema versions (Alembic migrations per service);
- :mod:`.secretfile`: secrets made once and kept in a file;
- :mod:`.app`: the service application (settings from its own config file, serve loop);
- :mod:`.declare`: how a service declares itself to the hub, and how the hub runs it.

Nothing here imports the hub's configuration or any service.
"""
