"""Avatar fetch against a real HTTP server on 127.0.0.1: good images become a
64x64 thumbnail, everything else leaves the default avatar."""

from __future__ import annotations

import collections
import contextlib
import io
import logging
import time
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from PIL import Image

from danmaku import avatars
from danmaku.identity import avatar_url_for
from danmaku.models import ViewerProfile
from danmaku.profiles import profile_avatar_fetch, profile_update
from danmaku.tasks import fetch_avatar_task
from harness.http import LocalHTTPServer
from infra.taskqueue import enqueue

DEFAULT_AVATAR = "/static/danmaku/avatar-default.svg"
# The deadline the slow-server tests use, and the slack allowed past it.
TEST_TIMEOUT_MS = 1000
DEADLINE_SLACK_S = 0.5


def image_bytes(fmt: str = "PNG", size: tuple[int, int] = (200, 100), mode: str = "RGB", **save) -> bytes:
    image = Image.new(mode, size, "red" if mode != "P" else 1)
    out = io.BytesIO()
    image.save(out, format=fmt, **save)
    return out.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` and holds almost nothing."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def gif_with_transparency() -> bytes:
    image = Image.new("P", (90, 90), 1)
    image.putpalette([0, 0, 0, 255, 0, 0])
    image.paste(0, (0, 0, 45, 90))
    out = io.BytesIO()
    image.save(out, format="GIF", transparency=0)
    return out.getvalue()


VALID_PNG = image_bytes()
BIG_BODY = 3 * 1024 * 1024


class AvatarServer(LocalHTTPServer):
    """Routes by path; counts requests; slow routes wait on ``release``."""

    def __init__(self) -> None:
        self.hits: collections.Counter[str] = collections.Counter()
        super().__init__(self._handle)

    def _handle(self, request) -> None:
        self.hits[request.path] += 1
        route = ROUTES.get(request.path)
        if route is None:
            request.send_error(404)
            return
        route(request, self)


def _send(handler, body: bytes, content_type: str, *, length: bool = True) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", content_type)
    if length:
        handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def _huge_streamed(handler, server) -> None:
    # No Content-Length: the cap must hold while reading.
    handler.send_response(200)
    handler.send_header("Content-Type", "image/png")
    handler.end_headers()
    chunk = b"\0" * 65536
    try:
        for _ in range(BIG_BODY // len(chunk)):
            handler.wfile.write(chunk)
    except OSError:
        pass  # the client hung up at its cap, as it should


def _slow(handler, server) -> None:
    server.release.wait(timeout=10)
    with_suppressed_write(handler, VALID_PNG, "image/png")


def _drip(handler, server) -> None:
    # Headers at once, then a byte every 100 ms: each read is quick, the
    # whole download is not.
    handler.send_response(200)
    handler.send_header("Content-Type", "image/png")
    handler.end_headers()
    try:
        for byte in VALID_PNG:
            if server.release.wait(timeout=0.1):
                return
            handler.wfile.write(bytes([byte]))
            handler.wfile.flush()
    except OSError:
        pass


def with_suppressed_write(handler, body: bytes, content_type: str) -> None:
    with contextlib.suppress(OSError):
        _send(handler, body, content_type)


def _redirect(location: str):
    def route(handler, server) -> None:
        handler.send_response(302)
        handler.send_header("Location", location)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    return route


ROUTES = {
    "/ok.png": lambda h, s: _send(h, VALID_PNG, "image/png"),
    "/ok.jpg": lambda h, s: _send(h, image_bytes("JPEG", (640, 480)), "image/jpeg; charset=binary"),
    "/huge-declared.png": lambda h, s: _send(h, b"\0" * BIG_BODY, "image/png"),
    "/huge-streamed.png": _huge_streamed,
    "/page.html": lambda h, s: _send(h, b"<html><body>not an image</body></html>", "text/html"),
    "/mislabelled.png": lambda h, s: _send(h, VALID_PNG, "text/plain"),
    "/corrupt.png": lambda h, s: _send(h, b"\x89PNG\r\n\x1a\n" + b"\x13garbage" * 200, "image/png"),
    "/truncated.png": lambda h, s: _send(h, VALID_PNG[: len(VALID_PNG) // 2], "image/png"),
    "/svg.svg": lambda h, s: _send(h, b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/svg+xml"),
    # Over Pillow's own limit, and over ours only (4096 x 4096 by default).
    "/bomb.png": lambda h, s: _send(h, png_header_only(30_000, 30_000), "image/png"),
    "/big.png": lambda h, s: _send(h, png_header_only(5000, 5000), "image/png"),
    "/slow.png": _slow,
    "/drip.png": _drip,
    "/to-ok": _redirect("/ok.png"),
    "/to-file": _redirect("file:///etc/passwd"),
    "/loop": _redirect("/loop"),
}


@pytest.fixture
def server():
    with AvatarServer() as running:
        yield running


@pytest.fixture(autouse=True)
def _avatar_settings(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.MEDIA_URL = "/media/"
    settings.DANMAKU_DEFAULT_AVATAR_URL = DEFAULT_AVATAR
    settings.DANMAKU_AVATAR_ALLOW_PRIVATE_HOSTS = True
    settings.DANMAKU_AVATAR_TIMEOUT_MS = TEST_TIMEOUT_MS


@pytest.fixture
def profile(db):
    user = get_user_model().objects.create_user("avatar-owner")
    return ViewerProfile.objects.create(user=user, nickname="owner")


def set_url(profile: ViewerProfile, url: str) -> ViewerProfile:
    ViewerProfile.objects.filter(pk=profile.pk).update(avatar_url=url)
    return ViewerProfile.objects.get(pk=profile.pk)


def thumb_files(settings) -> list[Path]:
    root = Path(settings.MEDIA_ROOT) / "avatars"
    return sorted(root.iterdir()) if root.exists() else []


def test_valid_png_is_stored_as_64px_thumbnail(server, profile, settings):
    profile = set_url(profile, server.url("/ok.png"))

    assert profile_avatar_fetch(profile_id=profile.pk) is True

    profile.refresh_from_db()
    assert profile.avatar_fetched_url == server.url("/ok.png")
    [path] = thumb_files(settings)
    with Image.open(path) as thumb:
        assert (thumb.format, thumb.size) == ("PNG", (64, 64))
    assert avatar_url_for(profile) == f"/media/avatars/{path.name}"


def test_jpeg_with_parameters_in_content_type_is_accepted(server, profile, settings):
    profile = set_url(profile, server.url("/ok.jpg"))

    assert profile_avatar_fetch(profile_id=profile.pk) is True
    [path] = thumb_files(settings)
    with Image.open(path) as thumb:
        assert (thumb.size, thumb.mode) == ((64, 64), "RGB")


def test_second_run_for_same_url_does_not_fetch_again(server, profile, settings):
    profile = set_url(profile, server.url("/ok.png"))
    assert profile_avatar_fetch(profile_id=profile.pk) is True

    assert profile_avatar_fetch(profile_id=profile.pk) is False
    fetch_avatar_task.apply(args=(profile.pk,))

    assert server.hits["/ok.png"] == 1
    assert len(thumb_files(settings)) == 1


def test_redirect_to_http_is_followed(server, profile):
    profile = set_url(profile, server.url("/to-ok"))

    assert profile_avatar_fetch(profile_id=profile.pk) is True
    assert server.hits["/ok.png"] == 1


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/huge-declared.png", "byte cap"),
        ("/huge-streamed.png", "byte cap"),
        ("/page.html", "not a raster image"),
        ("/mislabelled.png", "not a raster image"),
        ("/svg.svg", "not a raster image"),
        ("/corrupt.png", "not a usable image"),
        ("/truncated.png", "not a usable image"),
        ("/bomb.png", "DecompressionBombError"),
        ("/big.png", "pixel cap"),
        ("/missing.png", "HTTP 404"),
        ("/to-file", "is not http or https"),
        ("/loop", "redirects"),
    ],
)
def test_bad_avatar_keeps_default_and_logs(server, profile, settings, caplog, path, reason):
    profile = set_url(profile, server.url(path))

    with caplog.at_level(logging.WARNING, logger="danmaku.profiles"):
        assert profile_avatar_fetch(profile_id=profile.pk) is False

    profile.refresh_from_db()
    assert avatar_url_for(profile) == DEFAULT_AVATAR
    assert profile.avatar_fetched_url == ""
    assert thumb_files(settings) == []
    [record] = caplog.records
    assert reason in record.getMessage()


@pytest.mark.parametrize(
    "url",
    ["ftp://127.0.0.1/a.png", "file:///etc/passwd", "javascript:alert(1)", "http:///nohost.png", "http://a:b@x/a.png"],
)
def test_non_http_url_keeps_default(profile, url, caplog):
    # Written straight to the row: profile_update would refuse some of these.
    profile = set_url(profile, url)

    with caplog.at_level(logging.WARNING, logger="danmaku.profiles"):
        assert profile_avatar_fetch(profile_id=profile.pk) is False

    assert avatar_url_for(profile) == DEFAULT_AVATAR
    assert len(caplog.records) == 1


@pytest.mark.parametrize("path", ["/slow.png", "/drip.png"])
def test_slow_server_is_cut_at_the_deadline(server, profile, path):
    profile = set_url(profile, server.url(path))

    started = time.monotonic()
    assert profile_avatar_fetch(profile_id=profile.pk) is False
    elapsed = time.monotonic() - started

    assert TEST_TIMEOUT_MS / 1000 - 0.05 <= elapsed < TEST_TIMEOUT_MS / 1000 + DEADLINE_SLACK_S
    assert avatar_url_for(profile) == DEFAULT_AVATAR


def test_private_address_refused_unless_allowed(server, profile, settings):
    settings.DANMAKU_AVATAR_ALLOW_PRIVATE_HOSTS = False
    profile = set_url(profile, server.url("/ok.png"))

    assert profile_avatar_fetch(profile_id=profile.pk) is False
    assert server.hits["/ok.png"] == 0


def test_task_swallows_bad_avatar_and_missing_profile(server, profile):
    profile = set_url(profile, server.url("/corrupt.png"))

    assert fetch_avatar_task.apply(args=(profile.pk,)).successful()
    assert fetch_avatar_task.apply(args=(profile.pk + 1000,)).successful()
    # The embedded default: no broker, so enqueue runs it inline.
    assert enqueue(fetch_avatar_task, profile.pk) is True
    assert server.hits["/corrupt.png"] == 2


def test_profile_update_fetches_after_commit(server, profile, settings, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        updated = profile_update(user=profile.user, avatar_url=server.url("/ok.png"))
        assert server.hits["/ok.png"] == 0  # not before the commit
    assert server.hits["/ok.png"] == 1
    updated.refresh_from_db()
    assert avatar_url_for(updated).startswith("/media/avatars/")

    # Only the nickname: no fetch.
    with django_capture_on_commit_callbacks(execute=True):
        profile_update(user=profile.user, nickname="renamed")
    assert server.hits["/ok.png"] == 1


def test_new_url_shows_default_until_fetched(server, profile, settings, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        profile_update(user=profile.user, avatar_url=server.url("/ok.png"))
    [old_file] = thumb_files(settings)

    with django_capture_on_commit_callbacks(execute=True):
        updated = profile_update(user=profile.user, avatar_url=server.url("/ok.jpg"))
        # Committed, fetch not yet run (nor ever, with the broker down).
        assert avatar_url_for(updated) == DEFAULT_AVATAR
        assert old_file.exists()

    updated.refresh_from_db()
    [new_file] = thumb_files(settings)
    assert new_file != old_file
    assert avatar_url_for(updated) == f"/media/avatars/{new_file.name}"

    with django_capture_on_commit_callbacks(execute=True):
        updated = profile_update(user=profile.user, avatar_url="")
    assert avatar_url_for(updated) == DEFAULT_AVATAR
    assert thumb_files(settings) == []


def test_profile_update_refuses_non_http_url(profile):
    from danmaku.errors import InvalidInput

    with pytest.raises(InvalidInput) as excinfo:
        profile_update(user=profile.user, avatar_url="ftp://example.com/a.png")
    assert excinfo.value.field == "avatar_url"


def test_url_changed_during_fetch_discards_the_thumbnail(server, profile, settings, monkeypatch):
    profile = set_url(profile, server.url("/ok.png"))
    real_fetch = avatars.fetch_thumbnail

    def fetch_then_user_changes_url(url, **kwargs):
        png = real_fetch(url, **kwargs)
        ViewerProfile.objects.filter(pk=profile.pk).update(avatar_url=server.url("/ok.jpg"))
        return png

    monkeypatch.setattr(avatars, "fetch_thumbnail", fetch_then_user_changes_url)

    assert profile_avatar_fetch(profile_id=profile.pk) is False
    profile.refresh_from_db()
    assert avatar_url_for(profile) == DEFAULT_AVATAR


@pytest.mark.parametrize(
    ("data", "mode"),
    [
        (image_bytes("PNG", (300, 120), "RGBA"), "RGBA"),
        (image_bytes("PNG", (10, 10), "L"), "RGB"),
        (gif_with_transparency(), "RGBA"),
        (image_bytes("WEBP", (64, 200)), "RGB"),
        (image_bytes("JPEG", (2000, 1500)), "RGB"),
    ],
)
def test_thumbnail_is_square_png_keeping_alpha(data, mode):
    with Image.open(io.BytesIO(avatars.thumbnail(data, size_px=64))) as thumb:
        assert (thumb.format, thumb.size, thumb.mode) == ("PNG", (64, 64), mode)


@pytest.mark.parametrize("data", [image_bytes("BMP"), image_bytes("TIFF"), b"", b"GIF89a"])
def test_thumbnail_refuses_other_formats_and_junk(data):
    with pytest.raises(avatars.AvatarError):
        avatars.thumbnail(data)
