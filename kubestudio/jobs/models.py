"""Job records in the SQL store: spec, owner, project, image, status and its history, what runs
it (Kubernetes names or local PIDs), times, and the final log (kept after the pods are gone)."""

import os
from datetime import datetime

from sqlalchemy import JSON, DateTime, ForeignKey, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ..services.store import iso, utcnow  # noqa: F401 (the models' times; others import them from here)

# Alembic migrations of these tables: a change to a model needs a new revision there
MIGRATIONS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "migrations")
VERSION_TABLE = "kubestudio_jobs_version"

QUEUED, STARTING, RUNNING, RESTARTING = "queued", "starting", "running", "restarting"
SUCCEEDED, FAILED, CANCELLED = "succeeded", "failed", "cancelled"
ACTIVE = (QUEUED, STARTING, RUNNING, RESTARTING)
DONE = (SUCCEEDED, FAILED, CANCELLED)


class Base(DeclarativeBase):
    pass


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str] = mapped_column(String(255), index=True)
    name: Mapped[str] = mapped_column(String(64))
    project: Mapped[str] = mapped_column(String(255))
    spec: Mapped[dict] = mapped_column(JSON)
    kind: Mapped[str] = mapped_column(String(32))  # python, pytorch, tensorflow, mpi, trainjob
    image: Mapped[str] = mapped_column(String(512), default="")
    backend: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), index=True)
    message: Mapped[str] = mapped_column(Text, default="")
    history: Mapped[list] = mapped_column(JSON, default=list)  # [{"status", "message", "at"}]
    refs: Mapped[dict] = mapped_column(JSON, default=dict)  # Kubernetes names or local PIDs, GPUs
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    exit: Mapped[dict] = mapped_column(JSON, default=dict)  # per replica: {"code", "reason"}
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=True)
    finished: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=True)

    def to_json(self, queue_position=None):
        refs = {k: v for k, v in (self.refs or {}).items() if not k.startswith("_")}  # "_...": the service's own
        return {
            "id": self.id,
            "name": self.name,
            "owner": self.owner,
            "project": self.project,
            "kind": self.kind,
            "image": self.image or None,
            "backend": self.backend,
            "status": self.status,
            "message": self.message,
            "spec": self.spec,
            "history": self.history or [],
            "refs": refs,
            "attempt": self.attempt,
            "exit": self.exit or {},
            "created": iso(self.created),
            "started": iso(self.started),
            "finished": iso(self.finished),
            "queue_position": queue_position,
        }


class JobLogChunk(Base):
    """One piece of a job's log (every rank's lines, each prefixed with its replica: ``[worker-1]``)."""

    __tablename__ = "job_log_chunks"

    job_id: Mapped[str] = mapped_column(String(32), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    lines: Mapped[int] = mapped_column(Integer, default=0)
    text: Mapped[str] = mapped_column(Text, default="")
