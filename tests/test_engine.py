"""Engine bookkeeping with a fake backend: order, always-run steps, statuses, signals.

These never claim to test migration; the lab tests do that with real VMs.
"""

from __future__ import annotations

import itertools
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import fakes
import pytest

from migflow.engine import Engine
from migflow.hookspecs import hookimpl
from migflow.plugins import get_plugins
from migflow.registry import HostPair
from migflow.workflow.model import PlannedRun, Scenario, StepUse, Workflow

HOSTS = HostPair("fake://a", "fake://b")


def workflow(steps, repetitions=1, round_trip=False, fail_fast=False, **fields):
    """A one-scenario workflow of ``steps`` ((name, options) pairs) for the fake backend;
    ``fields`` sets other Workflow fields (``order``, ``seed``, ...)."""
    uses = [StepUse(name, opts, i) for i, (name, opts) in enumerate(steps)]
    sc = Scenario("default", {}, uses, {})
    wf = Workflow(
        name="t",
        description="",
        file="t.toml",
        backend="fake",
        source=None,
        destination=None,
        domain={},
        steps=uses,
        repetitions=repetitions,
        round_trip=round_trip,
        fail_fast=fail_fast,
        **fields,
    )
    wf.scenarios = [sc]
    wf.plan = [PlannedRun(i, sc, i + 1) for i in range(repetitions)]
    return wf


def rows(db, sql):
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql).fetchall()


@pytest.fixture
def plugins():
    fakes.FakeBackend.calls = []
    return get_plugins(extra=(fakes,))


def test_steps_run_in_order_and_everything_is_recorded(plugins, tmp_path):
    db = tmp_path / "r.duckdb"
    wf = workflow([("prepare-domain", {}), ("migrate", {"mode": "fake-mode"}), ("collect-qmp", {"interval_ms": 20}), ("restore", {})], round_trip=True)
    summaries = Engine(plugins, wf, HOSTS, str(db), echo=lambda s: None).run()
    assert [s.status for s in summaries] == ["completed"]
    assert fakes.FakeBackend.calls == ["open", "prepare", "migrate 1", "migrate 2", "restore", "close"]
    assert rows(db, "SELECT step, status FROM steps ORDER BY position") == [
        ("prepare-domain", "completed"),
        ("migrate", "completed"),
        ("collect-qmp", "completed"),
        ("restore", "completed"),
    ]
    legs = rows(db, "SELECT leg, source, destination, status, total_time, ram_transferred, wall_ms FROM migrations ORDER BY leg")
    assert [(ln[0], ln[1], ln[2], ln[3], ln[4], ln[5]) for ln in legs] == [
        (1, "fake://a", "fake://b", "completed", 300, 900),
        (2, "fake://b", "fake://a", "completed", 300, 900),
    ]
    assert all(250 <= ln[6] < 2000 for ln in legs)  # the fake sleeps 0.3 s per leg
    n = rows(db, "SELECT leg, count(*) FROM samples GROUP BY leg ORDER BY leg")
    assert [leg for leg, _ in n] == [1, 2] and all(c >= 5 for _, c in n)  # 20 ms sampling over 300 ms


def test_restore_runs_after_a_failing_step_and_the_run_is_failed(plugins, tmp_path):
    db = tmp_path / "r.duckdb"
    wf = workflow([("prepare-domain", {}), ("explode", {"message": "kaboom"}), ("migrate", {"mode": "fake-mode"}), ("restore", {})])
    [summary] = Engine(plugins, wf, HOSTS, str(db), echo=lambda s: None).run()
    assert summary.status == "failed" and "kaboom" in summary.error
    assert "restore" in fakes.FakeBackend.calls and "migrate 1" not in fakes.FakeBackend.calls
    assert rows(db, "SELECT step, status, error FROM steps ORDER BY position") == [
        ("prepare-domain", "completed", None),
        ("explode", "failed", "kaboom"),
        ("migrate", "skipped", None),
        ("restore", "completed", None),
    ]
    assert rows(db, "SELECT status, error FROM runs") == [("failed", "step 'explode' failed: kaboom")]


def test_one_failed_run_does_not_stop_the_others_unless_fail_fast(plugins, tmp_path):
    wf = workflow([("explode", {}), ("restore", {})], repetitions=3)
    assert len(Engine(plugins, wf, HOSTS, str(tmp_path / "a.duckdb"), echo=lambda s: None).run()) == 3
    wf = workflow([("explode", {}), ("restore", {})], repetitions=3, fail_fast=True)
    assert len(Engine(plugins, wf, HOSTS, str(tmp_path / "b.duckdb"), echo=lambda s: None).run()) == 1


