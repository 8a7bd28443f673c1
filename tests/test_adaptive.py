"""Adaptive repetitions: the stopping rule alone, then the engine running extra rounds.

The engine part uses the fake backend (engine bookkeeping only, no migration):
each scenario's ``downtimes`` option gives the values its legs report.
"""

from __future__ import annotations

import math

import duckdb
import fakes
import pytest

from migflow.adaptive import AdaptiveRule
from migflow.engine import Engine
from migflow.plugins import get_plugins
from migflow.registry import HostPair
from migflow.workflow.model import PlannedRun, Scenario, StepUse, Workflow


def rule(minimum=3, maximum=8, width=0.1) -> AdaptiveRule:
    return AdaptiveRule("downtime", width, minimum, maximum)


def test_constant_values_converge_at_the_minimum():
    r = rule()
    for _ in range(2):
        r.add("a", [("there", 100.0)])
    assert r.decision("a") == (True, "minimum of 3 runs not reached (2)")
    r.add("a", [("there", 100.0)])
    again, why = r.decision("a")
    assert not again and why.startswith("converged after 3 runs") and "there 0.0%" in why


def test_every_direction_must_be_narrow():
    r = rule()
    for there, back in ((100, 50), (101, 90), (99, 20)):
        r.add("a", [("there", there), ("back", back)])
    widths = r.widths("a")
    assert widths["there"] < 0.1 < widths["back"]
    again, why = r.decision("a")
    assert again and "back" in why and "still too wide" in why


def test_width_is_the_t_interval_over_the_mean():
    r = rule(minimum=2)
    r.add("a", [("there", 90.0)])
    r.add("a", [("there", 110.0)])
    # n=2: mean 100, sd 14.142, t(0.975, 1) = 12.706: half-width 127.06 -> width 2.541
    assert r.widths("a")["there"] == pytest.approx(2 * 12.706205 * 14.1421356 / math.sqrt(2) / 100, rel=1e-5)


def test_maximum_stops_a_noisy_scenario():
    r = rule(minimum=2, maximum=4)
    for v in (10, 100, 10, 100):
        r.add("a", [("there", float(v))])
    again, why = r.decision("a")
    assert not again and why.startswith("maximum of 4 runs reached")


def test_no_values_stop_at_the_minimum():
    r = rule(minimum=2)
    r.add("a", [("there", None)])
    r.add("a", [("there", None)])
    assert r.decision("a") == (False, "no completed leg gave a downtime value in 2 runs")


def _workflow(scenarios: dict[str, list[float]], minimum: int, maximum: int) -> Workflow:
    steps = [StepUse("prepare-domain", {}, 0), StepUse("migrate", {"mode": "fake-mode"}, 1), StepUse("collect-qmp", {}, 2), StepUse("restore", {}, 3)]
    wf = Workflow(name="adaptive", description="", file="t.toml", backend="fake", source=None, destination=None, domain={}, steps=steps, repetitions=minimum)
    wf.adaptive = {"metric": "downtime", "ci_width": 0.1, "max_repetitions": maximum}
    for label, values in scenarios.items():
        uses = [StepUse(u.name, dict(u.options, downtimes=values, sleep=0.01) if u.name == "migrate" else u.options, u.index) for u in steps]
        wf.scenarios.append(Scenario(label, {"s": label}, uses, {}))
    wf.plan = [PlannedRun(i, sc, rep) for i, (rep, sc) in enumerate((rep, sc) for rep in range(1, minimum + 1) for sc in wf.scenarios)]
    return wf


def test_engine_repeats_only_the_scenario_that_has_not_converged(tmp_path):
    fakes.FakeBackend.calls, fakes.FakeBackend.legs_done = [], 0
    wf = _workflow({"steady": [100.0], "noisy": [10.0, 100.0, 40.0]}, minimum=3, maximum=7)
    lines: list[str] = []
    db = tmp_path / "r.duckdb"
    summaries = Engine(get_plugins(extra=(fakes,)), wf, HostPair("fake://a", "fake://b"), str(db), echo=lines.append).run()
    per = {label: sum(1 for s in summaries if s.scenario == label) for label in ("steady", "noisy")}
    assert per == {"steady": 3, "noisy": 7}
    assert any(ln.startswith("adaptive: scenario steady: converged after 3 runs") for ln in lines), lines
    assert any(ln.startswith("adaptive: scenario noisy: maximum of 7 runs reached") for ln in lines), lines
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute(
            "SELECT scenario, repetition, extra->>'$.adaptive.why', extra->>'$.adaptive.metric', (extra->>'$.adaptive.max')::INT FROM runs ORDER BY plan_index"
        ).fetchall()
    assert [r[:2] for r in rows if r[0] == "noisy"] == [("noisy", n) for n in range(1, 8)]
    assert all(r[3] == "downtime" and r[4] == 7 for r in rows)
    extra = [r[2] for r in rows if r[0] == "noisy" and r[1] > 3]
    assert all("still too wide" in w for w in extra), extra
    assert [r[2] for r in rows if r[1] <= 3] == ["one of the first 3 runs (the minimum)"] * 6
