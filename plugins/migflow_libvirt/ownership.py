"""Which run a domain belongs to: a mark in the domain's libvirt metadata.

Every domain migflow creates carries, in its ``<metadata>``::

    <migflow:owner xmlns:migflow="https://migflow.dev/xmlns/domain/1"
                   run="20261201-215409-352cd4" pid="4242" start="123456" host="lab-1"/>

``prepare-domain`` removes only domains whose mark names a run whose migflow
process is gone (PID and start time, on the machine that recorded it), never
a domain by its name, and never one without a mark: two runs at once, or a
user's own domains, are left alone.  A mark written by migflow 0.1 (a bare
``<migflow:run>`` element, without an owner process) counts as a leftover.
"""

from __future__ import annotations

import os
import socket
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from xml.sax.saxutils import quoteattr

from migflow.procs import process_alive, process_start

__all__ = ["METADATA_NS", "Owner", "owner_element", "parse_owner"]

METADATA_NS = "https://migflow.dev/xmlns/domain/1"


@dataclass(frozen=True)
class Owner:
    run_id: str
    pid: int | None
    start: int | None
    host: str | None

    def alive(self) -> bool | None:
        """Is the owning migflow process still running?  None: it ran on another machine."""
        if self.pid is None:
            return False  # a mark of migflow 0.1: no owner to wait for
        return process_alive(self.pid, self.start, self.host)


def owner_element(run_id: str) -> str:
    """The metadata element for a domain created now by this process for ``run_id``."""
    pid = os.getpid()
    return (
        f"<migflow:owner xmlns:migflow='{METADATA_NS}' run={quoteattr(run_id)} pid='{pid}' "
        f"start='{process_start(pid) or ''}' host={quoteattr(socket.gethostname())}/>"
    )


def parse_owner(xml: str) -> Owner | None:
    """The owner in a metadata element as libvirt returns it, or None when it is no migflow mark."""
    try:
        el = ET.fromstring(xml)
    except ET.ParseError:
        return None
    tag = el.tag.rsplit("}", 1)[-1]
    if tag == "run":  # migflow 0.1
        return Owner((el.text or "").strip(), None, None, None)
    if tag != "owner" or not el.get("run"):
        return None

    def number(key: str) -> int | None:
        value = el.get(key) or ""
        return int(value) if value.isdigit() else None

    return Owner(el.get("run", ""), number("pid"), number("start"), el.get("host"))
