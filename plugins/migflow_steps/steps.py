"""The built-in steps: thin, backend-agnostic wrappers around ``ctx.backend``."""

from __future__ import annotations

import time

from migflow.errors import StepError
from migflow.status import LegStatus, RunStatus
from migflow.workflow.suggest import did_you_mean, did_you_mean_lead

__all__ = ["migrate", "prepare_domain", "restore", "set_capabilities", "validate_scenario"]


def prepare_domain(ctx, options: dict) -> dict:
    info = ctx.backend.prepare_domain(ctx, ctx.scenario.domain, options)
    ctx.recorder.set_run(domain=info)
    if info.get("virt_type"):
        ctx.recorder.set_run(environment={"accel": "kvm" if info["virt_type"] == "kvm" else "tcg"})
    ctx.recorder.flush()
    steady = None
    if options.get("wait_steady", True):
        steady = ctx.hook.migflow_wait_steady(ctx=ctx, timeout_s=options.get("steady_timeout_s", 120))
        state = "observed" if steady else "not-observed"
    else:
        state = "off"
    warmup = options.get("warmup_s", 0)
    if warmup:
        time.sleep(warmup)
    ctx.recorder.set_run(
        steady_state=state,
        steady_after_ms=(steady or {}).get("after_ms"),
        steady_dirty_rate_mibs=(steady or {}).get("dirty_rate_mibs"),
        warmup_s=warmup,
    )
    ctx.recorder.flush()
    out = {k: v for k, v in info.items() if k != "xml"}  # the XML is in runs.domain
    out["steady"] = steady if steady else state
    return out


def set_capabilities(ctx, options: dict) -> dict:
    return ctx.backend.set_capabilities(ctx, options.get("capabilities", {}), options.get("parameters", {}))


def migrate(ctx, options: dict) -> dict:
    """One batch of legs there (every guest of the run), and one back with ``round_trip``.

    With one guest that is a leg each way.  With several (``[domain.create]
    count``) it is a host evacuation: every guest moves, at most
    ``concurrency`` legs at once, and the batch back starts when the batch
    there is done.  A guest whose leg failed stays where it is: it takes no
    leg back.
    """
    mode = ctx.plugins.mode(_mode_name(ctx.plugins, ctx.workflow, options))
    if mode.backend != ctx.workflow.backend:
        raise StepError(f"mode {mode.name!r} belongs to the {mode.backend!r} backend, not {ctx.workflow.backend!r}")
    flags = list(dict.fromkeys([*mode.flags, *options.get("flags", [])]))
    round_trip = options.get("round_trip", ctx.workflow.round_trip)
    expect = options.get("expect", "success")
    concurrency = int(options.get("concurrency", 1))
    pairs = [(ctx.hosts.source, ctx.hosts.destination)]
    if round_trip:
        pairs.append((ctx.hosts.destination, ctx.hosts.source))
    domains = ctx.state.get("domains") or [ctx.state.get("domain")]
    moving = list(enumerate(domains, start=1))  # (guest number, domain) still to move
    legs, failures = [], []
    for batch, (source, destination) in enumerate(pairs, start=1):
        if batch > 1 and options.get("settle_s"):
            time.sleep(options["settle_s"])
        jobs = []
        for guest, domain in moving:
            leg = ctx.new_leg(
                source, destination, mode.name, flags, domain=domain if len(domains) > 1 else None, guest=guest, batch=batch, concurrency=concurrency
            )
            jobs.append((leg, lambda leg=leg: ctx.backend.migrate(ctx, leg, mode, options)))
        errors = ctx.run_legs(jobs, concurrency)
        legs += [_leg_summary(leg) for leg, _ in jobs]
        failures += [(leg, errors[leg.number]) for leg, _ in jobs if errors[leg.number] is not None]
        # the domain did not move where a leg failed: no way back to take for it
        moving = [(guest, domain) for (guest, domain), (leg, _) in zip(moving, jobs, strict=True) if errors[leg.number] is None]
        if not moving:
            break
    if failures and expect == "success":
        leg, error = failures[0]
        if len(domains) == 1 and isinstance(error, StepError):
            raise error
        message = str(error) if isinstance(error, StepError) else f"{type(error).__name__}: {error}"
        more = f" (and {len(failures) - 1} more failed legs)" if len(failures) > 1 else ""
        raise StepError(f"{message}{more}" if len(domains) == 1 else f"leg {leg.number} (guest {leg.guest}): {message}{more}")
    if expect == "failure" and all(leg["status"] == LegStatus.COMPLETED for leg in legs):
        raise StepError(f"mode {mode.name!r} migrated successfully, but the step expects failure (expect = 'failure')")
    return {"mode": mode.name, "flags": flags, "concurrency": concurrency, "legs": legs}


def _leg_summary(leg) -> dict:
    return {"leg": leg.number, "guest": leg.guest, "batch": leg.batch, "status": leg.status, "wall_ms": leg.wall_ms, "error": leg.error}


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


