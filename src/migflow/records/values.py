"""Turning what callers hand the recorder into column values.

Values are checked when they are added (so a programming mistake fails at the
call that made it, not at ingest) and kept in a JSON-friendly form in the
spool: timestamps as ISO-8601 strings in UTC, JSON columns as objects.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from collections.abc import Callable
from typing import Any

from .schema import TABLES

__all__ = ["normalize_row", "to_timestamp"]


def to_timestamp(value: Any) -> str | None:
    """datetime (naive = local time), epoch seconds or ISO string -> ISO UTC string."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"not a timestamp: {value!r}")
    if isinstance(value, (int, float)):
        d = _dt.datetime.fromtimestamp(float(value), tz=_dt.UTC)
    elif isinstance(value, _dt.datetime):
        d = value if value.tzinfo else value.astimezone()
    elif isinstance(value, str):
        d = _dt.datetime.fromisoformat(value)
        d = d if d.tzinfo else d.astimezone()
    else:
        raise ValueError(f"not a timestamp (datetime, epoch seconds or ISO string): {value!r}")
    return d.astimezone(_dt.UTC).isoformat()


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"not a finite number: {value!r}")
        return round(value)
    if isinstance(value, str):
        return int(float(value)) if any(c in value for c in ".eE") else int(value)
    raise ValueError(f"not an integer: {value!r}")


def _to_float(value: Any) -> float:
    if isinstance(value, (int, float, str)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, bool):
        return float(value)
    raise ValueError(f"not a number: {value!r}")


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ValueError(f"not true or false: {value!r}")


def _to_json(value: Any) -> Any:
    # Round trip now so that the spool holds plain JSON and errors surface here.
    return json.loads(json.dumps(value, default=str))


def _to_list(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple, set, frozenset)):
        return [str(v) for v in value]
    raise ValueError(f"not a list of strings: {value!r}")


_CONVERT: dict[str, Callable[[Any], Any]] = {
    "VARCHAR": str,
    "INTEGER": _to_int,
    "BIGINT": _to_int,
    "DOUBLE": _to_float,
    "JSON": _to_json,
    "BOOLEAN": _to_bool,
    "TIMESTAMPTZ": to_timestamp,
    "VARCHAR[]": _to_list,
}


def normalize_row(table: str, row: dict, *, partial: bool = True) -> dict:
    """Check and convert ``row`` for ``table``.  A key that is not a column of
    the table raises ``ValueError`` naming it (use the ``extra`` column, where
    the table has one, for anything else)."""
    types = {c: t for c, t, _ in TABLES[table]}
    unknown = [k for k in row if k not in types]
    if unknown:
        hint = " (put anything else in 'extra')" if "extra" in types else ""
        raise ValueError(f"{table}: unknown column{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}{hint}; columns are: {', '.join(types)}")
    out: dict[str, Any] = {}
    for key, value in row.items():
        if value is None:
            out[key] = None
            continue
        try:
            out[key] = _CONVERT[types[key]](value)
        except (ValueError, TypeError, OverflowError) as exc:
            raise ValueError(f"{table}.{key} ({types[key]}): {exc}") from None
    return out
