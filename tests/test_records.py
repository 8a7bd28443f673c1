"""The results store: spool, ingest, locking, and the query/runs/ingest commands.

Real DuckDB files in tmp_path; lock holders are real second processes.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import pytest
from cli_runner import migflow

from migflow.errors import StoreError
from migflow.records import (
    SCHEMA_VERSION,
    TABLES,
    IngestResult,
    RunRecorder,
    ingest_pending,
    open_readonly,
    pending_runs,
    sample_from_stats,
)
from migflow.records.spool import list_spools, samples_path, spool_path
from migflow.redact import redact_uri

# The seed's query-migrate output (8 GiB guest, 1 GbE).
SEED = {
    "status": "completed",
    "setup-time": 43,
    "downtime": 30,
    "total-time": 22004,
    "ram": {
        "total": 8594989056,
        "postcopy-requests": 0,
        "dirty-sync-count": 5,
        "page-size": 4096,
        "remaining": 0,
        "mbps": 507.311245,
        "transferred": 1394795636,
        "duplicate": 1765164,
        "dirty-pages-rate": 0,
        "skipped": 0,
        "normal-bytes": 1376219136,
        "normal": 335991,
    },
}


def record_run(results, run_id="run-1", *, status="completed", legs=2, samples=5, finish=True, wait_s=5.0):
    """A complete run: two steps, ``legs`` legs (round trip), samples per leg."""
    t0 = time.time()
    rec = RunRecorder(
        results,
        {
            "run_id": run_id,
            "workflow": "zstack-default",
            "workflow_file": "workflows/zstack_default.toml",
            "scenario": "mode=p2p",
            "params": {"mode": "p2p"},
            "repetition": 1,
            "plan_index": 0,
            "backend": "libvirt",
            "source_uri": "qemu+ssh://root:hunter2@src/system?keyfile=/root/.ssh/id",
            "destination_uri": "qemu+tcp://dst/system",
        },
    )
    rec.set_run(host_versions={"src": {"libvirt": "10.0.0", "qemu": "8.2.2"}}, domain={"name": "mf-guest", "memory_mib": 512})
    rec.add_step({"position": 0, "step": "prepare-domain", "status": "completed", "started_at": t0, "duration_ms": 120.5})
    rec.flush()
    for leg in range(1, legs + 1):
        rec.add_leg(
            {
                "leg": leg,
                "source": "src",
                "destination": "dst",
                "mode": "p2p",
                "flags": ["live", "peer2peer"],
                "started_at": dt.datetime.now(dt.UTC),
                "status": "running",
            }
        )
        rec.add_samples(
            [
                sample_from_stats(
                    leg,
                    500.0 * i,
                    {"status": "active", "ram": {"transferred": 1000 * i, "remaining": 10 - i, "total": 10, "mbps": 900.5, "dirty-sync-count": 1 + i // 2}},
                )
                for i in range(samples)
            ]
        )
        rec.add_samples([{"leg": leg, "ms": 750.0, "kind": "iteration", "iteration": 2}])
        rec.add_leg({"leg": leg, "wall_ms": 6600.0 + leg, "status": "completed", "stats": {**SEED, "disk": {"transferred": 0}}})
        rec.flush()
    rec.add_step({"position": 1, "step": "migrate", "status": "completed", "started_at": t0 + 1, "duration_ms": 13300.0, "result": {"legs": legs}})
    if not finish:
        return rec, None
    return rec, rec.finish(status, wait_s=wait_s)


def counts(results, run_id=None):
    con = open_readonly(results)
    try:
        where = f" WHERE run_id = '{run_id}'" if run_id else ""
        return {t: con.execute(f"SELECT count(*) FROM {t}{where}").fetchone()[0] for t in ("runs", "steps", "migrations", "samples")}
    finally:
        con.close()


# -- round trip ---------------------------------------------------------------


def test_round_trip(tmp_path):
    results = tmp_path / "results.duckdb"
    _rec, res = record_run(results)
    assert isinstance(res, IngestResult) and res.ingested, res.message
    assert not list_spools(results), "spool removed after commit"
    assert counts(results) == {"runs": 1, "steps": 2, "migrations": 2, "samples": 12}
    con = open_readonly(results)
    try:
        run = con.execute(
            "SELECT status, source_uri, params->>'$.mode', host_versions->>'$.src.qemu', domain->>'$.name', "
            "pid, hostname IS NOT NULL, ended_at >= started_at, migflow_version FROM runs"
        ).fetchone()
        assert run[0] == "completed"
        assert "hunter2" not in run[1] and "/root/.ssh/id" not in run[1] and run[1].startswith("qemu+ssh://root:")
        assert run[2:5] == ("p2p", "8.2.2", "mf-guest")
        assert run[5] == os.getpid() and run[6] and run[7] and run[8]
        legs = con.execute(
            "SELECT leg, flags, wall_ms, total_time, ram_mbps, stats->>'$.ram.transferred', stats->>'$.disk.transferred' FROM migrations ORDER BY leg"
        ).fetchall()
        assert legs == [
            (1, ["live", "peer2peer"], 6601.0, 22004, 507.311245, "1394795636", "0"),
            (2, ["live", "peer2peer"], 6602.0, 22004, 507.311245, "1394795636", "0"),
        ]
        series = con.execute("SELECT ms, kind, transferred, remaining, mbps, iteration FROM samples WHERE leg = 2 ORDER BY ms, kind").fetchall()
        assert series[0] == (0.0, "poll", 0, 10, 900.5, 1)
        assert (750.0, "iteration", None, None, None, 2) in series
        steps = con.execute("SELECT position, step, duration_ms, result->>'$.legs' FROM steps ORDER BY position").fetchall()
        assert steps == [(0, "prepare-domain", 120.5, None), (1, "migrate", 13300.0, "2")]
        types = dict(con.execute("SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'runs'").fetchall())
        assert types["started_at"] == "TIMESTAMP WITH TIME ZONE" and types["params"] == "JSON"
        assert con.execute("SELECT max(version) FROM schema_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        con.close()


def test_seed_stats_map_onto_columns(tmp_path):
    results = tmp_path / "results.duckdb"
    rec = RunRecorder(results, {"run_id": "seed"})
    rec.add_leg(
        {
            "leg": 1,
            "mode": "zstack",
            "status": "completed",
            "downtime": 31,
            "stats": {**SEED, "xbzrle-cache": {"cache-size": 67108864, "cache-miss-rate": 0.25}, "cpu-throttle-percentage": 20, "new-field": 7},
        }
    )
    assert rec.finish("completed").ingested
    con = open_readonly(results)
    try:
        cur = con.execute("SELECT * FROM migrations")
        row = dict(zip([d[0] for d in cur.description], cur.fetchone(), strict=True))
    finally:
        con.close()
    expected = {
        "setup_time": 43,
        "downtime": 31,  # the explicit column wins over stats
        "total_time": 22004,
        "ram_total": 8594989056,
        "ram_postcopy_requests": 0,
        "ram_dirty_sync_count": 5,
        "ram_page_size": 4096,
        "ram_remaining": 0,
        "ram_mbps": 507.311245,
        "ram_transferred": 1394795636,
        "ram_duplicate": 1765164,
        "ram_dirty_pages_rate": 0,
        "ram_skipped": 0,
        "ram_normal_bytes": 1376219136,
        "ram_normal": 335991,
        "xbzrle_cache_cache_size": 67108864,
        "xbzrle_cache_cache_miss_rate": 0.25,
        "cpu_throttle_percentage": 20,
        "status": "completed",
        "expected_downtime": None,
    }
    assert {k: row[k] for k in expected} == expected
    stats = json.loads(row["stats"])
    assert stats["new-field"] == 7 and stats["downtime"] == 30, "unknown and overridden statistics kept in stats"


def test_unknown_column_is_an_error(tmp_path):
    rec = RunRecorder(tmp_path / "r.duckdb", {"run_id": "x"})
    with pytest.raises(ValueError, match=r"unknown column 'bogus'.*extra"):
        rec.add_leg({"leg": 1, "bogus": 1})
    with pytest.raises(ValueError, match="unknown column"):
        rec.set_run(nope=1)
    with pytest.raises(ValueError, match=r"steps.duration_ms"):
        rec.add_step({"position": 0, "duration_ms": "fast"})
    with pytest.raises(ValueError, match="status"):
        rec.finish("great")
    with pytest.raises(ValueError, match="run_id"):
        RunRecorder(tmp_path / "r.duckdb", {"workflow": "w"})


def test_timestamps_accept_datetime_and_epoch(tmp_path):
    results = tmp_path / "r.duckdb"
    when = dt.datetime(2025, 3, 4, 5, 6, 7, 890000, tzinfo=dt.UTC)
    rec = RunRecorder(results, {"run_id": "t", "started_at": when.timestamp()})
    rec.add_step({"position": 0, "started_at": when})
    rec.add_leg({"leg": 1, "started_at": when.astimezone(dt.timezone(dt.timedelta(hours=2)))})
    assert rec.finish("completed").ingested
    con = open_readonly(results)
    try:
        got = con.execute("SELECT (SELECT started_at FROM runs), (SELECT started_at FROM steps), (SELECT started_at FROM migrations)").fetchone()
    finally:
        con.close()
    assert all(g == when for g in got), got


def test_reingest_is_idempotent(tmp_path):
    results = tmp_path / "results.duckdb"
    rec, _ = record_run(results, finish=False)
    rec.flush()
    saved = json.loads(rec.path.read_text())
    samples = samples_path(rec.path).read_bytes()
    assert rec.finish("completed").ingested
    assert not samples_path(rec.path).exists()
    first = counts(results)
    # the same finished spool again, as after a crash between the commit and the unlink
    saved["run"].update(status="completed", ended_at="2030-01-01T00:00:00+00:00")
    samples_path(rec.path).write_bytes(samples)
    rec.path.write_text(json.dumps(saved))
    assert ingest_pending(results, wait_s=5) == (1, 0)
    assert ingest_pending(results, wait_s=5) == (0, 0)
    assert counts(results) == first
    con = open_readonly(results)
    try:  # the run's rows were replaced by the spool's version, not duplicated
        assert con.execute("SELECT status, year(ended_at) FROM runs").fetchone() == ("completed", 2030)
    finally:
        con.close()


# -- locking ------------------------------------------------------------------

HOLDER = textwrap.dedent("""
    import sys, duckdb
    con = duckdb.connect(sys.argv[1], read_only=sys.argv[2] == "ro")
    con.execute("SELECT count(*) FROM runs").fetchall()
    print("holding", flush=True)
    sys.stdin.read()   # hold until the test closes our stdin
