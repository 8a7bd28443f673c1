"""Helpers shared by the benchmark scripts (not part of migflow).

Statistics are deliberately simple: medians, quartiles, and a bootstrap
confidence interval for a median ratio or a difference of medians.  Every
script measures the things it compares side by side, interleaved, in one
invocation, and reports ratios: absolute times drift on a shared machine.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import statistics
import subprocess
import sys
import time

#: the lock engineers take around anything that uses the lab (flock(1) uses the same flock(2))
LAB_LOCK = "/tmp/migflow-lab-dev.lock"
SRC = "qemu+tcp://198.18.0.1/system"
DST = "qemu+tcp://198.18.0.2/system"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@contextlib.contextmanager
def lab_lock(path: str | None = LAB_LOCK):
    """Hold the lab lock (same as ``flock /tmp/migflow-lab-dev.lock CMD``); ``None``: the caller holds it."""
    if path is None:
        yield 0.0
        return
    t0 = time.monotonic()
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        waited = time.monotonic() - t0
        if waited > 1:
            log(f"  (waited {waited:.0f} s for {path})")
        yield waited
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def quartiles(xs):
    xs = sorted(xs)
    if len(xs) < 2:
        return xs[0], xs[0], xs[0]
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[0], statistics.median(xs), q[2]


def bootstrap(stat, samples: list, n: int = 5000, seed: int = 1, level: float = 0.95):
    """Percentile bootstrap CI of ``stat(resample)``; ``samples`` is a list of groups resampled independently."""
    rng = random.Random(seed)
    vals = []
    for _ in range(n):
        vals.append(stat(*[[rng.choice(g) for _ in g] for g in samples]))
    vals.sort()
    lo = vals[int((1 - level) / 2 * n)]
    hi = vals[int((1 + level) / 2 * n) - 1]
    return lo, hi


def median_ratio_ci(ratios: list[float]):
    return bootstrap(statistics.median, [ratios])


def geomean(xs) -> float:
    import math

    xs = list(xs)
    return math.exp(statistics.fmean(math.log(x) for x in xs))


def spread(xs, fmt: str = "{:.1f}") -> str:
    """``median M (quartiles Q1-Q3, range LO-HI, n N)``, the way every figure is stated here."""
    xs = sorted(xs)
    q1, med, q3 = quartiles(xs)
    f = fmt.format
    return f"median {f(med)} (quartiles {f(q1)}-{f(q3)}, range {f(xs[0])}-{f(xs[-1])}, n {len(xs)})"


def histogram(xs, width: float, unit: str = "ms", scale: float = 1.0, digits: int = 0, indent: str = "    ") -> list[str]:
    """Text histogram of ``xs * scale`` in bins of ``width`` (empty bins between kept: they show a gap)."""
    vals = sorted(x * scale for x in xs)
    first = int(vals[0] // width)
    lines = []
    k = first
    while k * width <= vals[-1]:
        b = k * width
        n = sum(1 for v in vals if b <= v < b + width)
        label = f"{b:.{digits}f}-{b + width:.{digits}f}"
        lines.append(f"{indent}{label:>13s} {unit:2s} {'#' * n}{'' if n else '.'}")
        k += 1
    return lines


def modes(xs) -> dict:
    """Is a sample two-humped?  The widest gap between neighbouring sorted values splits it in two;
    it counts as two modes when each side has at least 3 values and the gap is wider than twice
    the larger interquartile range of the two sides (and than a tenth of the median).  Also Sarle's
    bimodality coefficient (> 0.555 hints at two modes; sensitive to outliers, so only a second opinion)."""
    vals = sorted(xs)
    n = len(vals)
    out: dict = {"n": n, "bimodal": False}
    if n < 6:
        return out
    gaps = [(vals[i + 1] - vals[i], i) for i in range(n - 1)]
    gap, i = max(gaps)
    low, high = vals[: i + 1], vals[i + 1 :]
    iqr = max((quartiles(g)[2] - quartiles(g)[0]) if len(g) > 1 else 0.0 for g in (low, high))
    mean = statistics.fmean(vals)
    sd = statistics.pstdev(vals)
    if sd > 0 and n > 3:
        g1 = sum((v - mean) ** 3 for v in vals) / n / sd**3 * (n * (n - 1)) ** 0.5 / (n - 2)
        m4 = sum((v - mean) ** 4 for v in vals) / n / sd**4
        g2 = ((n + 1) * (m4 - 3) + 6) * (n - 1) / ((n - 2) * (n - 3))  # sample excess kurtosis
        out["bc"] = (g1**2 + 1) / (g2 + 3 * (n - 1) ** 2 / ((n - 2) * (n - 3)))
    out.update(
        gap=gap,
        split=(low[-1], high[0]),
        low=(len(low), statistics.median(low)),
        high=(len(high), statistics.median(high)),
        side_iqr=iqr,
        bimodal=len(low) >= 3 and len(high) >= 3 and gap > 2 * iqr and gap > 0.1 * statistics.median(vals),
    )
    return out


def describe_modes(name: str, xs, scale: float = 1000.0, unit: str = "ms") -> str:
    m = modes(xs)
    if "gap" not in m:
        return f"  {name}: too few values to tell modes apart"
    bc = f"; bimodality coefficient {m['bc']:.2f}" if "bc" in m else ""
    lo, hi = m["low"], m["high"]
    if m["bimodal"]:
        verdict = (
            f"TWO MODES: {lo[0]} around {lo[1] * scale:.0f} {unit}, {hi[0]} around {hi[1] * scale:.0f} {unit}, "
            f"empty gap {m['gap'] * scale:.0f} {unit} ({m['split'][0] * scale:.0f}-{m['split'][1] * scale:.0f})"
        )
    else:
        verdict = (
            f"one mode: widest gap {m['gap'] * scale:.0f} {unit} ({m['split'][0] * scale:.0f}-{m['split'][1] * scale:.0f}, "
            f"{lo[0]} below / {hi[0]} above), not wider than twice the spread of its sides ({m['side_iqr'] * scale:.0f} {unit})"
        )
    return f"  {name}: {verdict}{bc}"


@contextlib.contextmanager
def hold_hosts(why: str, libvirt_: bool = True, qemu: bool = True, poll_s: float = 1.0, unreachable_s: float = 600.0):
    """Reserve both lab hosts the way ``migflow run`` does, waiting while another run holds them.

    ``libvirt_``: the libvirt backend's reservation (an ephemeral secret on each
    host: what every ``migflow run`` of a libvirt workflow takes; leave it to the
    run itself when the benchmark runs ``migflow run`` inside the hold).
    ``qemu``: the QEMU backend's (a locked file per host address): it does not
    see the libvirt one, so a QEMU-backend run could migrate on the lab's link
    beside a libvirt run; holding both keeps both kinds of run away.  While a
    lab daemon does not answer, wait (at most ``unreachable_s``).
    """
    import libvirt

    from migflow.reservation import Holder, HostBusy

    holder = Holder.me(f"bench-{os.getpid()}", why)
    held: list = []
    said: set = set()
    deadline = time.monotonic() + unreachable_s
    try:
        for kind in [k for k, on in (("qemu", qemu), ("libvirt", libvirt_)) if on]:
            while True:
                try:
                    held.append(_reserve(kind, holder))
                    break
                except HostBusy as exc:
                    if exc.message not in said:
                        log(f"  (waiting: {exc.message})")
                        said.add(exc.message)
                except libvirt.libvirtError as exc:  # a daemon restarting (someone's failure test, a rebuilt lab)
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"the lab stayed unreachable for {unreachable_s:g} s: {exc}") from None
                    if "unreachable" not in said:
                        log(f"  (waiting: the lab is unreachable: {exc})")
                        said.add("unreachable")
                time.sleep(poll_s)
        yield
    finally:
        for r in reversed(held):
            r.release()


def _reserve(kind: str, holder):
    if kind == "qemu":
        from migflow_qemu.reservation import reserve as reserve_files

        return reserve_files({SRC: "198.18.0.1", DST: "198.18.0.2"}, holder)
    import libvirt
    from migflow_libvirt.reservation import reserve as reserve_secrets

    libvirt.registerErrorHandler(lambda *_: None, None)
    conns = {uri: libvirt.open(uri) for uri in (SRC, DST)}
    try:
        r = reserve_secrets(conns, holder)
    except BaseException:
        for c in conns.values():
            c.close()
        raise
    release = r.release

    def release_and_close():
        try:
            release()
        finally:
            for c in conns.values():
                c.close()

    r.release = release_and_close  # type: ignore[method-assign]
    return r


def run_timed(argv, **kw) -> tuple[float, subprocess.CompletedProcess]:
    """Process wall time (like ``time CMD``) in seconds, and the completed process."""
    t0 = time.perf_counter()
    proc = subprocess.run(argv, check=False, capture_output=True, text=True, **kw)
    return time.perf_counter() - t0, proc


def machine_note() -> str:
    load = os.getloadavg()
    return f"{os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"


# -- the lab ---------------------------------------------------------------------
def lab_ready(rate: str | None) -> None:
    """Bring the lab up if needed and shape its link to ``rate`` (None: unshaped).  Call under the lock."""
    from migflow_lab import api as hosts

    if not hosts.is_up():
        log("the lab is down: migflow lab up")
        hosts.up(echo=log)
    hosts.shape(rate=rate)


def lab_fingerprint() -> tuple:
    """What must not change under a measurement: both daemons' PIDs (a rebuilt lab has new ones) and the link shaping."""
    from migflow_lab import api as hosts

    return tuple(hosts.libvirtd_pid(h) for h in hosts.HOSTS), tuple(sorted(hosts.link().items()))


