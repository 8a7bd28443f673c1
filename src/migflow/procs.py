"""Processes on this machine, read from ``/proc``: is a recorded PID still the same live process?

A PID alone is not an identity: the kernel reuses it.  migflow records a
process as its PID plus its start time (clock ticks since boot, field 22 of
``/proc/PID/stat``), and a process is the recorded one only when both agree.
Used by the results store (runs of dead migflow processes), the lab (the
daemons it started) and the ownership marks on domains and host reservations.
"""

from __future__ import annotations

import os
import socket

__all__ = ["all_pids", "command_name", "process_alive", "process_start"]


def process_start(pid: int) -> int | None:
    """Start time of a live, non-zombie process in clock ticks since boot; None when there is none."""
    try:
        with open(f"/proc/{int(pid)}/stat") as f:
            data = f.read()
    except (OSError, ValueError, OverflowError):
        return None
    fields = data[data.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def process_alive(pid: int | None, start: int | None = None, hostname: str | None = None) -> bool | None:
    """Is ``pid`` (started at ``start`` ticks, when known) still running?

    :param hostname: where the process ran; another machine's process cannot
        be checked here, and the answer is ``None`` ("cannot tell").
    :returns: True or False when it can be told on this machine, else None.
    """
    if hostname and hostname != socket.gethostname():
        return None
    if not pid:
        return False
    now = process_start(pid)
    if now is None:
        return False
    return start is None or now == start


def all_pids() -> list[int]:
    """Every PID in ``/proc``."""
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def command_name(pid: int) -> str:
    """The process's command name (``/proc/PID/comm``), or "" when it is gone."""
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""
