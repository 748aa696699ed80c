"""A small threaded HTTP server on 127.0.0.1, for tests that fetch from one."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class LocalHTTPServer:
    """Answers every GET and POST with ``handle(request)`` (which reads a
    POST's body itself); serves until the block exits.

    Handlers that wait (a slow server) should wait on ``release``, which is
    set on exit so shutting down never hangs on them.
    """

    def __init__(self, handle: Callable[[BaseHTTPRequestHandler], None]) -> None:
        self.release = threading.Event()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                handle(self)

            def do_POST(self) -> None:
                handle(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_port}{path}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)
