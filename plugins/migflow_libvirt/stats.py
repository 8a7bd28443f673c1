"""libvirt job statistics -> QMP ``query-migrate`` shape, and libvirt's own clock.

libvirt reports the job of the source QEMU under its own names and units
(``memory_bps`` in bytes/s, ...).  Some of its fields are QEMU's numbers passed
through (``memory_*``, ``setup_time``, ``compression_*``,
``auto_converge_throttle``); others are libvirt's own measurements on its own
clock (libvirt 9.0, ``src/qemu/qemu_domainjob.c``):

* ``time_elapsed``: from the start of libvirt's migration job (Begin in
  managed-direct mode, Perform in p2p) to Confirm, so it includes starting
  the destination QEMU and the Finish/Confirm round trips;
* ``downtime`` of a completed job: from the source libvirtd handling QEMU's
  STOP event to the destination libvirtd resuming the guest (two hosts'
  clocks); while the job runs it is QEMU's ``expected-downtime``;
* ``time_elapsed_net``, ``downtime_net``: the same minus the measured
  transfer time between the hosts' libvirt daemons.

migflow stores QMP names with QMP values only: :func:`to_qmp` translates
the pass-through fields, and :func:`job_clock` keeps libvirt's own ones under
their own names (``job_time_elapsed`` ...).  QEMU's ``total-time`` and
final ``downtime`` are not in libvirt's statistics at all; the backend
captures them from QEMU itself (:mod:`.capture`) or leaves them NULL.
"""

from __future__ import annotations

from typing import Any

__all__ = ["JOB_CLOCK", "JOB_STATUS", "job_clock", "to_qmp"]

JOB_STATUS = {0: "none", 1: "active", 2: "active", 3: "completed", 4: "failed", 5: "cancelled"}

#: libvirt's own timing fields -> migrations columns (ms)
JOB_CLOCK = {
    "time_elapsed": "job_time_elapsed",
    "time_elapsed_net": "job_time_elapsed_net",
    "downtime": "job_downtime",
    "downtime_net": "job_downtime_net",
}
_RAM = {
    "memory_total": "total",
    "memory_processed": "transferred",
    "memory_remaining": "remaining",
    "memory_constant": "duplicate",
    "memory_normal": "normal",
    "memory_normal_bytes": "normal-bytes",
    "memory_iteration": "dirty-sync-count",
    "memory_page_size": "page-size",
    "memory_postcopy_requests": "postcopy-requests",
    "memory_dirty_rate": "dirty-pages-rate",
}
_XBZRLE = {
    "compression_cache": "cache-size",
    "compression_bytes": "bytes",
    "compression_pages": "pages",
    "compression_cache_misses": "cache-miss",
    "compression_overflow": "overflow",
}
#: libvirt's disk job statistics (NBD storage migration) under QMP-style names
#: (``disk_total``, ``disk_transferred``, ``disk_remaining``, ``disk_bps`` as columns)
_DISK = {
    "disk_total": "total",
    "disk_processed": "transferred",
    "disk_remaining": "remaining",
}


def to_qmp(job: dict[str, Any], *, completed: bool = False) -> dict[str, Any]:
    """Translate the QEMU values of a libvirt job-stats dict into QMP shape.

    libvirt's own clock (``time_elapsed``, the completed job's ``downtime``) is
    *not* translated: see :func:`job_clock`.  While the job runs, libvirt's
    ``downtime`` is QEMU's ``expected-downtime`` and is kept as such.  The raw
    dict is kept under ``"libvirt"``.
    """
    out: dict[str, Any] = {}
    jtype = job.get("type")
    if completed:
        out["status"] = "completed"
    elif jtype is not None:
        out["status"] = JOB_STATUS.get(jtype, str(jtype))
    if "setup_time" in job:
        out["setup-time"] = job["setup_time"]
    if "downtime" in job and not completed:
        out["expected-downtime"] = job["downtime"]
    ram = {name: job[key] for key, name in _RAM.items() if key in job}
    if "memory_bps" in job:
        ram["mbps"] = job["memory_bps"] * 8 / 1e6
    elif ram:
        # libvirt leaves memory_bps out when QEMU's ram.mbps is 0: QEMU updates it
        # every 100 ms, so a leg that ends within its first window reports 0.
        ram["mbps"] = 0.0
    if ram:
        out["ram"] = ram
    xb = {name: job[key] for key, name in _XBZRLE.items() if key in job}
    if xb:
        out["xbzrle-cache"] = xb
    disk = {name: job[key] for key, name in _DISK.items() if key in job}
    if "disk_bps" in job:
        disk["bps"] = job["disk_bps"]  # bytes/s, as libvirt measures it
    if disk:
        out["disk"] = disk
    if "auto_converge_throttle" in job:
        out["cpu-throttle-percentage"] = job["auto_converge_throttle"]
    out["libvirt"] = dict(job)
    return out


def job_clock(job: dict[str, Any]) -> dict[str, Any]:
    """libvirt's own timing fields of a *completed* job, under their column names."""
    return {column: job[key] for key, column in JOB_CLOCK.items() if key in job}
