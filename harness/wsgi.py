"""A WSGI environ as a server would pass it, for calling an app in-process
(the fast path's tests and the in-process pull bench)."""

from __future__ import annotations

import io
import sys


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
