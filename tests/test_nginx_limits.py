"""deploy/nginx.conf's limits and trust, against a scripted upstream.

Who may read the operational endpoints, who is held to the per-address
limits and what a limited client gets, and HSTS on answers over TLS only.
The harness narrows the trusted networks of the shipped config (loopback) to
127.0.0.1/32, so a client connecting from 127.0.0.2 (loopback too: nothing
leaves the machine) is an ordinary client, and one from 127.0.0.1 a trusted
one. Limits are per address, so each test uses the addresses its own way and
the order of the tests does not matter.
"""

from __future__ import annotations

import http.client
import json
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from harness.http import LocalHTTPServer
from harness.nginx import NginxServer, nginx, require_nginx

pytestmark = pytest.mark.slow

TRUSTED = "127.0.0.1"
UNTRUSTED = "127.0.0.2"
# Another ordinary client, for tests that must not share UNTRUSTED's counts.
OTHER_UNTRUSTED = "127.0.0.3"
REQUEST_TIMEOUT_SECONDS = 10
# deploy/nginx.conf: the login zone (rate=5r/s, burst=30) and the send zone
# (rate=100r/s, burst=200).
LOGIN_RATE, LOGIN_BURST = 5, 30
SEND_RATE, SEND_BURST = 100, 200
# Bounds on the tests' own loops (a loaded machine is slow, never endless).
FLOOD_LIMIT_SECONDS = 20.0
HSTS = "Strict-Transport-Security"


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes


@dataclass
class Front:
    server: NginxServer
    # (method, path, X-Forwarded-For) of every request that reached the upstream.
    seen: list[tuple[str, str, str]] = field(default_factory=list)
    tls_context: ssl.SSLContext | None = None

    def reached_upstream(self, path: str) -> int:
        return sum(seen_path == path for _, seen_path, _ in self.seen)


class Client:
    """One kept-alive connection from a chosen source address."""

    def __init__(self, front: Front, source: str, *, tls: bool = False) -> None:
        base = front.server.tls_base_url if tls else front.server.base_url
        parts = urlsplit(base)
        if tls:
            self.conn = http.client.HTTPSConnection(
                parts.hostname,
                parts.port,
                timeout=REQUEST_TIMEOUT_SECONDS,
                source_address=(source, 0),
                context=front.tls_context,
            )
        else:
            self.conn = http.client.HTTPConnection(
                parts.hostname, parts.port, timeout=REQUEST_TIMEOUT_SECONDS, source_address=(source, 0)
            )

    def request(self, method: str, path: str, body: bytes | None = None) -> Answer:
        headers = {"Content-Type": "application/x-www-form-urlencoded"} if body is not None else {}
        self.conn.request(method, path, body=body, headers=headers)
        response = self.conn.getresponse()
        return Answer(response.status, response.headers, response.read())

    def close(self) -> None:
        self.conn.close()


def once(front: Front, source: str, method: str, path: str, *, tls: bool = False, body: bytes | None = None) -> Answer:
    client = Client(front, source, tls=tls)
    try:
        return client.request(method, path, body)
    finally:
        client.close()


def _self_signed(directory: Path) -> tuple[Path, Path] | None:
    """A certificate for 127.0.0.1 and its key, made by the openssl command."""
    binary = shutil.which("openssl")
    if binary is None:
        return None
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [binary, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    key.chmod(0o644)
    return cert, key


@pytest.fixture(scope="module")
def front(tmp_path_factory) -> Iterator[Front]:
    require_nginx()
    seen: list[tuple[str, str, str]] = []
    lock = threading.Lock()

    def handle(request) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        if length:
            request.rfile.read(length)
        with lock:
            seen.append((request.command, request.path, request.headers.get("X-Forwarded-For", "")))
        body = b'{"scripted": true}'
        request.send_response(200)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)

    certificate = _self_signed(tmp_path_factory.mktemp("nginx-tls"))
    with (
        LocalHTTPServer(handle) as upstream,
        nginx(
            upstream=f"127.0.0.1:{upstream.httpd.server_port}",
            trusted=(f"{TRUSTED}/32",),
            tls=certificate,
        ) as server,
    ):
        context = ssl.create_default_context(cafile=str(certificate[0])) if certificate else None
        yield Front(server, seen, context)


# -- the operational endpoints (finding 6) ---------------------------------------


@pytest.mark.parametrize("path", ["/metrics", "/readyz", "/healthz"])
def test_operational_endpoints_are_refused_to_untrusted_clients_and_served_to_trusted_ones(front, path):
    # Spellings that nginx normalizes to the same path.
    refused = [once(front, UNTRUSTED, "GET", spelled) for spelled in (path, "/" + path, path.replace("e", "%65", 1))]
    before = front.reached_upstream(path)
    allowed = once(front, TRUSTED, "GET", path)

    assert [answer.status for answer in refused] == [403, 403, 403], front.server.log_tail()
    assert allowed.status == 200
    # Only the trusted request reached the app.
    assert front.reached_upstream(path) == before + 1
    assert before == 0


# -- per-address limits (finding 4) -----------------------------------------------


