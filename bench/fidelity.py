#!/usr/bin/env python3
"""Benchmark 6 (issue 11): do migflow's figures match what an outside observer sees?

On the lab link shaped to 1 Gbit (``migflow lab shape --rate 1gbit``, under
``/tmp/migflow-lab-dev.lock``, unshaped at the end, also on an error or
Ctrl-C), three questions:

1. **Bytes on the link vs ``ram_transferred``.**  The workflow runs in this
   process (``migflow.engine.Engine``, as ``migflow run`` builds it) with one
   extra pluggy plugin whose ``migflow_leg_started`` / ``migflow_leg_finished``
   (``tryfirst``: before the lab's own observers) read the kernel's counters of
   the source host's veth end in the root namespace (what the source host
   sent: ``/sys/class/net/mflab-X-br/statistics/rx_bytes`` and ``rx_packets``),
   of the destination's (what it received: ``tx_bytes``), and the source
   namespace's TCP segment counters (``/proc/<its libvirtd>/net/snmp``).
   ``--legs`` p2p legs of the seed comparison's guest (256 MiB, 96 MiB
   working set dirtied at 24 MiB/s), there and back, a fresh guest per round
   trip.  Per leg: link bytes / ``ram_transferred``, and what is left once the
   frame headers the counter saw (one Ethernet + IPv4 + TCP header of 66 bytes
   per packet) are taken away.
2. **The guest's pause vs QEMU's ``downtime``.**  Same legs: the guest's
   longest heartbeat gap (``guest_pause_ms``) over QEMU's ``downtime``, and
   libvirt's ``job_downtime`` (source STOP event to destination resume) as
   the independent figure.
3. **The experiment's own efficiency.**  ``workflows/seed_comparison.toml``
   (``--seed-repetitions``, default its own 2) twice: prepare-domain as shipped (wait
   for the guest's steady state) and with ``wait_steady = false``,
   ``warmup_s = --warmup-s``.  The share of the runs' time spent inside
   migrations (sum of ``wall_ms`` over the sum of the runs' durations), the
   steps' durations, and what reusing a booted guest across repetitions would
   save (not implemented: estimated from prepare-domain's and restore's
   measured durations).

Both lab hosts are held for each workflow the way ``migflow run`` holds them
(the engine takes the libvirt reservation; this script also takes the QEMU
backend's, which does not see the libvirt one).  The CPUs stay shared.

    python3 bench/fidelity.py                                   # 10 legs, then seed_comparison (2 repetitions) twice
    python3 bench/fidelity.py --legs 2 --seed-repetitions 0     # quick: one round trip, no efficiency part
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import LAB_LOCK, hold_hosts, lab_fingerprint, lab_lock, lab_ready, lab_unshape, log, machine_note, quartiles, spread

from migflow.hookspecs import hookimpl

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
#: bytes of header per packet as the veth counts it: Ethernet 14 + IPv4 20 + TCP 20 + timestamps option 12
HEADER = 14 + 20 + 32

FIDELITY_TOML = """name = "fidelity"
description = "p2p legs there and back of the seed comparison's guest"
repetitions = {reps}
round_trip = true

[domain.create]
memory_mib = 256
vcpus = 1

[domain.create.workload]
working_set_mib = 96
dirty_rate_mibs = 24
pattern = "sequential"

[[steps]]
use = "prepare-domain"

[[steps]]
use = "migrate"
mode = "p2p"
timeout = {{ seconds = 180, action = "abort" }}

[[steps]]
use = "collect-qmp"

