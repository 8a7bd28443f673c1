"""The built-in steps: thin, backend-agnostic wrappers around ``ctx.backend``."""

from __future__ import annotations

import time

from migflow.errors import StepError
from migflow.status import LegStatus, RunStatus

__all__ = ["migrate", "prepare_domain", "restore", "set_capabilities", "validate_scenario"]


def prepare_domain(ctx, options: dict) -> dict:
    info = ctx.backend.prepare_domain(ctx, ctx.scenario.domain, options)
    ctx.recorder.set_run(domain=info, host_versions=ctx.backend.host_info())
    ctx.recorder.flush()
    if options.get("warmup_s"):
        time.sleep(options["warmup_s"])
    return {k: v for k, v in info.items() if k != "xml"}  # the XML is in runs.domain


def set_capabilities(ctx, options: dict) -> dict:
    return ctx.backend.set_capabilities(ctx, options.get("capabilities", {}), options.get("parameters", {}))


def migrate(ctx, options: dict) -> dict:
    mode = ctx.plugins.mode(_mode_name(ctx.plugins, ctx.workflow, options))
    if mode.backend != ctx.workflow.backend:
        raise StepError(f"mode {mode.name!r} belongs to the {mode.backend!r} backend, not {ctx.workflow.backend!r}")
    flags = list(dict.fromkeys([*mode.flags, *options.get("flags", [])]))
    round_trip = options.get("round_trip", ctx.workflow.round_trip)
    expect = options.get("expect", "success")
    pairs = [(ctx.hosts.source, ctx.hosts.destination)]
    if round_trip:
        pairs.append((ctx.hosts.destination, ctx.hosts.source))
    legs = []
    for i, (source, destination) in enumerate(pairs):
        if i and options.get("settle_s"):
            time.sleep(options["settle_s"])
        leg = ctx.new_leg(source, destination, mode.name, flags)
        try:
            ctx.run_leg(leg, lambda leg=leg: ctx.backend.migrate(ctx, leg, mode, options))
        except StepError:
            legs.append(_leg_summary(leg))
            if expect == "success":
                raise
            break  # the domain did not move: no way back to take
        legs.append(_leg_summary(leg))
    if expect == "failure" and all(leg["status"] == LegStatus.COMPLETED for leg in legs):
        raise StepError(f"mode {mode.name!r} migrated successfully, but the step expects failure (expect = 'failure')")
    return {"mode": mode.name, "flags": flags, "legs": legs}


def _leg_summary(leg) -> dict:
    return {"leg": leg.number, "status": leg.status, "wall_ms": leg.wall_ms, "error": leg.error}


def restore(ctx, options: dict) -> dict:
    end = ctx.backend.restore(ctx, options)
    if end.get("lost"):
        ctx.status = RunStatus.LOST
        ctx.error = end.get("message") or "the domain was lost: it runs on neither host"
    return end


def _mode_name(plugins, workflow, options: dict) -> str | None:
    if "mode" in options:
        return options["mode"]
    backend = plugins.backends.get(workflow.backend)
    return backend.default_mode if backend else None


def validate_scenario(workflow, scenario, plugins) -> list:
    """Combinations that cannot work, found before anything runs."""
    issues = []
    caps: dict = {}
    for use in scenario.steps:
        if use.name == "set-capabilities":
            caps.update({k: v for k, v in use.options.get("capabilities", {}).items() if v})
    for use in scenario.steps:
        if use.name != "migrate":
            continue
        path = f"steps[{use.index}]"
        name = _mode_name(plugins, workflow, use.options)
        if name is None:
            issues.append((path, f'the {workflow.backend!r} backend has no default mode: give mode = "..."'))
            continue
        mode = plugins.modes.get(name)
        if mode is None:
            known = ", ".join(sorted(m for m, spec in plugins.modes.items() if spec.backend == workflow.backend))
            issues.append((f"{path}.mode", f"no plugin provides the migration mode {name!r} for the {workflow.backend!r} backend (known: {known})"))
            continue
        if mode.backend != workflow.backend:
            issues.append((f"{path}.mode", f"mode {name!r} belongs to the {mode.backend!r} backend; this workflow uses {workflow.backend!r}"))
        chosen = set(use.options.get("flags", [])) | set(mode.flags) | {f"capability:{c}" for c in caps}
        for item, reason in mode.incompatible.items():
            if item in chosen:
                issues.append((f"{path}.mode", f"mode {name!r} cannot be combined with {item.removeprefix('capability:')}: {reason}"))
        flags = set(use.options.get("flags", []))
        timeout = use.options.get("timeout") or {}
        if timeout.get("action") == "postcopy" and "postcopy" not in flags and not caps.get("postcopy-ram"):
            issues.append((f"{path}.timeout.action", "action 'postcopy' needs the 'postcopy' flag (or the postcopy-ram capability)"))
    return issues
