"""The self-contained HTML report: inline CSS, inline SVG, a few lines of inline JS.

Nothing is fetched: no CDN, no fonts, no images from the network.  The script
only checks that the charts rendered (it writes ``data-status`` on
``#selfcheck``: ``ok`` or ``error`` with the messages in ``data-errors``) and
highlights a scenario's rows when you point at it.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from html import escape

from .. import __version__
from ..status import RunStatus
from .charts import DASHES, direction_color, fmt_num, line_chart, strip_chart
from .series import SUMMARY_METRICS, chart_metrics, leg_series, scale_of, scenario_order, strip_rows, summary_rows

__all__ = ["build_html"]

_CSS = """
:root { --fg:#1d2330; --muted:#5b6476; --line:#e3e7ee; --band:#f6f8fb; --card:#fff; --bg:#eef1f6; --accent:#0072B2; --bad:#b42318; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--fg); font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif; }
header { background:#1d2330; color:#fff; padding:22px 32px 18px; }
header h1 { margin:0 0 4px; font-size:22px; font-weight:650; letter-spacing:.2px; }
header .sub { color:#c5cbd8; font-size:13px; }
header .facts { display:flex; flex-wrap:wrap; gap:8px 22px; margin-top:12px; font-size:13px; color:#dfe3ea; }
header .facts b { color:#fff; font-weight:600; }
nav { position:sticky; top:0; z-index:5; background:#fff; border-bottom:1px solid var(--line); padding:8px 32px; font-size:13px; }
nav a { color:var(--accent); text-decoration:none; margin-right:18px; }
main { max-width:1440px; margin:0 auto; padding:20px 24px 60px; }
section { margin-top:26px; }
h2 { font-size:18px; margin:0 0 4px; }
p.lead { color:var(--muted); margin:0 0 12px; max-width:900px; }
.card { background:var(--card); border:1px solid var(--line); border-radius:10px; padding:14px 16px; box-shadow:0 1px 2px rgba(20,30,50,.04); }
table.summary { border-collapse:collapse; width:100%; font-size:13px; font-variant-numeric:tabular-nums; }
.scroll { overflow-x:auto; }
table.summary th, table.summary td { padding:5px 7px; border-bottom:1px solid var(--line); text-align:right; white-space:nowrap; }
table.summary th { font-size:12px; color:var(--muted); font-weight:600; vertical-align:bottom; }
table.summary th small { display:block; font-weight:400; }
table.summary td.l, table.summary th.l { text-align:left; }
table.summary tr.first td { border-top:2px solid #d5dbe5; }
table.summary td .ci { color:var(--muted); font-size:12px; }
table.summary tr.hl td { background:#fff8e1; }
td.scen { font-weight:600; white-space:normal !important; max-width:230px; }
.dir { display:inline-block; padding:0 7px; border-radius:9px; color:#fff; font-size:11px; font-weight:600; }
.bad { color:var(--bad); }
.err { color:var(--bad); font-size:12px; white-space:normal !important; text-align:left !important; }
.grid2 { display:grid; grid-template-columns:repeat(auto-fill,minmax(580px,1fr)); gap:14px; }
.grid3 { display:grid; grid-template-columns:repeat(3,minmax(0,1fr)); gap:8px; }
.card h3 { font-size:15px; margin:0 0 2px; }
.card .note { color:var(--muted); font-size:12px; margin:0 0 8px; }
svg.chart { max-width:100%; height:auto; display:block; }
svg .grid line { stroke:#e6e9ef; stroke-width:1; }
svg .tick { fill:#6b7385; font-size:10px; }
svg .axis { fill:#5b6476; font-size:11px; }
svg .rowlabel { fill:#1d2330; font-size:11.5px; }
svg .band { fill:#f7f9fc; }
svg .ci { stroke-width:2.5; stroke-linecap:round; opacity:.55; }
svg .dot { stroke:#fff; stroke-width:1.2; opacity:.92; }
svg .line { fill:none; stroke-width:1.7; }
svg .iter { stroke-width:2; }
svg .ctitle { font-size:12px; font-weight:600; fill:#1d2330; }
svg .ctitle .unit { font-weight:400; fill:#6b7385; }
.legend { font-size:12px; color:var(--muted); margin:4px 0 10px; }
.legend span { margin-right:14px; white-space:nowrap; }
.legend i { display:inline-block; width:10px; height:10px; border-radius:50%; vertical-align:-1px; margin-right:4px; }
.legend svg { vertical-align:middle; margin-right:4px; }
details { margin-top:6px; }
summary { cursor:pointer; color:var(--accent); font-size:13px; }
dl.kv { display:grid; grid-template-columns:max-content 1fr; gap:3px 14px; margin:6px 0; font-size:13px; }
dl.kv dt { color:var(--muted); }
dl.kv dd { margin:0; font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace; font-size:12.5px; word-break:break-word; }
table.runs { border-collapse:collapse; font-size:12.5px; margin-top:6px; }
table.runs td, table.runs th { padding:3px 8px; border-bottom:1px solid var(--line); text-align:left; }
pre { background:#f6f8fb; border:1px solid var(--line); padding:8px; border-radius:6px; font-size:11.5px; overflow:auto; max-height:360px; }
.nodata, .empty { color:var(--muted); font-size:12px; padding:30px 8px; text-align:center; border:1px dashed var(--line); border-radius:6px; }
footer { color:var(--muted); font-size:12px; text-align:center; margin:30px 0; }
#selfcheck { display:none; }
@media print { nav { display:none; } .card { break-inside:avoid; } }
"""

_HEAD_JS = """
window.__migflowErrors = [];
window.addEventListener('error', function (e) { window.__migflowErrors.push(String(e.message || e)); });
window.addEventListener('unhandledrejection', function (e) { window.__migflowErrors.push(String(e.reason)); });
"""

_BODY_JS = """
(function () {
  var box = document.getElementById('selfcheck');
  function finish() {
    try {
      var charts = document.querySelectorAll('svg.chart'), drawn = 0;
      for (var i = 0; i < charts.length; i++) {
        var b = charts[i].getBBox();
        if (b.width > 0 && b.height > 0) drawn++;
      }
      box.setAttribute('data-charts', String(charts.length));
      box.setAttribute('data-rendered', String(drawn));
      box.setAttribute('data-dots', String(document.querySelectorAll('svg .dot').length));
      // point at a summary row: highlight every row of that scenario
      var rows = document.querySelectorAll('tr[data-scenario]');
      for (var j = 0; j < rows.length; j++) {
        rows[j].addEventListener('mouseenter', function () { mark(this.getAttribute('data-scenario'), true); });
        rows[j].addEventListener('mouseleave', function () { mark(this.getAttribute('data-scenario'), false); });
      }
    } catch (err) { window.__migflowErrors.push(String(err)); }
    var errs = window.__migflowErrors;
    box.setAttribute('data-errors', errs.join(' | '));
    box.setAttribute('data-status', errs.length ? 'error' : (drawn === charts.length ? 'ok' : 'error'));
  }
  function mark(s, on) {
    var all = document.querySelectorAll('tr[data-scenario]');
    for (var k = 0; k < all.length; k++) if (all[k].getAttribute('data-scenario') === s) all[k].classList.toggle('hl', on);
  }
  finish();
})();
"""


def _dir_badge(direction: str) -> str:
    return f'<span class="dir" style="background:{direction_color(direction)}">{escape(direction)}</span>'


def _cell(st: dict | None, metric: str) -> str:
    if not st or st.get("n") in (None, 0):
        return '<td class="na">–</td>'
    _, _unit, scale = scale_of(metric)
    f = (lambda v: f"{v:.0%}") if metric == "link_efficiency" else fmt_num
    mean, half = st["mean"] / scale, st.get("ci95_half")
    sd = f(st["stddev"] / scale) if st.get("stddev") is not None else "–"
    tip = f"n={st['n']} · mean {f(mean)} · median {f(st['median'] / scale)} · sd {sd} · min {f(st['min'] / scale)} · max {f(st['max'] / scale)}"
    if half is not None and math.isfinite(half):
        tip += f" · 95% CI [{f(st['ci95_low'] / scale)}, {f(st['ci95_high'] / scale)}]"
        ci = f' <span class="ci">± {f(half / scale)}</span>'
    else:
        tip += " · no CI (n < 2)"
        ci = ' <span class="ci">(n=1)</span>'
    return f'<td title="{escape(tip)}">{f(mean)}{ci}</td>'


def _summary_table(data: dict) -> str:
    heads = "".join(f"<th>{escape(scale_of(m)[0])}<small>{escape(scale_of(m)[1])}</small></th>" for m in SUMMARY_METRICS)
    out = [
        (
            '<table class="summary"><thead><tr><th class="l">Scenario</th><th class="l">Mode</th><th class="l">Leg</th>'
            f"<th>Completed<small>legs / runs</small></th>{heads}</tr></thead><tbody>"
        )
    ]
    last = None
    for r in summary_rows(data):
        first = r["scenario"] != last
        last = r["scenario"]
        cls = "first" if first else ""
        done = f"{r['completed']} / {r['total']}"
        if r["completed"] < r["total"]:
            done = f'<span class="bad">{done}</span>'
        out.append(f'<tr class="{cls}" data-scenario="{escape(r["scenario"])}">')
        out.append(f'<td class="l scen">{escape(r["scenario"]).replace(",", ",<wbr>") if first else ""}</td>')
        out.append(f'<td class="l">{escape(", ".join(r["modes"]))}</td><td class="l">{_dir_badge(r["direction"])} {r["leg"]}</td><td>{done}</td>')
        if r["completed"] == 0:
            err = "; ".join(r["errors"]) or "no completed leg"
            out.append(f'<td class="err" colspan="{len(SUMMARY_METRICS)}">{escape(err)}</td>')
        else:
            out.extend(_cell(r["stats"].get(m), m) for m in SUMMARY_METRICS)
        out.append("</tr>")
        if r["completed"] and r["errors"]:
            out.append(
                f'<tr data-scenario="{escape(r["scenario"])}"><td></td><td class="err" colspan="{3 + len(SUMMARY_METRICS)}">{escape("; ".join(r["errors"]))}</td></tr>'
            )
    out.append("</tbody></table>")
    return "".join(out)


def _legend_dirs(directions: list[str]) -> str:
    return (
        '<div class="legend">'
        + "".join(f'<span><i style="background:{direction_color(d)}"></i>{escape(d)}</span>' for d in directions)
        + ("<span>● one repetition</span><span>▮ mean</span><span>━ 95% confidence interval</span></div>")
    )


def _metric_charts(data: dict) -> str:
    cat = {m["metric"]: m for m in data["metrics"]}
    dirs = sorted({lg["direction"] for lg in data["legs"]}, key=lambda d: (d != "there", d != "back", d))
    cards = []
    for metric in chart_metrics(data):
        title, unit, scale = scale_of(metric, data)
        rows = strip_rows(data, metric)
        desc = cat.get(metric, {}).get("description", "")
        chart = (
            strip_chart(title, unit, rows, scale=scale, unit_label=f"{title} ({unit})")
            if rows
            else f'<p class="empty">No completed leg reported {escape(title.lower())}.</p>'
        )
        cards.append(
            f'<div class="card" id="metric-{metric}"><h3>{escape(title)}</h3><p class="note">{escape(desc)} · column <code>{metric}</code></p>'
            f"{_legend_dirs(dirs)}{chart}</div>"
        )
    return '<div class="grid2">' + "".join(cards) + "</div>"


def _series_legend(legs: list[dict]) -> str:
    reps = sorted({lg["repetition"] for lg in legs})
    dirs = sorted({lg["direction"] for lg in legs}, key=lambda d: (d != "there", d != "back", d))
    parts = [f'<span><i style="background:{direction_color(d)}"></i>{escape(d)}</span>' for d in dirs]
    for i, rep in enumerate(reps):
        dash = DASHES[i % len(DASHES)]
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        parts.append(
            f'<span><svg width="26" height="8"><line x1="0" y1="4" x2="26" y2="4" stroke="#444" stroke-width="2"{dash_attr}/></svg>repetition {rep}</span>'
        )
    parts.append(
        '<span><svg width="8" height="10"><line x1="4" y1="0" x2="4" y2="10" stroke="#444" stroke-width="2"/></svg>a new pass over RAM (iteration)</span>'
    )
    return '<div class="legend">' + "".join(parts) + "</div>"


def _time_series(data: dict) -> str:
    series = leg_series(data)
    out = []
    for sc in scenario_order(data):
        legs = [lg for lg in series.get(sc, []) if lg["samples"]]
        if not legs:
            failed = list(series.get(sc, []))
            out.append(
                f'<div class="card"><h3>{escape(sc)}</h3><p class="nodata">No samples recorded ({len(failed)} leg(s), none with a time series: the migration did not start).</p></div>'
            )
            continue
        reps = sorted({lg["repetition"] for lg in legs})
        panels = []
        derived = any(lg["mbps_derived"] for lg in legs)
        for key, title, unit in (
            ("remaining_mib", "Remaining RAM", "MiB"),
            ("mbps", "Throughput" + (" (from bytes sent)" if derived else ""), "Mbit/s"),
            ("dirty_mibs", "Dirty rate", "MiB/s"),
        ):
            s = []
            for lg in legs:
                s.append(
                    {
                        "name": f"{lg['direction']} · repetition {lg['repetition']} ({lg['run_id']} leg {lg['leg']}, {lg['status']})",
                        "color": direction_color(lg["direction"]),
                        "dash": DASHES[reps.index(lg["repetition"]) % len(DASHES)],
                        "points": lg[key],
                        "marks": lg["iterations"],
                    }
                )
            panels.append(line_chart(title, unit, s))
        out.append(f'<div class="card" id="series-{escape(sc)}"><h3>{escape(sc)}</h3>{_series_legend(legs)}<div class="grid3">{"".join(panels)}</div></div>')
    return "".join(out)


def _short_json(value, limit: int = 300):
    """Drop bulky strings (domain XML) from JSON shown in the report."""
    if isinstance(value, dict):
        return {k: _short_json(v, limit) for k, v in value.items()}
    if isinstance(value, list):
        return [_short_json(v, limit) for v in value]
    if isinstance(value, str) and len(value) > limit:
        return value[:limit] + f"… ({len(value)} characters)"
    return value


def _kv(pairs: list[tuple[str, object]]) -> str:
    items = []
    for k, v in pairs:
        if v is None or v == "" or v == {} or v == []:
            continue
        text = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
        items.append(f"<dt>{escape(k)}</dt><dd>{escape(text)}</dd>")
    return '<dl class="kv">' + "".join(items) + "</dl>"


def _step_summary(step: dict) -> str | None:
    r = step.get("result") or {}
    if not isinstance(r, dict):
        return None
    name = step["step"]
    if name == "shape-link":
        bits = [f"{k}={r[k]}" for k in ("rate", "delay_ms", "jitter_ms", "loss_pct") if r.get(k) is not None]
        return ", ".join(bits) or "link not shaped (cleared)"
    if name == "set-capabilities":
        caps = r.get("qmp_capabilities") or {}
        params = r.get("qmp_parameters") or {}
        on = sorted(k for k, v in (r.get("in_force_before_migration", {}).get("capabilities") or {}).items() if v)
        bits = []
        if caps:
            bits.append("set " + ", ".join(f"{k}={v}" for k, v in caps.items()))
        if params:
            bits.append("parameters " + ", ".join(f"{k}={v}" for k, v in params.items()))
        if r.get("libvirt_flags"):
            bits.append("libvirt flags " + ", ".join(r["libvirt_flags"]))
        if on:
            bits.append("capabilities in force: " + ", ".join(on))
        return "; ".join(bits) or "nothing changed"
    if name == "migrate":
        return f"mode {r.get('mode')}, flags {', '.join(r.get('flags') or [])}"
    if name == "prepare-domain":
        g = r.get("guest") or {}
        return (
            f"{r.get('name')} ({(r.get('memory_kib') or 0) // 1024} MiB, {r.get('vcpus')} vCPU, {r.get('virt_type')}); workload {json.dumps(g.get('workload'))}"
            if r.get("name")
            else None
        )
    return None


def _conditions(data: dict) -> str:
    """What the numbers were measured under: one row per run (runs.environment)."""
    rows = []
    for r in data["runs"]:
        env = r.get("environment") or {}
        hosts = env.get("hosts") or {}
        src = hosts.get("source") or {}
        link = env.get("link")
        link_text = "not the lab's" if link is None else (", ".join(f"{k} {v}" for k, v in link.items() if v is not None) or "unshaped")
        load = (env.get("client") or {}).get("loadavg") or []
        rows.append(
            f"<tr><td><code>{escape(r['run_id'])}</code></td><td>{escape(r['scenario'])}</td><td>{escape(str(env.get('accel') or ''))}</td>"
            f"<td>{escape(link_text)}</td><td>{escape(str(src.get('libvirt') or ''))}</td><td>{escape(str(src.get('hypervisor_version') or ''))}</td>"
            f"<td>{escape(str(src.get('kernel') or ''))}</td><td>{escape(str(load[0]) if load else '')}</td>"
            f"<td>{escape(str((env.get('client') or {}).get('mem_available_mib') or ''))}</td>"
            f"<td>{escape(str(r.get('steady_state') or ''))}</td><td>{fmt_num(r['steady_after_ms']) if r.get('steady_after_ms') is not None else ''}</td></tr>"
        )
    head = "".join(
        f"<th>{h}</th>"
        for h in ("run", "scenario", "accel", "link", "libvirt", "QEMU", "kernel", "load (1 min)", "free MiB", "steady state", "steady after (ms)")
    )
    return f'<div class="card scroll"><table class="runs"><tr>{head}</tr>{"".join(rows)}</table></div>'


def _evacuations(data: dict) -> str:
    rows = data.get("evacuations") or []
    if not rows:
        return ""
    head = "".join(
        f"<th>{h}</th>"
        for h in (
            "scenario",
            "direction",
            "guests",
            "concurrency",
            "runs",
            "evacuation (ms, mean)",
            "min–max",
            "downtime median",
            "downtime max",
            "guest pause median",
            "guest pause max",
            "failed legs",
        )
    )
    body = "".join(
        f"<tr><td>{escape(r['scenario'])}</td><td>{_dir_badge(r['direction'])}</td><td>{r['guests']}</td><td>{r['concurrency']}</td><td>{r['runs']}</td>"
        f"<td>{fmt_num(r['evacuation_ms'])}</td><td>{fmt_num(r['evacuation_min'])}–{fmt_num(r['evacuation_max'])}</td>"
        f"<td>{fmt_num(r['downtime_median']) if r['downtime_median'] is not None else '–'}</td><td>{fmt_num(r['downtime_max']) if r['downtime_max'] is not None else '–'}</td>"
        f"<td>{fmt_num(r['guest_pause_median']) if r['guest_pause_median'] is not None else '–'}</td><td>{fmt_num(r['guest_pause_max']) if r['guest_pause_max'] is not None else '–'}</td>"
        f"<td>{r['failed']}</td></tr>"
        for r in rows
    )
    return (
        '<section id="evacuations"><h2>Evacuations</h2><p class="lead">Several guests migrated together, <em>concurrency</em> at a time (view '
        "<code>evacuations</code>): the whole batch's duration, and how each guest's downtime and pause spread.</p>"
        f'<div class="card scroll"><table class="runs"><tr>{head}</tr>{body}</table></div></section>'
    )


def _configuration(data: dict) -> str:
    runs_by_sc: dict[str, list[dict]] = {}
    for r in data["runs"]:
        runs_by_sc.setdefault(r["scenario"], []).append(r)
    steps_by_run: dict[str, list[dict]] = {}
    for s in data["steps"]:
        steps_by_run.setdefault(s["run_id"], []).append(s)
    out = []
    for sc in data["scenarios"]:
        runs = runs_by_sc.get(sc["scenario"], [])
        first = runs[0] if runs else {}
        steps = steps_by_run.get(str(first.get("run_id")), [])
        step_lines = "".join(
            f"<tr><td>{s['position']}</td><td><b>{escape(s['step'])}</b></td><td>{escape(s['status'])}</td><td>{escape(_step_summary(s) or '')}</td></tr>"
            for s in steps
        )
        dom = first.get("domain") or {}
        guest = dom.get("guest") or {}
        run_rows = "".join(
            f"<tr><td><code>{escape(r['run_id'])}</code></td><td>{r['repetition']}</td><td>{r['plan_index']}</td>"
            f'<td class="{"bad" if r["status"] != RunStatus.COMPLETED else ""}">{escape(r["status"])}</td>'
            f"<td>{escape(r['started_at'].astimezone().strftime('%Y-%m-%d %H:%M:%S') if r['started_at'] else '')}</td>"
            f"<td>{escape(r['error'] or '')}</td></tr>"
            for r in runs
        )
        full = json.dumps(
            [{"step": s["step"], "status": s["status"], "result": _short_json(s["result"])} for s in steps], indent=2, ensure_ascii=False, default=str
        )
        written = (first.get("extra") or {}).get("steps")  # the workflow's steps and options, resolved for this scenario
        written_html = (
            f"<details open><summary>steps and options as the workflow set them</summary><pre>{escape(json.dumps(written, indent=2, ensure_ascii=False, default=str))}</pre></details>"
            if written
            else ""
        )
        out.append(
            f'<div class="card"><h3>{escape(sc["scenario"])}</h3>'
            + _kv(
                [
                    ("parameters", sc["params"]),
                    (
                        "domain",
                        f"{dom.get('name', '')} · {(dom.get('memory_kib') or 0) // 1024} MiB · {dom.get('vcpus', '')} vCPU · {dom.get('virt_type', '')}"
                        if dom
                        else None,
                    ),
                    ("workload", guest.get("workload")),
                    ("hosts", f"{first.get('source_uri')} → {first.get('destination_uri')}" if first else None),
                ]
            )
            + written_html
            + f'<table class="runs"><thead><tr><th>#</th><th>step</th><th>status</th><th>what it did (first run)</th></tr></thead><tbody>{step_lines}</tbody></table>'
            + f'<table class="runs"><thead><tr><th>run</th><th>repetition</th><th>plan position</th><th>status</th><th>started</th><th>error</th></tr></thead><tbody>{run_rows}</tbody></table>'
            + f"<details><summary>every step's recorded result (first run)</summary><pre>{escape(full)}</pre></details></div>"
        )
    return '<div class="grid2">' + "".join(out) + "</div>"


def build_html(data: dict) -> str:
    """The whole report for one workflow (``migflow.records.analysis.report_data``)."""
    runs = data["runs"]
    wf = data["workflow"]
    statuses: dict[str, int] = {}
    for r in runs:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    started = [r["started_at"] for r in runs if r["started_at"]]
    ended = [r["ended_at"] for r in runs if r["ended_at"]]
    first = runs[0] if runs else {}
    hv = first.get("host_versions") or {}
    src_v = hv.get("source") or {}
    extra = first.get("extra") or {}
    reps = max((r["repetition"] for r in runs), default=0)
    link = sorted({lg["link_rate"] for lg in data["legs"] if lg.get("link_rate")})
    facts = [
        ("runs", f"{len(runs)} (" + ", ".join(f"{n} {s}" for s, n in sorted(statuses.items())) + ")"),
        ("scenarios", str(len(data["scenarios"]))),
        ("repetitions", str(reps)),
        ("order", f"{extra.get('order')}" + (f" (seed {extra.get('seed')})" if extra.get("seed") is not None else "") if extra.get("order") else None),
        ("when", f"{min(started).astimezone():%Y-%m-%d %H:%M} – {max(ended).astimezone():%H:%M}" if started and ended else None),
        ("link", ", ".join(link) if link else "not shaped"),
        ("hosts", f"{first.get('source_uri')} → {first.get('destination_uri')}" if first else None),
        ("libvirt / QEMU", f"{src_v.get('libvirt', '?')} / {src_v.get('hypervisor_version', src_v.get('qemu', '?'))}" if src_v else None),
    ]
    facts_html = "".join(f"<span>{escape(k)} <b>{escape(v)}</b></span>" for k, v in facts if v)
    now = dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    file = first.get("workflow_file") or ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>migflow report · {escape(wf)}</title>
<style>{_CSS}</style>
<script>{_HEAD_JS}</script>
</head><body>
<header><h1>{escape(wf)}</h1><div class="sub">migflow report · {escape(file)}</div><div class="facts">{facts_html}</div></header>
<nav><a href="#summary">Summary</a><a href="#metrics">Metrics</a><a href="#series">Time series</a><a href="#conditions">Conditions</a><a href="#config">Configuration</a></nav>
<main>
<section id="summary"><h2>Summary</h2>
<p class="lead">Mean of the completed legs of every scenario, per leg of the round trip (<em>there</em> and <em>back</em> differ systematically, so they are kept apart),
with the half-width of the 95% confidence interval (Student's t, n − 1 degrees of freedom) in grey. Point at a cell for n, median, standard deviation, min and max.
Failed legs are counted in <em>Completed</em> and their error is shown.</p>
<div class="card scroll">{_summary_table(data)}</div></section>
<section id="metrics"><h2>Every repetition, per metric</h2>
<p class="lead">Each dot is one leg of one repetition; the bar is the mean and the line its 95% confidence interval (none with a single value). Axes start at zero.</p>
{_metric_charts(data)}</section>
{_evacuations(data)}
<section id="series"><h2>Time series of each leg</h2>
<p class="lead">From the <code>samples</code> table: RAM still to send, throughput and the guest's dirty rate as the hypervisor reported them while the leg ran. Ticks on the time axis mark where a new pass over RAM began.</p>
{_time_series(data)}</section>
<section id="conditions"><h2>Conditions of every run</h2>
<p class="lead">From <code>runs.environment</code>: the accelerator, the link shaping, the source host's libvirt, QEMU and kernel, this machine's load and free memory when the run began, and whether the guest was steady before its first leg.</p>
{_conditions(data)}</section>
<section id="config"><h2>Configuration behind every scenario</h2>
<p class="lead">The scenario's matrix parameters, the steps as they ran (from the <code>steps</code> table), the domain and every run.</p>
{_configuration(data)}</section>
<footer>Written by migflow {escape(__version__)} on {escape(now)} from the results database · query it yourself: <code>migflow query "SELECT * FROM scenario_leg_stats"</code></footer>
</main>
<div id="selfcheck" data-status="pending"></div>
<script>{_BODY_JS}</script>
</body></html>
"""
