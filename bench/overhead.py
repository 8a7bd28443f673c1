#!/usr/bin/env python3
"""Benchmark 1 (issue 8): orchestration overhead of a migration leg.

Contenders, on the same running guest (one transient lab domain, booted once,
256 MiB, dirtying a 64 MiB working set at 32 MiB/s), same direction (lab
host a -> host b), same link:

* **migflow**: ``migflow run`` of a one-leg workflow (``mode = "p2p"``,
  ``collect-qmp`` at its 100 ms default, as the shipped workflows run) on the
  existing domain; the figure is ``migrations.wall_ms``, the client wall time
  of the leg as migflow records it, with its split ``wall_before_qemu_ms`` /
  ``wall_qemu_ms`` / ``wall_after_qemu_ms``.
* **virsh**: ``virsh -c qemu+tcp://198.18.0.1/system migrate --live --p2p DOM
  qemu+tcp://198.18.0.2/system``, timed as process wall time (what ``time
  virsh migrate`` prints: process start, connection, lookup, the migration).

Between measurements the guest goes back to host a (untimed) and settles.
Order alternates pair by pair.  Every measurement holds both lab hosts the way
``migflow run`` does (the libvirt backend's reservation, and the QEMU
backend's, which does not see the libvirt one), so no other migflow run
migrates on the lab meanwhile; the CPUs stay shared.

Printed: per pair both times and their ratio; then each contender's
distribution (histogram, and whether it has two modes, from the widest gap);
how the modes pair up; the ratio of the medians, the geometric mean of the
pair ratios and the median pair ratio, each with a bootstrap 95% interval over
the pairs; the order effect; the phase split of migflow's legs; and two
independent figures: libvirt's own job clock (``job_time_elapsed``, for the
virsh legs from ``virsh domjobinfo --completed`` on the destination) and what
a bare virsh invocation costs (``virsh domid``: start, connect, lookup).

    python3 bench/overhead.py                    # 30 pairs, unshaped link
    python3 bench/overhead.py --pairs 4          # quick
    python3 bench/overhead.py --rate 1gbit       # on a shaped link (longer legs)

It takes ``/tmp/migflow-lab-dev.lock`` itself, per ``--per-hold`` pairs (do not
wrap it in ``flock``; or pass ``--no-lock`` if you hold the lock already).
Target: migflow/virsh <= 1.05.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (
    DST,
    LAB_LOCK,
    SRC,
    BenchDomain,
    LifecycleClock,
    bootstrap,
    describe_modes,
    geomean,
    histogram,
    hold_hosts,
    lab_fingerprint,
    lab_lock,
    lab_ready,
    lab_unshape,
    log,
    machine_note,
    median_ratio_ci,
    migflow_leg,
    migflow_workflow,
    modes,
    quartiles,
    run_timed,
    spread,
)


def completed_job(domain: str) -> dict:
    """libvirt's statistics of the last completed migration, as the destination keeps them
    (``virsh domjobinfo --completed``): ``elapsed`` (ms, libvirt's job clock), ``memory`` (bytes
    processed, i.e. QEMU's ram transferred), ``iterations``; missing keys when virsh does not say."""
    proc = subprocess.run(["virsh", "-c", DST, "domjobinfo", "--completed", domain], check=False, capture_output=True, text=True)
    out: dict = {}
    if m := re.search(r"^Time elapsed:\s+(\d+)\s+ms", proc.stdout, re.M):
        out["elapsed"] = float(m.group(1))
    if m := re.search(r"^Memory processed:\s+([\d.]+)\s+(\w+)", proc.stdout, re.M):
        out["memory"] = float(m.group(1)) * {"B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30}.get(m.group(2), float("nan"))
    if m := re.search(r"^Iteration:\s+(\d+)", proc.stdout, re.M):
        out["iterations"] = int(m.group(1))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=30)
    ap.add_argument("--per-hold", type=int, default=10, help="pairs per hold of the lab lock")
    ap.add_argument("--rate", help="shape the lab link (e.g. 1gbit); default unshaped")
    ap.add_argument("--settle", type=float, default=2.0, help="seconds between measurements")
    ap.add_argument("--max-failures", type=int, default=10, help="pairs that may fail (measured again) before giving up")
    ap.add_argument("--no-lock", action="store_true", help="the caller holds /tmp/migflow-lab-dev.lock")
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="migflow-bench-overhead-")
    dom = BenchDomain(f"mfbench-overhead-{os.getpid()}")
    clock = LifecycleClock(dom.name)  # first: it installs libvirt's event loop in this process
    wf = migflow_workflow(os.path.join(work, "bench.toml"), dom.name, "p2p")
    results = os.path.join(work, "results.duckdb")
    virsh = ["virsh", "-q", "-c", SRC, "migrate", "--live", "--p2p", dom.name, DST]
    bare = ["virsh", "-q", "-c", SRC, "domid", dom.name]
    log(f"overhead: {args.pairs} pairs, link {args.rate or 'unshaped'}; {machine_note()}")
    loads = [os.getloadavg()[0]]
    pairs: list[dict] = []
    failures = 0
    try:
        done = 0
        while done < args.pairs:
            with lab_lock(None if args.no_lock else LAB_LOCK):
                lab_ready(args.rate)
                for _ in range(min(args.per_hold, args.pairs - done)):
                    order = ("migflow", "virsh") if done % 2 == 0 else ("virsh", "migflow")
                    clock.ensure()  # reconnect after a lab rebuilt by someone else (keepalive closes the old connections)
                    before = lab_fingerprint()
                    try:
                        got = measure_pair(order, dom, clock, wf, results, virsh, bare, args.settle)
                    except RuntimeError as exc:
                        failures += 1
                        log(f"  pair {done + 1} failed, measured again ({failures} failed so far): {exc}")
                        if failures > args.max_failures:
                            raise
                        continue
                    after = lab_fingerprint()
                    if after != before:
                        failures += 1
                        log(f"  pair {done + 1} dropped, measured again: the lab changed under it ({before} -> {after})")
                        continue
                    done += 1
                    loads.append(os.getloadavg()[0])
                    pairs.append(got)
                    r = got["row"]
                    log(
                        f"  pair {done:2d} ({order[0]} first): migflow {got['migflow'] * 1000:6.0f} ms "
                        f"(before {r['wall_before_qemu_ms'] or 0:4.0f} / qemu {r['wall_qemu_ms'] or 0:4.0f} / after {r['wall_after_qemu_ms'] or 0:4.0f}; "
                        f"job {r['job_time_elapsed']} ms, {(r['ram_transferred'] or 0) / 2**20:.0f} MiB)  virsh {got['virsh'] * 1000:6.0f} ms "
                        f"(job {got['virsh_job'].get('elapsed', float('nan')):.0f} ms, {got['virsh_job'].get('memory', float('nan')) / 2**20:.0f} MiB)  "
                        f"ratio {got['migflow'] / got['virsh']:.3f}"
                    )
                if done >= args.pairs:
                    with hold_hosts("bench/overhead.py", qemu=False):
                        dom.destroy()
                    lab_unshape()
    finally:
        if len(pairs) < args.pairs:
            with lab_lock(None if args.no_lock else LAB_LOCK):
                dom.destroy()
                lab_unshape()

    clock.close()
    if failures:
        print(f"({failures} pair(s) failed or were dropped and measured again; see the log on stderr)")
    report(pairs, args.rate, loads)
    return 0


