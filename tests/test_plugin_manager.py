"""The plugin manager in one process (src/migflow/plugins.py): who provides what, who
overrides whom, the switches, and the exact words of its warnings and errors.

test_plugins.py checks the same through the command line and an installed
package; here every case is a plugin object or a distribution on sys.path.
"""

from __future__ import annotations

import textwrap
import types
import warnings
from pathlib import Path

import click
import pytest

from migflow import __version__
from migflow.errors import PluginError
from migflow.hookspecs import hookimpl
from migflow.plugins import HOOK_NAMES, PluginLoadWarning, Plugins, get_plugins, hook_problems
from migflow.registry import BackendSpec, ModeSpec, StepSpec


def _step(ctx, options):
    return {}


class Mine:
    """A third-party plugin contributing one of each, and a command."""

    __version__ = "2.5"

    @hookimpl
    def migflow_register_steps(self, register):
        register(StepSpec("mine-step", _step))

    @hookimpl
    def migflow_register_backends(self, register):
        register(BackendSpec("mine-backend", lambda s, d: None))

    @hookimpl
    def migflow_register_modes(self, register):
        register(ModeSpec("mine-mode", "libvirt", ("live",)))

    @hookimpl
    def migflow_register_commands(self, cli):
        @cli.command("mine-cmd")
        def _cmd():
            pass


def _info(plugins, name):
    [info] = [i for i in plugins.infos if i.name == name]
    return info


def test_contributions_are_attributed_to_their_plugin():
    plugins = get_plugins(extra=(Mine(),))
    info = _info(plugins, "extra-0")  # an instance has no __name__
    assert (info.steps, info.backends, info.modes) == (["mine-step"], ["mine-backend"], ["mine-mode"])
    assert info.hooks == ["migflow_register_backends", "migflow_register_commands", "migflow_register_modes", "migflow_register_steps"]
    assert (info.version, info.distribution, info.builtin, info.overrides) == ("2.5", None, False, [])
    steps = _info(plugins, "steps")
    assert (steps.version, steps.distribution, steps.builtin, steps.module) == (__version__, "migflow", True, "migflow_steps")
    assert {"restore", "migrate"} <= set(steps.steps) and steps.backends == [] and steps.modes == []
    assert plugins.step("mine-step").run is _step and plugins.mode("mine-mode").flags == ("live",)
    assert plugins.backend("mine-backend").name == "mine-backend"
    assert plugins.failures == [] and plugins.strict is False


def test_commands_are_attributed_to_their_plugin():
    plugins = get_plugins(extra=(Mine(),))
    cli = click.Group()
    plugins.commands_of(cli)
    assert _info(plugins, "extra-0").commands == ["mine-cmd"]
    assert "mine-cmd" not in _info(plugins, "steps").commands


def test_only_hooks_are_listed_as_hooks():
    class Helper:
        @hookimpl
        def migflow_run_finished(self, ctx):
            pass

        @hookimpl
        def helper(self):  # decorated, but not a migflow hook
            pass

    plugins = get_plugins(extra=(Helper(),))
    assert _info(plugins, "extra-0").hooks == ["migflow_run_finished"]


def test_a_plugin_unregistered_before_collection_contributes_nothing():
    first = get_plugins(extra=(Mine(),))
    first.pm.unregister(name="libvirt")
    plugins = Plugins(first.pm, first.infos, [])
    assert "libvirt" not in plugins.backends and "p2p" not in plugins.modes
    assert "mine-step" in plugins.steps and "qemu" in plugins.backends, "the plugins after it still count"


def test_unknown_names_say_what_is_known():
    plugins = get_plugins()
    with pytest.raises(PluginError, match="no plugin provides the step 'nope'") as step:
        plugins.step("nope")
    assert "restore" in step.value.hint and step.value.hint.startswith("known steps: ")
    with pytest.raises(PluginError, match="no plugin provides the backend 'nope'") as backend:
        plugins.backend("nope")
    assert backend.value.hint.startswith("known backends: ") and "libvirt" in backend.value.hint
    with pytest.raises(PluginError, match="no plugin provides the migration mode 'nope'") as mode:
        plugins.mode("nope")
    assert mode.value.hint.startswith("known modes: ") and "p2p" in mode.value.hint


def test_a_backend_knows_the_plugins_that_made_it():
    class Backend:
        def __init__(self, source, destination):
            self.uris = (source, destination)

    class Provides:
        @hookimpl
        def migflow_register_backends(self, register):
            register(BackendSpec("made", Backend))

    plugins = get_plugins(extra=(Provides(),))
    backend = plugins.make_backend("made", "a://", "b://")
    assert backend.uris == ("a://", "b://") and backend.plugins is plugins


class StepClash:
    @hookimpl
    def migflow_register_steps(self, register):
        register(StepSpec("restore", _step))


class ModeOverride:
    @hookimpl
    def migflow_register_modes(self, register):
        register(ModeSpec("p2p", "libvirt", ("live",), override=True))
        register(ModeSpec("p2p", "libvirt", ("live", "compressed")))  # its own again: no clash


