"""The ``migflow`` command line.

One small module per command, imported only when that command runs, so
``migflow --help`` stays fast.  Plugins add commands through
``migflow_register_commands``; a plugin's commands appear in ``--help`` too.
"""

from __future__ import annotations

import importlib
import os
import sys

import click

from .. import __version__
from ..errors import ExitCode, MigflowError, debug_enabled

__all__ = ["cli", "main"]

#: built-in commands: name -> (module, attribute, short help shown by --help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "run": ("migflow.cli.run", "run", "Run a workflow: every scenario x repetition, recorded in DuckDB."),
    "validate": ("migflow.cli.validate", "validate", "Check workflow files against the schema and the plugins."),
    "schema": ("migflow.cli.schema", "schema", "Print the full workflow JSON Schema (core + every plugin's steps)."),
    "plugins": ("migflow.cli.plugins", "plugins", "List plugins, their versions and what each provides."),
    "query": ("migflow.cli.query", "query", "Run read-only SQL on the results database."),
    "runs": ("migflow.cli.runs", "runs", "List recent runs and their status."),
    "ingest": ("migflow.cli.ingest", "ingest", "Move spooled run records into the results database."),
    "compare": ("migflow.cli.compare", "compare", "Do two scenarios differ on a metric? Difference, 95% CI, verdict."),
    "report": ("migflow.cli.report", "report", "Write a self-contained HTML report (tables, charts, time series); PNGs too."),
    "export": ("migflow.cli.export", "export", "Export every table to Parquet or CSV files for notebooks and other tools."),
    "recover": ("migflow.cli.recover", "recover", "Put domains that runs left behind back into their original state."),
}


class MigflowGroup(click.Group):
    """Loads built-in commands lazily and plugin commands on first need."""

    _plugins_loaded = False

    def _load_plugin_commands(self, ctx: click.Context | None) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        from ..plugins import get_plugins

        strict = bool(ctx and ctx.params.get("strict_plugins"))
        try:
            get_plugins(strict=strict or None).commands_of(self)
        except MigflowError as exc:
            click.echo(f"migflow: {exc}", err=True)
            sys.exit(exc.exit_code)

    def list_commands(self, ctx):
        self._load_plugin_commands(ctx)
        return sorted(set(COMMANDS) | set(self.commands))

    def get_command(self, ctx, name):
        if name in COMMANDS:
            module, attr, _ = COMMANDS[name]
            return getattr(importlib.import_module(module), attr)
        if name not in self.commands:
            self._load_plugin_commands(ctx)
        return self.commands.get(name)

    def format_commands(self, ctx, formatter):
        # Short help without importing every command module.
        rows = []
        for name in self.list_commands(ctx):
            if name in COMMANDS:
                rows.append((name, COMMANDS[name][2]))
            else:
                cmd = self.commands[name]
                rows.append((name, cmd.get_short_help_str(limit=formatter.width - 20)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=MigflowGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", prog_name="migflow")
@click.option("--strict-plugins", is_flag=True, envvar="MIGFLOW_STRICT_PLUGINS", help="A plugin that fails to load is an error, not a warning.")
@click.option("--debug", is_flag=True, envvar="MIGFLOW_DEBUG", help="Show tracebacks for unexpected errors.")
@click.pass_context
def cli(ctx: click.Context, strict_plugins: bool, debug: bool) -> None:
    """migflow: reproducible live-migration experiments.

    A workflow (TOML) names the hosts, the domain under test, the steps
    (prepare-domain, set-capabilities, migrate, collect-qmp, restore) and a
    matrix of parameters to sweep.  Every run, failed ones included, lands in a
    DuckDB file you can query with plain SQL.

    \b
    Quick start (the embedded two-host lab, needs root):
      migflow run workflows/zstack_default.toml
      migflow runs
      migflow query "SELECT mode, total_time, downtime, ram_mbps FROM migrations"

    \b
    Against your own hosts:
      migflow run workflows/p2p.toml --src qemu+tls://a/system --dst qemu+tls://b/system
    """
    if debug:  # read through migflow.errors.debug_enabled(), by main() and the engine alike
        os.environ["MIGFLOW_DEBUG"] = "1"
    if strict_plugins:
        os.environ["MIGFLOW_STRICT_PLUGINS"] = "1"


def main(argv: list[str] | None = None) -> None:
    """Console entry point: expected errors become one message and an exit status."""
    try:
        rc = cli.main(args=argv, prog_name="migflow", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("migflow: interrupted", err=True)
        sys.exit(ExitCode.INTERRUPTED)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except MigflowError as exc:
        click.echo(f"migflow: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("migflow: interrupted", err=True)
        sys.exit(ExitCode.INTERRUPTED)
    except Exception as exc:  # unexpected: keep the traceback under --debug
        if debug_enabled():
            raise
        click.echo(f"migflow: internal error: {type(exc).__name__}: {exc}\n  (run again with --debug for the traceback, and please report it)", err=True)
        sys.exit(ExitCode.INTERNAL)
    sys.exit(rc if isinstance(rc, int) else 0)
