"""Statistics views shipped with the results database (docs/statistics.md).

``ensure_views(con)`` creates them; :func:`~migflow.records.schema.ensure_schema`
calls it on every writer connection, and read-only connections to a file
written before the views existed get them as TEMP views (see
:func:`ensure_temp_views`), so ``migflow query``, ``compare`` and ``report``
work on any results file.

* ``legs``: one row per migration leg with its run's workflow, scenario,
  parameters, repetition, direction, link rate and derived measures.
* ``metric_catalog``: the measures the statistics cover (name, unit), migflow's
  own and those plugins recorded in the ``metrics`` table.
* ``leg_metrics``: completed legs only, one row per (leg, metric): the long
  form every statistic is computed from.
* ``scenario_stats``: per workflow, scenario and metric (every completed leg
  pooled, there and back together).
* ``scenario_leg_stats``: the same per leg number / direction (independent
  repetitions: use these for inference).
* ``evacuations``: per run and batch of legs migrated together (several
  guests, ``concurrency`` at a time): how long the whole batch took and the
  spread of the guests' downtimes and pauses.

The 95% confidence interval is ``mean ± t(0.975, n-1) · stddev / √n`` with the
Student t quantile from the macro ``t_crit95(df)``: exact to 4 decimals for df
≤ 30 (a table), Cornish-Fisher expansion beyond (error < 1e-5 for df > 30).
"""

from __future__ import annotations

__all__ = [
    "METRICS",
    "T975",
    "VIEW_NAMES",
    "ensure_temp_views",
    "ensure_views",
    "view_statements",
]

#: (metric, SQL expression over the ``legs`` view, unit, description) in display order.
METRICS: list[tuple[str, str, str, str]] = [
    ("total_time", "total_time", "ms", "QEMU total-time of the migration (NULL when QEMU's own figure could not be read)"),
    ("downtime", "downtime", "ms", "QEMU downtime (guest stopped, as QEMU reports it)"),
    ("job_time_elapsed", "job_time_elapsed", "ms", "libvirt's job clock (destination start and confirm included)"),
    ("guest_pause_ms", "guest_pause_ms", "ms", "pause observed inside the guest (heartbeat)"),
    ("ram_mbps", "ram_mbps", "Mbit/s", "QEMU ram.mbps at the end of the leg"),
    ("ram_transferred", "ram_transferred", "bytes", "bytes of RAM sent"),
    ("iterations", "ram_dirty_sync_count", "iterations", "passes over guest RAM (ram.dirty-sync-count)"),
    ("wall_ms", "wall_ms", "ms", "client wall time, like `time virsh migrate`"),
    ("wall_before_qemu_ms", "wall_before_qemu_ms", "ms", "client wall time before QEMU's migration began"),
    ("wall_qemu_ms", "wall_qemu_ms", "ms", "client wall time during QEMU's migration"),
    ("wall_after_qemu_ms", "wall_after_qemu_ms", "ms", "client wall time after QEMU completed"),
    ("link_efficiency", "link_efficiency", "ratio", "ram_mbps / shaped link rate (NULL when the link was not shaped)"),
    ("bytes_per_ram_byte", "bytes_per_ram_byte", "ratio", "ram_transferred / guest RAM bytes"),
]

#: two-sided 95% critical values of Student's t, t(0.975, df), df = 1..30
#: (checked against migflow.statistics.t_quantile and published tables in tests).
T975 = [
    12.706205,
    4.302653,
    3.182446,
    2.776445,
    2.570582,
    2.446912,
    2.364624,
    2.306004,
    2.262157,
    2.228139,
    2.200985,
    2.178813,
    2.160369,
    2.144787,
    2.131450,
    2.119905,
    2.109816,
    2.100922,
    2.093024,
    2.085963,
    2.079614,
    2.073873,
    2.068658,
    2.063899,
    2.059539,
    2.055529,
    2.051831,
    2.048407,
    2.045230,
    2.042272,
]

VIEW_NAMES = ("legs", "metric_catalog", "leg_metrics", "scenario_stats", "scenario_leg_stats", "evacuations")
MACRO_NAMES = ("t_crit95", "link_rate_mbps")

_Z975 = "CAST(1.959963984540054 AS DOUBLE)"


