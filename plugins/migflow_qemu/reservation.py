"""Host reservations of the QEMU backend: a locked file per host on this machine.

The QEMU backend's hosts are on this machine (lab namespaces or local
addresses), so an ``flock`` on ``/run/migflow/reservations/<address>.lock``
reserves a host; the kernel releases it when the holding process dies, so a
killed migflow's reservation is free at once.  The file names its holder.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

from migflow.reservation import Holder, HostBusy, Reservation

__all__ = ["DIR", "FileReservation", "reserve"]

DIR = Path(os.environ.get("MIGFLOW_RESERVATIONS", "/run/migflow/reservations"))


class FileReservation(Reservation):
    def __init__(self, fds: list[int]):
        self.fds = fds

    def renew(self) -> None:
        pass  # a lock lives as long as its process

    def release(self) -> None:
        for fd in self.fds:
            try:
                os.close(fd)  # releases the flock
            except OSError:
                pass
        self.fds = []


def reserve(hosts: dict[str, str], holder: Holder) -> FileReservation:
    """Lock each host (uri -> address) in URI order; all or none."""
    DIR.mkdir(parents=True, exist_ok=True)
    fds: list[int] = []
    try:
        for uri in sorted(hosts):
            path = DIR / f"{hosts[uri]}.lock"
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                try:
                    other = Holder.from_dict(json.loads(os.pread(fd, 4096, 0) or b"{}"))
                except ValueError:
                    other = None
                os.close(fd)
                raise HostBusy(uri, other) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(holder.as_dict()).encode(), 0)
            fds.append(fd)
    except BaseException:
        FileReservation(fds).release()
        raise
    return FileReservation(fds)
