"""The serving manager: every model served, from ``serve`` to ``delete``, whatever runs it.

A serve request is checked in full (spec, project, the model's files, GPUs) before anything
starts. Each serving has one supervisor task: it starts the runtime and waits until it answers,
follows it, and starts it again after a crash with a doubling back-off (1 s .. 60 s; the crash
and the end of its log are in the record). A model that cannot load fails without restarts until
its spec changes. An update (a new model version) is a new *generation*: the new runtime starts
beside the old one, which answers until the new one is ready, so requests never fail during the
roll; a version that does not start leaves the old one serving, with the reason in the message.
After a service restart, a runtime still running is adopted; one that is gone starts again.
"""

import asyncio
import time
import uuid

from sqlalchemy.exc import IntegrityError

from ...spawner.projects import Project, hub_projects
from ...spawner.request import SpawnRefused, hub_project, resolve_project
from ..models import (
    SERVING_FAILED,
    SERVING_READY,
    SERVING_RESTARTING,
    SERVING_STARTING,
    SERVING_STOPPED,
    Serving,
    utcnow,
)
from ..spec import SpecError
from .backends.base import ServingFailed, ServingRun
from .spec import parse_serve_spec, serve_spec_from_json

FIRST_BACKOFF, MAX_BACKOFF = 1.0, 60.0
STABLE_SECONDS = 60.0  # a runtime up this long starts its next back-off from the beginning
WATCH_SECONDS = 0.5
FLUSH_SECONDS = 5.0
STOPPED_WITH_HUB = "stopped with the hub"


