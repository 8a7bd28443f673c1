"""The tables of the results database: one description drives the DDL, the
value checks, the ingest and the documentation test.

Every column is ``(name, SQL type, unit or meaning)``.  Timestamps are
``TIMESTAMPTZ`` (an instant; shown in the session's ``TimeZone``).  Flags are
``VARCHAR[]`` so ``list_contains(flags, 'live')`` works.
"""

from __future__ import annotations

from ..status import LegStatus, RunStatus, StepStatus

__all__ = [
    "LEG_STATUSES",
    "MEASUREMENT_COLUMNS",
    "PRIMARY_KEYS",
    "RUN_STATUSES",
    "SCHEMA_VERSION",
    "STAT_COLUMNS",
    "STEP_STATUSES",
    "TABLES",
    "column_types",
    "columns",
    "ddl",
    "ensure_schema",
]

#: bump when a table changes; ``ensure_schema`` then migrates older files.
SCHEMA_VERSION = 2

RUN_STATUSES = tuple(RunStatus)
STEP_STATUSES = tuple(StepStatus)
LEG_STATUSES = tuple(LegStatus)

_RUNS = [
    ("run_id", "VARCHAR", "unique id of the run"),
    ("workflow", "VARCHAR", "workflow name"),
    ("workflow_file", "VARCHAR", "path of the workflow file"),
    ("scenario", "VARCHAR", "scenario label (one combination of the matrix)"),
    ("params", "JSON", "the scenario's matrix parameters"),
    ("repetition", "INTEGER", "repetition number of this scenario"),
    ("plan_index", "INTEGER", "position of the run in the plan"),
    ("backend", "VARCHAR", "backend name (libvirt, ...)"),
    ("source_uri", "VARCHAR", "source host URI, secrets redacted"),
    ("destination_uri", "VARCHAR", "destination host URI, secrets redacted"),
    ("host_versions", "JSON", "software versions of the hosts (libvirt, QEMU, kernel)"),
    ("domain", "JSON", "the domain under test as configured, without secrets"),
    ("started_at", "TIMESTAMPTZ", "start of the run"),
    ("ended_at", "TIMESTAMPTZ", "end of the run (NULL while running)"),
    ("status", "VARCHAR", "running, completed, failed, interrupted, lost, abandoned"),
    ("error", "VARCHAR", "why the run did not complete"),
    ("migflow_version", "VARCHAR", "migflow version that recorded the run"),
    ("pid", "INTEGER", "process id of the migflow process"),
    ("hostname", "VARCHAR", "host the migflow process ran on"),
    ("extra", "JSON", "anything else a plugin records about the run"),
    ("environment", "JSON", "conditions of the run: link shaping, accelerator, hosts' kernel, CPU, versions, load, free memory"),
    ("steady_state", "VARCHAR", "observed (the guest announced it), not-observed (no heartbeat guest), off (not waited for)"),
    ("steady_after_ms", "DOUBLE", "ms from the guest's workload start to its steady-state announcement (guest clock)"),
    ("steady_dirty_rate_mibs", "DOUBLE", "MiB/s, the dirty rate the guest achieved when it announced steady state"),
    ("warmup_s", "DOUBLE", "s, the extra fixed wait after the domain ran (and was steady)"),
]

_STEPS = [
    ("run_id", "VARCHAR", "the run"),
    ("position", "INTEGER", "position of the step in the workflow (from 0)"),
    ("step", "VARCHAR", "step name (prepare-domain, migrate, ...)"),
    ("status", "VARCHAR", "running, completed, failed, skipped, interrupted, abandoned"),
    ("started_at", "TIMESTAMPTZ", "start of the step"),
    ("duration_ms", "DOUBLE", "ms"),
    ("error", "VARCHAR", "why the step failed"),
    ("result", "JSON", "what the step returned"),
]

