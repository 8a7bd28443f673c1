"""The engine's step loop in one process (src/migflow/engine.py, ``run_one`` and ``_on_signal``).

What each step's row and the run's row say after a failure, a failure to start,
a lost domain, a plugin that fails at the end, and Ctrl-C or SIGTERM in a step,
in an always-run step, or twice there.  The fake backend does the bookkeeping
only (tests/fakes.py); signals are sent to this process, the way a terminal does.
test_engine.py checks the same from a separate process, slower.
"""

from __future__ import annotations

import json
import os
import signal
import time

import duckdb
import fakes
import pytest
from test_engine import HOSTS, workflow

from migflow.context import Interrupted
from migflow.engine import Engine
from migflow.errors import StepError
from migflow.hookspecs import hookimpl
from migflow.plugins import get_plugins
from migflow.registry import StepSpec

SEEN: list[str] = []  # what the test steps saw, in order


def _note(ctx, options):
    SEEN.append(options.get("name", "note"))
    return options.get("returns", {"noted": True})


def _fail(ctx, options):
    SEEN.append("fail")
    raise StepError(options.get("message", "boom"))


def _signal(ctx, options):
    """Send this process ``count`` signals, a moment apart, then finish (unless one interrupts)."""
    SEEN.append("signal")
    for _ in range(options.get("count", 1)):
        os.kill(os.getpid(), options.get("signum", signal.SIGINT))
        time.sleep(0.2)
    SEEN.append("signal done")
    return {"finished": True}


def _sleep(ctx, options):
    time.sleep(options["seconds"])


def _lose(ctx, options):
    ctx.status = "lost"
    ctx.error = "the domain runs on neither host"


def _spool_status(ctx, options):
    """What the spool says about this very step while it runs (a killed migflow leaves that)."""
    data = json.loads(ctx.recorder.path.read_text())
    return {"spooled": [s["status"] for s in data["steps"] if s["position"] == options["position"]]}


def _arm_fail(ctx, options):
    raise StepError("cannot subscribe")


def _arm_note(ctx, options):
    SEEN.append(f"armed {options.get('name')}")


def _arm_signal(ctx, options):
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.5)
    SEEN.append("arm finished")


class Clock:
    """The engine's monotonic clock, moved on by the step ``tick`` only."""

    now = 1000.0


def _tick(ctx, options):
    Clock.now += options["seconds"]


def _bug(ctx, options):
    return {}["missing"]  # a plugin bug, not a host failure


class Steps:
    """Test steps; ``cleanup`` and ``cleanup-signal`` are always-run steps, like restore."""

    @hookimpl
    def migflow_register_steps(self, register):
        anything = {"type": "object"}
        register(StepSpec("note", _note, anything))
        register(StepSpec("fail", _fail, anything))
        register(StepSpec("signal", _signal, anything))
        register(StepSpec("nap", _sleep, anything))
        register(StepSpec("lose", _lose, anything))
        register(StepSpec("spooled", _spool_status, anything))
        register(StepSpec("cleanup", _note, anything, always_run=True))
        register(StepSpec("cleanup-fail", _fail, anything, always_run=True))
        register(StepSpec("cleanup-signal", _signal, anything, always_run=True))
        register(StepSpec("armed", _note, anything, arm=_arm_note))
        register(StepSpec("arm-fails", _note, anything, arm=_arm_fail))
        register(StepSpec("arm-signal", _note, anything, arm=_arm_signal))
        register(StepSpec("tick", _tick, anything))
        register(StepSpec("bug", _bug, anything))


class SessionSpy:
    """Which session each run sees."""

    def __init__(self):
        self.started, self.runs = None, []

    @hookimpl
    def migflow_workflow_started(self, session):
        self.started = session

    @hookimpl
    def migflow_run_started(self, ctx):
        self.runs.append(ctx.session)


