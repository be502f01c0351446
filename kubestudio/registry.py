"""A small registry v2 client: does a manifest exist, and how big is it.

Credentials come from a Docker ``config.json`` (``{"auths": {host: {"auth": base64(user:pass)}}}``),
the same file the builders push with. Basic and Bearer-token registries both work. Credentials are
never put in an error message.
"""

import base64
import json
import re

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from . import dockerauth

MANIFEST_TYPES = ", ".join([
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
])


class RegistryError(Exception):
    """The registry cannot be used: down, refusing our credentials, or answering nonsense."""


def load_auth(auth_file, host):
    """(user, password) for ``host`` from a Docker config file, or None."""
    try:
        return dockerauth.credentials(auth_file, host)
    except dockerauth.AuthFileError as e:
        raise RegistryError(str(e)) from None


class RegistryClient:
    def __init__(self, host, auth_file="", insecure=False, timeout=10):
        self.host = host
        self.scheme = "http" if insecure else "https"
        self.auth_file = auth_file
        self.timeout = timeout
        self._tokens = {}

    @property
    def base(self):
        return f"{self.scheme}://{self.host}/v2"

    async def manifest(self, repository, reference, method="HEAD"):
        """(digest, manifest or None) of repository:reference, or None if the registry has none."""
        url = f"{self.base}/{repository}/manifests/{reference}"
        response = await self._fetch(url, method, repository, headers={"Accept": MANIFEST_TYPES})
        if response is None:
            return None
        digest = response.headers.get("Docker-Content-Digest", "")
        body = json.loads(response.body) if method == "GET" and response.body else None
        return digest, body

    async def exists(self, repository, tag):
        found = await self.manifest(repository, tag)
        return found[0] if found else None

    async def delete(self, repository, tag):
        """Delete repository:tag from the registry (its manifest, by digest); False if it had none.
        The registry must allow deletes (docker-registry: storage.delete.enabled)."""
        found = await self.manifest(repository, tag)
        if not found:
            return False
        url = f"{self.base}/{repository}/manifests/{found[0]}"
        try:
            await self._fetch(url, "DELETE", repository, headers={})
        except RegistryError as e:
            if "HTTP 405" in str(e):
                raise RegistryError(f"registry {self.host} does not allow deleting images (HTTP 405)") from None
            raise
        return True

    async def image_size(self, repository, reference):
        """Compressed size in bytes (config + layers) of a single-platform image, or None."""
        found = await self.manifest(repository, reference, method="GET")
        if not found or not found[1]:
            return None
        manifest = found[1]
        if "layers" not in manifest:
            return None  # an index: sizes are per platform
        return manifest.get("config", {}).get("size", 0) + sum(layer.get("size", 0) for layer in manifest["layers"])

    async def _fetch(self, url, method, repository, headers, retry_auth=True):
        headers = dict(headers)
        token = self._tokens.get(repository)
        auth = load_auth(self.auth_file, self.host)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        elif auth:
            headers["Authorization"] = _basic(auth)
        request = HTTPRequest(url, method=method, headers=headers, connect_timeout=self.timeout,
                              request_timeout=self.timeout, validate_cert=True)
        try:
            return await AsyncHTTPClient().fetch(request)
        except HTTPClientError as e:
            if e.code == 404:
                return None
            if e.code == 401 and retry_auth and e.response is not None:
                challenge = e.response.headers.get("WWW-Authenticate", "")
                if challenge.lower().startswith("bearer"):
                    self._tokens[repository] = await self._bearer_token(challenge, auth)
                    return await self._fetch(url, method, repository, headers, retry_auth=False)
            if e.code in (401, 403):
                who = "the configured credentials" if auth else "anonymous access (no credentials are configured)"
                raise RegistryError(f"registry {self.host} refused {who} for {repository} (HTTP {e.code})") from None
            raise RegistryError(f"registry {self.host} answered HTTP {e.code} for {repository}") from None
        except (OSError, TimeoutError) as e:
            raise RegistryError(f"registry {self.host} is not reachable: {e}") from None

    async def _bearer_token(self, challenge, auth):
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        realm = params.pop("realm", None)
        if not realm:
            raise RegistryError(f"registry {self.host} sent a Bearer challenge without a realm")
        query = "&".join(f"{k}={v}" for k, v in params.items())
        headers = {}
        if auth:
            headers["Authorization"] = _basic(auth)
        try:
            response = await AsyncHTTPClient().fetch(f"{realm}?{query}", headers=headers,
                                                     request_timeout=self.timeout)
        except HTTPClientError as e:
            raise RegistryError(f"registry {self.host}: its token service refused the credentials (HTTP {e.code})") from None
        except OSError as e:
            raise RegistryError(f"registry {self.host}: its token service is not reachable: {e}") from None
        data = json.loads(response.body)
        return data.get("token") or data.get("access_token")


def _basic(auth):
    user, password = auth
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def split_reference(image):
    """'host/path/name:tag' -> (host, 'path/name', tag)."""
    host, _, rest = image.partition("/")
    repository, _, tag = rest.rpartition(":")
    return host, repository, tag
