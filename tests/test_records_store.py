"""Connections, locks and the ingest of spools, in one process (src/migflow/records/store.py).

A lock here is a second connection of this process with the other read_only
setting (DuckDB refuses it like another process's lock), or a fake
``duckdb.connect`` with a fake clock; test_records.py holds real locks from
other processes.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import duckdb
import pytest
from cli_runner import query

from migflow.errors import StoreError
from migflow.procs import command_name, process_start
from migflow.records import store
from migflow.records.schema import SCHEMA_VERSION, TABLES
from migflow.records.spool import SPOOL_FORMAT, samples_path, spool_path, write_samples, write_spool
from migflow.records.store import DatabaseLocked, IngestSummary, connect_writer, ingest_pending, ingest_spools, open_readonly, pending_runs, set_run_extra

THIS = "this process (another connection with a different read_only setting)"


def _dead_pid() -> int:
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True, capture_output=True, text=True).stdout)


def spool(results, run_id, status="completed", samples=0, **run):
    """A spooled run: one step, one leg, one metric."""
    data = {
        "format": SPOOL_FORMAT,
        "flushed_at": "2025-01-02T03:04:05+00:00",
        "run": {"run_id": run_id, "status": status, "source_uri": "qemu+ssh://root:pw@h/system", **run},
        "steps": [{"position": 0, "step": "prepare-domain", "status": "completed"}],
        "migrations": [{"leg": 1, "source": "qemu+ssh://u:secret@a/system", "destination": "qemu+tcp://b/system", "status": "completed"}],
        "metrics": [{"leg": 0, "name": "x.m", "value": 1.5}],
        "samples_count": samples,
    }
    path = spool_path(results, run_id)
    write_spool(path, data)
    return path


# -- locks ----------------------------------------------------------------------


def test_lock_messages_name_the_holder():
    assert _lock_pid_of('IO Error: Could not set lock on file "r.duckdb": Conflicting lock is held in /usr/bin/python3 (PID 4242) by user root') == (True, 4242)
    assert _lock_pid_of("IO Error: Could not set lock on file r.duckdb: Resource temporarily unavailable") == (True, None)
    assert _lock_pid_of("Connection Error: Can't open a connection to same database file with a different configuration") == (True, os.getpid())
    assert _lock_pid_of("IO Error: No such file or directory (PID 12)") == (False, None)


def _lock_pid_of(message):
    return store._lock_pid(Exception(message))


def test_who_holds_the_lock_is_said_plainly(tmp_path):
    parent = os.getppid()
    assert DatabaseLocked(tmp_path / "r.duckdb", parent, "d").message == f"r.duckdb is locked by PID {parent} ({command_name(parent)})"
    assert command_name(parent)
    gone = _dead_pid()
    assert DatabaseLocked("r.duckdb", gone, "d").message == f"r.duckdb is locked by PID {gone}"
    assert DatabaseLocked("r.duckdb", None, "d").message == "r.duckdb is locked by another process"
    locked = DatabaseLocked("/x/r.duckdb", os.getpid(), "detail")
    assert (locked.message, locked.path, locked.pid, locked.detail) == (f"r.duckdb is locked by {THIS}", "/x/r.duckdb", os.getpid(), "detail")


class Clock:
    """time.monotonic and time.sleep of the store, without waiting."""

    def __init__(self):
        self.now, self.sleeps = 100.0, []

    def monotonic(self):
        return self.now

    def sleep(self, s):
        self.sleeps.append(round(s, 6))
        self.now += s


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(store.time, "monotonic", c.monotonic)
    monkeypatch.setattr(store.time, "sleep", c.sleep)
    monkeypatch.setattr(store.random, "uniform", lambda a, b: 1.25)  # the jitter, fixed
    return c


def _connect_failing(monkeypatch, message, succeed_after=None):
    tries = []

    def connect(path, read_only):
        tries.append(read_only)
        if succeed_after is not None and len(tries) > succeed_after:
            return "connection"
        raise duckdb.IOException(message)

    monkeypatch.setattr(duckdb, "connect", connect)
    return tries


LOCKED = "IO Error: Could not set lock on file x: Conflicting lock is held in python3 (PID 77) by user root"


def test_a_writer_retries_with_growing_pauses_until_its_budget_is_spent(clock, monkeypatch):
    tries = _connect_failing(monkeypatch, LOCKED)
    waits = []
    with pytest.raises(DatabaseLocked) as err:
        store._connect("r.duckdb", read_only=False, wait_s=1.0, on_wait=waits.append)
    assert clock.sleeps == [0.0625, 0.125, 0.25, 0.5, 0.0625], "doubling pauses with their jitter, the last one up to the deadline"
    assert tries == [False] * 6 and err.value.pid == 77 and err.value.detail == LOCKED
    assert len(waits) == 1 and waits[0].pid == 77, "said once"
    clock.sleeps.clear()
    with pytest.raises(DatabaseLocked):
        store._connect("r.duckdb", read_only=True, wait_s=2.0)
    assert clock.sleeps == [0.0625, 0.125, 0.25, 0.5, 0.625, 0.4375], "the pause stops growing at half a second (before its jitter)"


def test_a_writer_gets_the_file_when_it_is_released(clock, monkeypatch):
    tries = _connect_failing(monkeypatch, LOCKED, succeed_after=2)
    assert store._connect("r.duckdb", read_only=True, wait_s=5.0) == "connection"
    assert tries == [True, True, True] and clock.sleeps == [0.0625, 0.125]


def test_no_budget_means_one_try(clock, monkeypatch):
    tries = _connect_failing(monkeypatch, LOCKED)
    with pytest.raises(DatabaseLocked):
        store._connect("r.duckdb", read_only=False, wait_s=-5)
    assert tries == [False] and clock.sleeps == []


def test_an_error_that_is_not_a_lock_is_not_retried(clock, monkeypatch):
    tries = _connect_failing(monkeypatch, "IO Error: Permission denied")
    with pytest.raises(StoreError, match=r"^cannot open r\.duckdb: IO Error: Permission denied$"):
        store._connect("r.duckdb", read_only=False, wait_s=5.0)
    assert tries == [False] and clock.sleeps == []


# -- opening ----------------------------------------------------------------------


def test_no_database_says_what_to_do(tmp_path):
    results = tmp_path / "r.duckdb"
    with pytest.raises(StoreError, match="no results database at") as none:
        open_readonly(results)
    assert none.value.hint == "run a workflow first (migflow run WORKFLOW), or pass --results PATH"
    spool(results, "a")
    with pytest.raises(StoreError) as one:
        open_readonly(results)
    assert one.value.hint == "1 run is waiting in r.duckdb.spool/: run `migflow ingest`"
    spool(results, "b")
    with pytest.raises(StoreError) as two:
        open_readonly(results)
    assert two.value.hint == "2 runs are waiting in r.duckdb.spool/: run `migflow ingest`"


def test_a_reader_while_this_process_writes(tmp_path):
    results = tmp_path / "r.duckdb"
    writer = connect_writer(results, 1)
    try:
        with pytest.raises(StoreError) as err:
            open_readonly(results, wait_s=0.1)
    finally:
        writer.close()
    assert err.value.message == f"r.duckdb is locked by {THIS} (it is being written); try again in a moment"
    assert "different configuration" in err.value.hint
    con = open_readonly(results)  # released: readable
    con.close()


def _version_1_file(results):
    con = duckdb.connect(str(results))
    con.execute("CREATE TABLE runs (run_id VARCHAR PRIMARY KEY, backend VARCHAR)")
    con.execute("CREATE TABLE migrations (run_id VARCHAR, leg INTEGER, total_time BIGINT, downtime BIGINT, PRIMARY KEY (run_id, leg))")
    con.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ, migflow_version VARCHAR)")
    con.execute("INSERT INTO schema_version VALUES (1, now(), '0.1.0')")
    con.execute("INSERT INTO runs VALUES ('lv', 'libvirt')")
    con.execute("INSERT INTO migrations VALUES ('lv', 1, 889, 48)")
    con.close()


def test_a_reader_brings_an_older_file_up_to_date_first(tmp_path):
    results = tmp_path / "r.duckdb"
    _version_1_file(results)
    con = open_readonly(results)
    try:
        assert con.execute("SELECT total_time, job_time_elapsed FROM migrations").fetchall() == [(None, 889)]
        assert con.execute("SELECT max(version) FROM schema_version").fetchone() == (SCHEMA_VERSION,)
    finally:
        con.close()


def test_an_older_file_that_cannot_be_written_now_is_not_read_half_migrated(tmp_path):
    results = tmp_path / "r.duckdb"
    _version_1_file(results)
    other = duckdb.connect(str(results), read_only=True)  # this process reads it: the migration cannot write
    try:
        with pytest.raises(StoreError) as err:
            open_readonly(results, wait_s=0.1)
    finally:
        other.close()
    assert err.value.message == f"r.duckdb was written by an older migflow and must be brought up to date, but r.duckdb is locked by {THIS}"
    assert err.value.hint == "try again when it is free"


def test_a_writer_makes_the_directory_and_lets_go_of_a_file_it_refuses(tmp_path):
    results = tmp_path / "a" / "b" / "r.duckdb"
    connect_writer(results, 1).close()
    with duckdb.connect(str(results)) as con:
        con.execute("INSERT INTO schema_version VALUES (99, now(), 'future')")
    with pytest.raises(StoreError, match=rf"schema version 99, newer than this migflow understands \({SCHEMA_VERSION}\)"):
        connect_writer(results, 1)
    duckdb.connect(str(results)).close()  # not held by the refused writer


# -- ingest -----------------------------------------------------------------------


def test_spools_go_in_together_first_one_first_with_uris_redacted(tmp_path):
    results = tmp_path / "r.duckdb"
    paths = {run_id: spool(results, run_id) for run_id in ("a", "b", "c")}
    summary = ingest_spools(results, first=paths["b"])
    assert summary.ingested == ["b", "a", "c"] and summary.pending == [] and summary.errors == {}
    assert not any(p.exists() for p in paths.values())
    assert query(results, "SELECT run_id, source_uri FROM runs ORDER BY run_id") == [(r, "qemu+ssh://root:***@h/system") for r in "abc"]
    assert query(results, "SELECT DISTINCT source, destination FROM migrations") == [("qemu+ssh://u:***@a/system", "qemu+tcp://b/system")]
    assert query(results, "SELECT count(*), count(DISTINCT run_id) FROM steps") == [(3, 3)]
    assert query(results, "SELECT run_id, name, value FROM metrics ORDER BY run_id") == [("a", "x.m", 1.5), ("b", "x.m", 1.5), ("c", "x.m", 1.5)]
    assert summary.message(results) == "3 runs written to r.duckdb"


def test_batches_of_any_size_all_go_in(tmp_path, monkeypatch):
    monkeypatch.setattr(store, "BATCH_RUNS", 2)
    results = tmp_path / "r.duckdb"
    for run_id in ("a", "b", "c"):
        spool(results, run_id)
    assert ingest_spools(results).ingested == ["a", "b", "c"]
    assert query(results, "SELECT count(*) FROM runs") == [(3,)]


def test_a_bad_run_does_not_keep_the_others_out(tmp_path):
    results = tmp_path / "r.duckdb"
    spool(results, "a")
    bad = spool(results, "b", samples=5)  # its samples file is missing
    good = spool(results, "c", samples=1)
    write_samples(good, [c for c, _, _ in TABLES["samples"]], [{"run_id": "c", "leg": 1, "ms": 0.0, "kind": "poll"}])
    summary = ingest_spools(results)
    assert summary.ingested == ["a", "c"] and summary.pending == ["b"]
    assert summary.errors == {"b": "b.samples.csv is missing: the run's samples would be lost; the spool is kept"}
    assert bad.exists() and not good.exists() and not samples_path(good).exists()
    assert query(results, "SELECT run_id, leg, kind FROM samples") == [("c", 1, "poll")]
    assert summary.message(results) == (
        "2 runs written to r.duckdb; run b could not be written (b.samples.csv is missing: the run's samples would be lost; the spool is kept); "
        "its spool file is kept"
    )


def test_an_unreadable_spool_is_reported_and_kept(tmp_path):
    results = tmp_path / "r.duckdb"
    spool(results, "a")
    broken = spool_path(results, "b")
    broken.write_text("{")
    spool(results, "c")
    summary = ingest_spools(results)
    assert summary.ingested == ["a", "c"] and summary.pending == ["b"] and list(summary.errors) == ["b"] and broken.exists()
    assert pending_runs(results) == [{"run_id": "b", "status": None, "pid": None, "in_progress": False}]
    assert ingest_pending(results) == (0, 1)


def test_a_live_run_is_left_in_progress_and_a_dead_ones_is_abandoned(tmp_path):
    results = tmp_path / "r.duckdb"
    me, gone = os.getpid(), _dead_pid()
    live = spool(results, "live", status="running", pid=me, hostname=socket.gethostname())
    data = json.loads(live.read_text())
    write_spool(live, {**data, "pid_start": process_start(me)})
    spool(results, "dead", status="running", pid=gone, hostname=socket.gethostname())
    spool(results, "said", status="running", pid=gone, hostname=socket.gethostname(), error="SIGKILL by the OOM killer")
    assert [(r["run_id"], r["in_progress"]) for r in pending_runs(results)] == [("dead", False), ("live", True), ("said", False)]
    summary = ingest_spools(results)
    assert summary.ingested == ["dead", "said"] and summary.in_progress == ["live"] and live.exists()
    assert summary.message(results) == "2 runs written to r.duckdb; 1 run still in progress"
    assert query(results, "SELECT run_id, status, error, ended_at = '2025-01-02T03:04:05+00:00'::TIMESTAMPTZ FROM runs ORDER BY run_id") == [
        ("dead", "abandoned", f"migflow process {gone} ended while the run was in progress", True),
        ("said", "abandoned", "SIGKILL by the OOM killer", True),
    ]
    assert ingest_pending(results) == (0, 1)


def test_an_abandoned_run_without_a_flush_time_ends_when_its_spool_was_written(tmp_path):
    results = tmp_path / "r.duckdb"
    path = spool(results, "dead", status="running", pid=_dead_pid(), hostname=socket.gethostname())
    data = json.loads(path.read_text())
    del data["flushed_at"]
    write_spool(path, data)
    os.utime(path, (1700000000, 1700000000))
    ingest_spools(results)
    assert query(results, "SELECT epoch(ended_at) FROM runs") == [(1700000000.0,)]


def test_a_locked_database_keeps_every_ready_run(tmp_path):
    results = tmp_path / "r.duckdb"
    connect_writer(results, 1).close()
    spool(results, "a")
    reader = duckdb.connect(str(results), read_only=True)
    try:
        summary = ingest_spools(results, wait_s=0.1)
        spool(results, "b")
        two = ingest_spools(results, wait_s=0.1)
    finally:
        reader.close()
    assert summary.ingested == [] and summary.pending == ["a"] and summary.lock.pid == os.getpid()
    assert (
        summary.message(results)
        == f"0 runs written to r.duckdb; r.duckdb is locked by {THIS}; 1 run is kept in r.duckdb.spool/ and will be written later (migflow ingest)"
    )
    assert two.message(results).endswith("; 2 runs are kept in r.duckdb.spool/ and will be written later (migflow ingest)")
    assert ingest_pending(results) == (2, 0)


def test_a_database_that_refuses_writers_keeps_the_runs_with_the_reason(tmp_path):
    results = tmp_path / "r.duckdb"
    connect_writer(results, 1).close()
    with duckdb.connect(str(results)) as con:
        con.execute("INSERT INTO schema_version VALUES (99, now(), 'future')")
    spool(results, "a")
    spool(results, "b")
    summary = ingest_spools(results)
    assert summary.pending == ["a", "b"] and summary.ingested == [] and summary.lock is None
    assert set(summary.errors) == {"a", "b"} and summary.errors["a"].startswith("the results database has schema version 99")


def test_nothing_to_ingest_opens_nothing(tmp_path):
    results = tmp_path / "r.duckdb"
    assert ingest_spools(results) == IngestSummary() and not results.exists()
    assert IngestSummary(ingested=["a"]).message(results) == "1 run written to r.duckdb"


def test_a_note_is_merged_into_a_stored_runs_extra(tmp_path):
    results = tmp_path / "r.duckdb"
    spool(results, "a", extra={"kept": 1, "changed": 1})
    ingest_spools(results)
    set_run_extra(results, "a", {"changed": 2, "recovered": True})
    assert [json.loads(x) for (x,) in query(results, "SELECT extra FROM runs")] == [{"kept": 1, "changed": 2, "recovered": True}]
    with pytest.raises(StoreError, match=r"^no run zz in .*r\.duckdb$"):
        set_run_extra(results, "zz", {"x": 1})
    reader = duckdb.connect(str(results), read_only=True)
    try:
        with pytest.raises(StoreError) as err:
            set_run_extra(results, "a", {"x": 1}, wait_s=0.1)
    finally:
        reader.close()
    assert err.value.message == f"r.duckdb is locked by {THIS}; could not note the recovery of run a" and "different configuration" in err.value.hint


def test_a_run_without_extra_gets_one(tmp_path):
    results = tmp_path / "r.duckdb"
    spool(results, "a")
    ingest_spools(results)
    set_run_extra(results, "a", {"recovered": True})
    assert query(results, "SELECT extra->>'$.recovered' FROM runs") == [("true",)]


def test_a_run_duckdb_cannot_read_is_reported_in_one_line(tmp_path):
    results = tmp_path / "r.duckdb"
    path = spool(results, "c", samples=1)
    samples_path(path).write_text("run_id,leg\nc,not-a-number\n")
    summary = ingest_spools(results)
    assert summary.pending == ["c"] and "CSV Error on Line: 2" in summary.errors["c"] and "\n" not in summary.errors["c"]


def test_a_batch_is_written_only_when_its_samples_files_match_their_counts(tmp_path):
    results = tmp_path / "r.duckdb"
    with_samples = spool(results, "s", samples=2)
    write_samples(with_samples, [c for c, _, _ in TABLES["samples"]], [{"run_id": "s", "leg": 1, "ms": ms, "kind": "poll"} for ms in (0.0, 1.0)])
    batch = [(p, json.loads(p.read_text())) for p in (spool(results, "a"), with_samples)]
    con = connect_writer(results, 1)
    try:
        store._write_runs(con, [(p, json.loads(p.read_text())) for p in (spool(results, "x"), spool(results, "y"))])  # no samples files at all
        store._write_runs(con, batch)
        assert con.execute("SELECT count(*) FROM runs").fetchone() == (4,) and con.execute("SELECT count(*) FROM samples").fetchone() == (2,)
        batch[1][1]["samples_count"] = 3  # the samples file is not the one the JSON counted
        with pytest.raises(StoreError, match="spool files changed while being ingested"):
            store._write_runs(con, batch)
        assert con.execute("SELECT count(*) FROM samples").fetchone() == (2,), "rolled back"
    finally:
        con.close()


def test_pending_runs_lists_every_spool_whatever_its_neighbours(tmp_path, monkeypatch):
    results = tmp_path / "r.duckdb"
    spool_path(results, "a").parent.mkdir(parents=True)
    spool_path(results, "a").write_text("{")
    spool(results, "b")
    spool(results, "c")
    assert pending_runs(results) == [
        {"run_id": "a", "status": None, "pid": None, "in_progress": False},
        {"run_id": "b", "status": "completed", "pid": None, "in_progress": False},
        {"run_id": "c", "status": "completed", "pid": None, "in_progress": False},
    ]
    real = store.read_spool

    def gone_meanwhile(path):  # ingested by another process between the listing and the read
        if path.stem == "b":
            raise FileNotFoundError(path)
        return real(path)

    monkeypatch.setattr(store, "read_spool", gone_meanwhile)
    assert [r["run_id"] for r in pending_runs(results)] == ["a", "c"]


def test_reading_never_writes(tmp_path):
    """Two readers at once (a writer would be refused beside the first), and a file that is not migflow's stays as it is."""
    results = tmp_path / "r.duckdb"
    spool(results, "a")
    ingest_spools(results)
    first = open_readonly(results, wait_s=0.1)
    try:
        second = open_readonly(results, wait_s=0.1)
        second.close()
    finally:
        first.close()
    foreign = tmp_path / "foreign.duckdb"
    with duckdb.connect(str(foreign)) as con:
        con.execute("CREATE TABLE x (a INTEGER)")
    open_readonly(foreign).close()
    assert query(foreign, "SELECT table_name FROM duckdb_tables()") == [("x",)], "no migflow table was added"


