"""What libvirt adds on top of QEMU: the same guest migrated by both backends on the lab.

Runs ``workflows/managed_direct.toml``, ``p2p.toml`` and ``qemu_tcp.toml``
(256 MiB guest, 64 MiB dirtied at 32 MiB/s, steady before the first leg) in
rounds, one run of each per round, into one results file, then prints per
mode the medians of the client's wall time and its three phases, QEMU's own
``total_time`` and ``downtime``, libvirt's job clock, the guest's pause and
what was sent, and the migrate step's duration (a round trip, everything
the client does).  Results: docs/qemu-backend.md.

    python3 bench/backends.py --rounds 5
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import duckdb
from _common import lab_lock, log

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ("managed_direct", "p2p", "qemu_tcp")

LEGS = """
SELECT r.backend, m.mode, count(*) AS legs,
       round(median(wall_ms)) AS wall_ms,
       round(median(wall_before_qemu_ms)) AS before_ms,
       round(median(wall_qemu_ms)) AS qemu_ms,
       round(median(wall_after_qemu_ms)) AS after_ms,
       round(median(total_time)) AS total_time,
       round(median(job_time_elapsed)) AS job_ms,
       round(median(downtime), 1) AS downtime,
       round(median(guest_pause_ms), 1) AS guest_pause,
       round(median(ram_transferred) / 2^20, 1) AS sent_mib,
       round(median(ram_mbps)) AS mbps,
       count(*) FILTER (WHERE stats_source = 'qemu') AS qemu_stats
FROM migrations m JOIN runs r USING (run_id)
WHERE m.status = 'completed'
GROUP BY ALL ORDER BY ALL
"""

STEPS = """
SELECT r.backend, r.workflow, count(*) AS runs,
       round(median(s.duration_ms)) AS migrate_step_ms, round(min(s.duration_ms)) AS min_ms, round(max(s.duration_ms)) AS max_ms
FROM steps s JOIN runs r USING (run_id)
WHERE s.step = 'migrate' AND s.status = 'completed'
GROUP BY ALL ORDER BY ALL
"""


def table(con, sql: str) -> str:
    cur = con.execute(sql)
    cols = [d[0] for d in cur.description]
    rows = [["NULL" if v is None else f"{v:g}" if isinstance(v, float) else str(v) for v in r] for r in cur.fetchall()]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5, help="runs of each workflow (each a round trip)")
    ap.add_argument("--results", help="results file (default: a temporary one)")
    args = ap.parse_args()
    results = args.results or str(Path(tempfile.mkdtemp(prefix="migflow-backends-")) / "backends.duckdb")
    with lab_lock():
        for i in range(args.rounds):
            for name in WORKFLOWS:  # interleaved: drift on the machine spreads over all three
                log(f"round {i + 1}/{args.rounds}: {name}")
                proc = subprocess.run(
                    [sys.executable, "-m", "migflow", "run", str(ROOT / "workflows" / f"{name}.toml"), "-n", "1", "--results", results],
                    check=False,
                    capture_output=True,
                    text=True,
                )
                if proc.returncode != 0:
                    log(proc.stdout[-2000:] + proc.stderr[-2000:])
                    return 1
    with duckdb.connect(results, read_only=True) as con:
        print(f"results: {results}\n")
        print(table(con, LEGS))
        print()
        print(table(con, STEPS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
