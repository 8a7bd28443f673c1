"""Matrix expansion, ``${param}`` substitution and run ordering.

* :func:`combinations`: the cross product of the matrix parameters in the
  order written, minus ``exclude``, plus ``include``, duplicates removed.
* :func:`substitute`: ``"${p}"`` (the whole string) becomes p's typed value;
  ``"...${p}..."`` is interpolated; ``$${`` writes a literal ``${``.
* :func:`order_runs`: interleaved (repetition-major), sequential
  (scenario-major) or shuffled (each repetition round shuffled with
  ``random.Random(seed)``).
* :func:`expand`: all of the above for a :class:`~migflow.workflow.model.Workflow`.
"""

from __future__ import annotations

import itertools
import json
import random
import re
from collections.abc import Sequence
from typing import Any

from .model import PlannedRun, Scenario, StepUse, Workflow

__all__ = [
    "ORDERS",
    "SubstitutionError",
    "combinations",
    "expand",
    "label",
    "new_seed",
    "order_runs",
    "references",
    "substitute",
]

ORDERS = ("interleaved", "sequential", "shuffled")
PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_TOKEN = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")


class SubstitutionError(Exception):
    """A ``${...}`` that cannot be resolved.

    :param path: JSON path (list) of the string holding it, relative to what was substituted.
    :param name: the parameter name (``None`` when the reference itself is malformed).
    """

    def __init__(self, path: list, message: str, name: str | None = None):
        super().__init__(message)
        self.path, self.message, self.name = path, message, name


# -- matrix -------------------------------------------------------------------


def _matches(combo: dict, rule: dict) -> bool:
    return all(k in combo and combo[k] == v and type(combo[k]) is type(v) for k, v in rule.items())


def combinations(params: dict[str, list], exclude: Sequence[dict] = (), include: Sequence[dict] = ()) -> list[dict]:
    """The scenarios' parameter sets, in order.

    :param params: parameter -> non-empty list of values, in the order written.
    :param exclude: each rule drops every combination that has all its keys with those values.
    :param include: each entry is added as one more scenario, after the cross product.
    :returns: a list of dicts; duplicates (same keys, equal values) removed, first kept.
        ``[{}]`` when there is neither a parameter nor an include.
    """
    names = list(params)
    out: list[dict] = []
    if names:
        for values in itertools.product(*(params[n] for n in names)):
            combo = dict(zip(names, values, strict=True))
            if not any(_matches(combo, rule) for rule in exclude):
                out.append(combo)
    elif not include:
        out.append({})
    for entry in include:  # matrix parameters first, in the matrix's order
        out.append({**{n: entry[n] for n in names if n in entry}, **{k: v for k, v in entry.items() if k not in params}})
    unique: list[dict] = []
    seen: set[str] = set()
    for combo in out:
        key = json.dumps(sorted(combo.items()), default=str)
        if key not in seen:
            seen.add(key)
            unique.append(combo)
    return unique


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "+".join(_text(v) for v in value) if value else "none"
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)
    return str(value)


def label(params: dict) -> str:
    """``mode=p2p,bandwidth=1gbit``; ``default`` when there are no parameters.

    Lists are written joined by ``+`` (``caps=xbzrle+multifd``, ``none`` when empty).
    """
    if not params:
        return "default"
    return ",".join(f"{k}={_text(v)}" for k, v in params.items())


# -- substitution -----------------------------------------------------------------


def references(value: Any, path: list | None = None):
    """Yield ``(path, name)`` for every ``${name}`` in strings inside ``value``."""
    path = [] if path is None else path
    if isinstance(value, str):
        for m in _TOKEN.finditer(value):
            if m.group(0) != "$${" and m.group(1) is not None:
                yield path, m.group(1)
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from references(v, path + [k])
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from references(v, path + [i])


