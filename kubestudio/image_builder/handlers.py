"""HTTP handlers of the image service: the JSON API under ``api/`` and the page at the root.

Who may do what (JupyterHub scopes; the service also needs ``access:services!service=images``):

- ``custom:kubestudio:images:build``: build, and see and cancel your own builds and images;
- ``custom:kubestudio:images:admin``: see and cancel everyone's, push to any repository.

Another user's build answers 404, so build ids reveal nothing.
"""

import json

from ..names import IMAGES_ADMIN_SCOPE as ADMIN_SCOPE
from ..names import IMAGES_BUILD_SCOPE as BUILD_SCOPE
from ..services.events import EventStream, wants_event_stream
from ..services.web import OwnedHandler, PageHandler, http_error, page_templates
from .backends.base import StepCounter
from .spec import RequestError

LOG_BATCH_LINES = 200
LOG_EVENT = 'data: {"type": "log", "line": %s}\n\n'  # what EventStream.event makes of a log line, faster
TEMPLATES = page_templates(__file__)


class ImagesHandler(OwnedHandler):
    use_scope = BUILD_SCOPE
    admin_scope = ADMIN_SCOPE
    noun = "build"
    what = "use image builds"


class BuildsHandler(ImagesHandler):
    async def get(self):
        self.require_access()
        builds = self.manager.list(owner=self.owner_filter())
        self.write_json({"builds": builds})

    async def post(self):
        self.require_access()
        body = self.json_body()
        try:
            status, build = await self.manager.submit(self.identity, body, self.is_admin)
        except RequestError as e:
            raise http_error(e.status, str(e)) from None
        if status == 202:
            self.set_header("Location", f"{self.settings['service_prefix']}api/builds/{build['id']}")
        self.write_json(build, status)


class BuildHandler(ImagesHandler):
    async def get(self, build_id):
        self.require_access()
        self.owner_checked(build_id)
        self.write_json(self.manager.get(build_id))

    async def delete(self, build_id):
        self.require_access()
        self.owner_checked(build_id)
        try:
            build = await self.manager.cancel(build_id, self.identity["name"])
        except RequestError as e:
            raise http_error(e.status, str(e)) from None
        self.write_json(build)


class BuildLogsHandler(ImagesHandler):
    async def get(self, build_id):
        self.require_access()
        self.owner_checked(build_id)
        if not wants_event_stream(self):
            await self.send_log_text(self.manager.log_text(build_id))
            return
        with EventStream(self, keepalive=self.settings["keepalive_seconds"]) as stream:
            await stream.comment("replaying the log from the start")
            steps = StepCounter(self.manager.backend.step_of, self.manager.get(build_id)["steps"])
            async for kind, value in self.manager.follow(build_id):
                if stream.closed:
                    return
                if kind == "lines":
                    # small batches, one write each: between two of them the loop serves everyone
                    # else, so ten followers of a huge log never hold up another user's request
                    for start in range(0, len(value), LOG_BATCH_LINES):
                        parts = []
                        for line in value[start : start + LOG_BATCH_LINES]:
                            parts.append(LOG_EVENT % json.dumps(line))
                            if steps.feed(line):
                                parts.append(
                                    stream.event({"type": "progress", "step": steps.step, "steps": steps.total or None})
                                )
                        await self.settings["bulk_writes"].write(stream.write, "".join(parts))
                        if stream.closed:
                            return
                else:
                    await stream.send({"type": "result", **value})
        self.finish()


class ImageListHandler(ImagesHandler):
    async def get(self):
        self.require_access()
        self.write_json({"images": self.manager.images(owner=self.owner_filter())})

    async def delete(self):
        """``DELETE api/images?image=<reference>``: delete one of your images (admins: anyone's)."""
        self.require_access()
        image = self.get_argument("image", "")
        if not image:
            raise http_error(400, "image: give the image reference to delete (?image=...)")
        try:
            count = await self.manager.delete_image(image, owner=None if self.is_admin else self.identity["name"])
        except RequestError as e:
            raise http_error(e.status, str(e)) from None
        self.write_json({"image": image, "deleted": True, "builds": count})


class BaseListHandler(ImagesHandler):
    """Base images this service makes itself (embedded default), with their state."""

    async def get(self):
        self.require_access()
        self.write_json({"bases": self.settings["bases"].status(), "default": self.manager.default_base})


class ServerListHandler(ImagesHandler):
    """The caller's servers and what a *Running server* build of each would add (for the page)."""

    async def get(self):
        self.require_access()
        try:
            servers = await self.settings["capture"].servers(self.identity["name"])
        except RequestError as e:
            raise http_error(e.status, str(e)) from None
        self.write_json({"servers": servers})


class IndexHandler(PageHandler, ImagesHandler):
    async def get(self):
        self.render_page(
            TEMPLATES,
            registry=self.settings["registry_display"],
            default_base=self.manager.default_base or "",
            workspace=self.settings["workspace_label"](self.identity["name"]),
        )
