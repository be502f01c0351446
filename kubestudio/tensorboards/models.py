"""Board records in the SQL store: owner, the folders shown, the key that finds the same board
again, state and why, where its TensorBoard runs, and when it was last used."""

import os
from datetime import datetime

from sqlalchemy import JSON, DateTime, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ..services.store import iso, utcnow  # noqa: F401 (the models' times; others import them from here)

MIGRATIONS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "migrations")
VERSION_TABLE = "kubestudio_tensorboards_version"

STARTING, RUNNING, STOPPED, FAILED = "starting", "running", "stopped", "failed"


class Base(DeclarativeBase):
    pass


class Board(Base):
    __tablename__ = "boards"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str] = mapped_column(String(255), index=True)
    name: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(64), index=True)  # same owner + folders + options: same board
    logdirs: Mapped[list] = mapped_column(JSON)  # as asked: ["runs/exp1", ...]
    status: Mapped[str] = mapped_column(String(16), index=True)
    message: Mapped[str] = mapped_column(Text, default="")
    # what was asked beside the folders (project, image, resources); part of the key
    options: Mapped[dict] = mapped_column(JSON, default=dict)
    refs: Mapped[dict] = mapped_column(JSON, default=dict)  # where TensorBoard runs (pid or pod, url)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=True)
    last_activity: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    def to_json(self, url):
        return {
            "id": self.id,
            "name": self.name,
            "owner": self.owner,
            "logdirs": self.logdirs,
            "options": dict(self.options or {}),
            "status": self.status,
            "message": self.message,
            "url": url,
            "created": iso(self.created),
            "started": iso(self.started),
            "last_activity": iso(self.last_activity),
        }
