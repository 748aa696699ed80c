"""Download an avatar and make its thumbnail. No Django: callers pass the limits.

The URL comes from a user, so every step is bounded: http and https only
(redirects too, at most MAX_REDIRECTS of them), by default no loopback,
private or link-local address, nor an IPv6 address that leads to one
(``address_allowed``; checked on the address actually connected to, so DNS
tricks do not help), one deadline for the whole download
(enforced on every socket operation and by a watchdog that shuts the socket
when it passes), a byte cap enforced while reading, an image/* content type,
and Pillow decoding only PNG, JPEG, GIF and WebP, after checking the
dimensions and verifying the file. Every refusal is an ``AvatarError``.

Not bounded by the deadline: the DNS lookup (the Celery time limit is).
"""

from __future__ import annotations

import contextlib
import http.client
import io
import ipaddress
import socket
import ssl
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from PIL import Image, ImageOps

# Enough for a CDN or a URL shortener in front of the image.
MAX_REDIRECTS = 3
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# Formats Pillow may decode here: the ones browsers show as avatars. Leaving
# out the rest keeps rarely used (and rarely hardened) decoders unreachable.
FORMATS = ("PNG", "JPEG", "GIF", "WEBP")
# Bytes asked of the socket per read.
READ_CHUNK = 64 * 1024
USER_AGENT = "danmaku-avatar-fetch/1"

# IPv6 addresses that reach an IPv4 address, which ``is_global`` judges by
# the IPv6 prefix alone (``::127.0.0.1`` and ``64:ff9b::a9fe:a9fe``, that is
# 169.254.169.254, are "global" to it). The NAT64 well-known prefix (RFC
# 6052) carries the IPv4 address in its last 32 bits and is judged by it,
# so IPv6-only hosts behind DNS64 still fetch avatars from IPv4 servers.
NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")
# Refused whatever they carry: deprecated, or where the IPv4 address sits is
# up to an operator or a relay we cannot see.
DENIED_IPV6 = (
    ipaddress.IPv6Network("::/96"),  # IPv4-compatible (deprecated, RFC 4291)
    ipaddress.IPv6Network("::ffff:0:0:0/96"),  # IPv4-translated (SIIT, RFC 6145)
    ipaddress.IPv6Network("64:ff9b:1::/48"),  # local-use NAT64 (RFC 8215): layout chosen by the operator
    ipaddress.IPv6Network("2001::/32"),  # Teredo: tunnels to the IPv4 server and client it names
    ipaddress.IPv6Network("2002::/16"),  # 6to4 (deprecated, RFC 7526): a relay forwards to the IPv4 it names
    ipaddress.IPv6Network("fec0::/10"),  # site-local (deprecated, RFC 3879): private by intent
)

# (host, port) -> getaddrinfo() entries: (family, type, proto, canonname, sockaddr).
Resolver = Callable[[str, int], Sequence[tuple]]


def system_resolve(host: str, port: int) -> Sequence[tuple]:
    return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)


class AvatarError(Exception):
    """The avatar could not be used; the message says why."""


@dataclass(frozen=True)
class FetchLimits:
    timeout_s: float = 3.0
    max_bytes: int = 2 * 1024 * 1024
    allow_private_hosts: bool = False


class _Deadline:
    def __init__(self, timeout_s: float, clock: Callable[[], float]) -> None:
        self._clock = clock
        self.at = clock() + timeout_s

    def remaining(self) -> float:
        left = self.at - self._clock()
        if left <= 0:
            raise AvatarError("deadline passed")
        return left


