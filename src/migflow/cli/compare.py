"""``migflow compare``: do two scenarios differ on a metric?  Welch's t-test, in words."""

from __future__ import annotations

import math
from typing import Any

import click

from ..errors import UsageError
from .query import results_option

__all__ = ["compare", "pick_scenario", "verdict"]


def _parse_selector(text: str) -> dict[str, str]:
    out = {}
    for part in text.split(","):
        if "=" not in part:
            return {}
        k, v = part.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def _as_text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "+".join(_as_text(v) for v in value) or "none"
    return str(value)


def pick_scenario(selector: str, known: list[dict]) -> str:
    """The scenario a selector names: its exact label, or the one scenario whose parameters
    include every ``name=value`` given (``mode=p2p`` when only one p2p scenario exists)."""
    labels = [s["scenario"] for s in known]
    if selector in labels:
        return selector
    want = _parse_selector(selector)
    matches = []
    if want:
        for s in known:
            params = s["params"] or {}
            if all(k in params and _as_text(params[k]) == v for k, v in want.items()):
                matches.append(s["scenario"])
    if len(matches) == 1:
        return matches[0]
    listing = "; ".join(labels) or "none"
    if matches:
        raise UsageError(f"{selector!r} matches {len(matches)} scenarios: {'; '.join(matches)}", hint="name more parameters, or give the full label")
    raise UsageError(f"no scenario {selector!r} in this workflow", hint=f"scenarios: {listing}")


