"""What the source QEMU itself says about a leg, read through libvirt's QMP passthrough.

libvirt's job statistics lack QEMU's ``total-time`` and replace QEMU's
``downtime`` with a measurement of libvirt's own (:mod:`.stats`).  The source
QEMU still exists after it reports ``completed``: libvirt runs Finish on the
destination and Confirm on the source before it kills it (the source's
stopped event came 320-770 ms after ``completed`` on the loaded lab, but
libvirt's own steps hold the domain for much of that).  A
:class:`QemuWatch` uses that window:

* it subscribes to QEMU's ``MIGRATION``, ``MIGRATION_PASS`` and ``STOP``
  events (``virConnectDomainQemuMonitorEventRegister``), noting when each
  arrived on the client's clock and QEMU's own timestamp;
* when ``MIGRATION`` says ``active``, it asks QEMU which migration
  capabilities and parameters are in force (libvirt has applied its own by
  then, see docs/results.md);
* from ``MIGRATION`` ``device`` on (QEMU saves the last state of a pre-copy
  migration; the state exists because libvirt turns pause-before-switchover
  on), or from ``completed`` when there was none, it asks QEMU for
  ``query-migrate`` every few ms until the reply is final (QEMU 7.2 says
  ``completed`` before it computes ``total-time``) or the source QEMU is
  gone.  Asking before the completion puts the question in line ahead of
  libvirt's own steps after it.  On the lab with three busy loops on its two
  cores (xbzrle.toml): asked only at ``completed``, the final reply came
  23-26 ms after that event (median) and 2 of 104 legs missed it; asked
  from ``device`` on, 7 ms (p90 35 ms) and 1 of 48 legs missed it.  A miss
  is a query held up ~330 ms until libvirt's confirm had stopped the source
  QEMU, so it stays possible: the leg then says so;
* while QEMU switches over, migflow's progress queries
  (:meth:`QemuWatch.switching_over`) stay away from libvirt's job lock.

Both queries run in worker threads, never in libvirt's event loop.  libvirt
marks a domain whose monitor a client used as "custom-monitor" in its log;
the migration itself is not affected (the queries are libvirt QUERY jobs,
which a migration job allows).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import libvirt

__all__ = ["QemuWatch", "qmp"]

#: how long to keep asking for QEMU's final statistics after it said completed
FINAL_WINDOW_S = 3.0
#: between two tries while QEMU's total-time is still 0
RETRY_S = 0.002
#: the MIGRATION states from which the final statistics are asked for
FINAL = ("device", "completed")
#: the MIGRATION states in which QEMU's migration has ended
ENDED = ("completed", "failed", "cancelled")


def qmp(dom: Any, command: str, arguments: dict | None = None) -> dict:
    """One QMP command through libvirt; returns ``return`` or raises ``RuntimeError`` with QEMU's or libvirt's message."""
    import libvirt_qemu

    cmd: dict[str, Any] = {"execute": command}
    if arguments:
        cmd["arguments"] = arguments
    try:
        reply = json.loads(libvirt_qemu.qemuMonitorCommand(dom, json.dumps(cmd), 0))
    except libvirt.libvirtError as exc:
        raise RuntimeError((exc.get_error_message() or str(exc)).strip()) from None
    if "error" in reply:
        raise RuntimeError(str(reply["error"].get("desc", reply["error"])))
    return reply.get("return", {})


@dataclass
class Event:
    name: str
    status: str | None
    qemu_time: float  # QEMU's timestamp (its host's wall clock), seconds
    arrived: float  # time.monotonic() on the client


@dataclass
class QemuWatch:
    """Watch one leg's source QEMU.  Create it before the migration call, :meth:`close` after it."""

    conn: Any
    dom: Any
    events: list[Event] = field(default_factory=list)
    final: dict | None = None  #: QEMU's final query-migrate, when caught
    final_error: str | None = None  #: why it was not caught
    final_at: float | None = None  #: when it was caught (time.monotonic() on the client)
    in_force: dict | None = None  #: capabilities and parameters during the migration
    _ids: list[int] = field(default_factory=list)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _closed: bool = False

    def start(self) -> QemuWatch:
        import libvirt_qemu

        for name in ("MIGRATION", "MIGRATION_PASS", "STOP"):
            try:
                self._ids.append(libvirt_qemu.qemuMonitorEventRegister(self.conn, self.dom, name, self._on_event, None, 0))
            except libvirt.libvirtError as exc:
                self.final_error = f"cannot subscribe to QEMU's events: {(exc.get_error_message() or exc)}"
        return self

    def _on_event(self, _conn, _dom, name, seconds, micros, details, _opaque) -> None:
        if isinstance(details, str):  # libvirt hands over the event's data as JSON text
            try:
                details = json.loads(details)
            except ValueError:
                details = None
        status = details.get("status") if isinstance(details, dict) else None
        event = Event(name, status, seconds + micros / 1e6, time.monotonic())
        with self._lock:
            first_active = status == "active" and not any(e.status == "active" for e in self.events)
            # "device": QEMU saves the last state of a pre-copy migration (there is none without pause-before-switchover)
            first_final = name == "MIGRATION" and status in FINAL and not any(e.status in FINAL for e in self.events)
            self.events.append(event)
        if first_active:
            self._spawn(self._read_in_force)
        if first_final:
            self._spawn(self._read_final)

    def _spawn(self, target) -> None:
        t = threading.Thread(target=target, name=f"qemu-watch-{target.__name__}", daemon=True)
        self._threads.append(t)
        t.start()

    def _read_in_force(self) -> None:
        try:
            caps = {c["capability"]: c["state"] for c in qmp(self.dom, "query-migrate-capabilities")}
            params = qmp(self.dom, "query-migrate-parameters")  # tls-creds names libvirt's TLS object when the stream is encrypted
            self.in_force = {"capabilities": caps, "parameters": params}
        except RuntimeError:
            pass  # the migration may have ended meanwhile: the column stays NULL

    def _read_final(self) -> None:
        """Ask for ``query-migrate`` until QEMU's final reply: from ``device`` (QEMU saves the
        last state) on, so the question is in line before libvirt's own steps after the completion."""
        deadline = None  # FINAL_WINDOW_S once QEMU said completed
        while deadline is None or time.monotonic() < deadline:
            try:
                reply = qmp(self.dom, "query-migrate")
            except RuntimeError as exc:
                self.final_error = f"the source QEMU was gone before its final statistics could be read ({exc})"
                return
            status = reply.get("status")
            if status == "completed":
                if (reply.get("total-time") or 0) > 0:
                    self.final, self.final_at = reply, time.monotonic()
                    return
                deadline = deadline or time.monotonic() + FINAL_WINDOW_S  # QEMU 7.2 computes the times just after
            elif status != "device" or self._closed:
                self.final_error = f"QEMU's migration ended {status!r}, not completed"
                return
            time.sleep(RETRY_S)
        self.final_error = f"QEMU's final statistics were not complete within {FINAL_WINDOW_S:g} s of its completion"

    def close(self, timeout: float = FINAL_WINDOW_S + 1) -> None:
        """Stop listening; wait (bounded) for the queries under way."""
        import libvirt_qemu

        deadline = time.monotonic() + timeout
        self._closed = True
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        for cb in self._ids:
            try:
                libvirt_qemu.qemuMonitorEventDeregister(self.conn, cb)
            except libvirt.libvirtError:
                pass
        self._ids.clear()

    def switching_over(self) -> bool:
        """QEMU is switching over to the destination (``pre-switchover`` or ``device``, which libvirt's
        ``pause-before-switchover`` brings) and its final statistics are not read yet.

        migflow's own progress queries stay away meanwhile: each one holds
        libvirt's QUERY job on the domain, which libvirt's own steps of the
        switchover and the query for the final statistics would wait behind.
        """
        if self.first("MIGRATION", "pre-switchover") is None and self.first("MIGRATION", "device") is None:
            return False
        if self.first("MIGRATION", "postcopy-active") is not None:
            return False
        return self.final is None and self.final_error is None and not self._closed

    # -- what was seen ---------------------------------------------------------
    def last_status(self, wait: float = 0.0) -> str | None:
        """QEMU's last ``MIGRATION`` status, waiting up to ``wait`` seconds for one that ends a
        migration QEMU began (:data:`ENDED`); None at once when QEMU never said it began (libvirt
        refused the migration first).  Call it before :meth:`close`.

        libvirt's client can hand an event over just after the call it preceded
        has returned, so a failed call waits a moment for QEMU's own word.
        """
        deadline = time.monotonic() + wait
        while True:
            with self._lock:
                last = next((e.status for e in reversed(self.events) if e.name == "MIGRATION"), None)
            if last is None or last in ENDED or time.monotonic() >= deadline:
                return last
            time.sleep(0.01)

    def first(self, name: str, status: str | None = None) -> Event | None:
        with self._lock:
            return next((e for e in self.events if e.name == name and (status is None or e.status == status)), None)

    def phases(self, call_started: float, call_returned: float) -> dict[str, float]:
        """Split the client's wall time (monotonic seconds) at QEMU's migration start and end.

        ``wall_before_qemu_ms``: from the client's call until QEMU's migration
        began (``MIGRATION`` ``setup`` arrived); ``wall_qemu_ms``: until QEMU
        said ``completed``; ``wall_after_qemu_ms``: until the call returned.
        All on the client's clock, so no clock synchronisation between hosts is
        needed.  Empty when QEMU's events did not arrive.
        """
        setup, done = self.first("MIGRATION", "setup"), self.first("MIGRATION", "completed")
        if setup is None or done is None:
            return {}
        return {
            "wall_before_qemu_ms": round((setup.arrived - call_started) * 1000.0, 3),
            "wall_qemu_ms": round((done.arrived - setup.arrived) * 1000.0, 3),
            "wall_after_qemu_ms": round((call_returned - done.arrived) * 1000.0, 3),
        }

    def postcopy(self, call_started: float) -> dict[str, float]:
        """When QEMU entered post-copy (``MIGRATION`` ``postcopy-active``), on the client's clock,
        and how long the post-copy phase lasted until ``completed``."""
        active, done = self.first("MIGRATION", "postcopy-active"), self.first("MIGRATION", "completed")
        if active is None:
            return {}
        out = {"postcopy_started_ms": round((active.arrived - call_started) * 1000.0, 3)}
        if done is not None:
            out["postcopy_ms"] = round((done.arrived - active.arrived) * 1000.0, 3)
        return out

    def timeline(self) -> list[dict[str, Any]]:
        """The events as recorded: name, status, QEMU's timestamp and the client's arrival (monotonic)."""
        with self._lock:
            return [{"event": e.name, "status": e.status, "qemu_time": e.qemu_time, "arrived": e.arrived} for e in self.events]
