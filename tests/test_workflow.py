"""Workflow files: parsing, validation messages with lines, matrix expansion, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cli_runner import migflow
from jsonschema import Draft202012Validator

from migflow.errors import WorkflowError
from migflow.hookspecs import hookimpl
from migflow.plugins import get_plugins
from migflow.registry import BackendSpec, StepSpec
from migflow.workflow import plan as plan_mod
from migflow.workflow.loader import check_text, format_path, load_workflow, parse_path, validate_file
from migflow.workflow.locate import Locator, index_lines
from migflow.workflow.schema import core_schema, workflow_schema

DATA = Path(__file__).parent / "data" / "workflows"
REPO = Path(__file__).resolve().parents[1]


# -- a test plugin on a fresh manager ------------------------------------------------------

MIGRATE_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["mode"],
    "properties": {
        "mode": {"enum": ["managed-direct", "p2p", "zstack"]},
        "flags": {"type": "array", "items": {"enum": ["live", "compressed", "postcopy"]}, "uniqueItems": True},
        "note": {"type": "string"},
        "timeout_s": {"type": "integer", "minimum": 1},
    },
}


class FakeSteps:
    """Steps with schemas, a backend, and a combination check, like a third-party plugin."""

    __name__ = "testplugin"

    @hookimpl
    def migflow_register_steps(self, register):
        register(StepSpec("migrate", run=lambda ctx, options: None, options_schema=MIGRATE_SCHEMA))
        register(StepSpec("prepare", run=lambda ctx, options: None))
        register(StepSpec("restore", run=lambda ctx, options: None, always_run=True))

    @hookimpl
    def migflow_register_backends(self, register):
        register(BackendSpec("libvirt", factory=lambda src, dst: None))

    @hookimpl
    def migflow_validate_scenario(self, workflow, scenario):
        out = []
        for step in scenario.steps:
            if step.name == "migrate" and step.options.get("mode") == "zstack" and "postcopy" in step.options.get("flags", []):
                out.append((f"steps[{step.index}].flags", "zstack cannot be combined with postcopy"))
        return out


@pytest.fixture
def plugins(monkeypatch):
    monkeypatch.setenv("MIGFLOW_DISABLE_PLUGINS", "steps,libvirt,lab,qemu")
    monkeypatch.setenv("MIGFLOW_LOAD_PLUGINS", "")
    p = get_plugins(extra=(FakeSteps(),))
    yield p
    p.pm.unregister(name="testplugin")


def check(text, plugins, **kw):
    return check_text(textwrap.dedent(text), "wf.toml", plugins, **kw)


# -- broken files: exact line and path -----------------------------------------------------

BROKEN = [
    # file, line, path, part of the message
    ("bad_syntax.toml", 4, "(syntax)", "TOML syntax error"),
    ("bad_repetitions.toml", 3, "repetitions", "expected an integer ≥ 1, got -3"),
    ("unknown_key.toml", 3, "repetiton", "unknown key 'repetiton' (did you mean 'repetitions'?)"),
    ("unknown_step.toml", 11, "steps[1].use", "no plugin provides the step 'migrat' (did you mean 'migrate'? known: migrate, prepare, restore)"),
    ("bad_mode.toml", 11, "steps[1].mode", "'p2pp' is not one of 'managed-direct', 'p2p', 'zstack' (did you mean 'p2p'?)"),
    ("unknown_option.toml", 8, "steps[0].flagz", "unknown option 'flagz' of step 'migrate' (did you mean 'flags'?)"),
    ("domain_two.toml", 3, "domain", "expected exactly one of name, uuid or create; got name and uuid"),
    ("unknown_param.toml", 10, "steps[0].mode", "unknown parameter 'mdoe' in '${mdoe}' (did you mean 'mode'? parameters: mode;"),
    ("all_excluded.toml", 7, "matrix.exclude", "every combination of the matrix is excluded"),
    ("scenario_dependent.toml", 12, "steps[0].timeout_s", "in scenario mode=p2p,timeout=0: expected an integer ≥ 1, got 0"),
    ("inline_steps.toml", 6, "steps[1].mode", "'tunnel' is not one of"),
    ("unknown_backend.toml", 2, "backend", "no plugin provides the backend 'libvrt' (did you mean 'libvirt'? known: libvirt)"),
    ("requires_missing.toml", 4, "requires[1]", "workflow needs plugin 'migflow-nosuch', which is not installed (pip install migflow-nosuch)"),
    ("small_memory.toml", 5, "domain.create.memory_mib", "expected an integer ≥ 16, got 8"),
    ("hosts_incomplete.toml", 3, "hosts", "missing required key 'destination'"),
    ("bad_param_name.toml", 6, 'matrix."link rate"', "'link rate' is not a valid name here"),
    ("rejected_combination.toml", 11, "steps[0].flags", "in scenario mode=zstack: zstack cannot be combined with postcopy"),
    (
        "bad_exclude.toml",
        6,
        "matrix.exclude[0].mode",
        "'p2pp' is not a value of 'mode', so this rule excludes nothing (did you mean 'p2p'? values: 'p2p', 'zstack')",
    ),
    ("no_domain_choice.toml", 2, "domain", "expected one of name, uuid or create; got none of them"),
    ("missing_name.toml", None, "(top level)", "missing required key 'name'"),
    ("list_param_inside_string.toml", 10, "steps[0].note", "parameter 'flags' is a list: it can only be used as a whole value"),
    ("binary.toml", None, "(file)", "is not a text file"),
    ("empty.toml", None, "(top level)", "the file is empty"),
]


@pytest.mark.parametrize("name,line,path,message", BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_file_reports_line_path_and_expectation(plugins, name, line, path, message):
    issues = validate_file(DATA / name, plugins)
    found = [(i.line, i.path, i.message) for i in issues]
    assert any(i.line == line and i.path == path and message in i.message for i in issues), found
    where = f"{DATA / name}:{line}" if line else str(DATA / name)
    assert any(str(i).startswith(f"{where}: {path}: ") for i in issues)


def test_every_broken_file_in_the_folder_is_covered():
    covered = {b[0] for b in BROKEN} | {"three_mistakes.toml"}
    broken = {p.name for p in DATA.iterdir() if not p.name.startswith("good")}
    assert broken == covered


def test_three_mistakes_give_three_issues_at_once(plugins):
    issues = validate_file(DATA / "three_mistakes.toml", plugins)
    got = sorted((i.line, i.path) for i in issues)
    assert got == [(1, "name"), (2, "repetitions"), (9, "steps[0].flags[1]")], [str(i) for i in issues]
    with pytest.raises(WorkflowError) as exc:
        load_workflow(DATA / "three_mistakes.toml", plugins)
    assert len(exc.value.issues) == 3
    assert exc.value.exit_code == 2
    assert "3 problems found" in str(exc.value)


def test_nan_and_inf_are_one_issue_each_at_their_line(plugins):
    # JSON Schema alone lets NaN through every bound (each comparison is false)
    _, issues = check(
        """\
        name = "x"
        domain.name = "vm"
        matrix.t = [1, nan]
        [[steps]]
        use = "migrate"
        mode = "p2p"
        timeout_s = inf
        note = "${t}"
        """,
        plugins,
    )
    assert [str(i) for i in issues] == [
        "wf.toml:3: matrix.t[1]: expected a finite number, got nan (TOML's nan and inf are not accepted in a workflow)",
        "wf.toml:7: steps[0].timeout_s: expected a finite number, got inf (TOML's nan and inf are not accepted in a workflow)",
    ]


def test_plan_size_is_bounded_before_expansion(plugins):
    matrix = "\n".join(f"p{i} = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]" for i in range(7))
    _, issues = check_text(f'name = "x"\ndomain.name = "vm"\n[[steps]]\nuse = "prepare"\n[matrix]\n{matrix}\n', "wf.toml", plugins)
    assert [(i.line, i.path) for i in issues] == [(5, "matrix")] and "10,000,000 scenarios" in issues[0].message
    _, issues = check_text('name = "x"\ndomain.name = "vm"\n[[steps]]\nuse = "prepare"\n', "wf.toml", plugins, repetitions=1000)
    assert issues == []
    _, issues = check_text(
        'name = "x"\ndomain.name = "vm"\nmatrix.a = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]\n[[steps]]\nuse = "prepare"\n', "wf.toml", plugins, repetitions=1000
    )
    assert issues == []  # 11 000 runs: fine
    many = ", ".join(map(str, range(101)))
    _, issues = check_text(f'name = "x"\ndomain.name = "vm"\nmatrix.a = [{many}]\n[[steps]]\nuse = "prepare"\n', "wf.toml", plugins, repetitions=1000)
    assert [i.path for i in issues] == ["--repetitions"] and "101,000 runs" in issues[0].message


def test_a_missing_required_plugin_exits_3(plugins, tmp_path):
    f = tmp_path / "wf.toml"
    f.write_text('name = "x"\nrequires = ["migflow-nothere"]\ndomain.name = "vm"\n[[steps]]\nuse = "prepare"\n')
    with pytest.raises(WorkflowError) as exc:
        load_workflow(f, plugins)
    assert exc.value.exit_code == 3


def test_missing_file_and_directory(plugins, tmp_path):
    assert validate_file(tmp_path / "nope.toml", plugins)[0].message == "no such file"
    assert "directory" in validate_file(tmp_path, plugins)[0].message
    (tmp_path / "latin1.toml").write_bytes('name = "caf\xe9"'.encode("latin-1"))
    assert "not UTF-8" in validate_file(tmp_path / "latin1.toml", plugins)[0].message


def test_literal_error_is_reported_once_not_per_scenario(plugins):
    _, issues = check(
        """\
        name = "x"
        domain.name = "vm"
        matrix.mode = ["p2p", "zstack"]
        [[steps]]
        use = "migrate"
        mode = "${mode}"
        timeout_s = -1
        """,
        plugins,
    )
    assert [str(i) for i in issues] == ["wf.toml:7: steps[0].timeout_s: expected an integer ≥ 1, got -1"]


def test_schema_pattern_and_type_messages(plugins):
    _, issues = check(
        """\
        name = "Bad Name"
        repetitions = 2.0
        round_trip = "yes"
        order = "random"
        domain.name = "vm"
        [[steps]]
        use = "prepare"
        """,
        plugins,
    )
    msgs = {i.path: i.message for i in issues}
    assert msgs["name"] == "expected lower-case letters, digits, '_' or '-', got 'Bad Name'"
    assert msgs["repetitions"] == "expected an integer from 1 to 1000, got 2.0"
    assert msgs["round_trip"] == "expected true or false, got 'yes'"
    assert msgs["order"].startswith("'random' is not one of 'interleaved', 'sequential', 'shuffled'")


# -- good workflows ---------------------------------------------------------------------------


def test_good_matrix_scenarios_and_interleaved_plan(plugins):
    wf = load_workflow(DATA / "good_matrix.toml", plugins)
    labels = [s.label for s in wf.scenarios]
    assert labels == [
        "mode=p2p,bandwidth=1gbit,memory=256",
        "mode=managed-direct,bandwidth=1gbit,memory=256",
        "mode=managed-direct,bandwidth=100mbit,memory=256",
        "mode=zstack,bandwidth=1gbit,memory=512",
    ]
    assert wf.matrix == {"mode": ["p2p", "managed-direct"], "bandwidth": ["1gbit", "100mbit"], "memory": [256]}
    assert (wf.repetitions, wf.round_trip, wf.order, wf.backend) == (2, True, "interleaved", "libvirt")
    assert (wf.source, wf.destination) == ("qemu+tcp://198.18.0.1/system", "qemu+tcp://198.18.0.2/system")
    assert [(r.index, r.scenario.label, r.repetition) for r in wf.plan] == [(i, labels[i % 4], 1 + i // 4) for i in range(8)]
    # typed substitution: a whole "${memory}" becomes the integer; interpolation and $${ escape in strings
    zstack = wf.scenarios[3]
    assert zstack.domain["create"]["memory_mib"] == 512
    assert zstack.domain["create"]["name"] == "migflow-guest"  # default applied
    migrate = zstack.steps[1]
    assert (migrate.name, migrate.index) == ("migrate", 1)
    assert migrate.options == {"mode": "zstack", "flags": ["live", "compressed"], "note": "link 1gbit, costs ${not_a_param}"}
    # the workflow's own steps keep the references
    assert wf.steps[1].options["mode"] == "${mode}"


def test_sequential_and_shuffled_plans(plugins, tmp_path):
    text = (DATA / "good_matrix.toml").read_text().replace('order = "interleaved"', 'order = "sequential"')
    (tmp_path / "seq.toml").write_text(text)
    wf = load_workflow(tmp_path / "seq.toml", plugins)
    assert [(r.scenario.label.split(",")[0], r.repetition) for r in wf.plan] == [
        ("mode=p2p", 1),
        ("mode=p2p", 2),
        ("mode=managed-direct", 1),
        ("mode=managed-direct", 2),
        ("mode=managed-direct", 1),
        ("mode=managed-direct", 2),
        ("mode=zstack", 1),
        ("mode=zstack", 2),
    ]
    assert wf.seed is None

    shuffled = text.replace('order = "sequential"', 'order = "shuffled"\nseed = 42').replace("repetitions = 2", "repetitions = 5")
    (tmp_path / "shuf.toml").write_text(shuffled)
    a = load_workflow(tmp_path / "shuf.toml", plugins)
    b = load_workflow(tmp_path / "shuf.toml", plugins)
    order_a = [r.scenario.label for r in a.plan]
    assert order_a == [r.scenario.label for r in b.plan] and a.seed == 42
    for rep in range(5):  # each round holds every scenario once
        assert sorted(order_a[rep * 4 : rep * 4 + 4]) == sorted(s.label for s in a.scenarios)
        assert [r.repetition for r in a.plan[rep * 4 : rep * 4 + 4]] == [rep + 1] * 4
    assert order_a != [r.scenario.label for r in load_workflow(tmp_path / "seq.toml", plugins, repetitions=5).plan]

    (tmp_path / "noseed.toml").write_text(shuffled.replace("seed = 42", ""))
    c = load_workflow(tmp_path / "noseed.toml", plugins)
    assert isinstance(c.seed, int)  # chosen and recorded
    again = plan_mod.order_runs(c.scenarios, c.repetitions, "shuffled", c.seed)
    assert [r.scenario.label for r in again] == [r.scenario.label for r in c.plan]


def test_no_matrix_gives_default_scenario_and_overrides(plugins):
    wf, issues = check(
        """\
        #:schema https://example.invalid/not/the/real/schema.json
        name = "plain"
        [domain]
        name = "vm1"
        [[steps]]
        use = "migrate"
        mode = "p2p"
        """,
        plugins,
        source="qemu:///a",
        destination="qemu:///b",
        results="/tmp/r.duckdb",
        repetitions=3,
    )
    assert issues == []
    assert [s.label for s in wf.scenarios] == ["default"]
    assert [r.repetition for r in wf.plan] == [1, 2, 3]
    assert (wf.source, wf.destination, wf.results, wf.fail_fast, wf.round_trip) == ("qemu:///a", "qemu:///b", "/tmp/r.duckdb", False, False)
    _, issues = check('name = "x"\ndomain.name = "v"\n[[steps]]\nuse = "prepare"\n', plugins, repetitions=0)
    assert [i.path for i in issues] == ["--repetitions"]


def test_substitution_types_and_escapes():
    params = {"n": 3, "b": True, "s": "p2p", "l": ["a", "b"], "f": 1.5}
    assert plan_mod.substitute("${n}", params) == 3
    assert plan_mod.substitute("${b}", params) is True
    assert plan_mod.substitute("${l}", params) == ["a", "b"]
    assert plan_mod.substitute("x-${n}-${b}-${f}", params) == "x-3-true-1.5"
    assert plan_mod.substitute("$${n} and $$ and $x", params) == "${n} and $$ and $x"
    assert plan_mod.substitute({"a": ["${s}", {"c": "${n}"}]}, params) == {"a": ["p2p", {"c": 3}]}
    with pytest.raises(plan_mod.SubstitutionError) as exc:
        plan_mod.substitute({"a": ["ok", "${nope}"]}, params, ["steps", 0])
    assert exc.value.path == ["steps", 0, "a", 1] and exc.value.name == "nope"
    with pytest.raises(plan_mod.SubstitutionError, match="unterminated"):
        plan_mod.substitute("${n", params)


def test_combinations_exclude_include_duplicates():
    combos = plan_mod.combinations(
        {"a": [1, 2], "b": ["x", "y"]},
        exclude=[{"a": 2, "b": "y"}, {"a": True}],  # True is not 1: excludes nothing
        include=[{"b": "x", "a": 1}, {"a": 3, "b": "x", "extra": True}],  # first is a duplicate
    )
    assert combos == [{"a": 1, "b": "x"}, {"a": 1, "b": "y"}, {"a": 2, "b": "x"}, {"a": 3, "b": "x", "extra": True}]
    assert plan_mod.combinations({}, [], []) == [{}]
    assert plan_mod.combinations({}, [], [{"m": "p2p"}]) == [{"m": "p2p"}]
    assert plan_mod.label({"caps": ["xbzrle", "multifd"], "on": False}) == "caps=xbzrle+multifd,on=false"
    assert plan_mod.label({}) == "default"


def test_list_valued_parameter_is_typed(plugins):
    wf, issues = check(
        """\
        name = "caps"
        domain.name = "vm"
        [matrix]
        flags = [["live"], ["live", "compressed"]]
        [[steps]]
        use = "migrate"
        mode = "p2p"
        flags = "${flags}"
        """,
        plugins,
    )
    assert issues == []
    assert [s.steps[0].options["flags"] for s in wf.scenarios] == [["live"], ["live", "compressed"]]
    assert [s.label for s in wf.scenarios] == ["flags=live", "flags=live+compressed"]


def test_plugin_check_without_matrix_has_no_label(plugins):
    _, issues = check(
        """\
        name = "x"
        domain.name = "vm"
        [[steps]]
        use = "migrate"
        mode = "zstack"
        flags = ["postcopy"]
        """,
        plugins,
    )
    assert [str(i) for i in issues] == ["wf.toml:6: steps[0].flags: zstack cannot be combined with postcopy"]


def test_a_crashing_plugin_check_is_an_issue_not_a_traceback(plugins):
    class Crash:
        __name__ = "crashy"

        @hookimpl
        def migflow_validate_scenario(self, workflow, scenario, plugins):
            raise RuntimeError("boom")

    plugins.pm.register(Crash(), name="crashy")
    _, issues = check('name = "x"\ndomain.name = "v"\n[[steps]]\nuse = "prepare"\n', plugins)
    assert len(issues) == 1 and "plugin 'crashy' failed" in issues[0].message and "boom" in issues[0].message


# -- locate --------------------------------------------------------------------------------------

TRICKY = '''\
# comment with [brackets] and = signs
name = "a # not a comment" # [[fake]]
"quoted.key" = 1
a . "b c" . d = 2
inline = { x = 1, y = [1,
  2, { z = "}" }] }
text = """
[[not_a_table]]
"""
lit = \'\'\'x\'\'\'\'
arr = [
  # ] inside a comment
  "one",

  "two", # trailing
]
[[steps]]
use = "a"
[steps.sub]
k = 1
[[steps]]
use = "b"
[[steps.more]]
m = 1
[[steps.more]]
m = 2
[ dom . create ]
memory_mib = 5
'''


def test_locator_tricky_file():
    import tomllib

    assert tomllib.loads(TRICKY)  # the text is valid TOML
    loc = Locator(TRICKY)
    expect = {
        ("name",): 2,
        ("quoted.key",): 3,
        ("a", "b c", "d"): 4,
        ("inline", "y", 2, "z"): 6,
        ("inline", "y", 1): 6,
        ("inline", "x"): 5,
        ("text",): 7,
        ("lit",): 10,
        ("arr", 0): 13,
        ("arr", 1): 15,
        ("steps", 0): 17,
        ("steps", 0, "use"): 18,
        ("steps", 0, "sub", "k"): 20,
        ("steps", 1, "use"): 22,
        ("steps", 1, "more", 0, "m"): 24,
        ("steps", 1, "more", 1): 25,
        ("steps", 1, "more", 1, "m"): 26,
        ("dom", "create", "memory_mib"): 28,
        ("steps", 1, "missing"): 21,  # falls back to the enclosing table
        ("not_a_table",): None,
    }
    assert {k: loc.line(k) for k in expect} == expect
    assert "not_a_table" not in {k[0] for k in index_lines(TRICKY)}


def test_paths_round_trip():
    for p in (["steps", 2, "mode"], ["matrix", "link rate"], ["a", "b", 0, 1]):
        assert parse_path(format_path(p)) == p
    assert format_path([]) == "(top level)"


# -- schema -------------------------------------------------------------------------------------


def test_core_schema_is_valid_and_packaged():
    schema = core_schema()
    Draft202012Validator.check_schema(schema)
    assert schema["$id"] and schema["title"]
    assert json.loads((REPO / "schemas" / "workflow.schema.json").read_text()) == schema
    assert schema["$defs"]["step"]["required"] == ["use"]


def test_composed_schema_checks_step_options(plugins):
    schema = workflow_schema(plugins)
    Draft202012Validator.check_schema(schema)
    v = Draft202012Validator(schema)
    import tomllib

    good = tomllib.loads((DATA / "good_matrix.toml").read_text())
    assert list(v.iter_errors(good)) == []  # ${param} references are accepted
    bad = dict(good, steps=[{"use": "migrate", "mode": "p2pp"}, {"use": "migrat"}], backend="x")
    paths = sorted(tuple(e.absolute_path) for e in v.iter_errors(bad))
    assert paths == [("backend",), ("steps", 0, "mode"), ("steps", 1, "use")]
    assert schema["properties"]["backend"]["enum"] == ["libvirt"]
    assert schema["$defs"]["step"]["properties"]["use"]["enum"] == ["migrate", "prepare", "restore"]


# -- the command line ----------------------------------------------------------------------------


def test_cli_broken_files_exit_2_without_traceback(tmp_path):
    files = [str(DATA / n) for n in ("three_mistakes.toml", "bad_syntax.toml", "binary.toml", "empty.toml")]
    files += [str(tmp_path / "missing.toml"), str(tmp_path)]
    r = migflow("validate", *files, cwd=tmp_path)
    assert r.returncode == 2, r
    assert "Traceback" not in r.stdout + r.stderr
    assert f"{DATA / 'three_mistakes.toml'}:2: repetitions: expected an integer ≥ 1, got 0" in r.stdout
    assert f"{DATA / 'bad_syntax.toml'}:4: (syntax): TOML syntax error" in r.stdout
    assert f"{tmp_path / 'missing.toml'}: (file): no such file" in r.stdout


def test_cli_json_output(tmp_path):
    r = migflow("validate", "--json", str(DATA / "bad_repetitions.toml"), str(DATA / "bad_syntax.toml"), cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    report = json.loads(r.stdout)
    assert [e["ok"] for e in report] == [False, False]
    assert {"file": str(DATA / "bad_repetitions.toml"), "line": 3, "path": "repetitions", "message": "expected an integer ≥ 1, got -3"} in report[0]["issues"]


def test_cli_from_another_directory_finds_the_packaged_schema(tmp_path):
    r = migflow("schema", "--core", cwd=tmp_path)
    assert r.returncode == 0 and json.loads(r.stdout)["$id"] == core_schema()["$id"]
    r = migflow("schema", "--output", str(tmp_path / "s.json"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    Draft202012Validator.check_schema(json.loads((tmp_path / "s.json").read_text()))
    # the core schema is in force when validating from elsewhere
    r = migflow("validate", str(DATA / "unknown_key.toml"), cwd=tmp_path)
    assert r.returncode == 2 and "unknown key 'repetiton' (did you mean 'repetitions'?)" in r.stdout


def test_cli_ok_with_a_plugin(tmp_path):
    # The CLI in a subprocess, with the test plugin added to the plugin manager.
    code = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import migflow.plugins, test_workflow
        real = migflow.plugins.get_plugins
        migflow.plugins.get_plugins = lambda **kw: real(extra=(test_workflow.FakeSteps(),), **kw)
        from migflow.cli import main
        main(["validate", {str(DATA / "good_matrix.toml")!r}])
        """
    )
    env = {**__import__("os").environ, "MIGFLOW_DISABLE_PLUGINS": "steps,libvirt,lab", "MIGFLOW_LOAD_PLUGINS": ""}
    r = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip() == f"OK {DATA / 'good_matrix.toml'} (4 scenarios, 8 runs)"


