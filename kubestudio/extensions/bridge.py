"""The JupyterLab extension's way to the hub services: handlers of the user's own server.

The browser never holds a hub token: the lab extension calls these handlers (XSRF-protected,
through JupyterLab's ``ServerConnection``), and they call the hub services with the server's own
API token through the same SDK the ``kubestudio`` CLI uses, so an action means the same thing from
the file browser, the terminal and a notebook.

- ``GET api/kubestudio/services``: which services the hub runs (a verb of a missing one is hidden).
- ``GET api/kubestudio/items?after=VERSION``: the user's builds, jobs, servings and boards in one
  list; with ``after``, held until that list changes (at most ``wait`` seconds). One shared poll of
  the services serves every tab of the server (:class:`ItemsPoller`).
- ``POST api/kubestudio/actions/<verb>``: build, job, notebook, board, serve, environment, from a
  file browser path.
- ``POST api/kubestudio/items/<kind>/<id>/<verb>``: cancel, stop, rerun, predict.
- ``GET api/kubestudio/items/<kind>/<id>/logs``: the log, followed (Server-Sent Events passed on).
"""

import asyncio
import hashlib
import json
import os
import re
import shlex
import time
from dataclasses import dataclass
from datetime import datetime

from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import httpclient, web
from traitlets import Float, Integer
from traitlets.config import LoggingConfigurable

from ..jobs.client import JobsClient
from ..jobs.experiments.client import ExperimentsClient
from ..services.client import ServiceError
from ..tensorboards.client import TensorBoardsClient
from .client import ImagesClient
from .paths import PathRefused, user_path, workspace_relative

CLIENTS = {"images": ImagesClient, "jobs": JobsClient, "tensorboards": TensorBoardsClient}


@dataclass(frozen=True)
class Kind:
    """One kind of item of the sidebar: where its records are listed, which statuses still change
    (the poll is quick while one of them is in one), and which verbs it takes. A new kind of item
    (experiments, pipelines) is one more entry of :data:`KINDS`, and one of the lab extension's
    ``KINDS`` table."""

    name: str
    service: str
    path: str  # the service's list, e.g. api/jobs
    key: str  # the list's key in the answer
    changing: tuple  # statuses that still change by themselves
    verbs: dict  # verb -> (method, path under the record's own, with {id})
    id_field: str = "id"


KINDS = {
    kind.name: kind
    for kind in (
        Kind(
            "build",
            "images",
            "api/builds",
            "builds",
            ("queued", "running"),
            {"cancel": ("DELETE", "api/builds/{id}")},
        ),
        Kind(
            "job",
            "jobs",
            "api/jobs",
            "jobs",
            ("queued", "starting", "running", "restarting"),
            {"cancel": ("DELETE", "api/jobs/{id}"), "rerun": ("POST", "api/jobs/{id}/rerun")},
        ),
        Kind(
            "experiment",
            "jobs",
            "api/experiments",
            "experiments",
            ("running",),
            {"cancel": ("DELETE", "api/experiments/{id}")},
        ),
        Kind(
            "serving",
            "jobs",
            "api/servings",
            "servings",
            ("starting", "restarting"),
            {"stop": ("DELETE", "api/servings/{id}")},
        ),
        Kind(
            "board",
            "tensorboards",
            "api/boards",
            "boards",
            ("starting",),
            {"stop": ("DELETE", "api/boards/{id}")},
        ),
    )
}
ACTIONS = ("build", "job", "notebook", "experiment", "board", "serve", "environment")
ITEM_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
LOG_PATHS = {"build": "api/builds/{id}/logs", "job": "api/jobs/{id}/logs", "serving": "api/servings/{id}/logs"}


def item(kind, record, public_url):
    """A record as the sidebar shows it: the same fields for every kind."""
    status = record.get("status", "")
    if kind.name == "serving" and record.get("ready"):
        status = "ready"
    progress = None
    if kind.name == "build" and record.get("steps"):
        progress = {"step": record.get("step") or 0, "steps": record["steps"]}
    if kind.name == "experiment":  # trials ended of max_trials
        ended = sum(n for state, n in (record.get("trials") or {}).items() if state not in ("running", "queued"))
        progress = {"step": ended, "steps": record.get("spec", {}).get("max_trials") or ended or 1}
    name = record.get("name") or record.get("image") or record["id"]
    if kind.name == "build" and record.get("name") and record.get("tag"):
        name = f"{record['name']}:{record['tag'][:12]}"  # the whole reference is in detail.image
    url = record.get("url")
    return {
        "kind": kind.name,
        "id": record[kind.id_field],
        "name": name,
        "status": status,
        "message": record.get("message") or "",
        "created": record.get("created"),
        "finished": record.get("finished"),
        "changing": status in kind.changing,
        "progress": progress,
        "url": public_url(url) if url else None,
        "verbs": sorted(kind.verbs) + (["logs"] if kind.name in LOG_PATHS else []),
        "detail": {
            key: record[key]
            for key in ("image", "logdirs", "generation", "requests", "queue_position", "project", "best")
            if record.get(key) not in (None, "", [])
        },
    }


