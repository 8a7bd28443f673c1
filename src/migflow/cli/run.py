"""``migflow run``: run a workflow against real hosts and record every run."""

from __future__ import annotations

import sys

import click

__all__ = ["run"]


@click.command()
@click.argument("workflow", type=click.Path(dir_okay=False))
@click.option("--src", "source", metavar="URI", help="Source libvirt URI (overrides [hosts] source), e.g. qemu+tls://host-a/system.")
@click.option("--dst", "destination", metavar="URI", help="Destination libvirt URI (overrides [hosts] destination).")
@click.option("--results", metavar="PATH", envvar="MIGFLOW_RESULTS", help="DuckDB results file (default: the workflow's `results`, else results.duckdb).")
@click.option("-n", "--repetitions", type=click.IntRange(1, 1000), help="Override the workflow's repetitions.")
@click.option("--dry-run", is_flag=True, help="Print the plan (scenarios, steps, resolved options) and touch no host.")
@click.option("--fail-fast", is_flag=True, help="Stop at the first run that does not complete.")
def run(workflow, source, destination, results, repetitions, dry_run, fail_fast):
    """Run WORKFLOW: every scenario x repetition, one run each.

    Each run executes the workflow's steps in order; restore (and any step
    declared always-run) runs even after a failure or Ctrl-C.  Every run,
    failed and interrupted ones included, is recorded in the results file
    (tables runs, steps, migrations, samples).

    Without [hosts] in the workflow and without --src/--dst, the embedded lab
    is used, and brought up if it is down.

    \b
    Examples:
      migflow run workflows/zstack_default.toml
      migflow run workflows/p2p.toml --dry-run
      migflow run workflows/seed_comparison.toml --results seed.duckdb
      migflow run workflows/p2p.toml --src qemu+ssh://root@a/system --dst qemu+ssh://root@b/system

    Exit status: 0 all runs completed, 1 some run failed or was lost,
    2 invalid workflow, 3 plugin problem, 4 hosts unreachable, 130 interrupted.
    """
    from ..engine import Engine
    from ..errors import UsageError
    from ..plugins import get_plugins
    from ..progress import ProgressDisplay
    from ..registry import HostPair
    from ..workflow.loader import load_workflow

    plugins = get_plugins()
    wf = load_workflow(workflow, plugins, source=source, destination=destination, results=results, repetitions=repetitions)
    hosts = _hosts(plugins, wf, HostPair, UsageError)
    if dry_run:
        _print_plan(wf, hosts)
        return
    display = ProgressDisplay(len(wf.plan))
    plugins.pm.register(display, name="progress-display")
    plugins.hook.migflow_prepare_hosts(hosts=hosts, echo=display.echo)
    display.echo(f"workflow {wf.name}: {len(wf.scenarios)} scenario(s) x {wf.repetitions} repetition(s) = {len(wf.plan)} run(s); {hosts.source} -> {hosts.destination}; results in {wf.results}")
    engine = Engine(plugins, wf, hosts, wf.results, echo=display.echo, fail_fast=fail_fast)
    summaries = engine.run()
    _print_summary(summaries, wf, display.echo)
    if engine._interrupt:
        sys.exit(130)
    if any(s.status != "completed" for s in summaries):
        sys.exit(1)


def _hosts(plugins, wf, HostPair, UsageError):
    default = plugins.hook.migflow_default_hosts()
    src, dst = wf.source, wf.destination
    if src is None and dst is None:
        if default is None:
            raise UsageError("the workflow names no hosts and no plugin provides default hosts", hint="add [hosts] source/destination, or pass --src URI --dst URI")
        return default
    if src is None or dst is None:
        raise UsageError("give both hosts: [hosts] source and destination, or --src URI and --dst URI")
    if src == dst:
        raise UsageError(f"source and destination are the same URI ({src})")
    lab = default is not None and default.lab and {src, dst} == {default.source, default.destination}
    return HostPair(src, dst, lab=lab)


def _print_plan(wf, hosts) -> None:
    import json

    click.echo(f"workflow {wf.name} ({wf.file}), backend {wf.backend}")
    click.echo(f"hosts: {hosts.source} -> {hosts.destination}{' (embedded lab)' if hosts.lab else ''}")
    click.echo(f"results: {wf.results}")
    click.echo(f"{len(wf.scenarios)} scenario(s), {wf.repetitions} repetition(s), order {wf.order}" + (f" (seed {wf.seed})" if wf.order == "shuffled" else "") + f": {len(wf.plan)} run(s)")
    for sc in wf.scenarios:
        click.echo(f"\nscenario {sc.label}")
        if sc.domain:
            click.echo(f"  domain: {json.dumps(sc.domain, sort_keys=True)}")
        for use in sc.steps:
            click.echo(f"  {use.index + 1}. {use.name} {json.dumps(use.options, sort_keys=True)}")
    click.echo("\nplan:")
    for p in wf.plan:
        click.echo(f"  {p.index + 1:3d}. {p.scenario.label} #{p.repetition}")


def _print_summary(summaries, wf, echo) -> None:
    counts: dict[str, int] = {}
    for s in summaries:
        counts[s.status] = counts.get(s.status, 0) + 1
    echo("done: " + ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) + f"; results in {wf.results}")
    pending = [s for s in summaries if not s.ingested]
    if pending:
        echo(f"{len(pending)} run(s) are kept in {wf.results}.spool/ until the file is free: migflow ingest --results {wf.results}")
    echo(f"see: migflow runs --results {wf.results}")
