"""Job records in the SQL store: spec, owner, project, image, status and its history, what runs
it (Kubernetes names or local PIDs), times, and the final log (kept after the pods are gone)."""

import os
from datetime import datetime

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ..services.store import iso, utcnow  # noqa: F401 (the models' times; others import them from here)

# Alembic migrations of these tables: a change to a model needs a new revision there
MIGRATIONS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "migrations")
VERSION_TABLE = "kubestudio_jobs_version"

TRIAL_TOKEN_ENV = "KUBESTUDIO_TRIAL_TOKEN"
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
        spec = self.spec
        if TRIAL_TOKEN_ENV in (spec.get("env") or {}):  # a trial's token is for its processes alone
            spec = {**spec, "env": {**spec["env"], TRIAL_TOKEN_ENV: "(hidden)"}}
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
            "spec": spec,
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


# a serving's states: starting (first start, or a new version), ready, restarting (it crashed and
# waits out its back-off), failed (it cannot start: the message says why), stopped
SERVING_STARTING, SERVING_READY, SERVING_RESTARTING = "starting", "ready", "restarting"
SERVING_FAILED, SERVING_STOPPED = "failed", "stopped"


class Serving(Base):
    """A model served from a user's workspace: its spec, where it runs, and how it is doing."""

    __tablename__ = "servings"
    __table_args__ = (UniqueConstraint("owner", "name", name="uq_servings_owner_name"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str] = mapped_column(String(255), index=True)
    name: Mapped[str] = mapped_column(String(64))
    project: Mapped[str] = mapped_column(String(255))
    spec: Mapped[dict] = mapped_column(JSON)
    format: Mapped[str] = mapped_column(String(16))  # what the model was found to be: sklearn, pytorch, custom
    backend: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), index=True)
    message: Mapped[str] = mapped_column(Text, default="")
    generation: Mapped[int] = mapped_column(Integer, default=1)  # each update of the spec: +1
    ready_generation: Mapped[int] = mapped_column(Integer, default=0)  # the generation that answers now
    restarts: Mapped[int] = mapped_column(Integer, default=0)
    requests: Mapped[int] = mapped_column(Integer, default=0)
    refs: Mapped[dict] = mapped_column(JSON, default=dict)  # local: pid, start time, port, GPUs
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    def to_json(self, url):
        return {
            "id": self.id,
            "name": self.name,
            "owner": self.owner,
            "project": self.project,
            "format": self.format,
            "backend": self.backend,
            "status": self.status,
            "ready": self.status == SERVING_READY and self.ready_generation == self.generation,
            "message": self.message,
            "spec": self.spec,
            "generation": self.generation,
            "ready_generation": self.ready_generation,
            "restarts": self.restarts,
            "requests": self.requests,
            "url": url,
            # where other services reach it without the hub (the cluster's Service; locally the loopback port)
            "cluster_url": ((self.refs or {}).get("runtime") or {}).get("cluster_url"),
            "created": iso(self.created),
            "updated": iso(self.updated),
        }


# an experiment's states: running (trials run or wait), then succeeded (max_trials done, the
# goal reached, or the grid exhausted, with a best trial), failed (max_failed_trials, or no trial
# gave a value) or cancelled (by its owner, or max_runtime)
EXPERIMENT_RUNNING = "running"
# a trial's states: the job's while it runs (queued, running), then complete, pruned or failed
TRIAL_COMPLETE, TRIAL_PRUNED, TRIAL_FAILED = "complete", "pruned", "failed"


class Experiment(Base):
    """A hyperparameter search: its spec, status, and the best trial so far."""

    __tablename__ = "experiments"
    __table_args__ = (UniqueConstraint("owner", "name", name="uq_experiments_owner_name"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str] = mapped_column(String(255), index=True)
    name: Mapped[str] = mapped_column(String(64))
    project: Mapped[str] = mapped_column(String(255))
    spec: Mapped[dict] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), index=True)
    message: Mapped[str] = mapped_column(Text, default="")
    best: Mapped[dict] = mapped_column(JSON, default=dict)  # {"number", "value", "params"} of the best trial
    caller: Mapped[dict] = mapped_column(JSON, default=dict)  # the owner's groups at submit: the trials' projects
    backend: Mapped[str] = mapped_column(String(16), default="kubestudio")  # who searches: kubestudio or katib
    # Katib's trials come from one template: they share the experiment's token (its hash here)
    report_token_hash: Mapped[str] = mapped_column(String(64), default="")
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=True)

    def to_json(self, counts=None):
        return {
            "id": self.id,
            "name": self.name,
            "owner": self.owner,
            "project": self.project,
            "status": self.status,
            "message": self.message,
            "spec": self.spec,
            "backend": self.backend,
            "best": self.best or None,
            "trials": counts or {},
            "created": iso(self.created),
            "finished": iso(self.finished),
        }


