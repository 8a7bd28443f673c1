"""Property-based fuzzing of the workflow loader and the line locator (hypothesis).

Properties:

* ``check_text`` never raises for any text: it returns ``(workflow, [])`` or
  ``(None, issues)``, every issue printable with a line inside the file;
* ``load_workflow`` / ``validate_file`` never raise anything but ``WorkflowError``
  for any bytes on disk;
* the ``Locator`` never crashes on any text and any path, and for documents
  written by the small TOML writer below it finds the line each key was
  written on.

Documents come from four sources: arbitrary text, arbitrary bytes, random
documents of plausible keys and values (serialized by ``dump_toml``, since
``tomli_w`` is not a dependency), and mutations of the shipped workflows and
test files (valid-looking documents reach the matrix, substitution and plugin
checks).

Determinism: every test runs with ``derandomize=True`` and ``database=None``:
the examples are a fixed function of the test, so CI gives the same verdict on
every run and a failure reproduces on any machine, with no example database to
carry around.  The price is that CI never explores new inputs; to explore,
run with ``MIGFLOW_FUZZ=explore`` (random seeds, more examples), e.g.

    MIGFLOW_FUZZ=explore MIGFLOW_FUZZ_EXAMPLES=5000 python -m pytest tests/test_fuzz_workflows.py

and add anything it finds to tests/test_bad_input.py or tests/test_workflow.py.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re
import tempfile
import tomllib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from migflow.errors import ValidationIssue, WorkflowError
from migflow.plugins import get_plugins
from migflow.workflow.loader import check_text, load_workflow, validate_file
from migflow.workflow.locate import Locator

ROOT = Path(__file__).resolve().parents[1]
EXPLORE = os.environ.get("MIGFLOW_FUZZ") == "explore"
FUZZ = settings(
    max_examples=int(os.environ.get("MIGFLOW_FUZZ_EXAMPLES", "1000" if EXPLORE else "150")),
    deadline=dt.timedelta(seconds=5),  # one example; a hang or pathological slowness fails
    derandomize=not EXPLORE,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


@pytest.fixture(scope="module")
def plugins():
    """The installed plugins (built-in steps, libvirt modes ...), loaded once."""
    return get_plugins()


# -- a small TOML writer that remembers the line of every key ---------------------------------------

_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(k: str) -> str:
    return k if _BARE.match(k) else _string(k)


def _string(s: str) -> str:
    out = ['"']
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ch == "\x7f":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _inline(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return _string(v)
    if isinstance(v, (dt.datetime, dt.date, dt.time)):
        return v.isoformat()
    if isinstance(v, list):
        return "[" + ", ".join(_inline(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_key(k)} = {_inline(x)}" for k, x in v.items()) + "}"
    raise TypeError(type(v))


def _is_table_array(v) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)


def _header(path: tuple) -> str:
    """``("steps", 0, "sub")`` -> ``steps.sub``: a header names the latest element of a table array."""
    return ".".join(_key(p) for p in path if not isinstance(p, int))


def dump_toml(doc: dict) -> tuple[str, dict[tuple, int]]:
    """TOML text for ``doc`` and the line (from 1) each key path was written on.

    Scalars and lists of scalars as ``key = value``; tables as ``[a.b]``
    sections; lists of tables as ``[[a.b]]``; anything nested inside a value
    written inline."""
    lines: list[str] = []
    where: dict[tuple, int] = {}

    def table(path: tuple, t: dict) -> None:
        for k, v in t.items():
            if not isinstance(v, dict) and not _is_table_array(v):
                lines.append(f"{_key(k)} = {_inline(v)}")
                where[path + (k,)] = len(lines)
        for k, v in t.items():
            if isinstance(v, dict):
                lines.append("[" + _header(path + (k,)) + "]")
                where[path + (k,)] = len(lines)
                table(path + (k,), v)
        for k, v in t.items():
            if _is_table_array(v):
                for i, item in enumerate(v):
                    lines.append("[[" + _header(path + (k,)) + "]]")
                    where[path + (k, i)] = len(lines)
                    table(path + (k, i), item)

    table((), doc)
    return "\n".join(lines) + "\n", where


# -- strategies ---------------------------------------------------------------------------------------

KEYS = [
    "name",
    "description",
    "backend",
    "repetitions",
    "round_trip",
    "fail_fast",
    "results",
    "order",
    "seed",
    "requires",
    "hosts",
    "source",
    "destination",
    "domain",
    "create",
    "memory_mib",
    "vcpus",
    "workload",
    "working_set_mib",
    "dirty_rate_mibs",
    "steps",
    "use",
    "mode",
    "flags",
    "timeout",
    "seconds",
    "action",
    "interval_ms",
    "iteration_samples",
    "capabilities",
    "parameters",
    "warmup_s",
    "wait_timeout_s",
    "matrix",
    "exclude",
    "include",
    "expect",
    "migrate_uri",
    "settle_s",
    "keep_created",
    "xbzrle",
    "downtime-limit",
]
WORDS = [
    "prepare-domain",
    "set-capabilities",
    "migrate",
    "collect-qmp",
    "restore",
    "shape-link",
    "p2p",
    "p2p-tunnelled",
    "managed-direct",
    "unmanaged-direct",
    "zstack",
    "libvirt",
    "abort",
    "suspend",
    "postcopy",
    "tls",
    "live",
    "tunnelled",
    "interleaved",
    "shuffled",
    "sequential",
    "success",
    "failure",
    "${mode}",
    "${x}",
    "${flags}",
    "$${x}",
    "${",
    "}",
    "$",
    "${mode",
    "${1x}",
    "qemu+tcp://a/system",
    "qemu+ssh://u:pw@h/system?keyfile=/k",
    "tcp://h:1",
    "",
    " ",
    "nope",
]

keys = st.one_of(st.sampled_from(KEYS), st.text(max_size=8))
scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(WORDS),
    st.dates(),
    st.times(),
    st.datetimes(timezones=st.just(dt.UTC)),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=5)),
    max_leaves=25,
)
random_docs = st.dictionaries(keys, values, max_size=8)

# Documents shaped like workflows, with random pieces: these get past the schema
# and reach the matrix, substitution and plugin checks.
small_values = st.one_of(scalars, st.lists(scalars, max_size=3))
step = st.fixed_dictionaries(
    {"use": st.sampled_from(WORDS[:6] + ["nope"])},
    optional={
        "mode": st.sampled_from(WORDS),
        "flags": st.lists(st.sampled_from(["live", "tls", "postcopy", "compressed", "${flags}", "${x}", "fast"]), max_size=3),
        "timeout": st.fixed_dictionaries({"seconds": small_values}, optional={"action": st.sampled_from(WORDS)}),
        "interval_ms": small_values,
        "warmup_s": small_values,
        "round_trip": small_values,
        "capabilities": st.dictionaries(st.sampled_from(["xbzrle", "postcopy-ram", "auto-converge", "${x}", "bogus"]), small_values, max_size=3),
        "parameters": st.dictionaries(st.sampled_from(["downtime-limit", "max-bandwidth", "xbzrle-cache-size", "${x}"]), small_values, max_size=3),
        "expect": st.sampled_from(WORDS),
    },
)
domain = st.one_of(
    st.fixed_dictionaries({"name": st.one_of(st.sampled_from(WORDS), st.text(max_size=10))}),
    st.just({"create": {}}),
    st.fixed_dictionaries(
        {
            "create": st.fixed_dictionaries(
                {},
                optional={
                    "memory_mib": small_values,
                    "vcpus": small_values,
                    "name": st.sampled_from(WORDS),
                    "workload": st.dictionaries(st.sampled_from(["working_set_mib", "dirty_rate_mibs", "x"]), small_values, max_size=2),
                },
            )
        }
    ),
    st.dictionaries(keys, small_values, max_size=3),
)
matrix = st.dictionaries(
    st.sampled_from(["mode", "x", "flags", "exclude", "include", "1x", "y"]),
    st.one_of(
        st.lists(scalars, min_size=0, max_size=3), st.lists(st.dictionaries(st.sampled_from(["mode", "x", "z"]), scalars, max_size=2), max_size=2), scalars
    ),
    max_size=3,
)
workflow_docs = st.fixed_dictionaries(
    {
        "name": st.one_of(st.just("fuzz"), st.just("fuzz"), st.from_regex(r"[a-z0-9_-]{1,8}", fullmatch=True), st.text(max_size=10)),
        "domain": domain,
        "steps": st.lists(step, max_size=4),
    },
    optional={
        "matrix": matrix,
        "repetitions": st.one_of(st.integers(-3, 5), scalars),
        "order": st.sampled_from(WORDS),
        "seed": scalars,
        "backend": st.sampled_from(["libvirt", "qemu", "nope", ""]),
        "requires": st.lists(st.sampled_from(["migflow-steps", "migflow-libvirt", "migflow-nothere", ""]), max_size=2),
        "hosts": st.dictionaries(st.sampled_from(["source", "destination", "x"]), st.sampled_from(WORDS), max_size=3),
        "round_trip": scalars,
        "results": st.sampled_from(WORDS),
    },
)

SEEDS = sorted([*(ROOT / "workflows").glob("*.toml"), *(ROOT / "tests" / "data" / "workflows").glob("*.toml")])


@st.composite
def mutated_files(draw):
    """A shipped or test workflow with a few edits: a slice deleted, text inserted, a line duplicated."""
    text = draw(st.sampled_from(SEEDS)).read_bytes().decode("utf-8", "replace")
    for _ in range(draw(st.integers(1, 3))):
        if not text:
            break
        i = draw(st.integers(0, len(text)))
        j = draw(st.integers(i, min(len(text), i + 40)))
        kind = draw(st.sampled_from(["delete", "insert", "replace", "dup-line"]))
        if kind == "delete":
            text = text[:i] + text[j:]
        elif kind == "insert":
            text = (
                text[:i]
                + draw(st.one_of(st.sampled_from(WORDS + ["[", "]", "[[steps]]", "=", '"', "\n", "nan", "inf", "{", "}", ","]), st.text(max_size=10)))
                + text[i:]
            )
        elif kind == "replace":
            text = text[:i] + draw(st.text(max_size=5)) + text[j:]
        else:
            lines = text.splitlines(keepends=True)
            k = draw(st.integers(0, max(0, len(lines) - 1)))
            text = "".join(lines[: k + 1] + lines[k:])
    return text


# -- the properties -------------------------------------------------------------------------------------


def assert_checked(text: str, plugins) -> None:
    """``check_text`` returned (workflow, []) or (None, issues), never raised; issues are usable."""
    wf, issues = check_text(text, "fuzz.toml", plugins)
    assert (wf is None) == bool(issues)
    n_lines = text.count("\n") + 1
    for issue in issues:
        assert isinstance(issue, ValidationIssue)
        assert str(issue) and issue.as_dict()["message"]
        assert issue.line is None or 1 <= issue.line <= n_lines, (issue, n_lines)
    if wf is not None:
        assert wf.plan and len(wf.plan) == len(wf.scenarios) * wf.repetitions
        for sc in wf.scenarios:
            for use in sc.steps:
                assert use.name in plugins.steps


@FUZZ
@given(st.text())
@example("")
@example("\ufeff")
@example("a = [" * 2000)
@example("[a]\n" * 3 + "[[a]]")
@example('x = "${' + "a" * 10000)
def test_any_text(plugins, text):
    assert_checked(text, plugins)


@FUZZ
@given(random_docs)
@example({"name": [], "steps": 1})  # found by this test: steps that is no list crashed the loader
@example({"name": "x", "domain": {"create": {}}, "steps": [{"use": "migrate", "mode": "p2p"}], "matrix": {"x": [float("nan")]}})
def test_random_documents(plugins, doc):
    text, _ = dump_toml(doc)
    assert_checked(text, plugins)


@FUZZ
@given(workflow_docs)
def test_workflow_shaped_documents(plugins, doc):
    text, _ = dump_toml(doc)
    assert_checked(text, plugins)


@FUZZ
@given(mutated_files())
def test_mutated_workflows(plugins, text):
    assert_checked(text, plugins)


@FUZZ
@given(st.binary(max_size=400) | mutated_files().map(lambda t: t.encode("utf-8", "surrogatepass")))
@example(b"\xff\xfe n\x00a\x00m\x00e\x00")
@example(b'name = "caf\xe9"\n')
@example(b"\xef\xbb\xbfname = 1\n")
def test_any_bytes_on_disk_raise_only_workflow_error(plugins, data):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "fuzz.toml"
        path.write_bytes(data)
        issues = validate_file(path, plugins)
        assert all(isinstance(i, ValidationIssue) and str(i) for i in issues)
        try:
            load_workflow(path, plugins)
        except WorkflowError as exc:
            assert exc.exit_code in (2, 3) and exc.issues
        else:
            assert issues == []


paths = st.lists(st.one_of(st.sampled_from(KEYS), st.text(max_size=6), st.integers(-3, 50)), max_size=6)


@FUZZ
@given(st.one_of(st.text(), mutated_files()), st.lists(paths, max_size=5))
def test_locator_never_crashes(text, some_paths):
    loc = Locator(text)
    n_lines = text.count("\n") + 1
    for p in some_paths:
        line = loc.line(p)
        assert line is None or 1 <= line <= n_lines


@FUZZ
@given(st.one_of(random_docs, workflow_docs))
def test_locator_finds_the_line_each_key_was_written_on(doc):
    text, where = dump_toml(doc)
    parsed = tomllib.loads(text)  # the writer writes valid TOML ...
    assert _has_nan(doc) or parsed == doc  # ... of the same document (nan != nan)
    loc = Locator(text)
    for path, line in where.items():
        assert loc.line(list(path)) == line, (path, text)


def _has_nan(v) -> bool:
    if isinstance(v, float):
        return math.isnan(v)
    if isinstance(v, dict):
        return any(_has_nan(x) for x in v.values())
    if isinstance(v, list):
        return any(_has_nan(x) for x in v)
    return False
