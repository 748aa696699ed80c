"""A raid on one comment, reported by the crowd that saw it, against the
project's gunicorn (2 workers, SQLite, or PostgreSQL with --database-url).

``--reporters`` viewers (1,000), each with its own token and its own
connection, all connect and report the same comment within ``--storm``
seconds (1), in a room whose auto-hide threshold is ``--threshold`` (50)
reporters in good standing. Measured: every answer (201 until the comment
is hidden, then 409), errors, latency, how long from the first report until
a pull carries the comment in ``deleted``, and that exactly one
``report.auto_hide`` audit row was written. The baseline, in the same run
on the same server: the same crowd each sending one comment within the
same storm (the send path every viewer already uses).

Then a flood: one account sending ``--flood`` reports (1,000) against as
many comments over 8 connections, as fast as answered: exactly
``moderation.reportlimit.REPORTS_PER_MINUTE`` accepted, the rest 429, with
nothing written for them.

    .venv/bin/python bench/reports.py
    .venv/bin/python bench/reports.py --reporters 2000 --database-url postgres://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import requests

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from harness import local  # noqa: E402

ROOM = "raid"
# A request given up on after this long: the crowd's storm queues a node
# this small for seconds (the baseline's sends too), and a give-up is an error.
TIMEOUT_SECONDS = 30.0
HEAD_LIMIT = 16 * 1024
FLOOD_CONNECTIONS = 8
# What the bench reads and writes beside the API, in the server's database.
AUDITED = (
    "from moderation.models import AuditEntry\n"
    "print(AuditEntry.objects.filter(action='report.auto_hide', target_id='{target}').count())"
)
STORED = "from moderation.models import Report\nprint(Report.objects.filter({where}).count())"
FLOOD_COMMENTS = (
    "import json\nfrom danmaku.models import Danmaku, Room\nfrom django.contrib.auth.models import User\n"
    "room = Room.objects.get(slug='{room}'); user = User.objects.get(username='sender')\n"
    "rows = Danmaku.objects.bulk_create(\n"
    "    Danmaku(room=room, user=user, ts_ms=0, text=f'f{{n}}') for n in range({count}))\n"
    "print(json.dumps([row.id for row in rows]))"
)
REPORTS_PER_MINUTE = 10  # moderation.reportlimit.REPORTS_PER_MINUTE (the flood's verdict)


@dataclass
class Storm:
    statuses: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def percentile(self, share: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")

    def line(self) -> str:
        return (
            f"{sum(self.statuses.values())} answers in {self.seconds:.2f} s, "
            f"statuses {dict(sorted(self.statuses.items()))}, errors {sum(self.errors.values())}, "
            f"p50 {self.percentile(0.5):.1f} ms, p99 {self.percentile(0.99):.1f} ms"
            + (f" {dict(self.errors)}" if self.errors else "")
        )


async def _post(host: str, port: int, path: str, token: str, bodies: list[bytes], storm: Storm, delay: float) -> None:
    """One connection: wait ``delay``, then POST each body in turn, kept alive."""
    await asyncio.sleep(delay)
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), TIMEOUT_SECONDS)
    except (OSError, TimeoutError) as exc:
        storm.errors[f"connect: {type(exc).__name__}"] += 1
        return
    head = f"POST {{path}} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
    head += "Content-Type: application/json\r\n"
    try:
        for body in bodies:
            started = time.monotonic()
            request_path, payload = body.split(b"\n", 1)
            request = head.replace("{path}", request_path.decode())
            writer.write(f"{request}Content-Length: {len(payload)}\r\n\r\n".encode() + payload)
            status = await asyncio.wait_for(_answer(reader, writer), TIMEOUT_SECONDS)
            storm.statuses[status] += 1
            storm.latencies_ms.append(1000 * (time.monotonic() - started))
    except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
        storm.errors[f"post: {type(exc).__name__}"] += 1
    finally:
        writer.close()


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> int:
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    if len(head) > HEAD_LIMIT:
        raise ValueError("answer head too long")
    lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    await reader.readexactly(int(headers.get("content-length", "0")))
    return int(lines[0].split(" ", 2)[1])


def storm(base_url: str, jobs: list[tuple[str, list[bytes]]], *, spread_s: float) -> Storm:
    """Each job (token, bodies) on a connection of its own, started evenly over ``spread_s``."""
    parts = urlsplit(base_url)
    result = Storm()

    async def main() -> None:
        started = time.monotonic()
        await asyncio.wait_for(
            asyncio.gather(
                *(
                    _post(parts.hostname, parts.port, "", token, bodies, result, spread_s * n / len(jobs))
                    for n, (token, bodies) in enumerate(jobs)
                )
            ),
            timeout=spread_s + 60 * TIMEOUT_SECONDS,
        )
        result.seconds = time.monotonic() - started

    asyncio.run(main())
    return result


class HideWatcher:
    """A viewer pulling every 100 ms from before the raid, until the comment
    comes in ``deleted``: how long after the raid began it left screens."""

    def __init__(self, url: str, cursor: str, target: int) -> None:
        self.url, self.cursor, self.target = url, cursor, target
        self.hidden = threading.Event()
        self.hidden_after: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        started = time.monotonic()
        session = requests.Session()
        while not self._stop.is_set() and time.monotonic() - started < 60:
            try:
                pulled = session.get(self.url, params={"after": self.cursor}, timeout=TIMEOUT_SECONDS).json()
            except requests.RequestException:
                pulled = None
            if pulled is not None:
                self.cursor = pulled["cursor"]
                if self.target in pulled["deleted"]:
                    self.hidden_after = time.monotonic() - started
                    self.hidden.set()
                    return
            self._stop.wait(0.1)

    def __enter__(self) -> HideWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(TIMEOUT_SECONDS)


def body(path: str, payload: dict) -> bytes:
    return path.encode() + b"\n" + json.dumps(payload).encode()


def send_one(server, token: str, text: str) -> int:
    answer = requests.post(
        server.danmaku_url(ROOM),
        json={"text": text},
        headers={"Authorization": f"Bearer {token}"},
        timeout=TIMEOUT_SECONDS,
    )
    answer.raise_for_status()
    return answer.json()["id"]


def shell(server, code: str) -> str:
    return server.manage("shell", "-c", code).strip().splitlines()[-1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reporters", type=int, default=1000, help="viewers reporting one comment (default 1000)")
    parser.add_argument("--storm", type=float, default=1.0, help="seconds they all connect and report within (1)")
    parser.add_argument("--threshold", type=int, default=50, help="the room's auto-hide threshold (default 50)")
    parser.add_argument("--flood", type=int, default=1000, help="reports one account sends in the flood (1000)")
    parser.add_argument("--database-url", help="PostgreSQL to run on (default: SQLite in a temporary directory)")
    args = parser.parse_args()
    if not 2 <= args.reporters <= 20_000 or not 0.1 <= args.storm <= 60 or not 1 <= args.threshold <= 1000:
        parser.error("--reporters must be 2-20000, --storm 0.1-60 s, --threshold 1-1000")
    if not REPORTS_PER_MINUTE < args.flood <= 10_000:
        parser.error(f"--flood must be {REPORTS_PER_MINUTE + 1}-10000")
    fields = {
        "poll_interval_ms": 1000,
        "user_send_interval_ms": 0,
        "room_send_cap_per_second": 100_000,
        "report_hide_threshold": args.threshold,
        "report_min_account_age_hours": 0,
        "report_min_published": 0,
    }
    reporters = tuple(f"eyes{n:05d}" for n in range(args.reporters))
    extra = {"DATABASE_URL": args.database_url} if args.database_url else {}
    with tempfile.TemporaryDirectory(prefix="danmaku-reports-") as var_dir:
        started = time.monotonic()
        with local.gunicorn(
            room=ROOM, users=("sender", "flooder", *reporters), room_fields=fields, var_dir=var_dir, extra_env=extra
        ) as server:
            sender, flooder, *tokens = server.tokens
            print(
                f"{args.reporters} reporters, storm {args.storm} s, threshold {args.threshold}, "
                f"{'PostgreSQL' if args.database_url else 'SQLite'} (ready in {time.monotonic() - started:.0f} s)"
            )
            send_path = f"/api/v1/rooms/{ROOM}/danmaku"
            # The baseline: every viewer sends one comment in the same storm.
            baseline = storm(
                server.base_url,
                [(token, [body(send_path, {"text": f"raid {n}"})]) for n, token in enumerate(tokens)],
                spread_s=args.storm,
            )
            print(f"  sends (baseline)  {baseline.line()}")

            target = send_one(server, sender, "the comment everyone reports")
            cursor = requests.get(server.danmaku_url(ROOM), timeout=TIMEOUT_SECONDS).json()["cursor"]
            report_path = f"/api/v1/rooms/{ROOM}/danmaku/{target}/report"
            watcher = HideWatcher(server.danmaku_url(ROOM), cursor, target)
            with watcher:
                raid = storm(
                    server.base_url,
                    [(token, [body(report_path, {"reason": "abuse"})]) for token in tokens],
                    spread_s=args.storm,
                )
                print(f"  reports (raid)    {raid.line()}")
                watcher.hidden.wait(10)
            hidden_after = watcher.hidden_after
            audit = int(shell(server, AUDITED.format(target=target)))
            stored = int(shell(server, STORED.format(where=f"danmaku_id={target}")))
            print(
                f"  the comment left pulls {hidden_after if hidden_after is None else round(hidden_after, 2)} s "
                f"after the raid began; {audit} auto-hide audit row(s); {stored} reports stored"
            )
            p99_ratio = raid.percentile(0.99) / baseline.percentile(0.99)
            rate_ratio = (sum(raid.statuses.values()) / raid.seconds) / (
                sum(baseline.statuses.values()) / baseline.seconds
            )
            print(f"  reports / sends: p99 {p99_ratio:.2f}, answers a second {rate_ratio:.2f} (same run, same crowd)")

            # The flood: one account, as many comments, as fast as answered.
            ids = json.loads(shell(server, FLOOD_COMMENTS.format(room=ROOM, count=args.flood)))
            share = -(-len(ids) // FLOOD_CONNECTIONS)
            flood = storm(
                server.base_url,
                [
                    (
                        flooder,
                        [
                            body(f"/api/v1/rooms/{ROOM}/danmaku/{danmaku_id}/report", {"reason": "spam"})
                            for danmaku_id in ids[start : start + share]
                        ],
                    )
                    for start in range(0, len(ids), share)
                ],
                spread_s=0.1,
            )
            flooded = int(shell(server, STORED.format(where="reporter__username='flooder'")))
            print(f"  flood (1 account) {flood.line()}; {flooded} stored")

    checks = [
        (not baseline.errors and not raid.errors and not flood.errors, "no socket errors"),
        (set(raid.statuses) <= {201, 409}, f"every report answered 201 or 409: {dict(raid.statuses)}"),
        (raid.statuses[201] >= args.threshold, f"{raid.statuses[201]} reports accepted (threshold {args.threshold})"),
        (audit == 1, f"exactly one auto-hide audit row ({audit})"),
        (hidden_after is not None, "the comment left the pulls"),
        (
            flood.statuses == Counter({201: REPORTS_PER_MINUTE, 429: args.flood - REPORTS_PER_MINUTE})
            and flooded == REPORTS_PER_MINUTE,
            f"the flood: {REPORTS_PER_MINUTE} accepted and stored, the rest 429",
        ),
    ]
    failed = 0
    for ok, what in checks:
        print(f"[{'PASS' if ok else 'FAIL'}] {what}")
        failed += not ok
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
