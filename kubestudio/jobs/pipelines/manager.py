"""The pipeline manager: runs DAGs of tasks, each task an ordinary job of the run's owner.

A run starts every task whose upstream tasks have ended and whose ``depends`` (a list: each
succeeded or was skipped, as Argo reads ``dependencies``; or Argo's expression) and ``when`` hold,
up to ``parallelism`` at once; a task whose condition does not hold is *skipped*. Its job is
submitted through the jobs manager (so the queue, quotas, projects, GPUs, images, logs and cancel
of jobs apply), named ``<pipeline>-<run>-<task>`` (``-r<N>`` for a retry), with ``{{run}}``,
``{{params.X}}``, ``{{outputs.Y}}`` and ``{{tasks.X.outputs.Y}}`` filled in. A failed task with
retries left runs again. The run ends *succeeded* when no task failed, *failed* otherwise, or
*cancelled*.

A rerun is a new run of the same spec and parameters that keeps the results (and outputs) of the
tasks upstream of where it starts and runs the rest again: from a named task, or by default from
every task that did not succeed. Everything is in the service's store as it happens; after a
restart each running run goes on (the jobs manager resumed its tasks' jobs).
"""

import asyncio
import hashlib
import json
import uuid
from datetime import datetime, timedelta, timezone

from ...services.store import aware
from ..models import (
    CANCELLED,
    DONE,
    FAILED,
    PIPELINE_RUNNING,
    SUCCEEDED,
    TASK_PENDING,
    TASK_RUNNING,
    TASK_SKIPPED,
    PipelineRun,
    PipelineSchedule,
    PipelineTask,
    utcnow,
)
from ..spec import SpecError
from .argo import CRON_LABEL, SCHEDULE_LABEL, SCHEDULED_TIME, cron_name, run_phase, task_states, workflow_name
from .argorun import ArgoRunner
from .spec import MAX_CATCHUP, TEMPLATE_RE, evaluate_depends, evaluate_when, fill, parse_pipeline

ENDED = (SUCCEEDED, FAILED, CANCELLED, TASK_SKIPPED)


def job_name(spec, run_id, task, attempt):
    return f"{spec.name}-{run_id[:6]}-{task}" + (f"-r{attempt}" if attempt else "")