SCRIPT = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    import fakes
    from test_engine import workflow, HOSTS
    from migflow.engine import Engine
    from migflow.plugins import get_plugins
    wf = workflow([("prepare-domain", {{}}), ("{step}", {opts}), ("restore", {{}})], repetitions=2)
    print("ready", flush=True)
    Engine(get_plugins(extra=(fakes,)), wf, HOSTS, {db!r}, echo=lambda s: print(s, flush=True)).run()
    print("calls", fakes.FakeBackend.calls, flush=True)
    """
)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("step,opts", [("sleep", {"seconds": 30}), ("migrate", {"mode": "fake-mode", "sleep": 30})])
def test_restore_runs_after_a_signal_and_the_run_is_interrupted(tmp_path, sig, step, opts):
    db = tmp_path / "r.duckdb"
    script = SCRIPT.format(tests=str(Path(__file__).parent), db=str(db), step=step, opts=repr(opts))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(1.5)
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=60)
    assert "'restore'" in out, out
    assert rows(db, "SELECT status FROM runs") == [("interrupted",)], out  # the second repetition never started
    steps = rows(db, "SELECT step, status FROM steps ORDER BY position")
    assert steps[0] == ("prepare-domain", "completed")
    assert steps[1] == (step, "interrupted")
    assert steps[2] == ("restore", "completed")
    if step == "migrate":
        assert rows(db, "SELECT status FROM migrations") == [("interrupted",)]


RESTORE_SCRIPT = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {tests!r})
    import fakes
    from test_engine import workflow, HOSTS
    from migflow.engine import Engine
    from migflow.plugins import get_plugins

    def slow_restore(self, ctx, options):
        print("restoring", flush=True)
        time.sleep({seconds})
        fakes.FakeBackend.calls.append("restore")
        return {{"restored": True}}

    fakes.FakeBackend.restore = slow_restore
    wf = workflow([("prepare-domain", {{}}), ("restore", {{}})])
    Engine(get_plugins(extra=(fakes,)), wf, HOSTS, {db!r}, echo=lambda s: print(s, flush=True)).run()
    print("calls", fakes.FakeBackend.calls, flush=True)
    """
)


@pytest.mark.parametrize("signals,restore_status", [(1, "completed"), (2, "interrupted")])
def test_a_signal_during_restore_lets_it_finish_a_second_abandons_it(tmp_path, signals, restore_status):
    db = tmp_path / "r.duckdb"
    script = RESTORE_SCRIPT.format(tests=str(Path(__file__).parent), db=str(db), seconds=3)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = proc.stdout.readline()
    while line and line.strip() != "restoring":
        line = proc.stdout.readline()
    for _ in range(signals):
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert "still restoring the domain" in out, out
    assert rows(db, "SELECT step, status FROM steps ORDER BY position") == [("prepare-domain", "completed"), ("restore", restore_status)]
    assert rows(db, "SELECT status FROM runs") == [("interrupted",)]
    assert ("'restore'" in out) == (signals == 1)


def _bug(ctx, options):
    return {}["missing"]  # a plugin bug, not a host failure


def test_an_unexpected_exception_keeps_its_traceback_in_the_run(plugins, tmp_path):
    from migflow.registry import StepSpec

    plugins.steps["buggy"] = StepSpec("buggy", _bug)
    db = tmp_path / "r.duckdb"
    [summary] = Engine(plugins, workflow([("buggy", {}), ("restore", {})]), HOSTS, str(db), echo=lambda s: None).run()
    assert summary.status == "failed" and summary.error == "step 'buggy' failed: KeyError: 'missing'"
    [(extra,)] = rows(db, "SELECT extra->>'$.traceback' FROM runs")
    assert "KeyError: 'missing'" in extra and "_bug" in extra


class MeasuringPlugin:
    """A third-party observer recording its own measurements through the public API."""

    @hookimpl
    def migflow_leg_finished(self, ctx, leg):
        ctx.record_metric("probe.leg_number_x10", leg.number * 10.0, "units", leg=leg, plugin="probe")

    @hookimpl
    def migflow_run_finished(self, ctx):
        ctx.record_metric("probe.legs", float(len(ctx.legs)), "legs", plugin="probe")


def test_a_plugins_metric_is_a_row_and_a_statistic(tmp_path):
    from migflow.records import open_readonly
    from migflow.records.analysis import report_data

    plugins = get_plugins(extra=(fakes, MeasuringPlugin()))
    db = tmp_path / "r.duckdb"
    wf = workflow(
        [("prepare-domain", {}), ("migrate", {"mode": "fake-mode", "sleep": 0.05}), ("collect-qmp", {}), ("restore", {})], repetitions=2, round_trip=True
    )
    summaries = Engine(plugins, wf, HOSTS, str(db), echo=lambda s: None).run()
    assert [s.status for s in summaries] == ["completed", "completed"]
    assert rows(db, "SELECT leg, name, value, unit, plugin FROM metrics WHERE plugin = 'probe' ORDER BY run_id, leg, name")[:3] == [
        (0, "probe.legs", 2.0, "legs", "probe"),
        (1, "probe.leg_number_x10", 10.0, "units", "probe"),
        (2, "probe.leg_number_x10", 20.0, "units", "probe"),
    ]
    stats = rows(db, "SELECT leg, direction, n, mean, unit FROM scenario_leg_stats WHERE metric LIKE 'probe.%' ORDER BY leg")
    assert stats == [(0, "run", 2, 2.0, "legs"), (1, "there", 2, 10.0, "units"), (2, "back", 2, 20.0, "units")]
    con = open_readonly(db)
    try:
        data = report_data(con, "t")
    finally:
        con.close()
    from migflow.report.series import chart_metrics

    assert {"probe.leg_number_x10", "probe.legs"} <= set(chart_metrics(data))
    assert [lg["probe.leg_number_x10"] for lg in data["legs"]][:2] == [10.0, 20.0]


