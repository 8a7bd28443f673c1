"""Shape the report's data: summary rows, strip-chart rows and per-leg time series.

Shared by the HTML report and the PNG charts; no SQL, no HTML here.
"""

from __future__ import annotations

from collections import defaultdict

from ..status import LegStatus

__all__ = ["CHART_METRICS", "SUMMARY_METRICS", "chart_metrics", "leg_series", "scale_of", "scenario_order", "strip_rows", "summary_rows"]

#: metric -> (column heading, display unit, divisor)
SCALES = {
    "total_time": ("Total time", "ms", 1.0),
    "downtime": ("Downtime", "ms", 1.0),
    "guest_pause_ms": ("Guest pause", "ms", 1.0),
    "ram_mbps": ("Throughput", "Mbit/s", 1.0),
    "ram_transferred": ("Transferred", "MiB", 2.0**20),
    "iterations": ("Iterations", "passes", 1.0),
    "wall_ms": ("Client wall time", "ms", 1.0),
    "link_efficiency": ("Link efficiency", "of the shaped rate", 1.0),
    "bytes_per_ram_byte": ("Bytes sent per byte of RAM", "ratio", 1.0),
}
SUMMARY_METRICS = ["total_time", "downtime", "guest_pause_ms", "ram_mbps", "ram_transferred", "iterations", "wall_ms", "link_efficiency"]
CHART_METRICS = list(SCALES)


def scale_of(metric: str, data: dict | None = None) -> tuple[str, str, float]:
    """(heading, display unit, divisor); a plugin's metric shows under its own name and unit."""
    if metric in SCALES:
        return SCALES[metric]
    unit = next((m.get("unit") or "" for m in (data or {}).get("metrics", []) if m["metric"] == metric), "")
    return (metric, unit, 1.0)


def chart_metrics(data: dict) -> list[str]:
    """migflow's charted measures, then every measure plugins recorded (table ``metrics``)."""
    return CHART_METRICS + [m["metric"] for m in data.get("metrics", []) if m.get("source") == "plugin"]


def scenario_order(data: dict) -> list[str]:
    return [s["scenario"] for s in data["scenarios"]]


def _directions(data: dict, scenario: str) -> list[tuple[int, str]]:
    seen: dict[int, str] = {}
    for leg in data["legs"]:
        if leg["scenario"] == scenario:
            seen.setdefault(leg["leg"], leg["direction"])
    return sorted(seen.items())


def summary_rows(data: dict) -> list[dict]:
    """One row per scenario and leg number: stats per metric, legs completed/total, errors."""
    stats = {(s["scenario"], s["leg"], s["metric"]): s for s in data["stats"]}
    out = []
    for sc in scenario_order(data):
        for leg_no, direction in _directions(data, sc):
            legs = [lg for lg in data["legs"] if lg["scenario"] == sc and lg["leg"] == leg_no]
            done = [lg for lg in legs if lg["status"] == LegStatus.COMPLETED]
            errors = sorted({f"{lg['status']}: {lg['error']}" for lg in legs if lg["status"] != LegStatus.COMPLETED and lg["error"]})
            out.append(
                {
                    "scenario": sc,
                    "leg": leg_no,
                    "direction": direction,
                    "modes": sorted({lg["mode"] for lg in legs if lg["mode"]}),
                    "completed": len(done),
                    "total": len(legs),
                    "repetitions": sorted({lg["repetition"] for lg in legs}),
                    "errors": errors,
                    "stats": {m: stats.get((sc, leg_no, m)) for m in CHART_METRICS},
                }
            )
    return out


def strip_rows(data: dict, metric: str) -> list[dict]:
    """Rows for :func:`migflow.report.charts.strip_chart` (values in raw units)."""
    stats = {(s["scenario"], s["leg"]): s for s in data["stats"] if s["metric"] == metric}
    col = "iterations" if metric == "iterations" else metric
    rows = []
    for sc in scenario_order(data):
        for leg_no, direction in _directions(data, sc):
            vals = []
            for lg in data["legs"]:
                if lg["scenario"] == sc and lg["leg"] == leg_no and lg["status"] == LegStatus.COMPLETED and lg.get(col) is not None:
                    vals.append((float(lg[col]), f"{sc} · {direction} · repetition {lg['repetition']} ({lg['run_id']}): {lg[col]:.6g}"))
            st = stats.get((sc, leg_no)) or {}
            if not vals:
                continue
            rows.append({"label": sc, "direction": direction, "values": vals, "mean": st.get("mean"), "low": st.get("ci95_low"), "high": st.get("ci95_high")})
    return rows


def leg_series(data: dict) -> dict[str, list[dict]]:
    """scenario -> legs, each ``{run_id, leg, direction, repetition, status, remaining_mib, mbps, dirty_mibs,
    iterations: [ms], mbps_derived: bool}``; points are (ms, value)."""
    by_leg: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for s in data["samples"]:
        by_leg[(s["run_id"], s["leg"])].append(s)
    out: dict[str, list[dict]] = defaultdict(list)
    for lg in data["legs"]:
        samples = sorted(by_leg.get((lg["run_id"], lg["leg"]), []), key=lambda s: s["ms"])
        page = data["page_size"].get((lg["run_id"], lg["leg"])) or 4096
        remaining, mbps, dirty, marks = [], [], [], []
        derived = not any(s["mbps"] is not None for s in samples)
        prev = None
        for s in samples:
            if s["kind"] == "iteration":
                marks.append(s["ms"])
            if s["remaining"] is not None and (s["total"] or s["transferred"]):
                remaining.append((s["ms"], s["remaining"] / 2**20))
            if s["dirty_pages_rate"] is not None:
                dirty.append((s["ms"], s["dirty_pages_rate"] * page / 2**20))
            if not derived and s["mbps"] is not None:
                mbps.append((s["ms"], s["mbps"]))
            elif derived and s["transferred"] is not None:
                if prev is not None and s["ms"] - prev["ms"] >= 20 and s["transferred"] >= prev["transferred"]:
                    rate = (s["transferred"] - prev["transferred"]) * 8 / ((s["ms"] - prev["ms"]) / 1000) / 1e6
                    mbps.append(((s["ms"] + prev["ms"]) / 2, rate))
                if prev is None or s["ms"] - prev["ms"] >= 20:
                    prev = s
        out[lg["scenario"]].append(
            {
                "run_id": lg["run_id"],
                "leg": lg["leg"],
                "direction": lg["direction"],
                "repetition": lg["repetition"],
                "status": lg["status"],
                "remaining_mib": remaining,
                "mbps": mbps,
                "dirty_mibs": dirty,
                "iterations": marks,
                "mbps_derived": derived,
                "samples": len(samples),
            }
        )
    return out
