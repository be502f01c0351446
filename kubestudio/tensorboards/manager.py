"""The board manager: one record per board, from open to stop, whatever backend runs it.

Opening checks the folders (inside the user's workspace or archives), and the same user, folders
and options give the same board back. A board starts in the background (its URL shows a page that
refreshes itself meanwhile); every proxied request marks it active; a board idle for
``idle_timeout`` or older than ``max_age`` is stopped with its record kept, and opening it again
(its URL, or the API) starts it transparently. A TensorBoard that died is ``failed`` with its
stderr, and starts again on the next open.
"""

import asyncio
import time
import uuid
from datetime import datetime, timezone

from ..quantities import format_bytes, parse_bytes, parse_cpu
from ..services.store import aware
from ..services.web import service_prefix
from ..spawner.projects import Project, hub_projects
from ..spawner.request import SpawnRefused, hub_project, resolve_project
from .backends.base import BoardFailed
from .logdirs import LogdirError, board_key
from .models import FAILED, RUNNING, STARTING, STOPPED, Board, utcnow

OPEN_FIELDS = {"logdirs", "name", "project", "image", "resources"}
RESOURCE_FIELDS = {"cpu": parse_cpu, "memory": parse_bytes}


def quantity(key, value):
    """A Kubernetes quantity (as the API writes it back) for a checked cpu or memory value: ``500m``, ``2``, ``2Gi``."""
    if key == "cpu":
        millis = round(parse_cpu(value) * 1000)
        if millis < 1:
            raise ValueError(value)
        return str(millis // 1000) if millis % 1000 == 0 else f"{millis}m"
    text = format_bytes(parse_bytes(value))
    return text + "i" if text[-1] in "KMGT" else text


FLUSH_ACTIVITY_SECONDS = 10.0


class BoardManager:
    def __init__(self, config, store, backend, service_name, log, hub=None):
        self.config = config  # the service application: its traits are the settings
        self.store = store
        self.backend = backend
        self.hub = hub  # HubAPI: the projects a board's pod is scheduled in
        self.prefix = service_prefix(service_name)
        self.log = log
        self.tasks = {}  # board id -> its start task
        self.running = {}  # board id -> (owner, Running): what the proxy reads on each request, no store query
        self.activity = {}  # board id -> wall time of its last proxied request (flushed to the store)
        self._loops = []

    def board_prefix(self, board_id):
        return f"{self.prefix}b/{board_id}/"

    # ------------------------------------------------------------------ lifecycle

    async def start(self):
        """After a restart: boards whose TensorBoard still runs are kept, the others stopped."""
        await self.backend.connect()
        with self.store.session() as db:
            boards = [(b.id, b.status, b.refs) for b in db.query(Board).filter(Board.status.in_((STARTING, RUNNING)))]
        for board_id, status, refs in boards:
            handle = self.backend.from_refs(refs)
            if status == RUNNING and self.backend.alive(handle):
                continue
            await self.backend.stop(board_id, handle)  # a pod left half made is removed
            with self.store.session() as db:
                board = db.get(Board, board_id)
                board.status, board.message = STOPPED, "stopped while the TensorBoard service was down"
        self._loops = [asyncio.ensure_future(self._cull_loop())]

    async def stop(self, stop_boards):
        for task in self._loops + list(self.tasks.values()):
            task.cancel()
        self.flush_activity()
        if stop_boards:
            with self.store.session() as db:
                boards = [(b.id, b.refs) for b in db.query(Board).filter(Board.status.in_((STARTING, RUNNING)))]
            for board_id, refs in boards:
                await self.backend.stop(board_id, self.backend.from_refs(refs))
                with self.store.session() as db:
                    board = db.get(Board, board_id)
                    board.status, board.message = STOPPED, "stopped with the hub"
        await self.backend.close()

    # ------------------------------------------------------------------ requests

    def _options(self, body):
        """What the request asks beside the folders, checked: ``{project, image, resources}``
        (only what was given, so a plain request keeps its key)."""
        options = {}
        project = body.get("project")
        if project is not None:
            if not isinstance(project, str) or not project.strip():
                raise LogdirError("project: must be a project name")
            options["project"] = project.strip()
        image = body.get("image")
        if image is not None:
            if not isinstance(image, str) or not image.strip() or len(image) > 512:
                raise LogdirError("image: must be an image reference")
            options["image"] = image.strip()
        resources = body.get("resources")
        if resources is not None:
            if not isinstance(resources, dict):
                raise LogdirError('resources: must be an object like {"cpu": 1, "memory": "2Gi"}')
            checked = {}
            for key, value in resources.items():
                parse = RESOURCE_FIELDS.get(key)
                if parse is None:
                    raise LogdirError(f"resources.{key}: unknown (expected {', '.join(sorted(RESOURCE_FIELDS))})")
                try:
                    if isinstance(value, bool) or parse(value) <= 0 or parse(value) > 1e15:
                        raise ValueError(value)
                    checked[key] = quantity(key, value)
                except (TypeError, ValueError, OverflowError):
                    raise LogdirError(
                        f"resources.{key}: {value!r} is not a positive quantity (e.g. "
                        f"{'1 or 500m' if key == 'cpu' else '2Gi'})"
                    ) from None
            if checked:
                options["resources"] = checked
        self.backend.check_options(options)
        return options

    async def _project(self, identity, options):
        """The project a board of ``identity`` runs in (``public`` when none is named)."""
        if self.hub is None or not getattr(self.backend, "uses_projects", False) and "project" not in options:
            return None
        try:
            return resolve_project(options, await hub_projects(self.hub, identity))
        except SpawnRefused as e:
            raise LogdirError(str(e), e.status) from None

    async def _project_of(self, board_id, owner, options):
        """A board's project when it starts again (its owner was a member when it was opened)."""
        if self.hub is None or not getattr(self.backend, "uses_projects", False):
            return None
        name = options.get("project") or "public"
        try:
            return await hub_project(self.hub, name)
        except Exception as e:  # the hub is away, or the project is gone: its pod gets no project settings
            self.log.warning("board %s: project %s not readable (%s)", board_id, name, e)
            return Project(name=name)

    async def open(self, identity, body):
        """The board of ``identity`` for ``body`` (``logdirs``, ``name``, and optionally
        ``project``, ``image``, ``resources``): the same one when it exists (started again if
        stopped); (record, created)."""
        owner = identity["name"]
        unknown = sorted(set(body) - OPEN_FIELDS)
        if unknown:
            raise LogdirError(f"{unknown[0]}: unknown field (expected {', '.join(sorted(OPEN_FIELDS))})")
        logdirs = body.get("logdirs")
        logdirs = [logdirs] if isinstance(logdirs, str) else logdirs
        resolved = self.backend.resolve(owner, logdirs)
        name = body.get("name") or ", ".join(logdirs)[:64]
        if not isinstance(name, str) or len(name) > 64:
            raise LogdirError("name: must be text of at most 64 characters")
        options = self._options(body)
        await self._project(identity, options)
        key = board_key(owner, resolved, options)
        with self.store.session() as db:
            board = db.query(Board).filter(Board.owner == owner, Board.key == key).first()
            if board is None:
                active = db.query(Board).filter(Board.owner == owner, Board.status.in_((STARTING, RUNNING))).all()
                if len(active) >= self.config.max_boards_per_user:
                    names = ", ".join(f"{b.name} ({b.id})" for b in active)
                    raise LogdirError(
                        f"logdirs: you have {len(active)} boards open, the most allowed "
                        f"(TensorBoardService.max_boards_per_user); stop one of: {names}",
                        409,
                    )
                board = Board(
                    id=uuid.uuid4().hex[:12],
                    owner=owner,
                    name=name,
                    key=key,
                    logdirs=list(logdirs),
                    options=options,
                    status=STOPPED,
                    message="",
                    refs={},
                )
                db.add(board)
                created = True
            else:
                created = False
            board_id = board.id
        self.ensure_running(board_id)
        return self.get(board_id), created

    def ensure_running(self, board_id):
        """Start a stopped or failed board (in the background); the board's status."""
        with self.store.session() as db:
            board = db.get(Board, board_id)
            handle = self.backend.from_refs(board.refs)
            if board.status == RUNNING and not self.backend.alive(handle):
                board.status = FAILED
                board.message = f"TensorBoard stopped: {self.backend.why_stopped(board_id, handle)}"
                self.log.warning("board %s: %s", board_id, board.message)
            if board.status in (STOPPED, FAILED) and board_id not in self.tasks:
                board.status, board.message = STARTING, "starting TensorBoard"
                self.tasks[board_id] = asyncio.ensure_future(
                    self._start(board_id, board.owner, list(board.logdirs), dict(board.options or {}), handle)
                )
            return board.status

    async def _start(self, board_id, owner, logdirs, options, previous=None):
        refs = {}
        try:
            await self.backend.stop(board_id, previous)  # what is left of a run that failed
            resolved = self.backend.resolve(owner, logdirs)
            project = await self._project_of(board_id, owner, options)
            running = await self.backend.start(
                board_id,
                owner,
                resolved,
                self.board_prefix(board_id),
                options=options,
                project=project,
                progress=lambda message: self._progress(board_id, message),
            )
            status, message, refs = RUNNING, "", running.to_json()
        except (BoardFailed, LogdirError) as e:
            status, message, refs = FAILED, str(e), {}
        except Exception as e:
            self.log.exception("board %s did not start", board_id)
            status, message, refs = FAILED, f"internal error in the TensorBoard service ({type(e).__name__})", {}
        finally:
            self.tasks.pop(board_id, None)
        with self.store.session() as db:
            board = db.get(Board, board_id)
            deleted = board is None
            if not deleted:
                board.status, board.message, board.refs = status, message, refs
                if status == RUNNING:
                    board.started = board.last_activity = utcnow()
                    self.running[board_id] = (owner, self.backend.from_refs(refs))
        if deleted:  # deleted while starting
            await self.backend.stop(board_id, self.backend.from_refs(refs))
            return
        self.log.info("board %s of %s: %s%s", board_id, owner, status, f" ({message})" if message else "")

    def _progress(self, board_id, message):
        """Why a starting board is not up yet (waiting for a node, pulling its image)."""
        with self.store.session() as db:
            board = db.get(Board, board_id)
            if board is not None and board.status == STARTING:
                board.message = f"starting TensorBoard: {message}"

    def upstream_url(self, board_id):
        """Where the board's TensorBoard answers (``http://127.0.0.1:port/<prefix>``), or None
        (then it is started, or says why not)."""
        known = self.running.get(board_id)
        if known is not None and self.backend.alive(known[1]):
            return known[1].url
        self.running.pop(board_id, None)
        if self.ensure_running(board_id) != RUNNING:
            return None
        with self.store.session() as db:
            board = db.get(Board, board_id)
            running = self.backend.from_refs(board.refs)
            self.running[board_id] = (board.owner, running)
            return running.url

    def upstream_headers(self, board_id):
        """What the board's TensorBoard asks of its caller (a local board's secret), for the proxy."""
        known = self.running.get(board_id)
        return dict(getattr(known[1], "headers", None) or {}) if known is not None else {}

    def touch(self, board_id):
        self.activity[board_id] = time.time()

    async def stop_board(self, board_id, message):
        self.running.pop(board_id, None)
        task = self.tasks.pop(board_id, None)
        if task:
            task.cancel()
        with self.store.session() as db:
            refs = db.get(Board, board_id).refs
        await self.backend.stop(board_id, self.backend.from_refs(refs))
        with self.store.session() as db:
            board = db.get(Board, board_id)
            board.status, board.message, board.refs = STOPPED, message, {}
        return self.get(board_id)

    async def delete(self, board_id, who):
        """Stop a board and forget it."""
        await self.stop_board(board_id, f"stopped by {who}")
        self.activity.pop(board_id, None)
        with self.store.session() as db:
            db.query(Board).filter(Board.id == board_id).delete()

    # ------------------------------------------------------------------ reading

    def owner_of(self, board_id):
        known = self.running.get(board_id)
        if known is not None:
            return known[0]
        with self.store.session() as db:
            return db.query(Board.owner).filter(Board.id == board_id).scalar()

    def get(self, board_id):
        with self.store.session() as db:
            board = db.get(Board, board_id)
            return board.to_json(self.board_prefix(board.id)) if board else None

    def list(self, owner=None):
        with self.store.session() as db:
            query = db.query(Board).order_by(Board.created.desc())
            if owner is not None:
                query = query.filter(Board.owner == owner)
            return [b.to_json(self.board_prefix(b.id)) for b in query.limit(500).all()]

    async def logs(self, board_id):
        with self.store.session() as db:
            refs = db.get(Board, board_id).refs
        return await self.backend.logs(board_id, self.backend.from_refs(refs))

    # ------------------------------------------------------------------ culling

    def flush_activity(self):
        if not self.activity:
            return
        seen, self.activity = self.activity, {}
        with self.store.session() as db:
            for board_id, when in seen.items():
                board = db.get(Board, board_id)
                if board is not None:
                    board.last_activity = datetime.fromtimestamp(when, timezone.utc)

    async def cull(self):
        """Stop boards idle past ``idle_timeout`` or older than ``max_age``; their ids."""
        self.flush_activity()
        now = utcnow()
        stopped = []
        with self.store.session() as db:
            running = [
                (b.id, aware(b.last_activity), aware(b.started))
                for b in db.query(Board).filter(Board.status == RUNNING).all()
            ]
        for board_id, last, started in running:
            idle = (now - last).total_seconds() if last else 0
            age = (now - started).total_seconds() if started else 0
            if self.config.idle_timeout and idle > self.config.idle_timeout:
                message = f"stopped after {int(idle)} s without use; opening it starts it again"
            elif self.config.max_age and age > self.config.max_age:
                message = f"stopped after running {int(age)} s (max_age); opening it starts it again"
            else:
                continue
            await self.stop_board(board_id, message)
            self.log.info("board %s: %s", board_id, message)
            stopped.append(board_id)
        return stopped

    async def _cull_loop(self):
        while True:
            await asyncio.sleep(min(self.config.cull_every, FLUSH_ACTIVITY_SECONDS))
            try:
                await self.cull()
            except Exception:
                self.log.exception("board culling failed")
