"""Every ``migflow ...`` example shown in ``--help``, README.md and docs/ is executed here.

Each example line (a shell line starting with ``migflow``, ``$ migflow`` or a
continuation of one) runs through ``sh -c`` in a scratch folder that holds what
the examples name: ``results.duckdb`` (the main job's results on the lab),
``seed.duckdb`` (seed_comparison's), ``workflows/``, ``my.toml``.  An example
must exit 0 and, when it pipes into ``jq``, print something.

A few examples cannot run here as written; each is listed in ``ADAPTED`` with
what runs instead and why (real hosts that do not exist, taking the lab down
in the middle of the suite, a netem-less kernel).
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cli_runner import migflow
from click.testing import CliRunner
from test_libvirt_workflows import WORKFLOWS as LIBVIRT_WORKFLOWS

from migflow.cli import cli

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _commands() -> set[str]:
    """Every top-level command, the plugins' included."""
    from migflow.cli import COMMANDS

    res = CliRunner().invoke(cli, ["--help"], prog_name="migflow")
    listed = {m.group(1) for m in re.finditer(r"^  (\S+)\s", res.output.split("Commands:", 1)[1], re.M)}
    return set(COMMANDS) | listed


def _help_examples() -> dict[str, str]:
    """example -> where (``migflow X --help``): lines of the help that run a migflow command."""
    out: dict[str, str] = {}
    runner = CliRunner()
    commands = _commands()

    def visit(args: list[str]) -> None:
        res = runner.invoke(cli, [*args, "--help"], prog_name="migflow")
        assert res.exit_code == 0, (args, res.output)
        where = "migflow " + " ".join([*args, "--help"])
        for ex in _examples_in(res.output):
            if ex.split()[1:2] and ex.split()[1] in commands:  # prose that happens to start with "migflow" is not an example
                out.setdefault(ex, where)
        if "Commands:" in res.output:
            for line in res.output.split("Commands:", 1)[1].splitlines():
                m = re.match(r"^  (\S+)\s", line)
                if m:
                    visit([*args, m.group(1)])

    visit([])
    return out


def _complete(command: str) -> bool:
    try:
        shlex.split(command)
    except ValueError:  # an open quote: the example goes on on the next line
        return False
    return not command.endswith("\\")


def _examples_in(text: str) -> list[str]:
    """Shell lines that run migflow; backslash continuations and multi-line quotes joined."""
    out, pending = [], None
    for raw in text.splitlines():
        line = raw.strip()
        if pending is not None:
            pending = pending.rstrip("\\").rstrip() + ("\n" if not pending.endswith("\\") else " ") + line
            if _complete(pending):
                out.append(pending)
                pending = None
            continue
        line = re.sub(r"^\$ ", "", line)
        if not re.match(r"^migflow( |$)", line):
            continue
        if _complete(line):
            out.append(line)
        else:
            pending = line
    return [re.sub(r"\s+#\s[^\n\"']*$", "", ex).strip() for ex in out]


def _doc_examples() -> dict[str, str]:
    """example -> the document it is in: every migflow line of its shell code blocks."""
    out: dict[str, str] = {}
    for path in DOCS:
        for block in re.findall(r"```(?:sh|console|bash|shell)\n(.*?)```", path.read_text(), re.S):
            for ex in _examples_in(block):
                out.setdefault(ex, str(path.relative_to(ROOT)))
    return out


#: example -> (what runs instead, why)
ADAPTED = {
    "migflow lab down": (None, "takes the lab away in the middle of the suite; test_lab.py::test_zz_down_leaves_nothing runs it"),
}
#: examples that show a failure on purpose -> their documented exit status
EXPECTED_STATUS = {"migflow validate docs/examples/broken.toml": 2}


def test_the_validate_help_shows_what_validate_prints():
    """The output block of `migflow validate --help` is what the example really prints ("..." ends a line early)."""
    helptext = CliRunner().invoke(cli, ["validate", "--help"], prog_name="migflow").output
    shown = [ln.strip() for ln in helptext.split("Output of the last one", 1)[1].split("\n\n", 1)[0].splitlines()[1:] if ln.strip()]
    real = migflow("validate", "docs/examples/broken.toml", cwd=ROOT, timeout=120)
    assert real.returncode == 2
    lines = (real.stdout + real.stderr).splitlines()
    assert len(shown) == len(lines) == 2, (shown, lines)
    for want, got in zip(shown, lines, strict=True):
        assert got.startswith(want.removesuffix("...")), (want, got)


