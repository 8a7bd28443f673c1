"""Connections to the results database and the ingest of spool files.

Writers hold the file only for one short transaction per run; while another
process holds it (a migflow run, or an analyst's ``duckdb -readonly``), they
retry until their time budget is spent and otherwise leave the spool in place.
"""

from __future__ import annotations

import csv
import json
import os
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import StoreError
from ..procs import command_name
from ..redact import redact_uri
from ..status import RunStatus
from .abandoned import abandon, owner_is_dead
from .schema import SCHEMA_VERSION, TABLES, ensure_schema
from .spool import list_spools, read_spool, remove_spool, samples_path, spool_dir
from .values import to_timestamp
from .views import ensure_temp_views

__all__ = ["DatabaseLocked", "IngestSummary", "connect_writer", "ingest_pending", "ingest_spools", "open_readonly", "pending_runs"]

_PID_RE = re.compile(r"\(PID (\d+)\)")
#: runs written per transaction when several spools are waiting (``migflow ingest`` of a backlog)
BATCH_RUNS = 500
#: one ingest at a time in this process (other processes are kept out by DuckDB's file lock)
_INGEST_LOCK = threading.RLock()


class DatabaseLocked(StoreError):
    """Another process holds the database file."""

    def __init__(self, path, pid: int | None, detail: str):
        self.path, self.pid, self.detail = str(path), pid, detail
        name = command_name(pid) if pid else ""
        who = (f"PID {pid} ({name})" if name else f"PID {pid}") if pid else "another process"
        if pid == os.getpid():
            who = "this process (another connection with a different read_only setting)"
        super().__init__(f"{Path(path).name} is locked by {who}")


def _lock_pid(exc: Exception) -> tuple[bool, int | None]:
    """(is a lock conflict, PID holding it when DuckDB says)."""
    msg = str(exc)
    if "Could not set lock on file" in msg:
        m = _PID_RE.search(msg)
        return True, int(m.group(1)) if m else None
    if "different configuration" in msg:  # same process, other read_only setting
        return True, os.getpid()
    return False, None


#: called once when a writer starts waiting for a locked file (the lock, with the holder's PID)
OnWait = Callable[["DatabaseLocked"], None]


def _connect(path, *, read_only: bool, wait_s: float, on_wait: OnWait | None = None):
    import duckdb

    deadline = time.monotonic() + max(0.0, wait_s)
    delay = 0.05
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.Error as exc:
            locked, pid = _lock_pid(exc)
            if not locked:
                raise StoreError(f"cannot open {path}: {exc}") from None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DatabaseLocked(path, pid, str(exc)) from None
            if on_wait is not None:
                on_wait(DatabaseLocked(path, pid, str(exc)))
                on_wait = None  # say it once
            time.sleep(min(delay * random.uniform(0.7, 1.3), remaining))  # last try at the deadline
            delay = min(delay * 2, 0.5)


def open_readonly(results_path, wait_s: float = 3.0):
    """A read-only DuckDB connection to the results (close it when done).

    :raises StoreError: the file does not exist, or a writer holds it past ``wait_s``
        (the message names the PID when DuckDB reports it).
    """
    path = Path(results_path)
    if not path.exists():
        n = len(list_spools(path))
        hint = (
            f"{n} run{'s are' if n != 1 else ' is'} waiting in {spool_dir(path).name}/: run `migflow ingest`"
            if n
            else "run a workflow first (migflow run WORKFLOW), or pass --results PATH"
        )
        raise StoreError(f"no results database at {path}", hint=hint)
    try:
        con = _connect(path, read_only=True, wait_s=wait_s)
    except DatabaseLocked as exc:
        raise StoreError(f"{exc.message} (it is being written); try again in a moment", hint=exc.detail) from None
    if _older_schema(con):
        # written by an older migflow: migrate it once (a short write), then read
        con.close()
        try:
            connect_writer(path, wait_s).close()
        except DatabaseLocked as exc:
            raise StoreError(
                f"{path.name} was written by an older migflow and must be brought up to date, but {exc.message}", hint="try again when it is free"
            ) from None
        con = _connect(path, read_only=True, wait_s=wait_s)
    ensure_temp_views(con)  # a file written before the statistics views existed gets them as TEMP views
    return con


