"""``pods/exec`` as the kubelet serves it: a command in the pod's environment, streamed back.

The apiserver hands the client's upgrade request through to the kubelet unchanged, so the
kubelet speaks the client's protocol. This serves the WebSocket one (what the ``kubernetes``
Python client and newer kubectl use): subprotocols ``v4.channel.k8s.io`` (and v1-v3), one byte
of channel before each message (0 stdin, 1 stdout, 2 stderr, 3 error/status, 4 resize), and on
v4 a final ``Status`` on channel 3 with the exit code. SPDY/3.1 (kubectl 1.20) is in
:mod:`.spdy`.
"""

import asyncio
import json

from aiohttp import WSMsgType, web

PROTOCOLS = ("v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io")
STDIN, STDOUT, STDERR, ERROR, RESIZE = range(5)


def exec_request(query):
    """(argv, stdin, stdout, stderr, tty) from the exec query: ``command`` repeated, and the
    streams as the apiserver names them to a kubelet (``input``, ``output``, ``error``) or as
    a client names them (``stdin``, ``stdout``, ``stderr``)."""
    argv = query.getall("command", [])

    def flag(*names):
        return any(query.get(name, "").lower() in ("1", "true") for name in names)

    return argv, flag("input", "stdin"), flag("output", "stdout"), flag("error", "stderr"), flag("tty")


def exit_status(code):
    """The Status a v4 client reads the exit code from (as the kubelet writes it)."""
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    return {
        "metadata": {},
        "status": "Failure",
        "reason": "NonZeroExitCode",
        "message": f"command terminated with non-zero exit code: error executing command [...], exit code {code}",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }


def failure_status(message):
    return {"metadata": {}, "status": "Failure", "message": message, "reason": "InternalError"}


async def serve_websocket(request, start):
    """Run ``await start(argv, stdin)`` -> asyncio subprocess, streaming over a WebSocket."""
    argv, want_stdin, want_stdout, want_stderr, _tty = exec_request(request.query)
    ws = web.WebSocketResponse(protocols=PROTOCOLS, max_msg_size=0)
    await ws.prepare(request)
    v4 = ws.ws_protocol == "v4.channel.k8s.io"

    async def send(channel, data):
        if not ws.closed:
            await ws.send_bytes(bytes([channel]) + data)

    try:
        proc = await start(argv, want_stdin)
    except (OSError, ValueError) as e:
        await send(ERROR, json.dumps(failure_status(str(e))).encode() if v4 else str(e).encode())
        await ws.close()
        return ws

    async def pump(stream, channel, wanted):
        while data := await stream.read(65536):
            if wanted:
                await send(channel, data)

    async def feed():
        async for message in ws:
            if message.type in (WSMsgType.BINARY, WSMsgType.TEXT):
                data = message.data if isinstance(message.data, bytes) else message.data.encode("latin-1")
                if data and data[0] == STDIN and proc.stdin:
                    if len(data) == 1:  # an empty stdin message: end of input
                        proc.stdin.close()
                        continue
                    proc.stdin.write(data[1:])
                    await proc.stdin.drain()
            elif message.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                break
        if proc.stdin and not proc.stdin.is_closing():
            proc.stdin.close()

    feeder = asyncio.ensure_future(feed()) if want_stdin else None
    await asyncio.gather(pump(proc.stdout, STDOUT, want_stdout), pump(proc.stderr, STDERR, want_stderr))
    code = await proc.wait()
    if feeder:
        feeder.cancel()
    if v4:
        await send(ERROR, json.dumps(exit_status(code)).encode())
    elif code:
        await send(ERROR, f"command terminated with non-zero exit code: {code}".encode())
    await ws.close()
    return ws
