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
import re
import tomllib
from pathlib import Path

from ..errors import PluginError, ValidationIssue, WorkflowError
from . import plan as _plan
from .checks import MAX_REPETITIONS, check_adaptive, check_finite, check_matrix, check_names, plan_size_ok, plugin_checks, scenario_checks
from .issues import Issues, MissingPlugin
from .locate import Locator
from .messages import got, is_integer, make_validator, translate
from .model import StepUse, Workflow
from .paths import format_path, parse_path
from .schema import core_schema

__all__ = ["check_file", "check_text", "format_path", "load_workflow", "parse_path", "validate_file"]

CREATE_DEFAULTS = {"name": "migflow-guest", "memory_mib": 256, "vcpus": 1}


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


def _parse(text: str, issues: Issues) -> dict | None:
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


# -- the workflow object -------------------------------------------------------------------


def _workflow(doc: dict, file: str, *, source, destination, results, repetitions, matrix) -> Workflow:
    hosts: dict = doc["hosts"] if isinstance(doc.get("hosts"), dict) else {}
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
        adaptive=dict(doc["adaptive"]) if isinstance(doc.get("adaptive"), dict) else None,
        raw=doc,
    )


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
    issues = Issues(str(file))
    doc = _parse(text, issues)
    if doc is None:
        return None, issues.items
    issues.locator = Locator(text)
    if not doc:
        issues.add([], "the file is empty: a workflow needs at least name, [domain] and one [[steps]] (see docs/workflow.md)")
        return None, issues.items

    check_finite(doc, [], issues)
    core = core_schema()
    core_validator = make_validator(core)
    for err in core_validator.iter_errors(doc):
        for path, msg in translate(err):
            issues.add(path, msg)
    check_names(doc, plugins, issues)
    if repetitions is not None and (not is_integer(None, repetitions) or not 1 <= repetitions <= MAX_REPETITIONS):
        issues.add(["repetitions"], f"--repetitions: expected an integer from 1 to {MAX_REPETITIONS}, got {got(repetitions)}", shown_path="--repetitions")

    matrix_ok = not issues.touches("matrix")
    matrix: tuple[dict, list, list] = ({}, [], [])
    if matrix_ok and isinstance(doc.get("matrix"), dict):
        before = len(issues.items)
        matrix = check_matrix(doc["matrix"], issues)
        matrix_ok = len(issues.items) == before
    structure_ok = isinstance(doc.get("steps"), list) and not issues.touches("order", "seed")
    wf = _workflow(doc, file, source=source, destination=destination, results=results, repetitions=repetitions, matrix=matrix)
    if not issues.touches("adaptive", "repetitions"):
        check_adaptive(wf, issues)
    if matrix_ok and structure_ok and plan_size_ok(wf, issues, reps_option=repetitions is not None):
        scenario_checks(wf, doc, plugins, issues, core_validator)
    if issues:
        return None, issues.items

    wf.scenarios, wf.plan = _plan.expand(wf)
    plugin_checks(wf, plugins, issues)
    if issues:
        return None, issues.items
    return wf, []


def check_file(path: str | Path, plugins, **overrides) -> tuple[Workflow | None, list[ValidationIssue]]:
    """Read and validate one file: ``(workflow, [])`` or ``(None, issues)``.  Never raises for bad input."""
    file = str(path)
    text, why = _read(file)
    if text is None:
        return None, [ValidationIssue(file, None, "(file)", why or "cannot be read")]
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
