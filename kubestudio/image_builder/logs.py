"""Build logs in the store: the service kit's :class:`~kubestudio.services.livelog.LiveLog` on the
``build_log_chunks`` table, and the logs of builds from before log chunks (kept in the record)."""

from ..services.livelog import LiveLog, load_chunks, stored_chunks
from .models import Build, LogChunk

LIMIT_NAME = "ImageBuilder.max_log_bytes"


def live_log(limit, sealed=None):
    return LiveLog(limit, sealed, limit_name=LIMIT_NAME, what="build")


def chunk_of(build_id):
    """The row maker LiveLog.save needs for a build."""
    return lambda seq, lines, text: LogChunk(build_id=build_id, seq=seq, lines=lines, text=text)


def load(db, build_id, limit):
    """The stored log of a build that was running when the service stopped."""
    sealed = load_chunks(db, LogChunk, "build_id", build_id)
    log = live_log(limit, sealed)
    if not sealed:
        old = db.query(Build.log).filter(Build.id == build_id).scalar() or ""
        for line in old.splitlines():
            log.append(line, keep=True)
    return log


def stored_lines(store, build_id, first=0, batch=8):
    """Yield the stored log of a build as lists of lines, one chunk at a time from chunk ``first``."""
    any_chunk = False
    for lines in stored_chunks(store, LogChunk, "build_id", build_id, first, batch):
        any_chunk = True
        yield lines
    if not any_chunk and first == 0:  # a build from before log chunks: its log is in the record
        with store.session() as db:
            old = db.query(Build.log).filter(Build.id == build_id).scalar()
        if old:
            yield old.splitlines()


def forget(db, build_id):
    db.query(LogChunk).filter(LogChunk.build_id == build_id).delete()