class FailsAtTheEnd:
    @hookimpl
    def migflow_run_finished(self, ctx):
        raise RuntimeError("observer broke")


def run(tmp_path, steps, repetitions=1, extra=()):
    """Run a workflow of ``steps``; (summaries, steps rows, runs rows, echoed lines)."""
    SEEN.clear()
    fakes.FakeBackend.calls = []
    said: list[str] = []
    db = tmp_path / "r.duckdb"
    summaries = Engine(get_plugins(extra=(fakes, Steps(), *extra)), workflow(steps, repetitions=repetitions), HOSTS, str(db), echo=said.append).run()
    with duckdb.connect(str(db), read_only=True) as con:
        step_rows = con.execute("SELECT step, status, error, duration_ms, started_at IS NOT NULL, result FROM steps ORDER BY run_id, position").fetchall()
        run_rows = con.execute("SELECT status, error FROM runs ORDER BY plan_index").fetchall()
    return summaries, step_rows, run_rows, said


def brief(step_rows):
    return [(name, status, error) for name, status, error, *_ in step_rows]


def test_a_failure_skips_the_rest_but_always_run_steps_and_the_first_failure_is_the_runs(tmp_path):
    steps = [
        ("note", {"name": "a"}),
        ("fail", {"message": "kaboom"}),
        ("note", {"name": "b"}),
        ("cleanup-fail", {"message": "also"}),
        ("cleanup", {"name": "c"}),
    ]
    [summary], rows, runs, said = run(tmp_path, steps)
    assert SEEN == ["a", "fail", "fail", "c"]
    assert brief(rows) == [
        ("note", "completed", None),
        ("fail", "failed", "kaboom"),
        ("note", "skipped", None),
        ("cleanup-fail", "failed", "also"),
        ("cleanup", "completed", None),
    ]
    assert rows[2][3] == 0.0 and rows[2][4], "a skipped step has a start and no duration"
    assert runs == [("failed", "step 'fail' failed: kaboom")]
    assert (summary.status, summary.error, summary.ingested) == ("failed", "step 'fail' failed: kaboom", True)
    assert fakes.FakeBackend.calls == ["open", "close"]
    assert not [line for line in said if "written" in line], said  # a run that reached the database says nothing about it


def test_a_completed_run_records_results_and_durations(tmp_path):
    [summary], rows, runs, _ = run(tmp_path, [("nap", {"seconds": 0.15}), ("note", {"returns": 42}), ("note", {"returns": None}), ("spooled", {"position": 3})])
    assert summary.status == "completed" and summary.error is None and runs == [("completed", None)]
    assert 150 <= rows[0][3] < 5000, rows[0]  # ms (the exact arithmetic: test_a_steps_duration_is_the_engines_clock_in_ms)
    assert [json.loads(r[5]) if r[5] else None for r in rows[1:]] == [{"value": 42}, None, {"spooled": ["running"]}]


def test_a_steps_duration_is_the_engines_clock_in_ms(tmp_path, monkeypatch):
    import migflow.engine

    clock = type("Time", (), {"monotonic": staticmethod(lambda: Clock.now), "time": time.time, "strftime": time.strftime, "gmtime": time.gmtime})
    monkeypatch.setattr(migflow.engine, "time", clock)
    _, rows, _, _ = run(tmp_path, [("tick", {"seconds": 0.25}), ("note", {})])
    assert [r[3] for r in rows] == [250.0, 0.0]


def test_every_run_of_a_workflow_shares_its_session(tmp_path):
    spy = SessionSpy()
    run(tmp_path, [("note", {})], repetitions=2, extra=(spy,))
    assert spy.started is not None and spy.runs == [spy.started, spy.started]
    assert spy.runs[0] is spy.runs[1]


