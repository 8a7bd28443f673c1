"""``migflow report``: one self-contained HTML file (and optional PNG charts) for a workflow's results.

:func:`write_report` reads through :mod:`migflow.records.analysis` (the
statistics views), shapes the data (:mod:`.series`) and renders inline SVG
(:mod:`.charts`, :mod:`.html`).  :mod:`.png` draws the same charts with
matplotlib; it is imported only when PNGs are asked for.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["write_report"]


def write_report(results, workflow: str | None, output, png_dir=None) -> dict:
    """Write the HTML report (and PNGs); returns ``{workflow, html, pngs, scenarios, runs}``."""
    from ..records import open_readonly
    from ..records.analysis import report_data, resolve_workflow
    from .html import build_html

    con = open_readonly(results)
    try:
        wf = resolve_workflow(con, workflow)
        data = report_data(con, wf)
    finally:
        con.close()
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(build_html(data), encoding="utf-8")
    tmp.replace(out)
    pngs: list[str] = []
    if png_dir is not None:
        from .png import write_pngs

        pngs = write_pngs(data, Path(png_dir))
    return {"workflow": wf, "html": str(out), "pngs": pngs, "scenarios": len(data["scenarios"]), "runs": len(data["runs"])}
