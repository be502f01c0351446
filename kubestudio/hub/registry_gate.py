"""The embedded default's registry, behind a gate that asks for credentials.

Debian's ``docker-registry`` (distribution) has one kind of account: with ``htpasswd`` auth anyone
who logs in may push. The embedded default needs two: the image service pushes, everything else
(the spawner, servers) only pulls. So the registry listens on a Unix socket in a folder only root
can enter, and this gate listens on the registry's public address (``127.0.0.1:<port>``) and passes
on a request only when its Basic credentials allow it:

- the push account: any request;
- the pull account: ``GET`` and ``HEAD`` only (manifests, blobs, tags, the catalog), else 403;
- a build's own account (``build-<id>``, a **grant** the image service writes into the grants
  folder before the build and removes after it): ``GET``/``HEAD`` of the repositories that build's
  user may read (their own, the shared bases, their projects'), pushes to the build's own
  repository only, never the catalog or a delete. What a Dockerfile says (``FROM``, ``COPY
  --from``, ``RUN --mount=from=``, in whatever spelling buildah accepts) is decided here, by the
  repository each request names, not by a parse of the Dockerfile;
- no or wrong credentials: 401 with a ``Basic`` challenge, which docker, buildah, skopeo and
  podman answer with the credentials of their auth file.

Each request goes to the registry on a connection of its own (``Connection: close``), so every
request on a kept-alive client connection is checked; bodies (layers) are streamed both ways.

``python -m kubestudio.hub.registry_gate --listen HOST:PORT --socket PATH --credentials FILE
[--grants DIR] -- docker-registry serve CONFIG`` runs the registry as its child and stops it when it stops.

On Kubernetes the registry is the admin's (the chart's ``registry.host``) and the gate stands in
front of it for kaniko's build pods only: ``--upstream http(s)://HOST[:PORT] [--upstream-auth
FILE] --grants DIR`` (no child, no push or pull account: builds' grants alone). Each request
passed on gets the upstream's own credentials (Basic, from a Docker config file) in place of the
build's, its ``Host`` is the upstream's, and an absolute ``Location`` the upstream answers with
(an upload's next URL) is made relative, so the client comes back through the gate. The
upstream must accept Basic credentials (docker-registry with htpasswd, Harbor, Nexus, GitLab's
registry do; a token-only registry needs a robot account that does).
"""

import argparse
import asyncio
import base64
import fnmatch
import hmac
import json
import os
import re
import signal
import ssl
import sys
from urllib.parse import parse_qs, urlsplit

from .. import dockerauth
from ..registry_grants import load_grant, note_refusal

READ_ONLY = ("GET", "HEAD")
TLS_HANDSHAKE = b"\x16"  # the first byte of a TLS record carrying a ClientHello
MAX_HEAD = 64 * 1024
CHUNK = 256 * 1024
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "authorization",
    "te",
    "trailer",
    "upgrade",
}


def load_credentials(path):
    """{"push": (user, password), "pull": (user, password)} from the hub's credentials file."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    return {role: (data[role]["user"], data[role]["password"]) for role in ("push", "pull")}


# a repository name as distribution's own routes accept it: no "%", no "..", nothing to decode
COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
NAME = rf"{COMPONENT}(?:/{COMPONENT})*"
ROUTES = [  # (pattern of the path, what it is)
    (re.compile(r"^/v2/?$"), "ping"),
    (re.compile(rf"^/v2/({NAME})/manifests/([A-Za-z0-9_.:+-]+)$"), "manifests"),
    (re.compile(rf"^/v2/({NAME})/blobs/([A-Za-z0-9_.:+=-]+)$"), "blobs"),
    (re.compile(rf"^/v2/({NAME})/blobs/uploads/([A-Za-z0-9_=-]*)$"), "uploads"),
    (re.compile(rf"^/v2/({NAME})/tags/list$"), "tags"),
]


def _basic(authorization):
    """(user, password) of a Basic Authorization header, or None."""
    scheme, _, value = (authorization or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, _, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return user, password


def _matches(name, patterns):
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def grant_allows(grant, method, target):
    """None when a build's grant allows ``method`` on ``target`` (the request line's path and
    query), else why not."""
    path, _, query = target.partition("?")
    for pattern, kind in ROUTES:
        match = pattern.match(path)
        if match:
            break
    else:
        return f"{path[:200]} is not a registry request a build makes"
    if kind == "ping":
        return None
    name = match.group(1)
    read, push = grant.get("read", []), grant.get("push", [])
    if method in READ_ONLY:
        if kind == "uploads":
            return "reading an upload is not a build's"
        if _matches(name, read) or _matches(name, push):
            return None
        return f"this build may not read {name}: it is not one of its user's images, a shared base, or an image of their projects"
    if method == "DELETE":
        return "a build deletes nothing"
    if kind not in ("uploads", "manifests") or method not in ("POST", "PUT", "PATCH"):
        return f"{method} of {kind} is not a build's"
    if not _matches(name, push):
        return f"this build may push only to its own repository, not to {name}"
    source = parse_qs(query).get("from")
    if source and not (_matches(source[0], read) or _matches(source[0], push)):
        return f"this build may not read {source[0]}"
    return None


def role_of(authorization, credentials):
    """Which account a request's Authorization header logs in as ("push", "pull"), or None."""
    basic = _basic(authorization)
    if basic is None:
        return None
    user, password = basic
    for role, (known_user, known_password) in credentials.items():
        # every comparison is made, so the time taken says nothing about which part was wrong
        user_ok = hmac.compare_digest(user.encode(), known_user.encode())
        password_ok = hmac.compare_digest(password.encode(), known_password.encode())
        if user_ok and password_ok:
            return role
    return None


