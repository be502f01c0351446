"""A plain HTTP server of a test's own that answers every GET with one fixed body."""

import contextlib
import http.server
import threading


@contextlib.contextmanager
def answering(body, address="127.0.0.1", port=0):
    """``with answering(b"...") as server:`` a started server (``server.server_address``), stopped
    on exit."""

    class Fixed(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer((address, port), Fixed)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
