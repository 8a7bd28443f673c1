"""Host reservations over libvirt: an ephemeral libvirt secret on each host.

A secret's *usage* is unique on a libvirt host: defining a second secret with
the usage ``tls`` / ``migflow-host-reservation`` fails while the first exists,
so whoever defines it first holds the host, for any client on any machine.
The secret is ``ephemeral`` (never written to the host's disk, gone when its
libvirtd restarts) and carries its holder (run, workflow, pid, machine, lease
times) as JSON in its description.  A holder renews its lease by redefining
its own secret; a secret whose holder is dead (see
:meth:`migflow.reservation.Holder.dead`) is undefined and taken over.
"""

from __future__ import annotations

import json
import time
from typing import Any
from xml.sax.saxutils import escape

import libvirt

from migflow.reservation import Holder, HostBusy, Reservation

__all__ = ["USAGE_NAME", "LibvirtReservation", "reserve"]

USAGE_NAME = "migflow-host-reservation"
_PREFIX = "migflow host reservation: "


def _xml(holder: Holder, uuid: str | None = None) -> str:
    uuid_el = f"<uuid>{uuid}</uuid>" if uuid else ""
    return (
        f"<secret ephemeral='yes' private='no'>{uuid_el}<description>{escape(_PREFIX + json.dumps(holder.as_dict()))}</description>"
        f"<usage type='tls'><name>{USAGE_NAME}</name></usage></secret>"
    )


def _holder_of(secret: Any) -> Holder | None:
    import xml.etree.ElementTree as ET

    try:
        text = ET.fromstring(secret.XMLDesc(0)).findtext("description") or ""
    except (libvirt.libvirtError, ET.ParseError):
        return None
    if not text.startswith(_PREFIX):
        return None
    try:
        return Holder.from_dict(json.loads(text[len(_PREFIX) :]))
    except ValueError:
        return None


def _current(conn: Any) -> Any | None:
    try:
        return conn.secretLookupByUsage(libvirt.VIR_SECRET_USAGE_TYPE_TLS, USAGE_NAME)
    except libvirt.libvirtError:
        return None


def _acquire_one(conn: Any, uri: str, holder: Holder) -> str:
    """Define our secret on one host; its UUID.  :class:`HostBusy` when a live holder has it."""
    for _attempt in range(3):
        existing = _current(conn)
        if existing is not None:
            other = _holder_of(existing)
            if other is not None and not other.dead():
                raise HostBusy(uri, other)
            try:  # a dead holder's reservation (or an unreadable one): take it over
                existing.undefine()
            except libvirt.libvirtError:
                pass
        try:
            return conn.secretDefineXML(_xml(holder), 0).UUIDString()
        except libvirt.libvirtError as exc:
            error = exc  # somebody defined one meanwhile: look again
    holder_now = _holder_of(_current(conn)) if _current(conn) is not None else None
    raise HostBusy(uri, holder_now, detail=(error.get_error_message() or str(error)))


class LibvirtReservation(Reservation):
    def __init__(self, held: list[tuple[Any, str]], holder: Holder):
        self.held, self.holder = held, holder

    def renew(self) -> None:
        self.holder.renewed = time.time()
        for conn, uuid in self.held:
            try:
                conn.secretDefineXML(_xml(self.holder, uuid), 0)
            except libvirt.libvirtError:
                pass  # the host went away; its libvirtd forgets ephemeral secrets anyway

    def release(self) -> None:
        for conn, uuid in reversed(self.held):
            try:
                conn.secretLookupByUUIDString(uuid).undefine()
            except libvirt.libvirtError:
                pass
        self.held = []


def reserve(conns: dict[str, Any], holder: Holder) -> LibvirtReservation:
    """Reserve every host of ``conns`` (uri -> connection), in URI order so that two
    runs with swapped hosts cannot each hold one; all or none."""
    held: list[tuple[Any, str]] = []
    try:
        for uri in sorted(conns):
            held.append((conns[uri], _acquire_one(conns[uri], uri, holder)))
    except BaseException:
        LibvirtReservation(held, holder).release()
        raise
    return LibvirtReservation(held, holder)
