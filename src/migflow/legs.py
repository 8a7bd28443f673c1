"""Migration legs and their statistics samples.

Statistics use QMP ``query-migrate`` names and units throughout (``total-time``
in ms, ``ram.transferred`` in bytes, ``ram.mbps`` in Mbit/s ...).  Backends
translate into this shape; collectors read it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from .status import LegStatus

__all__ = ["Leg", "Sample", "flatten_stats"]


@dataclass
class Sample:
    """One observation of a running leg.

    :param ms: milliseconds since the leg started (client clock).
    :param stats: QMP-shaped statistics (``{"status": ..., "ram": {...}, ...}``).
    :param kind: ``"poll"`` for periodic samples, ``"iteration"`` for one taken
        when the hypervisor reported a new iteration.
    """

    ms: float
    stats: dict
    kind: str = "poll"


@dataclass
class Leg:
    """One migration from ``source`` to ``destination``.

    The migrate step fills the identity fields and the outcome; backends fill
    ``final_stats``; observers may add to ``extra``.
    """

    number: int
    source: str
    destination: str
    mode: str
    flags: list[str] = field(default_factory=list)
    #: the domain this leg moves (``ctx.state["domains"]`` entry); None: the run's only domain
    domain: dict | None = None
    guest: int = 1  # which guest of the run, from 1
    batch: int = 1  # which group of legs migrated together (1: there, 2: back)
    concurrency: int = 1  # how many legs of the batch could run at once
    started_at: float = 0.0  # time.time()
    started_mono: float = 0.0  # time.monotonic()
    ended_at: float | None = None
    status: LegStatus = LegStatus.RUNNING
    error: str | None = None
    wall_ms: float | None = None  # client wall time, like `time virsh migrate`
    final_stats: dict | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # backends keep private per-leg state here (connections, job handles)
    backend_state: dict[str, Any] = field(default_factory=dict, repr=False)
    done: threading.Event = field(default_factory=threading.Event, repr=False)

    def start(self) -> None:
        self.started_at = time.time()
        self.started_mono = time.monotonic()

    def elapsed_ms(self) -> float:
        return (time.monotonic() - self.started_mono) * 1000.0

    def stop_clock(self) -> None:
        """The client call returned: fix the client wall time."""
        if self.wall_ms is None:
            self.wall_ms = self.elapsed_ms()

    def finish(self, status: LegStatus, error: str | None = None) -> None:
        self.stop_clock()
        self.ended_at = time.time()
        self.status = status
        self.error = error
        self.done.set()


def flatten_stats(stats: dict) -> dict:
    """``{"ram": {"dirty-sync-count": 4}}`` -> ``{"ram_dirty_sync_count": 4}``.

    The naming rule of the ``migrations`` table: QMP field names with ``-`` and
    ``.`` written ``_``.
    """
    out: dict = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}_{k}" if prefix else str(k), v)
        else:
            out[prefix.replace("-", "_").replace(".", "_")] = value

    walk("", stats or {})
    return out
