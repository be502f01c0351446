"""The spawn form's list of built images: filtered to the user's prefix, and never in the way."""

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from types import SimpleNamespace

from kubestudio.spawner.base import WorkspaceSpawnerMixin
from kubestudio.testing.ports import free_port


class ImagesAnswer(BaseHTTPRequestHandler):
    """A stand-in image service answering GET api/images (the real one is tested end to end)."""

    def do_GET(self):
        assert self.headers["Authorization"] == "token hub-token"
        body = {"images": [{"image": "reg:5000/kubestudio/alice/tools:1"}, {"image": "reg:5000/base/shared:1"}]}
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def spawner(url):
    return SimpleNamespace(
        images_api_url=url,
        images_api_token="hub-token",
        user=SimpleNamespace(name="alice"),
        log=logging.getLogger("test"),
        custom_image_prefix=lambda: "reg:5000/kubestudio/alice/",
    )


async def test_lists_only_images_under_the_users_prefix():
    server = HTTPServer(("127.0.0.1", free_port()), ImagesAnswer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/services/images/api/images"
        images, note = await WorkspaceSpawnerMixin.built_images(spawner(url))
    finally:
        server.shutdown()
    assert images == ["reg:5000/kubestudio/alice/tools:1"] and note is None


async def test_service_down_gives_a_note_not_an_error():
    url = f"http://127.0.0.1:{free_port()}/services/images/api/images"
    images, note = await WorkspaceSpawnerMixin.built_images(spawner(url))
    assert images == [] and note == "your built images cannot be listed right now (the image service did not answer)"
