"""Read what ``migflow compare`` and ``migflow report`` need, through the statistics views.

Plain Python data out (dicts and lists); no SQL outside ``migflow.records``.
"""

from __future__ import annotations

import json

from ..errors import UsageError

__all__ = ["export_tables", "metric_names", "metric_values", "report_data", "resolve_workflow", "scenarios", "workflows"]


def _rows(con, sql: str, params=()) -> list[dict]:
    cur = con.execute(sql, list(params))
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def _json(value):
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def workflows(con) -> list[str]:
    return [r[0] for r in con.execute("SELECT DISTINCT workflow FROM runs WHERE workflow IS NOT NULL ORDER BY 1").fetchall()]


def resolve_workflow(con, workflow: str | None) -> str:
    """The workflow to analyse: the one given, or the only one in the file."""
    known = workflows(con)
    if workflow:
        if workflow not in known:
            raise UsageError(f"no runs of workflow {workflow!r} in the results", hint=f"workflows recorded: {', '.join(known) or 'none'}")
        return workflow
    if len(known) == 1:
        return known[0]
    if not known:
        raise UsageError("the results hold no runs yet", hint="run a workflow first: migflow run WORKFLOW")
    raise UsageError("the results hold several workflows; choose one with --workflow", hint=f"workflows: {', '.join(known)}")


def scenarios(con, workflow: str) -> list[dict]:
    """``{scenario, params, runs}`` in plan order."""
    rows = _rows(
        con,
        "SELECT scenario, any_value(params) AS params, count(*) AS runs, min(plan_index) AS first "
        "FROM runs WHERE workflow = ? GROUP BY scenario ORDER BY first, scenario",
        [workflow],
    )
    for r in rows:
        r["params"] = _json(r["params"]) or {}
    return rows


def metric_names(con) -> list[dict]:
    return _rows(con, "SELECT metric, unit, description, source FROM metric_catalog ORDER BY position")


def metric_values(con, workflow: str, scenario: str, metric: str) -> list[dict]:
    """Completed legs' values: ``{run_id, repetition, leg, direction, value}``."""
    return _rows(
        con,
        "SELECT run_id, repetition, leg, direction, value FROM leg_metrics WHERE workflow = ? AND scenario = ? AND metric = ? ORDER BY leg, repetition, run_id",
        [workflow, scenario, metric],
    )


def report_data(con, workflow: str, *, max_samples_per_leg: int = 2000) -> dict:
    """Everything the report shows, for one workflow."""
    runs = _rows(
        con,
        "SELECT run_id, workflow_file, scenario, params, repetition, plan_index, backend, source_uri, destination_uri, "
        "host_versions, domain, started_at, ended_at, status, error, migflow_version, hostname, extra, environment, "
        "steady_state, steady_after_ms, steady_dirty_rate_mibs "
        "FROM runs WHERE workflow = ? ORDER BY plan_index, started_at",
        [workflow],
    )
    for r in runs:
        for k in ("params", "host_versions", "domain", "extra", "environment"):
            r[k] = _json(r[k])
    legs = _rows(
        con,
        "SELECT run_id, scenario, repetition, plan_index, leg, direction, mode, flags, status, error, wall_ms, total_time, "
        "setup_time, downtime, guest_pause_ms, ram_mbps, ram_transferred, ram_total, iterations, link_rate, link_rate_mbps, "
        "link_efficiency, bytes_per_ram_byte, guest_ram_bytes, guest_dirty_rate_mibs "
        "FROM legs WHERE workflow = ? ORDER BY plan_index, leg",
        [workflow],
    )
    # plugins' own per-leg measurements (table metrics), alongside the columns, for the charts
    extra = _rows(con, "SELECT run_id, leg, name, value FROM metrics WHERE leg > 0 AND run_id IN (SELECT run_id FROM runs WHERE workflow = ?)", [workflow])
    by_leg = {(lg["run_id"], lg["leg"]): lg for lg in legs}
    for m in extra:
        if (m["run_id"], m["leg"]) in by_leg:
            by_leg[(m["run_id"], m["leg"])][m["name"]] = m["value"]
    stats = _rows(con, "SELECT * FROM scenario_leg_stats WHERE workflow = ? ORDER BY scenario, leg, metric", [workflow])
    pooled = _rows(con, "SELECT * FROM scenario_stats WHERE workflow = ? ORDER BY scenario, metric", [workflow])
    steps = _rows(
        con,
        "SELECT s.run_id, s.position, s.step, s.status, s.duration_ms, s.error, s.result FROM steps s "
        "JOIN runs r USING (run_id) WHERE r.workflow = ? ORDER BY s.run_id, s.position",
        [workflow],
    )
    for s in steps:
        s["result"] = _json(s["result"])
    samples = _rows(
        con,
        "SELECT * FROM (SELECT s.run_id, s.leg, s.ms, s.kind, s.transferred, s.remaining, s.total, s.mbps, s.dirty_pages_rate, "
        "s.iteration, row_number() OVER (PARTITION BY s.run_id, s.leg, s.kind ORDER BY s.ms) AS i, "
        "count(*) OVER (PARTITION BY s.run_id, s.leg, s.kind) AS k "
        "FROM samples s JOIN runs r USING (run_id) WHERE r.workflow = ?) "
        # thin very long poll series evenly; keep every iteration boundary
        "WHERE kind <> 'poll' OR k <= ? OR i % CAST(ceil(k / ?) AS BIGINT) = 0 ORDER BY run_id, leg, ms",
        [workflow, max_samples_per_leg, max_samples_per_leg],
    )
    page = _rows(con, "SELECT run_id, leg, ram_page_size FROM migrations m JOIN runs r USING (run_id) WHERE r.workflow = ?", [workflow])
    page_size = {(p["run_id"], p["leg"]): p["ram_page_size"] for p in page}
    evacuations = _rows(
        con,
        "SELECT scenario, direction, any_value(concurrency) AS concurrency, max(legs) AS guests, count(*) AS runs, "
        "avg(evacuation_ms) AS evacuation_ms, min(evacuation_ms) AS evacuation_min, max(evacuation_ms) AS evacuation_max, "
        "median(downtime_median) AS downtime_median, max(downtime_max) AS downtime_max, "
        "median(guest_pause_median) AS guest_pause_median, max(guest_pause_max) AS guest_pause_max, sum(legs - completed) AS failed "
        "FROM evacuations WHERE workflow = ? AND legs > 1 GROUP BY scenario, direction ORDER BY scenario, direction",
        [workflow],
    )
    return {
        "workflow": workflow,
        "evacuations": evacuations,
        "metrics": metric_names(con),
        "scenarios": scenarios(con, workflow),
        "runs": runs,
        "legs": legs,
        "stats": stats,
        "pooled": pooled,
        "steps": steps,
        "samples": samples,
        "page_size": page_size,
    }


def export_tables(con, directory, fmt: str, tables: list[str]) -> list[tuple[str, str]]:
    """COPY each table (or view) to ``directory/<table>.<fmt>``; returns (table, path)."""
    from pathlib import Path

    out = []
    for table in tables:
        path = Path(directory) / f"{table}.{fmt}"
        opts = "(FORMAT parquet, COMPRESSION zstd)" if fmt == "parquet" else "(FORMAT csv, HEADER true)"
        quoted = str(path).replace("'", "''")
        con.execute(f"COPY (SELECT * FROM {table}) TO '{quoted}' {opts}")
        out.append((table, str(path)))
    return out
