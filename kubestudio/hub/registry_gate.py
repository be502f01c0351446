"""The embedded default's registry, behind a gate that asks for credentials.

Debian's ``docker-registry`` (distribution) has one kind of account: with ``htpasswd`` auth anyone
who logs in may push. The embedded default needs two: the image service pushes, everything else
(the spawner, servers) only pulls. So the registry listens on a Unix socket in a folder only root
can enter, and this gate listens on the registry's public address (``127.0.0.1:<port>``) and passes
on a request only when its Basic credentials allow it:

- the push account: any request;
- the pull account: ``GET`` and ``HEAD`` only (manifests, blobs, tags, the catalog), else 403;
- no or wrong credentials: 401 with a ``Basic`` challenge, which docker, buildah, skopeo and
  podman answer with the credentials of their auth file.

Each request goes to the registry on a connection of its own (``Connection: close``), so every
request on a kept-alive client connection is checked; bodies (layers) are streamed both ways.

``python -m kubestudio.hub.registry_gate --listen HOST:PORT --socket PATH --credentials FILE --
docker-registry serve CONFIG`` runs the registry as its child and stops it when it stops.
"""

import argparse
import asyncio
import base64
import hmac
import json
import os
import signal
import sys

READ_ONLY = ("GET", "HEAD")
MAX_HEAD = 64 * 1024
CHUNK = 256 * 1024
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "proxy-authorization", "authorization", "te",
              "trailer", "upgrade"}


def load_credentials(path):
    """{"push": (user, password), "pull": (user, password)} from the hub's credentials file."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    return {role: (data[role]["user"], data[role]["password"]) for role in ("push", "pull")}


def role_of(authorization, credentials):
    """Which account a request's Authorization header logs in as ("push", "pull"), or None."""
    scheme, _, value = (authorization or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, _, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    for role, (known_user, known_password) in credentials.items():
        # every comparison is made, so the time taken says nothing about which part was wrong
        user_ok = hmac.compare_digest(user.encode(), known_user.encode())
        password_ok = hmac.compare_digest(password.encode(), known_password.encode())
        if user_ok and password_ok:
            return role
    return None


def refusal(status, message):
    code = "UNAUTHORIZED" if status == 401 else "DENIED"
    body = json.dumps({"errors": [{"code": code, "message": message, "detail": None}]}).encode()
    reason = "Unauthorized" if status == 401 else "Forbidden"
    head = [f"HTTP/1.1 {status} {reason}", "Content-Type: application/json; charset=utf-8",
            f"Content-Length: {len(body)}", "Docker-Distribution-API-Version: registry/2.0", "Connection: close"]
    if status == 401:
        head.append('WWW-Authenticate: Basic realm="KubeStudio registry"')
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class Gate:
    def __init__(self, socket_path, credentials):
        self.socket_path = socket_path
        self.credentials = credentials

    async def handle(self, reader, writer):
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    async def _serve(self, reader, writer):
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return  # the client closed without a request
        lines = head.decode("latin-1").split("\r\n")[:-2]
        method = lines[0].split(" ", 1)[0].upper()
        headers = [line.split(":", 1) for line in lines[1:] if ":" in line]
        authorization = next((v.strip() for k, v in headers if k.strip().lower() == "authorization"), "")
        role = role_of(authorization, self.credentials)
        if role is None:
            status, message = 401, "this registry needs the hub's credentials"
        elif role == "pull" and method not in READ_ONLY:
            status, message = 403, "these credentials may only pull"
        else:
            # one request per connection (Connection: close): the next one is checked again
            await self._forward(lines[0], headers, reader, writer)
            return
        writer.write(refusal(status, message))
        await writer.drain()  # the request's body, if any, is never read: the connection ends here

    async def _forward(self, request_line, headers, reader, writer):
        upstream_reader, upstream_writer = await asyncio.open_unix_connection(self.socket_path, limit=MAX_HEAD)
        kept = [f"{k}:{v}" for k, v in headers if k.strip().lower() not in HOP_BY_HOP]
        upstream_writer.write(("\r\n".join([request_line, *kept, "Connection: close"]) + "\r\n\r\n").encode("latin-1"))
        to_registry = asyncio.ensure_future(_pipe(reader, upstream_writer))
        try:
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


async def serve(listen, socket_path, credentials, registry_argv):
    host, _, port = listen.rpartition(":")
    registry = await asyncio.create_subprocess_exec(*registry_argv, stdin=asyncio.subprocess.DEVNULL)
    gate = Gate(socket_path, credentials)
    server = await asyncio.start_server(gate.handle, host, int(port), limit=MAX_HEAD)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    ended = asyncio.ensure_future(registry.wait())
    await asyncio.wait([ended, asyncio.ensure_future(stop.wait())], return_when=asyncio.FIRST_COMPLETED)
    server.close()
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
    parser.add_argument("--socket", required=True, help="the registry's Unix socket")
    parser.add_argument("--credentials", required=True, help="JSON file: {push: {user, password}, pull: {...}}")
    parser.add_argument("registry", nargs=argparse.REMAINDER, help="-- the registry's command")
    args = parser.parse_args(argv)
    registry = args.registry[1:] if args.registry[:1] == ["--"] else args.registry
    if not registry:
        parser.error("give the registry's command after --")
    if os.path.exists(args.socket):
        os.unlink(args.socket)  # left by a registry that was killed
    sys.exit(asyncio.run(serve(args.listen, args.socket, load_credentials(args.credentials), registry)))


if __name__ == "__main__":
    main()
