"""Built-in migflow plugin: the embedded two-host lab.

Contributes the ``migflow lab`` commands, the ``shape-link`` step, the default
hosts (the lab's two libvirt daemons), the guest image (see :mod:`.guest`) and brings the lab up before a run that
uses it.  The machinery lives in the package's modules (:mod:`.lifecycle` up and down, :mod:`.network`, :mod:`.daemons`); :mod:`.api` is its public face; heavy imports
(libvirt) happen only inside the functions that need them.
"""

from __future__ import annotations

from migflow.hookspecs import hookimpl

__all__ = [
    "migflow_default_hosts",
    "migflow_environment",
    "migflow_guest_image",
    "migflow_host_runner",
    "migflow_leg_finished",
    "migflow_leg_progress",
    "migflow_leg_started",
    "migflow_prepare_hosts",
    "migflow_register_commands",
    "migflow_register_steps",
    "migflow_run_finished",
    "migflow_validate_scenario",
    "migflow_wait_steady",
    "migflow_workflow_finished",
    "migflow_workflow_started",
]


@hookimpl
def migflow_register_commands(cli) -> None:
    from .cli import lab_group

    cli.add_command(lab_group)


@hookimpl
def migflow_default_hosts():
    from .topology import host_pair

    return host_pair()


@hookimpl
def migflow_prepare_hosts(hosts, echo) -> None:
    """Bring the lab up when a host of the run is one of the lab's (libvirt or ``qemu+lab://`` URI)."""
    from . import api as lab

    if any(lab.is_lab_uri(u) for u in (hosts.source, hosts.destination)):
        lab.ensure_up(echo)


@hookimpl
def migflow_host_runner(uri):
    """Commands on a lab host run inside its namespaces (``nsenter`` into its libvirtd)."""
    from .topology import find_host

    h = find_host(uri) if "://" in uri else None
    if h is None:
        return None
    from functools import partial

    from migflow.registry import HostRunner

    from .api import command_on
    from .pki import migrate_dir

    return HostRunner(h.name, h.address, partial(command_on, h), same_machine=True, tls_dir=str(migrate_dir(h)))


@hookimpl
def migflow_register_steps(register) -> None:
    from .steps import shape_link_step

    register(shape_link_step())


@hookimpl
def migflow_guest_image(workload, create, guest):
    """The lab's memory-dirtying guests: the tiny multiboot kernel (built from ``guest/``
    with gcc), or ``guest = "linux"``: Debian's kernel with the lab's programs (``linux/``)."""
    from .guest import guest_image

    return guest_image(workload, create, guest)


@hookimpl
def migflow_validate_scenario(workflow, scenario, plugins):
    """``[domain.create]``'s guest and workload, checked before anything runs."""
    import sys

    from .guest import validate_create

    me = sys.modules[__name__]
    others = any(impl.plugin is not me for impl in plugins.pm.hook.migflow_guest_image.get_hookimpls())
    return validate_create((scenario.domain or {}).get("create"), others=others)


# -- the guest's own view: heartbeat-measured pause around each leg (see .observe) --


@hookimpl
def migflow_leg_started(ctx, leg):
    from . import legwatch
    from .conditions import leg_link
    from .observe import leg_started

    leg_link(ctx, leg)
    leg_started(ctx, leg)
    legwatch.leg_started(ctx, leg)


@hookimpl(tryfirst=True)  # before collect-qmp turns the sample into a row
def migflow_leg_progress(ctx, leg, sample):
    from .legwatch import sample_cpu

    sample_cpu(ctx, leg, sample)


@hookimpl
def migflow_wait_steady(ctx, timeout_s):
    from .observe import wait_steady

    return wait_steady(ctx, timeout_s)


# -- conditions: recorded per run, link put back after a workflow (see .conditions) --


@hookimpl
def migflow_environment(ctx):
    from .conditions import environment

    return environment(ctx)


@hookimpl
def migflow_workflow_started(session):
    from .conditions import workflow_started

    workflow_started(session)


@hookimpl
def migflow_workflow_finished(session):
    from .conditions import workflow_finished

    workflow_finished(session)


@hookimpl
def migflow_leg_finished(ctx, leg):
    from . import legwatch
    from .observe import leg_finished

    legwatch.leg_finished(ctx, leg)
    leg_finished(ctx, leg)


@hookimpl
def migflow_run_finished(ctx):
    from .observe import run_finished

    run_finished(ctx)
