#!/usr/bin/env python3
"""Benchmark 5 (issue 8): how much of a 1 Gbit link a p2p migration uses.

The lab link is shaped with ``migflow lab shape --rate 1gbit`` (tbf, see
docs/lab.md: a plain TCP stream gets 926 Mbit/s through it).  A transient lab
guest (the seed comparison's: 256 MiB, 96 MiB working set dirtied at
24 MiB/s, booted once and warmed up) is migrated host a -> host b by
``migflow run`` of a one-leg p2p workflow, ``--legs`` times (back to a,
untimed, in between).  For each leg:

* QEMU's ``ram_mbps`` (its own throughput estimate, Mbit/s, 10^6 bits/s);
* ``ram_transferred * 8 / total_time`` (bytes QEMU sent over the whole job,
  setup and downtime included), in Mbit/s.

Each is divided by the shaped rate (1000 Mbit/s).  Target: 0.9 or more.

    python3 bench/link_efficiency.py              # 6 legs
    python3 bench/link_efficiency.py --legs 2     # quick

Takes ``/tmp/migflow-lab-dev.lock`` itself (or ``--no-lock``); leaves the
link unshaped.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import LAB_LOCK, BenchDomain, lab_lock, lab_ready, lab_unshape, log, machine_note, migflow_leg, migflow_workflow, quartiles

RATE_MBPS = {"1gbit": 1000.0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--legs", type=int, default=6)
    ap.add_argument("--rate", default="1gbit")
    ap.add_argument("--memory-mib", type=int, default=256)
    ap.add_argument("--working-set-mib", type=int, default=96)
    ap.add_argument("--dirty-rate-mibs", type=float, default=24)
    ap.add_argument("--settle", type=float, default=4.0, help="seconds before each leg (the guest re-dirties its working set)")
    ap.add_argument("--no-lock", action="store_true")
    args = ap.parse_args()
    rate_mbps = RATE_MBPS.get(args.rate) or float(args.rate.lower().rstrip("bit").replace("g", "e3").replace("m", ""))

    work = tempfile.mkdtemp(prefix="migflow-bench-link-")
    dom = BenchDomain(
        f"mfbench-link-{os.getpid()}",
        memory_mib=args.memory_mib,
        workload={"working_set_mib": args.working_set_mib, "dirty_rate_mibs": args.dirty_rate_mibs, "pattern": "sequential"},
    )
    wf = migflow_workflow(os.path.join(work, "bench.toml"), dom.name, "p2p")
    results = os.path.join(work, "results.duckdb")
    log(f"link efficiency: {args.legs} legs on a {args.rate} link; {machine_note()}")
    rows = []
    with lab_lock(None if args.no_lock else LAB_LOCK):
        try:
            lab_ready(args.rate)
            dom.create()
            time.sleep(args.settle)
            for i in range(args.legs):
                dom.ensure_on_source()
                time.sleep(args.settle)
                r = migflow_leg(wf, results)
                r["goodput"] = r["ram_transferred"] * 8 / (r["total_time"] / 1000.0) / 1e6
                rows.append(r)
                log(
                    f"  leg {i + 1}: total_time {r['total_time']} ms, transferred {r['ram_transferred'] / 2**20:.0f} MiB, "
                    f"ram_mbps {r['ram_mbps']:.0f}, bytes/total_time {r['goodput']:.0f} Mbit/s, downtime {r['downtime']} ms, "
                    f"iterations {r['ram_dirty_sync_count']}"
                )
        finally:
            dom.destroy()
            lab_unshape()

    mbps = [r["ram_mbps"] for r in rows]
    good = [r["goodput"] for r in rows]
    print(
        f"link efficiency: {len(rows)} p2p legs a->b on a {args.rate} shaped lab link "
        f"(guest {args.memory_mib} MiB, ws {args.working_set_mib} MiB at {args.dirty_rate_mibs:g} MiB/s)"
    )
    print(
        f"  total_time median {statistics.median(r['total_time'] for r in rows):.0f} ms; transferred median "
        f"{statistics.median(r['ram_transferred'] for r in rows) / 2**20:.0f} MiB"
    )
    q1, q2 = quartiles(mbps), quartiles(good)
    print(f"  QEMU ram_mbps            median {q1[1]:6.1f} Mbit/s (quartiles {q1[0]:.1f}-{q1[2]:.1f}) -> {q1[1] / rate_mbps:.3f} of the rate")
    print(f"  ram_transferred/total_time median {q2[1]:6.1f} Mbit/s (quartiles {q2[0]:.1f}-{q2[2]:.1f}) -> {q2[1] / rate_mbps:.3f} of the rate")
    print(
        f"RESULT ram_mbps {q1[1] / rate_mbps:.3f} ({'PASS' if q1[1] / rate_mbps >= 0.9 else 'FAIL'}); "
        f"bytes/total_time {q2[1] / rate_mbps:.3f} ({'PASS' if q2[1] / rate_mbps >= 0.9 else 'FAIL'}); target >= 0.9"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