def _fmt(value: Any, unit: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if unit == "bytes":
        return f"{value / 2**20:,.2f} MiB"
    if unit == "ratio":
        return f"{value:.3f}"
    if unit == "iterations":
        return f"{value:.2f}"
    return f"{value:,.1f} {unit}"


def verdict(name_a: str, name_b: str, metric: str, unit: str, w) -> str:
    """Plain words for a :class:`migflow.statistics.Welch` result (b compared with a)."""
    if w.n_a < 2 or w.n_b < 2:
        short = [f"{n} has {k} completed leg{'s' if k != 1 else ''}" for n, k in ((name_a, w.n_a), (name_b, w.n_b)) if k < 2]
        return (
            f"cannot tell: {' and '.join(short)}; a confidence interval needs at least 2 of each. "
            f"Means only: {_fmt(w.mean_a, unit)} vs {_fmt(w.mean_b, unit)}. Run more repetitions (migflow run -n 5)."
        )
    rel = f" ({w.relative:+.1%})" if not math.isnan(w.relative) else ""
    ci = f"95% CI of the difference [{_fmt(w.ci_low, unit)}, {_fmt(w.ci_high, unit)}]"
    if w.se == 0:
        if w.diff == 0:
            return f"no difference: every leg of both gave exactly {_fmt(w.mean_a, unit)}."
        return (
            f"{name_b} is {'higher' if w.diff > 0 else 'lower'} by {_fmt(abs(w.diff), unit)}{rel}, and every repetition gave the same value (no spread at all)."
        )
    if w.significant:
        way = "higher" if w.diff > 0 else "lower"
        return (
            f"{name_b} is {way} than {name_a} by {_fmt(abs(w.diff), unit)}{rel}; {ci} excludes 0 "
            f"(Welch's t-test, p = {w.p:.3g}): a real difference at the 5% level."
        )
    widest = max(abs(w.ci_low), abs(w.ci_high))
    power = " With so few repetitions only large differences can be detected; more repetitions narrow the interval." if min(w.n_a, w.n_b) < 5 else ""
    return (
        f"no detectable difference: {name_b} - {name_a} = {_fmt(w.diff, unit)}{rel}, but the {ci} includes 0 "
        f"(p = {w.p:.3g}); a difference up to about {_fmt(widest, unit)} either way is consistent with the data.{power}"
    )


@click.command("compare", context_settings={"max_content_width": 100})
@click.argument("scenario_a")
@click.argument("scenario_b")
@click.option(
    "--metric",
    "-m",
    default="total_time",
    show_default=True,
    metavar="NAME",
    help="total_time, downtime, guest_pause_ms, ram_mbps, ram_transferred, iterations, wall_ms, link_efficiency, bytes_per_ram_byte.",
)
@click.option("--workflow", "-w", metavar="NAME", help="The workflow (needed when the file holds several).")
@click.option(
    "--leg",
    "leg",
    default="each",
    show_default=True,
    metavar="each|all|N",
    help="Compare each leg number separately (there, back), all legs pooled, or one leg number.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the numbers as JSON.")
@results_option
def compare(scenario_a: str, scenario_b: str, metric: str, workflow: str | None, leg: str, as_json: bool, results: str) -> None:
    """Say whether SCENARIO_B differs from SCENARIO_A on a metric, by how much, and how sure we are.

    A scenario is its label as recorded (runs.scenario, e.g. "mode=p2p,xbzrle=false")
    or a few name=value pairs that pick exactly one scenario ("mode=p2p").
    Only completed legs count.  For each leg number (1 = there, 2 = back on
    a round trip; they differ systematically, so they are not pooled unless
    --leg all) it prints both means, the difference B - A with its 95%
    confidence interval (Welch's t-test: unequal variances, Welch-Satterthwaite
    degrees of freedom), the p-value and a verdict in words.  With fewer than
    2 completed legs on either side no interval can be computed, and it says so.

    \b
    Examples:
      migflow compare --results seed.duckdb --workflow seed_comparison --metric total_time \\
          "mode=p2p,xbzrle=false" "mode=managed-direct,xbzrle=false"
      migflow compare --results seed.duckdb mode=zstack,xbzrle=false mode=zstack,xbzrle=true -m ram_transferred
      migflow compare --results seed.duckdb mode=p2p,xbzrle=false mode=p2p-tunnelled,xbzrle=false -m downtime --leg 1 --json

    (seed.duckdb: the results of `migflow run workflows/seed_comparison.toml --results seed.duckdb`.)

    Exit status 0 whatever the verdict; 2 for an unknown workflow, scenario or metric.
    """
    from ..records import open_readonly
    from ..records.analysis import metric_names, metric_values, resolve_workflow, scenarios
    from ..statistics import welch

    con = open_readonly(results)
    try:
        wf = resolve_workflow(con, workflow)
        catalogue = {m["metric"]: m for m in metric_names(con)}
        if metric not in catalogue:
            raise UsageError(f"unknown metric {metric!r}", hint=f"metrics: {', '.join(catalogue)}")
        known = scenarios(con, wf)
        a, b = pick_scenario(scenario_a, known), pick_scenario(scenario_b, known)
        if a == b:
            raise UsageError(f"both arguments name the same scenario {a!r}")
        va, vb = metric_values(con, wf, a, metric), metric_values(con, wf, b, metric)
    finally:
        con.close()
    unit = catalogue[metric]["unit"]

    groups: list[tuple[str, list, list]] = []
    if leg == "all":
        groups.append(("all legs", va, vb))
    else:
        numbers = sorted({r["leg"] for r in va} | {r["leg"] for r in vb})
        if leg != "each":
            try:
                numbers = [int(leg)]
            except ValueError:
                raise UsageError(f"--leg must be each, all or a leg number, not {leg!r}") from None
        for n in numbers:
            ra, rb = [r for r in va if r["leg"] == n], [r for r in vb if r["leg"] == n]
            direction = (ra or rb or [{"direction": ""}])[0]["direction"]
            groups.append((f"leg {n}" + (f" ({direction})" if direction and not direction.startswith("leg") else ""), ra, rb))
    if not groups:
        groups.append(("all legs", [], []))

    out = []
    for label, ra, rb in groups:
        xa, xb = [r["value"] for r in ra], [r["value"] for r in rb]
        if not xa or not xb:
            missing = [n for n, x in ((a, xa), (b, xb)) if not x]
            out.append(
                {"legs": label, "n_a": len(xa), "n_b": len(xb), "verdict": f"cannot tell: no completed leg with a {metric} value for {' and '.join(missing)}"}
            )
            continue
        w = welch(xa, xb)
        num = lambda v: None if v is None or (isinstance(v, float) and (math.isnan(v) or math.isinf(v))) else v  # noqa: E731
        out.append(
            {
                "legs": label,
                "n_a": w.n_a,
                "n_b": w.n_b,
                "mean_a": num(w.mean_a),
                "mean_b": num(w.mean_b),
                "sd_a": num(w.sd_a),
                "sd_b": num(w.sd_b),
                "diff": num(w.diff),
                "relative": num(w.relative),
                "ci95_low": num(w.ci_low),
                "ci95_high": num(w.ci_high),
                "df": num(w.df),
                "p": num(w.p),
                "significant": w.significant,
                "verdict": verdict("A", "B", metric, unit, w),
            }
        )
    if as_json:
        import json

        click.echo(json.dumps({"workflow": wf, "metric": metric, "unit": unit, "a": a, "b": b, "comparisons": out}, indent=2))
        return
    click.echo(f"{metric} ({unit}) in workflow {wf}, completed legs only")
    click.echo(f"  A = {a}")
    click.echo(f"  B = {b}")
    for row in out:
        click.echo("")
        if "mean_a" not in row:
            click.echo(f"{row['legs']}: {row['verdict']}")
            continue
        sd = lambda v: "" if v is None else f" ± {_fmt(v, unit)} sd"  # noqa: E731
        click.echo(
            f"{row['legs']}:  A {_fmt(row['mean_a'], unit)}{sd(row['sd_a'])} (n={row['n_a']})   B {_fmt(row['mean_b'], unit)}{sd(row['sd_b'])} (n={row['n_b']})"
        )
        click.echo(f"  {row['verdict']}")
