"""libvirt job statistics -> QMP shape, and libvirt's own clock (plugins/migflow_libvirt/stats.py).

The dictionaries are in tests/data/libvirt_jobstats/ (see its README: captured
from migrations on the lab, ``lab_*.json``, and hand-written ones for the rest).  Every field
of ``to_qmp`` and ``job_clock`` is pinned: a wrong name, unit or value here
would put a wrong number in a QMP-named column.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from migflow_libvirt.stats import JOB_CLOCK, JOB_STATUS, job_clock, to_qmp

DATA = Path(__file__).resolve().parent / "data" / "libvirt_jobstats"

#: libvirt key -> (QMP section or None for the top level, QMP name), written out here on purpose
PASSED_THROUGH = {
    "setup_time": (None, "setup-time"),
    "memory_total": ("ram", "total"),
    "memory_processed": ("ram", "transferred"),
    "memory_remaining": ("ram", "remaining"),
    "memory_constant": ("ram", "duplicate"),
    "memory_normal": ("ram", "normal"),
    "memory_normal_bytes": ("ram", "normal-bytes"),
    "memory_iteration": ("ram", "dirty-sync-count"),
    "memory_page_size": ("ram", "page-size"),
    "memory_postcopy_requests": ("ram", "postcopy-requests"),
    "memory_dirty_rate": ("ram", "dirty-pages-rate"),
    "compression_cache": ("xbzrle-cache", "cache-size"),
    "compression_bytes": ("xbzrle-cache", "bytes"),
    "compression_pages": ("xbzrle-cache", "pages"),
    "compression_cache_misses": ("xbzrle-cache", "cache-miss"),
    "compression_overflow": ("xbzrle-cache", "overflow"),
    "disk_total": ("disk", "total"),
    "disk_processed": ("disk", "transferred"),
    "disk_remaining": ("disk", "remaining"),
    "disk_bps": ("disk", "bps"),
    "auto_converge_throttle": (None, "cpu-throttle-percentage"),
}
CLOCK = {"time_elapsed": "job_time_elapsed", "time_elapsed_net": "job_time_elapsed_net", "downtime": "job_downtime", "downtime_net": "job_downtime_net"}


def load(name: str) -> dict:
    return json.loads((DATA / f"{name}.json").read_text())


def test_a_completed_precopy_job():
    job = load("completed_precopy")["job"]
    assert to_qmp(job, completed=True) == {
        "status": "completed",
        "setup-time": 12,
        "ram": {
            "total": 2148278272,
            "transferred": 654321098,
            "remaining": 0,
            "duplicate": 365012,
            "normal": 159004,
            "normal-bytes": 651280384,
            "dirty-sync-count": 4,
            "page-size": 4096,
            "postcopy-requests": 0,
            "dirty-pages-rate": 1250,
            "mbps": 943.7184,  # 117964800 bytes/s
        },
        "disk": {"total": 0, "transferred": 0, "remaining": 0},
        "libvirt": job,
    }
    assert job_clock(job) == {"job_time_elapsed": 6123, "job_time_elapsed_net": 6101, "job_downtime": 187, "job_downtime_net": 165}


def test_a_completed_job_with_xbzrle_and_auto_converge():
    job = load("completed_xbzrle_autoconverge")["job"]
    out = to_qmp(job, completed=True)
    assert out["xbzrle-cache"] == {"cache-size": 67108864, "bytes": 13934592, "pages": 18211, "cache-miss": 40233, "overflow": 17}
    assert out["cpu-throttle-percentage"] == 40
    assert out["ram"]["mbps"] == 973.078528  # 121634816 bytes/s
    assert out["ram"]["dirty-pages-rate"] == 24812 and out["ram"]["dirty-sync-count"] == 11
    assert "disk" not in out and "expected-downtime" not in out and "downtime" not in out
    assert sorted(out) == ["cpu-throttle-percentage", "libvirt", "ram", "setup-time", "status", "xbzrle-cache"]
    assert job_clock(job) == {"job_time_elapsed": 18450, "job_time_elapsed_net": 18422, "job_downtime": 301, "job_downtime_net": 279}


def test_a_storage_migration_keeps_libvirts_disk_rate_in_bytes():
    job = load("completed_storage")["job"]
    out = to_qmp(job, completed=True)
    assert out["disk"] == {"total": 10737418240, "transferred": 10737418240, "remaining": 0, "bps": 112197632}
    assert out["ram"]["mbps"] == 931.135488  # memory_bps is converted, disk_bps is not


def test_a_running_job_reports_expected_downtime_and_no_clock_of_its_own():
    job = load("running")["job"]
    assert to_qmp(job) == {
        "status": "active",
        "setup-time": 12,
        "expected-downtime": 300,  # libvirt's downtime while the job runs is QEMU's estimate
        "ram": {
            "total": 2148278272,
            "transferred": 281018368,
            "remaining": 1712533504,
            "duplicate": 37120,
            "normal": 68220,
            "normal-bytes": 279429120,
            "dirty-sync-count": 1,
            "page-size": 4096,
            "postcopy-requests": 0,
            "dirty-pages-rate": 0,
            "mbps": 939.524096,
        },
        "disk": {"total": 0, "transferred": 0, "remaining": 0},
        "libvirt": job,
    }


def test_no_memory_bps_means_a_rate_of_zero_not_a_missing_one():
    job = load("completed_within_first_window")["job"]
    out = to_qmp(job, completed=True)
    assert out["ram"]["mbps"] == 0.0 and out["ram"]["transferred"] == 5275648
    assert to_qmp({"type": 2}) == {"status": "active", "libvirt": {"type": 2}}  # no memory figures: no ram at all
    assert to_qmp({"memory_bps": 1000000}) == {"ram": {"mbps": 8.0}, "libvirt": {"memory_bps": 1000000}}


@pytest.mark.parametrize(("jtype", "status"), [(0, "none"), (1, "active"), (2, "active"), (3, "completed"), (4, "failed"), (5, "cancelled"), (9, "9")])
def test_the_job_type_is_the_status(jtype, status):
    assert to_qmp({"type": jtype})["status"] == status
    assert JOB_STATUS.get(jtype, str(jtype)) == status


def test_completed_wins_over_the_job_type_and_a_missing_type_gives_no_status():
    assert to_qmp({"type": 2, "downtime": 55}, completed=True) == {"status": "completed", "libvirt": {"type": 2, "downtime": 55}}
    assert to_qmp({"downtime": 55}) == {"expected-downtime": 55, "libvirt": {"downtime": 55}}


def test_the_raw_dictionary_is_kept_as_a_copy():
    job = load("completed_precopy")["job"]
    out = to_qmp(job, completed=True)
    out["libvirt"]["memory_total"] = -1
    assert job["memory_total"] == 2148278272


def test_job_clock_takes_only_libvirts_own_timing():
    assert JOB_CLOCK == CLOCK
    assert job_clock({"time_elapsed": 5, "setup_time": 3, "memory_total": 1}) == {"job_time_elapsed": 5}
    assert job_clock({}) == {}


@pytest.mark.parametrize("name", sorted(p.stem for p in DATA.glob("*.json")))
def test_every_recorded_dictionary_translates_field_by_field(name):
    """Each file (hand-written or captured): every pass-through field lands under its QMP name unchanged."""
    case = load(name)
    job, completed = case["job"], case["completed"]
    out = to_qmp(job, completed=completed)
    for key, (section, qmp) in PASSED_THROUGH.items():
        where = out if section is None else out.get(section, {})
        assert where.get(qmp, "missing") == job.get(key, "missing"), (key, section, qmp)
    assert out["ram"]["mbps"] == job.get("memory_bps", 0) * 8 / 1e6
    assert ("expected-downtime" in out) == (not completed and "downtime" in job)
    assert out["status"] == ("completed" if completed else JOB_STATUS[job["type"]])
    assert job_clock(job) == {CLOCK[k]: v for k, v in job.items() if k in CLOCK}
    assert out["libvirt"] == job
