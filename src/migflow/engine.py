"""Run a plan: every scenario x repetition as one run, steps in order.

* Steps declared ``always_run`` (``restore``, ``collect-qmp``) run even after an
  earlier step failed and after Ctrl-C or SIGTERM.
* Each step's status, timing and error are recorded; the run is recorded as
  ``completed``, ``failed`` or ``interrupted`` with the reason.
* One failed run does not stop the others unless ``fail_fast``.
"""

from __future__ import annotations

import secrets
import signal
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import __version__
from .adaptive import AdaptiveRule, leg_value
from .context import Interrupted, RunContext, _message
from .errors import MigflowError, StepError, debug_enabled
from .registry import HostPair
from .session import Session
from .status import RunStatus, StepStatus
from .workflow.model import PlannedRun
from .workflow.plan import order_runs

if TYPE_CHECKING:
    from .plugins import Plugins
    from .workflow.model import Workflow

__all__ = ["Engine", "RunSummary", "new_run_id"]


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


@dataclass
class RunSummary:
    run_id: str
    scenario: str
    repetition: int
    status: RunStatus
    error: str | None
    ingested: bool = True
    store_message: str | None = None


class Engine:
    """Runs a workflow's plan against two hosts and records every run.

    :param plugins: the plugins of this invocation.
    :param workflow: the loaded workflow (its ``plan`` says what to run).
    :param hosts: source and destination.
    :param results: the DuckDB results file.
    :param echo: prints one line for the user (the progress display's).
    :param fail_fast: stop at the first run that does not complete.
    :param wait_for_hosts: when another run holds the hosts, wait for them
        (else :class:`~migflow.reservation.HostBusy`, exit status 6).
    """

    def __init__(
        self,
        plugins: Plugins,
        workflow: Workflow,
        hosts: HostPair,
        results: str,
        echo: Callable[[str], None] = print,
        fail_fast: bool = False,
        wait_for_hosts: bool = True,
    ) -> None:
        self.plugins = plugins
        self.workflow = workflow
        self.hosts = hosts
        self.results = results
        self.echo = echo
        self.fail_fast = fail_fast
        self.wait_for_hosts = wait_for_hosts
        self.summaries: list[RunSummary] = []
        self._interrupt: str | None = None
        self._protected = False  # inside an always-run step (restore): finish it unless asked twice
        self._armed = False  # inside step code: a signal raises Interrupted there
        self.session: Session | None = None
        self._adaptive = AdaptiveRule.of(workflow)
        self._adaptive_why: dict[str, str] = {}  # scenario -> why it runs again
        self._first_run_id: str | None = None  # chosen when the hosts are reserved, used by the first run

    @property
    def interrupted(self) -> str | None:
        """Why the engine stopped early (Ctrl-C, SIGTERM), or None."""
        return self._interrupt

    # -- signals ---------------------------------------------------------------
    def _on_signal(self, signum, frame):
        reason = "interrupted by Ctrl-C" if signum == signal.SIGINT else f"interrupted by signal {signal.Signals(signum).name}"
        self._interrupt = self._interrupt or reason
        if self._protected:
            self.echo(f"{reason}: still restoring the domain; send the signal again to abandon the restore")
            self._protected, self._armed = False, True
            return
        if self._armed:
            self._armed = False
            raise Interrupted(reason)
        self.echo(f"{reason}: stopping after the current step (always-run steps still run)")

    @contextmanager
    def _signals(self):
        old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        for s in old:
            signal.signal(s, self._on_signal)
        try:
            yield
        finally:
            for s, h in old.items():
                signal.signal(s, h)

    # -- runs ------------------------------------------------------------------
    def run(self) -> list[RunSummary]:
        from .reconcile import reconcile
        from .records import ingest_pending

        reconcile(self.results, self.plugins, self.hosts, self.echo)  # runs a killed migflow left "running"
        ingest_pending(self.results, wait_s=2.0)
        self.session = Session(self.workflow, self.hosts, self.plugins, self.results, self.echo)
        with self._signals(), self._reserved():
            if self._interrupt:  # stopped while waiting for the hosts
                return self.summaries
            try:
                self.plugins.hook.migflow_workflow_started(session=self.session)
                for planned in self._plan():
                    if self._interrupt:
                        break
                    summary = self.run_one(planned)
                    self.summaries.append(summary)
                    if summary.status != RunStatus.COMPLETED and (self.fail_fast or self.workflow.fail_fast):
                        self.echo("stopping: fail-fast")
                        break
            finally:
                self._protected = True  # like restore: a first Ctrl-C lets the hosts be put back
                try:
                    self.plugins.hook.migflow_workflow_finished(session=self.session)
                except Exception as exc:
                    self.echo(f"warning: a plugin failed in migflow_workflow_finished: {_message(exc)}")
                finally:
                    self._protected = False
        return self.summaries

    @contextmanager
    def _reserved(self) -> Iterator[None]:
        """Hold both hosts for the whole workflow (:mod:`migflow.reservation`): wait while
        another live run holds them (or fail at once with ``wait_for_hosts=False``),
        renew the lease in the background, release on every way out."""
        from .backend import Backend
        from .reservation import RENEW_S, Holder, HostBusy

        backend = self.plugins.make_backend(self.workflow.backend, self.hosts.source, self.hosts.destination)
        if type(backend).reserve is Backend.reserve:  # this backend cannot reserve hosts
            yield
            return
        try:
            backend.open()
        except Exception:  # an unreachable host: each run records why
            backend.close()
            yield
            return
        self._first_run_id = new_run_id()  # the reservation names the run the user will find in `runs`
        holder = Holder.me(self._first_run_id, self.workflow.name)
        reservation, said = None, False
        try:
            while not self._interrupt:
                try:
                    reservation = backend.reserve(holder)
                    break
                except HostBusy as exc:
                    if not self.wait_for_hosts:
                        raise
                    if not said:
                        self.echo(f"waiting: {exc.message}; migflow starts when it is free (Ctrl-C stops, --no-wait fails at once)")
                        said = True
                    time.sleep(1.0)
            if said and reservation is not None:
                self.echo("the hosts are free: starting")
            stop = threading.Event()
            renewer = threading.Thread(target=self._renew, args=(reservation, stop, RENEW_S), name="reservation-renewer", daemon=True)
            if reservation is not None:
                renewer.start()
            try:
                yield
            finally:
                stop.set()
                if reservation is not None:
                    renewer.join(5)
                    reservation.release()
        finally:
            backend.close()

    @staticmethod
    def _renew(reservation: Any, stop: threading.Event, every_s: float) -> None:
        while not stop.wait(every_s):
            try:
                reservation.renew()
            except Exception:  # a host that went away: its runs say so
                pass

    def _plan(self) -> Iterator[PlannedRun]:
        """The workflow's plan; with ``[adaptive]``, then more rounds of the scenarios
        whose confidence interval is still too wide (:mod:`migflow.adaptive`)."""
        wf = self.workflow
        yield from wf.plan
        rule = self._adaptive
        if rule is None:
            return
        index, reported = len(wf.plan), set()
        while True:
            todo = []
            for sc in wf.scenarios:
                again, why = rule.decision(sc.label)
                if again:
                    todo.append(sc)
                    self._adaptive_why[sc.label] = why
                elif sc.label not in reported:
                    reported.add(sc.label)
                    self.echo(f"adaptive: scenario {sc.label}: {why}")
            if not todo or self._interrupt:
                return
            order = "interleaved" if wf.order == "sequential" else wf.order  # one run each: a round
            for planned in order_runs(todo, 1, order, None if wf.seed is None else wf.seed + index):
                sc = planned.scenario
                yield PlannedRun(index=index, scenario=sc, repetition=rule.runs.get(sc.label, 0) + 1)
                index += 1

    def run_one(self, planned: PlannedRun) -> RunSummary:
        from .records import RunRecorder
        from .redact import redact_uri

        wf, sc = self.workflow, planned.scenario
        run_id, self._first_run_id = self._first_run_id or new_run_id(), None
        recorder = RunRecorder(
            self.results,
            {
                "run_id": run_id,
                "workflow": wf.name,
                "workflow_file": wf.file,
                "scenario": sc.label,
                "params": sc.params,
                "repetition": planned.repetition,
                "plan_index": planned.index,
                "backend": wf.backend,
                "source_uri": redact_uri(self.hosts.source),
                "destination_uri": redact_uri(self.hosts.destination),
                "migflow_version": __version__,
                "hostname": socket.gethostname(),
                "started_at": time.time(),
                "extra": {
                    "order": wf.order,
                    "seed": wf.seed,  # of order = "shuffled", to reproduce the plan
                    "steps": [{"use": u.name, **u.options} for u in sc.steps],  # as resolved for this scenario
                    **self._adaptive_note(sc.label),
                },
            },
        )
        ctx = RunContext(
            run_id=run_id,
            workflow=wf,
            scenario=sc,
            repetition=planned.repetition,
            hosts=self.hosts,
            plugins=self.plugins,
            recorder=recorder,
            echo=self.echo,
            session=self.session or Session(wf, self.hosts, self.plugins, self.results, self.echo),
        )
        specs = [(use, self.plugins.step(use.name)) for use in sc.steps]
        failed: str | None = None
        self._armed = True
        try:
            ctx.backend = self.plugins.make_backend(wf.backend, self.hosts.source, self.hosts.destination)
            ctx.backend.open()
            self._record_environment(ctx)
            self.plugins.hook.migflow_run_started(ctx=ctx)
            for use, spec in specs:
                if spec.arm is not None:
                    spec.arm(ctx, use.options)
        except Interrupted as exc:
            failed = self._interrupted(ctx, exc)
        except Exception as exc:
            failed = self._failed(ctx, f"could not start the run: {_message(exc)}", exc)
        finally:
            self._armed = False

        for position, (use, spec) in enumerate(specs):
            if (failed or self._interrupt) and not spec.always_run:
                self._record_step(ctx, position, use.name, StepStatus.SKIPPED, time.time(), 0.0, None, None)
                continue
            started, t0 = time.time(), time.monotonic()
            self._record_step(ctx, position, use.name, StepStatus.RUNNING, started, None, None, None)  # a killed migflow leaves it abandoned
            status, error, result = StepStatus.COMPLETED, None, None
            self._protected = spec.always_run
            self._armed = not spec.always_run
            try:
                if ctx.backend is None:
                    raise StepError("no backend connection")
                result = spec.run(ctx, use.options)
            except Interrupted as exc:
                status, error = StepStatus.INTERRUPTED, exc.reason
                failed = failed or self._interrupted(ctx, exc)
            except Exception as exc:
                status, error = StepStatus.FAILED, _message(exc)
                if not failed:
                    failed = self._failed(ctx, f"step {use.name!r} failed: {error}", exc)
            finally:
                self._protected = self._armed = False
            if self._interrupt and not failed:
                failed = self._interrupted(ctx, Interrupted(self._interrupt))
            self._record_step(ctx, position, use.name, status, started, (time.monotonic() - t0) * 1000.0, error, result)

        if ctx.status == RunStatus.RUNNING:
            ctx.status = RunStatus.COMPLETED
        # a step (restore) may have found the VM lost: ctx.status == "lost" is kept
        try:
            self.plugins.hook.migflow_run_finished(ctx=ctx)
        except Exception as exc:
            self.echo(f"warning: a plugin failed in migflow_run_finished: {_message(exc)}")
        if ctx.backend is not None:
            ctx.backend.close()
        if self._adaptive is not None:
            direction = {self.hosts.source: "there", self.hosts.destination: "back"}
            self._adaptive.add(sc.label, [(direction.get(leg.source, f"leg {leg.number}"), leg_value(leg, self._adaptive.metric)) for leg in ctx.legs])
        res = recorder.finish(ctx.status, ctx.error, echo=self.echo)
        if not res.ingested:
            self.echo(res.message)
        return RunSummary(run_id, sc.label, planned.repetition, ctx.status, ctx.error, res.ingested, res.message)

    def _adaptive_note(self, scenario: str) -> dict:
        """``runs.extra.adaptive``: the rule, and why this run happens."""
        if self._adaptive is None:
            return {}
        why = self._adaptive_why.pop(scenario, f"one of the first {self._adaptive.minimum} runs (the minimum)")
        return {"adaptive": {**self._adaptive.as_dict(), "why": why}}

    def _record_environment(self, ctx: RunContext) -> None:
        """``runs.environment``: migflow, the client machine, the hosts (the backend's
        view), and what plugins add (the lab: link shaping, accelerator)."""
        import platform

        from .environment import machine_facts

        assert ctx.backend is not None
        env: dict[str, Any] = {"migflow": __version__, "python": platform.python_version(), "client": machine_facts()}
        hosts = ctx.backend.host_info()
        for role, uri in (("source", self.hosts.source), ("destination", self.hosts.destination)):
            runner = self.plugins.hook.migflow_host_runner(uri=uri)
            if runner is not None and runner.same_machine and isinstance(hosts.get(role), dict):
                # a host on this machine (the lab's): its kernel, load and memory are this machine's
                facts = machine_facts()
                hosts[role].update({k: facts[k] for k in ("kernel", "loadavg", "mem_available_mib")}, cpu_model_name=facts["cpu_model"])
        env["hosts"] = hosts
        for part in reversed(self.plugins.hook.migflow_environment(ctx=ctx)):  # later plugins win on equal keys
            if isinstance(part, dict):
                env.update(part)
        ctx.recorder.set_run(environment=env, host_versions=hosts)
        ctx.recorder.flush()

    def _failed(self, ctx: RunContext, message: str, exc: BaseException) -> str:
        ctx.status, ctx.error = RunStatus.FAILED, message
        if not isinstance(exc, MigflowError):  # a bug, not a failure of the hosts: keep where it happened
            text = "".join(traceback.format_exception(exc))
            ctx.recorder.set_run(extra={"exception": type(exc).__name__, "traceback": text})
            if debug_enabled():
                self.echo(text)
        return message

    def _interrupted(self, ctx: RunContext, exc: Interrupted) -> str:
        ctx.status, ctx.error = RunStatus.INTERRUPTED, exc.reason
        return exc.reason

    def _record_step(
        self, ctx: RunContext, position: int, name: str, status: StepStatus, started: float, duration_ms: float | None, error: str | None, result: Any
    ) -> None:
        ctx.recorder.add_step(
            {
                "position": position,
                "step": name,
                "status": status,
                "started_at": started,
                "duration_ms": duration_ms,
                "error": error,
                "result": result if isinstance(result, (dict, list)) or result is None else {"value": result},
            }
        )
        ctx.recorder.flush()
