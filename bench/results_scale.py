#!/usr/bin/env python3
"""Benchmark 4 (issue 8): the results store at scale.

Ingests ``--runs`` generated runs (default 100,000) with ``--samples`` samples
each (default 100: two legs of 50, so 10 million samples) **through the real
ingest path**: spool files in ``<results>.spool/`` exactly as ``RunRecorder``
writes them, moved into DuckDB by ``migflow.records.ingest_spools`` (what
``RunRecorder.finish`` and ``migflow ingest`` call: one transaction per run).
Spools are generated in chunks (``--chunk`` runs, not timed) so the disk
holds one chunk of JSON at a time; only ``ingest_spools`` is timed.

Then it times, on the full database (read-only connection, like ``migflow
query``): the README's per-mode summary, the failed-legs query, one leg's
time series, an aggregate over all samples, and every view found in the file
(the report's statistics views, when they exist).  Each query is run 3 times:
first (cold) and best are printed.  Also times one ``migflow query`` process.

    python3 bench/results_scale.py                       # the full 100k runs / 10M samples
    python3 bench/results_scale.py --runs 2000           # quick
    python3 bench/results_scale.py --keep DIR            # keep the database

Targets: ingest >= 100,000 samples/s; each query < 1 s.  The generated
database is deleted at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import log, machine_note

from migflow.records import RunRecorder, ingest_spools, open_readonly, run_sql, sample_from_stats
from migflow.records.spool import remove_spool, samples_path, spool_path

MODES = ["managed-direct", "p2p", "p2p-tunnelled", "unmanaged-direct", "zstack"]

SUMMARY_SQL = """
SELECT r.scenario, m.mode, count(*) AS legs,
       round(avg(m.wall_ms))      AS wall_ms,
       round(avg(m.total_time))   AS total_time_ms,
       round(avg(m.downtime))     AS downtime_ms,
       round(avg(m.guest_pause_ms)) AS guest_pause_ms,
       round(avg(m.ram_mbps))     AS mbps,
       round(avg(m.ram_transferred) / 2^20) AS transferred_mib
FROM migrations m JOIN runs r USING (run_id)
WHERE m.status = 'completed'
GROUP BY ALL ORDER BY total_time_ms
"""
FAILED_SQL = "SELECT mode, status, error FROM migrations WHERE status <> 'completed'"
SERIES_SQL = "SELECT ms, iteration, remaining / 2^20 AS remaining_mib, mbps FROM samples WHERE run_id = '{run_id}' AND leg = 1 ORDER BY ms"
ADHOC_SQL = """
SELECT m.mode, count(DISTINCT s.run_id) AS runs, count(*) AS samples,
       round(quantile_cont(s.mbps, 0.5)) AS median_mbps, max(s.iteration) AS max_iteration
