"""What a service asks the hub's REST API with its own token: any path, and groups' properties
(the service's role needs ``read:groups``), cached for ``cache_seconds``: a project's quota
changed by an admin applies within that time."""

import json
import time
from urllib.parse import quote

from tornado.httpclient import AsyncHTTPClient, HTTPClientError


class HubError(Exception):
    pass


class HubAPI:
    def __init__(self, api_url, token, cache_seconds=30.0, timeout=30):
        self.api_url = (api_url or "").rstrip("/")
        self.token = token
        self.cache_seconds = cache_seconds
        self.timeout = timeout
        self._groups = {}  # name -> (when, properties or None)

    async def get(self, path):
        """The hub API's JSON answer for ``path``; None for 404."""
        try:
            response = await AsyncHTTPClient().fetch(
                f"{self.api_url}{path}", request_timeout=self.timeout, headers={"Authorization": f"token {self.token}"}
            )
        except HTTPClientError as e:
            if e.code == 404:
                return None
            raise HubError(f"the hub answered HTTP {e.code} to {path}") from None
        except OSError as e:
            raise HubError(f"the hub is not reachable: {e}") from None
        return json.loads(response.body)

    async def group_properties(self, name):
        cached = self._groups.get(name)
        if cached and time.monotonic() - cached[0] < self.cache_seconds:
            return cached[1]
        group = await self.get(f"/groups/{quote(name, safe='')}")
        properties = None if group is None else group.get("properties") or {}
        self._groups[name] = (time.monotonic(), properties)
        return properties
