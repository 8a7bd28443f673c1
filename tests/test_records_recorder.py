"""One run's records as ``RunRecorder`` keeps them (src/migflow/records/recorder.py).

What reaches the spool file after each call, and what ``finish`` says when
the database takes the run, is locked, or refuses it.
"""

from __future__ import annotations

import csv
import json
import os
import re
import socket

import duckdb
import pytest

from migflow import __version__
from migflow.errors import StoreError
from migflow.records import RunRecorder, sample_from_stats
from migflow.records.spool import samples_path
from migflow.records.store import connect_writer


def exactly(message: str) -> str:
    """A ``match`` pattern for exactly ``message``."""
    return f"^{re.escape(message)}$"


THIS = "this process (another connection with a different read_only setting)"


def spooled(rec) -> dict:
    rec.flush()
    return json.loads(rec.path.read_text())


def samples_csv(rec) -> list[dict]:
    with samples_path(rec.path).open() as f:
        return list(csv.DictReader(f))


def test_a_sample_from_qmp_statistics():
    stats = {
        "status": "active",
        "expected-downtime": 300,
        "cpu-throttle-percentage": 20,
        "ram": {"transferred": 1, "remaining": 2, "total": 3, "mbps": 4.5, "dirty-pages-rate": 6, "dirty-sync-count": 7},
    }
    assert sample_from_stats(2, 150.0, stats, kind="iteration") == {
        "leg": 2,
        "ms": 150.0,
        "kind": "iteration",
        "status": "active",
        "transferred": 1,
        "remaining": 2,
        "total": 3,
        "mbps": 4.5,
        "dirty_pages_rate": 6,
        "iteration": 7,
        "throttle": 20,
        "expected_downtime": 300,
        "src_qemu_cpu_ms": None,
        "dst_qemu_cpu_ms": None,
    }
    assert sample_from_stats(1, 0.0, {"status": "setup"})["kind"] == "poll"
    assert sample_from_stats(1, 0.0, {"status": "setup", "ram": None})["transferred"] is None


def test_a_new_run_is_spooled_at_once_as_running_with_its_process(tmp_path):
    rec = RunRecorder(tmp_path / "r.duckdb", {"run_id": "a/b", "source_uri": "qemu+ssh://root:pw@h/system", "error": "x qemu+tcp://u:pw@h/system"})
    assert rec.path == tmp_path / "r.duckdb.spool" / "a_b.json" and rec.run_id == "a/b"
    data = json.loads(rec.path.read_text())
    run = data["run"]
    assert (run["status"], run["pid"], run["hostname"], run["migflow_version"], run["run_id"]) == (
        "running",
        os.getpid(),
        socket.gethostname(),
        __version__,
        "a/b",
    )
    assert run["source_uri"] == "qemu+ssh://root:***@h/system" and "pw" not in run["error"]
    assert data["format"] == "migflow-spool/1" and data["pid_start"] is not None and data["samples_file"] is None and data["samples_count"] == 0
    assert not samples_path(rec.path).exists(), "no samples, no samples file"
    assert (data["steps"], data["migrations"], data["metrics"]) == ([], [], [])


def test_a_new_run_needs_an_id_and_starts_running(tmp_path):
    with pytest.raises(ValueError, match=r"^RunRecorder: run\['run_id'\] is required$"):
        RunRecorder(tmp_path / "r.duckdb", {"run_id": ""})
    with pytest.raises(ValueError, match=exactly("RunRecorder: a new run has status 'running', not 'completed'")):
        RunRecorder(tmp_path / "r.duckdb", {"run_id": "x", "status": "completed"})
    with pytest.raises(ValueError, match=exactly("RunRecorder: a new run has status 'running', not 'waiting'")):
        RunRecorder(tmp_path / "r.duckdb", {"run_id": "x", "status": "waiting"})


def test_set_run_merges_json_objects_and_replaces_the_rest(tmp_path):
    rec = RunRecorder(tmp_path / "r.duckdb", {"run_id": "x", "extra": {"a": 1}})
    rec.set_run(extra={"b": 2}, environment={"link": "1g"}, domain={"name": "one"})
    same_id = json.loads('"x"')  # equal, not the same object: as read back from a spool
    rec.set_run(extra={"a": 3, "uri": "qemu+ssh://root:pw@h/system"}, environment={"cpu": "x"}, domain={"memory": 1}, run_id=same_id)
    run = spooled(rec)["run"]
    assert run["extra"] == {"a": 3, "b": 2, "uri": "qemu+ssh://root:***@h/system"}
    assert run["environment"] == {"link": "1g", "cpu": "x"} and run["domain"] == {"memory": 1}
    assert rec.run_extra() == {"a": 3, "b": 2, "uri": "qemu+ssh://root:***@h/system"}
    rec.run_extra()["a"] = 99
    assert rec.run_extra()["a"] == 3, "a copy"
    for other in ("y", "a"):
        with pytest.raises(ValueError, match=exactly("set_run: run_id cannot change")):
            rec.set_run(run_id=other)
    rec.set_run(extra=None)
    assert rec.run_extra() == {}