def measure_pair(order, dom, clock, wf, results, virsh, bare, settle) -> dict:
    """Both contenders once, in ``order``, on the guest (created when missing); RuntimeError when a leg failed."""
    import libvirt

    try:
        return _measure_pair(order, dom, clock, wf, results, virsh, bare, settle)
    except libvirt.libvirtError as exc:
        raise RuntimeError(f"libvirt: {exc}") from None


def _measure_pair(order, dom, clock, wf, results, virsh, bare, settle) -> dict:
    got: dict = {"order": order[0]}
    with hold_hosts("bench/overhead.py", libvirt_=False):  # the QEMU backend's runs stay away for the pair
        for who in order:
            with hold_hosts("bench/overhead.py", qemu=False):
                dom.ensure_on_source()  # (re)creates it when missing: give it time to boot and dirty its working set
                time.sleep(settle)
                if who == "virsh":
                    got["bare"], _ = run_timed(bare)
                    t0 = time.time()
                    dt, proc = run_timed(virsh)
                    got["virsh_phases"] = clock.phases(t0, t0 + dt)
                    if proc.returncode != 0:
                        raise RuntimeError(f"virsh migrate failed: {proc.stderr.strip()}")
                    got["virsh"] = dt
                    got["virsh_job"] = completed_job(dom.name)
            if who == "migflow":  # `migflow run` reserves the hosts itself
                row = migflow_leg(wf, results)
                got["migflow"] = row["wall_ms"] / 1000.0
                t0 = row["started_at"].timestamp()
                got["migflow_phases"] = clock.phases(t0, t0 + got["migflow"])
                got["row"] = row
    return got


