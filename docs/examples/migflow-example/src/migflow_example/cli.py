"""``migflow example ...``: the plugin's command line."""

from __future__ import annotations

import click

__all__ = ["example_group"]


@click.group("example")
def example_group() -> None:
    """Commands of the migflow-example plugin."""


@example_group.command("hello")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def hello(as_json: bool) -> None:
    """Say hello: the plugin's version and what it contributes.

    \b
    Example:
      migflow example hello
    """
    import json
    from importlib import metadata

    from . import MODES

    info = {"plugin": "migflow-example", "version": metadata.version("migflow-example"), "modes": [m.name for m in MODES], "steps": ["guest-check"]}
    if as_json:
        click.echo(json.dumps(info))
    else:
        click.echo(f"hello from migflow-example {info['version']}: modes {', '.join(info['modes'])}; step guest-check")
