"""``RunRecorder``: collects one run's records in a spool file, then writes them
to the results database when the run finishes."""

from __future__ import annotations

import functools
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..legs import flatten_stats
from ..procs import process_start
from ..redact import redact_json, redact_text, redact_uri
from ..status import RunStatus
from .schema import LEG_STATUSES, MEASUREMENT_COLUMNS, RUN_STATUSES, STAT_COLUMNS, STEP_STATUSES, TABLES
from .spool import SPOOL_FORMAT, spool_path, write_samples, write_spool
from .store import DatabaseLocked, ingest_spools
from .values import normalize_row, to_timestamp

__all__ = ["IngestResult", "RunRecorder", "sample_from_stats"]

#: runs columns whose JSON objects set_run merges instead of replacing
_MERGED_JSON = ("extra", "environment")
_FINAL = tuple(s for s in RUN_STATUSES if s != RunStatus.RUNNING)


@dataclass
class IngestResult:
    """Outcome of ``RunRecorder.finish``: whether the run reached the database, and what to tell the user."""

    ingested: bool
    message: str

    def __bool__(self) -> bool:
        return self.ingested


def sample_from_stats(leg: int, ms: float, stats: dict, kind: str = "poll") -> dict:
    """A ``samples`` row from QMP-shaped statistics (``{"status":..., "ram": {...}}``)."""
    ram = (stats or {}).get("ram") or {}
    return {
        "leg": leg,
        "ms": ms,
        "kind": kind,
        "status": stats.get("status"),
        "transferred": ram.get("transferred"),
        "remaining": ram.get("remaining"),
        "total": ram.get("total"),
        "mbps": ram.get("mbps"),
        "dirty_pages_rate": ram.get("dirty-pages-rate"),
        "iteration": ram.get("dirty-sync-count"),
        "throttle": stats.get("cpu-throttle-percentage"),
        "expected_downtime": stats.get("expected-downtime"),
        "src_qemu_cpu_ms": (stats.get("host-cpu") or {}).get("src_qemu_cpu_ms"),
        "dst_qemu_cpu_ms": (stats.get("host-cpu") or {}).get("dst_qemu_cpu_ms"),
    }


