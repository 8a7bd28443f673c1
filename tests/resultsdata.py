"""Build a results database with known numbers through the public recorder API
(``migflow.records.RunRecorder``), for the statistics and report tests."""

from __future__ import annotations

import datetime as dt

from migflow.records import RunRecorder, sample_from_stats

MIB = 2**20
RAM = 256 * MIB

#: scenario -> leg -> values per repetition (total_time ms); other metrics derive from it
TOTAL = {
    "mode=p2p": {1: [460, 470, 455, 465], 2: [1000, 1040, 1020, 1010]},
    "mode=managed-direct": {1: [520, 540, 530, 515], 2: [1005, 1050, 1010, 1030]},
    "mode=zstack": {1: [480], 2: [1100]},  # one repetition only
}


def build_results(path, scenarios=TOTAL, failed_scenario: str | None = "mode=unmanaged-direct", link_rate: str | None = "1gbit"):
    """Write runs with two legs each; returns the list of leg dicts written (completed ones)."""
    t0 = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    legs_written = []
    plan = 0
    reps = max(len(v[1]) for v in scenarios.values())
    order = list(scenarios) + ([failed_scenario] if failed_scenario else [])
    for rep in range(reps):
        for sc in order:
            mode = sc.split("=", 1)[1]
            if sc != failed_scenario and rep >= len(scenarios[sc][1]):
                continue
            if sc == failed_scenario and rep >= 2:
                continue
            run_id = f"r{plan:03d}"
            start = t0 + dt.timedelta(seconds=10 * plan)
            rec = RunRecorder(
                path,
                {
                    "run_id": run_id,
                    "workflow": "wf",
                    "workflow_file": "wf.toml",
                    "scenario": sc,
                    "params": {"mode": mode},
                    "repetition": rep + 1,
                    "plan_index": plan,
                    "backend": "libvirt",
                    "source_uri": "qemu+tcp://a/system",
                    "destination_uri": "qemu+tcp://b/system",
                    "started_at": start,
                    "domain": {"name": "g", "memory_kib": RAM // 1024, "vcpus": 1},
                    "extra": {"order": "interleaved", "seed": None},
                },
            )
            pos = 0
            if link_rate:
                rec.add_step(
                    {
                        "position": pos,
                        "step": "shape-link",
                        "status": "completed",
                        "started_at": start,
                        "duration_ms": 5.0,
                        "result": {"rate": link_rate, "delay_ms": None, "jitter_ms": None, "loss_pct": None},
                    }
                )
                pos += 1
            rec.add_step(
                {
                    "position": pos,
                    "step": "migrate",
                    "status": "completed",
                    "started_at": start,
                    "duration_ms": 100.0,
                    "result": {"mode": mode, "flags": ["live"]},
                }
            )
            for leg, (src, dst) in ((1, ("qemu+tcp://a/system", "qemu+tcp://b/system")), (2, ("qemu+tcp://b/system", "qemu+tcp://a/system"))):
                if sc == failed_scenario:
                    if leg == 1:
                        rec.add_leg(
                            {
                                "leg": 1,
                                "source": src,
                                "destination": dst,
                                "mode": mode,
                                "flags": ["live", "direct"],
                                "started_at": start,
                                "status": "failed",
                                "error": "argument unsupported: direct migration is not supported",
                                "wall_ms": 3.0,
                            }
                        )
                    continue
                total = scenarios[sc][leg][rep]
                sent = int(total * 100_000 + rep * 12345 + leg * 777)
                mbps = sent * 8 / (total / 1000) / 1e6
                stats = {
                    "status": "completed",
                    "total-time": total,
                    "downtime": total // 10,
                    "setup-time": 5,
                    "ram": {
                        "transferred": sent,
                        "total": RAM + 4096,
                        "remaining": 0,
                        "mbps": mbps,
                        "dirty-sync-count": leg + 1,
                        "page-size": 4096,
                        "dirty-pages-rate": 100.0,
                    },
                }
                row = {
                    "leg": leg,
                    "source": src,
                    "destination": dst,
                    "mode": mode,
                    "flags": ["live"],
                    "started_at": start,
                    "status": "completed",
                    "wall_ms": total * 3.5 + 7,
                    "stats": stats,
                    "guest_pause_ms": total / 10 + 1.5,
                }
                rec.add_leg(row)
                samples = []
                for k in range(6):
                    ms = total * k / 5
                    samples.append(
                        sample_from_stats(
                            leg,
                            ms,
                            {
                                "status": "active",
                                "ram": {
                                    "transferred": int(sent * k / 5),
                                    "remaining": int(RAM * (5 - k) / 5),
                                    "total": RAM,
                                    "dirty-pages-rate": 256.0 * k,
                                    "dirty-sync-count": 1 + k // 3,
                                },
                            },
                        )
                    )
                samples.append(
                    sample_from_stats(
                        leg,
                        total * 0.6 + 0.5,
                        {"status": "active", "ram": {"transferred": int(sent * 0.6), "remaining": 1000, "total": RAM, "dirty-sync-count": 2}},
                        kind="iteration",
                    )
                )
                rec.add_samples(samples)
                legs_written.append(
                    {
                        "run_id": run_id,
                        "scenario": sc,
                        "leg": leg,
                        "repetition": rep + 1,
                        "total_time": total,
                        "downtime": total // 10,
                        "ram_transferred": sent,
                        "ram_mbps": mbps,
                        "wall_ms": total * 3.5 + 7,
                        "guest_pause_ms": total / 10 + 1.5,
                        "iterations": leg + 1,
                    }
                )
            res = rec.finish("completed")
            assert res.ingested, res.message
            plan += 1
    return legs_written
