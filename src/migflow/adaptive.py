"""Adaptive repetitions: repeat a scenario until its numbers are precise enough.

A workflow with an ``[adaptive]`` table runs every scenario ``repetitions``
times (the minimum, interleaved as usual), then keeps adding rounds for the
scenarios whose 95% confidence interval of ``metric`` is still wider than
``ci_width`` times its mean, up to ``max_repetitions``.  Each direction of a
round trip (there, back) is judged on its own and must satisfy the rule.  A
scenario whose legs give no value (every leg failed) stops: more runs would
not help.  The rule and the reason for every extra run are recorded in
``runs.extra.adaptive``; docs/statistics.md explains the statistics and
their limits (stopping on a CI that happens to be narrow biases it a little
low; a minimum of 3 to 5 keeps that small).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from .legs import Leg, flatten_stats
from .statistics import mean_ci

__all__ = ["METRICS", "AdaptiveRule", "leg_value"]

#: metric -> where a leg's value comes from (a statistics column, a measurement or the wall time)
METRICS = {
    "total_time": "total_time",
    "downtime": "downtime",
    "setup_time": "setup_time",
    "ram_transferred": "ram_transferred",
    "ram_mbps": "ram_mbps",
    "iterations": "ram_dirty_sync_count",
    "guest_pause_ms": "guest_pause_ms",
    "wall_ms": "wall_ms",
    "job_time_elapsed": "job_time_elapsed",
    "wall_before_qemu_ms": "wall_before_qemu_ms",
    "wall_qemu_ms": "wall_qemu_ms",
    "wall_after_qemu_ms": "wall_after_qemu_ms",
}


def leg_value(leg: Leg, metric: str) -> float | None:
    """The value of ``metric`` for a completed leg, or None."""
    if leg.status != "completed":
        return None
    key = METRICS[metric]
    if key == "wall_ms":
        return leg.wall_ms
    value = flatten_stats(leg.final_stats or {}).get(key, leg.extra.get(key))
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


@dataclass
class AdaptiveRule:
    """``[adaptive]`` of a workflow.

    :param metric: one of :data:`METRICS`.
    :param ci_width: stop when (CI high - CI low) / mean is at most this (0.1 = 10%).
    :param minimum: runs of each scenario before the rule is applied (the workflow's ``repetitions``).
    :param maximum: never more runs than this per scenario.
    """

    metric: str
    ci_width: float
    minimum: int
    maximum: int
    values: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # scenario -> direction -> values
    runs: dict[str, int] = field(default_factory=dict)  # scenario -> runs so far

    @classmethod
    def of(cls, workflow: Any) -> AdaptiveRule | None:
        """The rule of a workflow's ``[adaptive]`` table, or None without one."""
        table = getattr(workflow, "adaptive", None)
        if not table:
            return None
        return cls(table["metric"], float(table["ci_width"]), int(workflow.repetitions), int(table["max_repetitions"]))

    def as_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "ci_width": self.ci_width, "min": self.minimum, "max": self.maximum}

    def add(self, scenario: str, directions: list[tuple[str, float | None]]) -> None:
        """Record one run of ``scenario``: ``(direction, value)`` per leg."""
        self.runs[scenario] = self.runs.get(scenario, 0) + 1
        per = self.values.setdefault(scenario, {})
        for direction, value in directions:
            per.setdefault(direction, [])
            if value is not None and math.isfinite(value):
                per[direction].append(value)

    def widths(self, scenario: str) -> dict[str, float]:
        """Relative CI width per direction (inf while it cannot be computed)."""
        out = {}
        for direction, xs in self.values.get(scenario, {}).items():
            if len(xs) < 2:
                out[direction] = math.inf
                continue
            mean, low, high = mean_ci(xs)
            out[direction] = (high - low) / abs(mean) if mean else (0.0 if high == low else math.inf)
        return out

    def decision(self, scenario: str) -> tuple[bool, str]:
        """(run again?, why) for a scenario that ran at least the minimum."""
        n = self.runs.get(scenario, 0)
        if n < self.minimum:
            return True, f"minimum of {self.minimum} runs not reached ({n})"
        if not any(self.values.get(scenario, {}).values()):
            return False, f"no completed leg gave a {self.metric} value in {n} runs"
        widths = self.widths(scenario)
        wide = {d: w for d, w in widths.items() if w > self.ci_width}
        shown = ", ".join(f"{d} {_pct(w)}" for d, w in sorted(widths.items()))
        if not wide:
            return False, f"converged after {n} runs: 95% CI width / mean of {self.metric} {shown} <= {_pct(self.ci_width)}"
        if n >= self.maximum:
            return False, f"maximum of {self.maximum} runs reached: 95% CI width / mean of {self.metric} {shown} > {_pct(self.ci_width)}"
        return True, f"after {n} runs the 95% CI of {self.metric} is still too wide ({shown} > {_pct(self.ci_width)})"


def _pct(x: float) -> str:
    return "n/a" if math.isinf(x) else f"{x * 100:.1f}%"
