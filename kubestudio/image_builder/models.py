"""Build records in the SQL store: owner, spec, status, times, digest and the full log."""

import os
from datetime import datetime

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ..services.store import iso, utcnow  # noqa: F401 (the models' times; others import them from here)

# Alembic migrations of these tables: a change to a model needs a new revision there
MIGRATIONS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "migrations")

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED, EXISTS = (
    "queued",
    "running",
    "succeeded",
    "failed",
    "cancelled",
    "exists",
)
DELETED = "deleted"  # built, then its image was deleted from the registry
ACTIVE = (QUEUED, RUNNING)
PRIVATE_EXTRA = ("job",)
DONE = (SUCCEEDED, FAILED, CANCELLED, EXISTS, DELETED)


class Base(DeclarativeBase):
    pass


class Build(Base):
    __tablename__ = "builds"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str] = mapped_column(String(255), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    spec: Mapped[dict] = mapped_column(JSON)
    name: Mapped[str] = mapped_column(String(255))
    tag: Mapped[str] = mapped_column(String(128))
    image: Mapped[str] = mapped_column(String(512), index=True)
    content_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), index=True)
    message: Mapped[str] = mapped_column(Text, default="")
    backend: Mapped[str] = mapped_column(String(32))
    backend_ref: Mapped[str] = mapped_column(String(255), default="")
    builder_run: Mapped[bool] = mapped_column(Boolean, default=False)
    steps: Mapped[int] = mapped_column(Integer, default=0)
    step: Mapped[int] = mapped_column(Integer, default=0)
    digest: Mapped[str] = mapped_column(String(128), default="")
    size: Mapped[int] = mapped_column(Integer, nullable=True)
    dockerfile: Mapped[str] = mapped_column(Text, default="")
    extra: Mapped[dict] = mapped_column(JSON, default=dict)
    # logs of builds from before log chunks existed; deferred: listings never load log text
    log: Mapped[str] = mapped_column(Text, default="", deferred=True)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=True)
    finished: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=True)

    def to_json(self, queue_position=None):
        data = {
            "id": self.id,
            "owner": self.owner,
            "kind": self.kind,
            "spec": self.spec,
            "name": self.name,
            "tag": self.tag,
            "image": self.image,
            "status": self.status,
            "message": self.message,
            "backend": self.backend,
            "builder_run": self.builder_run,
            "steps": self.steps,
            "step": self.step,
            "digest": self.digest or None,
            "size": self.size,
            "created": iso(self.created),
            "started": iso(self.started),
            "finished": iso(self.finished),
            "queue_position": queue_position,
        }
        if self.extra:  # "job" is the service's own (where the build's files are): never shown
            data.update({k: v for k, v in self.extra.items() if k not in data and k not in PRIVATE_EXTRA})
        return data


class LogChunk(Base):
    """One piece of a build's log: up to ~64 KiB of whole lines, numbered from 0.

    Logs are stored in pieces so a running build saves only what is new, a follower of a finished
    build reads one piece at a time (memory stays flat however long the log), and listings of
    builds never touch log text.
    """

    __tablename__ = "build_log_chunks"

    build_id: Mapped[str] = mapped_column(String(32), ForeignKey("builds.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    lines: Mapped[int] = mapped_column(Integer, default=0)
    text: Mapped[str] = mapped_column(Text, default="")
