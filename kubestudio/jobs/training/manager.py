"""The job manager: owns every job from submit to its stored log, whatever backend runs it.

A submitted job is checked in full (spec, project, quota, what the backend can run), recorded as
``queued`` and served by a fair queue (per-user and global limits on running jobs; a job that
waits for GPUs keeps its place and says why). Each attempt runs on the backend; a failed attempt
is retried ``retries`` times; ``max_runtime`` stops it. Lines of every rank reach the log with the
replica in front (``[worker-1] ...``), followers get them live, and the whole log is stored when
the job ends. After a restart, running jobs are resumed from what the backend recorded.
"""

import asyncio
import time
import uuid

from ...services.livelog import LiveLog, LiveRun, follow_lines, save_live_logs, save_periodically, stored_chunks
from ...services.queue import FairQueue
from ...services.store import aware
from ...spawner.projects import Project, hub_projects
from ...spawner.request import SpawnRefused, hub_project, resolve_project
from ...spawner.storage import user_slug
from ..models import (
    ACTIVE,
    CANCELLED,
    DONE,
    FAILED,
    QUEUED,
    RESTARTING,
    STARTING,
    SUCCEEDED,
    Job,
    JobLogChunk,
    iso,
    utcnow,
)
from ..spec import SpecError, parse_spec, replica_names, spec_from_json, user_spec
from .backends.base import JobRun, Outcome

RETRY_WAITING_SECONDS = 3.0  # GPUs freed by a server's stop are noticed within this time
LIMIT_NAME = "JobService.max_log_bytes"


def _chunk_of(job_id):
    return lambda seq, lines, text: JobLogChunk(job_id=job_id, seq=seq, lines=lines, text=text)


class LiveJob(LiveRun):
    def __init__(self, job_id, log):
        super().__init__(job_id, log)
        self.run = None  # the JobRun of the attempt in flight
        self.cancel_reason = None