class KubeStudioBridge(LoggingConfigurable):
    """The server's side of the lab extension: the SDK clients (one per service, found through the
    hub once) and the shared poll of the user's items."""

    busy_poll_seconds = Float(
        2.0,
        config=True,
        help="""How often the user's items are asked of the services while one of them is still
        changing (a build or job queued or running, a serving or board starting).""",
    )
    idle_poll_seconds = Float(
        20.0,
        config=True,
        help="""How often the user's items are asked of the services while nothing changes by itself
        (an action taken from the lab asks again at once).""",
    )
    wait_seconds = Float(
        50.0,
        config=True,
        help="""How long a sidebar's request for changes is held when nothing changed: the browser's
        requests per minute with nothing happening are 60 / this. Keep it under the idle timeout of
        the proxies in front of the hub (nginx's proxy_read_timeout: 60 s by default).""",
    )
    recent_seconds = Integer(
        86400 * 7,
        config=True,
        help="""Items that ended longer ago than this (seconds) are left out of the sidebar's list.""",
    )

    def __init__(self, root_dir, **kwargs):
        super().__init__(**kwargs)
        self.root_dir = os.path.realpath(root_dir)
        self._clients = {}
        self._missing = {}  # service -> (when, why): not asked again for a minute
        self.version = ""
        self.snapshot = {"items": [], "errors": {}}
        self._changed = asyncio.Event()
        self._kick = asyncio.Event()
        self._task = None
        self._last_wanted = 0.0
        self.service_requests = 0  # made to the hub services so far (GET api/kubestudio/services says)

    # -- the services ------------------------------------------------------------------------
    async def client(self, service):
        """The SDK client of ``service``, or None when the hub does not run it (remembered a minute)."""
        if service in self._clients:
            return self._clients[service]
        missing = self._missing.get(service)
        if missing and time.monotonic() - missing[0] < 60:
            return None
        try:
            client = await asyncio.to_thread(CLIENTS[service])
        except ServiceError as e:
            self.log.info("KubeStudio lab: %s is not available: %s", service, e)
            self._missing[service] = (time.monotonic(), str(e))
            return None
        self._clients[service] = client
        return client

    async def available(self):
        found = await asyncio.gather(*(self.client(name) for name in CLIENTS))
        return {name: client is not None for name, client in zip(CLIENTS, found)}

    async def required(self, service):
        """The SDK client of ``service``; a 409 when the hub does not run it."""
        client = await self.client(service)
        if client is None:
            raise web.HTTPError(409, f"the hub does not run the {service} service")
        return client

    async def call(self, service, method, path, **kwargs):
        client = await self.required(service)
        self.service_requests += 1
        response = await asyncio.to_thread(client._call, method, path, **kwargs)
        return response.json() if response.content else {}

    # -- the shared poll ---------------------------------------------------------------------
    def want(self):
        """A sidebar asked: keep the poll going (it stops a minute after the last one asked)."""
        self._last_wanted = time.monotonic()
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._poll())

    def refresh(self):
        """Something was done from the lab: ask the services again now."""
        self._kick.set()

    async def _poll(self):
        while time.monotonic() - self._last_wanted < 60:
            await self.collect()
            self._kick.clear()
            busy = any(i["changing"] for i in self.snapshot["items"])
            interval = self.busy_poll_seconds if busy else self.idle_poll_seconds
            try:
                await asyncio.wait_for(self._kick.wait(), interval)
            except asyncio.TimeoutError:
                pass

    async def collect(self):
        """Ask every service for the user's items (one request per kind) and note a change."""
        items, errors = [], {}
        kinds = list(KINDS.values())

        async def listing(kind):
            client = await self.client(kind.service)
            if client is None:
                return None
            self.service_requests += 1
            try:
                response = await asyncio.to_thread(client._call, "GET", kind.path)
            except ServiceError as e:
                errors[kind.service] = str(e)
                return None
            return client, response.json().get(kind.key, [])

        cutoff = time.time() - self.recent_seconds
        for kind, found in zip(kinds, await asyncio.gather(*(listing(k) for k in kinds))):
            if found is None:
                continue
            client, records = found
            for record in records:
                if kind.name == "job" and (record.get("spec") or {}).get("env", {}).get("KUBESTUDIO_EXPERIMENT"):
                    continue  # an experiment's trial: shown (and told of) as its experiment, not 40 jobs
                shown = item(kind, record, client.public_url)
                if shown["status"] == "deleted" or _older(shown["finished"], cutoff):
                    continue
                items.append(shown)
        items.sort(key=lambda i: i.get("created") or "", reverse=True)
        snapshot = {"items": items, "errors": errors}
        version = hashlib.sha256(json.dumps(snapshot, sort_keys=True).encode()).hexdigest()[:16]
        if version != self.version:
            self.version, self.snapshot = version, snapshot
            self._changed.set()
            self._changed = asyncio.Event()

    async def changes(self, after, wait):
        """The items, once their version differs from ``after`` (or after ``wait`` seconds)."""
        self.want()
        if not self.version:
            await self.collect()
        deadline = time.monotonic() + wait
        while after and after == self.version and time.monotonic() < deadline:
            try:
                await asyncio.wait_for(asyncio.shield(self._changed.wait()), deadline - time.monotonic())
            except asyncio.TimeoutError:
                break
        return {"version": self.version, **self.snapshot}

    # -- paths -------------------------------------------------------------------------------
    def local_path(self, path):
        """A file browser path (relative to the server's root) as an absolute path inside it."""
        if not isinstance(path, str) or not path or "\0" in path:
            raise web.HTTPError(400, "path: give the file or folder (as the file browser shows it)")
        absolute = os.path.realpath(os.path.join(self.root_dir, path.lstrip("/")))
        if absolute != self.root_dir and not absolute.startswith(self.root_dir + os.sep):
            raise web.HTTPError(400, f"path: {path} is outside the server's files")
        return absolute