class _Sockets:
    """The sockets one download opened, so the watchdog can shut them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self.aborted = False

    def add(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.append(sock)
            if not self.aborted:
                return
        self._shut(sock)

    def abort(self) -> None:
        with self._lock:
            self.aborted = True
            socks = list(self._open)
        for sock in socks:
            self._shut(sock)

    @staticmethod
    def _shut(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def address_allowed(ip: str) -> bool:
    """Whether an avatar may be fetched from ``ip``: a public unicast address,
    or an IPv4-mapped or NAT64 IPv6 address of one."""
    address = ipaddress.ip_address(ip.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        elif address in NAT64_WELL_KNOWN:
            address = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        elif any(address in network for network in DENIED_IPV6):
            return False
    return address.is_global and not address.is_multicast


def _connect(
    host: str, port: int, *, deadline: _Deadline, limits: FetchLimits, sockets: _Sockets, resolve: Resolver
) -> socket.socket:
    """Resolve, vet every address, connect to the first allowed one that answers."""
    try:
        infos = resolve(host, port)
    except OSError as exc:
        raise AvatarError(f"cannot resolve {host!r}: {exc}") from exc
    allowed = [info for info in infos if limits.allow_private_hosts or address_allowed(info[4][0])]
    if not allowed:
        raise AvatarError(f"{host!r} resolves only to non-public addresses")
    last: OSError | None = None
    for family, socktype, proto, _, address in allowed:
        sock = socket.socket(family, socktype, proto)
        sockets.add(sock)
        try:
            sock.settimeout(deadline.remaining())
            sock.connect(address)
            return sock
        except OSError as exc:
            sock.close()
            last = exc
    raise AvatarError(f"cannot connect to {host!r}: {last}")


@dataclass(frozen=True)
class _Guard:
    """What every connection of one download is held to."""

    deadline: _Deadline
    limits: FetchLimits
    sockets: _Sockets
    resolve: Resolver

    def connect(self, host: str, port: int) -> socket.socket:
        return _connect(
            host, port, deadline=self.deadline, limits=self.limits, sockets=self.sockets, resolve=self.resolve
        )


class _GuardedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, host: str, port: int | None, *, guard: _Guard):
        super().__init__(host, port, timeout=guard.deadline.remaining())
        self._guard = guard

    def connect(self) -> None:
        self.sock = self._guard.connect(self.host, self.port)


class _GuardedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int | None, *, guard: _Guard):
        super().__init__(host, port, timeout=guard.deadline.remaining(), context=ssl.create_default_context())
        self._guard = guard

    def connect(self) -> None:
        raw = self._guard.connect(self.host, self.port)
        self.sock = self._context.wrap_socket(raw, server_hostname=self.host)
        self._guard.sockets.add(self.sock)


def download(
    url: str,
    *,
    limits: FetchLimits,
    clock: Callable[[], float] = time.monotonic,
    resolve: Resolver = system_resolve,
) -> tuple[bytes, str]:
    """The body and content type of ``url``, within ``limits``."""
    deadline = _Deadline(limits.timeout_s, clock)
    sockets = _Sockets()
    guard = _Guard(deadline, limits, sockets, resolve)
    watchdog = threading.Timer(limits.timeout_s, sockets.abort)
    watchdog.daemon = True
    watchdog.start()
    try:
        for _ in range(MAX_REDIRECTS + 1):
            result = _get_once(url, guard=guard)
            if isinstance(result, tuple):
                return result
            url = result
        raise AvatarError(f"more than {MAX_REDIRECTS} redirects")
    except (OSError, http.client.HTTPException) as exc:
        if sockets.aborted:
            raise AvatarError(f"deadline of {limits.timeout_s:.1f} s passed") from exc
        raise AvatarError(f"download failed: {exc!r}") from exc
    finally:
        watchdog.cancel()


def _get_once(url: str, *, guard: _Guard) -> tuple[bytes, str] | str:
    """Fetch ``url``: (body, content type), or the URL a redirect points to."""
    deadline, limits = guard.deadline, guard.limits
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise AvatarError(f"scheme {parts.scheme!r} is not http or https")
    if not parts.hostname:
        raise AvatarError("URL has no host")
    if parts.username or parts.password:
        raise AvatarError("URL carries credentials")
    connection_class = _GuardedHTTPSConnection if parts.scheme == "https" else _GuardedHTTPConnection
    try:
        port = parts.port
    except ValueError as exc:
        raise AvatarError(f"bad port in URL: {exc}") from exc
    conn = connection_class(parts.hostname, port, guard=guard)
    response: http.client.HTTPResponse | None = None
    try:
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        conn.request(
            "GET", path, headers={"User-Agent": USER_AGENT, "Accept": "image/*", "Accept-Encoding": "identity"}
        )
        # getresponse() closes the connection when the server says so; the
        # socket lives on in the response, so keep a handle for the timeouts.
        sock = conn.sock
        sock.settimeout(deadline.remaining())
        response = conn.getresponse()
        if response.status in REDIRECT_STATUSES:
            location = response.getheader("Location")
            if not location:
                raise AvatarError(f"HTTP {response.status} without a Location")
            return urljoin(url, location)
        if response.status != 200:
            raise AvatarError(f"HTTP {response.status}")
        content_type = (response.getheader("Content-Type") or "").split(";", 1)[0].strip().lower()
        if not content_type.startswith("image/") or content_type == "image/svg+xml":
            raise AvatarError(f"content type {content_type!r} is not a raster image")
        declared = response.getheader("Content-Length")
        if declared and declared.isdigit() and int(declared) > limits.max_bytes:
            raise AvatarError(f"declared size {declared} bytes is over the {limits.max_bytes} byte cap")
        return _read_capped(response, sock, deadline=deadline, max_bytes=limits.max_bytes), content_type
    finally:
        if response is not None:
            response.close()
        conn.close()


def _read_capped(
    response: http.client.HTTPResponse, sock: socket.socket, *, deadline: _Deadline, max_bytes: int
) -> bytes:
    body = bytearray()
    while True:
        sock.settimeout(deadline.remaining())
        # read1: at most one read from the socket, so a server dripping a
        # byte at a time still meets the deadline check between reads.
        chunk = response.read1(READ_CHUNK)
        if not chunk:
            # The watchdog's shutdown also reads as the end: tell them apart.
            deadline.remaining()
            return bytes(body)
        body += chunk
        if len(body) > max_bytes:
            raise AvatarError(f"body is over the {max_bytes} byte cap")


def thumbnail(data: bytes, *, size_px: int = 64, max_pixels: int = 4096 * 4096) -> bytes:
    """A ``size_px`` square PNG cut from the middle of the image in ``data``."""
    try:
        with warnings.catch_warnings():
            # Pillow only warns for sources over its own limit; refuse them.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=FORMATS) as probe:
                _check_dimensions(probe, max_pixels)
                probe.verify()
            with Image.open(io.BytesIO(data), formats=FORMATS) as image:
                _check_dimensions(image, max_pixels)
                # JPEG can decode at a fraction of its size: far less work.
                image.draft("RGB", (size_px * 2, size_px * 2))
                image.load()
                upright = ImageOps.exif_transpose(image)
                has_alpha = upright.mode in ("RGBA", "LA", "PA") or "transparency" in upright.info
                converted = upright.convert("RGBA" if has_alpha else "RGB")
                thumb = ImageOps.fit(converted, (size_px, size_px), method=Image.Resampling.LANCZOS)
                out = io.BytesIO()
                thumb.save(out, format="PNG", optimize=True)
                return out.getvalue()
    except AvatarError:
        raise
    except Exception as exc:
        # Untrusted bytes: whatever a decoder raises on them (OSError,
        # SyntaxError, struct.error, DecompressionBomb*, ...) means the same.
        raise AvatarError(f"not a usable image: {exc!r}") from exc


def _check_dimensions(image: Image.Image, max_pixels: int) -> None:
    width, height = image.size
    if width < 1 or height < 1 or width * height > max_pixels:
        raise AvatarError(f"image is {width}x{height}, over the {max_pixels} pixel cap")


def fetch_thumbnail(
    url: str,
    *,
    limits: FetchLimits,
    size_px: int = 64,
    max_pixels: int = 4096 * 4096,
    clock: Callable[[], float] = time.monotonic,
    resolve: Resolver = system_resolve,
) -> bytes:
    """Download ``url`` and return its thumbnail as PNG bytes."""
    body, _ = download(url, limits=limits, clock=clock, resolve=resolve)
    return thumbnail(body, size_px=size_px, max_pixels=max_pixels)
