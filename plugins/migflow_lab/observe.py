"""The guest's own view, from its heartbeat: pause, dirty rate, steady state, memory check.

The lab guest writes a heartbeat byte every ``heartbeat_us`` to its serial
file, which both lab hosts append to (they share this machine's filesystem),
and a status line about once a second.  For every leg:

* the longest gap between heartbeats while the leg ran, minus the nominal
  period, is how long the guest was really paused: ``guest_pause_ms`` next to
  QEMU's own ``downtime``, with the guest's reported dirty rate;
* the guest checks its whole working set continuously (``ver`` passes done,
  ``bad`` pages found wrong since boot); after the leg, once two more passes
  completed on the destination, ``memory_verified`` says whether any page was
  found wrong since the leg started.

Before the first leg, ``prepare-domain`` waits for the guest's ``#steady``
announcement (working set written once, dirty rate settled): :func:`wait_steady`.
"""

from __future__ import annotations

import os
import time

from migflow.errors import StepError
from migflow.status import LegStatus, RunStatus

__all__ = ["leg_finished", "leg_started", "run_finished", "wait_steady"]

#: after a leg, wait this long at most for the guest's heartbeat to resume
RESUME_WAIT_S = 2.0
#: after a leg, wait at most this long plus twice a pass's time at the rates below (with
#: room for a slow TCG vCPU) for two more memory verification passes / disk checker passes
VERIFY_WAIT_S = 5.0
VERIFY_MIBS = 50.0  # the guests check 32 pages a millisecond (125 MiB/s): a third of that at worst
DISK_VERIFY_MIBS = 4.0  # the disk checker reads 8 MiB/s: half of that at worst


def _domains(ctx) -> list[dict]:
    return ctx.state.get("domains") or ([ctx.state["domain"]] if ctx.state.get("domain") else [])


def _monitor(ctx, domain: dict | None):
    """The heartbeat monitor of one guest (started on first use), or None for a guest without one."""
    path = (domain or {}).get("serial_path")
    if not path:
        return None
    monitors = ctx.state.setdefault("lab-heartbeat", {})
    mon = monitors.get(path)
    if mon is None:
        from .heartbeat import HeartbeatMonitor

        workload = ((ctx.scenario.domain or {}).get("create") or {}).get("workload") or {}
        mon = monitors[path] = HeartbeatMonitor(path, period_us=int(workload.get("heartbeat_us", 1000))).start()
    return mon


def wait_steady(ctx, timeout_s: float) -> dict | None:
    """Block until every guest announced its steady state; None when no guest has a heartbeat.

    With several guests the answer is the slowest one's time and the lowest rate."""
    deadline = time.monotonic() + timeout_s
    seen = []
    for domain in _domains(ctx):
        mon = _monitor(ctx, domain)
        if mon is None:
            return None
        while mon.steady is None:
            if time.monotonic() > deadline:
                last = mon.lines[-1] if mon.lines else "nothing"
                raise StepError(
                    f"guest {domain.get('name', '?')!r} did not announce a steady state within {timeout_s:g} s (its last status line: {last!r})",
                    hint="a dirty rate the vCPU cannot reach never settles: lower dirty_rate_mibs or working_set_mib, "
                    "raise steady_timeout_s, or set wait_steady = false in prepare-domain",
                )
            time.sleep(0.02)
        seen.append(mon.steady)
    if not seen:
        return None
    return {"after_ms": max(s.get("t_ms") or 0 for s in seen), "dirty_rate_mibs": min(s.get("rate") or 0 for s in seen)}


def leg_started(ctx, leg) -> None:
    mon = _monitor(ctx, leg.domain or ctx.state.get("domain"))
    if mon is not None:
        leg.backend_state["heartbeat_t0"] = time.monotonic()
        leg.backend_state["verification_t0"] = mon.verification()
        leg.backend_state["disk_verification_t0"] = mon.disk_verification()


def _verified(read, before: tuple[int, int] | None, wait_s: float = VERIFY_WAIT_S) -> bool | None:
    """Two more checking passes completed: was nothing found wrong since ``before``?

    ``read()`` gives the guest's latest (passes, wrong) figures; None when the
    guest does not check, or no two passes came within ``wait_s``."""
    now = read()
    if before is None or now is None:
        return None
    deadline = time.monotonic() + wait_s
    while (read() or now)[0] < now[0] + 2:
        if time.monotonic() > deadline:
            return None
        time.sleep(0.01)
    after = read()
    return after is not None and after[1] == before[1]


def leg_finished(ctx, leg) -> None:
    mon = _monitor(ctx, leg.domain or ctx.state.get("domain"))
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
    ws_mib = float((mon.status or {}).get("ws") or 0)
    verified = _verified(mon.verification, leg.backend_state.get("verification_t0"), VERIFY_WAIT_S + 2 * ws_mib / VERIFY_MIBS)
    if verified is not None:
        leg.extra["memory_verified"] = verified
    # the disk writer checks its area a slice a second: a pass takes longer than one over memory
    disk_mib = float((leg.domain or ctx.state.get("domain") or {}).get("disk_mib") or 0)
    disk = _verified(mon.disk_verification, leg.backend_state.get("disk_verification_t0"), VERIFY_WAIT_S + 2 * disk_mib / DISK_VERIFY_MIBS)
    if disk is not None:
        leg.extra["disk_verified"] = disk


def run_finished(ctx) -> None:
    for mon in (ctx.state.pop("lab-heartbeat", None) or {}).values():
        mon.stop()
    if ctx.status == RunStatus.LOST:
        return  # keep the heartbeat logs of a lost guest
    for domain in _domains(ctx):
        path = domain.get("serial_path")
        if path and domain.get("created"):
            # the guest is gone (restore removed it): so is its heartbeat log
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
