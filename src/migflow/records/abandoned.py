"""A run whose migflow process died is abandoned, and says so everywhere.

The one rule, used when spools are ingested and when ``migflow run`` or
``migflow recover`` reconciles at start: a spooled run still marked
``running`` whose process is gone on this machine (PID and start time, see
:mod:`migflow.procs`) becomes ``abandoned``, and so do its legs and steps
that were still ``running``.  A run recorded on another machine is never
judged from here.
"""

from __future__ import annotations

from ..procs import process_alive
from ..status import LegStatus, RunStatus, StepStatus

__all__ = ["abandon", "owner_is_dead"]


def owner_is_dead(data: dict) -> bool:
    """Is ``data`` (a spool) a ``running`` run whose migflow process is gone from this machine?"""
    run = data.get("run") or {}
    if run.get("status") != RunStatus.RUNNING:
        return False
    return process_alive(run.get("pid"), data.get("pid_start"), run.get("hostname")) is False


def abandon(data: dict, note: str, ended_at: str | None) -> None:
    """Mark the spooled run, its running legs and its running steps ``abandoned`` (in place).

    :param note: why, for ``runs.error`` (legs and steps get it too, where they have no error).
    :param ended_at: when it ended, as far as anyone knows (the spool's last write).
    """
    run = data["run"]
    run["status"] = RunStatus.ABANDONED.value
    run["error"] = note
    run["ended_at"] = run.get("ended_at") or ended_at
    for leg in data.get("migrations") or []:
        if leg.get("status") == LegStatus.RUNNING:
            leg["status"] = LegStatus.ABANDONED.value
            leg["error"] = leg.get("error") or note
            leg["ended_at"] = leg.get("ended_at") or ended_at
    for step in data.get("steps") or []:
        if step.get("status") == StepStatus.RUNNING:
            step["status"] = StepStatus.ABANDONED.value
            step["error"] = step.get("error") or note
