"""The experiment manager: owns every experiment from submit to its best trial.

An experiment asks its search (:mod:`.search`) for a trial's parameters whenever a slot is free
(``parallel_trials``), and submits that trial as an ordinary job of its owner, so the queue,
quotas, projects, GPUs, images, logs and cancel of jobs all apply. A trial reports to the service
over HTTP with a token of its own (:mod:`kubestudio.trial`); a trial that reports nothing is read
from its log (``val_acc=0.91`` lines, Katib's StdOut convention). When the pruner calls for it, the
trial's job is cancelled and the trial is *pruned*. The experiment ends at ``max_trials``, at the
goal, at ``max_failed_trials``, at ``max_runtime`` or when its owner cancels it.

Everything is recorded in the service's store as it happens; after a restart each running
experiment's study is made again from it and goes on (the jobs manager resumed the trials' jobs).
"""

import asyncio
import hashlib
import hmac
import json
import math
import re
import secrets
import time
import uuid

from ...services.store import aware
from ..models import (
    CANCELLED,
    DONE,
    EXPERIMENT_RUNNING,
    FAILED,
    SUCCEEDED,
    TRIAL_COMPLETE,
    TRIAL_FAILED,
    TRIAL_PRUNED,
    TRIAL_TOKEN_ENV,
    Experiment,
    Trial,
    utcnow,
)
from ..spec import SpecError
from .katib import experiment_name as katib_experiment_name
from .katibrun import KatibRunner
from .search import Search
from .spec import example_value, experiment_from_json, format_value, parse_experiment

TRIAL_CANCELLED = "cancelled"
EXPERIMENT_STOPPED = "cancelled by its experiment"  # a trial's job cancelled as its experiment ended
# Katib's StdOut metrics collector's convention: "name=value" anywhere on a line
STDOUT_METRIC = re.compile(
    r"(?:^|[\s,;])([A-Za-z_][A-Za-z0-9_.\-/]*)\s*=\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
)


def token_hash(token):
    return hashlib.sha256(token.encode()).hexdigest()


def metrics_from_log(text, metric):
    """The last value of ``metric`` written as ``metric=value`` in a log, or None."""
    value = None
    for line in text.splitlines():
        for name, number in STDOUT_METRIC.findall(line):
            if name == metric:
                parsed = float(number)
                if math.isfinite(parsed):
                    value = parsed
    return value


