"""Facts about a machine that shape a migration's numbers: kernel, CPU, load, free memory.

Read from this machine's ``/proc``; the backends add what they can learn
about remote hosts (versions, CPU model, free memory) through their own
connections.  Recorded per run in ``runs.environment`` (docs/results.md).
"""

from __future__ import annotations

import os
import platform
import socket
from typing import Any

__all__ = ["machine_facts"]


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _mem_available_mib() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


def _loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def machine_facts() -> dict[str, Any]:
    """This machine now: hostname, kernel, CPU model and count, 1/5/15-minute load, available memory."""
    return {
        "hostname": socket.gethostname(),
        "kernel": platform.release(),
        "cpu_model": _cpu_model(),
        "cpus": os.cpu_count(),
        "loadavg": _loadavg(),
        "mem_available_mib": _mem_available_mib(),
    }