""")


def hold(results, mode):
    p = subprocess.Popen([sys.executable, "-c", HOLDER, str(results), mode], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "holding"
    return p


def release(p):
    p.stdin.close()
    p.wait(timeout=20)


@pytest.mark.parametrize("mode", ["rw", "ro"])
def test_locked_database_keeps_the_run_until_ingest(tmp_path, mode):
    """A second process holds the file (a writer, or an analyst's `duckdb -readonly`) while a run finishes."""
    results = tmp_path / "results.duckdb"
    record_run(results, run_id="before")  # the file exists with its schema
    holder = hold(results, mode)
    try:
        t = time.monotonic()
        _rec, res = record_run(results, run_id="during", wait_s=0.6)
        assert time.monotonic() - t >= 0.5, "retried for the budget"
        assert not res.ingested
        assert f"locked by PID {holder.pid}" in res.message
        assert "results.duckdb.spool/" in res.message and "migflow ingest" in res.message
        assert spool_path(results, "during").exists()
        assert ingest_pending(results, wait_s=0.3) == (0, 1), "still locked"
        if mode == "ro":  # readers still work while the run waits in the spool
            assert counts(results, "during")["runs"] == 0
    finally:
        release(holder)
    assert ingest_pending(results, wait_s=5) == (1, 0)
    assert not list_spools(results)
    assert counts(results, "during") == {"runs": 1, "steps": 2, "migrations": 2, "samples": 12}
    assert counts(results) == {"runs": 2, "steps": 4, "migrations": 4, "samples": 24}


def test_a_run_waiting_for_the_file_says_who_holds_it_once(tmp_path):
    """Waiting is never silent: one line naming the holder's PID and that nothing is lost."""
    results = tmp_path / "results.duckdb"
    record_run(results, run_id="before")
    holder = hold(results, "ro")
    said: list[str] = []
    try:
        rec, _ = record_run(results, run_id="waits", finish=False)
        res = rec.finish("completed", wait_s=0.8, echo=said.append)
    finally:
        release(holder)
    assert not res.ingested
    assert len(said) == 1, said
    assert said[0].startswith(f"results.duckdb is locked by PID {holder.pid} (python")
    assert "waiting up to 0.8 s to write run waits; nothing is lost meanwhile" in said[0]


def test_finish_waits_for_a_short_lock(tmp_path):
    results = tmp_path / "results.duckdb"
    record_run(results, run_id="before")
    holder = hold(results, "rw")
    rec, _ = record_run(results, run_id="later", finish=False)
    import threading

    threading.Timer(1.0, release, [holder]).start()
    res = rec.finish("completed", wait_s=20)
    assert res.ingested, res.message
    assert counts(results, "later")["samples"] == 12


def test_same_process_reader_blocks_then_ingest(tmp_path):
    results = tmp_path / "results.duckdb"
    record_run(results, run_id="before")
    reader = open_readonly(results)
    try:
        _, res = record_run(results, run_id="blocked", wait_s=0.3)
        assert not res.ingested and "this process" in res.message
    finally:
        reader.close()
    assert ingest_pending(results) == (1, 0)


def test_open_readonly_errors(tmp_path):
    with pytest.raises(StoreError, match="no results database"):
        open_readonly(tmp_path / "missing.duckdb")
    results = tmp_path / "results.duckdb"
    record_run(results)
    holder = hold(results, "rw")
    try:
        with pytest.raises(StoreError, match=f"locked by PID {holder.pid}"):
            open_readonly(results, wait_s=0.2)
    finally:
        release(holder)


# -- crashed and live runs ----------------------------------------------------


def test_spool_of_a_dead_process_becomes_abandoned(tmp_path):
    results = tmp_path / "results.duckdb"
    code = textwrap.dedent(f"""
        import os
        from migflow.records import RunRecorder
        rec = RunRecorder({str(results)!r}, {{"run_id": "crashed", "workflow": "w"}})
        rec.add_step({{"position": 0, "step": "prepare-domain", "status": "completed", "duration_ms": 5}})
        rec.flush()
        print(os.getpid(), flush=True)
        os._exit(9)   # like kill -9: no finish()
    """)
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60)
    pid = int(out.stdout.strip())
    assert spool_path(results, "crashed").exists()
    assert pending_runs(results) == [{"run_id": "crashed", "status": "running", "pid": pid, "in_progress": False}]
    assert ingest_pending(results) == (1, 0)
    con = open_readonly(results)
    try:
        row = con.execute("SELECT status, error, ended_at IS NOT NULL, (SELECT count(*) FROM steps) FROM runs").fetchone()
    finally:
        con.close()
    assert row == ("abandoned", f"migflow process {pid} ended while the run was in progress", True, 1)


