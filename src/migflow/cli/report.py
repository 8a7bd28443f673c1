"""``migflow report``: a self-contained HTML report of one workflow's results (and PNG charts)."""

from __future__ import annotations

import click

from .query import results_option

__all__ = ["report"]


@click.command("report", context_settings={"max_content_width": 100})
@click.option("--workflow", "-w", metavar="NAME", help="The workflow to report on (needed when the file holds several).")
@click.option("--output", "-o", type=click.Path(dir_okay=False), default="report.html", show_default=True, help="The HTML file to write.")
@click.option("--png", "png_dir", type=click.Path(file_okay=False), metavar="DIR", help="Also write PNG charts (matplotlib) into DIR.")
@results_option
def report(workflow: str | None, output: str, png_dir: str | None, results: str) -> None:
    """Write one HTML file that shows what a workflow's runs measured.

    The file is self-contained (inline CSS and SVG, a few lines of inline
    JavaScript, nothing fetched from the network): open it in any browser,
    mail it, attach it to a ticket.  It has

    \b
      * a summary table per scenario and leg (there / back): total time,
        downtime, guest-observed pause, Mbit/s, bytes sent, iterations, client
        wall time, link efficiency, as mean ± 95% confidence interval, with
        the number of completed legs and the errors of failed ones;
      * one chart per metric with every repetition as a dot, the mean and
        its confidence interval;
      * each leg's time series (remaining RAM, Mbit/s, dirty rate, iteration
        boundaries) from the samples table;
      * the configuration behind every scenario (parameters, steps as they
        ran, domain, hosts, every run).

    The numbers come from the statistics views (docs/statistics.md); only
    completed legs enter them.  --png DIR writes the same charts as PNG files
    for docs and terminals without a browser.

    \b
    Examples:
      migflow run workflows/seed_comparison.toml --results seed.duckdb
      migflow report --results seed.duckdb --output seed.html
      migflow report --results seed.duckdb --workflow seed_comparison --png charts/
    """
    from ..report import write_report
    from .query import pending_note

    res = write_report(results, workflow, output, png_dir)
    click.echo(f"wrote {res['html']}: workflow {res['workflow']}, {res['scenarios']} scenario(s), {res['runs']} run(s)")
    if res["pngs"]:
        click.echo(f"wrote {len(res['pngs'])} PNG chart(s) to {png_dir}")
    pending_note(results)