def _locked(method):
    """One thread at a time in the recorder: legs of an evacuation finish in threads of their own."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self._lock:
            return method(self, *args, **kwargs)

    return wrapper


class RunRecorder:
    """Records one run (thread-safe).  The spool file ``<results>.spool/<run_id>.json`` is
    written at once (status ``running``) and rewritten atomically at every
    :meth:`flush`; :meth:`finish` writes the run to DuckDB, or leaves the spool
    for a later ingest when the database stays locked.

    Row keys must be columns of their table (``ValueError`` otherwise; each
    table but ``samples`` has an ``extra`` JSON column for anything else).

    :param results_path: the DuckDB file (``results.duckdb``).
    :param run: ``runs`` columns; ``run_id`` is required.
    """

    def __init__(self, results_path: str | os.PathLike, run: dict):
        if not run.get("run_id"):
            raise ValueError("RunRecorder: run['run_id'] is required")
        from .. import __version__

        self.results_path = Path(results_path)
        self.run_id = str(run["run_id"])
        self.path = spool_path(self.results_path, self.run_id)
        base = {
            "status": RunStatus.RUNNING.value,
            "pid": os.getpid(),
            "hostname": socket.gethostname(),
            "started_at": time.time(),
            "migflow_version": __version__,
        }
        self._run = normalize_row("runs", {**base, **run, "run_id": self.run_id})
        if self._run.get("status") != RunStatus.RUNNING:
            raise ValueError(f"RunRecorder: a new run has status 'running', not {self._run.get('status')!r}")
        self._redact()
        self._steps: dict[int, dict] = {}
        self._legs: dict[int, dict] = {}
        self._samples: dict[tuple, dict] = {}
        self._metrics: dict[tuple, dict] = {}
        self._samples_written = 0  # rows in the samples file on disk
        self._samples_changed = False  # a row on disk was replaced since
        self._finished: IngestResult | None = None
        self._pid_start = process_start(os.getpid())
        self._lock = threading.RLock()
        self.flush()

    # -- building -----------------------------------------------------------
    def _check_open(self) -> None:
        if self._finished is not None:
            raise RuntimeError(f"run {self.run_id} is already finished")

    def _redact(self) -> None:
        for key in ("source_uri", "destination_uri"):
            if self._run.get(key) is not None:
                self._run[key] = redact_uri(self._run[key])
        if self._run.get("error") is not None:  # a message may quote a URI
            self._run["error"] = redact_text(self._run["error"])
        for key in ("host_versions", "domain", "extra", "environment"):  # plugins' JSON may carry URIs too
            if self._run.get(key) is not None:
                self._run[key] = redact_json(self._run[key])

    @_locked
    def set_run(self, **cols) -> None:
        """Update ``runs`` columns (``domain={...}``, ``steady_state="observed"``, ...).

        The JSON tables ``extra`` and ``environment`` are merged key by key with
        what is there, so plugins that each record something keep each other's.
        """
        self._check_open()
        if "run_id" in cols and str(cols["run_id"]) != self.run_id:
            raise ValueError("set_run: run_id cannot change")
        row = normalize_row("runs", cols)
        for key in _MERGED_JSON:
            if isinstance(row.get(key), dict) and isinstance(self._run.get(key), dict):
                row[key] = {**self._run[key], **row[key]}
        self._run.update(row)
        self._redact()

    def run_extra(self) -> dict:
        """The run's ``extra`` JSON as recorded so far (a copy)."""
        extra = self._run.get("extra")
        return dict(extra) if isinstance(extra, dict) else {}

    @_locked
    def add_step(self, row: dict) -> None:
        """Add (or replace, by ``position``) a ``steps`` row."""
        self._check_open()
        row = normalize_row("steps", {k: v for k, v in row.items() if k != "run_id"})
        if row.get("error") is not None:
            row["error"] = redact_text(row["error"])
        if row.get("result") is not None:
            row["result"] = redact_json(row["result"])
        if row.get("position") is None:
            raise ValueError("steps: 'position' is required")
        if row.get("status") is not None and row["status"] not in STEP_STATUSES:
            raise ValueError(f"steps.status must be one of {', '.join(STEP_STATUSES)}, not {row['status']!r}")
        self._steps[row["position"]] = {**self._steps.get(row["position"], {}), **row}

    @_locked
    def add_leg(self, row: dict) -> None:
        """Add or update (merge, by ``leg``) a ``migrations`` row.

        A ``stats`` dict (QMP ``query-migrate`` shape) also fills the statistic
        columns it contains (``ram.transferred`` -> ``ram_transferred``); values
        given explicitly in the same call win.  Unknown statistics stay in ``stats``.
        An ``extra`` dict (a leg's measurements, ``leg.extra``) fills the
        measurement columns it names (``guest_pause_ms`` ...); the rest stays in
        ``extra``, merged with what earlier calls stored there.
        """
        self._check_open()
        row = {k: v for k, v in row.items() if k != "run_id"}
        if row.get("leg") is None:
            raise ValueError("migrations: 'leg' is required")
        stats = row.get("stats")
        if isinstance(stats, dict):
            flat = flatten_stats(stats)
            derived = {c: flat[c] for c in STAT_COLUMNS if c in flat and c not in row}
            row = {**derived, **row}
        extra = row.get("extra")
        if isinstance(extra, dict):
            measured = {k: v for k, v in extra.items() if k in MEASUREMENT_COLUMNS and v is not None and k not in row}
            rest = {k: v for k, v in extra.items() if k not in MEASUREMENT_COLUMNS}
            earlier = self._legs.get(row["leg"], {}).get("extra")
            row = {**measured, **row, "extra": {**(earlier if isinstance(earlier, dict) else {}), **rest} or None}
        row = normalize_row("migrations", row)
        if row.get("status") is not None and row["status"] not in LEG_STATUSES:
            raise ValueError(f"migrations.status must be one of {', '.join(LEG_STATUSES)}, not {row['status']!r}")
        for key in ("source", "destination"):
            if row.get(key) is not None:
                row[key] = redact_uri(row[key])
        if row.get("error") is not None:
            row["error"] = redact_text(row["error"])
        self._legs[row["leg"]] = {**self._legs.get(row["leg"], {}), **row}

    @_locked
    def add_metric(self, name: str, value: float, unit: str | None = None, *, leg: int | None = None, plugin: str | None = None) -> None:
        """Record a plugin's own measurement (table ``metrics``): of leg ``leg``, or of the
        whole run (``leg`` None).  The same name for the same leg replaces the value."""
        self._check_open()
        row = normalize_row("metrics", {"leg": leg or 0, "name": name, "value": value, "unit": unit, "plugin": plugin})
        if not row.get("name"):
            raise ValueError("metrics: 'name' is required")
        self._metrics[(row["leg"], row["name"])] = row

    def sample_count(self, leg: int) -> int:
        """How many ``samples`` rows leg ``leg`` has (after de-duplication)."""
        return sum(1 for key in self._samples if key[0] == leg)

    @_locked
    def add_samples(self, rows: list[dict]) -> None:
        """Add ``samples`` rows (each with ``leg`` and ``ms``; ``kind`` defaults to ``poll``).
        A row with the same (leg, ms, kind) as an earlier one replaces it: the
        table has no index, and this keeps (run_id, leg, ms, kind) unique."""
        self._check_open()
        for r in rows:
            r = normalize_row("samples", {"kind": "poll", **{k: v for k, v in r.items() if k != "run_id"}})
            if r.get("leg") is None or r.get("ms") is None:
                raise ValueError("samples: 'leg' and 'ms' are required")
            key = (r["leg"], r["ms"], r["kind"])
            self._samples_changed = self._samples_changed or key in self._samples
            self._samples[key] = r

    # -- persisting ---------------------------------------------------------
    def _data(self) -> dict:
        return {
            "format": SPOOL_FORMAT,
            "pid_start": self._pid_start,
            "flushed_at": to_timestamp(time.time()),
            "run": self._run,
            "steps": [self._steps[k] for k in sorted(self._steps)],
            "migrations": [self._legs[k] for k in sorted(self._legs)],
            "metrics": [self._metrics[k] for k in sorted(self._metrics)],
            "samples_file": self.path.stem + ".samples.csv" if self._samples else None,
            "samples_count": len(self._samples),
        }

    @_locked
    def flush(self) -> None:
        """Rewrite the spool file atomically (temp file, fsync, rename).  No-op after :meth:`finish`."""
        from ..errors import StoreError

        if self._finished is not None:
            return
        try:
            if len(self._samples) != self._samples_written or self._samples_changed:
                rows = [dict(r, run_id=self.run_id) for r in self._samples.values()]
                write_samples(self.path, [c for c, _, _ in TABLES["samples"]], rows)
                self._samples_written, self._samples_changed = len(self._samples), False
            write_spool(self.path, self._data())
        except OSError as exc:
            raise StoreError(f"cannot write the run's spool file {self.path}: {exc}") from None

    @_locked
    def finish(self, status: str, error: str | None = None, wait_s: float = 30.0, echo: Callable[[str], None] | None = None) -> IngestResult:
        """End the run: set status, error and ``ended_at``, flush, and write the
        run (then any other pending spooled runs) to the database, retrying up
        to ``wait_s`` seconds while it is locked (saying so once through ``echo``,
        with the holder's PID when DuckDB gives it).  Never raises for a locked
        or unusable database: the spool stays and the result says so."""
        if self._finished is not None:
            return self._finished
        if status not in _FINAL:
            raise ValueError(f"finish: status must be one of {', '.join(_FINAL)}, not {status!r}")
        self._run.update(normalize_row("runs", {"status": status, "error": error, "ended_at": time.time()}))
        self._redact()
        self.flush()

        def waiting(lock: DatabaseLocked) -> None:
            if echo is not None:
                echo(
                    f"{lock.message}: waiting up to {wait_s:g} s to write run {self.run_id}; nothing is lost meanwhile "
                    f"(the run is kept in {self.path.parent.name}/ and written later if the file stays locked)"
                )

        summary = ingest_spools(self.results_path, wait_s, first=self.path, on_wait=waiting)
        # not in our summary but gone: another thread or process wrote it meanwhile
        ok = self.run_id in summary.ingested or (self.run_id not in summary.pending and not self.path.exists())
        if ok:
            msg = summary.message(self.results_path)
        elif summary.lock is not None:
            msg = f"{summary.lock.message}; the run is kept in {self.path.parent.name}/ and will be written later (migflow ingest)"
        else:
            err = summary.errors.get(self.run_id, "unknown error")
            msg = f"run {self.run_id} could not be written to {self.results_path.name} ({err}); it is kept in {self.path.parent.name}/"
        self._finished = IngestResult(ok, msg)
        return self._finished