def _older_schema(con) -> bool:
    try:
        row = con.execute("SELECT max(version) FROM schema_version").fetchone()
    except Exception:  # no schema_version table: not a migflow file, or an empty one
        return False
    return bool(row and row[0] is not None and row[0] < SCHEMA_VERSION)


def connect_writer(results_path, wait_s: float, on_wait: OnWait | None = None):
    """A read-write connection with the schema in place; raises ``DatabaseLocked``."""
    path = Path(results_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    con = _connect(path, read_only=False, wait_s=wait_s, on_wait=on_wait)
    try:
        ensure_schema(con)
    except Exception:
        con.close()
        raise
    return con


# -- ingest -----------------------------------------------------------------

_CAST = {
    "VARCHAR": ("VARCHAR[]", ""),
    "INTEGER": ("BIGINT[]", ""),
    "BIGINT": ("BIGINT[]", ""),
    "DOUBLE": ("DOUBLE[]", ""),
    "JSON": ("VARCHAR[]", "::JSON"),
    "BOOLEAN": ("BOOLEAN[]", ""),
    "TIMESTAMPTZ": ("VARCHAR[]", "::TIMESTAMPTZ"),
    "VARCHAR[]": ("VARCHAR[][]", ""),
}


def _insert(con, table: str, rows: list[dict]) -> None:
    """Insert rows column-wise (one statement, fast for thousands of samples)."""
    if not rows:
        return
    spec = TABLES[table]
    exprs, params = [], []
    for col, typ, _ in spec:
        list_type, post = _CAST[typ]
        exprs.append(f"unnest(?::{list_type}){post}")
        values = [r.get(col) for r in rows]
        if typ == "JSON":
            values = [None if v is None else json.dumps(v) for v in values]
        params.append(values)
    names = ", ".join(c for c, _, _ in spec)
    con.execute(f"INSERT INTO {table} ({names}) SELECT {', '.join(exprs)}", params)


def _rows(data: dict) -> tuple[dict, list[dict], list[dict], list[dict], list[dict]]:
    """A spool's (run, steps, migrations, samples, metrics) rows, run_id set and URIs redacted."""
    run = dict(data["run"])
    run_id = run["run_id"]
    for key in ("source_uri", "destination_uri"):
        run[key] = redact_uri(run.get(key))
    legs = [dict(m, run_id=run_id) for m in data.get("migrations", [])]
    for leg in legs:
        leg["source"] = redact_uri(leg.get("source"))
        leg["destination"] = redact_uri(leg.get("destination"))
    steps = [dict(s, run_id=run_id) for s in data.get("steps", [])]
    samples = [dict(s, run_id=run_id) for s in data.get("samples", [])]  # the first spool format: inline
    metrics = [dict(m, run_id=run_id) for m in data.get("metrics", [])]
    return run, steps, legs, samples, metrics


def _samples_from_files(con, paths: list[Path]) -> int:
    """Insert the samples CSV files of spools ``paths`` (those that have one); return the row count.

    DuckDB's CSV reader does the parsing: binding millions of Python values as
    query parameters runs at about 100,000 samples/s, several times slower.
    """
    files = [samples_path(p) for p in paths if samples_path(p).exists()]
    if not files:
        return 0
    spec = {c: t for c, t, _ in TABLES["samples"]}
    # files of one header at once; an older migflow's files lack the newer columns (NULL then)
    by_header: dict[tuple[str, ...], list[str]] = {}
    for f in files:
        with open(f, newline="") as fh:
            header = tuple(next(csv.reader(fh), []))
        by_header.setdefault(header, []).append(str(f))
    count = 0
    for header, group in by_header.items():
        known = [c for c in header if c in spec]
        types = ", ".join(f"'{c}': '{spec[c] if c in spec else 'VARCHAR'}'" for c in header)
        names = ", ".join(known)
        sql = (
            f"INSERT INTO samples ({names}) SELECT {names} FROM read_csv(?, header = true, auto_detect = false, "
            f"columns = {{{types}}}, nullstr = '', quote = '\"', escape = '\"')"
        )
        count += con.execute(sql, [group]).fetchone()[0]
    return count


def _write_runs(con, batch: list[tuple[Path, dict]], check_count: bool = True) -> None:
    """Write several runs in one transaction, replacing stored rows of the same runs.

    One INSERT per table for the whole batch: per-statement and per-commit
    costs (about 13 ms per run when each run had its own transaction) are
    paid once per batch.  A run's rows are only ever written together, so a
    run is stored iff its ``runs`` row is: only those are deleted first.
    """
    runs, steps, legs, inline, metrics, expected = [], [], [], [], [], 0
    for _, data in batch:
        r, s, m, x, pm = _rows(data)
        runs.append(r)
        steps += s
        legs += m
        inline += x
        metrics += pm
        expected += int(data.get("samples_count") or 0)
    con.execute("BEGIN TRANSACTION")
    try:
        ids = [r["run_id"] for r in runs]
        stored = [row[0] for row in con.execute("SELECT run_id FROM runs WHERE run_id IN (SELECT unnest(?::VARCHAR[]))", [ids]).fetchall()]
        if stored:
            for table in ("samples", "metrics", "migrations", "steps", "runs"):
                con.execute(f"DELETE FROM {table} WHERE run_id IN (SELECT unnest(?::VARCHAR[]))", [stored])
        _insert(con, "runs", runs)
        _insert(con, "steps", steps)
        _insert(con, "migrations", legs)
        _insert(con, "samples", inline)
        _insert(con, "metrics", metrics)
        written = _samples_from_files(con, [p for p, _ in batch])
        if check_count and written != expected:
            # a samples file newer than its JSON (a crash between the two renames): go run by run
            raise StoreError("spool files changed while being ingested")
        con.execute("COMMIT")
    except BaseException:
        try:
            con.execute("ROLLBACK")
        except Exception:
            pass
        raise


def _write_run(con, data: dict, path: Path) -> None:
    """One run alone (a finished run, or a batch's fallback): its samples file is taken as it is."""
    if data.get("samples_count") and not samples_path(path).exists():
        raise StoreError(f"{samples_path(path).name} is missing: the run's samples would be lost; the spool is kept")
    _write_runs(con, [(path, data)], check_count=False)


def _reconcile(data: dict, path: Path) -> str:
    """Decide what to do with a spool: 'ingest', or 'in-progress' (leave it).

    A run of a dead migflow process is abandoned first (:mod:`.abandoned`;
    the data are changed in place before ingest).
    """
    run = data["run"]
    if run.get("status") != RunStatus.RUNNING:
        return "ingest"
    if owner_is_dead(data):
        abandon(
            data,
            run.get("error") or f"migflow process {run.get('pid')} ended while the run was in progress",
            data.get("flushed_at") or to_timestamp(path.stat().st_mtime),
        )
        return "ingest"
    return "in-progress"  # alive here, or recorded on another host


@dataclass
class IngestSummary:
    """What an ingest did.  ``pending`` = could not be written yet (locked, or an error)."""

    ingested: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    in_progress: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    lock: DatabaseLocked | None = None

    def message(self, results_path) -> str:
        name = Path(results_path).name
        parts = [f"{len(self.ingested)} run{'s' if len(self.ingested) != 1 else ''} written to {name}"]
        if self.lock is not None:
            parts.append(
                f"{self.lock.message}; {len(self.pending)} run{'s are' if len(self.pending) != 1 else ' is'} kept in "
                f"{spool_dir(results_path).name}/ and will be written later (migflow ingest)"
            )
        for run_id, err in self.errors.items():
            parts.append(f"run {run_id} could not be written ({err}); its spool file is kept")
        if self.in_progress:
            parts.append(f"{len(self.in_progress)} run{'s' if len(self.in_progress) != 1 else ''} still in progress")
        return "; ".join(parts)


def ingest_spools(results_path, wait_s: float = 10.0, *, first: Path | None = None, on_wait: OnWait | None = None) -> IngestSummary:
    """Move every ready spool into the database, one transaction per run.

    ``first`` (a spool path) is written before the others.  Never raises for a
    locked database: the runs stay spooled and are listed in ``pending``.
    """
    with _INGEST_LOCK:
        return _ingest_spools(results_path, wait_s, first, on_wait)


def _ingest_spools(results_path, wait_s: float, first: Path | None, on_wait: OnWait | None = None) -> IngestSummary:
    summary = IngestSummary()
    paths = list_spools(results_path)
    if first is not None:
        paths = [first] + [p for p in paths if p != first]
    ready: list[tuple[Path, dict]] = []
    for p in paths:
        try:
            data = read_spool(p)
        except FileNotFoundError:
            continue  # ingested meanwhile by another process
        except (OSError, ValueError) as exc:
            summary.errors[p.stem] = str(exc)
            summary.pending.append(p.stem)
            continue
        if _reconcile(data, p) == "in-progress":
            summary.in_progress.append(data["run"]["run_id"])
        else:
            ready.append((p, data))
    if not ready:
        return summary
    try:
        con = connect_writer(results_path, wait_s, on_wait)
    except DatabaseLocked as exc:
        summary.lock = exc
        summary.pending.extend(d["run"]["run_id"] for _, d in ready)
        return summary
    except StoreError as exc:
        for _, d in ready:
            summary.errors[d["run"]["run_id"]] = exc.message
            summary.pending.append(d["run"]["run_id"])
        return summary
    # Another process may have written some of them while we waited for the
    # lock: it removes a spool before it lets go of the database, so what is
    # gone now is stored.
    ready = [(p, d) for p, d in ready if p.exists()]
    try:
        import duckdb

        for start in range(0, len(ready), BATCH_RUNS):
            batch = ready[start : start + BATCH_RUNS]
            if len(batch) > 1:
                try:
                    _write_runs(con, batch)
                except (duckdb.Error, StoreError):
                    pass  # one bad run: write them one by one below, so the others still go in
                else:
                    for p, data in batch:
                        remove_spool(p)  # only after the commit
                        summary.ingested.append(data["run"]["run_id"])
                    continue
            for p, data in batch:
                run_id = data["run"]["run_id"]
                try:
                    _write_run(con, data, p)
                except (duckdb.Error, StoreError) as exc:
                    summary.errors[run_id] = str(exc).splitlines()[0]
                    summary.pending.append(run_id)
                    continue
                remove_spool(p)  # only after the commit
                summary.ingested.append(run_id)
    finally:
        con.close()
    return summary


def ingest_pending(results_path, wait_s: float = 10.0) -> tuple[int, int]:
    """Ingest spooled runs.  Returns (runs ingested, runs still pending, in-progress ones included)."""
    s = ingest_spools(results_path, wait_s)
    return len(s.ingested), len(s.pending) + len(s.in_progress)


def pending_runs(results_path) -> list[dict]:
    """Spooled runs not in the database yet: ``{run_id, status, pid, in_progress}`` each."""
    out = []
    for p in list_spools(results_path):
        try:
            data = read_spool(p)
        except FileNotFoundError:
            continue
        except (OSError, ValueError):
            out.append({"run_id": p.stem, "status": None, "pid": None, "in_progress": False})
            continue
        run = data["run"]
        in_progress = run.get("status") == RunStatus.RUNNING and not owner_is_dead(data)
        out.append({"run_id": run.get("run_id"), "status": run.get("status"), "pid": run.get("pid"), "in_progress": in_progress})
    return out


def set_run_extra(results_path, run_id: str, patch: dict, wait_s: float = 10.0) -> None:
    """Merge ``patch`` into ``runs.extra`` of one stored run (``migflow recover`` notes what it did)."""
    try:
        con = connect_writer(results_path, wait_s)
    except DatabaseLocked as exc:
        raise StoreError(f"{exc.message}; could not note the recovery of run {run_id}", hint=exc.detail) from None
    try:
        row = con.execute("SELECT extra FROM runs WHERE run_id = ?", [run_id]).fetchone()
        if row is None:
            raise StoreError(f"no run {run_id} in {results_path}")
        extra = json.loads(row[0]) if row[0] else {}
        extra.update(patch)
        con.execute("UPDATE runs SET extra = ?::JSON WHERE run_id = ?", [json.dumps(extra), run_id])
    finally:
        con.close()