#: QMP ``query-migrate`` statistics: (column, type, unit).  Column = QMP field
#: with ``-`` and ``.`` written ``_`` (``migflow.legs.flatten_stats``).
_STATS = [
    ("setup_time", "BIGINT", "ms"),
    ("downtime", "BIGINT", "ms"),
    ("total_time", "BIGINT", "ms"),
    ("expected_downtime", "BIGINT", "ms"),
    ("ram_total", "BIGINT", "bytes"),
    ("ram_transferred", "BIGINT", "bytes"),
    ("ram_remaining", "BIGINT", "bytes"),
    ("ram_mbps", "DOUBLE", "Mbit/s"),
    ("ram_duplicate", "BIGINT", "pages"),
    ("ram_skipped", "BIGINT", "pages"),
    ("ram_normal", "BIGINT", "pages"),
    ("ram_normal_bytes", "BIGINT", "bytes"),
    ("ram_dirty_sync_count", "BIGINT", "iterations"),
    ("ram_page_size", "BIGINT", "bytes"),
    ("ram_postcopy_requests", "BIGINT", "requests"),
    ("ram_dirty_pages_rate", "DOUBLE", "pages/s"),
    ("xbzrle_cache_cache_size", "BIGINT", "bytes"),
    ("xbzrle_cache_bytes", "BIGINT", "bytes"),
    ("xbzrle_cache_pages", "BIGINT", "pages"),
    ("xbzrle_cache_cache_miss", "BIGINT", "pages"),
    ("xbzrle_cache_cache_miss_rate", "DOUBLE", "ratio"),
    ("xbzrle_cache_encoding_rate", "DOUBLE", "ratio"),
    ("xbzrle_cache_overflow", "BIGINT", "pages"),
    ("cpu_throttle_percentage", "INTEGER", "percent"),
    ("disk_total", "BIGINT", "bytes"),
    ("disk_transferred", "BIGINT", "bytes"),
    ("disk_remaining", "BIGINT", "bytes"),
    ("disk_bps", "DOUBLE", "bytes/s"),
]
STAT_COLUMNS = tuple(c for c, _, _ in _STATS)

#: what observers measure about a leg beside QEMU's statistics (keys of ``leg.extra``
#: that the recorder stores in their own ``migrations`` columns)
_MEASUREMENTS = [
    ("guest_pause_ms", "DOUBLE", "ms, pause observed inside the guest"),
    ("guest_dirty_rate_mibs", "DOUBLE", "MiB/s, guest dirty rate"),
    ("stats_source", "VARCHAR", "qemu: QEMU's own final query-migrate; libvirt: libvirt's job statistics only (total_time, downtime NULL)"),
    ("job_time_elapsed", "BIGINT", "ms, libvirt's job clock: job start (Begin/Perform) to Confirm, destination start included"),
    ("job_time_elapsed_net", "BIGINT", "ms, job_time_elapsed minus libvirt's measured transfer time between the daemons"),
    ("job_downtime", "BIGINT", "ms, libvirt's downtime: source STOP event to destination resume (two hosts' clocks)"),
    ("job_downtime_net", "BIGINT", "ms, job_downtime minus the transfer time between the daemons"),
    ("wall_before_qemu_ms", "DOUBLE", "ms, client call until QEMU's migration began (libvirt begin/prepare, destination start)"),
    ("wall_qemu_ms", "DOUBLE", "ms, QEMU's migration as the client saw it (MIGRATION setup to completed)"),
    ("wall_after_qemu_ms", "DOUBLE", "ms, QEMU completed until the client's call returned (finish, confirm)"),
    ("in_force", "JSON", "migration capabilities and parameters QEMU reported while the leg ran"),
    ("link", "JSON", "link shaping in force during the leg (rate, delay_ms, jitter_ms, loss_pct; NULL where unknown)"),
    ("timeout_action", "VARCHAR", "the timeout action that fired (abort, suspend, postcopy), NULL when none did"),
    ("postcopy_started_ms", "DOUBLE", "ms from the leg's start until QEMU entered post-copy (MIGRATION postcopy-active); NULL without post-copy"),
    ("postcopy_ms", "DOUBLE", "ms the post-copy phase lasted (postcopy-active to completed)"),
    ("memory_verified", "BOOLEAN", "the guest checked its working set after the leg: true when no page was wrong, NULL when not checkable"),
    ("disk_verified", "BOOLEAN", "the Linux guest checked its disk after the leg: true when no block was wrong, NULL without a disk writer"),
    ("net_pause_ms", "DOUBLE", "ms, the longest gap between answers to 1 kHz UDP probes from outside both hosts (guests with a NIC)"),
    ("net_probes_sent", "BIGINT", "UDP probes sent to the guest during the leg"),
    ("net_probes_lost", "BIGINT", "UDP probes sent during the leg that were never answered"),
    ("src_qemu_cpu_ms", "DOUBLE", "ms of CPU the source QEMU used during the leg (all threads; NULL when its host is not this machine)"),
    ("src_vcpu_cpu_ms", "DOUBLE", "ms of CPU the source QEMU's vCPU threads used during the leg"),
    ("dst_qemu_cpu_ms", "DOUBLE", "ms of CPU the destination QEMU used from its start to the leg's end"),
    ("dst_vcpu_cpu_ms", "DOUBLE", "ms of CPU the destination QEMU's vCPU threads used"),
]
MEASUREMENT_COLUMNS = tuple(c for c, _, _ in _MEASUREMENTS)

