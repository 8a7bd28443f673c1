"""PNG charts of the report with matplotlib (Agg backend, imported only here).

One PNG per metric (every repetition as a dot, the mean and its 95% CI per
scenario and leg) and one per scenario with its legs' time series.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from .charts import DASHES, direction_color
from .series import chart_metrics, leg_series, scale_of, scenario_order, strip_rows

__all__ = ["write_pngs"]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "scenario"


def _dash(pattern: str):
    return (0, tuple(float(x) for x in pattern.split())) if pattern else "solid"


def write_pngs(data: dict, directory: Path) -> list[str]:
    try:
        import matplotlib
    except ImportError:
        from ..errors import PrerequisiteError

        raise PrerequisiteError(
            "report --png needs matplotlib, an optional part of migflow", hint="pip install 'migflow[png]' (or pip install matplotlib)"
        ) from None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    for metric in chart_metrics(data):
        rows = strip_rows(data, metric)
        if not rows:
            continue
        title, unit, scale = scale_of(metric, data)
        labels = []
        for r in rows:
            if r["label"] not in labels:
                labels.append(r["label"])
        fig, ax = plt.subplots(figsize=(9, 0.75 + 0.62 * len(labels)), dpi=110)
        seen = set()
        for gi, label in enumerate(labels):
            grows = [r for r in rows if r["label"] == label]
            for j, r in enumerate(grows):
                y = gi + (j - (len(grows) - 1) / 2) * 0.3
                color = direction_color(r["direction"], j)
                xs = [v / scale for v, _ in r["values"]]
                leg_label = r["direction"] if r["direction"] not in seen else None
                seen.add(r["direction"])
                ax.scatter(xs, [y] * len(xs), s=28, color=color, edgecolor="white", linewidth=0.8, zorder=3, label=leg_label)
                if r.get("low") is not None and math.isfinite(r["low"]):
                    ax.plot(
                        [max(0, r["low"] / scale) if min(xs) >= 0 else r["low"] / scale, r["high"] / scale],
                        [y, y],
                        color=color,
                        alpha=0.5,
                        linewidth=2.5,
                        solid_capstyle="round",
                    )
                if r.get("mean") is not None:
                    ax.plot([r["mean"] / scale] * 2, [y - 0.12, y + 0.12], color=color, linewidth=2.5)
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        ax.invert_yaxis()
        if all(v >= 0 for r in rows for v, _ in r["values"]):
            ax.set_xlim(left=0)
        ax.set_xlabel(f"{title} ({unit})")
        ax.set_title(f"{data['workflow']}: {title} — dots: repetitions, bar: mean, line: 95% CI", fontsize=10)
        ax.grid(axis="x", color="#e6e9ef")
        ax.set_axisbelow(True)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        ax.legend(fontsize=8, loc="best", frameon=False)
        fig.tight_layout()
        path = directory / f"metric-{metric}.png"
        fig.savefig(path)
        plt.close(fig)
        written.append(str(path))

    series = leg_series(data)
    for sc in scenario_order(data):
        legs = [lg for lg in series.get(sc, []) if lg["samples"]]
        if not legs:
            continue
        reps = sorted({lg["repetition"] for lg in legs})
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.4), dpi=100)
        for ax, (key, title, unit) in zip(
            axes, (("remaining_mib", "Remaining RAM", "MiB"), ("mbps", "Throughput", "Mbit/s"), ("dirty_mibs", "Dirty rate", "MiB/s")), strict=True
        ):
            for lg in legs:
                pts = lg[key]
                color = direction_color(lg["direction"])
                if pts:
                    ax.plot(
                        [t / 1000 for t, _ in pts],
                        [v for _, v in pts],
                        color=color,
                        linestyle=_dash(DASHES[reps.index(lg["repetition"]) % len(DASHES)]),
                        linewidth=1.5,
                        label=f"{lg['direction']} rep {lg['repetition']}",
                    )
                for m in lg["iterations"]:
                    ax.axvline(m / 1000, ymax=0.05, color=color, linewidth=1.5)
            ax.set_title(f"{title} ({unit})", fontsize=10)
            ax.set_xlabel("s since the leg started", fontsize=8)
            ax.set_ylim(bottom=0)
            ax.grid(color="#e6e9ef")
            for side in ("top", "right"):
                ax.spines[side].set_visible(False)
        axes[0].legend(fontsize=7, frameon=False)
        fig.suptitle(f"{data['workflow']} · {sc}", fontsize=11)
        fig.tight_layout()
        path = directory / f"series-{_slug(sc)}.png"
        fig.savefig(path)
        plt.close(fig)
        written.append(str(path))
    return written
