"""When to switch a migration to post-copy: the migrate step's ``postcopy_switch``, one rule for every backend.

``postcopy_switch = { after_iterations = N }`` switches when pass N+1 begins
(N passes are done; ``virsh migrate --postcopy-after-precopy`` is N = 1);
``{ when_stalled = M }`` when the RAM still to send did not shrink over the
last M passes.  A backend calls :func:`switch_reason` as each pass begins.
"""

from __future__ import annotations

import itertools
from typing import Any

__all__ = ["switch_reason"]


def switch_reason(state: dict[str, Any], iteration: int, remaining: int | None) -> str | None:
    """Why to switch now, or None.

    ``state`` is the leg's ``backend_state``: its ``postcopy_switch`` is the
    step's option; the RAM left at each pass is kept in it
    (``remaining_at_pass``).  Once a reason is returned, ``postcopy_requested``
    is set and every later call returns None.
    """
    switch = state.get("postcopy_switch")
    if not switch or state.get("postcopy_requested"):
        return None
    history = state.setdefault("remaining_at_pass", [])
    if remaining is not None:
        history.append(remaining)
    reason = None
    n = switch.get("after_iterations")
    if n is not None and iteration >= n + 1:  # pass n+1 began: n passes are done
        reason = f"after {n} iteration{'s' if n != 1 else ''}"
    m = switch.get("when_stalled")
    if m is not None and len(history) > m and all(b >= a for a, b in itertools.pairwise(history[-(m + 1) :])):
        reason = f"RAM still to send did not shrink for {m} iteration{'s' if m != 1 else ''}"
    if reason is not None:
        state["postcopy_requested"] = True
    return reason