[[steps]]
use = "restore"
"""


def _read(path: str) -> int:
    with open(path) as f:
        return int(f.read())


def _snmp_tcp(pid: int | None) -> dict[str, int]:
    """The TCP counters of the network namespace process ``pid`` lives in."""
    if pid is None:
        return {}
    try:
        with open(f"/proc/{pid}/net/snmp") as f:
            lines = [ln.split() for ln in f if ln.startswith("Tcp:")]
    except OSError:
        return {}
    return {k: int(v) for k, v in zip(lines[0][1:], lines[1][1:], strict=True)} if len(lines) == 2 else {}


class LinkProbe:
    """A pluggy plugin: the lab link's counters at each leg's start and end."""

    def __init__(self) -> None:
        self.legs: dict[tuple[str, int], dict] = {}

    @staticmethod
    def _snapshot(leg) -> dict:
        from migflow_lab import api as hosts

        src, dst = hosts.find_host(leg.source), hosts.find_host(leg.destination)
        if src is None or dst is None:
            return {}
        s, d = f"/sys/class/net/{src.veths[0]}/statistics", f"/sys/class/net/{dst.veths[0]}/statistics"
        tcp = _snmp_tcp(hosts.libvirtd_pid(src))
        return {
            "lab": lab_fingerprint(),  # a lab rebuilt meanwhile has new veths, with counters from 0
            "src_bytes": _read(f"{s}/rx_bytes"),  # the root end receives what the host sends
            "src_packets": _read(f"{s}/rx_packets"),
            "dst_bytes": _read(f"{d}/tx_bytes"),  # the root end sends what the host receives
            "dst_packets": _read(f"{d}/tx_packets"),
            "out_segs": tcp.get("OutSegs", 0),
            "retrans_segs": tcp.get("RetransSegs", 0),
        }

    @hookimpl(tryfirst=True)
    def migflow_leg_started(self, ctx, leg) -> None:
        self.legs[(ctx.run_id, leg.number)] = {"start": self._snapshot(leg)}

    @hookimpl(tryfirst=True)
    def migflow_leg_finished(self, ctx, leg) -> None:
        entry = self.legs.get((ctx.run_id, leg.number))
        if entry is not None:
            entry["end"] = self._snapshot(leg)

    def delta(self, run_id: str, leg: int) -> dict | None:
        e = self.legs.get((run_id, leg))
        if not e or not e.get("start") or not e.get("end"):
            return None
        if e["end"]["lab"] != e["start"]["lab"]:
            log(f"  leg {run_id}/{leg}: the lab was rebuilt or reshaped during it, not counted")
            return None
        return {k: e["end"][k] - e["start"][k] for k in e["start"] if k != "lab"}


def run_workflow(path: str, results: str, probe: LinkProbe, repetitions: int | None = None) -> tuple[list, float, bool]:
    """Run a workflow in this process as ``migflow run`` does; (summaries, wall seconds of Engine.run, interrupted)."""
    from migflow.engine import Engine
    from migflow.plugins import get_plugins
    from migflow.workflow.loader import load_workflow

    plugins = get_plugins(extra=(probe,))
    wf = load_workflow(path, plugins, results=results, repetitions=repetitions)
    hosts = plugins.hook.migflow_default_hosts()
    plugins.hook.migflow_prepare_hosts(hosts=hosts, echo=log)
    engine = Engine(plugins, wf, hosts, wf.results, echo=lambda s: log(f"    {s}"))
    t0 = time.monotonic()
    with hold_hosts(f"bench/fidelity.py {wf.name}", libvirt_=False):  # the engine takes the libvirt reservation itself
        summaries = engine.run()
    return summaries, time.monotonic() - t0, bool(engine.interrupted)


def query(results: str, sql: str) -> list[dict]:
    import duckdb

    con = duckdb.connect(results, read_only=True)
    try:
        cur = con.execute(sql)
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
    finally:
        con.close()


LEGS_SQL = """SELECT m.run_id, m.leg, m.source, m.destination, m.mode, m.status, m.wall_ms, m.total_time, m.downtime,
       m.job_downtime, m.guest_pause_ms, m.ram_transferred, m.ram_total, m.ram_mbps, m.ram_dirty_sync_count AS passes,
       m.stats_source, m.wall_before_qemu_ms, m.wall_qemu_ms, m.wall_after_qemu_ms, r.scenario
