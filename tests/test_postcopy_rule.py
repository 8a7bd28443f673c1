"""The rule that decides when a leg switches to post-copy (migflow.postcopy), without the lab.

Both backends call it as each pass over RAM begins; the lab tests
(test_migration_features.py, test_qemu_backend.py) show the switch happening.
"""

from __future__ import annotations

import pytest

from migflow.postcopy import switch_reason


def passes(switch, remaining_per_pass):
    """Call the rule as passes 1, 2, ... begin; return (pass, reason) of every call that answered."""
    state = {"postcopy_switch": switch}
    out = [(i, switch_reason(state, i, r)) for i, r in enumerate(remaining_per_pass, start=1)]
    return [(i, reason) for i, reason in out if reason is not None], state


@pytest.mark.parametrize(("n", "expected"), [(1, [(2, "after 1 iteration")]), (3, [(4, "after 3 iterations")])])
def test_after_n_iterations_switches_when_pass_n_plus_one_begins(n, expected):
    got, state = passes({"after_iterations": n}, [100, 90, 80, 70, 60])
    assert got == expected
    assert state["postcopy_requested"] is True


def test_when_stalled_switches_once_the_remaining_ram_did_not_shrink_for_m_passes():
    # shrinking, then flat twice (a rise counts as not shrinking too)
    got, _ = passes({"when_stalled": 2}, [100, 80, 60, 60, 70, 50])
    assert got == [(5, "RAM still to send did not shrink for 2 iterations")]
    got, _ = passes({"when_stalled": 1}, [100, 100])
    assert got == [(2, "RAM still to send did not shrink for 1 iteration")]


def test_a_shrinking_migration_never_switches_when_stalled():
    got, state = passes({"when_stalled": 2}, [100, 90, 80, 70, 60, 50])
    assert got == [] and "postcopy_requested" not in state
    assert state["remaining_at_pass"] == [100, 90, 80, 70, 60, 50]


def test_a_pass_without_a_figure_is_not_counted_as_stalled():
    got, _ = passes({"when_stalled": 1}, [100, None, None, 90])
    assert got == []


def test_no_option_or_already_requested_means_no_switch():
    assert switch_reason({}, 5, 10) is None
    assert switch_reason({"postcopy_switch": None}, 5, 10) is None
    assert switch_reason({"postcopy_switch": {"after_iterations": 1}, "postcopy_requested": True}, 5, 10) is None


def test_a_pass_whose_event_was_missed_still_counts():
    """Events can be lost or coalesced (an iteration event that arrives late): pass 3 beginning
    means at least one pass is done, so after_iterations = 1 switches then."""
    state = {"postcopy_switch": {"after_iterations": 1}}
    assert switch_reason(state, 1, 100) is None
    assert switch_reason(state, 3, 90) == "after 1 iteration"
