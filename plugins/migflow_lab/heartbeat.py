"""Host side of the guest's serial heartbeat: how long was the guest really paused?

The lab guest (``docs/guest.md``) writes one ``.`` to its first serial port
every ``hb_us`` microseconds of guest time, and status lines ``#...\\n``
(at boot and about once a second).  QEMU appends these bytes to a plain file.
:class:`HeartbeatMonitor` tails that file in a thread, stamps each read that
carries heartbeats with :func:`time.monotonic`, and answers questions about the
gaps: a migration's switchover shows as one long gap.

The stamps are the reader's, so a reader held up (a busy machine, the
interpreter's lock) would show a gap the guest never had.  The guest writes
at most one heartbeat per period and none it missed (a late beat does not
bring a burst), so a read that carries ``n`` heartbeats means the guest ran
for at least ``n - 1`` periods since the read before: that much of the
interval is not counted as a gap.  On the lab with three busy loops on its
two cores (12 legs of p2p, p2p-tunnelled and managed-direct) this changed
``guest_pause_ms`` on 4 legs, by 1-16 ms: the other long gaps there (up to
785 ms beside a libvirt downtime of 312 ms) held no heartbeat at all, so the
guest did not run, and they count.

Parsing rules (robust to two QEMU processes appending to the same file, to a
file that does not exist yet, to NUL holes and to truncation):

* ``#`` starts a status line, which ends at ``\\n`` (or is dropped after 256 bytes);
* outside a status line, each ``.`` is one heartbeat; every other byte is ignored.
"""

from __future__ import annotations

import os
import threading
import time
from array import array
from bisect import bisect_left, bisect_right
from collections import deque
from operator import sub

__all__ = ["HeartbeatMonitor", "parse_status_line"]

_MAX_LINE = 256


def parse_status_line(line: str) -> dict:
    """``"rate=31.8 ws=64 pattern=seq"`` -> ``{"rate": 31.8, "ws": 64, "pattern": "seq"}``.

    Numbers become int or float; a leading word without ``=`` (``migflow-guest``,
    ``warn``) is stored under ``"kind"``.
    """
    out: dict = {}
    for tok in line.split():
        if "=" not in tok:
            out.setdefault("kind", tok)
            continue
        k, v = tok.split("=", 1)
        for conv in (int, float):
            try:
                out[k] = conv(v)
                break
            except ValueError:
                pass
        else:
            out[k] = v
    return out


