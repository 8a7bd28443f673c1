"""Security: secrets in URIs never stored or printed; ``migflow query`` cannot
change anything; warnings about plain TCP and unencrypted migration streams.

Redaction is checked end to end through the engine with the fake backend
(tests/fakes.py): the same recorder and progress display the real backends use.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import duckdb
import fakes
import pytest
from cli_runner import migflow, user_env
from test_engine import workflow

from migflow.engine import Engine
from migflow.hookspecs import hookimpl
from migflow.plugins import get_plugins
from migflow.progress import ProgressDisplay
from migflow.redact import redact_json, redact_text, redact_uri
from migflow.registry import BackendSpec, HostPair, ModeSpec
from migflow.security import transport, transport_warnings

SRC = "fake+ssh://root:hunter2@host-a/system?keyfile=/root/.ssh/id_secret&no_verify=1"
DST = "fake+tls://host-b/system?pkipath=/etc/pki/private-dir"
SECRETS = ("hunter2", "/root/.ssh/id_secret", "/etc/pki/private-dir", "id_secret")


class LeakyBackend(fakes.FakeBackend):
    """The fake backend, but host_info and errors quote the full URIs, as a careless plugin would."""

    def host_info(self):
        return {"source": {"uri": self.source_uri}, "destination": {"uri": self.destination_uri, "note": f"via {self.source_uri}"}}


class Leaky:
    __name__ = "leaky"

    @hookimpl
    def migflow_register_backends(self, register):
        register(BackendSpec("leaky", LeakyBackend))

    @hookimpl
    def migflow_register_modes(self, register):
        register(ModeSpec("leaky-mode", "leaky", ("live",)))


@pytest.fixture
def plugins():
    fakes.FakeBackend.calls = []
    return get_plugins(extra=(fakes, Leaky()))


def _dump(db) -> str:
    with duckdb.connect(str(db), read_only=True) as con:
        tables = [t for (t,) in con.execute("SHOW TABLES").fetchall()]
        return json.dumps({t: con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall() for t in tables}, default=str)


def test_secrets_in_uris_are_redacted_in_every_table_and_in_the_progress_lines(plugins, tmp_path):
    db = tmp_path / "r.duckdb"
    wf = workflow(
        [("prepare-domain", {}), ("migrate", {"mode": "leaky-mode", "sleep": 0.2}), ("explode", {"message": f"lost {SRC} on the way"}), ("restore", {})],
        round_trip=True,
    )
    wf.backend = "leaky"
    stream = io.StringIO()
    display = ProgressDisplay(1, live=False, stream=stream)
    plugins.pm.register(display, name="progress-display")
    echoed: list[str] = []
    [summary] = Engine(plugins, wf, HostPair(SRC, DST), str(db), echo=echoed.append).run()
    assert summary.status == "failed"

    with duckdb.connect(str(db), read_only=True) as con:
        run = con.execute("SELECT source_uri, destination_uri, error, host_versions FROM runs").fetchone()
        legs = con.execute("SELECT leg, source, destination FROM migrations ORDER BY leg").fetchall()
        step_error = con.execute("SELECT error FROM steps WHERE step = 'explode'").fetchone()[0]
    src_r = "fake+ssh://root:***@host-a/system?keyfile=***&no_verify=1"
    dst_r = "fake+tls://host-b/system?pkipath=***"
    assert run[:2] == (src_r, dst_r)
    assert legs == [(1, src_r, dst_r), (2, dst_r, src_r)]  # migrations.source/destination, both legs
    assert src_r in run[2] and src_r in step_error  # errors quoting a URI
    assert json.loads(run[3])["source"]["uri"] == src_r  # host_info from a plugin
    printed = stream.getvalue() + "\n".join(echoed)
    assert f"leg 1 leaky-mode {src_r} -> {dst_r}" in printed and src_r in printed
    everything = _dump(db) + printed
    for secret in SECRETS:
        assert secret not in everything
    assert not list(Path(str(db) + ".spool").glob("*.json"))  # nothing left in the spool either


def test_the_spool_holds_no_secret_while_a_run_is_in_progress(tmp_path):
    from migflow.records import RunRecorder

    rec = RunRecorder(tmp_path / "r.duckdb", {"run_id": "r1", "source_uri": SRC, "destination_uri": DST})
    rec.add_leg({"leg": 1, "source": SRC, "destination": DST, "error": f"cannot reach {SRC}"})
    rec.add_step({"position": 0, "step": "x", "error": f"{DST} refused", "result": {"uri": SRC}})
    rec.set_run(extra={"hosts": [SRC, DST]})
    text = rec.path.read_text()
    assert "***" in text
    for secret in SECRETS:
        assert secret not in text
    rec.finish("failed", f"gave up on {SRC}")
    assert all(s not in _dump(tmp_path / "r.duckdb") for s in SECRETS)


@pytest.mark.parametrize(
    "uri,expected",
    [
        ("qemu+ssh://root:pw@h/system", "qemu+ssh://root:***@h/system"),
        ("qemu+ssh://root@h/system?keyfile=/k", "qemu+ssh://root@h/system?keyfile=***"),
        ("qemu+ssh://h/system?known_hosts=/kh&sshauth=privkey&command=/bin/x", "qemu+ssh://h/system?known_hosts=***&sshauth=***&command=***"),
        ("qemu+libssh2://h/system?socket=/s&netcat=/nc&no_tty=1", "qemu+libssh2://h/system?socket=***&netcat=***&no_tty=1"),
        ("qemu+tls://h/system?pkipath=/p&no_verify=1", "qemu+tls://h/system?pkipath=***&no_verify=1"),
        ("qemu+tcp://h/system?api_token=abc", "qemu+tcp://h/system?api_token=***"),
        ("qemu+tcp://198.18.0.1/system", "qemu+tcp://198.18.0.1/system"),
        ("qemu:///system", "qemu:///system"),
        ("qemu+tcp://[::1", "***"),  # unparsable: nothing kept
    ],
)
def test_redact_uri(uri, expected):
    assert redact_uri(uri) == expected


def test_redact_text_and_json():
    assert (
        redact_text("a qemu+ssh://u:pw@h/system?keyfile=/k, then (qemu+tls://h/system).")
        == "a qemu+ssh://u:***@h/system?keyfile=***, then (qemu+tls://h/system)."
    )
    assert redact_text("no uri here: 10:20 a=b") == "no uri here: 10:20 a=b"
    assert redact_json({"k": ["qemu+ssh://u:pw@h/s", 3, None], "pw": "x"}) == {"k": ["qemu+ssh://u:***@h/s", 3, None], "pw": "x"}


# -- migflow query cannot modify anything --------------------------------------------------------


@pytest.fixture
def results(plugins, tmp_path):
    db = tmp_path / "r.duckdb"
    wf = workflow([("prepare-domain", {}), ("migrate", {"mode": "fake-mode", "sleep": 0.05}), ("restore", {})], repetitions=2)
    Engine(plugins, wf, HostPair("fake://a", "fake://b"), str(db), echo=lambda s: None).run()
    return db


def _digest(db: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(db.parent.glob(db.name + "*")):
        if p.is_file():
            h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()


WRITES = [
    "DELETE FROM runs",
    "UPDATE runs SET status = 'completed'",
    "INSERT INTO runs (run_id) VALUES ('x')",
    "DROP TABLE samples",
    "CREATE TABLE t AS SELECT 1",
    "CREATE TEMP TABLE t AS SELECT * FROM runs",
    "ALTER TABLE runs ADD COLUMN x INTEGER",
    "TRUNCATE runs",
    "COPY runs TO 'OUT/x.csv'",
    "COPY (SELECT * FROM runs) TO 'OUT/x.parquet' (FORMAT parquet)",
    "COPY runs FROM 'OUT/x.csv'",
    "EXPORT DATABASE 'OUT/export'",
    "ATTACH 'OUT/other.duckdb' AS other",
    "ATTACH 'OUT/other.duckdb' AS other; CREATE TABLE other.t AS SELECT * FROM runs",
    "DETACH r",
    "INSTALL httpfs",
    "LOAD httpfs",
    "PRAGMA enable_profiling",
    "PRAGMA profiling_output = 'OUT/profile.txt'",
    "SET enable_external_access = true",
    "SET threads = 1",
    "RESET threads",
    "USE memory",
    "CALL pragma_version()",
    "CHECKPOINT",
    "VACUUM",
    "SELECT 1; DELETE FROM runs",
    "SELECT 1 /* ; */ ; /* hidden */ DELETE FROM runs",
    "-- a comment\nDELETE FROM runs",
    "/* SELECT */ DELETE FROM runs",
    "WITH gone AS (DELETE FROM runs RETURNING *) SELECT * FROM gone",
    "EXPLAIN ANALYZE DELETE FROM runs",
    "SELECT * FROM read_csv('/etc/hostname')",  # no file access from SQL at all
    "SELECT * FROM read_text('/etc/hostname')",
    "SELECT * FROM glob('/etc/*')",
    "SELECT * FROM read_parquet('https://example.invalid/x.parquet')",
    "BEGIN TRANSACTION",
    "PREPARE p AS DELETE FROM runs",
    "CREATE MACRO m() AS 1",
    "CREATE SECRET s (TYPE s3, KEY_ID 'a', SECRET 'b')",
]


def test_query_refuses_every_write_and_the_data_stay(results, tmp_path):
    before_rows = _dump(results)
    before = _digest(results)
    out = tmp_path / "out"
    out.mkdir()
    for sql in WRITES:
        proc = migflow("query", "--results", str(results), "--", sql.replace("OUT", str(out)), cwd=tmp_path, env=user_env(), timeout=120)
        text = proc.stdout + proc.stderr
        assert proc.returncode == 2, (sql, text)
        assert "Traceback" not in text, (sql, text)
        assert "refused" in text or "SQL error" in text, (sql, text)
    assert list(out.iterdir()) == []  # no file written by COPY, EXPORT, ATTACH, PRAGMA profiling_output
    assert _digest(results) == before  # not one byte of the database or its WAL changed
    assert _dump(results) == before_rows
    proc = migflow("query", "--results", str(results), "SELECT count(*) AS n FROM runs", "--format", "json", env=user_env(), timeout=120)
    assert proc.returncode == 0 and json.loads(proc.stdout) == [{"n": 2}]


def test_reading_statements_still_work(results):
    for sql in [
        "SHOW TABLES",
        "DESCRIBE migrations",
        "SUMMARIZE runs",
        "PRAGMA table_info('runs')",
        "FROM runs SELECT count(*)",
        "EXPLAIN SELECT * FROM runs",
        "SELECT stats->>'$.ram.total' FROM migrations",
        "VALUES (1)",
    ]:
        proc = migflow("query", "--results", str(results), sql, env=user_env(), timeout=120)
        assert proc.returncode == 0, (sql, proc.stderr)


# -- warnings about transports ----------------------------------------------------------------------

BASE = """
name = "t"
[domain]
name = "g"
[[steps]]
use = "prepare-domain"
[[steps]]
use = "migrate"
mode = "MODE"
FLAGS
[[steps]]
use = "restore"
"""
TCP_WARNING = "plain TCP: libvirt's connection is unencrypted"
STREAM_WARNING = "carries the guest's RAM unencrypted"


@pytest.mark.parametrize(
    "src,dst,mode,flags,expected",
    [
        (None, None, "p2p", "", set()),  # the lab: no warning
        ("qemu+tcp://198.18.0.1/system", "qemu+tcp://198.18.0.2/system", "p2p", "", set()),  # the lab's URIs
        ("qemu+tcp://a/system", "qemu+tcp://b/system", "p2p", "", {TCP_WARNING, STREAM_WARNING}),
        ("qemu+tcp://a/system", "qemu+tcp://b/system", "p2p-tunnelled", "", {TCP_WARNING, STREAM_WARNING}),  # tunnel over plain TCP
        ("qemu+tls://a/system", "qemu+tls://b/system", "p2p", "", {STREAM_WARNING}),
        ("qemu+ssh://root@a/system", "qemu+ssh://root@b/system", "managed-direct", "", {STREAM_WARNING}),
        ("qemu+tls://a/system", "qemu+tls://b/system", "p2p-tunnelled", "", set()),
        ("qemu+ssh://root@a/system", "qemu+ssh://root@b/system", "p2p-tunnelled", "", set()),
        ("qemu+tls://a/system", "qemu+tls://b/system", "p2p", 'flags = ["tls"]', set()),
        ("qemu+tls://a/system", "qemu+tls://b/system", "zstack", 'flags = ["tls"]', set()),
        ("qemu+tcp://a/system", "qemu+tls://b/system", "p2p", 'flags = ["tls"]', {TCP_WARNING}),
        ("qemu://a/system", "qemu://b/system", "p2p", 'flags = ["tls"]', set()),  # no transport: TLS by default
    ],
)
def test_transport_warnings_in_dry_run(tmp_path, src, dst, mode, flags, expected):
    wf = tmp_path / "wf.toml"
    wf.write_text(BASE.replace("MODE", mode).replace("FLAGS", flags))
    args = ["run", str(wf), "--dry-run", "--results", str(tmp_path / "r.duckdb")]
    if src:
        args += ["--src", src, "--dst", dst]
    proc = migflow(*args, cwd=tmp_path, env=user_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    warnings = [ln for ln in proc.stderr.splitlines() if ln.startswith("migflow: warning:")]
    found = {w for w in (TCP_WARNING, STREAM_WARNING) if any(w in ln for ln in warnings)}
    assert found == expected, proc.stderr
    assert len(warnings) == len(expected)  # one line per risk
    if TCP_WARNING in found:
        assert "qemu+tls://HOST/system or qemu+ssh://USER@HOST/system" in proc.stderr
    if STREAM_WARNING in found:
        assert 'flags = ["tls"]' in proc.stderr and "p2p-tunnelled over qemu+tls" in proc.stderr
    assert not (tmp_path / "r.duckdb").exists()


def test_dry_run_prints_hosts_redacted(tmp_path):
    wf = tmp_path / "wf.toml"
    wf.write_text(BASE.replace("MODE", "p2p").replace("FLAGS", 'flags = ["tls"]'))
    proc = migflow(
        "run",
        str(wf),
        "--dry-run",
        "--src",
        "qemu+ssh://root:hunter2@a/system?keyfile=/k",
        "--dst",
        "qemu+ssh://b/system",
        cwd=tmp_path,
        env=user_env(),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "hosts: qemu+ssh://root:***@a/system?keyfile=*** -> qemu+ssh://b/system" in proc.stdout
    assert "hunter2" not in proc.stdout + proc.stderr and "=/k" not in proc.stdout + proc.stderr


def test_transport_of_uris():
    assert [
        transport(u) for u in ["qemu+tcp://h/system", "qemu+tls://h/system", "qemu+ssh://u@h/system", "qemu:///system", "qemu://h/system", "tcp://h", ""]
    ] == ["tcp", "tls", "ssh", "unix", "tls", "tcp", None]


def test_no_stream_warning_when_both_hosts_are_this_machine():
    wf = workflow([("migrate", {"mode": "p2p"})])
    [only] = transport_warnings(wf, HostPair("qemu:///system", "qemu+tcp://localhost/system"), {})
    assert "plain TCP" in only