FROM migrations m JOIN runs r USING (run_id) ORDER BY r.started_at, m.leg"""


def short(uri: str) -> str:
    m = re.search(r"198\.18\.0\.(\d)", uri)
    return {"1": "a", "2": "b"}.get(m.group(1), uri) if m else uri


# -- 1 and 2: link bytes and pause ------------------------------------------------------
def link_and_pause(rows: list[dict], probe: LinkProbe, title: str) -> dict:
    ratios, residual, dst_ratios, pauses, jpauses, seg_payload, retrans, wire = [], [], [], [], [], [], [], []
    print(title)
    for r in rows:
        d = probe.delta(r["run_id"], r["leg"])
        if r["status"] != "completed" or d is None or not r["ram_transferred"]:
            log(f"  leg {r['run_id']}/{r['leg']}: {r['status']}, not counted")
            continue
        rt = r["ram_transferred"]
        ratio = d["src_bytes"] / rt
        rest = d["src_bytes"] - d["src_packets"] * HEADER - rt
        ratios.append(ratio)
        residual.append(rest)
        dst_ratios.append(d["dst_bytes"] / rt)
        if d["out_segs"]:
            seg_payload.append((d["src_bytes"] - d["src_packets"] * HEADER) / d["out_segs"])
            retrans.append(d["retrans_segs"] / d["out_segs"])
            # a physical Ethernet carries every TCP segment as a frame: headers + FCS 4 + preamble 8 + gap 12 each
            wire.append((d["src_bytes"] - d["src_packets"] * HEADER + d["out_segs"] * (HEADER + 24)) / rt)
        pr = jr = None
        if r["guest_pause_ms"] is not None and r["downtime"]:
            pr = r["guest_pause_ms"] / r["downtime"]
            pauses.append((r["guest_pause_ms"], r["downtime"], pr))
        if r["guest_pause_ms"] is not None and r["job_downtime"]:
            jr = r["guest_pause_ms"] / r["job_downtime"]
            jpauses.append((r["guest_pause_ms"], r["job_downtime"], jr))
        print(
            f"  {r['scenario'][:14]:14s} leg {r['leg']} {short(r['source'])}->{short(r['destination'])} {r['mode']:14s}: "
            f"ram_transferred {rt / 2**20:6.1f} MiB, link {d['src_bytes'] / 2**20:6.1f} MiB in {d['src_packets']:6d} packets "
            f"(x{ratio:.4f}; beyond RAM + headers {rest / 1024:+7.0f} KiB), dst side x{d['dst_bytes'] / rt:.4f}, "
            f"{d['out_segs']} TCP segments ({d['retrans_segs']} retransmitted); "
            f"pause {r['guest_pause_ms'] if r['guest_pause_ms'] is not None else float('nan'):.0f} ms vs downtime {r['downtime']} ms"
            f" (x{pr if pr else float('nan'):.2f}), libvirt job_downtime {r['job_downtime']} ms"
        )
    out: dict = {"ratios": ratios, "pauses": pauses}
    if ratios:
        print(f"  link bytes / ram_transferred (source side): {spread(ratios, '{:.4f}')}")
        print(f"  link bytes / ram_transferred (destination side): {spread(dst_ratios, '{:.4f}')}")
        print(f"  link bytes - packets x {HEADER} B headers - ram_transferred: {spread([x / 1024 for x in residual], '{:.0f}')} KiB per leg")
        if seg_payload:
            print(
                f"  TCP segments the source sent: mean payload {statistics.median(seg_payload):.0f} B a segment (median over legs); "
                f"retransmitted {spread([x * 100 for x in retrans], '{:.3f}')} %"
            )
            print(f"  the same segments as frames on a physical Ethernet (+{HEADER + 24} B each) / ram_transferred: {spread(wire, '{:.4f}')}")
    if pauses:
        print(f"  guest_pause_ms / QEMU downtime: {spread([p[2] for p in pauses], '{:.2f}')}")
        print(f"  guest_pause_ms - QEMU downtime: {spread([p[0] - p[1] for p in pauses], '{:.0f}')} ms")
    if jpauses:
        print(f"  guest_pause_ms / libvirt job_downtime: {spread([p[2] for p in jpauses], '{:.2f}')}")
        print(f"  guest_pause_ms - libvirt job_downtime: {spread([p[0] - p[1] for p in jpauses], '{:.0f}')} ms")
    return out


# -- 3: efficiency ------------------------------------------------------------------------
def seed_variant(dest: str, warmup_s: float | None) -> str:
    """workflows/seed_comparison.toml, as shipped (None) or with a fixed warm-up instead of the steady-state wait."""
    with open(os.path.join(REPO, "workflows", "seed_comparison.toml")) as f:
        text = f.read()
    if warmup_s is not None:
        text, n = re.subn(r'^use = "prepare-domain"$', f'use = "prepare-domain"\nwait_steady = false\nwarmup_s = {warmup_s:g}', text, flags=re.M)
        assert n == 1, "seed_comparison.toml: no prepare-domain step"
        text = text.replace('name = "seed_comparison"', 'name = "seed_comparison_warmup"')
    with open(dest, "w") as f:
        f.write(text)
    return dest


def efficiency(results: str, label: str, engine_s: float) -> dict:
    runs = query(
        results,
        "SELECT run_id, status, epoch_ms(started_at) AS t0, epoch_ms(ended_at) AS t1, steady_state, steady_after_ms, warmup_s FROM runs ORDER BY started_at",
    )
    steps = query(results, "SELECT run_id, step, duration_ms, status FROM steps")
    legs = query(results, "SELECT run_id, wall_ms, status, memory_verified FROM migrations")
    n = len(runs)
    run_ms = sum(r["t1"] - r["t0"] for r in runs)
    span_ms = max(r["t1"] for r in runs) - min(r["t0"] for r in runs)
    wall = sum(lg["wall_ms"] or 0 for lg in legs)
    by_step: dict[str, list[float]] = {}
    for s in steps:
        by_step.setdefault(s["step"], []).append(s["duration_ms"] or 0.0)
    legs_per_run: dict[str, float] = {}
    for lg in legs:
        legs_per_run[lg["run_id"]] = legs_per_run.get(lg["run_id"], 0.0) + (lg["wall_ms"] or 0.0)
    migrate_rest = [s["duration_ms"] - legs_per_run.get(s["run_id"], 0.0) for s in steps if s["step"] == "migrate"]
    statuses: dict[str, int] = {}
    for r in runs:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    print(
        f"  {label}: {n} runs ({', '.join(f'{v} {k}' for k, v in sorted(statuses.items()))}), {len(legs)} legs; "
        f"runs' durations {run_ms / 1000:.1f} s (first start to last end {span_ms / 1000:.1f} s, Engine.run {engine_s:.1f} s)"
    )
    print(
        f"    inside migrations (sum of wall_ms {wall / 1000:.1f} s): {wall / run_ms:.1%} of the runs' durations, "
        f"{wall / span_ms:.1%} of first start to last end, {wall / (engine_s * 1000):.1%} of Engine.run"
    )
    order = ["shape-link", "prepare-domain", "set-capabilities", "migrate", "collect-qmp", "restore"]
    for step in sorted(by_step, key=lambda s: order.index(s) if s in order else 99):
        xs = by_step[step]
        print(f"    {step:17s} {spread([x / 1000 for x in xs], '{:.2f}')} s; total {sum(xs) / 1000:5.1f} s = {sum(xs) / run_ms:5.1%}")
    if migrate_rest:
        print(
            f"    {'  migrate - legs':17s} {spread([x / 1000 for x in migrate_rest], '{:.2f}')} s (observers after each leg: the guest's resume, memory check)"
        )
    checked: dict[str, int] = {}
    for lg in legs:
        key = {True: "verified", False: "FOUND WRONG", None: "not checked"}[lg["memory_verified"]]
        checked[key] = checked.get(key, 0) + 1
    print(f"    the guest's memory check after each leg: {', '.join(f'{v} {k}' for k, v in sorted(checked.items()))}")
    steady = [r["steady_after_ms"] for r in runs if r["steady_after_ms"] is not None]
    if steady:
        print(f"    guest steady after {spread([x / 1000 for x in steady], '{:.2f}')} s (the guest's clock)")
    prep = statistics.median(by_step.get("prepare-domain", [0.0]))
    rest = statistics.median(by_step.get("restore", [0.0]))
    saved = (n - 1) * (prep + rest)
    if n > 1:
        print(
            f"    reusing one booted guest for all runs (not implemented): about (n-1) x (median prepare-domain + median restore) = "
            f"{n - 1} x ({prep / 1000:.2f} + {rest / 1000:.2f}) s = {saved / 1000:.1f} s of {run_ms / 1000:.1f} s saved; "
            f"inside migrations would then be {wall / (run_ms - saved):.1%}"
        )
    return {"share": wall / run_ms, "run_ms": run_ms, "n": n, "saved": saved, "wall": wall}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--legs", type=int, default=10, help="p2p legs for parts 1 and 2 (there and back: rounded up to even)")
    ap.add_argument("--rate", default="1gbit")
    ap.add_argument("--seed-repetitions", type=int, help="repetitions of seed_comparison per variant (default: its own, 2; 0: skip part 3)")
    ap.add_argument("--warmup-s", type=float, default=5.0, help="the fixed warm-up of the variant without the steady-state wait")
    ap.add_argument("--no-lock", action="store_true", help="the caller holds /tmp/migflow-lab-dev.lock")
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="migflow-bench-fidelity-")
    probe = LinkProbe()
    loads = [os.getloadavg()[0]]
    seed_reps = "its own repetitions" if args.seed_repetitions is None else f"{args.seed_repetitions} repetitions"
    log(f"fidelity: {args.legs} legs on a {args.rate} link; seed_comparison ({seed_reps}) twice; {machine_note()}; work in {work}")
    fid_results = os.path.join(work, "fidelity.duckdb")
    eff: list[tuple[str, str, float]] = []
    interrupted = False
    with lab_lock(None if args.no_lock else LAB_LOCK):
        try:
            lab_ready(args.rate)
            path = os.path.join(work, "fidelity.toml")
            with open(path, "w") as f:
                f.write(FIDELITY_TOML.format(reps=max(1, (args.legs + 1) // 2)))
            log("  parts 1 and 2: p2p legs")
            _, _, interrupted = run_workflow(path, fid_results, probe)
            loads.append(os.getloadavg()[0])
            if args.seed_repetitions != 0 and not interrupted:
                for label, warmup in (("as shipped (wait for steady state)", None), (f"wait_steady = false, warmup_s = {args.warmup_s:g}", args.warmup_s)):
                    res = os.path.join(work, f"seed-{'steady' if warmup is None else 'warmup'}.duckdb")
                    wf = seed_variant(os.path.join(work, f"seed-{'steady' if warmup is None else 'warmup'}.toml"), warmup)
                    log(f"  part 3: seed_comparison, {label}")
                    _, took, interrupted = run_workflow(wf, res, probe, repetitions=args.seed_repetitions)
                    loads.append(os.getloadavg()[0])
                    eff.append((label, res, took))
                    if interrupted:
                        break
        except KeyboardInterrupt:
            interrupted = True
        finally:
            lab_unshape()
    if interrupted:
        log("interrupted: the link is unshaped; partial results follow")

    print(f"fidelity on a {args.rate} shaped lab link; load average (1 min) at the parts' boundaries: {' '.join(f'{x:.2f}' for x in loads)}")
    rows = query(fid_results, LEGS_SQL) if os.path.exists(fid_results) else []
    fid = link_and_pause(rows, probe, f"1-2. p2p legs (guest 256 MiB, 96 MiB dirtied at 24 MiB/s), {len(rows)} legs:")
    seed_rows = [r for _, res, _ in eff for r in query(res, LEGS_SQL)]
    if seed_rows:
        print("   the seed comparison's legs too, per mode (link bytes / ram_transferred, guest_pause_ms / downtime):")
        for mode in sorted({r["mode"] for r in seed_rows}):
            sub = [r for r in seed_rows if r["mode"] == mode and r["status"] == "completed" and r["ram_transferred"]]
            rs = [d["src_bytes"] / r["ram_transferred"] for r in sub if (d := probe.delta(r["run_id"], r["leg"]))]
            ps = [r["guest_pause_ms"] / r["downtime"] for r in sub if r["guest_pause_ms"] is not None and r["downtime"]]
            print(
                f"     {mode:16s} {len(sub):2d} completed legs: link x{statistics.median(rs) if rs else float('nan'):.4f} "
                f"({min(rs) if rs else float('nan'):.4f}-{max(rs) if rs else float('nan'):.4f}); pause x{statistics.median(ps) if ps else float('nan'):.2f} "
                f"({min(ps) if ps else float('nan'):.2f}-{max(ps) if ps else float('nan'):.2f})"
            )
    if eff:
        reps = args.seed_repetitions or "its own 2"
        print(f"3. efficiency: workflows/seed_comparison.toml, {reps} repetition(s) per scenario, run twice:")
        got = [efficiency(res, label, took) for label, res, took in eff]
    else:
        got = []
    line = []
    if fid["ratios"]:
        q = quartiles(fid["ratios"])
        line.append(f"link/ram_transferred {q[1]:.4f} ({q[0]:.4f}-{q[2]:.4f})")
    if fid["pauses"]:
        q = quartiles([p[2] for p in fid["pauses"]])
        line.append(f"guest_pause/downtime {q[1]:.2f} ({q[0]:.2f}-{q[2]:.2f})")
    for (label, _, _), g in zip(eff, got, strict=True):
        line.append(f"in migrations {g['share']:.1%} ({label.split(' (')[0]})")
    print("RESULT " + "; ".join(line))
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
