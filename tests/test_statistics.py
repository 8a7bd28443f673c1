"""The statistics: Student t and Welch in pure Python, the SQL views against
hand-written aggregates and Python's statistics module, compare's verdicts,
export round trips, the seed in runs.extra, and validation of impossible
matrix combinations."""

from __future__ import annotations

import json
import math
import statistics
import textwrap

import duckdb
import fakes
import pytest
from cli_runner import migflow, query
from resultsdata import RAM, TOTAL, build_results
from test_engine import HOSTS, workflow

from migflow.engine import Engine
from migflow.plugins import get_plugins
from migflow.records.schema import TABLES, ddl
from migflow.records.store import connect_writer, open_readonly
from migflow.records.views import METRICS, T975, VIEW_NAMES
from migflow.statistics import mean_ci, t_cdf, t_quantile, welch

# -- Student t and Welch -----------------------------------------------------------------

# published two-sided 95% critical values (e.g. NIST/SEMATECH e-Handbook, table 1.3.6.7.2)
KNOWN_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 10: 2.228, 20: 2.086, 30: 2.042, 60: 2.000, 100: 1.984}


@pytest.mark.parametrize("df,value", sorted(KNOWN_T975.items()))
def test_t_quantile_matches_published_tables(df, value):
    assert t_quantile(0.975, df) == pytest.approx(value, abs=6e-4)


def test_t_cdf_closed_forms():
    for t in (-5.0, -1.0, 0.0, 0.3, 1.0, 2.5, 40.0):
        assert t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, abs=1e-12)  # Cauchy
        assert t_cdf(t, 2) == pytest.approx(0.5 + t / (2 * math.sqrt(2 + t * t)), abs=1e-12)
    assert t_cdf(1.959963984540054, 1e7) == pytest.approx(0.975, abs=1e-6)  # tends to the normal
    for df in (1, 2.5, 3, 7.3, 29):
        for p in (0.6, 0.9, 0.975, 0.995):
            assert t_cdf(t_quantile(p, df), df) == pytest.approx(p, abs=1e-10)
    assert t_quantile(0.025, 4) == -t_quantile(0.975, 4)


def test_sql_t_table_and_macro_agree_with_python():
    assert [round(t_quantile(0.975, df), 6) for df in range(1, 31)] == pytest.approx(T975, abs=1e-6)
    con = duckdb.connect()
    for t in TABLES:
        con.execute(ddl(t))
    from migflow.records.views import ensure_views

    ensure_views(con)
    for df in list(range(1, 40)) + [50, 75, 100, 250, 1000]:
        [(sql,)] = con.execute("SELECT t_crit95(?)", [df]).fetchall()
        assert sql == pytest.approx(t_quantile(0.975, df), abs=2e-5), df
    assert con.execute("SELECT t_crit95(0), t_crit95(NULL)").fetchall() == [(None, None)]
    assert con.execute(
        "SELECT link_rate_mbps('1gbit'), link_rate_mbps('100mbit'), link_rate_mbps('2.5Gbit'), "
        "link_rate_mbps('500kbit'), link_rate_mbps('8000bit'), link_rate_mbps('fast')"
    ).fetchall() == [(1000.0, 100.0, 2500.0, 0.5, 0.008, None)]


def test_welch_against_a_hand_computation():
    a, b = [1.0, 2.0, 3.0], [4.0, 5.0, 6.5]
    w = welch(a, b)
    va, vb = statistics.variance(a) / 3, statistics.variance(b) / 3
    df = (va + vb) ** 2 / (va**2 / 2 + vb**2 / 2)
    assert w.diff == pytest.approx(statistics.mean(b) - statistics.mean(a))
    assert w.se == pytest.approx(math.sqrt(va + vb))
    assert w.df == pytest.approx(df)
    half = t_quantile(0.975, df) * math.sqrt(va + vb)
    assert (w.ci_low, w.ci_high) == pytest.approx((w.diff - half, w.diff + half))
    assert w.p == pytest.approx(2 * (1 - t_cdf(w.diff / w.se, df)))
    assert w.significant is True and 0.02 < w.p < 0.04  # R: t.test(b, a) gives p = 0.0291
    assert welch([1.0], [2.0, 3.0]).significant is None  # n < 2: no interval
    exact = welch([5.0, 5.0], [7.0, 7.0])
    assert exact.significant and exact.p == 0.0 and exact.ci_low == exact.ci_high == 2.0
    m, lo, hi = mean_ci([10.0, 12.0])
    assert (m, lo, hi) == pytest.approx((11.0, 11.0 - 12.706205 * 1.0, 11.0 + 12.706205 * 1.0), abs=1e-5)