class ServingManager:
    def __init__(self, config, store, backend, hub, log, prefix, jobs=None):
        self.config = config
        self.jobs = jobs  # the JobManager: a finished job's output folder may be served by naming the job
        self.store = store
        self.backend = backend
        self.hub = hub
        self.log = log
        self.prefix = prefix  # the service's public prefix: servings answer under <prefix>serve/<user>/<name>/
        self.tasks = {}  # serving id -> its supervisor
        self.wake = {}  # serving id -> Event set when its spec changed
        self.runtimes = {}  # serving id -> its runtime, whose url the proxy reads (no store query)
        self._projects = {}  # serving id -> its Project (where its pods are scheduled)
        self.by_name = {}  # (owner, name) -> serving id
        self.counts = {}  # serving id -> requests not yet stored
        self._flusher = None

    def public_url(self, owner, name):
        return f"{self.prefix}serve/{owner}/{name}/"

    # ------------------------------------------------------------------ lifecycle

    async def start(self):
        """Adopt the runtimes still running; start again those that stopped meanwhile."""
        await self.backend.connect()
        with self.store.session() as db:
            records = [
                (s.id, s.owner, s.name, s.project, s.status, s.message, dict(s.refs or {}))
                for s in db.query(Serving).all()
            ]
        for serving_id, owner, name, project, status, message, refs in records:
            self.by_name[(owner, name)] = serving_id
            if status == SERVING_FAILED or (status == SERVING_STOPPED and message != STOPPED_WITH_HUB):
                continue
            self.backend.restore(serving_id, owner, project, refs.get("gpus") or [])
            self._projects[serving_id] = await self._project_named(serving_id, project)
            runtime = self.backend.from_refs(refs.get("runtime"))
            adopted = runtime if self.backend.alive(runtime) else None
            self._supervise(serving_id, adopted)
        self._flusher = asyncio.ensure_future(self._flush_loop())

    async def stop(self, stop_servings):
        for task in [self._flusher, *self.tasks.values()]:
            if task is not None:
                task.cancel()
        await asyncio.gather(*[t for t in [self._flusher, *self.tasks.values()] if t], return_exceptions=True)
        self.flush_counts()
        try:
            # servings on a cluster are the cluster's to keep: the service finds them again
            if stop_servings and not self.backend.outlives_the_service:
                await self._stop_all()
        finally:
            await self.backend.close()

    async def _stop_all(self):
        with self.store.session() as db:
            running = [
                (s.id, dict(s.refs or {}))
                for s in db.query(Serving).filter(
                    Serving.status.in_((SERVING_STARTING, SERVING_READY, SERVING_RESTARTING))
                )
            ]
        for serving_id, refs in running:
            for key in ("runtime", "next"):
                await self.backend.stop(self.backend.from_refs(refs.get(key)))
            self._set(serving_id, status=SERVING_STOPPED, message=STOPPED_WITH_HUB)

    # ------------------------------------------------------------------ requests

    async def _project_named(self, serving_id, name):
        """A serving's project after a restart (its owner was a member when it was made)."""
        try:
            return await hub_project(self.hub, name)
        except Exception as e:  # the hub is not up yet, or the project is gone: its name only
            self.log.warning("serving %s: project %s not readable (%s)", serving_id, name, e)
            return Project(name=name)

    async def _project(self, identity, spec):
        try:
            return resolve_project({"project": spec.project}, await hub_projects(self.hub, identity))
        except SpawnRefused as e:
            raise SpecError(str(e), e.status) from None

    async def check(self, identity, body):
        """A serving request's fields and project, without its model (a pipeline's serve task is
        checked before the task that makes the model has run); SpecError naming the field."""
        spec = parse_serve_spec(body, {"max_replicas": self.config.max_serving_replicas})
        await self._project(identity, spec)
        return spec

    async def create(self, identity, body):
        """Serve a model; its record (201). 409 when the name is taken."""
        owner = identity["name"]
        body = self._from_job(owner, body)
        spec = parse_serve_spec(body, {"max_replicas": self.config.max_serving_replicas})
        if (owner, spec.name) in self.by_name:
            raise SpecError(
                f"name: you already serve {spec.name!r} (update it with PUT api/servings/{spec.name}, "
                "or delete it first)",
                409,
            )
        project = await self._project(identity, spec)
        path, model_format = await self.backend.check(owner, spec)
        serving_id = uuid.uuid4().hex[:12]
        self._projects[serving_id] = project
        gpus = self._reserve(serving_id, owner, project, spec)
        try:
            with self.store.session() as db:
                db.add(
                    Serving(
                        id=serving_id,
                        owner=owner,
                        name=spec.name,
                        project=project.name,
                        spec=spec.to_json(),
                        format=model_format,
                        backend=self.backend.name,
                        status=SERVING_STARTING,
                        message="starting the model runtime",
                        generation=1,
                        ready_generation=0,
                        restarts=0,
                        requests=0,
                        refs={"gpus": gpus, "path": path},
                    )
                )
        except IntegrityError:
            self.backend.release(serving_id, owner)
            raise SpecError(f"name: you already serve {spec.name!r}", 409) from None
        self.by_name[(owner, spec.name)] = serving_id
        self._supervise(serving_id)
        return self.get(serving_id)

    def _from_job(self, owner, body):
        """``from_job`` + ``path``: the model is the folder ``path`` under the job's working
        directory (where its script wrote its output), once the job has succeeded."""
        if "from_job" not in body:
            if "path" in body:
                raise SpecError("path: only with from_job (the folder of the job's output)")
            return body
        body = dict(body)
        job_name, path = body.pop("from_job"), body.pop("path", "")
        if "model" in body:
            raise SpecError("model: give either model or from_job, not both")
        if not isinstance(job_name, str) or not isinstance(path, str):
            raise SpecError("from_job: the name of one of your jobs, and path: a folder of its output")
        jobs = [j for j in (self.jobs.list(owner) if self.jobs else []) if job_name in (j["name"], j["id"])]
        if not jobs:
            raise SpecError(f"from_job: you have no job {job_name!r}", 404)
        job = jobs[0]  # the newest of that name
        if job["status"] != "succeeded":
            raise SpecError(
                f"from_job: job {job_name!r} is {job['status']}; serve its output once it has succeeded", 409
            )
        working_dir = (job["spec"].get("working_dir") or "").strip("/")
        body["model"] = "/".join(part for part in (working_dir, path.strip("/")) if part) or "."
        body.setdefault("name", job["name"])
        return body

    def _reserve(self, serving_id, owner, project, spec):
        try:
            return self.backend.reserve(serving_id, owner, project, spec)
        except SpawnRefused as e:  # the ledger's words name its own field: say which of ours it is
            message = str(e).split(": ", 1)[1] if str(e).startswith("gpus: ") else str(e)
            raise SpecError(f"resources.gpu: {message}", e.status) from None

    async def update(self, identity, serving_id, body):
        """A new version of a serving (a new spec; the same name): the old one answers until the
        new one is ready. Its record (generation + 1)."""
        record = self.get(serving_id)
        body = {**body, "name": record["name"]}
        spec = parse_serve_spec(body, {"max_replicas": self.config.max_serving_replicas})
        project = await self._project(identity, spec)
        path, model_format = await self.backend.check(record["owner"], spec)
        old = serve_spec_from_json(record["spec"])
        if old.resources.gpu != spec.resources.gpu or project.name != record["project"]:
            raise SpecError(
                "resources.gpu: a new version keeps the GPUs and project of the serving; delete it "
                "and serve again to change them",
                409,
            )
        with self.store.session() as db:
            serving = db.get(Serving, serving_id)
            serving.spec, serving.format = spec.to_json(), model_format
            serving.generation += 1
            serving.refs = {**serving.refs, "path": path}
            serving.message = f"starting version {serving.generation}"
            if serving.status in (SERVING_FAILED, SERVING_STOPPED):
                serving.status = SERVING_STARTING
            serving.updated = utcnow()
        if serving_id in self.tasks:
            self.wake[serving_id].set()
        else:
            self._supervise(serving_id)
        return self.get(serving_id)

    async def delete(self, serving_id):
        task = self.tasks.pop(serving_id, None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self.wake.pop(serving_id, None)
        self.runtimes.pop(serving_id, None)
        self._projects.pop(serving_id, None)
        self.counts.pop(serving_id, None)
        with self.store.session() as db:
            serving = db.get(Serving, serving_id)
            refs, owner, name = dict(serving.refs or {}), serving.owner, serving.name
        for key in ("runtime", "next"):
            await self.backend.stop(self.backend.from_refs(refs.get(key)))
        self.backend.release(serving_id, owner)
        with self.store.session() as db:
            db.query(Serving).filter(Serving.id == serving_id).delete()
        self.by_name.pop((owner, name), None)

    # ------------------------------------------------------------------ supervising

    def _supervise(self, serving_id, adopted=None):
        self.wake[serving_id] = asyncio.Event()
        self.tasks[serving_id] = asyncio.ensure_future(self._run(serving_id, adopted))

    def _set(self, serving_id, **fields):
        with self.store.session() as db:
            serving = db.get(Serving, serving_id)
            if serving is None:
                return None
            for key, value in fields.items():
                setattr(serving, key, value)
            serving.updated = utcnow()
            return serving.generation

    def _load(self, serving_id):
        """The serving's current version, as its backend starts it."""
        with self.store.session() as db:
            s = db.get(Serving, serving_id)
            return ServingRun(
                id=serving_id,
                owner=s.owner,
                spec=serve_spec_from_json(s.spec),
                path=s.refs.get("path"),
                model_format=s.format,
                generation=s.generation,
                gpus=list(s.refs.get("gpus") or []),
                project=self._projects.get(serving_id),
            )

    def _save_runtime(self, serving_id, key, runtime):
        with self.store.session() as db:
            serving = db.get(Serving, serving_id)
            refs = dict(serving.refs or {})
            if runtime is None:
                refs.pop(key, None)
            else:
                refs[key] = runtime.to_json()
            serving.refs = refs

    async def _launch(self, serving_id, key):
        """Start the current generation's runtime (recorded under ``key`` while it starts)."""
        runtime = await self.backend.launch(self._load(serving_id))
        self._save_runtime(serving_id, key, runtime)
        return runtime

    async def _run(self, serving_id, runtime=None):
        backoff = FIRST_BACKOFF
        try:
            if runtime is not None:  # adopted after a restart
                self._ready(serving_id, runtime)
            while True:
                if runtime is None:
                    try:
                        runtime = await self._launch(serving_id, "runtime")
                    except ServingFailed as e:
                        runtime = None
                        if e.load_error:  # the model cannot load: not again until its spec changes
                            self._set(serving_id, status=SERVING_FAILED, message=str(e))
                            self.log.warning("serving %s failed: %s", serving_id, e)
                            await self._wait_for_update(serving_id)
                            continue
                        self._crashed(serving_id, str(e))
                        await self._sleep_or_update(serving_id, backoff)
                        backoff = min(backoff * 2, MAX_BACKOFF)
                        continue
                    self._ready(serving_id, runtime)
                up_since = time.monotonic()
                runtime = await self._follow(serving_id, runtime)
                if runtime is not None:  # rolled to a new version (_roll made it the one answering)
                    continue
                if time.monotonic() - up_since > STABLE_SECONDS:
                    backoff = FIRST_BACKOFF
                self._crashed(serving_id, f"the model runtime stopped: {self.backend.last_lines(serving_id)}")
                await self._sleep_or_update(serving_id, backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
        except asyncio.CancelledError:
            raise
        except Exception:
            self.log.exception("serving %s: supervisor failed", serving_id)
            self._set(
                serving_id,
                status=SERVING_FAILED,
                message="internal error in the jobs service; the administrator can find it in the service log",
            )

    def _ready(self, serving_id, runtime):
        self._save_runtime(serving_id, "runtime", runtime)
        self.runtimes[serving_id] = runtime
        self._set(serving_id, status=SERVING_READY, message="", ready_generation=runtime.generation)
        self.log.info("serving %s ready (version %d) at %s", serving_id, runtime.generation, runtime.url)

    def _crashed(self, serving_id, message):
        self.runtimes.pop(serving_id, None)
        with self.store.session() as db:
            serving = db.get(Serving, serving_id)
            serving.status, serving.message = SERVING_RESTARTING, message
            serving.restarts += 1
            refs = dict(serving.refs or {})
            refs.pop("runtime", None)
            serving.refs = refs
        self.log.warning("serving %s: %s", serving_id, message)

    async def _sleep_or_update(self, serving_id, seconds):
        wake = self.wake[serving_id]
        try:
            await asyncio.wait_for(wake.wait(), timeout=seconds)
        except asyncio.TimeoutError:
            pass
        wake.clear()

    async def _wait_for_update(self, serving_id):
        wake = self.wake[serving_id]
        await wake.wait()
        wake.clear()
        self._set(serving_id, status=SERVING_STARTING)

    async def _follow(self, serving_id, runtime):
        """Until the runtime stops (None) or a new version is ready (its runtime)."""
        wake = self.wake[serving_id]
        while True:
            if not self.backend.alive(runtime):
                return None
            if wake.is_set():
                wake.clear()
                rolled = await self._roll(serving_id, runtime)
                if rolled is not None:
                    return rolled
            try:
                await asyncio.wait_for(wake.wait(), timeout=WATCH_SECONDS)
            except asyncio.TimeoutError:
                pass

    async def _roll(self, serving_id, old):
        """Start the new generation beside ``old``; switch when it is ready, then stop ``old``."""
        generation = self._set(serving_id, status=SERVING_STARTING)
        try:
            new = await self._launch(serving_id, "next")
        except ServingFailed as e:
            self._save_runtime(serving_id, "next", None)
            self._set(
                serving_id,
                status=SERVING_READY,
                message=f"version {generation} did not start, version {old.generation} still serves: {e}",
            )
            return None
        self._save_runtime(serving_id, "next", None)
        self._ready(serving_id, new)  # requests go to the new version from here
        if not self.backend.rolls_itself:  # the cluster's rollout retires the old pods
            await asyncio.sleep(0.2)  # requests already on their way to the old one finish
            await self.backend.stop(old)
        return new

    # ------------------------------------------------------------------ reading

    def find(self, owner, name):
        return self.by_name.get((owner, name))

    def owner_of(self, serving_id):
        with self.store.session() as db:
            return db.query(Serving.owner).filter(Serving.id == serving_id).scalar()

    def upstream_url(self, serving_id):
        runtime = self.runtimes.get(serving_id)
        return runtime.url if runtime is not None else None

    def upstream_headers(self, serving_id):
        """What the serving's runtime asks of its caller (a local runtime's secret), for the proxy."""
        runtime = self.runtimes.get(serving_id)
        return dict(getattr(runtime, "headers", None) or {})

    def count_request(self, serving_id):
        self.counts[serving_id] = self.counts.get(serving_id, 0) + 1

    def get(self, serving_id):
        with self.store.session() as db:
            s = db.get(Serving, serving_id)
            if s is None:
                return None
            record = s.to_json(self.public_url(s.owner, s.name))
        record["requests"] += self.counts.get(serving_id, 0)
        return record

    def list(self, owner=None):
        with self.store.session() as db:
            query = db.query(Serving).order_by(Serving.created.desc())
            if owner is not None:
                query = query.filter(Serving.owner == owner)
            records = [s.to_json(self.public_url(s.owner, s.name)) for s in query.limit(500).all()]
        for record in records:
            record["requests"] += self.counts.get(record["id"], 0)
        return records

    async def logs(self, serving_id):
        return await self.backend.logs(serving_id, size=self.config.max_serving_log_bytes)

    def flush_counts(self):
        counts, self.counts = self.counts, {}
        if not counts:
            return
        with self.store.session() as db:
            for serving_id, count in counts.items():
                serving = db.get(Serving, serving_id)
                if serving is not None:
                    serving.requests += count

    async def _flush_loop(self):
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            try:
                self.flush_counts()
            except Exception:
                self.log.exception("could not store servings' request counts")
