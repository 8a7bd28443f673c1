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
    def new_leg(
        self, source: str, destination: str, mode: str, flags: list[str], *, domain: dict | None = None, guest: int = 1, batch: int = 1, concurrency: int = 1
    ) -> Leg:
        """A new leg, numbered after the run's earlier ones.

        :param domain: the domain it moves (one of ``ctx.state["domains"]``); None: the run's only one.
        :param guest: which guest of the run (from 1); ``batch``: which group of legs
            migrated together (1: there, 2: back); ``concurrency``: how many legs of its batch could run at once.
        """
        leg = Leg(
            number=len(self.legs) + 1,
            source=source,
            destination=destination,
            mode=mode,
            flags=list(flags),
            domain=domain,
            guest=guest,
            batch=batch,
            concurrency=concurrency,
        )
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
        error = self.run_legs([(leg, migrate)])[leg.number]
        if error is not None:
            if isinstance(error, StepError):
                raise error
            raise StepError(_message(error)) from error

    def run_legs(self, jobs: list[tuple[Leg, Callable[[], None]]], concurrency: int = 1) -> dict[int, BaseException | None]:
        """Run several legs, at most ``concurrency`` at a time (a host evacuation).

        Each leg runs as :meth:`run_leg` describes; a leg starts as soon as the
        backend call of another returns (its observers, ``migflow_leg_finished``,
        may still be checking the guest: they run beside the next leg).  Returns
        each leg's error (None when it completed) by leg number, once every leg
        is finished: one failed leg does not stop the others.  On Ctrl-C/SIGTERM
        every running leg is aborted and recorded ``interrupted``, the legs not
        started yet are dropped, and :class:`Interrupted` is raised.
        """
        pending = list(jobs)
        running: dict[int, _Running] = {}
        results: dict[int, BaseException | None] = {}
        finishing: list[threading.Thread] = []

        def finish(number: int, job: _Running) -> None:
            results[number] = self._end_leg(job, None)

        try:
            while pending or running:
                while pending and len(running) < max(1, concurrency):
                    leg, migrate = pending.pop(0)
                    running[leg.number] = self._start_leg(leg, migrate)
                for number, job in list(running.items()):
                    job.thread.join(0.05 / max(1, len(running)))
                    if not job.thread.is_alive():
                        del running[number]
                        if pending or running:  # others are to run: finish this one beside them
                            t = threading.Thread(target=finish, args=(number, job), name=f"finish-leg-{number}", daemon=True)
                            t.start()
                            finishing.append(t)
                        else:
                            finish(number, job)
            for t in finishing:
                t.join()
        except Interrupted as exc:
            self.echo(f"{exc.reason}: aborting migration leg{'s' if len(running) > 1 else ''} {', '.join(map(str, running))}")
            for job in running.values():
                try:
                    if self.backend is not None:
                        self.backend.abort(job.leg)
                except Exception as abort_exc:  # best effort; the state is reconciled by restore
                    self.echo(f"could not abort the job of leg {job.leg.number}: {abort_exc}")
            for job in running.values():
                job.thread.join(60)
                self._end_leg(job, exc)
            for leg, _ in pending:  # never started
                self.legs.remove(leg)
            for t in finishing:
                t.join()
            raise
        return results

    def _start_leg(self, leg: Leg, migrate: Callable[[], None]) -> _Running:
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
        return _Running(leg, thread, sampler, stop_sampling, outcome)

    def _end_leg(self, job: _Running, interrupted: Interrupted | None) -> BaseException | None:
        job.stop_sampling.set()
        job.sampler.join(5)
        leg, error = job.leg, job.outcome["error"]
        if interrupted is not None:
            leg.finish(LegStatus.INTERRUPTED, interrupted.reason)
        elif error is not None:
            leg.finish(LegStatus.FAILED, _message(error))
        else:
            leg.finish(LegStatus.COMPLETED)
        self.hook.migflow_leg_finished(ctx=self, leg=leg)
        self._record_leg(leg)
        return error

    def _sample(self, leg: Leg, stop: threading.Event) -> None:
        while self.poll_interval_ms > 0 and not stop.wait(self.poll_interval_ms / 1000.0):
            if leg.done.is_set():
                return
            try:
                stats = self.backend.poll(leg) if self.backend is not None else None
            except Exception:
                continue  # the job may just have ended; the final stats come from the backend
            self.emit_sample(leg, stats)

    def _record_leg(self, leg: Leg) -> None:  # the recorder is thread-safe: legs may finish in threads of their own
        self.recorder.add_leg(
            {
                "leg": leg.number,
                "source": leg.source,
                "destination": leg.destination,
                "mode": leg.mode,
                "flags": leg.flags,
                "started_at": leg.started_at,
                "ended_at": leg.ended_at,
                "wall_ms": leg.wall_ms,
                "status": leg.status,
                "error": leg.error,
                "guest": leg.guest,
                "batch": leg.batch,
                "concurrency": leg.concurrency,
            }
        )
        self.recorder.flush()


@dataclass
class _Running:
    """A leg whose backend call runs in its worker thread."""

    leg: Leg
    thread: threading.Thread
    sampler: threading.Thread
    stop_sampling: threading.Event
    outcome: dict[str, BaseException | None]


def _message(exc: BaseException) -> str:
    """One line for the user: a migflow error's own message; anything else (a bug
    or a library's surprise) with its type, so ``KeyError: 'x'`` is not just ``'x'``."""
    text = str(exc).strip()
    if isinstance(exc, MigflowError):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
