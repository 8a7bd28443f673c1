"""What the user sees while a workflow runs.

On a terminal: a live bar per migration leg (RAM transferred of total,
Mbit/s, iteration, remaining, elapsed).  Otherwise (CI, pipes): plain log
lines, one per run, per leg and per migration iteration.

Registered on the plugin manager by ``migflow run`` as an observer, through
the same ``migflow_leg_*`` hooks third-party collectors use.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TYPE_CHECKING

from .hookspecs import hookimpl
from .redact import redact_text, redact_uri

__all__ = ["ProgressDisplay"]

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID


def _mib(n) -> str:
    return "?" if n is None else f"{n / 2**20:,.1f} MiB"


class ProgressDisplay:
    def __init__(self, total_runs: int, *, live: bool | None = None, stream=None):
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty() if live is None else live
        self.total_runs = total_runs
        self.done_runs = 0
        self._lock = threading.Lock()
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._last_iteration = None
        self._last_line = 0.0
        if self.live:
            from rich.console import Console

            self.console: Console | None = Console(file=self.stream)
        else:
            self.console = None

    # -- output helpers -------------------------------------------------------------
    def echo(self, text: str) -> None:
        if self.console is not None:
            self.console.print(text, markup=False, highlight=False)
        else:
            print(text, file=self.stream, flush=True)

    # -- hooks --------------------------------------------------------------------------
    @hookimpl
    def migflow_run_started(self, ctx):
        self.echo(f"run {self.done_runs + 1}/{self.total_runs} {ctx.run_id}: scenario {ctx.scenario.label}, repetition {ctx.repetition}")

    @hookimpl
    def migflow_run_finished(self, ctx):
        self.done_runs += 1
        line = f"run {ctx.run_id}: {ctx.status}"
        if ctx.error:
            line += f": {redact_text(ctx.error)}"
        self.echo(line)

    @hookimpl
    def migflow_leg_started(self, ctx, leg):
        self._last_iteration = None
        text = f"leg {leg.number} {leg.mode} {redact_uri(leg.source)} -> {redact_uri(leg.destination)}"
        if self.live:
            from rich.progress import BarColumn, Progress, TextColumn

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.fields[detail]}"),
                console=self.console,
                transient=False,
            )
            self._task = self._progress.add_task(text, total=None, detail="starting")
            self._progress.start()
        else:
            self.echo(f"  {text}: started")

    @hookimpl
    def migflow_leg_progress(self, ctx, leg, sample):
        ram = sample.stats.get("ram") or {}
        total, sent, rem = ram.get("total"), ram.get("transferred"), ram.get("remaining")
        mbps, it = ram.get("mbps"), ram.get("dirty-sync-count")
        detail = f"{_mib(sent)} sent of {_mib(total)} | {mbps or 0:,.0f} Mbit/s | iteration {it or '?'} | {_mib(rem)} left | {sample.ms / 1000:.1f} s"
        with self._lock:
            if self._progress is not None and self._task is not None:
                done = (total - rem) if (total is not None and rem is not None) else None
                self._progress.update(self._task, total=total, completed=done, detail=detail)
                return
            now = time.monotonic()
            if it != self._last_iteration or now - self._last_line >= 5:
                self._last_iteration, self._last_line = it, now
                self.echo(f"  leg {leg.number} {detail}")

    @hookimpl
    def migflow_leg_finished(self, ctx, leg):
        stats = leg.final_stats or {}
        ram = stats.get("ram") or {}
        if stats:
            summary = (
                f"total {stats.get('total-time', '?')} ms, downtime {stats.get('downtime', '?')} ms, "
                f"{ram.get('mbps', 0):,.0f} Mbit/s, {_mib(ram.get('transferred'))}, {ram.get('dirty-sync-count', '?')} iterations"
            )
        else:
            summary = "no statistics"
        wall = f"{leg.wall_ms:,.0f} ms wall" if leg.wall_ms is not None else ""
        line = f"  leg {leg.number} {leg.status} ({wall}; {summary})"
        if leg.error:
            line += f": {redact_text(leg.error)}"
        with self._lock:
            if self._progress is not None and self._task is not None:
                self._progress.update(self._task, detail=f"{leg.status} | {leg.elapsed_ms() / 1000:.1f} s")
                self._progress.stop()
                self._progress = None
        self.echo(line)
