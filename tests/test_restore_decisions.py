"""restore's decisions over recorded host states, without the lab (plugins/migflow_libvirt/restore.py).

Each case is a state a real failure left (docs/failures.md): where the domain
was found, in which state, and what restore must do.  The lab tests
(test_failures.py) check that the actions really run.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
from migflow_libvirt.restore import FirstMove, Seen, first_move, fixups

RUNNING = Seen("running", True, False)
RUNNING_P = Seen("running", True, True)
PAUSED = Seen("paused", True, False)
SHUTOFF_P = Seen("shutoff", False, True)
PC_FAILED = Seen("paused", True, True, postcopy_failed=True)
PC_MESSAGE = (
    "post-copy of domain 'vm' (u) failed after the switch ({}; libvirt's reason: post-copy failed): "
    "its memory is split between the hosts, so migflow moved, resumed and removed nothing"
)

CREATED = {"name": "g", "uuid": "u", "created": True, "state": "running", "persistent": False}
NAMED = {"name": "vm", "uuid": "u", "created": False, "state": "running", "persistent": True}
NAMED_TRANSIENT = {**NAMED, "persistent": False}


FIRST_MOVES = [
    # a created guest is removed wherever it is: both hosts after an aborted incoming migration
    (CREATED, {"source": RUNNING, "destination": PAUSED}, FirstMove("remove", ("source", "destination"))),
    (CREATED, {"source": None, "destination": RUNNING}, FirstMove("remove", ("destination",))),
    (CREATED, {"source": None, "destination": None}, FirstMove("lost", message="the created domain 'g' (u) was found on neither host")),
    # the source QEMU was killed: a named domain on neither host is lost, never a success
    (NAMED, {"source": None, "destination": None}, FirstMove("lost", message="domain 'vm' (u) runs on neither host: it was lost")),
    # p2p orchestrator killed: the migration finished on the destination -> back
    (NAMED, {"source": None, "destination": RUNNING_P}, FirstMove("migrate-back")),
    (NAMED, {"source": SHUTOFF_P, "destination": RUNNING_P}, FirstMove("migrate-back")),  # persistent: inactive definition left on the source
    # paused on the destination (a suspend timeout that then completed): resume, then back
    (NAMED, {"source": None, "destination": PAUSED}, FirstMove("migrate-back", resume_first=True)),
    # an aborted migration: still on the source, the destination has only a stale definition
    (NAMED, {"source": RUNNING_P, "destination": SHUTOFF_P}, FirstMove("none")),
    (NAMED, {"source": RUNNING_P, "destination": None}, FirstMove("none")),
    # running but blocked on I/O there: migrated back as it is, nothing to resume
    (NAMED, {"source": None, "destination": Seen("blocked", True, True)}, FirstMove("migrate-back")),
    # post-copy failed after the switch (libvirt 8.5+: both halves paused, reason postcopy-failed): nothing moves,
    # not even a resume of the paused source, which would run the guest on half its memory
    (
        NAMED,
        {"source": PC_FAILED, "destination": PC_FAILED},
        FirstMove("postcopy-failed", ("source", "destination"), message=PC_MESSAGE.format("source: paused, destination: paused")),
    ),
    # the destination QEMU died after the switch: the source half alone, still split
    (NAMED, {"source": PC_FAILED, "destination": None}, FirstMove("postcopy-failed", ("source",), message=PC_MESSAGE.format("source: paused"))),
    # a created guest whose post-copy failed is still removed: it is the experiment's own
    (CREATED, {"source": PC_FAILED, "destination": PC_FAILED}, FirstMove("remove", ("source", "destination"))),
]


@pytest.mark.parametrize(("original", "where", "expected"), FIRST_MOVES)
def test_first_move(original, where, expected):
    assert first_move(original, where) == expected


def test_keep_created_treats_a_created_guest_like_a_named_one():
    assert first_move(CREATED, {"source": None, "destination": RUNNING}, keep_created=True) == FirstMove("migrate-back")


FIXUPS = [
    # Ctrl-C of a managed-direct client during switchover leaves the source paused: resume it
    (NAMED, Seen("paused", True, True), None, False, False, ["resume"]),
    # found paused and left paused by the run (suspend timeout ... then aborted): paused again only if it was
    ({**NAMED, "state": "paused"}, RUNNING_P, None, True, False, ["suspend"]),
    # a domain that was shut off is shut off again after the run started it
    ({**NAMED, "state": "shutoff"}, RUNNING_P, None, True, False, ["shut-off"]),
    # zstack mode (undefinesource) took its definition away on the way there, and back again
    (NAMED, RUNNING, None, True, False, ["define"]),
    # a transient domain got a definition from --persistent: transient again
    (NAMED_TRANSIENT, RUNNING_P, None, True, False, ["make-transient"]),
    # no leg completed: the source QEMU still has the changed settings
    (NAMED, RUNNING_P, None, False, True, ["restore-settings"]),
    (NAMED, RUNNING_P, None, True, True, []),  # a new QEMU after a round trip: nothing to restore
    # the destination keeps an inactive definition after a failed persistent migration
    (NAMED, RUNNING_P, SHUTOFF_P, False, False, ["undefine-destination"]),
    (NAMED, RUNNING_P, RUNNING_P, False, False, []),  # an active domain there is not a stale definition
    # already as found: nothing to do
    (NAMED, RUNNING_P, None, True, False, []),
    # only the exact states count: a blocked domain is not paused, nor an "unknown" one shut off
    (NAMED, Seen("blocked", True, True), None, True, False, []),
    ({**NAMED, "state": "paused"}, Seen("paused", True, True), None, True, False, []),
    ({**NAMED, "state": "paused"}, SHUTOFF_P, None, True, False, []),
    ({**NAMED, "state": "blocked"}, RUNNING_P, None, True, False, []),
    ({**NAMED, "state": "unknown"}, RUNNING_P, None, True, False, []),
    ({**NAMED, "state": "shutoff"}, Seen("paused", True, True), None, True, False, ["shut-off"]),
]


@pytest.mark.parametrize(("original", "source", "destination", "migrated", "changed", "expected"), FIXUPS)
def test_fixups(original, source, destination, migrated, changed, expected):
    assert fixups(original, source, destination, any_leg_completed=migrated, settings_changed=changed) == expected


def test_a_named_domain_is_never_removed():
    """Whatever the hosts show, a domain the workflow names is never removed (only created ones are)."""
    states = [None, RUNNING, RUNNING_P, PAUSED, SHUTOFF_P]
    for src in states:
        for dst in states:
            move = first_move(NAMED, {"source": src, "destination": dst})
            assert move.action != "remove", (src, dst)
            for original in (NAMED, NAMED_TRANSIENT, {**NAMED, "state": "paused"}):
                actions = fixups(original, src, dst, any_leg_completed=False, settings_changed=True)
                assert "shut-off" not in actions  # only a domain that was shut off is shut off again


def _fresh(value):
    """``value`` through JSON: new string objects, as a record read back by ``migflow recover`` has."""
    return json.loads(json.dumps(value))


def _fresh_seen(seen):
    return None if seen is None else Seen(_fresh(seen.state), seen.active, seen.persistent, seen.postcopy_failed)


def test_decisions_compare_states_by_value_not_by_identity():
    """The source's literals and libvirt's names are the same interned objects: a record read from JSON is not."""
    for original, where, expected in FIRST_MOVES:
        assert first_move(_fresh(original), {role: _fresh_seen(s) for role, s in where.items()}) == expected
    for original, source, destination, migrated, changed, expected in FIXUPS:
        got = fixups(_fresh(original), _fresh_seen(source), _fresh_seen(destination), any_leg_completed=migrated, settings_changed=changed)
        assert got == expected, (original, source, destination)


def test_decisions_are_immutable_data():
    move = first_move(NAMED, {"source": None, "destination": PAUSED})
    with pytest.raises(dataclasses.FrozenInstanceError):
        move.action = "none"
    with pytest.raises(dataclasses.FrozenInstanceError):
        PAUSED.state = "running"


def test_libvirts_postcopy_failed_reasons_are_what_restore_sees():
    import libvirt
    from migflow_libvirt.backend import _postcopy_failed

    assert _postcopy_failed(libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_POSTCOPY_FAILED)
    assert _postcopy_failed(libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_RUNNING_POSTCOPY_FAILED)
    assert not _postcopy_failed(libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_POSTCOPY)  # still in post-copy
    assert not _postcopy_failed(libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_MIGRATION)
    assert not _postcopy_failed(libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_RUNNING_MIGRATED)


class _Vanished(Exception):
    """libvirt's "Domain not found", raised by a domain torn down while it is read."""

    def get_error_code(self):
        import libvirt

        return libvirt.VIR_ERR_NO_DOMAIN


