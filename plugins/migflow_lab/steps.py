"""The ``shape-link`` workflow step: shape the link between the lab's hosts."""

from __future__ import annotations

from migflow.errors import MigflowError, StepError
from migflow.registry import StepSpec

from . import shaping

__all__ = ["run_shape_link", "shape_link_step"]


def run_shape_link(ctx, options: dict) -> dict:
    """Apply the shaping in ``options`` when ``ctx.hosts`` are the lab's; record it in ``ctx.state["link"]``."""
    from . import api as lab

    pair = getattr(ctx, "hosts", None)
    uris = (getattr(pair, "source", None), getattr(pair, "destination", None))
    if pair is None or not (getattr(pair, "lab", False) or all(lab.is_lab_uri(u) for u in uris)):
        raise StepError(
            f"shape-link shapes only the embedded lab's link, but this run's hosts are {uris[0]} -> {uris[1]}",
            hint="remove the shape-link step, or shape your own network yourself (tc on the hosts)",
        )
    values = {k: options.get(k) for k in shaping.LINK_KEYS}
    if options.get("clear") and any(v is not None for v in values.values()):
        raise StepError("shape-link: clear = true cannot be combined with rate, delay_ms, jitter_ms or loss_pct")
    try:
        link = lab.shape() if options.get("clear") else lab.shape(**values)
    except MigflowError as exc:
        raise StepError(f"shape-link: {exc.message}", hint=exc.hint) from exc
    state = getattr(ctx, "state", None)
    if isinstance(state, dict):
        state["link"] = dict(link)
    recorder = getattr(ctx, "recorder", None)
    if recorder is not None:  # the run's recorded conditions follow what it shaped
        recorder.set_run(environment={"link": dict(link)})
    return link


def shape_link_step() -> StepSpec:
    return StepSpec(
        name="shape-link",
        run=run_shape_link,
        options_schema=shaping.options_schema(),
        description="Shape the lab's link with tc: rate (tbf), delay/jitter/loss (netem), or clear it.",
    )
