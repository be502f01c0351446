"""The doors a user has into a running server, driven as they are: a JupyterLab terminal (a
login shell over the terminals websocket) and a notebook kernel (execute requests over the
kernel's channels websocket, as JupyterLab sends them).

Each call runs its own event loop in a thread of its own, so a caller inside an event loop
(playwright's sync API) can use them too.
"""

import asyncio
import concurrent.futures
import datetime
import json
import re
import time
import uuid

import requests
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect


def _in_thread(coroutine):
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


async def _terminal_session(ws_url, token, command, until, timeout):
    request = HTTPRequest(ws_url, headers={"Authorization": f"token {token}"})
    conn = await websocket_connect(request)
    seen = []
    try:
        conn.write_message(json.dumps(["stdin", command + "\r"]))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                message = await asyncio.wait_for(conn.read_message(), timeout=max(0.1, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                break
            if message is None:
                break
            kind, *payload = json.loads(message)
            if kind == "stdout":
                seen.append(payload[0])
                if re.search(until, "".join(seen)):
                    return "".join(seen)
        raise TimeoutError(f"terminal never printed {until!r}; it printed:\n{''.join(seen)[-6000:]}")
    finally:
        conn.close()


def run_in_terminal(server_url, token, command, until, timeout=300):
    """Open a JupyterLab terminal (the terminals REST API + its websocket, a login shell as Lab
    opens it), type ``command`` and return what it printed up to the regex ``until``."""
    r = requests.post(f"{server_url}api/terminals", headers={"Authorization": f"token {token}"}, timeout=30)
    r.raise_for_status()
    name = r.json()["name"]
    ws_url = server_url.replace("http", "ws", 1) + f"terminals/websocket/{name}"
    try:
        return _in_thread(_terminal_session(ws_url, token, command, until, timeout))
    finally:
        requests.delete(f"{server_url}api/terminals/{name}", headers={"Authorization": f"token {token}"}, timeout=30)


class KernelError(AssertionError):
    """A cell raised: the exception's name, value and traceback as the notebook shows them."""


class Kernel:
    """A Python kernel of a running server, as a notebook has one: cells run one after the other
    in the same namespace. ``execute`` returns what the cell printed and displayed (its last
    expression's value included) and raises :class:`KernelError` when the cell raised."""

    def __init__(self, server_url, token, name="python3"):
        self.server_url, self.token = server_url, token
        self.headers = {"Authorization": f"token {token}"}
        r = requests.post(f"{server_url}api/kernels", json={"name": name}, headers=self.headers, timeout=60)
        r.raise_for_status()
        self.id = r.json()["id"]
        self.session = uuid.uuid4().hex

    def execute(self, code, timeout=120):
        ws_url = self.server_url.replace("http", "ws", 1) + f"api/kernels/{self.id}/channels?session_id={self.session}"
        return _in_thread(self._execute(ws_url, code, timeout))

    def _message(self, code):
        return {
            "header": {
                "msg_id": uuid.uuid4().hex,
                "session": self.session,
                "username": "",
                "version": "5.3",
                "msg_type": "execute_request",
                "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            },
            "parent_header": {},
            "metadata": {},
            "channel": "shell",
            "buffers": [],
            "content": {
                "code": code,
                "silent": False,
                "store_history": True,
                "user_expressions": {},
                "allow_stdin": False,
                "stop_on_error": True,
            },
        }

    async def _execute(self, ws_url, code, timeout):
        conn = await websocket_connect(HTTPRequest(ws_url, headers=self.headers))
        request = self._message(code)
        shown, error = [], None
        try:
            conn.write_message(json.dumps(request))
            deadline = time.monotonic() + timeout
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"the cell did not finish in {timeout} s; it printed:\n{''.join(shown)[-6000:]}")
                message = await asyncio.wait_for(conn.read_message(), timeout=left)
                if message is None:
                    raise ConnectionError(f"the kernel's websocket closed; the cell printed:\n{''.join(shown)}")
                msg = json.loads(message)
                if msg.get("parent_header", {}).get("msg_id") != request["header"]["msg_id"]:
                    continue
                kind, content = msg["msg_type"], msg["content"]
                if kind == "stream":
                    shown.append(content["text"])
                elif kind in ("execute_result", "display_data"):
                    shown.append(content["data"].get("text/plain", "") + "\n")
                elif kind == "error":
                    error = content
                elif kind == "status" and content["execution_state"] == "idle":
                    break
        finally:
            conn.close()
        if error:
            trace = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(error["traceback"]))
            raise KernelError(f"{error['ename']}: {error['evalue']}\n{trace}\nthe cell printed:\n{''.join(shown)}")
        return "".join(shown)

    def shutdown(self):
        requests.delete(f"{self.server_url}api/kernels/{self.id}", headers=self.headers, timeout=30)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.shutdown()
