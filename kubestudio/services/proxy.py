"""Streaming a request through to a backend the service runs (a board's TensorBoard, a served
model), for a tornado handler: bodies as they come (gzip untouched), one kept-alive connection
pool, and neither the connection's own headers nor the hub's cookies and tokens passed on."""

import asyncio

import aiohttp

from .web import http_error

# never passed on: the connection's own headers, and the hub's credentials
HOP_HEADERS = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
}
DROPPED_REQUEST_HEADERS = HOP_HEADERS | {"cookie", "authorization", "x-xsrftoken", "x-csrftoken"}
DROPPED_RESPONSE_HEADERS = HOP_HEADERS | {"set-cookie"}
# headers tornado sets on every answer: the backend's replace them rather than come twice
ONCE_HEADERS = {"date", "server"}

WHOLE_BODY_BYTES = 256 * 1024  # answers up to this size are sent in one piece, larger ones as they come

# Sent again when the backend closed the connection before answering: a kept-alive connection the
# backend had just closed (a pod going away in a rollout, an idle timeout), or an address that
# no longer listens while the endpoints catch up. Waits between tries, in seconds.
RESEND_AFTER = (0, 0.2, 0.5)
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
UNANSWERED = (aiohttp.ServerDisconnectedError, aiohttp.ClientConnectorError, aiohttp.ClientOSError)


class UpstreamPool:
    """One kept-alive connection pool to the backends a service forwards to, made on first use and
    closed when the service stops; the app's settings hold it (``upstream``), for :func:`forward`."""

    def __init__(self):
        self._session = None

    def session(self):
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                auto_decompress=False,  # bodies as they are
                timeout=aiohttp.ClientTimeout(total=None, sock_read=300),
                connector=aiohttp.TCPConnector(limit=100),
            )
        return self._session

    async def close(self):
        if self._session is not None:
            await self._session.close()
            self._session = None


async def forward(handler, url, what, location=None, backend_headers=None, replayable=False):
    """Send ``handler``'s request to ``url`` (through the app's ``upstream`` pool) and stream the
    answer back. ``what`` names the backend
    in a 502 (``board 1a2b: TensorBoard``); ``location(value)`` rewrites a redirect's target;
    ``backend_headers``: what the backend asks of its caller (its secret), which replace any the
    request brought. A request the backend dropped unanswered is sent again (``RESEND_AFTER``)
    when its method is safe, or when ``replayable`` says sending it twice does no harm (a
    prediction)."""
    request = handler.request
    private = {k.lower() for k in backend_headers or ()}
    headers = {
        k: v
        for k, v in request.headers.get_all()
        if k.lower() not in DROPPED_REQUEST_HEADERS and k.lower() not in private
    }
    headers.update(backend_headers or {})
    headers["X-Forwarded-Proto"] = request.protocol
    headers["X-Forwarded-Host"] = request.host
    body = request.body if request.method in ("POST", "PUT", "PATCH") else None
    waits = RESEND_AFTER if replayable or request.method in SAFE_METHODS else RESEND_AFTER[:1]
    for attempt, wait in enumerate(waits):
        if attempt:
            await asyncio.sleep(wait)
            handler.clear()  # whatever the dropped try had set: its status and headers
        try:
            await _send(handler.settings["upstream"].session(), handler, request, url, headers, body, location)
        except UNANSWERED as e:
            if handler._headers_written or attempt == len(waits) - 1:
                failure = e
                break
        except aiohttp.ClientError as e:
            failure = e
            break
        else:
            handler.finish()
            return
    if handler._headers_written:
        raise failure
    raise http_error(502, f"{what} did not answer ({failure})") from None


async def _send(session, handler, request, url, headers, body, location):
    """One try: the backend's status, headers and body onto ``handler``."""
    # a body the caller sent with no Content-Type goes on with none (aiohttp would add octet-stream)
    async with session.request(
        request.method, url, headers=headers, data=body, allow_redirects=False, skip_auto_headers=("Content-Type",)
    ) as response:
        handler.set_status(response.status, response.reason)
        handler.clear_header("Cache-Control")
        handler.clear_header("Content-Type")
        for key, value in response.headers.items():
            if key.lower() in DROPPED_RESPONSE_HEADERS:
                continue
            if key.lower() == "location" and location is not None:
                value = location(value)
            if key.lower() in ONCE_HEADERS:
                handler.set_header(key, value)  # the backend's, in place of tornado's own
            else:
                handler.add_header(key, value)
        length = response.headers.get("Content-Length")
        if length is not None and length.isdigit() and int(length) <= WHOLE_BODY_BYTES:
            # a small answer (a prediction, a JSON list) in one write with the headers
            handler.write(await response.read())
        else:
            async for chunk in response.content.iter_any():  # as it comes: never the whole body
                handler.write(chunk)
                await handler.flush()
