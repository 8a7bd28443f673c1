"""How the libvirt backend catches QEMU's own final statistics, without the lab
(plugins/migflow_libvirt/capture.py).

QEMU's events are fed to a :class:`QemuWatch` as libvirt's event loop would
hand them over; ``qmp`` is replaced by a scripted QEMU.  The lab tests
(test_libvirt_workflows.py) check the same on real migrations.
"""

from __future__ import annotations

import threading
import time

import pytest
from migflow_libvirt import capture
from migflow_libvirt.backend import LibvirtBackend
from migflow_libvirt.capture import QemuWatch


class ScriptedQemu:
    """Answers ``query-migrate`` with the migration's current state; notes each question."""

    def __init__(self) -> None:
        self.reply: dict = {"status": "device"}
        self.asked: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, _dom, command: str, _arguments=None) -> dict | list:
        if command != "query-migrate":  # what is in force, asked at "active"
            return [] if command == "query-migrate-capabilities" else {}
        time.sleep(0.001)  # a round trip through libvirt
        with self.lock:
            self.asked.append(self.reply["status"])
            if self.reply["status"] == "gone":
                raise RuntimeError("Requested operation is not valid: domain is not running")
            return dict(self.reply)

    def set(self, **reply) -> None:
        with self.lock:
            self.reply = reply

    def wait_for(self, count: int) -> None:
        deadline = time.monotonic() + 5
        while len(self.asked) < count:
            assert time.monotonic() < deadline, self.asked
            time.sleep(0.001)


@pytest.fixture
def qemu(monkeypatch) -> ScriptedQemu:
    scripted = ScriptedQemu()
    monkeypatch.setattr(capture, "qmp", scripted)
    return scripted


def event(watch: QemuWatch, name: str, status: str | None = None) -> None:
    """One QEMU event as libvirt hands it over: the data as JSON text."""
    details = f'{{"status": "{status}"}}' if status else "{}"
    watch._on_event(None, None, name, int(time.time()), 0, details, None)


def test_the_final_statistics_are_asked_for_while_qemu_still_saves_the_last_state(qemu):
    watch = QemuWatch(conn=None, dom=None)
    for status in ("setup", "pre-switchover"):
        event(watch, "MIGRATION", status)
    event(watch, "STOP")
    assert qemu.asked == [] and watch.switching_over()
    event(watch, "MIGRATION", "device")
    qemu.wait_for(2)  # in line before libvirt's own steps after the completion
    qemu.set(status="completed", **{"total-time": 0})  # QEMU 7.2 says completed before it computes the times
    asked = len(qemu.asked)
    qemu.wait_for(asked + 2)
    event(watch, "MIGRATION", "completed")
    qemu.set(status="completed", **{"total-time": 250, "downtime": 12})
    watch.close()
    assert watch.final == {"status": "completed", "total-time": 250, "downtime": 12}
    assert watch.final_at is not None and watch.final_at > watch.first("MIGRATION", "device").arrived
    assert watch.final_error is None and not watch.switching_over()
    assert qemu.asked[0] == "device" and qemu.asked[-1] == "completed"


def test_a_completed_event_alone_starts_the_reading_too(qemu):
    """Without pause-before-switchover QEMU has no "device" state."""
    watch = QemuWatch(conn=None, dom=None)
    qemu.set(status="completed", **{"total-time": 90})
    event(watch, "MIGRATION", "active")
    assert qemu.asked == []
    event(watch, "MIGRATION", "completed")
    watch.close()
    assert watch.final == {"status": "completed", "total-time": 90}
    assert qemu.asked == ["completed"]  # once: device and completed start one reader between them


def test_a_source_qemu_gone_first_is_said_not_guessed(qemu):
    watch = QemuWatch(conn=None, dom=None)
    qemu.set(status="gone")
    event(watch, "MIGRATION", "completed")
    watch.close()
    assert watch.final is None
    assert watch.final_error == ("the source QEMU was gone before its final statistics could be read (Requested operation is not valid: domain is not running)")