def report(pairs: list[dict], rate: str | None, loads: list[float]) -> None:
    mf = [p["migflow"] for p in pairs]
    vs = [p["virsh"] for p in pairs]
    ratios = [m / v for m, v in zip(mf, vs, strict=True)]
    rows = [p["row"] for p in pairs]
    print(
        f"orchestration overhead: {len(pairs)} interleaved pairs, p2p a->b, link {rate or 'unshaped'}, guest 256 MiB / ws 64 MiB / 32 MiB/s; "
        f"load average (1 min) during the run {min(loads):.2f}-{max(loads):.2f}"
    )
    print("client wall time of a leg, each contender:")
    for name, xs in (("migflow migrations.wall_ms", mf), ("time virsh migrate --p2p", vs)):
        print(f"  {name:28s} {spread([x * 1000 for x in xs], '{:.0f}')} ms")
    width = 50.0
    for name, xs in (("migflow wall_ms", mf), ("virsh", vs)):
        print(f"  histogram of {name} ({width:.0f} ms bins):")
        print("\n".join(histogram(xs, width, scale=1000.0)))
    for name, xs in (("migflow wall_ms", mf), ("virsh", vs)):
        print(describe_modes(name, xs))
    mm, vm = modes(mf), modes(vs)
    if mm.get("bimodal") or vm.get("bimodal"):
        # which mode each pair's two legs fell in: does the pairing line the modes up?
        def side(x, m):
            return "-" if not m.get("bimodal") else ("low" if x <= m["split"][0] else "high")

        table: dict = {}
        for m, v in zip(mf, vs, strict=True):
            key = (side(m, mm), side(v, vm))
            table[key] = table.get(key, 0) + 1
        print("  modes of the two legs of a pair (migflow, virsh): " + ", ".join(f"{a}/{b} {n}" for (a, b), n in sorted(table.items())))

    print("pairing (migflow / virsh), 95% intervals by bootstrap over the pairs:")
    idx = list(range(len(pairs)))

    def ratio_of_medians(sample):
        return statistics.median(mf[i] for i in sample) / statistics.median(vs[i] for i in sample)

    rom = ratio_of_medians(idx)
    rom_ci = bootstrap(ratio_of_medians, [idx])
    gm = geomean(ratios)
    gm_ci = bootstrap(geomean, [ratios])
    lo, hi = median_ratio_ci(ratios)
    q = quartiles(ratios)
    print(f"  ratio of the medians          {rom:.3f} (95% CI {rom_ci[0]:.3f}-{rom_ci[1]:.3f})")
    print(f"  geometric mean of pair ratios {gm:.3f} (95% CI {gm_ci[0]:.3f}-{gm_ci[1]:.3f})")
    print(f"  median pair ratio             {q[1]:.3f} (95% CI {lo:.3f}-{hi:.3f}; quartiles {q[0]:.3f}-{q[2]:.3f}, range {min(ratios):.3f}-{max(ratios):.3f})")
    print("  histogram of the pair ratios (0.05 bins):")
    print("\n".join(histogram(ratios, 0.05, unit="", digits=2)))
    for first in ("migflow", "virsh"):
        sub = [r for p, r in zip(pairs, ratios, strict=True) if p["order"] == first]
        if sub:
            print(f"  pairs with {first} first: median ratio {statistics.median(sub):.3f}, geometric mean {geomean(sub):.3f} ({len(sub)} pairs)")

    print("where migflow's wall time goes (medians over its legs, ms):")
    parts = {
        k: [r[k] for r in rows if r.get(k) is not None] for k in ("wall_before_qemu_ms", "wall_qemu_ms", "wall_after_qemu_ms", "total_time", "job_time_elapsed")
    }
    for k, xs in parts.items():
        if xs:
            print(f"  {k:22s} {spread(xs, '{:.0f}')}")
    sums = [
        r["wall_before_qemu_ms"] + r["wall_qemu_ms"] + r["wall_after_qemu_ms"] - r["wall_ms"]
        for r in rows
        if None not in (r["wall_before_qemu_ms"], r["wall_qemu_ms"], r["wall_after_qemu_ms"])
    ]
    if sums:
        print(f"  check: before + qemu + after - wall_ms: largest |difference| {max(abs(s) for s in sums):.1f} ms over {len(sums)} legs")
    qt = [r["wall_qemu_ms"] - r["total_time"] for r in rows if r.get("wall_qemu_ms") is not None and r.get("total_time") is not None]
    if qt:
        print(f"  check: wall_qemu_ms - QEMU total_time (event delivery to the client): {spread(qt, '{:.0f}')} ms")

    steps = [
        ("dst_started", "begin, prepare: the destination QEMU starts"),
        ("src_suspended", "live copy until the guest is paused"),
        ("dst_resumed", "switchover: the guest runs on the destination"),
        ("src_stopped", "confirm: the source QEMU is gone"),
        ("end", "until the call (the virsh process) returned"),
    ]
    ph = {who: [p[f"{who}_phases"] for p in pairs if p.get(f"{who}_phases")] for who in ("migflow", "virsh")}
    if ph["migflow"] and ph["virsh"]:
        print(
            f"phase split from libvirt's lifecycle events, one passive observer for both contenders "
            f"(medians, ms; {len(ph['migflow'])}/{len(ph['virsh'])} legs with all four events):"
        )
        print(f"  {'':34s} {'migflow':>8s} {'virsh':>8s} {'diff':>6s}")
        prev = None
        for key, what in steps:
            vals = {}
            for who in ("migflow", "virsh"):
                vals[who] = statistics.median(x[key] - (x[prev] if prev else 0.0) for x in ph[who])
            print(
                f"  {('start' if prev is None else prev) + ' -> ' + key:34s} {vals['migflow']:8.0f} {vals['virsh']:8.0f} {vals['migflow'] - vals['virsh']:+6.0f}  {what}"
            )
            prev = key

    print("independent figures:")
    mj = [p["migflow"] * 1000 - p["row"]["job_time_elapsed"] for p in pairs if p["row"].get("job_time_elapsed") is not None]
    vj = [p["virsh"] * 1000 - p["virsh_job"]["elapsed"] for p in pairs if "elapsed" in p["virsh_job"]]
    if mj:
        print(f"  migflow wall_ms - libvirt job_time_elapsed     {spread(mj, '{:.0f}')} ms")
    if vj:
        print(f"  virsh process wall - libvirt 'Time elapsed'    {spread(vj, '{:.0f}')} ms")
    jm = [p["row"]["job_time_elapsed"] for p in pairs if p["row"].get("job_time_elapsed") is not None]
    jv = [p["virsh_job"]["elapsed"] for p in pairs if "elapsed" in p["virsh_job"]]
    if jm and jv:
        print(f"  libvirt's job clock, migflow legs / virsh legs: {spread(jm, '{:.0f}')} / {spread(jv, '{:.0f}')} ms")
    jp = [p["row"]["job_time_elapsed"] / p["virsh_job"]["elapsed"] for p in pairs if p["row"].get("job_time_elapsed") and p["virsh_job"].get("elapsed")]
    if len(jp) > 1:
        ci = bootstrap(geomean, [jp])
        print(f"  libvirt's job clock per pair, migflow leg / virsh leg: geometric mean {geomean(jp):.3f} (95% CI {ci[0]:.3f}-{ci[1]:.3f})")
    mem_m = [p["row"]["ram_transferred"] / 2**20 for p in pairs if p["row"].get("ram_transferred")]
    mem_v = [p["virsh_job"]["memory"] / 2**20 for p in pairs if "memory" in p["virsh_job"]]
    if mem_m and mem_v:
        print(f"  RAM sent, migflow legs / virsh legs: medians {statistics.median(mem_m):.1f} / {statistics.median(mem_v):.1f} MiB")
    im = [p["row"]["ram_dirty_sync_count"] for p in pairs if p["row"].get("ram_dirty_sync_count") is not None]
    iv = [p["virsh_job"]["iterations"] for p in pairs if "iterations" in p["virsh_job"]]
    if im and iv:
        print(f"  passes over RAM, migflow legs / virsh legs: medians {statistics.median(im):g} / {statistics.median(iv):g}")
    bare = [p["bare"] * 1000 for p in pairs if "bare" in p]
    if bare:
        print(f"  a bare `virsh domid` (start, connect, lookup): {spread(bare, '{:.0f}')} ms")
    verdict = "PASS" if gm_ci[1] <= 1.05 else ("PASS on the point estimate only (interval above 1.05)" if gm <= 1.05 else "FAIL")
    print(f"RESULT geometric mean of pair ratios {gm:.3f} (95% CI {gm_ci[0]:.3f}-{gm_ci[1]:.3f}) vs target <= 1.05: {verdict}")


if __name__ == "__main__":
    sys.exit(main())
