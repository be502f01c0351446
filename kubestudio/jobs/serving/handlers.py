"""HTTP handlers of servings in the jobs service: the JSON API under ``api/servings`` and the
served models themselves under ``serve/<user>/<name>/`` (KServe's V1 and V2 paths).

Who may do what: ``custom:kubestudio:jobs:run`` serves, updates, reads and deletes your own
servings (the admin scope: everyone's). Calling a serving needs the owner's own login or token,
or ``custom:kubestudio:serve:predict!user=<owner>`` (what an owner grants a teammate's token, or
an admin a role); the unfiltered scope calls every serving. Everyone else gets 404.
"""

from ...names import SERVE_PREDICT_SCOPE
from ...services.proxy import forward
from ...services.web import http_error
from ..handlers import JobsBaseHandler
from ..spec import SpecError


class ServingsBaseHandler(JobsBaseHandler):
    noun = "serving"

    @property
    def manager(self):
        servings = self.settings["servings"]
        if servings is None:
            raise http_error(
                409,
                "servings: this hub's jobs service runs no servings (its jobs backend, "
                f"{self.settings['manager'].backend.name}, names no serving backend; the "
                "administrator sets one with JobService.serving_backend_class)",
            )
        return servings


class ServingsHandler(ServingsBaseHandler):
    async def get(self):
        self.require_access()
        self.write_json({"servings": self.manager.list(owner=self.owner_filter())})

    async def post(self):
        self.require_access()
        if self.identity["kind"] != "user":
            raise http_error(403, "servings belong to users: serve with a user's token")
        try:
            serving = await self.manager.create(self.identity, self.json_body())
        except SpecError as e:
            raise http_error(e.status, str(e)) from None
        self.set_header("Location", f"{self.settings['service_prefix']}api/servings/{serving['id']}")
        self.write_json(serving, 201)


class ServingHandler(ServingsBaseHandler):
    async def get(self, serving_id):
        self.require_access()
        self.owner_checked(serving_id)
        self.write_json(self.manager.get(serving_id))

    async def put(self, serving_id):
        """A new version: the spec again, changed (a new model); the old one serves until it is ready."""
        self.require_access()
        self.owner_checked(serving_id)
        try:
            serving = await self.manager.update(self.identity, serving_id, self.json_body())
        except SpecError as e:
            raise http_error(e.status, str(e)) from None
        self.write_json(serving)

    async def delete(self, serving_id):
        self.require_access()
        self.owner_checked(serving_id)
        await self.manager.delete(serving_id)
        self.set_status(204)
        self.finish()


class ServingLogsHandler(ServingsBaseHandler):
    async def get(self, serving_id):
        """The runtime's output (every start, each marked), the last part."""
        self.require_access()
        self.owner_checked(serving_id)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(await self.manager.logs(serving_id))


class PredictHandler(ServingsBaseHandler):
    """A serving's runtime, through the hub: ``serve/<user>/<name>/v1/models/<name>:predict`` etc."""

    SUPPORTED_METHODS = ("GET", "POST")
    quiet_success = True  # the serving counts its requests; the runtime logs each one

    async def _call(self, owner, name, path):
        serving_id = self.manager.find(owner, name)
        allowed = (
            self.identity["name"] == owner
            and self.identity["kind"] == "user"
            or self.has_scope(SERVE_PREDICT_SCOPE, owner)
        )
        if serving_id is None or not allowed:
            raise http_error(404, f"no serving {owner}/{name}")
        limit = self.settings["max_predict_bytes"]
        if len(self.request.body or b"") > limit:
            raise http_error(
                413, f"the request body is larger than {limit // (1024 * 1024)} MiB (JobService.max_predict_bytes)"
            )
        target = self.manager.upstream_url(serving_id)
        if target is None:
            serving = self.manager.get(serving_id)
            self.set_header("Retry-After", "1")
            raise http_error(
                503,
                f"serving {owner}/{name} is {serving['status']}"
                + (f": {serving['message']}" if serving["message"] else ""),
            )
        self.manager.count_request(serving_id)
        url = f"{target}/{path}" + (f"?{self.request.query}" if self.request.query else "")
        # a prediction may be sent twice (to a pod that went away in a rollout, then to another)
        await forward(
            self,
            url,
            f"serving {owner}/{name}",
            backend_headers=self.manager.upstream_headers(serving_id),
            replayable=True,
        )

    async def get(self, owner, name, path):
        await self._call(owner, name, path)

    async def post(self, owner, name, path):
        await self._call(owner, name, path)

    def set_default_headers(self):
        pass
