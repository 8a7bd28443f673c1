"""Load a workflow file: parse, validate everything, expand the matrix.

Validation reports every problem at once, each as
``file:line: json.path: what was expected``:

1. the file is read and parsed with :mod:`tomllib` (a syntax error is one issue);
2. the document is checked against the core schema
   (``schemas/workflow.schema.json``, :func:`migflow.workflow.schema.core_schema`);
3. names are checked against the plugins: ``requires``, ``backend``, each
   step's ``use``, with did-you-mean suggestions;
4. the matrix is expanded; every ``${param}`` must name a parameter;
5. for every scenario, ``[domain]`` and each step's resolved options are
   checked against their schemas (a problem found in every scenario is
   reported once; one that depends on the parameters names the scenario);
6. when all of that passed, each plugin's ``migflow_validate_scenario`` runs
   for every scenario.

The engine uses :func:`load_workflow`; ``migflow validate`` uses
:func:`check_file`.
"""

from __future__ import annotations

import copy
import difflib
import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib  # type: ignore[no-redef]

from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError, best_match

from ..errors import PluginError, ValidationIssue, WorkflowError
from . import plan as _plan
from .locate import Locator
from .model import StepUse, Workflow
from .schema import core_schema

__all__ = ["check_file", "check_text", "format_path", "load_workflow", "parse_path", "validate_file"]

MAX_REPETITIONS = 1000
#: bounds on the expanded plan: a matrix of 7 parameters x 10 values is 10^7
#: scenarios, which would take minutes and gigabytes just to validate
MAX_SCENARIOS = 10_000
MAX_RUNS = 100_000
CREATE_DEFAULTS = {"name": "migflow-guest", "memory_mib": 256, "vcpus": 1}


# -- jsonschema with TOML's notion of integers ---------------------------------------


def _is_integer(checker, instance) -> bool:  # 2.0 is a float in TOML, and true is no integer
    return isinstance(instance, int) and not isinstance(instance, bool)


Validator = validators.extend(Draft202012Validator, type_checker=Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_integer))


def _validator(schema: dict):
    return Validator(schema)


# -- paths -----------------------------------------------------------------------------

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def format_path(path: Iterable) -> str:
    """``["steps", 2, "mode"]`` -> ``steps[2].mode``; ``(top level)`` for the document."""
    out = ""
    for p in path:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            key = p if _BARE_KEY.match(str(p)) else '"' + str(p).replace('"', '\\"') + '"'
            out += ("." if out else "") + key
    return out or "(top level)"


def parse_path(path: Any) -> list:
    """A path as plugins give it (``"steps[2].mode"`` or a list) -> a list of keys and indices."""
    if isinstance(path, (list, tuple)):
        return list(path)
    out: list = []
    for m in re.finditer(r'"((?:[^"\\]|\\.)*)"|\[(\d+)\]|([^.\[\]"]+)', str(path or "")):
        if m.group(2) is not None:
            out.append(int(m.group(2)))
        else:
            out.append(m.group(1) if m.group(1) is not None else m.group(3))
    return out


# -- messages --------------------------------------------------------------------------

_TYPE_WORDS = {
    "integer": "an integer",
    "number": "a number",
    "string": "a string",
    "boolean": "true or false",
    "array": "a list",
    "object": "a table",
    "null": "nothing",
}
_PATTERN_WORDS = {
    "^[a-z0-9_-]+$": "lower-case letters, digits, '_' or '-'",
    "^[A-Za-z_][A-Za-z0-9_-]*$": "letters, digits, '_' or '-', not starting with a digit or '-'",
    "^[A-Za-z][A-Za-z0-9+.-]*:": "a libvirt URI such as qemu+tcp://HOST/system",
}


