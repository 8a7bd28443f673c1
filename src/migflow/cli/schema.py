"""``migflow schema``: print the workflow JSON Schema for editors."""

from __future__ import annotations

import json
import os

import click

__all__ = ["schema"]


@click.command(
    "schema",
    epilog="""\b
Examples:
  migflow schema --output .migflow/workflow.schema.json
  # then, on the first line of a workflow:
  #:schema ../.migflow/workflow.schema.json

The repository's schemas/workflow.schema.json is the core schema (steps only
need `use`); this command adds every installed step's options, the step and
backend names, so editors (Taplo, Even Better TOML) complete and check them
too.  See docs/workflow.md.""",
)
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), help="Write to this file instead of standard output.")
@click.option("--core", is_flag=True, help="Print only the core schema, without the plugins' steps.")
@click.pass_context
def schema(ctx: click.Context, output: str | None, core: bool) -> None:
    """Print the full workflow JSON Schema (core + every plugin's steps)."""
    from ..workflow.schema import core_schema, workflow_schema

    if core:
        doc = core_schema()
    else:
        plugins = (ctx.obj or {}).get("plugins") if isinstance(ctx.obj, dict) else None
        if plugins is None:
            from ..plugins import get_plugins

            plugins = get_plugins()
        doc = workflow_schema(plugins)
    text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    if output:
        try:
            os.makedirs(os.path.dirname(output) or ".", exist_ok=True)  # .migflow/ on first use
            with open(output, "w", encoding="utf-8") as f:
                f.write(text)
        except OSError as exc:
            raise click.ClickException(f"cannot write {output}: {exc.strerror or exc}") from None
        click.echo(f"wrote {output}", err=True)
    else:
        click.echo(text, nl=False)
