"""Every hook migflow calls.  Plugins implement them with ``@migflow.hookimpl``.

Hooks fall in three groups:

* **contributions**, called once when the plugin manager is built: steps,
  backends, modes, CLI commands, guest images, default hosts;
* **host preparation and validation**, called before anything runs;
* **observers**, called during a run: run started/finished, and for every
  migration leg started / progress sample / finished.  Collectors (such as the
  built-in ``collect-qmp`` step or a third-party host-CPU probe) subscribe here;
  the migrate step itself knows nothing about statistics.

pluggy calls implementations last-registered first.  Built-in plugins are
registered before third-party ones, so a third-party ``firstresult`` hook
(``migflow_default_hosts``, ``migflow_guest_image``) overrides the built-in.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click

    from .context import RunContext
    from .legs import Leg, Sample
    from .plugins import Plugins
    from .registry import BackendSpec, GuestImage, HostPair, HostRunner, ModeSpec, StepSpec
    from .session import Session
    from .workflow.model import Scenario, Workflow

#: what ``migflow_validate_scenario`` returns: (JSON path, message) pairs; the
#: path is a string such as ``"steps[2].mode"`` or a list of keys and indices
ScenarioIssues = list[tuple["str | list[str | int]", str]]

PROJECT = "migflow"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

__all__ = ["PROJECT", "hookimpl", "hookspec"]


# -- contributions ----------------------------------------------------------


@hookspec
def migflow_register_steps(register: Callable[[StepSpec], None]) -> None:
    """Contribute workflow steps.

    Call ``register(StepSpec(...))`` once per step (:class:`migflow.registry.StepSpec`).
    A step's ``options_schema`` is merged into the workflow schema, so a typo in
    a step's option is caught by ``migflow validate`` before anything runs.

    :param register: callback taking one :class:`~migflow.registry.StepSpec`.
    """


@hookspec
def migflow_register_backends(register: Callable[[BackendSpec], None]) -> None:
    """Contribute hypervisor backends.

    Call ``register(BackendSpec(name, factory))``.  The factory is only called
    when a workflow runs, so heavy imports belong inside it.

    :param register: callback taking one :class:`~migflow.registry.BackendSpec`.
    """


@hookspec
def migflow_register_modes(register: Callable[[ModeSpec], None]) -> None:
    """Contribute migration modes (``managed-direct``, ``p2p``, ...).

    Call ``register(ModeSpec(name, backend, flags=...))``.  A plugin can add a
    mode in a few lines: a name, the backend it belongs to and its flags.

    :param register: callback taking one :class:`~migflow.registry.ModeSpec`.
    """


@hookspec
def migflow_register_commands(cli: click.Group) -> None:
    """Add commands to the ``migflow`` command line.

    :param cli: the root :class:`click.Group`; call ``cli.add_command(cmd)``.
        Keep heavy imports inside the command's callback so ``migflow --help``
        stays fast.
    """


@hookspec(firstresult=True)
def migflow_default_hosts() -> HostPair | None:
    """Return the :class:`~migflow.registry.HostPair` used when a workflow names no hosts.

    firstresult: the first non-None answer wins.  The built-in lab plugin answers
    with the embedded lab's two hosts.
    """


@hookspec(firstresult=True)
def migflow_guest_image(workload: dict[str, Any], create: dict[str, Any], guest: int) -> GuestImage | None:
    """Return a :class:`~migflow.registry.GuestImage` for one guest of ``[domain.create]``.

    firstresult: the first non-None answer wins.  The built-in lab plugin builds
    its memory-dirtying guests: the tiny multiboot kernel (``guest = "tiny"``, the
    default) or a Linux guest assembled from Debian packages with a NIC and a disk
    (``guest = "linux"``).

    :param workload: the workload table (``working_set_mib``, ``dirty_rate_mibs``,
        ``pattern``, ...).
    :param create: the whole ``[domain.create]`` table (``guest``, ``memory_mib``, ``count`` ...).
    :param guest: which guest of the run (from 1; ``count`` guests are created).
    """


@hookspec(firstresult=True)
def migflow_host_runner(uri: str) -> HostRunner | None:
    """Return how to run commands on the host behind ``uri``, when this plugin manages it.

    firstresult: the first non-None answer wins.  The lab plugin answers for its
    own hosts (``qemu+lab://mflab-a`` and the lab's libvirt URIs); the QEMU
    backend uses the answer to start QEMU there.  Return None for hosts you do
    not manage.

    :param uri: a host URI as a workflow or ``--src``/``--dst`` gives it.
    """


# -- host preparation and validation -----------------------------------------


@hookspec
def migflow_prepare_hosts(hosts: HostPair, echo: Callable[[str], None]) -> None:
    """Make sure the hosts of a run are usable before the first run starts.

    The lab plugin brings the lab up when ``hosts`` are its own and it is down,
    and says so through ``echo``.  Raise :class:`migflow.errors.HostError` when
    the hosts cannot be prepared.

    :param hosts: the :class:`~migflow.registry.HostPair` of the workflow.
    :param echo: prints one line for the user.
    """


@hookspec
def migflow_validate_scenario(workflow: Workflow, scenario: Scenario, plugins: Plugins) -> ScenarioIssues:
    """Check one scenario for combinations that cannot work.

    Return a list of ``(json_path, message)`` pairs (empty when fine).  Called by
    ``migflow validate`` and before ``migflow run`` for every scenario, after
    each step's options passed its JSON Schema.

    :param workflow: the :class:`~migflow.workflow.model.Workflow`.
    :param scenario: the :class:`~migflow.workflow.model.Scenario` with resolved step options.
    :param plugins: the :class:`~migflow.plugins.Plugins` (registered steps, modes, backends).
    """


# -- observers -----------------------------------------------------------------


@hookspec
def migflow_workflow_started(session: Session) -> None:
    """A workflow is about to run its first planned run.

    Keep what the workflow's runs share in ``session.state``.  The lab plugin
    notes the link shaping in force here.

    :param session: the :class:`~migflow.session.Session`.
    """


@hookspec
def migflow_workflow_finished(session: Session) -> None:
    """The workflow's runs are over: all done, a fail-fast stop, Ctrl-C or an error.

    Undo what the workflow changed on the hosts beyond a run.  The lab plugin
    puts the link shaping back as it was before the workflow.  Called once,
    whatever happened; an exception here is reported and does not hide the runs'
    outcome.

    :param session: the :class:`~migflow.session.Session`.
    """


@hookspec
def migflow_environment(ctx: RunContext) -> dict[str, Any] | None:
    """Contribute to the run's recorded conditions (``runs.environment``).

    Called once per run, after the backend connected to the hosts.  Return a
    dict of JSON values (or None); the dicts of all plugins are merged, later
    registered plugins winning on equal keys.  The lab plugin returns the link
    shaping in force and the accelerator.

    :param ctx: the run context.
    """


@hookspec(firstresult=True)
def migflow_wait_steady(ctx: RunContext, timeout_s: float) -> dict[str, Any] | None:
    """Wait until the guest under test is in its steady state; say what was observed.

    firstresult.  Called by ``prepare-domain`` once the domain runs.  A plugin
    that can observe the guest (the lab plugin, through the guest's heartbeat)
    blocks until the guest announced that its working set was written once and
    its dirty rate settled, and returns ``{"after_ms": ..., "dirty_rate_mibs":
    ...}``; it raises :class:`~migflow.errors.StepError` naming the guest when
    that does not happen within ``timeout_s``.  Return None when you cannot
    observe this guest (an existing domain): the run records that steady state
    was not observed.

    :param ctx: the run context (``ctx.state["domain"]`` describes the domain).
    :param timeout_s: how long to wait at most.
    """


@hookspec
def migflow_run_started(ctx: RunContext) -> None:
    """A run (one scenario x repetition) is about to execute its first step.

    :param ctx: the :class:`~migflow.context.RunContext`.
    """


@hookspec
def migflow_run_finished(ctx: RunContext) -> None:
    """A run ended (any status).  ``ctx.status`` and ``ctx.error`` are final.

    :param ctx: the :class:`~migflow.context.RunContext`.
    """


@hookspec
def migflow_leg_started(ctx: RunContext, leg: Leg) -> None:
    """A migration leg is starting (the backend is about to migrate).

    :param ctx: the run context.
    :param leg: the :class:`~migflow.legs.Leg` (number, source, destination, mode, flags).
    """


@hookspec
def migflow_leg_progress(ctx: RunContext, leg: Leg, sample: Sample) -> None:
    """A statistics sample of a running leg (polled, or one per iteration).

    Called from the sampling thread: implementations must be quick and thread-safe.

    :param ctx: the run context.
    :param leg: the running :class:`~migflow.legs.Leg`.
    :param sample: a :class:`~migflow.legs.Sample`.
    """


@hookspec
def migflow_leg_finished(ctx: RunContext, leg: Leg) -> None:
    """A migration leg ended: ``leg.status``, ``leg.error``, ``leg.wall_ms`` and
    ``leg.final_stats`` (QMP ``query-migrate`` shape, when the backend has them) are set.

    Implementations may add measurements to ``leg.extra`` (a dict); the
    ``collect-qmp`` step stores known keys (``guest_pause_ms``,
    ``guest_dirty_rate_mibs``) in the ``migrations`` table.

    :param ctx: the run context.
    :param leg: the finished :class:`~migflow.legs.Leg`.
    """
