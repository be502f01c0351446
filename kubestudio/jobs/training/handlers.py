"""HTTP handlers of training jobs: the JSON API under ``api/jobs`` (submit, follow, cancel, rerun)
and ``api/runtimes``."""

import json

from ...services.events import EventStream, wants_event_stream
from ...services.web import http_error
from ..handlers import JobsBaseHandler
from ..models import DONE
from ..spec import SpecError

LOG_BATCH_LINES = 500
LINES_EVENT = 'data: {"type": "lines", "lines": %s}\n\n'  # what EventStream.event makes of a batch, faster
RERUN_FIELDS = (
    "name",
    "args",
    "command",
    "env",
    "nodes",
    "procs_per_node",
    "resources",
    "max_runtime",
    "retries",
    "packages",
    "project",
)


class TrainingHandler(JobsBaseHandler):
    noun = "job"

    async def follow_log(self, job_id, first=None):
        """The job's log as Server-Sent Events, from its start until its result: batches of lines,
        its status whenever it changes (and why it waits), then the result; ``first`` before all."""
        with EventStream(self, keepalive=self.settings["keepalive_seconds"]) as stream:
            if first is not None:
                await stream.send(first)
            else:
                await stream.comment("replaying the log from the start")
            last = None
            job = self.manager.get(job_id)
            if job["status"] not in DONE:  # where it stands before any line (queued: why it waits)
                last = (job["status"], job["message"])
                await stream.send({"type": "status", "status": job["status"], "message": job["message"]})
            async for kind, value in self.manager.follow(job_id):
                if stream.closed:
                    return
                if kind == "lines":
                    # one event per batch of lines: a 50 MB log is a few thousand events, not half a million
                    for start in range(0, len(value), LOG_BATCH_LINES):
                        text = LINES_EVENT % json.dumps(value[start : start + LOG_BATCH_LINES])
                        await self.settings["bulk_writes"].write(stream.write, text)
                        if stream.closed:
                            return
                    # a change of status (or of why it waits) between lines; the end is the result
                    job = self.manager.get(job_id)
                    if job["status"] not in DONE and (job["status"], job["message"]) != last:
                        last = (job["status"], job["message"])
                        await stream.send({"type": "status", "status": job["status"], "message": job["message"]})
                else:
                    await stream.send({"type": "result", **value})
        self.finish()

    def checked_job(self, ref):
        """The id of the job ``ref`` names: its id, or the name of one of the caller's jobs (as the
        CLI and the SDK take them); 404 if there is none the caller may see."""
        if self.manager.owner_of(ref) is None:
            ref = self.manager.id_by_name(self.identity["name"], ref) or ref
        self.owner_checked(ref)
        return ref


class JobsHandler(TrainingHandler):
    async def get(self):
        self.require_access()
        self.write_json({"jobs": self.manager.list(owner=self.owner_filter())})

    async def post(self):
        """Submit a job: its record (201). Asked with ``Accept: text/event-stream``, the answer is
        the job's log followed from its start instead, its first event the record
        (``{"type": "job", "job": {...}}``): what ``kubestudio jobs submit`` shows, one round trip
        sooner than a submit and then a follow."""
        self.require_access()
        body = self.json_body()
        try:
            job = await self.manager.submit(self.identity, body, self.is_admin)
        except SpecError as e:
            raise http_error(e.status, str(e)) from None
        self.set_header("Location", f"{self.settings['service_prefix']}api/jobs/{job['id']}")
        if not wants_event_stream(self):
            self.write_json(job, 201)
            return
        self.set_status(201)
        await self.follow_log(job["id"], first={"type": "job", "job": job})


class JobHandler(TrainingHandler):
    async def get(self, job_id):
        self.require_access()
        job_id = self.checked_job(job_id)
        self.write_json(self.manager.get(job_id))

    async def delete(self, job_id):
        """Cancel a queued or running job (idempotent); ``?forget=1`` also removes a finished
        job's record and log (its name is free again)."""
        self.require_access()
        job_id = self.checked_job(job_id)
        job = await self.manager.cancel(job_id, self.identity["name"])
        if self.get_argument("forget", "") in ("1", "true", "yes"):
            if job["status"] not in DONE:
                raise http_error(409, f"job {job_id} is {job['status']}: cancel it before forgetting it")
            self.manager.delete_record(job_id)
            job = {**job, "forgotten": True}
        self.write_json(job)


class RerunHandler(TrainingHandler):
    async def post(self, job_id):
        """A copy of the job with the fields of the body changed (args, name, env, ...)."""
        self.require_access()
        job_id = self.checked_job(job_id)
        body = self.json_body() if self.request.body else {}
        unknown = sorted(set(body) - set(RERUN_FIELDS))
        if unknown:
            raise http_error(400, f"{unknown[0]}: cannot be changed on a rerun (allowed: {', '.join(RERUN_FIELDS)})")
        try:
            job = await self.manager.rerun(self.identity, job_id, body)
        except SpecError as e:
            raise http_error(e.status, str(e)) from None
        self.set_header("Location", f"{self.settings['service_prefix']}api/jobs/{job['id']}")
        self.write_json(job, 201)


class JobEventsHandler(TrainingHandler):
    async def get(self, job_id):
        """What happened to the job, in plain words (status changes, and why it waits)."""
        self.require_access()
        job_id = self.checked_job(job_id)
        job = self.manager.get(job_id)
        self.write_json({"events": job["history"], "message": job["message"]})


class RuntimesHandler(TrainingHandler):
    async def get(self):
        """Training runtimes a TrainJob may name (framework trainjob)."""
        self.require_access()
        self.write_json({"runtimes": await self.manager.backend.runtimes()})


class LimitsHandler(TrainingHandler):
    async def get(self):
        """What one of the caller's jobs may hold (GPUs), so a form can say it before a refusal."""
        self.require_access()
        self.write_json(await self.manager.gpu_limits(self.identity))


class JobLogsHandler(TrainingHandler):
    async def get(self, job_id):
        self.require_access()
        job_id = self.checked_job(job_id)
        if not wants_event_stream(self):
            await self.send_log_text(self.manager.log_text(job_id))
            return
        await self.follow_log(job_id)