class HeartbeatMonitor:
    """Tail a guest's serial file and time its heartbeats.

    :param path: the serial file (``-chardev file,append=on`` / libvirt
        ``<serial type='file'><source path=... append='on'/>``).  It may not exist yet.
    :param period_us: the nominal heartbeat period; replaced by the guest's own
        ``hb_us`` once its boot line has been read.
    :param poll_s: how often the file is read (default 0.5 ms).
    :param history_s: heartbeat arrival times older than this are forgotten
        (12 bytes per read that carried heartbeats: about 43 MB per hour at 1 kHz).
    """

    def __init__(self, path: str | os.PathLike, period_us: int = 1000, *, poll_s: float = 0.0005, history_s: float = 3600.0):
        self.path = os.fspath(path)
        self.period_us = period_us
        self.poll_s = poll_s
        self.history_s = history_s
        self.boot: dict | None = None  #: parsed boot line (``kind == "migflow-guest"``)
        self.status: dict | None = None  #: latest parsed ``#rate=...`` line
        self.steady: dict | None = None  #: the guest's ``#steady t_ms=... rate=...`` line, once it came
        self.steady_at: float | None = None  #: when it arrived (monotonic)
        self._verification: tuple[int, int] | None = None  # (ver, bad) of the latest status line
        self._disk_verification: tuple[int, int] | None = None  # (dver, dbad) of the latest #disk line
        self.net: dict | None = None  #: the Linux guest's ``#net ip=... echo_port=...`` line
        self.lines: deque[str] = deque(maxlen=200)  #: recent status lines, raw
        self.truncations = 0  #: times the file shrank (a writer without append)
        self.bytes_read = 0
        self._count = 0
        self._times = array("d")
        self._counts = array("I")  # heartbeats carried by the read at the same index of _times
        self._lock = threading.Lock()
        self._line: bytearray | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._cpu_s = 0.0
        self._run_s = 0.0

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> HeartbeatMonitor:
        """Start the tailing thread (idempotent); returns self."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="migflow-heartbeat", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread after a last read of the file."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None

    def __enter__(self) -> HeartbeatMonitor:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- results ---------------------------------------------------------------

    @property
    def heartbeats(self) -> int:
        """Heartbeats seen so far."""
        return self._count

    @property
    def period_ms(self) -> float:
        """The nominal period: the guest's ``hb_us`` when known, else the constructor's."""
        hb = (self.boot or {}).get("hb_us")
        return (hb if isinstance(hb, int) and hb > 0 else self.period_us) / 1000.0

    @property
    def cpu_fraction(self) -> float:
        """CPU time the tailing thread used per second of running (0.01 = 1% of a core)."""
        return self._cpu_s / self._run_s if self._run_s else 0.0

    def last_heartbeat(self) -> float | None:
        """Monotonic time of the latest heartbeat, or None."""
        with self._lock:
            return self._times[-1] if self._times else None

    def longest_gap_ms(self, t0: float | None = None, t1: float | None = None) -> float | None:
        """The longest interval between consecutive heartbeats that overlaps [t0, t1], less the
        periods the guest must have run in it: ``n - 1`` of them when the read that ended the
        interval carried ``n`` heartbeats (a reader held up, not a paused guest).

        An interval counts when it ends at or after ``t0`` and starts at or before
        ``t1`` (so a gap straddling either bound is included).  If no heartbeat
        arrived after the last one before ``t1``, the still-open gap up to
        ``min(t1, now)`` counts too.  None when no heartbeat was ever seen.

        :param t0: start of the window, :func:`time.monotonic` seconds (None: from the start).
        :param t1: end of the window (None: now).
        """
        now = time.monotonic()
        t1 = now if t1 is None else t1
        with self._lock:
            times = self._times
            if not times:
                return None
            lo = 0 if t0 is None else bisect_left(times, t0)
            hi = bisect_right(times, t1)
            k0, k1 = max(lo, 1), min(hi, len(times) - 1)
            period_s = self.period_ms / 1000.0
            ran = [(n - 1) * period_s for n in self._counts[k0 : k1 + 1]]
            best = max(map(sub, map(sub, times[k0 : k1 + 1], times[k0 - 1 : k1]), ran), default=0.0) if k1 >= k0 else 0.0
            best = max(best, 0.0)
            if hi == len(times) and hi > 0:
                best = max(best, min(t1, now) - times[-1])
        return best * 1000.0

    def guest_pause_ms(self, t0: float | None = None, t1: float | None = None) -> float | None:
        """How long the guest stopped running in [t0, t1]: the longest gap minus
        the nominal period, never negative.  None when no heartbeat was seen."""
        gap = self.longest_gap_ms(t0, t1)
        return None if gap is None else max(0.0, gap - self.period_ms)

    def dirty_rate_mibs(self) -> float | None:
        """The dirty rate (MiB/s) the guest last reported, or None."""
        st = self.status
        return float(st["rate"]) if st and isinstance(st.get("rate"), (int, float)) else None

    def verification(self) -> tuple[int, int] | None:
        """(completed verification passes, pages found wrong) of the guest's latest status line, or None
        for a guest that does not verify its memory."""
        return self._verification

    def disk_verification(self) -> tuple[int, int] | None:
        """(completed passes over the written disk area, blocks found wrong) of the latest
        ``#disk`` line, or None for a guest that does not write a disk."""
        return self._disk_verification

    def wait(self, heartbeats: int = 1, timeout: float = 30.0) -> bool:
        """Block until at least ``heartbeats`` were seen; False on timeout."""
        deadline = time.monotonic() + timeout
        while self._count < heartbeats:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def arrivals(self) -> list[float]:
        """Copy of the arrival times (one per read that carried heartbeats)."""
        with self._lock:
            return list(self._times)

    # -- the thread ---------------------------------------------------------------

    def _feed(self, data: bytes, now: float) -> None:
        n = 0
        i, end = 0, len(data)
        while i < end:
            if self._line is not None:
                j = data.find(b"\n", i)
                if j < 0:
                    self._line += data[i:]
                    if len(self._line) > _MAX_LINE:
                        self._line = None
                    break
                self._line += data[i:j]
                self._on_line(bytes(self._line))
                self._line = None
                i = j + 1
            else:
                j = data.find(b"#", i)
                n += data.count(b".", i, end if j < 0 else j)
                if j < 0:
                    break
                self._line = bytearray()
                i = j + 1
        if n:
            with self._lock:
                self._times.append(now)
                self._counts.append(n)
                self._count += n
                if self._times[-1] - self._times[0] > self.history_s * 1.5:
                    cut = bisect_left(self._times, now - self.history_s)
                    del self._times[:cut]
                    del self._counts[:cut]

    def _on_line(self, raw: bytes) -> None:
        text = raw.replace(b"\0", b"").decode("ascii", "replace").strip()
        if not text:
            return
        self.lines.append(text)
        fields = parse_status_line(text)
        if fields.get("kind") == "migflow-guest":
            self.boot = fields
        elif fields.get("kind") == "steady":
            self.steady, self.steady_at = fields, time.monotonic()
        elif fields.get("kind") == "disk":
            if isinstance(fields.get("dver"), int) and isinstance(fields.get("dbad"), int):
                self._disk_verification = (fields["dver"], fields["dbad"])
        elif fields.get("kind") == "net":
            self.net = fields
        elif "rate" in fields:
            self.status = fields
            if isinstance(fields.get("ver"), int) and isinstance(fields.get("bad"), int):
                self._verification = (fields["ver"], fields["bad"])

    def _run(self) -> None:
        fd = None
        ino = None
        offset = 0
        polls = 0
        t_start, c_start = time.monotonic(), time.thread_time()
        try:
            while True:
                stopping = self._stop.is_set()
                if fd is None:
                    try:
                        fd = os.open(self.path, os.O_RDONLY)
                        ino = os.fstat(fd).st_ino
                        offset = 0
                    except FileNotFoundError:
                        if stopping:
                            break
                        self._stop.wait(0.005)
                        continue
                data = os.read(fd, 1 << 16)
                if data:
                    offset += len(data)
                    self.bytes_read += len(data)
                    self._feed(data, time.monotonic())
                    if len(data) == 1 << 16:
                        continue  # more to read right away (catching up on an existing file)
                elif polls % 200 == 0:
                    # about every 0.1 s when idle: account CPU; truncated or replaced file?
                    t, c = time.monotonic(), time.thread_time()
                    self._run_s += t - t_start
                    self._cpu_s += c - c_start
                    t_start, c_start = t, c
                    st = os.fstat(fd)
                    if st.st_size < offset:
                        self.truncations += 1
                        os.lseek(fd, 0, os.SEEK_SET)
                        offset, self._line = 0, None
                    try:
                        if os.stat(self.path).st_ino != ino:
                            os.close(fd)
                            fd = None
                            continue
                    except FileNotFoundError:
                        pass
                if stopping:
                    break
                polls += 1
                time.sleep(self.poll_s)
        finally:
            if fd is not None:
                os.close(fd)
            self._run_s += time.monotonic() - t_start
            self._cpu_s += time.thread_time() - c_start
