"""Build the plugin manager: built-in plugins, then entry points, each guarded.

Built-ins are registered on the same manager, through the same hooks, as
third-party plugins (group ``migflow``).  A third-party plugin that fails to
import gives a warning naming it and its distribution; with strict mode
(``--strict-plugins`` or ``MIGFLOW_STRICT_PLUGINS=1``) it is an error.

Environment switches:

* ``MIGFLOW_LOAD_PLUGINS=a,b``: load only these entry-point plugins (empty: none).
* ``MIGFLOW_DISABLE_PLUGINS=a,b``: skip these plugins (built-ins included, by name).
* ``MIGFLOW_STRICT_PLUGINS=1``: a plugin that fails to load is an error.
* ``MIGFLOW_PLUGIN_MODULES=pkg.mod,other``: also register these importable
  modules as plugins (local plugins without packaging, fault injection in tests).
"""

from __future__ import annotations

import importlib
import os
import warnings
from dataclasses import dataclass, field
from importlib import metadata
from typing import TYPE_CHECKING

import pluggy

from . import hookspecs
from .errors import PluginError
from .registry import BackendSpec, ModeSpec, StepSpec

if TYPE_CHECKING:
    from .backend import Backend

__all__ = ["DEFAULT_PLUGINS", "ENTRY_POINT_GROUP", "PluginLoadWarning", "Plugins", "get_plugins"]

ENTRY_POINT_GROUP = "migflow"
#: built-in plugins: (name, module).  Registered first, so third parties can override.
DEFAULT_PLUGINS: tuple[tuple[str, str], ...] = (
    ("steps", "migflow_steps"),
    ("libvirt", "migflow_libvirt"),
    ("lab", "migflow_lab"),
    ("qemu", "migflow_qemu"),
)


class PluginLoadWarning(UserWarning):
    """A third-party plugin could not be loaded and was skipped."""


@dataclass
class PluginInfo:
    name: str
    module: str
    version: str | None
    distribution: str | None
    builtin: bool
    hooks: list[str] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)
    backends: list[str] = field(default_factory=list)
    modes: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)


class Plugins:
    """A plugin manager plus what the plugins contributed (steps, backends, modes)."""

    def __init__(self, pm: pluggy.PluginManager, infos: list[PluginInfo], failures: list[str]):
        self.pm = pm
        self.hook = pm.hook
        self.infos = infos
        self.failures = failures
        self.steps: dict[str, StepSpec] = {}
        self.backends: dict[str, BackendSpec] = {}
        self.modes: dict[str, ModeSpec] = {}
        self._collect()

    def _collect(self) -> None:
        # Call each plugin's hook separately so contributions are attributed to it.
        for info in self.infos:
            plugin = self.pm.get_plugin(info.name)
            if plugin is None:
                continue
            for hook_name, target, kind in (
                ("migflow_register_steps", self.steps, StepSpec),
                ("migflow_register_backends", self.backends, BackendSpec),
                ("migflow_register_modes", self.modes, ModeSpec),
            ):
                impl = getattr(plugin, hook_name, None)
                if impl is None:
                    continue
                names = getattr(info, kind.__name__.replace("Spec", "").lower() + "s")

                def register(spec, _target=target, _kind=kind, _names=names, _info=info):
                    if not isinstance(spec, _kind):
                        raise PluginError(f"plugin {_info.name!r} registered {spec!r}, expected a {_kind.__name__}")
                    _target[spec.name] = spec  # later plugins override earlier ones
                    _names.append(spec.name)

                impl(register=register)

    def commands_of(self, cli) -> None:
        """Let every plugin add its commands to ``cli``, remembering who added what."""
        for info in self.infos:
            plugin = self.pm.get_plugin(info.name)
            impl = getattr(plugin, "migflow_register_commands", None) if plugin else None
            if impl is None:
                continue
            before = set(cli.commands)
            impl(cli=cli)
            info.commands.extend(sorted(set(cli.commands) - before))

    def step(self, name: str) -> StepSpec:
        try:
            return self.steps[name]
        except KeyError:
            raise PluginError(f"no plugin provides the step {name!r}", hint=f"known steps: {', '.join(sorted(self.steps))}") from None

    def backend(self, name: str) -> BackendSpec:
        try:
            return self.backends[name]
        except KeyError:
            raise PluginError(f"no plugin provides the backend {name!r}", hint=f"known backends: {', '.join(sorted(self.backends))}") from None

    def make_backend(self, name: str, source_uri: str, destination_uri: str) -> Backend:
        """A new, unopened backend ``name`` for two hosts, knowing these plugins (``backend.plugins``)."""
        backend = self.backend(name).factory(source_uri, destination_uri)
        backend.plugins = self
        return backend

    def mode(self, name: str) -> ModeSpec:
        try:
            return self.modes[name]
        except KeyError:
            raise PluginError(f"no plugin provides the migration mode {name!r}", hint=f"known modes: {', '.join(sorted(self.modes))}") from None