def test_login_posts_over_the_limit_get_429_with_retry_after_and_trusted_clients_are_exempt(front):
    attempts = LOGIN_BURST + 3 * LOGIN_RATE + 20
    untrusted, trusted = Client(front, UNTRUSTED), Client(front, TRUSTED)
    try:
        started = time.monotonic()
        answers = [untrusted.request("POST", "/accounts/login/", b"username=a&password=b") for _ in range(attempts)]
        elapsed = time.monotonic() - started
        admin = untrusted.request("POST", "/admin/login/", b"username=a&password=b")
        # Showing the form is not a login attempt.
        form = untrusted.request("GET", "/accounts/login/")
        exempt = [trusted.request("POST", "/accounts/login/", b"username=a&password=b") for _ in range(attempts)]
    finally:
        untrusted.close()
        trusted.close()

    passed = sum(answer.status == 200 for answer in answers)
    limited = [answer for answer in answers if answer.status == 429]
    assert passed + len(limited) == attempts
    assert limited, f"{attempts} login posts in {elapsed:.1f} s were all let through"
    # The burst, and what the rate refills while the loop ran.
    assert passed <= LOGIN_BURST + LOGIN_RATE * elapsed + 1
    assert limited[0].headers["Retry-After"] == "1"
    assert limited[0].headers["Content-Type"] == "application/json"
    assert json.loads(limited[0].body) == {"detail": "too many requests from this address; retry shortly"}
    # The admin's login form shares the zone.
    assert admin.status == 429
    assert form.status == 200
    assert {answer.status for answer in exempt} == {200}


def test_sends_over_the_limit_get_the_same_429(front):
    path = "/api/v1/rooms/limited/danmaku"
    statuses: list[int] = []
    first_limited: list[Answer] = []
    stop = threading.Event()
    started = time.monotonic()

    def flood() -> None:
        client = Client(front, OTHER_UNTRUSTED)
        try:
            while not stop.is_set() and time.monotonic() - started < FLOOD_LIMIT_SECONDS:
                answer = client.request("POST", path, b"{}")
                statuses.append(answer.status)
                if answer.status == 429:
                    first_limited.append(answer)
                    stop.set()
        finally:
            client.close()

    # Several connections: one alone may not outpace the rate on a busy machine.
    threads = [threading.Thread(target=flood) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=FLOOD_LIMIT_SECONDS + REQUEST_TIMEOUT_SECONDS)
    elapsed = time.monotonic() - started
    trusted_send = once(front, TRUSTED, "POST", path, body=b"{}")

    assert first_limited, f"{len(statuses)} sends in {elapsed:.1f} s were all let through"
    assert set(statuses) <= {200, 429}
    assert statuses.count(200) <= SEND_BURST + SEND_RATE * elapsed + 1
    # Reached through the pull location's error_page: still the JSON answer.
    answer = first_limited[0]
    assert (answer.headers["Retry-After"], answer.headers["Content-Type"]) == ("1", "application/json")
    assert json.loads(answer.body)["detail"].startswith("too many requests")
    assert trusted_send.status == 200


# -- HSTS (finding 5, the nginx part) ------------------------------------------------


def test_hsts_on_every_answer_over_tls_and_never_over_plain_http(front):
    if front.tls_context is None:
        pytest.skip("the openssl command is not installed (needed for a test certificate)")
    cases = [
        (TRUSTED, "GET", "/api/v1/rooms/hsts/danmaku", 200),  # the pull location
        (TRUSTED, "GET", "/rooms/hsts/", 200),  # location /
        (TRUSTED, "POST", "/api/v1/rooms/hsts/danmaku", 200),  # @danmaku_send
        (UNTRUSTED, "GET", "/metrics", 403),  # nginx's own answer
    ]
    for source, method, path, status in cases:
        body = b"{}" if method == "POST" else None
        secure = once(front, source, method, path, tls=True, body=body)
        plain = once(front, source, method, path, body=body)
        assert (secure.status, plain.status) == (status, status), path
        assert secure.headers[HSTS] == "max-age=31536000", path
        assert HSTS not in plain.headers, path
    # A client over a limit (@danmaku_limited).
    client = Client(front, UNTRUSTED, tls=True)
    try:
        for _ in range(LOGIN_BURST + 3 * LOGIN_RATE + 20):
            limited = client.request("POST", "/accounts/login/", b"username=a&password=b")
            if limited.status == 429:
                break
    finally:
        client.close()
    assert limited.status == 429
    assert limited.headers[HSTS] == "max-age=31536000"


# -- a crowd connecting at once ------------------------------------------------------


# deploy/nginx.conf: listen ... backlog=4096 (nginx's own default is 511).
LISTEN_BACKLOG = 4096


def test_listen_queue_holds_a_crowd_connecting_at_once(front):
    """The kernel caps a listen backlog at net.core.somaxconn; below that,
    the queue nginx asked for is what a storm of connections lands in."""
    somaxconn = int(Path("/proc/sys/net/core/somaxconn").read_text())
    port = urlsplit(front.server.base_url).port
    listening = subprocess.run(
        ["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, timeout=10, check=True
    ).stdout.split()
    # State, Recv-Q, Send-Q (the backlog of a listening socket), local address, peer.
    assert int(listening[2]) == min(LISTEN_BACKLOG, somaxconn), listening
