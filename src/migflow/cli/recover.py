"""``migflow recover``: put back domains that runs left on the wrong host, paused or changed."""

from __future__ import annotations

import click

__all__ = ["recover"]


@click.command()
@click.option("--results", metavar="PATH", envvar="MIGFLOW_RESULTS", default="results.duckdb", show_default=True, help="The results file whose runs to check.")
@click.option("--src", "source", metavar="URI", help="Source URI, when the recorded one was redacted (it carried secrets).")
@click.option("--dst", "destination", metavar="URI", help="Destination URI, likewise.")
@click.option("--run", "run_ids", metavar="RUN_ID", multiple=True, help="Only this run (repeatable).")
@click.option("--dry-run", is_flag=True, help="Say where each domain is and what would be done; change nothing.")
def recover(results, source, destination, run_ids, dry_run):
    """Put domains back into their recorded original state.

    Looks at every run that did not complete its restore step (failed,
    interrupted, lost, or abandoned by a migflow process that died), finds
    its domain by UUID on both hosts, and restores it the way the restore step
    would have: migrate it back to its source, resume it if it was running,
    put its persistence back, remove domains the workflow had created.  Each
    recovery is noted in the run's row (runs.extra.recovered).

    Runs that a dead migflow process left "running" are first marked
    abandoned, with where their domain is now.

    \b
    Examples:
      migflow recover --dry-run
      migflow recover --results seed.duckdb
      migflow recover --src qemu+tls://a/system --dst qemu+tls://b/system
    """
    from ..errors import UsageError
    from ..plugins import get_plugins
    from ..reconcile import recover as do_recover
    from ..registry import HostPair

    if bool(source) != bool(destination):
        raise UsageError("give both --src and --dst, or neither")
    plugins = get_plugins()
    hosts = HostPair(source, destination) if source else plugins.hook.migflow_default_hosts()
    done = do_recover(results, plugins, hosts, run_ids=tuple(run_ids), dry_run=dry_run, echo=click.echo)
    if not done:
        click.echo("nothing to recover: every recorded run restored its domain")
        return
    failed = 0
    for rec in done:
        what = "; ".join(rec.actions) or "nothing to do"
        click.echo(f"run {rec.run_id}: domain {rec.domain}: {what}" + (f" (now: {rec.end})" if rec.end else ""))
        if rec.error:
            failed += 1
            click.echo(f"  error: {rec.error}", err=True)
    if failed:
        raise SystemExit(1)
