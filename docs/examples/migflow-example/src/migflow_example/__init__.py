"""migflow-example: a third-party migflow plugin.

Registered through the entry point ``example = "migflow_example"`` in the
group ``migflow`` (see pyproject.toml).  Only the public hooks of
:mod:`migflow.hookspecs` are used.  Module-level imports stay light:
``migflow --help`` imports every plugin.
"""

from __future__ import annotations

from migflow.hookspecs import hookimpl
from migflow.registry import ModeSpec, StepSpec

__all__ = ["MODES", "migflow_leg_finished", "migflow_register_commands", "migflow_register_modes", "migflow_register_steps"]

__version__ = "0.1.0"

MODES = (
    ModeSpec(
        "p2p-compressed",
        backend="libvirt",
        flags=("live", "peer2peer", "compressed"),
        incompatible={"tunnelled": "this example keeps the stream out of libvirtd"},
        description="p2p with xbzrle compression (virsh migrate --live --p2p --compressed)",
    ),
    ModeSpec(
        "qmp-xbzrle",
        backend="qemu",
        flags=("live", "compressed"),
        description="QMP migrate with the xbzrle capability (qemu backend)",
    ),
)


@hookimpl
def migflow_register_modes(register):
    for mode in MODES:
        register(mode)


@hookimpl
def migflow_register_steps(register):
    from .steps import GUEST_CHECK_OPTIONS, guest_check

    register(
        StepSpec("guest-check", guest_check, GUEST_CHECK_OPTIONS, description="Check that the guest's heartbeat still grows (it survived the migrations).")
    )


@hookimpl
def migflow_leg_finished(ctx, leg):
    """A measurement of this plugin's own, as an SQL row (table ``metrics``): the
    statistics views, ``migflow compare`` and the report show it like migflow's."""
    if leg.wall_ms is not None:
        ctx.record_metric("example.wall_s", leg.wall_ms / 1000.0, "s", leg=leg, plugin="example")


@hookimpl
def migflow_register_commands(cli):
    from .cli import example_group  # click is imported only here

    cli.add_command(example_group)
