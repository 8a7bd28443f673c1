"""Guest-observed pause: the lab guest's heartbeat, timed around each leg.

The lab guest writes a heartbeat byte every ``heartbeat_us`` to its serial
file, which both lab hosts append to (they share this machine's filesystem).
For every leg, the longest gap between heartbeats while the leg ran, minus the
nominal period, is how long the guest was really paused: stored as
``leg.extra["guest_pause_ms"]`` (column ``migrations.guest_pause_ms``) next
to QEMU's own ``downtime``, with the guest's reported dirty rate.
"""

from __future__ import annotations

import os
import time

from migflow.status import LegStatus, RunStatus

__all__ = ["leg_finished", "leg_started", "run_finished"]

#: after a leg, wait this long at most for the guest's heartbeat to resume
RESUME_WAIT_S = 2.0


def _monitor(ctx):
    mon = ctx.state.get("lab-heartbeat")
    if mon is None:
        path = (ctx.state.get("domain") or {}).get("serial_path")
        if not path:
            return None
        from .heartbeat import HeartbeatMonitor

        workload = ((ctx.scenario.domain or {}).get("create") or {}).get("workload") or {}
        mon = HeartbeatMonitor(path, period_us=int(workload.get("heartbeat_us", 1000))).start()
        ctx.state["lab-heartbeat"] = mon
    return mon


def leg_started(ctx, leg) -> None:
    if _monitor(ctx) is not None:
        leg.backend_state["heartbeat_t0"] = time.monotonic()


def leg_finished(ctx, leg) -> None:
    mon = ctx.state.get("lab-heartbeat")
    t0 = leg.backend_state.get("heartbeat_t0")
    if mon is None or t0 is None:
        return
    t1 = time.monotonic()
    if leg.status == LegStatus.COMPLETED:
        # The gap that matters ends with the first heartbeat from the destination.
        deadline = t1 + RESUME_WAIT_S
        while time.monotonic() < deadline and (mon.last_heartbeat() or 0) <= t1:
            time.sleep(0.005)
    pause = mon.guest_pause_ms(t0, time.monotonic())
    if pause is not None:
        leg.extra["guest_pause_ms"] = round(pause, 3)
    rate = mon.dirty_rate_mibs()
    if rate is not None:
        leg.extra["guest_dirty_rate_mibs"] = rate


def run_finished(ctx) -> None:
    mon = ctx.state.pop("lab-heartbeat", None)
    if mon is not None:
        mon.stop()
    domain = ctx.state.get("domain") or {}
    path = domain.get("serial_path")
    if path and domain.get("created") and ctx.status != RunStatus.LOST:
        # the guest is gone (restore removed it): so is its heartbeat log
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
