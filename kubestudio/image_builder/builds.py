"""The build manager: from a checked request to a pushed image, with the queue and the store.

One :class:`BuildManager` per service. It decides whether a build is needed at all (the registry
already has the content-hash tag: ``exists``; the same image is being built: join it), queues the
rest fairly, runs them on the backend under a timeout, keeps the live log for followers and
writes everything to the store, so a record reported done is never lost.
"""

import asyncio
import contextlib
import fnmatch
import glob
import logging
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass, field

from .. import imageref
from ..names import LABEL_BUILD_ID, LABEL_USER
from ..registry import RegistryError, split_reference
from ..services.livelog import LiveRun, follow_lines, save_live_logs, save_periodically
from ..services.queue import FairQueue
from ..spawner.storage import user_slug
from . import dockerfile as df
from . import spec as specs
from .backends.base import BuildFailed, BuildJob, StepCounter
from .bases import base_from_config
from .context import open_context, scan_context
from .grants import BuildGrant
from .logs import chunk_of, live_log, stored_lines
from .logs import forget as forget_log
from .logs import load as load_log
from .models import (
    ACTIVE,
    CANCELLED,
    DELETED,
    DONE,
    EXISTS,
    FAILED,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    Build,
    iso,
    utcnow,
)


class LiveBuild(LiveRun):
    """A build in flight: its log, the followers waiting for more, and the backend's job."""

    def __init__(self, build_id, log):
        super().__init__(build_id, log)
        self.job = None
        self.cancel_reason = None
        self.steps = None  # a StepCounter, once the build runs


@dataclass
class BuildPlan:
    """One request on its way to a record: what was asked, by whom, and what was decided."""

    request: specs.BuildRequest
    identity: dict
    is_admin: bool
    text: str = ""  # the Dockerfile, as checked
    extra: dict = field(default_factory=dict)  # shown in the record: context size, captured packages
    context_dir: str = None  # where the builder reads the context (a snapshot for local builds)
    context_subpath: str = None  # the context in the owner's workspace, link-free
    dockerfile: str = "Dockerfile"  # the Dockerfile's path in the context
    context_digest: str = ""
    snapshot: str = None  # a private copy of the context: removed on every path that does not build it
    steps: int = 0
    spec_json: dict = None
    content_hash: str = ""
    tag: str = ""
    image: str = ""

    @property
    def owner(self):
        return self.identity["name"]

    @property
    def slug(self):
        return user_slug(self.owner)

    @property
    def dockerfile_name(self):
        """How errors name the Dockerfile: the user's path for a context, else "Dockerfile"."""
        return self.request.dockerfile if self.request.kind == "context" else "Dockerfile"


