"""Built-in plugin: the five steps every workflow uses.

The steps are backend-agnostic: they call ``ctx.backend`` (see
:class:`migflow.backend.Backend`).  ``collect-qmp`` subscribes to the leg
observer hooks, so the migrate step knows nothing about statistics.

* ``prepare-domain``: find or create the domain on the source, wait until it runs.
* ``set-capabilities``: QEMU migration capabilities and parameters (QMP names).
* ``migrate``: one leg, or two with ``round_trip``, in a mode contributed by a plugin.
* ``collect-qmp``: final statistics of every leg into ``migrations``, time series into ``samples``.
* ``restore``: put the domain back as found (always runs).
"""

from __future__ import annotations

from migflow.hookspecs import hookimpl
from migflow.registry import StepSpec

from . import collect, steps
from .schemas import COLLECT_OPTIONS, MIGRATE_OPTIONS, PREPARE_OPTIONS, RESTORE_OPTIONS, SETCAPS_OPTIONS

__all__ = ["migflow_leg_finished", "migflow_leg_progress", "migflow_register_steps", "migflow_validate_scenario"]


@hookimpl
def migflow_register_steps(register):
    register(
        StepSpec("prepare-domain", steps.prepare_domain, PREPARE_OPTIONS, description="Find or create the domain on the source host and wait until it runs.")
    )
    register(
        StepSpec(
            "set-capabilities", steps.set_capabilities, SETCAPS_OPTIONS, description="Set QEMU migration capabilities and parameters; record what is in force."
        )
    )
    register(StepSpec("migrate", steps.migrate, MIGRATE_OPTIONS, description="Migrate the domain (there, and back with round_trip) in a chosen mode."))
    register(
        StepSpec(
            "collect-qmp",
            collect.run,
            COLLECT_OPTIONS,
            always_run=True,
            arm=collect.arm,
            description="Record each leg's final query-migrate statistics and a time series of samples.",
        )
    )
    register(
        StepSpec(
            "restore", steps.restore, RESTORE_OPTIONS, always_run=True, description="Put the domain back as it was found; destroy what the workflow created."
        )
    )


@hookimpl
def migflow_validate_scenario(workflow, scenario, plugins):
    return steps.validate_scenario(workflow, scenario, plugins)


@hookimpl
def migflow_leg_progress(ctx, leg, sample):
    collect.on_progress(ctx, leg, sample)


@hookimpl(trylast=True)  # after observers that add to leg.extra (the lab's heartbeat)
def migflow_leg_finished(ctx, leg):
    collect.on_finished(ctx, leg)