def _names(var: str) -> set[str] | None:
    value = os.environ.get(var)
    if value is None:
        return None
    return {n.strip() for n in value.split(",") if n.strip()}


def _hooks_of(module) -> list[str]:
    return sorted(n for n in dir(module) if n.startswith("migflow_") and callable(getattr(module, n)))


def get_plugins(*, strict: bool | None = None, extra: tuple = ()) -> Plugins:
    """Build a fresh plugin manager.

    :param strict: a third-party plugin that fails to load raises
        :class:`~migflow.errors.PluginError` instead of warning.  Defaults to
        ``MIGFLOW_STRICT_PLUGINS``.
    :param extra: plugin objects (modules or instances) to register last, for tests.
    """
    if strict is None:
        strict = os.environ.get("MIGFLOW_STRICT_PLUGINS", "") not in ("", "0", "false", "no")
    disabled = _names("MIGFLOW_DISABLE_PLUGINS") or set()
    allowed = _names("MIGFLOW_LOAD_PLUGINS")
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    infos: list[PluginInfo] = []
    failures: list[str] = []
    from . import __version__

    for name, modname in DEFAULT_PLUGINS:
        if name in disabled:
            continue
        module = importlib.import_module(modname)
        pm.register(module, name=name)
        infos.append(PluginInfo(name, modname, __version__, "migflow", True, _hooks_of(module)))

    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in disabled or (allowed is not None and ep.name not in allowed):
            continue
        if pm.get_plugin(ep.name) is not None:
            continue
        dist = ep.dist.name if ep.dist else None
        version = ep.dist.version if ep.dist else None
        try:
            plugin = ep.load()
            pm.register(plugin, name=ep.name)
        except Exception as exc:  # a broken plugin must not break the CLI
            msg = f"plugin {ep.name!r} from distribution {dist or '?'} could not be loaded: {type(exc).__name__}: {exc}"
            if strict:
                raise PluginError(msg, hint="fix or uninstall the plugin, or unset MIGFLOW_STRICT_PLUGINS") from exc
            failures.append(msg)
            warnings.warn(msg + " (skipped; set MIGFLOW_STRICT_PLUGINS=1 to make this an error)", PluginLoadWarning, stacklevel=2)
            continue
        infos.append(PluginInfo(ep.name, ep.value, version, dist, False, _hooks_of(plugin)))

    for modname in sorted(_names("MIGFLOW_PLUGIN_MODULES") or ()):
        if pm.get_plugin(modname) is not None:
            continue
        try:
            module = importlib.import_module(modname)
        except Exception as exc:
            msg = f"plugin module {modname!r} (MIGFLOW_PLUGIN_MODULES) could not be imported: {type(exc).__name__}: {exc}"
            if strict:
                raise PluginError(msg) from exc
            failures.append(msg)
            warnings.warn(msg + " (skipped)", PluginLoadWarning, stacklevel=2)
            continue
        pm.register(module, name=modname)
        infos.append(PluginInfo(modname, modname, getattr(module, "__version__", None), None, False, _hooks_of(module)))

    for i, plugin in enumerate(extra):
        name = getattr(plugin, "__name__", None) or f"extra-{i}"
        pm.register(plugin, name=name)
        infos.append(PluginInfo(name, name, None, None, False, _hooks_of(plugin)))

    try:
        pm.check_pending()  # a misspelled migflow_* hook fails loudly
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"a plugin implements an unknown hook: {exc}") from exc
    return Plugins(pm, infos, failures)
