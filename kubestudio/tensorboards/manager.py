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

from ..services.store import aware
from ..services.web import service_prefix
from ..spawner.storage import ensure_user_folders, user_folders
from .backends.local import BoardFailed, Running
from .logdirs import LogdirError, board_key, link_tree, resolve
from .models import FAILED, RUNNING, STARTING, STOPPED, Board, utcnow

OPEN_FIELDS = {"logdirs", "name"}
FLUSH_ACTIVITY_SECONDS = 10.0


class BoardManager:
    def __init__(self, config, store, backend, service_name, log):
        self.config = config  # the service application: its traits are the settings
        self.store = store
        self.backend = backend
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
        with self.store.session() as db:
            for board in db.query(Board).filter(Board.status.in_((STARTING, RUNNING))).all():
                running = Running.from_json(board.refs)
                if board.status == RUNNING and self.backend.alive(running):
                    continue
                board.status, board.message = STOPPED, "stopped while the TensorBoard service was down"
        self._loops = [asyncio.ensure_future(self._cull_loop())]

    async def stop(self, stop_boards):
        for task in self._loops + list(self.tasks.values()):
            task.cancel()
        self.flush_activity()
        if stop_boards:
            with self.store.session() as db:
                for board in db.query(Board).filter(Board.status.in_((STARTING, RUNNING))).all():
                    self.backend.stop(Running.from_json(board.refs))
                    board.status, board.message = STOPPED, "stopped with the hub"

    # ------------------------------------------------------------------ requests

    def folders(self, owner):
        found = user_folders(self.config.data_dir, owner)
        ensure_user_folders(found)
        return found

    def _resolved(self, owner, logdirs):
        folders = self.folders(owner)
        return resolve(logdirs, folders, (folders.workspace, folders.archives))

    async def open(self, owner, body):
        """The board of ``owner`` for ``body`` (``logdirs``, ``name``): the same one when it
        exists (started again if stopped); (record, created)."""
        unknown = sorted(set(body) - OPEN_FIELDS)
        if unknown:
            raise LogdirError(f"{unknown[0]}: unknown field (expected {', '.join(sorted(OPEN_FIELDS))})")
        logdirs = body.get("logdirs")
        logdirs = [logdirs] if isinstance(logdirs, str) else logdirs
        resolved = self._resolved(owner, logdirs)
        name = body.get("name") or ", ".join(logdirs)[:64]
        if not isinstance(name, str) or len(name) > 64:
            raise LogdirError("name: must be text of at most 64 characters")
        key = board_key(owner, resolved)
        with self.store.session() as db:
            board = db.query(Board).filter(Board.owner == owner, Board.key == key).first()
            if board is None:
                active = db.query(Board).filter(Board.owner == owner,
                                                Board.status.in_((STARTING, RUNNING))).all()
                if len(active) >= self.config.max_boards_per_user:
                    names = ", ".join(f"{b.name} ({b.id})" for b in active)
                    raise LogdirError(f"logdirs: you have {len(active)} boards open, the most allowed "
                                      f"(TensorBoardService.max_boards_per_user); stop one of: {names}", 409)
                board = Board(id=uuid.uuid4().hex[:12], owner=owner, name=name, key=key, logdirs=list(logdirs),
                              status=STOPPED, message="", refs={})
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
            if board.status == RUNNING and not self.backend.alive(Running.from_json(board.refs)):
                board.status = FAILED
                board.message = f"TensorBoard stopped: {self.backend.stderr(board_id)[-500:].strip() or 'no output'}"
                self.log.warning("board %s: %s", board_id, board.message)
            if board.status in (STOPPED, FAILED) and board_id not in self.tasks:
                board.status, board.message = STARTING, "starting TensorBoard"
                self.tasks[board_id] = asyncio.ensure_future(self._start(board_id, board.owner, list(board.logdirs)))
            return board.status

    async def _start(self, board_id, owner, logdirs):
        try:
            tree = link_tree(f"{self.backend.folder(board_id)}/logdir", self._resolved(owner, logdirs))
            running = await self.backend.start(board_id, tree, self.board_prefix(board_id))
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
            if board is None:  # deleted while starting
                self.backend.stop(Running.from_json(refs))
                return
            board.status, board.message, board.refs = status, message, refs
            if status == RUNNING:
                board.started = board.last_activity = utcnow()
                self.running[board_id] = (owner, Running.from_json(refs))
        self.log.info("board %s of %s: %s%s", board_id, owner, status, f" ({message})" if message else "")

    def target(self, board_id):
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
            running = Running.from_json(board.refs)
            self.running[board_id] = (board.owner, running)
            return running.url

    def touch(self, board_id):
        self.activity[board_id] = time.time()

    async def stop_board(self, board_id, message):
        self.running.pop(board_id, None)
        with self.store.session() as db:
            board = db.get(Board, board_id)
            task = self.tasks.pop(board_id, None)
            if task:
                task.cancel()
            self.backend.stop(Running.from_json(board.refs))
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

    def logs(self, board_id):
        return self.backend.stderr(board_id)

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
            running = [(b.id, aware(b.last_activity), aware(b.started)) for b in
                       db.query(Board).filter(Board.status == RUNNING).all()]
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