def test_steps_are_merged_by_position_and_checked(tmp_path):
    rec = RunRecorder(tmp_path / "r.duckdb", {"run_id": "x"})
    rec.add_step({"position": 1, "step": "migrate", "status": "running", "run_id": "ignored"})
    rec.add_step({"position": 0, "step": "prepare-domain", "status": "completed"})
    rec.add_step({"position": 1, "status": "failed", "error": "qemu+ssh://root:pw@h/system refused", "result": {"uri": "qemu+tcp://u:pw@h/system"}})
    assert spooled(rec)["steps"] == [
        {"position": 0, "step": "prepare-domain", "status": "completed"},
        {"position": 1, "step": "migrate", "status": "failed", "error": "qemu+ssh://root:***@h/system refused", "result": {"uri": "qemu+tcp://u:***@h/system"}},
    ]
    with pytest.raises(ValueError, match=exactly("steps: 'position' is required")):
        rec.add_step({"step": "x"})
    with pytest.raises(ValueError, match=exactly("steps.status must be one of running, completed, failed, skipped, interrupted, abandoned, not 'great'")):
        rec.add_step({"position": 2, "status": "great"})


def test_a_leg_takes_its_columns_from_stats_and_extra(tmp_path):
    rec = RunRecorder(tmp_path / "r.duckdb", {"run_id": "x"})
    rec.add_leg({"leg": 1, "source": "qemu+ssh://root:pw@a/system", "status": "running", "extra": {"note": 1, "guest_pause_ms": None}})
    rec.add_leg(
        {
            "leg": 1,
            "downtime": 31,
            "status": "completed",
            "error": "qemu+tcp://u:pw@b/system",
            "stats": {"downtime": 30, "total-time": 900, "ram": {"mbps": 1.5}, "novel": 1},
            "extra": {"guest_pause_ms": 45.5, "job_downtime": 50, "probe": "p"},
            "run_id": "ignored",
        }
    )
    [leg] = spooled(rec)["migrations"]
    assert {k: leg.get(k) for k in ("leg", "source", "status", "error", "downtime", "total_time", "ram_mbps", "guest_pause_ms", "job_downtime")} == {
        "leg": 1,
        "source": "qemu+ssh://root:***@a/system",
        "status": "completed",
        "error": "qemu+tcp://u:***@b/system",
        "downtime": 31,  # given explicitly: wins over stats
        "total_time": 900,
        "ram_mbps": 1.5,
        "guest_pause_ms": 45.5,
        "job_downtime": 50,
    }
    assert leg["extra"] == {"note": 1, "probe": "p"}, "measurements left extra; the rest merged with the earlier call's"
    assert leg["stats"]["novel"] == 1 and "ram_total" not in leg and "run_id" not in leg


def test_an_explicit_column_wins_over_extra_and_a_leg_is_checked(tmp_path):
    rec = RunRecorder(tmp_path / "r.duckdb", {"run_id": "x"})
    rec.add_leg({"leg": 2, "guest_pause_ms": 1.0, "destination": "qemu+ssh://root:pw@b/system", "extra": {"guest_pause_ms": 2.0}})
    rec.add_leg({"leg": 3, "extra": {}})
    legs = spooled(rec)["migrations"]
    assert legs[0]["guest_pause_ms"] == 1.0 and legs[0]["extra"] is None and legs[0]["destination"] == "qemu+ssh://root:***@b/system"
    assert legs[1] == {"leg": 3, "extra": None}
    with pytest.raises(ValueError, match=exactly("migrations: 'leg' is required")):
        rec.add_leg({"status": "running"})
    with pytest.raises(ValueError, match=exactly("migrations.status must be one of running, completed, failed, interrupted, abandoned, not 'skipped'")):
        rec.add_leg({"leg": 1, "status": "skipped"})


def test_metrics_are_keyed_by_leg_and_name(tmp_path):
    rec = RunRecorder(tmp_path / "r.duckdb", {"run_id": "x"})
    rec.add_metric("p.b", 1.0, "ms", leg=2, plugin="p")
    rec.add_metric("p.a", 2.0)
    rec.add_metric("p.b", 3.0, "ms", leg=2, plugin="p")  # replaces
    assert spooled(rec)["metrics"] == [
        {"leg": 0, "name": "p.a", "value": 2.0, "unit": None, "plugin": None},
        {"leg": 2, "name": "p.b", "value": 3.0, "unit": "ms", "plugin": "p"},
    ]
    with pytest.raises(ValueError, match=exactly("metrics: 'name' is required")):
        rec.add_metric("", 1.0)