def lab_unshape() -> None:
    from migflow_lab import api as hosts

    if hosts.is_up():
        hosts.shape()


class BenchDomain:
    """A transient lab guest defined for a benchmark (the lab's memory-dirtying kernel), on host a.

    The same guest (one QEMU process, one boot) is migrated by every contender,
    so its dirty rate and working set are the same for all.
    """

    def __init__(self, name: str, memory_mib: int = 256, workload: dict | None = None):
        import uuid

        self.name = name
        self.uuid = str(uuid.uuid4())
        self.memory_mib = memory_mib
        self.workload = workload or {"working_set_mib": 64, "dirty_rate_mibs": 32, "pattern": "sequential"}

    def _conn(self, uri):
        import libvirt

        libvirt.registerErrorHandler(lambda *_: None, None)  # "domain not found" is an answer here
        return libvirt.open(uri)

    def create(self) -> None:
        from migflow_lab import api as hosts
        from migflow_lab.guest import guest_image
        from migflow_libvirt.domain_xml import domain_xml

        img = guest_image(self.workload)
        xml = domain_xml(
            name=self.name,
            uuid=self.uuid,
            memory_mib=self.memory_mib,
            vcpus=1,
            virt_type="kvm" if hosts.accel() == "kvm" else "qemu",
            image=img,
            serial_path=None,
            run_id="bench",
        )
        self.destroy()
        conn = self._conn(SRC)
        try:
            conn.createXML(xml, 0)
        finally:
            conn.close()

    def where(self) -> str | None:
        """'src', 'dst' or None."""
        for tag, uri in (("src", SRC), ("dst", DST)):
            conn = self._conn(uri)
            try:
                if self.name in [d.name() for d in conn.listAllDomains()]:
                    return tag
            finally:
                conn.close()
        return None

    def ensure_on_source(self) -> None:
        """Migrate it back to host a (p2p, live) when it is on b; recreate it when lost."""
        at = self.where()
        if at == "dst":
            proc = subprocess.run(["virsh", "-q", "-c", DST, "migrate", "--live", "--p2p", self.name, SRC], check=False, capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"could not move {self.name} back: {proc.stderr.strip()}")
        elif at is None:
            log(f"  {self.name} is not on the lab: creating it")
            self.create()
            time.sleep(3)  # boot, and let the guest dirty its working set once

    def destroy(self) -> None:
        import libvirt

        for uri in (SRC, DST):
            try:
                conn = self._conn(uri)
            except libvirt.libvirtError:
                continue
            try:
                dom = conn.lookupByName(self.name)
                dom.destroy()
            except libvirt.libvirtError:
                pass
            finally:
                conn.close()


