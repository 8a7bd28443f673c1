"""``migflow report``: the HTML is self-contained, renders in a real headless
browser without console errors, shows every scenario with its repetitions;
the PNGs are valid images."""

from __future__ import annotations

import re

import browser
import pytest
from cli_runner import migflow
from resultsdata import TOTAL, build_results


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    d = tmp_path_factory.mktemp("report")
    db = d / "results.duckdb"
    build_results(db)
    out, png = d / "report.html", d / "png"
    proc = migflow("report", "--results", str(db), "--output", str(out), "--png", str(png))
    assert proc.returncode == 0, proc.stderr
    assert "wrote" in proc.stdout and "4 scenario(s)" in proc.stdout
    return out, png


def test_html_is_self_contained(report):
    html = report[0].read_text()
    assert html.startswith("<!DOCTYPE html>")
    assert not re.search(r"""<(script|link|img|iframe)[^>]+(src|href)=""", html), "no external resources"
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    assert "@import" not in html and "url(" not in html


def test_report_renders_in_headless_chromium_without_errors(report):
    check, _dom, console = browser.load(report[0])
    assert check.get("data-status") == "ok", (check, console)
    assert check.get("data-errors") == ""
    assert console == [], console
    charts, rendered = int(check["data-charts"]), int(check["data-rendered"])
    assert charts == rendered >= 9 + 3 * 3  # nine metric charts, three panels per scenario with samples
    # every completed leg is a dot in each of the 9 metric charts (link efficiency included: the link was shaped)
    completed = sum(len(v[1]) + len(v[2]) for v in TOTAL.values())
    assert int(check["data-dots"]) == 9 * completed


def test_table_shows_every_scenario_leg_and_the_failure(report):
    html = report[0].read_text()
    table = html[html.index('<table class="summary"') : html.index("</table>")]
    for sc in TOTAL:
        assert table.count(f'data-scenario="{sc}"') == 2  # there and back
    assert "4 / 4" in table and "1 / 1" in table  # completed legs / runs
    assert "0 / 2" in table and "direct migration is not supported" in table  # the failed scenario, with its error
    assert "(n=1)" in table  # one repetition: no interval, said so
    assert "±" in table


def test_the_page_check_catches_script_errors(report, tmp_path):
    broken = tmp_path / "broken.html"
    broken.write_text(report[0].read_text().replace("</body>", "<script>window.notAFunction();</script></body>"))
    check, _, console = browser.load(broken)
    assert check.get("data-status") == "error" or console, (check, console)


def test_pngs_are_valid_images(report):
    from PIL import Image

    files = sorted(report[1].glob("*.png"))
    names = {f.name for f in files}
    assert {"metric-total_time.png", "metric-downtime.png", "metric-ram_mbps.png", "series-mode_p2p.png"} <= names
    for f in files:
        assert f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(f) as im:
            im.verify()
        with Image.open(f) as im:
            assert im.size[0] > 400 and im.size[1] > 150


def test_report_errors_are_one_line(tmp_path):
    proc = migflow("report", "--results", str(tmp_path / "none.duckdb"), "--output", str(tmp_path / "r.html"))
    assert proc.returncode == 5 and "no results database" in proc.stderr and "Traceback" not in proc.stderr
    from migflow.records.store import connect_writer

    connect_writer(tmp_path / "empty.duckdb", 5).close()
    proc = migflow("report", "--results", str(tmp_path / "empty.duckdb"), "--output", str(tmp_path / "r.html"))
    assert proc.returncode == 2 and "no runs yet" in proc.stderr
    assert "self-contained" in migflow("report", "--help").stdout
