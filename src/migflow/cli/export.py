"""``migflow export``: every table as Parquet or CSV files, for notebooks and other tools."""

from __future__ import annotations

from pathlib import Path

import click

from .query import results_option

__all__ = ["export"]

_TABLES = ("runs", "steps", "migrations", "samples", "schema_version")
_VIEWS = ("legs", "scenario_stats", "scenario_leg_stats")


@click.command("export", context_settings={"max_content_width": 100})
@click.option("--format", "fmt", type=click.Choice(["parquet", "csv"]), default="parquet", show_default=True, help="File format.")
@click.option(
    "--output", "-o", type=click.Path(file_okay=False), required=True, metavar="DIR", help="Directory to write <table>.<format> files into (created)."
)
@click.option("--views/--no-views", default=True, show_default=True, help="Also export the statistics views (legs, scenario_stats, scenario_leg_stats).")
@results_option
def export(fmt: str, output: str, views: bool, results: str) -> None:
    """Write each table of the results database to DIR/<table>.parquet (or .csv).

    Uses DuckDB's COPY from a read-only connection, so it can run while
    other readers have the file open.  Parquet keeps the column types
    (timestamps, lists, JSON as text); CSV has a header row, lists written
    like [live, peer2peer] and JSON as text.

    \b
    Examples:
      migflow export --format parquet --output out/
      migflow export --format csv --output csv/ --results seed.duckdb
    Then, e.g. in Python:
      import pandas as pd; legs = pd.read_parquet("out/legs.parquet")
    """
    from ..records import open_readonly
    from ..records.analysis import export_tables
    from .query import pending_note

    Path(output).mkdir(parents=True, exist_ok=True)
    con = open_readonly(results)
    try:
        written = export_tables(con, output, fmt, list(_TABLES) + (list(_VIEWS) if views else []))
        counts = {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t, _ in written}
    finally:
        con.close()
    for table, path in written:
        click.echo(f"{path}  ({counts[table]} row{'s' if counts[table] != 1 else ''})")
    pending_note(results)
