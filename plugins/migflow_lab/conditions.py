"""The lab's part of a run's recorded conditions, and the link put back after a workflow.

* ``runs.environment`` gets the link shaping in force when the run started and
  the accelerator (KVM or TCG) of the lab's QEMU;
* each leg records the shaping in force while it ran (``migrations.link``);
* a workflow that shapes the link (the ``shape-link`` step) leaves it as it
  found it: the shaping before the workflow is noted when it starts and put
  back when it ends, after failures and Ctrl-C too.
"""

from __future__ import annotations

from typing import Any

from .topology import is_lab_uri

__all__ = ["environment", "leg_link", "workflow_finished", "workflow_started"]

_BEFORE = "lab-link-before"


def _on_lab(hosts: Any) -> bool:
    return bool(getattr(hosts, "lab", False)) or all(is_lab_uri(u) for u in (hosts.source, hosts.destination))


def _link_now() -> dict | None:
    from .lifecycle import is_up, link

    return link() if is_up() else None


def environment(ctx: Any) -> dict | None:
    if not _on_lab(ctx.hosts):
        return None
    from .prereqs import accel

    return {"link": _link_now(), "lab_accel": accel()}


def leg_link(ctx: Any, leg: Any) -> None:
    if _on_lab(ctx.hosts):
        leg.extra["link"] = _link_now()


def workflow_started(session: Any) -> None:
    if _on_lab(session.hosts):
        session.state[_BEFORE] = _link_now()


def workflow_finished(session: Any) -> None:
    before = session.state.get(_BEFORE)
    if before is None:
        return
    now = _link_now()
    if now is None or now == before:
        return
    from .lifecycle import shape
    from .network import describe_link

    shape(**before)
    session.echo(f"lab: link shaping put back as before the workflow ({describe_link(before)})")
