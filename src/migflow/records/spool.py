"""Spool files: a run's records on disk before (and until) they reach DuckDB.

``<results>.spool/<run_id>.json`` is rewritten whole at every flush: written to
a temporary file in the same directory, fsynced, renamed over the old one, and
the directory fsynced, so a crash leaves either the previous or the new
version, never half of one.

The run's ``samples`` (the bulk of its records) live beside it in
``<run_id>.samples.csv``, written the same way just before the JSON: DuckDB
reads CSV several times faster than JSON and Python never has to parse them.
A spool JSON with an inline ``samples`` list (the first format) is still read.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from pathlib import Path

__all__ = [
    "SPOOL_FORMAT",
    "list_spools",
    "read_spool",
    "remove_spool",
    "samples_path",
    "spool_dir",
    "spool_path",
    "write_samples",
    "write_spool",
]

SPOOL_FORMAT = "migflow-spool/1"


def spool_dir(results_path: str | os.PathLike) -> Path:
    return Path(str(results_path) + ".spool")


def _safe_name(run_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", str(run_id)) or "_"


def spool_path(results_path: str | os.PathLike, run_id: str) -> Path:
    return spool_dir(results_path) / f"{_safe_name(run_id)}.json"


def samples_path(path: Path) -> Path:
    """The samples file beside the spool ``path`` (``<run_id>.samples.csv``)."""
    return path.with_name(path.stem + ".samples.csv")


def write_samples(path: Path, columns: list[str], rows: list[dict]) -> None:
    """Atomically write the samples CSV of spool ``path`` (header, then one line a row; NULL is empty)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for r in rows:
        writer.writerow(["" if r.get(c) is None else r.get(c) for c in columns])
    _write_atomically(samples_path(path), out.getvalue().encode())


def remove_spool(path: Path) -> None:
    """Delete a spool and its samples file (after their rows were committed).

    The JSON goes first: a crash in between leaves a stray samples file, never
    a spool whose samples are gone."""
    path.unlink(missing_ok=True)
    samples_path(path).unlink(missing_ok=True)


def write_spool(path: Path, data: dict) -> None:
    """Atomically replace ``path`` with ``data`` as JSON (temp + fsync + rename)."""
    _write_atomically(path, json.dumps(data, default=str, separators=(",", ":")).encode())


def _write_atomically(path: Path, payload: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(payload)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    try:
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:  # some filesystems refuse fsync on a directory
        pass


def read_spool(path: Path) -> dict:
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or data.get("format") != SPOOL_FORMAT:
        raise ValueError(f"{path}: not a migflow spool file (format {data.get('format')!r})")
    return data


def list_spools(results_path: str | os.PathLike) -> list[Path]:
    d = spool_dir(results_path)
    if not d.is_dir():
        return []
    return sorted(p for p in d.glob("*.json") if not p.name.startswith("."))