# -- the views ---------------------------------------------------------------------------------


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "results.duckdb"
    legs = build_results(path)
    return path, legs


def test_views_exist_and_work_on_an_empty_database(tmp_path):
    path = tmp_path / "empty.duckdb"
    connect_writer(path, 5).close()
    con = open_readonly(path)
    try:
        for view in VIEW_NAMES:
            cur = con.execute(f"SELECT * FROM {view}")
            rows = cur.fetchall()
            assert rows == [] or view == "metric_catalog", view
            assert len(cur.description) > 3
        assert [r[0] for r in con.execute("SELECT metric FROM metric_catalog ORDER BY position").fetchall()] == [m for m, *_ in METRICS]
    finally:
        con.close()


HAND_SQL = """
SELECT r.scenario, m.leg, count(m.total_time), avg(m.total_time), median(m.total_time), stddev_samp(m.total_time),
       min(m.total_time), max(m.total_time)
FROM migrations m JOIN runs r USING (run_id)
WHERE m.status = 'completed' AND r.workflow = 'wf'
GROUP BY ALL ORDER BY ALL
"""


def test_scenario_leg_stats_match_hand_written_sql_and_python(db):
    path, legs = db
    con = open_readonly(path)
    try:
        hand = con.execute(HAND_SQL).fetchall()
        view = con.execute("""SELECT scenario, leg, n, mean, median, stddev, min, max FROM scenario_leg_stats
                              WHERE workflow = 'wf' AND metric = 'total_time' ORDER BY scenario, leg""").fetchall()
        assert len(view) == len(hand) == 6
        for h, v in zip(hand, view, strict=True):
            assert h[:3] == v[:3]
            assert v[3:] == pytest.approx(h[3:], nan_ok=True, rel=1e-12) if h[5] is not None else v[5] is None
        every = {
            (r["scenario"], r["leg"], m): []
            for r in legs
            for m in ("total_time", "downtime", "guest_pause_ms", "ram_mbps", "ram_transferred", "iterations", "wall_ms")
        }
        for r in legs:
            for m in ("total_time", "downtime", "guest_pause_ms", "ram_mbps", "ram_transferred", "iterations", "wall_ms"):
                every[(r["scenario"], r["leg"], m)].append(r[m])
        rows = con.execute("SELECT scenario, leg, metric, n, mean, median, stddev, min, max, ci95_low, ci95_high, ci95_half FROM scenario_leg_stats").fetchall()
        checked = 0
        for sc, leg, metric, n, mean, median, sd, lo_, hi_, ci_lo, ci_hi, half in rows:
            if (sc, leg, metric) not in every:
                continue
            xs = every[(sc, leg, metric)]
            assert n == len(xs)
            assert mean == pytest.approx(statistics.mean(xs))
            assert median == pytest.approx(statistics.median(xs))
            assert (lo_, hi_) == pytest.approx((min(xs), max(xs)))
            if n >= 2:
                m, lo, hi = mean_ci(xs)
                assert sd == pytest.approx(statistics.stdev(xs))
                assert (ci_lo, ci_hi) == pytest.approx((lo, hi), rel=1e-6)
                assert half == pytest.approx((hi - lo) / 2, rel=1e-6)
            else:
                assert sd is None and ci_lo is None and ci_hi is None  # n = 1: no interval, not a fake one
            checked += 1
        assert checked == 6 * 7
    finally:
        con.close()


def test_pooled_stats_failed_legs_excluded_and_derived_measures(db):
    path, legs = db
    con = open_readonly(path)
    try:
        [(n, mean)] = con.execute("SELECT n, mean FROM scenario_stats WHERE scenario = 'mode=p2p' AND metric = 'total_time'").fetchall()
        xs = TOTAL["mode=p2p"][1] + TOTAL["mode=p2p"][2]
        assert (n, mean) == (8, pytest.approx(statistics.mean(xs)))
        # the failed leg is in legs, never in the statistics
        assert con.execute("SELECT status, direction FROM legs WHERE scenario = 'mode=unmanaged-direct'").fetchall() == [("failed", "there")] * 2
        assert con.execute("SELECT count(*) FROM leg_metrics WHERE scenario = 'mode=unmanaged-direct'").fetchall() == [(0,)]
        assert con.execute("SELECT count(*) FROM scenario_stats WHERE scenario = 'mode=unmanaged-direct'").fetchall() == [(0,)]
        rows = con.execute("""SELECT run_id, leg, direction, link_rate, link_rate_mbps, link_efficiency, guest_ram_bytes, bytes_per_ram_byte,
                                     ram_mbps, ram_transferred FROM legs WHERE status = 'completed' ORDER BY run_id, leg""").fetchall()
        assert len(rows) == len(legs)
        for _run_id, leg, direction, rate, rate_mbps, eff, ram, per_byte, mbps, sent in rows:
            assert direction == ("there" if leg == 1 else "back")
            assert (rate, rate_mbps) == ("1gbit", 1000.0)
            assert eff == pytest.approx(mbps / 1000.0)
            assert ram == RAM and per_byte == pytest.approx(sent / RAM)
        [(n_eff, mean_eff)] = con.execute(
            "SELECT n, mean FROM scenario_leg_stats WHERE scenario = 'mode=p2p' AND leg = 1 AND metric = 'link_efficiency'"
        ).fetchall()
        assert n_eff == 4 and mean_eff == pytest.approx(statistics.mean(r["ram_mbps"] / 1000 for r in legs if r["scenario"] == "mode=p2p" and r["leg"] == 1))
    finally:
        con.close()


