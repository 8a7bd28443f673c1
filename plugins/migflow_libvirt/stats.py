"""libvirt job statistics -> QMP ``query-migrate`` shape.

libvirt reports the job of the source QEMU under its own names and units
(``memory_bps`` in bytes/s, ...).  migflow stores QMP names and units, so
the mapping lives here (see docs/results.md).
"""

from __future__ import annotations

__all__ = ["JOB_STATUS", "to_qmp"]

JOB_STATUS = {0: "none", 1: "active", 2: "active", 3: "completed", 4: "failed", 5: "cancelled"}

_TOP = {"time_elapsed": "total-time", "downtime": "downtime", "setup_time": "setup-time"}
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


def to_qmp(job: dict, *, completed: bool = False) -> dict:
    """Translate a libvirt job-stats dict; the raw dict is kept under ``"libvirt"``."""
    out: dict = {}
    jtype = job.get("type")
    if completed:
        out["status"] = "completed"
    elif jtype is not None:
        out["status"] = JOB_STATUS.get(jtype, str(jtype))
    for key, name in _TOP.items():
        if key in job:
            out[name] = job[key]
    if "downtime" in job and not completed:
        out["expected-downtime"] = out.pop("downtime")
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
    if "auto_converge_throttle" in job:
        out["cpu-throttle-percentage"] = job["auto_converge_throttle"]
    out["libvirt"] = dict(job)
    return out