def _t_crit95_macro(temp: str) -> str:
    table = ", ".join(f"{v:.6f}" for v in T975)
    z = _Z975
    df = "CAST(df AS DOUBLE)"
    # Cornish-Fisher expansion of the t quantile in powers of 1/df (Abramowitz & Stegun 26.7.5).
    cf = (
        f"{z} + ({z}^3 + {z}) / (4 * {df})"
        f" + (5 * {z}^5 + 16 * {z}^3 + 3 * {z}) / (96 * {df}^2)"
        f" + (3 * {z}^7 + 19 * {z}^5 + 17 * {z}^3 - 15 * {z}) / (384 * {df}^3)"
        f" + (79 * {z}^9 + 776 * {z}^7 + 1482 * {z}^5 - 1920 * {z}^3 - 945 * {z}) / (92160 * {df}^4)"
    )
    return (
        f"CREATE OR REPLACE {temp}MACRO t_crit95(df) AS CASE "
        f"WHEN df IS NULL OR df < 1 THEN NULL "
        f"WHEN df <= 30 AND df = floor(df) THEN ([{table}])[CAST(df AS INTEGER)] "
        f"ELSE {cf} END"
    )


def _link_rate_macro(temp: str) -> str:
    # tc rates as the lab writes them: 500kbit, 100mbit, 1gbit, 2.5gbit (bits per second).
    return (
        f"CREATE OR REPLACE {temp}MACRO link_rate_mbps(rate) AS CASE "
        r"WHEN regexp_full_match(lower(CAST(rate AS VARCHAR)), '[0-9]+(\.[0-9]+)?[kmgt]?bit') THEN "
        r"CAST(regexp_extract(lower(CAST(rate AS VARCHAR)), '^([0-9.]+)', 1) AS DOUBLE) * "
        r"CASE regexp_extract(lower(CAST(rate AS VARCHAR)), '([kmgt]?)bit$', 1) "
        "WHEN 'k' THEN 1e-3 WHEN 'm' THEN 1 WHEN 'g' THEN 1e3 WHEN 't' THEN 1e6 ELSE 1e-6 END END"
    )


_LEGS = """
CREATE OR REPLACE {temp}VIEW legs AS
WITH link AS (
    -- the link rate in force: the last completed shape-link step of the run
    SELECT run_id, arg_max(result->>'$.rate', position) AS rate
    FROM steps WHERE step = 'shape-link' AND status = 'completed'
    GROUP BY run_id
), base AS (
    SELECT
        r.workflow, r.workflow_file, r.scenario, r.params, r.repetition, r.plan_index,
        r.run_id, r.status AS run_status, m.leg,
        CASE WHEN m.source = r.source_uri THEN 'there'
             WHEN m.source = r.destination_uri THEN 'back'
             ELSE 'leg ' || m.leg END AS direction,
        m.mode, m.flags, m.source, m.destination, m.status, m.error, m.started_at, m.ended_at,
        m.wall_ms, m.total_time, m.setup_time, m.downtime, m.guest_pause_ms, m.ram_mbps,
        m.job_time_elapsed, m.job_downtime, m.stats_source, m.wall_before_qemu_ms, m.wall_qemu_ms, m.wall_after_qemu_ms,
        m.ram_transferred, m.ram_total, m.ram_dirty_sync_count, m.ram_dirty_sync_count AS iterations,
        m.guest_dirty_rate_mibs, m.xbzrle_cache_cache_size, m.cpu_throttle_percentage,
        coalesce(m.link->>'$.rate', r.extra->>'$.link.rate', link.rate) AS link_rate,
        link_rate_mbps(coalesce(m.link->>'$.rate', r.extra->>'$.link.rate', link.rate)) AS link_rate_mbps,
        coalesce(TRY_CAST(r.domain->>'$.memory_kib' AS DOUBLE) * 1024,
                 TRY_CAST(r.domain->>'$.memory_mib' AS DOUBLE) * 1048576,
                 m.ram_total) AS guest_ram_bytes,
        TRY_CAST(r.extra->>'$.seed' AS BIGINT) AS seed,
        r.extra->>'$.order' AS run_order
    FROM migrations m JOIN runs r USING (run_id) LEFT JOIN link USING (run_id)
)
SELECT *,
       ram_mbps / nullif(link_rate_mbps, 0) AS link_efficiency,
       ram_transferred / nullif(guest_ram_bytes, 0) AS bytes_per_ram_byte
FROM base
"""

_METRICS_VIEW = """
CREATE OR REPLACE {temp}VIEW metric_catalog AS
SELECT position, metric, unit, description, 'migflow' AS source FROM (VALUES {rows}) AS t(position, metric, unit, description)
UNION ALL
SELECT 1000 + row_number() OVER (ORDER BY name) AS position, name AS metric, any_value(unit) AS unit,
       'recorded by plugin ' || any_value(plugin) AS description, 'plugin' AS source
FROM metrics GROUP BY name
"""