def _older(when, cutoff):
    if not when:
        return False
    try:
        return datetime.fromisoformat(when.replace("Z", "+00:00")).timestamp() < cutoff
    except ValueError:
        return False


def _words(value, field):
    """A list of strings from a list or a line (shell words), for args and packages."""
    if value in (None, ""):
        return []
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return [v for v in value if v]
    if isinstance(value, str):
        try:
            return shlex.split(value)
        except ValueError as e:
            raise web.HTTPError(400, f"{field}: {e}") from None
    raise web.HTTPError(400, f"{field}: give a list of strings or one line")


def _count(body, field, default, low=1, high=1024):
    value = body.get(field, default)
    if value in (None, ""):
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise web.HTTPError(400, f"{field}: {value!r} is not a whole number") from None
    if not low <= number <= high:
        raise web.HTTPError(400, f"{field}: {number} is not between {low} and {high}")
    return number


def _environment_from(folder):
    """An image service ``environment`` from a folder's requirements.txt or environment.yml, and
    the file it came from; (None, None) when it has neither."""
    requirements = os.path.join(folder, "requirements.txt")
    if os.path.isfile(requirements):
        with open(requirements, encoding="utf-8", errors="replace") as f:
            pip = [line.split("#", 1)[0].strip() for line in f]
        pip = [p for p in pip if p and not p.startswith("-")]
        return ({"pip": pip} if pip else None), "requirements.txt"
    for name in ("environment.yml", "environment.yaml"):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            import yaml

            with open(path, encoding="utf-8", errors="replace") as f:
                try:
                    data = yaml.safe_load(f) or {}
                except yaml.YAMLError as e:
                    raise web.HTTPError(400, f"{name}: not YAML: {e}") from None
            conda, pip = [], []
            for dependency in data.get("dependencies") or []:
                if isinstance(dependency, str) and not dependency.startswith("python"):
                    conda.append(dependency)
                elif isinstance(dependency, dict):
                    pip.extend(p for p in dependency.get("pip") or [] if isinstance(p, str))
            environment = {k: v for k, v in (("conda", conda), ("pip", pip)) if v}
            return (environment or None), name
    return None, None


