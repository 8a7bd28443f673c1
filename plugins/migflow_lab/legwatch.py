"""Around each leg on the lab: the network probe of a guest with a NIC, and the QEMU processes' CPU time.

Both need the lab's hosts to be on this machine (the VM network's probe
address, /proc); for other hosts the columns stay NULL.  See
:mod:`.netprobe` and :mod:`.qemucpu`.
"""

from __future__ import annotations

import time

from .netprobe import EchoProbe
from .qemucpu import CpuWatch
from .topology import VM_PROBE_ADDRESS, is_lab_uri

__all__ = ["leg_finished", "leg_started", "sample_cpu"]

#: before a leg, wait this long at most for the guest to answer probes
ANSWER_WAIT_S = 10.0
#: after a leg, wait this long at most for answers to resume
RESUME_WAIT_S = 5.0


def _domain(ctx, leg) -> dict:
    return leg.domain or ctx.state.get("domain") or {}


def leg_started(ctx, leg) -> None:
    if not (is_lab_uri(leg.source) and is_lab_uri(leg.destination)):
        return
    d = _domain(ctx, leg)
    if d.get("uuid"):
        leg.backend_state["cpu"] = CpuWatch(d["uuid"]).start()
    if d.get("address") and d.get("echo_port"):
        probe = EchoProbe(d["address"], int(d["echo_port"]), source=VM_PROBE_ADDRESS).start()
        t = time.monotonic()
        deadline = t + ANSWER_WAIT_S
        while not probe.answered_since(t) and time.monotonic() < deadline:
            time.sleep(0.01)
        leg.extra["net_answered_before"] = probe.answered_since(t)
        leg.backend_state["probe"] = probe
        leg.backend_state["probe_t0"] = time.monotonic()


def sample_cpu(ctx, leg, sample) -> None:
    """Add the QEMU processes' CPU time so far to a statistics sample (samples columns)."""
    watch = leg.backend_state.get("cpu")
    if watch is not None and isinstance(sample.stats, dict):
        sample.stats["host-cpu"] = watch.used()


def leg_finished(ctx, leg) -> None:
    watch = leg.backend_state.pop("cpu", None)
    if watch is not None:
        watch.stop()
        leg.extra.update(watch.used())
    probe = leg.backend_state.pop("probe", None)
    if probe is None:
        return
    t1 = time.monotonic()
    deadline = t1 + RESUME_WAIT_S
    while not probe.answered_since(t1) and time.monotonic() < deadline:
        time.sleep(0.005)
    probe.stop()
    leg.extra["net_answered_after"] = probe.answered_since(t1)
    leg.extra.update(probe.summary(leg.backend_state["probe_t0"], time.monotonic()))
