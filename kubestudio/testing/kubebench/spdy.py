"""``pods/exec`` over SPDY/3.1, the protocol kubectl 1.20 speaks (``remotecommand`` v4).

After the HTTP upgrade the client opens one SPDY stream per channel (header ``streamtype``:
``error``, ``stdin``, ``stdout``, ``stderr``, ``resize``); the kubelet answers each with a
SYN_REPLY, copies the command's output to the stdout and stderr streams, ends stdin on the
client's FIN, and on a non-zero exit writes a ``Status`` with the exit code to the error stream
(v4: an empty error stream means success). Frame layout and header compression as in the SPDY/3
draft: 8-byte frame headers, header blocks of 32-bit length-prefixed names and values, compressed
with one zlib stream per direction primed with the protocol's dictionary.
"""

import asyncio
import json
import struct
import zlib

from aiohttp import web

from .execstream import exec_request, exit_status, failure_status

SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = 1, 2, 3, 4, 6, 7, 8, 9
FLAG_FIN = 0x01
PROTOCOL = "v4.channel.k8s.io"

# The SPDY/3 header dictionary: these words, each with a 32-bit length, then a raw tail.
_WORDS = (
    (
        "options head post put delete trace accept accept-charset accept-encoding accept-language "
        "accept-ranges age allow authorization cache-control connection content-base content-encoding "
        "content-language content-length content-location content-md5 content-range content-type date "
        "etag expect expires from host if-match if-modified-since if-none-match if-range "
        "if-unmodified-since last-modified location max-forwards pragma proxy-authenticate "
        "proxy-authorization range referer retry-after server te trailer transfer-encoding upgrade "
        "user-agent vary via warning www-authenticate method get status"
    ).split()
    + ["200 OK"]
    + "version HTTP/1.1 url public set-cookie keep-alive origin".split()
)
_TAIL = (
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request"
    "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented"
    "503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 "
    "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,"
    "application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age="
    "gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
)


def _dictionary():
    return b"".join(struct.pack(">I", len(w)) + w.encode() for w in _WORDS) + _TAIL.encode()


DICTIONARY = _dictionary()


class Session:
    """One upgraded connection: frame reader and writer with the two zlib contexts."""

    def __init__(self, reader, transport):
        self.reader, self.transport = reader, transport
        self.inflate = zlib.decompressobj(zdict=DICTIONARY)
        self.deflate = zlib.compressobj(zdict=DICTIONARY)

    async def frame(self):
        """(control type or None for data, flags, stream id, payload); None at the end."""
        try:
            head = await self.reader.readexactly(8)
            length = int.from_bytes(head[5:8], "big")
            payload = await self.reader.readexactly(length)
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        flags = head[4]
        if head[0] & 0x80:
            kind = struct.unpack(">H", head[2:4])[0]
            stream = struct.unpack(">I", payload[:4])[0] & 0x7FFFFFFF if len(payload) >= 4 else 0
            return kind, flags, stream, payload
        return None, flags, struct.unpack(">I", head[:4])[0] & 0x7FFFFFFF, payload

    def headers(self, block):
        data = self.inflate.decompress(block)
        count, at, found = struct.unpack(">I", data[:4])[0], 4, {}
        for _ in range(count):
            size = struct.unpack(">I", data[at : at + 4])[0]
            name, at = data[at + 4 : at + 4 + size].decode().lower(), at + 4 + size
            size = struct.unpack(">I", data[at : at + 4])[0]
            found[name], at = data[at + 4 : at + 4 + size].decode(), at + 4 + size
        return found

    def _control(self, kind, flags, payload):
        if not self.transport.is_closing():
            self.transport.write(struct.pack(">HHI", 0x8003, kind, (flags << 24) | len(payload)) + payload)

    def reply(self, stream):
        block = self.deflate.compress(struct.pack(">I", 0)) + self.deflate.flush(zlib.Z_SYNC_FLUSH)
        self._control(SYN_REPLY, 0, struct.pack(">I", stream) + block)

    def data(self, stream, payload, fin=False):
        if not self.transport.is_closing():
            self.transport.write(struct.pack(">II", stream, ((FLAG_FIN if fin else 0) << 24) | len(payload)) + payload)

    def pong(self, payload):
        self._control(PING, 0, payload)


class _Feed:
    """What aiohttp's protocol feeds an upgraded connection's bytes to."""

    def __init__(self, reader):
        self.reader = reader

    def feed_data(self, data):
        self.reader.feed_data(data)
        return False, b""

    def feed_eof(self):
        self.reader.feed_eof()


async def serve_spdy(request, start):
    """Run ``await start(argv, stdin)`` -> asyncio subprocess over SPDY/3.1 streams."""
    argv, want_stdin, want_stdout, want_stderr, tty = exec_request(request.query)
    offered = [p.strip() for p in request.headers.getall("X-Stream-Protocol-Version", [])]
    if PROTOCOL not in offered:
        return web.Response(status=403, text=f"exec here speaks {PROTOCOL}; the client offered {offered}")
    response = web.StreamResponse(
        status=101, headers={"Connection": "Upgrade", "Upgrade": "SPDY/3.1", "X-Stream-Protocol-Version": PROTOCOL}
    )
    # the bytes after the upgrade are SPDY frames, not HTTP: take them before the HTTP parser does
    # (as aiohttp's own WebSocketResponse does)
    frames = asyncio.StreamReader()
    request.protocol.set_parser(_Feed(frames))
    await response.prepare(request)
    session = Session(frames, request.transport)
    expected = 1 + want_stdin + want_stdout + want_stderr + tty
    streams = {}  # streamtype -> stream id
    proc = None
    pumps = []

    async def pump(source, stream):
        while data := await source.read(32768):
            session.data(stream, data)
        session.data(stream, b"", fin=True)

    async def run():
        nonlocal proc
        try:
            proc = await start(argv, want_stdin)
        except (OSError, ValueError) as e:
            session.data(streams["error"], json.dumps(failure_status(str(e))).encode(), fin=True)
            return
        if want_stdout:
            pumps.append(asyncio.ensure_future(pump(proc.stdout, streams["stdout"])))
        if want_stderr:
            pumps.append(asyncio.ensure_future(pump(proc.stderr, streams["stderr"])))
        await asyncio.gather(*pumps)
        code = await proc.wait()
        status = b"" if code == 0 else json.dumps(exit_status(code)).encode()
        session.data(streams["error"], status, fin=True)
        await asyncio.sleep(0.05)  # let the client read the last frames before the connection ends
        if not session.transport.is_closing():
            session.transport.close()

    runner = None
    while (frame := await session.frame()) is not None:
        kind, flags, stream, payload = frame
        if kind == SYN_STREAM:
            streamtype = session.headers(payload[10:]).get("streamtype", "")
            streams[streamtype] = stream
            session.reply(stream)
            if len(streams) == expected and runner is None:
                runner = asyncio.ensure_future(run())
        elif kind == PING:
            session.pong(payload)
        elif kind == GOAWAY:
            break
        elif kind is None and stream == streams.get("stdin") and proc is not None and proc.stdin:
            if payload:
                proc.stdin.write(payload)
                await proc.stdin.drain()
            if flags & FLAG_FIN:
                proc.stdin.close()
        elif kind is None and stream == streams.get("stdin") and payload:
            # input before the command started: wait for it, then hand it over
            while proc is None and runner is not None and not runner.done():
                await asyncio.sleep(0.01)
            if proc is not None and proc.stdin:
                proc.stdin.write(payload)
                if flags & FLAG_FIN:
                    proc.stdin.close()
    if runner is not None:
        await runner
    return response
