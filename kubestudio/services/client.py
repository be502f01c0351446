"""The client side of every KubeStudio hub service (the SDKs and the ``kubestudio`` CLI).

:class:`ServiceClient` finds a service through the hub, sends the server's (or your) token, turns
error answers into :class:`ServiceError` with the service's message, and reads Server-Sent Events.
Light on purpose (only ``requests``): notebooks import it.
"""

import json
import os
import time
from urllib.parse import urljoin

import requests


class ServiceError(Exception):
    """The service answered an error; ``status`` is the HTTP status, the message says why."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


class ServiceClient:
    """A KubeStudio hub service from Python: finds the service through the hub, sends the
    server's (or your) token, turns error answers into :class:`ServiceError` with the service's
    message, and reads Server-Sent Events. Each service's client names its service and the
    variable that may give its address directly."""

    service = None  # the hub service's name, e.g. "images"
    url_variable = None  # e.g. KUBESTUDIO_IMAGES_URL
    label = "service"  # in messages: "the image service"

    def __init__(self, url=None, token=None, hub_api_url=None, timeout=30):
        self.token = token or os.environ.get("JUPYTERHUB_API_TOKEN", "")
        self.hub_api_url = (hub_api_url or os.environ.get("JUPYTERHUB_API_URL", "")).rstrip("/")
        self.timeout = timeout
        self.http = requests.Session()
        if self.token:
            self.http.headers["Authorization"] = f"token {self.token}"
        self.url = (url or os.environ.get(self.url_variable) or self._discover()).rstrip("/") + "/"

    def public_url(self, record):
        """A path on the hub (or a record's ``url``) as a browser's address: through the hub's
        public URL when the server knows it ($KUBESTUDIO_PUBLIC_URL), else the path itself."""
        path = record["url"] if isinstance(record, dict) else record
        base = os.environ.get("KUBESTUDIO_PUBLIC_URL")
        return urljoin(base, path) if base else path

    def _discover(self):
        if not self.hub_api_url or not self.token:
            raise ServiceError(
                0,
                f"cannot find {self.label}: set JUPYTERHUB_API_URL and JUPYTERHUB_API_TOKEN "
                f"(set inside every server) or {self.url_variable}",
            )
        try:
            response = self.http.get(f"{self.hub_api_url}/services/{self.service}", timeout=self.timeout)
        except requests.RequestException as e:
            raise ServiceError(0, f"the hub is not reachable at {self.hub_api_url}: {e}") from None
        if response.status_code != 200:
            raise ServiceError(
                response.status_code,
                f"the hub does not show {self.label} to this token (HTTP {response.status_code}); is it enabled?",
            )
        model = response.json()
        if not model.get("url"):
            raise ServiceError(0, f"{self.label} has no URL in the hub's service list")
        return model["url"].rstrip("/") + model.get("prefix", f"/services/{self.service}/")

    def _call(self, method, path, **kwargs):
        try:
            response = self.http.request(method, self.url + path, timeout=kwargs.pop("timeout", self.timeout), **kwargs)
        except requests.RequestException as e:
            raise ServiceError(0, f"{self.label} is not reachable at {self.url}: {e}") from None
        if response.status_code >= 400:
            raise ServiceError(response.status_code, self._error_message(response))
        return response

    def _error_message(self, response):
        """What an error answer says: the service's ``message``; a backend's own words passed
        through it (a model server's ``{"error": ...}``, ``{"detail": ...}``, or plain text); else
        the status, never less than the server sent."""
        try:
            body = response.json()
        except ValueError:  # not JSON: plain text from a backend, or the proxy's or the hub's page
            text = response.text.strip()
            if text and len(text) <= 2000 and "<html" not in text[:200].lower():
                return text
            return f"{self.label} answered HTTP {response.status_code} {response.reason}" + (
                " (is it running?)" if response.status_code in (502, 503, 504) else ""
            )
        if isinstance(body, dict):
            for key in ("message", "error", "detail"):
                said = body.get(key)
                if said:
                    return said if isinstance(said, str) else json.dumps(said)
        return f"{response.reason} (HTTP {response.status_code}): {json.dumps(body)[:2000]}"

    @staticmethod
    def _wait_for(fetch, wanted, final, failed, timeout, interval, what):
        """Poll ``fetch()`` until its record's status is in ``wanted`` (returned); one ending in
        another of ``final`` raises ``failed(record)``; TimeoutError after ``timeout`` seconds. The
        service restarting (no answer, 502-504) is waited through: what it runs goes on meanwhile.
        ``what(record)`` names the thing in the timeout's message."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                record = fetch()
            except ServiceError as e:
                if e.status not in (0, 502, 503, 504) or time.monotonic() > deadline:
                    raise
                time.sleep(interval)
                continue
            if record["status"] in wanted:
                return record
            if record["status"] in final:
                raise failed(record)
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{what(record)} is still {record['status']} after {timeout} s"
                    + (f" ({record['message']})" if record.get("message") else "")
                )
            time.sleep(interval)

    def _events(self, path, method="GET", **kwargs):
        """Yield the events of a Server-Sent Events answer as dicts."""
        response = self._call(
            method, path, headers={"Accept": "text/event-stream"}, stream=True, timeout=(self.timeout, None), **kwargs
        )
        data = []
        for raw in response.iter_lines(chunk_size=None, decode_unicode=True):  # as data arrives
            if raw is None:
                continue
            if raw.startswith("data:"):
                data.append(raw[5:].lstrip())
            elif raw == "" and data:
                yield json.loads("\n".join(data))
                data = []
