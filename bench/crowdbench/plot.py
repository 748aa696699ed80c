"""A crowd run's timeline as a PNG: a spike is visible at a glance."""

from __future__ import annotations

import math
from pathlib import Path

from bench.crowdbench.report import Figures


def write_png(f: Figures, path: Path) -> None:
    import matplotlib

    # No display on a server; Agg renders straight to the file.
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    seconds = [s["second"] for s in f.seconds]
    figure, axes = plt.subplots(5, 1, figsize=(11, 11), sharex=True)
    panels = [
        ("answers per second", [s["polls"] for s in f.seconds], f"expected {f.expected_per_second:,.0f}/s"),
        ("p99 latency (ms)", [s["p99"] * 1000 for s in f.seconds], None),
        ("errors per second", [s["errors"] for s in f.seconds], None),
        ("open connections", [s["open_connections"] for s in f.seconds], None),
        ("CPU (% of a core)", [s["generator_cpu_percent"] for s in f.seconds], None),
    ]
    for axis, (label, values, note) in zip(axes, panels, strict=True):
        axis.plot(seconds, values, drawstyle="steps-post", linewidth=1.2)
        axis.set_ylabel(label, fontsize=8)
        axis.grid(alpha=0.3)
        if label != "p99 latency (ms)":
            axis.ticklabel_format(axis="y", style="plain", useOffset=False)
            axis.set_ylim(bottom=0)
        if note:
            axis.axhline(f.expected_per_second, color="#2ca02c", linestyle="--", linewidth=0.8, label=note)
            axis.legend(fontsize=7, loc="upper right")
        for at, what in f.events:
            axis.axvline(at, color="#d62728", linestyle=":", linewidth=1)
            if axis is axes[0]:
                axis.annotate(what, (at, 0), fontsize=7, color="#d62728", rotation=90, va="bottom")
    axes[4].lines[0].set_label("generator")
    server = [s["server_cpu_percent"] for s in f.seconds]
    if any(value is not None for value in server):
        axes[4].plot(seconds, [value or 0 for value in server], drawstyle="steps-post", linewidth=1.2, label="server")
    axes[4].legend(fontsize=7, loc="upper right")
    axes[4].relim()
    axes[4].autoscale(axis="y")
    axes[4].set_ylim(bottom=0)
    axes[1].set_yscale("symlog", linthresh=10)
    axes[1].set_ylim(bottom=0)
    axes[-1].set_xlabel("seconds from the start")
    figure.suptitle(
        f"crowd · {f.scenario} · {f.topology} · {f.viewers:,} viewers · p99 {f.p99_ms} ms"
        f" (settled {f.settled_p99_ms} ms) · errors {sum(f.errors.values()):,}",
        fontsize=10,
    )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _gauge(f: Figures, name: str) -> list[float]:
    return [s["gauges"].get(name, math.nan) for s in f.seconds]


def _plot_gauge(axis, seconds: list[int], values: list[float], label: str, scale: float = 1.0) -> None:
    """A gauge the node did not expose is not drawn."""
    if any(not math.isnan(value) for value in values):
        axis.plot(seconds, [value * scale for value in values], linestyle=":", linewidth=1.2, label=label)


def _per_second(value: float | None, unit: str) -> str:
    return "none" if value is None else f"{value:,.0f}{unit}/s"


def write_control_png(f: Figures, path: Path) -> None:
    """Issue 15's timeline: what the crowd received against the budgets, and
    the node's own gauges (sampled once a second) beside it."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    seconds = [s["second"] for s in f.seconds]
    figure, axes = plt.subplots(6, 1, figsize=(11, 14), sharex=True)
    polls, wire, estimate, cuts, busy, multiplier = axes

    polls.plot(seconds, [s["polls"] for s in f.seconds], drawstyle="steps-post", label="answers received")
    _plot_gauge(polls, seconds, _gauge(f, "danmaku_node_polls_per_second"), "node gauge")
    _plot_gauge(polls, seconds, _gauge(f, "danmaku_room_polls_per_second"), "room gauge")
    if f.poll_budget:
        polls.axhline(f.poll_budget, color="#2ca02c", linestyle="--", linewidth=0.8, label="poll budget")
    polls.set_ylabel("polls per second", fontsize=8)

    wire.plot(seconds, [s["bytes"] for s in f.seconds], drawstyle="steps-post", label="bytes received")
    _plot_gauge(wire, seconds, _gauge(f, "danmaku_node_egress_bytes_per_second"), "node gauge")
    _plot_gauge(wire, seconds, _gauge(f, "danmaku_room_egress_bytes_per_second"), "room gauge")
    if f.egress_budget:
        wire.axhline(f.egress_budget, color="#2ca02c", linestyle="--", linewidth=0.8, label="egress budget")
    wire.set_ylabel("bytes per second", fontsize=8)

    estimate.plot(seconds, [s["viewers_true"] for s in f.seconds], drawstyle="steps-post", label="viewers polling")
    estimate.plot(seconds, [s["viewers_estimate"] for s in f.seconds], drawstyle="steps-post", label="answers' viewers")
    _plot_gauge(estimate, seconds, _gauge(f, "danmaku_room_viewers"), "room gauge")
    estimate.set_ylabel("viewers", fontsize=8)

    cuts.plot(seconds, [s["missed_mean"] for s in f.seconds], drawstyle="steps-post", label="missed per answer")
    cuts.plot(seconds, [s["items_mean"] for s in f.seconds], drawstyle="steps-post", label="comments per answer")
    _plot_gauge(cuts, seconds, _gauge(f, "danmaku_room_display_cap"), "display cap (gauge, per s)")
    cuts.set_ylabel("comments", fontsize=8)

    busy.plot(seconds, [s["busy_share"] * 100 for s in f.seconds], drawstyle="steps-post", label="busy answers %")
    busy.set_ylabel("busy answers (%)", fontsize=8)
    busy.set_ylim(-2, 102)
    interval = busy.twinx()
    interval.plot(
        seconds, [s["next_ms_p50"] for s in f.seconds], drawstyle="steps-post", color="#ff7f0e", label="median next_ms"
    )
    interval.set_ylabel("median next_ms (ms)", fontsize=8)
    interval.set_ylim(bottom=0)
    interval.legend(fontsize=7, loc="upper left")

    _plot_gauge(multiplier, seconds, _gauge(f, "danmaku_node_poll_multiplier"), "node gauge")
    _plot_gauge(multiplier, seconds, _gauge(f, "danmaku_room_poll_multiplier"), "room gauge")
    multiplier.set_ylabel("poll multiplier (gauges)", fontsize=8)
    if not multiplier.lines:
        multiplier.annotate("the node exposed no poll multiplier", (0.01, 0.5), xycoords="axes fraction", fontsize=8)

    for axis in axes:
        axis.grid(alpha=0.3)
        if axis is not busy:
            axis.set_ylim(bottom=0)
        if axis.lines:
            axis.legend(fontsize=7, loc="upper right")
        if f.left:
            axis.axvline(f.leave_at_seconds, color="#d62728", linestyle=":", linewidth=1)
    if f.left:
        label = f"{f.left:,} viewers leave"
        polls.annotate(label, (f.leave_at_seconds, 0), fontsize=7, color="#d62728", rotation=90, va="bottom")
    axes[-1].set_xlabel("seconds from the start")
    figure.suptitle(
        f"crowd · {f.scenario} · {f.viewers:,} viewers · poll budget {_per_second(f.poll_budget, '')}"
        f" · egress budget {_per_second(f.egress_budget, ' B')} · {f.send_rate:g} comments/s",
        fontsize=10,
    )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