FROM samples s JOIN migrations m USING (run_id, leg)
WHERE s.kind = 'poll'
GROUP BY m.mode ORDER BY m.mode
"""


def template(results: Path, samples_per_run: int) -> dict:
    """One realistic spool (a round trip, 5 steps, samples) written by the real RunRecorder."""
    rec = RunRecorder(
        results,
        {
            "run_id": "template",
            "workflow": "bench",
            "workflow_file": "workflows/bench.toml",
            "scenario": "mode=p2p",
            "params": {"mode": "p2p"},
            "repetition": 1,
            "plan_index": 0,
            "backend": "libvirt",
            "source_uri": "qemu+tcp://198.18.0.1/system",
            "destination_uri": "qemu+tcp://198.18.0.2/system",
        },
    )
    rec.set_run(host_versions={"source": {"libvirt": "9.0.0", "qemu": "7.2.0"}}, domain={"name": "bench", "memory_mib": 256})
    t = time.time()
    for pos, step in enumerate(["prepare-domain", "migrate", "collect-qmp", "restore", "shape-link"]):
        rec.add_step({"position": pos, "step": step, "status": "completed", "started_at": t, "duration_ms": 12.5, "result": {"ok": True}})
    per_leg = samples_per_run // 2
    for leg in (1, 2):
        stats = {
            "status": "completed",
            "total-time": 3100,
            "downtime": 40,
            "setup-time": 5,
            "ram": {
                "total": 2**28,
                "transferred": 300 * 2**20,
                "remaining": 0,
                "mbps": 905.0,
                "duplicate": 1000,
                "normal": 70000,
                "normal-bytes": 70000 * 4096,
                "dirty-sync-count": 4,
                "page-size": 4096,
                "dirty-pages-rate": 6000.0,
            },
        }
        rec.add_leg(
            {
                "leg": leg,
                "source": "qemu+tcp://198.18.0.1/system",
                "destination": "qemu+tcp://198.18.0.2/system",
                "mode": "p2p",
                "flags": ["live", "peer2peer"],
                "started_at": t,
                "wall_ms": 3300.0,
                "status": "completed",
                "stats": stats,
                "guest_pause_ms": 45.0,
                "guest_dirty_rate_mibs": 24.0,
            }
        )
        rec.add_samples(
            [
                sample_from_stats(
                    leg,
                    i * 100.0,
                    {
                        "status": "active",
                        "ram": {
                            "transferred": i * 2**20 * 11,
                            "remaining": max(0, 2**28 - i * 2**20 * 11),
                            "total": 2**28,
                            "mbps": 900.0,
                            "dirty-pages-rate": 6000.0,
                            "dirty-sync-count": 1 + i // 10,
                        },
                        "expected-downtime": 300,
                    },
                )
                for i in range(per_leg)
            ]
        )
    rec.flush()
    data = json.loads(rec.path.read_text())
    with open(samples_path(rec.path), newline="") as f:
        data["_sample_rows"] = list(csv.reader(f))  # header first
    remove_spool(rec.path)
    return data


def write_chunk(results: Path, tmpl: dict, start: int, count: int, rng: random.Random) -> None:
    """Spool files for runs start..start+count (plain JSON writes; the product fsyncs each, not timed here)."""
    for i in range(start, start + count):
        run_id = f"bench-{i:07d}"
        mode = MODES[i % len(MODES)]
        d = json.loads(json.dumps({k: v for k, v in tmpl.items() if k != "_sample_rows"}))  # deep copy
        d["run"].update(run_id=run_id, scenario=f"mode={mode}", params={"mode": mode}, status="completed", plan_index=i)
        for m in d["migrations"]:
            m["mode"] = mode
            m["total_time"] = int(rng.gauss(3100, 200))
            m["wall_ms"] = m["total_time"] + 200.0
            m["ram_mbps"] = rng.gauss(900, 20)
            if mode == "unmanaged-direct":
                m.update(status="failed", error="argument unsupported: direct migration is not supported by the source host")
        header, *rows = tmpl["_sample_rows"]
        mbps, rid = header.index("mbps"), header.index("run_id")
        path = spool_path(results, run_id)
        d["samples_file"] = samples_path(path).name
        with open(samples_path(path), "w", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(header)
            for r in rows:
                r = list(r)
                r[rid], r[mbps] = run_id, repr(rng.gauss(900, 30))
                w.writerow(r)
        with open(path, "w") as f:
            json.dump(d, f, separators=(",", ":"))


def time_query(results: Path, sql: str, reps: int = 3) -> tuple[float, float, int]:
    con = open_readonly(results)
    try:
        times, n = [], 0
        for _ in range(reps):
            t0 = time.perf_counter()
            _, _, rows = run_sql(con, sql)
            times.append(time.perf_counter() - t0)
            n = len(rows)
        return times[0], min(times), n
    finally:
        con.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=100_000)
    ap.add_argument("--samples", type=int, default=100, help="samples per run (two legs)")
    ap.add_argument("--chunk", type=int, default=5_000, help="runs spooled then ingested at a time")
    ap.add_argument("--dir", help="where to build the database (default: a temporary directory under /var/tmp)")
    ap.add_argument("--keep", action="store_true", help="keep the database")
    args = ap.parse_args()

    work = Path(args.dir or tempfile.mkdtemp(prefix="migflow-bench-scale-", dir="/var/tmp"))
    work.mkdir(parents=True, exist_ok=True)
    results = work / "results.duckdb"
    log(f"building {results}: {args.runs} runs x {args.samples} samples; {machine_note()}")
    rng = random.Random(8)
    try:
        tmpl = template(results, args.samples)
        ingest_s = gen_s = 0.0
        done = 0
        per_chunk = []
        while done < args.runs:
            n = min(args.chunk, args.runs - done)
            t0 = time.perf_counter()
            write_chunk(results, tmpl, done, n, rng)
            gen_s += time.perf_counter() - t0
            t0 = time.perf_counter()
            summary = ingest_spools(results, wait_s=10)
            dt = time.perf_counter() - t0
            if len(summary.ingested) != n:
                log(f"ingest wrote {len(summary.ingested)} of {n}: {summary.message(results)}")
                return 1
            ingest_s += dt
            done += n
            per_chunk.append((done, n * args.samples / dt))
            log(f"  {done:7d} runs: chunk {n} runs in {dt:6.2f} s = {n / dt:7.0f} runs/s, {n * args.samples / dt:9.0f} samples/s")
        total_samples = args.runs * args.samples
        size = results.stat().st_size
        wal = results.with_name(results.name + ".wal")
        print("ingest (real path: spool files -> migflow.records.ingest_spools, as migflow ingest)")
        print(
            f"  {args.runs} runs, {total_samples} samples in {ingest_s:.1f} s: {args.runs / ingest_s:.0f} runs/s, "
            f"{total_samples / ingest_s:.0f} samples/s  (target >= 100000 samples/s: ratio {total_samples / ingest_s / 1e5:.2f})"
        )
        print(f"  first chunk {per_chunk[0][1]:.0f} samples/s, last chunk {per_chunk[-1][1]:.0f} samples/s")
        print(f"  database {size / 2**20:.0f} MiB{' + WAL' if wal.exists() else ''}; spool generation (not timed) {gen_s:.1f} s")

        con = open_readonly(results)
        try:
            views = [r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal ORDER BY 1").fetchall()]
            some_run = con.execute("SELECT run_id FROM runs ORDER BY run_id LIMIT 1 OFFSET ?", [args.runs // 2]).fetchone()[0]
            counts = con.execute("SELECT (SELECT count(*) FROM runs), (SELECT count(*) FROM migrations), (SELECT count(*) FROM samples)").fetchone()
        finally:
            con.close()
        print(f"  rows: runs {counts[0]}, migrations {counts[1]}, samples {counts[2]}")
        queries = (
            [
                ("README per-mode summary", SUMMARY_SQL),
                ("README failed legs", FAILED_SQL),
                ("README one leg's time series", SERIES_SQL.format(run_id=some_run)),
                ("ad hoc: samples x migrations per mode", ADHOC_SQL),
            ]
            + [(f"view {v}", f"SELECT * FROM {v}") for v in views]
            + [
                (f"view {v}, count(*) only", f"SELECT count(*) FROM {v}")
                for v in views  # the query without fetching every row into Python
            ]
        )
        if not views:
            print("  (no views in the database: the report's statistics views (issue 5) do not exist yet)")
        print("queries (read-only connection; cold = first run, best of 3):")
        worst = 0.0
        for name, sql in queries:
            cold, best, n = time_query(results, sql)
            worst = max(worst, cold)
            print(f"  {name:42s} cold {cold * 1000:7.1f} ms  best {best * 1000:7.1f} ms  {n:6d} rows  {'PASS' if cold < 1 else 'FAIL'}")
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "migflow", "query", "--results", str(results), SUMMARY_SQL], check=False, capture_output=True, text=True)
        cli = time.perf_counter() - t0
        print(f"  `migflow query` process, per-mode summary: {cli * 1000:.0f} ms (exit {proc.returncode})")
        ok_ingest = total_samples / ingest_s >= 1e5
        print(f"RESULT ingest {'PASS' if ok_ingest else 'FAIL'}; queries {'PASS' if worst < 1 else 'FAIL'} (slowest cold {worst * 1000:.0f} ms)")
        return 0
    finally:
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