def test_a_bug_keeps_its_traceback_in_the_run_and_prints_it_only_when_debugging(tmp_path, monkeypatch):
    monkeypatch.delenv("MIGFLOW_DEBUG", raising=False)
    [summary], _, _, said = run(tmp_path, [("bug", {})])
    assert summary.error == "step 'bug' failed: KeyError: 'missing'"
    assert not [line for line in said if "Traceback" in line], said
    monkeypatch.setenv("MIGFLOW_DEBUG", "1")
    _, _, _, said = run(tmp_path / "debug", [("bug", {})])
    [text] = [line for line in said if "Traceback" in line]
    assert "KeyError: 'missing'" in text and "_bug" in text


def test_after_a_run_a_signal_only_stops_the_engine(tmp_path):
    """Outside step code a signal never raises (it would escape into the bookkeeping)."""
    for steps in ([], [("cleanup", {})]):
        said: list[str] = []
        wf = workflow(steps)
        engine = Engine(get_plugins(extra=(fakes, Steps())), wf, HOSTS, str(tmp_path / f"r{len(steps)}.duckdb"), echo=said.append)
        assert engine.run_one(wf.plan[0]).status == "completed"
        engine._on_signal(signal.SIGINT, None)
        assert said[-1] == "interrupted by Ctrl-C: stopping after the current step (always-run steps still run)"


def test_a_run_that_cannot_start_runs_only_its_always_run_steps(tmp_path):
    [summary], rows, runs, _ = run(tmp_path, [("arm-fails", {}), ("note", {}), ("cleanup", {"name": "c"})])
    assert SEEN == ["c"]
    assert brief(rows) == [("arm-fails", "skipped", None), ("note", "skipped", None), ("cleanup", "completed", None)]
    assert runs == [("failed", "could not start the run: cannot subscribe")] and summary.status == "failed"


def test_every_step_is_armed_with_its_options_before_the_first_runs(tmp_path):
    run(tmp_path, [("note", {"name": "first"}), ("armed", {"name": "x"}), ("armed", {"name": "y"})])
    assert SEEN == ["armed x", "armed y", "first", "x", "y"]


def test_without_a_backend_always_run_steps_fail_and_say_why(tmp_path):
    SEEN.clear()
    plugins = get_plugins(extra=(fakes, Steps()))
    wf = workflow([("note", {}), ("cleanup", {})])
    wf.backend = "no-such-backend"
    engine = Engine(plugins, wf, HOSTS, str(tmp_path / "r.duckdb"), echo=lambda s: None)
    summary = engine.run_one(wf.plan[0])
    assert summary.status == "failed" and summary.error.startswith("could not start the run: no plugin provides the backend 'no-such-backend'")
    assert SEEN == []
    with duckdb.connect(str(tmp_path / "r.duckdb"), read_only=True) as con:
        assert con.execute("SELECT step, status, error FROM steps ORDER BY position").fetchall() == [
            ("note", "skipped", None),
            ("cleanup", "failed", "no backend connection"),
        ]


def test_a_lost_domain_stays_lost(tmp_path):
    [summary], _, runs, _ = run(tmp_path, [("lose", {}), ("cleanup", {})])
    assert summary.status == "lost" and runs == [("lost", "the domain runs on neither host")]


def test_a_plugin_failing_at_the_end_of_a_run_is_a_warning(tmp_path):
    [summary], _, runs, said = run(tmp_path, [("note", {})], extra=(FailsAtTheEnd(),))
    assert summary.status == "completed" and runs == [("completed", None)]
    assert "warning: a plugin failed in migflow_run_finished: RuntimeError: observer broke" in said
    assert fakes.FakeBackend.calls == ["open", "close"]


@pytest.mark.parametrize(("signum", "reason"), [(signal.SIGINT, "interrupted by Ctrl-C"), (signal.SIGTERM, "interrupted by signal SIGTERM")])
def test_a_signal_interrupts_a_step_at_once_and_only_always_run_steps_follow(tmp_path, signum, reason):
    summaries, rows, runs, _ = run(tmp_path, [("signal", {"signum": signum}), ("note", {}), ("cleanup", {"name": "c"})], repetitions=2)
    assert SEEN == ["signal", "c"], "the step stops at the signal"
    assert brief(rows) == [("signal", "interrupted", reason), ("note", "skipped", None), ("cleanup", "completed", None)]
    assert runs == [("interrupted", reason)] and [s.status for s in summaries] == ["interrupted"]