def refusal(status, message):
    code = {401: "UNAUTHORIZED", 403: "DENIED"}.get(status, "UNAVAILABLE")
    body = json.dumps({"errors": [{"code": code, "message": message, "detail": None}]}).encode()
    reason = {401: "Unauthorized", 403: "Forbidden"}.get(status, "Bad Gateway")
    head = [
        f"HTTP/1.1 {status} {reason}",
        "Content-Type: application/json; charset=utf-8",
        f"Content-Length: {len(body)}",
        "Docker-Distribution-API-Version: registry/2.0",
        "Connection: close",
    ]
    if status == 401:
        head.append('WWW-Authenticate: Basic realm="KubeStudio registry"')
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class Upstream:
    """Where the gate passes requests on: the registry's Unix socket (the embedded default), or an
    ``http(s)://host[:port]`` registry with credentials of its own (Kubernetes)."""

    def __init__(self, socket_path="", url="", auth=None):
        self.socket_path = socket_path
        self.auth = auth
        self.host = self.tls = None
        if url:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
                raise ValueError(f"--upstream: give http(s)://HOST[:PORT], not {url!r}")
            self.host = parts.netloc
            self.address = (parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
            self.tls = ssl.create_default_context() if parts.scheme == "https" else None
            self.origins = {f"{parts.scheme}://{parts.netloc}", f"{parts.scheme}://{parts.hostname}"}

    async def connect(self):
        if self.socket_path:
            return await asyncio.open_unix_connection(self.socket_path, limit=MAX_HEAD)
        return await asyncio.open_connection(
            *self.address, ssl=self.tls, limit=MAX_HEAD, server_hostname=self.address[0] if self.tls else None
        )

    def request_headers(self, headers):
        """The client's headers as the upstream gets them: no hop-by-hop ones, no client
        credentials; over TCP the upstream's Host and its own credentials."""
        kept = [f"{k}:{v}" for k, v in headers if k.strip().lower() not in HOP_BY_HOP]
        if self.host is None:
            return kept
        kept = [h for h in kept if h.split(":", 1)[0].strip().lower() != "host"] + [f"Host: {self.host}"]
        if self.auth:
            token = base64.b64encode(f"{self.auth[0]}:{self.auth[1]}".encode()).decode()
            kept.append(f"Authorization: Basic {token}")
        return kept

    def response_head(self, head):
        """The upstream's answer head as the client gets it: an absolute Location on the upstream
        made relative (the next request comes through the gate), never its challenge for the
        gate's own credentials."""
        if self.host is None:
            return head
        lines = head.decode("latin-1").split("\r\n")
        for i, line in enumerate(lines[1:], 1):
            name, _, value = line.partition(":")
            if name.strip().lower() == "location":
                value = value.strip()
                for origin in self.origins:
                    if value.startswith(origin + "/"):
                        value = value[len(origin) :]
                lines[i] = f"Location: {value}"
        return "\r\n".join(lines).encode("latin-1")


class Gate:
    def __init__(self, upstream, credentials, grants=""):
        self.upstream = upstream if isinstance(upstream, Upstream) else Upstream(socket_path=upstream)
        self.credentials = credentials
        self.grants = grants

    def decide(self, method, target, authorization):
        """(status, message) refusing the request, or None to pass it on."""
        role = role_of(authorization, self.credentials)
        if role == "push":
            return None
        if role == "pull":
            return None if method in READ_ONLY else (403, "these credentials may only pull")
        basic = _basic(authorization)
        grant = load_grant(self.grants, *basic) if basic else None
        if grant is None:
            return 401, "this registry needs the hub's credentials"
        reason = grant_allows(grant, method, target)
        if reason is None:
            return None
        note_refusal(self.grants, basic[0], reason)
        return 403, reason

    async def handle(self, reader, writer):
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    async def _serve(self, reader, writer):
        try:
            first = await reader.readexactly(1)
            if first == TLS_HANDSHAKE:
                # a client trying TLS first (containers/image does, for a registry it may reach
                # over plain HTTP): closed at once, so it falls back to HTTP now rather than after
                # its 10 s handshake timeout, on every pull and push
                return
            head = first + await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return  # the client closed without a request
        lines = head.decode("latin-1").split("\r\n")[:-2]
        method, _, rest = lines[0].partition(" ")
        headers = [line.split(":", 1) for line in lines[1:] if ":" in line]
        authorization = next((v.strip() for k, v in headers if k.strip().lower() == "authorization"), "")
        refused = self.decide(method.upper(), rest.rsplit(" ", 1)[0], authorization)
        if refused is None:
            # one request per connection (Connection: close): the next one is checked again
            await self._forward(lines[0], headers, reader, writer)
            return
        status, message = refused
        writer.write(refusal(status, message))
        await writer.drain()  # the request's body, if any, is never read: the connection ends here

    async def _forward(self, request_line, headers, reader, writer):
        try:
            upstream_reader, upstream_writer = await self.upstream.connect()
        except OSError as e:
            writer.write(refusal(502, f"the registry behind the gate cannot be reached: {type(e).__name__}"))
            await writer.drain()
            return
        kept = self.upstream.request_headers(headers)
        upstream_writer.write(("\r\n".join([request_line, *kept, "Connection: close"]) + "\r\n\r\n").encode("latin-1"))
        to_registry = asyncio.ensure_future(_pipe(reader, upstream_writer))
        try:
            try:
                head = await upstream_reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                return
            writer.write(self.upstream.response_head(head))
            await _pipe(upstream_reader, writer)  # the registry closes after its answer
        finally:
            to_registry.cancel()
            upstream_writer.close()


async def _pipe(reader, writer):
    while True:
        data = await reader.read(CHUNK)
        if not data:
            return
        writer.write(data)
        await writer.drain()


async def serve(listen, upstream, credentials, registry_argv, grants=""):
    """Gate requests on ``listen`` until SIGINT/SIGTERM or, with ``registry_argv``, until that
    child (the registry) ends."""
    host, _, port = listen.rpartition(":")
    registry = None
    if registry_argv:
        registry = await asyncio.create_subprocess_exec(*registry_argv, stdin=asyncio.subprocess.DEVNULL)
    gate = Gate(upstream, credentials, grants)
    server = await asyncio.start_server(gate.handle, host, int(port), limit=MAX_HEAD)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    waits = [asyncio.ensure_future(stop.wait())]
    if registry is not None:
        waits.append(asyncio.ensure_future(registry.wait()))
    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    server.close()
    if registry is None:
        return 0
    if registry.returncode is None:
        registry.terminate()
        try:
            await asyncio.wait_for(registry.wait(), 10)
        except asyncio.TimeoutError:
            registry.kill()
            await registry.wait()
    return 0 if stop.is_set() else (registry.returncode or 1)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m kubestudio.hub.registry_gate", description=__doc__.split("\n")[0])
    parser.add_argument("--listen", required=True, help="HOST:PORT the gate listens on")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--socket", help="the registry's Unix socket (the registry runs as the gate's child)")
    where.add_argument("--upstream", help="http(s)://HOST[:PORT] of a registry that runs elsewhere")
    parser.add_argument("--upstream-auth", default="", help="Docker config file with the upstream's credentials")
    parser.add_argument("--credentials", default="", help="JSON file: {push: {user, password}, pull: {...}}")
    parser.add_argument("--grants", default="", help="folder of the builds' grants (written by the image service)")
    parser.add_argument("registry", nargs=argparse.REMAINDER, help="-- the registry's command (with --socket)")
    args = parser.parse_args(argv)
    registry = args.registry[1:] if args.registry[:1] == ["--"] else args.registry
    credentials = load_credentials(args.credentials) if args.credentials else {}
    if args.socket:
        if not registry:
            parser.error("give the registry's command after --")
        if os.path.exists(args.socket):
            os.unlink(args.socket)  # left by a registry that was killed
        upstream = Upstream(socket_path=args.socket)
    else:
        if registry:
            parser.error("--upstream takes no registry command: that registry runs elsewhere")
        try:
            upstream = Upstream(url=args.upstream)
            auth = dockerauth.credentials(args.upstream_auth, upstream.host) if args.upstream_auth else None
        except (ValueError, dockerauth.AuthFileError) as e:
            parser.error(str(e))
        if args.upstream_auth and auth is None:
            parser.error(f"--upstream-auth: {args.upstream_auth} has no credentials for {upstream.host}")
        upstream.auth = auth
    sys.exit(asyncio.run(serve(args.listen, upstream, credentials, registry, args.grants)))


if __name__ == "__main__":
    main()