class JobManager:
    def __init__(self, config, store, backend, hub, log):
        self.config = config  # the JobService application: its traits are the settings
        self.store = store
        self.backend = backend
        self.hub = hub  # HubAPI: the caller's projects
        self.log = log
        self.queue = FairQueue(config.max_running_jobs, config.max_running_jobs_per_user)
        self.live = {}
        self._projects = {}  # job id -> Project it was submitted in
        self._tasks = []
        # called with (job id, record) when a job ends (an experiment's trials are jobs)
        self.finished_listeners = []

    def limits(self):
        return {
            "max_nodes": self.config.max_nodes,
            "max_procs_per_node": self.config.max_procs_per_node,
            "max_runtime": self.config.max_runtime_limit,
            "max_retries": self.config.max_retries,
        }

    # ------------------------------------------------------------------ lifecycle

    async def start(self):
        await self.backend.start()
        await self.recover()
        self._tasks = [
            asyncio.ensure_future(save_periodically(self.flush_logs, self.log, "job")),
            asyncio.ensure_future(self._retry_loop()),
        ]

    async def stop(self, stop_jobs):
        """Stop following jobs; with ``stop_jobs`` their ranks are stopped too (the hub stops with
        nothing left running), else they run on and the next start resumes them."""
        for task in self._tasks:
            task.cancel()
        for live in list(self.live.values()):
            if stop_jobs and live.run is not None:
                live.cancel_reason = "stopped with the hub"
                await self.backend.cancel(live.run)
            if live.task:
                live.task.cancel()
        await asyncio.gather(*[live.task for live in self.live.values() if live.task], return_exceptions=True)
        self.flush_logs()
        await self.backend.stop()

    async def recover(self):
        """After a restart: resume running jobs from what the backend recorded (their GPUs held
        again), queue again what had not started."""
        with self.store.session() as db:
            unfinished = db.query(Job).filter(Job.status.in_(ACTIVE)).order_by(Job.created).all()
        resuming = []
        for record in unfinished:
            try:
                project = await self._project_of(record)
            except Exception as e:  # the hub is not up yet, or the project is gone: keep its name
                self.log.warning("job %s: project %s not readable at restart (%s)", record.id, record.project, e)
                project = Project(name=record.project)
            self._projects[record.id] = project
            if record.status == QUEUED:
                self.live[record.id] = LiveJob(record.id, self._new_log())
                self.queue.add(record.id, record.owner)
                continue
            with self.store.session() as db:
                db.query(JobLogChunk).filter(JobLogChunk.job_id == record.id).delete()  # re-read whole
            live = self.live[record.id] = LiveJob(record.id, self._new_log())
            live.run = self._run_of(record, project)
            resuming.append(live.run)
            self.queue.running[record.id] = record.owner
        if hasattr(self.backend, "restore_gpus"):
            self.backend.restore_gpus(resuming)
        for run in resuming:
            self.live[run.id].task = asyncio.ensure_future(self._run(run.id, resuming=True))
        self._schedule()

    async def _project_of(self, record):
        return await hub_project(self.hub, record.project)

    # ------------------------------------------------------------------ requests

    async def gpu_limits(self, identity):
        """What one job of the caller may hold: each of their projects' GPU quota per user (None:
        no quota) and the GPUs this backend has, by type (None where it cannot tell)."""
        projects = await hub_projects(self.hub, identity)
        return {
            "projects": {
                name: {"max_gpus": project.max_gpus}
                for name, project in projects.items()
                if isinstance(project, Project)
            },
            "machine_gpus": self.backend.gpu_capacity(),
        }

    async def check(self, identity, body, service_env=None):
        """Check a job request in full (spec, project, quota, what the backend can run) without
        queueing it: the JobRun it would be, or SpecError naming the field."""
        spec = parse_spec(body, self.limits(), service_env=service_env)
        owner = identity["name"]
        try:
            project = resolve_project({"project": spec.project}, await hub_projects(self.hub, identity))
        except SpawnRefused as e:
            raise SpecError(str(e), e.status) from None
        gpu = spec.resources.gpu
        total_gpus = gpu.count * spec.nodes
        if project.max_gpus is not None and total_gpus > project.max_gpus:
            raise SpecError(
                f"resources.gpu: {total_gpus} GPUs asked ({gpu.count} per node x {spec.nodes} nodes); "
                f"project {project.name!r} allows {project.max_gpus} per user",
                403,
            )
        run = JobRun(
            id=uuid.uuid4().hex[:12],
            owner=owner,
            slug=user_slug(owner),
            spec=spec,
            replicas=replica_names(spec),
            project=project,
        )
        await self.backend.check(run)
        return run

    async def submit(self, identity, body, is_admin=False, service_env=None):
        """Check a job request and queue it; the record (status queued). ``service_env``:
        variables the service gives the job besides the user's (a trial's parameters and token)."""
        run = await self.check(identity, body, service_env)
        spec, owner, project, job_id = run.spec, run.owner, run.project, run.id
        with self.store.session() as db:
            clash = db.query(Job.id).filter(Job.owner == owner, Job.name == spec.name).first()
        if clash:
            raise SpecError(
                f"name: you already have a job named {spec.name!r} ({clash[0]}); choose another name "
                f"or delete that job",
                409,
            )
        image = self.backend.image_of(run)
        with self.store.session() as db:
            record = Job(
                id=job_id,
                owner=owner,
                name=spec.name,
                project=project.name,
                spec=spec.to_json(),
                kind=spec.kind,
                image=image,
                backend=self.backend.name,
                status=QUEUED,
                message="",
                history=[_history_entry(QUEUED, "submitted")],
                refs={},
                attempt=0,
                exit={},
            )
            db.add(record)
        self._projects[job_id] = project
        self.live[job_id] = LiveJob(job_id, self._new_log())
        self.queue.add(job_id, owner)
        self.log.info(
            "job %s (%s) of %s submitted: %s, %d x %d ranks",
            job_id,
            spec.name,
            owner,
            spec.kind,
            spec.nodes,
            spec.procs_per_node,
        )
        self._schedule()
        return self.get(job_id)

    async def rerun(self, identity, job_id, changes):
        """A copy of a job with ``changes`` (args, name, env, ...): a new job."""
        with self.store.session() as db:
            spec = user_spec(db.get(Job, job_id).spec)
        base = spec["name"]
        spec.update(changes)
        if "name" not in changes:
            with self.store.session() as db:
                taken = {n for (n,) in db.query(Job.name).filter(Job.owner == identity["name"]).all()}
            n = 2
            while f"{base[:35]}-r{n}" in taken:
                n += 1
            spec["name"] = f"{base[:35]}-r{n}"
        return await self.submit(identity, spec)

    async def cancel(self, job_id, who):
        """Stop a queued or running job; a finished one is answered as it is (idempotent)."""
        live = self.live.get(job_id)
        if live is None:
            return self.get(job_id)
        reason = f"cancelled by {who}"
        if self.queue.waiting.pop(job_id, None) is not None:
            self._finish(job_id, Outcome(CANCELLED, reason))
            self._schedule()
            return self.get(job_id)
        live.cancel_reason = reason
        if live.run is not None:
            await self.backend.cancel(live.run)
        if live.task:
            live.task.cancel()
            try:
                await live.task
            except (asyncio.CancelledError, Exception):
                pass
        return self.get(job_id)

    def delete_record(self, job_id):
        """Forget a finished job: its record and stored log."""
        with self.store.session() as db:
            db.query(JobLogChunk).filter(JobLogChunk.job_id == job_id).delete()
            db.query(Job).filter(Job.id == job_id).delete()

    def delete_finished_records(self, job_ids):
        """Forget those of ``job_ids`` that have ended (an experiment's trials, a pipeline run's
        tasks, as their owner forgets them); a job still running keeps its record."""
        for job_id in job_ids:
            job = self.get(job_id)
            if job is not None and job["status"] in DONE:
                self.delete_record(job_id)

    # ------------------------------------------------------------------ reading

    def id_by_name(self, owner, name):
        """The id of ``owner``'s job named ``name`` (names are unique per user), or None."""
        with self.store.session() as db:
            return db.query(Job.id).filter(Job.owner == owner, Job.name == name).scalar()

    def owner_of(self, job_id):
        with self.store.session() as db:
            return db.query(Job.owner).filter(Job.id == job_id).scalar()

    def get(self, job_id):
        with self.store.session() as db:
            record = db.get(Job, job_id)
            return record.to_json(self.queue.position(job_id)) if record else None

    def list(self, owner=None):
        positions = self.queue.positions()
        with self.store.session() as db:
            query = db.query(Job).order_by(Job.created.desc())
            if owner is not None:
                query = query.filter(Job.owner == owner)
            return [r.to_json(positions.get(r.id)) for r in query.limit(500).all()]

    def follow_lines(self, job_id, wait):
        return follow_lines(
            self.live, job_id, lambda first: stored_chunks(self.store, JobLogChunk, "job_id", job_id, first), wait
        )

    async def follow(self, job_id):
        """("lines", [...]) for the whole log so far and what comes, then ("done", record)."""
        async for lines in self.follow_lines(job_id, wait=True):
            yield "lines", lines
        yield "done", self.get(job_id)

    async def log_text(self, job_id):
        async for lines in self.follow_lines(job_id, wait=False):
            yield "".join(line + "\n" for line in lines)

    # ------------------------------------------------------------------ running

    def _new_log(self, sealed=None):
        return LiveLog(self.config.max_log_bytes, sealed, limit_name=LIMIT_NAME, what="job")

    def _run_of(self, record, project):
        spec = spec_from_json(record.spec)
        return JobRun(
            id=record.id,
            owner=record.owner,
            slug=user_slug(record.owner),
            spec=spec,
            replicas=replica_names(spec),
            project=project,
            image=record.image or "",
            attempt=record.attempt,
            refs=dict(record.refs or {}),
            on_lines=lambda replica, lines, job_id=record.id: self._lines(job_id, replica, lines),
            on_refs=lambda refs, job_id=record.id: self._save_refs(job_id, refs),
            on_status=lambda status, message, job_id=record.id: self._set_status(job_id, status, message),
        )

    def _can_start(self, job_id):
        """Take the job's GPUs now, or keep it waiting with the reason in its message."""
        with self.store.session() as db:
            record = db.get(Job, job_id)
            run = self._run_of(record, self._projects[job_id])
        try:
            self.backend.reserve(run)
        except Exception as e:  # a quota or free GPUs: wait; anything else is said the same way
            if not isinstance(e, SpawnRefused):
                self.log.exception("job %s: could not take its GPUs", job_id)
            message = f"waiting: {e}" if isinstance(e, SpawnRefused) else "waiting: the GPU ledger could not be read"
            if record.message != message:
                self._set_status(job_id, QUEUED, message, history=False)
            return False
        live = self.live[job_id]
        live.run = run
        self._save_refs(job_id, run.refs)
        return True

    def _schedule(self):
        for job_id in self.queue.next_ready(self._can_start):
            live = self.live[job_id]
            live.task = asyncio.ensure_future(self._run(job_id))

    async def _run(self, job_id, resuming=False):
        live = self.live[job_id]
        run = live.run
        spec = run.spec
        with self.store.session() as db:
            record = db.get(Job, job_id)
            started = record.started
            if not resuming:
                record.started = started = utcnow()
        deadline = None
        if spec.max_runtime:
            deadline = time.monotonic() + spec.max_runtime - (utcnow() - aware(started)).total_seconds()
        clock = time.monotonic()
        outcome = None
        try:
            while True:
                if not resuming:
                    self._set_status(
                        job_id,
                        STARTING if run.attempt == 0 else RESTARTING,
                        "launching" if run.attempt == 0 else f"attempt {run.attempt + 1} of {spec.retries + 1}",
                    )
                try:
                    work = self.backend.resume(run) if resuming else self.backend.run(run)
                    left = None if deadline is None else max(deadline - time.monotonic(), 0.001)
                    outcome = await asyncio.wait_for(work, left)
                except asyncio.TimeoutError:
                    await self.backend.cancel(run)
                    outcome = Outcome(FAILED, f"stopped after max_runtime ({spec.max_runtime} s)")
                    break
                except SpecError as e:
                    outcome = Outcome(FAILED, str(e))
                    break
                resuming = False
                if live.cancel_reason is not None:
                    # cancel() removed the job's objects: whatever the backend made of their
                    # going away (a failure, usually) is the cancel, never a retry
                    outcome = Outcome(CANCELLED, live.cancel_reason)
                    break
                if outcome.status == SUCCEEDED or run.attempt >= spec.retries:
                    break
                self._lines(job_id, "kubestudio", [f"attempt {run.attempt + 1} failed: {outcome.message}; retrying"])
                run.attempt += 1
                with self.store.session() as db:
                    db.get(Job, job_id).attempt = run.attempt
        except asyncio.CancelledError:
            if live.cancel_reason is None:
                raise  # the service is stopping: the job runs on, the next start resumes it
            outcome = Outcome(CANCELLED, live.cancel_reason)
        except Exception as e:
            self.log.exception("job %s failed in the service", job_id)
            await self.backend.cancel(run)
            outcome = Outcome(
                FAILED,
                f"internal error in the jobs service ({type(e).__name__}); "
                "the administrator can find it in the service log",
            )
        self.log.info(
            "job %s (%s) of %s %s after %.1f s%s",
            job_id,
            spec.name,
            run.owner,
            outcome.status,
            time.monotonic() - clock,
            f": {outcome.message}" if outcome.message else "",
        )
        self._finish(job_id, outcome)
        self._schedule()

    def _finish(self, job_id, outcome):
        live = self.live.pop(job_id, None)
        self.queue.remove(job_id)
        if live is not None and live.run is not None:
            self.backend.release(live.run)
        with self.store.session() as db:
            record = db.get(Job, job_id)
            record.status = outcome.status
            record.message = outcome.message
            record.finished = utcnow()
            if outcome.exits:
                record.exit = outcome.exits
            record.history = [*record.history, _history_entry(outcome.status, outcome.message)]
            if live is not None:
                live.log.close()
                live.log.save(db, _chunk_of(job_id))
        if live is not None:
            if live.run is not None and hasattr(self.backend, "forget"):
                self.backend.forget(live.run)
            live.wake_followers()
        self._projects.pop(job_id, None)
        record = self.get(job_id)
        for listener in self.finished_listeners:
            try:
                listener(job_id, record)
            except Exception:
                self.log.exception("job %s: a listener of its end failed", job_id)

    # ------------------------------------------------------------------ records

    def _lines(self, job_id, replica, lines):
        live = self.live.get(job_id)
        if live is None or not lines:
            return
        prefix = f"[{replica}] "
        live.log.extend([prefix + text for text in lines], keep=replica == "kubestudio")
        live.dirty = True
        live.wake_followers()

    def _save_refs(self, job_id, refs):
        with self.store.session() as db:
            db.get(Job, job_id).refs = dict(refs)

    def _set_status(self, job_id, status, message, history=True):
        with self.store.session() as db:
            record = db.get(Job, job_id)
            if record.status in DONE:
                return
            changed = record.status != status
            record.status, record.message = status, message
            if history and (changed or message != (record.history or [{}])[-1].get("message")):
                record.history = [*record.history, _history_entry(status, message)]
        if changed:
            self.log.info("job %s: %s%s", job_id, status, f" ({message})" if message else "")
        live = self.live.get(job_id)
        if live is not None:
            live.wake_followers()

    def flush_logs(self):
        save_live_logs(self.store, self.live, Job, _chunk_of, ACTIVE)

    async def _retry_loop(self):
        """Jobs waiting for GPUs: servers free them without telling this service."""
        while True:
            await asyncio.sleep(RETRY_WAITING_SECONDS)
            if self.queue.waiting:
                try:
                    self._schedule()
                except Exception:
                    self.log.exception("could not schedule waiting jobs")


def _history_entry(status, message):
    return {"status": status, "message": message, "at": iso(utcnow())}
