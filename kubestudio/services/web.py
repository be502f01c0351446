"""HTTP handlers every KubeStudio hub service shares.

- :class:`ServiceHandler`: identity from JupyterHub (HubOAuth cookie for pages, ``Authorization:
  token ...`` for the API), scope checks, checked JSON bodies, and errors as JSON
  ``{"status": N, "message": "..."}``; :func:`http_error` makes such an error from any text.
- :class:`PageHandler`: a page at the service root, sending anonymous visitors through the hub's
  OAuth login.
- :class:`NotFoundHandler`, :class:`OpenAPIHandler`, :class:`HealthHandler`: the routes every
  service has.
- :func:`service_url_parts`: where JupyterHub told a managed service to listen.

Services build a tornado ``Application`` from these, :func:`oauth_routes` and :func:`oauth_settings`.
"""

import json
import logging
import os
import re
import secrets
from urllib.parse import urlparse

from jupyterhub.services.auth import (
    HubOAuth,
    HubOAuthCallbackHandler,
    HubOAuthenticated,
    check_scopes,
)
from jupyterhub.utils import url_path_join
from tornado import web
from tornado.log import access_log

from ..names import CONVENTIONAL_PORTS, SERVICE_BIND_HOST_ENV
from .secretfile import stored_secret

# templates every service page shares (service.css: the look of the services' pages)
SERVICE_TEMPLATES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")


