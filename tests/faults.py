"""Fault injection for tests/test_failures.py, loaded into a real ``migflow run``
with ``MIGFLOW_PLUGIN_MODULES=faults`` (tests/ on PYTHONPATH).

``MIGFLOW_FAULT`` names the fault; it fires once, on leg 1, from the leg
observer hook (the sampling thread), as soon as the migration is really moving
(``iteration`` events for ``abort``, else a few MiB transferred; for the
``-in-postcopy`` faults, a second after migflow asked for the switch).  It writes
``MIGFLOW_FAULT_MARK`` so the test knows it fired.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

from migflow.hookspecs import hookimpl

_lock = threading.Lock()
_fired = False
TRIGGER_BYTES = 2 * 2**20
POSTCOPY_DELAY_S = 1.0


def _act(fault: str, ctx, leg) -> None:
    from migflow_lab import api as hosts

    if fault == "abort":
        import libvirt

        conn = libvirt.open(leg.source)  # an administrator's own connection, as `virsh domjobabort` would
        conn.lookupByUUIDString(ctx.state["domain"]["uuid"]).abortJob()
        conn.close()
    elif fault == "kill-dst-libvirtd":
        os.kill(hosts.libvirtd_pid("mflab-b"), signal.SIGKILL)
    elif fault in ("kill-dst-qemu", "kill-src-qemu", "kill-dst-qemu-in-postcopy"):
        # only this run's guest: the lab may host other runs' guests meanwhile
        from migflow_lab.qemucpu import qemu_pids_of

        pids = qemu_pids_of(ctx.state["domain"]["uuid"])  # oldest first: the source, then the incoming destination
        assert len(pids) == 2, pids
        os.kill(pids[0] if fault == "kill-src-qemu" else pids[-1], signal.SIGKILL)
    elif fault == "cut-link":
        subprocess.run(["ip", "link", "set", "mflab-b-br", "down"], check=True)
    elif fault == "kill-self":
        _mark(fault)
        os.kill(os.getpid(), signal.SIGKILL)
    elif fault == "sigint-self":
        os.kill(os.getpid(), signal.SIGINT)
    else:
        raise ValueError(f"unknown MIGFLOW_FAULT {fault!r}")


def _mark(fault: str) -> None:
    path = os.environ.get("MIGFLOW_FAULT_MARK")
    if path:
        with open(path, "a") as f:
            f.write(f"{fault} {time.time()}\n")


@hookimpl
def migflow_leg_progress(ctx, leg, sample):
    global _fired
    fault = os.environ.get("MIGFLOW_FAULT")
    if not fault or leg.number != 1:
        return
    transferred = (sample.stats.get("ram") or {}).get("transferred") or 0
    if fault == "abort" and sample.kind != "iteration" and transferred < TRIGGER_BYTES * 2:
        return
    if fault != "abort" and transferred < TRIGGER_BYTES:
        return
    if fault.endswith("-in-postcopy"):
        if sample.kind != "postcopy":
            return  # only the sample taken when migflow asked for the switch
        time.sleep(POSTCOPY_DELAY_S)  # QEMU has switched: the guest runs on the destination, part of its memory still on the source
    with _lock:
        if _fired:
            return
        _fired = True
    _mark(fault)
    _act(fault, ctx, leg)
