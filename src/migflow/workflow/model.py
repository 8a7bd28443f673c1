"""The validated, in-memory form of a workflow and its plan.

Produced by :func:`migflow.workflow.loader.load_workflow`; consumed by the
engine, ``--dry-run`` and plugins' ``migflow_validate_scenario``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["PlannedRun", "Scenario", "StepUse", "Workflow"]


@dataclass
class StepUse:
    """One ``[[steps]]`` entry: ``use = name`` and its options (everything else)."""

    name: str
    options: dict
    index: int  # position in the workflow, from 0


@dataclass
class Scenario:
    """One combination of matrix parameters, with every ``${param}`` resolved."""

    label: str  # "mode=p2p,bandwidth=1gbit" or "default"
    params: dict[str, Any]
    steps: list[StepUse]
    domain: dict


@dataclass
class PlannedRun:
    """One scenario x repetition, in execution order."""

    index: int  # 0-based position in the plan
    scenario: Scenario
    repetition: int  # 1-based


@dataclass
class Workflow:
    name: str
    description: str
    file: str  # path as given
    backend: str
    source: str | None  # None: the default hosts (the embedded lab)
    destination: str | None
    domain: dict
    steps: list[StepUse]
    repetitions: int = 1
    round_trip: bool = False
    fail_fast: bool = False
    results: str = "results.duckdb"
    matrix: dict[str, list] = field(default_factory=dict)
    exclude: list[dict] = field(default_factory=list)
    include: list[dict] = field(default_factory=list)
    order: str = "interleaved"  # interleaved | sequential | shuffled
    seed: int | None = None  # for order = "shuffled"
    adaptive: dict | None = None  # [adaptive]: metric, ci_width, max_repetitions (repetitions is the minimum)
    raw: dict = field(default_factory=dict)
    scenarios: list[Scenario] = field(default_factory=list)
    plan: list[PlannedRun] = field(default_factory=list)
