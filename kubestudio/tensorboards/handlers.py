"""HTTP handlers of the TensorBoard service: the JSON API under ``api/``, the page at the root,
and the boards themselves under ``b/<id>/``, proxied to their TensorBoard.

Who may do what (JupyterHub scopes; the service also needs ``access:services!service=tensorboards``):
``custom:kubestudio:tensorboards:use`` opens, lists and stops your own boards; the admin scope
sees and stops everyone's. A board's pages are the owner's alone (their browser, or a token of
theirs): another user's board answers 404, so ids reveal nothing.

TensorBoard's frontend reads its data with ``fetch``; since JupyterHub 4.1 a cookie-authenticated
request that is not a page load must carry an XSRF token, which TensorBoard does not send. The
proxy accepts such a request without one only when it comes from a page of the same board
(``Sec-Fetch-Site: same-origin`` and a ``Referer`` under the board's own prefix). It keeps a
plain cross-path request out, not a same-origin page: one that frames the board or rewrites its
own URL (``history.pushState``) reads it as its visitor, as it could any page of the hub's origin
(JupyterHub's own limit without ``subdomain_host``; the admin guide says so).
"""

from urllib.parse import urlparse

from tornado.escape import xhtml_escape

from ..names import TENSORBOARDS_ADMIN_SCOPE as ADMIN_SCOPE
from ..names import TENSORBOARDS_USE_SCOPE as USE_SCOPE
from ..services.proxy import forward
from ..services.web import OwnedHandler, PageHandler, http_error, page_templates
from .logdirs import LogdirError
from .models import FAILED

TEMPLATES = page_templates(__file__)
STARTING_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><meta http-equiv="refresh" content="1"><title>Starting TensorBoard</title>
<style>body {{ font-family: system-ui, sans-serif; margin: 3rem; color: #222; }} .muted {{ color: #666; }}</style></head>
<body><main><h1>Starting TensorBoard</h1><p>{name}</p><p class="muted">{message} This page reloads itself.</p>
</main></body></html>"""


class BoardsBaseHandler(OwnedHandler):
    use_scope = USE_SCOPE
    admin_scope = ADMIN_SCOPE
    noun = "board"
    what = "use TensorBoards"


class BoardsHandler(BoardsBaseHandler):
    async def get(self):
        self.require_access()
        self.write_json({"boards": self.manager.list(self.owner_filter())})

    async def post(self):
        self.require_access()
        if self.identity["kind"] != "user":
            raise http_error(403, "boards belong to users: open one with a user's token")
        try:
            board, created = await self.manager.open(self.identity, self.json_body())
        except LogdirError as e:
            raise http_error(e.status, str(e)) from None
        self.write_json(board, 201 if created else 200)


class BoardHandler(BoardsBaseHandler):
    async def get(self, board_id):
        self.require_access()
        self.owner_checked(board_id)
        self.write_json(self.manager.get(board_id))

    async def delete(self, board_id):
        self.require_access()
        self.owner_checked(board_id)
        await self.manager.delete(board_id, self.identity["name"])
        self.set_status(204)
        self.finish()


class BoardLogsHandler(BoardsBaseHandler):
    async def get(self, board_id):
        self.require_access()
        self.owner_checked(board_id)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(await self.manager.logs(board_id))


class IndexHandler(PageHandler, BoardsBaseHandler):
    async def get(self):
        self.render_page(TEMPLATES)


class ProxyHandler(BoardsBaseHandler):
    """A board's TensorBoard, streamed through: bodies as they come (gzip untouched), redirects kept
    inside the board's prefix, and none of the hub's cookies or tokens passed on."""

    SUPPORTED_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS")
    quiet_success = True  # a board's page asks for dozens of files and polls its data

    async def prepare(self):
        # a browser opening the board's URL logs in first (an API caller gets the 401)
        navigating = self.request.method == "GET" and (
            self.request.headers.get("Sec-Fetch-Mode") == "navigate"
            or "text/html" in self.request.headers.get("Accept", "")
        )
        if navigating and "Authorization" not in self.request.headers:
            model = await self.hub_auth.get_user(self, sync=False)
            if not model:
                self.redirect(self.get_login_url())
                return
        await super().prepare()

    def check_xsrf_cookie(self):
        if self._from_this_board():
            return
        super().check_xsrf_cookie()

    def _from_this_board(self):
        board_id = self.path_args[0] if self.path_args else None
        if not board_id or self.request.headers.get("Sec-Fetch-Site") != "same-origin":
            return False
        referer = urlparse(self.request.headers.get("Referer", ""))
        if referer.netloc and referer.netloc != self.request.host:
            return False
        return referer.path.startswith(self.manager.board_prefix(board_id))

    async def _proxy(self, board_id, path):
        self.require_access()
        owner = self.manager.owner_of(board_id)
        if owner is None or owner != self.identity["name"]:  # a board is its owner's alone
            raise http_error(404, f"no board {board_id}")
        self.manager.touch(board_id)
        target = self.manager.upstream_url(board_id)
        if target is None:
            board = self.manager.get(board_id)
            page = self.request.headers.get("Sec-Fetch-Mode") == "navigate" or "text/html" in self.request.headers.get(
                "Accept", ""
            )
            if self.request.method == "GET" and page and board["status"] != FAILED:
                self.set_header("Content-Type", "text/html; charset=utf-8")
                self.set_header("Retry-After", "1")
                self.finish(
                    STARTING_PAGE.format(
                        prefix=self.settings["service_prefix"],
                        name=xhtml_escape(board["name"]),
                        message=xhtml_escape(board["message"]),
                    )
                )
                return
            self.set_header("Retry-After", "1")
            raise http_error(
                503 if board["status"] != FAILED else 502, f"board {board_id} is {board['status']}: {board['message']}"
            )
        url = target + "/" + path + (("?" + self.request.query) if self.request.query else "")
        await forward(
            self,
            url,
            f"board {board_id}: TensorBoard",
            location=lambda value: self._inside_prefix(value, board_id),
            backend_headers=self.manager.upstream_headers(board_id),
        )

    def _inside_prefix(self, location, board_id):
        parsed = urlparse(location)
        path = parsed.path if parsed.netloc in ("",) or parsed.hostname in ("127.0.0.1", "localhost") else None
        if path is None or not path.startswith(self.manager.board_prefix(board_id).rstrip("/")):
            return self.manager.board_prefix(board_id)
        return path + (f"?{parsed.query}" if parsed.query else "")

    async def get(self, board_id, path):
        await self._proxy(board_id, path)

    async def head(self, board_id, path):
        await self._proxy(board_id, path)

    async def post(self, board_id, path):
        await self._proxy(board_id, path)

    async def put(self, board_id, path):
        await self._proxy(board_id, path)

    async def delete(self, board_id, path):
        await self._proxy(board_id, path)

    async def options(self, board_id, path):
        await self._proxy(board_id, path)

    def set_default_headers(self):
        pass  # TensorBoard's own caching headers stand