class ReportRefused(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def checked_report(body):
    """``({metric: float}, step or None)`` of a trial's report, or ReportRefused naming the field."""
    metrics = body.get("metrics")
    if not isinstance(metrics, dict) or not metrics:
        raise ReportRefused(400, 'metrics: send {"metrics": {"name": value, ...}} with at least one')
    checked = {}
    for name, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ReportRefused(400, f"metrics.{name}: must be a number, not {value!r}")
        if not math.isfinite(value):
            raise ReportRefused(400, f"metrics.{name}: {value} is not a finite number; it was not recorded")
        checked[name] = float(value)
    step = body.get("step")
    if step is not None and (isinstance(step, bool) or not isinstance(step, int) or step < 0):
        raise ReportRefused(400, f"step: a whole number from 0, not {step!r}")
    return checked, step


class ExperimentManager:
    def __init__(self, config, store, jobs, log, report_url, katib_db_manager="katib-db-manager.kubeflow:6789"):
        self.config = config  # the JobService: max_trials_per_experiment, max_running_experiments_per_user
        self.store = store
        self.jobs = jobs  # the JobManager: every trial is one of its jobs
        self.log = log
        self.report_url = report_url  # what a trial's processes call: <service>/api/experiments/
        self.searches = {}  # experiment id -> Search
        self.tasks = {}  # experiment id -> its driving task
        self.wake = {}  # experiment id -> Event set when something changed
        self.pruning = set()  # (experiment id, number) whose job is being cancelled by the pruner
        self.trial_of_job = {}  # job id -> (experiment id, number)
        self._messages = {}  # experiment id -> the message last written
        self.katib = KatibRunner(self, katib_db_manager)
        self.katib_specs = {}  # experiment id -> the spec of a running experiment Katib searches
        self.finished_listeners = []  # called with (experiment id) when an experiment ends
        jobs.finished_listeners.append(self._job_finished)

    def limits(self):
        return {
            **self.jobs.limits(),
            "max_trials": self.config.max_trials_per_experiment,
            "max_parallel_trials": self.config.max_parallel_trials,
        }

    # ------------------------------------------------------------------ lifecycle

    async def start(self):
        with self.store.session() as db:
            running = [
                (e.id, e.backend) for e in db.query(Experiment).filter(Experiment.status == EXPERIMENT_RUNNING).all()
            ]
        for experiment_id, backend in running:
            try:
                if backend == "katib":
                    self._follow_katib(experiment_id)
                else:
                    self._open(experiment_id)
            except Exception as e:  # its spec no longer parses (a limit was lowered): it ends, saying why
                self.log.exception("experiment %s could not be resumed", experiment_id)
                self._end(experiment_id, FAILED, f"could not be resumed after a restart: {e}")

    async def stop(self):
        for task in self.tasks.values():
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        self.tasks.clear()
        await self.katib.db.close()

    def _follow_katib(self, experiment_id):
        """Follow the Katib Experiment of a running experiment (made, or made before a restart)."""
        with self.store.session() as db:
            record = db.get(Experiment, experiment_id)
            spec = experiment_from_json(record.spec)
            created = aware(record.created)
        self.katib_specs[experiment_id] = spec
        deadline = None
        if spec.max_runtime:
            deadline = asyncio.get_running_loop().time() + spec.max_runtime - (utcnow() - created).total_seconds()
        self.tasks[experiment_id] = asyncio.ensure_future(self._drive_katib(experiment_id, spec, deadline))

    async def _drive_katib(self, experiment_id, spec, deadline):
        try:
            await self.katib.drive(experiment_id, spec, deadline)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self.log.exception("experiment %s: following its Katib Experiment failed", experiment_id)
            self._end(
                experiment_id,
                FAILED,
                f"internal error following Katib ({type(e).__name__}); the administrator can find it in the service log",
            )

    def _open(self, experiment_id):
        """Make the study again from the store and drive the experiment."""
        with self.store.session() as db:
            record = db.get(Experiment, experiment_id)
            spec = experiment_from_json(record.spec)
            trials = db.query(Trial).filter(Trial.experiment_id == experiment_id).order_by(Trial.number).all()
            stored = [
                {
                    "number": t.number,
                    "raw": t.raw,
                    "state": t.state,
                    "value": t.value,
                    "intermediate": t.intermediate,
                }
                for t in trials
            ]
            for t in trials:
                if t.job_id:
                    self.trial_of_job[t.job_id] = (experiment_id, t.number)
        self.searches[experiment_id] = Search(spec, stored)
        self.wake[experiment_id] = asyncio.Event()
        self.tasks[experiment_id] = asyncio.ensure_future(self._drive(experiment_id))

    # ------------------------------------------------------------------ requests

    async def check(self, identity, body):
        """(spec, the first trial's run) of an experiment as it would be made: its fields, project,
        quota and script; SpecError naming the field, nothing made."""
        spec = parse_experiment(body, self.limits())
        caller = {"name": identity["name"], "groups": list(identity.get("groups") or [])}
        return spec, await self.jobs.check(caller, spec.trial_job(0, {p.name: example_value(p) for p in spec.space}))

    async def create(self, identity, body):
        spec = parse_experiment(body, self.limits())
        owner = identity["name"]
        with self.store.session() as db:
            clash = db.query(Experiment.id).filter(Experiment.owner == owner, Experiment.name == spec.name).first()
            running = (
                db.query(Experiment.id)
                .filter(Experiment.owner == owner, Experiment.status == EXPERIMENT_RUNNING)
                .count()
            )
        if clash:
            raise SpecError(
                f"name: you already have an experiment named {spec.name!r} ({clash[0]}); choose another "
                "name or forget that one",
                409,
            )
        if running >= self.config.max_running_experiments_per_user:
            raise SpecError(
                f"experiments: you have {running} running, the most this hub allows "
                f"(JobService.max_running_experiments_per_user); wait for one or cancel it",
                409,
            )
        caller = {"name": owner, "groups": list(identity.get("groups") or [])}
        # the first trial as it would be sent: the project, the quota and the script are checked
        # now, not after the experiment is made
        run = await self.jobs.check(caller, spec.trial_job(0, {p.name: example_value(p) for p in spec.space}))
        backend = await self.katib.choose(spec, run)
        experiment_id = uuid.uuid4().hex[:12]
        report_token = ""
        if backend == "katib":  # Katib's trials come from one template: one token for them all
            report_token = secrets.token_urlsafe(24)
            await self.katib.create(caller, spec, experiment_id, report_token)
        with self.store.session() as db:
            db.add(
                Experiment(
                    id=experiment_id,
                    owner=owner,
                    name=spec.name,
                    project=run.project.name,
                    spec=spec.to_json(),
                    status=EXPERIMENT_RUNNING,
                    message=f"starting {spec.parallel_trials} of {spec.max_trials} trials",
                    best={},
                    caller=caller,
                    backend=backend,
                    report_token_hash=token_hash(report_token) if report_token else "",
                )
            )
        self.log.info(
            "experiment %s (%s) of %s: %s over %d parameters, %d trials, %d at a time, searched by %s",
            experiment_id,
            spec.name,
            owner,
            spec.algorithm,
            len(spec.space),
            spec.max_trials,
            spec.parallel_trials,
            backend,
        )
        if backend == "katib":
            self._follow_katib(experiment_id)
        else:
            self._open(experiment_id)
        return self.get(experiment_id)

    async def cancel(self, experiment_id, who):
        """Stop a running experiment and its running trials; a finished one is answered as it is."""
        task = self.tasks.get(experiment_id)
        if task is None:
            return self.get(experiment_id)
        # its driving stops first: no new trial starts while the running ones are stopped
        task.cancel()
        try:
            await task
        except (asyncio.CancelledError, Exception):
            pass
        if experiment_id in self.katib_specs:
            await self.katib.cancel(experiment_id, who)
            return self.get(experiment_id)
        await self._stop_running_trials(experiment_id, f"cancelled by {who}")
        self._end(experiment_id, CANCELLED, f"cancelled by {who}")
        return self.get(experiment_id)

    async def forget(self, experiment_id):
        """Remove a finished experiment's records and its trials' jobs (their names are free again);
        Katib's Experiment too, with its Trials and their jobs."""
        with self.store.session() as db:
            backend = db.query(Experiment.backend).filter(Experiment.id == experiment_id).scalar()
        if backend == "katib":
            await self.katib.delete(experiment_id)
        with self.store.session() as db:
            jobs = [j for (j,) in db.query(Trial.job_id).filter(Trial.experiment_id == experiment_id).all() if j]
            db.query(Trial).filter(Trial.experiment_id == experiment_id).delete()
            db.query(Experiment).filter(Experiment.id == experiment_id).delete()
        self.jobs.delete_finished_records(jobs)

    # ------------------------------------------------------------------ reading

    def owner_of(self, experiment_id):
        with self.store.session() as db:
            return db.query(Experiment.owner).filter(Experiment.id == experiment_id).scalar()

    def id_by_name(self, owner, name):
        with self.store.session() as db:
            return db.query(Experiment.id).filter(Experiment.owner == owner, Experiment.name == name).scalar()

    def _counts(self, db, experiment_id):
        counts = {}
        for (state,) in db.query(Trial.state).filter(Trial.experiment_id == experiment_id).all():
            counts[state] = counts.get(state, 0) + 1
        return counts

    def get(self, experiment_id):
        with self.store.session() as db:
            record = db.get(Experiment, experiment_id)
            return record.to_json(self._counts(db, experiment_id)) if record else None

    def list(self, owner=None):
        with self.store.session() as db:
            query = db.query(Experiment).order_by(Experiment.created.desc())
            if owner is not None:
                query = query.filter(Experiment.owner == owner)
            return [r.to_json(self._counts(db, r.id)) for r in query.limit(500).all()]

    def trials(self, experiment_id):
        """Every trial, in order, with its job's status while it runs."""
        with self.store.session() as db:
            trials = db.query(Trial).filter(Trial.experiment_id == experiment_id).order_by(Trial.number).all()
            rows = [(t, t.job_id) for t in trials]
            return [
                t.to_json(self.jobs.get(job_id) if job_id and t.state == EXPERIMENT_RUNNING else None)
                for t, job_id in rows
            ]

    async def trial_log(self, experiment_id, number):
        """A trial's log: its job's, or (Katib made it) its pods' as the cluster has them; None
        when there is no such trial."""
        with self.store.session() as db:
            trial = db.get(Trial, (experiment_id, number))
            if trial is None:
                return None
            job_id, katib_trial = trial.job_id, trial.katib_trial
        if katib_trial:
            return await self.katib.logs(katib_trial)
        if not job_id:
            return ""
        return "".join([piece async for piece in self.jobs.log_text(job_id)])

    def trial_job(self, experiment_id, number):
        with self.store.session() as db:
            trial = db.get(Trial, (experiment_id, number))
            return trial.job_id if trial else None

    # ------------------------------------------------------------------ reports

    def report(self, experiment_id, number, token, body):
        """What a trial sends: ``{"metrics": {name: value}, "step": N}`` (intermediate values) or
        without a step (its final values). Answers whether the trial should stop (pruned)."""
        with self.store.session() as db:
            trial = db.get(Trial, (experiment_id, number))
            if trial is None or not hmac.compare_digest(trial.token_hash, token_hash(token or "")):
                raise ReportRefused(403, "this token reports for another trial (or none)")
            if trial.state != EXPERIMENT_RUNNING:
                raise ReportRefused(409, f"trial {number} has ended ({trial.state}); nothing more is recorded")
            checked, step = checked_report(body)
            trial.metrics = {**(trial.metrics or {}), **checked}
            spec_metric = self.searches[experiment_id].spec.objective.metric if experiment_id in self.searches else None
            objective = checked.get(spec_metric)
            prune = False
            if objective is not None:
                if step is None:
                    trial.value, trial.final = objective, True
                else:
                    trial.intermediate = {**(trial.intermediate or {}), str(step): objective}
                    if not trial.final:
                        trial.value = objective
                    prune = self.searches[experiment_id].report(number, step, objective)
        if prune and (experiment_id, number) not in self.pruning:
            self.pruning.add((experiment_id, number))
            asyncio.ensure_future(self._prune(experiment_id, number, step))
        # nothing for the experiment to do until the trial's job ends (its end wakes it)
        return {"recorded": sorted(checked), "prune": prune or (experiment_id, number) in self.pruning}

    async def report_katib(self, experiment_id, trial_name, token, body):
        """A report from a trial Katib made: the experiment's token, then Katib's DB manager (where
        Katib's trial controller reads it); kept on our trial too for the page's charts."""
        with self.store.session() as db:
            experiment = db.get(Experiment, experiment_id)
            if (
                experiment is None
                or experiment.backend != "katib"
                or not hmac.compare_digest(experiment.report_token_hash, token_hash(token or ""))
            ):
                raise ReportRefused(403, "this token reports for another experiment (or none)")
            if not trial_name.startswith(f"{katib_experiment_name(experiment_id)}-"):
                # the token is the experiment's: it reports for that experiment's trials alone
                raise ReportRefused(403, f"{trial_name} is not a trial of this experiment")
            if experiment.status != EXPERIMENT_RUNNING:
                raise ReportRefused(409, f"the experiment has ended ({experiment.status}); nothing more is recorded")
            metric = experiment.spec["objective"]["metric"]
        checked, step = checked_report(body)
        try:
            await self.katib.db.report(trial_name, checked)
        except Exception as e:  # grpc's errors: the trial retries, the service log says why
            self.log.warning("experiment %s: Katib's DB manager refused %s's report: %s", experiment_id, trial_name, e)
            raise ReportRefused(502, f"Katib's DB manager did not take the report ({type(e).__name__}); try again")
        with self.store.session() as db:
            trial = (
                db.query(Trial).filter(Trial.experiment_id == experiment_id, Trial.katib_trial == trial_name).first()
            )
            if trial is not None and trial.state == EXPERIMENT_RUNNING:
                trial.metrics = {**(trial.metrics or {}), **checked}
                if metric in checked:
                    if step is None:
                        trial.value, trial.final = checked[metric], True
                    else:
                        trial.intermediate = {**(trial.intermediate or {}), str(step): checked[metric]}
        return {"recorded": sorted(checked), "prune": False}

    async def _prune(self, experiment_id, number, step):
        job_id = self.trial_job(experiment_id, number)
        self.log.info("experiment %s: trial %d pruned at step %s", experiment_id, number, step)
        if job_id:
            await self.jobs.cancel(job_id, f"the pruner (trial {number} stopped early at step {step})")

    # ------------------------------------------------------------------ driving

    def _kick(self, experiment_id):
        event = self.wake.get(experiment_id)
        if event is not None:
            event.set()

    def _job_finished(self, job_id, record):
        found = self.trial_of_job.get(job_id)
        if found:
            self._kick(found[0])

    def _trial_env(self, token, number, values, experiment_id):
        search = self.searches[experiment_id]
        spec = search.spec
        env = {}
        if spec.model is not None:  # the runner calls train(dataset, **params): the fixed ones too
            values = {**spec.model.fixed, **values}
            env = {
                "KUBESTUDIO_TRIAL_MODEL_CLASS": spec.model.name,
                "KUBESTUDIO_TRIAL_TRAIN_DATASET": spec.model.train_dataset,
                "KUBESTUDIO_TRIAL_VALIDATE_DATASET": spec.model.validate_dataset,
                "KUBESTUDIO_TRIAL_SAVE": spec.model.save_folder(spec.name, number),
            }
        return {
            **env,
            "KUBESTUDIO_TRIAL_PARAMS": json.dumps(values),
            "KUBESTUDIO_TRIAL_NUMBER": str(number),
            "KUBESTUDIO_EXPERIMENT": spec.name,
            "KUBESTUDIO_TRIAL_METRIC": spec.objective.metric,
            "KUBESTUDIO_TRIAL_URL": f"{self.report_url}{experiment_id}/trials/{number}/report",
            TRIAL_TOKEN_ENV: token,
        }

    async def _drive(self, experiment_id):
        search = self.searches[experiment_id]
        spec = search.spec
        event = self.wake[experiment_id]
        with self.store.session() as db:
            created = aware(db.get(Experiment, experiment_id).created)
        deadline = None
        if spec.max_runtime:
            deadline = time.monotonic() + spec.max_runtime - (utcnow() - created).total_seconds()
        try:
            while True:
                event.clear()
                await self._collect(experiment_id)
                if await self._maybe_end(experiment_id, deadline):
                    return
                await self._fill(experiment_id)
                timeout = None if deadline is None else max(deadline - time.monotonic(), 0.01)
                try:
                    await asyncio.wait_for(event.wait(), timeout=min(timeout or 30, 30))
                except asyncio.TimeoutError:
                    pass
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self.log.exception("experiment %s failed in the service", experiment_id)
            await self._stop_running_trials(experiment_id, "failed in the service")
            self._end(
                experiment_id,
                FAILED,
                f"internal error in the jobs service ({type(e).__name__}); the administrator can find it in the service log",
            )

    def _trials(self, experiment_id):
        with self.store.session() as db:
            return [
                (t.number, t.state, t.job_id, t.value, t.final)
                for t in db.query(Trial).filter(Trial.experiment_id == experiment_id).order_by(Trial.number).all()
            ]

    async def _collect(self, experiment_id):
        """Trials whose job has ended: complete (with a value), pruned or failed."""
        search = self.searches[experiment_id]
        metric = search.spec.objective.metric
        for number, state, job_id, value, _final in self._trials(experiment_id):
            if state != EXPERIMENT_RUNNING:
                continue
            job = self.jobs.get(job_id) if job_id else None
            if job is not None and job["status"] not in DONE:
                continue
            pruned = (experiment_id, number) in self.pruning
            message = ""
            if job is None:
                new_state, message = TRIAL_FAILED, "its job is gone"
            elif pruned:
                new_state = TRIAL_PRUNED
                message = "stopped early: its values were worse than the other trials' at the same step"
            elif job["status"] == SUCCEEDED:
                if value is None:
                    text = "".join([piece async for piece in self.jobs.log_text(job_id)])
                    value = metrics_from_log(text, metric)
                new_state = TRIAL_COMPLETE if value is not None else TRIAL_FAILED
                if value is None:
                    message = (
                        f"reported no {metric} (report it with kubestudio.trial.report({metric}=...), "
                        f"or print a line {metric}=<value>)"
                    )
            elif job["status"] == CANCELLED and job["message"].startswith(EXPERIMENT_STOPPED):
                new_state, message = TRIAL_CANCELLED, job["message"]
            else:
                new_state, message = TRIAL_FAILED, f"its job {job['status']}: {job['message'] or 'no reason given'}"
            self.pruning.discard((experiment_id, number))
            self._set_trial(experiment_id, number, new_state, value if new_state == TRIAL_COMPLETE else None, message)
            search.tell(number, "complete" if new_state == TRIAL_COMPLETE else "pruned" if pruned else "failed", value)

    def _set_trial(self, experiment_id, number, state, value, message):
        with self.store.session() as db:
            trial = db.get(Trial, (experiment_id, number))
            trial.state, trial.message, trial.finished = state, message, utcnow()
            if state == TRIAL_COMPLETE:
                trial.value = value
            experiment = db.get(Experiment, experiment_id)
            parsed = experiment_from_json(experiment.spec)
            objective = parsed.objective
            best = experiment.best or {}
            if state == TRIAL_COMPLETE and objective.better(value, best.get("value")):
                best = {"number": number, "value": value, "params": trial.params, "job": trial.job_id}
                model = parsed.model
                if model is not None:  # what its save() wrote, with the class beside it: servable
                    best.update(model=model.save_folder(experiment.name, number), model_class=model.serving_class)
                experiment.best = best
        self.log.info(
            "experiment %s: trial %d %s%s",
            experiment_id,
            number,
            state,
            f" ({format_value(value)})" if value is not None and state == TRIAL_COMPLETE else "",
        )

    async def _maybe_end(self, experiment_id, deadline):
        search = self.searches[experiment_id]
        spec = search.spec
        trials = self._trials(experiment_id)
        running = [t for t in trials if t[1] == EXPERIMENT_RUNNING]
        failed = sum(1 for t in trials if t[1] == TRIAL_FAILED)
        with self.store.session() as db:
            best = dict(db.get(Experiment, experiment_id).best or {})
        if best and spec.objective.reached(best.get("value")):
            await self._stop_running_trials(experiment_id, "it reached its goal")
            self._end(
                experiment_id,
                SUCCEEDED,
                f"reached the goal: trial {best['number']} gave {spec.objective.metric}={format_value(best['value'])}",
            )
            return True
        if spec.max_failed_trials is not None and failed >= spec.max_failed_trials:
            await self._stop_running_trials(experiment_id, "too many trials failed")
            self._end(experiment_id, FAILED, f"{failed} trials failed (max_failed_trials is {spec.max_failed_trials})")
            return True
        if deadline is not None and time.monotonic() >= deadline:
            await self._stop_running_trials(experiment_id, "it ran past its max_runtime")
            self._end(
                experiment_id,
                SUCCEEDED if best else FAILED,
                f"stopped after max_runtime ({spec.max_runtime} s)"
                + (f"; best: trial {best['number']}" if best else ""),
            )
            return True
        if (len(trials) >= spec.max_trials or search.exhausted()) and not running:
            if best:
                self._end(
                    experiment_id,
                    SUCCEEDED,
                    f"{len(trials)} trials; best: trial {best['number']} with "
                    f"{spec.objective.metric}={format_value(best['value'])}",
                )
            else:
                self._end(
                    experiment_id, FAILED, f"none of the {len(trials)} trials gave a value of {spec.objective.metric}"
                )
            return True
        return False

    async def _fill(self, experiment_id):
        """Start trials while there are free slots and trials left."""
        search = self.searches[experiment_id]
        spec = search.spec
        trials = self._trials(experiment_id)
        running = sum(1 for t in trials if t[1] == EXPERIMENT_RUNNING)
        number = len(trials)
        with self.store.session() as db:
            caller = dict(db.get(Experiment, experiment_id).caller)
        while running < spec.parallel_trials and number < spec.max_trials and not search.exhausted():
            raw, values = await asyncio.to_thread(search.ask, number)
            token = secrets.token_urlsafe(24)
            with self.store.session() as db:
                db.add(
                    Trial(
                        experiment_id=experiment_id,
                        number=number,
                        params=values,
                        raw=raw,
                        job_id="",
                        state=EXPERIMENT_RUNNING,
                        final=False,
                        intermediate={},
                        metrics={},
                        token_hash=token_hash(token),
                        message="",
                    )
                )
            body = spec.trial_job(number, values)
            try:
                job = await self.jobs.submit(
                    caller, body, service_env=self._trial_env(token, number, values, experiment_id)
                )
            except SpecError as e:
                self._set_trial(experiment_id, number, TRIAL_FAILED, None, f"its job was refused: {e}")
                search.tell(number, "failed")
            else:
                self.trial_of_job[job["id"]] = (experiment_id, number)
                with self.store.session() as db:
                    db.get(Trial, (experiment_id, number)).job_id = job["id"]
                running += 1
            number += 1
        self._set_message(experiment_id, trials_done=number, running=running)

    def _set_message(self, experiment_id, trials_done, running):
        search = self.searches.get(experiment_id)
        spec = search.spec if search is not None else self.katib_specs[experiment_id]
        message = f"{trials_done} of {spec.max_trials} trials started, {running} running"
        if self._messages.get(experiment_id) == message:
            return
        self._messages[experiment_id] = message
        with self.store.session() as db:
            record = db.get(Experiment, experiment_id)
            if record.status == EXPERIMENT_RUNNING:
                record.message = message

    async def _stop_running_trials(self, experiment_id, reason):
        """Cancel the running trials' jobs, which then say ``cancelled by its experiment (why)``."""
        for number, state, job_id, _value, _final in self._trials(experiment_id):
            if state == EXPERIMENT_RUNNING and job_id:
                await self.jobs.cancel(job_id, f"its experiment ({reason})")
                self._set_trial(experiment_id, number, TRIAL_CANCELLED, None, f"its experiment ended: {reason}")
                self.searches[experiment_id].tell(number, "failed")

    def _end(self, experiment_id, status, message):
        with self.store.session() as db:
            record = db.get(Experiment, experiment_id)
            if record.status != EXPERIMENT_RUNNING:
                return
            record.status, record.message, record.finished = status, message, utcnow()
            owner, name = record.owner, record.name
        self.log.info("experiment %s (%s) of %s %s: %s", experiment_id, name, owner, status, message)
        task = self.tasks.pop(experiment_id, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        self.searches.pop(experiment_id, None)
        self.katib_specs.pop(experiment_id, None)
        self.wake.pop(experiment_id, None)
        self._messages.pop(experiment_id, None)
        for job_id in [j for j, (e, _) in self.trial_of_job.items() if e == experiment_id]:
            self.trial_of_job.pop(job_id, None)
        for listener in self.finished_listeners:
            try:
                listener(experiment_id)
            except Exception:
                self.log.exception("experiment %s: a listener of its end failed", experiment_id)
