"""The closed sets of statuses migflow records.

They are :class:`enum.StrEnum` members, so they compare equal to the strings
stored in the results database (``status = 'completed'``) and print as them.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["LegStatus", "RunStatus", "StepStatus"]


class RunStatus(StrEnum):
    """``runs.status``: one scenario x repetition."""

    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # Ctrl-C or SIGTERM
    LOST = "lost"  # the domain runs on neither host afterwards
    ABANDONED = "abandoned"  # the migflow process died while the run was in progress


class StepStatus(StrEnum):
    """``steps.status``."""

    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"  # an earlier step failed, or Ctrl-C
    INTERRUPTED = "interrupted"
    ABANDONED = "abandoned"


class LegStatus(StrEnum):
    """``migrations.status``: one migration leg."""

    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    ABANDONED = "abandoned"