def test_no_link_shaping_gives_null_efficiency(tmp_path):
    path = tmp_path / "r.duckdb"
    build_results(path, link_rate=None, failed_scenario=None)
    con = open_readonly(path)
    try:
        assert con.execute("SELECT count(*), count(link_efficiency) FROM legs").fetchall() == [(18, 0)]
        assert con.execute("SELECT count(*) FROM scenario_stats WHERE metric = 'link_efficiency'").fetchall() == [(0,)]
    finally:
        con.close()


def test_a_file_without_views_gets_temp_views_when_read(tmp_path):
    path = tmp_path / "old.duckdb"
    build_results(path)
    with duckdb.connect(str(path)) as con:  # as written by migflow before the views existed
        for v in ("scenario_leg_stats", "scenario_stats", "leg_metrics", "metric_catalog", "legs"):
            con.execute(f"DROP VIEW {v}")
        con.execute("DROP MACRO t_crit95")
        con.execute("DROP MACRO link_rate_mbps")
    con = open_readonly(path)
    try:
        assert con.execute("SELECT count(*) FROM scenario_leg_stats WHERE metric = 'total_time'").fetchall() == [(6,)]
    finally:
        con.close()
    proc = migflow("query", "--results", str(path), "SELECT count(*) AS n FROM scenario_stats WHERE metric = 'downtime'")
    assert proc.returncode == 0 and "3" in proc.stdout, proc.stderr


# -- compare -----------------------------------------------------------------------------------


def compare_json(path, *args):
    proc = migflow("compare", "--results", str(path), "--json", *args)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_compare_finds_a_real_difference(db):
    path, _ = db
    out = compare_json(path, "mode=p2p", "mode=managed-direct", "--metric", "total_time")
    there, back = out["comparisons"]
    assert there["legs"] == "leg 1 (there)" and there["significant"] is True
    assert there["diff"] == pytest.approx(statistics.mean(TOTAL["mode=managed-direct"][1]) - statistics.mean(TOTAL["mode=p2p"][1]))
    assert there["ci95_low"] > 0 and "higher" in there["verdict"] and "real difference" in there["verdict"]
    w = welch(TOTAL["mode=p2p"][1], TOTAL["mode=managed-direct"][1])
    assert (there["ci95_low"], there["ci95_high"], there["p"]) == pytest.approx((w.ci_low, w.ci_high, w.p))
    # on the way back the two overlap: no detectable difference, said so
    assert back["significant"] is False and back["ci95_low"] < 0 < back["ci95_high"]
    assert back["verdict"].startswith("no detectable difference")


def test_compare_with_one_repetition_says_it_cannot_tell(db):
    path, _ = db
    out = compare_json(path, "mode=p2p", "mode=zstack")
    for row in out["comparisons"]:
        assert row["significant"] is None and row["ci95_low"] is None
        assert (row["verdict"].startswith("cannot tell") and "mode=zstack" not in row["verdict"]) or "1 completed leg" in row["verdict"]
    text = migflow("compare", "--results", str(path), "mode=p2p", "mode=zstack").stdout
    assert "cannot tell: B has 1 completed leg" in text
    failed = compare_json(path, "mode=p2p", "mode=unmanaged-direct", "--metric", "downtime")
    assert all("no completed leg" in r["verdict"] for r in failed["comparisons"])


