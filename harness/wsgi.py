"""A WSGI environ as a server would pass it, for calling an app in-process
(the fast path's tests and the in-process pull bench)."""

from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Iterator


def wsgi_environ(path: str, query: str = "", *, method: str = "GET", host: str = "testserver", **headers: str) -> dict:
    """``headers`` by name (``ACCEPT_ENCODING="gzip"``) become ``HTTP_*`` keys."""
    server_name, _, port = host.partition(":")
    env = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": server_name,
        "SERVER_PORT": port or "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": host,
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    for name, value in headers.items():
        env["HTTP_" + name.upper()] = value
    return env


@contextlib.contextmanager
def connections_kept_open() -> Iterator[None]:
    """Django's handler called in a test, without closing the test's database
    connection at the end of each request (it lives in the test's
    transaction), as Django's test client does."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
