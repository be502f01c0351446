"""TensorBoard that answers the TensorBoard service alone: ``python -m kubestudio.tensorboards.guarded``
takes TensorBoard's own flags and runs the very same program (``tensorboard.program``, its default
plugins), with one check before its WSGI app: a request must carry the board's secret, which the
service's proxy adds after it checked the caller with the hub. Another user's process that finds
the loopback port (``/proc/net/tcp``) gets 403.

The secret comes in the environment (``KUBESTUDIO_RUNTIME_SECRET``, applied after the switch to the
owner's account) and is removed from it before TensorBoard starts.
"""

import hmac
import json
import os
import sys

from ..names import RUNTIME_SECRET_ENV, RUNTIME_SECRET_HEADER

_WSGI_KEY = "HTTP_" + RUNTIME_SECRET_HEADER.upper().replace("-", "_")


def guard(app, secret):
    """``app`` answering only requests that carry ``secret``."""
    expected = secret.encode()

    def guarded(environ, start_response):
        given = environ.get(_WSGI_KEY, "").encode("latin-1", "replace")
        if not hmac.compare_digest(given, expected):
            body = json.dumps(
                {"status": 403, "message": "this board is served through the hub's TensorBoard service"}
            ).encode()
            start_response("403 Forbidden", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        return app(environ, start_response)

    return guarded


def main(argv=None):
    from absl import app as absl_app
    from tensorboard import default, main_lib, program
    from tensorboard.plugins import base_plugin

    secret = os.environ.pop(RUNTIME_SECRET_ENV, "")
    if not secret:
        print(f"{RUNTIME_SECRET_ENV} is not set: this TensorBoard would answer anyone on the machine", file=sys.stderr)
        return 2

    class GuardedServer(program.WerkzeugServer):
        def __init__(self, wsgi_app, flags):
            super().__init__(guard(wsgi_app, secret), flags)

    main_lib.global_init()
    board = program.TensorBoard(plugins=default.get_plugins(), server_class=GuardedServer)
    try:
        absl_app.run(
            board.main, argv=[sys.argv[0], *(sys.argv[1:] if argv is None else argv)], flags_parser=board.configure
        )
    except base_plugin.FlagsError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
