"""A crowd run's timeline as a PNG: a spike is visible at a glance."""

from __future__ import annotations

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
