"""``migflow validate FILE...``: check workflows without touching a host."""

from __future__ import annotations

import json
import sys

import click

__all__ = ["validate"]


@click.command(
    "validate",
    epilog="""\b
Examples:
  migflow validate workflows/*.toml
  migflow validate --json workflows/p2p.toml | jq '.[] | {file, ok}'
  migflow validate docs/examples/broken.toml

\b
Output of the last one (exit status 2: the file is invalid):
  docs/examples/broken.toml:3: repetitions: expected an integer ≥ 1, got -3
  docs/examples/broken.toml:16: steps[2].use: no plugin provides the step 'restor' (did you mean 'restore'? known: ...

Every problem of a file is reported at once as FILE:LINE: JSON.PATH: what is
expected.  The workflow language is described in docs/workflow.md.""",
)
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of {file, ok, issues: [{file, line, path, message}]}.")
@click.pass_context
def validate(ctx: click.Context, files: tuple[str, ...], as_json: bool) -> None:
    """Check workflow files against the schema and the installed plugins.

    Parses each FILE, checks it against the workflow schema and every step's
    option schema, expands the matrix and lets plugins reject combinations
    that cannot work, so that nothing fails half-way through a sweep.
    Nothing is run and no host is contacted.
    """
    from ..errors import ExitCode
    from ..workflow.loader import check_file

    plugins = (ctx.obj or {}).get("plugins") if isinstance(ctx.obj, dict) else None
    if plugins is None:
        from ..plugins import get_plugins

        plugins = get_plugins()

    report = []
    bad = 0
    for file in files:
        wf, issues = check_file(file, plugins)
        bad += wf is None
        entry = {"file": file, "ok": wf is not None, "issues": [i.as_dict() for i in issues]}
        if wf is not None:
            entry.update(scenarios=len(wf.scenarios), runs=len(wf.plan))
        report.append(entry)
        if as_json:
            continue
        if wf is not None:
            n, m = len(wf.scenarios), len(wf.plan)
            click.echo(f"OK {file} ({n} scenario{'s' if n != 1 else ''}, {m} run{'s' if m != 1 else ''})")
        else:
            for issue in issues:
                click.echo(str(issue))
    if as_json:
        click.echo(json.dumps(report, indent=2, ensure_ascii=False))
    elif bad and len(files) > 1:
        click.echo(f"{bad} of {len(files)} files invalid", err=True)
    if bad:
        # sys.exit, not ctx.exit: the root command runs click in non-standalone
        # mode, where ctx.exit's status would be returned and lost.
        sys.exit(ExitCode.INVALID)
