"""``collect-qmp``: final statistics per leg and a time series of samples.

``arm`` runs before the first step and switches on sampling; the observer
hooks (``migflow_leg_progress``/``migflow_leg_finished``) buffer samples and
write each leg's statistics as soon as it ends, so a run killed later keeps
them.  The step's own position in the workflow only checks and summarises.
"""

from __future__ import annotations

import threading

from migflow.errors import StepError
from migflow.legs import flatten_stats

__all__ = ["arm", "run", "on_progress", "on_finished", "STAT_COLUMNS", "sample_row"]

#: migrations columns filled from the final statistics (flattened QMP names)
STAT_COLUMNS = (
    "setup_time",
    "downtime",
    "total_time",
    "expected_downtime",
    "ram_total",
    "ram_transferred",
    "ram_remaining",
    "ram_mbps",
    "ram_duplicate",
    "ram_skipped",
    "ram_normal",
    "ram_normal_bytes",
    "ram_dirty_sync_count",
    "ram_page_size",
    "ram_postcopy_requests",
    "ram_dirty_pages_rate",
    "xbzrle_cache_cache_size",
    "xbzrle_cache_bytes",
    "xbzrle_cache_pages",
    "xbzrle_cache_cache_miss",
    "xbzrle_cache_cache_miss_rate",
    "xbzrle_cache_encoding_rate",
    "xbzrle_cache_overflow",
    "cpu_throttle_percentage",
)
#: leg.extra keys stored in their own migrations columns
EXTRA_COLUMNS = ("guest_pause_ms", "guest_dirty_rate_mibs")


class _State:
    def __init__(self, interval_ms: float, iteration_samples: bool):
        self.interval_ms = interval_ms
        self.iteration_samples = iteration_samples
        self.samples: dict[int, list[dict]] = {}
        self.lock = threading.Lock()
        self.written: dict[int, int] = {}


def arm(ctx, options: dict) -> None:
    st = _State(options.get("interval_ms", 100), options.get("iteration_samples", True))
    ctx.state["collect-qmp"] = st
    ctx.poll_interval_ms = st.interval_ms


def sample_row(leg_number: int, ms: float, kind: str, stats: dict) -> dict:
    ram = stats.get("ram") or {}
    return {
        "leg": leg_number,
        "ms": round(ms, 3),
        "kind": kind,
        "status": stats.get("status"),
        "transferred": ram.get("transferred"),
        "remaining": ram.get("remaining"),
        "total": ram.get("total"),
        "mbps": ram.get("mbps"),
        "dirty_pages_rate": ram.get("dirty-pages-rate"),
        "iteration": ram.get("dirty-sync-count"),
        "throttle": stats.get("cpu-throttle-percentage"),
        "expected_downtime": stats.get("expected-downtime"),
    }


def on_progress(ctx, leg, sample) -> None:
    st = ctx.state.get("collect-qmp")
    if st is None or (sample.kind == "iteration" and not st.iteration_samples):
        return
    with st.lock:
        st.samples.setdefault(leg.number, []).append(sample_row(leg.number, sample.ms, sample.kind, sample.stats))


def on_finished(ctx, leg) -> None:
    st = ctx.state.get("collect-qmp")
    if st is None:
        return
    row: dict = {"leg": leg.number}
    if leg.final_stats:
        flat = flatten_stats(leg.final_stats)
        row.update({k: flat[k] for k in STAT_COLUMNS if k in flat})
        row["stats"] = leg.final_stats
    row.update({k: leg.extra[k] for k in EXTRA_COLUMNS if leg.extra.get(k) is not None})
    other = {k: v for k, v in leg.extra.items() if k not in EXTRA_COLUMNS}
    if other:
        row["extra"] = other
    with st.lock:
        rows = st.samples.pop(leg.number, [])
    # De-duplicate on the samples key (ms, kind) as the table's primary key demands.
    seen, unique = set(), []
    for r in rows:
        key = (r["ms"], r["kind"])
        if key not in seen:
            seen.add(key)
            unique.append(r)
    st.written[leg.number] = len(unique)
    ctx.recorder.add_leg(row)
    if unique:
        ctx.recorder.add_samples(unique)
    ctx.recorder.flush()


def run(ctx, options: dict) -> dict:
    st = ctx.state.get("collect-qmp")
    if st is None:  # pragma: no cover - arm always runs first
        raise StepError("collect-qmp was not armed")
    missing = [leg.number for leg in ctx.legs if leg.status == "completed" and not leg.final_stats]
    summary = {
        "legs": [{"leg": leg.number, "status": leg.status, "samples": st.written.get(leg.number, 0), "final_stats": bool(leg.final_stats)} for leg in ctx.legs]
    }
    if missing:
        raise StepError(f"the backend reported no final statistics for completed leg(s) {missing}")
    return summary
