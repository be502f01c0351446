"""Logs of work a service runs (builds, jobs): capped, kept in pieces, read a piece at a time.

A log is a list of lines grouped into chunks of about 64 KiB. While the work runs, the chunks
live in memory (:class:`LiveLog`) and only new ones are written to the store; followers keep a
position (chunk, line) and are handed the lines after it, so ten followers of one log share one
copy of it. A finished log is read back one chunk at a time (:func:`stored_chunks`), never whole.

A log is capped (the service's ``max_log_bytes``): past the cap, lines are counted but not kept,
except the last :data:`TAIL_LINES`, which are added at the end with a note saying how many were
left out, so the error that ended a chatty run is still there.

Each service has its own chunk table: a key column naming the build or job, ``seq``, ``lines``
and ``text``.
"""

import asyncio
import codecs
import os
from collections import deque

from sqlalchemy import select

from ..quantities import human_bytes

CHUNK_CHARS = 64 * 1024
TAIL_LINES = 100


def read_tail(path, size):
    """The last ``size`` bytes of a log file as text ("" when there is none yet)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(f.tell() - size, 0))
            return f.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""


class LineSplitter:
    """Bytes of a process's output -> log lines, however it is chunked.

    A line longer than ``max_line`` characters is cut into pieces of that size (a process that
    prints a megabyte without a newline must not fail the run or hold the log back), and a
    UTF-8 character split across two chunks is decoded whole.
    """

    def __init__(self, max_line=16 * 1024):
        self.max_line = max_line
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""

    def feed(self, data):
        text = self._pending + self._decoder.decode(data)
        *lines, self._pending = text.split("\n")
        out = [piece for line in lines for piece in self._cut(line.rstrip("\r"))]
        while len(self._pending) > self.max_line:
            out.append(self._pending[: self.max_line])
            self._pending = self._pending[self.max_line :]
        return out

    def close(self):
        text = self._pending + self._decoder.decode(b"", final=True)
        self._pending = ""
        return self._cut(text.rstrip("\r")) if text else []

    def _cut(self, line):
        if len(line) <= self.max_line:
            return [line]
        return [line[i : i + self.max_line] for i in range(0, len(line), self.max_line)]


class LiveLog:
    def __init__(self, limit, sealed=None, limit_name="max_log_bytes", what="run"):
        self.limit = limit
        self.limit_name = limit_name  # the trait that sets the cap, named in the cut note
        self.what = what  # "build", "job": what goes on after the cut
        self.sealed = list(sealed or [])  # [(text, line count)]: full chunks
        self.open = []  # lines of the chunk being filled
        self._open_chars = 0
        self.chars = sum(len(text) + 1 for text, _ in self.sealed)
        self.saved = len(self.sealed)  # chunks already in the store
        self.open_saved = True  # the open chunk's lines are all in the store
        self.cut = False
        self.dropped = 0
        self._tail = deque(maxlen=TAIL_LINES)

    def append(self, line, keep=False):
        """Add a line; past the cap it only counts (``keep``: the service's own lines always stay)."""
        size = len(line) + 1
        if not keep and (self.cut or self.chars + size > self.limit):
            if not self.cut:
                self.cut = True
                self._add(
                    f"--- the log reached its limit of {human_bytes(self.limit)} here "
                    f"({self.limit_name}); the {self.what} goes on, its last lines follow at the end ---"
                )
            self.dropped += 1
            self._tail.append(line)
            return
        self._add(line)

    def extend(self, lines, keep=False):
        """Add many lines at once (the same as appending each, faster while under the cap)."""
        if keep or self.cut:
            for line in lines:
                self.append(line, keep=keep)
            return
        size = sum(map(len, lines)) + len(lines)
        if self.chars + size > self.limit:
            for line in lines:
                self.append(line)
            return
        while lines:
            # fill the open chunk up to CHUNK_CHARS, seal it, go on with the rest
            room, take = CHUNK_CHARS - self._open_chars, 0
            used = 0
            while take < len(lines) and used < room:
                used += len(lines[take]) + 1
                take += 1
            self.open.extend(lines[:take])
            self._open_chars += used
            self.chars += used
            self.open_saved = False
            lines = lines[take:]
            if self._open_chars >= CHUNK_CHARS:
                self.sealed.append(("\n".join(self.open), len(self.open)))
                self.open, self._open_chars = [], 0

    def close(self):
        """At the end of the build: the last lines past the cap, after a note on what was left out."""
        if self.dropped:
            kept = len(self._tail)
            self._add(f"--- {self.dropped - kept} lines were left out; the last {kept}: ---")
            for line in self._tail:
                self._add(line)
            self._tail.clear()
            self.dropped = 0

    def _add(self, line):
        self.open.append(line)
        self.open_saved = False
        self._open_chars += len(line) + 1
        self.chars += len(line) + 1
        if self._open_chars >= CHUNK_CHARS:
            self.sealed.append(("\n".join(self.open), len(self.open)))
            self.open, self._open_chars = [], 0

    def read(self, position):
        """(lines after ``position``, the new position); a position starts at (0, 0)."""
        chunk, line = position
        if chunk < len(self.sealed):
            text, count = self.sealed[chunk]
            return (text.split("\n")[line:] if line < count else []), (chunk + 1, 0)
        lines = self.open[line:]
        return lines, (chunk, line + len(lines))

    def save(self, db, chunk):
        """Write what the store lacks: new full chunks and the open one. ``chunk(seq, lines, text)``
        makes a row of the service's chunk table."""
        for seq in range(self.saved, len(self.sealed)):
            text, count = self.sealed[seq]
            db.merge(chunk(seq, count, text))
        self.saved = len(self.sealed)
        if not self.open_saved:
            db.merge(chunk(len(self.sealed), len(self.open), "\n".join(self.open)))
            self.open_saved = True


def stored_chunks(store, model, key, owner_id, first=0, batch=8):
    """Yield the stored log of ``owner_id`` (``model.<key>``) as lists of lines, one chunk at a time
    from chunk ``first`` (``batch`` chunks, at most ~512 KiB, read per query)."""
    column = getattr(model, key)
    seq = first
    while True:
        with store.session() as db:
            rows = db.execute(
                select(model.text, model.lines)
                .where(column == owner_id, model.seq >= seq)
                .order_by(model.seq)
                .limit(batch)
            ).all()
        for text, count in rows:
            yield text.split("\n") if count else []
        if len(rows) < batch:
            return
        seq += batch


def load_chunks(db, model, key, owner_id):
    """The stored chunks of ``owner_id`` as LiveLog's ``sealed`` list."""
    rows = db.query(model).filter(getattr(model, key) == owner_id).order_by(model.seq).all()
    return [(r.text, r.lines) for r in rows]


class LiveRun:
    """Work in flight (a build, a job): its log and the followers waiting for more."""

    def __init__(self, run_id, log):
        self.id = run_id
        self.log = log
        self.changed = asyncio.Condition()
        self.task = None
        self.dirty = False  # lines the store lacks
        self._wakeup = None

    async def notify(self):
        self._wakeup = None  # lines from now on schedule another wakeup
        async with self.changed:
            self.changed.notify_all()

    def wake_followers(self):
        """Wake followers once for however many lines arrived meanwhile (not once per line)."""
        if self._wakeup is None:
            self._wakeup = asyncio.ensure_future(self.notify())


async def follow_lines(live_runs, run_id, stored, wait):
    """Yield the log of ``run_id`` as lists of lines: the live log while ``live_runs`` holds it
    (then, with ``wait``, what comes until the run ends), else the stored log from where the
    follower is (``stored(first_chunk)`` yields the stored chunks' lines from that chunk on)."""
    position = (0, 0)
    while True:
        live = live_runs.get(run_id)
        if live is None:
            # finished (or never live): the stored log, one chunk at a time, from where we are
            chunk, line = position
            for seq, lines in enumerate(stored(chunk), chunk):
                rest = lines[line:] if seq == chunk else lines
                if rest:
                    yield rest
                await asyncio.sleep(0)  # let other requests in between chunks
            return
        lines, after = live.log.read(position)
        if lines or after != position:
            position = after
            if lines:
                yield lines
            continue
        if not wait:
            return
        async with live.changed:
            if live_runs.get(run_id) is live and not live.log.read(position)[0]:
                try:
                    await asyncio.wait_for(live.changed.wait(), 5)
                except asyncio.TimeoutError:
                    continue
        yield []  # woken without new lines: the run changed otherwise (its status), look again


FLUSH_SECONDS = 2.0


def save_live_logs(store, live_runs, model, chunk_of, active):
    """Write what the store lacks of every live log whose run is still ``active`` (its status)."""
    for live in list(live_runs.values()):
        if not live.dirty:
            continue
        live.dirty = False
        with store.session() as db:
            if db.query(model.status).filter(model.id == live.id).scalar() in active:
                live.log.save(db, chunk_of(live.id))


async def save_periodically(save, log, what, seconds=FLUSH_SECONDS):
    """``save()`` every ``seconds`` until cancelled: a restart loses at most that much of a log."""
    while True:
        await asyncio.sleep(seconds)
        try:
            save()
        except Exception:
            log.exception("could not save %s logs", what)