def test_a_step_clash_is_refused_and_names_always_run():
    with pytest.warns(PluginLoadWarning) as caught:
        plugins = get_plugins(extra=(StepClash(),))
    message = (
        "plugin 'extra-0' registers the step 'restore', which plugin 'steps' already provides: refused "
        "(to replace it knowingly, register StepSpec(..., override=True), and keep always_run=True for a step that must run after failures)"
    )
    assert [str(w.message) for w in caught] == [message] and plugins.failures == [message]
    assert plugins.steps["restore"].always_run and _info(plugins, "extra-0").steps == []
    with pytest.raises(PluginError, match="already provides: refused"):
        get_plugins(strict=True, extra=(StepClash(),))


def test_a_mode_clash_message_has_no_word_about_steps():
    class ModeClash:
        @hookimpl
        def migflow_register_modes(self, register):
            register(ModeSpec("p2p", "libvirt", ("live",)))

    with pytest.warns(PluginLoadWarning) as caught:
        get_plugins(extra=(ModeClash(),))
    assert [str(w.message) for w in caught] == [
        "plugin 'extra-0' registers the mode 'p2p', which plugin 'libvirt' already provides: refused (to replace it knowingly, register ModeSpec(..., override=True))"
    ]


def test_a_clash_is_refused_whatever_the_plugins_are_called():
    late = types.ModuleType("zz_late")  # named after the owner 'libvirt' in sort order

    @hookimpl
    def migflow_register_modes(register):
        register(ModeSpec("p2p", "libvirt", ("live",)))

    late.migflow_register_modes = migflow_register_modes
    with pytest.warns(PluginLoadWarning, match="^plugin 'zz_late' registers the mode 'p2p', which plugin 'libvirt' already provides: refused"):
        plugins = get_plugins(extra=(late,))
    assert plugins.modes["p2p"].flags == ("live", "peer2peer")


def test_an_override_is_listed_and_a_plugin_may_replace_its_own():
    plugins = get_plugins(extra=(ModeOverride(),))
    info = _info(plugins, "extra-0")
    assert info.overrides == ["mode p2p (from libvirt)"] and info.modes == ["p2p", "p2p"]
    assert plugins.modes["p2p"].flags == ("live", "compressed") and plugins.failures == []


def test_registering_the_wrong_kind_is_an_error():
    class Wrong:
        @hookimpl
        def migflow_register_modes(self, register):
            register(StepSpec("x", _step))

    with pytest.raises(PluginError, match=r"plugin 'extra-0' registered StepSpec\(name='x'.*, expected a ModeSpec"):
        get_plugins(extra=(Wrong(),))


class Typo:
    @hookimpl
    def migflow_leg_finshed(self, ctx, leg):
        pass

    def migflow_run_finished(self, ctx):  # no @hookimpl
        pass

    def migflow_zzz(self):
        pass

    migflow_data = "not a function: ignored"


def test_hook_problems_name_each_function():
    assert hook_problems(Typo()) == [
        "migflow_leg_finshed is not a migflow hook (did you mean 'migflow_leg_finished'?)",
        "migflow_run_finished has no @hookimpl, so it would never be called (decorate it with @migflow.hookspecs.hookimpl)",
        "migflow_zzz is not a migflow hook",
    ]
    assert hook_problems(Mine()) == []
    assert "migflow_leg_finished" in HOOK_NAMES and "hookimpl" not in HOOK_NAMES and list(HOOK_NAMES) == sorted(HOOK_NAMES)


def test_a_plugin_with_problems_is_skipped_with_one_warning_naming_all():
    with pytest.warns(PluginLoadWarning) as caught:
        plugins = get_plugins(extra=(Typo(),))
    assert len(caught) == 1
    text = str(caught[0].message)
    assert text.startswith("plugin 'extra-0' is not usable: migflow_leg_finshed is not a migflow hook")
    assert "?); migflow_run_finished has no @hookimpl, so it would never be called" in text and "hookimpl); migflow_zzz is not" in text
    assert text.endswith(" (skipped; set MIGFLOW_STRICT_PLUGINS=1 to make this an error)")
    assert plugins.failures == [text.removesuffix(" (skipped; set MIGFLOW_STRICT_PLUGINS=1 to make this an error)")]
    assert "extra-0" not in [i.name for i in plugins.infos] and plugins.pm.get_plugin("extra-0") is None


def _site(tmp_path: Path, name: str, code: str, version: str = "0.3") -> Path:
    """A distribution ``migflow-<name>`` with the entry point ``<name>``, for sys.path."""
    site = tmp_path / f"site-{name}"
    (site / f"{name}_pkg").mkdir(parents=True)
    (site / f"{name}_pkg" / "__init__.py").write_text(textwrap.dedent(code))
    info = site / f"migflow_{name}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: migflow-{name}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[migflow]\n{name} = {name}_pkg\n")
    return site


