"""A small registry v2 client: does a manifest exist, how big is it; copy an image's blobs and
manifest out to files and back (image_builder.imagecache keeps built base images so).

Credentials come from a Docker ``config.json`` (``{"auths": {host: {"auth": base64(user:pass)}}}``),
the same file the builders push with. Basic and Bearer-token registries both work. Credentials are
never put in an error message.
"""

import base64
import hashlib
import json
import os
import re
from urllib.parse import urljoin

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from . import dockerauth

MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)


BLOB_LIMIT = 64 * 1024**3  # what one layer may weigh when copied to or from a file


class RegistryError(Exception):
    """The registry cannot be used: down, refusing our credentials, or answering nonsense."""


class RegistryUnreachable(RegistryError):
    """Nothing answers at the registry's address (not started yet, or down)."""


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

    async def manifest_bytes(self, repository, reference):
        """(media type, the manifest's exact bytes) of a single-platform image, or None. The bytes,
        not a parse of them: they are what the image's digest is of."""
        url = f"{self.base}/{repository}/manifests/{reference}"
        response = await self._fetch(url, "GET", repository, headers={"Accept": MANIFEST_TYPES})
        if response is None:
            return None
        media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        return media_type, response.body

    async def get_blob(self, repository, digest, path, timeout=600):
        """Write blob ``digest`` to ``path``, checking it on the way; RegistryError if it differs."""
        algorithm, _, expected = digest.partition(":")
        if algorithm != "sha256" or not re.fullmatch(r"[0-9a-f]{64}", expected):
            raise RegistryError(f"registry {self.host}: unsupported digest {digest!r}")
        hasher = hashlib.sha256()
        with open(path, "wb") as f:

            def write(chunk):
                hasher.update(chunk)
                f.write(chunk)

            found = await self._fetch(
                f"{self.base}/{repository}/blobs/{digest}",
                "GET",
                repository,
                headers={},
                streaming_callback=write,
                request_timeout=timeout,
                large=True,
            )
        if found is None:
            raise RegistryError(f"registry {self.host} has no blob {digest} for {repository}")
        if hasher.hexdigest() != expected:
            raise RegistryError(f"registry {self.host} sent a blob for {repository} whose digest is not {digest}")

    async def has_blob(self, repository, digest):
        return await self._fetch(f"{self.base}/{repository}/blobs/{digest}", "HEAD", repository, headers={}) is not None

    async def put_blob(self, repository, digest, path, timeout=600):
        """Upload the file ``path`` as blob ``digest`` (one monolithic upload), unless it is there."""
        if await self.has_blob(repository, digest):
            return
        started = await self._fetch(
            f"{self.base}/{repository}/blobs/uploads/", "POST", repository, headers={}, body=b""
        )
        location = started.headers.get("Location") if started is not None else None
        if not location:
            raise RegistryError(f"registry {self.host} gave no upload location for {repository}")
        url = urljoin(f"{self.scheme}://{self.host}/", location)
        url += ("&" if "?" in url else "?") + f"digest={digest}"
        size = os.path.getsize(path)

        async def produce(write):
            with open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    await write(chunk)

        await self._fetch(
            url,
            "PUT",
            repository,
            body_producer=produce,
            request_timeout=timeout,
            large=True,
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
        )

    async def put_manifest(self, repository, tag, media_type, raw):
        """Tag ``raw`` (a manifest's exact bytes, its blobs already there) as repository:tag."""
        await self._fetch(
            f"{self.base}/{repository}/manifests/{tag}",
            "PUT",
            repository,
            headers={"Content-Type": media_type},
            body=raw,
        )

    async def _fetch(
        self,
        url,
        method,
        repository,
        headers,
        retry_auth=True,
        body=None,
        body_producer=None,
        streaming_callback=None,
        request_timeout=None,
        large=False,
    ):
        headers = dict(headers)
        token = self._tokens.get(repository)
        auth = load_auth(self.auth_file, self.host)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        elif auth:
            headers["Authorization"] = _basic(auth)
        request = HTTPRequest(
            url,
            method=method,
            headers=headers,
            connect_timeout=self.timeout,
            request_timeout=request_timeout or self.timeout,
            validate_cert=True,
            body=body,
            body_producer=body_producer,
            streaming_callback=streaming_callback,
        )
        # a layer may pass the shared client's 100 MB body limit (streamed, never held in memory)
        client = AsyncHTTPClient(force_instance=True, max_body_size=BLOB_LIMIT) if large else AsyncHTTPClient()
        try:
            return await client.fetch(request)
        except HTTPClientError as e:
            if e.code == 404:
                return None
            if e.code == 401 and retry_auth and e.response is not None:
                challenge = e.response.headers.get("WWW-Authenticate", "")
                if challenge.lower().startswith("bearer") and body_producer is None:
                    self._tokens[repository] = await self._bearer_token(challenge, auth)
                    return await self._fetch(
                        url,
                        method,
                        repository,
                        headers,
                        retry_auth=False,
                        body=body,
                        streaming_callback=streaming_callback,
                        request_timeout=request_timeout,
                        large=large,
                    )
            if e.code in (401, 403):
                who = "the configured credentials" if auth else "anonymous access (no credentials are configured)"
                raise RegistryError(f"registry {self.host} refused {who} for {repository} (HTTP {e.code})") from None
            raise RegistryError(f"registry {self.host} answered HTTP {e.code} for {repository}") from None
        except (OSError, TimeoutError) as e:
            raise RegistryUnreachable(f"registry {self.host} is not reachable: {e}") from None
        finally:
            if large:
                client.close()

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
            response = await AsyncHTTPClient().fetch(f"{realm}?{query}", headers=headers, request_timeout=self.timeout)
        except HTTPClientError as e:
            raise RegistryError(
                f"registry {self.host}: its token service refused the credentials (HTTP {e.code})"
            ) from None
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