class BuildManager:
    def __init__(self, config, store, backend, registry, log, capture=None, default_base=None):
        self.config = config  # the ImageBuilder application: its traits are the settings
        self.store = store
        self.backend = backend
        self.registry = registry
        self.log = log
        self.capture = capture  # async (owner, server, base, fallback) -> (base image, {"pip": [...], ...})
        self.default_base = default_base  # base of `environment` and image-less from_server builds
        self.wait_for_bases = None  # async (dockerfile, emit): waits while a base it names is being made
        # repositories of the base images this service makes: every user may build on them
        self.made_here = {base_from_config(entry).repository for entry in config.base_images}
        self.queue = FairQueue(config.max_concurrent_builds, config.max_builds_per_user)
        self.live = {}
        self._secrets = []
        self._flusher = None
        self._claims = {}  # image -> (content hash, future of the build id) while a request is checked
        self.backend_error = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self):
        self._secrets = self.config.secrets()
        try:
            await self.backend.start()
        except Exception as e:  # keep serving: records stay readable and builds fail with the reason
            self.backend_error = f"the {self.backend.name} backend is not available: {type(e).__name__}: {e}"
            self.log.error("%s", self.backend_error)
        await self.recover()
        self._flusher = asyncio.ensure_future(save_periodically(self.flush_logs, self.log, "build"))

    async def stop(self):
        if self._flusher:
            self._flusher.cancel()
        self.flush_logs()

    async def recover(self):
        """After a restart: re-attach running builds the backend can follow, fail the others with
        the reason, and queue again what had not started."""
        with self.store.session() as db:
            unfinished = db.query(Build).filter(Build.status.in_(ACTIVE)).order_by(Build.created).all()
        for record in unfinished:
            with self.store.session() as db:
                log = load_log(db, record.id, self.config.max_log_bytes)
            live = self.live[record.id] = LiveBuild(record.id, log)
            if record.status == QUEUED:
                self.queue.add(record.id, record.owner)
            else:
                self.queue.running[record.id] = record.owner
                live.task = asyncio.ensure_future(self._run(record.id, recovering=True))
        self._schedule()

    # ------------------------------------------------------------------ requests

    async def submit(self, identity, body, is_admin):
        """Check and start (or answer) a build request; (http status, record dict)."""
        plan = BuildPlan(request=specs.parse_request(body, self.default_base), identity=identity, is_admin=is_admin)
        request = plan.request
        if request.repository and not is_admin:
            raise specs.RequestError("repository: only admins may push outside their own images", 403)
        if request.project:
            if not self.config.allow_project_namespaces:
                raise specs.RequestError("project: project image namespaces are not enabled on this hub", 403)
            if request.project not in identity.get("groups", []) and not is_admin:
                raise specs.RequestError(f"project: you are not a member of project {request.project!r}", 403)
        try:  # whatever happens, a snapshot no build will use is removed
            await self._read_sources(plan)
            return await self._submit_checked(plan)
        except BaseException:
            _remove(plan.snapshot)
            raise

    async def _read_sources(self, plan):
        """The Dockerfile (and, for a context, its files: checked, hashed, snapshot) of the plan."""
        request = plan.request
        if request.kind == "context":
            workspace = self.config.workspace_of(plan.slug)
            loop = asyncio.get_running_loop()
            opened = await loop.run_in_executor(None, open_context, workspace, request.context, request.dockerfile)
            try:
                if getattr(self.backend, "snapshot_context", False):
                    plan.snapshot = os.path.join(self.config.work_dir, f"context-{uuid.uuid4().hex}")
                plan.context_digest, size, files = await loop.run_in_executor(
                    None, scan_context, opened, self.config.max_context_bytes, plan.snapshot
                )
            finally:
                opened.close()
            plan.context_subpath, plan.dockerfile, plan.text = opened.subpath, opened.dockerfile, opened.dockerfile_text
            plan.context_dir = plan.snapshot or os.path.join(workspace, plan.context_subpath)
            plan.extra.update(context_bytes=size, context_files=files)
        elif request.kind == "dockerfile_text":
            plan.text = request.dockerfile_text
        elif request.kind == "environment":
            plan.text = specs.environment_dockerfile(request.environment)
        else:
            if self.capture is None:
                raise specs.RequestError("from_server: this service cannot reach user servers", 409)
            base, diff = await self.capture(plan.owner, request.from_server, request.base, fallback=self.default_base)
            request.environment = {"base": base, **{k: v for k, v in diff.items() if v}}
            plan.extra["captured"] = diff
            plan.text = (
                f"FROM {base}\n" if not any(diff.values()) else specs.environment_dockerfile(request.environment)
            )

    def registry_hosts(self):
        """Every name of our registry: its host, its aliases, and 127.0.0.1/localhost for a loopback one."""
        return imageref.registry_names(self.config.registry_host, self.config.registry_aliases)

    def readable(self, slug, identity, is_admin):
        """Patterns (fnmatch) of the repositories of our registry a build of this caller may pull:
        their own namespace, the shared bases (``base_repositories``), the images this service makes,
        and the namespaces of their projects; an admin's, all."""
        if is_admin:
            return ["*"]
        prefix = self.config.registry_prefix.strip("/")
        patterns = [
            "/".join(p for p in (prefix, slug) if p) + "/*",
            *self.config.base_repositories,
            *sorted(glob.escape(name) for name in self.made_here),
        ]
        if self.config.allow_project_namespaces:
            projects = "/".join(p for p in (prefix, "projects") if p)
            patterns += [f"{projects}/{glob.escape(group)}/*" for group in sorted(identity.get("groups", []))]
        return patterns

    def check_bases(self, instructions, dockerfile_name, slug, identity, is_admin):
        """403 naming the line when the Dockerfile plainly pulls an image of ours the caller may not
        read: an early, clear answer, not a security boundary. This parse is ours, not buildah's (a
        spelling buildah reads differently escapes it); what a build really pulls is decided by the
        registry gate, with the build's own account (:mod:`.grants`), from the same
        :meth:`readable` patterns.
        """
        if is_admin:
            return
        try:
            references = df.image_references(instructions, dockerfile_name)
        except df.DockerfileError as e:
            raise specs.RequestError(str(e)) from None
        ours = set(self.registry_hosts())
        readable = self.readable(slug, identity, is_admin)
        for number, reference in references:
            if imageref.registry_of(reference) not in ours:
                continue  # another registry's image (or Docker Hub's): public as far as we can tell
            path = re.split(r"[:@]", reference.split("/", 1)[1], maxsplit=1)[0]
            if any(fnmatch.fnmatchcase(path, p) for p in readable):
                continue
            raise specs.RequestError(
                f"{dockerfile_name}: line {number}: you may not build from {reference}: it is not one of your "
                "images, a shared base, or an image of one of your projects",
                403,
            )

    async def _submit_checked(self, plan):
        request = plan.request
        instructions = specs.parse_dockerfile(plan.text, plan.dockerfile_name)
        plan.steps = len(instructions)
        if self.config.check_image_references:
            self.check_bases(instructions, plan.dockerfile_name, plan.slug, plan.identity, plan.is_admin)
        plan.spec_json = request.to_json()
        plan.content_hash = specs.content_hash(plan.spec_json, plan.text, plan.context_digest)
        plan.tag = request.tag or plan.content_hash
        if request.repository:
            repository = request.repository
        elif request.project:
            repository = "/".join(p for p in (self.config.registry_prefix, "projects", request.project) if p)
        else:
            repository = "/".join(p for p in (self.config.registry_prefix, plan.slug) if p)
        plan.image = f"{self.config.registry_host}/{repository}/{request.name}:{plan.tag}"

        # one build per identical request in flight; a request still being checked counts too
        claim = self._claims.get(plan.image)
        if claim is not None:
            if claim[0] != plan.content_hash:
                raise specs.RequestError(
                    f"tag: {plan.image} is being built from different content; wait for it or choose another tag", 409
                )
            build_id = await asyncio.shield(claim[1])
            if build_id is None:
                raise specs.RequestError("an identical request failed a moment ago; send it again", 409)
            _remove(plan.snapshot)
            self.log.info("build %s: %s joined it (%s)", build_id, plan.owner, plan.image)
            return 200, {**self.get(build_id), "joined": True}
        claimed = asyncio.get_running_loop().create_future()
        self._claims[plan.image] = (plan.content_hash, claimed)
        try:
            status, answer = await self._submit_claimed(plan)
        except BaseException:
            claimed.set_result(None)
            raise
        finally:
            self._claims.pop(plan.image, None)
        claimed.set_result(answer["id"])
        if answer["status"] != QUEUED or answer.get("joined"):
            _remove(plan.snapshot)  # nothing will be built from it
        return status, answer

    async def _submit_claimed(self, plan):
        request = plan.request
        with self.store.session() as db:
            same = db.query(Build).filter(Build.image == plan.image, Build.status.in_(ACTIVE)).first()
            if same is not None:
                if same.content_hash == plan.content_hash:
                    self.log.info("build %s: %s joined it (%s)", same.id, plan.owner, plan.image)
                    return 200, {**same.to_json(self.queue.position(same.id)), "joined": True}
                raise specs.RequestError(
                    f"tag: {plan.image} is being built from different content by build "
                    f"{same.id}; wait for it or choose another tag",
                    409,
                )

        build_id = uuid.uuid4().hex[:12]
        labels = {  # ours last: a request can never set them (spec.py refuses it, too)
            **request.labels,
            "org.opencontainers.image.created": utcnow().strftime("%Y-%m-%dT%H:%M:%SZ"),
            LABEL_BUILD_ID: build_id,
            LABEL_USER: plan.slug,
            "kubestudio.io/content-hash": plan.content_hash,
        }
        record = Build(
            id=build_id,
            created=utcnow(),
            owner=plan.owner,
            kind=request.kind,
            spec=plan.spec_json,
            name=request.name,
            tag=plan.tag,
            image=plan.image,
            content_hash=plan.content_hash,
            status=QUEUED,
            message="",
            backend=self.backend.name,
            steps=plan.steps,
            dockerfile=plan.text,
            extra={**plan.extra, "labels": labels},
        )

        # no needless builds: the content-hash tag is already in the registry
        if request.tag is None:
            try:
                _, repo_path, _ = split_reference(plan.image)
                digest = await self.registry.exists(repo_path, plan.tag)
            except RegistryError as e:
                record.status, record.message, record.finished = FAILED, str(e), utcnow()
                self._save_new(record)
                self.log.warning("build %s of %s failed before it started: %s", build_id, plan.owner, e)
                return 202, record.to_json()
            if digest:
                record.status, record.digest, record.finished = EXISTS, digest, utcnow()
                record.message = "the registry already has this image; nothing was built"
                record.size = await self._size(plan.image)
                self._save_new(record)
                self.log.info("build %s: %s already in the registry (asked by %s)", build_id, plan.image, plan.owner)
                return 200, record.to_json()

        if request.kind != "context":
            plan.context_dir, plan.dockerfile = self._write_dockerfile(build_id, plan.text), "Dockerfile"
        generated = request.kind != "context" or plan.snapshot is not None
        live = LiveBuild(build_id, live_log(self.config.max_log_bytes))
        live.job = BuildJob(
            id=build_id,
            owner=plan.owner,
            owner_slug=plan.slug,
            image=plan.image,
            dockerfile=plan.dockerfile,
            context_dir=plan.context_dir,
            context_subpath=plan.context_subpath,
            dockerfile_text=plan.text,
            generated=generated,
            labels=labels,
            project=request.project or "",
            readable=self.readable(plan.slug, plan.identity, plan.is_admin),
        )
        # enough to find the job again after a restart (queued builds are queued again)
        record.extra = {
            **record.extra,
            "job": {
                "dockerfile": plan.dockerfile,
                "context_subpath": plan.context_subpath,
                "project": request.project or "",
                "readable": live.job.readable,
                "build_dir": plan.context_dir if generated else None,
            },
        }
        self._save_new(record)
        self.live[build_id] = live
        self.queue.add(build_id, plan.owner)
        self.log.info(
            "build %s submitted by %s: %s (%s, %d steps)", build_id, plan.owner, plan.image, request.kind, plan.steps
        )
        self._schedule()
        with self.store.session() as db:
            record = db.get(Build, build_id)
            return 202, record.to_json(self.queue.position(build_id))

    def _save_new(self, record):
        with self.store.session() as db:
            db.add(record)

    async def cancel(self, build_id, by):
        with self.store.session() as db:
            record = db.get(Build, build_id)
            status = record.status
        if status in DONE:
            raise specs.RequestError(f"build {build_id} already finished ({status})", 409)
        live = self.live.get(build_id)
        if status == QUEUED or live is None or live.task is None:
            self.queue.remove(build_id)
            self._finish(build_id, CANCELLED, f"cancelled by {by} while queued")
            self._schedule()
        else:
            live.cancel_reason = f"cancelled by {by}"
            live.task.cancel()
            try:
                await asyncio.wait_for(asyncio.shield(live.task), 30)
            except (asyncio.CancelledError, asyncio.TimeoutError):
                pass
        return self.get(build_id)

    # ------------------------------------------------------------------ reading

    def get(self, build_id):
        with self.store.session() as db:
            record = db.get(Build, build_id)
            return None if record is None else record.to_json(self.queue.position(build_id))

    def owner_of(self, build_id):
        with self.store.session() as db:
            record = db.get(Build, build_id)
            return None if record is None else record.owner

    def list(self, owner=None, limit=200):
        positions = self.queue.positions()
        with self.store.session() as db:
            query = db.query(Build)
            if owner is not None:
                query = query.filter(Build.owner == owner)
            records = query.order_by(Build.created.desc()).limit(limit).all()
            return [r.to_json(positions.get(r.id)) for r in records]

    def images(self, owner=None):
        """The owner's images: the newest successful build of each tag."""
        with self.store.session() as db:
            query = db.query(Build).filter(Build.status.in_((SUCCEEDED, EXISTS)))
            if owner is not None:
                query = query.filter(Build.owner == owner)
            seen, images = set(), []
            for r in query.order_by(Build.finished.desc()).all():
                if r.image in seen:
                    continue
                seen.add(r.image)
                repository, _, tag = r.image.rpartition(":")
                images.append(
                    {
                        "image": r.image,
                        "repository": repository,
                        "name": r.name,
                        "tag": tag,
                        "digest": r.digest or None,
                        "size": r.size,
                        "build_id": r.id,
                        "owner": r.owner,
                        "built": iso(r.finished),
                    }
                )
            return images

    async def delete_image(self, image, owner=None):
        """Delete ``image`` from the registry and from the owner's image list (its builds stay in the
        history as ``deleted``); returns the image's builds. ``owner`` None: any owner (admins)."""
        with self.store.session() as db:
            query = db.query(Build).filter(Build.image == image, Build.status.in_((SUCCEEDED, EXISTS)))
            if owner is not None:
                query = query.filter(Build.owner == owner)
            records = query.all()
            if not records:
                raise specs.RequestError(f"image: {image!r} is not one of your images", 404)
        _, repository, tag = split_reference(image)
        try:
            await self.registry.delete(repository, tag)
        except RegistryError as e:
            raise specs.RequestError(f"image: {e}", 502) from None
        with self.store.session() as db:
            for record in db.query(Build).filter(Build.image == image, Build.status.in_((SUCCEEDED, EXISTS))):
                record.status, record.message = DELETED, "the image was deleted from the registry"
        self.log.info("image %s deleted by %s", image, owner or "an admin")
        return len(records)

    async def log_text(self, build_id):
        """Yield the log as pieces of text (a few KiB each), never the whole log at once."""
        async for lines in self.follow_lines(build_id, wait=False):
            yield "".join(line + "\n" for line in lines)

    async def follow(self, build_id):
        """Yield ("lines", [text, ...]) for the whole log so far and then what comes, in batches of
        at most one chunk, then ("done", record)."""
        async for lines in self.follow_lines(build_id, wait=True):
            yield "lines", lines
        yield "done", self.get(build_id)

    def follow_lines(self, build_id, wait):
        return follow_lines(self.live, build_id, lambda first: stored_lines(self.store, build_id, first=first), wait)

    # ------------------------------------------------------------------ running

    def _schedule(self):
        for build_id in self.queue.next_ready():
            live = self.live[build_id]
            live.task = asyncio.ensure_future(self._run(build_id))

    def _redact(self, text):
        """``text`` with every registry secret masked."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _emit(self, live, line, keep=False):
        line = self._redact(line)
        live.log.append(line, keep=keep)
        live.dirty = True
        if live.steps is not None and live.steps.feed(line):
            with self.store.session() as db:
                db.get(Build, live.id).step = live.steps.step
        live.wake_followers()

    async def _run(self, build_id, recovering=False):
        live = self.live[build_id]
        with self.store.session() as db:
            record = db.get(Build, build_id)
            if not recovering:
                record.status, record.started, record.builder_run = RUNNING, utcnow(), True
            record_json = record.to_json()
        live.steps = StepCounter(self.backend.step_of, record_json["steps"], record_json["step"])
        emit = lambda line: self._emit(live, line)  # noqa: E731
        status, message, digest = FAILED, "", ""
        started = time.monotonic()
        record_json["dockerfile_text"] = record.dockerfile
        record_json["backend_ref"] = record.backend_ref
        try:
            if live.job is None:  # a build from before a restart: queued, or running (recovering)
                live.job = self._job_from_record(record_json)
            live.job.report_ref = lambda ref: self._set_ref(build_id, ref)
            if self.backend_error:
                raise BuildFailed(self.backend_error)
            if recovering:
                if getattr(self.backend, "replays_log", False):
                    live.log = live_log(self.config.max_log_bytes)  # the backend streams the whole log again
                    live.steps.step = 0
                    with self.store.session() as db:
                        db.get(Build, build_id).step = 0
                        forget_log(db, build_id)
                try:
                    outcome = await asyncio.wait_for(
                        self.backend.recover(live.job, record_json, emit), self.config.build_timeout
                    )
                finally:
                    # the grant written before the restart served the pod until now
                    self._grant(live.job).__exit__(None, None, None)
            else:
                self.log.info("build %s started (%s, %s)", build_id, live.job.image, self.backend.name)
                self._emit(live, f"Building {live.job.image} with {self.backend.name}", keep=True)
                if self.wait_for_bases is not None:
                    await self.wait_for_bases(record_json["dockerfile_text"] or "", emit)
                grant = self._grant(live.job)
                with grant as auth_file:
                    live.job.auth_file = auth_file
                    try:
                        outcome = await asyncio.wait_for(self.backend.build(live.job, emit), self.config.build_timeout)
                    except BuildFailed as e:
                        refused = grant.refusals() if isinstance(grant, BuildGrant) else []
                        if refused:
                            emit(f"The registry refused this build: {refused[0]}")
                            raise BuildFailed(f"the registry refused this build: {refused[0]}") from None
                        raise e
            status, digest = SUCCEEDED, outcome.digest
            message = f"built and pushed in {time.monotonic() - started:.1f} s"
        except BuildFailed as e:
            message = str(e)
        except asyncio.TimeoutError:
            message = f"timed out after {self.config.build_timeout} s (ImageBuilder.build_timeout)"
        except asyncio.CancelledError:
            if live.cancel_reason is None:  # the service is stopping: leave the record for recover()
                self.flush_logs()
                raise
            status, message = CANCELLED, live.cancel_reason
        except Exception as e:  # a bug or an unexpected backend error: the build fails, the service lives
            self.log.exception("build %s failed unexpectedly", build_id)
            message = f"the build service failed: {type(e).__name__}: {e}"
        message = self._redact(message)
        size = await self._size(record_json["image"]) if status == SUCCEEDED else None
        live.log.close()
        if status != SUCCEEDED:
            self._emit(live, f"Build {status}: {message}", keep=True)
        self.log.log(
            logging.INFO if status in (SUCCEEDED, CANCELLED) else logging.WARNING,
            "build %s %s after %.1f s: %s",
            build_id,
            status,
            time.monotonic() - started,
            message,
        )
        self._finish(build_id, status, message, digest=digest, size=size)
        if live.job is not None and live.job.generated:
            _remove(live.job.context_dir)
        self._schedule()

    def _write_dockerfile(self, build_id, text):
        """A build folder in work_dir holding only the Dockerfile (kinds without context files)."""
        folder = os.path.join(self.config.work_dir, f"build-{build_id}")
        os.makedirs(folder, mode=0o700, exist_ok=True)
        with open(os.path.join(folder, "Dockerfile"), "w", encoding="utf-8") as f:
            f.write(text)
        return folder

    def _job_from_record(self, record):
        """The job of a stored build (after a restart): the context is found again from the record."""
        saved = record.get("job") or {}
        slug = user_slug(record["owner"])
        subpath = saved.get("context_subpath")
        build_dir = saved.get("build_dir")
        if build_dir and os.path.isdir(build_dir):
            context_dir, generated = build_dir, True
        elif record["kind"] != "context":
            context_dir, generated = self._write_dockerfile(record["id"], record.get("dockerfile_text", "")), True
        elif not build_dir:
            context_dir, generated = os.path.join(self.config.workspace_of(slug), subpath or ""), False
        else:
            raise BuildFailed(
                "the snapshot of the build context is gone (the service's work_dir was emptied); start the build again"
            )
        return BuildJob(
            id=record["id"],
            owner=record["owner"],
            owner_slug=slug,
            image=record["image"],
            dockerfile=saved.get("dockerfile", "Dockerfile"),
            context_dir=context_dir,
            context_subpath=subpath,
            dockerfile_text=record.get("dockerfile_text", ""),
            generated=generated,
            labels=record.get("labels") or {},
            project=saved.get("project", ""),
            readable=saved.get("readable") or [],
        )

    def _grant(self, job):
        """The build's own registry account (grants on the embedded default's gate), or nothing."""
        if not self.config.registry_grants_dir:
            return contextlib.nullcontext("")
        _, repository, _ = split_reference(job.image)
        extra = self.backend.repositories(job)  # e.g. kaniko's layer cache, its user's own
        return BuildGrant(
            self.config.registry_grants_dir,
            job.id,
            [*job.readable, *extra],
            [repository, *extra],
            self.registry_hosts(),
            self.config.work_dir,
            self.config.registry_auth_file,
            ttl=self.config.build_timeout + 600,
        )

    def _set_ref(self, build_id, ref):
        with self.store.session() as db:
            db.get(Build, build_id).backend_ref = ref

    def _finish(self, build_id, status, message, digest="", size=None):
        live = self.live.pop(build_id, None)
        self.queue.remove(build_id)
        with self.store.session() as db:
            record = db.get(Build, build_id)
            record.status, record.message, record.finished = status, message, utcnow()
            if digest:
                record.digest = digest
            if size is not None:
                record.size = size
            if status == SUCCEEDED:
                record.step = record.steps
            if live is not None:
                live.log.close()
                live.log.save(db, chunk_of(build_id))
        if live is not None:
            live.wake_followers()

    async def _size(self, image):
        try:
            _, repository, tag = split_reference(image)
            return await self.registry.image_size(repository, tag)
        except RegistryError:
            return None

    def flush_logs(self):
        save_live_logs(self.store, self.live, Build, chunk_of, ACTIVE)


def _remove(folder):
    if folder:
        shutil.rmtree(folder, ignore_errors=True)
