"""Read-only SQL for the CLI: statement checks, running a query, canned queries."""

from __future__ import annotations

import re
from typing import Any

from ..errors import UsageError

__all__ = ["READ_ONLY_PRAGMAS", "check_read_only_sql", "recent_runs", "restrict", "run_sql"]

#: PRAGMAs that only read (others can write files, e.g. profiling output).
READ_ONLY_PRAGMAS = frozenset(
    {
        "show_tables",
        "show_tables_expanded",
        "table_info",
        "show",
        "database_size",
        "database_list",
        "version",
        "storage_info",
        "functions",
        "platform",
        "user_agent",
        "metadata_info",
        "show_databases",
        "collations",
    }
)
_PRAGMA_RE = re.compile(r"^\s*pragma\s+([A-Za-z_][A-Za-z0-9_]*)", re.IGNORECASE)


def check_read_only_sql(sql: str) -> int:
    """Refuse anything but reading statements, before running them.

    Allowed: SELECT (with ``FROM``-first, ``SHOW``, ``DESCRIBE``, ``SUMMARIZE``,
    ``VALUES``), EXPLAIN and read-only PRAGMAs.  Refused: INSERT, UPDATE,
    DELETE, CREATE, DROP, ALTER, ATTACH, COPY, EXPORT, INSTALL/LOAD, SET, CALL...
    (a read-only connection alone would still allow ATTACH, COPY TO and
    temporary tables).  Returns the number of statements.

    :raises UsageError: with the refused statement's type, or DuckDB's parser message.
    """
    import duckdb

    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise UsageError(f"SQL error: {exc}") from None
    if not statements:
        raise UsageError("no SQL statement given")
    for st in statements:
        kind = st.type.name
        if kind in ("SELECT", "EXPLAIN"):
            continue
        if kind == "PRAGMA":
            m = _PRAGMA_RE.match(st.query)
            if m and m.group(1).lower() in READ_ONLY_PRAGMAS:
                continue
        raise UsageError(
            f"refused: {kind} statements are not allowed; migflow query runs read-only SQL "
            f"(SELECT, SHOW, DESCRIBE, SUMMARIZE, EXPLAIN) and the results are changed only by migflow run/ingest",
            hint="to experiment with changes, copy the file (cp results.duckdb scratch.duckdb) and open the copy with the duckdb CLI",
        )
    return len(statements)


def restrict(con) -> None:
    """Second line of defence behind :func:`check_read_only_sql` for user SQL on a
    read-only connection: no file or network access from SQL (no ``read_csv``, no
    extension downloads, no ``COPY``/``ATTACH`` of other files even if a statement
    slipped through), and the setting locked so SQL cannot switch it back."""
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


def run_sql(con, sql: str) -> tuple[list[str], list[str], list[tuple]]:
    """Check and run ``sql``; returns (column names, DuckDB type names, rows) of the last statement."""
    import duckdb

    check_read_only_sql(sql)
    try:
        cur = con.execute(sql)
        if cur.description is None:
            return [], [], []
        cols = [d[0] for d in cur.description]
        types = [str(d[1]) for d in cur.description]
        return cols, types, cur.fetchall()
    except duckdb.Error as exc:
        msg = str(exc)
        if "read-only" in msg or "disabled by configuration" in msg or "configuration has been locked" in msg:
            raise UsageError(f"refused: {msg.splitlines()[0]}") from None
        raise UsageError(f"SQL error: {msg}") from None


def recent_runs(con, limit: int = 20, workflow: str | None = None, status: str | None = None) -> tuple[list[str], list[tuple]]:
    """The latest runs, newest first: run_id, workflow, scenario, repetition, status,
    started_at, duration_s, error."""
    where: list[str] = []
    params: list[Any] = []
    if workflow:
        where.append("workflow = ?")
        params.append(workflow)
    if status:
        where.append("status = ?")
        params.append(status)
    sql = (
        "SELECT run_id, workflow, scenario, repetition, status, started_at, "
        "round(epoch(ended_at) - epoch(started_at), 3) AS duration_s, error FROM runs"
        + (" WHERE " + " AND ".join(where) if where else "")
        + " ORDER BY started_at DESC NULLS LAST, run_id DESC LIMIT ?"
    )
    params.append(int(limit))
    cur = con.execute(sql, params)
    return [d[0] for d in cur.description], cur.fetchall()
