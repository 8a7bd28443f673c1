"""``migflow ingest``: write spooled runs into the results database."""

from __future__ import annotations

import click

from .query import results_option

__all__ = ["ingest"]


@click.command("ingest", context_settings={"max_content_width": 100})
@click.option(
    "--wait",
    "wait",
    type=click.FloatRange(min=0),
    default=10.0,
    show_default=True,
    metavar="SECONDS",
    help="How long to retry while another process holds the database.",
)
@results_option
def ingest(wait: float, results: str) -> None:
    """Move spooled run records into the results database.

    Every run is written first to RESULTS.spool/<run_id>.json and then, when it
    ends, into the database.  If another process held the database (another
    migflow run, or a `duckdb -readonly` session), the run stays in the spool;
    the next migflow run or this command writes it.  A spooled run left
    "running" by a migflow process that no longer exists is written with status
    "abandoned".  Repeating an ingest is safe.

    Exit status 5 when runs could not be written (the database is still
    locked); runs still in progress in a live process are left alone.

    \b
    Examples:
      migflow ingest
      migflow ingest --results lab/results.duckdb --wait 60
    """
    from ..errors import StoreError
    from ..records import ingest_spools
    from ..records.spool import list_spools, spool_dir

    if not list_spools(results):
        click.echo(f"nothing to ingest: no spooled runs in {spool_dir(results)}/")
        return
    summary = ingest_spools(results, wait_s=wait)
    message = summary.message(results)
    if summary.pending:
        raise StoreError(message, hint="close the process holding the file, then run `migflow ingest` again")
    click.echo(message)