def test_run_in_progress_is_left_alone(tmp_path):
    results = tmp_path / "results.duckdb"
    rec = RunRecorder(results, {"run_id": "live"})
    assert ingest_pending(results) == (0, 1)
    assert rec.path.exists() and pending_runs(results)[0]["in_progress"] is True
    rec.finish("interrupted", error="SIGINT")
    assert not rec.path.exists()
    with pytest.raises(RuntimeError, match="already finished"):
        rec.add_step({"position": 0})
    rec.flush()
    assert not rec.path.exists(), "a flush after finish() does not resurrect the spool"
    assert rec.finish("completed").ingested, "finish() is idempotent"


# -- redaction ----------------------------------------------------------------


@pytest.mark.parametrize(
    "uri, keeps, drops",
    [
        ("qemu+ssh://root:secret@h/system?keyfile=/k&no_verify=1", ["qemu+ssh://root:", "@h/system", "no_verify=1", "keyfile="], ["secret", "/k&"]),
        ("qemu:///system", ["qemu:///system"], []),
        ("qemu+tcp://10.0.0.2:16509/system", ["qemu+tcp://10.0.0.2:16509/system"], []),
        (
            "qemu+ssh://u@[::1]:2222/system?command=/opt/ssh&socket=/run/s&netcat=/bin/nc&sshauth=privkey&known_hosts=/kh&mode=legacy",
            ["u@[::1]:2222/system", "mode=legacy", "command="],
            ["/opt/ssh", "/run/s", "/bin/nc", "privkey", "/kh"],
        ),
        (
            "qemu+tls://h/system?pkipath=/etc/pki/x&password=pw&client_secret=s3&apikey=k9&passphrase=pp",
            ["qemu+tls://h/system?pkipath="],
            ["/etc/pki/x", "=pw", "s3", "k9", "=pp"],
        ),
    ],
)
def test_redact_uri(uri, keeps, drops):
    red = redact_uri(uri)
    for k in keeps:
        assert k in red, (k, red)
    for d in drops:
        assert d not in red, (d, red)
    assert redact_uri(red) == red
    assert redact_uri(None) is None


