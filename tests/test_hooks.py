"""Every hook is documented, implemented by a shipped plugin, and called.

* documented: each ``migflow_*`` hookspec of src/migflow/hookspecs.py has a
  section in docs/plugins.md;
* implemented: some built-in plugin, or the example third-party plugin
  (docs/examples/migflow-example), implements it;
* called: a spy plugin implementing every hook is registered on the managers
  that ``migflow run`` and the CLI build; a workflow then runs end to end
  (fake backend, real CLI code path: loading, validation, default hosts, host
  preparation, engine, observers, collect-qmp) and the spy must have heard
  every hook.  A new hook that nothing calls fails this test.
"""

from __future__ import annotations

import inspect
import re
import sys
from pathlib import Path

import click
import fakes
import pytest
from click.testing import CliRunner

import migflow.plugins
from migflow import hookspecs
from migflow.hookspecs import hookimpl

ROOT = Path(__file__).resolve().parent.parent
HOOKS = sorted(n for n, f in vars(hookspecs).items() if n.startswith("migflow_") and inspect.isfunction(f))


def test_hookspecs_are_found():
    assert {"migflow_register_backends", "migflow_leg_finished", "migflow_guest_image"} <= set(HOOKS)


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_documented(hook):
    doc = (ROOT / "docs" / "plugins.md").read_text()
    assert re.search(rf"^#+ .*`{hook}\(", doc, re.M), f"{hook} has no section in docs/plugins.md"


def _example_plugin():
    sys.path.insert(0, str(ROOT / "docs" / "examples" / "migflow-example" / "src"))
    try:
        import migflow_example
    finally:
        sys.path.pop(0)
    return migflow_example


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_implemented_by_a_shipped_plugin(hook):
    from migflow.progress import ProgressDisplay

    plugins = migflow.plugins.get_plugins(extra=(ProgressDisplay(1),))
    if plugins.pm.get_plugin("example") is None:  # not installed here (CI installs it): register it by hand
        plugins = migflow.plugins.get_plugins(extra=(_example_plugin(), ProgressDisplay(1)))
    owners = [plugins.pm.get_name(impl.plugin) for impl in getattr(plugins.hook, hook).get_hookimpls()]
    assert owners, f"no built-in or example plugin implements {hook}"


class Spy:
    """Implements every hook; remembers which were called."""

    def __init__(self):
        self.called: set[str] = set()


def _spy_hook(name):
    """A method with the hookspec's own parameters (callers may pass them by position)."""
    params = list(inspect.signature(getattr(hookspecs, name)).parameters)
    result = "[]" if name == "migflow_validate_scenario" else "None"
    src = f"def {name}(self, {', '.join(params)}):\n    self.called.add({name!r})\n    return {result}\n"
    namespace: dict = {}
    exec(src, namespace)
    return hookimpl(tryfirst=True)(namespace[name])


for _name in HOOKS:
    setattr(Spy, _name, _spy_hook(_name))


class GuestBackend(fakes.FakeBackend):
    """The fake backend, asking the plugins for a guest image as real backends do."""

    def prepare_domain(self, ctx, domain, options):
        if "create" in domain:
            ctx.hook.migflow_guest_image(workload=domain["create"].get("workload", {}), create=domain["create"], guest=1)
        return super().prepare_domain(ctx, domain, options)


class GuestFakes:
    @hookimpl
    def migflow_register_backends(self, register):
        from migflow.registry import BackendSpec

        register(BackendSpec("fake", GuestBackend, override=True))


WORKFLOW = """name = "every_hook"
backend = "fake"
round_trip = true
[hosts]
source = "fake://a"
destination = "fake://b"
[domain.create]
memory_mib = 128
[domain.create.workload]
working_set_mib = 16
[[steps]]
use = "prepare-domain"
[[steps]]
use = "set-capabilities"
[[steps]]
use = "migrate"
mode = "fake-mode"
[[steps]]
use = "collect-qmp"
interval_ms = 20
[[steps]]
use = "restore"
"""


def test_every_hook_is_called(monkeypatch, tmp_path):
    spy = Spy()
    real = migflow.plugins.get_plugins

    def get_plugins(**kw):
        return real(**{**kw, "extra": (*kw.get("extra", ()), fakes, GuestFakes(), spy)})

    monkeypatch.setattr(migflow.plugins, "get_plugins", get_plugins)
    # the command-line code paths: plugin commands, then `migflow run`
    migflow.plugins.get_plugins().commands_of(click.Group("migflow"))
    from migflow.cli.run import run

    wf = tmp_path / "every_hook.toml"
    wf.write_text(WORKFLOW)
    result = CliRunner().invoke(run, [str(wf), "--results", str(tmp_path / "r.duckdb")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    missing = sorted(set(HOOKS) - spy.called)
    assert not missing, f"hooks no code path called: {missing}"
