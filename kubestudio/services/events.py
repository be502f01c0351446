"""Server-Sent Events for service pages and clients: :class:`EventStream` (events with keepalive
comments), :class:`BulkWriteLimiter` (bulk writers take turns on the event loop) and
:func:`wants_event_stream`."""

import asyncio
import json

from tornado.iostream import StreamClosedError


class EventStream:
    """Write Server-Sent Events to a tornado handler; a comment every ``keepalive`` seconds."""

    def __init__(self, handler, keepalive=15.0):
        self.handler = handler
        self.keepalive = keepalive
        self.closed = False
        handler.set_header("Content-Type", "text/event-stream")
        handler.set_header("Cache-Control", "no-cache")
        handler.set_header("X-Accel-Buffering", "no")  # nginx: do not buffer the stream
        # each event goes out when written: with Nagle's algorithm a small write waits for the
        # peer's (delayed) acknowledgement of the one before, milliseconds per event
        stream = getattr(handler.request.connection, "stream", None)
        if stream is not None and hasattr(stream, "set_nodelay"):
            stream.set_nodelay(True)
        self._task = None

    async def send(self, data, event=None):
        await self.write(self.event(data, event))

    async def write(self, text):
        """Write already formatted events (several at once: one flush for a whole batch)."""
        await self._write(text)

    @staticmethod
    def event(data, event=None):
        """One event as text: ``data:`` lines holding ``data`` as JSON."""
        text = f"event: {event}\n" if event else ""
        return text + "".join(f"data: {line}\n" for line in json.dumps(data).splitlines()) + "\n"

    async def comment(self, text="keepalive"):
        await self._write(f": {text}\n\n")

    async def _write(self, text):
        if self.closed:
            return
        try:
            self.handler.write(text)
            await self.handler.flush()
        except StreamClosedError:
            self.closed = True

    async def _keepalive_loop(self):
        while not self.closed:
            await asyncio.sleep(self.keepalive)
            await self.comment()

    def __enter__(self):
        self._task = asyncio.ensure_future(self._keepalive_loop())
        return self

    def __exit__(self, *exc):
        self._task.cancel()


class BulkWriteLimiter:
    """Take turns for bulk writes (log replays): at most ``width`` of them hold the event loop.

    Ten followers replaying a 50 MB log keep the loop busy; if they all sat in its ready queue,
    every other request would wait behind ten batches at each of its steps. Waiting for a turn
    happens outside the ready queue, so a short request waits for at most ``width`` batches. A
    writer whose client is slow gives its turn up after ``hold`` seconds and finishes alone.
    """

    def __init__(self, width=2, hold=0.05):
        self.width, self.hold = width, hold
        self._turns = None

    async def write(self, write, text):
        """``await write(text)`` in a turn."""
        if self._turns is None:
            self._turns = asyncio.Semaphore(self.width)  # made in the loop that uses it
        async with self._turns:
            task = asyncio.ensure_future(write(text))
            done, _ = await asyncio.wait({task}, timeout=self.hold)
        if not done:
            await task


def wants_event_stream(handler):
    return "text/event-stream" in handler.request.headers.get("Accept", "")
