"""How a hub service declares itself, and how the hub runs it from that declaration.

A service package has one light module (e.g. ``kubestudio.image_builder.service``) holding a
:class:`ServiceDeclaration`: its name, the module JupyterHub runs, its custom scopes, its roles,
the config sections it reads and a function filling in its defaults. The hub's ``configure()``
only lists which services run; it never imports a service's handlers or app.

A service gets its settings explicitly, as JupyterHub's own services do: the hub writes the
service's config sections to ``<data_dir>/<name>-service.json`` and starts it with
``--config <that file>``. The file is written when ``configure()`` runs and again just before
the hub starts the service (a callable in the service's environment, which JupyterHub calls
then), so settings made on ``c`` after ``configure()`` reach the service too. The hub's own
``jupyterhub_config.py`` is never executed by a service.
"""

import json
import os
import sys
from dataclasses import dataclass, field
from typing import Callable

CONFIG_ENV = "KUBESTUDIO_SERVICE_CONFIG"


def store_files(store, folder):
    """``(db_url, cookie_secret_file)`` of a service whose store is named ``store``, in ``folder``:
    ``<store>.sqlite`` and ``<store>_cookie_secret`` (what the hub gives each service in its data
    folder, and what a service run by hand takes in its working folder)."""
    folder = os.path.abspath(folder)
    return f"sqlite:///{os.path.join(folder, f'{store}.sqlite')}", os.path.join(folder, f"{store}_cookie_secret")


@dataclass
class ServiceDeclaration:
    name: str  # the JupyterHub service name: /services/<name>/
    module: str  # run as `python -m <module> --config <file>`
    config_sections: tuple  # traitlets sections of c the service reads, its app's first (e.g. ImageBuilder)
    store: str = ""  # its store and login secret in the data folder: <store>.sqlite, <store>_cookie_secret
    scopes: dict = field(default_factory=dict)  # custom scope -> description
    roles: Callable = None  # roles(admin_users) -> [JupyterHub role]
    defaults: Callable = None  # defaults(studio, c, data_dir): fill in the service's sections of c
    oauth_scopes: list = field(default_factory=list)  # what a login to the service's pages may grant
    # settings of another part the service must agree with: (from section, trait, to section),
    # copied each time the file is written unless the service's own section sets the trait
    shared: tuple = ()
    # settings worked out from the hub's whole configuration: (to section, trait, function(c) ->
    # value, or None for nothing), each time the file is written unless the section sets the trait
    derived: tuple = ()

    def store_defaults(self, c, data_dir):
        """Where the service keeps its store and login secret, unless ``c`` says (its app's section)."""
        if not self.store:
            return
        section = c[self.config_sections[0]]
        db_url, cookie_secret_file = store_files(self.store, data_dir)
        if "db_url" not in section:
            section.db_url = db_url
        if "cookie_secret_file" not in section:
            section.cookie_secret_file = cookie_secret_file

    def config_path(self, data_dir):
        return os.path.join(data_dir, f"{self.name}-service.json")

    def write_config(self, c, data_dir):
        """The service's sections of ``c`` as a JSON config file (mode 0600); its path."""
        sections = {}
        for source, trait, target, *renamed in self.shared:
            name = renamed[0] if renamed else trait  # (source, trait, target[, the target's trait])
            if trait in c[source] and name not in c[target]:
                sections.setdefault(target, {})[name] = _jsonable(c[source][trait], f"c.{source}.{trait}")
        for target, name, derive in self.derived:
            value = None if name in c[target] else derive(c)
            if value is not None:
                sections.setdefault(target, {})[name] = _jsonable(value, f"c.{target}.{name}")
        for section in self.config_sections:
            values = {key: _jsonable(value, f"c.{section}.{key}") for key, value in c[section].items()}
            if values:
                sections[section] = {**sections.get(section, {}), **values}
        path = self.config_path(data_dir)
        tmp = f"{path}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(sections, f, indent=1, sort_keys=True)
        os.replace(tmp, path)
        return path

    def hub_entry(self, c, data_dir, url, environment=None):
        """The managed-service entry of ``c.JupyterHub.services``."""
        path = self.write_config(c, data_dir)
        env = dict(environment or {})
        # JupyterHub calls callables in a service's environment when it starts the service, after
        # the whole jupyterhub_config.py has run: late settings land in the file then
        env[CONFIG_ENV] = lambda _spawner: self.write_config(c, data_dir)
        return {
            "name": self.name,
            "url": url,
            "command": [sys.executable, "-m", self.module, "--config", path],
            "cwd": data_dir,
            "environment": env,
            "oauth_no_confirm": True,
            "oauth_client_allowed_scopes": list(self.oauth_scopes),
        }


def _jsonable(value, where):
    if isinstance(value, type):  # a Type trait set to the class itself
        return f"{value.__module__}.{value.__qualname__}"
    try:
        json.dumps(value)
    except TypeError:
        raise TypeError(
            f"{where}: {value!r} cannot be handed to the service (use plain values: "
            "strings, numbers, lists, dicts, or an import string for a class)"
        ) from None
    return value
