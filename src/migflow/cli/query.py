"""``migflow query``: read-only SQL on the results database.

Also home of the small output helpers that ``migflow runs`` reuses (table, CSV, JSON).
"""

from __future__ import annotations

import click

__all__ = ["pending_note", "query", "render", "results_option"]


def results_option(f):
    """The ``--results PATH`` option shared by the results commands."""
    return click.option(
        "--results",
        "results",
        type=click.Path(dir_okay=False),
        default="results.duckdb",
        envvar="MIGFLOW_RESULTS",
        show_default=True,
        help="The results database (env MIGFLOW_RESULTS).",
    )(f)


def _plain(value) -> str:
    import datetime as dt
    import json

    if value is None:
        return "NULL"
    if isinstance(value, (list, dict)):
        return json.dumps(value, default=str)
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    return str(value)


def _jsonable(value, type_name: str):
    import datetime as dt
    import decimal
    import json

    if value is None:
        return None
    if type_name == "JSON" and isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, "") for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v, "") for k, v in value.items()}
    if isinstance(value, float) and value != value:
        return None
    return value


def render(cols: list[str], types: list[str], rows: list, fmt: str, *, styles: dict | None = None, wrap: tuple[str, ...] | None = None) -> None:
    """Print rows as a table (rich on a terminal, aligned plain text otherwise), CSV or JSON.

    :param styles: optional ``{column: {value: rich style}}`` for terminal tables.
    :param wrap: columns that may wrap on a terminal (default: all); the others stay on one line.
    """
    out = click.get_text_stream("stdout")
    if fmt == "json":
        import json

        data = [{c: _jsonable(v, t) for c, t, v in zip(cols, types, row, strict=True)} for row in rows]
        out.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
        return
    if fmt == "csv":
        import csv

        w = csv.writer(out, lineterminator="\n")
        w.writerow(cols)
        for row in rows:
            w.writerow(["" if v is None else _plain(v) for v in row])
        return
    cells = [[_plain(v) for v in row] for row in rows]
    if out.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(show_header=True, header_style="bold", show_lines=False)
        numeric = ("INT", "DOUBLE", "FLOAT", "DECIMAL", "REAL")
        for i, (c, t) in enumerate(zip(cols, types, strict=True)):
            may_wrap = wrap is None or c in wrap
            longest = max([len(c)] + [len(r[i]) for r in cells])
            table.add_column(
                c,
                justify="right" if any(n in t.upper() for n in numeric) and "[]" not in t else "left",
                overflow="fold" if may_wrap else "ellipsis",
                no_wrap=not may_wrap,
                min_width=min(longest, 16 if wrap else 10) if may_wrap else None,
            )
        for row in cells:
            styled = []
            for c, v in zip(cols, row, strict=True):
                style = ((styles or {}).get(c) or {}).get(v) or ("dim" if v == "NULL" else None)
                styled.append(f"[{style}]{_escape(v)}[/]" if style else _escape(v))
            table.add_row(*styled)
        Console().print(table)
        n = len(rows)
        click.echo(f"({n} row{'s' if n != 1 else ''})", err=True)
        return
    widths = [len(c) for c in cols]
    for row in cells:
        widths = [max(w, len(v)) for w, v in zip(widths, row, strict=True)]
    out.write("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip() + "\n")
    out.write("  ".join("-" * w for w in widths) + "\n")
    for row in cells:
        out.write("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() + "\n")


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def pending_note(results: str) -> None:
    """On stderr: runs spooled next to the database and not in it yet."""
    from ..records import pending_runs

    pend = pending_runs(results)
    waiting = [p for p in pend if not p["in_progress"]]
    running = [p for p in pend if p["in_progress"]]
    from ..records.spool import spool_dir

    if waiting:
        n = len(waiting)
        click.echo(
            f"note: {n} run{'s are' if n != 1 else ' is'} waiting in {spool_dir(results).name}/ and not in these results yet; run `migflow ingest`",
            err=True,
        )
    if running:
        n = len(running)
        click.echo(f"note: {n} run{'s are' if n != 1 else ' is'} still in progress (not in these results yet)", err=True)


@click.command("query", context_settings={"max_content_width": 100})
@click.argument("sql", required=False)
@click.option("--file", "-f", "sql_file", type=click.File("r", encoding="utf-8"), help="Read the SQL from this file (one that starts with `--` comments, say).")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True, help="Output format.")
@results_option
def query(sql: str | None, sql_file, fmt: str, results: str) -> None:
    """Run read-only SQL on the results database and print the result.

    The tables are runs, steps, migrations (one row per leg, one column per
    QEMU query-migrate statistic) and samples (the time series of each leg);
    docs/results.md lists every column and its unit.  Only reading
    statements run: SELECT, SHOW, DESCRIBE, SUMMARIZE, EXPLAIN.  Anything
    else (DELETE, CREATE, ATTACH, COPY ...) is refused with exit status 2,
    and the SQL cannot read or write other files (read_csv, extensions):
    the database is opened read-only with DuckDB's external access off.

    \b
    Examples:
      migflow query "SHOW TABLES"
      migflow query "DESCRIBE migrations"
      migflow query "SELECT mode, count(*) AS legs, round(avg(total_time)) AS total_ms,
                            round(avg(downtime)) AS downtime_ms, round(avg(ram_mbps)) AS mbps,
                            round(avg(ram_transferred)/2^20) AS mib
                     FROM migrations WHERE status = 'completed' GROUP BY mode ORDER BY mode"
      migflow query "SELECT ms, transferred, remaining, mbps FROM samples
                     WHERE run_id = 'RUN' AND leg = 1 ORDER BY ms" --format csv > leg1.csv
      migflow query "SELECT run_id, scenario, error FROM runs WHERE status <> 'completed'" --format json
      migflow query "SELECT run_id, stats->>'$.ram.transferred' FROM migrations"
      migflow query --results seed.duckdb --file docs/sql/seed_summary.sql

    The file can also be opened with the DuckDB CLI (pip install duckdb-cli):
    `duckdb -readonly results.duckdb`; migflow keeps new runs in a spool
    while such a session holds the file, and writes them once it closes.
    """
    from ..errors import UsageError
    from ..records import check_read_only_sql, open_readonly, run_sql
    from ..records.queries import restrict

    if (sql is None) == (sql_file is None):
        raise UsageError("give the SQL either as the argument or with --file, not both" if sql else "no SQL: give it as the argument or with --file FILE")
    if sql_file is not None:
        sql = sql_file.read()
    assert sql is not None
    check_read_only_sql(sql)  # before opening: a refused statement never touches the file
    con = open_readonly(results)
    try:
        restrict(con)
        cols, types, rows = run_sql(con, sql)
    finally:
        con.close()
    if cols:
        render(cols, types, rows, fmt)
    pending_note(results)