# -- commands -----------------------------------------------------------------


def cli(*args, results=None):
    """migflow with the results file named by MIGFLOW_RESULTS, as a user's shell may set it."""
    env = None if results is None else {**os.environ, "MIGFLOW_RESULTS": str(results)}
    return migflow(*args, env=env, timeout=120)


@pytest.fixture
def filled(tmp_path):
    results = tmp_path / "results.duckdb"
    record_run(results, run_id="ok-1")
    rec, _ = record_run(results, run_id="bad-1", finish=False)
    rec.finish("failed", error="migrate: operation aborted: job 'migration out' canceled by client\nmore detail")
    return results


@pytest.mark.parametrize(
    "sql",
    [
        "DELETE FROM runs",
        "CREATE TABLE x(a int)",
        "ATTACH 'other.duckdb' AS o",
        "COPY runs TO 'out.csv'",
        "INSERT INTO runs (run_id) VALUES ('x')",
        "DROP TABLE runs",
        "UPDATE runs SET status = 'completed'",
        "SELECT 1; DELETE FROM runs",
        "INSTALL httpfs",
        "PRAGMA enable_profiling",
        "CREATE TEMP TABLE t AS SELECT 1",
    ],
)
def test_query_refuses_writes(filled, sql):
    r = cli("query", sql, results=filled)
    assert r.returncode == 2, r
    assert "refused:" in r.stderr and "read-only SQL" in r.stderr and "Traceback" not in r.stderr
    assert counts(filled)["runs"] == 2
    assert not (filled.parent / "out.csv").exists() and not (filled.parent / "other.duckdb").exists()


