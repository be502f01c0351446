"""services.proxy.forward: a request the backend dropped unanswered is sent again when that is
harmless (safe methods, predictions), never otherwise, and never once the answer has begun."""

import asyncio

import aiohttp
import pytest
import tornado.httpserver
import tornado.web

from kubestudio.services import proxy


class Backend:
    """A raw HTTP/1.1 backend: the requests named in ``drop`` (counted from 1) are read whole and
    their connection closed without a word, as a pod going away does; the others get ``ok <n>``
    on a kept-alive connection."""

    def __init__(self, drop=()):
        self.drop, self.requests, self.connections = set(drop), 0, 0

    async def start(self):
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader, writer):
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":", 1)[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    0,
                )
                await reader.readexactly(length)
                self.requests += 1
                if self.requests in self.drop:
                    return
                body = f"ok {self.requests}".encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nDate: Sun, 06 Dec 2026 10:00:00 GMT\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def through_proxy(backend, calls, replayable):
    """Each of ``calls`` (method) through a tornado handler that forwards to ``backend``:
    [(status, body)]."""
    target = await backend.start()

    class Forwarding(tornado.web.RequestHandler):
        SUPPORTED_METHODS = ("GET", "POST")

        async def get(self):
            await proxy.forward(self, target + "/x", "the backend", replayable=replayable)

        post = get

        def check_xsrf_cookie(self):
            pass

        def write_error(self, status_code, exc_info=None, **kwargs):
            error = exc_info[1]
            self.finish(error.log_message % error.args)

    upstream = proxy.UpstreamPool()
    server = tornado.httpserver.HTTPServer(tornado.web.Application([(r"/x", Forwarding)], upstream=upstream))
    server.listen(0, "127.0.0.1")
    port = next(iter(server._sockets.values())).getsockname()[1]
    answers = []
    try:
        async with aiohttp.ClientSession() as client:
            for method in calls:
                async with client.request(
                    method, f"http://127.0.0.1:{port}/x", data=b"{}" if method == "POST" else None
                ) as response:
                    answers.append((response.status, await response.text()))
                    dates = response.headers.getall("Date", [])
                    assert len(dates) == 1, dates  # the backend's date, not tornado's beside it
                    if response.status == 200:
                        assert dates == ["Sun, 06 Dec 2026 10:00:00 GMT"]
    finally:
        server.stop()
        backend.server.close()
        await upstream.close()
    return answers


def run(backend, calls, replayable=False):
    return asyncio.run(through_proxy(backend, calls, replayable))


def test_a_kept_alive_connection_the_backend_closed_is_not_a_failure():
    # the second request finds the pooled connection closed under it: sent again on a new one
    backend = Backend(drop={2})
    assert run(backend, ["POST", "POST"], replayable=True) == [(200, "ok 1"), (200, "ok 3")]
    assert backend.connections == 2


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_what_is_resent_and_what_is_not(method):
    # a GET is always safe to send again; a POST only when the caller says so (a prediction)
    assert run(Backend(drop={1}), [method], replayable=True) == [(200, "ok 2")]
    status, body = run(Backend(drop={1}), [method], replayable=False)[0]
    if method == "GET":
        assert (status, body) == (200, "ok 2")
    else:
        assert status == 502 and "the backend did not answer" in body


def test_a_backend_that_never_answers_is_a_502_after_the_last_try():
    # (a POST: aiohttp itself sends a dropped GET again once more, so fewer tries would not show)
    backend = Backend(drop=range(1, 10))
    status, body = run(backend, ["POST"], replayable=True)[0]
    assert status == 502 and "did not answer" in body
    assert backend.requests == len(proxy.RESEND_AFTER)