_MIGRATIONS = [
    ("run_id", "VARCHAR", "the run"),
    ("leg", "INTEGER", "leg number within the run (from 1; a round trip has 2)"),
    ("source", "VARCHAR", "source host (URI redacted or name)"),
    ("destination", "VARCHAR", "destination host (URI redacted or name)"),
    ("mode", "VARCHAR", "migration mode (managed-direct, p2p, ...)"),
    ("flags", "VARCHAR[]", "migration flags"),
    ("started_at", "TIMESTAMPTZ", "start of the leg (client clock)"),
    ("ended_at", "TIMESTAMPTZ", "end of the leg (client clock)"),
    ("wall_ms", "DOUBLE", "ms, client wall time like `time virsh migrate`"),
    ("status", "VARCHAR", "running, completed, failed, interrupted, abandoned"),
    ("error", "VARCHAR", "why the leg failed"),
    ("guest", "INTEGER", "which guest of the run the leg moved (from 1; [domain.create] count)"),
    ("batch", "INTEGER", "the group of legs migrated together: 1 there, 2 back (an evacuation of every guest)"),
    ("concurrency", "INTEGER", "how many legs of its batch could run at once (the migrate step's concurrency)"),
    *_STATS,
    *_MEASUREMENTS,
    ("stats", "JSON", "the raw final statistics (QMP shape), nothing dropped"),
    ("extra", "JSON", "anything else a plugin records about the leg"),
]

_SAMPLES = [
    ("run_id", "VARCHAR", "the run"),
    ("leg", "INTEGER", "leg number"),
    ("ms", "DOUBLE", "ms since the leg started (client clock)"),
    ("kind", "VARCHAR", "poll (periodic) or iteration (a new pass over RAM began)"),
    ("status", "VARCHAR", "QMP migration status (active, completed, ...)"),
    ("transferred", "BIGINT", "bytes, ram.transferred"),
    ("remaining", "BIGINT", "bytes, ram.remaining"),
    ("total", "BIGINT", "bytes, ram.total"),
    ("mbps", "DOUBLE", "Mbit/s, ram.mbps"),
    ("dirty_pages_rate", "DOUBLE", "pages/s, ram.dirty-pages-rate"),
    ("iteration", "BIGINT", "ram.dirty-sync-count"),
    ("throttle", "INTEGER", "percent, cpu-throttle-percentage"),
    ("expected_downtime", "BIGINT", "ms, expected-downtime"),
    ("src_qemu_cpu_ms", "DOUBLE", "ms of CPU the source QEMU used since the leg began (lab hosts)"),
    ("dst_qemu_cpu_ms", "DOUBLE", "ms of CPU the destination QEMU used since it started (lab hosts)"),
]

#: measurements plugins record themselves, long format: one row per (run, leg, name)
_PLUGIN_METRICS = [
    ("run_id", "VARCHAR", "the run"),
    ("leg", "INTEGER", "the leg it measures (0: the run as a whole)"),
    ("name", "VARCHAR", "the metric's name, e.g. example.wall_s (prefix it with your plugin's name)"),
    ("value", "DOUBLE", "its value"),
    ("unit", "VARCHAR", "its unit (ms, bytes, MiB/s, ratio ...)"),
    ("plugin", "VARCHAR", "the plugin that recorded it"),
]

