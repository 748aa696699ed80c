"""A test recording for the replay page: a small WebM made once per machine
with Debian's ffmpeg, and a loopback HTTP server that serves it with byte
ranges (Chromium asks for ranges to seek a video; without them it cannot).

Tests that need the file call ``require_ffmpeg()`` (through
``recording_file()``): without ffmpeg they skip with the reason, unless
DANMAKU_REQUIRE_SERVICES=1 (as .ci/run sets, which also installs ffmpeg),
which turns the skip into a failure.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from harness.services import services_required

BASE_DIR = Path(__file__).resolve().parent.parent
CACHE_DIR = BASE_DIR / "var" / "test-media"
RECORDING_SECONDS = 20
# lavfi's testsrc: colour bars with the running second drawn on them, so a
# screenshot says where the video is. VP8 at 25 fps with a key frame every
# second (seeks land fast and exactly); about 200 KB.
FFMPEG_ARGS = (
    "-f", "lavfi", "-i", f"testsrc=size=320x180:rate=25:duration={RECORDING_SECONDS}",
    "-c:v", "libvpx", "-b:v", "100k", "-crf", "30", "-g", "25",
    "-deadline", "realtime", "-cpu-used", "8", "-pix_fmt", "yuv420p", "-an",
)  # fmt: skip
# Encoding takes about a second here; a loaded machine gets much longer.
FFMPEG_TIMEOUT_SECONDS = 60


def require_ffmpeg() -> str:
    """Debian's ffmpeg (``apt-get install ffmpeg``), to make the test recording."""
    path = shutil.which("ffmpeg")
    if path is None:
        reason = "ffmpeg is not installed (apt-get install ffmpeg), needed to make the test recording"
        if services_required():
            pytest.fail(f"{reason} (DANMAKU_REQUIRE_SERVICES=1 makes this a failure)", pytrace=False)
        pytest.skip(reason)
    return path


def recording_file(cache_dir: Path | str = CACHE_DIR) -> Path:
    """The test recording (a WebM, 320x180, RECORDING_SECONDS long, no audio),
    made in ``cache_dir`` on first use and reused after. Its name carries a
    hash of the ffmpeg arguments, so changing them makes a new one."""
    digest = hashlib.sha256(" ".join(FFMPEG_ARGS).encode()).hexdigest()[:12]
    path = Path(cache_dir) / f"recording-{digest}.webm"
    if path.is_file():
        return path
    ffmpeg = require_ffmpeg()
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written aside and renamed: a concurrent run or an interrupted one never
    # leaves a half-written file under the final name.
    fd, partial = tempfile.mkstemp(prefix=".recording-", suffix=".webm", dir=path.parent)
    os.close(fd)
    try:
        subprocess.run(
            [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", *FFMPEG_ARGS, "-y", partial],
            capture_output=True,
            text=True,
            timeout=FFMPEG_TIMEOUT_SECONDS,
            check=True,
        )
        os.chmod(partial, 0o644)  # mkstemp's 0600 would keep it from other users of the machine
        os.replace(partial, path)
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(f"ffmpeg could not make the test recording:\n{exc.stderr}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)
    return path


# -- serving it --------------------------------------------------------------------

RANGE = re.compile(r"bytes=(\d*)-(\d*)$")


@dataclass
class ServedFile:
    """A file served at ``url``; ``ranges`` lists the Range headers asked for."""

    url: str
    ranges: list[str] = field(default_factory=list)


def _handler(body: bytes, content_type: str, served: ServedFile) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_HEAD(self) -> None:
            self._answer(send_body=False)

        def do_GET(self) -> None:
            self._answer(send_body=True)

        def _answer(self, *, send_body: bool) -> None:
            header = self.headers.get("Range")
            start, end, status = 0, len(body) - 1, 200
            if header is not None:
                served.ranges.append(header)
                match = RANGE.match(header.strip())
                if match is None or match.groups() == ("", ""):
                    start = len(body)  # unsatisfiable below
                elif match[1] == "":  # the last N bytes
                    start = max(0, len(body) - int(match[2]))
                else:
                    start = int(match[1])
                    end = min(end, int(match[2])) if match[2] else end
                if start >= len(body) or start > end:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                status = 206
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(end - start + 1))
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end}/{len(body)}")
            self.end_headers()
            if send_body:
                # The browser drops a connection once it has what it needs.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(body[start : end + 1])

        def log_message(self, *args) -> None:
            pass  # quiet: the test's output is for the test

    return Handler


@contextlib.contextmanager
def serve_file(path: Path | str, *, content_type: str = "video/webm") -> Iterator[ServedFile]:
    """Serve ``path`` (read once) over HTTP on 127.0.0.1, a free port, with
    byte ranges, until the block exits."""
    body = Path(path).read_bytes()
    served = ServedFile(url="")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(body, content_type, served))
    server.daemon_threads = True
    served.url = f"http://127.0.0.1:{server.server_address[1]}/{Path(path).name}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield served
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