def page_templates(package_file):
    """The templates of a service's page: its package's ``templates`` folder, then the ones every
    service shares (``service.css``, ``service.js``); HTML escaped."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    return Environment(
        loader=FileSystemLoader(
            [os.path.join(os.path.dirname(os.path.abspath(package_file)), "templates"), SERVICE_TEMPLATES]
        ),
        autoescape=select_autoescape(),
    )


def http_error(status, message):
    """An HTTPError answered as ``{"status": status, "message": message}``. ``message`` is text, never
    a format string: user input with a ``%`` in it stays as it is."""
    return web.HTTPError(status, "%s", message)


class ServiceHandler(HubOAuthenticated, web.RequestHandler):
    """Base for a service's API handlers.

    ``self.identity`` is the hub's model of the caller (user or service, with its scopes); it is
    set in :meth:`prepare`: anonymous callers get 401, callers without access to the service 403.
    """

    identity = None

    @property
    def service_name(self):
        return self.settings["service_name"]

    def set_default_headers(self):
        self.set_header("Cache-Control", "no-store")

    def _request_summary(self):
        # tornado's warning lines for 4xx name the request: never with a ?token=... in it
        return f"{self.request.method} {masked_uri(self.request.uri)} ({self.request.remote_ip})"

    async def prepare(self):
        model = await self.hub_auth.get_user(self, sync=False)
        if self.hub_auth.get_token(self, in_cookie=False) and not getattr(self, "_token_authenticated", False):
            # a token that is not valid is refused, never a reason to fall back to the browser's
            # cookie (HubOAuth would; with it, a check of the XSRF token that trusts any header)
            raise web.HTTPError(401, "the token sent is not valid (expired or revoked): send a current hub API token")
        if not model:
            raise web.HTTPError(401, "log in to the hub or send 'Authorization: token <hub API token>'")
        model.setdefault("kind", "user")
        if self.hub_scopes and not check_scopes(self.hub_scopes, set(model.get("scopes", []))):
            raise web.HTTPError(403, f"{model['kind']} {model['name']} may not use the {self.service_name} service")
        self.identity = model

    def has_scope(self, scope, owner=None):
        """Whether the caller holds ``scope`` (for ``owner`` when given: filters are honoured)."""
        required = f"{scope}!user={owner}" if owner else scope
        return bool(check_scopes({required}, set(self.identity.get("scopes", []))))

    def require_scope(self, scope, owner=None, what="do this"):
        if not self.has_scope(scope, owner):
            raise web.HTTPError(
                403, f"{self.identity['kind']} {self.identity['name']} may not {what} (needs scope {scope})"
            )

    max_body_bytes = 1024 * 1024  # a JSON request of ours is a few KiB; a Dockerfile at most 256 KiB
    max_json_depth = 16

    def json_body(self):
        """The request body as a JSON object; 4xx naming the reason (and the field) otherwise.

        Refused: bodies over :attr:`max_body_bytes` (413), nesting deeper than
        :attr:`max_json_depth`, and strings (keys too) holding NUL or a lone surrogate, which no
        file name, label or Dockerfile can carry.
        """
        if not self.request.body:
            raise web.HTTPError(400, "send a JSON object in the request body")
        if len(self.request.body) > self.max_body_bytes:
            raise web.HTTPError(413, f"the request body is larger than {self.max_body_bytes // 1024} KiB")
        try:
            body = json.loads(self.request.body)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise web.HTTPError(400, f"the request body is not valid JSON: {e}") from None
        except RecursionError:
            raise web.HTTPError(
                400, f"the request body is nested more than {self.max_json_depth} levels deep"
            ) from None
        if not isinstance(body, dict):
            raise web.HTTPError(400, "the request body must be a JSON object")
        problem = check_json_value(body, self.max_json_depth)
        if problem:
            raise web.HTTPError(400, problem)
        return body

    def write_json(self, data, status=200):
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data))

    def error_message(self, **kwargs):
        """What to tell the caller about the error being written (never a traceback)."""
        exc_info = kwargs.get("exc_info")
        error = exc_info[1] if exc_info else None
        if isinstance(error, web.HTTPError) and error.log_message:
            return error.log_message % error.args  # without args, tornado stored it with % doubled
        if error is not None and not isinstance(error, web.HTTPError):
            return "internal error in the service; the administrator can find it in the service log"
        return self._reason

    def write_error(self, status_code, **kwargs):
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"status": status_code, "message": self.error_message(**kwargs)}))


class OwnedHandler(ServiceHandler):
    """An API handler of a service whose resources belong to users (builds, jobs).

    A subclass names the scope that lets a user use the service (``use_scope``, for their own
    resources), the admin scope (everyone's), and its noun in messages. Another user's resource
    answers 404, so ids reveal nothing.
    """

    use_scope = None
    admin_scope = None
    noun = "resource"  # "build", "job"
    what = "use this service"  # "use image builds", in a 403

    @property
    def manager(self):
        return self.settings["manager"]

    @property
    def is_admin(self):
        return self.has_scope(self.admin_scope)

    def require_access(self):
        if not self.is_admin:
            self.require_scope(self.use_scope, self.identity["name"], what=self.what)

    def owner_filter(self):
        """Whose resources a listing shows: your own; admins: ?user=NAME, or everyone's with ?user=*."""
        wanted = self.get_argument("user", None)
        if wanted is None or wanted == self.identity["name"]:
            return self.identity["name"] if self.identity["kind"] == "user" or not self.is_admin else None
        if not self.is_admin:
            raise http_error(403, f"only admins may list another user's {self.noun}s (needs scope {self.admin_scope})")
        return None if wanted == "*" else wanted

    async def send_log_text(self, pieces):
        """A log as plain text, a piece at a time (``pieces``: an async iterator of text), each
        written in a turn of the application's ``bulk_writes``: a 10 MB log never sits whole in
        memory, nor holds up other requests."""
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        async for text in pieces:
            await self.settings["bulk_writes"].write(self._write_and_flush, text)
        self.finish()

    async def _write_and_flush(self, text):
        self.write(text)
        await self.flush()

    def render_page(self, templates, **context):
        """The service's page (``index.html`` of ``templates``) for the caller, with what every
        page has: who they are, the service and hub prefixes, the XSRF token for its API calls."""
        self.require_access()
        xsrf = self.xsrf_token
        page = templates.get_template("index.html").render(
            user=self.identity["name"],
            is_admin=self.is_admin,
            prefix=self.settings["service_prefix"],
            hub_prefix=os.environ.get("JUPYTERHUB_BASE_URL", "/").rstrip("/") + "/hub/",
            xsrf=xsrf.decode() if isinstance(xsrf, bytes) else xsrf,
            **context,
        )
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(page)

    def owner_checked(self, resource_id):
        """The resource's owner, checked: 404 if it does not exist or is someone else's (admins: any)."""
        owner = self.manager.owner_of(resource_id)
        if owner is None or (owner != self.identity["name"] and not self.is_admin):
            raise http_error(404, f"no {self.noun} {resource_id}")
        return owner


def check_json_value(value, max_depth, path=""):
    """Why a decoded JSON value is refused (``"field.path: reason"``), or None."""
    if isinstance(value, str):
        return _bad_string(value, path or "body")
    if max_depth <= 0 and isinstance(value, (dict, list)):
        return f"{path or 'body'}: nested too deeply"
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else key
            problem = _bad_string(key, f"{path or 'body'} (a key)") or check_json_value(item, max_depth - 1, where)
            if problem:
                return problem
    elif isinstance(value, list):
        for i, item in enumerate(value):
            problem = check_json_value(item, max_depth - 1, f"{path}[{i}]")
            if problem:
                return problem
    return None


def _bad_string(text, where):
    if "\0" in text:
        return f"{where}: must not contain NUL characters"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return f"{where}: must not contain unpaired surrogate characters (\\ud800-\\udfff)"
    return None


def log_request(handler):
    """tornado's access log line, with credentials sent in the query string masked. A handler
    with ``quiet_success`` (the data plane: predictions, a board's pages) logs its answers below
    400 at DEBUG: one line per prediction would bury the service's own log."""
    status = handler.get_status()
    if status < 400:
        level = logging.DEBUG if getattr(handler, "quiet_success", False) else logging.INFO
    else:
        level = logging.WARNING if status < 500 else logging.ERROR
    if access_log.isEnabledFor(level):
        access_log.log(
            level,
            "%d %s %s (%s) %.2fms",
            status,
            handler.request.method,
            masked_uri(handler.request.uri),
            handler.request.remote_ip,
            1000.0 * handler.request.request_time(),
        )


def masked_uri(uri):
    """``uri`` with the values of credential parameters (token=, code=, ...) replaced by ***."""
    return _QUERY_SECRET.sub(lambda m: m.group(1) + "***", uri or "")


_QUERY_SECRET = re.compile(r"((?:^|[?&;])(?:token|access_token|_xsrf|code|state)=)[^&;#]*", re.IGNORECASE)


class PageHandler(ServiceHandler):
    """A page: anonymous visitors go through the hub's OAuth login instead of a 401."""

    async def prepare(self):
        model = await self.hub_auth.get_user(self, sync=False)
        if not model:
            self.redirect(self.get_login_url())
            return
        await super().prepare()

    def write_error(self, status_code, **kwargs):
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(
            f"<!doctype html><title>{status_code}</title><h1>{status_code}</h1>"
            f"<p>{web.escape.xhtml_escape(self.error_message(**kwargs))}</p>"
        )


class NotFoundHandler(web.RequestHandler):
    """Any other path under the service: a JSON 404 like every other error of ours."""

    def prepare(self):
        raise web.HTTPError(404, f"no such endpoint: {self.request.method} {self.request.path}")

    def write_error(self, status_code, **kwargs):
        self.set_header("Content-Type", "application/json")
        error = kwargs.get("exc_info", (None, None))[1]
        message = (
            error.log_message % error.args if isinstance(error, web.HTTPError) and error.log_message else self._reason
        )
        self.finish(json.dumps({"status": status_code, "message": message}))


class OpenAPIHandler(web.RequestHandler):
    """``api/openapi.json``: the service's API as OpenAPI 3.0 (no login needed, like the health
    check). The application's ``openapi`` setting makes the document from the service prefix."""

    def get(self):
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(self.settings["openapi"](self.settings["service_prefix"])))