def test_compare_pooled_and_errors(db):
    path, _ = db
    out = compare_json(path, "mode=p2p", "mode=managed-direct", "--leg", "all", "--metric", "ram_transferred")
    assert [r["legs"] for r in out["comparisons"]] == ["all legs"] and out["comparisons"][0]["n_a"] == 8
    bad = migflow("compare", "--results", str(path), "mode=p2p", "mode=nope")
    assert bad.returncode == 2 and "no scenario 'mode=nope'" in bad.stderr and "mode=managed-direct" in bad.stderr
    bad = migflow("compare", "--results", str(path), "mode=p2p", "mode=zstack", "--metric", "speed")
    assert bad.returncode == 2 and "unknown metric" in bad.stderr
    assert "Welch" in migflow("compare", "--help").stdout


# -- export ------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_export_round_trip(db, tmp_path, fmt):
    path, _ = db
    out = tmp_path / "out"
    proc = migflow("export", "--results", str(path), "--format", fmt, "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    reader = "read_parquet" if fmt == "parquet" else "read_csv_auto"
    with duckdb.connect(str(path), read_only=True) as con:
        for table in ("runs", "steps", "migrations", "samples", "schema_version", "legs", "scenario_stats", "scenario_leg_stats"):
            f = out / f"{table}.{fmt}"
            assert f.exists(), f
            n_db = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            assert con.execute(f"SELECT count(*) FROM {reader}('{f}')").fetchone()[0] == n_db
        if fmt == "parquet":  # exact, types included
            diff = con.execute(
                f"SELECT count(*) FROM (SELECT * EXCLUDE (stats, extra) FROM migrations EXCEPT "
                f"SELECT * EXCLUDE (stats, extra) FROM read_parquet('{out}/migrations.parquet'))"
            ).fetchone()[0]
            assert diff == 0
            a = con.execute("SELECT run_id, leg, ms, transferred FROM samples ORDER BY ALL").fetchall()
            assert a == con.execute(f"SELECT run_id, leg, ms, transferred FROM read_parquet('{out}/samples.parquet') ORDER BY ALL").fetchall()
        else:
            a = con.execute("SELECT run_id, leg, total_time, ram_transferred FROM migrations ORDER BY ALL").fetchall()
            assert a == con.execute(f"SELECT run_id, leg, total_time, ram_transferred FROM read_csv_auto('{out}/migrations.csv') ORDER BY ALL").fetchall()


# -- the seed of a shuffled plan, and impossible combinations -----------------------------------


def test_the_run_order_and_seed_are_recorded(tmp_path):
    fakes.FakeBackend.calls = []
    plugins = get_plugins(extra=(fakes,))
    wf = workflow([("migrate", {"mode": "fake-mode"})], repetitions=2, order="shuffled", seed=1234)
    db = tmp_path / "r.duckdb"
    Engine(plugins, wf, HOSTS, str(db), echo=lambda s: None).run()
    rows = query(db, "SELECT extra->>'$.order', extra->>'$.seed', seed, run_order FROM runs JOIN legs USING (run_id)")
    assert rows and all(r == ("shuffled", "1234", 1234, "shuffled") for r in rows)


def test_matrix_of_modes_and_capabilities_rejects_impossible_combinations(tmp_path):
    from migflow.workflow.loader import check_file

    wf = tmp_path / "sweep.toml"
    wf.write_text(
        textwrap.dedent("""
        name = "sweep"
        [domain.create]
        memory_mib = 256
        [matrix]
        mode = ["p2p", "p2p-tunnelled"]
        cap = ["xbzrle", "postcopy-ram", "multifd"]
        [[steps]]
        use = "prepare-domain"
        [[steps]]
        use = "set-capabilities"
        capabilities = { "${cap}" = true }
        [[steps]]
        use = "migrate"
        mode = "${mode}"
        [[steps]]
        use = "restore"
    """)
    )
    text = wf.read_text().replace('{ "${cap}" = true }', '{ xbzrle = "${xbzrle}", postcopy-ram = "${postcopy}", multifd = "${multifd}" }')
    text = text.replace('cap = ["xbzrle", "postcopy-ram", "multifd"]', "xbzrle = [true, false]\npostcopy = [true, false]\nmultifd = [true, false]")
    wf.write_text(text)
    _, issues = check_file(wf, get_plugins())
    messages = [str(i) for i in issues]
    tunnelled = [m for m in messages if "p2p-tunnelled" in m]
    assert tunnelled and len(tunnelled) == len(messages), messages  # plain p2p accepts every combination
    assert any("postcopy=true" in m and "post-copy" in m for m in tunnelled), messages
    assert any("multifd=true" in m and "multifd (parallel) connections cannot be tunnelled" in m for m in tunnelled), messages
    # tunnelled with xbzrle alone is fine: no issue names a scenario with postcopy=false,multifd=false
    assert not any("postcopy=false,multifd=false" in m for m in messages), messages
    assert all(":" in m and "steps[2].mode" in m for m in messages)