class PipelineManager:
    def __init__(self, config, store, jobs, log, experiments=None, servings=None):
        self.config = config  # the JobService: max_running_pipelines_per_user
        self.store = store
        self.jobs = jobs
        self.experiments = experiments  # an experiment task's; None: the hub runs none
        self.servings = servings  # a serve task's; None: the hub serves no models
        self.log = log
        self.tasks = {}  # run id -> its driving task
        self.wake = {}  # run id -> Event set when one of its jobs ended
        self.run_of_job = {}  # job (or experiment) id -> run id
        self.polling = {}  # run id -> True while a serve task of it runs (a serving's readiness is looked at)
        self.scheduler = None  # the task that starts scheduled runs
        self.schedules_changed = asyncio.Event()  # a schedule was made or removed, or a run ended
        self.blocked = set()  # schedules waiting for one of their runs to end
        self.checks = {}  # run id -> the check of a run a schedule's CronWorkflow made
        self.argo = ArgoRunner(self)  # runs that Argo Workflows runs (on a cluster that has it)
        jobs.finished_listeners.append(self._job_finished)
        if experiments is not None:
            experiments.finished_listeners.append(self._job_finished)

    # ------------------------------------------------------------------ lifecycle

    async def start(self):
        with self.store.session() as db:
            running = [
                (r.id, r.backend) for r in db.query(PipelineRun).filter(PipelineRun.status == PIPELINE_RUNNING).all()
            ]
        with self.store.session() as db:
            argo_schedules = db.query(PipelineSchedule.id).filter(PipelineSchedule.backend == "argo").count()
        if argo_schedules or any(backend == "argo" for _, backend in running):
            await self.argo.follow()  # their Workflows went on (or were made) while the service was away
        for run_id, _ in running:
            self._open(run_id)
        self.scheduler = asyncio.ensure_future(self._schedule_loop())

    async def stop(self):
        tasks = [*self.tasks.values(), *self.checks.values(), *([self.scheduler] if self.scheduler else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.tasks.clear()
        await self.argo.stop()

    def _open(self, run_id):
        with self.store.session() as db:
            for task in db.query(PipelineTask).filter(PipelineTask.run_id == run_id).all():
                if task.job_id and task.status == TASK_RUNNING:
                    self.run_of_job[task.job_id] = run_id
        self.wake[run_id] = asyncio.Event()
        self.tasks[run_id] = asyncio.ensure_future(self._drive(run_id))

    def _job_finished(self, job_id, record=None):
        run_id = self.run_of_job.get(job_id)
        if run_id and run_id in self.wake:
            self.wake[run_id].set()

    # ------------------------------------------------------------------ requests

    @staticmethod
    def _request(body):
        """(spec, params) of a request ``{"spec": {...} or YAML text, "params": {...}}``."""
        if not isinstance(body, dict):
            raise SpecError('send {"spec": {...} or YAML text, "params": {...}}')
        unknown = sorted(set(body) - {"spec", "params"})
        if unknown:
            raise SpecError(f"{unknown[0]}: unknown field (expected spec, params)")
        spec = parse_pipeline(body.get("spec"))
        return spec, spec.resolve_params(body.get("params"))

    async def _check_tasks(self, caller, spec, params, keep=(), run_id="0" * 12, scheduled=None):
        """Every task's job, experiment or serving as it would be sent (its project, quota, script,
        image), before anything runs; {task: its job as checked} for the job tasks, which an Argo
        Workflow is made of (results not known before the run read as "0")."""
        base = {"run": run_id, "scheduled": "", **{f"params.{k}": v for k, v in params.items()}}
        outputs = {t: fill(spec.tasks[t].outputs, base, t) for t in spec.tasks}
        checked = {}
        for name, task in spec.tasks.items():
            for key in TEMPLATE_RE.findall(json.dumps([task.job, task.when])):
                if key.endswith(".value") and key.startswith("tasks.") and not self.jobs.backend.reads_workspaces:
                    raise SpecError(
                        f"tasks.{name}.{task.kind}: {{{{{key}}}}} is read from your workspace, which the jobs "
                        "service cannot read with this backend (it can on the embedded default)",
                        409,
                    )
        for name, task in spec.tasks.items():
            if name in keep:
                continue
            if task.kind == "experiment" and self.experiments is None:
                raise SpecError(f"tasks.{name}.experiment: this hub runs no experiments", 409)
            if task.kind == "serve" and self.servings is None:
                raise SpecError(
                    f"tasks.{name}.serve: this hub serves no models (JobService.serving_backend_class)", 409
                )
            if task.cache == "auto" and not self.jobs.backend.reads_workspaces:
                raise SpecError(
                    f"tasks.{name}.cache: auto keys a task by the content of its inputs, which the jobs "
                    "service cannot read with this backend (it reads workspaces on the embedded default); "
                    "set cache: off",
                    409,
                )
            context = self._context(spec, run_id, params, name, outputs, scheduled)
            for key in TEMPLATE_RE.findall(json.dumps(task.job)):  # results not known before the run
                if key.startswith("tasks.") and (key.endswith(".value") or ".best." in key):
                    context[key] = "0"
            try:
                body = self._job(spec, task, run_id, 0, context)
                if task.kind == "job":
                    checked[name] = await self.jobs.check(caller, body)
                elif task.kind == "experiment":
                    await self.experiments.check(caller, body)
                elif "{{" not in json.dumps(task.job.get("model", "")):  # a model a task makes is not there yet
                    await self.servings.check(caller, body)
            except SpecError as e:
                raise SpecError(f"tasks.{name}.{task.kind}: {e}", e.status) from None
        return checked

    async def create(self, identity, body, rerun_of=None, keep=None, schedule_id="", scheduled_for=None):
        """Start a run of ``body["spec"]`` (a mapping, or YAML text) with ``body["params"]``.
        ``keep``: {task: its row in an earlier run} whose results this run takes as they are;
        ``schedule_id``/``scheduled_for``: the schedule that starts it and the time it is for."""
        spec, params = self._request(body)
        owner = identity["name"]
        caller = {"name": owner, "groups": list(identity.get("groups") or [])}
        with self.store.session() as db:
            running = (
                db.query(PipelineRun.id)
                .filter(PipelineRun.owner == owner, PipelineRun.status == PIPELINE_RUNNING)
                .count()
            )
        if running >= self.config.max_running_pipelines_per_user:
            raise SpecError(
                f"pipelines: you have {running} runs going, the most this hub allows "
                "(JobService.max_running_pipelines_per_user); wait for one or cancel it",
                409,
            )
        keep = keep or {}
        run_id = uuid.uuid4().hex[:12]
        checked = await self._check_tasks(caller, spec, params, keep, run_id, scheduled_for)
        workflow = await self.argo.plan(spec, caller, run_id, params, scheduled_for, checked, rerun=bool(keep))
        with self.store.session() as db:
            db.add(
                PipelineRun(
                    id=run_id,
                    owner=owner,
                    pipeline=spec.name,
                    spec=spec.source,
                    params=params,
                    status=PIPELINE_RUNNING,
                    message=f"{len(spec.tasks)} tasks",
                    caller=caller,
                    rerun_of=rerun_of or "",
                    schedule_id=schedule_id,
                    scheduled_for=scheduled_for,
                    backend="argo" if workflow else "kubestudio",
                    workflow=workflow["metadata"]["name"] if workflow else "",
                )
            )
            for name in spec.order():
                kept = keep.get(name)
                db.add(
                    PipelineTask(
                        run_id=run_id,
                        name=name,
                        status=kept["status"] if kept else TASK_PENDING,
                        job_id=kept["job"] or "" if kept else "",
                        attempts=kept["attempts"] if kept else 0,
                        outputs=kept["outputs"] if kept else {},
                        reused_from=kept["run"] if kept else "",
                        cache_key=kept.get("cache_key") or "" if kept else "",
                        message=f"kept from run {kept['run']}" if kept else "",
                        started=None,
                        finished=None,
                    )
                )
        if workflow is not None:
            try:
                await self.argo.create(workflow)
            except SpecError:
                self._delete_records(run_id)
                raise
        self.log.info(
            "pipeline %s of %s: run %s, %d tasks (%d kept), run by %s",
            spec.name,
            owner,
            run_id,
            len(spec.tasks),
            len(keep),
            "Argo Workflows" if workflow else "the service",
        )
        self._open(run_id)
        return self.get(run_id)

    async def export_argo(self, identity, body):
        """The Argo Workflow (and, for a pipeline with a schedule, the CronWorkflow) that runs
        ``body["spec"]`` with ``body["params"]`` as this hub's jobs would run: for ``argo submit``.
        Its paths hold ``{{workflow.name}}`` where a run's id would be."""
        from .argo import ArgoRefused, cron_workflow, for_any_run

        spec, params = self._request(body)
        caller = {"name": identity["name"], "groups": list(identity.get("groups") or [])}
        if not hasattr(self.jobs.backend, "object_of"):
            raise SpecError(
                "export: an Argo Workflow carries each task's pod as the Kubernetes jobs backend makes it; "
                "this hub runs its jobs on this machine",
                409,
            )
        placeholder = "0" * 12
        checked = await self._check_tasks(caller, spec, params, run_id=placeholder)
        try:
            workflow = self.argo.build(spec, caller, placeholder, params, None, checked)
        except ArgoRefused as e:
            raise SpecError(str(e), 409) from None
        workflow = for_any_run(workflow, placeholder)
        workflow["metadata"]["generateName"] = f"{spec.name}-"
        out = {"workflow": workflow}
        if spec.schedule is not None:
            out["cron_workflow"] = cron_workflow(spec, workflow)
        return out

    async def rerun(self, run_id, from_task=None):
        """A new run of ``run_id``'s spec and parameters from ``from_task`` (default: every task
        that did not succeed), keeping what is upstream of it."""
        old = self.get(run_id, internal=True)
        if old["status"] == PIPELINE_RUNNING:
            raise SpecError(f"run {run_id} is still running: cancel it first, or wait for it to end", 409)
        spec = parse_pipeline(old["spec"])
        rows = {t["name"]: t for t in old["tasks"]}
        if from_task is not None:
            if from_task not in spec.tasks:
                raise SpecError(f"from: {from_task!r} is not a task of this pipeline ({', '.join(spec.tasks)})")
            starts = {from_task}
        else:
            starts = {n for n, t in rows.items() if t["status"] not in (SUCCEEDED, TASK_SKIPPED)}
            if not starts:
                raise SpecError("from: every task of this run succeeded; name the task to run again from", 409)
        again = set()
        for start in starts:
            again |= spec.downstream(start)
        # what was not run to success upstream is run again too (its outputs are not there)
        for name in list(spec.tasks):
            if name not in again and rows.get(name, {}).get("status") not in (SUCCEEDED, TASK_SKIPPED):
                again |= spec.downstream(name)
        keep = {n: {**rows[n], "run": rows[n].get("reused_from") or run_id} for n in spec.tasks if n not in again}
        # the run is its owner's, whoever asks for it again (an admin may)
        owner = {"name": old["owner"], "groups": old["caller"].get("groups", [])}
        return await self.create(
            owner,
            {"spec": old["spec"], "params": old["params"]},
            rerun_of=run_id,
            keep=keep,
        )

    async def cancel(self, run_id, who):
        task = self.tasks.pop(run_id, None)
        if task is None:
            return self.get(run_id)
        task.cancel()
        try:
            await task
        except (asyncio.CancelledError, Exception):
            pass
        with self.store.session() as db:
            rows = [(t.name, t.status, t.job_id) for t in db.query(PipelineTask).filter(PipelineTask.run_id == run_id)]
            record = db.get(PipelineRun, run_id)
            spec, backend, workflow = parse_pipeline(record.spec), record.backend, _workflow_of(record)
        if backend == "argo":
            await self.argo.cancel(workflow)  # Argo stops its pods
            rows = [(name, status, "") for name, status, _ in rows]
        for name, status, job_id in rows:
            kind = spec.tasks[name].kind if name in spec.tasks else "job"
            if status == TASK_RUNNING and job_id and kind == "job":
                await self.jobs.cancel(job_id, f"its pipeline run was cancelled by {who}")
            elif status == TASK_RUNNING and job_id and kind == "experiment":
                await self.experiments.cancel(job_id, f"{who} (its pipeline run was cancelled)")
            if status in (TASK_RUNNING, TASK_PENDING):
                self._set_task(run_id, name, CANCELLED, f"its run was cancelled by {who}")
        self._end(run_id, CANCELLED, f"cancelled by {who}")
        return self.get(run_id)

    async def forget(self, run_id):
        with self.store.session() as db:
            record = db.get(PipelineRun, run_id)
            workflow = _workflow_of(record) if record is not None and record.backend == "argo" else None
        if workflow is not None:
            await self.argo.delete(workflow)  # its pods go with it
        self._delete_records(run_id)

    def _delete_records(self, run_id):
        with self.store.session() as db:
            jobs = [j for (j,) in db.query(PipelineTask.job_id).filter(PipelineTask.run_id == run_id) if j]
            reused = {
                j
                for (j,) in db.query(PipelineTask.job_id).filter(
                    PipelineTask.run_id != run_id, PipelineTask.job_id.in_(jobs)
                )
            }
            db.query(PipelineTask).filter(PipelineTask.run_id == run_id).delete()
            db.query(PipelineRun).filter(PipelineRun.id == run_id).delete()
        self.jobs.delete_finished_records(set(jobs) - reused)  # a job another run kept stays with it

    # ------------------------------------------------------------------ reading

    def owner_of(self, run_id):
        with self.store.session() as db:
            return db.query(PipelineRun.owner).filter(PipelineRun.id == run_id).scalar()

    def latest_run(self, owner, pipeline):
        """The id of ``owner``'s newest run of ``pipeline``, or None."""
        with self.store.session() as db:
            return (
                db.query(PipelineRun.id)
                .filter(PipelineRun.owner == owner, PipelineRun.pipeline == pipeline)
                .order_by(PipelineRun.created.desc())
                .limit(1)
                .scalar()
            )

    def get(self, run_id, internal=False):
        with self.store.session() as db:
            run = db.get(PipelineRun, run_id)
            if run is None:
                return None
            tasks = db.query(PipelineTask).filter(PipelineTask.run_id == run_id).all()
            order = {name: i for i, name in enumerate(run.spec.get("tasks") or {})}
            tasks.sort(key=lambda t: order.get(t.name, 0))
            data = run.to_json(tasks)
            if data["backend"] == "argo":  # for kubectl and argo's own tools
                data["workflow"] = _workflow_of(run)
            if internal:
                data["caller"] = run.caller
                data["_scheduled"] = aware(run.scheduled_for or run.created)
            return data

    def list(self, owner=None, pipeline=None):
        with self.store.session() as db:
            query = db.query(PipelineRun).order_by(PipelineRun.created.desc())
            if owner is not None:
                query = query.filter(PipelineRun.owner == owner)
            if pipeline:
                query = query.filter(PipelineRun.pipeline == pipeline)
            out = []
            for run in query.limit(500).all():
                counts = {}
                for (status,) in db.query(PipelineTask.status).filter(PipelineTask.run_id == run.id):
                    counts[status] = counts.get(status, 0) + 1
                data = run.to_json()
                data["tasks"] = counts
                del data["spec"]
                out.append(data)
            return out

    async def task_log(self, run_id, name):
        with self.store.session() as db:
            task = db.get(PipelineTask, (run_id, name))
            if task is None:
                return None
            job_id = task.job_id
            record = db.get(PipelineRun, run_id)
            spec, backend, argo_workflow = parse_pipeline(record.spec), record.backend, _workflow_of(record)
            kind = (spec.tasks.get(name) or _JOB).kind
        if backend == "argo":
            workflow = self.argo.get(argo_workflow)
            state = task_states(workflow).get(name) if workflow else None
            return await self.argo.pod_log(state[3]) if state and state[3] else ""
        if not job_id:
            return ""
        if kind == "experiment":
            return experiment_summary(self.experiments.get(job_id), self.experiments.trials(job_id))
        if kind == "serve":
            serving = self.servings.get(job_id)
            if serving is None:
                return "its serving was deleted\n"
            head = f"serving {serving['name']}: {serving['status']} (version {serving['ready_generation']} answers)"
            return (
                head
                + (f": {serving['message']}" if serving["message"] else "")
                + "\n"
                + await self.servings.logs(job_id)
            )
        return "".join([piece async for piece in self.jobs.log_text(job_id)])

    # ------------------------------------------------------------------ driving

    @staticmethod
    def _context(spec, run_id, params, task, outputs, scheduled):
        """What ``{{...}}`` in ``task`` becomes: the run, the time it is for, the params, its
        outputs and its upstream's."""
        base = {
            "run": run_id,
            "scheduled": (scheduled or datetime.now(timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            **{f"params.{k}": v for k, v in params.items()},
        }
        context = dict(base)
        own = fill(spec.tasks[task].outputs, base, task)
        context.update({f"outputs.{k}": v for k, v in own.items()})
        for upstream in spec.upstream(task):
            for key, value in (outputs.get(upstream) or {}).items():
                if spec.tasks[upstream].kind == "experiment" and key.startswith("best."):
                    context[f"tasks.{upstream}.{key}"] = value  # best.value, best.params.P, best.model
                else:
                    context[f"tasks.{upstream}.outputs.{key}"] = value
        return context

    async def _read_values(self, spec, owner, name, context):
        """``{{tasks.X.outputs.Y.value}}`` of task ``name``: the text of that output's file, read
        now (at most 4 KiB); SpecError naming the template when it cannot be read."""
        from ... import fdpath

        task = spec.tasks[name]
        for key in set(TEMPLATE_RE.findall(json.dumps([task.job, task.when]))):
            if not (key.startswith("tasks.") and key.endswith(".value") and ".outputs." in key):
                continue
            path = context.get(key[: -len(".value")])
            try:
                text = await self.jobs.backend.workspace_text(owner, path) if path else None
            except (fdpath.NotHashable, OSError) as e:
                raise SpecError(f"{{{{{key}}}}}: {e}") from None
            if text is None:
                raise SpecError(f"{{{{{key}}}}}: {path} is not in your workspace (its task did not write it)")
            context[key] = text

    @staticmethod
    def _job(spec, task, run_id, attempt, context):
        """The body sent for the task: a job's, an experiment's (both named by the pipeline, the
        task's timeout their max_runtime) or a serving's."""
        job = fill(task.job, context, f"tasks.{task.name}.{task.kind}")
        if task.kind == "serve":
            return job
        job["name"] = job_name(spec, run_id, task.name, attempt)
        if task.timeout and "max_runtime" not in job:
            job["max_runtime"] = task.timeout
        return job

    async def _drive(self, run_id):
        event = self.wake[run_id]
        try:
            while True:
                event.clear()
                if await self._step(run_id):
                    return
                try:
                    await asyncio.wait_for(event.wait(), timeout=SERVE_POLL_SECONDS if self.polling.get(run_id) else 30)
                except asyncio.TimeoutError:
                    pass
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self.log.exception("pipeline run %s failed in the service", run_id)
            self._end(
                run_id,
                FAILED,
                f"internal error in the jobs service ({type(e).__name__}); the administrator can find it in the service log",
            )

    async def _step(self, run_id):
        """Collect the ended jobs, start what is ready; True once the run has ended."""
        run = self.get(run_id, internal=True)
        spec = parse_pipeline(run["spec"])
        if run["backend"] == "argo":
            return self._step_argo(run_id, run, spec)
        rows = {t["name"]: t for t in run["tasks"]}
        caller = run["caller"]
        for name, row in rows.items():
            if row["status"] != TASK_RUNNING:
                continue
            kind = spec.tasks[name].kind
            if kind == "serve":
                self._follow_serving(run_id, spec, name, row)
                continue
            if kind == "experiment":
                job = self.experiments.get(row["job"]) if row["job"] else None
            else:
                job = self.jobs.get(row["job"]) if row["job"] else None
            if job is not None and job["status"] not in DONE:
                continue
            if job is not None and job["status"] == SUCCEEDED:
                if kind == "experiment":
                    self._set_outputs(run_id, name, experiment_results(job))
                # an experiment's end in words; a job keeps why it was not cached, if it was not
                note = row["message"] if row["message"].startswith("not cached:") else ""
                self._set_task(run_id, name, SUCCEEDED, job["message"] if kind == "experiment" else note)
            elif job is not None and row["attempts"] <= spec.tasks[name].retries and job["status"] == FAILED:
                await self._submit(run_id, spec, run, name, rows, caller, attempt=row["attempts"])
            else:
                why = (
                    f"its {kind} {job['status']}: {job['message'] or 'no reason given'}"
                    if job
                    else f"its {kind} is gone"
                )
                self._set_task(run_id, name, FAILED, why)
        rows = {t["name"]: t for t in self.get(run_id)["tasks"]}
        running = sum(1 for t in rows.values() if t["status"] == TASK_RUNNING)
        limit = spec.parallelism or len(spec.tasks)
        for name in spec.order():
            row = rows[name]
            if row["status"] != TASK_PENDING:
                continue
            task = spec.tasks[name]
            states = {d: rows[d]["status"] for d in task.depends}
            if any(s not in ENDED for s in states.values()):
                continue
            if task.condition:
                go = evaluate_depends(task.condition, states)
                why = f"its depends ({task.condition}) did not hold"
            else:
                go = all(s in (SUCCEEDED, TASK_SKIPPED) for s in states.values())
                why = "upstream " + ", ".join(
                    f"{d} {s}" for d, s in states.items() if s not in (SUCCEEDED, TASK_SKIPPED)
                )
            if go and task.when:
                context = self._context(
                    spec, run_id, run["params"], name, {n: r["outputs"] for n, r in rows.items()}, run["_scheduled"]
                )
                try:
                    await self._read_values(spec, run["owner"], name, context)
                    go = evaluate_when(task.when, context, f"tasks.{name}.when")
                except SpecError as e:
                    self._set_task(run_id, name, FAILED, str(e))
                    rows[name]["status"] = FAILED
                    continue
                why = f"when {task.when!r} was false"
            if not go:
                self._set_task(run_id, name, TASK_SKIPPED, why)
                rows[name]["status"] = TASK_SKIPPED
                continue
            cache_key, note = "", ""
            if task.cache == "auto":
                cache_key, note = await self._cache_key(spec, run, name, rows)
                # a rerun runs what it reruns (the user asked for it), its key kept for later runs
                if cache_key and not run["rerun_of"] and await self._take_cached(run, name, cache_key, rows):
                    continue
            if running >= limit:
                continue
            if await self._submit(run_id, spec, run, name, rows, caller, attempt=0, cache_key=cache_key, note=note):
                running += 1
                rows[name]["status"] = TASK_RUNNING
            else:
                rows[name]["status"] = FAILED
        rows = {t["name"]: t for t in self.get(run_id)["tasks"]}
        statuses = [t["status"] for t in rows.values()]
        if any(s in (TASK_PENDING, TASK_RUNNING) for s in statuses):
            done = sum(1 for s in statuses if s in ENDED)
            self.polling[run_id] = any(
                t["status"] == TASK_RUNNING and spec.tasks[n].kind == "serve" for n, t in rows.items()
            )
            self._set_message(run_id, f"{done} of {len(statuses)} tasks ended, {statuses.count(TASK_RUNNING)} running")
            return False
        failed = [n for n, t in rows.items() if t["status"] == FAILED]
        if failed:
            self._end(run_id, FAILED, f"{', '.join(failed)} failed: {rows[failed[0]]['message']}")
        else:
            skipped = statuses.count(TASK_SKIPPED)
            self._end(
                run_id,
                SUCCEEDED,
                f"{statuses.count(SUCCEEDED)} tasks succeeded" + (f", {skipped} skipped" if skipped else ""),
            )
        return True

    def _step_argo(self, run_id, run, spec):
        """A run Argo runs: its tasks and end as its Workflow's nodes and phase say."""
        workflow = self.argo.get(run["workflow"])
        if workflow is None:
            started = _parse_time(run["created"])
            if (utcnow() - started).total_seconds() > 60:  # the watch has listed it since, or never will
                self._end(run_id, FAILED, "its Argo Workflow was deleted outside KubeStudio")
                return True
            return False
        states = task_states(workflow)
        with self.store.session() as db:
            for row in db.query(PipelineTask).filter(PipelineTask.run_id == run_id):
                if row.name not in states:
                    continue
                status, message, attempts, _pod, started, finished = states[row.name]
                task = spec.tasks.get(row.name)
                if status == TASK_SKIPPED and task is not None:  # said as the service says it
                    message = (
                        f"when {task.when!r} was false"
                        if message.startswith("when ")
                        else f"its depends ({task.condition or ' && '.join(task.depends)}) did not hold"
                    )
                row.status, row.message, row.attempts = status, message, attempts
                row.started = _parse_time(started) if started else row.started
                row.finished = _parse_time(finished) if finished and status != TASK_RUNNING else None
        phase, message = run_phase(workflow)
        if phase == PIPELINE_RUNNING:
            done = sum(1 for s in states.values() if s[0] in ENDED)
            running = sum(1 for s in states.values() if s[0] == TASK_RUNNING)
            self._set_message(run_id, f"{done} of {len(spec.tasks)} tasks ended, {running} running (Argo Workflows)")
            return False
        if phase == CANCELLED:
            return True  # cancel() ended it
        counts = [s[0] for s in states.values()]
        if phase == SUCCEEDED:
            skipped = counts.count(TASK_SKIPPED)
            text = f"{counts.count(SUCCEEDED)} tasks succeeded" + (f", {skipped} skipped" if skipped else "")
        else:
            failed = [n for n in spec.order() if states.get(n, ("",))[0] == FAILED]
            text = (f"{', '.join(failed)} failed: {states[failed[0]][1]}" if failed else message) or "Argo: failed"
        self._end(run_id, phase, text)
        return True

    async def _submit(self, run_id, spec, run, name, rows, caller, attempt, cache_key="", note=""):
        """Submit task ``name``'s job (attempt ``attempt``); False when it was refused (the task failed)."""
        task = spec.tasks[name]
        try:
            context = self._context(
                spec, run_id, run["params"], name, {n: r["outputs"] for n, r in rows.items()}, run["_scheduled"]
            )
            await self._read_values(spec, run["owner"], name, context)
            job = self._job(spec, task, run_id, attempt, context)
            if task.kind == "experiment":
                record = await self.experiments.create(caller, job)
            elif task.kind == "serve":
                record = await self._serve(caller, job)
            else:
                record = await self.jobs.submit(caller, job)
        except SpecError as e:
            self._set_task(run_id, name, FAILED, f"its {task.kind} was refused: {e}")
            return False
        self.run_of_job[record["id"]] = run_id
        if task.kind == "serve":  # what the task waits for: this version of the serving ready
            outputs = {"version": str(record["generation"]), "url": record.get("url") or ""}
        else:
            outputs = {k[len("outputs.") :]: v for k, v in context.items() if k.startswith("outputs.")}
        with self.store.session() as db:
            row = db.get(PipelineTask, (run_id, name))
            row.status, row.job_id, row.attempts, row.outputs = TASK_RUNNING, record["id"], attempt + 1, outputs
            row.started = row.started or utcnow()
            row.message = f"attempt {attempt + 1} of {task.retries + 1}" if attempt else note
            if not attempt:
                row.cache_key = cache_key
        self.log.info("pipeline run %s: task %s started (job %s)", run_id, name, record["id"])
        return True

    # ------------------------------------------------------------------ cache

    async def _cache_key(self, spec, run, name, rows):
        """(key, "") of task ``name`` in this run: its job and outputs as written, the params (and
        scheduled time) it uses, and the content of what it reads (its script, the upstream outputs
        it names, its inputs); ("", why) when its inputs cannot be vouched for."""
        from ... import fdpath

        task = spec.tasks[name]
        context = self._context(
            spec, run["id"], run["params"], name, {n: r["outputs"] for n, r in rows.items()}, run["_scheduled"]
        )
        used = set(TEMPLATE_RE.findall(json.dumps([task.job, task.outputs, task.when, task.inputs])))
        files = {f"{{{{{key}}}}}": context[key] for key in used if key.startswith("tasks.")}
        script = task.job.get("script")
        if isinstance(script, str):
            files["script"] = fill(script, context, f"tasks.{name}.job.script")
        for i, path in enumerate(task.inputs):
            files[f"inputs[{i}]"] = fill(path, context, f"tasks.{name}.inputs[{i}]")
        try:
            digests = await self.jobs.backend.workspace_digests(run["owner"], sorted(set(files.values())))
        except (fdpath.NotHashable, OSError) as e:
            return "", f"not cached: {e}"
        material = {
            "pipeline": spec.name,
            "task": name,
            "job": task.job,
            "outputs": task.outputs,
            "inputs": list(task.inputs),
            "values": {key: context[key] for key in sorted(used) if key.startswith("params.") or key == "scheduled"},
            "files": {label: digests[path] for label, path in sorted(files.items())},
        }
        return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest(), ""

    async def _take_cached(self, run, name, cache_key, rows):
        """Give task ``name`` the result of the newest earlier success with ``cache_key`` whose
        outputs are all still in the workspace; False when there is none."""
        run_id = run["id"]
        with self.store.session() as db:
            candidates = [
                (t.run_id, t.reused_from, t.job_id, dict(t.outputs or {}))
                for t in db.query(PipelineTask)
                .join(PipelineRun, PipelineRun.id == PipelineTask.run_id)
                .filter(
                    PipelineRun.owner == run["owner"],
                    PipelineTask.cache_key == cache_key,
                    PipelineTask.status == SUCCEEDED,
                    PipelineTask.run_id != run_id,
                )
                .order_by(PipelineTask.finished.desc())
                .limit(5)
            ]
        from ... import fdpath

        for earlier_run, reused_from, job_id, outputs in candidates:
            try:
                there = await self.jobs.backend.workspace_has(run["owner"], sorted(set(outputs.values())))
            except (fdpath.NotHashable, OSError):
                continue
            if not all(there.values()):
                continue  # an output was removed since: run it again
            origin = reused_from or earlier_run
            with self.store.session() as db:
                row = db.get(PipelineTask, (run_id, name))
                row.status, row.job_id, row.outputs, row.cache_key, row.cached = (
                    SUCCEEDED,
                    job_id,
                    outputs,
                    cache_key,
                    True,
                )
                row.reused_from, row.started, row.finished = origin, utcnow(), utcnow()
                row.message = f"cached: its job, params and inputs are those of run {origin}'s (its outputs are reused)"
            rows[name].update(status=SUCCEEDED, outputs=outputs)
            self.log.info("pipeline run %s: task %s taken from run %s (cache)", run_id, name, origin)
            return True
        return False

    async def _serve(self, caller, body):
        """Make the serving ``body["name"]``, or update the owner's serving of that name to a new
        version: its record."""
        serving_id = self.servings.find(caller["name"], body["name"])
        if serving_id is None:
            return await self.servings.create(caller, body)
        return await self.servings.update(caller, serving_id, body)

    def _follow_serving(self, run_id, spec, name, row):
        """End a serve task once its version of the serving answers, or could not start."""
        serving = self.servings.get(row["job"]) if row["job"] else None
        version = int((row["outputs"] or {}).get("version") or 0)
        if serving is None:
            self._set_task(run_id, name, FAILED, "its serving was deleted")
        elif serving["ready_generation"] >= version:
            self._set_task(run_id, name, SUCCEEDED, f"{serving['name']} version {version} answers")
        elif serving["generation"] > version:
            self._set_task(
                run_id, name, FAILED, f"{serving['name']} was updated again before version {version} answered"
            )
        elif serving["status"] == "failed" or f"version {version} did not start" in (serving["message"] or ""):
            self._set_task(
                run_id, name, FAILED, f"{serving['name']} version {version} did not start: {serving['message']}"
            )
        else:
            timeout = spec.tasks[name].timeout or SERVE_TIMEOUT
            started = aware(row["started"]) if isinstance(row["started"], datetime) else _parse_time(row["started"])
            if started and (utcnow() - started).total_seconds() > timeout:
                self._set_task(
                    run_id,
                    name,
                    FAILED,
                    f"{serving['name']} version {version} did not answer within {timeout} s: {serving['message']}",
                )

    def _set_outputs(self, run_id, name, outputs):
        with self.store.session() as db:
            row = db.get(PipelineTask, (run_id, name))
            row.outputs = {**(row.outputs or {}), **outputs}

    def _set_task(self, run_id, name, status, message):
        with self.store.session() as db:
            row = db.get(PipelineTask, (run_id, name))
            row.status, row.message, row.finished = status, message, utcnow()
        self.log.info("pipeline run %s: task %s %s%s", run_id, name, status, f" ({message})" if message else "")

    def _set_message(self, run_id, message):
        with self.store.session() as db:
            run = db.get(PipelineRun, run_id)
            if run.status == PIPELINE_RUNNING and run.message != message:
                run.message = message

    def _end(self, run_id, status, message):
        with self.store.session() as db:
            run = db.get(PipelineRun, run_id)
            if run.status != PIPELINE_RUNNING:
                return
            run.status, run.message, run.finished = status, message, utcnow()
            pipeline, owner = run.pipeline, run.owner
        self.log.info("pipeline %s of %s: run %s %s: %s", pipeline, owner, run_id, status, message)
        task = self.tasks.pop(run_id, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        self.wake.pop(run_id, None)
        for job_id in [j for j, r in self.run_of_job.items() if r == run_id]:
            self.run_of_job.pop(job_id, None)
        self.blocked.clear()  # a schedule waiting on max_active_runs or depends_on_past looks again
        self.schedules_changed.set()

    # ------------------------------------------------------------------ schedules

    async def schedule(self, identity, body):
        """Run ``body["spec"]`` (with its ``schedule``) on its cron, with ``body["params"]``; one
        schedule per pipeline name: a new one replaces it. The schedule's record."""
        spec, params = self._request(body)
        if spec.schedule is None:
            raise SpecError("schedule: the pipeline has none; give {cron: '0 2 * * *', ...} to run it on a schedule")
        owner = identity["name"]
        caller = {"name": owner, "groups": list(identity.get("groups") or [])}
        checked = await self._check_tasks(caller, spec, params)
        now = utcnow()
        after = spec.schedule.start if spec.schedule.catchup and spec.schedule.start else now
        first = spec.schedule.next_after(after - _TICK)  # a start on a fire time fires then
        with self.store.session() as db:
            record = (
                db.query(PipelineSchedule)
                .filter(PipelineSchedule.owner == owner, PipelineSchedule.pipeline == spec.name)
                .first()
            )
            schedule_id, before = (record.id, record.backend) if record else (uuid.uuid4().hex[:12], "")
        cron = await self.argo.plan_schedule(spec, caller, params, schedule_id, checked)
        if cron is not None:
            await self.argo.put_cron(cron)  # Argo fires it: each run is adopted when its Workflow shows
        elif before == "argo":
            await self.argo.delete_cron(schedule_id)  # the service fires it from now on
        with self.store.session() as db:
            record = db.get(PipelineSchedule, schedule_id)
            if record is None:
                record = PipelineSchedule(id=schedule_id, owner=owner, pipeline=spec.name)
                db.add(record)
            record.spec, record.params, record.caller = spec.source, params, caller
            record.next_fire, record.last_fire = first, None
            record.backend = "argo" if cron else "kubestudio"
            record.message = f"Argo Workflows fires it (CronWorkflow {cron['metadata']['name']})" if cron else ""
        self.log.info(
            "pipeline %s of %s scheduled (%s), first at %s, fired by %s",
            spec.name,
            owner,
            spec.schedule.cron,
            first,
            "Argo Workflows" if cron else "the service",
        )
        self.schedules_changed.set()
        return self.get_schedule(schedule_id)

    def get_schedule(self, schedule_id):
        with self.store.session() as db:
            record = db.get(PipelineSchedule, schedule_id)
            return record.to_json() if record else None

    def schedule_of(self, owner, ref):
        """The id of ``owner``'s schedule ``ref`` (an id, or its pipeline's name), or None."""
        with self.store.session() as db:
            record = db.get(PipelineSchedule, ref)
            if record is None:
                record = (
                    db.query(PipelineSchedule)
                    .filter(PipelineSchedule.owner == owner, PipelineSchedule.pipeline == ref)
                    .first()
                )
            return (record.id, record.owner) if record else (None, None)

    def schedules(self, owner=None):
        with self.store.session() as db:
            query = db.query(PipelineSchedule).order_by(PipelineSchedule.next_fire)
            if owner is not None:
                query = query.filter(PipelineSchedule.owner == owner)
            return [r.to_json() for r in query.all()]

    async def unschedule(self, schedule_id):
        """Remove a schedule (and its CronWorkflow where Argo fires it); its runs stay."""
        with self.store.session() as db:
            data = db.get(PipelineSchedule, schedule_id).to_json()
        if data["backend"] == "argo":
            await self.argo.delete_cron(schedule_id)
        with self.store.session() as db:
            record = db.get(PipelineSchedule, schedule_id)
            if record is not None:
                db.delete(record)
        self.schedules_changed.set()
        return data

    async def _schedule_loop(self):
        while True:
            self.schedules_changed.clear()
            try:
                await self._fire_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                self.log.exception("pipeline schedules: a round failed; the next one tries again")
            with self.store.session() as db:
                times = [
                    aware(t)
                    for i, t in db.query(PipelineSchedule.id, PipelineSchedule.next_fire).all()
                    if i not in self.blocked
                ]
            wait = 30.0
            if times:
                wait = min(max((min(times) - utcnow()).total_seconds(), 0.01), 30.0)
            try:
                await asyncio.wait_for(self.schedules_changed.wait(), timeout=wait)
            except asyncio.TimeoutError:
                pass

    def adopt(self, workflow):
        """Record a run that a schedule's CronWorkflow made (seen by the watch): its id is its
        Workflow's name, its spec and params the schedule's; the run is followed as any run Argo
        runs. A Workflow of a schedule removed since, or already recorded, is left alone, as is one
        that schedule's own CronWorkflow did not make (a label copied onto another Workflow)."""
        meta = workflow["metadata"]
        run_id, schedule_id = meta["name"], meta["labels"][SCHEDULE_LABEL]
        made_by = cron_name(schedule_id)
        if meta["labels"].get(CRON_LABEL) != made_by or not run_id.startswith(made_by + "-"):
            return
        if run_id in self.wake or len(run_id) > 32:
            return
        when = _parse_time((meta.get("annotations") or {}).get(SCHEDULED_TIME) or meta["creationTimestamp"])
        when = when.astimezone(timezone.utc)  # Argo writes it in the schedule's time zone
        with self.store.session() as db:
            if db.get(PipelineRun, run_id) is not None:
                return
            record = db.get(PipelineSchedule, schedule_id)
            if record is None or record.backend != "argo":
                return
            spec = parse_pipeline(record.spec)
            db.add(
                PipelineRun(
                    id=run_id,
                    owner=record.owner,
                    pipeline=spec.name,
                    spec=record.spec,
                    params=record.params,
                    status=PIPELINE_RUNNING,
                    message=f"{len(spec.tasks)} tasks",
                    caller=record.caller,
                    schedule_id=schedule_id,
                    scheduled_for=when,
                    backend="argo",
                    workflow=run_id,
                )
            )
            for name in spec.order():
                db.add(
                    PipelineTask(
                        run_id=run_id, name=name, status=TASK_PENDING, job_id="", attempts=0, outputs={}, message=""
                    )
                )
            record.last_fire = when
            record.message = f"run {run_id} for {when:%Y-%m-%d %H:%M:%S} UTC (Argo's CronWorkflow made it)"
            caller, params = record.caller, record.params
        self.log.info("pipeline %s: run %s made by its schedule's CronWorkflow", spec.name, run_id)
        self._open(run_id)
        self.checks[run_id] = asyncio.ensure_future(self._check_adopted(run_id, spec, caller, params, when))

    async def _check_adopted(self, run_id, spec, caller, params, when):
        """Check a run Argo made on a schedule as the service checks each run it fires (the
        projects' limits, the scripts and images may have changed since the schedule was made):
        refused, its Workflow is stopped and the run fails with the reason."""
        try:
            await self._check_tasks(caller, spec, params, run_id=run_id, scheduled=when)
        except SpecError as e:
            await self.argo.cancel(run_id)  # a CronWorkflow's run is named as its Workflow
            for task in self.get(run_id)["tasks"]:
                if task["status"] in (TASK_PENDING, TASK_RUNNING):
                    self._set_task(run_id, task["name"], CANCELLED, "its run was refused")
            self._end(run_id, FAILED, f"refused when its schedule fired: {e}")
        finally:
            self.checks.pop(run_id, None)

    async def _fire_due(self):
        now = utcnow()
        with self.store.session() as db:
            due = [r.id for r in db.query(PipelineSchedule).filter(PipelineSchedule.next_fire <= now).all()]
        for schedule_id in due:
            if schedule_id not in self.blocked:
                await self._fire(schedule_id, now)

    async def _fire(self, schedule_id, now):
        """Start the runs a schedule owes: every missed fire time up to now with catchup (at most
        MAX_CATCHUP a round), else the latest; each within max_active_runs and depends_on_past (a
        schedule that must wait is looked at again when one of its runs ends)."""
        with self.store.session() as db:
            record = db.get(PipelineSchedule, schedule_id)
            if record is None:
                return
            spec_body, params, caller = record.spec, record.params, record.caller
            fire, backend = aware(record.next_fire), record.backend
        schedule = parse_pipeline(spec_body).schedule
        if backend == "argo":  # its CronWorkflow fires; the time shown moves on
            with self.store.session() as db:
                record = db.get(PipelineSchedule, schedule_id)
                if record is not None:
                    record.next_fire = schedule.next_after(max(fire, now))
            return
        times = []
        while fire <= now and len(times) < MAX_CATCHUP:
            times.append(fire)
            fire = schedule.next_after(fire)
        skipped = 0
        if not schedule.catchup and len(times) > 1:
            skipped, times = len(times) - 1, times[-1:]
        next_fire, message, last = fire, "", None
        for when in times:
            with self.store.session() as db:
                runs = (
                    db.query(PipelineRun.status)
                    .filter(PipelineRun.schedule_id == schedule_id)
                    .order_by(PipelineRun.scheduled_for.desc())
                    .all()
                )
            active = sum(1 for (status,) in runs if status == PIPELINE_RUNNING)
            previous = runs[0][0] if runs else None
            waiting = None
            if active >= schedule.max_active_runs:
                waiting = f"{active} runs going (max_active_runs {schedule.max_active_runs})"
            elif schedule.depends_on_past and previous not in (None, SUCCEEDED):
                waiting = f"the run before is {previous} (depends_on_past)"
            if waiting:
                next_fire, message = when, f"the run for {when:%Y-%m-%d %H:%M:%S} UTC waits: {waiting}"
                self.blocked.add(schedule_id)
                break
            try:
                run = await self.create(
                    caller, {"spec": spec_body, "params": params}, schedule_id=schedule_id, scheduled_for=when
                )
                message = f"run {run['id']} for {when:%Y-%m-%d %H:%M:%S} UTC"
            except SpecError as e:  # the workspace changed since (a script gone): said; the next time tries again
                message = f"the run for {when:%Y-%m-%d %H:%M:%S} UTC was refused: {e}"
            last = when
        if skipped:
            message += f" ({skipped} missed times skipped: catchup is off)"
        with self.store.session() as db:
            record = db.get(PipelineSchedule, schedule_id)
            if record is not None:
                record.next_fire, record.message = next_fire, message
                if last is not None:
                    record.last_fire = last


_TICK = timedelta(microseconds=1)
SERVE_POLL_SECONDS = 0.5  # how often a running serve task's serving is looked at (a read of the store)
SERVE_TIMEOUT = 600  # a serve task's time to answer, unless its timeout says otherwise


class _JOB:
    kind = "job"


def _parse_time(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def experiment_results(experiment):
    """An experiment task's outputs: its best trial's value, parameters and (a model class's) model."""
    best = experiment.get("best") or {}
    results = {"best.value": str(best.get("value", ""))}
    for key, value in (best.get("params") or {}).items():
        results[f"best.params.{key}"] = str(value)
    if best.get("model"):
        results["best.model"] = best["model"]
    return results


def experiment_summary(experiment, trials):
    """An experiment task's log: what it ended with and each trial."""
    if experiment is None:
        return "its experiment was forgotten\n"
    lines = [f"experiment {experiment['name']} ({experiment['id']}): {experiment['status']}: {experiment['message']}"]
    for trial in trials:
        value = "" if trial.get("value") is None else f" {trial['value']}"
        lines.append(f"  trial {trial['number']}: {trial['state']}{value} {json.dumps(trial.get('params') or {})}")
    return "\n".join(lines) + "\n"


def _workflow_of(run):
    """The Argo Workflow of a run Argo runs (a run from before migration 0007: by its name)."""
    return run.workflow or workflow_name(run.pipeline, run.id)