class HealthHandler(web.RequestHandler):
    def get(self):
        self.set_header("Content-Type", "application/json")
        self.finish({"status": "ok"})


def service_prefix(name):
    """The service's URL prefix, from JupyterHub's environment (``/services/<name>/``)."""
    return os.environ.get("JUPYTERHUB_SERVICE_PREFIX", f"/services/{name}/")


def service_url_parts(default=None):
    """(host, port) the managed service must listen on (``JUPYTERHUB_SERVICE_URL``; run by hand
    without it: ``default``, else 127.0.0.1 on the image service's conventional port). The host
    is ``$KUBESTUDIO_SERVICE_BIND_HOST`` when set (KubeStudio.services_bind_host)."""
    default = default or f"http://127.0.0.1:{CONVENTIONAL_PORTS['images']}"
    url = urlparse(os.environ.get("JUPYTERHUB_SERVICE_URL", default))
    return os.environ.get(SERVICE_BIND_HOST_ENV) or url.hostname or "127.0.0.1", url.port or 80


def oauth_routes(prefix):
    """The OAuth callback route every service with pages needs."""
    return [(url_path_join(prefix, "oauth_callback"), HubOAuthCallbackHandler)]


STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")


def static_routes(prefix):
    """What the services' pages load besides themselves (vendored libraries: no CDN), under
    ``static/``; public, as a library's code is."""
    return [(url_path_join(prefix, "static", "(.*)"), web.StaticFileHandler, {"path": STATIC})]


def oauth_settings(name, prefix, cookie_secret_file=None, **extra):
    """tornado Application settings for a HubOAuth service.

    The login cookie is signed with a secret kept in ``cookie_secret_file`` (made once), so
    logged-in pages keep working across a restart of the service.
    """
    HubOAuth.instance(api_token=os.environ.get("JUPYTERHUB_API_TOKEN", ""), cache_max_age=60)
    return {
        "service_name": name,
        "service_prefix": prefix,
        "cookie_secret": (
            stored_secret(cookie_secret_file, lambda: secrets.token_hex(32))[0]
            if cookie_secret_file
            else os.urandom(32)
        ),
        "xsrf_cookies": False,  # HubOAuth checks xsrf for cookie-authenticated requests itself
        "log_function": log_request,  # never a ?token=... in the log
        "default_handler_class": NotFoundHandler,
        **extra,
    }
