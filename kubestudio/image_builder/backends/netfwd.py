"""Loopback addresses inside a build's network namespace that lead to the host, one by one.

buildah itself runs in the build sandbox's network namespace (so an ``ADD <url>`` it fetches can
reach neither the hub nor any other loopback listener of the host), yet it must reach the
registry, which listens on the host's loopback. Each forward is a pair:

- on the host, the image service listens on a Unix socket of its own (:func:`serve_unix`) and
  connects each client to the registry's ``host:port``;
- in the namespace, this module (``python -m kubestudio.image_builder.backends.netfwd
  127.0.0.1:PORT=SOCKET ...``, started with ``nsenter --net``) listens on ``127.0.0.1:PORT`` and
  connects each client to that Unix socket (a path on the filesystem, which no network namespace
  hides). It writes ``ready`` once every address listens.

Nothing else of the host's loopback exists in the namespace.
"""

import asyncio
import sys

CHUNK = 256 * 1024


async def _pipe(reader, writer):
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        try:
            writer.write_eof()
        except (OSError, RuntimeError):
            writer.close()


async def splice(reader, writer, connect):
    """Join a client to what ``connect()`` opens, both ways, until both ends are done."""
    try:
        upstream_reader, upstream_writer = await connect()
    except OSError:
        writer.close()
        return
    try:
        await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))
    finally:
        upstream_writer.close()
        writer.close()


async def serve_unix(path, host, port):
    """The host side: a Unix socket at ``path`` whose clients reach ``host:port``."""
    return await asyncio.start_unix_server(lambda r, w: splice(r, w, lambda: asyncio.open_connection(host, port)), path)


async def _main(pairs):
    servers = []
    for address, socket_path in pairs:
        host, _, port = address.rpartition(":")
        servers.append(
            await asyncio.start_server(
                lambda r, w, path=socket_path: splice(r, w, lambda: asyncio.open_unix_connection(path)), host, int(port)
            )
        )
    print("ready", flush=True)
    await asyncio.Event().wait()  # until the sandbox kills the group


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    pairs = [arg.split("=", 1) for arg in argv]
    if not pairs or any(len(p) != 2 for p in pairs):
        sys.exit("usage: python -m kubestudio.image_builder.backends.netfwd HOST:PORT=SOCKET ...")
    asyncio.run(_main(pairs))


if __name__ == "__main__":
    main()
