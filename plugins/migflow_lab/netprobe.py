"""How long a migrating guest is unreachable, seen from outside both hosts.

During each leg of a guest with a NIC (the Linux guest), an :class:`EchoProbe`
in the root namespace sends a numbered UDP datagram to the guest's echo port
every millisecond from the VM network's probe address (198.18.0.129) and
timestamps the replies.  The longest gap between consecutive replies that
overlaps the leg is ``net_pause_ms``: how long a client of the guest heard
nothing (QEMU's downtime plus the time the network needs to learn where the
guest went: the destination QEMU announces the guest's MAC with RARP/GARP
frames, and the root bridge moves it to the other host's port).  Datagrams
sent during the leg and never answered are ``net_probes_lost``.
"""

from __future__ import annotations

import itertools
import socket
import struct
import threading
import time
from bisect import bisect_left, bisect_right

__all__ = ["EchoProbe"]

_FMT = "!Qd"  # sequence number, send time


class EchoProbe:
    """Probe ``address:port`` at ``rate_hz`` from ``source`` until :meth:`stop`."""

    def __init__(self, address: str, port: int, *, source: str, rate_hz: float = 1000.0):
        self.address, self.port, self.rate_hz = address, port, rate_hz
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((source, 0))
        self.sock.settimeout(0.0005)
        self.sent: list[float] = []  # send times (monotonic), index = sequence number
        self.replies: list[float] = []  # arrival times of answers, in order
        self._answered: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"echo-probe-{address}", daemon=True)

    def start(self) -> EchoProbe:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()

    def _run(self) -> None:
        period = 1.0 / self.rate_hz
        next_send = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_send:
                with self._lock:
                    seq = len(self.sent)
                    self.sent.append(now)
                try:
                    self.sock.sendto(struct.pack(_FMT, seq, now), (self.address, self.port))
                except OSError:
                    pass  # no route while the network reconverges: it counts as lost
                next_send += period
                if now - next_send > 0.1:
                    next_send = now + period  # far behind (a descheduled process): no burst
            try:
                data, _ = self.sock.recvfrom(64)
            except (TimeoutError, BlockingIOError, OSError):
                continue
            arrived = time.monotonic()
            if len(data) >= struct.calcsize(_FMT):
                seq, _sent = struct.unpack_from(_FMT, data)
                with self._lock:
                    if seq not in self._answered:
                        self._answered.add(seq)
                        self.replies.append(arrived)

    def answered_since(self, t: float) -> bool:
        """Did a reply arrive after ``t`` (monotonic)?"""
        with self._lock:
            return bool(self.replies) and self.replies[-1] > t

    def summary(self, t0: float, t1: float) -> dict:
        """``net_pause_ms``, ``net_probes_sent`` and ``net_probes_lost`` for the window [t0, t1]."""
        with self._lock:
            sent = self.sent[bisect_left(self.sent, t0) : bisect_right(self.sent, t1)]
            first = bisect_left(self.sent, t0)
            lost = sum(1 for i in range(first, first + len(sent)) if i not in self._answered)
            times = self.replies
            lo, hi = bisect_left(times, t0), bisect_right(times, t1)
            window = times[max(0, lo - 1) : min(len(times), hi + 1)]  # the gaps that straddle the bounds count too
        if window and window[-1] < t1:
            window.append(t1)  # still silent at the end of the window: that gap counts
        gaps = [b - a for a, b in itertools.pairwise(window)]
        pause = max(gaps, default=None)
        return {
            "net_pause_ms": round(pause * 1000.0, 3) if pause is not None else None,
            "net_probes_sent": len(sent),
            "net_probes_lost": lost,
        }