#: shipped workflows a test runs whole through shipped_run (and checks what they record)
RUN_BY_TESTS = {*LIBVIRT_WORKFLOWS, "tls", "evacuation"}

#: substitutions for examples that address hosts that do not exist here: they run with --dry-run
REAL_HOSTS = re.compile(r"qemu\+(tls|ssh)://")


def _adapt(example: str) -> tuple[str | None, str]:
    if example in ADAPTED:
        return ADAPTED[example]
    if example.startswith("migflow run ") and REAL_HOSTS.search(example):
        return example + " --dry-run", "real hosts of the example do not exist here: the plan is checked, no host is touched"
    if example.startswith("migflow run ") and "--dry-run" not in example:
        name = re.search(r"workflows/(\w+)\.toml", example)
        if name and name.group(1) in RUN_BY_TESTS:
            return None, f"the run itself is executed by the session fixture shipped_run({name.group(1)!r}) and checked by the tests that use it"
        return example + " --dry-run", "no test runs this whole sweep (minutes): its plan is checked here"
    if "--delay-ms" in example or "--jitter-ms" in example or "--loss-pct" in example:
        return example, "netem"  # runs; on a kernel without netem it must fail with the clear message
    return example, ""


ALL = {**_doc_examples(), **_help_examples()}


def _pythonpath() -> dict:
    import os

    return {"PYTHONPATH": os.environ["PYTHONPATH"]} if os.environ.get("PYTHONPATH") else {}


@pytest.fixture(scope="module")
def scratch(shipped_run, tmp_path_factory):
    main_db, main = shipped_run("zstack_default")
    seed_db, seed = shipped_run("seed_comparison")
    assert main.returncode == 0 and seed.returncode == 0, main.stderr + seed.stderr
    d = tmp_path_factory.mktemp("examples")
    shutil.copy(main_db, d / "results.duckdb")
    shutil.copy(seed_db, d / "seed.duckdb")
    (d / "lab").mkdir()
    shutil.copy(main_db, d / "lab" / "results.duckdb")
    (d / "workflows").symlink_to(ROOT / "workflows")
    (d / "docs").symlink_to(ROOT / "docs")
    shutil.copy(ROOT / "workflows" / "p2p.toml", d / "my.toml")
    return d


def test_examples_were_found():
    assert len(ALL) >= 40, sorted(ALL)
    assert any(where.startswith("migflow") for where in ALL.values()) and any(where == "README.md" for where in ALL.values())


@pytest.mark.parametrize("example", sorted(ALL))
def test_example_runs(scratch, example):
    command, why = _adapt(example)
    if command is None:
        assert why, example
        return  # executed elsewhere, as `why` says
    bin_dir = Path(sys.executable).parent
    proc = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command],
        check=False,
        capture_output=True,
        text=True,
        cwd=scratch,
        timeout=600,
        env={"PATH": f"{bin_dir}:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(scratch), "LANG": "C.UTF-8", **_pythonpath()},
    )
    shown = f"{example}  ({ALL[example]})\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    if example in EXPECTED_STATUS:
        assert proc.returncode == EXPECTED_STATUS[example], shown
        return
    if why == "netem" and "no netem qdisc" in proc.stderr:
        assert proc.returncode == 4, shown  # this kernel cannot shape delay: the documented error
        return
    assert proc.returncode == 0, shown
    assert "Traceback" not in proc.stderr, shown
    if "| jq" in command:
        assert proc.stdout.strip(), f"the pipe printed nothing: {shown}"
    if command.startswith("migflow lab shape") or (command.startswith("migflow lab up") and "--" in command):
        subprocess.run([str(bin_dir / "migflow"), "lab", "shape", "--clear"], check=True, capture_output=True)


def test_the_seed_summary_query_of_seed_comparison_runs(scratch):
    """workflows/seed_comparison.toml points at docs/sql/seed_summary.sql: it runs and shows every mode."""
    proc = migflow("query", "--results", "seed.duckdb", "--format", "json", "--file", ROOT / "docs" / "sql" / "seed_summary.sql", cwd=scratch, timeout=120)
    assert proc.returncode == 0, proc.stderr
    import json

    rows = json.loads(proc.stdout)
    assert {r["mode"] for r in rows} == {"managed-direct", "p2p", "p2p-tunnelled", "unmanaged-direct", "zstack"}
    direct = [r for r in rows if r["mode"] == "unmanaged-direct"]
    assert direct and all(r["legs"] == 0 and r["failed"] == 2 and "not supported" in r["error"] for r in direct)
    assert all(r["total_ms"] > 0 and r["job_ms"] >= r["total_ms"] for r in rows if r["legs"])