_LEG_METRICS = """
CREATE OR REPLACE {temp}VIEW leg_metrics AS
SELECT l.workflow, l.scenario, l.params, l.run_id, l.repetition, l.plan_index, l.leg, l.direction, l.mode,
       u.metric, mt.unit, u.value
FROM legs l,
     LATERAL (SELECT unnest([{structs}], recursive := true)) AS u
JOIN metric_catalog mt ON mt.metric = u.metric
WHERE l.status = 'completed' AND u.value IS NOT NULL
UNION ALL
-- plugins' own measurements of completed legs ...
SELECT l.workflow, l.scenario, l.params, l.run_id, l.repetition, l.plan_index, l.leg, l.direction, l.mode,
       p.name, p.unit, p.value
FROM metrics p JOIN legs l ON l.run_id = p.run_id AND l.leg = p.leg
WHERE p.leg > 0 AND l.status = 'completed' AND p.value IS NOT NULL
UNION ALL
-- ... and of whole runs (leg 0, direction 'run')
SELECT r.workflow, r.scenario, r.params, r.run_id, r.repetition, r.plan_index, 0, 'run', NULL, p.name, p.unit, p.value
FROM metrics p JOIN runs r USING (run_id)
WHERE p.leg = 0 AND r.status = 'completed' AND p.value IS NOT NULL
"""

_STATS = """
CREATE OR REPLACE {temp}VIEW {name} AS
WITH g AS (
    SELECT workflow, scenario, any_value(params) AS params, {keys}metric, any_value(unit) AS unit,
           count(value) AS n, avg(value) AS mean, median(value) AS median, stddev_samp(value) AS stddev,
           min(value) AS min, max(value) AS max, list(DISTINCT mode ORDER BY mode) AS modes
    FROM leg_metrics
    GROUP BY workflow, scenario, {keys}metric
)
SELECT g.*,
       t_crit95(n - 1) * stddev / sqrt(n) AS ci95_half,
       mean - t_crit95(n - 1) * stddev / sqrt(n) AS ci95_low,
       mean + t_crit95(n - 1) * stddev / sqrt(n) AS ci95_high
FROM g
"""


_EVACUATIONS = """
CREATE OR REPLACE {temp}VIEW evacuations AS
SELECT r.workflow, r.scenario, any_value(r.params) AS params, r.run_id, any_value(r.repetition) AS repetition, m.batch,
       CASE m.batch WHEN 1 THEN 'there' WHEN 2 THEN 'back' ELSE 'batch ' || m.batch END AS direction,
       any_value(m.concurrency) AS concurrency,
       count(*) AS legs,
       count(*) FILTER (WHERE m.status = 'completed') AS completed,
       epoch_ms(max(m.ended_at)) - epoch_ms(min(m.started_at)) AS evacuation_ms,
       min(m.downtime) AS downtime_min, median(m.downtime) AS downtime_median, max(m.downtime) AS downtime_max,
       min(m.guest_pause_ms) AS guest_pause_min, median(m.guest_pause_ms) AS guest_pause_median, max(m.guest_pause_ms) AS guest_pause_max,
       median(m.wall_ms) AS wall_median_ms, sum(m.ram_transferred) AS ram_transferred
FROM migrations m JOIN runs r USING (run_id)
WHERE m.batch IS NOT NULL
GROUP BY r.workflow, r.scenario, r.run_id, m.batch
"""


def view_statements(temporary: bool = False) -> list[str]:
    """The CREATE statements, in dependency order."""
    temp = "TEMP " if temporary else ""
    rows = ", ".join(f"({i}, '{m}', '{u}', '{d.replace(chr(39), chr(39) * 2)}')" for i, (m, _, u, d) in enumerate(METRICS))
    structs = ", ".join(f"{{'metric': '{m}', 'value': CAST({expr} AS DOUBLE)}}" for m, expr, _, _ in METRICS)
    return [
        _t_crit95_macro(temp),
        _link_rate_macro(temp),
        _LEGS.format(temp=temp),
        _METRICS_VIEW.format(temp=temp, rows=rows),
        _LEG_METRICS.format(temp=temp, structs=structs),
        _STATS.format(temp=temp, name="scenario_stats", keys=""),
        _STATS.format(temp=temp, name="scenario_leg_stats", keys="leg, direction, "),
        _EVACUATIONS.format(temp=temp),
    ]


def ensure_views(con) -> None:
    """Create (or replace) the statistics views and macros in the database."""
    for sql in view_statements():
        con.execute(sql)


def ensure_temp_views(con) -> bool:
    """On a (read-only) connection to a file without the views: create them as TEMP views.

    Returns True when it created them.  Never raises: a file without the tables
    simply gets no views.
    """
    try:
        have = {r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
        if set(VIEW_NAMES) <= have:
            return False
        tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        if not {"runs", "migrations", "steps"} <= tables:
            return False
        for sql in view_statements(temporary=True):
            con.execute(sql)
        return True
    except Exception:
        return False