def test_query_formats(filled):
    r = cli("query", "SELECT run_id, status, error FROM runs ORDER BY run_id", "--format", "csv", "--results", str(filled))
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert [x["run_id"] for x in rows] == ["bad-1", "ok-1"] and rows[0]["error"].startswith("migrate: operation aborted")
    r = cli("query", "SELECT leg, flags, stats, started_at FROM migrations WHERE run_id = 'ok-1' ORDER BY leg", "--format", "json", results=filled)
    data = json.loads(r.stdout)
    assert data[0]["leg"] == 1 and data[0]["flags"] == ["live", "peer2peer"]
    assert data[0]["stats"]["ram"]["transferred"] == 1394795636, "JSON columns come out as JSON"
    assert dt.datetime.fromisoformat(data[0]["started_at"])
    r = cli("query", "SELECT mode, count(*) AS legs, avg(total_time) AS total_ms FROM migrations GROUP BY mode", results=filled)
    assert r.returncode == 0 and re.search(r"p2p\s+4\s+22004", r.stdout), r.stdout
    r = cli("query", "SELECT nope FROM runs", results=filled)
    assert r.returncode == 2 and "SQL error" in r.stderr and "Traceback" not in r.stderr
    r = cli("query", "SELECT 1", "--results", str(filled.parent / "none.duckdb"))
    assert r.returncode == 5 and "no results database" in r.stderr