def test_cli_help_has_an_example():
    r = migflow("validate", "--help")
    assert r.returncode == 0 and "migflow validate docs/examples/broken.toml" in r.stdout and "--json" in r.stdout
    assert "broken.toml:3: repetitions: expected an integer ≥ 1, got -3" in r.stdout


@pytest.mark.parametrize("path", sorted((REPO / "workflows").glob("*.toml")), ids=lambda p: p.name)
def test_shipped_workflows_validate_with_the_builtin_plugins(path):
    issues = validate_file(path, get_plugins())
    assert issues == [], "\n".join(map(str, issues))


def test_the_example_in_the_docs_validates(tmp_path):
    import re

    text = (REPO / "docs" / "workflow.md").read_text()
    example = re.search(r"```toml\n(#:schema.*?)```", text, re.S).group(1)
    (tmp_path / "example.toml").write_text(example)
    wf, issues = check_file_with_builtins(tmp_path / "example.toml")
    assert issues == [], "\n".join(map(str, issues))
    assert [s.label for s in wf.scenarios] == ["mode=p2p,rate=1gbit", "mode=p2p,rate=100mbit", "mode=managed-direct,rate=1gbit"]
    assert len(wf.plan) == 9


def check_file_with_builtins(path):
    from migflow.workflow.loader import check_file

    return check_file(path, get_plugins())