def test_a_signal_while_arming_interrupts_the_run(tmp_path):
    _, rows, runs, _ = run(tmp_path, [("arm-signal", {}), ("cleanup", {"name": "c"})])
    assert brief(rows) == [("arm-signal", "skipped", None), ("cleanup", "completed", None)]
    assert runs == [("interrupted", "interrupted by signal SIGTERM")]
    assert "arm finished" not in SEEN, "interrupted at once"


def test_one_signal_lets_an_always_run_step_finish_and_ends_the_run(tmp_path):
    _, rows, runs, said = run(tmp_path, [("cleanup-signal", {}), ("note", {}), ("cleanup", {"name": "c"})], repetitions=2)
    assert SEEN == ["signal", "signal done", "c"]
    assert brief(rows) == [("cleanup-signal", "completed", None), ("note", "skipped", None), ("cleanup", "completed", None)]
    assert json.loads(rows[0][5]) == {"finished": True}
    assert runs == [("interrupted", "interrupted by Ctrl-C")]
    assert "interrupted by Ctrl-C: still restoring the domain; send the signal again to abandon the restore" in said


def test_a_second_signal_abandons_the_always_run_step(tmp_path):
    _, rows, runs, _ = run(tmp_path, [("cleanup-signal", {"count": 2}), ("cleanup", {"name": "c"})])
    assert SEEN == ["signal", "c"]
    assert brief(rows) == [("cleanup-signal", "interrupted", "interrupted by Ctrl-C"), ("cleanup", "completed", None)]
    assert runs == [("interrupted", "interrupted by Ctrl-C")]


def test_a_signal_after_a_failure_keeps_the_failure_as_the_runs_reason(tmp_path):
    _, rows, runs, _ = run(tmp_path, [("fail", {"message": "first"}), ("cleanup-signal", {"count": 2}), ("cleanup", {"name": "c"})])
    assert brief(rows) == [("fail", "failed", "first"), ("cleanup-signal", "interrupted", "interrupted by Ctrl-C"), ("cleanup", "completed", None)]
    assert runs == [("failed", "step 'fail' failed: first")]


def _engine(said):
    return Engine(get_plugins(extra=(fakes,)), workflow([("restore", {})]), HOSTS, "unused.duckdb", echo=said.append)


def test_a_signal_between_steps_stops_after_the_current_step():
    said: list[str] = []
    engine = _engine(said)
    engine._on_signal(signal.SIGTERM, None)  # neither in step code nor in an always-run step: no exception
    engine._on_signal(signal.SIGINT, None)
    assert engine.interrupted == "interrupted by signal SIGTERM", "the first reason is kept"
    assert said == [
        "interrupted by signal SIGTERM: stopping after the current step (always-run steps still run)",
        "interrupted by Ctrl-C: stopping after the current step (always-run steps still run)",  # each says what it got
    ]


def test_a_signal_in_an_always_run_step_is_a_warning_and_the_second_interrupts():
    said: list[str] = []
    engine = _engine(said)
    engine._protected = True
    engine._on_signal(signal.SIGINT, None)
    assert said == ["interrupted by Ctrl-C: still restoring the domain; send the signal again to abandon the restore"]
    assert (engine._protected, engine._armed) == (False, True)
    with pytest.raises(Interrupted, match="interrupted by Ctrl-C"):
        engine._on_signal(signal.SIGINT, None)
    assert engine._armed is False
    engine._on_signal(signal.SIGINT, None)  # disarmed: no second exception
    assert said[-1].endswith("stopping after the current step (always-run steps still run)")
