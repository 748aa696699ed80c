"""The printed results: one row per load (the median of its runs), the
ratios, and the issue's acceptance checks evaluated on this run's own
figures. A ratio to the bare app on the same server is the row's paired
ratio when it has one (runs seconds apart), not a quotient of medians."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from bench.pullbench.servers import bare_label
from bench.pullbench.suite import Result

# The acceptance bounds.
GUNICORN_MIN_RATIO = 1.0
BEST_MIN_RATIO_TO_BARE_GTHREAD = 4.0
BEST_MIN_RATIO_TO_OWN_BARE = 0.85
P99_MAX_MS = 50.0
P99_CONNECTIONS = 256
NGINX_MIN_RATIO = 0.8
PULL_SCENARIOS = ("hot", "rooms", "redis")
REFERENCE_SERVER = "gunicorn-gthread"
# gunicorn as shipped (danmaku_site.pullworker); its bare app runs on stock
# gthread (bench.pullbench.servers.bare_settings).
SHIPPED_GUNICORN = "gunicorn"

COLUMNS = (
    ("scenario", "<", lambda r: r.scenario),
    ("server", "<", lambda r: r.server),
    ("app", "<", lambda r: r.app),
    ("conns", ">", lambda r: str(r.connections)),
    ("req/s", ">", lambda r: f"{r.rps:,.0f}"),
    ("p50 ms", ">", lambda r: f"{r.p50_ms:.2f}"),
    ("p99 ms", ">", lambda r: f"{r.p99_ms:.2f}"),
    ("pulls p99", ">", lambda r: f"{r.pull_p99_ms:.2f}" if r.pull_p99_ms is not None else "-"),
    ("errors", ">", lambda r: str(r.errors)),
    ("B/resp", ">", lambda r: f"{r.bytes_per_response:,.0f}"),
    ("srv CPU s", ">", lambda r: f"{r.server_cpu_s:.2f}"),
    ("srv µs/req", ">", lambda r: f"{r.server_cpu_s / r.requests * 1e6:.1f}" if r.requests else "-"),
    ("wrk CPU s", ">", lambda r: f"{r.wrk_cpu_s:.2f}"),
    ("x base", ">", lambda r: f"{r.ratio:.2f}" if r.ratio is not None else "-"),
    ("range", ">", lambda r: f"{r.ratio_low:.2f}-{r.ratio_high:.2f}" if r.ratio_low is not None else "-"),
    ("runs", ">", lambda r: str(r.runs)),
)


def format_table(results: Iterable[Result]) -> str:
    rows = [[render(result) for _, _, render in COLUMNS] for result in results]
    widths = [max([len(title), *(len(row[i]) for row in rows)]) for i, (title, _, _) in enumerate(COLUMNS)]

    def line(cells: list[str]) -> str:
        return "  ".join(
            f"{cell:{align}{width}}" for cell, (_, align, _), width in zip(cells, COLUMNS, widths, strict=True)
        ).rstrip()

    header = line([title for title, _, _ in COLUMNS])
    return "\n".join([header, "-" * len(header), *(line(row) for row in rows)])


@dataclass
class Check:
    key: str  # gunicorn, best, p99, errors, nginx: what a caller looks a verdict up by
    name: str
    ok: bool | None  # None: not measured in this run
    detail: str

    def __str__(self) -> str:
        verdict = {True: "PASS", False: "FAIL", None: "n/a "}[self.ok]
        return f"[{verdict}] {self.name}: {self.detail}"


def _find(results: list[Result], **wanted) -> list[Result]:
    return [r for r in results if all(getattr(r, key) == value for key, value in wanted.items())]


def _server_kind(label: str) -> str:
    return label.split(" ", 1)[0]


def _own_ratio(row: Result, bare: Result) -> float:
    """``row`` over the bare app on its own server: paired when it can be."""
    if row.ratio is not None and row.baseline.startswith("bare on "):
        return row.ratio
    return row.rps / bare.rps


def _spread(row: Result) -> str:
    if row.ratio_low is None or row.runs < 2:
        return ""
    return f" (pairs {row.ratio_low:.2f}-{row.ratio_high:.2f}, {row.runs} runs)"


def checks(results: list[Result]) -> list[Check]:
    found: list[Check] = []
    bare_gthread = {r.connections: r for r in results if r.app == "bare" and _server_kind(r.server) == REFERENCE_SERVER}
    hot_fast = [r for r in results if r.scenario == "hot" and r.app == "fast"]

    details, verdicts = [], []
    for row in hot_fast:
        base = bare_gthread.get(row.connections)
        if _server_kind(row.server) == SHIPPED_GUNICORN and base is not None:
            ratio = _own_ratio(row, base)
            verdicts.append(ratio >= GUNICORN_MIN_RATIO)
            details.append(f"c{row.connections}: {ratio:.2f}x{_spread(row)}")
    found.append(
        Check(
            "gunicorn",
            f"hot pull on gunicorn (as shipped) ≥ {GUNICORN_MIN_RATIO}x the bare app on gunicorn gthread",
            all(verdicts) if verdicts else None,
            ", ".join(details) or "needs --servers gunicorn and --scenarios hot",
        )
    )

    details, verdicts = [], []
    for connections, base in sorted(bare_gthread.items()):
        candidates = [r for r in hot_fast if r.connections == connections]
        if not candidates:
            continue
        best = max(candidates, key=lambda r: r.rps)
        own = _find(results, app="bare", server=bare_label(best.server), connections=connections)
        own_ratio = _own_ratio(best, own[0]) if own else None
        to_gthread = best.rps / base.rps
        verdicts.append(
            to_gthread >= BEST_MIN_RATIO_TO_BARE_GTHREAD
            and own_ratio is not None
            and own_ratio >= BEST_MIN_RATIO_TO_OWN_BARE
        )
        own_text = f"{own_ratio:.2f}x{_spread(best)}" if own_ratio is not None else "?"
        details.append(
            f"c{connections}: {best.server} {best.rps:,.0f} req/s = {to_gthread:.2f}x bare gunicorn gthread, "
            f"{own_text} bare on its own server"
        )
    found.append(
        Check(
            "best",
            f"best server ≥ {BEST_MIN_RATIO_TO_BARE_GTHREAD}x bare gunicorn gthread and "
            f"≥ {BEST_MIN_RATIO_TO_OWN_BARE}x bare on itself",
            all(verdicts) if verdicts else None,
            "; ".join(details) or "needs the hot scenario and a gunicorn-gthread baseline",
        )
    )

    # The shipped pull path (fast) on each server; the ninja rows are there
    # for comparison, not as a configuration anyone would deploy.
    wide = [r for r in results if r.connections >= P99_CONNECTIONS and r.scenario in PULL_SCENARIOS and r.app == "fast"]
    for server in dict.fromkeys(r.server for r in wide):
        rows = [r for r in wide if r.server == server]
        detail = ", ".join(f"{r.scenario} {r.p99_ms:.1f} ms" for r in rows)
        # What the server itself allows: its bare app at the same connections.
        bare = _find(results, app="bare", server=bare_label(server), connections=P99_CONNECTIONS)
        if bare:
            detail += f" (its bare app: {bare[0].p99_ms:.1f} ms)"
        found.append(
            Check(
                "p99",
                f"pull p99 ≤ {P99_MAX_MS:.0f} ms at {P99_CONNECTIONS} connections on {server}",
                all(r.p99_ms <= P99_MAX_MS for r in rows),
                detail,
            )
        )
    if not wide:
        found.append(
            Check(
                "p99", f"pull p99 ≤ {P99_MAX_MS:.0f} ms at {P99_CONNECTIONS} connections", None, "add --connections 256"
            )
        )

    failed = [r for r in results if r.errors]
    found.append(
        Check(
            "errors",
            "0 errors (non-2xx/3xx and socket errors)",
            not failed,
            ", ".join(f"{r.scenario}/{r.server}/{r.app}/c{r.connections}: {r.errors}" for r in failed)
            or f"{len(results)} runs",
        )
    )

    cache_rows = [r for r in results if r.app == "nginx-cache" and r.scenario == "hot" and r.ratio is not None]
    found.append(
        Check(
            "nginx",
            f"nginx micro-cache ≥ {NGINX_MIN_RATIO}x nginx serving the same bytes as a static file",
            all(r.ratio >= NGINX_MIN_RATIO for r in cache_rows) if cache_rows else None,
            ", ".join(f"c{r.connections}: {r.ratio:.2f}x" for r in cache_rows) or "needs nginx and --scenarios nginx",
        )
    )
    return found