class CountingBackend(fakes.FakeBackend):
    """The fake backend with several guests, counting how many legs run at once."""

    active = 0
    most = 0
    lock = __import__("threading").Lock()

    def prepare_domain(self, ctx, domain, options):
        n = domain.get("create", {}).get("count", 1)
        ctx.state["domains"] = [{"uuid": f"00000000-0000-0000-0000-00000000000{i}", "name": f"g{i}", "host": "source"} for i in range(1, n + 1)]
        ctx.state["domain"] = ctx.state["domains"][0]
        return {"name": "g1"}

    def migrate(self, ctx, leg, mode, options):
        with CountingBackend.lock:
            CountingBackend.active += 1
            CountingBackend.most = max(CountingBackend.most, CountingBackend.active)
        try:
            assert leg.domain is ctx.state["domains"][leg.guest - 1]
            super().migrate(ctx, leg, mode, options)
        finally:
            with CountingBackend.lock:
                CountingBackend.active -= 1


class Counting:
    @hookimpl
    def migflow_register_backends(self, register):
        from migflow.registry import BackendSpec

        register(BackendSpec("fake", CountingBackend, override=True))


class SlowObserver:
    """Checks the guest for 0.3 s after each leg, as the lab's memory verification does."""

    @hookimpl
    def migflow_leg_finished(self, ctx, leg):
        time.sleep(0.3)


def test_the_next_leg_does_not_wait_for_the_last_ones_observers(tmp_path):
    CountingBackend.active = CountingBackend.most = 0
    plugins = get_plugins(extra=(fakes, Counting(), SlowObserver()))
    wf = workflow([("prepare-domain", {}), ("migrate", {"mode": "fake-mode", "sleep": 0.2, "concurrency": 1}), ("restore", {})])
    for sc in wf.scenarios:
        sc.domain = {"create": {"count": 4}}
    db = tmp_path / "r.duckdb"
    [summary] = Engine(plugins, wf, HOSTS, str(db), echo=lambda s: None).run()
    assert summary.status == "completed", summary.error
    assert CountingBackend.most == 1  # still one at a time
    starts = [r[0] for r in rows(db, "SELECT epoch_ms(started_at) FROM migrations ORDER BY leg")]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert all(190 <= g < 400 for g in gaps), gaps  # 0.2 s legs back to back, not 0.5 s apart
    assert rows(db, "SELECT count(*) FROM migrations WHERE status = 'completed' AND ended_at IS NOT NULL") == [(4,)]


@pytest.mark.parametrize("concurrency", [1, 2, 4])
def test_an_evacuation_runs_at_most_concurrency_legs_at_once(tmp_path, concurrency):
    CountingBackend.active = CountingBackend.most = 0
    plugins = get_plugins(extra=(fakes, Counting()))
    wf = workflow(
        [("prepare-domain", {}), ("migrate", {"mode": "fake-mode", "sleep": 0.2, "concurrency": concurrency}), ("collect-qmp", {}), ("restore", {})],
        round_trip=True,
    )
    for sc in wf.scenarios:
        sc.domain = {"create": {"count": 4}}
    db = tmp_path / "r.duckdb"
    t0 = time.monotonic()
    [summary] = Engine(plugins, wf, HOSTS, str(db), echo=lambda s: None).run()
    took = time.monotonic() - t0
    assert summary.status == "completed", summary.error
    assert CountingBackend.most == concurrency
    legs = rows(db, "SELECT leg, guest, batch, concurrency, source FROM migrations ORDER BY leg")
    assert [(g, b, c) for _, g, b, c, _ in legs] == [(g, b, concurrency) for b in (1, 2) for g in (1, 2, 3, 4)]
    assert {s for *_, s in legs[:4]} == {"fake://a"} and {s for *_, s in legs[4:]} == {"fake://b"}
    evac = rows(db, "SELECT direction, legs, completed, concurrency, evacuation_ms FROM evacuations ORDER BY batch")
    assert [e[:4] for e in evac] == [("there", 4, 4, concurrency), ("back", 4, 4, concurrency)]
    rounds = 4 // concurrency  # 0.2 s per leg, `concurrency` at once
    for *_, ms in evac:
        assert rounds * 200 <= ms < rounds * 200 + 400, (concurrency, ms)
    assert took < 2 * (rounds * 0.2 + 0.4) + 5