def _got(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return f"a list of {len(value)}" if value else "an empty list"
    if isinstance(value, dict):
        return "a table"
    return f"{type(value).__name__} {value}"  # TOML dates and times


def _quote_list(values: Iterable, limit: int = 12) -> str:
    values = list(values)
    text = ", ".join(repr(v) if isinstance(v, str) else _got(v) for v in values[:limit])
    return text + (", ..." if len(values) > limit else "")


def did_you_mean(word: Any, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` or an empty string."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _dym(word: Any, choices: Iterable[str]) -> str:
    """``did you mean 'x'? `` (to open a parenthesis) or an empty string."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}? " if close else ""


def _expected(schema: dict) -> str:
    t = schema.get("type")
    types = t if isinstance(t, list) else [t] if t else []
    words = " or ".join(_TYPE_WORDS.get(x, x) for x in types) or "a value"
    lo, hi = schema.get("minimum"), schema.get("maximum")
    if lo is not None and hi is not None:
        return f"{words} from {lo} to {hi}"
    if lo is not None:
        return f"{words} ≥ {lo}"
    if hi is not None:
        return f"{words} ≤ {hi}"
    if "enum" in schema:
        return "one of " + _quote_list(schema["enum"])
    return words


def _is_param_branch(schema: Any) -> bool:
    return isinstance(schema, dict) and str(schema.get("$ref", "")).endswith("#/$defs/parameter")


def _known_keys(schema: dict) -> list[str]:
    return [k for k in (schema.get("properties") or {}) if k != "use"]


def translate(error: ValidationError, *, prefix: list | None = None, noun: str = "key", owner: str = "") -> list[tuple[list, str]]:
    """One jsonschema error -> ``[(path, message)]`` saying what is expected.

    :param prefix: prepended to the error's path (for a step's options).
    :param noun: what an unknown property is called (``key``, ``option``).
    :param owner: appended after the unknown name (`` of step 'migrate'``).
    """
    prefix = list(prefix or [])
    path = prefix + list(error.absolute_path)
    kw, schema, inst = error.validator, error.schema if isinstance(error.schema, dict) else {}, error.instance
    if _non_finite(inst):
        return []  # already reported once by _check_finite, wherever it is used

    if kw in ("anyOf", "oneOf"):
        branches = error.validator_value
        if all(isinstance(b, dict) and list(b) == ["required"] and len(b["required"]) == 1 for b in branches):
            keys = [b["required"][0] for b in branches]
            present = [k for k in keys if isinstance(inst, dict) and k in inst]
            alternatives = ", ".join(keys[:-1]) + " or " + keys[-1]
            if not present:
                return [(path, f"expected one of {alternatives}; got none of them")]
            if len(present) > 1:
                return [(path, f"expected exactly one of {alternatives}; got {' and '.join(present)}")]
        context = [e for e in (error.context or []) if not _is_param_branch(branches[e.relative_schema_path[0]])]
        if context:
            return translate(best_match(context), prefix=prefix, noun=noun, owner=owner)
        return [(path, error.message)]

    if kw in ("additionalProperties", "unevaluatedProperties") and isinstance(inst, dict):
        known = _known_keys(schema)
        patterns = list((schema.get("patternProperties") or {}).keys())
        extras = [k for k in inst if k not in (schema.get("properties") or {}) and not any(re.search(p, k) for p in patterns)]
        if not extras:
            return [(path, error.message)]
        out = []
        for k in extras:
            hint = did_you_mean(k, known)
            if not hint:
                hint = f" (expected one of: {', '.join(known)})" if known else " (none are allowed here)"
            out.append((path + [k], f"unknown {noun} {k!r}{owner}{hint}"))
        return out

    if "propertyNames" in error.relative_schema_path or "propertyNames" in error.schema_path:
        pattern = schema.get("pattern")
        words = _PATTERN_WORDS.get(pattern, f"a name matching {pattern}") if pattern else "a valid name"
        return [(path + [inst], f"{inst!r} is not a valid name here: expected {words}")]

    if kw == "required":
        missing = [k for k in error.validator_value if isinstance(inst, dict) and k not in inst]
        out = []
        for k in missing:
            title = ((schema.get("properties") or {}).get(k) or {}).get("title")
            out.append((path, f"missing required key {k!r}" + (f" ({title})" if title else "")))
        return out or [(path, error.message)]
    if kw == "type":
        return [(path, f"expected {_expected(schema)}, got {_got(inst)}")]
    if kw in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        sign = {"minimum": "≥", "maximum": "≤", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}[kw]
        t = schema.get("type")
        words = _TYPE_WORDS.get(t, "a number") if isinstance(t, str) else "a number"
        return [(path, f"expected {words} {sign} {error.validator_value}, got {_got(inst)}")]
    if kw == "enum":
        return [(path, f"{_got(inst)} is not one of {_quote_list(error.validator_value)}{did_you_mean(inst, map(str, error.validator_value))}")]
    if kw == "const":
        return [(path, f"expected {_got(error.validator_value)}, got {_got(inst)}")]
    if kw == "pattern":
        words = _PATTERN_WORDS.get(error.validator_value, f"a string matching {error.validator_value}")
        return [(path, f"expected {words}, got {_got(inst)}")]
    if kw == "minItems":
        n = error.validator_value
        return [(path, "expected a non-empty list" if n == 1 else f"expected at least {n} items, got {len(inst)}")]
    if kw == "maxItems":
        return [(path, f"expected at most {error.validator_value} items, got {len(inst)}")]
    if kw == "minLength":
        n = error.validator_value
        return [(path, "expected a non-empty string" if n == 1 else f"expected at least {n} characters, got {_got(inst)}")]
    if kw == "maxLength":
        return [(path, f"expected at most {error.validator_value} characters, got {len(inst)}")]
    if kw == "minProperties":
        n = error.validator_value
        return [(path, "expected a non-empty table" if n == 1 else f"expected at least {n} keys")]
    if kw == "uniqueItems":
        return [(path, "expected no duplicate items")]
    return [(path, error.message)]


# -- collecting issues ------------------------------------------------------------------


class MissingPlugin(ValidationIssue):
    """An issue saying that a plugin the workflow ``requires`` is not installed
    (:func:`load_workflow` then raises a :class:`WorkflowError` with exit status 3)."""

    __slots__ = ()


class _Issues:
    """Issues of one file, deduplicated, in the order found."""

    def __init__(self, file: str, locator: Locator | None = None):
        self.file, self.locator = file, locator
        self.items: list[ValidationIssue] = []
        self._seen: set[tuple] = set()
        self.paths: list[list] = []

    def add(self, path: list, message: str, *, line: int | None = None, shown_path: str | None = None, kind: type = ValidationIssue) -> None:
        key = (tuple(path), shown_path, message)
        if key in self._seen:
            return
        self._seen.add(key)
        self.paths.append(list(path))
        if line is None and self.locator is not None:
            line = self.locator.line(path)
        self.items.append(kind(self.file, line, shown_path or format_path(path), message))

    def touches(self, *top: str) -> bool:
        """Whether any issue so far is under one of these top-level keys."""
        return any(p and p[0] in top for p in self.paths)

    def __bool__(self) -> bool:
        return bool(self.items)


class _PerScenario:
    """Issues found per scenario: reported once when every scenario has them, else with the label."""

    def __init__(self, n_scenarios: int):
        self.n = n_scenarios
        self.found: dict[tuple, list[str]] = {}

    def add(self, label: str, path: list, message: str) -> None:
        labels = self.found.setdefault((tuple(path), message), [])
        if label not in labels:
            labels.append(label)

    def flush(self, issues: _Issues) -> None:
        for (path, message), labels in self.found.items():
            if len(labels) == self.n and self.n > 0:
                issues.add(list(path), message)
            else:
                for lab in labels:
                    issues.add(list(path), f"in scenario {lab}: {message}")


# -- reading ----------------------------------------------------------------------------


def _read(file: str) -> tuple[str | None, str | None]:
    """(text, None) or (None, why it cannot be read)."""
    p = Path(file)
    try:
        if p.exists() and not p.is_dir() and not p.is_file():  # /dev/zero, a FIFO: never read
            return None, "is not a regular file"
        data = p.read_bytes()
    except FileNotFoundError:
        return None, "no such file"
    except IsADirectoryError:
        return None, "is a directory, not a workflow file"
    except PermissionError:
        return None, "permission denied"
    except OSError as exc:
        return None, f"cannot be read: {exc.strerror or exc}"
    if b"\x00" in data:
        return None, "is not a text file (it contains NUL bytes): a workflow is a TOML file"
    try:
        return data.decode("utf-8-sig"), None
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        return None, f"is not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line}): a workflow is a TOML file"


def _parse(text: str, issues: _Issues) -> dict | None:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = re.search(r"\(at line (\d+), column (\d+)\)", msg)
        line = int(m.group(1)) if m else None
        what = re.sub(r"\s*\(at (line \d+, column \d+|end of document)\)", "", msg)
        where = f" at column {m.group(2)}" if m else (" at the end of the file" if "end of document" in msg else "")
        issues.add([], f"TOML syntax error: {what[:1].lower() + what[1:]}{where}", line=line, shown_path="(syntax)")
    except Exception as exc:  # RecursionError on absurd nesting, and the like
        issues.add([], f"cannot be parsed as TOML: {type(exc).__name__}: {exc}", shown_path="(syntax)")
    return None


def _non_finite(value: Any) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def _check_finite(value: Any, path: list, issues: _Issues) -> None:
    """TOML allows ``nan`` and ``inf``; no workflow value means them, and JSON Schema's
    bounds do not catch NaN (every comparison with it is false)."""
    if _non_finite(value):
        issues.add(path, f"expected a finite number, got {_got(value)} (TOML's nan and inf are not accepted in a workflow)")
    elif isinstance(value, dict):
        for k, v in value.items():
            _check_finite(v, path + [k], issues)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_finite(v, path + [i], issues)


# -- checks against the plugins ------------------------------------------------------------


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _check_names(doc: dict, plugins, issues: _Issues) -> None:
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
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}? " if close else ""
    listed = ", ".join(known) if known else f"none: is the plugin providing the {kind} installed? (migflow plugins)"
    return f"no plugin provides the {kind} {name!r} ({hint}known: {listed})"


def _check_matrix(matrix: dict, issues: _Issues) -> tuple[dict, list, list]:
    params = {k: v for k, v in matrix.items() if k not in ("exclude", "include")}
    exclude = list(matrix.get("exclude") or [])
    include = list(matrix.get("include") or [])
    for i, rule in enumerate(exclude):
        for k, v in rule.items():
            if k not in params:
                issues.add(
                    ["matrix", "exclude", i, k],
                    f"exclude names {k!r}, which is not a matrix parameter ({_dym(k, params)}parameters: {', '.join(params) or 'none'})",
                )
            elif not any(v == x and type(v) is type(x) for x in params[k]):
                dym = _dym(v, [str(x) for x in params[k]]) if isinstance(v, str) else ""
                issues.add(
                    ["matrix", "exclude", i, k],
                    f"{_got(v)} is not a value of {k!r}, so this rule excludes nothing ({dym}values: {_quote_list(params[k])})",
                )
    if not params and not include:
        issues.add(["matrix"], 'the matrix names no parameter: add one (mode = ["p2p", "managed-direct"]) or an include list')
    return params, exclude, include


def _plan_size_ok(wf: Workflow, issues: _Issues, *, reps_option: bool = False) -> bool:
    """At most MAX_SCENARIOS scenarios and MAX_RUNS runs, counted before expanding anything."""
    sizes = [len(v) if isinstance(v, list) else 1 for v in wf.matrix.values()]
    n = math.prod(sizes) + len(wf.include) if wf.matrix or wf.include else 1  # an upper bound: exclude and duplicates aside
    if n > MAX_SCENARIOS:
        shape = " x ".join(f"{len(v)} {k}" for k, v in wf.matrix.items() if isinstance(v, list))
        issues.add(["matrix"], f"the matrix makes up to {n:,} scenarios ({shape}); at most {MAX_SCENARIOS:,} are allowed: split it into several workflows")
        return False
    reps = wf.repetitions if _is_integer(None, wf.repetitions) and 1 <= wf.repetitions <= MAX_REPETITIONS else 1  # else reported already
    if n * reps > MAX_RUNS:
        issues.add(
            ["repetitions"],
            f"{n:,} scenario(s) x {reps:,} repetitions = {n * reps:,} runs; at most {MAX_RUNS:,} are allowed: fewer repetitions or a smaller matrix",
            shown_path="--repetitions" if reps_option else None,
        )
        return False
    return True


# -- the workflow object -------------------------------------------------------------------


def _workflow(doc: dict, file: str, *, source, destination, results, repetitions, matrix) -> Workflow:
    hosts = doc.get("hosts") if isinstance(doc.get("hosts"), dict) else {}
    domain = copy.deepcopy(doc["domain"]) if isinstance(doc.get("domain"), dict) else {}
    if isinstance(domain.get("create"), dict):
        create = domain["create"]
        for k, v in CREATE_DEFAULTS.items():
            create.setdefault(k, v)
        create.setdefault("workload", {})
    steps = []
    for i, s in enumerate(doc["steps"] if isinstance(doc.get("steps"), list) else []):  # steps = 1: a schema issue
        if isinstance(s, dict):
            steps.append(StepUse(name=str(s.get("use", "")), options={k: v for k, v in s.items() if k != "use"}, index=i))
    params, exclude, include = matrix
    return Workflow(
        name=doc.get("name", ""),
        description=doc.get("description", ""),
        file=str(file),
        backend=doc.get("backend", "libvirt"),
        source=source or hosts.get("source"),
        destination=destination or hosts.get("destination"),
        domain=domain,
        steps=steps,
        repetitions=repetitions if repetitions is not None else doc.get("repetitions", 1),
        round_trip=doc.get("round_trip", False),
        fail_fast=doc.get("fail_fast", False),
        results=results or doc.get("results", "results.duckdb"),
        matrix=params,
        exclude=exclude,
        include=include,
        order=doc.get("order", "interleaved"),
        seed=doc.get("seed"),
        raw=doc,
    )


def _scenario_checks(wf: Workflow, doc: dict, plugins, issues: _Issues, core_validator) -> list:
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
                    f"unknown parameter {name!r} in '${{{name}}}' ({_dym(name, all_params)}parameters: "
                    f"{', '.join(all_params) or 'none, the workflow has no [matrix]'}; write '$${{' for a literal '${{')",
                )

    per = _PerScenario(len(combos))
    validators_: dict[str, Any] = {}
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
            v = validators_.get(s.name)
            if v is None:
                schema = plugins.steps[s.name].options_schema
                try:
                    Validator.check_schema(schema)
                    v = validators_[s.name] = _validator(schema)
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


def _plugin_checks(wf: Workflow, plugins, issues: _Issues) -> None:
    hook = getattr(plugins.hook, "migflow_validate_scenario", None)
    if hook is None:
        return
    per = _PerScenario(len(wf.scenarios))
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


# -- the API ----------------------------------------------------------------------------------


def check_text(
    text: str,
    file: str,
    plugins,
    *,
    source: str | None = None,
    destination: str | None = None,
    results: str | None = None,
    repetitions: int | None = None,
) -> tuple[Workflow | None, list[ValidationIssue]]:
    """Validate workflow ``text`` (read from ``file``): ``(workflow, [])`` or ``(None, issues)``."""
    issues = _Issues(str(file))
    doc = _parse(text, issues)
    if doc is None:
        return None, issues.items
    issues.locator = Locator(text)
    if not doc:
        issues.add([], "the file is empty: a workflow needs at least name, [domain] and one [[steps]] (see docs/workflow.md)")
        return None, issues.items

    _check_finite(doc, [], issues)
    core = core_schema()
    core_validator = _validator(core)
    for err in core_validator.iter_errors(doc):
        for path, msg in translate(err):
            issues.add(path, msg)
    _check_names(doc, plugins, issues)
    if repetitions is not None and (not _is_integer(None, repetitions) or not 1 <= repetitions <= MAX_REPETITIONS):
        issues.add(["repetitions"], f"--repetitions: expected an integer from 1 to {MAX_REPETITIONS}, got {_got(repetitions)}", shown_path="--repetitions")

    matrix_ok = not issues.touches("matrix")
    matrix = ({}, [], [])
    if matrix_ok and isinstance(doc.get("matrix"), dict):
        before = len(issues.items)
        matrix = _check_matrix(doc["matrix"], issues)
        matrix_ok = len(issues.items) == before
    structure_ok = isinstance(doc.get("steps"), list) and not issues.touches("order", "seed")
    wf = _workflow(doc, file, source=source, destination=destination, results=results, repetitions=repetitions, matrix=matrix)
    if matrix_ok and structure_ok and _plan_size_ok(wf, issues, reps_option=repetitions is not None):
        _scenario_checks(wf, doc, plugins, issues, core_validator)
    if issues:
        return None, issues.items

    wf.scenarios, wf.plan = _plan.expand(wf)
    _plugin_checks(wf, plugins, issues)
    if issues:
        return None, issues.items
    return wf, []


def check_file(path: str | Path, plugins, **overrides) -> tuple[Workflow | None, list[ValidationIssue]]:
    """Read and validate one file: ``(workflow, [])`` or ``(None, issues)``.  Never raises for bad input."""
    file = str(path)
    text, why = _read(file)
    if text is None:
        return None, [ValidationIssue(file, None, "(file)", why)]
    return check_text(text, file, plugins, **overrides)


def validate_file(path: str | Path, plugins) -> list[ValidationIssue]:
    """Every problem of the workflow file at ``path`` (empty when it is valid)."""
    return check_file(path, plugins)[1]


def load_workflow(
    path: str | Path,
    plugins,
    *,
    source: str | None = None,
    destination: str | None = None,
    results: str | None = None,
    repetitions: int | None = None,
) -> Workflow:
    """Load, validate and expand a workflow.

    :param plugins: a :class:`migflow.plugins.Plugins`.
    :param source: overrides ``[hosts] source`` (``--src``).
    :param destination: overrides ``[hosts] destination`` (``--dst``).
    :param results: overrides ``results`` (``--results``).
    :param repetitions: overrides ``repetitions`` (``--repetitions``).
    :returns: the :class:`~migflow.workflow.model.Workflow` with ``scenarios`` and
        ``plan`` filled (and ``seed`` when the order is shuffled).
    :raises WorkflowError: listing every issue (exit status 3 when a plugin the
        workflow ``requires`` is missing, else 2).
    """
    wf, issues = check_file(path, plugins, source=source, destination=destination, results=results, repetitions=repetitions)
    if wf is None:
        error = WorkflowError(issues)
        if any(isinstance(i, MissingPlugin) for i in issues):
            error.exit_code = PluginError.exit_code  # docs/cli.md: 3, a workflow needs a missing plugin
        raise error
    return wf
