"""``from_server`` builds: ask a user's running server which packages it has added to its image.

The server side is the KubeStudio Jupyter server extension
(:mod:`kubestudio.extensions.server`): ``GET <server>/api/kubestudio/environment`` answers the
image it runs, the package set it started with (its image) and the one it has now. The service
calls it through the proxy with its own token (role ``kubestudio-images-service``:
``access:servers``), and builds the image + the difference: packages added or changed since start.
"""

import json
from urllib.parse import quote

from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from .spec import RequestError, check_reference


def package_diff(baseline, current):
    """Specs in ``current`` that ``baseline`` lacks (new packages and changed versions)."""
    before = set(baseline)
    return sorted(spec for spec in current if spec not in before and not spec.startswith("-e "))


class ServerCapture:
    def __init__(self, proxy_url, hub_api_url, token, timeout=30):
        self.proxy_url = proxy_url.rstrip("/")
        self.hub_api_url = hub_api_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    async def _get(self, url, what):
        try:
            response = await AsyncHTTPClient().fetch(
                url, headers={"Authorization": f"token {self.token}"}, request_timeout=self.timeout
            )
        except HTTPClientError as e:
            if e.code == 404:
                return None
            raise RequestError(f"from_server: {what} answered HTTP {e.code}", 502) from None
        except OSError as e:
            raise RequestError(f"from_server: {what} is not reachable: {e}", 502) from None
        return json.loads(response.body)

    async def _servers(self, owner):
        """The owner's servers as the hub lists them: {name: server model}."""
        user = await self._get(f"{self.hub_api_url}/users/{quote(owner, safe='')}", "the hub")
        return (user or {}).get("servers") or {}

    async def _environment(self, server, label):
        """What the server's KubeStudio extension answers (image, baseline, current), or None."""
        return await self._get(f"{self.proxy_url}{server['url']}api/kubestudio/environment", label)

    @staticmethod
    def _label(server_name):
        return f"server {server_name!r}" if server_name else "your default server"

    @staticmethod
    def _added(found):
        """{"pip": [...], "conda": [...]}: what the server has added since it started."""
        return {
            manager: package_diff(found.get("baseline", {}).get(manager, []), found.get("current", {}).get(manager, []))
            for manager in ("pip", "conda")
        }

    async def capture(self, owner, server_name, base=None, fallback=None):
        """(base image, {"pip": [...], "conda": [...]}) of owner's server ``server_name``."""
        servers = await self._servers(owner)
        server = servers.get(server_name or "")
        label = self._label(server_name)
        if not server or not server.get("ready"):
            running = ", ".join(repr(n) if n else "the default server" for n in servers) or "none"
            raise RequestError(f"from_server: {label} is not running (running: {running})", 409)
        found = await self._environment(server, label)
        if found is None:
            raise RequestError(
                f"from_server: {label} does not have the KubeStudio server extension "
                "(pip install kubestudio in its image)",
                409,
            )
        # a server that runs no image (the embedded default) gets the service's default base
        image = base or found.get("image") or fallback
        if not image:
            raise RequestError(
                f"from_server: {label} runs without a container image; give `base`, the image to add its packages to",
                400,
            )
        return check_reference(image, "base"), self._added(found)

    async def servers(self, owner):
        """The owner's servers for the page's *Running server* choice: [{name, ready, adds, note}],
        ``adds`` being what a build of it would install on top of its image."""
        listed = []
        for name, server in sorted((await self._servers(owner)).items()):
            entry = {"name": name, "ready": bool(server.get("ready")), "adds": None, "note": ""}
            listed.append(entry)
            if not entry["ready"]:
                entry["note"] = "not running"
                continue
            try:
                found = await self._environment(server, self._label(name))
            except RequestError as e:
                entry["note"] = str(e).removeprefix("from_server: ")
                continue
            if found is None:
                entry["note"] = "runs without the KubeStudio server extension"
            else:
                entry["adds"] = self._added(found)
        return listed
