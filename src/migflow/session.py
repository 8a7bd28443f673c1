"""A session: one ``migflow run`` of a workflow, the runs it plans and what they share.

The engine creates one before the first run and hands it to the
``migflow_workflow_started`` and ``migflow_workflow_finished`` hooks and to
every run (``ctx.session``).  Plugins keep per-workflow state in
``session.state`` (the lab notes the link shaping in force before the
workflow, and puts it back when the workflow ends, whatever happened).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .plugins import Plugins
    from .registry import HostPair
    from .workflow.model import Workflow

__all__ = ["Session"]


@dataclass
class Session:
    """What the runs of one workflow execution share.

    :param workflow: the loaded workflow.
    :param hosts: source and destination.
    :param plugins: the plugins of this invocation.
    :param results: the DuckDB results file.
    :param echo: prints one line for the user.
    :param state: per-workflow state of plugins, by key (``"lab-link-before"`` ...).
    """

    workflow: Workflow
    hosts: HostPair
    plugins: Plugins
    results: str
    echo: Callable[[str], None] = print
    state: dict[str, Any] = field(default_factory=dict)
