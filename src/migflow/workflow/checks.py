"""The checks of a parsed workflow: names against the plugins, the matrix, the
plan's size, every scenario's options against their schemas, and the plugins'
own ``migflow_validate_scenario``."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

from . import plan as _plan
from .issues import Issues, MissingPlugin, PerScenario
from .messages import Validator, got, is_integer, make_validator, non_finite, quote_list, translate
from .model import Workflow
from .paths import parse_path
from .suggest import did_you_mean_lead

__all__ = [
    "MAX_REPETITIONS",
    "MAX_RUNS",
    "MAX_SCENARIOS",
    "check_adaptive",
    "check_finite",
    "check_matrix",
    "check_names",
    "plan_size_ok",
    "plugin_checks",
    "scenario_checks",
]

MAX_REPETITIONS = 1000
#: bounds on the expanded plan: a matrix of 7 parameters x 10 values is 10^7
#: scenarios, which would take minutes and gigabytes just to validate
MAX_SCENARIOS = 10_000
MAX_RUNS = 100_000


def check_finite(value: Any, path: list, issues: Issues) -> None:
    """TOML allows ``nan`` and ``inf``; no workflow value means them, and JSON Schema's
    bounds do not catch NaN (every comparison with it is false)."""
    if non_finite(value):
        issues.add(path, f"expected a finite number, got {got(value)} (TOML's nan and inf are not accepted in a workflow)")
    elif isinstance(value, dict):
        for k, v in value.items():
            check_finite(v, path + [k], issues)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            check_finite(v, path + [i], issues)


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def check_names(doc: dict, plugins, issues: Issues) -> None:
    requires = doc.get("requires")
    if isinstance(requires, list):
        have = set()
        for info in getattr(plugins, "infos", []):
            have.add(_norm(info.name))
            if info.distribution:
                have.add(_norm(info.distribution))
        for i, name in enumerate(requires):
            if isinstance(name, str) and name and _norm(name) not in have:
                issues.add(["requires", i], f"workflow needs plugin {name!r}, which is not installed (pip install {name})", kind=MissingPlugin)

    backend = doc.get("backend", "libvirt")
    if isinstance(backend, str) and backend and backend not in plugins.backends:
        issues.add(["backend"] if "backend" in doc else [], _unknown("backend", backend, plugins.backends))

    steps = doc.get("steps")
    if isinstance(steps, list):
        for i, step in enumerate(steps):
            use = step.get("use") if isinstance(step, dict) else None
            if isinstance(use, str) and use and use not in plugins.steps:
                issues.add(["steps", i, "use"], _unknown("step", use, plugins.steps))


def _unknown(kind: str, name: str, known: Iterable[str]) -> str:
    names = sorted(known)
    listed = ", ".join(names) if names else f"none: is the plugin providing the {kind} installed? (migflow plugins)"
    return f"no plugin provides the {kind} {name!r} ({did_you_mean_lead(name, names)}known: {listed})"


def check_matrix(matrix: dict, issues: Issues) -> tuple[dict, list, list]:
    params = {k: v for k, v in matrix.items() if k not in ("exclude", "include")}
    exclude = list(matrix.get("exclude") or [])
    include = list(matrix.get("include") or [])
    for i, rule in enumerate(exclude):
        for k, v in rule.items():
            if k not in params:
                issues.add(
                    ["matrix", "exclude", i, k],
                    f"exclude names {k!r}, which is not a matrix parameter ({did_you_mean_lead(k, params)}parameters: {', '.join(params) or 'none'})",
                )
            elif not any(v == x and type(v) is type(x) for x in params[k]):
                dym = did_you_mean_lead(v, [str(x) for x in params[k]]) if isinstance(v, str) else ""
                issues.add(
                    ["matrix", "exclude", i, k],
                    f"{got(v)} is not a value of {k!r}, so this rule excludes nothing ({dym}values: {quote_list(params[k])})",
                )
    if not params and not include:
        issues.add(["matrix"], 'the matrix names no parameter: add one (mode = ["p2p", "managed-direct"]) or an include list')
    return params, exclude, include


def check_adaptive(wf: Workflow, issues: Issues) -> None:
    """``[adaptive]`` needs room above the minimum: ``max_repetitions`` > ``repetitions``."""
    rule = wf.adaptive
    if not rule or not is_integer(None, rule.get("max_repetitions")) or not is_integer(None, wf.repetitions):
        return
    if rule["max_repetitions"] <= wf.repetitions:
        issues.add(
            ["adaptive", "max_repetitions"],
            f"max_repetitions ({rule['max_repetitions']}) must exceed repetitions ({wf.repetitions}), the minimum each scenario runs before the rule applies",
        )


def plan_size_ok(wf: Workflow, issues: Issues, *, reps_option: bool = False) -> bool:
    """At most MAX_SCENARIOS scenarios and MAX_RUNS runs, counted before expanding anything."""
    sizes = [len(v) if isinstance(v, list) else 1 for v in wf.matrix.values()]
    n = math.prod(sizes) + len(wf.include) if wf.matrix or wf.include else 1  # an upper bound: exclude and duplicates aside
    if n > MAX_SCENARIOS:
        shape = " x ".join(f"{len(v)} {k}" for k, v in wf.matrix.items() if isinstance(v, list))
        issues.add(["matrix"], f"the matrix makes up to {n:,} scenarios ({shape}); at most {MAX_SCENARIOS:,} are allowed: split it into several workflows")
        return False
    reps = wf.repetitions if is_integer(None, wf.repetitions) and 1 <= wf.repetitions <= MAX_REPETITIONS else 1  # else reported already
    if wf.adaptive and is_integer(None, wf.adaptive.get("max_repetitions")):
        reps = max(reps, wf.adaptive["max_repetitions"])  # adaptive: the most it can run
    if n * reps > MAX_RUNS:
        issues.add(
            ["repetitions"],
            f"{n:,} scenario(s) x {reps:,} repetitions = {n * reps:,} runs; at most {MAX_RUNS:,} are allowed: fewer repetitions or a smaller matrix",
            shown_path="--repetitions" if reps_option else None,
        )
        return False
    return True


def scenario_checks(wf: Workflow, doc: dict, plugins, issues: Issues, core_validator) -> list:
    """Substitute and check every scenario; returns the combinations."""
    combos = _plan.combinations(wf.matrix, wf.exclude, wf.include)
    if not combos:
        issues.add(["matrix", "exclude"] if wf.exclude else ["matrix"], "every combination of the matrix is excluded: no scenario is left")
        return []
    all_params = list(dict.fromkeys(k for c in combos for k in c))
    check_domain = isinstance(doc.get("domain"), dict) and not issues.touches("domain")
    sources: list[tuple[list, Any]] = []
    if check_domain:
        sources.append((["domain"], wf.domain))
    good_steps = [s for s in wf.steps if s.name in plugins.steps]
    for s in wf.steps:
        sources.append((["steps", s.index], s.options))

    # A reference to a parameter no scenario has: one issue at its path.
    unknown: set[tuple] = set()
    for base, value in sources:
        for path, name in _plan.references(value, list(base)):
            if _plan.PARAM_NAME.match(name) and name not in all_params:
                unknown.add(tuple(path))
                issues.add(
                    path,
                    f"unknown parameter {name!r} in '${{{name}}}' ({did_you_mean_lead(name, all_params)}parameters: "
                    f"{', '.join(all_params) or 'none, the workflow has no [matrix]'}; write '$${{' for a literal '${{')",
                )

    per = PerScenario(len(combos))
    validators_: dict[str, Any] = {}  # step -> validator, or False when its schema is broken
    for params in combos:
        lab = _plan.label(params)
        if check_domain:
            try:
                domain = _plan.substitute(wf.domain, params, ["domain"])
            except _plan.SubstitutionError as exc:
                if tuple(exc.path) not in unknown:
                    per.add(lab, exc.path, exc.message)
            else:
                probe = dict(doc, domain=domain)
                for err in core_validator.iter_errors(probe):
                    if list(err.absolute_path)[:1] == ["domain"]:
                        for path, msg in translate(err):
                            per.add(lab, path, msg)
        for s in good_steps:
            try:
                options = _plan.substitute(s.options, params, ["steps", s.index])
            except _plan.SubstitutionError as exc:
                if tuple(exc.path) not in unknown:
                    per.add(lab, exc.path, exc.message)
                continue
            v: Any = validators_.get(s.name)
            if v is None:
                schema = plugins.steps[s.name].options_schema
                try:
                    Validator.check_schema(schema)
                    v = validators_[s.name] = make_validator(schema)
                except Exception as exc:  # a plugin bug, not the user's
                    issues.add(
                        ["steps", s.index, "use"], f"the step {s.name!r} has an invalid options schema (a bug in its plugin): {getattr(exc, 'message', exc)}"
                    )
                    v = validators_[s.name] = False
            if v is False:
                continue
            for err in v.iter_errors(options):
                for path, msg in translate(err, prefix=["steps", s.index], noun="option", owner=f" of step {s.name!r}"):
                    per.add(lab, path, msg)
    per.flush(issues)
    return combos


def plugin_checks(wf: Workflow, plugins, issues: Issues) -> None:
    hook = getattr(plugins.hook, "migflow_validate_scenario", None)
    if hook is None:
        return
    per = PerScenario(len(wf.scenarios))
    for sc in wf.scenarios:
        for impl in hook.get_hookimpls():
            args = {"workflow": wf, "scenario": sc, "plugins": plugins}
            try:
                found = impl.function(*(args[a] for a in impl.argnames)) or []
                found = list(found)
            except Exception as exc:  # a plugin bug must not become a traceback
                issues.add([], f"plugin {impl.plugin_name!r} failed checking scenario {sc.label}: {type(exc).__name__}: {exc}")
                continue
            for item in found:
                try:
                    path, message = item
                except (TypeError, ValueError):
                    path, message = [], str(item)
                per.add(sc.label, parse_path(path), str(message))
    if not wf.matrix and not wf.include:
        per.n = len(wf.scenarios)  # no matrix: no label
    per.flush(issues)
