"""A private nginx running the shipped deploy/nginx.conf on a free port.

The tests and the benchmarks exercise the real file: it is read, the
directives that name the machine (listening address, upstreams, pid, log,
cache and temp paths, worker count) are rewritten into a temporary prefix,
and nginx runs in the foreground, leading its own process group, until the
block exits. nginx's pull feed (one datagram per pull answered) goes to
the port the caller names (the app's DANMAKU_POLL_FEED_PORT), else into a
socket the harness holds and never reads (sent and dropped quietly, as if
counted). A test may also narrow the trusted networks (the two `geo`
blocks marked "SET:"), to see what an ordinary client connecting from
another loopback address (127.0.0.2) gets, and add a TLS listener. A rewrite
that does not find its directive exactly as often as expected fails loudly,
so the file and this harness cannot drift apart silently.
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from harness.local import BASE_DIR, free_port, stop
from harness.services import services_required

CONFIG_PATH = BASE_DIR / "deploy" / "nginx.conf"
# Where Debian puts it; /usr/sbin is not on every user's PATH.
NGINX_CANDIDATES = (os.environ.get("DANMAKU_NGINX", ""), "nginx", "/usr/sbin/nginx")
START_TIMEOUT_SECONDS = 10
STATIC_PREFIX = "/bench-static/"
# Answered by nginx itself: "is it up" must not depend on the upstream.
PROBE_PATH = "/__harness-probe"
INSERT_MARKER = "# (harness/nginx.py inserts its test-only locations here.)"
# The geo blocks naming trusted clients: exempt from the per-address limits,
# and allowed to read the operational endpoints.
TRUSTED_GEOS = ("danmaku_trusted", "danmaku_ops_allowed")


class NginxError(RuntimeError):
    pass


def find_nginx() -> str | None:
    for candidate in NGINX_CANDIDATES:
        if candidate and (path := shutil.which(candidate)):
            return path
    return None


def require_nginx() -> str:
    """The nginx binary, or skip the test (fail under DANMAKU_REQUIRE_SERVICES=1)."""
    path = find_nginx()
    if path is None:
        reason = "nginx is not installed (apt-get install nginx-light)"
        if services_required():
            pytest.fail(f"{reason} (DANMAKU_REQUIRE_SERVICES=1 makes this a failure)", pytrace=False)
        pytest.skip(reason)
    return path


@dataclass
class NginxServer:
    base_url: str
    process: subprocess.Popen
    prefix: Path

    @property
    def error_log(self) -> Path:
        return self.prefix / "logs" / "error.log"

    @property
    def access_log(self) -> Path:
        # Buffered in the shipped config: lines appear within about a second.
        return self.prefix / "logs" / "access.log"

    # With ``tls``: the same server over HTTPS (a self-signed certificate).
    tls_base_url: str | None = None

    def pull_url(self, room: str) -> str:
        return f"{self.base_url}/api/v1/rooms/{room}/danmaku"

    def static_url(self, name: str) -> str:
        return f"{self.base_url}{STATIC_PREFIX}{name}"

    def pids(self) -> list[int]:
        """The master and its workers (for CPU accounting)."""
        children: set[int] = set()
        with contextlib.suppress(OSError):
            for thread in Path(f"/proc/{self.process.pid}/task").iterdir():
                with contextlib.suppress(OSError):
                    children.update(int(pid) for pid in (thread / "children").read_text().split())
        return [self.process.pid, *sorted(children)]

    def log_tail(self, chars: int = 5000) -> str:
        parts = []
        for path in (self.error_log, self.access_log):
            text = path.read_text(errors="replace")[-chars:] if path.exists() else "(empty)"
            parts.append(f"--- {path.name} ---\n{text}")
        return "\n".join(parts)


def _nofile(wanted: int) -> int:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)


def render_config(
    template: str,
    *,
    prefix: Path,
    listen: str,
    upstream: str,
    workers: int,
    static_dir: Path | None,
    trusted: tuple[str, ...] | None = None,
    tls: tuple[str, Path, Path] | None = None,
    static_headers: dict[str, str] | None = None,
    poll_feed_port: int,
) -> str:
    """deploy/nginx.conf with every machine-specific value pointed at ``prefix``.

    ``trusted``: the networks the trusted-client geo blocks list instead of
    the shipped ones. ``tls``: (listen address, certificate, key) of an
    extra TLS listener in the server. ``static_headers``: the headers the
    static files are answered with instead of nginx's file headers (see
    ``static_location``). ``poll_feed_port``: where nginx sends its pull
    feed (UDP on 127.0.0.1)."""
    rewrites = [
        # (what, pattern, replacement, how many times the shipped file has it)
        ("worker count", r"^(\s*worker_processes\s+)[^;]+", rf"\g<1>{workers}", 1),
        # Without the privilege to raise it, nginx logs an alert per worker.
        ("open-file limit", r"^(\s*worker_rlimit_nofile\s+)(\d+)", lambda m: m[1] + str(_nofile(int(m[2]))), 1),
        ("pid file", r"^(\s*pid\s+)[^;]+", rf"\g<1>{prefix}/nginx.pid", 1),
        ("error log", r"^(\s*error_log\s+)\S+", rf"\g<1>{prefix}/logs/error.log", 1),
        ("access log", r"^(\s*access_log\s+)(?!syslog:)\S+", rf"\g<1>{prefix}/logs/access.log", 1),
        (
            "pull feed",
            r"^(\s*access_log\s+syslog:server=127\.0\.0\.1:)\d+(?=,)",
            rf"\g<1>{poll_feed_port}",
            1,
        ),
        ("temp paths", r"^(\s*(\w+)_temp_path\s+)[^;\s]+", rf"\g<1>{prefix}/temp_\g<2>", 5),
        ("cache paths", r"^(\s*proxy_cache_path\s+)\S*/(\S+)", rf"\g<1>{prefix}/cache/\g<2>", 2),
        ("upstream servers", r"^(\s*server\s+)[^{;\s][^;\s]*", rf"\g<1>{upstream}", 2),
        ("listen address", r"^(\s*listen\s+)[^;\s]+", rf"\g<1>{listen}", 1),
    ]
    if trusted is not None:
        entries = "".join(f"\n        {network} 1;" for network in trusted)
        for name in TRUSTED_GEOS:
            pattern = rf"(^\s*geo \${name} \{{\n\s*default 0;)(?:\n\s*[^\s}}][^;\n]* 1;)+"
            rewrites.append((f"geo ${name} block", pattern, lambda m, e=entries: m[1] + e, 1))
    text = template
    for what, pattern, replacement, expected in rewrites:
        text, found = re.subn(pattern, replacement, text, flags=re.MULTILINE)
        if found != expected:
            raise NginxError(f"{CONFIG_PATH}: expected {expected} {what} directive(s), found {found}")
    if text.count(INSERT_MARKER) != 1:
        raise NginxError(f"{CONFIG_PATH}: the line {INSERT_MARKER!r} must appear once")
    locations = [f"location = {PROBE_PATH} {{ access_log off; return 204; }}"]
    if tls is not None:
        address, certificate, key = tls
        locations.append(f"listen {address} ssl; ssl_certificate {certificate}; ssl_certificate_key {key};")
    if static_dir is not None:
        locations.append(static_location(static_dir, static_headers))
    return text.replace(INSERT_MARKER, "\n        ".join(locations))


def static_location(static_dir: Path, headers: dict[str, str] | None) -> str:
    """Where nginx serves ``static_dir`` as plain files.

    Unlogged, like a pull answered from the cache: the two are compared.
    With ``headers`` (a cached answer's, e.g. Content-Type, Content-Encoding,
    Cache-Control, Vary), each file is answered with exactly those plus
    nginx's own Server, Date, Content-Length and ETag, and without the file
    headers a cached answer does not carry (Last-Modified, Accept-Ranges):
    the same header lines and the same bytes as the cached answer, so the
    comparison is between the two ways of serving them and nothing else.
    """
    lines = ["access_log off;", f"alias {static_dir}/;"]
    if headers is not None:
        for name, value in headers.items():
            if not re.fullmatch(r"[A-Za-z0-9-]+", name) or re.search(r'["\\\r\n;{}$]', value):
                raise NginxError(f"a static header nginx.conf cannot quote as given: {name}: {value!r}")
        content_type = next((v for n, v in headers.items() if n.lower() == "content-type"), "application/octet-stream")
        lines += [f"types {{ }} default_type {content_type};", 'add_header Last-Modified "";', "max_ranges 0;"]
        lines += [f'add_header {name} "{value}";' for name, value in headers.items() if name.lower() != "content-type"]
    return f"location {STATIC_PREFIX} {{ {' '.join(lines)} }}"


@contextlib.contextmanager
def nginx(
    *,
    upstream: str | None,
    static_files: dict[str, bytes] | None = None,
    static_headers: dict[str, str] | None = None,
    workers: int = 1,
    trusted: tuple[str, ...] | None = None,
    tls: tuple[Path, Path] | None = None,
    poll_feed_port: int | None = None,
) -> Iterator[NginxServer]:
    """Run deploy/nginx.conf in front of ``upstream`` ("host:port") until the block exits.

    ``static_files`` are served at ``/bench-static/<name>``, with
    ``static_headers`` if given (``static_location``). With ``upstream``
    None only those are served; everything proxied answers 502. ``trusted``
    replaces the trusted networks (e.g. ``("127.0.0.1/32",)``: a client
    connecting from 127.0.0.2 is then an ordinary one). ``tls`` (certificate,
    key) adds an HTTPS listener on another free port. ``poll_feed_port``:
    where nginx sends its pull feed (a server started with that
    DANMAKU_POLL_FEED_PORT counts it); else a socket held here swallows it.
    """
    binary = find_nginx()
    if binary is None:
        raise NginxError("nginx is not installed (apt-get install nginx-light)")
    with tempfile.TemporaryDirectory(prefix="danmaku-nginx-") as tmp, _feed_sink(poll_feed_port) as feed_port:
        prefix = Path(tmp)
        # Started as root, nginx runs its workers as the config's `user`:
        # they must be able to reach the cache, temp and static directories.
        prefix.chmod(0o755)
        (prefix / "logs").mkdir()
        (prefix / "cache").mkdir()
        static_dir = None
        if static_files:
            static_dir = prefix / "static"
            static_dir.mkdir(mode=0o755)
            for name, body in static_files.items():
                if "/" in name or name.startswith("."):
                    raise NginxError(f"static file names are plain names, not {name!r}")
                (static_dir / name).write_bytes(body)
                (static_dir / name).chmod(0o644)
        port = free_port()
        tls_port = free_port() if tls else None
        conf = prefix / "nginx.conf"
        conf.write_text(
            render_config(
                CONFIG_PATH.read_text(),
                prefix=prefix,
                listen=f"127.0.0.1:{port}",
                # Nothing listens there: proxied requests get a quick 502.
                upstream=upstream or f"127.0.0.1:{free_port()}",
                workers=workers,
                static_dir=static_dir,
                static_headers=static_headers,
                trusted=trusted,
                tls=(f"127.0.0.1:{tls_port}", *tls) if tls else None,
                poll_feed_port=feed_port,
            )
        )
        with (prefix / "logs" / "stderr.log").open("wb") as stderr:
            process = subprocess.Popen(
                [binary, "-p", f"{prefix}/", "-c", str(conf), "-e", str(prefix / "logs" / "error.log"),
                 "-g", "daemon off;"],
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        server = NginxServer(
            f"http://127.0.0.1:{port}", process, prefix, tls_base_url=f"https://127.0.0.1:{tls_port}" if tls else None
        )
        try:
            _wait_until_answering(server)
            yield server
        finally:
            stop(process)


@contextlib.contextmanager
def _feed_sink(port: int | None) -> Iterator[int]:
    """``port``, or a bound UDP port nobody reads: its receive queue fills and
    the kernel drops the rest without a word, where an unbound port would
    refuse each datagram and nginx log an error for it."""
    if port is not None:
        yield port
        return
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind(("127.0.0.1", 0))
        yield sink.getsockname()[1]


def _wait_until_answering(server: NginxServer, timeout: float = START_TIMEOUT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            stderr = (server.prefix / "logs" / "stderr.log").read_text(errors="replace")
            raise NginxError(f"nginx exited with {server.process.returncode}:\n{stderr}\n{server.log_tail()}")
        with contextlib.suppress(requests.ConnectionError, requests.Timeout):
            if requests.get(server.base_url + PROBE_PATH, timeout=1).status_code == 204:
                return
        time.sleep(0.05)
    raise NginxError(f"nginx did not answer within {timeout} s:\n{server.log_tail()}")