class _Dom:
    def __init__(self, state, reason, vanish=False):
        self._state, self._vanish = (state, reason), vanish

    def state(self):
        return self._state

    def isActive(self):
        if self._vanish:
            raise _Vanished("Domain not found: no domain with matching uuid")
        return True

    def isPersistent(self):
        return False


class _Conn:
    def __init__(self, dom):
        self.dom = dom

    def lookupByUUIDString(self, uuid):
        return self.dom


def test_a_domain_that_vanishes_while_restore_reads_it_is_not_there(monkeypatch):
    """The destination's incoming domain, torn down by libvirt after an abort, can vanish
    between its lookup and the next question: restore sees no domain there (CI: a
    Ctrl-C'd managed-direct leg failed restore with "Domain not found"), and the host
    is not taken for unreachable."""
    import libvirt
    from migflow_libvirt import backend as lv

    monkeypatch.setattr(lv.libvirt, "libvirtError", _Vanished)
    b = lv.LibvirtBackend("qemu+tcp://198.18.0.1/system", "qemu+tcp://198.18.0.2/system")
    conns = {
        b.source_uri: _Conn(_Dom(libvirt.VIR_DOMAIN_RUNNING, 0)),
        b.destination_uri: _Conn(_Dom(libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_MIGRATION, vanish=True)),
    }
    monkeypatch.setattr(b, "conn", conns.__getitem__)
    unreachable: dict = {}
    doms, seen = b._seen("7c7ea26b-369b-479f-a31a-33708c599751", unreachable)
    assert seen == {"source": Seen("running", True, False, False), "destination": None}
    assert list(doms) == ["source"] and unreachable == {}
    assert b.locate("7c7ea26b-369b-479f-a31a-33708c599751") == {"source": "running", "destination": None}