def _substitute_str(s: str, params: dict, path: list) -> Any:
    if "$" not in s:
        return s
    whole = re.fullmatch(r"\$\{([^}]*)\}", s)
    if whole:
        return _lookup(whole.group(1), params, path)
    out, pos = [], 0
    for m in _TOKEN.finditer(s):
        out.append(s[pos : m.start()])
        pos = m.end()
        if m.group(0) == "$${":
            out.append("${")
        elif m.group(1) is None:
            raise SubstitutionError(path, f"unterminated '${{' in {s!r} (write '$${{' for a literal '${{')")
        else:
            v = _lookup(m.group(1), params, path)
            if isinstance(v, (list, dict)):
                raise SubstitutionError(
                    path,
                    f"parameter {m.group(1)!r} is a {'list' if isinstance(v, list) else 'table'}: "
                    f'it can only be used as a whole value ("${{{m.group(1)}}}"), not inside {s!r}',
                    m.group(1),
                )
            out.append(_text(v))
    out.append(s[pos:])
    return "".join(out)


def _lookup(name: str, params: dict, path: list) -> Any:
    if not PARAM_NAME.match(name):
        raise SubstitutionError(path, f"'${{{name}}}' is not a parameter reference (names are letters, digits, '_' and '-')")
    if name not in params:
        raise SubstitutionError(path, f"unknown parameter {name!r}", name)
    return params[name]


def substitute(value: Any, params: dict, path: list | None = None) -> Any:
    """A copy of ``value`` with every ``${param}`` resolved (raises :class:`SubstitutionError`)."""
    path = [] if path is None else path
    if isinstance(value, str):
        return _substitute_str(value, params, path)
    if isinstance(value, dict):
        return {k: substitute(v, params, path + [k]) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, params, path + [i]) for i, v in enumerate(value)]
    return value


# -- ordering -----------------------------------------------------------------------


def new_seed() -> int:
    """A fresh seed for ``order = "shuffled"`` (recorded in ``Workflow.seed``)."""
    return random.SystemRandom().randrange(2**32)


def order_runs(scenarios: list[Scenario], repetitions: int, order: str = "interleaved", seed: int | None = None) -> list[PlannedRun]:
    """Every scenario x repetition in execution order.

    * ``interleaved``: A B C A B C (repetition-major), so drift on the hosts
      spreads over all scenarios instead of masquerading as a difference;
    * ``sequential``: A A B B C C (scenario-major);
    * ``shuffled``: like interleaved, each round shuffled by ``random.Random(seed)``.
    """
    if order not in ORDERS:
        raise ValueError(f"unknown order {order!r}")
    pairs: list[tuple[Scenario, int]] = []
    if order == "sequential":
        pairs = [(sc, rep) for sc in scenarios for rep in range(1, repetitions + 1)]
    else:
        rng = random.Random(seed) if order == "shuffled" else None
        for rep in range(1, repetitions + 1):
            round_ = list(scenarios)
            if rng is not None:
                rng.shuffle(round_)
            pairs.extend((sc, rep) for sc in round_)
    return [PlannedRun(index=i, scenario=sc, repetition=rep) for i, (sc, rep) in enumerate(pairs)]


def make_scenario(workflow: Workflow, params: dict) -> Scenario:
    """One scenario: ``[domain]`` and every step's options with ``params`` substituted.

    Raises :class:`SubstitutionError` with a path from the workflow's root.
    """
    domain = substitute(workflow.domain, params, ["domain"])
    steps = [StepUse(s.name, substitute(s.options, params, ["steps", s.index]), s.index) for s in workflow.steps]
    return Scenario(label=label(params), params=dict(params), steps=steps, domain=domain)


def expand(workflow: Workflow) -> tuple[list[Scenario], list[PlannedRun]]:
    """The scenarios and the ordered plan of ``workflow``.

    With ``order = "shuffled"`` and no seed, a seed is chosen and stored in
    ``workflow.seed`` so the order can be reproduced.
    """
    combos = combinations(workflow.matrix, workflow.exclude, workflow.include)
    scenarios = [make_scenario(workflow, c) for c in combos]
    if workflow.order == "shuffled" and workflow.seed is None:
        workflow.seed = new_seed()
    plan = order_runs(scenarios, workflow.repetitions, workflow.order, workflow.seed)
    return scenarios, plan
