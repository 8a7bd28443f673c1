"""What the source QEMU itself says about a leg, read through libvirt's QMP passthrough.

libvirt's job statistics lack QEMU's ``total-time`` and replace QEMU's
``downtime`` with a measurement of libvirt's own (:mod:`.stats`).  The source
QEMU still exists after it reports ``completed``: libvirt runs Finish on the
destination and Confirm on the source before it kills it (tens of ms on the
lab).  A :class:`QemuWatch` uses that window:

* it subscribes to QEMU's ``MIGRATION``, ``MIGRATION_PASS`` and ``STOP``
  events (``virConnectDomainQemuMonitorEventRegister``), noting when each
  arrived on the client's clock and QEMU's own timestamp;
* when ``MIGRATION`` says ``active``, it asks QEMU which migration
  capabilities and parameters are in force (libvirt has applied its own by
  then, see docs/results.md);
* when ``MIGRATION`` says ``completed``, it asks QEMU for ``query-migrate``
  at once, again every few ms while ``total-time`` is still 0 (QEMU 7.2 sets
  the state before it computes the final times), until the reply is final or
  the source QEMU is gone.

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
    in_force: dict | None = None  #: capabilities and parameters during the migration
    _ids: list[int] = field(default_factory=list)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _done: threading.Event = field(default_factory=threading.Event)

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
            self.events.append(event)
        if first_active:
            self._spawn(self._read_in_force)
        if name == "MIGRATION" and status == "completed":
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
        deadline = time.monotonic() + FINAL_WINDOW_S
        last = None
        while time.monotonic() < deadline:
            try:
                reply = qmp(self.dom, "query-migrate")
            except RuntimeError as exc:
                self.final_error = f"the source QEMU was gone before its final statistics could be read ({exc})"
                return
            last = reply
            if reply.get("status") == "completed" and (reply.get("total-time") or 0) > 0:
                self.final = reply
                return
            time.sleep(RETRY_S)
        self.final_error = f"QEMU's final statistics were not complete within {FINAL_WINDOW_S:g} s (last status {(last or {}).get('status')!r})"

    def close(self, timeout: float = FINAL_WINDOW_S + 1) -> None:
        """Stop listening; wait (bounded) for the queries under way."""
        import libvirt_qemu

        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        for cb in self._ids:
            try:
                libvirt_qemu.qemuMonitorEventDeregister(self.conn, cb)
            except libvirt.libvirtError:
                pass
        self._ids.clear()

    # -- what was seen ---------------------------------------------------------
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
