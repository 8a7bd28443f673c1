"""The results store: the only code in migflow that knows SQL.

A run's records go to a spool file next to the database first
(``<results>.spool/<run_id>.json``), then one short transaction per run moves
them into DuckDB.  See docs/results.md for the tables and their units.

DuckDB is imported only inside the functions that use it.
"""

from __future__ import annotations

from .queries import check_read_only_sql, recent_runs, run_sql
from .recorder import IngestResult, RunRecorder, sample_from_stats
from .schema import SCHEMA_VERSION, TABLES
from .store import IngestSummary, ingest_pending, ingest_spools, open_readonly, pending_runs, set_run_extra

__all__ = [
    "SCHEMA_VERSION",
    "TABLES",
    "IngestResult",
    "IngestSummary",
    "RunRecorder",
    "check_read_only_sql",
    "ingest_pending",
    "ingest_spools",
    "open_readonly",
    "pending_runs",
    "recent_runs",
    "run_sql",
    "sample_from_stats",
    "set_run_extra",
]