def test_runs_lists_and_filters(filled):
    r = cli("runs", results=filled)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split()[:5] == ["run_id", "workflow", "scenario", "rep", "status"]
    assert any(ln.startswith("bad-1") and "failed" in ln and "operation aborted" in ln and "more detail" not in ln for ln in lines)
    assert any(ln.startswith("ok-1") and "completed" in ln for ln in lines)
    data = json.loads(cli("runs", "--status", "failed", "--json", results=filled).stdout)
    assert [d["run_id"] for d in data] == ["bad-1"]
    assert isinstance(data[0]["duration_s"], float) and 0 <= data[0]["duration_s"] < 60, data[0]  # a run recorded just now, ended after it began
    assert len(json.loads(cli("runs", "--limit", "1", "--json", results=filled).stdout)) == 1
    assert json.loads(cli("runs", "--workflow", "other", "--json", results=filled).stdout) == []


def test_ingest_command_and_pending_note(filled):
    holder = hold(filled, "ro")
    try:
        _, res = record_run(filled, run_id="spooled", wait_s=0.2)
        assert not res.ingested
        r = cli("query", "SELECT count(*) AS n FROM runs", results=filled)  # readers are fine alongside a reader
        assert r.returncode == 0 and "1 run is waiting in results.duckdb.spool/" in r.stderr and "migflow ingest" in r.stderr
        r = cli("ingest", "--wait", "0.2", results=filled)
        assert r.returncode == 5 and f"locked by PID {holder.pid}" in r.stderr
    finally:
        release(holder)
    r = cli("ingest", results=filled)
    assert r.returncode == 0 and "1 run written" in r.stdout, r
    assert counts(filled)["runs"] == 3
    r = cli("ingest", results=filled)
    assert r.returncode == 0 and "nothing to ingest" in r.stdout
    assert "waiting" not in cli("runs", results=filled).stderr


def test_help_teaches():
    for cmd in ("query", "runs", "ingest"):
        r = cli(cmd, "--help")
        assert r.returncode == 0 and "Examples:" in r.stdout and "MIGFLOW_RESULTS" in r.stdout


# -- documentation ------------------------------------------------------------


def test_a_version_1_file_is_migrated_and_keeps_no_foreign_clock_in_qmp_columns(tmp_path):
    """Version 1 stored libvirt's job clock as total_time: version 2 moves it to job_time_elapsed."""
    from migflow.records.store import connect_writer

    results = tmp_path / "v1.duckdb"
    con = duckdb.connect(str(results))
    con.execute("CREATE TABLE runs (run_id VARCHAR PRIMARY KEY, backend VARCHAR)")
    con.execute("CREATE TABLE migrations (run_id VARCHAR, leg INTEGER, total_time BIGINT, downtime BIGINT, PRIMARY KEY (run_id, leg))")
    con.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ, migflow_version VARCHAR)")
    con.execute("INSERT INTO schema_version VALUES (1, now(), '0.1.0')")
    con.execute("INSERT INTO runs VALUES ('lv', 'libvirt'), ('qm', 'qemu')")
    con.execute("INSERT INTO migrations VALUES ('lv', 1, 889, 48), ('qm', 1, 190, 19)")
    con.close()
    con = connect_writer(results, 5)
    try:
        rows = con.execute("SELECT run_id, total_time, downtime, job_time_elapsed, job_downtime, stats_source FROM migrations ORDER BY run_id").fetchall()
        assert rows == [("lv", None, None, 889, 48, "libvirt"), ("qm", 190, 19, None, None, None)]
        assert con.execute("SELECT max(version) FROM schema_version").fetchone()[0] == SCHEMA_VERSION
        cols = {r[0] for r in con.execute("SELECT column_name FROM information_schema.columns WHERE table_name = 'runs'").fetchall()}
        assert {"environment", "steady_state", "extra"} <= cols  # every column of today's table
    finally:
        con.close()
    con = connect_writer(results, 5)  # a second open migrates nothing twice
    try:
        assert con.execute("SELECT job_time_elapsed FROM migrations WHERE run_id = 'lv'").fetchone() == (889,)
    finally:
        con.close()


