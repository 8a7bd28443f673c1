"""Inline SVG charts for the HTML report: no JavaScript library, no network.

Two kinds:

* :func:`strip_chart`: one row per scenario (and direction), every repetition
  a dot, the mean a bar, its 95% confidence interval a line.
* :func:`line_chart`: time series of several legs, iteration boundaries as
  ticks, one colour per direction, one dash pattern per repetition.
"""

from __future__ import annotations

import math
from html import escape

__all__ = ["DASHES", "DIRECTION_COLORS", "fmt_num", "line_chart", "nice_ticks", "strip_chart"]

#: Okabe-Ito colours, distinguishable with colour-blindness.
DIRECTION_COLORS = {"there": "#0072B2", "back": "#D55E00"}
_OTHER = ["#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]
DASHES = ["", "6 3", "2 3", "10 3 2 3", "1 2"]


def direction_color(direction: str, i: int = 0) -> str:
    return DIRECTION_COLORS.get(direction, _OTHER[i % len(_OTHER)])


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0, 1.0]
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / max(1, n)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks, t = [], start
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 12))
        t += step
    if ticks[-1] < hi:
        ticks.append(ticks[-1] + step)
    return ticks


def fmt_num(v: float | None, digits: int = 3) -> str:
    """Compact number: 1,234 · 12.3 · 0.914."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    a = abs(v)
    if float(v).is_integer() and a < 1e15:
        return f"{int(v):,}"
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    if a == 0:
        return "0"
    return f"{v:.{digits}f}"


def tick_fmt(t: float) -> str:
    """Tick labels: as few digits as the tick needs (0.25, 1,500, 0)."""
    if float(t).is_integer():
        return f"{int(t):,}"
    return f"{t:.6g}"


def _svg_open(width: int, height: int, label: str, cls: str = "chart") -> str:
    return (
        f'<svg class="{cls}" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">'
    )


def strip_chart(title: str, unit: str, rows: list[dict], *, width: int = 560, scale: float = 1.0, unit_label: str | None = None) -> str:
    """Rows: ``{label, direction, values: [(value, tooltip)], mean, low, high}`` (values already in display unit).

    ``scale`` divides every value (e.g. 2**20 for MiB).
    """
    longest = max((len(r["label"]) for r in rows), default=10)
    label_w, right, top, row_h, bottom = min(330, 24 + int(longest * 6.6)), 18, 12, 20, 34
    groups: list[str] = []
    for r in rows:
        if r["label"] not in groups:
            groups.append(r["label"])
    height = top + bottom + sum(row_h * max(1, len([r for r in rows if r["label"] == g])) + 8 for g in groups)
    vals = [v / scale for r in rows for v, _ in r["values"]]
    if not vals:
        return f'<p class="empty">No completed leg has a value for {escape(title)}.</p>'
    ci = [x / scale for r in rows for x in (r.get("low"), r.get("high")) if x is not None and math.isfinite(x)]
    lo, hi = min(vals + ci), max(vals + ci)
    if min(vals) >= 0:
        lo = 0.0  # a quantity that cannot be negative: start at zero, clip intervals there
    ticks = nice_ticks(lo, hi)
    lo, hi = ticks[0], ticks[-1]
    plot_w = width - label_w - right
    x = lambda v: label_w + (v - lo) / (hi - lo) * plot_w  # noqa: E731
    out = [_svg_open(width, height, f"{title} per scenario")]
    out.append('<g class="grid">')
    for t in ticks:
        out.append(f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{top}" y2="{height - bottom}"/>')
        out.append(f'<text class="tick" x="{x(t):.1f}" y="{height - bottom + 14}" text-anchor="middle">{tick_fmt(t)}</text>')
    out.append("</g>")
    out.append(f'<text class="axis" x="{label_w + plot_w / 2:.1f}" y="{height - 4}" text-anchor="middle">{escape(unit_label or unit)}</text>')
    y = top
    for gi, g in enumerate(groups):
        grows = [r for r in rows if r["label"] == g]
        gh = row_h * max(1, len(grows)) + 8
        if gi % 2 == 0:
            out.append(f'<rect class="band" x="0" y="{y}" width="{width}" height="{gh}"/>')
        out.append(f'<text class="rowlabel" x="{label_w - 8}" y="{y + gh / 2 + 4:.1f}" text-anchor="end">{escape(g)}</text>')
        for j, r in enumerate(grows):
            cy = y + 4 + row_h * j + row_h / 2
            color = direction_color(r["direction"], j)
            mean, low, high = r.get("mean"), r.get("low"), r.get("high")
            if low is not None and high is not None and math.isfinite(low) and math.isfinite(high):
                out.append(
                    f'<line class="ci" x1="{x(max(lo, low / scale)):.1f}" x2="{x(min(hi, high / scale)):.1f}" y1="{cy:.1f}" y2="{cy:.1f}" stroke="{color}"/>'
                )
            if mean is not None:
                m = mean / scale
                tip = f"{g} · {r['direction']}: mean {fmt_num(m)} {unit}" + (
                    f", 95% CI [{fmt_num(low / scale)}, {fmt_num(high / scale)}]"
                    if low is not None and high is not None and math.isfinite(low)
                    else ", no CI (n < 2)"
                )
                out.append(f'<rect class="mean" x="{x(m) - 1.5:.1f}" y="{cy - 8:.1f}" width="3" height="16" fill="{color}"><title>{escape(tip)}</title></rect>')
            for k, (v, tip) in enumerate(r["values"]):
                jitter = ((k % 3) - 1) * 3.0
                out.append(
                    f'<circle class="dot" cx="{x(v / scale):.1f}" cy="{cy + jitter:.1f}" r="4" fill="{color}" data-direction="{escape(r["direction"])}">'
                    f"<title>{escape(tip)}</title></circle>"
                )
        y += gh
    out.append("</svg>")
    return "".join(out)


def line_chart(title: str, unit: str, series: list[dict], *, width: int = 360, height: int = 200) -> str:
    """Series: ``{name, color, dash, points: [(ms, value)], marks: [ms]}``; x in seconds."""
    left, right, top, bottom = 48, 10, 22, 30
    pts = [(t, v) for s in series for t, v in s["points"] if v is not None]
    if not pts:
        return f'<div class="nodata">{escape(title)}: not reported</div>'
    xmax = max(t for t, _ in pts) / 1000.0 or 1.0
    ymin, ymax = min(0.0, *(v for _, v in pts)), max(v for _, v in pts)
    xt, yt = nice_ticks(0.0, xmax, 4), nice_ticks(ymin, ymax if ymax > ymin else ymin + 1, 4)
    x0, x1, y0, y1 = xt[0], xt[-1], yt[0], yt[-1]
    pw, ph = width - left - right, height - top - bottom
    X = lambda t: left + (t / 1000.0 - x0) / (x1 - x0) * pw  # noqa: E731
    Y = lambda v: top + ph - (v - y0) / (y1 - y0) * ph  # noqa: E731
    out = [_svg_open(width, height, title, "chart series")]
    out.append(f'<text class="ctitle" x="{left}" y="14">{escape(title)} <tspan class="unit">({escape(unit)})</tspan></text>')
    out.append('<g class="grid">')
    for t in xt:
        px = left + (t - x0) / (x1 - x0) * pw
        out.append(
            f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{top}" y2="{top + ph}"/><text class="tick" x="{px:.1f}" y="{top + ph + 13}" text-anchor="middle">{tick_fmt(t)}</text>'
        )
    for v in yt:
        py = Y(v)
        out.append(
            f'<line x1="{left}" x2="{left + pw}" y1="{py:.1f}" y2="{py:.1f}"/><text class="tick" x="{left - 4}" y="{py + 3:.1f}" text-anchor="end">{tick_fmt(v)}</text>'
        )
    out.append("</g>")
    out.append(f'<text class="axis" x="{left + pw / 2:.1f}" y="{height - 3}" text-anchor="middle">seconds since the leg started</text>')
    for s in series:
        p = [(X(t), Y(v)) for t, v in s["points"] if v is not None]
        if not p:
            continue
        d = "M" + " L".join(f"{a:.1f},{b:.1f}" for a, b in p)
        dash = f' stroke-dasharray="{s["dash"]}"' if s.get("dash") else ""
        out.append(f'<path class="line" d="{d}" stroke="{s["color"]}"{dash}><title>{escape(s["name"])}</title></path>')
        for m in s.get("marks", []):
            px = X(m)
            out.append(
                f'<line class="iter" x1="{px:.1f}" x2="{px:.1f}" y1="{top + ph - 7}" y2="{top + ph}" stroke="{s["color"]}"><title>{escape(s["name"])}: new pass over RAM at {m / 1000:.2f} s</title></line>'
            )
    if all(v == 0 for _, v in pts):
        out.append(f'<text class="axis" x="{left + pw / 2:.1f}" y="{top + ph / 2:.1f}" text-anchor="middle">reported as 0 throughout</text>')
    out.append("</svg>")
    return "".join(out)