GOOD = """
    from migflow.hookspecs import hookimpl
    from migflow.registry import ModeSpec
    @hookimpl
    def migflow_register_modes(register):
        register(ModeSpec("ep-mode", "libvirt", ("live",)))
"""


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """Two installed third-party plugins: ``good`` and ``broken`` (fails to import)."""
    for var in ("MIGFLOW_LOAD_PLUGINS", "MIGFLOW_DISABLE_PLUGINS", "MIGFLOW_STRICT_PLUGINS", "MIGFLOW_PLUGIN_MODULES"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.syspath_prepend(str(_site(tmp_path, "good", GOOD)))
    monkeypatch.syspath_prepend(str(_site(tmp_path, "broken", "raise RuntimeError('this plugin is broken')\n", "1.2.3")))
    return monkeypatch


def test_an_installed_plugin_is_loaded_with_its_distribution(installed):
    with pytest.warns(PluginLoadWarning) as caught:
        plugins = get_plugins()
    good = _info(plugins, "good")
    assert (good.module, good.version, good.distribution, good.builtin, good.modes) == ("good_pkg", "0.3", "migflow-good", False, ["ep-mode"])
    assert [str(w.message) for w in caught] == [
        "plugin 'broken' from distribution migflow-broken could not be loaded: RuntimeError: this plugin is broken (skipped; set MIGFLOW_STRICT_PLUGINS=1 to make this an error)"
    ]
    assert plugins.failures == ["plugin 'broken' from distribution migflow-broken could not be loaded: RuntimeError: this plugin is broken"]


@pytest.mark.parametrize("value", ["1", "yes", "true"])
def test_strict_mode_from_the_environment(installed, value):
    installed.setenv("MIGFLOW_STRICT_PLUGINS", value)
    with pytest.raises(PluginError, match="plugin 'broken' from distribution migflow-broken could not be loaded") as err:
        get_plugins()
    assert err.value.hint == "fix or uninstall the plugin, or unset MIGFLOW_STRICT_PLUGINS"
    assert isinstance(err.value.__cause__, RuntimeError)


@pytest.mark.parametrize("value", ["", "0", "false", "no"])
def test_strict_mode_off_in_the_environment(installed, value):
    installed.setenv("MIGFLOW_STRICT_PLUGINS", value)
    with pytest.warns(PluginLoadWarning):
        plugins = get_plugins()
    assert plugins.strict is False and "good" in [i.name for i in plugins.infos]


def test_load_only_the_named_entry_points(installed):
    installed.setenv("MIGFLOW_LOAD_PLUGINS", " good , ")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # broken is not even imported
        plugins = get_plugins()
    names = [i.name for i in plugins.infos]
    assert names == ["steps", "libvirt", "lab", "qemu", "good"]
    installed.setenv("MIGFLOW_LOAD_PLUGINS", "")
    assert [i.name for i in get_plugins().infos] == ["steps", "libvirt", "lab", "qemu"], "empty: no entry point at all"


def test_disable_entry_points_and_builtins_by_name(installed):
    installed.setenv("MIGFLOW_LOAD_PLUGINS", "good,broken")  # not any other plugin this machine has installed
    installed.setenv("MIGFLOW_DISABLE_PLUGINS", "broken,qemu")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plugins = get_plugins()
    assert [i.name for i in plugins.infos] == ["steps", "libvirt", "lab", "good"]
    assert "qemu" not in plugins.backends


def test_a_builtin_that_fails_is_an_error_even_without_strict_mode(monkeypatch):
    import migflow.plugins as manager

    monkeypatch.setattr(manager, "DEFAULT_PLUGINS", (*manager.DEFAULT_PLUGINS, ("gone", "no_such_builtin_module")))
    with pytest.raises(PluginError, match="plugin 'gone' from distribution migflow could not be loaded: ModuleNotFoundError"):
        get_plugins(strict=False)


def test_plugin_modules_are_loaded_once_in_name_order(tmp_path, monkeypatch):
    for name in ("zz_local", "aa_local"):
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(GOOD).replace("ep-mode", f"{name}-mode"))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("MIGFLOW_PLUGIN_MODULES", "zz_local, aa_local,zz_local")
    plugins = get_plugins()
    assert [i.name for i in plugins.infos][-2:] == ["aa_local", "zz_local"]
    assert _info(plugins, "aa_local").distribution is None and {"aa_local-mode", "zz_local-mode"} <= set(plugins.modes)
    monkeypatch.setenv("MIGFLOW_PLUGIN_MODULES", "no_such_module_here")
    with pytest.warns(PluginLoadWarning, match=r"^plugin module 'no_such_module_here' \(MIGFLOW_PLUGIN_MODULES\) could not be loaded: ModuleNotFoundError"):
        get_plugins()


def test_a_module_given_twice_as_extra_is_named_by_its_module():
    import fakes

    plugins = get_plugins(extra=(fakes,))
    assert _info(plugins, "fakes").backends == ["fake"]
