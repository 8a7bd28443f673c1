"""One run at a time on a host pair: reservations, their holders, and waiting for them.

Concurrent migrations on the same hosts skew each other's numbers, and two
runs that create and remove guests on the same hosts must not meet.  Before
its first run, ``migflow run`` reserves both hosts (the backend decides how:
the libvirt backend defines a small ephemeral libvirt secret on each host,
which works across machines; the QEMU backend, whose hosts are on this
machine, locks a file).  A second run on a reserved pair waits, saying who
holds it, or with ``--no-wait`` exits with status 6.  A reservation whose
holder died (same machine: its PID and start time are gone; another machine:
it stopped renewing its lease) is taken over.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import ExitCode, HostError
from .procs import process_alive, process_start

__all__ = ["LEASE_S", "RENEW_S", "Holder", "HostBusy", "Reservation"]

#: a reservation not renewed for this long is free (its holder on another machine died)
LEASE_S = 120.0
#: how often a holder renews its lease
RENEW_S = 30.0


@dataclass
class Holder:
    """Who holds a reservation: enough to say so and to tell whether it is still alive."""

    run: str  # the first run id of the holding `migflow run` (a session)
    workflow: str
    pid: int
    start: int | None
    host: str
    since: float = field(default_factory=time.time)
    renewed: float = field(default_factory=time.time)

    @classmethod
    def me(cls, run: str, workflow: str) -> Holder:
        pid = os.getpid()
        return cls(run, workflow, pid, process_start(pid), socket.gethostname())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Holder | None:
        try:
            return cls(
                str(data["run"]),
                str(data.get("workflow", "")),
                int(data["pid"]),
                data.get("start"),
                str(data["host"]),
                float(data.get("since", 0)),
                float(data.get("renewed", 0)),
            )
        except (KeyError, TypeError, ValueError):
            return None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def is_me(self) -> bool:
        return self.pid == os.getpid() and self.host == socket.gethostname()

    def dead(self, now: float | None = None) -> bool:
        """Gone for sure: its process ended (this machine), or its lease ran out (another machine)."""
        alive = process_alive(self.pid, self.start, self.host)
        if alive is not None:
            return not alive
        return (now or time.time()) - self.renewed > LEASE_S

    def describe(self) -> str:
        return f"run {self.run} of workflow {self.workflow!r} (pid {self.pid} on {self.host}, since {time.strftime('%H:%M:%S', time.localtime(self.since))})"


class HostBusy(HostError):
    """A host of the pair is reserved by another live run."""

    exit_code = ExitCode.BUSY

    def __init__(self, uri: str, holder: Holder | None, detail: str = ""):
        self.uri, self.holder = uri, holder
        who = holder.describe() if holder else (detail or "another run")
        super().__init__(f"{uri} is reserved by {who}", hint="wait for it (migflow run without --no-wait waits), or use other hosts")


class Reservation:
    """What a backend's ``reserve`` returns: call :meth:`renew` now and then, :meth:`release` at the end."""

    def renew(self) -> None:  # pragma: no cover - interface
        """Extend the lease (the engine calls this between runs)."""

    def release(self) -> None:  # pragma: no cover - interface
        """Give the hosts back.  Must not raise."""