class Trial(Base):
    """One trial of an experiment: the parameters it got, the job that ran it, what it reported."""

    __tablename__ = "experiment_trials"

    experiment_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("experiments.id", ondelete="CASCADE"), primary_key=True
    )
    number: Mapped[int] = mapped_column(Integer, primary_key=True)
    params: Mapped[dict] = mapped_column(JSON)  # what the trial got
    raw: Mapped[dict] = mapped_column(JSON)  # what the search drew (a normal one's quantile, ...)
    job_id: Mapped[str] = mapped_column(String(32), default="")
    state: Mapped[str] = mapped_column(String(16))  # running, then complete, pruned or failed
    value: Mapped[float] = mapped_column(Float, nullable=True)
    final: Mapped[bool] = mapped_column(Boolean, default=False)  # value was reported as the final one
    intermediate: Mapped[dict] = mapped_column(JSON, default=dict)  # step -> the objective's value
    metrics: Mapped[dict] = mapped_column(JSON, default=dict)  # every metric's last reported value
    token_hash: Mapped[str] = mapped_column(String(64))
    katib_trial: Mapped[str] = mapped_column(String(253), default="")  # the Katib Trial that ran it
    message: Mapped[str] = mapped_column(Text, default="")
    started: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=True)

    def to_json(self, job=None):
        return {
            "number": self.number,
            "params": self.params,
            "job": self.job_id or None,
            **({"katib_trial": self.katib_trial} if self.katib_trial else {}),
            "state": job["status"] if self.state == EXPERIMENT_RUNNING and job else self.state,
            "value": self.value,
            "intermediate": dict(sorted((self.intermediate or {}).items(), key=lambda kv: int(kv[0]))),
            "metrics": self.metrics or {},
            "message": self.message,
            "started": iso(self.started),
            "finished": iso(self.finished),
        }


PIPELINE_RUNNING = "running"
# a task's states: pending, then running (its job's), then succeeded, failed, skipped (its depends
# or when said no) or cancelled
TASK_PENDING, TASK_RUNNING, TASK_SKIPPED = "pending", "running", "skipped"


class PipelineRun(Base):
    """One run of a pipeline: its spec and parameters as run, status, and where a rerun came from."""

    __tablename__ = "pipeline_runs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str] = mapped_column(String(255), index=True)
    pipeline: Mapped[str] = mapped_column(String(64), index=True)
    spec: Mapped[dict] = mapped_column(JSON)  # as sent: a rerun runs it again
    params: Mapped[dict] = mapped_column(JSON)  # the parameters resolved (defaults and given)
    status: Mapped[str] = mapped_column(String(16), index=True)
    message: Mapped[str] = mapped_column(Text, default="")
    caller: Mapped[dict] = mapped_column(JSON, default=dict)  # the owner's groups at submit: the tasks' projects
    rerun_of: Mapped[str] = mapped_column(String(32), default="")
    schedule_id: Mapped[str] = mapped_column(String(32), default="", index=True)  # the schedule that made it
    scheduled_for: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=True)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=True)
    backend: Mapped[str] = mapped_column(String(16), default="kubestudio")  # who runs the DAG: argo, kubestudio
    workflow: Mapped[str] = mapped_column(String(253), default="")  # the Argo Workflow of a run Argo runs

    def to_json(self, tasks=()):
        return {
            "id": self.id,
            "pipeline": self.pipeline,
            "owner": self.owner,
            "status": self.status,
            "message": self.message,
            "params": self.params,
            "rerun_of": self.rerun_of or None,
            "backend": self.backend or "kubestudio",
            "schedule": self.schedule_id or None,
            "scheduled_for": iso(self.scheduled_for),
            "tasks": [t.to_json() for t in tasks],
            "spec": self.spec,
            "created": iso(self.created),
            "finished": iso(self.finished),
        }


class PipelineTask(Base):
    """One task of a run: its state, its job (the last attempt's), attempts, resolved outputs."""

    __tablename__ = "pipeline_tasks"

    run_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("pipeline_runs.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    job_id: Mapped[str] = mapped_column(String(32), default="")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    outputs: Mapped[dict] = mapped_column(JSON, default=dict)  # output name -> its path in the workspace
    reused_from: Mapped[str] = mapped_column(String(32), default="")  # a rerun kept this run's result
    cache_key: Mapped[str] = mapped_column(String(64), default="", index=True)  # "" when not cached
    cached: Mapped[bool] = mapped_column(Boolean, default=False)  # its result is an earlier run's
    message: Mapped[str] = mapped_column(Text, default="")
    started: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=True)
    finished: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=True)

    def to_json(self):
        return {
            "name": self.name,
            "status": self.status,
            "job": self.job_id or None,
            "attempts": self.attempts,
            "outputs": self.outputs or {},
            "reused_from": self.reused_from or None,
            "cached": bool(self.cached),
            "cache_key": self.cache_key or None,
            "message": self.message,
            "started": iso(self.started),
            "finished": iso(self.finished),
        }


class PipelineSchedule(Base):
    """A pipeline run on a cron schedule: one per pipeline name of its owner."""

    __tablename__ = "pipeline_schedules"
    __table_args__ = (UniqueConstraint("owner", "pipeline", name="uq_pipeline_schedules_owner_pipeline"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str] = mapped_column(String(255), index=True)
    pipeline: Mapped[str] = mapped_column(String(64))
    spec: Mapped[dict] = mapped_column(JSON)
    params: Mapped[dict] = mapped_column(JSON)
    caller: Mapped[dict] = mapped_column(JSON, default=dict)
    next_fire: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    last_fire: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=True)
    message: Mapped[str] = mapped_column(Text, default="")
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    backend: Mapped[str] = mapped_column(
        String(16), default="kubestudio"
    )  # who fires it: argo (a CronWorkflow), kubestudio

    def to_json(self):
        schedule = self.spec.get("schedule") or {}
        return {
            "id": self.id,
            "pipeline": self.pipeline,
            "owner": self.owner,
            "cron": schedule.get("cron"),
            "timezone": schedule.get("timezone", "UTC"),
            "params": self.params,
            "next_fire": iso(self.next_fire),
            "last_fire": iso(self.last_fire),
            "message": self.message,
            "spec": self.spec,
            "created": iso(self.created),
            "backend": self.backend or "kubestudio",
        }