class BridgeHandler(APIHandler):
    @property
    def bridge(self):
        return self.settings["kubestudio_bridge"]

    def body(self):
        try:
            data = json.loads(self.request.body or b"{}")
        except ValueError:
            raise web.HTTPError(400, "the request body is not JSON") from None
        if not isinstance(data, dict):
            raise web.HTTPError(400, "the request body must be a JSON object")
        return data

    def write_error(self, status_code, **kwargs):
        """Every error as ``{"status", "message"}``: the service's own words passed on."""
        error = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(error, Refusal):
            message = error.message
        elif isinstance(error, web.HTTPError) and error.log_message:
            message = error.log_message % error.args if error.args else error.log_message
        else:
            message = self._reason
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"status": status_code, "message": message, **getattr(error, "extra", {})}))

    async def guarded(self, work):
        """Run ``work``; a service's refusal or a path outside the workspace becomes the answer."""
        try:
            return await work
        except ServiceError as e:
            status = e.status if 400 <= (e.status or 0) < 600 else 502
            raise web.HTTPError(status, str(e)) from None
        except PathRefused as e:
            raise web.HTTPError(400, f"path: {e}") from None


class ServicesHandler(BridgeHandler):
    @web.authenticated
    async def get(self):
        self.finish(
            json.dumps(
                {
                    "user": os.environ.get("JUPYTERHUB_USER", ""),
                    "services": await self.bridge.available(),
                    "kinds": {name: kind.service for name, kind in KINDS.items()},
                    "service_requests": self.bridge.service_requests,
                }
            )
        )


class LimitsHandler(BridgeHandler):
    @web.authenticated
    async def get(self):
        """What one job of the user may hold (the jobs service's GET api/limits): the job dialog
        says it before the service would refuse."""
        self.finish(json.dumps(await self.guarded(self.bridge.call("jobs", "GET", "api/limits"))))


class ItemsHandler(BridgeHandler):
    @web.authenticated
    async def get(self):
        after = self.get_argument("after", "")
        try:
            wait = min(float(self.get_argument("wait", str(self.bridge.wait_seconds))), 60.0)
        except ValueError:
            raise web.HTTPError(400, "wait: give the seconds to wait for a change") from None
        self.finish(json.dumps(await self.bridge.changes(after, wait if after else 0)))


