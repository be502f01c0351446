"""A loopback proxy in front of the apiserver: request counts and injected faults.

Clients use the proxy's kubeconfig (HTTPS on 127.0.0.1 with its own self-signed certificate:
client-go sends no bearer token over plain HTTP); the proxy forwards to the apiserver over HTTPS
with the caller's own Authorization header. Control endpoints:

- ``GET /_kubebench/counts``: ``{"<verb> <resource>": n}``; ``DELETE`` resets them.
- ``PUT /_kubebench/faults``: ``{"rules": [{"verb": "create", "resource": "pods", "rate": 0.2,
  "error": 500 | 429 | "reset", "retry_after": 1}], "latency_ms": 0, "drop_watch_after_s": null}``.
  ``verb``/``resource`` may be ``*``. ``GET`` returns the current settings.
"""

import asyncio
import json
import logging
import random
import ssl
import sys
from collections import Counter

import aiohttp
from aiohttp import web

log = logging.getLogger("kubebench.faultproxy")

HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host", "content-length"}


def classify(method, path, query):
    """(verb, resource) of a Kubernetes API request, as RBAC and audit logs name them."""
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["api"]:
        rest = parts[2:]
    elif parts[:1] == ["apis"]:
        rest = parts[3:]
    else:
        return method.lower(), "/" + "/".join(parts[:1])
    name = None
    if rest[:1] == ["namespaces"] and len(rest) >= 3:
        rest = rest[2:]
    if not rest:
        return method.lower(), "(discovery)"
    resource = rest[0]
    if len(rest) > 1:
        name = rest[1]
    if len(rest) > 2:
        resource = f"{resource}/{rest[2]}"
    if method == "GET":
        verb = "watch" if query.get("watch") in ("1", "true") else ("get" if name else "list")
    elif method == "DELETE":
        verb = "delete" if name else "deletecollection"
    else:
        verb = {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method, method.lower())
    return verb, resource


class FaultProxy:
    def __init__(self, upstream, port=0, cert=None, key=None):
        self.upstream = upstream.rstrip("/")
        self.port = port
        self.cert, self.key = cert, key
        self.counts = Counter()
        self.settings = {"rules": [], "latency_ms": 0, "drop_watch_after_s": None}
        self.random = random.Random(1234)
        self._session = None

    def _fault_for(self, verb, resource):
        for rule in self.settings["rules"]:
            if rule.get("verb", "*") in ("*", verb) and rule.get("resource", "*") in ("*", resource):
                if self.random.random() < float(rule.get("rate", 1.0)):
                    return rule
        return None

    async def control(self, request):
        what = request.match_info["what"]
        if what == "counts":
            if request.method == "DELETE":
                self.counts.clear()
            return web.json_response({f"{v} {r}": n for (v, r), n in sorted(self.counts.items())})
        if what == "faults":
            if request.method == "PUT":
                body = await request.json()
                self.settings = {
                    "rules": body.get("rules", []),
                    "latency_ms": body.get("latency_ms", 0),
                    "drop_watch_after_s": body.get("drop_watch_after_s"),
                }
            return web.json_response(self.settings)
        return web.json_response({"status": 404, "message": f"no control endpoint {what}"}, status=404)

    async def forward(self, request):
        verb, resource = classify(request.method, request.path, request.query)
        self.counts[(verb, resource)] += 1
        if self.settings["latency_ms"]:
            await asyncio.sleep(self.settings["latency_ms"] / 1000)
        fault = self._fault_for(verb, resource)
        if fault:
            error = fault.get("error", 500)
            if error == "reset":
                request.transport.abort()
                return web.Response(status=500)
            status = int(error)
            headers = {"Retry-After": str(fault.get("retry_after", 1))} if status == 429 else {}
            body = {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "code": status,
                "message": f"kubebench injected fault for {verb} {resource}",
                "reason": "TooManyRequests" if status == 429 else "InternalError",
            }
            return web.json_response(body, status=status, headers=headers)

        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        data = await request.read() if request.body_exists else None
        is_watch = verb == "watch"
        try:
            upstream = await self._session.request(
                request.method,
                self.upstream + str(request.rel_url),
                headers=headers,
                data=data,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=None if is_watch else 120, sock_read=None),
            )
        except aiohttp.ClientError as e:
            return web.json_response(
                {"kind": "Status", "code": 502, "message": f"apiserver unreachable: {e}"}, status=502
            )
        async with upstream:
            response = web.StreamResponse(
                status=upstream.status,
                headers={k: v for k, v in upstream.headers.items() if k.lower() not in HOP_HEADERS},
            )
            await response.prepare(request)
            drop_after = self.settings["drop_watch_after_s"] if is_watch else None
            loop = asyncio.get_running_loop()
            deadline = loop.time() + drop_after if drop_after else None
            while True:
                timeout = max(deadline - loop.time(), 0) if deadline else None
                try:
                    chunk = await asyncio.wait_for(upstream.content.readany(), timeout)
                except asyncio.TimeoutError:
                    request.transport.abort()  # a dropped watch, as a flaky load balancer does
                    return response
                except aiohttp.ClientError:
                    break
                if not chunk:
                    break
                try:
                    await response.write(chunk)
                except ConnectionError:
                    return response
            await response.write_eof()
            return response

    async def start(self):
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        # no limit on connections to the apiserver: a client following a thousand logs holds a
        # thousand, and its next request must not wait in the proxy (the apiserver has none)
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=context, limit=0), auto_decompress=False
        )
        app = web.Application(client_max_size=64 * 1024**2)
        app.router.add_route("*", "/_kubebench/{what}", self.control)
        app.router.add_route("*", "/{tail:.*}", self.forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        server_context = None
        if self.cert:
            server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            server_context.load_cert_chain(self.cert, self.key)
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=server_context)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        return self

    async def stop(self):
        await self._runner.cleanup()
        await self._session.close()


def main(config_file):
    with open(config_file) as f:
        config = json.load(f)
    logging.basicConfig(level="INFO", stream=sys.stderr)

    async def run():
        proxy = await FaultProxy(config["upstream"], config["port"], config.get("cert"), config.get("key")).start()
        with open(config["ready_file"], "w") as f:
            f.write(str(proxy.port))
        await asyncio.Event().wait()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main(sys.argv[1])
