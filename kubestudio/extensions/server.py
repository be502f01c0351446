"""Jupyter server extension: tells the image service what a server has added to its image.

``GET <server>/api/kubestudio/environment`` answers ``{"image", "baseline", "current"}``:
the image the server runs (``KUBESTUDIO_IMAGE`` / ``JUPYTER_IMAGE``), the package set when the
server started (its image plus what the workspace already held; on the embedded default, the hub's
own packages under the user's environment, or the image's without the user's ``~/.local``) and the
package set now.
The image service builds image + the difference (``from_server`` builds).
"""

import asyncio
import json
import os
import shutil
import sys

from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web

_baseline = {}


async def _run(*argv, env=None):
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, env=env
        )
    except OSError:
        return []
    out, _ = await proc.communicate()
    return [line for line in out.decode(errors="replace").splitlines() if line and not line.startswith("#")]


async def package_set(path=None, user_site=True):
    """{"pip": [...], "conda": [...]}; with ``path``, the pip packages of that site-packages only;
    without ``user_site``, those of the user's ``~/.local`` left out."""
    where = ["--path", path] if path else []
    env = None if user_site else {**os.environ, "PYTHONNOUSERSITE": "1"}
    pip = await _run(
        sys.executable, "-m", "pip", "list", "--format=freeze", "--disable-pip-version-check", *where, env=env
    )
    conda = await _run("conda", "list", "--export") if shutil.which("conda") else []
    return {"pip": pip, "conda": conda}


class EnvironmentHandler(APIHandler):
    @web.authenticated
    async def get(self):
        if "task" in _baseline:
            await _baseline["task"]
        current = await package_set()
        image = os.environ.get("KUBESTUDIO_IMAGE") or os.environ.get("JUPYTER_IMAGE") or ""
        self.finish(json.dumps({"image": image, "baseline": _baseline.get("packages", current), "current": current}))


async def _take_baseline():
    # a server whose user has an environment of their own layered on a base (the embedded default):
    # the base's packages are the image's, whatever the user installed before this start included
    # a server in an image: the image's packages, without what the user installed in their home
    _baseline["packages"] = await package_set(
        os.environ.get("KUBESTUDIO_BASE_SITE_PACKAGES") or None, user_site=os.environ.get("KUBESTUDIO_IMAGE_RUN") != "1"
    )


def _load_jupyter_server_extension(server_app):
    from .bridge import load

    load(server_app)  # the lab extension's handlers
    web_app = server_app.web_app
    route = url_path_join(web_app.settings["base_url"], "api/kubestudio/environment")
    web_app.add_handlers(".*$", [(route, EnvironmentHandler)])
    # the package set at start is the image's (plus the workspace's): taken in the background
    _baseline["task"] = asyncio.ensure_future(_take_baseline())