def test_a_spool_ingested_meanwhile_by_another_process_is_skipped(tmp_path, monkeypatch):
    results = tmp_path / "r.duckdb"
    for run_id in ("a", "b", "c"):
        spool(results, run_id)
    real = store.read_spool

    def gone_meanwhile(path):
        if path.stem == "a":
            raise FileNotFoundError(path)
        return real(path)

    monkeypatch.setattr(store, "read_spool", gone_meanwhile)
    summary = ingest_spools(results)
    assert summary.ingested == ["b", "c"] and summary.pending == [] and summary.errors == {}


def test_the_summary_counts_in_words():
    assert IngestSummary(ingested=["a", "b"], in_progress=["c", "d"]).message("r.duckdb") == "2 runs written to r.duckdb; 2 runs still in progress"
    assert IngestSummary(in_progress=["c"]).message("r.duckdb") == "0 runs written to r.duckdb; 1 run still in progress"


def test_a_lone_run_takes_its_samples_file_as_it_is(tmp_path):
    """A crash between the two renames leaves a samples file newer than the JSON's count: the rows on disk go in."""
    results = tmp_path / "r.duckdb"
    path = spool(results, "a", samples=1)
    write_samples(path, [c for c, _, _ in TABLES["samples"]], [{"run_id": "a", "leg": 1, "ms": ms, "kind": "poll"} for ms in (0.0, 1.0)])
    assert ingest_spools(results).ingested == ["a"]
    assert query(results, "SELECT count(*) FROM samples") == [(2,)]


