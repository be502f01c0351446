"""A small async Kubernetes API client (aiohttp, JSON in and out) for the simulated kubelet.

The kubelet handles thousands of objects; plain dicts keep it fast and close to the wire.
"""

import asyncio
import json
import logging
import ssl

import aiohttp

log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(self, status, body):
        self.status = status
        self.body = body
        message = body.get("message") if isinstance(body, dict) else body
        super().__init__(f"{status}: {message}")


class KubeClient:
    def __init__(self, server, token, limit=100):
        self.server = server.rstrip("/")
        self.token = token
        self.limit = limit
        self._session = None

    async def session(self):
        if self._session is None:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=context, limit=self.limit),
                headers={"Authorization": f"Bearer {self.token}"},
            )
        return self._session

    async def close(self):
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(self, method, path, body=None, params=None, content_type="application/json", retries=5):
        session = await self.session()
        data = json.dumps(body) if body is not None else None
        headers = {"Content-Type": content_type} if data is not None else {}
        for attempt in range(retries):
            try:
                async with session.request(method, self.server + path, data=data, params=params, headers=headers) as r:
                    text = await r.text()
                    payload = json.loads(text) if text and text.lstrip().startswith("{") else text
                    if r.status == 429 or r.status >= 500:
                        if attempt + 1 < retries:
                            await asyncio.sleep(0.2 * (attempt + 1))
                            continue
                    if r.status >= 400:
                        raise ApiError(r.status, payload)
                    return payload
            except (aiohttp.ClientConnectionError, asyncio.TimeoutError):
                if attempt + 1 == retries:
                    raise
                await asyncio.sleep(0.2 * (attempt + 1))

    async def get(self, path, **params):
        return await self.request("GET", path, params=params or None)

    async def create(self, path, body):
        return await self.request("POST", path, body)

    async def merge_patch(self, path, body):
        return await self.request("PATCH", path, body, content_type="application/merge-patch+json")

    async def delete(self, path, body=None):
        return await self.request("DELETE", path, body)

    async def watch(self, path, **params):
        """List then watch ``path`` forever, yielding ``(type, object)``; re-lists when needed."""
        session = await self.session()
        while True:
            try:
                listing = await self.get(path, **params)
            except (ApiError, aiohttp.ClientError, asyncio.TimeoutError) as e:
                log.warning("list %s failed: %s", path, e)
                await asyncio.sleep(1)
                continue
            for item in listing.get("items", []):
                yield "ADDED", item
            version = listing["metadata"]["resourceVersion"]
            while True:
                query = dict(
                    params, watch="1", resourceVersion=version, allowWatchBookmarks="true", timeoutSeconds="300"
                )
                try:
                    async with session.get(
                        self.server + path, params=query, timeout=aiohttp.ClientTimeout(total=None, sock_read=400)
                    ) as r:
                        if r.status == 410:
                            break  # too old: list again
                        if r.status >= 400:
                            raise ApiError(r.status, await r.text())
                        async for line in r.content:
                            if not line.strip():
                                continue
                            event = json.loads(line)
                            kind, obj = event["type"], event["object"]
                            if kind == "ERROR":
                                if obj.get("code") == 410:
                                    raise _Relist()
                                raise ApiError(obj.get("code", 500), obj)
                            version = obj["metadata"]["resourceVersion"]
                            if kind != "BOOKMARK":
                                yield kind, obj
                except _Relist:
                    break
                except (ApiError, aiohttp.ClientError, asyncio.TimeoutError, ValueError) as e:
                    log.info("watch %s interrupted (%s); resuming", path, e)
                    await asyncio.sleep(0.2)


class _Relist(Exception):
    pass


def run_component(coroutine):
    """Run a bench component (kubelet, operators) until SIGTERM or SIGINT cancels it."""
    import signal

    loop = asyncio.new_event_loop()
    task = loop.create_task(coroutine)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    try:
        loop.run_until_complete(task)
    except asyncio.CancelledError:
        pass
    finally:
        loop.close()