class ActionHandler(BridgeHandler):
    """One verb on a file browser path; answers the new item (and the service's record)."""

    @web.authenticated
    async def post(self, verb):
        action = getattr(self, f"do_{verb}", None) if verb in ACTIONS else None
        if action is None:
            raise web.HTTPError(
                404, f"no action {verb!r} (build, job, notebook, experiment, board, serve, environment)"
            )
        kind, record, client = await self.guarded(action(self.body()))
        self.bridge.refresh()
        self.finish(json.dumps({"item": item(KINDS[kind], record, client.public_url), "record": record}))

    async def do_build(self, body):
        client = await self.bridge.required("images")
        folder = self.bridge.local_path(body.get("path"))
        if not os.path.isdir(folder):
            raise web.HTTPError(400, f"path: {body.get('path')} is not a folder")
        request = {k: body[k] for k in ("name", "tag") if body.get(k)}
        if not request.get("name"):
            request["name"] = _image_name(os.path.basename(folder) or "image")
        if os.path.isfile(os.path.join(folder, body.get("dockerfile") or "Dockerfile")):
            request["context"] = workspace_relative(folder)
            if body.get("dockerfile"):
                request["dockerfile"] = body["dockerfile"]
        else:
            environment, source = _environment_from(folder)
            if not body.get("from_packages") or environment is None:
                raise Refusal(
                    409,
                    f"path: {body.get('path') or '.'} has no Dockerfile"
                    + (f"; it has {source}: build an image with its packages?" if environment else ""),
                    offer=source if environment else None,
                )
            request["environment"] = environment
        return "build", await asyncio.to_thread(client.build, **request), client

    async def do_environment(self, body):
        client = await self.bridge.required("images")
        request = {"from_server": os.environ.get("JUPYTERHUB_SERVER_NAME", "")}
        if body.get("name"):
            request["name"] = body["name"]
        return "build", await asyncio.to_thread(client.build, **request), client

    async def do_job(self, body):
        client = await self.bridge.required("jobs")
        script = workspace_relative(self.bridge.local_path(body.get("path")), "the script")
        spec = {
            "script": script,
            "nodes": _count(body, "nodes", 1),
            "procs_per_node": _count(body, "procs_per_node", 1),
        }
        if body.get("gpus") not in (None, "", 0, "0"):
            spec["resources"] = {"gpu": str(body["gpus"])}
        for field in ("args", "packages"):
            words = _words(body.get(field), field)
            if words:
                spec[field] = words
        stem = os.path.splitext(os.path.basename(script))[0]
        spec["name"] = body.get("name") or await asyncio.to_thread(client.free_name, stem)
        return "job", await asyncio.to_thread(client.create, spec), client

    async def do_notebook(self, body):
        """A notebook run headless as a job; its outputs are saved beside it (NAME.output.ipynb)."""
        client = await self.bridge.required("jobs")
        notebook = workspace_relative(self.bridge.local_path(body.get("path")), "the notebook")
        if not notebook.endswith(".ipynb"):
            raise web.HTTPError(400, f"path: {body.get('path')} is not a notebook (.ipynb)")
        folder, name = os.path.split(notebook)
        output = name[: -len(".ipynb")] + ".output.ipynb"
        spec = {
            "command": ["python", "-m", "nbconvert", "--to", "notebook", "--execute", name, "--output", output],
            "working_dir": folder,
        }
        packages = _words(body.get("packages"), "packages")
        if packages:
            spec["packages"] = packages
        spec["name"] = body.get("name") or await asyncio.to_thread(client.free_name, name[: -len(".ipynb")])
        return "job", await asyncio.to_thread(client.create, spec), client

    async def do_experiment(self, body):
        """A script tuned: its parameters' space (YAML or JSON text, either space form), the metric
        it reports and its direction, how many trials and how many at once."""
        client = await self.bridge.required("jobs")
        script = workspace_relative(self.bridge.local_path(body.get("path")), "the script")
        experiments = ExperimentsClient(url=client.url, token=client.token, hub_api_url=client.hub_api_url)
        spec = {
            "objective": {"metric": body.get("metric") or "", "direction": body.get("direction") or "maximize"},
            "space": body.get("space") or "",  # YAML text: the service reads it
            "max_trials": _count(body, "max_trials", 10),
            "parallel_trials": _count(body, "parallel_trials", 1),
            "early_stopping": body.get("early_stopping") or "none",
            "trial": {"script": script},
        }
        gpus = body.get("gpus")
        if gpus not in (None, "", 0, "0"):
            spec["trial"]["resources"] = {"gpu": str(gpus)}
        stem = os.path.splitext(os.path.basename(script))[0]
        spec["name"] = body.get("name") or await asyncio.to_thread(experiments.free_name, stem)
        return "experiment", await asyncio.to_thread(experiments.create, spec), client

    async def do_board(self, body):
        client = await self.bridge.required("tensorboards")
        folder = user_path(self.bridge.local_path(body.get("path")))
        return "board", await asyncio.to_thread(client.open_board, [folder], body.get("name") or None), client

    async def do_serve(self, body):
        client = await self.bridge.required("jobs")
        model = user_path(self.bridge.local_path(body.get("path")), "a model")
        fields = {}
        if body.get("model_class"):
            fields["model_class"] = body["model_class"]
        packages = _words(body.get("packages"), "packages")
        if packages:
            fields["packages"] = packages
        record = await asyncio.to_thread(client.serve, model=model, name=body.get("name") or None, **fields)
        return "serving", record, client


class _ViewerGone(Exception):
    """The browser closed a followed log."""


class Refusal(web.HTTPError):
    """A refusal with more to say than its message (``offer``: what the user may do instead)."""

    def __init__(self, status, message, **extra):
        super().__init__(status, "%s", message)
        self.message = message
        self.extra = {k: v for k, v in extra.items() if v is not None}


def _image_name(folder_name):
    name = "".join(c if c.isalnum() or c in "._-" else "-" for c in folder_name.lower()).strip("._-")
    return name[:64] or "image"


def checked_item(kind_name, item_id):
    """The kind of an item named in a URL; a 404 for an unknown kind or an id no service makes."""
    kind = KINDS.get(kind_name)
    if kind is None:
        raise web.HTTPError(404, f"no kind of item {kind_name!r} ({', '.join(KINDS)})")
    if not ITEM_ID.fullmatch(item_id):
        raise web.HTTPError(404, f"no {kind_name} {item_id!r}")
    return kind


