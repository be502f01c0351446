"""HTTP handlers of pipelines in the jobs service: runs of DAGs under ``api/pipelines/runs``.

Who may do what: ``custom:kubestudio:jobs:run`` runs, reads, reruns and cancels your own runs (the
admin scope: everyone's); another user's run answers 404.
"""

from ...services.web import http_error
from ..handlers import JobsBaseHandler
from ..spec import SpecError


class PipelinesBaseHandler(JobsBaseHandler):
    noun = "pipeline run"

    @property
    def manager(self):
        return self.settings["pipelines"]

    def checked_run(self, ref):
        """The id of the run ``ref`` names (its id, or a pipeline's name: your newest run of it);
        404 if there is none the caller may see."""
        if self.manager.owner_of(ref) is None:
            ref = self.manager.latest_run(self.identity["name"], ref) or ref
        self.owner_checked(ref)
        return ref


class RunsHandler(PipelinesBaseHandler):
    async def get(self):
        """Your runs, newest first (``?pipeline=NAME``: of one pipeline), with their tasks counted by state."""
        self.require_access()
        runs = self.manager.list(owner=self.owner_filter(), pipeline=self.get_argument("pipeline", ""))
        self.write_json({"runs": runs})

    async def post(self):
        """Run a pipeline: ``{"spec": {...} or YAML text, "params": {...}}``."""
        self.require_access()
        if self.identity["kind"] != "user":
            raise http_error(403, "pipeline runs belong to users: start one with a user's token")
        try:
            run = await self.manager.create(self.identity, self.json_body())
        except SpecError as e:
            raise http_error(e.status, str(e)) from None
        self.set_header("Location", f"{self.settings['service_prefix']}api/pipelines/runs/{run['id']}")
        self.write_json(run, 201)


class ExportHandler(PipelinesBaseHandler):
    async def post(self):
        """The Argo Workflow (and CronWorkflow, for a pipeline with a schedule) of ``{"spec",
        "params"}``, as this hub would run it: ``kubestudio pipelines export --argo``."""
        self.require_access()
        try:
            self.write_json(await self.manager.export_argo(self.identity, self.json_body()))
        except SpecError as e:
            raise http_error(e.status, str(e)) from None


class RunHandler(PipelinesBaseHandler):
    async def get(self, ref):
        self.require_access()
        self.write_json(self.manager.get(self.checked_run(ref)))

    async def delete(self, ref):
        """Cancel a running run and its tasks' jobs (idempotent); ``?forget=1`` also removes a
        finished run's records and its tasks' jobs (those no other run kept)."""
        self.require_access()
        run_id = self.checked_run(ref)
        run = await self.manager.cancel(run_id, self.identity["name"])
        if self.get_argument("forget", "") in ("1", "true", "yes"):
            await self.manager.forget(run_id)
            run = {**run, "forgotten": True}
        self.write_json(run)


class RerunHandler(PipelinesBaseHandler):
    async def post(self, ref):
        """A new run from ``{"from": TASK}`` (default: the tasks that did not succeed), keeping
        the results and outputs of what is upstream of it."""
        self.require_access()
        run_id = self.checked_run(ref)
        body = self.json_body()
        unknown = sorted(set(body) - {"from"})
        if unknown:
            raise http_error(400, f"{unknown[0]}: unknown field (expected from)")
        start = body.get("from")
        if start is not None and not isinstance(start, str):
            raise http_error(400, "from: a task's name")
        try:
            run = await self.manager.rerun(run_id, start)
        except SpecError as e:
            raise http_error(e.status, str(e)) from None
        self.write_json(run, 201)


class TaskLogHandler(PipelinesBaseHandler):
    async def get(self, ref, task):
        """A task's log as text (its last attempt's job)."""
        self.require_access()
        run_id = self.checked_run(ref)
        text = await self.manager.task_log(run_id, task)
        if text is None:
            raise http_error(404, f"run {run_id} has no task {task}")
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(text)


class SchedulesHandler(PipelinesBaseHandler):
    noun = "pipeline schedule"

    async def get(self):
        """Your schedules, the next to fire first: cron, time zone, next and last fire, what the last round did."""
        self.require_access()
        self.write_json({"schedules": self.manager.schedules(owner=self.owner_filter())})

    async def post(self):
        """Run a pipeline on its ``schedule``: ``{"spec": {..., "schedule": {cron, ...}}, "params": {...}}``;
        a schedule of the same pipeline name is replaced."""
        self.require_access()
        if self.identity["kind"] != "user":
            raise http_error(403, "schedules belong to users: make one with a user's token")
        try:
            schedule = await self.manager.schedule(self.identity, self.json_body())
        except SpecError as e:
            raise http_error(e.status, str(e)) from None
        self.write_json(schedule, 201)


class ScheduleHandler(PipelinesBaseHandler):
    noun = "pipeline schedule"

    def checked_schedule(self, ref):
        schedule_id, owner = self.manager.schedule_of(self.identity["name"], ref)
        if schedule_id is None or (owner != self.identity["name"] and not self.is_admin):
            raise http_error(404, f"no pipeline schedule {ref}")
        return schedule_id

    async def get(self, ref):
        self.require_access()
        self.write_json(self.manager.get_schedule(self.checked_schedule(ref)))

    async def delete(self, ref):
        """Stop a schedule (by id or pipeline name); the runs it started stay."""
        self.require_access()
        self.write_json({**await self.manager.unschedule(self.checked_schedule(ref)), "deleted": True})
