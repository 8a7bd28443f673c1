"""What a migration costs the hosts: CPU time of the source and destination QEMU.

The lab's hosts share this machine's /proc, so the QEMU processes of a guest
are found by the ``-uuid`` libvirt passes them, and their CPU time (user +
system, all threads) and that of their vCPU threads (named ``CPU n/KVM`` or
``CPU n/TCG``: libvirt starts QEMU with ``debug-threads=on``) is read from
``/proc/PID/stat`` and ``/proc/PID/task/*/stat``.  A :class:`CpuWatch` reads
them every 20 ms while a leg runs (the source QEMU exits as the leg ends, so
its last reading is at most 20 ms old) and reports the leg's share: what each
used between the leg's start and its end.
"""

from __future__ import annotations

import os
import threading

from migflow.procs import all_pids

__all__ = ["CpuWatch", "qemu_cpu_ms", "qemu_pids_of"]

_TICK_MS = 1000.0 / os.sysconf("SC_CLK_TCK")


def qemu_pids_of(uuid: str) -> list[int]:
    """The QEMU processes on this machine started for the domain ``uuid``, oldest first."""
    found = []
    needle = b"\0-uuid\0" + uuid.encode() + b"\0"
    for pid in all_pids():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read()
            if needle in cmdline and b"qemu" in cmdline.split(b"\0", 1)[0]:
                with open(f"/proc/{pid}/stat") as f:
                    start = int(f.read().rsplit(")", 1)[1].split()[19])
                found.append((start, pid))
        except (OSError, ValueError, IndexError):
            continue
    return [pid for _, pid in sorted(found)]


def _stat_ms(path: str) -> float:
    with open(path) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * _TICK_MS  # utime + stime


def qemu_cpu_ms(pid: int) -> tuple[float, dict[str, float]] | None:
    """(whole process CPU ms, {vCPU thread id: its CPU ms}) so far, or None when the process is gone."""
    try:
        total = _stat_ms(f"/proc/{pid}/stat")
        vcpus: dict[str, float] = {}
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/comm") as f:
                    if f.read().startswith("CPU "):
                        vcpus[tid] = _stat_ms(f"/proc/{pid}/task/{tid}/stat")
            except OSError:
                continue
        return total, vcpus
    except (OSError, ValueError, IndexError):
        return None


class _Usage:
    """One QEMU's CPU time as last read; a vCPU thread that has exited (QEMU shutting
    down at the leg's end) keeps its last reading instead of dropping out of the sum."""

    def __init__(self) -> None:
        self.total: float | None = None
        self.vcpus: dict[str, float] = {}

    def update(self, reading: tuple[float, dict[str, float]] | None) -> None:
        if reading is None:
            return
        self.total = reading[0] if self.total is None else max(self.total, reading[0])
        for tid, ms in reading[1].items():
            self.vcpus[tid] = max(ms, self.vcpus.get(tid, 0.0))

    def since(self, base: _Usage | None) -> tuple[float, float] | None:
        """(total, vCPU) ms used since ``base`` (since the process started when None)."""
        if self.total is None:
            return None
        if base is None or base.total is None:
            return self.total, sum(self.vcpus.values())
        return self.total - base.total, sum(ms - base.vcpus.get(tid, 0.0) for tid, ms in self.vcpus.items())


class CpuWatch:
    """Watch the QEMU processes of domain ``uuid`` during one leg."""

    def __init__(self, uuid: str, interval_s: float = 0.02):
        self.uuid, self.interval_s = uuid, interval_s
        pids = qemu_pids_of(uuid)
        self.src = pids[0] if pids else None
        self.dst: int | None = None
        self._base = _Usage()  # the source's CPU at the leg's start
        self._base.update(qemu_cpu_ms(self.src) if self.src else None)
        self._src, self._dst = _Usage(), _Usage()
        self._src.update(qemu_cpu_ms(self.src) if self.src else None)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"qemu-cpu-{uuid[:8]}", daemon=True)

    def start(self) -> CpuWatch:
        self._thread.start()
        return self

    def _read(self) -> None:
        if self.src is not None:
            self._src.update(qemu_cpu_ms(self.src))
        if self.dst is None:
            others = [p for p in qemu_pids_of(self.uuid) if p != self.src]
            self.dst = others[-1] if others else None
        if self.dst is not None:
            self._dst.update(qemu_cpu_ms(self.dst))

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._read()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._read()

    def used(self) -> dict:
        """CPU ms used during the leg so far: ``src_qemu_cpu_ms``, ``src_vcpu_cpu_ms``, ``dst_qemu_cpu_ms``, ``dst_vcpu_cpu_ms``."""
        out: dict = {}
        src = self._src.since(self._base) if self._base.total is not None else None
        if src is not None:
            out["src_qemu_cpu_ms"], out["src_vcpu_cpu_ms"] = round(src[0], 1), round(src[1], 1)
        dst = self._dst.since(None)  # the destination QEMU was started for this leg: all its time is the leg's
        if dst is not None:
            out["dst_qemu_cpu_ms"], out["dst_vcpu_cpu_ms"] = round(dst[0], 1), round(dst[1], 1)
        return out
