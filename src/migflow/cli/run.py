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
@click.option("--no-wait", is_flag=True, help="When another migflow run holds the hosts, exit at once (status 6) instead of waiting for them.")
def run(workflow, source, destination, results, repetitions, dry_run, fail_fast, no_wait):
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

    Before the first run, migflow checks that the results file can be
    written and that both hosts answer, and warns when a host URI is plain
    qemu+tcp or the migration stream is unencrypted outside the lab
    (docs/security.md).

    One run at a time uses a pair of hosts: a second `migflow run` on the same
    hosts waits until the first ends, saying which run holds them (--no-wait:
    exit at once).

    Exit status: 0 all runs completed, 1 some run failed or was lost,
    2 invalid workflow or options, 3 plugin problem, 4 hosts unreachable,
    5 results file not writable, 6 hosts busy (--no-wait), 130 interrupted
    (docs/cli.md).
    """
    from ..engine import Engine
    from ..errors import ExitCode, UsageError
    from ..plugins import get_plugins
    from ..progress import ProgressDisplay
    from ..redact import redact_uri
    from ..registry import HostPair
    from ..security import transport_warnings
    from ..status import RunStatus
    from ..workflow.loader import load_workflow

    plugins = get_plugins()
    wf = load_workflow(workflow, plugins, source=source, destination=destination, results=results, repetitions=repetitions)
    hosts = _hosts(plugins, wf, HostPair, UsageError)
    _check_results(wf.results)
    for warning in transport_warnings(wf, hosts, plugins.modes):
        click.echo(f"migflow: warning: {warning}", err=True)
    if dry_run:
        _print_plan(wf, hosts)
        return
    display = ProgressDisplay(len(wf.plan))
    plugins.pm.register(display, name="progress-display")
    plugins.hook.migflow_prepare_hosts(hosts=hosts, echo=display.echo)
    _check_hosts(plugins, wf, hosts)
    display.echo(
        f"workflow {wf.name}: {len(wf.scenarios)} scenario(s) x {wf.repetitions} repetition(s) = {len(wf.plan)} run(s); {redact_uri(hosts.source)} -> {redact_uri(hosts.destination)}; results in {wf.results}"
    )
    engine = Engine(plugins, wf, hosts, wf.results, echo=display.echo, fail_fast=fail_fast, wait_for_hosts=not no_wait)
    summaries = engine.run()
    _print_summary(summaries, wf, display.echo)
    if engine.interrupted:
        sys.exit(ExitCode.INTERRUPTED)
    if any(s.status != RunStatus.COMPLETED for s in summaries):
        sys.exit(ExitCode.RUN_FAILED)


def _hosts(plugins, wf, HostPair, UsageError):
    default = plugins.hook.migflow_default_hosts()
    src, dst = wf.source, wf.destination
    if src is None and dst is None:
        if default is None:
            raise UsageError(
                "the workflow names no hosts and no plugin provides default hosts", hint="add [hosts] source/destination, or pass --src URI --dst URI"
            )
        return default
    if src is None or dst is None:
        raise UsageError("give both hosts: [hosts] source and destination, or --src URI and --dst URI")
    for what, uri in (("source", src), ("destination", dst)):
        _check_uri(what, uri, UsageError)
    if src == dst:
        from ..redact import redact_uri

        raise UsageError(f"source and destination are the same URI ({redact_uri(src)})", hint="pass two different hosts")
    lab = default is not None and default.lab and {src, dst} == {default.source, default.destination}
    return HostPair(src, dst, lab=lab)


def _check_uri(what: str, uri: str, UsageError) -> None:
    import re
    from urllib.parse import urlsplit

    from ..redact import redact_uri

    ok = bool(re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", uri))  # as the schema's [hosts] pattern
    try:
        _ = urlsplit(uri).port  # raises for an unclosed [IPv6 bracket or a port that is no number
    except ValueError:
        ok = False
    if not ok:
        shown = redact_uri(uri) if ":" in uri else uri
        raise UsageError(
            f"the {what} host {shown!r} is not a libvirt URI", hint="write it as qemu+tls://HOST/system, qemu+ssh://USER@HOST/system or qemu+tcp://HOST/system"
        )


def _check_results(results) -> None:
    """Refuse a results path that cannot be written, before anything runs (exit status 5)."""
    import os
    import tempfile
    from pathlib import Path

    from ..errors import StoreError

    path = Path(results)
    parent = path.parent
    what = f"cannot write the results to {path}"
    if path.is_dir():
        raise StoreError(f"{what}: it is a directory", hint=f"pass a file: --results {path / 'results.duckdb'}")
    if path.exists() and not path.is_file():
        raise StoreError(f"{what}: it is not a regular file", hint="pass --results PATH to a new or existing .duckdb file")
    if path.is_file() and path.stat().st_size > 0:
        try:
            with path.open("rb") as f:
                magic = f.read(12)[8:12]
        except OSError as exc:
            raise StoreError(f"{what}: {exc.strerror or exc}") from None
        if magic != b"DUCK":  # DuckDB's file header
            raise StoreError(f"{what}: the file exists and is not a DuckDB database", hint="pass --results PATH to a new or existing results file")
    if not parent.exists():
        raise StoreError(f"{what}: the directory {parent} does not exist", hint=f"create it (mkdir -p {parent}) or pass --results PATH")
    if not parent.is_dir():
        raise StoreError(f"{what}: {parent} is not a directory", hint="pass --results PATH in an existing directory")
    try:  # root ignores permission bits: only trying tells (a read-only mount, /proc ...)
        with tempfile.TemporaryFile(dir=parent, prefix=".migflow-write-test-"):
            pass
        if path.exists() and not os.access(path, os.W_OK):
            raise PermissionError(13, "permission denied", str(path))
    except OSError as exc:
        raise StoreError(
            f"{what}: {path if exc.filename == str(path) else parent} is not writable ({exc.strerror or exc})",
            hint="pass --results PATH in a directory you can write",
        ) from None


def _check_hosts(plugins, wf, hosts) -> None:
    """Connect to both hosts once before the first run: an unreachable host is
    one message and exit status 4, not a failed run per planned run."""
    from ..errors import HostError

    backend = plugins.make_backend(wf.backend, hosts.source, hosts.destination)
    try:
        backend.open()
    except HostError:  # the backend's message names the host (redacted) and what to check
        raise
    except Exception:  # anything else: the engine records it as the run's failure
        pass
    finally:
        backend.close()


def _print_plan(wf, hosts) -> None:
    import json

    from ..redact import redact_uri

    click.echo(f"workflow {wf.name} ({wf.file}), backend {wf.backend}")
    click.echo(f"hosts: {redact_uri(hosts.source)} -> {redact_uri(hosts.destination)}{' (embedded lab)' if hosts.lab else ''}")
    click.echo(f"results: {wf.results}")
    click.echo(
        f"{len(wf.scenarios)} scenario(s), {wf.repetitions} repetition(s), order {wf.order}"
        + (f" (seed {wf.seed})" if wf.order == "shuffled" else "")
        + f": {len(wf.plan)} run(s)"
    )
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
