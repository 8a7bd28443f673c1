"""The run context: what the steps of one run share.

A :class:`RunContext` is created by the engine for every planned run
(scenario x repetition).  Steps read the workflow and scenario from it, use
``ctx.backend`` to act on hosts, keep state for later steps in ``ctx.state``
and run migration legs with :meth:`RunContext.run_leg`, which announces the
leg to observers (``migflow_leg_*`` hooks) and records it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .errors import MigflowError, StepError
from .legs import Leg, Sample
from .status import LegStatus, RunStatus

if TYPE_CHECKING:
    from .backend import Backend
    from .plugins import Plugins
    from .records import RunRecorder
    from .registry import HostPair
    from .session import Session
    from .workflow.model import Scenario, Workflow

__all__ = ["Interrupted", "RunContext"]


class Interrupted(BaseException):
    """Raised in the main thread on Ctrl-C or SIGTERM during a run."""

    def __init__(self, reason: str = "interrupted"):
        super().__init__(reason)
        self.reason = reason


@dataclass
class RunContext:
    run_id: str
    workflow: Workflow
    scenario: Scenario
    repetition: int
    hosts: HostPair
    plugins: Plugins
    recorder: RunRecorder
    backend: Backend | None = None
    echo: Callable[[str], None] = print
    state: dict = field(default_factory=dict)
    legs: list[Leg] = field(default_factory=list)
    status: RunStatus = RunStatus.RUNNING
    error: str | None = None
    #: sampling period of running legs, ms (0: no periodic sampling).  Collectors raise it.
    poll_interval_ms: float = 500.0
    cancel: threading.Event = field(default_factory=threading.Event)
    #: the workflow execution this run belongs to (state shared across its runs)
    session: Session | None = None

    @property
    def hook(self):
        return self.plugins.hook

    def record_metric(self, name: str, value: float, unit: str | None = None, *, leg: Leg | int | None = None, plugin: str | None = None) -> None:
        """Record a measurement of your own as an SQL row (table ``metrics``) that the
        statistics views, ``compare`` and the report pick up like migflow's own.

        :param name: prefix it with your plugin's name (``example.wall_s``).
        :param leg: the leg it measures (a :class:`~migflow.legs.Leg` or its number), or None for the run.
        """
        number = leg.number if isinstance(leg, Leg) else leg
        self.recorder.add_metric(name, value, unit, leg=number, plugin=plugin)

    # -- legs -------------------------------------------------------------------
    def new_leg(self, source: str, destination: str, mode: str, flags: list[str]) -> Leg:
        leg = Leg(number=len(self.legs) + 1, source=source, destination=destination, mode=mode, flags=list(flags))
        self.legs.append(leg)
        return leg

    def emit_sample(self, leg: Leg, stats: dict | None, kind: str = "poll") -> None:
        """Announce a statistics sample (backends call this for per-iteration events)."""
        if stats:
            self.hook.migflow_leg_progress(ctx=self, leg=leg, sample=Sample(ms=leg.elapsed_ms(), stats=stats, kind=kind))

    def run_leg(self, leg: Leg, migrate: Callable[[], None]) -> None:
        """Run ``migrate()`` (a blocking backend call) as leg ``leg``.

        The call runs in a worker thread so Ctrl-C/SIGTERM reach the main
        thread at once; on interruption the backend is asked to abort the job
        and the leg is recorded ``interrupted``.  A periodic sampler polls
        ``backend.poll(leg)`` every ``poll_interval_ms``.  Observers hear
        ``migflow_leg_started``, ``..._progress`` and ``..._finished``; the leg
        lands in the ``migrations`` table whatever happens.  Re-raises the
        backend's error (or :class:`Interrupted`).
        """
        outcome: dict[str, BaseException | None] = {"error": None}

        def worker() -> None:
            try:
                migrate()
            except BaseException as exc:  # handed to the main thread
                outcome["error"] = exc
            finally:
                leg.stop_clock()  # client wall time ends here, not when the main thread notices

        leg.start()
        self._record_leg(leg)
        self.hook.migflow_leg_started(ctx=self, leg=leg)
        leg.start()  # the client wall time covers the backend call only
        stop_sampling = threading.Event()
        sampler = threading.Thread(target=self._sample, args=(leg, stop_sampling), name=f"sampler-{leg.number}", daemon=True)
        thread = threading.Thread(target=worker, name=f"leg-{leg.number}", daemon=True)
        sampler.start()
        thread.start()
        interrupted: Interrupted | None = None
        try:
            while thread.is_alive():
                thread.join(0.05)
        except Interrupted as exc:
            interrupted = exc
            self.echo(f"{exc.reason}: aborting migration leg {leg.number}")
            try:
                if self.backend is not None:
                    self.backend.abort(leg)
            except Exception as abort_exc:  # best effort; the state is reconciled by restore
                self.echo(f"could not abort the job: {abort_exc}")
            thread.join(60)
        finally:
            stop_sampling.set()
            sampler.join(5)
        error = outcome["error"]
        if interrupted is not None:
            leg.finish(LegStatus.INTERRUPTED, interrupted.reason)
        elif error is not None:
            leg.finish(LegStatus.FAILED, _message(error))
        else:
            leg.finish(LegStatus.COMPLETED)
        self.hook.migflow_leg_finished(ctx=self, leg=leg)
        self._record_leg(leg)
        if interrupted is not None:
            raise interrupted
        if error is not None:
            if isinstance(error, StepError):
                raise error
            raise StepError(_message(error)) from error

    def _sample(self, leg: Leg, stop: threading.Event) -> None:
        while self.poll_interval_ms > 0 and not stop.wait(self.poll_interval_ms / 1000.0):
            if leg.done.is_set():
                return
            try:
                stats = self.backend.poll(leg) if self.backend is not None else None
            except Exception:
                continue  # the job may just have ended; the final stats come from the backend
            self.emit_sample(leg, stats)

    def _record_leg(self, leg: Leg) -> None:
        self.recorder.add_leg(
            {
                "leg": leg.number,
                "source": leg.source,
                "destination": leg.destination,
                "mode": leg.mode,
                "flags": leg.flags,
                "started_at": leg.started_at,
                "wall_ms": leg.wall_ms,
                "status": leg.status,
                "error": leg.error,
            }
        )
        self.recorder.flush()


def _message(exc: BaseException) -> str:
    """One line for the user: a migflow error's own message; anything else (a bug
    or a library's surprise) with its type, so ``KeyError: 'x'`` is not just ``'x'``."""
    text = str(exc).strip()
    if isinstance(exc, MigflowError):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