def test_samples_are_keyed_by_leg_ms_and_kind_and_rewritten_when_replaced(tmp_path):
    rec = RunRecorder(tmp_path / "r.duckdb", {"run_id": "x"})
    rec.add_samples([{"leg": 1, "ms": 0, "transferred": 1}, {"leg": 1, "ms": 0, "kind": "iteration"}, {"leg": 2, "ms": 5, "run_id": "ignored"}])
    data = spooled(rec)
    assert (data["samples_file"], data["samples_count"]) == ("x.samples.csv", 3)
    assert (rec.sample_count(1), rec.sample_count(2), rec.sample_count(3)) == (2, 1, 0)
    rec.add_samples([{"leg": 1, "ms": 0, "transferred": 9}])  # the same (leg, ms, kind): replaced, count unchanged
    rec.flush()
    assert [(r["run_id"], r["leg"], r["kind"], r["transferred"]) for r in samples_csv(rec)] == [
        ("x", "1", "poll", "9"),
        ("x", "1", "iteration", ""),
        ("x", "2", "poll", ""),
    ]
    assert rec.sample_count(1) == 2
    with pytest.raises(ValueError, match=exactly("samples: 'leg' and 'ms' are required")):
        rec.add_samples([{"leg": 1}])
    with pytest.raises(ValueError, match=exactly("samples: 'leg' and 'ms' are required")):
        rec.add_samples([{"ms": 1}])


def test_a_spool_that_cannot_be_written_is_a_store_error(tmp_path):
    rec = RunRecorder(tmp_path / "r.duckdb", {"run_id": "x"})
    (rec.path.parent / f".x.json.{os.getpid()}.tmp").mkdir()  # where the next version would be written
    with pytest.raises(StoreError, match=r"^cannot write the run's spool file .*x\.json: "):
        rec.flush()


def test_finish_checks_the_status_writes_once_and_says_so(tmp_path):
    rec = RunRecorder(tmp_path / "r.duckdb", {"run_id": "x"})
    with pytest.raises(ValueError, match=exactly("finish: status must be one of completed, failed, interrupted, lost, abandoned, not 'running'")):
        rec.finish("running")
    res = rec.finish("failed", error="qemu+ssh://root:pw@h/system gone")
    assert (res.ingested, res.message, bool(res)) == (True, "1 run written to r.duckdb", True)
    assert rec.finish("completed") is res
    with duckdb.connect(str(tmp_path / "r.duckdb"), read_only=True) as con:
        assert con.execute("SELECT status, error, ended_at >= started_at FROM runs").fetchall() == [("failed", "qemu+ssh://root:***@h/system gone", True)]
    for call in (lambda: rec.set_run(workflow="w"), lambda: rec.add_leg({"leg": 1}), lambda: rec.add_metric("m", 1), lambda: rec.add_samples([])):
        with pytest.raises(RuntimeError, match=exactly("run x is already finished")):
            call()


def test_finish_on_a_locked_database_keeps_the_run_and_says_once_who_holds_it(tmp_path):
    results = tmp_path / "r.duckdb"
    connect_writer(results, 1).close()
    rec = RunRecorder(results, {"run_id": "x"})
    said: list[str] = []
    reader = duckdb.connect(str(results), read_only=True)
    try:
        res = rec.finish("completed", wait_s=0.2, echo=said.append)
    finally:
        reader.close()
    assert not res.ingested and rec.path.exists()
    assert res.message == f"r.duckdb is locked by {THIS}; the run is kept in r.duckdb.spool/ and will be written later (migflow ingest)"
    assert said == [
        f"r.duckdb is locked by {THIS}: waiting up to 0.2 s to write run x; nothing is lost meanwhile (the run is kept in r.duckdb.spool/ and written later if the file stays locked)"
    ]


def test_finish_on_a_database_that_refuses_the_run_says_why(tmp_path):
    results = tmp_path / "r.duckdb"
    connect_writer(results, 1).close()
    with duckdb.connect(str(results)) as con:
        con.execute("INSERT INTO schema_version VALUES (99, now(), 'future')")
    rec = RunRecorder(results, {"run_id": "x"})
    res = rec.finish("completed", wait_s=0.2)
    assert not res.ingested and rec.path.exists()
    assert res.message.startswith("run x could not be written to r.duckdb (the results database has schema version 99")
    assert res.message.endswith("); it is kept in r.duckdb.spool/")


def test_finish_of_a_run_someone_else_wrote_meanwhile_is_a_success(tmp_path):
    rec = RunRecorder(tmp_path / "r.duckdb", {"run_id": "x"})
    rec.flush()
    rec.path.unlink()  # another process ingested it between our flush and our ingest
    rec.flush = lambda: None  # so that finish() does not write it again
    res = rec.finish("completed")
    assert res.ingested and res.message == "0 runs written to r.duckdb"
