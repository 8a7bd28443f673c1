"""Built-in migflow plugin: the embedded two-host lab.

Contributes the ``migflow lab`` commands, the ``shape-link`` step, the default
hosts (the lab's two libvirt daemons), the guest image (see :mod:`.guest`) and brings the lab up before a run that
uses it.  The machinery lives in :mod:`migflow_lab.hosts`; heavy imports
(libvirt) happen only inside the functions that need them.
"""

from __future__ import annotations

from migflow.hookspecs import hookimpl

__all__ = [
    "migflow_default_hosts",
    "migflow_guest_image",
    "migflow_leg_finished",
    "migflow_leg_started",
    "migflow_prepare_hosts",
    "migflow_register_commands",
    "migflow_register_steps",
    "migflow_run_finished",
]


@hookimpl
def migflow_register_commands(cli) -> None:
    from .cli import lab_group

    cli.add_command(lab_group)


@hookimpl
def migflow_default_hosts():
    from .hosts import lab_host_pair

    return lab_host_pair()


@hookimpl
def migflow_prepare_hosts(hosts, echo) -> None:
    from . import hosts as lab

    uris = (getattr(hosts, "source", None), getattr(hosts, "destination", None))
    if not any(lab.is_lab_uri(u) for u in uris):
        return
    if lab.is_up():
        return
    echo("the lab is down; bringing it up (migflow lab up)")
    lab.up(echo=echo)


@hookimpl
def migflow_register_steps(register) -> None:
    from .steps import shape_link_step

    register(shape_link_step())


@hookimpl
def migflow_guest_image(workload):
    """The lab's memory-dirtying multiboot guest (built from ``guest/`` with gcc)."""
    from .guest import guest_image

    return guest_image(workload)


# -- the guest's own view: heartbeat-measured pause around each leg (see .observe) --


@hookimpl
def migflow_leg_started(ctx, leg):
    from .observe import leg_started

    leg_started(ctx, leg)


@hookimpl
def migflow_leg_finished(ctx, leg):
    from .observe import leg_finished

    leg_finished(ctx, leg)


@hookimpl
def migflow_run_finished(ctx):
    from .observe import run_finished

    run_finished(ctx)