class FailingCon:
    """A connection whose INSERT into steps fails, and whose ROLLBACK fails too."""

    def __init__(self, con):
        self.con = con

    def execute(self, sql, *args):
        if sql == "ROLLBACK":
            raise duckdb.TransactionException("cannot rollback: no transaction is active")
        if sql.startswith("INSERT INTO steps"):
            raise duckdb.IOException("disk full")
        return self.con.execute(sql, *args)


def test_the_first_error_is_the_one_raised_even_if_the_rollback_fails(tmp_path):
    results = tmp_path / "r.duckdb"
    path = spool(results, "a")
    con = connect_writer(results, 1)
    try:
        with pytest.raises(duckdb.IOException, match="disk full"):
            store._write_runs(FailingCon(con), [(path, json.loads(path.read_text()))])
    finally:
        con.close()


def test_a_reader_gets_a_read_only_connection_also_right_after_a_migration(tmp_path):
    results = tmp_path / "r.duckdb"
    _version_1_file(results)
    con = open_readonly(results)
    try:
        with pytest.raises(duckdb.Error, match="read-only"):
            con.execute("CREATE TABLE t (a INTEGER)")
    finally:
        con.close()


def test_a_file_of_a_newer_migflow_can_still_be_read(tmp_path):
    results = tmp_path / "r.duckdb"
    spool(results, "a")
    ingest_spools(results)
    with duckdb.connect(str(results)) as con:
        con.execute("INSERT INTO schema_version VALUES (99, now(), 'future')")
    con = open_readonly(results, wait_s=0.1)
    try:
        assert con.execute("SELECT run_id FROM runs").fetchall() == [("a",)]
    finally:
        con.close()
