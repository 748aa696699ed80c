"""The results as a PNG: throughput and p99 latency, one bar per load run."""

from __future__ import annotations

from pathlib import Path

from bench.pullbench.suite import Result

# One colour per kind of thing served, the same in both panels.
COLORS = {
    "fast": "#1f77b4",
    "ninja": "#9467bd",
    "bare": "#7f7f7f",
    "nginx-cache": "#2ca02c",
    "nginx-static": "#98df8a",
}


def write_png(results: list[Result], path: Path, *, title: str) -> None:
    import matplotlib

    # No display on a server; Agg renders straight to the file.
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.patches import Patch

    labels = [f"{r.scenario} · {r.server} · {r.app} · c{r.connections}" for r in results]
    colors = [COLORS.get(r.app, "#d62728") for r in results]
    positions = list(range(len(results)))[::-1]
    height = max(2.5, 0.32 * len(results) + 1.2)
    figure, (throughput, latency) = plt.subplots(
        1, 2, figsize=(14, height), sharey=True, gridspec_kw={"width_ratios": [3, 2]}
    )
    throughput.barh(positions, [r.rps for r in results], color=colors)
    throughput.set_yticks(positions, labels, fontsize=8)
    throughput.set_xlabel("requests per second")
    for position, result in zip(positions, results, strict=True):
        note = f" {result.rps:,.0f}" + (f"  ({result.ratio:.2f}x)" if result.ratio is not None else "")
        throughput.text(result.rps, position, note, va="center", fontsize=7)
    throughput.margins(x=0.25)
    latency.barh(positions, [r.p99_ms for r in results], color=colors)
    latency.set_xlabel("p99 latency (ms)")
    for position, result in zip(positions, results, strict=True):
        latency.text(result.p99_ms, position, f" {result.p99_ms:.1f}", va="center", fontsize=7)
    latency.margins(x=0.2)
    used = [app for app in COLORS if any(r.app == app for r in results)]
    # Above the panels: inside them it would cover a bar.
    figure.legend(
        handles=[Patch(color=COLORS[app], label=app) for app in used],
        loc="upper right",
        bbox_to_anchor=(0.985, 1.0),
        ncol=len(used),
        fontsize=8,
        frameon=False,
    )
    figure.suptitle(title, fontsize=10, x=0.02, ha="left")
    figure.tight_layout(rect=(0, 0, 1, 1 - 0.5 / height))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