def test_a_migration_failing_during_the_switchover_ends_the_reading(qemu):
    watch = QemuWatch(conn=None, dom=None)
    event(watch, "MIGRATION", "device")
    qemu.wait_for(1)
    qemu.set(status="failed")
    watch.close()
    assert watch.final is None and watch.final_error == "QEMU's migration ended 'failed', not completed"
    assert not watch.switching_over()


def test_post_copy_is_no_switchover_to_wait_for(qemu):
    watch = QemuWatch(conn=None, dom=None)
    event(watch, "MIGRATION", "pre-switchover")
    assert watch.switching_over()
    event(watch, "MIGRATION", "postcopy-active")
    assert not watch.switching_over()
    assert qemu.asked == []  # the final statistics come at "completed", seconds later


def test_a_guest_paused_by_hand_is_no_switchover(qemu):
    watch = QemuWatch(conn=None, dom=None)
    event(watch, "MIGRATION", "active")
    event(watch, "STOP")  # virsh suspend, or a timeout's suspend action
    assert not watch.switching_over()


class Leg:
    def __init__(self, backend_state: dict) -> None:
        self.backend_state = backend_state


class Domain:
    def __init__(self) -> None:
        self.asked = 0

    def jobStats(self) -> dict:  # libvirt's name
        self.asked += 1
        return {"type": 2, "memory_total": 100, "memory_processed": 40, "memory_remaining": 60}


def test_progress_queries_stay_away_during_the_switchover(qemu):
    dom, watch = Domain(), QemuWatch(conn=None, dom=None)
    leg = Leg({"dom": dom, "watch": watch})
    backend = LibvirtBackend.__new__(LibvirtBackend)
    assert backend.poll(leg)["ram"]["transferred"] == 40
    event(watch, "MIGRATION", "pre-switchover")
    assert backend.poll(leg) is None and dom.asked == 1  # libvirt's job lock is left to libvirt and the final reading
    event(watch, "MIGRATION", "device")
    qemu.set(status="completed", **{"total-time": 5})
    watch.close()
    assert backend.poll(leg)["ram"]["transferred"] == 40 and dom.asked == 2


def test_the_last_status_is_qemus_last_word_waiting_a_moment_for_an_end(qemu):
    watch = QemuWatch(conn=None, dom=None)
    started = time.monotonic()
    assert watch.last_status(wait=5) is None  # QEMU never began: libvirt refused first, nothing to wait for
    assert time.monotonic() - started < 1
    for status in ("setup", "active", "cancelling"):
        event(watch, "MIGRATION", status)
    event(watch, "MIGRATION_PASS")
    started = time.monotonic()
    assert watch.last_status(wait=0.05) == "cancelling"  # no end within the wait: the last word
    assert time.monotonic() - started >= 0.05
    threading.Timer(0.05, event, args=(watch, "MIGRATION", "cancelled")).start()
    started = time.monotonic()
    assert watch.last_status(wait=5) == "cancelled"  # an end that trails the call is waited for, not the whole wait
    assert time.monotonic() - started < 2


@pytest.mark.parametrize(
    "message,last_status,said",
    [
        ("internal error: qemu unexpectedly closed the monitor: load of migration failed", "cancelled", True),
        ("operation aborted: job 'migration out' canceled by client", "cancelled", False),  # libvirt said it
        ("operation failed: job 'migration out' failed: Unable to write to socket", "failed", False),
        ("Cannot recv data: Connection reset by peer", None, False),
    ],
)
def test_a_cancelled_source_is_said_when_libvirts_words_do_not(message, last_status, said):
    from migflow_libvirt.backend import with_qemu_last_status

    out = with_qemu_last_status(message, last_status)
    assert out.startswith(message)
    assert (out != message) is said
    assert ("source QEMU's migration was cancelled" in out) is said
