"""TensorBoard's Roboto fonts at the hub's root.

TensorBoard's page asks for its fonts at an absolute ``/font-roboto/<file>.woff2`` whatever path it
is served under; behind the hub that lands on the hub, which answered 404 (every board's text fell
back to another font). The hub serves them from TensorBoard's own files (public, like any font).
"""

import functools
import os
import zipfile

from tornado import web

FONT_ROUTE = r"/font-roboto/([A-Za-z0-9_-]{1,100}\.woff2)"


@functools.lru_cache(maxsize=1)
def _fonts():
    """{file name: bytes} of TensorBoard's fonts (empty without TensorBoard)."""
    try:
        import tensorboard
    except ImportError:
        return {}
    path = os.path.join(os.path.dirname(tensorboard.__file__), "webfiles.zip")
    try:
        with zipfile.ZipFile(path) as z:
            return {
                n.split("/", 1)[1]: z.read(n)
                for n in z.namelist()
                if n.startswith("font-roboto/") and n.endswith(".woff2")
            }
    except (OSError, zipfile.BadZipFile):
        return {}


class FontHandler(web.RequestHandler):
    def get(self, name):
        data = _fonts().get(name)
        if data is None:
            raise web.HTTPError(404)
        self.set_header("Content-Type", "font/woff2")
        self.set_header("Cache-Control", "public, max-age=31536000, immutable")
        self.finish(data)
