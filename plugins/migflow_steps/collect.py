"""``collect-qmp``: final statistics per leg and a time series of samples.

``arm`` runs before the first step and switches on sampling; the observer
hooks (``migflow_leg_progress``/``migflow_leg_finished``) buffer samples and
write each leg's statistics as soon as it ends, so a run killed later keeps
them.  The step's own position in the workflow only checks and summarises.
"""

from __future__ import annotations

import threading

from migflow.errors import StepError
from migflow.records import sample_from_stats
from migflow.status import LegStatus

__all__ = ["arm", "on_finished", "on_progress", "run"]


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


def on_progress(ctx, leg, sample) -> None:
    st = ctx.state.get("collect-qmp")
    if st is None or (sample.kind == "iteration" and not st.iteration_samples):
        return
    with st.lock:
        st.samples.setdefault(leg.number, []).append(sample_from_stats(leg.number, round(sample.ms, 3), sample.stats, sample.kind))


def on_finished(ctx, leg) -> None:
    st = ctx.state.get("collect-qmp")
    if st is None:
        return
    row: dict = {"leg": leg.number, "extra": dict(leg.extra)}
    if leg.final_stats:
        row["stats"] = leg.final_stats
    with st.lock:
        samples = st.samples.pop(leg.number, [])
    if (leg.final_stats or {}).get("cpu-throttle-percentage") is None:
        # the last throttle QEMU reported while the leg ran (auto-converge): a
        # completed job's statistics may leave it out
        throttle = next((r["throttle"] for r in reversed(samples) if r.get("throttle") is not None), None)
        if throttle is not None:
            row["cpu_throttle_percentage"] = throttle
    ctx.recorder.add_leg(row)
    ctx.recorder.add_samples(samples)
    st.written[leg.number] = ctx.recorder.sample_count(leg.number)
    ctx.recorder.flush()


def run(ctx, options: dict) -> dict:
    st = ctx.state.get("collect-qmp")
    if st is None:  # pragma: no cover - arm always runs first
        raise StepError("collect-qmp was not armed")
    # an offline leg moves the definition only: there are no migration statistics to miss
    missing = [leg.number for leg in ctx.legs if leg.status == LegStatus.COMPLETED and not leg.final_stats and "offline" not in leg.flags]
    summary = {
        "legs": [{"leg": leg.number, "status": leg.status, "samples": st.written.get(leg.number, 0), "final_stats": bool(leg.final_stats)} for leg in ctx.legs]
    }
    if missing:
        raise StepError(f"the backend reported no final statistics for completed leg(s) {missing}")
    return summary