#: migrate-step flag -> the QEMU capability it switches on (both backends)
FLAG_CAPABILITY = {"compressed": "xbzrle", "auto-converge": "auto-converge", "parallel": "multifd", "postcopy": "postcopy-ram"}
#: QMP parameter -> the capability without which it is refused (libvirt refuses the
#: migration; QEMU accepts it and it does nothing)
PARAMETER_NEEDS = {
    "cpu-throttle-initial": "auto-converge",
    "cpu-throttle-increment": "auto-converge",
    "cpu-throttle-tailslow": "auto-converge",
    "max-cpu-throttle": "auto-converge",
    "multifd-channels": "multifd",
    "multifd-compression": "multifd",
    "multifd-zlib-level": "multifd",
    "multifd-zstd-level": "multifd",
    "xbzrle-cache-size": "xbzrle",
    "max-postcopy-bandwidth": "postcopy-ram",
}
#: capabilities and parameters QEMU removed, with what replaces them
REMOVED = {
    "compress": "QEMU deprecated the compress capability in 8.2 and removed it in 9.1: use multifd with the multifd-compression parameter (zlib or zstd)",
    "compress-level": "QEMU removed compress-level with the compress capability in 9.1: use multifd-compression",
    "compress-threads": "QEMU removed compress-threads with the compress capability in 9.1: use multifd-compression",
    "decompress-threads": "QEMU removed decompress-threads with the compress capability in 9.1: use multifd-compression",
}


def _capability_issues(scenario, flags_of_migrate: set[str]) -> list:
    """Tuning parameters without their capability; removed capabilities and parameters."""
    issues = []
    caps: dict = {}
    for use in scenario.steps:
        if use.name == "set-capabilities":
            caps.update(use.options.get("capabilities", {}))
    on = {c for c, v in caps.items() if v} | {FLAG_CAPABILITY[f] for f in flags_of_migrate if f in FLAG_CAPABILITY}
    for use in scenario.steps:
        if use.name != "set-capabilities":
            continue
        path = f"steps[{use.index}]"
        for cap in use.options.get("capabilities", {}):
            if cap in REMOVED:
                issues.append((f"{path}.capabilities.{cap}", REMOVED[cap]))
        for name in use.options.get("parameters", {}):
            if name in REMOVED:
                issues.append((f"{path}.parameters.{name}", REMOVED[name]))
            elif name in PARAMETER_NEEDS and PARAMETER_NEEDS[name] not in on:
                need = PARAMETER_NEEDS[name]
                flag = next(f for f, c in FLAG_CAPABILITY.items() if c == need)
                issues.append(
                    (
                        f"{path}.parameters.{name}",
                        f"{name} tunes {need}, which is off in this scenario: switch it on (capabilities {need} = true, or the migrate flag {flag!r}) or remove {name}",
                    )
                )
    return issues


def _mode_flag_issues(plugins, mode, path: str) -> list:
    """A plugin's mode with a flag its backend does not know (a typo in a ModeSpec)."""
    backend = plugins.backends.get(mode.backend)
    known = getattr(backend, "flags", ())
    if not known:
        return []
    owner = next((i.name for i in plugins.infos if mode.name in i.modes), "?")
    return [
        (
            f"{path}.mode",
            (
                f"mode {mode.name!r} (plugin {owner!r}) sets the flag {flag!r}, which the {mode.backend!r} backend does not know"
                f"{did_you_mean(flag, known)}; known flags: {', '.join(known)}"
            ),
        )
        for flag in mode.flags
        if flag not in known
    ]


def validate_scenario(workflow, scenario, plugins) -> list:
    """Combinations that cannot work, found before anything runs."""
    issues = []
    caps: dict = {}
    for use in scenario.steps:
        if use.name == "set-capabilities":
            caps.update({k: v for k, v in use.options.get("capabilities", {}).items() if v})
    migrate_flags: set[str] = set()
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
            known = sorted(m for m, spec in plugins.modes.items() if spec.backend == workflow.backend)
            issues.append(
                (
                    f"{path}.mode",
                    f"no plugin provides the migration mode {name!r} for the {workflow.backend!r} backend ({did_you_mean_lead(name, known)}known: {', '.join(known)})",
                )
            )
            continue
        if mode.backend != workflow.backend:
            issues.append((f"{path}.mode", f"mode {name!r} belongs to the {mode.backend!r} backend; this workflow uses {workflow.backend!r}"))
        issues.extend(_mode_flag_issues(plugins, mode, path))
        migrate_flags |= set(use.options.get("flags", [])) | set(mode.flags)
        chosen = set(use.options.get("flags", [])) | set(mode.flags) | {f"capability:{c}" for c in caps}
        for item, reason in mode.incompatible.items():
            if item in chosen:
                issues.append((f"{path}.mode", f"mode {name!r} cannot be combined with {item.removeprefix('capability:')}: {reason}"))
        flags = set(use.options.get("flags", []))
        timeout = use.options.get("timeout") or {}
        if timeout.get("action") == "postcopy" and "postcopy" not in flags and not caps.get("postcopy-ram"):
            issues.append((f"{path}.timeout.action", "action 'postcopy' needs the 'postcopy' flag (or the postcopy-ram capability)"))
    issues.extend(_capability_issues(scenario, migrate_flags))
    return issues
