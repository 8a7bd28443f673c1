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
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from importlib import metadata
from typing import TYPE_CHECKING, Any

import pluggy

from . import hookspecs
from .errors import PluginError
from .registry import BackendSpec, ModeSpec, StepSpec
from .workflow.suggest import did_you_mean

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
    overrides: list[str] = field(default_factory=list)  # "step restore (from steps)"
    steps: list[str] = field(default_factory=list)
    backends: list[str] = field(default_factory=list)
    modes: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)


class Plugins:
    """A plugin manager plus what the plugins contributed (steps, backends, modes)."""

    def __init__(self, pm: pluggy.PluginManager, infos: list[PluginInfo], failures: list[str], strict: bool = False):
        self.pm = pm
        self.strict = strict
        self.hook = pm.hook
        self.infos = infos
        self.failures = failures
        self.steps: dict[str, StepSpec] = {}
        self.backends: dict[str, BackendSpec] = {}
        self.modes: dict[str, ModeSpec] = {}
        self._collect()

    def _refuse(self, info: PluginInfo, message: str) -> None:
        """A contribution that would silently replace another plugin's: refused, said like a load failure."""
        if self.strict or info.builtin:
            raise PluginError(message)
        self.failures.append(message)
        warnings.warn(message, PluginLoadWarning, stacklevel=4)

    def _collect(self) -> None:
        # Call each plugin's hook separately so contributions are attributed to it.
        owners: dict[tuple[str, str], str] = {}  # (kind, name) -> plugin that provides it
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
                    what = _kind.__name__.replace("Spec", "").lower()
                    owner = owners.get((what, spec.name))
                    if owner is not None and owner != _info.name:
                        if not spec.override:
                            self._refuse(
                                _info,
                                f"{_describe(_info)} registers the {what} {spec.name!r}, which plugin {owner!r} already provides: refused "
                                f"(to replace it knowingly, register {_kind.__name__}(..., override=True)"
                                + (", and keep always_run=True for a step that must run after failures)" if what == "step" else ")"),
                            )
                            return
                        _info.overrides.append(f"{what} {spec.name} (from {owner})")
                    owners[(what, spec.name)] = _info.name
                    _target[spec.name] = spec
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


def _describe(info: PluginInfo) -> str:
    """``plugin 'x' from distribution migflow-x``: who, for a message."""
    return f"plugin {info.name!r}" + (f" from distribution {info.distribution}" if info.distribution else "")


def _identity(plugin: Any) -> Any:
    return plugin


def _hooks_of(plugin: Any) -> list[str]:
    """The hooks a plugin implements (decorated ``migflow_*`` functions)."""
    return sorted(n for n in dir(plugin) if n in HOOK_NAMES and hasattr(getattr(plugin, n), f"{hookspecs.PROJECT}_impl"))


#: every hook name migflow defines
HOOK_NAMES = tuple(sorted(n for n in dir(hookspecs) if n.startswith("migflow_") and callable(getattr(hookspecs, n))))


def hook_problems(plugin: Any) -> list[str]:
    """What is wrong with a plugin's ``migflow_*`` functions: not a hook (a typo), or a hook without ``@hookimpl``."""
    problems = []
    for attr in sorted(dir(plugin)):
        if not attr.startswith("migflow_") or not callable(getattr(plugin, attr, None)):
            continue
        decorated = hasattr(getattr(plugin, attr), f"{hookspecs.PROJECT}_impl")
        if attr not in HOOK_NAMES:
            problems.append(f"{attr} is not a migflow hook{did_you_mean(attr, HOOK_NAMES)}")
        elif not decorated:
            problems.append(f"{attr} has no @hookimpl, so it would never be called (decorate it with @migflow.hookspecs.hookimpl)")
    return problems


class _Loader:
    """Registers plugins one by one; a plugin that cannot be loaded or is wrong is skipped with a warning
    naming it and its distribution (strict mode: an error), so unrelated commands keep working."""

    def __init__(self, pm: pluggy.PluginManager, strict: bool):
        self.pm, self.strict = pm, strict
        self.infos: list[PluginInfo] = []
        self.failures: list[str] = []

    def add(self, load: Callable[[], Any], info: PluginInfo, origin: str | None = None) -> None:
        where = _describe(info) if origin is None else f"plugin module {info.name!r} ({origin})"
        try:
            plugin = load()
        except Exception as exc:
            self._fail(f"{where} could not be loaded: {type(exc).__name__}: {exc}", info, exc)
            return
        problems = hook_problems(plugin)
        if problems:
            self._fail(f"{where} is not usable: {'; '.join(problems)}", info)
            return
        self.pm.register(plugin, name=info.name)
        info.hooks = _hooks_of(plugin)
        if info.version is None:
            info.version = getattr(plugin, "__version__", None)
        self.infos.append(info)

    def _fail(self, message: str, info: PluginInfo, cause: BaseException | None = None) -> None:
        if self.strict or info.builtin:  # a built-in plugin that fails is a bug in migflow
            raise PluginError(message, hint="fix or uninstall the plugin, or unset MIGFLOW_STRICT_PLUGINS") from cause
        self.failures.append(message)
        warnings.warn(message + " (skipped; set MIGFLOW_STRICT_PLUGINS=1 to make this an error)", PluginLoadWarning, stacklevel=3)


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
    loader = _Loader(pm, bool(strict))
    from . import __version__

    for name, modname in DEFAULT_PLUGINS:
        if name not in disabled:
            loader.add(partial(importlib.import_module, modname), PluginInfo(name, modname, __version__, "migflow", True))

    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in disabled or (allowed is not None and ep.name not in allowed) or pm.get_plugin(ep.name) is not None:
            continue
        dist = ep.dist.name if ep.dist else None
        loader.add(ep.load, PluginInfo(ep.name, ep.value, ep.dist.version if ep.dist else None, dist, False))

    for modname in sorted(_names("MIGFLOW_PLUGIN_MODULES") or ()):
        if pm.get_plugin(modname) is None:
            loader.add(partial(importlib.import_module, modname), PluginInfo(modname, modname, None, None, False), origin="MIGFLOW_PLUGIN_MODULES")

    for i, plugin in enumerate(extra):
        name = getattr(plugin, "__name__", None) or f"extra-{i}"
        loader.add(partial(_identity, plugin), PluginInfo(name, name, None, None, False))

    return Plugins(pm, loader.infos, loader.failures, bool(strict))