_SCHEMA_VERSION = [
    ("version", "INTEGER", "schema version"),
    ("applied_at", "TIMESTAMPTZ", "when this version was applied"),
    ("migflow_version", "VARCHAR", "migflow version that applied it"),
]

#: table -> [(column, type, unit/meaning)], in column order.
TABLES: dict[str, list[tuple[str, str, str]]] = {
    "runs": _RUNS,
    "steps": _STEPS,
    "migrations": _MIGRATIONS,
    "samples": _SAMPLES,
    "metrics": _PLUGIN_METRICS,
    "schema_version": _SCHEMA_VERSION,
}

PRIMARY_KEYS: dict[str, tuple[str, ...]] = {
    "runs": ("run_id",),
    "steps": ("run_id", "position"),
    "migrations": ("run_id", "leg"),
    # No index on the big table: (run_id, leg, ms, kind) is unique by construction
    # (the recorder keys samples by it; an ingest replaces a run's rows whole),
    # and maintaining an index over millions of rows costs a tenth of the ingest.
    "samples": (),
    "metrics": ("run_id", "leg", "name"),
    "schema_version": ("version",),
}


def columns(table: str) -> list[str]:
    return [c for c, _, _ in TABLES[table]]


def column_types(table: str) -> dict[str, str]:
    return {c: t for c, t, _ in TABLES[table]}


def ddl(table: str) -> str:
    cols = [f"    {c} {t}" for c, t, _ in TABLES[table]]
    if PRIMARY_KEYS.get(table):
        cols.append(f"    PRIMARY KEY ({', '.join(PRIMARY_KEYS[table])})")
    return f"CREATE TABLE IF NOT EXISTS {table} (\n" + ",\n".join(cols) + "\n)"


def _add_missing_columns(con) -> None:
    """Columns a newer migflow added to a table are added to an older file (NULL in its rows)."""
    for table, spec in TABLES.items():
        have = {r[0] for r in con.execute("SELECT column_name FROM information_schema.columns WHERE table_name = ?", [table]).fetchall()}
        for name, typ, _ in spec:
            if name not in have:
                con.execute(f"ALTER TABLE {table} ADD COLUMN {name} {typ}")


def _migrate(con, version: int) -> None:
    """Bring a file of schema ``version`` up to :data:`SCHEMA_VERSION`, one step per version."""
    _add_missing_columns(con)
    if version < 2:
        # Version 1 stored libvirt's job clock as total_time and libvirt's own downtime as
        # downtime; QMP-named columns hold QEMU's values only from version 2 on.
        con.execute(
            """UPDATE migrations SET job_time_elapsed = total_time, total_time = NULL,
                                     job_downtime = downtime, downtime = NULL, stats_source = 'libvirt'
               WHERE run_id IN (SELECT run_id FROM runs WHERE backend = 'libvirt') AND job_time_elapsed IS NULL"""
        )


def ensure_schema(con) -> None:
    """Create missing tables and (re)create the statistics views; refuse a file written by a newer migflow."""
    from .. import __version__
    from ..errors import StoreError

    # version 1 had a view named metrics (the catalogue, now metric_catalog): the table takes the name
    if con.execute("SELECT count(*) FROM duckdb_views() WHERE view_name = 'metrics' AND NOT internal").fetchone()[0]:
        con.execute("DROP VIEW metrics")
    for table in TABLES:
        con.execute(ddl(table))
    row = con.execute("SELECT max(version) FROM schema_version").fetchone()
    current = row[0] if row else None
    if current is None:
        con.execute(
            "INSERT INTO schema_version VALUES (?, now(), ?) ON CONFLICT DO NOTHING",
            [SCHEMA_VERSION, __version__],
        )
    elif current > SCHEMA_VERSION:
        raise StoreError(
            f"the results database has schema version {current}, newer than this migflow understands ({SCHEMA_VERSION})",
            hint="upgrade migflow, or write to another file with --results",
        )
    elif current < SCHEMA_VERSION:
        _migrate(con, current)
        con.execute("INSERT INTO schema_version VALUES (?, now(), ?) ON CONFLICT DO NOTHING", [SCHEMA_VERSION, __version__])
    from .views import ensure_views

    ensure_views(con)  # the statistics views (docs/statistics.md), always current