class ItemVerbHandler(BridgeHandler):
    @web.authenticated
    async def post(self, kind_name, item_id, verb):
        kind = checked_item(kind_name, item_id)
        if verb == "predict" and kind_name == "serving":
            record = await self.guarded(self.bridge.call("jobs", "GET", f"api/servings/{item_id}"))
            client = await self.bridge.client("jobs")
            path = client.predict_url(record["name"], record["owner"])
            answer = await self.guarded(self.bridge.call("jobs", "POST", path, json=self.body()))
            self.finish(json.dumps(answer))
            return
        if verb not in kind.verbs:
            raise web.HTTPError(400, f"verb: a {kind_name} takes {', '.join(sorted(kind.verbs))}, not {verb!r}")
        method, path = kind.verbs[verb]
        body = self.body() if method == "POST" else None
        record = await self.guarded(
            self.bridge.call(kind.service, method, path.format(id=item_id), **({"json": body} if body else {}))
        )
        self.bridge.refresh()
        self.finish(json.dumps({"record": record}))


class LogsHandler(BridgeHandler):
    """A log passed on as the service sends it (Server-Sent Events, followed, or plain text)."""

    @web.authenticated
    async def get(self, kind_name, item_id):
        kind = checked_item(kind_name, item_id)
        if kind_name not in LOG_PATHS:
            raise web.HTTPError(404, f"no logs for a {kind_name} ({', '.join(LOG_PATHS)} have them)")
        client = await self.bridge.required(kind.service)
        streaming = "text/event-stream" in self.request.headers.get("Accept", "")
        url = client.url + LOG_PATHS[kind_name].format(id=item_id)
        headers = {"Authorization": f"token {client.token}", "Accept": "text/event-stream" if streaming else "*/*"}
        answer = {"status": 200, "error": b""}

        def header(line):
            if line.startswith("HTTP/"):
                answer["status"] = int(line.split()[1])
                return
            name, _, value = line.partition(":")
            if name.lower() == "content-type" and answer["status"] < 400:
                self.set_header("Content-Type", value.strip())

        def chunk(data):
            if answer["status"] >= 400:
                answer["error"] += data[:65536]
                return
            if self._gone:  # the viewer was closed: end the service's stream too (at its next keepalive)
                raise _ViewerGone()
            self.write(data)
            asyncio.ensure_future(self._flush())

        if streaming:
            self.set_header("Cache-Control", "no-cache")
            self.set_header("X-Accel-Buffering", "no")
        request = httpclient.HTTPRequest(
            url,
            headers=headers,
            request_timeout=0 if streaming else 60,
            header_callback=header,
            streaming_callback=chunk,
        )
        try:
            response = await httpclient.AsyncHTTPClient().fetch(request, raise_error=False)
        except _ViewerGone:
            return
        except OSError as e:
            response = httpclient.HTTPResponse(request, 599, error=e)
        if self._gone:
            return
        if response.code == 599:
            raise web.HTTPError(502, f"{kind.service} is not reachable: {response.error}")
        if answer["status"] >= 400:
            try:
                message = json.loads(answer["error"]).get("message")
            except (ValueError, AttributeError):
                message = None
            raise web.HTTPError(
                answer["status"], message or f"{kind_name} {item_id}: the service answered HTTP {answer['status']}"
            )
        self.finish()

    _gone = False

    def on_connection_close(self):
        self._gone = True

    async def _flush(self):
        try:
            await self.flush()
        except Exception:  # the browser went away: the fetch ends with the service's stream
            pass


def load(server_app):
    """Add the bridge's handlers to ``server_app``."""
    web_app = server_app.web_app
    bridge = KubeStudioBridge(server_app.root_dir, parent=server_app, log=server_app.log)
    web_app.settings["kubestudio_bridge"] = bridge
    base = url_path_join(web_app.settings["base_url"], "api/kubestudio")
    web_app.add_handlers(
        ".*$",
        [
            (url_path_join(base, "services"), ServicesHandler),
            (url_path_join(base, "items"), ItemsHandler),
            (url_path_join(base, "limits"), LimitsHandler),
            (url_path_join(base, r"actions/([^/]+)"), ActionHandler),
            (url_path_join(base, r"items/([^/]+)/([^/]+)/logs"), LogsHandler),
            (url_path_join(base, r"items/([^/]+)/([^/]+)/([^/]+)"), ItemVerbHandler),
        ],
    )
    return bridge
