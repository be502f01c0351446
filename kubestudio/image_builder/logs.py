"""Build logs: capped, kept in pieces, read a piece at a time.

A build's log is a list of lines grouped into chunks of about 64 KiB. While the build runs, the
chunks live in memory (:class:`LiveLog`) and only new ones are written to the store; followers
keep a position (chunk, line) and are handed the lines after it, so ten followers of one log share
one copy of it. A finished log is read back one chunk at a time (:func:`stored_lines`), never whole.

A log is capped (``ImageBuilder.max_log_bytes``): past the cap, lines are counted but not kept,
except the last :data:`TAIL_LINES`, which are added at the end with a note saying how many were
left out, so the error that ended a chatty build is still there.
"""

from collections import deque

from sqlalchemy import select

from ..spawner.quantities import human_bytes
from .models import Build, LogChunk

CHUNK_CHARS = 64 * 1024
TAIL_LINES = 100


class LiveLog:
    def __init__(self, limit, sealed=None):
        self.limit = limit
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
                self._add(f"--- the log reached its limit of {human_bytes(self.limit)} here "
                          "(ImageBuilder.max_log_bytes); the build goes on, its last lines follow at the end ---")
            self.dropped += 1
            self._tail.append(line)
            return
        self._add(line)

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

    def save(self, db, build_id):
        """Write what the store lacks: new full chunks and the open one."""
        for seq in range(self.saved, len(self.sealed)):
            text, count = self.sealed[seq]
            db.merge(LogChunk(build_id=build_id, seq=seq, lines=count, text=text))
        self.saved = len(self.sealed)
        if not self.open_saved:
            db.merge(LogChunk(build_id=build_id, seq=len(self.sealed), lines=len(self.open), text="\n".join(self.open)))
            self.open_saved = True

    @classmethod
    def load(cls, db, build_id, limit):
        """The stored log of a build that was running when the service stopped."""
        rows = db.query(LogChunk).filter(LogChunk.build_id == build_id).order_by(LogChunk.seq).all()
        log = cls(limit, [(r.text, r.lines) for r in rows])
        if not rows:
            old = db.query(Build.log).filter(Build.id == build_id).scalar() or ""
            for line in old.splitlines():
                log.append(line, keep=True)
        return log


def stored_lines(store, build_id, first=0, batch=8):
    """Yield the stored log of a build as lists of lines, one chunk at a time from chunk ``first``
    (``batch`` chunks, at most ~512 KiB, read per query)."""
    seq = first
    while True:
        with store.session() as db:
            rows = db.execute(select(LogChunk.text, LogChunk.lines)
                              .where(LogChunk.build_id == build_id, LogChunk.seq >= seq)
                              .order_by(LogChunk.seq).limit(batch)).all()
            if not rows and seq == 0:  # a build from before log chunks: its log is in the record
                old = db.query(Build.log).filter(Build.id == build_id).scalar()
                if old:
                    yield old.splitlines()
                return
        for text, count in rows:
            yield text.split("\n") if count else []
        if len(rows) < batch:
            return
        seq += batch


def forget(db, build_id):
    db.query(LogChunk).filter(LogChunk.build_id == build_id).delete()
