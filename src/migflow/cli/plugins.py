"""``migflow plugins``: what is installed and what each plugin provides."""

from __future__ import annotations

from typing import Any

import click

__all__ = ["plugins"]


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON: one object per plugin.")
def plugins(as_json):
    """List plugins with their versions and what each provides.

    Built-in plugins (steps, libvirt, lab) are registered through the same
    hooks as third-party plugins, which arrive through the Python entry-point
    group "migflow".  A plugin that failed to load is listed under warnings.

    \b
    Examples:
      migflow plugins
      migflow plugins --json | jq '.plugins[].steps'
    """
    import json
    import warnings

    from ..plugins import PluginLoadWarning, get_plugins

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PluginLoadWarning)
        loaded = get_plugins()
    loaded.commands_of(_Collector())
    rows: list[dict[str, Any]] = []
    for info in loaded.infos:
        rows.append(
            {
                "name": info.name,
                "module": info.module,
                "version": info.version,
                "distribution": info.distribution,
                "builtin": info.builtin,
                "hooks": info.hooks,
                "steps": info.steps,
                "backends": info.backends,
                "modes": info.modes,
                "commands": info.commands,
                "overrides": info.overrides,
            }
        )
    if as_json:
        click.echo(json.dumps({"plugins": rows, "failures": loaded.failures}, indent=2))
        return
    for row in rows:
        origin = "built-in" if row["builtin"] else f"from {row['distribution']}"
        click.echo(f"{row['name']} {row['version'] or ''} ({origin}, {row['module']})")
        for kind in ("steps", "backends", "modes", "commands", "overrides"):
            if row[kind]:
                click.echo(f"  {kind}: {', '.join(row[kind])}")
        click.echo(f"  hooks: {', '.join(row['hooks'])}")
    for failure in loaded.failures:
        click.echo(f"warning: {failure}", err=True)


class _Collector:
    """A stand-in click group that only remembers command names."""

    def __init__(self):
        self.commands: dict = {}

    def add_command(self, cmd, name=None):
        self.commands[name or cmd.name] = cmd
