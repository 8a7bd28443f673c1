"""Bad input through the real command line: one clear message, the documented
exit status (docs/cli.md), never a traceback.

Each case writes its workflow (a valid one with one change) into a fresh
folder and runs ``python -m migflow ...`` there.  Nothing here touches the lab
except the missing-domain case (marked ``lab``): the other runs stop before
any host is contacted (``--dry-run``, a refused option, an unwritable results
file) or connect to a closed port on 127.0.0.1.

The detailed wording of validation messages is tested in test_workflow.py;
this file checks what a user sees at the command line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pytest
from cli_runner import migflow, user_env

# A valid workflow; each case replaces one piece.
BASE = {
    "head": 'name = "t"',
    "domain": '[domain]\nname = "guest"',
    "prepare": '[[steps]]\nuse = "prepare-domain"',
    "migrate": '[[steps]]\nuse = "migrate"\nmode = "p2p"',
    "collect": '[[steps]]\nuse = "collect-qmp"',
    "restore": '[[steps]]\nuse = "restore"',
}


def workflow(**parts: str) -> str:
    return "\n\n".join({**BASE, **parts}.values()) + "\n"


CLOSED = "qemu+tcp://127.0.0.1:1/system"  # nothing listens on port 1
CLOSED2 = "qemu+tcp://127.0.0.1:2/system"


@dataclass
class Case:
    id: str
    args: list[str]  # after `migflow`; WF is the workflow file, TMP the case's folder
    status: int
    says: str  # must appear in the one message
    text: str | bytes | None = None  # the workflow file's content (None: no file written)
    setup: object = None  # setup(tmp_path) for files the case needs
    env: dict = field(default_factory=dict)


def _unwritable_dir(tmp: Path) -> str:
    """A directory this process cannot create files in (root ignores permission bits)."""
    if os.geteuid() == 0:
        return "/sys"
    d = tmp / "ro"
    d.mkdir()
    d.chmod(0o555)
    return str(d)


def _results_db(tmp: Path) -> None:
    con = duckdb.connect(str(tmp / "r.duckdb"))
    con.execute("CREATE TABLE runs (run_id VARCHAR)")
    con.execute("INSERT INTO runs VALUES ('a')")
    con.close()


RUN = ["run", "WF", "--dry-run", "--results", "TMP/r.duckdb"]

CASES = [
    # -- the file ---------------------------------------------------------------------
    Case("malformed-toml", RUN, 2, "TOML syntax error", 'name = "t"\n[domain\nname = "x"\n'),
    Case("unclosed-string", RUN, 2, "TOML syntax error", 'name = "t\n'),
    Case("duplicate-key", RUN, 2, "TOML syntax error", 'name = "a"\nname = "b"\n'),
    Case("empty-file", RUN, 2, "the file is empty", ""),
    Case("not-utf8", RUN, 2, "is not UTF-8 text", b'name = "caf\xe9"\n'),
    Case("nul-bytes", RUN, 2, "is not a text file", b'name = "t"\x00\n'),
    Case("missing-file", ["run", "TMP/nope.toml", "--dry-run"], 2, "no such file"),
    Case("a-directory", ["run", "TMP", "--dry-run"], 2, "is a directory"),
    Case("validate-a-directory", ["validate", "TMP"], 2, "is a directory"),
    Case("fifo", ["run", "TMP/fifo.toml", "--dry-run"], 2, "is not a regular file", setup=lambda t: os.mkfifo(t / "fifo.toml")),
    # -- the schema -------------------------------------------------------------------
    Case("unknown-key", RUN, 2, "unknown key 'colour'", workflow(head='name = "t"\ncolour = "blue"')),
    Case("wrong-type", RUN, 2, "expected an integer", workflow(head='name = "t"\nrepetitions = "two"')),
    Case("steps-not-a-list", RUN, 2, "steps: expected a list, got 1", 'name = "t"\nsteps = 1\n[domain]\nname = "g"\n'),  # crashed the loader (fuzzing)
    Case("missing-name", RUN, 2, "missing required key 'name'", workflow(head="")),
    Case("two-domain-choices", RUN, 2, "exactly one of", workflow(domain='[domain]\nname = "g"\n[domain.create]\nmemory_mib = 64')),
    Case("unknown-step-option", RUN, 2, "unknown option 'flagz'", workflow(migrate='[[steps]]\nuse = "migrate"\nmode = "p2p"\nflagz = []')),
    Case("unknown-flag", RUN, 2, "'fast' is not one of", workflow(migrate='[[steps]]\nuse = "migrate"\nmode = "p2p"\nflags = ["fast"]')),
    Case("unknown-parameter", RUN, 2, "unknown parameter 'mod'", workflow(migrate='[[steps]]\nuse = "migrate"\nmode = "${mod}"\n\n[matrix]\nmode = ["p2p"]')),
    # -- names the plugins must provide -----------------------------------------------------
    Case("unknown-step", RUN, 2, "did you mean 'prepare-domain'", workflow(prepare='[[steps]]\nuse = "prepare-domian"')),
    Case("unknown-backend", RUN, 2, "no plugin provides the backend 'xen'", workflow(head='name = "t"\nbackend = "xen"')),
    Case("unknown-mode", RUN, 2, "no plugin provides the migration mode 'warp'", workflow(migrate='[[steps]]\nuse = "migrate"\nmode = "warp"')),
    Case(
        "missing-plugin", RUN, 3, "workflow needs plugin 'migflow-nothere', which is not installed", workflow(head='name = "t"\nrequires = ["migflow-nothere"]')
    ),
    # -- impossible combinations --------------------------------------------------------------
    Case(
        "tunnelled-postcopy",
        RUN,
        2,
        "cannot be combined with postcopy",
        workflow(migrate='[[steps]]\nuse = "migrate"\nmode = "p2p-tunnelled"\nflags = ["postcopy"]'),
    ),
    Case(
        "postcopy-action-without-flag",
        RUN,
        2,
        "action 'postcopy' needs the 'postcopy' flag",
        workflow(migrate='[[steps]]\nuse = "migrate"\nmode = "p2p"\ntimeout = { seconds = 30, action = "postcopy" }'),
    ),
    # -- rules of the hosts (libvirt refuses these at migration time; migflow at validation) ------------
    *[
        Case(
            f"{param}-without-{cap}",
            RUN,
            2,
            f"{param} tunes {cap}, which is off in this scenario",
            workflow(migrate=f'[[steps]]\nuse = "set-capabilities"\nparameters = {{ {param} = {value} }}\n\n[[steps]]\nuse = "migrate"\nmode = "p2p"'),
        )
        for param, cap, value in (
            ("cpu-throttle-initial", "auto-converge", 30),
            ("cpu-throttle-increment", "auto-converge", 10),
            ("multifd-channels", "multifd", 4),
            ("xbzrle-cache-size", "xbzrle", 67108864),
            ("max-postcopy-bandwidth", "postcopy-ram", 1000000),
        )
    ],
    Case(
        "removed-compress-capability",
        RUN,
        2,
        "QEMU deprecated the compress capability in 8.2 and removed it in 9.1",
        workflow(migrate='[[steps]]\nuse = "set-capabilities"\ncapabilities = { compress = true }\n\n[[steps]]\nuse = "migrate"\nmode = "p2p"'),
    ),
    Case(
        "removed-compress-level",
        RUN,
        2,
        "QEMU removed compress-level",
        workflow(migrate='[[steps]]\nuse = "set-capabilities"\nparameters = { compress-level = 3 }\n\n[[steps]]\nuse = "migrate"\nmode = "p2p"'),
    ),
    Case(
        "libvirt-managed-capability",
        RUN,
        2,
        "the libvirt backend cannot set return-path: libvirt switches return-path on",
        workflow(migrate='[[steps]]\nuse = "set-capabilities"\ncapabilities = { return-path = true }\n\n[[steps]]\nuse = "migrate"\nmode = "p2p"'),
    ),
    Case(
        "adaptive-max-below-minimum",
        RUN,
        2,
        "max_repetitions (3) must exceed repetitions (5)",
        workflow(head='name = "t"\nrepetitions = 5\n[adaptive]\nmetric = "downtime"\nci_width = 0.1\nmax_repetitions = 3'),
    ),
    Case(
        "adaptive-unknown-metric",
        RUN,
        2,
        "'downtim' is not one of",
        workflow(head='name = "t"\n[adaptive]\nmetric = "downtim"\nci_width = 0.1\nmax_repetitions = 3'),
    ),
    Case(
        "all-excluded",
        RUN,
        2,
        "no scenario is left",
        workflow(migrate='[[steps]]\nuse = "migrate"\nmode = "${mode}"\n\n[matrix]\nmode = ["p2p"]\nexclude = [{ mode = "p2p" }]'),
    ),
    # -- absurd numbers -------------------------------------------------------------------------
    Case("repetitions-1e9", RUN, 2, "expected an integer ≤ 1000, got 1000000000", workflow(head='name = "t"\nrepetitions = 1000000000')),
    Case("repetitions-2^70", RUN, 2, "expected an integer ≤ 1000", workflow(head='name = "t"\nrepetitions = 1180591620717411303424')),
    Case("repetitions-0", RUN, 2, "expected an integer ≥ 1", workflow(head='name = "t"\nrepetitions = 0')),
    Case(
        "matrix-10^7-scenarios",
        RUN,
        2,
        "the matrix makes up to 10,000,000 scenarios",  # refused at once, not after minutes
        workflow(migrate='[[steps]]\nuse = "migrate"\nmode = "p2p"\n\n[matrix]\n' + "\n".join(f"p{i} = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]" for i in range(7))),
    ),
    Case(
        "runs-2*10^5",
        ["run", "WF", "--dry-run", "-n", "1000"],
        2,
        "200 scenario(s) x 1,000 repetitions = 200,000 runs",
        workflow(
            migrate='[[steps]]\nuse = "migrate"\nmode = "p2p"\n\n[matrix]\na = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]\nb = [' + ", ".join(map(str, range(20))) + "]"
        ),
    ),
    Case("option-n-1e9", ["run", "WF", "--dry-run", "-n", "1000000000"], 2, "is not in the range 1<=x<=1000", workflow()),
    Case("option-n-text", ["run", "WF", "--dry-run", "-n", "many"], 2, "'many' is not a valid integer", workflow()),
    Case("memory-negative", RUN, 2, "expected an integer ≥ 16, got -1", workflow(domain="[domain.create]\nmemory_mib = -1")),
    Case("memory-float", RUN, 2, "expected an integer", workflow(domain="[domain.create]\nmemory_mib = 256.5")),
    Case(
        "timeout-1e300",
        RUN,
        2,
        "expected a number ≤ 86400, got 1e+300",
        workflow(migrate='[[steps]]\nuse = "migrate"\nmode = "p2p"\ntimeout = { seconds = 1e300 }'),
    ),
    Case("timeout-zero", RUN, 2, "expected a number > 0", workflow(migrate='[[steps]]\nuse = "migrate"\nmode = "p2p"\ntimeout = { seconds = 0 }')),
    Case("interval-negative", RUN, 2, "expected a number ≥ 0, got -5", workflow(collect='[[steps]]\nuse = "collect-qmp"\ninterval_ms = -5')),
    # TOML allows nan and inf; JSON Schema bounds let NaN through (every comparison is false)
    Case("timeout-nan", RUN, 2, "expected a finite number, got nan", workflow(migrate='[[steps]]\nuse = "migrate"\nmode = "p2p"\ntimeout = { seconds = nan }')),
    Case("timeout-inf", RUN, 2, "expected a finite number, got inf", workflow(migrate='[[steps]]\nuse = "migrate"\nmode = "p2p"\ntimeout = { seconds = inf }')),
    Case("interval-nan", RUN, 2, "expected a finite number, got nan", workflow(collect='[[steps]]\nuse = "collect-qmp"\ninterval_ms = nan')),
    Case("warmup-minus-inf", RUN, 2, "expected a finite number, got -inf", workflow(prepare='[[steps]]\nuse = "prepare-domain"\nwarmup_s = -inf')),
    Case("memory-nan", RUN, 2, "expected a finite number, got nan", workflow(domain="[domain.create]\nmemory_mib = nan")),
    Case(
        "nan-in-matrix",
        RUN,
        2,
        "expected a finite number, got nan",
        workflow(collect='[[steps]]\nuse = "collect-qmp"\ninterval_ms = "${i}"\n\n[matrix]\ni = [100, nan]'),
    ),
    Case("nan-in-validate", ["validate", "WF"], 2, "expected a finite number, got nan", workflow(collect='[[steps]]\nuse = "collect-qmp"\ninterval_ms = nan')),
    # -- hosts -------------------------------------------------------------------------------------
    Case("src-without-dst", ["run", "WF", "--dry-run", "--src", CLOSED], 2, "give both hosts", workflow()),
    Case("same-uri-twice", ["run", "WF", "--dry-run", "--src", CLOSED, "--dst", CLOSED], 2, "source and destination are the same URI", workflow()),
    Case(
        "same-uri-redacted",
        ["run", "WF", "--dry-run", "--src", "qemu+ssh://u:pw@h/system", "--dst", "qemu+ssh://u:pw@h/system"],
        2,
        "qemu+ssh://u:***@h/system",
        workflow(),
    ),
    Case("src-not-a-uri", ["run", "WF", "--dry-run", "--src", "host-a", "--dst", CLOSED], 2, "the source host 'host-a' is not a libvirt URI", workflow()),
    Case("dst-bad-port", ["run", "WF", "--dry-run", "--src", CLOSED, "--dst", "qemu+tcp://h:port/system"], 2, "is not a libvirt URI", workflow()),
    Case("hosts-incomplete", RUN, 2, "missing required key 'destination'", workflow(head='name = "t"\n[hosts]\nsource = "qemu+tcp://a/system"')),
    Case(
        "unreachable-host",
        ["run", "WF", "--src", CLOSED, "--dst", CLOSED2, "--results", "TMP/r.duckdb"],
        4,
        "cannot connect to qemu+tcp://127.0.0.1:1/system",
        workflow(),
    ),
    Case(
        "unreachable-host-secret",
        ["run", "WF", "--src", "qemu+tcp://root:hunter2@127.0.0.1:1/system?keyfile=/k", "--dst", CLOSED2, "--results", "TMP/r.duckdb"],
        4,
        "cannot connect to qemu+tcp://root:***@127.0.0.1:1/system?keyfile=***",
        workflow(),
    ),
    # -- the results file -----------------------------------------------------------------------------
    Case("results-missing-dir", ["run", "WF", "--dry-run", "--results", "TMP/no/such/dir/r.duckdb"], 5, "does not exist", workflow()),
    Case("results-unwritable", ["run", "WF", "--dry-run", "--results", "UNWRITABLE/r.duckdb"], 5, "is not writable", workflow()),
    Case("results-is-a-dir", ["run", "WF", "--dry-run", "--results", "TMP"], 5, "it is a directory", workflow()),
    Case("results-not-duckdb", ["run", "WF", "--dry-run", "--results", "WF"], 5, "is not a DuckDB database", workflow()),
    Case("results-env-missing-dir", ["run", "WF", "--dry-run"], 5, "does not exist", workflow(), env={"MIGFLOW_RESULTS": "/nonexistent-migflow/r.duckdb"}),
    # -- query --------------------------------------------------------------------------------------
    Case("query-bad-sql", ["query", "SELEC 1", "--results", "TMP/r.duckdb"], 2, "SQL error: Parser Error", setup=_results_db),
    Case("query-unknown-column", ["query", "SELECT nope FROM runs", "--results", "TMP/r.duckdb"], 2, "SQL error: Binder Error", setup=_results_db),
    Case("query-write", ["query", "DELETE FROM runs", "--results", "TMP/r.duckdb"], 2, "refused: DELETE statements are not allowed", setup=_results_db),
    Case("query-empty", ["query", " ; ", "--results", "TMP/r.duckdb"], 2, "no SQL statement given", setup=_results_db),
    Case("query-no-db", ["query", "SELECT 1", "--results", "TMP/none.duckdb"], 5, "no results database", setup=None),
    Case("query-not-duckdb", ["query", "SELECT 1", "--results", "WF"], 5, "is not a valid DuckDB database file", workflow()),
    Case("unknown-command-option", ["run", "WF", "--frobnicate"], 2, "--frobnicate", workflow()),
]


def _args(case: Case, tmp: Path) -> list[str]:
    subst = {"WF": str(tmp / "wf.toml"), "TMP": str(tmp), "UNWRITABLE": _unwritable_dir(tmp) if any("UNWRITABLE" in a for a in case.args) else ""}
    out = []
    for a in case.args:
        for k, v in subst.items():
            if a == k or a.startswith(k + "/"):
                a = v + a[len(k) :]
                break
        out.append(a)
    return out


def messages(proc) -> list[str]:
    """The error lines: ``migflow: ...`` (warnings aside), click's ``Error: ...``, and
    the issue lines of ``migflow validate``."""
    lines = (proc.stdout + proc.stderr).splitlines()
    errors = [ln for ln in lines if (ln.startswith("migflow: ") and not ln.startswith("migflow: warning:")) or ln.startswith("Error: ")]
    issues = [ln for ln in lines if ln.startswith("  ") and ": " in ln and not ln.lstrip().startswith("hint:")]
    return errors, issues


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gives_one_clear_message_and_the_documented_status(case, tmp_path):
    if case.text is not None:
        (tmp_path / "wf.toml").write_bytes(case.text if isinstance(case.text, bytes) else case.text.encode())
    if case.setup:
        case.setup(tmp_path)
    proc = migflow(*_args(case, tmp_path), cwd=tmp_path, env=user_env(**case.env), timeout=120)
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out, out
    assert proc.returncode == case.status, out
    assert case.says in out, out
    errors, issues = messages(proc)
    if case.args[0] == "validate":
        assert len(proc.stdout.strip().splitlines()) == 1, out  # one FILE:LINE: PATH: message line
    else:
        assert len(errors) == 1, out
        if "problem" in errors[0]:
            assert errors[0] == "migflow: 1 problem found:" and len(issues) == 1, out
    # refused before anything ran: no results file was created
    if case.status != 0 and case.id != "query-bad-sql" and not case.setup:
        assert not (tmp_path / "r.duckdb").exists()
        assert not (tmp_path / "r.duckdb.spool").exists()


def test_every_documented_status_is_exercised():
    """docs/cli.md's table and this table agree (130 and 6 are tested elsewhere: test_failures.py and
    test_shared_hosts.py, which need a run holding the hosts; 70 cannot be provoked)."""
    doc = (Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text()
    documented = {int(line.split("|")[1]) for line in doc.splitlines() if line.startswith("| ") and line.split("|")[1].strip().isdigit()}
    assert {c.status for c in CASES} | {0, 1, 6, 70, 130} == documented


def test_query_data_stay_after_refused_writes(tmp_path):
    _results_db(tmp_path)
    proc = migflow("query", "SELECT run_id FROM runs", "--results", str(tmp_path / "r.duckdb"), "--format", "csv", cwd=tmp_path, env=user_env(), timeout=120)
    assert proc.returncode == 0 and proc.stdout.splitlines() == ["run_id", "a"], proc.stderr


# -- a missing domain on the lab: the run starts, fails, and is recorded ------------------------


@pytest.mark.lab
def test_missing_domain_is_a_recorded_failed_run(lab, tmp_path):
    (tmp_path / "wf.toml").write_text(workflow(domain='[domain]\nname = "nope"'))
    db = tmp_path / "r.duckdb"
    proc = migflow("run", str(tmp_path / "wf.toml"), "--results", str(db), cwd=tmp_path, env=user_env(), timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "Traceback" not in out
    assert "domain 'nope' exists on neither host" in out, out
    with duckdb.connect(str(db), read_only=True) as con:
        runs = con.execute("SELECT status, error FROM runs").fetchall()
        steps = con.execute("SELECT step, status FROM steps ORDER BY position").fetchall()
    assert len(runs) == 1 and runs[0][0] == "failed", runs
    assert runs[0][1].startswith("step 'prepare-domain' failed: domain 'nope' exists on neither host"), runs
    assert steps == [("prepare-domain", "failed"), ("migrate", "skipped"), ("collect-qmp", "completed"), ("restore", "completed")], steps