def test_every_column_is_documented():
    doc = (Path(__file__).resolve().parents[1] / "docs" / "results.md").read_text()
    missing = [f"{t}.{c}" for t, spec in TABLES.items() for c, _, _ in spec if not re.search(rf"`{re.escape(c)}`", doc)]
    assert not missing, f"undocumented columns: {missing}"
    for table in TABLES:
        assert f"`{table}`" in doc


def test_documented_sql_examples_run(tmp_path):
    from migflow.records import run_sql

    results = tmp_path / "results.duckdb"
    record_run(results, run_id="ok-1")
    rec, _ = record_run(results, run_id="bad-1", finish=False)
    rec.add_step({"position": 1, "status": "failed", "error": "boom"})
    rec.finish("failed", error="migrate failed: boom")
    doc = (Path(__file__).resolve().parents[1] / "docs" / "results.md").read_text()
    blocks = re.findall(r"```sql\n(.*?)```", doc, re.S)
    assert len(blocks) >= 5
    con = open_readonly(results)
    try:
        outs = [run_sql(con, b.replace("RUN_ID", "ok-1")) for b in blocks]
    finally:
        con.close()
    assert all(rows for _, _, rows in outs), [b for b, (_, _, rows) in zip(blocks, outs, strict=True) if not rows]
    [first] = [o for b, o in zip(blocks, outs, strict=True) if "AS total_ms" in b][:1]
    summary = dict(zip(first[0], first[2][0], strict=True))
    assert summary["mode"] == "p2p" and summary["legs"] == 4 and summary["total_ms"] == 22004 and summary["mbps"] == 507.3


def test_concurrent_runs_all_arrive(tmp_path):
    """Several processes and threads finish runs at the same moment: every record arrives."""
    results = tmp_path / "results.duckdb"
    code = textwrap.dedent(f"""
        import sys, threading
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_records import record_run
        out = []
        def one(i):
            out.append(record_run({str(results)!r}, run_id=f"p{{sys.argv[1]}}-t{{i}}", wait_s=60)[1].ingested)
        ts = [threading.Thread(target=one, args=(i,)) for i in range(3)]
        [t.start() for t in ts]; [t.join() for t in ts]
        print(sum(out))
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code, str(n)], stdout=subprocess.PIPE, text=True) for n in range(3)]
    written = sum(int(p.communicate(timeout=120)[0]) for p in procs)
    assert written == 9
    assert not list_spools(results)
    assert counts(results) == {"runs": 9, "steps": 18, "migrations": 18, "samples": 108}


def test_samples_live_beside_the_spool_and_a_missing_file_keeps_the_spool(tmp_path):
    results = tmp_path / "results.duckdb"
    rec, _ = record_run(results, finish=False)
    rec.flush()
    data = json.loads(rec.path.read_text())
    assert "samples" not in data and data["samples_count"] > 0
    assert samples_path(rec.path).read_text().splitlines()[0].startswith("run_id,leg,ms,kind")
    samples_path(rec.path).unlink()  # lost by hand: the run must not be written without its samples
    result = rec.finish("completed")
    assert not result.ingested and "is missing" in result.message
    assert rec.path.exists()


def test_an_older_migflows_samples_file_is_ingested_with_nulls_for_newer_columns(tmp_path):
    """A spool written before the samples table grew columns (src/dst_qemu_cpu_ms) still ingests."""
    results = tmp_path / "results.duckdb"
    rec, _ = record_run(results, finish=False)
    rec.flush()
    path = samples_path(rec.path)
    rows = list(csv.reader(path.read_text().splitlines()))
    old = [c for c in rows[0] if not c.endswith("_qemu_cpu_ms")]
    keep = [rows[0].index(c) for c in old]
    assert len(old) < len(rows[0])  # the file really is narrower
    path.write_text("\n".join(",".join(r[i] for i in keep) for r in rows) + "\n")
    result = rec.finish("completed")
    assert result.ingested, result.message
    with duckdb.connect(str(results), read_only=True) as con:
        n, cpu, transferred = con.execute("SELECT count(*), count(src_qemu_cpu_ms), count(transferred) FROM samples").fetchone()
    col = rows[0].index("transferred")
    assert (n, cpu) == (len(rows) - 1, 0) and transferred == sum(1 for r in rows[1:] if r[col] != "")