#: (event, detail) of libvirt's lifecycle events during a migration -> name
LIFECYCLE = {(2, 1): "dst_started", (3, 1): "src_suspended", (4, 1): "dst_resumed", (5, 3): "src_stopped"}


class LifecycleClock:
    """Passive observer of both lab hosts' domain lifecycle events, stamped on this process's clock.

    It subscribes like any libvirt client (no QEMU monitor access), so it changes
    nothing for whoever migrates, and it times every leg the same way whoever
    drives it.  Events of a live p2p migration: destination ``started/migrated``
    (the incoming QEMU runs: libvirt's begin and prepare are done), source
    ``suspended/migrated`` (the guest is paused for the switchover), destination
    ``resumed/migrated`` (the guest runs there), source ``stopped/migrated``
    (the source QEMU is gone).  Create it before any other libvirt connection of
    the process: it installs libvirt's default event loop.
    """

    def __init__(self, domain: str):
        import threading

        import libvirt

        libvirt.virEventRegisterDefaultImpl()
        self.domain = domain
        self.events: list[tuple[float, str, int, int]] = []
        self._stop = threading.Event()
        self._loop = threading.Thread(target=self._run, name="lifecycle-events", daemon=True)
        self._loop.start()
        self.conns = []
        for tag, uri in (("a", SRC), ("b", DST)):
            c = libvirt.open(uri)
            c.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._on_event, tag)
            self.conns.append(c)

    def _run(self) -> None:
        import libvirt

        while not self._stop.is_set():
            libvirt.virEventRunDefaultImpl()

    def _on_event(self, _conn, dom, event, detail, host) -> None:
        if dom.name() == self.domain:
            self.events.append((time.time(), host, event, detail))

    def phases(self, t0: float, t1: float, source: str = "a") -> dict | None:
        """The leg that ran in [t0, t1] (time.time()) from ``source``: ms from t0 to each event, or None
        when one is missing."""
        seen: dict[str, float] = {}
        for t, host, event, detail in list(self.events):
            name = LIFECYCLE.get((event, detail))
            if name and t0 <= t <= t1 + 1.0 and (host == source) == name.startswith("src") and name not in seen:
                seen[name] = (t - t0) * 1000.0
        if len(seen) < 4:
            return None
        seen["end"] = (t1 - t0) * 1000.0
        return seen

    def ensure(self) -> None:
        """Reconnect to a host whose daemon went away (a rebuilt lab)."""
        import libvirt

        for i, (tag, uri) in enumerate((("a", SRC), ("b", DST))):
            try:
                if self.conns[i].isAlive():
                    continue
            except libvirt.libvirtError:
                pass
            try:
                c = libvirt.open(uri)
                c.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._on_event, tag)
                self.conns[i] = c
            except libvirt.libvirtError as exc:
                log(f"  lifecycle events of host {tag} lost: {exc}")

    def close(self) -> None:
        for c in self.conns:
            try:
                c.close()
            except Exception:
                pass
        self._stop.set()


