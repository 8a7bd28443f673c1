"""``migflow runs``: the latest runs and their status."""

from __future__ import annotations

import click

from ..status import RunStatus
from .query import results_option

__all__ = ["runs"]

_STATUSES = tuple(s.value for s in RunStatus)
_STYLES = {"status": {"completed": "green", "failed": "red", "lost": "bold red", "interrupted": "yellow", "abandoned": "magenta", "running": "cyan"}}


def _short(text, width: int = 60):
    if text is None:
        return None
    line = str(text).strip().splitlines()[0] if str(text).strip() else ""
    return line if len(line) <= width else line[: width - 1] + "…"


@click.command("runs", context_settings={"max_content_width": 100})
@click.option("--limit", "-n", type=click.IntRange(min=1), default=20, show_default=True, help="How many runs, newest first.")
@click.option("--workflow", "-w", metavar="NAME", help="Only runs of this workflow.")
@click.option("--status", "-s", type=click.Choice(_STATUSES), help="Only runs with this status.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (full error text, ISO times, duration in seconds).")
@results_option
def runs(limit: int, workflow: str | None, status: str | None, as_json: bool, results: str) -> None:
    """List recent runs: id, workflow, scenario, repetition, status, start, duration, error.

    \b
    Examples:
      migflow runs
      migflow runs --status failed --limit 50
      migflow runs --workflow zstack_default --json | jq '.[].run_id'

    Then look closer with SQL, e.g.
    migflow query "SELECT * FROM steps WHERE run_id = 'RUN' ORDER BY position".
    """
    from ..records import open_readonly, recent_runs
    from .query import pending_note, render

    con = open_readonly(results)
    try:
        cols, rows = recent_runs(con, limit=limit, workflow=workflow, status=status)
    finally:
        con.close()
    if as_json:
        render(cols, ["" for _ in cols], rows, "json")
    else:
        shown = ["run_id", "workflow", "scenario", "rep", "status", "started", "duration", "error"]
        out = []
        for run_id, wf, scenario, rep, st, started, dur, err in rows:
            started_s = started.astimezone().strftime("%Y-%m-%d %H:%M:%S") if started is not None else None
            dur_s = f"{dur:.1f} s" if dur is not None else None
            out.append((run_id, wf, scenario, rep, st, started_s, dur_s, _short(err)))
        if out:
            render(
                shown,
                ["VARCHAR", "VARCHAR", "VARCHAR", "INTEGER", "VARCHAR", "VARCHAR", "DOUBLE", "VARCHAR"],
                out,
                "table",
                styles=_STYLES,
                wrap=("scenario", "error"),
            )
        else:
            click.echo("no runs recorded" + (" matching the filters" if workflow or status else " yet"), err=True)
    pending_note(results)
