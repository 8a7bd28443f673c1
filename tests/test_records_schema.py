"""The tables' DDL, the schema version, and the migration of older files (src/migflow/records/schema.py)."""

from __future__ import annotations

import duckdb
import pytest

from migflow.errors import StoreError
from migflow.records.schema import SCHEMA_VERSION, column_types, columns, ddl, ensure_schema


def test_ddl_with_and_without_a_primary_key():
    assert ddl("schema_version") == (
        "CREATE TABLE IF NOT EXISTS schema_version (\n    version INTEGER,\n    applied_at TIMESTAMPTZ,\n    migflow_version VARCHAR,\n    PRIMARY KEY (version)\n)"
    )
    assert ddl("steps").endswith("    result JSON,\n    PRIMARY KEY (run_id, position)\n)")
    assert ddl("samples").endswith("    dst_qemu_cpu_ms DOUBLE\n)"), "the big table has no index"
    assert columns("metrics") == ["run_id", "leg", "name", "value", "unit", "plugin"]
    assert column_types("metrics") == {"run_id": "VARCHAR", "leg": "INTEGER", "name": "VARCHAR", "value": "DOUBLE", "unit": "VARCHAR", "plugin": "VARCHAR"}


def versions(con):
    return con.execute("SELECT version, migflow_version IS NOT NULL, applied_at IS NOT NULL FROM schema_version ORDER BY version").fetchall()


def test_a_new_file_gets_every_table_and_one_version_row(tmp_path):
    with duckdb.connect(str(tmp_path / "r.duckdb")) as con:
        ensure_schema(con)
        ensure_schema(con)
        assert versions(con) == [(SCHEMA_VERSION, True, True)]
        tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        assert tables == {"runs", "steps", "migrations", "samples", "metrics", "schema_version"}
        assert con.execute("SELECT count(*) FROM duckdb_constraints() WHERE table_name = 'samples' AND constraint_type = 'PRIMARY KEY'").fetchone() == (0,)


def test_a_newer_file_is_refused(tmp_path):
    with duckdb.connect(str(tmp_path / "r.duckdb")) as con:
        ensure_schema(con)
        con.execute("INSERT INTO schema_version VALUES (?, now(), 'x')", [SCHEMA_VERSION + 1])
        with pytest.raises(StoreError) as err:
            ensure_schema(con)
    assert err.value.message == (f"the results database has schema version {SCHEMA_VERSION + 1}, newer than this migflow understands ({SCHEMA_VERSION})")
    assert err.value.hint == "upgrade migflow, or write to another file with --results"


def test_version_1s_metrics_view_gives_way_to_the_table(tmp_path):
    with duckdb.connect(str(tmp_path / "r.duckdb")) as con:
        con.execute("CREATE VIEW metrics AS SELECT 'downtime' AS metric")
        ensure_schema(con)
        assert con.execute("SELECT count(*) FROM duckdb_views() WHERE view_name = 'metrics'").fetchone() == (0,)
        assert con.execute("SELECT count(*) FROM metrics").fetchone() == (0,)


def test_version_1_migration_moves_only_libvirts_clock_not_yet_moved(tmp_path):
    with duckdb.connect(str(tmp_path / "r.duckdb")) as con:
        con.execute("CREATE TABLE runs (run_id VARCHAR PRIMARY KEY, backend VARCHAR)")
        con.execute("CREATE TABLE migrations (run_id VARCHAR, leg INTEGER, total_time BIGINT, downtime BIGINT, job_time_elapsed BIGINT)")
        con.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ, migflow_version VARCHAR)")
        con.execute("INSERT INTO schema_version VALUES (1, now(), '0.1.0')")
        con.execute("INSERT INTO runs VALUES ('lv', 'libvirt'), ('done', 'libvirt'), ('qm', 'qemu')")
        con.execute("INSERT INTO migrations VALUES ('lv', 1, 889, 48, NULL), ('done', 1, 190, 19, 200), ('qm', 1, 150, 15, NULL)")
        ensure_schema(con)
        assert con.execute("SELECT run_id, total_time, downtime, job_time_elapsed, job_downtime, stats_source FROM migrations ORDER BY run_id").fetchall() == [
            ("done", 190, 19, 200, None, None),
            ("lv", None, None, 889, 48, "libvirt"),
            ("qm", 150, 15, None, None, None),
        ]
        assert versions(con) == [(1, True, True), (SCHEMA_VERSION, True, True)]
        assert "environment" in {r[0] for r in con.execute("SELECT column_name FROM information_schema.columns WHERE table_name = 'runs'").fetchall()}