def migflow_workflow(path: str, domain: str, mode: str, interval_ms: float | None = 100, extra_steps: str = "") -> str:
    """A one-leg workflow on an existing domain (written to ``path``)."""
    collect = "" if interval_ms is None else f'\n[[steps]]\nuse = "collect-qmp"\ninterval_ms = {interval_ms}\n'
    text = f'''name = "bench"
repetitions = 1
round_trip = false

[domain]
name = "{domain}"

[[steps]]
use = "prepare-domain"
{extra_steps}
[[steps]]
use = "migrate"
mode = "{mode}"
timeout = {{ seconds = 300, action = "abort" }}
{collect}
[[steps]]
use = "restore"
'''
    with open(path, "w") as f:
        f.write(text)
    return path


def migflow_leg(workflow: str, results: str) -> dict:
    """Run a one-leg workflow with the real CLI; returns leg 1's row of ``migrations`` (as a dict)."""
    proc = subprocess.run([sys.executable, "-m", "migflow", "run", workflow, "--results", results], check=False, capture_output=True, text=True)
    import duckdb

    con = duckdb.connect(results, read_only=True)
    try:
        cur = con.execute("SELECT m.*, r.run_id AS run FROM migrations m JOIN runs r USING (run_id) ORDER BY r.started_at DESC LIMIT 1")
        cols = [d[0] for d in cur.description]
        row = cur.fetchone()
    finally:
        con.close()
    if proc.returncode != 0 or row is None:
        raise RuntimeError(f"migflow run failed (exit {proc.returncode}): {proc.stdout[-800:]} {proc.stderr[-800:]}")
    return dict(zip(cols, row, strict=True))
